//! Staged uploads and download hints: a content store may return from an
//! upload before its chunks are stored (they wait in a pack), so the engine
//! flushes it before every commit that carries content; and it tells the
//! store which chunks a window downloads, after what partial temporaries
//! already hold.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::World;
use stacksync_engine::io::{ByteReader, ByteWriter, Uploaded};
use stacksync_engine::sim::{DeviceLink, FakeServer};
use stacksync_engine::{ContentStore, EngineError, Remote};
use stacksync_proto::{
    ChangesPage, ChunkId, ChunkRef, CommitResult, ContentHash, DeviceId, Error, ErrorKind, ItemId,
    ItemName, ItemStatus, ProposedItem,
};

/// What a device did, in order.
#[derive(Debug, Clone)]
enum Event {
    Uploaded(Vec<ChunkId>),
    Flushed,
    Committed(Vec<ChunkId>),
    Hinted(Vec<ChunkRef>),
    Downloaded(Vec<ChunkRef>),
}

/// A device link that logs its calls (as server connection and as content
/// store) into one shared log.
struct Recorder {
    inner: DeviceLink,
    log: Mutex<Vec<Event>>,
}

impl Recorder {
    fn push(&self, e: Event) {
        self.log.lock().unwrap().push(e);
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[async_trait]
impl Remote for Recorder {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        self.inner.get_changes(since, limit).await
    }
    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        let ids = items.iter().flat_map(|i| &i.chunks).map(|c| c.id).collect();
        self.push(Event::Committed(ids));
        self.inner.commit(items).await
    }
}

#[async_trait]
impl ContentStore for Recorder {
    async fn upload(&self, content: ByteReader) -> Result<Uploaded, Error> {
        let up = self.inner.upload(content).await?;
        self.push(Event::Uploaded(up.chunks.iter().map(|c| c.id).collect()));
        Ok(up)
    }
    async fn flush(&self) -> Result<(), Error> {
        self.inner.flush().await?;
        self.push(Event::Flushed);
        Ok(())
    }
    fn expect_downloads(&self, chunks: &[ChunkRef]) {
        self.push(Event::Hinted(chunks.to_vec()));
    }
    async fn download(&self, chunks: &[ChunkRef], dest: &mut ByteWriter) -> Result<(), Error> {
        self.push(Event::Downloaded(chunks.to_vec()));
        self.inner.download(chunks, dest).await
    }
}

fn record(w: &mut World, i: usize) -> Arc<Recorder> {
    let rec = Arc::new(Recorder {
        inner: w.dev(i).link.clone(),
        log: Mutex::default(),
    });
    w.dev(i).content = Some(rec.clone());
    w.dev(i).remote = Some(rec.clone());
    rec
}

#[tokio::test]
async fn every_commit_with_content_comes_after_a_flush_of_its_uploads() {
    let mut w = World::with_chunk_size(2, 16);
    let rec = record(&mut w, 0);
    for i in 0..30 {
        w.dev(0).write(
            &format!("d{}/f{i}.txt", i % 3),
            format!("file number {i}, a few chunks long").as_bytes(),
        );
    }
    w.sync(0).await;
    w.dev(0)
        .write("d0/f0.txt", b"edited, and longer than it was before");
    w.dev(0).write("d1/new.txt", b"another one");
    w.sync(0).await;
    let (mut uploaded, mut durable) = (HashSet::new(), HashSet::new());
    let mut commits_with_content = 0;
    for e in rec.take() {
        match e {
            Event::Uploaded(ids) => uploaded.extend(ids),
            Event::Flushed => durable.extend(uploaded.drain()),
            Event::Committed(ids) if !ids.is_empty() => {
                commits_with_content += 1;
                let early: Vec<_> = ids.iter().filter(|id| !durable.contains(*id)).collect();
                assert!(early.is_empty(), "committed before a flush: {early:?}");
            }
            _ => {}
        }
    }
    assert!(commits_with_content >= 2, "{commits_with_content} commits");
    w.converge().await;
}

