//! A download that replaces a local copy takes the chunks that copy still
//! holds from the disk and fetches only the others, counted at the
//! transport.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Probe, blob_store, bytes, small_chunks};
use stacksync_client::ChunkedContentStore;
use stacksync_content::{ChunkCodec, WorkspaceKey};
use stacksync_engine::ByteReader;
use stacksync_engine::io::Uploaded;
use stacksync_proto::ChunkRef;

fn open(transport: &Arc<Probe>, codec: ChunkCodec) -> ChunkedContentStore {
    ChunkedContentStore::new(codec, transport.clone(), small_chunks()).unwrap()
}

async fn upload(cs: &ChunkedContentStore, data: &[u8]) -> Uploaded {
    let up = cs
        .upload_file(ByteReader::new(std::io::Cursor::new(data.to_vec())), &[])
        .await
        .unwrap();
    cs.flush().await.unwrap();
    up
}

/// A reader of `data` as a file on disk (the way the real file system
/// hands files over).
fn file_reader(dir: &std::path::Path, data: &[u8]) -> ByteReader {
    let path = dir.join("local-copy");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(data)
        .unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let stream = tokio::fs::File::from_std(file.try_clone().unwrap());
    ByteReader::with_file(stream, file)
}

/// Chunks of `new` that `old` does not have.
fn changed(new: &Uploaded, old: &Uploaded) -> Vec<ChunkRef> {
    new.chunks
        .iter()
        .filter(|c| old.chunks.iter().all(|o| o.id != c.id))
        .cloned()
        .collect()
}

struct Case {
    /// Bytes the transport answered.
    got: usize,
    /// Requests made.
    requests: usize,
    reused: u64,
}

/// Uploads `old` and `new` with `codec`, then downloads `new` over a local
/// copy holding `local` (as a file or as a stream), checking the bytes.
async fn download_over(
    codec: ChunkCodec,
    old: &[u8],
    new: &[u8],
    local: &[u8],
    as_file: bool,
) -> (Case, Uploaded, Uploaded) {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(&dir.path().join("store")).await;
    let transport = Arc::new(Probe::new(&store, &container));
    let writer = open(&transport, codec.clone());
    let up_old = upload(&writer, old).await;
    let up_new = upload(&writer, new).await;
    let reader = open(&transport, codec);
    let local = if as_file {
        file_reader(dir.path(), local)
    } else {
        ByteReader::new(std::io::Cursor::new(local.to_vec()))
    };
    let (gets, ranges) = (
        Probe::count(&transport.gets),
        Probe::count(&transport.ranges),
    );
    let got_before = Probe::count(&transport.got_bytes);
    let mut out = Vec::new();
    reader
        .download_reusing_to(&up_new.chunks, &mut out, local)
        .await
        .unwrap();
    assert!(out == new, "the download wrote other bytes");
    let case = Case {
        got: Probe::count(&transport.got_bytes) - got_before,
        requests: Probe::count(&transport.gets) - gets + Probe::count(&transport.ranges) - ranges,
        reused: reader.stats().chunks_reused.load(Ordering::Relaxed),
    };
    (case, up_old, up_new)
}

fn one_byte_changed(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    new[old.len() / 2] ^= 0x5a;
    new
}

#[tokio::test]
async fn only_the_chunks_the_local_copy_lacks_are_fetched() {
    let old = bytes("reuse", 1 << 20);
    let new = one_byte_changed(&old);
    for as_file in [true, false] {
        let (case, up_old, up_new) =
            download_over(ChunkCodec::compressed(), &old, &new, &old, as_file).await;
        let missing = changed(&up_new, &up_old);
        assert!(up_new.chunks.len() > 20, "a file of many chunks");
        assert_eq!(missing.len(), 1, "one byte changes one chunk");
        assert_eq!(case.reused as usize, up_new.chunks.len() - 1);
        assert_eq!(case.requests, 1, "one request, for the changed chunk");
        let encoded = missing[0].span.unwrap().len as usize;
        assert_eq!(case.got, encoded, "only the changed chunk's bytes");
    }
}

#[tokio::test]
async fn encrypted_workspaces_find_local_chunks_by_their_keyed_ids() {
    let key = WorkspaceKey::from_bytes([7; 32]);
    let old = bytes("keyed", 512 * 1024);
    let new = one_byte_changed(&old);
    let (case, up_old, up_new) =
        download_over(ChunkCodec::encrypted(&key), &old, &new, &old, true).await;
    assert_eq!(changed(&up_new, &up_old).len(), 1);
    assert_eq!(case.reused as usize, up_new.chunks.len() - 1);
    assert_eq!(case.requests, 1);
}

#[tokio::test]
async fn an_unrelated_local_copy_costs_only_the_saving() {
    let old = bytes("old", 300 * 1024);
    let new = bytes("new", 300 * 1024);
    let (case, _, up_new) =
        download_over(ChunkCodec::compressed(), &old, &new, b"nothing alike", true).await;
    assert_eq!(case.reused, 0);
    // Everything fetched, still coalesced into range reads of the pack.
    assert!(
        case.requests < up_new.chunks.len(),
        "{} requests",
        case.requests
    );
}
