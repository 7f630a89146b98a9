//! Download read-ahead: when the engine announces the chunks a window will
//! download ([`stacksync_engine::ContentStore::expect_downloads`]), the
//! chunks of each pack are grouped, neighbours merged into ranges (small
//! gaps are read through: a request costs far more than a few KiB), and the
//! ranges fetched in the background, a bounded number at a time and a
//! bounded number of bytes in all. Downloads then take their chunks from
//! there; anything not read ahead (beyond the budget, dropped by a newer
//! hint, or failed) is fetched on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use stacksync_proto::{ChunkId, ChunkRef, Error as ProtoError, PackSpan};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

use super::{ChunkTransport, TokenBucket};

/// Limits of the read-ahead.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RangeLimits {
    /// Largest gap between two spans read through as one range.
    pub gap: u64,
    /// Largest range.
    pub max_range: u64,
    /// Most bytes read ahead per hint.
    pub budget: u64,
}

/// One range read of a pack and the chunks it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RangeRead {
    pub pack: ChunkId,
    pub offset: u64,
    pub len: u64,
    /// The chunks inside, with how many times the hint names each.
    pub chunks: Vec<(ChunkId, PackSpan, usize)>,
}

/// The chunks of one pack a hint names: where each is, and how often.
type SpanUses = HashMap<ChunkId, (PackSpan, usize)>;

/// Groups the packed chunks of `chunks` into range reads, in the order the
/// hint first names them, until the byte budget is spent. Chunks stored on
/// their own (no span) are left to be fetched on demand.
pub(crate) fn plan_ranges(chunks: &[ChunkRef], limits: RangeLimits) -> Vec<RangeRead> {
    // Per pack: its spans (each chunk once, with its uses) and the
    // position of its first mention.
    let mut packs: HashMap<ChunkId, (usize, SpanUses)> = HashMap::new();
    for (at, c) in chunks.iter().enumerate() {
        let Some(span) = c.span else { continue };
        let (_, spans) = packs
            .entry(span.pack)
            .or_insert_with(|| (at, HashMap::new()));
        spans.entry(c.id).or_insert((span, 0)).1 += 1;
    }
    let mut ranges: Vec<(usize, RangeRead)> = Vec::new();
    for (pack, (first, spans)) in packs {
        let mut spans: Vec<(ChunkId, PackSpan, usize)> =
            spans.into_iter().map(|(id, (s, n))| (id, s, n)).collect();
        spans.sort_by_key(|(id, s, _)| (s.offset, s.len, *id));
        let mut current: Option<RangeRead> = None;
        for (id, span, uses) in spans {
            if let Some(r) = &mut current {
                let end = r.offset + r.len;
                let near = span.offset <= end.saturating_add(limits.gap);
                let new_end = end.max(span.end());
                if near && span.offset >= r.offset && new_end - r.offset <= limits.max_range {
                    r.len = new_end - r.offset;
                    r.chunks.push((id, span, uses));
                    continue;
                }
                ranges.push((first, current.take().expect("checked just above")));
            }
            current = Some(RangeRead {
                pack,
                offset: span.offset,
                len: u64::from(span.len),
                chunks: vec![(id, span, uses)],
            });
        }
        ranges.extend(current.map(|r| (first, r)));
    }
    ranges.sort_by_key(|(first, r)| (*first, r.offset));
    let mut spent = 0u64;
    ranges
        .into_iter()
        .map(|(_, r)| r)
        .take_while(|r| {
            spent += r.len;
            spent <= limits.budget
        })
        .collect()
}

/// A range being read, shared by the chunks inside it.
type PendingRange = Shared<BoxFuture<'static, Result<Bytes, ProtoError>>>;

struct Slot {
    span: PackSpan,
    range_offset: u64,
    range: PendingRange,
    /// Downloads still expected to take this chunk.
    uses: usize,
}

