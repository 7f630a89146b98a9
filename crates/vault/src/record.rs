//! The signed, encrypted description of one version of an item.
//!
//! Sealed layout (integers little-endian):
//!
//! ```text
//! header: "SSrc" | format u8 = 1 | generation u32 | workspace [16] | item [16] | version u64
//! nonce [24] | XChaCha20-Poly1305(body || signature [64]) + tag [16]   (AAD = header)
//! body:   parent (0 root | 1 + item [16]) | kind u8 (1 file, 2 folder) | deleted u8
//!         | u16 len + encrypted name | chunk count u32 (<= 2^20), each: chunk id [32] | len u32
//!         | total length u64 | modified (ms since the Unix epoch) i64
//!         | keyed content hash [32] | author user id [16]
//! ```
//!
//! The AEAD key is the record subkey of the header's generation. The
//! signature is the author's Ed25519 over `"StackSync 2026 vault v1 item
//! record" 0 | header | body`; it sits inside the ciphertext, so the server
//! does not learn who wrote a version from the record itself (it still sees
//! which account committed it).
//!
//! The header is in clear so the server can file the record, and so
//! [`Record::open`] can refuse a record filed under another workspace, item
//! or version before decrypting. What the server claims about the item
//! beside the record (parent, encrypted name, padded size) goes in a
//! [`RecordContext`] and must match the signed body.

use stacksync_content::MAX_CHUNK_LEN;
use stacksync_proto::ids::{ChunkId, ItemId, UserId, WorkspaceId};
use zeroize::Zeroizing;

use crate::codec::{Reader, Writer};
use crate::crypto;
use crate::error::{ErrorKind, Result, fail};
use crate::identity::Identity;
use crate::keyring::Generation;
use crate::membership::Verified;
use crate::names::MAX_SEALED_NAME_LEN;
use crate::padding::padme;

const MAGIC: &[u8; 4] = b"SSrc";
/// The record format this client writes and accepts.
pub const FORMAT: u8 = 1;
const SIGNATURE_DOMAIN: &str = "StackSync 2026 vault v1 item record";
const HASH_CONTEXT: &str = "StackSync 2026 vault v1 sealed record hash";
const HEADER_LEN: usize = 4 + 1 + 4 + 16 + 16 + 8;
/// The most chunks one record may list.
pub const MAX_CHUNKS: usize = 1 << 20;

/// File or folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    /// A file: has chunks.
    File,
    /// A folder: no chunks, length 0.
    Folder,
}

/// One chunk of a file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// The keyed chunk id (from content's encrypted codec).
    pub id: ChunkId,
    /// The chunk's plaintext length.
    pub len: u32,
}

/// One version of an item, as its author described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The workspace.
    pub workspace: WorkspaceId,
    /// The item.
    pub item: ItemId,
    /// Its parent folder; `None` for the workspace root.
    pub parent: Option<ItemId>,
    /// File or folder.
    pub kind: ItemKind,
    /// Whether this version deletes the item.
    pub deleted: bool,
    /// The version number (1 for a new item, then +1).
    pub version: u64,
    /// The key generation the record (and its chunks) are encrypted under.
    pub generation: Generation,
    /// The encrypted name ([`crate::names::seal_name`]).
    pub name: Vec<u8>,
    /// The chunks, in order.
    pub chunks: Vec<ChunkEntry>,
    /// The plaintext length: the sum of the chunk lengths.
    pub total_len: u64,
    /// Modification time given by the author's client, ms since the epoch.
    pub modified_ms: i64,
    /// The keyed whole-file content hash (content's `ContentHasher`).
    pub content_hash: [u8; 32],
    /// Who wrote this version.
    pub author: UserId,
}

