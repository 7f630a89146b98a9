//! A window of change-feed items packed into one text value by the
//! database, and unpacked here.
//!
//! sqlx's `Any` driver copies every column of every row into an owned
//! value before the row is read (and on SQLite hands each row from the
//! database's thread to the caller's), and a listing from 0 reads every
//! item of the workspace: with twenty columns per item and one row per
//! chunk, that cost more than the database's own work. So a window of the
//! feed comes back as one row of one value: its items' records in
//! revision order (`string_agg`, which SQLite has had since 3.44 as
//! PostgreSQL has), each record five fields, and records and fields all
//! joined by `/`, the one character an item name cannot hold:
//!
//! * the item's fixed-format columns (ids, numbers, hex digests, the status
//!   word) joined by `|`;
//! * its name, as it is;
//! * its MIME type, free text, with `\` written `\\` and `/` written `\s`,
//!   after a `=` that tells an empty type from none;
//! * its chunk list, each chunk's six fields joined by `:` and chunks by
//!   `,`, and a seventh, the delta base, for a chunk stored as a delta
//!   (migration 0007). Each chunk carries its `seq` and the list is put in
//!   order here (lists packed from the tables by SQL come in any order);
//! * its sealed record (end-to-end encrypted workspaces, migration 0011),
//!   lower-case hex, which holds no separator, after a `=` as the MIME
//!   type has, so that a record too tells itself from none.
//!
//! The packed value is written by SQL in this module and read back here
//! only. The chunk list is the one part stored packed: each item row keeps
//! its latest version's list (`items.chunk_list`, migration 0006), written
//! by [`pack_chunk_list`] at commit time, so a window reads one row per
//! item. Changing the chunk format means packing the stored lists again. A NULL field becomes an empty one, so the unpacked value is
//! exactly what the columns held, and a value that does not parse (a
//! hand-edited database) is a [`StoreError::Corrupt`], never a panic.

use std::str::{FromStr, Split};

use stacksync_proto::{ChunkId, ChunkRef, ContentHash, ItemMeta, ItemName, ItemStatus};

use crate::error::StoreError;
use crate::rows::{TOP, corrupt, parse_id, record_from_db, span_from_parts, to_u64, with_base};

/// The fixed-format columns of `items` row `i`, packed into one text value
/// in the order [`unpack_item`] reads them. `CAST(... AS TEXT)` writes
/// integers as plain decimals in both databases.
pub(crate) const PACKED_ITEM_FIELDS: &str = "i.id || '|' || i.workspace_id || '|' || i.parent_id \
     || '|' || CAST(i.is_folder AS TEXT) || '|' || i.status \
     || '|' || CAST(i.latest_version AS TEXT) || '|' || CAST(i.revision AS TEXT) \
     || '|' || COALESCE(i.content_hash, '') || '|' || CAST(i.size AS TEXT) \
     || '|' || CAST(i.client_modified AS TEXT) || '|' || CAST(i.server_modified AS TEXT) \
     || '|' || i.device_id";

/// One location column of a chunk: the version's own (`vc`) when it has
/// one, else the workspace index's (`cr`), as text ('' for NULL). Taking
/// all three columns from one side keeps a location whole.
fn location_field(column: &str) -> String {
    format!(
        "COALESCE(CAST(CASE WHEN vc.pack_id IS NULL THEN cr.{column} \
         ELSE vc.{column} END AS TEXT), '')"
    )
}

/// The chunk list of the version listed in `items` row `items`, packed
/// from the chunk tables in any order with each chunk's `seq`: a scalar
/// subquery that finds each chunk by the primary key of `version_chunks`
/// and its location in the item's workspace's index by that of
/// `chunk_refs`. What [`pack_chunk_list`] writes at commit time, read from
/// the tables instead; used where locations change under stored lists
/// (a folder moving to another workspace). Migration 0006 holds a copy.
pub(crate) fn chunk_list_from_tables() -> String {
    format!(
        "(SELECT string_agg(CAST(vc.seq AS TEXT) || ':' || vc.chunk_id \
             || ':' || CAST(vc.size AS TEXT) || ':' || {} || ':' || {} || ':' || {} \
             || COALESCE(':' || CASE WHEN vc.pack_id IS NULL THEN cr.pack_base ELSE vc.pack_base END, ''), ',') \
          FROM version_chunks vc \
          LEFT JOIN chunk_refs cr ON cr.workspace_id = items.workspace_id AND cr.chunk_id = vc.chunk_id \
          WHERE vc.item_id = items.id AND vc.version = items.latest_version)",
        location_field("pack_id"),
        location_field("pack_offset"),
        location_field("pack_len"),
    )
}

