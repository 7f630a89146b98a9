//! Applying one operation, with its preconditions re-checked against the
//! disk and the server at the moment it runs.

use stacksync_proto::{
    CommitOutcome, ContentHash, ErrorKind, ItemMeta, ItemName, ItemStatus, ProposedItem,
};
use tokio::io::AsyncWriteExt;

use super::{Engine, Exec};
use crate::error::{EngineError, FsError, FsErrorKind};
use crate::ignore::DOWNLOAD_TEMP_PREFIX;
use crate::io::EntryKind;
use crate::path::RelPath;
use crate::planner::{Key, LocalItem, Op, Pos, RemoteChange, RemoteContent, path_in};
use crate::scan::hash_file;
use crate::tree::{Refusal, SyncedItem};

/// Hash, size and chunks of a version being committed.
type CommitContent = (Option<ContentHash>, u64, Vec<stacksync_proto::ChunkRef>);

/// What came of one operation.
pub(super) enum Outcome {
    Applied,
    /// Applied, and it was a conflicted copy.
    Conflict,
    /// Not applied; later operations may still run.
    Skipped(String),
    /// Not applied, and the plan is stale (the server moved on): stop and
    /// plan again.
    Replan(String),
}

/// How many leading chunks a partial file of `size` bytes holds whole, and
/// their total size.
fn resume_point(chunks: &[stacksync_proto::ChunkRef], size: u64) -> (usize, u64) {
    let mut done = 0u64;
    for (i, c) in chunks.iter().enumerate() {
        let next = done + u64::from(c.size);
        if next > size {
            return (i, done);
        }
        done = next;
    }
    (chunks.len(), done)
}

/// Item-level file-system failures skip the operation; others (disk
/// failure, simulated crash) end the round.
fn item_level(e: FsError) -> Result<Outcome, EngineError> {
    match e.kind {
        FsErrorKind::NotFound
        | FsErrorKind::AlreadyExists
        | FsErrorKind::NotEmpty
        | FsErrorKind::WrongKind => Ok(Outcome::Skipped(e.to_string())),
        FsErrorKind::Other => Err(EngineError::Fs(e)),
    }
}

macro_rules! fs_try {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return item_level(e),
        }
    };
}

impl Engine {
    pub(super) async fn apply(&mut self, exec: &mut Exec, op: &Op) -> Result<Outcome, EngineError> {
        let out = match op {
            Op::Settle { key } => {
                self.settle(exec, *key);
                Outcome::Applied
            }
            Op::ConflictCopy { key, copy, name } => {
                self.conflict_copy(exec, *key, *copy, name).await?
            }
            Op::LocalMkdir { key, pos } => self.mkdir(exec, *key, pos).await?,
            Op::LocalMove { key, to } => self.local_move(exec, *key, to).await?,
            Op::LocalDelete { key } => self.local_delete(exec, *key).await?,
            Op::Download {
                key,
                pos,
                content,
                replace,
            } => self.download(exec, *key, pos, content, *replace).await?,
            Op::Commit { key, change } => self.commit(exec, *key, change).await?,
        };
        if matches!(out, Outcome::Applied | Outcome::Conflict) {
            self.save().await?;
        }
        Ok(out)
    }

    fn pos_path(&self, exec: &Exec, pos: &Pos) -> Option<RelPath> {
        let dir = match pos.parent {
            None => RelPath::root(),
            Some(p) => path_in(&exec.local, p)?,
        };
        Some(dir.join(&pos.name))
    }

    /// Records agreement for `key` if its local and remote states match (or
    /// forgets it if both sides deleted it).
    fn settle(&mut self, exec: &Exec, key: Key) {
        let Some(id) = exec.id_of(key) else { return };
        let r = self.state.remote.live(id).cloned();
        match (r, exec.local.get(&key)) {
            (None, None) => {
                self.state.synced.remove(&id);
            }
            (Some(r), Some(l)) => {
                let parent = match l.pos.parent {
                    None => Some(None),
                    Some(pk) => exec.id_of(pk).map(Some),
                };
                let same_place = parent == Some(r.parent) && l.pos.name == r.name;
                let same_content =
                    l.is_folder == r.is_folder && (r.is_folder || l.hash == r.content_hash);
                if same_place && same_content {
                    self.state
                        .synced
                        .insert(id, SyncedItem::from_meta(&r, Some(l.stamp)));
                }
            }
            _ => {}
        }
    }

