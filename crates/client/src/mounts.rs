//! Where the workspaces an account belongs to live inside its one synced
//! folder: the private workspace at the root, each shared folder at its
//! **mount point** (reference section 6: a member's view of a shared
//! workspace is a name and a parent folder in their own private tree,
//! `Workspace::mount_parent`; the owner's is where the folder was when it
//! was shared).
//!
//! [`place`] turns the server's list of workspaces and the private
//! workspace's tree into mount paths (pure). [`MountTable`] is what the
//! client keeps of them in `mounts.toml` in its home: the mounts in force,
//! so that the private workspace's engine leaves them out from its very
//! first round and `stacksync status` can tell which folders are shared
//! without asking the server, and the **detached** folders: shared folders
//! this account no longer belongs to, whose local copy is kept where it
//! was but no longer synced (neither with the shared workspace nor, which
//! would copy them into the private one unasked, with the private
//! workspace).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stacksync_engine::{RelPath, SyncState};
use stacksync_proto::{EncryptionMode, ItemName, UserId, Workspace, WorkspaceId};

use crate::private;
use crate::profile::{ProfileError, write_atomic};

const MOUNTS_FILE: &str = "mounts.toml";

/// One shared workspace mounted in the synced folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The shared workspace.
    pub workspace: WorkspaceId,
    /// Where it is, relative to the synced folder.
    pub path: String,
    /// Whether this account owns it (the owner unshares; members leave).
    #[serde(default)]
    pub owner: bool,
    /// Whether this account may only read it.
    #[serde(default)]
    pub read_only: bool,
    /// Who else is in it, by e-mail, as last heard from the server.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The mount point's inode when it was mounted: a folder found there
    /// later with another one is not this mount (it was removed and
    /// something else put in its place), and is not synced as it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<u64>,
    /// Its encryption setting, as the server says.
    #[serde(default, skip_serializing_if = "is_plain")]
    pub encryption: EncryptionMode,
}

fn is_plain(mode: &EncryptionMode) -> bool {
    *mode == EncryptionMode::Plain
}

/// A folder that was a shared folder of this account and no longer is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedRecord {
    /// The workspace it mirrored.
    pub workspace: WorkspaceId,
    /// Where the kept copy is, relative to the synced folder.
    pub path: String,
}

/// A shared folder this device has never mounted because something of the
/// user's is where it goes (never excluded from the private workspace: the
/// place is the user's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitingRecord {
    /// The shared workspace.
    pub workspace: WorkspaceId,
    /// Where it would go, relative to the synced folder.
    pub path: String,
    /// Why it waits, and what to do.
    pub reason: String,
}

/// `mounts.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountTable {
    /// Mounted shared workspaces.
    #[serde(default, rename = "mount")]
    pub mounts: Vec<MountRecord>,
    /// Former shared folders kept as unsynced local copies.
    #[serde(default, rename = "detached")]
    pub detached: Vec<DetachedRecord>,
    /// Shared folders waiting for their place to be free.
    #[serde(default, rename = "waiting")]
    pub waiting: Vec<WaitingRecord>,
    /// The private workspace's encryption setting (for `status` without a
    /// daemon).
    #[serde(default, skip_serializing_if = "is_plain")]
    pub private_encryption: EncryptionMode,
}

impl MountTable {
    /// Reads the table in `home` (empty when there is none yet).
    pub fn load(home: &Path) -> io::Result<MountTable> {
        let path = home.join(MOUNTS_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(MountTable::default()),
            Err(e) => Err(e),
        }
    }

    /// Writes the table to `home` (atomically, private to the user).
    pub fn save(&self, home: &Path) -> Result<(), ProfileError> {
        let text = toml::to_string(self)
            .map_err(|e| ProfileError::Invalid(format!("cannot encode the mount table: {e}")))?;
        write_atomic(&home.join(MOUNTS_FILE), text.as_bytes(), private::FILE_MODE)
    }