/// The stored chunk list of an item's latest version (`items.chunk_list`):
/// each chunk's position, id, size and location (where the workspace
/// reads it, as commit settled it) joined by `:`, chunks by `,`; `None`
/// for a folder, an empty file or a delete. Written with the item's row,
/// so the feed reads one row per item instead of probing the chunk tables
/// per chunk (`change_page.rs`).
pub(crate) fn pack_chunk_list(m: &ItemMeta) -> Option<String> {
    use std::fmt::Write;
    if m.is_folder || m.size == 0 || m.chunks.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(m.chunks.len() * 160);
    for (seq, c) in m.chunks.iter().enumerate() {
        if seq > 0 {
            out.push(',');
        }
        // Writing to a String cannot fail.
        let _ = match c.span {
            Some(s) => write!(
                out,
                "{seq}:{}:{}:{}:{}:{}",
                c.id.to_hex(),
                c.size,
                s.pack.to_hex(),
                s.offset,
                s.len
            )
            .and_then(|()| match s.base {
                Some(base) => write!(out, ":{}", base.to_hex()),
                None => Ok(()),
            }),
            None => write!(out, "{seq}:{}:{}:::", c.id.to_hex(), c.size),
        };
    }
    Some(out)
}

/// The record of `items` row `i` in a packed window (see the module docs):
/// its chunk list is the one stored with the row.
pub(crate) fn packed_record() -> String {
    format!(
        "{PACKED_ITEM_FIELDS} || '/' || i.name || '/' \
         || COALESCE('=' || replace(replace(i.mimetype, '\\', '\\\\'), '/', '\\s'), '') \
         || '/' || COALESCE(i.chunk_list, '') || '/' || COALESCE('=' || i.record, '')"
    )
}

/// The items of a window, in order, from its packed value (`None`: an
/// empty window) and the number of items the database counted in it.
pub(crate) fn unpack_window(packed: Option<&str>, count: i64) -> Result<Vec<ItemMeta>, StoreError> {
    let mut items = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    if let Some(packed) = packed {
        let mut fields = Fields::new(TABLE, packed, '/');
        while let Some(fixed) = fields.parts.next() {
            let name = fields.next("name")?;
            let mimetype = match fields.next("MIME type")? {
                "" => None,
                m => Some(unescape_mimetype(m)?),
            };
            let mut item = unpack_item(fixed, name.to_string(), mimetype)?;
            item.chunks = match fields.next("chunk list")? {
                "" => Vec::new(),
                chunks => unpack_chunk_list(Some(chunks))?,
            };
            item.record = unpack_record(fields.next("record")?)?;
            items.push(item);
        }
    }
    if i64::try_from(items.len()) != Ok(count) {
        return Err(corrupt(
            TABLE,
            format!("a window of {count} items unpacked as {}", items.len()),
        ));
    }
    Ok(items)
}

/// A MIME type field of a record: `=` and the type, escaped.
fn unescape_mimetype(field: &str) -> Result<String, StoreError> {
    let bad = || corrupt(TABLE, format!("MIME type {field:?}"));
    let escaped = field.strip_prefix('=').ok_or_else(bad)?;
    let mut out = String::with_capacity(escaped.len());
    let mut chars = escaped.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => match chars.next() {
                Some('\\') => '\\',
                Some('s') => '/',
                _ => return Err(bad()),
            },
            c => c,
        });
    }
    Ok(out)
}

/// A record field of a packed item: empty for none, else `=` and the
/// record's hex, read by the rule of the column (`record_from_db`).
fn unpack_record(field: &str) -> Result<Option<Vec<u8>>, StoreError> {
    match field {
        "" => Ok(None),
        field => match field.strip_prefix('=') {
            Some(hex) => record_from_db(TABLE, Some(hex)),
            None => Err(corrupt(
                TABLE,
                format!("a record field of {} characters", field.len()),
            )),
        },
    }
}

