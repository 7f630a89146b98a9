//! Items (files and folders), their versions, commits and the change feed.

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, ContentHash, DeviceId, ItemId, WorkspaceId};
pub use crate::name::{ItemName, NameError};
use crate::{Error, Millis};

/// What a version did to its item. Deletes are versions too: history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemStatus {
    /// First version of an item.
    New,
    /// New content (or metadata other than name/parent).
    Changed,
    /// Same parent, new name.
    Renamed,
    /// New parent (possibly also a new name).
    Moved,
    /// Deleted; the item keeps its history and can be restored.
    Deleted,
}

impl ItemStatus {
    /// The spelling used on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::New => "NEW",
            ItemStatus::Changed => "CHANGED",
            ItemStatus::Renamed => "RENAMED",
            ItemStatus::Moved => "MOVED",
            ItemStatus::Deleted => "DELETED",
        }
    }

    /// Inverse of [`ItemStatus::as_str`].
    pub fn parse(s: &str) -> Option<ItemStatus> {
        Some(match s {
            "NEW" => ItemStatus::New,
            "CHANGED" => ItemStatus::Changed,
            "RENAMED" => ItemStatus::Renamed,
            "MOVED" => ItemStatus::Moved,
            "DELETED" => ItemStatus::Deleted,
            _ => return None,
        })
    }

    /// True unless the item is deleted.
    pub fn is_live(self) -> bool {
        self != ItemStatus::Deleted
    }
}

/// One chunk of a file version, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The chunk's name: an object of its own when `span` is `None`.
    pub id: ChunkId,
    /// Plaintext length of the chunk in bytes.
    pub size: u32,
    /// Where the encoded chunk is stored when it shares a pack object with
    /// other chunks. The server keeps one location per chunk and workspace:
    /// what it sends is where the chunk is; what a client proposes is only
    /// used for a chunk the workspace did not know yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<PackSpan>,
}

impl ChunkRef {
    /// A chunk stored as an object of its own, named by its id.
    pub fn whole(id: ChunkId, size: u32) -> ChunkRef {
        ChunkRef {
            id,
            size,
            span: None,
        }
    }

    /// The chunk's name and size, without where it is stored: what makes
    /// two chunk lists the same content.
    pub fn content(&self) -> (ChunkId, u32) {
        (self.id, self.size)
    }
}

/// Whether two chunk lists name the same content in the same order,
/// wherever their chunks are stored.
pub fn same_chunks(a: &[ChunkRef], b: &[ChunkRef]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.content() == y.content())
}

/// Bytes `offset..offset + len` of the pack object `pack`: where an encoded
/// chunk is stored when it shares an object with others.
///
/// Object stores charge per request far more than per byte (a Swift PUT of
/// 32 KiB costs about what one of 1 MiB does), so clients gather the chunks
/// of many files into packs of a few MiB and fetch them with range reads.
/// A pack is an object in the workspace's container like any chunk; its
/// name is random (a pack is written once, by one client), so it never
/// collides with a content-named chunk.
///
/// Invariant (checked by [`PackSpan::new`] and on deserialization, so a
/// hostile peer cannot smuggle one in): the span ends inside the largest
/// pack, `offset + len <= MAX_PACK_BYTES`, which also keeps every offset
/// far below `i64::MAX` where a database stores it. The fields stay public
/// for code that builds spans it knows to be in range; [`PackSpan::check`]
/// re-checks one.
///
/// **Deltas.** When `base` is set, the bytes of the span are not the chunk
/// encoded on its own but a delta object (`stacksync_content::delta`): the
/// chunk as a patch against the plaintext of chunk `base` of the same
/// workspace, which a reader takes from its own disk or fetches (the
/// service's `LocateBases`). Whether a chunk is stored whole or as a delta
/// is a property of where it is stored, so it travels with the location.
/// A base is always stored whole (no chains), and the service keeps it
/// stored while any location names it as a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPackSpan")]
pub struct PackSpan {
    /// The pack object's name.
    pub pack: ChunkId,
    /// First byte of the encoded chunk in the pack.
    pub offset: u64,
    /// Length of the encoded chunk.
    pub len: u32,
    /// The chunk this span's bytes are a delta against, if they are one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<ChunkId>,
}

/// A [`PackSpan`] as it arrives, before its range is checked.
#[derive(Deserialize)]
struct RawPackSpan {
    pack: ChunkId,
    offset: u64,
    len: u32,
    #[serde(default)]
    base: Option<ChunkId>,
}

impl TryFrom<RawPackSpan> for PackSpan {
    type Error = Error;

    fn try_from(raw: RawPackSpan) -> Result<PackSpan, Error> {
        Ok(PackSpan::new(raw.pack, raw.offset, raw.len)?.delta_of(raw.base))
    }
}