/// What the server claimed about a record, for [`Record::open`] to check:
/// everything it lists beside the record must be what the record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext {
    /// The workspace the record was fetched from.
    pub workspace: WorkspaceId,
    /// The item it was filed under.
    pub item: ItemId,
    /// The version it was filed as.
    pub version: u64,
    /// The parent the server lists the item under.
    pub parent: Option<ItemId>,
    /// Whether the server lists it as a folder.
    pub is_folder: bool,
    /// Whether the server lists it as deleted.
    pub deleted: bool,
    /// The chunks the server lists, in order, each with the size it lists
    /// ([`padded_chunk_len`] of the real length).
    pub chunks: Vec<(ChunkId, u32)>,
}

/// The length the server is told for a chunk of `len` plaintext bytes:
/// its [`padme`] bucket (capped at the largest chunk), so that a chunk
/// list says no more than the stored, padded objects do.
pub fn padded_chunk_len(len: u32) -> u32 {
    let cap = u32::try_from(MAX_CHUNK_LEN).unwrap_or(u32::MAX);
    u32::try_from(padme(u64::from(len)))
        .unwrap_or(cap)
        .min(cap)
        .max(len)
}

/// The digest of a sealed record, for [`crate::Freshness::observe`].
pub fn record_hash(sealed: &[u8]) -> [u8; 32] {
    blake3::derive_key(HASH_CONTEXT, sealed)
}

impl Record {
    /// What the client tells the server beside the sealed record (and what
    /// a reader's [`RecordContext`] must then contain).
    pub fn context(&self) -> RecordContext {
        RecordContext {
            workspace: self.workspace,
            item: self.item,
            version: self.version,
            parent: self.parent,
            is_folder: self.kind == ItemKind::Folder,
            deleted: self.deleted,
            chunks: self
                .chunks
                .iter()
                .map(|c| (c.id, padded_chunk_len(c.len)))
                .collect(),
        }
    }

    fn header(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC).u8(FORMAT).u32(self.generation.0);
        w.workspace(&self.workspace)
            .item(&self.item)
            .u64(self.version);
        w.into_vec()
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.parent(&self.parent);
        w.u8(match self.kind {
            ItemKind::File => 1,
            ItemKind::Folder => 2,
        });
        w.u8(u8::from(self.deleted)).bytes16(&self.name);
        w.u32(u32::try_from(self.chunks.len()).expect("checked against MAX_CHUNKS"));
        for c in &self.chunks {
            w.raw(&c.id.0).u32(c.len);
        }
        w.u64(self.total_len)
            .i64(self.modified_ms)
            .raw(&self.content_hash);
        w.user(&self.author);
        w.into_vec()
    }

    /// Length rules that hold for every valid record.
    fn check_contents(&self) -> Result<()> {
        if self.chunks.len() > MAX_CHUNKS || self.name.len() > MAX_SEALED_NAME_LEN {
            return fail(ErrorKind::Malformed);
        }
        let mut sum = 0u64;
        for c in &self.chunks {
            if c.len == 0 || c.len as usize > MAX_CHUNK_LEN {
                return fail(ErrorKind::Malformed);
            }
            sum += u64::from(c.len);
        }
        if sum != self.total_len {
            return fail(ErrorKind::Malformed);
        }
        if self.kind == ItemKind::Folder && !self.chunks.is_empty() {
            return fail(ErrorKind::Malformed);
        }
        Ok(())
    }

    /// Signs and encrypts this record. `author` must be its author, a
    /// writing member of `membership`, and the record must be written under
    /// the current generation.
    pub fn seal(&self, membership: &Verified, author: &Identity) -> Result<Vec<u8>> {
        let ring = membership.keyring();
        if self.author != author.user()
            || self.workspace != ring.workspace()
            || self.generation != ring.current()
            || !membership
                .member(&author.user())
                .is_some_and(|m| m.may_write() && m.identity == author.public())
        {
            return fail(ErrorKind::InvalidInput);
        }
        self.check_contents().map_err(|_| ErrorKind::InvalidInput)?;
        self.seal_unchecked(membership, author)
    }

    /// Signs and encrypts without the caller-side checks: what a malicious
    /// member holding the keys could produce (tests use it to play one).
    fn seal_unchecked(&self, membership: &Verified, author: &Identity) -> Result<Vec<u8>> {
        let ring = membership.keyring();
        let header = self.header();
        let mut signed = header.clone();
        let body = self.body();
        signed.extend_from_slice(&body);
        let signature = author.sign(SIGNATURE_DOMAIN, &signed);
        let mut plain = Zeroizing::new(body);
        plain.extend_from_slice(&signature);
        // Deterministic: the same version sealed again (a retry after a
        // restart) is the same bytes, which the server takes as a retry.
        let sealed =
            crypto::seal_deterministic(&ring.record_key(self.generation)?, &header, &mut plain)?;
        let mut out = header;
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Authenticates, decrypts and checks a sealed record against what the
    /// server claimed (`ctx`) and the verified membership (keys, and who
    /// could write under the record's generation).
    pub fn open(sealed: &[u8], ctx: &RecordContext, membership: &Verified) -> Result<Record> {
        let mut r = Reader::new(sealed);
        if r.take(4)? != MAGIC {
            return fail(ErrorKind::Malformed);
        }
        if r.u8()? != FORMAT {
            return fail(ErrorKind::Downgrade);
        }
        let generation = Generation(r.u32()?);
        let workspace = r.workspace()?;
        let item = r.item()?;
        let version = r.u64()?;
        if workspace != ctx.workspace || item != ctx.item || version != ctx.version {
            return fail(ErrorKind::WrongPlace);
        }
        let ring = membership.keyring();
        if workspace != ring.workspace() {
            return fail(ErrorKind::WrongPlace);
        }
        let key = ring.record_key(generation)?;
        let header = &sealed[..HEADER_LEN];
        let plain = crypto::open(&key, header, r.take(r.remaining())?)?;
        if plain.len() < 64 {
            return fail(ErrorKind::Malformed);
        }
        let (body, signature) = plain.split_at(plain.len() - 64);
        let signature: [u8; 64] = signature.try_into().map_err(|_| ErrorKind::Malformed)?;
        let record = read_body(body, workspace, item, version, generation)?;
        check_author(membership, &record, header, body, &signature)?;
        record.check_contents()?;
        if record.context() != *ctx {
            return fail(ErrorKind::WrongPlace);
        }
        Ok(record)
    }
}