const TABLE: &str = "items";

/// The fields of a packed value, each asked for by name so that a missing
/// one is reported as such.
struct Fields<'a> {
    table: &'static str,
    parts: Split<'a, char>,
}

impl<'a> Fields<'a> {
    fn new(table: &'static str, packed: &'a str, separator: char) -> Self {
        Fields {
            table,
            parts: packed.split(separator),
        }
    }

    fn next(&mut self, what: &str) -> Result<&'a str, StoreError> {
        self.parts
            .next()
            .ok_or_else(|| corrupt(self.table, format!("packed value without its {what}")))
    }

    fn number<T: FromStr>(&mut self, what: &str) -> Result<T, StoreError> {
        let field = self.next(what)?;
        field
            .parse()
            .map_err(|_| corrupt(self.table, format!("{what} {field:?}")))
    }

    /// An empty field is NULL.
    fn optional_number(&mut self, what: &str) -> Result<Option<i64>, StoreError> {
        match self.next(what)? {
            "" => Ok(None),
            field => field
                .parse()
                .map(Some)
                .map_err(|_| corrupt(self.table, format!("{what} {field:?}"))),
        }
    }

    /// The next field if there is one (a field added at the end later).
    fn optional(&mut self) -> Option<&'a str> {
        self.parts.next()
    }

    fn end(mut self) -> Result<(), StoreError> {
        match self.parts.next() {
            None => Ok(()),
            Some(extra) => Err(corrupt(
                self.table,
                format!("packed value with {extra:?} extra"),
            )),
        }
    }
}

/// An item without its chunk list, from its [`PACKED_ITEM_FIELDS`] value
/// and its name and MIME type columns.
pub(crate) fn unpack_item(
    packed: &str,
    name: String,
    mimetype: Option<String>,
) -> Result<ItemMeta, StoreError> {
    let mut f = Fields::new(TABLE, packed, '|');
    let id = parse_id(TABLE, f.next("id")?)?;
    let workspace = parse_id(TABLE, f.next("workspace")?)?;
    let parent = match f.next("parent")? {
        TOP => None,
        p => Some(parse_id(TABLE, p)?),
    };
    let is_folder = match f.next("folder flag")? {
        "0" => false,
        "1" => true,
        v => return Err(corrupt(TABLE, format!("is_folder = {v}"))),
    };
    let status = f.next("status")?;
    let status =
        ItemStatus::parse(status).ok_or_else(|| corrupt(TABLE, format!("status {status:?}")))?;
    let version = to_u64(TABLE, f.number("version")?)?;
    let revision = to_u64(TABLE, f.number("revision")?)?;
    let content_hash = match f.next("content hash")? {
        "" => None,
        h => Some(ContentHash::from_hex(h).map_err(|e| corrupt(TABLE, e.to_string()))?),
    };
    let size = to_u64(TABLE, f.number("size")?)?;
    let client_modified = f.number("client time")?;
    let server_modified = f.number("server time")?;
    let device = parse_id(TABLE, f.next("device")?)?;
    f.end()?;
    Ok(ItemMeta {
        id,
        workspace,
        parent,
        name: ItemName::new(name).map_err(|e| corrupt(TABLE, e.to_string()))?,
        is_folder,
        mimetype,
        status,
        version,
        content_hash,
        size,
        client_modified,
        server_modified,
        device,
        revision,
        chunks: Vec::new(),
        record: None,
    })
}