impl PackSpan {
    /// Largest pack object: what a client may write and a server must be
    /// ready to store.
    pub const MAX_PACK_BYTES: u64 = 32 * 1024 * 1024;

    /// A span, if it ends inside the largest pack (see the type's invariant).
    pub fn new(pack: ChunkId, offset: u64, len: u32) -> Result<PackSpan, Error> {
        let span = PackSpan {
            pack,
            offset,
            len,
            base: None,
        };
        span.check()?;
        Ok(span)
    }

    /// The same span, holding a delta against `base` (or the chunk whole
    /// when `None`).
    pub fn delta_of(self, base: Option<ChunkId>) -> PackSpan {
        PackSpan { base, ..self }
    }

    /// Checks the invariant of a span built field by field: `offset + len`
    /// neither overflows nor passes [`PackSpan::MAX_PACK_BYTES`].
    pub fn check(&self) -> Result<(), Error> {
        match self.offset.checked_add(u64::from(self.len)) {
            Some(end) if end <= Self::MAX_PACK_BYTES => Ok(()),
            _ => Err(Error::bad_request(format!(
                "bytes {}..{}+{} of pack {} are outside any pack (at most {} bytes)",
                self.offset,
                self.offset,
                self.len,
                self.pack,
                Self::MAX_PACK_BYTES
            ))),
        }
    }

    /// One past the span's last byte. Saturates instead of wrapping, so a
    /// span that escaped [`PackSpan::check`] reads as out of range rather
    /// than as a small, plausible end.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// Largest version number, size or revision the protocol carries: what a
/// signed 64-bit database column holds.
pub const MAX_STORED_NUMBER: u64 = i64::MAX as u64;

/// Largest plaintext chunk the protocol carries (the content pipeline cuts
/// at most this much).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;

/// Largest encoded chunk: the plaintext, never expanded by compression
/// (stored raw when zstd does not pay), plus the format's header and tag.
pub const MAX_ENCODED_CHUNK: u32 = MAX_CHUNK_SIZE + 4096;

/// Metadata of one version of an item, as the server stores and sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemMeta {
    pub id: ItemId,
    pub workspace: WorkspaceId,
    /// `None`: the item sits at the top of its workspace.
    pub parent: Option<ItemId>,
    pub name: ItemName,
    pub is_folder: bool,
    #[serde(default)]
    pub mimetype: Option<String>,
    pub status: ItemStatus,
    /// 1 for the first version; each accepted commit adds one.
    pub version: u64,
    /// BLAKE3 of the whole plaintext; `None` for folders.
    #[serde(default)]
    pub content_hash: Option<ContentHash>,
    /// Plaintext size in bytes (0 for folders).
    pub size: u64,
    /// Modification time the client reported.
    pub client_modified: Millis,
    /// When the server accepted this version.
    pub server_modified: Millis,
    /// Device that committed this version.
    pub device: DeviceId,
    /// Workspace revision at which this version was committed; the change
    /// feed's cursor moves past it.
    pub revision: u64,
    /// Chunks of the content, in order (empty for folders and empty files).
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// In an end-to-end encrypted workspace (`EncryptionMode::ClientSide`):
    /// the signed, encrypted record of this version that its writer sealed
    /// (opaque to the server; see [`ProposedItem::record`]). `None`
    /// elsewhere.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::keys::hex_bytes_opt"
    )]
    pub record: Option<Vec<u8>>,
}

/// A version of an item that a device proposes. The server fills in the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedItem {
    pub id: ItemId,
    pub parent: Option<ItemId>,
    pub name: ItemName,
    pub is_folder: bool,
    #[serde(default)]
    pub mimetype: Option<String>,
    pub status: ItemStatus,
    /// The version being proposed: 1 for a new item, otherwise the server's
    /// latest plus one.
    pub version: u64,
    #[serde(default)]
    pub content_hash: Option<ContentHash>,
    pub size: u64,
    pub client_modified: Millis,
    #[serde(default)]
    pub chunks: Vec<ChunkRef>,
    /// The sealed record of this version, in an end-to-end encrypted
    /// workspace only, where it is required: the real name, sizes,
    /// modification time, content hash and chunk list, encrypted and
    /// signed by the writer (`stacksync-vault`). There the rest of the
    /// proposal is what the server may see: [`ProposedItem::sealed_name`]
    /// as the name, no MIME type, each chunk's padded size. At most
    /// [`ProposedItem::record_limit`] bytes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::keys::hex_bytes_opt"
    )]
    pub record: Option<Vec<u8>>,
}

impl ProposedItem {
    /// Record bytes allowed besides those of the chunk list.
    pub const RECORD_FIXED_BYTES: usize = 1024;
    /// Record bytes allowed per chunk of the version.
    pub const RECORD_BYTES_PER_CHUNK: usize = 40;