fn read_body(
    body: &[u8],
    workspace: WorkspaceId,
    item: ItemId,
    version: u64,
    generation: Generation,
) -> Result<Record> {
    let mut r = Reader::new(body);
    let parent = r.parent()?;
    let kind = match r.u8()? {
        1 => ItemKind::File,
        2 => ItemKind::Folder,
        _ => return fail(ErrorKind::Malformed),
    };
    let deleted = r.bool()?;
    let name = r.bytes16(MAX_SEALED_NAME_LEN)?.to_vec();
    let n = r.count(MAX_CHUNKS, 36)?;
    let mut chunks = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ChunkId(r.array()?);
        chunks.push(ChunkEntry { id, len: r.u32()? });
    }
    let record = Record {
        workspace,
        item,
        parent,
        kind,
        deleted,
        version,
        generation,
        name,
        chunks,
        total_len: r.u64()?,
        modified_ms: r.i64()?,
        content_hash: r.array()?,
        author: r.user()?,
    };
    r.finish()?;
    Ok(record)
}

/// The author must have been a writing member while the record's
/// generation was current, with the keys listed then.
fn check_author(
    membership: &Verified,
    record: &Record,
    header: &[u8],
    body: &[u8],
    signature: &[u8; 64],
) -> Result<()> {
    let mut signed = header.to_vec();
    signed.extend_from_slice(body);
    let mut candidates = membership
        .writer_identities(record.generation, record.author)
        .peekable();
    if candidates.peek().is_none() {
        return match membership.member(&record.author) {
            Some(m) if m.read_only => fail(ErrorKind::NotAllowed),
            _ => fail(ErrorKind::NotAMember),
        };
    }
    if candidates.any(|id| id.verify(SIGNATURE_DOMAIN, &signed, signature).is_ok()) {
        Ok(())
    } else {
        fail(ErrorKind::Tampered)
    }
}

#[cfg(test)]
mod tests;
