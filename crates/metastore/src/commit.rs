//! Commits, applied per batch in one transaction. Each proposed version is
//! decided by the commit rules (`stacksync_proto::commit_rules`, the one
//! decision every server applies: new item at version 1, `latest + 1`
//! accepted, an identical retry reported as committed, anything else a
//! conflict carrying the current metadata, and the refusals); this module
//! looks up the facts the decision asks for, checks chunks against the
//! chunk index, and writes.
//!
//! Accepted versions get consecutive workspace revisions (one per version,
//! so the change feed can page at any point). The whole batch, quota and
//! revision included, becomes durable together or not at all.
//!
//! Quota is not charged here: it counts bytes stored (the object ledger,
//! `objects.rs`), which a commit does not add to. What a commit checks is
//! where its chunks are (`claims.rs`): new location claims must point into
//! objects the workspace's ledger knows, and none into an object the
//! garbage collector is deleting.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::AnyConnection;
use stacksync_proto::commit_rules::{self, AncestryWalk, Decision, Facts, Setting};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, CommitResult, DeviceId, EncryptionMode, Error,
    ErrorKind, ItemCommitResult, ItemId, ItemMeta, ItemName, ProposedItem, UserId, WorkspaceId,
};

use crate::chunk_index::{check_chunk_sizes, locate, stored_chunks};
use crate::claims::{object_of, own_packs, settle};
use crate::error::{DbContext, StoreError};
use crate::feed::{attach_chunks, load_item, load_version};
use crate::objects::{StoredObject, ledger_rows};
use crate::packed_item::pack_chunk_list;
use crate::rows::dynamic;
use crate::rows::{
    ITEM_COLS, get, item_from_row, parent_to_db, parse_id, record_to_db, span_to_db, to_db, to_u64,
};
use crate::{MetaStore, now_ms};

/// Deepest folder nesting the store accepts (the commit rules' bound).
pub const MAX_DEPTH: usize = commit_rules::MAX_DEPTH;

/// What a batch carries from one item to the next.
struct Batch {
    workspace: WorkspaceId,
    device: DeviceId,
    revision: u64,
    now: i64,
    /// Latest state (without chunks) of every item the batch has looked at
    /// or written, `None` for ids known not to exist. Read once up front for
    /// the batch's own ids; kept current as the batch writes.
    items: HashMap<ItemId, Option<ItemMeta>>,
    /// The workspace's chunk index entry (size and location) of every
    /// chunk the batch names that was stored before it, plus those its
    /// accepted versions brought in: the first claim of a location wins.
    chunks: HashMap<ChunkId, ChunkRef>,
    /// Versions accepted so far, written together at the end of the batch.
    accepted: Vec<ItemMeta>,
    /// The ledger rows of every object the batch's chunks name.
    objects: HashMap<ChunkId, StoredObject>,
    /// Those of them the committing user uploaded.
    own: HashSet<ChunkId>,
    /// References the batch's new index entries hold on their delta bases
    /// (one per entry whose location is a delta), added at the end.
    base_holds: BTreeMap<ChunkId, i64>,
}

impl MetaStore {
    /// Applies a batch of proposed versions; see the module docs for the rules.
    ///
    /// The caller (the sync service) has already checked that the device
    /// belongs to a member of the workspace.
    pub async fn commit(&self, req: &CommitRequest) -> Result<CommitResult, StoreError> {
        self.commit_inner(req, None).await
    }

    /// [`MetaStore::commit`] only while the workspace's encryption setting
    /// is `mode`, the one the caller checked the proposals against (the
    /// service's rules differ by setting). The setting is read under the
    /// workspace's lock, so a workspace made end-to-end encrypted
    /// meanwhile ([`MetaStore::encrypt_private_workspace`]) never takes a
    /// batch checked as plain: the batch is refused whole, `Unavailable`,
    /// and nothing is written; sent again it is checked anew.
    pub async fn commit_in_mode(
        &self,
        req: &CommitRequest,
        mode: EncryptionMode,
    ) -> Result<CommitResult, StoreError> {
        self.commit_inner(req, Some(mode)).await
    }

