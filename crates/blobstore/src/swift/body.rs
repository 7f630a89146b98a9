//! Request and response bodies for Swift: a PUT body that can be replayed
//! on retry while it streams, and a GET body whose MD5 is checked against
//! the ETag as it ends.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use crate::error::{BlobError, BlobErrorKind, Result};
use crate::store::{ByteStream, MAX_OBJECT_SIZE};

/// Pieces at least this large are hashed off the async runtime.
const BLOCKING_HASH_MIN: usize = 128 * 1024;

async fn md5_piece(mut hasher: Md5, piece: Bytes) -> Result<Md5> {
    if piece.len() < BLOCKING_HASH_MIN {
        hasher.update(&piece);
        return Ok(hasher);
    }
    tokio::task::spawn_blocking(move || {
        hasher.update(&piece);
        hasher
    })
    .await
    .map_err(|e| BlobError::new(BlobErrorKind::Io, format!("hashing task failed: {e}")))
}

/// Lower-case hex MD5 of `data`, as Swift's ETag spells it.
pub async fn md5_hex(data: Bytes) -> Result<String> {
    Ok(hex::encode(md5_piece(Md5::new(), data).await?.finalize()))
}

struct Spool {
    source: ByteStream,
    /// Every piece pulled from `source` so far. `Bytes` are reference
    /// counted, so keeping them costs no copy; at most MAX_OBJECT_SIZE.
    recorded: Vec<Bytes>,
    len: u64,
    md5: Option<Md5>,
    finished: Option<String>,
    /// Set when the caller's own stream failed (its kind, e.g. `TooLarge`
    /// from a caller's own limit, and message): not a reason to retry.
    source_error: Option<(BlobErrorKind, String)>,
}

/// A PUT body that streams from the caller's source on the first attempt
/// and replays what it has already sent (then continues from the source) on
/// later attempts. Without it a streamed upload could not be retried; with
/// it, the memory held is at most the object (chunks are small).
#[derive(Clone)]
pub struct ReplayBody {
    spool: Arc<tokio::sync::Mutex<Spool>>,
}

impl ReplayBody {
    /// Wraps the caller's stream.
    pub fn new(source: ByteStream) -> ReplayBody {
        ReplayBody {
            spool: Arc::new(tokio::sync::Mutex::new(Spool {
                source,
                recorded: Vec::new(),
                len: 0,
                md5: Some(Md5::new()),
                finished: None,
                source_error: None,
            })),
        }
    }

    /// A fresh stream for one attempt, starting from the first byte.
    pub fn attempt(&self) -> reqwest::Body {
        let stream =
            futures::stream::try_unfold((self.spool.clone(), 0usize), |(spool, idx)| async move {
                let mut s = spool.lock().await;
                if let Some(piece) = s.recorded.get(idx).cloned() {
                    drop(s);
                    return Ok(Some((piece, (spool, idx + 1))));
                }
                if s.finished.is_some() {
                    return Ok(None);
                }
                match s.source.next().await {
                    Some(Ok(piece)) => {
                        s.len += piece.len() as u64;
                        if s.len > MAX_OBJECT_SIZE {
                            let msg = format!("object exceeds {MAX_OBJECT_SIZE} bytes");
                            s.source_error = Some((BlobErrorKind::TooLarge, msg.clone()));
                            return Err(BlobError::new(BlobErrorKind::TooLarge, msg));
                        }
                        let hasher = s.md5.take().unwrap_or_default();
                        s.md5 = Some(md5_piece(hasher, piece.clone()).await?);
                        s.recorded.push(piece.clone());
                        drop(s);
                        Ok(Some((piece, (spool, idx + 1))))
                    }
                    Some(Err(e)) => {
                        s.source_error = Some((e.kind, e.message.clone()));
                        Err(e)
                    }
                    None => {
                        let digest = s.md5.take().unwrap_or_default().finalize();
                        s.finished = Some(hex::encode(digest));
                        Ok(None)
                    }
                }
            });
        reqwest::Body::wrap_stream(stream)
    }

