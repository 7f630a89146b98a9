//! `ChunkedContentStore` over a local blob store.

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use stacksync_client::TransferError;
use stacksync_content::{ChunkCodec, WorkspaceKey};
use stacksync_engine::io::Uploaded;
use stacksync_engine::{ByteReader, ContentStore};
use stacksync_proto::ContentHash;

use common::{blob_store, bytes, content_store};

fn reader(data: &[u8]) -> ByteReader {
    Box::new(std::io::Cursor::new(data.to_vec()))
}

fn plain_hash(data: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(data).as_bytes())
}

async fn check_round_trip(codec: ChunkCodec, data: &[u8], min_chunks: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let cs = content_store(&store, &container, codec);
    let up: Uploaded = cs.upload(reader(data)).await.expect("upload");
    assert_eq!(up.size, data.len() as u64);
    assert_eq!(up.hash, plain_hash(data), "the engine's (unkeyed) hash");
    assert!(up.chunks.len() >= min_chunks, "{} chunks", up.chunks.len());
    assert_eq!(
        up.chunks.iter().map(|c| c.size as u64).sum::<u64>(),
        up.size
    );
    assert_eq!(
        store.list(&container).await.unwrap().len() as u64,
        cs.stats().chunks_uploaded.load(Ordering::Relaxed)
    );
    let mut out = Vec::new();
    cs.download_to(&up.chunks, &mut out, Some(up.hash))
        .await
        .expect("download");
    assert_eq!(out, data);
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
    let sent = cs.stats().chunks_uploaded.load(Ordering::Relaxed);
    assert_eq!(sent as usize, first.chunks.len());
    let second = cs.upload(reader(&data)).await.unwrap();
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
    let other = ChunkCodec::compressed()
        .encode(b"some other chunk")
        .unwrap();
    // The store's own checksum is fine: the substitution is only visible
    // to the codec's id check.
    store
        .put_bytes(&container, &up.chunks[1].id, Bytes::from(other.bytes))
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
    store.delete(&container, &up.chunks[0].id).await.unwrap();
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
    let mut out = Vec::new();
    cs.download_to(&up.chunks, &mut out, Some(up.hash))
        .await
        .unwrap();
    assert_eq!(out, data);
}

/// A transport that counts the chunk ids it was asked about.
struct CountingTransport {
    inner: stacksync_client::BlobTransport,
    asked: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl stacksync_client::ChunkTransport for CountingTransport {
    async fn has_chunks(
        &self,
        ids: &[stacksync_proto::ChunkId],
    ) -> Result<Vec<bool>, stacksync_proto::Error> {
        self.asked.fetch_add(ids.len(), Ordering::Relaxed);
        self.inner.has_chunks(ids).await
    }
    async fn put_chunk(
        &self,
        id: &stacksync_proto::ChunkId,
        data: Bytes,
    ) -> Result<(), stacksync_proto::Error> {
        self.inner.put_chunk(id, data).await
    }
    async fn get_chunk(
        &self,
        id: &stacksync_proto::ChunkId,
    ) -> Result<Bytes, stacksync_proto::Error> {
        self.inner.get_chunk(id).await
    }
}

#[tokio::test]
async fn small_chunks_are_sent_without_asking_and_large_ones_are_asked_about() {
    let dir = tempfile::tempdir().unwrap();
    let (store, container) = blob_store(dir.path()).await;
    let transport = std::sync::Arc::new(CountingTransport {
        inner: stacksync_client::BlobTransport::new(std::sync::Arc::clone(&store), container),
        asked: Default::default(),
    });
    let config = stacksync_client::TransferConfig {
        ask_min_bytes: 16 * 1024,
        ..common::small_chunks()
    };
    let cs = stacksync_client::ChunkedContentStore::new(
        ChunkCodec::compressed(),
        transport.clone(),
        config,
    )
    .unwrap();
    // A small file: one chunk under the threshold, sent without a question,
    // twice (the second time is a harmless idempotent re-send).
    let small = bytes("small", 10_000);
    cs.upload(reader(&small)).await.unwrap();
    cs.upload(reader(&small)).await.unwrap();
    assert_eq!(transport.asked.load(Ordering::Relaxed), 0);
    assert_eq!(cs.stats().chunks_uploaded.load(Ordering::Relaxed), 2);
    // A larger file: chunks of up to 64 KiB, the big ones asked about, and
    // on a second upload those are not sent again.
    let large = bytes("large", 600_000);
    let first = cs.upload(reader(&large)).await.unwrap();
    let asked = transport.asked.load(Ordering::Relaxed);
    assert!(asked > 0 && asked <= first.chunks.len(), "{asked} asked");
    let sent = cs.stats().chunks_uploaded.load(Ordering::Relaxed);
    cs.upload(reader(&large)).await.unwrap();
    let resent = cs.stats().chunks_uploaded.load(Ordering::Relaxed) - sent;
    assert_eq!(
        resent as usize,
        first.chunks.len() - asked,
        "only unasked chunks are re-sent"
    );
}
