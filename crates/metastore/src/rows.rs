//! Reading typed values back out of rows. Everything stored is re-validated
//! on the way out: a hand-edited or corrupt row becomes an error, not a panic.

use std::str::FromStr;

use sqlx::Row;
use sqlx::any::AnyRow;
use stacksync_proto::keys::{from_hex, to_hex};
use stacksync_proto::{
    ChunkId, ChunkRef, ContentHash, DeviceId, Error, ItemId, ItemMeta, ItemName, ItemStatus,
    PackSpan, WorkspaceId,
};

use crate::error::{DbContext, StoreError};

/// Columns that [`item_from_row`] reads, for the `items` table.
pub(crate) const ITEM_COLS: &str = "id, workspace_id, parent_id, name, is_folder, mimetype, status, \
     latest_version AS version, revision, content_hash, size, client_modified, server_modified, device_id, \
     record";

/// Columns that [`item_from_row`] reads, for the `item_versions` table.
pub(crate) const VERSION_COLS: &str = "item_id AS id, workspace_id, parent_id, name, is_folder, mimetype, \
     status, version, revision, content_hash, size, client_modified, server_modified, device_id, record";

/// The stored form of "no parent" (top of the workspace).
pub(crate) const TOP: &str = "";

pub(crate) fn parent_to_db(parent: Option<ItemId>) -> String {
    parent.map(|p| p.to_string()).unwrap_or_default()
}

pub(crate) fn corrupt(table: &'static str, detail: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: detail.into(),
    }
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(col).ctx(col)
}

pub(crate) fn parse_id<T: FromStr>(table: &'static str, s: &str) -> Result<T, StoreError> {
    s.parse()
        .map_err(|_| corrupt(table, format!("bad id {s:?}")))
}

pub(crate) fn to_u64(table: &'static str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(table, format!("negative value {v}")))
}

/// An item row without its chunk list.
pub(crate) fn item_from_row(table: &'static str, row: &AnyRow) -> Result<ItemMeta, StoreError> {
    let parent: String = get(row, "parent_id")?;
    let parent = if parent == TOP {
        None
    } else {
        Some(parse_id::<ItemId>(table, &parent)?)
    };
    let name: String = get(row, "name")?;
    let status: String = get(row, "status")?;
    let hash: Option<String> = get(row, "content_hash")?;
    let record: Option<String> = get(row, "record")?;
    Ok(ItemMeta {
        id: parse_id(table, &get::<String>(row, "id")?)?,
        workspace: parse_id::<WorkspaceId>(table, &get::<String>(row, "workspace_id")?)?,
        parent,
        name: ItemName::new(name).map_err(|e| corrupt(table, e.to_string()))?,
        is_folder: flag(row, "is_folder")?,
        mimetype: get(row, "mimetype")?,
        status: ItemStatus::parse(&status)
            .ok_or_else(|| corrupt(table, format!("status {status:?}")))?,
        version: to_u64(table, get(row, "version")?)?,
        content_hash: hash
            .map(|h| ContentHash::from_hex(&h).map_err(|e| corrupt(table, e.to_string())))
            .transpose()?,
        size: to_u64(table, get(row, "size")?)?,
        client_modified: get(row, "client_modified")?,
        server_modified: get(row, "server_modified")?,
        device: parse_id::<DeviceId>(table, &get::<String>(row, "device_id")?)?,
        revision: to_u64(table, get(row, "revision")?)?,
        chunks: Vec::new(),
        record: record_from_db(table, record.as_deref())?,
    })
}

/// A version's sealed record as stored (lower-case hex; NULL for none).
pub(crate) fn record_to_db(record: Option<&[u8]>) -> Option<String> {
    record.map(to_hex)
}

/// A stored record back as bytes. A record is never empty (the commit
/// rules refuse one), so an empty value is as corrupt as one that is not
/// hex.
pub(crate) fn record_from_db(
    table: &'static str,
    text: Option<&str>,
) -> Result<Option<Vec<u8>>, StoreError> {
    match text {
        None => Ok(None),
        Some(text) => match from_hex(text) {
            Some(bytes) if !bytes.is_empty() => Ok(Some(bytes)),
            _ => Err(corrupt(
                table,
                format!("a record of {} characters is not hex", text.len()),
            )),
        },
    }
}

/// Columns that [`chunk_from_row`] reads: a chunk's id and size (from
/// `version_chunks` or `chunk_refs`) and its location in the workspace's
/// chunk index (`chunk_refs`, joined when the row comes from elsewhere).
pub(crate) const CHUNK_COLS: &str = "chunk_id, size, pack_id, pack_offset, pack_len, pack_base";

/// One chunk with its stored location: a row with [`CHUNK_COLS`].
pub(crate) fn chunk_from_row(row: &AnyRow) -> Result<ChunkRef, StoreError> {
    chunk_from_columns(row, "size")
}

