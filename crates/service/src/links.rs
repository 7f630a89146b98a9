//! Shared links: a file or folder a user opens to anyone who holds its URL
//! (`/s/ID#SECRET`), read only (`view`), or for a folder upload only
//! (`upload`, a file request), with an optional password and expiry.
//!
//! Every decision is made here. A link acts as its owner: on every
//! request the owner's access to the item is checked again as the REST
//! API checks it ([`Service::api_node`]), so a link dies when it is
//! revoked or expires, when its item is deleted, when its owner loses
//! access (left the shared folder, disabled, removed), and an item is
//! reached only if it is live inside the linked folder. Whatever is not
//! reachable answers the same [`gone`] error, whether the link is unknown,
//! its secret wrong, or it ended: nobody learns which links exist.
//!
//! Only hashes are stored: the secret's (BLAKE3; it has 160 random bits,
//! so a fast hash is enough), the password's (Argon2id, made off the
//! runtime, verified on login's bounded hashing pool), and each browser
//! session's token. Password attempts are counted per link in the metadata
//! store (so every server instance sees them): [`MAX_PASSWORD_ATTEMPTS`]
//! failures per [`PASSWORD_WINDOW_MS`], then `TooManyRequests`.
//!
//! A read-only member of a shared folder may make view links of it (they
//! can read and download all of it anyway), not upload links; nobody
//! makes a link to their top folder or into an end-to-end encrypted
//! workspace, whose contents the server cannot read. Uploads through a
//! link are committed by [`Service::api_upload`] as the owner's `link`
//! device, charged to the workspace owner's quota, and never replace
//! anything: a taken name gets ` (1)`, ` (2)`, ... before its extension.
//! Shared folders the owner mounted inside a linked folder are not part
//! of the link (their other members did not open them to anyone). A link
//! to a folder follows it when it is shared (it becomes the shared
//! folder) and when that share is dissolved (it comes back, ids kept).

use std::sync::atomic::{AtomicI64, Ordering};

use stacksync_metastore::{Attempt, LinkAccess, LinkRecord};
use stacksync_proto::{EncryptionMode, Error, ErrorKind, ItemName, Millis, UserId, printable};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::api::{ApiNode, MAX_LIST_PAGE, NewContent, UploadTo};
use crate::auth::{now_ms, token_hash};
use crate::{ApiCaller, MAX_PASSWORD_BYTES, Service, hash_password};

type Result<T, E = Error> = std::result::Result<T, E>;

/// How long a browser's session of a link lasts (or until the link
/// expires, if sooner): 12 hours.
pub const LINK_SESSION_MS: Millis = 12 * 3600 * 1000;

/// The window in which a link's password attempts are counted: a minute.
pub const PASSWORD_WINDOW_MS: Millis = 60 * 1000;

/// Failed password attempts a link takes per window.
pub const MAX_PASSWORD_ATTEMPTS: u32 = 10;

/// The API client name an upload through a link is committed as (its
/// device is named after it).
pub const LINK_DEVICE: &str = "link";

/// Random bytes of a link's secret (hex in its URL).
const SECRET_BYTES: usize = 20;

/// Candidate names tried for an upload whose name is taken.
const MAX_NAME_TRIES: usize = 1000;

/// Link passwords hashed at once (each Argon2 hash takes ~19 MiB); the
/// others wait. Verifications use login's hashing pool.
static HASHING: Semaphore = Semaphore::const_new(2);

/// When this process last pruned expired link sessions (milliseconds).
static PRUNED_AT: AtomicI64 = AtomicI64::new(0);

/// A link to make.
#[derive(Debug, Clone)]
pub struct NewLink {
    /// The file or folder (an item id or a shared folder's id).
    pub item: Uuid,
    /// A password to ask for; `None` or empty: none.
    pub password: Option<String>,
    /// When it stops working (milliseconds since the epoch), if ever.
    pub expires_at: Option<Millis>,
    /// What its holders may do.
    pub access: LinkAccess,
}

/// A link as its owner sees it (never its secret).
#[derive(Debug, Clone)]
pub struct Link {
    /// Its id, in its URL.
    pub id: Uuid,
    /// The id it was made for.
    pub item_id: Uuid,
    /// The item as the owner sees it now; `None` once the link is dead
    /// (the item deleted, or the owner lost access to it).
    pub item: Option<ApiNode>,
    /// What its holders may do.
    pub access: LinkAccess,
    /// Whether it asks for a password.
    pub has_password: bool,
    /// When it was made (milliseconds).
    pub created_at: Millis,
    /// When it stops working (milliseconds), if ever.
    pub expires_at: Option<Millis>,
}