#[tokio::test]
async fn a_failed_flush_stops_the_round_and_the_next_sync_uploads_again() {
    let mut w = World::with_chunk_size(2, 16);
    for i in 0..5 {
        w.dev(0)
            .write(&format!("f{i}.txt"), format!("some content {i}").as_bytes());
    }
    w.dev(0).link.fail_next_flush();
    let err = w.dev(0).try_sync().await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Remote { source, .. } if source.kind == ErrorKind::Unavailable),
        "{err}"
    );
    assert!(w.server.latest().is_empty(), "something was committed");
    assert_eq!(w.server.commit_calls(), 0);
    assert_eq!(w.server.chunk_uploads(), 0);
    // The next run stages the chunks again and commits them.
    w.converge().await;
    assert_eq!(w.server.latest().len(), 5);
    assert_eq!(
        w.dev(1).read("f4.txt").as_deref(),
        Some(&b"some content 4"[..])
    );
}

fn proposal(name: &str, data: &[u8], chunks: Vec<ChunkRef>) -> ProposedItem {
    ProposedItem {
        id: ItemId::new(),
        parent: None,
        name: ItemName::new(name).unwrap(),
        is_folder: false,
        mimetype: None,
        status: ItemStatus::New,
        version: 1,
        content_hash: Some(ContentHash(*blake3::hash(data).as_bytes())),
        size: data.len() as u64,
        client_modified: 0,
        chunks,
        record: None,
    }
}

#[tokio::test]
async fn the_simulated_server_refuses_chunks_that_were_never_flushed() {
    let server = FakeServer::new(4);
    let link = server.device(DeviceId::new());
    let data = b"twelve bytes";
    let up = link
        .upload(ByteReader::new(std::io::Cursor::new(data.to_vec())))
        .await
        .unwrap();
    assert_eq!(up.chunks.len(), 3);
    assert_eq!(link.staged_chunks(), 3);
    let err = link
        .commit(vec![proposal("a", data, up.chunks.clone())])
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Internal, "{err}");
    assert!(server.latest().is_empty(), "applied anyway");
    // Another device's flush does not store this device's chunks.
    server.device(DeviceId::new()).flush().await.unwrap();
    assert!(
        link.commit(vec![proposal("a", data, up.chunks.clone())])
            .await
            .is_err()
    );
    // A failed flush forgets what it held.
    link.fail_next_flush();
    assert!(link.flush().await.is_err());
    assert_eq!(link.staged_chunks(), 0);
    assert_eq!(server.chunk_uploads(), 0);
    let up = link
        .upload(ByteReader::new(std::io::Cursor::new(data.to_vec())))
        .await
        .unwrap();
    link.flush().await.unwrap();
    assert_eq!(server.chunk_uploads(), 3);
    let result = link
        .commit(vec![proposal("a", data, up.chunks)])
        .await
        .unwrap();
    assert_eq!(result.revision, 1);
}

#[tokio::test]
async fn downloads_are_announced_after_what_partial_temporaries_hold() {
    let mut w = World::with_chunk_size(2, 1000);
    let mut rng = stacksync_engine::sim::SimRng::new(5);
    let data: Vec<u8> = (0..40_000).map(|_| rng.next_u64() as u8).collect();
    w.dev(0).write("big.bin", &data);
    for i in 0..3 {
        w.dev(0)
            .write(&format!("small{i}.txt"), format!("small {i}").as_bytes());
    }
    w.sync(0).await;
    let rec = record(&mut w, 1);
    // The download of the 40-chunk file crashes after 20 chunks are on disk.
    w.dev(1).fs.crash_after_bytes(20_000);
    assert!(w.dev(1).try_sync().await.is_err());
    let first: Vec<ChunkRef> = rec
        .take()
        .into_iter()
        .filter_map(|e| match e {
            Event::Hinted(c) => Some(c),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(first.len(), 43, "every chunk of the four files: {first:?}");
    w.dev(1).stop();
    w.dev(1).fs.recover();
    w.sync(1).await;
    let (mut hinted, mut downloaded) = (Vec::new(), Vec::new());
    for e in rec.take() {
        match e {
            Event::Hinted(c) => hinted.extend(c),
            Event::Downloaded(c) => downloaded.extend(c),
            _ => {}
        }
    }
    // The 20 chunks of the big file on disk are neither announced nor
    // fetched again; what is announced is what is fetched.
    let big: HashSet<ChunkId> = w
        .server
        .latest()
        .into_iter()
        .find(|m| m.name.as_str() == "big.bin")
        .unwrap()
        .chunks
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(hinted.iter().filter(|c| big.contains(&c.id)).count(), 20);
    hinted.sort_by_key(|c| c.id);
    downloaded.sort_by_key(|c| c.id);
    assert_eq!(hinted, downloaded);
    assert_eq!(w.dev(1).read("big.bin").as_deref(), Some(&data[..]));
}
