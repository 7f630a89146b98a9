//! Chunk packing over a local blob store: many small files become few
//! objects, concurrent uploads share packs, a failed pack is reported by
//! the flush and staged again, downloads of one pack are coalesced into
//! few range reads, and the upload journal lets a "crashed" upload resume.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use stacksync_client::{ChunkedContentStore, TransferConfig, UploadJournal};
use stacksync_content::ChunkCodec;
use stacksync_engine::io::Uploaded;
use stacksync_engine::{ByteReader, ContentStore};
use stacksync_proto::{ChunkId, ChunkRef, ErrorKind, WorkspaceId};

use common::{Probe, blob_store, bytes, check_download, small_chunks};

fn reader(data: &[u8]) -> ByteReader {
    ByteReader::new(std::io::Cursor::new(data.to_vec()))
}

/// Small chunks and packs of 64 KiB, so a few hundred KiB make several.
fn packed() -> TransferConfig {
    TransferConfig {
        pack_bytes: 64 * 1024,
        // Ask the service about nothing: these tests are about packs.
        ask_min_bytes: usize::MAX,
        ..small_chunks()
    }
}

fn open(transport: &Arc<Probe>, config: TransferConfig) -> ChunkedContentStore {
    ChunkedContentStore::new(ChunkCodec::compressed(), transport.clone(), config).unwrap()
}

/// Uploads `files` at most 8 at a time (as the engine does).
async fn upload_all(cs: &ChunkedContentStore, files: &[Vec<u8>]) -> Vec<Uploaded> {
    use futures::StreamExt;
    futures::stream::iter(files)
        .map(|f| async move { cs.upload(reader(f)).await.unwrap() })
        .buffered(8)
        .collect()
        .await
}

#[tokio::test]
async fn many_small_files_make_few_objects_shared_by_concurrent_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = Arc::new(Probe::new(&store, &container));
    let cs = open(&transport, packed());
    let files: Vec<Vec<u8>> = (0..200)
        .map(|i| bytes(&format!("small {i}"), 1000 + 13 * i))
        .collect();
    let ups = upload_all(&cs, &files).await;
    cs.flush().await.unwrap();
    let total: usize = files.iter().map(Vec::len).sum();
    let objects = store.list(&container).await.unwrap().len();
    assert_eq!(
        objects as u64,
        cs.stats().packs_uploaded.load(Ordering::Relaxed)
    );
    assert!(
        objects <= total / (64 * 1024) + 2,
        "{objects} objects for {total} bytes in 200 files"
    );
    assert_eq!(cs.stats().chunks_uploaded.load(Ordering::Relaxed), 200);
    // Uploads that ran at the same time share packs.
    let mut files_per_pack: HashMap<ChunkId, usize> = HashMap::new();
    for up in &ups {
        let packs: HashSet<ChunkId> = up
            .chunks
            .iter()
            .filter_map(|c| c.span)
            .map(|s| s.pack)
            .collect();
        for p in packs {
            *files_per_pack.entry(p).or_default() += 1;
        }
    }
    let shared = files_per_pack.values().filter(|n| **n > 1).count();
    assert!(shared + 1 >= files_per_pack.len(), "{files_per_pack:?}");
    // No pack exceeds the target; every file comes back.
    for p in files_per_pack.keys() {
        let size = store.head(&container, p).await.unwrap().size;
        assert!(size <= 64 * 1024, "pack of {size} bytes");
    }
    for (up, data) in ups.iter().zip(&files) {
        check_download(&cs, up, data).await;
    }
}

#[tokio::test]
async fn a_chunk_as_large_as_a_pack_goes_alone_and_a_repeat_is_staged_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = Arc::new(Probe::new(&store, &container));
    let config = TransferConfig {
        pack_bytes: 20 * 1024,
        ..packed()
    };
    let cs = open(&transport, config);
    // Random data: chunks of 4 to 64 KiB that do not compress.
    let big = bytes("big", 400_000);
    let small = bytes("tiny", 3000);
    let ups = upload_all(&cs, &[big.clone(), small.clone(), big.clone()]).await;
    cs.flush().await.unwrap();
    assert_eq!(ups[0], ups[2], "the same file twice is staged once");
    let mut per_pack: HashMap<ChunkId, Vec<&ChunkRef>> = HashMap::new();
    for c in ups[0].chunks.iter().chain(&ups[1].chunks) {
        per_pack.entry(c.span.unwrap().pack).or_default().push(c);
    }
    let mut lone = 0;
    for chunks in per_pack.values() {
        let len: u64 = chunks.iter().map(|c| u64::from(c.span.unwrap().len)).sum();
        if chunks.iter().any(|c| c.span.unwrap().len >= 20 * 1024) {
            assert_eq!(chunks.len(), 1, "a large chunk shares its pack");
            lone += 1;
        } else {
            assert!(len <= 20 * 1024, "a pack of {len} bytes");
        }
    }
    assert!(lone > 0);
    let distinct = ups[0].chunks.len() + ups[1].chunks.len();
    assert_eq!(
        cs.stats().chunks_uploaded.load(Ordering::Relaxed) as usize,
        distinct
    );
    check_download(&cs, &ups[0], &big).await;
    check_download(&cs, &ups[1], &small).await;
}