impl Link {
    /// Whether it expired at `now` (milliseconds).
    pub fn expired_at(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A new link and its secret, which is shown this once.
#[derive(Debug, Clone)]
pub struct CreatedLink {
    /// The link.
    pub link: Link,
    /// The secret of its URL (`/s/ID#SECRET`); the server keeps its hash.
    pub secret: String,
}

/// What a live link lets a request reach, found only by
/// [`Service::open_link`] and [`Service::link_grant`] after every check:
/// the proof the other link operations take.
#[derive(Debug, Clone)]
pub struct LinkGrant {
    link: LinkRecord,
    root: ApiNode,
}

impl LinkGrant {
    /// The link's id.
    pub fn link_id(&self) -> Uuid {
        self.link.id
    }

    /// What the link lets its holders do.
    pub fn access(&self) -> LinkAccess {
        self.link.access
    }

    /// The linked file or folder, as its owner sees it now.
    pub fn root(&self) -> &ApiNode {
        &self.root
    }

    /// The linked item's name (a shared folder: as its owner names it).
    pub fn root_name(&self) -> String {
        node_name(&self.root)
    }

    /// When the link stops working, if ever (milliseconds).
    pub fn expires_at(&self) -> Option<Millis> {
        self.link.expires_at
    }

    /// Whether it asks for a password.
    pub fn has_password(&self) -> bool {
        self.link.password_hash.is_some()
    }
}

/// A browser's session of a link: the token for its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSession {
    /// 64 hex characters; the server keeps its hash.
    pub token: String,
    /// When it ends (milliseconds).
    pub expires_at: Millis,
}

/// A link opened: what it reaches, and a new session unless the request
/// came with a live one.
#[derive(Debug, Clone)]
pub struct OpenedLink {
    /// What the link reaches.
    pub grant: LinkGrant,
    /// The new session, if one was made.
    pub session: Option<LinkSession>,
}

/// A folder on the way from the linked folder to the one listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crumb {
    /// Its id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
}

/// A page of a folder reached through a link.
#[derive(Debug, Clone)]
pub struct LinkListing {
    /// From the linked folder (first) down to the folder listed (last).
    pub path: Vec<Crumb>,
    /// Its live files and folders, by name.
    pub entries: Vec<ApiNode>,
    /// The next page's cursor, if there may be one.
    pub cursor: Option<String>,
}

/// The one answer for a link that does not exist, has ended, was given a
/// wrong secret or session, or does not reach what was asked.
pub fn gone() -> Error {
    Error::not_found("this link does not exist or has ended")
}

/// `gone` for a refusal that says "not found", as it is.
fn gone_if_missing(e: Error) -> Error {
    if matches!(e.kind, ErrorKind::NotFound | ErrorKind::Forbidden) {
        gone()
    } else {
        e
    }
}

fn node_name(node: &ApiNode) -> String {
    match node {
        ApiNode::Root { .. } => String::new(),
        ApiNode::SharedRoot { workspace } => workspace.name.clone(),
        ApiNode::Item { meta, .. } => meta.name.to_string(),
    }
}

/// `bytes` random bytes in hex.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(buf))
}

/// Whether `secret` hashes to `stored` (hex), compared in constant time.
fn secret_matches(stored: &str, secret: &str) -> bool {
    if secret.len() > 256 {
        return false;
    }
    blake3::Hash::from_hex(stored).is_ok_and(|h| h == blake3::hash(secret.as_bytes()))
}

/// An uploaded file's name: composed (NFC), then checked.
fn upload_name(name: &str) -> Result<ItemName> {
    use unicode_normalization::UnicodeNormalization;
    let composed: String = name.nfc().collect();
    ItemName::new(composed).map_err(|why| Error::invalid_name(name, why))
}