    async fn conflict_copy(
        &mut self,
        exec: &mut Exec,
        key: Key,
        copy: Key,
        name: &ItemName,
    ) -> Result<Outcome, EngineError> {
        let Some(item) = exec.local.get(&key).cloned() else {
            return Ok(Outcome::Skipped("no local entry".into()));
        };
        let Some(from) = path_in(&exec.local, key) else {
            return Ok(Outcome::Skipped("no local path".into()));
        };
        let to = from.parent().unwrap_or_default().join(name);
        fs_try!(self.io.fs.rename(&from, &to).await);
        exec.local.remove(&key);
        exec.local.insert(
            copy,
            LocalItem {
                pos: Pos {
                    parent: item.pos.parent,
                    name: name.clone(),
                },
                ..item
            },
        );
        // The copy keeps the old file id; the item must not claim it back.
        if let Some(s) = exec
            .id_of(key)
            .and_then(|id| self.state.synced.get_mut(&id))
        {
            s.stamp = None;
        }
        Ok(Outcome::Conflict)
    }

    async fn mkdir(
        &mut self,
        exec: &mut Exec,
        key: Key,
        pos: &Pos,
    ) -> Result<Outcome, EngineError> {
        let Some(path) = self.pos_path(exec, pos) else {
            return Ok(Outcome::Skipped("parent not on disk".into()));
        };
        fs_try!(self.io.fs.mkdir(&path).await);
        let Some(meta) = fs_try!(self.io.fs.stat(&path).await) else {
            return Ok(Outcome::Skipped("vanished".into()));
        };
        exec.local.insert(
            key,
            LocalItem {
                pos: pos.clone(),
                is_folder: true,
                hash: None,
                stamp: meta.stamp,
            },
        );
        self.settle(exec, key);
        Ok(Outcome::Applied)
    }

    async fn local_move(
        &mut self,
        exec: &mut Exec,
        key: Key,
        to: &Pos,
    ) -> Result<Outcome, EngineError> {
        let Some(from) = path_in(&exec.local, key) else {
            return Ok(Outcome::Skipped("no local path".into()));
        };
        let Some(dest) = self.pos_path(exec, to) else {
            return Ok(Outcome::Skipped("target folder not on disk".into()));
        };
        fs_try!(self.io.fs.rename(&from, &dest).await);
        let stamp = fs_try!(self.io.fs.stat(&dest).await).map(|m| m.stamp);
        if let Some(item) = exec.local.get_mut(&key) {
            item.pos = to.clone();
            if let Some(s) = stamp {
                item.stamp = s;
            }
        }
        self.settle(exec, key);
        Ok(Outcome::Applied)
    }

    async fn local_delete(&mut self, exec: &mut Exec, key: Key) -> Result<Outcome, EngineError> {
        let Some(item) = exec.local.get(&key).cloned() else {
            return Ok(Outcome::Skipped("no local entry".into()));
        };
        let Some(path) = path_in(&exec.local, key) else {
            return Ok(Outcome::Skipped("no local path".into()));
        };
        let now = fs_try!(self.io.fs.stat(&path).await);
        if item.is_folder {
            fs_try!(self.io.fs.remove_dir(&path).await);
        } else {
            // Only what the planner saw may be deleted; a newer edit wins.
            if now.map(|m| m.stamp) != Some(item.stamp) {
                return Ok(Outcome::Skipped("changed since the scan; kept".into()));
            }
            fs_try!(self.io.fs.remove_file(&path).await);
        }
        exec.local.remove(&key);
        self.settle(exec, key);
        Ok(Outcome::Applied)
    }