    /// Every path the private workspace's engine leaves out: the mounts
    /// and the detached folders (unparsable paths are skipped: a table
    /// written by this client never has one).
    pub fn excluded(&self) -> BTreeSet<RelPath> {
        self.mounts
            .iter()
            .map(|m| m.path.as_str())
            .chain(self.detached.iter().map(|d| d.path.as_str()))
            .filter_map(|p| RelPath::parse(p).ok())
            .filter(|p| !p.is_root())
            .collect()
    }

    /// The mount holding `path` (the mount point itself or anything
    /// inside), with `path` relative to the mount.
    pub fn mount_of(&self, path: &RelPath) -> Option<(&MountRecord, RelPath)> {
        self.mounts
            .iter()
            .filter_map(|m| {
                let at = RelPath::parse(&m.path).ok()?;
                strip_prefix(path, &at).map(|rest| (m, rest))
            })
            .max_by_key(|(m, _)| m.path.len())
    }

    /// The detached folder holding `path`, if any.
    pub fn detached_at(&self, path: &RelPath) -> Option<&DetachedRecord> {
        self.detached.iter().find(|d| {
            RelPath::parse(&d.path)
                .ok()
                .is_some_and(|at| path.starts_with(&at))
        })
    }
}

/// `path` relative to `prefix`, if it is `prefix` or inside it.
pub fn strip_prefix(path: &RelPath, prefix: &RelPath) -> Option<RelPath> {
    if !path.starts_with(prefix) {
        return None;
    }
    Some(
        path.components()[prefix.depth()..]
            .iter()
            .fold(RelPath::root(), |p, c| p.join(c)),
    )
}

/// `rel` (relative to `prefix`) relative to the folder `prefix` is in.
pub fn under(prefix: &RelPath, rel: &RelPath) -> RelPath {
    rel.components()
        .iter()
        .fold(prefix.clone(), |p, c| p.join(c))
}

/// The absolute folder of `path` in the synced `folder`.
pub fn absolute(folder: &Path, path: &RelPath) -> PathBuf {
    path.components()
        .iter()
        .fold(folder.to_path_buf(), |p, c| p.join(c.as_str()))
}

/// Where each shared workspace of `workspaces` is mounted, given the
/// private workspace's tree as this device knows it (`private`): under the
/// live folder `mount_parent` names, else at the root, with the member's
/// name for it. Workspaces whose name cannot be a file name, or whose
/// place another mount already took (the lower id keeps it), are left out
/// and reported.
pub fn place(
    workspaces: &[Workspace],
    private: &SyncState,
) -> (BTreeMap<WorkspaceId, RelPath>, Vec<String>) {
    let mut placed: BTreeMap<WorkspaceId, RelPath> = BTreeMap::new();
    let mut taken: BTreeSet<RelPath> = BTreeSet::new();
    let mut problems = Vec::new();
    let mut shared: Vec<&Workspace> = workspaces.iter().filter(|w| w.is_shared).collect();
    shared.sort_by_key(|w| w.id);
    for ws in shared {
        let name = match ItemName::new(&ws.name) {
            Ok(n) => n,
            Err(e) => {
                problems.push(format!(
                    "shared folder {:?} ({}) is not mounted: {e}",
                    ws.name, ws.id
                ));
                continue;
            }
        };
        let parent = ws
            .mount_parent
            .filter(|p| private.remote.live(*p).is_some_and(|m| m.is_folder))
            .and_then(|p| private.remote.path_of(p))
            .unwrap_or_default();
        let path = parent.join(&name);
        // Nested mounts are impossible on the server (a mount's parent is a
        // private folder), but a stale tree could make one look nested.
        if taken
            .iter()
            .any(|t| path.starts_with(t) || t.starts_with(&path))
        {
            problems.push(format!(
                "shared folder {:?} ({}) is not mounted: another shared folder is at {path}",
                ws.name, ws.id
            ));
            continue;
        }
        taken.insert(path.clone());
        placed.insert(ws.id, path);
    }
    (placed, problems)
}

/// Whether `me` owns `ws`.
pub fn owns(ws: &Workspace, me: UserId) -> bool {
    ws.owner == me
}

