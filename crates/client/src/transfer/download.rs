//! Download: chunks are fetched with bounded parallelism, in order, each
//! taken from the read-ahead ([`super::readahead`]) when it is there, else
//! fetched on its own (a range of its pack, or the object named by its
//! id); each is decoded on the blocking pool, which checks it against its
//! id, and its plaintext written.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use stacksync_content::delta;
use stacksync_proto::{ChunkId, ChunkRef, ContentHash, Error as ProtoError, PackSpan};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

use super::bases;
use super::readahead::ReadAhead;
use super::reuse::{Found, take_local};
use super::{ChunkedContentStore, TransferError};

impl ChunkedContentStore {
    /// Writes the plaintext of `chunks` to `dest`, checking every chunk
    /// against its id and size, and the whole file against `expected` when
    /// given. Does not flush or shut `dest` down.
    pub async fn download_to<W>(
        &self,
        chunks: &[ChunkRef],
        dest: &mut W,
        expected: Option<ContentHash>,
    ) -> Result<(), TransferError>
    where
        W: tokio::io::AsyncWrite + Unpin + ?Sized,
    {
        let mut hasher = blake3::Hasher::new();
        let mut fetched = futures::stream::iter(with_offsets(chunks))
            .map(|(c, at)| {
                let keep = bases::worth_keeping(at, c.size);
                AbortOnDrop(tokio::spawn(fetch_one(self.clone(), c, None, keep, None)))
            })
            .buffered(self.config.max_downloads.max(1));
        while let Some(plain) = fetched.try_next().await? {
            hasher.update(&plain);
            dest.write_all(&plain).await.map_err(TransferError::Write)?;
        }
        let actual = ContentHash(*hasher.finalize().as_bytes());
        match expected {
            Some(expected) if expected != actual => {
                Err(TransferError::HashMismatch { expected, actual })
            }
            _ => Ok(()),
        }
    }

    /// The encoded bytes of one chunk: read ahead (by `own`, else by the
    /// store's read-ahead), or fetched now.
    async fn encoded(
        &self,
        chunk: &ChunkRef,
        own: Option<&ReadAhead>,
    ) -> Result<Bytes, TransferError> {
        let ahead = match own {
            Some(own) => own.take(chunk),
            None => self.readahead.take(chunk),
        };
        if let Some(ahead) = ahead {
            match ahead.bytes().await {
                Ok(bytes) => return Ok(bytes),
                // Dropped by a newer hint, or the range read failed: the
                // chunk alone is tried, and its own error reported.
                Err(e) => tracing::debug!("read-ahead of chunk {} not used: {e}", chunk.id),
            }
        }
        let fetched = match chunk.span {
            Some(span) => {
                check_span(&span)?;
                self.transport
                    .get_range(&span.pack, span.offset, span.len)
                    .await
            }
            None => self.transport.get_chunk(&chunk.id).await,
        };
        let encoded = fetched.map_err(|source| TransferError::Transport {
            doing: format!("downloading chunk {}", chunk.id),
            source,
        })?;
        if let Some(limit) = &self.download_limit {
            limit.take(encoded.len() as u64).await;
        }
        Ok(encoded)
    }
}

/// Refuses a span no pack can hold before asking for it (it comes from
/// the service, and sizes what is read into memory).
fn check_span(span: &PackSpan) -> Result<(), TransferError> {
    if span.len == 0
        || span.len > stacksync_proto::MAX_ENCODED_CHUNK
        || span.end() > PackSpan::MAX_PACK_BYTES
    {
        return Err(TransferError::Transport {
            doing: format!(
                "downloading bytes {}..{} of pack {}",
                span.offset,
                span.end(),
                span.pack
            ),
            source: ProtoError::bad_request("no pack can hold such a chunk"),
        });
    }
    Ok(())
}

/// Each chunk with the offset in its file where it starts.
pub(super) fn with_offsets(chunks: &[ChunkRef]) -> Vec<(ChunkRef, u64)> {
    let mut at = 0u64;
    chunks
        .iter()
        .map(|c| {
            let start = at;
            at += u64::from(c.size);
            (*c, start)
        })
        .collect()
}

/// Fetches and decodes one chunk (read ahead by `own` if given); a chunk
/// stored as a delta is applied to its base (see
/// [`ChunkedContentStore::base_plain`], which looks in `local` first).
/// With `keep`, a chunk read whole is kept in the base cache.
///
/// A chunk that does not check out where the chunk list said it is
/// stored is asked for once more where the service's chunk index says it
/// is now (`locate_chunks`): a location remembered from an old listing, or
/// one a hostile server made up, then does not keep the file from ever
/// downloading. What is read is checked against the id either way.
pub(super) async fn fetch_one(
    store: ChunkedContentStore,
    chunk: ChunkRef,
    own: Option<Arc<ReadAhead>>,
    keep: bool,
    local: Option<Arc<Found>>,
) -> Result<Bytes, TransferError> {
    let first = fetch_at(store.clone(), chunk, own, keep, local.clone()).await;
    let Err(TransferError::Damaged { .. }) = &first else {
        return first;
    };
    let Some(span) = chunk.span else {
        return first;
    };
    let located = match store.transport.locate_chunks(&[chunk.id]).await {
        Ok(found) => found.into_iter().next().flatten(),
        Err(_) => None,
    };
    match located {
        Some(at) if at.id == chunk.id && at.span.is_some_and(|s| s != span) => {
            let elsewhere = ChunkRef {
                span: at.span,
                ..chunk
            };
            fetch_at(store, elsewhere, None, keep, local).await
        }
        _ => first,
    }
}