/// One chunk with its stored location, from a row that names the chunk's
/// size `size_col` (a row that also carries an item has the item's `size`).
pub(crate) fn chunk_from_columns(
    row: &AnyRow,
    size_col: &'static str,
) -> Result<ChunkRef, StoreError> {
    let id: String = get(row, "chunk_id")?;
    let size: i64 = get(row, size_col)?;
    let mut chunk = ChunkRef::whole(
        ChunkId::from_hex(&id).map_err(|e| corrupt("version_chunks", e.to_string()))?,
        u32::try_from(size).map_err(|_| corrupt("version_chunks", format!("size {size}")))?,
    );
    chunk.span = span_from_row(row)?;
    Ok(chunk)
}

/// The location columns of a `chunk_refs` row: all NULL (an object of its
/// own) or all set (a span of a pack).
///
/// A span outside any pack (written before spans were checked, when a
/// wrapping `offset + len` could be stored as -1) is left out, with a
/// warning, rather than failing the read: one bad location would otherwise
/// make the change feed fail for every member of the workspace. Without a
/// location the chunk reads as an object of its own, which a client fails
/// to find for that one file only.
fn span_from_row(row: &AnyRow) -> Result<Option<PackSpan>, StoreError> {
    let pack: Option<String> = get(row, "pack_id")?;
    let offset: Option<i64> = get(row, "pack_offset")?;
    let len: Option<i64> = get(row, "pack_len")?;
    let base: Option<String> = get(row, "pack_base")?;
    with_base(
        span_from_parts(pack.as_deref(), offset, len)?,
        base.as_deref(),
    )
}

/// `span` holding a delta against `base` (lower-case hex; `None` for a
/// chunk stored whole). A base without a location (or whose location was
/// dropped as outside any pack) is dropped with a warning, by the rule of
/// [`span_from_row`]: the chunk then fails to read for that file only.
pub(crate) fn with_base(
    span: Option<PackSpan>,
    base: Option<&str>,
) -> Result<Option<PackSpan>, StoreError> {
    match (span, base) {
        (span, None) => Ok(span),
        (Some(span), Some(base)) => {
            let base = ChunkId::from_hex(base).map_err(|e| corrupt("chunk_refs", e.to_string()))?;
            Ok(Some(span.delta_of(Some(base))))
        }
        (None, Some(base)) => {
            tracing::warn!(%base, "chunk index holds a delta base without a location; it is ignored");
            Ok(None)
        }
    }
}

/// A location from its three nullable parts, by the rules of
/// [`span_from_row`].
pub(crate) fn span_from_parts(
    pack: Option<&str>,
    offset: Option<i64>,
    len: Option<i64>,
) -> Result<Option<PackSpan>, StoreError> {
    match (pack, offset, len) {
        (None, None, None) => Ok(None),
        (Some(pack), Some(offset), Some(len)) => {
            let pack = ChunkId::from_hex(pack).map_err(|e| corrupt("chunk_refs", e.to_string()))?;
            let span = u64::try_from(offset)
                .ok()
                .zip(u32::try_from(len).ok())
                .and_then(|(offset, len)| PackSpan::new(pack, offset, len).ok());
            if span.is_none() {
                tracing::warn!(
                    %pack, offset, len,
                    "chunk index holds a location outside any pack; it is ignored"
                );
            }
            Ok(span)
        }
        (pack, offset, len) => Err(corrupt(
            "chunk_refs",
            format!("partial location: pack {pack:?}, offset {offset:?}, length {len:?}"),
        )),
    }
}

/// The four nullable location columns: pack, offset, length, delta base.
pub(crate) type SpanColumns = (Option<String>, Option<i64>, Option<i64>, Option<String>);

/// A chunk's location as the three nullable `chunk_refs` columns; a span
/// outside any pack is refused (the commit path checks spans first, so this
/// is the last line, not the first).
pub(crate) fn span_to_db(span: Option<PackSpan>) -> Result<SpanColumns, StoreError> {
    match span {
        Some(s) => {
            s.check()?;
            Ok((
                Some(s.pack.to_hex()),
                Some(to_db("pack offset", s.offset)?),
                Some(i64::from(s.len)),
                s.base.map(|b| b.to_hex()),
            ))
        }
        None => Ok((None, None, None, None)),
    }
}

/// A number to store in a signed 64-bit column; larger ones are refused
/// (a plain cast would store them negative and break every later read).
pub(crate) fn to_db(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| Error::bad_request(format!("{what} {v} is out of range")).into())
}

/// A number to look up in a signed 64-bit column: one too large to be
/// stored becomes `i64::MAX`, which finds nothing rather than wrapping to
/// a negative value that could.
pub(crate) fn lookup_db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Marks a statement assembled at run time as safe: every dynamic statement
/// in this crate is built from constant fragments and numbered placeholders
/// only; values are always bound, never formatted into the text.
pub(crate) fn dynamic(sql: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(sql)
}

/// A 0/1 flag column as a bool.
pub(crate) fn flag(row: &AnyRow, col: &'static str) -> Result<bool, StoreError> {
    match get::<i64>(row, col)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(corrupt("flag", format!("{col} = {v}"))),
    }
}