#[tokio::test]
async fn a_failed_pack_fails_the_flush_and_a_retry_stages_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = Arc::new(Probe::new(&store, &container));
    let cs = open(&transport, packed());
    let data = bytes("doomed", 150_000);
    transport.fail_puts.store(true, Ordering::SeqCst);
    let failed = cs.upload(reader(&data)).await.unwrap();
    let err = ContentStore::flush(&cs).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable, "{err}");
    assert!(err.message.contains("writing pack"), "{err}");
    assert_eq!(cs.stats().chunks_uploaded.load(Ordering::Relaxed), 0);
    // The failure was reported once; the next flush has nothing to wait for.
    cs.flush().await.unwrap();
    transport.fail_puts.store(false, Ordering::SeqCst);
    let up = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    assert!(
        up.chunks
            .iter()
            .zip(&failed.chunks)
            .all(|(a, b)| a.span != b.span),
        "a chunk of a failed pack was not staged again"
    );
    assert_eq!(
        cs.stats().chunks_uploaded.load(Ordering::Relaxed) as usize,
        up.chunks.len()
    );
    check_download(&cs, &up, &data).await;
}

#[tokio::test]
async fn downloads_of_one_pack_are_coalesced_after_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = Arc::new(Probe::new(&store, &container));
    let writer = open(&transport, small_chunks());
    let files: Vec<Vec<u8>> = (0..30).map(|i| bytes(&format!("f{i}"), 2000)).collect();
    let ups = upload_all(&writer, &files).await;
    writer.flush().await.unwrap();
    let packs: HashSet<ChunkId> = ups
        .iter()
        .flat_map(|u| &u.chunks)
        .map(|c| c.span.unwrap().pack)
        .collect();
    assert_eq!(packs.len(), 1, "30 small files in one 4 MiB pack");

    // Without a hint: one range read per chunk, and it all still works.
    let reader_store = open(&transport, small_chunks());
    for (up, data) in ups.iter().zip(&files) {
        check_download(&reader_store, up, data).await;
    }
    assert_eq!(Probe::count(&transport.ranges), 30);

    // With the hint: one range read for the whole pack.
    let before = Probe::count(&transport.ranges);
    let hinted = open(&transport, small_chunks());
    let all: Vec<ChunkRef> = ups.iter().flat_map(|u| u.chunks.clone()).collect();
    ContentStore::expect_downloads(&hinted, &all);
    for (up, data) in ups.iter().zip(&files) {
        check_download(&hinted, up, data).await;
    }
    assert_eq!(Probe::count(&transport.ranges) - before, 1);
    assert_eq!(Probe::count(&transport.gets), 0);
    assert_eq!(hinted.stats().chunks_downloaded.load(Ordering::Relaxed), 30);

    // A new hint drops the old one: what it announced is fetched on its own.
    let before = Probe::count(&transport.ranges);
    hinted.expect_downloads(&all[..10]);
    hinted.expect_downloads(&[]);
    check_download(&hinted, &ups[0], &files[0]).await;
    assert_eq!(Probe::count(&transport.ranges) - before, 1);
}

#[tokio::test]
async fn a_crashed_upload_resumes_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(&dir.path().join("blobs")).await;
    let journal_path = dir.path().join("uploads.sqlite");
    let data = bytes("resumed", 400_000);

    // The first process: its second pack's PUT never completes, and the
    // process dies (the store is dropped) before the flush returns.
    let mut probe = Probe::new(&store, &container);
    probe.hold_put = Some(2);
    let crashing = Arc::new(probe);
    let journal = UploadJournal::open(&journal_path, WorkspaceId::NIL)
        .await
        .unwrap();
    let cs = ChunkedContentStore::with_journal(
        ChunkCodec::compressed(),
        crashing.clone(),
        packed(),
        Some(journal.clone()),
    )
    .unwrap();
    let first = cs.upload(reader(&data)).await.unwrap();
    // Packs are written in the background: wait for the second PUT.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while crashing.puts.lock().unwrap().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second pack was never PUT"
        );
        tokio::task::yield_now().await;
    }
    let lost = crashing.puts.lock().unwrap()[1];
    // Written ahead: the held pack is journaled although it never landed.
    assert!(journal.packs().await.unwrap().contains(&lost));
    drop(cs);
    let in_lost: Vec<&ChunkRef> = first
        .chunks
        .iter()
        .filter(|c| c.span.unwrap().pack == lost)
        .collect();
    assert!(!in_lost.is_empty());

    // The next process, with the same journal.
    let transport = Arc::new(Probe::new(&store, &container));
    let journal = UploadJournal::open(&journal_path, WorkspaceId::NIL)
        .await
        .unwrap();
    let cs = ChunkedContentStore::with_journal(
        ChunkCodec::compressed(),
        transport.clone(),
        packed(),
        Some(journal.clone()),
    )
    .unwrap();
    let up = cs.upload(reader(&data)).await.unwrap();
    cs.flush().await.unwrap();
    let stats = cs.stats();
    // Only the chunks of the lost pack are sent again (the packs still in
    // flight when the first process died may or may not have landed).
    let resent = stats.chunks_uploaded.load(Ordering::Relaxed) as usize;
    assert!(
        resent >= in_lost.len() && resent < first.chunks.len(),
        "{resent} sent again"
    );
    assert_eq!(
        stats.chunks_deduplicated.load(Ordering::Relaxed) as usize,
        first.chunks.len() - resent
    );
    // The rows of the missing pack are gone; the chunks that were in it
    // have new places, the others kept theirs.
    assert!(!journal.packs().await.unwrap().contains(&lost));
    for (a, b) in first.chunks.iter().zip(&up.chunks) {
        if a.span.unwrap().pack == lost {
            assert_ne!(a.span, b.span);
        }
    }
    check_download(&cs, &up, &data).await;
    // Each journaled pack was checked once.
    let third = ChunkedContentStore::with_journal(
        ChunkCodec::compressed(),
        transport.clone(),
        packed(),
        Some(journal),
    )
    .unwrap();
    let again = third.upload(reader(&data)).await.unwrap();
    third.flush().await.unwrap();
    assert_eq!(again, up, "a third process finds everything in the journal");
    assert_eq!(third.stats().chunks_uploaded.load(Ordering::Relaxed), 0);
}
