//! Helpers shared by the client's integration tests.
#![allow(dead_code)]

use std::sync::Arc;

use stacksync_blobstore::{BlobStore, ContainerName, LocalStore};
use stacksync_client::{BlobTransport, ChunkedContentStore, TransferConfig};
use stacksync_content::{ChunkCodec, ChunkerConfig, PipelineConfig};

/// Deterministic pseudo-random bytes (BLAKE3 in XOF mode).
pub fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Small chunks, so that a few hundred KiB make many.
pub fn small_chunks() -> TransferConfig {
    TransferConfig {
        pipeline: PipelineConfig {
            chunker: ChunkerConfig::new(4096, 16384, 65536).expect("valid bounds"),
            workers: 2,
            max_in_flight: 0,
        },
        // Ask about every chunk, however small, so dedup is exercised.
        ask_min_bytes: 0,
        ..TransferConfig::default()
    }
}

/// A local blob store with one container, in `dir`.
pub async fn blob_store(dir: &std::path::Path) -> (Arc<dyn BlobStore>, ContainerName) {
    let store = LocalStore::open(dir.to_path_buf())
        .await
        .expect("open local store");
    let container = ContainerName::new("ws-test").expect("valid name");
    store
        .create_container(&container)
        .await
        .expect("create container");
    (Arc::new(store), container)
}

/// A content store over `store`'s container.
pub fn content_store(
    store: &Arc<dyn BlobStore>,
    container: &ContainerName,
    codec: ChunkCodec,
) -> ChunkedContentStore {
    let transport = Arc::new(BlobTransport::new(Arc::clone(store), container.clone()));
    ChunkedContentStore::new(codec, transport, small_chunks()).expect("valid config")
}

/// A transport to a local store that counts what it is asked, can fail or
/// hold a given PUT, and answers `locate_chunks` from an index the test
/// fills (standing in for the service's chunk index).
pub struct Probe {
    inner: BlobTransport,
    /// Names of the objects PUT so far, in call order (failed ones too).
    pub puts: std::sync::Mutex<Vec<stacksync_proto::ChunkId>>,
    pub ranges: std::sync::atomic::AtomicUsize,
    pub gets: std::sync::atomic::AtomicUsize,
    /// Bytes answered by `get_chunk` and `get_range`.
    pub got_bytes: std::sync::atomic::AtomicUsize,
    /// Ids asked about with `locate_chunks`.
    pub located: std::sync::atomic::AtomicUsize,
    /// Every PUT fails (`Unavailable`) while set.
    pub fail_puts: std::sync::atomic::AtomicBool,
    /// The PUT with this number (1-based) never answers.
    pub hold_put: Option<usize>,
    pub index: std::sync::Mutex<
        std::collections::HashMap<stacksync_proto::ChunkId, stacksync_proto::ChunkRef>,
    >,
}

impl Probe {
    pub fn new(store: &Arc<dyn BlobStore>, container: &ContainerName) -> Probe {
        Probe {
            inner: BlobTransport::new(Arc::clone(store), container.clone()),
            puts: Default::default(),
            ranges: Default::default(),
            gets: Default::default(),
            got_bytes: Default::default(),
            located: Default::default(),
            fail_puts: Default::default(),
            hold_put: None,
            index: Default::default(),
        }
    }

    /// What the service learns from a commit of these chunks.
    pub fn index(&self, chunks: &[stacksync_proto::ChunkRef]) {
        let mut index = self.index.lock().unwrap();
        for c in chunks {
            index.entry(c.id).or_insert(*c);
        }
    }

    pub fn count(counter: &std::sync::atomic::AtomicUsize) -> usize {
        counter.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl stacksync_client::ChunkTransport for Probe {
    async fn has_chunks(
        &self,
        ids: &[stacksync_proto::ChunkId],
    ) -> Result<Vec<bool>, stacksync_proto::Error> {
        self.inner.has_chunks(ids).await
    }

    async fn put_chunk(
        &self,
        id: &stacksync_proto::ChunkId,
        data: bytes::Bytes,
    ) -> Result<(), stacksync_proto::Error> {
        let n = {
            let mut puts = self.puts.lock().unwrap();
            puts.push(*id);
            puts.len()
        };
        if self.hold_put == Some(n) {
            // A PUT the process dies in the middle of.
            std::future::pending::<()>().await;
        }
        if self.fail_puts.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(stacksync_proto::Error::unavailable("PUT refused (test)"));
        }
        self.inner.put_chunk(id, data).await
    }

    async fn get_chunk(
        &self,
        id: &stacksync_proto::ChunkId,
    ) -> Result<bytes::Bytes, stacksync_proto::Error> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let got = self.inner.get_chunk(id).await?;
        self.got_bytes
            .fetch_add(got.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }

    async fn get_range(
        &self,
        id: &stacksync_proto::ChunkId,
        offset: u64,
        len: u32,
    ) -> Result<bytes::Bytes, stacksync_proto::Error> {
        self.ranges
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let got = self.inner.get_range(id, offset, len).await?;
        self.got_bytes
            .fetch_add(got.len(), std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }

    async fn locate_chunks(
        &self,
        ids: &[stacksync_proto::ChunkId],
    ) -> Result<Vec<Option<stacksync_proto::ChunkRef>>, stacksync_proto::Error> {
        self.located
            .fetch_add(ids.len(), std::sync::atomic::Ordering::SeqCst);
        let index = self.index.lock().unwrap();
        Ok(ids.iter().map(|id| index.get(id).copied()).collect())
    }

    async fn locate_bases(
        &self,
        ids: &[stacksync_proto::ChunkId],
    ) -> Result<Vec<Option<stacksync_proto::ChunkRef>>, stacksync_proto::Error> {
        self.inner.locate_bases(ids).await
    }
}

/// Downloads `up` from `cs` (checking the whole-file hash) and compares it
/// with `data`.
pub async fn check_download(
    cs: &ChunkedContentStore,
    up: &stacksync_engine::io::Uploaded,
    data: &[u8],
) {
    let mut out = Vec::new();
    cs.download_to(&up.chunks, &mut out, Some(up.hash))
        .await
        .expect("download");
    assert_eq!(out, data);
}
