//! Commit operations, sent in batches: a run of consecutive `Commit`
//! operations of a plan becomes one [`crate::Remote::commit`] call.
//!
//! Proposals are built in plan order. A new item gets its client-chosen id
//! when its proposal is built, so a later item of the same batch can name
//! it as its parent (the server takes a batch's items in order). Outcomes
//! are then applied in plan order, exactly as single commits were, and the
//! state is saved once for the batch.
//!
//! Before a batch that carries content is sent, the content store is
//! flushed ([`crate::ContentStore::flush`]): uploads may have staged chunks
//! in pack objects not written yet, and a commit must never name a chunk
//! that is not stored.
//!
//! Before a batch is sent, its proposals are saved as an intent record
//! (`SyncState::pending`), cleared by the save of the outcomes. A crash
//! between the server's acceptance and that save loses nothing: the next
//! run reads the accepted versions from the change feed, finds the intent
//! record, and records the agreement each lost outcome would have recorded
//! (with the local stamp the proposal was made from). The user's edits and
//! renames since then are then planned as edits and moves of known items,
//! not as conflicts with our own versions or as new items. A proposal that
//! never landed is forgotten and planned again; a re-commit of a stored
//! version is idempotent on the server.

use std::collections::{BTreeMap, BTreeSet};

use stacksync_proto::{
    CommitOutcome, CommitRequest, ContentHash, ErrorKind, ItemId, ItemMeta, ItemStatus,
    ProposedItem,
};

use super::apply::{Outcome, item_level};
use super::prefetch::{NotUploaded, previous_chunks, upload_file};
use super::{Engine, Exec};
use crate::error::EngineError;
use crate::planner::{Key, Op, RemoteChange, path_in};
use crate::tree::{PendingCommit, Refusal, Stamp};

/// Most chunk references in one batch, which keeps a commit message well
/// under the wire limit (about 100 bytes each as JSON, against 16 MiB).
const MAX_BATCH_CHUNKS: usize = 50_000;

/// Hash, size and chunks of a version being committed.
type CommitContent = (Option<ContentHash>, u64, Vec<stacksync_proto::ChunkRef>);

/// A proposal and what its outcome needs.
struct Proposed {
    /// Index of the operation in the batch.
    op: usize,
    key: Key,
    item: ProposedItem,
    /// The new item whose parent is this item's parent, if that parent is
    /// itself new in this batch.
    parent_new: Option<u32>,
}

/// Whether a refusal is final for this content: retrying the same file
/// cannot succeed, so it is recorded and reported (and retried once the
/// file changes) instead of being retried round after round.
///
/// * `QuotaExceeded`: the account is full for this size of file.
/// * `Forbidden`: the item is not ours to write (another workspace's id,
///   a read-only share).
/// * `TooLarge`: the version is bigger than the server accepts.
///
/// Not final: `NotFound` (a parent created or deleted by someone else, the
/// change feed will tell), `BadRequest` (a name taken by an item not seen
/// yet, a folder not empty yet: the next plan resolves both), and anything
/// transient (`Unavailable`, `Internal`).
fn final_refusal(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::QuotaExceeded | ErrorKind::Forbidden | ErrorKind::TooLarge
    )
}

/// Whether `error` refuses `item` because a live sibling's name differs
/// from its name only in case or Unicode form (`Report.txt` beside
/// `report.txt`). Such a refusal is final like a quota refusal: both files
/// stay on this disk, the second is reported, and it is tried again once
/// it changes or is renamed. (An exact clash is a sibling not seen yet;
/// the feed brings it and the merge makes a conflicted copy.)
fn is_twin(error: &stacksync_proto::Error, item: &ProposedItem) -> bool {
    error.kind == ErrorKind::Conflict
        && error.current.as_deref().is_some_and(|c| {
            c.id != item.id
                && c.status.is_live()
                && c.parent == item.parent
                && c.name != item.name
                && c.name.fold_key() == item.name.fold_key()
        })
}

/// The intent record of a proposal made from a local entry with `stamp`.
fn intent(item: &ProposedItem, stamp: Option<Stamp>) -> PendingCommit {
    PendingCommit {
        version: item.version,
        parent: item.parent,
        name: item.name.clone(),
        is_folder: item.is_folder,
        content_hash: item.content_hash,
        size: item.size,
        deleted: !item.status.is_live(),
        stamp,
    }
}