    async fn download(
        &mut self,
        exec: &mut Exec,
        key: Key,
        pos: &Pos,
        content: &RemoteContent,
        replace: bool,
    ) -> Result<Outcome, EngineError> {
        let Some(dest) = self.pos_path(exec, pos) else {
            return Ok(Outcome::Skipped("folder not on disk".into()));
        };
        let dir = dest.parent().unwrap_or_default();
        let temp_name = format!("{DOWNLOAD_TEMP_PREFIX}{}", content.hash.to_hex());
        let temp = dir.join(
            &ItemName::new(temp_name).expect("a fixed prefix and hex digits make a valid name"),
        );
        // A temporary left by an interrupted download of the same content
        // is continued after its last whole chunk.
        let partial = fs_try!(self.io.fs.stat(&temp).await)
            .filter(|m| m.kind == EntryKind::File && m.stamp.size > 0)
            .map(|m| m.stamp.size);
        let (mut writer, skip) = match partial {
            Some(size) => {
                let (skip, keep) = resume_point(&content.chunks, size);
                (fs_try!(self.io.fs.resume_temp(&temp, keep).await), skip)
            }
            None => (fs_try!(self.io.fs.create_temp(&temp).await), 0),
        };
        let fetched = self
            .io
            .content
            .download(&content.chunks[skip..], &mut writer)
            .await;
        let flushed = writer.shutdown().await;
        drop(writer);
        // On failure the temporary is kept, so the next attempt resumes.
        if let Err(source) = fetched {
            return Err(EngineError::Remote {
                doing: format!("downloading {dest}"),
                source,
            });
        }
        if let Err(e) = flushed {
            return Err(EngineError::Fs(FsError::new(
                FsErrorKind::Other,
                &temp,
                e.to_string(),
            )));
        }
        // Verify what is on disk, not what was sent.
        let got: Option<ContentHash> =
            fs_try!(hash_file(self.io.fs.as_ref(), &temp).await).map(|(h, _)| h);
        if got != Some(content.hash) {
            let _ = self.io.fs.remove_file(&temp).await;
            return Ok(Outcome::Skipped(format!(
                "downloaded content of {dest} does not match its hash"
            )));
        }
        let existing = fs_try!(self.io.fs.stat(&dest).await);
        let expected = if replace {
            exec.local.get(&key).map(|l| l.stamp)
        } else {
            None
        };
        let unchanged = match (existing, expected) {
            (None, None) => true,
            (Some(m), Some(stamp)) => m.kind == EntryKind::File && m.stamp == stamp,
            _ => false,
        };
        if !unchanged {
            let _ = self.io.fs.remove_file(&temp).await;
            return Ok(Outcome::Skipped(format!(
                "{dest} changed on disk; kept, retried later"
            )));
        }
        fs_try!(self.io.fs.persist_temp(&temp, &dest).await);
        let Some(meta) = fs_try!(self.io.fs.stat(&dest).await) else {
            return Ok(Outcome::Skipped("vanished".into()));
        };
        self.cache.insert(dest, meta.stamp, content.hash);
        exec.local.insert(
            key,
            LocalItem {
                pos: pos.clone(),
                is_folder: false,
                hash: Some(content.hash),
                stamp: meta.stamp,
            },
        );
        self.settle(exec, key);
        Ok(Outcome::Applied)
    }