#[cfg(test)]
mod tests {
    use stacksync_proto::{EncryptionMode, ItemId, ItemMeta, ItemStatus};
    use uuid::Uuid;

    use super::*;

    fn ws(n: u64, name: &str, parent: Option<ItemId>) -> Workspace {
        Workspace {
            id: WorkspaceId(Uuid::from_u64_pair(7, n)),
            owner: UserId(Uuid::from_u64_pair(1, 1)),
            name: name.into(),
            is_shared: true,
            encryption: EncryptionMode::Plain,
            container: format!("c{n}"),
            latest_revision: 0,
            mount_parent: parent,
            read_only: false,
        }
    }

    fn folder(n: u64, name: &str, parent: Option<ItemId>) -> ItemMeta {
        ItemMeta {
            id: ItemId(Uuid::from_u64_pair(3, n)),
            workspace: WorkspaceId(Uuid::from_u64_pair(7, 0)),
            parent,
            name: ItemName::new(name).unwrap(),
            is_folder: true,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: None,
            size: 0,
            client_modified: 0,
            server_modified: 0,
            device: stacksync_proto::DeviceId::NIL,
            revision: n,
            chunks: Vec::new(),
            record: None,
        }
    }

    #[test]
    fn mounts_sit_under_their_parent_or_at_the_root() {
        let mut private = SyncState::default();
        let docs = folder(1, "docs", None);
        let work = folder(2, "work", Some(docs.id));
        private.remote.apply(docs.clone());
        private.remote.apply(work.clone());
        let gone = ItemId(Uuid::from_u64_pair(3, 99));
        let list = vec![
            ws(1, "project", Some(work.id)),
            ws(2, "photos", None),
            ws(3, "orphan", Some(gone)),
            ws(4, "bad/name", None),
            // Same place as "photos": the lower id keeps it.
            ws(5, "photos", None),
        ];
        let (placed, problems) = place(&list, &private);
        let at = |n: u64| placed.get(&list[n as usize - 1].id).map(|p| p.to_string());
        assert_eq!(at(1).as_deref(), Some("docs/work/project"));
        assert_eq!(at(2).as_deref(), Some("photos"));
        assert_eq!(at(3).as_deref(), Some("orphan"));
        assert_eq!(at(4), None);
        assert_eq!(at(5), None);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_path_belongs_to_the_innermost_mount_and_the_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let table = MountTable {
            mounts: vec![MountRecord {
                workspace: WorkspaceId(Uuid::from_u64_pair(7, 1)),
                path: "a/shared".into(),
                owner: false,
                read_only: true,
                members: vec!["ana@example.com".into()],
                file_id: Some(42),
                encryption: EncryptionMode::ServerSide,
            }],
            detached: vec![DetachedRecord {
                workspace: WorkspaceId(Uuid::from_u64_pair(7, 2)),
                path: "old".into(),
            }],
            waiting: vec![WaitingRecord {
                workspace: WorkspaceId(Uuid::from_u64_pair(7, 3)),
                path: "busy".into(),
                reason: "in the way".into(),
            }],
            private_encryption: EncryptionMode::ServerSide,
        };
        table.save(dir.path()).unwrap();
        let back = MountTable::load(dir.path()).unwrap();
        assert_eq!(back, table);
        let p = |s: &str| RelPath::parse(s).unwrap();
        let (m, rest) = back.mount_of(&p("a/shared/x/y.txt")).unwrap();
        assert_eq!(m.path, "a/shared");
        assert_eq!(rest, p("x/y.txt"));
        assert!(back.mount_of(&p("a/sharedx")).is_none());
        assert!(back.mount_of(&p("a")).is_none());
        assert_eq!(back.mount_of(&p("a/shared")).unwrap().1, RelPath::root());
        assert!(back.detached_at(&p("old/f")).is_some());
        assert_eq!(
            back.excluded()
                .into_iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
            vec!["a/shared".to_string(), "old".to_string()]
        );
        assert_eq!(under(&p("a/shared"), &p("x/y")), p("a/shared/x/y"));
    }
}