    /// The largest record a version of `chunks` chunks may carry: records
    /// grow with the chunk list and nothing else, so the server never
    /// keeps a large blob for a small version.
    pub fn record_limit(chunks: usize) -> usize {
        Self::RECORD_FIXED_BYTES + Self::RECORD_BYTES_PER_CHUNK * chunks
    }

    /// The name every item of an end-to-end encrypted workspace has on the
    /// server: its own id, which says nothing and is unique among its
    /// siblings (the real name is in the record).
    pub fn sealed_name(id: ItemId) -> ItemName {
        ItemName::new(id.to_string()).expect("an id is a valid name")
    }

    /// Checks what can be checked without the database: sizes add up, a
    /// folder has no content, a file with bytes has a hash.
    pub fn check_shape(&self) -> Result<(), Error> {
        // Databases store these as signed 64-bit numbers: a larger value
        // would come back negative and make every later read fail.
        if self.version > MAX_STORED_NUMBER || self.size > MAX_STORED_NUMBER {
            return Err(Error::bad_request(format!(
                "item {}: version {} or size {} is out of range (at most {MAX_STORED_NUMBER})",
                self.id, self.version, self.size
            )));
        }
        let sum = self
            .chunks
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(u64::from(c.size)));
        let Some(sum) = sum else {
            return Err(Error::bad_request(format!(
                "item {}: chunk sizes overflow",
                self.id
            )));
        };
        if self.version == 0 {
            return Err(Error::bad_request(format!(
                "item {}: version 0 does not exist",
                self.id
            )));
        }
        if (self.status == ItemStatus::New) != (self.version == 1) {
            return Err(Error::bad_request(format!(
                "item {}: status NEW goes with version 1 and only with it",
                self.id
            )));
        }
        if self.status == ItemStatus::Deleted {
            // A delete carries no content: the history keeps the old one.
            if self.size != 0 || !self.chunks.is_empty() {
                return Err(Error::bad_request(format!(
                    "a delete of {} carries no content",
                    self.id
                )));
            }
        } else if self.is_folder {
            if self.size != 0 || !self.chunks.is_empty() || self.content_hash.is_some() {
                return Err(Error::bad_request(format!(
                    "folder {} cannot have content",
                    self.id
                )));
            }
        } else {
            if sum != self.size {
                return Err(Error::bad_request(format!(
                    "item {}: chunk sizes add up to {sum}, not to the size {}",
                    self.id, self.size
                )));
            }
            if self.content_hash.is_none() {
                return Err(Error::bad_request(format!(
                    "file {} has no content hash",
                    self.id
                )));
            }
            if self.chunks.iter().any(|c| c.size == 0) {
                return Err(Error::bad_request(format!(
                    "file {} has an empty chunk",
                    self.id
                )));
            }
            if let Some(c) = self.chunks.iter().find(|c| c.size > MAX_CHUNK_SIZE) {
                return Err(Error::bad_request(format!(
                    "file {}: chunk {} of {} bytes is larger than {MAX_CHUNK_SIZE}",
                    self.id, c.id, c.size
                )));
            }
            if let Some(s) = self
                .chunks
                .iter()
                .filter_map(|c| c.span)
                .find(|s| s.len == 0 || s.len > MAX_ENCODED_CHUNK || s.check().is_err())
            {
                return Err(Error::bad_request(format!(
                    "file {}: bytes {}..{} of pack {} cannot hold a chunk",
                    self.id,
                    s.offset,
                    s.end(),
                    s.pack
                )));
            }
            if let Some(c) = self
                .chunks
                .iter()
                .find(|c| c.span.and_then(|s| s.base) == Some(c.id))
            {
                return Err(Error::bad_request(format!(
                    "file {}: chunk {} cannot be a delta against itself",
                    self.id, c.id
                )));
            }
        }
        if self.parent == Some(self.id) {
            return Err(Error::bad_request(format!(
                "item {} cannot be its own parent",
                self.id
            )));
        }
        if let Some(m) = &self.mimetype
            && m.len() > 255
        {
            return Err(Error::bad_request(format!(
                "item {}: mimetype too long",
                self.id
            )));
        }
        if let Some(r) = &self.record
            && (r.is_empty() || r.len() > Self::record_limit(self.chunks.len()))
        {
            return Err(Error::bad_request(format!(
                "item {}: a record of {} bytes for {} chunks",
                self.id,
                r.len(),
                self.chunks.len()
            )));
        }
        Ok(())
    }
}

/// A batch of proposed versions from one device to one workspace. The batch
/// is applied in one transaction; items are taken in order, so a folder
/// created in the batch can be the parent of later items in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRequest {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    pub items: Vec<ProposedItem>,
}