#[derive(Default)]
struct Hint {
    slots: HashMap<ChunkId, Slot>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Hint {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The read-ahead of one store; shared by its clones.
pub(crate) struct ReadAhead {
    transport: Arc<dyn ChunkTransport>,
    limit: Option<Arc<TokenBucket>>,
    limits: RangeLimits,
    slots: Arc<Semaphore>,
    hint: Mutex<Hint>,
}

/// A chunk being read ahead: resolve it with [`Taken::bytes`].
pub(crate) struct Taken {
    span: PackSpan,
    range_offset: u64,
    range: PendingRange,
}

impl Taken {
    /// The chunk's encoded bytes, once its range has arrived.
    pub(crate) async fn bytes(self) -> Result<Bytes, ProtoError> {
        let range = self.range.await?;
        let start = (self.span.offset - self.range_offset) as usize;
        let end = start + self.span.len as usize;
        if end > range.len() {
            return Err(ProtoError::internal(format!(
                "a range of pack {} ended before chunk bytes {}..{}",
                self.span.pack,
                self.span.offset,
                self.span.end()
            )));
        }
        Ok(range.slice(start..end))
    }
}

impl ReadAhead {
    pub(crate) fn new(
        transport: Arc<dyn ChunkTransport>,
        limit: Option<Arc<TokenBucket>>,
        limits: RangeLimits,
        parallel: usize,
    ) -> ReadAhead {
        ReadAhead {
            transport,
            limit,
            limits,
            slots: Arc::new(Semaphore::new(parallel.max(1))),
            hint: Mutex::default(),
        }
    }

    /// Starts reading the ranges of `chunks` ahead, dropping what is left
    /// of the previous hint. Without a runtime (never the case in the
    /// client) the hint is ignored.
    pub(crate) fn expect(&self, chunks: &[ChunkRef]) {
        let mut next = Hint::default();
        if tokio::runtime::Handle::try_current().is_ok() {
            for read in plan_ranges(chunks, self.limits) {
                self.start(read, &mut next);
            }
        }
        // The old hint's unfinished reads are aborted as it drops; its
        // waiting downloads then fetch their chunks on their own.
        let old = std::mem::replace(&mut *self.lock(), next);
        drop(old);
    }

    fn start(&self, read: RangeRead, hint: &mut Hint) {
        let transport = Arc::clone(&self.transport);
        let limit = self.limit.clone();
        let slots = Arc::clone(&self.slots);
        let (pack, offset, len) = (read.pack, read.offset, read.len);
        let task = tokio::spawn(async move {
            let _slot = slots
                .acquire_owned()
                .await
                .map_err(|_| ProtoError::internal("read-ahead closed"))?;
            // A range is at most `max_range` bytes, far below u32::MAX.
            let len = u32::try_from(len)
                .map_err(|_| ProtoError::internal(format!("range of {len} bytes")))?;
            let bytes = transport.get_range(&pack, offset, len).await?;
            if let Some(limit) = &limit {
                limit.take(bytes.len() as u64).await;
            }
            Ok(bytes)
        });
        hint.tasks.push(task.abort_handle());
        let range: PendingRange = async move {
            task.await
                .map_err(|e| ProtoError::internal(format!("read-ahead stopped: {e}")))?
        }
        .boxed()
        .shared();
        for (id, span, uses) in read.chunks {
            hint.slots.insert(
                id,
                Slot {
                    span,
                    range_offset: read.offset,
                    range: range.clone(),
                    uses,
                },
            );
        }
    }

    /// The read-ahead of `chunk`, if it is being (or was) read ahead at
    /// the same place.
    pub(crate) fn take(&self, chunk: &ChunkRef) -> Option<Taken> {
        let span = chunk.span?;
        let mut hint = self.lock();
        let slot = hint.slots.get_mut(&chunk.id).filter(|s| s.span == span)?;
        slot.uses = slot.uses.saturating_sub(1);
        let taken = Taken {
            span,
            range_offset: slot.range_offset,
            range: slot.range.clone(),
        };
        if slot.uses == 0 {
            // The range's bytes are freed once its last chunk is taken.
            hint.slots.remove(&chunk.id);
        }
        Some(taken)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Hint> {
        // Poisoning only means a panic mid-update; the worst outcome of a
        // half-updated hint is a chunk fetched on its own.
        self.hint.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    fn packed(n: u8, pack: u8, offset: u64, len: u32) -> ChunkRef {
        ChunkRef {
            id: id(n),
            size: len,
            span: Some(PackSpan {
                pack: id(pack),
                offset,
                len,
                base: None,
            }),
        }
    }

    const LIMITS: RangeLimits = RangeLimits {
        gap: 100,
        max_range: 1000,
        budget: 10_000,
    };

    fn shape(reads: &[RangeRead]) -> Vec<(u8, u64, u64, usize)> {
        reads
            .iter()
            .map(|r| (r.pack.0[0], r.offset, r.len, r.chunks.len()))
            .collect()
    }

    #[test]
    fn neighbours_merge_across_small_gaps_only() {
        let chunks = [
            packed(1, 200, 0, 100),
            packed(2, 200, 150, 100),   // gap 50: merged
            packed(3, 200, 400, 100),   // gap 150: a new range
            ChunkRef::whole(id(4), 10), // on demand
        ];
        assert_eq!(
            shape(&plan_ranges(&chunks, LIMITS)),
            vec![(200, 0, 250, 2), (200, 400, 100, 1)]
        );
    }

    #[test]
    fn ranges_stay_bounded_and_follow_the_hint_order() {
        // Out of order in the hint, and more than one range's worth.
        let chunks: Vec<ChunkRef> = (0..6u8)
            .rev()
            .map(|i| packed(i, 201, u64::from(i) * 400, 400))
            .chain([packed(9, 100, 0, 10)])
            .collect();
        // Pack 201 is named first; its ranges go in offset order, each at
        // most 1000 bytes (two chunks of 400).
        assert_eq!(
            shape(&plan_ranges(&chunks, LIMITS)),
            vec![
                (201, 0, 800, 2),
                (201, 800, 800, 2),
                (201, 1600, 800, 2),
                (100, 0, 10, 1)
            ]
        );
    }

    #[test]
    fn the_budget_stops_the_read_ahead_and_repeats_count_as_uses() {
        let chunks = [
            packed(1, 200, 0, 600),
            packed(1, 200, 0, 600),
            packed(2, 201, 0, 600),
        ];
        let limits = RangeLimits {
            budget: 1000,
            ..LIMITS
        };
        let reads = plan_ranges(&chunks, limits);
        assert_eq!(shape(&reads), vec![(200, 0, 600, 1)]);
        assert_eq!(reads[0].chunks[0].2, 2);
    }
}
