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