    async fn commit_inner(
        &self,
        req: &CommitRequest,
        mode: Option<EncryptionMode>,
    ) -> Result<CommitResult, StoreError> {
        if req.items.len() > CommitRequest::MAX_ITEMS {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "a batch holds at most {} items, not {}",
                    CommitRequest::MAX_ITEMS,
                    req.items.len()
                ),
            )
            .into());
        }
        let ws = req.workspace.to_string();
        let mut tx = self.pool.begin().await.ctx("beginning a commit")?;
        // Write first: in PostgreSQL this locks the workspace row, so commits
        // to one workspace serialize; in SQLite it takes the write lock up
        // front instead of upgrading a read lock later (which can deadlock).
        let locked =
            sqlx::query("UPDATE workspaces SET latest_revision = latest_revision WHERE id = $1")
                .bind(&ws)
                .execute(&mut *tx)
                .await
                .ctx("locking the workspace")?;
        if locked.rows_affected() == 0 {
            return Err(Error::not_found(format!("no workspace {}", req.workspace)).into());
        }
        let row = sqlx::query("SELECT latest_revision, encryption FROM workspaces WHERE id = $1")
            .bind(&ws)
            .fetch_one(&mut *tx)
            .await
            .ctx("reading the workspace")?;
        let start = to_u64("workspaces", get(&row, "latest_revision")?)?;
        let setting: String = get(&row, "encryption")?;
        if mode.is_some_and(|mode| mode.as_str() != setting) {
            // Dropping the transaction rolls it back: nothing is written.
            return Err(Error::unavailable(format!(
                "the encryption setting of workspace {} changed while the commit was checked; \
                 send it again",
                req.workspace
            ))
            .into());
        }
        let named: Vec<ChunkId> = req
            .items
            .iter()
            .flat_map(|p| p.chunks.iter())
            .flat_map(|c| [Some(c.id), c.span.and_then(|s| s.base)])
            .flatten()
            .collect();
        let chunks = stored_chunks(&mut tx, req.workspace, &named, false).await?;
        // The objects both the proposals and the index place chunks in.
        let proposed = req
            .items
            .iter()
            .flat_map(|p| p.chunks.iter().map(object_of));
        let objects = ledger_rows(
            &mut tx,
            req.workspace,
            proposed.chain(chunks.values().map(object_of)),
        )
        .await?;
        let own = own_packs(&objects, committer(&mut tx, req.device).await?);
        let mut batch = Batch {
            workspace: req.workspace,
            device: req.device,
            revision: start,
            now: now_ms(),
            items: prefetch_items(&mut tx, &req.items).await?,
            chunks,
            accepted: Vec::new(),
            objects,
            own,
            base_holds: BTreeMap::new(),
        };
        let mut results = Vec::with_capacity(req.items.len());
        for item in &req.items {
            let outcome = commit_one(&mut tx, &mut batch, item).await?;
            results.push(ItemCommitResult {
                id: item.id,
                version: item.version,
                outcome,
            });
        }
        write_history(&mut tx, req.workspace, &batch.accepted, &batch.own).await?;
        hold_bases(&mut tx, req.workspace, &batch.base_holds).await?;
        if batch.revision != start {
            sqlx::query("UPDATE workspaces SET latest_revision = $1 WHERE id = $2")
                .bind(to_db("revision", batch.revision)?)
                .bind(&ws)
                .execute(&mut *tx)
                .await
                .ctx("advancing the workspace revision")?;
        }
        tx.commit().await.ctx("committing a batch")?;
        Ok(CommitResult {
            workspace: req.workspace,
            device: req.device,
            results,
            revision: batch.revision,
        })
    }
}

/// Rows bound per multi-row statement (well under both databases' limits on
/// bound parameters).
pub(crate) const ROWS: usize = 400;