    async fn commit(
        &mut self,
        exec: &mut Exec,
        key: Key,
        change: &RemoteChange,
    ) -> Result<Outcome, EngineError> {
        let latest: Option<ItemMeta> = exec
            .id_of(key)
            .and_then(|id| self.state.remote.latest(id).cloned());
        let proposal = match change {
            RemoteChange::Delete => {
                let Some(m) = latest.filter(|m| m.status.is_live()) else {
                    return Ok(Outcome::Skipped("already deleted".into()));
                };
                ProposedItem {
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
                }
            }
            RemoteChange::Put {
                pos,
                is_folder,
                upload,
            } => {
                let parent = match pos.parent {
                    None => None,
                    Some(pk) => match exec.id_of(pk) {
                        Some(id) => Some(id),
                        None => return Ok(Outcome::Skipped("parent not created yet".into())),
                    },
                };
                let id = exec.id_of(key).unwrap_or_else(|| self.io.ids.new_item_id());
                let version = latest.as_ref().map_or(1, |m| m.version + 1);
                let status = match &latest {
                    None => ItemStatus::New,
                    Some(m) if m.parent != parent => ItemStatus::Moved,
                    Some(m) if m.name != pos.name => ItemStatus::Renamed,
                    Some(_) => ItemStatus::Changed,
                };
                let local = exec.local.get(&key).cloned();
                let client_modified = local
                    .as_ref()
                    .map_or_else(|| self.io.clock.now_millis(), |l| l.stamp.mtime);
                let (content_hash, size, chunks) = if *is_folder {
                    (None, 0, Vec::new())
                } else if *upload {
                    match self.upload(exec, key).await? {
                        Ok(u) => u,
                        Err(skip) => return Ok(skip),
                    }
                } else {
                    match &latest {
                        Some(m) => (m.content_hash, m.size, m.chunks.clone()),
                        None => return Ok(Outcome::Skipped("no content to commit".into())),
                    }
                };
                ProposedItem {
                    id,
                    parent,
                    name: pos.name.clone(),
                    is_folder: *is_folder,
                    mimetype: latest.and_then(|m| m.mimetype),
                    status,
                    version,
                    content_hash,
                    size,
                    client_modified,
                    chunks,
                }
            }
        };
        let id = proposal.id;
        let result = self
            .io
            .remote
            .commit(vec![proposal])
            .await
            .map_err(|source| EngineError::Remote {
                doing: format!("committing {id}"),
                source,
            })?;
        let Some(item) = result.results.into_iter().find(|r| r.id == id) else {
            return Err(EngineError::Protocol(format!(
                "commit reply has no result for {id}"
            )));
        };
        match item.outcome {
            CommitOutcome::Committed { meta } => {
                self.state.remote.apply(meta);
                if let Key::New(n) = key {
                    exec.created.insert(n, id);
                }
                self.settle(exec, key);
                Ok(Outcome::Applied)
            }
            CommitOutcome::Conflict { current } => {
                // The server moved on: learn what it has and plan again; the
                // merge then keeps our bytes as a conflicted copy if needed.
                self.state.remote.apply(current);
                self.save().await?;
                Ok(Outcome::Replan(format!("conflict on {id}")))
            }
            CommitOutcome::Refused { error } if error.kind == ErrorKind::InvalidName => {
                if let Some(path) = path_in(&exec.local, key) {
                    self.state.refused.insert(
                        path,
                        Refusal {
                            reason: error.message.clone(),
                        },
                    );
                    self.save().await?;
                }
                Ok(Outcome::Skipped(format!("name refused: {}", error.message)))
            }
            // A name taken by an item we have not seen yet, a missing parent:
            // the feed will tell; a clash then becomes a conflicted copy.
            CommitOutcome::Refused { error } => Ok(Outcome::Replan(format!("refused: {error}"))),
        }
    }

    /// Uploads the local file of `key`, making sure it did not change while
    /// being read (else it is retried in a later round).
    /// The inner `Err` is an outcome for the operation (skip and retry).
    async fn upload(
        &mut self,
        exec: &Exec,
        key: Key,
    ) -> Result<Result<CommitContent, Outcome>, EngineError> {
        let Some(l) = exec.local.get(&key) else {
            return Ok(Err(Outcome::Skipped("no local file".into())));
        };
        let Some(path) = path_in(&exec.local, key) else {
            return Ok(Err(Outcome::Skipped("no local path".into())));
        };
        let before = match self.io.fs.stat(&path).await {
            Ok(m) => m.map(|m| m.stamp),
            Err(e) => return item_level(e).map(Err),
        };
        if before != Some(l.stamp) {
            return Ok(Err(Outcome::Skipped(format!(
                "{path} changed since the scan"
            ))));
        }
        let reader = match self.io.fs.open_read(&path).await {
            Ok(r) => r,
            Err(e) => return item_level(e).map(Err),
        };
        let up = self
            .io
            .content
            .upload(reader)
            .await
            .map_err(|source| EngineError::Remote {
                doing: format!("uploading {path}"),
                source,
            })?;
        let after = match self.io.fs.stat(&path).await {
            Ok(m) => m.map(|m| m.stamp),
            Err(e) => return item_level(e).map(Err),
        };
        if after != before || Some(up.hash) != l.hash {
            return Ok(Err(Outcome::Skipped(format!(
                "{path} changed while being read; retried later"
            ))));
        }
        Ok(Ok((Some(up.hash), up.size, up.chunks)))
    }
}
