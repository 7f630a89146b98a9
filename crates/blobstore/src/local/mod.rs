//! The embedded default backend: containers are folders under one root.
//!
//! ```text
//! ROOT/<container>/acl.json                       who else may read / write
//! ROOT/<container>/objects/<h0h1>/<h2h3>/<hex>    one file per object (see `format`)
//! ROOT/<container>/tmp/                           files being written
//! ```
//!
//! Writes are atomic and write-once: a complete, fsynced temporary file is
//! hard-linked under its final name (`link` fails if the name exists, where
//! `rename` would replace it), then the folder is fsynced. A crash or a
//! concurrent writer never leaves a partial object under its final name,
//! and an existing object is never replaced: a second write of the same
//! bytes (a retry) succeeds, a write of other bytes is a `Conflict`, decided
//! by the checksum and length in the stored file's header. ACLs are
//! enforced here as Swift would, so the same conformance suite runs on both
//! backends.

pub mod at_rest;
mod format;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use stacksync_proto::ChunkId;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

pub use at_rest::AtRestKeys;

use format::StoredHeader;

use crate::error::{BlobError, BlobErrorKind, Result};
use crate::names::{ContainerName, StorageUser};
use crate::store::{
    Access, BlobStore, ByteRange, ByteStream, ContainerAcl, MAX_OBJECT_SIZE, ObjectInfo,
};

/// Who a local store handle acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalIdentity {
    /// The installation's administrator: owns every container.
    Owner,
    /// Another storage user: reaches containers only through their ACLs.
    User(StorageUser),
}

#[derive(Debug)]
struct Shared {
    root: PathBuf,
    /// Serialises ACL read-modify-write cycles within this process.
    acl_lock: tokio::sync::Mutex<()>,
    /// Keys that seal new objects at rest; `None` stores them as they come.
    at_rest: Option<AtRestKeys>,
}