/// The user whose device commits (`None` for a device the store does not
/// know; the service has checked it is the caller's).
async fn committer(
    conn: &mut AnyConnection,
    device: DeviceId,
) -> Result<Option<UserId>, StoreError> {
    let row = sqlx::query("SELECT user_id FROM devices WHERE id = $1")
        .bind(device.to_string())
        .fetch_optional(&mut *conn)
        .await
        .ctx("reading the committing device")?;
    row.map(|r| parse_id("devices", &get::<String>(&r, "user_id")?))
        .transpose()
}

/// The current rows of the batch's items, in one query per 400 ids.
async fn prefetch_items(
    conn: &mut AnyConnection,
    items: &[ProposedItem],
) -> Result<HashMap<ItemId, Option<ItemMeta>>, StoreError> {
    let ids: Vec<ItemId> = items
        .iter()
        .map(|p| p.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut known: HashMap<ItemId, Option<ItemMeta>> = ids.iter().map(|id| (*id, None)).collect();
    for group in ids.chunks(ROWS) {
        let marks: Vec<String> = (1..=group.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT {ITEM_COLS} FROM items WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql));
        for id in group {
            q = q.bind(id.to_string());
        }
        for row in q
            .fetch_all(&mut *conn)
            .await
            .ctx("reading the batch's items")?
        {
            let m = item_from_row("items", &row)?;
            known.insert(m.id, Some(m));
        }
    }
    Ok(known)
}

fn refused(error: Error) -> Result<CommitOutcome, StoreError> {
    Ok(CommitOutcome::Refused { error })
}

/// One proposed version: the facts the commit rules ask for are looked up
/// here, the decision is [`commit_rules::decide`]'s; what is left to the
/// store is the chunk index (sizes and locations) and the write, whose
/// unique index on live names settles a new item's name.
async fn commit_one(
    conn: &mut AnyConnection,
    batch: &mut Batch,
    p: &ProposedItem,
) -> Result<CommitOutcome, StoreError> {
    let current = lookup(conn, batch, p.id).await?;
    let asked = commit_rules::lookups(batch.workspace, current.as_ref(), p);
    let mut facts = Facts::default();
    if let Some(version) = asked.stored_version {
        facts.stored = load_version(conn, p.id, version).await?;
    }
    if let Some(parent) = asked.ancestry {
        let mut walk = AncestryWalk::new(batch.workspace, p.id, p.is_folder, parent);
        while let Some(id) = walk.next_lookup() {
            let folder = lookup(conn, batch, id).await?;
            walk.found(folder.as_ref());
        }
        facts.ancestry = walk.result();
    }
    if let Some(folder) = asked.live_children {
        facts.live_children = has_live_children(conn, batch.workspace, folder).await?;
    }
    // A new item's name is settled by the live-name index when it is
    // written (one statement instead of two for the common case).
    if let Some((parent, name)) = &asked.name_holder
        && current.is_some()
    {
        facts.name_holder = name_holder(conn, batch.workspace, *parent, name, p.id).await?;
    }
    let at = Setting {
        workspace: batch.workspace,
        device: batch.device,
        now: batch.now,
        revision: batch.revision + 1,
    };
    let mut meta = match commit_rules::decide(&at, current.as_ref(), p, &facts) {
        Decision::Accept(meta) => meta,
        Decision::Conflict(current) => {
            return Ok(CommitOutcome::Conflict {
                current: attach_chunks(conn, current).await?,
            });
        }
        other => return Ok(other.into_outcome()),
    };
    if let Some(error) = check_chunk_sizes(&batch.chunks, &p.chunks) {
        return refused(error);
    }
    if meta.status.is_live() {
        let located = locate(&batch.chunks, &p.chunks);
        match settle(
            &batch.chunks,
            &batch.objects,
            &batch.own,
            &p.chunks,
            located,
        ) {
            Ok(chunks) => meta.chunks = chunks,
            Err(error) => return refused(error),
        }
    }
    if !write_item(conn, &meta, current.is_some()).await? {
        // The live-name index refused the new row: say who holds the name.
        return refused(
            name_clash(conn, &meta).await?.unwrap_or_else(|| {
                Error::internal(format!("item {} could not be stored", meta.id))
            }),
        );
    }
    batch.revision = meta.revision;
    for c in &meta.chunks {
        if let Entry::Vacant(new) = batch.chunks.entry(c.id) {
            // A new index entry stored as a delta holds its base.
            if let Some(base) = c.span.and_then(|s| s.base) {
                *batch.base_holds.entry(base).or_insert(0) += 1;
            }
            new.insert(*c);
        }
    }
    let mut cached = meta.clone();
    cached.chunks = Vec::new();
    batch.items.insert(meta.id, Some(cached));
    batch.accepted.push(meta.clone());
    Ok(CommitOutcome::Committed { meta })
}