impl CommitRequest {
    /// Most items in one batch; larger batches must be split by the client.
    pub const MAX_ITEMS: usize = 1000;
}

/// What happened to one proposed item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CommitOutcome {
    /// Accepted (or an identical re-commit of a version already stored).
    Committed { meta: ItemMeta },
    /// Refused because the server has moved on: `current` is what it has.
    Conflict { current: ItemMeta },
    /// Refused for another reason (bad name, missing parent, quota, ...).
    Refused { error: Error },
}

/// The outcome for one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemCommitResult {
    pub id: ItemId,
    pub version: u64,
    #[serde(flatten)]
    pub outcome: CommitOutcome,
}

/// The answer to a [`CommitRequest`], item by item in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResult {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    pub results: Vec<ItemCommitResult>,
    /// The workspace revision after the batch.
    pub revision: u64,
}

/// One page of the incremental change feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesPage {
    pub workspace: WorkspaceId,
    /// Latest state of every item changed after the requested cursor, in
    /// revision order. Deleted items are included with status DELETED.
    pub items: Vec<ItemMeta>,
    /// Pass this as `since` to get the next page.
    pub cursor: u64,
    /// More changes are waiting beyond `cursor`.
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_spelling_round_trips() {
        for s in [
            ItemStatus::New,
            ItemStatus::Changed,
            ItemStatus::Renamed,
            ItemStatus::Moved,
            ItemStatus::Deleted,
        ] {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }

    /// A span that holds a delta says against which chunk; one that does
    /// not reads as before (old peers never send the field), and a chunk
    /// cannot be a delta against itself.
    #[test]
    fn delta_spans_round_trip_and_cannot_patch_themselves() {
        let (pack, base) = (ChunkId([7; 32]), ChunkId([8; 32]));
        let whole = PackSpan::new(pack, 10, 20).unwrap();
        let json = serde_json::to_string(&whole).unwrap();
        assert!(!json.contains("base"), "{json}");
        let delta = whole.delta_of(Some(base));
        let back: PackSpan = serde_json::from_str(&serde_json::to_string(&delta).unwrap()).unwrap();
        assert_eq!(back, delta);
        assert_eq!(back.base, Some(base));
        let huge = format!(
            r#"{{"pack":"{pack}","offset":{},"len":10,"base":"{base}"}}"#,
            PackSpan::MAX_PACK_BYTES
        );
        assert!(serde_json::from_str::<PackSpan>(&huge).is_err());

        let id = ChunkId([9; 32]);
        let mut p = ProposedItem {
            id: ItemId::new(),
            parent: None,
            name: ItemName::new("f").unwrap(),
            is_folder: false,
            mimetype: None,
            status: ItemStatus::New,
            version: 1,
            content_hash: Some(ContentHash([1; 32])),
            size: 5,
            client_modified: 0,
            chunks: vec![ChunkRef {
                id,
                size: 5,
                span: Some(whole.delta_of(Some(base))),
            }],
            record: None,
        };
        p.check_shape().unwrap();
        p.chunks[0].span = Some(whole.delta_of(Some(id)));
        let e = p.check_shape().unwrap_err();
        assert!(e.message.contains("against itself"), "{e:?}");
    }

    /// Finding 9: a span whose end wraps (or passes the largest pack) is
    /// refused when it is built and when it arrives, never stored.
    #[test]
    fn hostile_pack_spans_are_refused() {
        let pack = ChunkId([7; 32]);
        assert!(PackSpan::new(pack, 0, 10).is_ok());
        let last = PackSpan::MAX_PACK_BYTES - 10;
        assert_eq!(
            PackSpan::new(pack, last, 10).unwrap().end(),
            PackSpan::MAX_PACK_BYTES
        );
        for (offset, len) in [
            (u64::MAX, 1),
            (u64::MAX - 5, 10),
            (last, 11),
            (i64::MAX as u64, 0),
        ] {
            let e = PackSpan::new(pack, offset, len).unwrap_err();
            assert_eq!(e.kind, crate::ErrorKind::BadRequest, "{offset}+{len}");
            let json = format!(r#"{{"pack":"{pack}","offset":{offset},"len":{len}}}"#);
            let parsed = serde_json::from_str::<PackSpan>(&json);
            assert!(parsed.is_err(), "{json} was accepted: {parsed:?}");
        }
        let wrapping = PackSpan {
            pack,
            offset: u64::MAX - 5,
            len: 10,
            base: None,
        };
        assert_eq!(
            wrapping.end(),
            u64::MAX,
            "end() saturates instead of wrapping"
        );
        let ok = PackSpan::new(pack, 5, 10).unwrap();
        let back: PackSpan = serde_json::from_str(&serde_json::to_string(&ok).unwrap()).unwrap();
        assert_eq!(back, ok);
    }
}