impl Engine {
    /// Commits the leading run of `ops` (all `Commit`s) as one batch, or
    /// less of it (at most `commit_batch` items, [`MAX_BATCH_CHUNKS`]
    /// chunks, one operation per item). Returns the outcome of each
    /// operation taken, in order; at least one is taken.
    pub(super) async fn commit_batch(
        &mut self,
        exec: &mut Exec,
        ops: &[Op],
    ) -> Result<Vec<Outcome>, EngineError> {
        let max_items = self.config.commit_batch.clamp(1, CommitRequest::MAX_ITEMS);
        let mut outcomes: Vec<Option<Outcome>> = Vec::new();
        let mut proposed: Vec<Proposed> = Vec::new();
        let mut keys = BTreeSet::new();
        // Ids given to new items of this batch, not yet accepted.
        let mut pending: BTreeMap<u32, ItemId> = BTreeMap::new();
        let mut chunks = 0usize;
        for op in ops {
            let Op::Commit { key, change } = op else {
                break;
            };
            let full = proposed.len() >= max_items || chunks >= MAX_BATCH_CHUNKS;
            // A second change to one item needs the first one's outcome.
            if !outcomes.is_empty() && (full || keys.contains(key)) {
                break;
            }
            keys.insert(*key);
            let index = outcomes.len();
            match self.propose(exec, &pending, *key, change).await? {
                Ok((item, parent_new)) => {
                    if let Key::New(n) = key {
                        pending.insert(*n, item.id);
                    }
                    chunks += item.chunks.len();
                    outcomes.push(None);
                    proposed.push(Proposed {
                        op: index,
                        key: *key,
                        item,
                        parent_new,
                    });
                }
                Err(skip) => outcomes.push(Some(skip)),
            }
        }
        if !proposed.is_empty() {
            self.send(exec, proposed, &mut outcomes).await?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.expect("every proposal got an outcome from send"))
            .collect())
    }

    /// Sends one batch and applies its outcomes in order, then saves once.
    async fn send(
        &mut self,
        exec: &mut Exec,
        mut proposed: Vec<Proposed>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<(), EngineError> {
        // Uploads may have left chunks staged in packs not written yet; a
        // commit must never name a chunk that is not stored. A failure
        // stops the round before anything is sent (the next round uploads
        // again), so no intent is recorded for it; except a final refusal
        // (the server charges the quota when it stores the bytes, and a pack
        // holds the chunks of several files): the largest file of the batch
        // is refused like at commit time, the batch's other files wait for
        // the next plan (which packs them without it, so each round refuses
        // at least one file and the rest get through), and what carries no
        // content goes on.
        if proposed.iter().any(|p| !p.item.chunks.is_empty()) {
            let count = proposed.len();
            match self.io.content.flush().await {
                Ok(()) => {}
                Err(error) if final_refusal(error.kind) => {
                    let largest = proposed
                        .iter()
                        .filter(|p| !p.item.chunks.is_empty())
                        .max_by_key(|p| p.item.size)
                        .map(|p| p.item.id);
                    let (with_content, rest): (Vec<_>, Vec<_>) = proposed
                        .into_iter()
                        .partition(|p| !p.item.chunks.is_empty());
                    for p in with_content {
                        outcomes[p.op] = Some(if Some(p.item.id) == largest {
                            let outcome = CommitOutcome::Refused {
                                error: error.clone(),
                            };
                            self.commit_outcome(exec, &p, outcome, &BTreeSet::new())
                        } else {
                            Outcome::Replan(format!(
                                "content of {} not stored beside a refused file; sent again",
                                p.item.id
                            ))
                        });
                    }
                    proposed = rest;
                    self.save().await?;
                    if proposed.is_empty() {
                        return Ok(());
                    }
                }
                Err(source) => {
                    return Err(EngineError::Remote {
                        doing: format!("storing the content of {count} item(s)"),
                        source,
                    });
                }
            }
        }
        let items: Vec<ProposedItem> = proposed.iter().map(|p| p.item.clone()).collect();
        let count = items.len();
        // The intent first: if the server accepts the batch and we die
        // before saving its outcomes, the next run finds out from the feed
        // which proposals landed (see `SyncState::resolve_pending`).
        for p in &proposed {
            let stamp = match p.item.status {
                ItemStatus::Deleted => None,
                _ => exec.local.get(&p.key).map(|l| l.stamp),
            };
            self.state.pending.insert(p.item.id, intent(&p.item, stamp));
        }
        self.save().await?;
        tracing::debug!(items = count, "commit intent saved; sending commit batch");
        let result = self
            .io
            .remote
            .commit(items)
            .await
            .map_err(|source| EngineError::Remote {
                doing: format!("committing {count} item(s)"),
                source,
            })?;
        tracing::debug!(
            items = count,
            revision = result.revision,
            "commit batch answered; applying outcomes"
        );
        let mut by_id: BTreeMap<ItemId, CommitOutcome> = result
            .results
            .into_iter()
            .map(|r| (r.id, r.outcome))
            .collect();
        if let Some(p) = proposed.iter().find(|p| !by_id.contains_key(&p.item.id)) {
            return Err(EngineError::Protocol(format!(
                "commit reply has no result for {}",
                p.item.id
            )));
        }
        // New items this batch failed to create: their children in the
        // batch were refused for lack of a parent, as expected.
        let mut not_created = BTreeSet::new();
        for p in proposed {
            let outcome = by_id
                .remove(&p.item.id)
                .expect("checked above that every proposal has a result");
            let out = self.commit_outcome(exec, &p, outcome, &not_created);
            if !matches!(out, Outcome::Applied)
                && let Key::New(n) = p.key
            {
                not_created.insert(n);
            }
            self.state.pending.remove(&p.item.id);
            outcomes[p.op] = Some(out);
        }
        self.save().await?;
        tracing::debug!(items = count, "commit outcomes saved");
        Ok(())
    }

    /// Applies the server's verdict on one proposal to the state.
    fn commit_outcome(
        &mut self,
        exec: &mut Exec,
        p: &Proposed,
        outcome: CommitOutcome,
        not_created: &BTreeSet<u32>,
    ) -> Outcome {
        let id = p.item.id;
        match outcome {
            CommitOutcome::Committed { meta } => {
                self.dirty.insert(meta.id);
                self.state.remote.apply(meta);
                if let Key::New(n) = p.key {
                    exec.created.insert(n, id);
                }
                self.settle(exec, p.key);
                Outcome::Applied
            }
            CommitOutcome::Conflict { current } => {
                // The server moved on: learn what it has and plan again; the
                // merge then keeps our bytes as a conflicted copy if needed.
                self.dirty.insert(current.id);
                self.state.remote.apply(current);
                Outcome::Replan(format!("conflict on {id}"))
            }
            CommitOutcome::Refused { error } if error.kind == ErrorKind::InvalidName => {
                // A name is refused whatever the content: retried only once
                // the path goes away (renamed).
                if let Some(path) = path_in(&exec.local, p.key) {
                    let reason = error.message.clone();
                    self.state.refused.insert(
                        path,
                        Refusal {
                            reason,
                            stamp: None,
                            clash: false,
                        },
                    );
                }
                Outcome::Skipped(format!("name refused: {}", error.message))
            }
            CommitOutcome::Refused { error }
                if final_refusal(error.kind) || is_twin(&error, &p.item) =>
            {
                // Retried once the file changes (or goes away).
                if let Some(path) = path_in(&exec.local, p.key) {
                    let stamp = exec.local.get(&p.key).map(|l| l.stamp);
                    self.state.refused.insert(
                        path,
                        Refusal {
                            reason: error.to_string(),
                            stamp,
                            clash: false,
                        },
                    );
                }
                Outcome::Skipped(format!("refused: {error}"))
            }
            CommitOutcome::Refused { .. }
                if p.parent_new.is_some_and(|n| not_created.contains(&n)) =>
            {
                Outcome::Skipped("parent not created".into())
            }
            // A name taken by an item we have not seen yet, a missing parent:
            // the feed will tell; a clash then becomes a conflicted copy.
            CommitOutcome::Refused { error } => Outcome::Replan(format!("refused: {error}")),
        }
    }

    /// The proposal for one commit operation, or why there is none.
    async fn propose(
        &mut self,
        exec: &mut Exec,
        pending: &BTreeMap<u32, ItemId>,
        key: Key,
        change: &RemoteChange,
    ) -> Result<Result<(ProposedItem, Option<u32>), Outcome>, EngineError> {
        let id_of = |k: Key| match k {
            Key::New(n) => exec.created.get(&n).or_else(|| pending.get(&n)).copied(),
            Key::Item(id) => Some(id),
        };
        let latest: Option<ItemMeta> =
            id_of(key).and_then(|id| self.state.remote.latest(id).cloned());
        let (pos, is_folder, upload) = match change {
            RemoteChange::Delete => {
                let Some(m) = latest.filter(|m| m.status.is_live()) else {
                    return Ok(Err(Outcome::Skipped("already deleted".into())));
                };
                let item = ProposedItem {
                    id: m.id,
                    parent: m.parent,
                    name: m.name.clone(),
                    is_folder: m.is_folder,
                    mimetype: m.mimetype.clone(),
                    status: ItemStatus::Deleted,
                    version: m.version + 1,
                    // A delete carries no content; the history keeps it.
                    content_hash: None,
                    size: 0,
                    client_modified: self.io.clock.now_millis(),
                    chunks: Vec::new(),
                    record: None,
                };
                return Ok(Ok((item, None)));
            }
            RemoteChange::Put {
                pos,
                is_folder,
                upload,
            } => (pos, *is_folder, *upload),
        };
        let (parent, parent_new) = match pos.parent {
            None => (None, None),
            Some(pk) => match id_of(pk) {
                Some(id) => {
                    let fresh = match pk {
                        Key::New(n) if !exec.created.contains_key(&n) => Some(n),
                        _ => None,
                    };
                    (Some(id), fresh)
                }
                None => return Ok(Err(Outcome::Skipped("parent not created yet".into()))),
            },
        };
        let id = id_of(key).unwrap_or_else(|| self.io.ids.new_item_id());
        let version = latest.as_ref().map_or(1, |m| m.version + 1);
        let status = match &latest {
            None => ItemStatus::New,
            Some(m) if m.parent != parent => ItemStatus::Moved,
            Some(m) if m.name != pos.name => ItemStatus::Renamed,
            Some(_) => ItemStatus::Changed,
        };
        // A folder's stamp has no mtime (see `Stamp::folder`): it is
        // modified when it is made.
        let client_modified = exec
            .local
            .get(&key)
            .filter(|l| !l.is_folder)
            .map_or_else(|| self.io.clock.now_millis(), |l| l.stamp.mtime);
        let (content_hash, size, chunks) = if is_folder {
            (None, 0, Vec::new())
        } else if upload {
            match self.upload(exec, key).await? {
                Ok(u) => u,
                Err(skip) => return Ok(Err(skip)),
            }
        } else {
            match &latest {
                Some(m) => (m.content_hash, m.size, m.chunks.clone()),
                None => return Ok(Err(Outcome::Skipped("no content to commit".into()))),
            }
        };
        let item = ProposedItem {
            id,
            parent,
            name: pos.name.clone(),
            is_folder,
            mimetype: latest.and_then(|m| m.mimetype),
            status,
            version,
            content_hash,
            size,
            client_modified,
            chunks,
            record: None,
        };
        Ok(Ok((item, parent_new)))
    }

    /// The uploaded content of the local file of `key`: prefetched if the
    /// file still has the stamp it had when it was read, else uploaded now,
    /// making sure it did not change while being read (else the operation
    /// is skipped and retried in a later round).
    async fn upload(
        &mut self,
        exec: &mut Exec,
        key: Key,
    ) -> Result<Result<CommitContent, Outcome>, EngineError> {
        let Some(l) = exec.local.get(&key).cloned() else {
            return Ok(Err(Outcome::Skipped("no local file".into())));
        };
        let Some(path) = path_in(&exec.local, key) else {
            return Ok(Err(Outcome::Skipped("no local path".into())));
        };
        if let Some(pre) = exec.prefetched.uploads.remove(&key)
            && pre.stamp == l.stamp
            && Some(pre.uploaded.hash) == l.hash
        {
            let now = match self.io.fs.stat(&path).await {
                Ok(m) => m.map(|m| m.stamp),
                Err(e) => return item_level(e).map(Err),
            };
            if now == Some(l.stamp) {
                let up = pre.uploaded;
                return Ok(Ok((Some(up.hash), up.size, up.chunks)));
            }
        }
        let fs = self.io.fs.clone();
        let content = self.io.content.clone();
        let previous = previous_chunks(&self.state.remote, key).to_vec();
        match upload_file(
            fs.as_ref(),
            content.as_ref(),
            &path,
            l.stamp,
            l.hash,
            &previous,
        )
        .await?
        {
            Ok(up) => Ok(Ok((Some(up.hash), up.size, up.chunks))),
            Err(NotUploaded::Changed(why)) => Ok(Err(Outcome::Skipped(why))),
            Err(NotUploaded::Fs(e)) => item_level(e).map(Err),
        }
    }
}