/// The latest state of an item, from the batch's cache or the database.
async fn lookup(
    conn: &mut AnyConnection,
    batch: &mut Batch,
    id: ItemId,
) -> Result<Option<ItemMeta>, StoreError> {
    if let Some(known) = batch.items.get(&id) {
        return Ok(known.clone());
    }
    let loaded = load_item(conn, id).await?;
    batch.items.insert(id, loaded.clone());
    Ok(loaded)
}

/// The live item other than `id` in `parent` whose name is `name` or
/// folds to the same key (a name that differs only in case or Unicode
/// form).
async fn name_holder(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    parent: Option<ItemId>,
    name: &ItemName,
    id: ItemId,
) -> Result<Option<ItemMeta>, StoreError> {
    let holder = sqlx::query(dynamic(format!(
        "SELECT {ITEM_COLS} FROM items WHERE workspace_id = $1 AND parent_id = $2 \
         AND (name_key = $3 OR name = $4) AND status <> 'DELETED' AND id <> $5"
    )))
    .bind(ws.to_string())
    .bind(parent_to_db(parent))
    .bind(name.fold_key())
    .bind(name.as_str())
    .bind(id.to_string())
    .fetch_optional(&mut *conn)
    .await
    .ctx("checking a name")?;
    holder.map(|row| item_from_row("items", &row)).transpose()
}

/// The live sibling that holds `m`'s name or its folding key, as the
/// commit rules' refusal.
async fn name_clash(conn: &mut AnyConnection, m: &ItemMeta) -> Result<Option<Error>, StoreError> {
    let holder = name_holder(conn, m.workspace, m.parent, &m.name, m.id).await?;
    Ok(holder.map(|h| commit_rules::name_taken(&m.name, h)))
}

/// `name`, or the first of "stem (2).ext", "stem (3).ext"... that no live
/// item of `parent` other than `id` holds (a folder coming back to a place
/// whose name was taken meanwhile).
pub(crate) async fn free_name(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    parent: Option<ItemId>,
    name: &ItemName,
    id: ItemId,
) -> Result<ItemName, StoreError> {
    if name_holder(conn, ws, parent, name, id).await?.is_none() {
        return Ok(name.clone());
    }
    let full = name.as_str();
    let (stem, ext) = match full.rfind('.') {
        Some(dot) if dot > 0 => full.split_at(dot),
        _ => (full, ""),
    };
    for n in 2..1000 {
        let Ok(candidate) = ItemName::new(format!("{stem} ({n}){ext}")) else {
            break;
        };
        if name_holder(conn, ws, parent, &candidate, id)
            .await?
            .is_none()
        {
            return Ok(candidate);
        }
    }
    Err(Error::new(
        stacksync_proto::ErrorKind::Conflict,
        format!("no free name like {full:?} is left in that folder"),
    )
    .into())
}

async fn has_live_children(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    folder: ItemId,
) -> Result<bool, StoreError> {
    let row = sqlx::query("SELECT 1 AS one FROM items WHERE workspace_id = $1 AND parent_id = $2 AND status <> 'DELETED' LIMIT 1")
        .bind(ws.to_string())
        .bind(folder.to_string())
        .fetch_optional(&mut *conn)
        .await
        .ctx("checking a folder's children")?;
    Ok(row.is_some())
}

