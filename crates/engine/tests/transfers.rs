//! Throughput features: batched commits, parallel uploads and downloads,
//! and refusals that retrying cannot fix.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use common::World;
use stacksync_engine::ContentStore;
use stacksync_engine::io::{ByteReader, ByteWriter, Uploaded};
use stacksync_engine::sim::DeviceLink;
use stacksync_proto::{ChunkRef, Error};

/// A content store that records how many uploads and downloads were in
/// flight at once. Each call yields to the scheduler a few times before
/// doing its work, as a network transfer would, so that calls started
/// together overlap.
struct InFlight {
    inner: DeviceLink,
    uploads: Gauge,
    downloads: Gauge,
}

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    async fn around<T>(&self, work: impl Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let out = work.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        out
    }

    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ContentStore for InFlight {
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, Error> {
        self.uploads.around(self.inner.upload(content)).await
    }
    async fn flush(&self) -> Result<(), Error> {
        self.inner.flush().await
    }
    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), Error> {
        self.downloads
            .around(self.inner.download(chunks, dest))
            .await
    }
}

fn observed(w: &mut World, i: usize) -> Arc<InFlight> {
    let store = Arc::new(InFlight {
        inner: w.dev(i).link.clone(),
        uploads: Gauge::default(),
        downloads: Gauge::default(),
    });
    w.dev(i).content = Some(store.clone());
    store
}

#[tokio::test]
async fn many_new_files_are_committed_in_few_commit_calls() {
    let mut w = World::new(2);
    for i in 0..200 {
        w.dev(0).write(
            &format!("d{}/f{i}.txt", i % 4),
            format!("file {i}").as_bytes(),
        );
    }
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.applied, 204, "{r:#?}");
    // 4 folders and 200 files: one batch, where one call per item was 204.
    assert_eq!(w.server.commit_calls(), 1);
    assert_eq!(w.server.largest_batch(), 204);
    w.converge().await;
    assert_eq!(
        w.dev(1).read("d3/f199.txt").as_deref(),
        Some(&b"file 199"[..])
    );
}

#[tokio::test]
async fn a_large_first_sync_commits_in_windows_so_others_start_early() {
    let mut w = World::new(2);
    // 12 files of 8 MiB: 96 MiB, more than one 32 MiB transfer window.
    for i in 0..12u8 {
        w.dev(0).write(&format!("big/f{i}.bin"), &vec![i; 8 << 20]);
    }
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.applied, 13, "{r:#?}");
    // Windows of at most 32 MiB: the first files are committed (and other
    // devices notified) while later ones are still to be uploaded.
    assert!(
        w.server.commit_calls() >= 3,
        "{} commit calls for 96 MiB",
        w.server.commit_calls()
    );
    w.converge().await;
    assert_eq!(w.dev(1).read("big/f11.bin"), Some(vec![11u8; 8 << 20]));
}

#[tokio::test]
async fn commit_batches_are_split_at_the_configured_size() {
    let mut w = World::new(2);
    w.dev(0).commit_batch = 50;
    for i in 0..120 {
        w.dev(0).write(
            &format!("d{}/f{i}.txt", i % 3),
            format!("file {i}").as_bytes(),
        );
    }
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.applied, 123);
    // 123 items in batches of at most 50: 3 calls (folders and files
    // whose parents are in an earlier batch alike).
    assert_eq!(w.server.commit_calls(), 3);
    assert_eq!(w.server.largest_batch(), 50);
    w.converge().await;
    assert_eq!(w.server.latest().len(), 123, "an item was committed twice");
}

#[tokio::test]
async fn uploads_and_downloads_run_concurrently_up_to_the_limit() {
    let mut w = World::new(2);
    w.dev(0).transfers = 4;
    w.dev(1).transfers = 3;
    let up = observed(&mut w, 0);
    let down = observed(&mut w, 1);
    for i in 0..20 {
        // Into folders that the downloading device does not have yet.
        w.dev(0).write(
            &format!("new/f{}/{i}.txt", i % 2),
            format!("content {i}").as_bytes(),
        );
    }
    w.sync(0).await;
    assert!(up.uploads.max() > 1, "uploads ran one at a time");
    assert!(
        up.uploads.max() <= 4,
        "more uploads than allowed: {}",
        up.uploads.max()
    );
    w.sync(1).await;
    assert!(down.downloads.max() > 1, "downloads ran one at a time");
    assert!(
        down.downloads.max() <= 3,
        "more downloads than allowed: {}",
        down.downloads.max()
    );
    // No temporary is left behind (the snapshots would differ).
    w.converge().await;
    assert_eq!(
        w.dev(1).read("new/f1/19.txt").as_deref(),
        Some(&b"content 19"[..])
    );
}

