//! `ChunkedContentStore` over a local blob store: round trips, dedup,
//! integrity checks and limits (packing, journal and read-ahead are in
//! `packs.rs`).

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use stacksync_client::TransferError;
use stacksync_content::{ChunkCodec, WorkspaceKey};
use stacksync_engine::io::Uploaded;
use stacksync_engine::{ByteReader, ContentStore};
use stacksync_proto::ContentHash;

use common::{Probe, blob_store, bytes, check_download, content_store};

fn reader(data: &[u8]) -> ByteReader {
    ByteReader::new(std::io::Cursor::new(data.to_vec()))
}

fn plain_hash(data: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(data).as_bytes())
}

async fn check_round_trip(codec: ChunkCodec, data: &[u8], min_chunks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, codec);
    let up: Uploaded = cs.upload(reader(data)).await.expect("upload");
    cs.flush().await.expect("flush");
    assert_eq!(up.size, data.len() as u64);
    assert_eq!(up.hash, plain_hash(data), "the engine's (unkeyed) hash");
    assert!(up.chunks.len() >= min_chunks, "{} chunks", up.chunks.len());
    assert_eq!(
        up.chunks.iter().map(|c| c.size as u64).sum::<u64>(),
        up.size
    );
    // Every chunk is written once, in packs: one object per pack.
    let distinct: std::collections::HashSet<_> = up.chunks.iter().map(|c| c.id).collect();
    assert_eq!(
        cs.stats().chunks_uploaded.load(Ordering::Relaxed),
        distinct.len() as u64
    );
    assert_eq!(
        store.list(&container).await.unwrap().len() as u64,
        cs.stats().packs_uploaded.load(Ordering::Relaxed)
    );
    assert!(up.chunks.iter().all(|c| c.span.is_some()), "{up:?}");
    check_download(&cs, &up, data).await;
}

#[tokio::test]
async fn round_trip_empty_one_byte_and_many_chunks() {
    check_round_trip(ChunkCodec::compressed(), b"", 0).await;
    check_round_trip(ChunkCodec::compressed(), b"x", 1).await;
    check_round_trip(ChunkCodec::compressed(), &bytes("multi", 700_000), 8).await;
}

#[tokio::test]
async fn round_trip_encrypted() {
    let key = WorkspaceKey::from_bytes([9; 32]);
    check_round_trip(ChunkCodec::encrypted(&key), &bytes("enc", 200_000), 3).await;
}

#[tokio::test]
async fn second_upload_of_same_content_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, ChunkCodec::compressed());
    let data = bytes("dedup", 400_000);
    let first = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    let sent = cs.stats().chunks_uploaded.load(Ordering::Relaxed);
    assert_eq!(sent as usize, first.chunks.len());
    let second = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        cs.stats().chunks_uploaded.load(Ordering::Relaxed),
        sent,
        "0 new chunks"
    );
    assert_eq!(
        cs.stats().chunks_deduplicated.load(Ordering::Relaxed) as usize,
        first.chunks.len()
    );
    // An edit in the middle sends only the chunks around it.
    let mut edited = data.clone();
    edited[200_000] ^= 0xff;
    let third = cs.upload(reader(&edited)).await.unwrap();
    cs.flush().await.unwrap();
    let new = cs.stats().chunks_uploaded.load(Ordering::Relaxed) - sent;
    assert!(
        new >= 1 && (new as usize) < third.chunks.len() / 2,
        "{new} new chunks"
    );
}

#[tokio::test]
async fn a_chunk_that_is_not_what_its_id_names_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, ChunkCodec::compressed());
    let data = bytes("victim", 150_000);
    let up = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    // Chunk 1's bytes in its pack are replaced by another chunk's encoding
    // of the same length. The store's own checksum is fine: the
    // substitution is only visible to the codec's id check.
    let span = up.chunks[1].span.expect("a packed chunk");
    let mut pack = store
        .get_bytes(&container, &span.pack)
        .await
        .unwrap()
        .to_vec();
    let other = ChunkCodec::plain()
        .encode(&bytes("other", up.chunks[1].size as usize))
        .unwrap();
    let at = span.offset as usize;
    let len = (span.len as usize).min(other.bytes.len());
    pack[at..at + len].copy_from_slice(&other.bytes[..len]);
    // Objects are written once: the substitute replaces the pack as a
    // hostile store would, by deleting it first.
    store.delete(&container, &span.pack).await.unwrap();
    store
        .put_bytes(&container, &span.pack, Bytes::from(pack))
        .await
        .unwrap();
    let mut out = Vec::new();
    let err = cs
        .download_to(&up.chunks, &mut out, Some(up.hash))
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransferError::Damaged { id, .. } if id == up.chunks[1].id),
        "{err}"
    );
    assert!(out.len() < data.len());
    // Through the engine's trait the failure is a protocol error.
    let mut sink: stacksync_engine::ByteWriter = Box::<Vec<u8>>::default();
    let err = cs.download(&up.chunks, &mut sink).await.unwrap_err();
    assert!(err.message.contains("damaged"), "{err:?}");
}

#[tokio::test]
async fn whole_file_hash_is_checked_when_known() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, ChunkCodec::compressed());
    let up = cs.upload(reader(b"hello")).await.unwrap();
    cs.flush().await.unwrap();
    let mut out = Vec::new();
    let err = cs
        .download_to(&up.chunks, &mut out, Some(plain_hash(b"other")))
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::HashMismatch { .. }), "{err}");
}