/// Writes one version outside a batch: the item's row and its history.
pub(crate) async fn write_version(
    conn: &mut AnyConnection,
    m: &ItemMeta,
    exists: bool,
) -> Result<(), StoreError> {
    if !write_item(conn, m, exists).await? {
        return Err(name_clash(conn, m)
            .await?
            .unwrap_or_else(|| Error::internal(format!("item {} could not be stored", m.id)))
            .into());
    }
    write_history(conn, m.workspace, std::slice::from_ref(m), &HashSet::new()).await
}

/// Writes the item's latest-state row, with its chunk list as the feed
/// reads it: `m.chunks` must carry the locations the version's chunks are
/// read from (as `settle` leaves them). A new row that would take a live
/// name already taken is not written (`false`): the database's unique
/// index decides, inside the same statement.
async fn write_item(
    conn: &mut AnyConnection,
    m: &ItemMeta,
    exists: bool,
) -> Result<bool, StoreError> {
    let sql = if exists {
        "UPDATE items SET parent_id = $2, name = $3, mimetype = $4, status = $5, latest_version = $6, \
         revision = $7, content_hash = $8, size = $9, client_modified = $10, server_modified = $11, \
         device_id = $12, is_folder = $13, workspace_id = $14, name_key = $15, chunk_list = $16, \
         record = $17 WHERE id = $1"
    } else {
        "INSERT INTO items (id, parent_id, name, mimetype, status, latest_version, revision, content_hash, \
         size, client_modified, server_modified, device_id, is_folder, workspace_id, name_key, chunk_list, \
         record) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT DO NOTHING"
    };
    let done = sqlx::query(sql)
        .bind(m.id.to_string())
        .bind(parent_to_db(m.parent))
        .bind(m.name.as_str())
        .bind(&m.mimetype)
        .bind(m.status.as_str())
        .bind(to_db("version", m.version)?)
        .bind(to_db("revision", m.revision)?)
        .bind(m.content_hash.map(|h| h.to_hex()))
        .bind(to_db("size", m.size)?)
        .bind(m.client_modified)
        .bind(m.server_modified)
        .bind(m.device.to_string())
        .bind(i64::from(m.is_folder))
        .bind(m.workspace.to_string())
        .bind(m.name.fold_key())
        .bind(pack_chunk_list(m))
        .bind(record_to_db(m.record.as_deref()))
        .execute(&mut *conn)
        .await
        .ctx("writing an item")?;
    Ok(done.rows_affected() == 1)
}