#[tokio::test]
async fn one_transfer_at_a_time_when_configured() {
    let mut w = World::new(2);
    w.dev(0).transfers = 1;
    w.dev(1).transfers = 1;
    let up = observed(&mut w, 0);
    let down = observed(&mut w, 1);
    for i in 0..10 {
        w.dev(0)
            .write(&format!("f{i}.txt"), format!("content {i}").as_bytes());
    }
    w.converge().await;
    assert_eq!(up.uploads.max(), 1);
    assert_eq!(down.downloads.max(), 1);
}

#[tokio::test]
async fn a_prefetched_download_finishes_after_a_crash_without_fetching_again() {
    let mut w = World::with_chunk_size(2, 100);
    for i in 0..6 {
        let data: Vec<u8> = (0..1000u32).map(|b| (b * 7 + i) as u8).collect();
        w.dev(0).write(&format!("a/f{i}.bin"), &data);
    }
    w.sync(0).await;
    // Device 1 creates "a" and fetches the six files into temporaries, then
    // crashes before putting more than a few in place.
    w.dev(1).fs.crash_after(9);
    assert!(w.dev(1).try_sync().await.is_err());
    w.dev(1).stop();
    w.dev(1).fs.recover();
    let fetched = w.server.chunk_downloads();
    assert_eq!(fetched, 60, "every chunk was fetched once before the crash");
    w.converge().await;
    assert_eq!(
        w.server.chunk_downloads(),
        fetched,
        "complete temporaries were fetched again"
    );
}

#[tokio::test]
async fn lost_reply_to_a_batch_is_recovered_without_duplicates() {
    let mut w = World::new(2);
    w.dev(0).write("keep/old.txt", b"old");
    w.dev(0).write("gone.txt", b"gone");
    w.converge().await;
    for i in 0..30 {
        w.dev(0).write(
            &format!("n{}/f{i}.txt", i % 3),
            format!("new {i}").as_bytes(),
        );
    }
    w.dev(0).write("keep/old.txt", b"edited");
    assert!(w.dev(0).fs.user_remove("gone.txt"));
    // The whole batch is applied by the server, then the reply is lost (as
    // if the client crashed before saving its state).
    w.dev(0).link.lose_next_reply();
    let calls = w.server.commit_calls();
    assert!(w.dev(0).try_sync().await.is_err());
    assert_eq!(w.server.commit_calls(), calls + 1, "not one batch");
    w.converge().await;
    let live = w
        .server
        .latest()
        .into_iter()
        .filter(|m| m.status.is_live())
        .count();
    // keep, keep/old.txt, 3 folders and 30 files.
    assert_eq!(live, 35, "the retry created items twice");
    assert_eq!(
        w.dev(1).read("keep/old.txt").as_deref(),
        Some(&b"edited"[..])
    );
    assert!(w.dev(1).read("gone.txt").is_none());
}

#[tokio::test]
async fn quota_refusal_is_reported_once_and_retried_after_the_file_changes() {
    let mut w = World::new(2);
    // Device syncs, not `w.sync`: a version refused for quota is the user's
    // to replace, and this test replaces them.
    w.server.set_quota(Some(100));
    w.dev(0).write("small.txt", b"small");
    w.dev(0).write("big.bin", &[7u8; 500]);
    let r = w.dev(0).sync().await;
    assert!(r.converged, "{r:#?}");
    let refused: Vec<String> = r.refused.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(refused, ["big.bin"]);
    assert!(r.refused[0].1.contains("quota"), "{:?}", r.refused);
    // Not retried while the file stays the same.
    let calls = w.server.commit_calls();
    let again = w.dev(0).sync().await;
    assert!(again.converged && again.applied == 0, "{again:#?}");
    assert_eq!(again.refused.len(), 1, "no longer reported: {again:#?}");
    assert_eq!(w.server.commit_calls(), calls, "a refused file was retried");
    // Made smaller, it is tried again and fits.
    w.dev(0).write("big.bin", &[7u8; 50]);
    let r = w.dev(0).sync().await;
    assert!(r.converged && r.refused.is_empty(), "{r:#?}");
    w.converge().await;
    assert_eq!(w.dev(1).read("big.bin").as_deref(), Some(&[7u8; 50][..]));

    // An edit of a synced file over the quota: reported, not looped on, and
    // the other device keeps the last version that fit.
    w.dev(0).write("big.bin", &[8u8; 500]);
    let r = w.dev(0).sync().await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    let calls = w.server.commit_calls();
    assert_eq!(w.dev(0).sync().await.applied, 0);
    assert_eq!(w.server.commit_calls(), calls, "a refused edit was retried");
    w.sync(1).await;
    assert_eq!(w.dev(1).read("big.bin").as_deref(), Some(&[7u8; 50][..]));
    // Space is freed; the next change of the file goes through.
    w.server.set_quota(None);
    w.dev(0).write("big.bin", &[9u8; 500]);
    w.converge().await;
    assert_eq!(w.dev(1).read("big.bin").as_deref(), Some(&[9u8; 500][..]));
    assert!(w.dev(0).sync().await.refused.is_empty());
}