async fn fetch_at(
    store: ChunkedContentStore,
    chunk: ChunkRef,
    own: Option<Arc<ReadAhead>>,
    keep: bool,
    local: Option<Arc<Found>>,
) -> Result<Bytes, TransferError> {
    let encoded = store.encoded(&chunk, own.as_deref()).await?;
    let base = chunk.span.and_then(|s| s.base);
    let base_plain = match base {
        Some(base) => {
            store
                .stats
                .deltas_downloaded
                .fetch_add(1, Ordering::Relaxed);
            Some(store.base_plain(base, &chunk, local.as_ref()).await?)
        }
        None => None,
    };
    let cache = store.bases.clone().filter(|_| keep && base.is_none());
    store
        .stats
        .chunks_downloaded
        .fetch_add(1, Ordering::Relaxed);
    store
        .stats
        .bytes_downloaded
        .fetch_add(encoded.len() as u64, Ordering::Relaxed);
    let codec = store.codec.clone();
    let plain = tokio::task::spawn_blocking(move || {
        let plain = match &base_plain {
            Some(base) => delta::apply(&codec, &chunk.id, base, &encoded),
            None => codec.decode(&chunk.id, &encoded),
        }?;
        // Kept only once it checked out.
        if let Some(cache) = cache {
            cache.put(&chunk.id, &encoded);
        }
        Ok(plain)
    })
    .await
    .map_err(|e| TransferError::Task(e.to_string()))?
    .map_err(|source| TransferError::Damaged {
        id: chunk.id,
        source,
    })?;
    if plain.len() != chunk.size as usize {
        return Err(TransferError::SizeMismatch {
            id: chunk.id,
            declared: chunk.size,
            actual: plain.len(),
        });
    }
    Ok(Bytes::from(plain))
}

impl ChunkedContentStore {
    /// The plaintext of chunk `base`, which `chunk` is stored as a delta
    /// against: from the local copy the download replaces (`local`), else
    /// from the base cache, else fetched from where the service says the
    /// workspace stores it whole. Checked against its id wherever it comes
    /// from.
    pub(super) async fn base_plain(
        &self,
        base: ChunkId,
        chunk: &ChunkRef,
        local: Option<&Arc<Found>>,
    ) -> Result<Vec<u8>, TransferError> {
        if let Some(found) = local
            && let Some(plain) = take_local(self, found, &ChunkRef::whole(base, 0)).await?
        {
            return Ok(plain.to_vec());
        }
        if let Some(cache) = self.bases.clone() {
            let codec = self.codec.clone();
            let cached = tokio::task::spawn_blocking(move || {
                let stored = cache.get(&base)?;
                let plain = codec.decode(&base, &stored).ok();
                if plain.is_none() {
                    cache.forget(&base);
                }
                plain
            })
            .await
            .map_err(|e| TransferError::Task(e.to_string()))?;
            if let Some(plain) = cached {
                return Ok(plain);
            }
        }
        let located = self
            .transport
            .locate_bases(&[base])
            .await
            .map_err(|source| TransferError::Transport {
                doing: format!("asking where base {base} of chunk {} is", chunk.id),
                source,
            })?;
        TransferError::check_answers(1, located.len())?;
        let Some(stored) = located
            .into_iter()
            .flatten()
            .find(|c| c.id == base && c.span.is_none_or(|s| s.base.is_none()))
        else {
            return Err(TransferError::Transport {
                doing: format!("reading base {base} of chunk {}", chunk.id),
                source: ProtoError::not_found("the workspace does not store the base whole"),
            });
        };
        let encoded = self.encoded(&stored, None).await?;
        let (codec, cache) = (self.codec.clone(), self.bases.clone());
        tokio::task::spawn_blocking(move || {
            let plain = codec.decode(&base, &encoded)?;
            if let Some(cache) = cache
                && plain.len() >= bases::MIN_BASE_CHUNK as usize
            {
                cache.put(&base, &encoded);
            }
            Ok(plain)
        })
        .await
        .map_err(|e| TransferError::Task(e.to_string()))?
        .map_err(|source| TransferError::Damaged { id: base, source })
    }
}

/// A spawned task that is cancelled if its result is no longer wanted (a
/// download that failed on an earlier chunk).
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<Result<T, TransferError>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, TransferError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or_else(|e| Err(TransferError::Task(e.to_string()))))
    }
}