#[tokio::test]
async fn a_missing_chunk_is_a_transport_error() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, ChunkCodec::compressed());
    let up = cs.upload(reader(b"gone soon")).await.unwrap();
    cs.flush().await.unwrap();
    let pack = up.chunks[0].span.expect("a packed chunk").pack;
    store.delete(&container, &pack).await.unwrap();
    let mut out = Vec::new();
    let err = cs
        .download_to(&up.chunks, &mut out, None)
        .await
        .unwrap_err();
    assert!(matches!(err, TransferError::Transport { .. }), "{err}");
    assert_eq!(err.to_proto().kind, stacksync_proto::ErrorKind::NotFound);
}

#[tokio::test]
async fn a_bandwidth_limit_still_moves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = std::sync::Arc::new(stacksync_client::BlobTransport::new(
        store.clone(),
        container.clone(),
    ));
    let config = stacksync_client::TransferConfig {
        // Generous: the test checks the plumbing, not the rate (which the
        // bucket's unit tests check on a virtual clock).
        upload_limit: Some(64 * 1024 * 1024),
        download_limit: Some(64 * 1024 * 1024),
        ..common::small_chunks()
    };
    let cs =
        stacksync_client::ChunkedContentStore::new(ChunkCodec::compressed(), transport, config)
            .unwrap();
    let data = bytes("limited", 100_000);
    let up = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    check_download(&cs, &up, &data).await;
}

#[tokio::test]
async fn small_chunks_are_packed_without_asking_and_large_ones_are_asked_about() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = std::sync::Arc::new(Probe::new(&store, &container));
    let config = stacksync_client::TransferConfig {
        ask_min_bytes: 16 * 1024,
        ..common::small_chunks()
    };
    let open = || {
        stacksync_client::ChunkedContentStore::new(
            ChunkCodec::compressed(),
            transport.clone(),
            config,
        )
        .unwrap()
    };
    let cs = open();
    // A small file: one chunk under the threshold, packed without a
    // question; uploaded again, this store knows where it put it.
    let small = bytes("small", 10_000);
    cs.upload(reader(&small)).await.unwrap();
    cs.upload(reader(&small)).await.unwrap();
    cs.flush().await.unwrap();
    assert_eq!(Probe::count(&transport.located), 0);
    assert_eq!(cs.stats().chunks_uploaded.load(Ordering::Relaxed), 1);
    // A larger file: chunks of up to 64 KiB, the big ones asked about.
    let large = bytes("large", 600_000);
    let first = cs.upload(reader(&large)).await.unwrap();
    cs.flush().await.unwrap();
    let asked = Probe::count(&transport.located);
    assert!(asked > 0 && asked < first.chunks.len(), "{asked} asked");
    // The service learns the chunks when they are committed. Another
    // process (no journal) asks again and sends only the unasked ones.
    transport.index(&first.chunks);
    let other = open();
    let again = other.upload(reader(&large)).await.unwrap();
    other.flush().await.unwrap();
    assert_eq!(Probe::count(&transport.located), 2 * asked);
    assert_eq!(
        other.stats().chunks_uploaded.load(Ordering::Relaxed) as usize,
        first.chunks.len() - asked,
        "only unasked chunks are sent again"
    );
    assert_eq!(
        other.stats().chunks_deduplicated.load(Ordering::Relaxed) as usize,
        asked
    );
    // The located chunks keep the service's location.
    let located: Vec<_> = again
        .chunks
        .iter()
        .filter(|c| first.chunks.contains(c))
        .collect();
    assert_eq!(located.len(), asked);
    check_download(&other, &again, &large).await;
}

/// A reader over a file on disk is read on the encoder's own thread
/// (`ByteReader::into_file`): the result is the one the stream gives, and
/// many uploads at once finish on a runtime whose blocking pool has room
/// for nothing but their encoders (a first sync once hung when each
/// encoder waited for a file read queued behind the others).
#[test]
fn files_read_on_the_encoders_thread_upload_like_streams() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (store, container) = blob_store(dir.path()).await;
        let cs = std::sync::Arc::new(content_store(&store, &container, ChunkCodec::compressed()));
        let files = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for i in 0..32 {
            let data = bytes(
                &format!("file {i}"),
                if i == 0 { 2_000_000 } else { 300 + i * 7 },
            );
            let path = files.path().join(format!("f{i}"));
            std::fs::write(&path, &data).unwrap();
            expected.push((path, data));
        }
        let uploads = expected.iter().map(|(path, _)| {
            let cs = cs.clone();
            let path = path.clone();
            async move {
                let file = std::fs::File::open(&path).unwrap();
                let stream = tokio::fs::File::from_std(file.try_clone().unwrap());
                let reader = ByteReader::with_file(stream, file);
                cs.upload(reader).await.expect("upload")
            }
        });
        let got = futures::future::join_all(uploads).await;
        cs.flush().await.expect("flush");
        for ((_, data), up) in expected.iter().zip(&got) {
            let streamed = cs.upload(reader(data)).await.expect("upload as a stream");
            assert_eq!(up, &streamed);
            assert_eq!(up.hash, plain_hash(data));
            check_download(&cs, up, data).await;
        }
    });
}

#[test]
fn a_reader_read_as_a_stream_no_longer_hands_over_its_file() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let files = tempfile::tempdir().unwrap();
        let path = files.path().join("f");
        std::fs::write(&path, b"hello world").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let stream = tokio::fs::File::from_std(file.try_clone().unwrap());
        let mut reader = ByteReader::with_file(stream, file);
        let mut first = [0u8; 5];
        reader.read_exact(&mut first).await.unwrap();
        // Its position moved: a blocking reader could not start over.
        let Err(mut reader) = reader.into_file() else {
            panic!("a reader already read from handed over its file")
        };
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b" world");
    });
}