/// A chunk list, in `seq` order, from its [`packed_chunk_list`] value
/// (`None`: no chunks).
pub(crate) fn unpack_chunk_list(packed: Option<&str>) -> Result<Vec<ChunkRef>, StoreError> {
    let Some(packed) = packed else {
        return Ok(Vec::new());
    };
    // Every chunk is at least 64 hex digits and five separators.
    let mut chunks: Vec<(i64, ChunkRef)> = Vec::with_capacity(packed.len() / 72 + 1);
    for chunk in packed.split(',') {
        let mut f = Fields::new("version_chunks", chunk, ':');
        let seq = f.number("chunk position")?;
        let id = f.next("chunk id")?;
        let id = ChunkId::from_hex(id).map_err(|e| corrupt("version_chunks", e.to_string()))?;
        let size = f.number("chunk size")?;
        let pack = match f.next("pack")? {
            "" => None,
            p => Some(p),
        };
        let offset = f.optional_number("pack offset")?;
        let len = f.optional_number("pack length")?;
        let base = match f.optional() {
            Some("") => return Err(corrupt("version_chunks", "an empty delta base")),
            base => base,
        };
        f.end()?;
        let mut chunk = ChunkRef::whole(id, size);
        chunk.span = with_base(span_from_parts(pack, offset, len)?, base)?;
        chunks.push((seq, chunk));
    }
    // Positions are unique (the primary key), so the order is total; the
    // list usually comes in order already, which this checks first.
    if !chunks.is_sorted_by_key(|(seq, _)| *seq) {
        chunks.sort_unstable_by_key(|(seq, _)| *seq);
    }
    Ok(chunks.into_iter().map(|(_, chunk)| chunk).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use stacksync_proto::keys::to_hex;
    use stacksync_proto::{DeviceId, ItemId, PackSpan, WorkspaceId};

    /// What the SQL of this module writes for `m`, written in Rust: the
    /// database tests (tests/listing.rs) check the SQL itself.
    fn pack_item(m: &ItemMeta) -> String {
        [
            m.id.to_string(),
            m.workspace.to_string(),
            m.parent.map(|p| p.to_string()).unwrap_or_default(),
            u8::from(m.is_folder).to_string(),
            m.status.as_str().to_string(),
            m.version.to_string(),
            m.revision.to_string(),
            m.content_hash.map(|h| h.to_hex()).unwrap_or_default(),
            m.size.to_string(),
            m.client_modified.to_string(),
            m.server_modified.to_string(),
            m.device.to_string(),
        ]
        .join("|")
    }

    /// Packs `chunks` as the database may return them: in any order (here
    /// the odd positions first, then the even ones backwards).
    fn pack_chunks(chunks: &[ChunkRef]) -> Option<String> {
        let order = (0..chunks.len())
            .filter(|k| k % 2 == 1)
            .chain((0..chunks.len()).filter(|k| k % 2 == 0).rev());
        let packed: Vec<String> = order
            .map(|k| (k, &chunks[k]))
            .map(|(k, c)| match c.span {
                Some(s) => format!(
                    "{k}:{}:{}:{}:{}:{}{}",
                    c.id.to_hex(),
                    c.size,
                    s.pack.to_hex(),
                    s.offset,
                    s.len,
                    s.base.map_or(String::new(), |b| format!(":{}", b.to_hex()))
                ),
                None => format!("{k}:{}:{}:::", c.id.to_hex(), c.size),
            })
            .collect();
        (!packed.is_empty()).then(|| packed.join(","))
    }

    fn item(parent: Option<ItemId>, hash: Option<ContentHash>, name: &str) -> ItemMeta {
        ItemMeta {
            id: ItemId::new(),
            workspace: WorkspaceId::new(),
            parent,
            name: ItemName::new(name.to_string()).unwrap(),
            is_folder: hash.is_none(),
            mimetype: Some("text/x-odd|type,with:separators".into()),
            status: ItemStatus::Renamed,
            version: u64::MAX >> 1,
            content_hash: hash,
            size: 0,
            client_modified: -5,
            server_modified: i64::MAX,
            device: DeviceId::new(),
            revision: 7,
            chunks: Vec::new(),
            record: None,
        }
    }

    /// A record as `packed_record` writes it.
    fn pack_record(m: &ItemMeta) -> String {
        let mimetype = m.mimetype.as_ref().map_or(String::new(), |t| {
            format!("={}", t.replace('\\', "\\\\").replace('/', "\\s"))
        });
        let chunks = pack_chunks(&m.chunks).unwrap_or_default();
        let record = m
            .record
            .as_ref()
            .map_or(String::new(), |r| format!("={}", to_hex(r)));
        format!("{}/{}/{mimetype}/{chunks}/{record}", pack_item(m), m.name)
    }

    fn roundtrip(m: &ItemMeta) -> ItemMeta {
        let back = unpack_window(Some(&pack_record(m)), 1).unwrap();
        assert_eq!(back.len(), 1);
        back.into_iter().next().unwrap()
    }

    #[test]
    fn windows_come_back_whole_in_order() {
        let mut items: Vec<ItemMeta> = ["a", "b|", "c\\"]
            .into_iter()
            .map(|n| item(None, Some(ContentHash([2; 32])), n))
            .collect();
        items[0].mimetype = Some("/\\s\\\\/=".into());
        items[1].mimetype = Some(String::new());
        items[2].mimetype = None;
        items[1].chunks = vec![ChunkRef::whole(ChunkId([8; 32]), 3)];
        let packed: Vec<String> = items.iter().map(pack_record).collect();
        assert_eq!(unpack_window(Some(&packed.join("/")), 3).unwrap(), items);
        assert!(unpack_window(None, 0).unwrap().is_empty());
        for (value, count) in [
            (packed.join("/"), 2),
            (packed[..2].join("/"), 3),
            (format!("{}/", packed[0]), 1),
            (packed[0].replace("/=", "/x"), 1),
            (packed[0].replace("\\s", "\\t"), 1),
            (packed[0].rsplit_once('/').unwrap().0.to_string(), 1),
        ] {
            assert!(
                matches!(
                    unpack_window(Some(&value), count),
                    Err(StoreError::Corrupt { .. })
                ),
                "{value:?} of {count} was accepted"
            );
        }
    }

    #[test]
    fn items_come_back_whole_whatever_their_name() {
        let top = item(None, None, "a|b,c:d");
        assert_eq!(roundtrip(&top), top);
        let mut nested = item(Some(ItemId::new()), Some(ContentHash([0xab; 32])), "|");
        nested.mimetype = None;
        assert_eq!(roundtrip(&nested), nested);
    }

    #[test]
    fn records_come_back_whole_and_bad_ones_are_corrupt() {
        // Every byte value, separators of the packed format among them:
        // hex carries them all as digits.
        let hostile: Vec<u8> = (0..=255u8).chain(*b"/|=\\,:%").chain([0, 0xff]).collect();
        let mut items: Vec<ItemMeta> = ["a", "b", "c"]
            .into_iter()
            .map(|n| item(None, Some(ContentHash([3; 32])), n))
            .collect();
        items[0].record = Some(hostile);
        items[2].record = Some(vec![0]);
        items[2].chunks = vec![ChunkRef::whole(ChunkId([8; 32]), 3)];
        let packed: Vec<String> = items.iter().map(pack_record).collect();
        assert_eq!(unpack_window(Some(&packed.join("/")), 3).unwrap(), items);
        for m in &items {
            assert_eq!(&roundtrip(m), m);
        }
        // A record the columns could not hold either: not hex, odd, empty,
        // without its mark.
        let (head, record) = packed[0].rsplit_once('/').unwrap();
        assert!(record.starts_with("=00010203"), "{record}");
        for bad in ["=", "=0", "=zz", "=0g", "00", "==00", "x", "= 00", "=00 "] {
            let value = format!("{head}/{bad}");
            assert!(
                matches!(
                    unpack_window(Some(&value), 1),
                    Err(StoreError::Corrupt { .. })
                ),
                "{value:?} was accepted"
            );
        }
        // Upper-case hex is still hex (the decoder is total, not picky).
        let upper = format!("{head}/={}", &record[1..].to_uppercase());
        assert_eq!(unpack_window(Some(&upper), 1).unwrap()[0], items[0]);
        assert!(matches!(
            unpack_window(Some(&format!("{head}/=00/")), 1),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn chunk_lists_come_back_in_order_with_their_locations() {
        let mut m = item(None, Some(ContentHash([1; 32])), "many");
        m.chunks = (0..5000u32)
            .map(|k| {
                let mut c = ChunkRef::whole(ChunkId([(k % 251) as u8; 32]), k);
                if k % 2 == 0 {
                    let span = PackSpan::new(ChunkId([9; 32]), u64::from(k) * 1000, k + 1).unwrap();
                    c.span = Some(span.delta_of((k % 4 == 0).then_some(ChunkId([10; 32]))));
                }
                c
            })
            .collect();
        assert_eq!(roundtrip(&m), m);
        assert!(unpack_chunk_list(None).unwrap().is_empty());
    }

    #[test]
    fn stored_chunk_lists_come_back_as_committed() {
        let mut m = item(None, Some(ContentHash([1; 32])), "stored");
        m.size = 1;
        m.chunks = (0..300u32)
            .map(|k| {
                let mut c = ChunkRef::whole(ChunkId([(k % 7) as u8; 32]), k + 1);
                if k % 3 > 0 {
                    let span =
                        PackSpan::new(ChunkId([k as u8; 32]), u64::from(k) << 16, k).unwrap();
                    c.span = Some(span.delta_of((k % 3 == 2).then_some(ChunkId([11; 32]))));
                }
                c
            })
            .collect();
        let packed = pack_chunk_list(&m).unwrap();
        assert_eq!(unpack_chunk_list(Some(&packed)).unwrap(), m.chunks);
        let record = pack_record(&ItemMeta {
            chunks: Vec::new(),
            ..m.clone()
        });
        let (head, tail) = record.rsplit_once("//").unwrap();
        let record = format!("{head}/{packed}/{tail}");
        assert_eq!(unpack_window(Some(&record), 1).unwrap(), vec![m.clone()]);
        for empty in [
            ItemMeta {
                size: 0,
                ..m.clone()
            },
            ItemMeta {
                is_folder: true,
                ..m.clone()
            },
            ItemMeta {
                chunks: Vec::new(),
                ..m
            },
        ] {
            assert_eq!(pack_chunk_list(&empty), None);
        }
    }

    #[test]
    fn malformed_values_are_corrupt_rows_not_panics() {
        let m = item(None, Some(ContentHash([1; 32])), "x");
        let good = pack_item(&m);
        let fields: Vec<&str> = good.split('|').collect();
        let bad = [
            String::new(),
            fields[..11].join("|"),
            format!("{good}|extra"),
            good.replace("|RENAMED|", "|renamed|"),
            good.replacen("|0|", "|2|", 1),
            good.replace("|7|", "|-7|"),
            good.replace("|7|", "|7x|"),
        ];
        for b in &bad {
            assert!(
                matches!(
                    unpack_item(b, "x".into(), None),
                    Err(StoreError::Corrupt { .. })
                ),
                "{b:?} was accepted"
            );
        }
        assert!(
            unpack_item(&good, "a/b".into(), None).is_err(),
            "an invalid name"
        );
        let chunk = format!("0:{}:10", ChunkId([3; 32]).to_hex());
        let pack = ChunkId([4; 32]).to_hex();
        for b in [
            String::new(),
            chunk.clone(),
            format!("{chunk}::::"),
            format!("{chunk}:{pack}:5:"),
            format!("{chunk}::5:6"),
            format!("{chunk}:::,"),
            format!("0:{}:-1:::", ChunkId([3; 32]).to_hex()),
            format!("x:{}:10:::", ChunkId([3; 32]).to_hex()),
            format!("{}:10:::", ChunkId([3; 32]).to_hex()),
            "0:zz:10:::".to_string(),
            format!("{chunk}:{pack}:5:6:"),
            format!("{chunk}:{pack}:5:6:zz"),
            format!("{chunk}:{pack}:5:6:{pack}:"),
        ] {
            assert!(
                matches!(unpack_chunk_list(Some(&b)), Err(StoreError::Corrupt { .. })),
                "{b:?} was accepted"
            );
        }
        assert_eq!(
            unpack_chunk_list(Some(&format!("{chunk}:::")))
                .unwrap()
                .len(),
            1
        );
        // A location outside any pack is dropped with a warning, as from
        // the columns (see `span_from_parts`).
        let wrapping = format!("{chunk}:{pack}:-1:{}", u32::MAX);
        assert_eq!(unpack_chunk_list(Some(&wrapping)).unwrap()[0].span, None);
        let wrapping_delta = format!("{wrapping}:{pack}");
        assert_eq!(
            unpack_chunk_list(Some(&wrapping_delta)).unwrap()[0].span,
            None
        );
        let delta = format!("{chunk}:{pack}:5:6:{pack}");
        let span = unpack_chunk_list(Some(&delta)).unwrap()[0].span.unwrap();
        assert_eq!(span.base, Some(ChunkId([4; 32])));
    }
}