/// Version rows, their chunk lists and the chunk reference counts of
/// `versions`, in multi-row statements (a batch or a large file means
/// thousands of rows).
///
/// A chunk placed in one of `own` (packs the committer uploaded) keeps
/// that place as the version's own location (see `claims.rs`).
async fn write_history(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    versions: &[ItemMeta],
    own: &HashSet<ChunkId>,
) -> Result<(), StoreError> {
    const COLS: usize = 15;
    for group in versions.chunks(ROWS) {
        let marks: Vec<String> = (0..group.len())
            .map(|r| {
                let cols: Vec<String> = (1..=COLS).map(|c| format!("${}", r * COLS + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO item_versions (item_id, version, workspace_id, parent_id, name, is_folder, \
             mimetype, status, revision, content_hash, size, client_modified, server_modified, device_id, \
             record) VALUES {}",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql));
        for m in group {
            q = q
                .bind(m.id.to_string())
                .bind(to_db("version", m.version)?)
                .bind(m.workspace.to_string())
                .bind(parent_to_db(m.parent))
                .bind(m.name.as_str())
                .bind(i64::from(m.is_folder))
                .bind(m.mimetype.clone())
                .bind(m.status.as_str())
                .bind(to_db("revision", m.revision)?)
                .bind(m.content_hash.map(|h| h.to_hex()))
                .bind(to_db("size", m.size)?)
                .bind(m.client_modified)
                .bind(m.server_modified)
                .bind(m.device.to_string())
                .bind(record_to_db(m.record.as_deref()));
        }
        q.execute(&mut *conn).await.ctx("writing versions")?;
    }
    let rows: Vec<(&ItemMeta, usize, &ChunkRef)> = versions
        .iter()
        .flat_map(|m| m.chunks.iter().enumerate().map(move |(seq, c)| (m, seq, c)))
        .collect();
    for group in rows.chunks(ROWS) {
        let marks: Vec<String> = (0..group.len())
            .map(|r| {
                let cols: Vec<String> = (1..=9).map(|c| format!("${}", r * 9 + c)).collect();
                format!("({})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO version_chunks (item_id, version, seq, chunk_id, size, pack_id, pack_offset, pack_len, pack_base) \
             VALUES {}",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql));
        for (m, seq, c) in group {
            q = q
                .bind(m.id.to_string())
                .bind(to_db("version", m.version)?)
                .bind(to_db("chunk position", *seq as u64)?)
                .bind(c.id.to_hex())
                .bind(i64::from(c.size));
            let own_span = c.span.filter(|s| own.contains(&s.pack));
            let (pack, offset, len, base) = span_to_db(own_span)?;
            q = q.bind(pack).bind(offset).bind(len).bind(base);
        }
        q.execute(&mut *conn).await.ctx("writing version chunks")?;
    }
    // One reference per version that uses a chunk, however often it repeats
    // in that version. The versions' chunks carry the locations `locate`
    // settled on, which for a chunk indexed before the batch is the stored
    // one: an existing entry's location is never rewritten.
    let mut refs: BTreeMap<ChunkId, (ChunkRef, i64)> = BTreeMap::new();
    for m in versions {
        let distinct: BTreeMap<ChunkId, ChunkRef> = m.chunks.iter().map(|c| (c.id, *c)).collect();
        for (id, chunk) in distinct {
            refs.entry(id).or_insert((chunk, 0)).1 += 1;
        }
    }
    let refs: Vec<_> = refs.into_values().collect();
    for group in refs.chunks(ROWS) {
        let marks: Vec<String> = (0..group.len())
            .map(|r| {
                let cols: Vec<String> = (2..=8).map(|c| format!("${}", 7 * r + c)).collect();
                format!("($1, {})", cols.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO chunk_refs (workspace_id, chunk_id, size, refs, pack_id, pack_offset, pack_len, pack_base) \
             VALUES {} \
             ON CONFLICT (workspace_id, chunk_id) DO UPDATE SET refs = chunk_refs.refs + excluded.refs",
            marks.join(", ")
        );
        let mut q = sqlx::query(dynamic(sql)).bind(ws.to_string());
        for (chunk, n) in group {
            let (pack, offset, len, base) = span_to_db(chunk.span)?;
            q = q
                .bind(chunk.id.to_hex())
                .bind(i64::from(chunk.size))
                .bind(*n)
                .bind(pack)
                .bind(offset)
                .bind(len)
                .bind(base);
        }
        q.execute(&mut *conn)
            .await
            .ctx("counting chunk references")?;
    }
    Ok(())
}

/// Adds the references new delta entries hold on their bases (see
/// migration 0007): a base stays indexed, and stored, while an entry that
/// reads as a delta against it does. Every base was checked to be indexed
/// (`claims::settle`), so each statement updates one row.
async fn hold_bases(
    conn: &mut AnyConnection,
    ws: WorkspaceId,
    holds: &BTreeMap<ChunkId, i64>,
) -> Result<(), StoreError> {
    for (base, n) in holds {
        sqlx::query(
            "UPDATE chunk_refs SET refs = refs + $1 WHERE workspace_id = $2 AND chunk_id = $3",
        )
        .bind(*n)
        .bind(ws.to_string())
        .bind(base.to_hex())
        .execute(&mut *conn)
        .await
        .ctx("holding delta bases")?;
    }
    Ok(())
}