/// A [`BlobStore`] on a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    shared: Arc<Shared>,
    identity: LocalIdentity,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, acting as the
    /// owner, that stores objects as they come (and reads sealed ones only
    /// if it has their keys: it has none).
    pub async fn open(root: impl Into<PathBuf>) -> Result<LocalStore> {
        LocalStore::open_with(root, None).await
    }

    /// Opens a store that seals every object it writes with `at_rest`'s
    /// current key (see [`at_rest`]) and reads objects of either kind.
    pub async fn open_sealed(root: impl Into<PathBuf>, at_rest: AtRestKeys) -> Result<LocalStore> {
        LocalStore::open_with(root, Some(at_rest)).await
    }

    async fn open_with(
        root: impl Into<PathBuf>,
        at_rest: Option<AtRestKeys>,
    ) -> Result<LocalStore> {
        let root = root.into();
        tokio::fs::create_dir_all(&root)
            .await
            .map_err(|e| BlobError::io(format!("create store root {}", root.display()), e))?;
        Ok(LocalStore {
            shared: Arc::new(Shared {
                root,
                acl_lock: tokio::sync::Mutex::new(()),
                at_rest,
            }),
            identity: LocalIdentity::Owner,
        })
    }

    /// A handle on the same root acting as another storage user.
    pub fn as_user(&self, user: StorageUser) -> LocalStore {
        LocalStore {
            shared: self.shared.clone(),
            identity: LocalIdentity::User(user),
        }
    }

    /// Who this handle acts as.
    pub fn identity(&self) -> &LocalIdentity {
        &self.identity
    }

    fn container_dir(&self, c: &ContainerName) -> PathBuf {
        // ContainerName's invariant makes it a single safe path component.
        self.shared.root.join(c.as_str())
    }

    fn object_path(&self, c: &ContainerName, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.container_dir(c)
            .join("objects")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(hex)
    }

    fn acl_path(&self, c: &ContainerName) -> PathBuf {
        self.container_dir(c).join("acl.json")
    }

    async fn container_exists(&self, c: &ContainerName) -> Result<bool> {
        tokio::fs::try_exists(self.container_dir(c).join("objects"))
            .await
            .map_err(|e| BlobError::io(format!("stat container {c}"), e))
    }

    async fn read_acl(&self, c: &ContainerName) -> Result<ContainerAcl> {
        let path = self.acl_path(c);
        match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                BlobError::with_source(
                    BlobErrorKind::Integrity,
                    format!("ACL of {c} unreadable"),
                    e,
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ContainerAcl::default()),
            Err(e) => Err(BlobError::io(format!("read ACL of {c}"), e)),
        }
    }

    async fn write_acl(&self, c: &ContainerName, acl: &ContainerAcl) -> Result<()> {
        let json = serde_json::to_vec_pretty(acl)
            .map_err(|e| BlobError::with_source(BlobErrorKind::Io, "encode ACL", e))?;
        let tmp = self
            .container_dir(c)
            .join("tmp")
            .join(format!("acl.{}", uuid::Uuid::new_v4()));
        write_file_atomically(&tmp, &self.acl_path(c), &json).await
    }

    fn require_owner(&self, op: &str, c: &ContainerName) -> Result<()> {
        match &self.identity {
            LocalIdentity::Owner => Ok(()),
            LocalIdentity::User(u) => Err(BlobError::new(
                BlobErrorKind::Forbidden,
                format!("{u} may not {op} container {c}: owner only"),
            )),
        }
    }

    /// Checks the handle's right to `op` in `c`; the owner also learns here
    /// that a container is missing, as Swift answers 404 to its owner but
    /// 403 to a stranger.
    async fn authorize(&self, op: &str, c: &ContainerName, write: bool) -> Result<()> {
        if !self.container_exists(c).await? {
            return Err(match &self.identity {
                LocalIdentity::Owner => {
                    BlobError::new(BlobErrorKind::NotFound, format!("{op}: no container {c}"))
                }
                LocalIdentity::User(u) => BlobError::new(
                    BlobErrorKind::Forbidden,
                    format!("{u} may not {op} in container {c}"),
                ),
            });
        }
        let LocalIdentity::User(user) = &self.identity else {
            return Ok(());
        };
        let acl = self.read_acl(c).await?;
        let list = if write { &acl.write } else { &acl.read };
        if list.contains(user) {
            Ok(())
        } else {
            Err(BlobError::new(
                BlobErrorKind::Forbidden,
                format!("{user} may not {op} in container {c}"),
            ))
        }
    }

    async fn write_object(&self, c: &ContainerName, id: &ChunkId, body: ByteStream) -> Result<u64> {
        let what = format!("object {id} in {c}");
        let tmp = self.container_dir(c).join("tmp").join(format!(
            "{}.{}",
            id.to_hex(),
            uuid::Uuid::new_v4()
        ));
        let result = async {
            let (header, len) = self.write_temp(c, id, body, &tmp, &what).await?;
            let dest = self.object_path(c, id);
            if publish_new(&tmp, &dest).await? {
                return Ok(len);
            }
            // The name is taken: a retry of the same bytes succeeds, other
            // bytes are refused and the stored object stays as it was.
            let mut existing = tokio::fs::File::open(&dest)
                .await
                .map_err(|e| BlobError::io(format!("open existing {what}"), e))?;
            let stored = format::read_header(&mut existing, &what).await?;
            if self
                .holds_same(c, id, stored, existing, header, &what)
                .await?
            {
                Ok(len)
            } else {
                Err(BlobError::new(
                    BlobErrorKind::Conflict,
                    format!("{what} exists with other bytes; objects are written once"),
                ))
            }
        }
        .await;
        // The temporary file is invisible to readers; once linked (or
        // refused) it is only a second name to drop. Best effort.
        let _ = tokio::fs::remove_file(&tmp).await;
        result
    }

    /// Writes `body` to the new file `tmp` as the object `id` of `c` will be
    /// stored (sealed when the store has an at-rest key), synced; returns
    /// its header and payload length.
    async fn write_temp(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        mut body: ByteStream,
        tmp: &Path,
        what: &str,
    ) -> Result<(StoredHeader, u64)> {
        let keys = self.shared.at_rest.as_ref();
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(tmp)
            .await
            .map_err(|e| BlobError::io(format!("create temporary file for {what}"), e))?;
        // Placeholder header; the real one is written once the payload is known.
        let header_len = match keys {
            Some(_) => at_rest::HEADER_LEN,
            None => format::HEADER_LEN,
        };
        file.write_all(&vec![0u8; header_len as usize])
            .await
            .map_err(|e| BlobError::io(format!("write {what}"), e))?;
        let mut hasher = keys.map_or_else(blake3::Hasher::new, AtRestKeys::checksum_hasher);
        let mut sealer = keys
            .map(|k| k.sealer(c.as_str(), id.as_bytes()))
            .transpose()?;
        let mut len = 0u64;
        while let Some(piece) = body.try_next().await? {
            len += piece.len() as u64;
            if len > MAX_OBJECT_SIZE {
                return Err(BlobError::new(
                    BlobErrorKind::TooLarge,
                    format!("{what} exceeds {MAX_OBJECT_SIZE} bytes"),
                ));
            }
            let sealed;
            let stored: &[u8] = match sealer.as_mut() {
                Some(s) => {
                    sealed = s.push(&piece)?;
                    &sealed
                }
                None => &piece,
            };
            file.write_all(stored)
                .await
                .map_err(|e| BlobError::io(format!("write {what}"), e))?;
            hasher = format::hash_piece(hasher, piece).await?;
        }
        let checksum = *hasher.finalize().as_bytes();
        let header = match sealer {
            Some(s) => {
                let (tail, header) = s.finish(checksum, len)?;
                file.write_all(&tail)
                    .await
                    .map_err(|e| BlobError::io(format!("write {what}"), e))?;
                StoredHeader::Sealed(header)
            }
            None => StoredHeader::Plain(format::Header { checksum, len }),
        };
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| BlobError::io(format!("seek {what}"), e))?;
        file.write_all(&header.encode())
            .await
            .map_err(|e| BlobError::io(format!("write {what}"), e))?;
        file.sync_all()
            .await
            .map_err(|e| BlobError::io(format!("sync {what}"), e))?;
        drop(file);
        Ok((header, len))
    }

    /// Whether the stored object (`stored`, its open `file`) holds the
    /// payload a write just described by `new`. Headers of the same kind
    /// and key compare directly; otherwise (the store was given a key, or
    /// the key was rotated, between the two writes) the stored payload is
    /// read back and hashed the way `new`'s checksum was made.
    async fn holds_same(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        stored: StoredHeader,
        file: tokio::fs::File,
        new: StoredHeader,
        what: &str,
    ) -> Result<bool> {
        match (stored, new) {
            (StoredHeader::Plain(a), StoredHeader::Plain(b)) => return Ok(a == b),
            (StoredHeader::Sealed(a), StoredHeader::Sealed(b)) if a.key_id() == b.key_id() => {
                return Ok(a.checksum() == b.checksum() && a.len == b.len);
            }
            _ if stored.len() != new.len() => return Ok(false),
            _ => {}
        }
        let mut hasher = match (new, &self.shared.at_rest) {
            (StoredHeader::Sealed(_), Some(keys)) => keys.checksum_hasher(),
            _ => blake3::Hasher::new(),
        };
        let mut payload = self.payload(c, id, stored, file, None, what.to_owned())?;
        while let Some(piece) = payload.try_next().await? {
            hasher = format::hash_piece(hasher, piece).await?;
        }
        Ok(hasher.finalize().as_bytes() == &new.checksum())
    }

    /// Streams an open object's payload (or `range` of it), decrypting a
    /// sealed one.
    fn payload(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        header: StoredHeader,
        file: tokio::fs::File,
        range: Option<ByteRange>,
        what: String,
    ) -> Result<ByteStream> {
        let (start, end) = range
            .unwrap_or(ByteRange {
                start: 0,
                end: None,
            })
            .clamp(header.len());
        match header {
            StoredHeader::Plain(h) => Ok(format::payload_stream(file, h, start, end, what)),
            StoredHeader::Sealed(h) => {
                let Some(keys) = &self.shared.at_rest else {
                    return Err(BlobError::new(
                        BlobErrorKind::Integrity,
                        format!("{what} is encrypted at rest and this server holds no at-rest key"),
                    ));
                };
                let opener = keys.opener(&h, c.as_str(), id.as_bytes(), &what)?;
                let check = keys.checksum_hasher_for(&h);
                Ok(format::sealed_stream(
                    file, h, opener, check, start, end, what,
                ))
            }
        }
    }

    /// Rewrites every object that is not sealed under the current at-rest
    /// key (plain ones written before the store had a key, and ones sealed
    /// under a key a rotation replaced), so that the old key files can be
    /// retired. Owner only; each object is read whole (checked) and its new
    /// file renamed over the old one, so a reader sees one or the other,
    /// whole. An object deleted meanwhile (by garbage collection) may come
    /// back; the next collection deletes it again.
    pub async fn reseal(&self) -> Result<Resealed> {
        if let LocalIdentity::User(u) = &self.identity {
            return Err(BlobError::new(
                BlobErrorKind::Forbidden,
                format!("{u} may not reseal the store: owner only"),
            ));
        }
        let Some(keys) = self.shared.at_rest.clone() else {
            return Err(BlobError::new(
                BlobErrorKind::Protocol,
                "resealing needs an at-rest key (storage.at_rest_key_file)",
            ));
        };
        let mut done = Resealed::default();
        for name in read_dir_names(&self.shared.root).await? {
            let Ok(c) = ContainerName::new(&name) else {
                continue;
            };
            if !self.container_exists(&c).await? {
                continue;
            }
            done.containers += 1;
            for id in self.list_objects(&c).await? {
                done.objects += 1;
                let what = format!("object {id} in {c}");
                let path = self.object_path(&c, &id);
                let mut file = match tokio::fs::File::open(&path).await {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(BlobError::io(format!("open {what}"), e)),
                };
                let header = format::read_header(&mut file, &what).await?;
                if let StoredHeader::Sealed(h) = &header
                    && keys.is_current(h)
                {
                    continue;
                }
                let payload = self.payload(&c, &id, header, file, None, what.clone())?;
                let tmp = self.container_dir(&c).join("tmp").join(format!(
                    "{}.{}",
                    id.to_hex(),
                    uuid::Uuid::new_v4()
                ));
                let written = self.write_temp(&c, &id, payload, &tmp, &what).await;
                let result = match written {
                    Ok(_) => publish(&tmp, &path).await,
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    let _ = tokio::fs::remove_file(&tmp).await;
                }
                result?;
                done.resealed += 1;
            }
        }
        Ok(done)
    }

    async fn list_objects(&self, c: &ContainerName) -> Result<Vec<ChunkId>> {
        let objects = self.container_dir(c).join("objects");
        let mut out = Vec::new();
        for shard1 in read_dir_names(&objects).await? {
            for shard2 in read_dir_names(&objects.join(&shard1)).await? {
                for name in read_dir_names(&objects.join(&shard1).join(&shard2)).await? {
                    // Anything else in the tree is not ours to report.
                    if let Ok(id) = ChunkId::from_hex(&name) {
                        out.push(id);
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

/// What [`LocalStore::reseal`] went through and rewrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    /// Containers looked at.
    pub containers: u64,
    /// Objects looked at.
    pub objects: u64,
    /// Objects rewritten under the current key.
    pub resealed: u64,
}

/// Writes `data` to `tmp`, syncs it and renames it to `dest`.
async fn write_file_atomically(tmp: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| BlobError::io(format!("create {}", tmp.display()), e))?;
    file.write_all(data)
        .await
        .map_err(|e| BlobError::io(format!("write {}", tmp.display()), e))?;
    file.sync_all()
        .await
        .map_err(|e| BlobError::io(format!("sync {}", tmp.display()), e))?;
    drop(file);
    publish(tmp, dest).await
}

/// Renames a complete, synced file into place (replacing what was there:
/// for ACLs, never for objects) and syncs the folder, so the rename itself
/// survives a crash.
async fn publish(tmp: &Path, dest: &Path) -> Result<()> {
    let dir = parent_created(dest).await?;
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(|e| BlobError::io(format!("rename into {}", dest.display()), e))?;
    sync_dir(dir, dest).await
}

/// Links a complete, synced file under `dest` unless that name exists:
/// `true` when linked (and the folder synced), `false` when the name was
/// taken. `link` is atomic and never replaces, which is what makes objects
/// write-once even against concurrent writers in other processes.
async fn publish_new(tmp: &Path, dest: &Path) -> Result<bool> {
    let dir = parent_created(dest).await?;
    match tokio::fs::hard_link(tmp, dest).await {
        Ok(()) => sync_dir(dir, dest).await.map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(BlobError::io(format!("link into {}", dest.display()), e)),
    }
}

/// The folder of `dest`, created if missing.
async fn parent_created(dest: &Path) -> Result<&Path> {
    let Some(dir) = dest.parent() else {
        return Err(BlobError::new(
            BlobErrorKind::Io,
            format!("{} has no parent", dest.display()),
        ));
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| BlobError::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

/// Syncs the folder `dir` after a name in it (`dest`) changed.
async fn sync_dir(dir: &Path, dest: &Path) -> Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .await
        .map_err(|e| BlobError::new(BlobErrorKind::Io, format!("sync task failed: {e}")))?
        .map_err(|e| BlobError::io(format!("sync folder of {}", dest.display()), e))
}

/// The names in a folder; a missing folder is empty.
async fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BlobError::io(format!("list {}", dir.display()), e)),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries
        .next_entry()
        .await
        .map_err(|e| BlobError::io(format!("list {}", dir.display()), e))?
    {
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

#[async_trait]
impl BlobStore for LocalStore {
    fn encrypts_at_rest(&self) -> bool {
        self.shared.at_rest.is_some()
    }

    async fn ready(&self) -> Result<()> {
        let root = &self.shared.root;
        let mut entries = tokio::fs::read_dir(root)
            .await
            .map_err(|e| BlobError::io(format!("list store root {}", root.display()), e))?;
        entries
            .next_entry()
            .await
            .map_err(|e| BlobError::io(format!("list store root {}", root.display()), e))?;
        Ok(())
    }

    async fn create_container(&self, c: &ContainerName) -> Result<()> {
        self.require_owner("create", c)?;
        let dir = self.container_dir(c);
        for sub in ["objects", "tmp"] {
            tokio::fs::create_dir_all(dir.join(sub))
                .await
                .map_err(|e| BlobError::io(format!("create container {c}"), e))?;
        }
        Ok(())
    }

    async fn delete_container(&self, c: &ContainerName) -> Result<()> {
        self.require_owner("delete", c)?;
        if !self.container_exists(c).await? {
            return Err(BlobError::new(
                BlobErrorKind::NotFound,
                format!("no container {c}"),
            ));
        }
        if !self.list_objects(c).await?.is_empty() {
            return Err(BlobError::new(
                BlobErrorKind::Conflict,
                format!("container {c} still holds objects"),
            ));
        }
        tokio::fs::remove_dir_all(self.container_dir(c))
            .await
            .map_err(|e| BlobError::io(format!("delete container {c}"), e))
    }

    async fn put(&self, c: &ContainerName, id: &ChunkId, body: ByteStream) -> Result<ObjectInfo> {
        self.authorize("write", c, true).await?;
        let size = self.write_object(c, id, body).await?;
        Ok(ObjectInfo { id: *id, size })
    }

    async fn get(
        &self,
        c: &ContainerName,
        id: &ChunkId,
        range: Option<ByteRange>,
    ) -> Result<ByteStream> {
        self.authorize("read", c, false).await?;
        let what = format!("object {id} in {c}");
        let mut file = tokio::fs::File::open(self.object_path(c, id))
            .await
            .map_err(|e| BlobError::io(format!("open {what}"), e))?;
        let header = format::read_header(&mut file, &what).await?;
        self.payload(c, id, header, file, range, what)
    }

    async fn head(&self, c: &ContainerName, id: &ChunkId) -> Result<ObjectInfo> {
        self.authorize("read", c, false).await?;
        let what = format!("object {id} in {c}");
        let mut file = tokio::fs::File::open(self.object_path(c, id))
            .await
            .map_err(|e| BlobError::io(format!("open {what}"), e))?;
        let header = format::read_header(&mut file, &what).await?;
        Ok(ObjectInfo {
            id: *id,
            size: header.len(),
        })
    }

    async fn delete(&self, c: &ContainerName, id: &ChunkId) -> Result<()> {
        self.authorize("delete", c, true).await?;
        tokio::fs::remove_file(self.object_path(c, id))
            .await
            .map_err(|e| BlobError::io(format!("delete object {id} in {c}"), e))
    }

    async fn list(&self, c: &ContainerName) -> Result<Vec<ChunkId>> {
        self.authorize("list", c, false).await?;
        self.list_objects(c).await
    }

    async fn existing(&self, c: &ContainerName, ids: &[ChunkId]) -> Result<HashSet<ChunkId>> {
        self.authorize("read", c, false).await?;
        futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                let path = self.object_path(c, &id);
                match tokio::fs::try_exists(&path).await {
                    Ok(true) => Ok(Some(id)),
                    Ok(false) => Ok(None),
                    Err(e) => Err(BlobError::io(format!("stat object {id} in {c}"), e)),
                }
            })
            .buffer_unordered(16)
            .try_filter_map(|found| async move { Ok(found) })
            .try_collect()
            .await
    }

    async fn grant(&self, c: &ContainerName, user: &StorageUser, access: Access) -> Result<()> {
        self.require_owner("change the ACL of", c)?;
        self.authorize("grant", c, true).await?;
        let _guard = self.shared.acl_lock.lock().await;
        let mut acl = self.read_acl(c).await?;
        acl.grant(user, access);
        self.write_acl(c, &acl).await
    }

    async fn revoke(&self, c: &ContainerName, user: &StorageUser, access: Access) -> Result<()> {
        self.require_owner("change the ACL of", c)?;
        self.authorize("revoke", c, true).await?;
        let _guard = self.shared.acl_lock.lock().await;
        let mut acl = self.read_acl(c).await?;
        acl.revoke(user, access);
        self.write_acl(c, &acl).await
    }

    async fn acl(&self, c: &ContainerName) -> Result<ContainerAcl> {
        self.require_owner("read the ACL of", c)?;
        self.authorize("read ACL", c, false).await?;
        self.read_acl(c).await
    }
}