/// The names an upload named `name` may take, in order: `name`, then
/// `stem (1).ext`, `stem (2).ext`, ... (`.ext` the last extension, none
/// for a name that starts with its only dot), skipping names too long.
fn candidate_names(name: &ItemName) -> impl Iterator<Item = ItemName> + '_ {
    let full = name.as_str();
    let (stem, ext) = match full.rfind('.') {
        Some(dot) if dot > 0 => full.split_at(dot),
        _ => (full, ""),
    };
    std::iter::once(name.clone()).chain(
        (1..MAX_NAME_TRIES).filter_map(move |n| ItemName::new(format!("{stem} ({n}){ext}")).ok()),
    )
}

impl Service {
    /// Makes a link to `new.item` for `user`.
    pub async fn create_link(&self, user: UserId, new: NewLink) -> Result<CreatedLink> {
        let node = self.api_node(user, Some(new.item)).await?;
        let ws = node.workspace().clone();
        match &node {
            ApiNode::Root { .. } => {
                return Err(Error::bad_request(
                    "the top folder cannot be shared by a link: link a file or folder in it",
                ));
            }
            ApiNode::Item { meta, .. } if !meta.status.is_live() => {
                return Err(Error::not_found(format!("{} was deleted", meta.id)));
            }
            _ => {}
        }
        if ws.encryption == EncryptionMode::ClientSide {
            return Err(Error::forbidden(format!(
                "'{}' is end-to-end encrypted: only its members' devices hold its key, so the \
                 server cannot show it to anyone through a link",
                printable(&ws.name)
            )));
        }
        if new.access == LinkAccess::Upload {
            if !node.is_folder() {
                return Err(Error::bad_request(
                    "an upload link is made for a folder, not a file",
                ));
            }
            self.writable_member_of(user, ws.id)
                .await
                .map_err(|e| e.to_proto())?;
        }
        let now = now_ms();
        if new.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::bad_request("expires_at must be in the future"));
        }
        let password = new.password.filter(|p| !p.is_empty());
        let password_hash = match password {
            Some(p) if p.len() > MAX_PASSWORD_BYTES => {
                return Err(Error::bad_request(format!(
                    "the password is longer than {MAX_PASSWORD_BYTES} bytes"
                )));
            }
            Some(p) => Some(hash_link_password(p).await?),
            None => None,
        };
        let secret = random_hex(SECRET_BYTES)?;
        let record = LinkRecord {
            // Time-ordered, so that links made in one millisecond list in order.
            id: Uuid::now_v7(),
            owner: user,
            item: new.item,
            access: new.access,
            secret_hash: token_hash(&secret),
            password_hash,
            created_at: now,
            expires_at: new.expires_at,
        };
        self.store()
            .create_link(&record)
            .await
            .map_err(Error::from)?;
        Ok(CreatedLink {
            link: link_of(&record, Some(node)),
            secret,
        })
    }

    /// `user`'s links, newest first, each with its item as they see it
    /// now (`None` for a dead link).
    pub async fn links_of(&self, user: UserId) -> Result<Vec<Link>> {
        let records = self.store().links_of(user).await.map_err(Error::from)?;
        let mut links = Vec::with_capacity(records.len());
        for record in records {
            let item = match self.link_root(&record).await {
                Ok(node) => Some(node),
                Err(e) if e.kind == ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            links.push(link_of(&record, item));
        }
        Ok(links)
    }

    /// Revokes `user`'s link `id`; another user's link is not found.
    pub async fn revoke_link(&self, user: UserId, id: Uuid) -> Result<()> {
        if self
            .store()
            .delete_link(user, id)
            .await
            .map_err(Error::from)?
        {
            Ok(())
        } else {
            Err(Error::not_found(format!("no link {id}")))
        }
    }

    /// Opens link `link` (the id in its URL) for a browser: with a live
    /// `session` of it, at once; otherwise with its `secret` and, if it
    /// has one, its `password`, making a new session. A wrong secret and
    /// a dead link are [`gone`]; a missing or wrong password is
    /// `Unauthenticated`, and `TooManyRequests` once the window is full.
    pub async fn open_link(
        &self,
        link: &str,
        secret: Option<&str>,
        password: Option<&str>,
        session: Option<&str>,
    ) -> Result<OpenedLink> {
        let id: Uuid = link.parse().map_err(|_| gone())?;
        if let Some(token) = session
            && let Ok(grant) = self.link_grant(link, Some(token)).await
        {
            return Ok(OpenedLink {
                grant,
                session: None,
            });
        }
        let secret = secret.ok_or_else(gone)?;
        let record = self
            .store()
            .link(id)
            .await
            .map_err(Error::from)?
            .ok_or_else(gone)?;
        if !secret_matches(&record.secret_hash, secret) {
            return Err(gone());
        }
        let root = self.link_root(&record).await?;
        if let Some(hash) = &record.password_hash {
            self.check_link_password(&record, hash, password).await?;
        }
        let now = now_ms();
        let token = random_hex(32)?;
        let expires_at = record
            .expires_at
            .map_or(now + LINK_SESSION_MS, |t| t.min(now + LINK_SESSION_MS));
        self.store()
            .create_link_session(id, &token_hash(&token), now, expires_at)
            .await
            .map_err(Error::from)?;
        self.prune_link_sessions(now).await;
        Ok(OpenedLink {
            grant: LinkGrant { link: record, root },
            session: Some(LinkSession { token, expires_at }),
        })
    }

    /// What the browser session `session` of link `link` reaches now.
    pub async fn link_grant(&self, link: &str, session: Option<&str>) -> Result<LinkGrant> {
        let id: Uuid = link.parse().map_err(|_| gone())?;
        let token = session.filter(|t| t.len() <= 128).ok_or_else(gone)?;
        let record = self
            .store()
            .link_of_session(id, &token_hash(token), now_ms())
            .await
            .map_err(Error::from)?
            .ok_or_else(gone)?;
        let root = self.link_root(&record).await?;
        Ok(LinkGrant { link: record, root })
    }

    /// A page of folder `folder` (`None`: the linked folder) of a view
    /// link; `cursor` from the previous page.
    pub async fn link_listing(
        &self,
        grant: &LinkGrant,
        folder: Option<Uuid>,
        cursor: Option<&str>,
    ) -> Result<LinkListing> {
        if grant.access() != LinkAccess::View {
            return Err(gone());
        }
        let (node, path) = self.link_item(grant, folder).await?;
        if !node.is_folder() {
            return Err(gone());
        }
        let page = self
            .api_children(grant.link.owner, &node, false, MAX_LIST_PAGE, cursor)
            .await?;
        let entries = page
            .children
            .into_iter()
            .filter(|c| matches!(c, ApiNode::Item { .. }))
            .collect();
        Ok(LinkListing {
            path,
            entries,
            cursor: page.cursor,
        })
    }

    /// File `item` of a view link (the linked file, or a file inside the
    /// linked folder), for [`Service::api_content`].
    pub async fn link_file(&self, grant: &LinkGrant, item: Uuid) -> Result<ApiNode> {
        if grant.access() != LinkAccess::View {
            return Err(gone());
        }
        let (node, _) = self.link_item(grant, Some(item)).await?;
        if node.is_folder() {
            return Err(gone());
        }
        Ok(node)
    }

    /// Stores `content` as a new file named `name` (or the first free
    /// name after it) in the folder of an upload link, as its owner's
    /// `link` device. `declared` is the body's length, if known: beyond
    /// the space left in the workspace owner's quota it is refused before
    /// any byte is read; the quota is enforced again as packs are stored.
    pub async fn link_upload(
        &self,
        grant: &LinkGrant,
        name: &str,
        content: NewContent,
        declared: Option<u64>,
    ) -> Result<ApiNode> {
        if grant.access() != LinkAccess::Upload {
            return Err(gone());
        }
        let name = upload_name(name)?;
        let ws = grant.root.workspace();
        let owner = self
            .store()
            .user(ws.owner)
            .await
            .map_err(Error::from)?
            .account;
        if let Some(size) = declared
            && owner.quota_limit > 0
            && size > owner.quota_limit.saturating_sub(owner.quota_used)
        {
            // Said without figures: the owner's free space is theirs.
            return Err(Error::quota_exceeded(
                "there is no room left in this folder for a file this large",
            ));
        }
        let parent = match &grant.root {
            ApiNode::Item { meta, .. } => Some(meta.id),
            _ => None,
        };
        let name = self.free_link_name(ws.id, parent, &name).await?;
        let caller = ApiCaller {
            user: grant.link.owner,
            consumer_key: LINK_DEVICE.to_owned(),
        };
        let to = UploadTo::New {
            parent: grant.root.id(),
            name: name.to_string(),
        };
        self.api_upload(&caller, to, content).await
    }

    /// The link's root as its owner sees it now, if the link still works:
    /// unexpired, its owner enabled and still seeing the item, which is
    /// live and readable here (and writable by the owner, for an upload
    /// link). [`gone`] otherwise.
    async fn link_root(&self, link: &LinkRecord) -> Result<ApiNode> {
        if link.expired_at(now_ms()) {
            return Err(gone());
        }
        let owner = self
            .store()
            .user(link.owner)
            .await
            .map_err(|e| gone_if_missing(e.into()))?;
        if owner.disabled {
            return Err(gone());
        }
        let node = self
            .link_target(link.owner, link.item)
            .await
            .map_err(gone_if_missing)?;
        let live = match &node {
            ApiNode::Root { .. } => false,
            ApiNode::SharedRoot { .. } => true,
            ApiNode::Item { meta, .. } => meta.status.is_live(),
        };
        let ws = node.workspace();
        if !live || ws.encryption == EncryptionMode::ClientSide {
            return Err(gone());
        }
        if link.access == LinkAccess::Upload {
            if !node.is_folder() {
                return Err(gone());
            }
            self.writable_member_of(link.owner, ws.id)
                .await
                .map_err(|e| gone_if_missing(e.to_proto()))?;
        }
        Ok(node)
    }

    /// What `item` names for `owner` now, following the folder through a
    /// share: a folder shared since is the shared folder it became (while
    /// the owner is in it), a shared folder dissolved since is the folder
    /// it came back as. So sharing a linked folder, or its last member
    /// leaving, does not end its links.
    async fn link_target(&self, owner: UserId, item: Uuid) -> Result<ApiNode> {
        match self.api_node(owner, Some(item)).await {
            Ok(ApiNode::Item { meta, .. }) if meta.is_folder && !meta.status.is_live() => {
                let shared = self
                    .store()
                    .workspace_shared_from(meta.id, owner)
                    .await
                    .map_err(Error::from)?;
                match shared {
                    Some(ws) => self.api_node(owner, Some(ws.0)).await,
                    None => Err(gone()),
                }
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                let folder = self
                    .store()
                    .folder_shared_as(item)
                    .await
                    .map_err(Error::from)?;
                match folder {
                    Some(folder) => self.api_node(owner, Some(folder.0)).await,
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// Item `id` (`None`: the link's root) if it is live inside the
    /// link's root, with the folders from the root down to it.
    async fn link_item(
        &self,
        grant: &LinkGrant,
        id: Option<Uuid>,
    ) -> Result<(ApiNode, Vec<Crumb>)> {
        let root = &grant.root;
        let root_crumb = || Crumb {
            id: root.id().unwrap_or_default(),
            name: grant.root_name(),
        };
        let Some(id) = id.filter(|id| Some(*id) != root.id()) else {
            return Ok((root.clone(), vec![root_crumb()]));
        };
        let stop = match root {
            ApiNode::Item { meta, .. } if meta.is_folder => Some(meta.id),
            ApiNode::SharedRoot { .. } => None,
            _ => return Err(gone()),
        };
        let node = self
            .api_node(grant.link.owner, Some(id))
            .await
            .map_err(gone_if_missing)?;
        let ApiNode::Item { workspace, meta } = &node else {
            return Err(gone());
        };
        if workspace.id != root.workspace().id {
            return Err(gone());
        }
        let steps = self
            .store()
            .path_within(workspace.id, meta.id, stop)
            .await
            .map_err(Error::from)?
            .ok_or_else(gone)?;
        let mut path: Vec<Crumb> = steps
            .into_iter()
            .rev()
            .map(|s| Crumb {
                id: s.id.0,
                name: s.name,
            })
            .collect();
        if stop.is_none() {
            // The whole shared folder: its root is not an item.
            path.insert(0, root_crumb());
        }
        Ok((node, path))
    }

    /// The first of [`candidate_names`] no live child of `parent` holds.
    async fn free_link_name(
        &self,
        ws: stacksync_proto::WorkspaceId,
        parent: Option<stacksync_proto::ItemId>,
        name: &ItemName,
    ) -> Result<ItemName> {
        let candidates: Vec<ItemName> = candidate_names(name).collect();
        for batch in candidates.chunks(100) {
            let keys: Vec<String> = batch.iter().map(ItemName::fold_key).collect();
            let taken = self
                .store()
                .taken_name_keys(ws, parent, &keys)
                .await
                .map_err(Error::from)?;
            if let Some(free) = batch.iter().find(|n| !taken.contains(&n.fold_key())) {
                return Ok(free.clone());
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "too many files are named like '{}' here already",
                printable(name.as_str())
            ),
        ))
    }

    /// Checks a link's password: admitted by the link's window, verified
    /// on the hashing pool; a right one gives its attempt back.
    async fn check_link_password(
        &self,
        link: &LinkRecord,
        hash: &str,
        password: Option<&str>,
    ) -> Result<()> {
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return Err(Error::unauthenticated(
                "this link is protected by a password: enter it to open the link",
            ));
        };
        let now = now_ms();
        match self
            .store()
            .admit_link_attempt(link.id, now, PASSWORD_WINDOW_MS, MAX_PASSWORD_ATTEMPTS)
            .await
            .map_err(Error::from)?
        {
            Attempt::Admitted => {}
            Attempt::Refused { until } => {
                let secs = (until.saturating_sub(now) + 999) / 1000;
                let secs = u64::try_from(secs.max(1)).unwrap_or(1);
                return Err(Error::too_many_requests(
                    format!("too many wrong passwords for this link; try again in {secs} s"),
                    secs,
                ));
            }
            Attempt::NoLink => return Err(gone()),
        }
        let right = if password.len() > MAX_PASSWORD_BYTES {
            false
        } else {
            match self
                .login_guard()
                .verify(password, Some(hash.to_owned()))
                .await
            {
                Ok(right) => right,
                Err(e) => {
                    // Not a failure of the password: give the attempt back.
                    let _ = self.store().forgive_link_attempt(link.id).await;
                    return Err(e.to_proto());
                }
            }
        };
        if !right {
            return Err(Error::unauthenticated(
                "wrong password for this link: check it and try again",
            ));
        }
        self.store()
            .forgive_link_attempt(link.id)
            .await
            .map_err(Error::from)
    }

    /// Deletes expired link sessions, at most once a minute per process;
    /// a failure is logged (the sessions are refused anyway once expired).
    async fn prune_link_sessions(&self, now: Millis) {
        let last = PRUNED_AT.load(Ordering::Relaxed);
        if now.saturating_sub(last) < 60_000
            || PRUNED_AT
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if let Err(e) = self.store().prune_link_sessions(now).await {
            tracing::warn!(error = %e, "expired link sessions not pruned");
        }
    }
}

/// A link record as its owner sees it.
fn link_of(record: &LinkRecord, item: Option<ApiNode>) -> Link {
    Link {
        id: record.id,
        item_id: record.item,
        item,
        access: record.access,
        has_password: record.password_hash.is_some(),
        created_at: record.created_at,
        expires_at: record.expires_at,
    }
}

/// Hashes a link's password with Argon2id off the runtime, a few at once.
async fn hash_link_password(password: String) -> Result<String> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|_| Error::internal("the link password hashing gate closed"))?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| Error::internal(format!("hashing a link password: {e}")))?
        .map_err(|e| e.to_proto())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(name: &str, n: usize) -> Vec<String> {
        candidate_names(&ItemName::new(name).unwrap())
            .take(n)
            .map(|n| n.to_string())
            .collect()
    }

    #[test]
    fn taken_names_get_a_number_before_their_extension() {
        assert_eq!(
            names("photo.jpg", 3),
            ["photo.jpg", "photo (1).jpg", "photo (2).jpg"]
        );
        assert_eq!(
            names("archive.tar.gz", 2),
            ["archive.tar.gz", "archive.tar (1).gz"]
        );
        assert_eq!(names(".bashrc", 2), [".bashrc", ".bashrc (1)"]);
        assert_eq!(names("README", 2), ["README", "README (1)"]);
    }

    #[test]
    fn secrets_match_their_hash_only() {
        let secret = random_hex(SECRET_BYTES).unwrap();
        assert_eq!(secret.len(), 40);
        let stored = token_hash(&secret);
        assert!(secret_matches(&stored, &secret));
        assert!(!secret_matches(&stored, &secret[1..]));
        assert!(!secret_matches("not hex", &secret));
        assert!(!secret_matches(&stored, &"a".repeat(10_000)));
    }
}