    /// The caller's stream failed (or was too large): the upload must not be retried.
    pub async fn source_error(&self) -> Option<BlobError> {
        let s = self.spool.lock().await;
        s.source_error
            .as_ref()
            .map(|(kind, m)| BlobError::new(*kind, format!("object body failed: {m}")))
    }

    /// Length and MD5 hex of the whole body, after a successful attempt.
    /// hyper stops polling a body once it has sent `Content-Length` bytes,
    /// so the source's end may not have been seen yet: see it here.
    pub async fn finish(&self) -> Result<(u64, String)> {
        let mut s = self.spool.lock().await;
        while s.finished.is_none() {
            match s.source.next().await {
                Some(Ok(piece)) if piece.is_empty() => {}
                Some(Ok(_)) => {
                    return Err(BlobError::new(
                        BlobErrorKind::Protocol,
                        "body longer than the Content-Length that was sent",
                    ));
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let digest = s.md5.take().unwrap_or_default().finalize();
                    s.finished = Some(hex::encode(digest));
                }
            }
        }
        Ok((s.len, s.finished.clone().unwrap_or_default()))
    }
}

impl ReplayBody {
    /// Length and MD5 hex of the whole body when an attempt was refused
    /// before it was all sent (Swift may answer 412 without reading the
    /// body): the rest of the source is read and hashed, not kept, and is
    /// still bounded by [`MAX_OBJECT_SIZE`].
    pub async fn digest_rest(&self) -> Result<(u64, String)> {
        let mut s = self.spool.lock().await;
        while s.finished.is_none() {
            match s.source.next().await {
                Some(Ok(piece)) => {
                    s.len += piece.len() as u64;
                    if s.len > MAX_OBJECT_SIZE {
                        return Err(BlobError::new(
                            BlobErrorKind::TooLarge,
                            format!("object exceeds {MAX_OBJECT_SIZE} bytes"),
                        ));
                    }
                    let hasher = s.md5.take().unwrap_or_default();
                    s.md5 = Some(md5_piece(hasher, piece).await?);
                }
                Some(Err(e)) => return Err(e),
                None => {
                    let digest = s.md5.take().unwrap_or_default().finalize();
                    s.finished = Some(hex::encode(digest));
                }
            }
        }
        Ok((s.len, s.finished.clone().unwrap_or_default()))
    }
}

/// Strips the quotes some Swift versions put around ETags.
pub fn etag_of(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_ascii_lowercase())
}

/// Turns a GET response into a [`ByteStream`]. With `expected_md5` the
/// body's MD5 is compared as it ends, and a mismatch is the last item.
/// `guard` (a concurrency permit) lives as long as the stream.
pub fn response_stream<G: Send + 'static>(
    resp: reqwest::Response,
    expected_md5: Option<String>,
    what: String,
    guard: G,
) -> ByteStream {
    let body = resp.bytes_stream().map_err({
        let what = what.clone();
        move |e| BlobError::with_source(BlobErrorKind::Unavailable, format!("read {what}: {e}"), e)
    });
    let state = (Box::pin(body), Some(Md5::new()), expected_md5, what, guard);
    Box::pin(futures::stream::try_unfold(
        state,
        |(mut body, mut md5, expected, what, guard)| async move {
            match body.try_next().await? {
                Some(piece) => {
                    if expected.is_some() {
                        let hasher = md5.take().unwrap_or_default();
                        md5 = Some(md5_piece(hasher, piece.clone()).await?);
                    }
                    Ok(Some((piece, (body, md5, expected, what, guard))))
                }
                None => {
                    if let (Some(expected), Some(hasher)) = (expected, md5.take()) {
                        let actual = hex::encode(hasher.finalize());
                        if actual != expected {
                            return Err(BlobError::new(
                                BlobErrorKind::Integrity,
                                format!("{what}: body MD5 {actual} does not match ETag {expected}"),
                            ));
                        }
                    }
                    Ok(None)
                }
            }
        },
    ))
}
