//! Applying one operation, with its preconditions re-checked against the
//! disk and the server at the moment it runs.

use stacksync_proto::{ContentHash, ItemName};

use super::prefetch::{Origin, fill_temp, temp_name};
use super::{Engine, Exec};
use crate::error::{EngineError, FsError, FsErrorKind};
use crate::io::EntryKind;
use crate::path::RelPath;
use crate::planner::{Key, LocalItem, Op, Pos, RemoteContent, path_in};
use crate::planted::{PlantedBug, planted};
use crate::tree::SyncedItem;

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

/// Item-level file-system failures skip the operation; others (disk
/// failure, simulated crash) end the round.
pub(super) fn item_level(e: FsError) -> Result<Outcome, EngineError> {
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
            Op::Untrack { key } => {
                if let Some(id) = exec.id_of(*key) {
                    self.state.synced.remove(&id);
                }
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
            Op::Commit { .. } => {
                let mut outcomes = self.commit_batch(exec, std::slice::from_ref(op)).await?;
                // A batch of one commit has one outcome, and saved already.
                return Ok(outcomes
                    .pop()
                    .expect("a batch takes at least one operation"));
            }
        };
        if matches!(out, Outcome::Applied | Outcome::Conflict) {
            // A conflicted copy is saved at once: redone from an older
            // state it would be recognised only as a move of the item. Every
            // other operation makes disk agree with the server, which the
            // next plan recognises without its record (see `save_soon`).
            if matches!(op, Op::ConflictCopy { .. }) {
                self.save().await?;
            } else {
                self.save_soon().await?;
            }
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
    pub(super) fn settle(&mut self, exec: &Exec, key: Key) {
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
        if planted(PlantedBug::DropConflictCopy) {
            fs_try!(self.io.fs.remove_file(&from).await);
        } else {
            fs_try!(self.io.fs.rename(&from, &to).await);
        }
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
        if self.temps_moving(&from, &dest) {
            self.save().await?;
        }
        fs_try!(self.io.fs.rename(&from, &dest).await);
        self.temps_moved(&from);
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
        // Where the temporary is: where a prefetch left it complete, else
        // in the destination folder (where an interrupted download of the
        // same content left it, to be continued).
        let prefetched = exec
            .prefetched
            .downloads
            .remove(&content.hash)
            .and_then(|holder| match holder {
                None => Some(RelPath::root()),
                Some(k) => path_in(&exec.local, k),
            });
        let dir = prefetched
            .clone()
            .unwrap_or_else(|| dest.parent().unwrap_or_default());
        // A file not recorded as ours may have the name (a user's, or a
        // temporary whose record was lost): it is left alone, and the
        // download goes through the root instead.
        let at_root = RelPath::root().join(&temp_name(&content.hash));
        let wanted = [dir.join(&temp_name(&content.hash)), at_root];
        let ours = self.own_temps(wanted.clone()).await?;
        let Some(temp) = wanted.into_iter().find(|t| ours.contains(t)) else {
            return Ok(Outcome::Skipped(format!(
                "files not made by StackSync have the name of the download temporary for {dest}; left alone"
            )));
        };
        // A prefetched temporary is complete: the hash below checks it (and
        // a mismatch is retried later, like any).
        let complete = prefetched.is_some_and(|dir| temp == dir.join(&temp_name(&content.hash)));
        if !complete {
            let fs = self.io.fs.clone();
            let store = self.io.content.clone();
            let origin = Origin::of(&exec.local, key, replace);
            match fill_temp(fs.as_ref(), store.as_ref(), &temp, content, origin.as_ref()).await {
                Ok(()) => {}
                Err(EngineError::Fs(e)) => return item_level(e),
                Err(e) => return Err(e),
            }
        }
        // Verify what is on disk, not what was sent.
        let got: Option<ContentHash> = fs_try!(self.io.fs.hash_file(&temp).await).map(|(h, _)| h);
        if got != Some(content.hash) {
            if self.io.fs.remove_file(&temp).await.is_ok() {
                self.state.temps.remove(&temp);
            }
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
            if self.io.fs.remove_file(&temp).await.is_ok() {
                self.state.temps.remove(&temp);
            }
            return Ok(Outcome::Skipped(format!(
                "{dest} changed on disk; kept, retried later"
            )));
        }
        fs_try!(self.io.fs.persist_temp(&temp, &dest).await);
        // Saved with the download's own record (see `save_soon`); if a
        // crash drops it, the path is forgotten once nothing is there.
        self.state.temps.remove(&temp);
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
}
