//! Encryption at rest for the local backend ("server-side encryption"):
//! every object the store writes is sealed under a key the operator holds
//! in a key file, so a copy of the store's folder (a stolen disk, a backup)
//! shows nothing of the objects without that file.
//!
//! Layout of a sealed object file, version 2 of the object format:
//!
//! ```text
//! 0..8    magic "SSBLOB\0\x02"
//! 8       cipher: 1 = AES-256-GCM
//! 9..16   reserved, 0
//! 16..24  key id: which master key sealed it (rotation)
//! 24..40  salt: 16 random bytes, one per object
//! 40..72  keyed BLAKE3 of the plaintext payload (write-once comparison, whole reads)
//! 72..80  plaintext length, u64 LE
//! 80..    segments: each SEGMENT bytes of plaintext (the last one fewer, and one empty
//!         segment for an empty object) as ciphertext + 16-byte tag
//! ```
//!
//! Each object has its own key, BLAKE3-keyed from the master key's object
//! subkey over the container name, the object id and the salt, so an object
//! file copied under another name or into another container does not
//! decrypt. A segment's nonce is its index (unique under a per-object key);
//! its associated data is the header's first 40 bytes, the index and
//! whether it is the last segment, so segments cannot be reordered, dropped,
//! duplicated or cut off at a segment boundary undetected, and a range read
//! decrypts only the segments it covers. The checksum is keyed, so it is no
//! fingerprint of a known plaintext either.
//!
//! A key file holds 64 hexadecimal digits (32 bytes) and a newline. Rotation:
//! the new file becomes the current key, old ones stay readable
//! (`old_key_files`); objects sealed under an old key are read with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use bytes::{Bytes, BytesMut};
use zeroize::Zeroizing;

use crate::error::{BlobError, BlobErrorKind, Result};

/// Identifies version 2 of the object format (sealed).
pub const MAGIC: [u8; 8] = *b"SSBLOB\0\x02";
/// Bytes before the first segment.
pub const HEADER_LEN: u64 = 80;
/// Plaintext bytes per segment.
pub const SEGMENT: u64 = 64 * 1024;
/// Tag bytes after each segment's ciphertext.
pub const TAG: u64 = 16;
/// The bytes of the header that every segment authenticates.
const BOUND_LEN: usize = 40;
const CIPHER_AES_256_GCM: u8 = 1;

const KEY_ID_CONTEXT: &str = "StackSync 2026 blobstore at-rest v2 key id";
const OBJECT_KEY_CONTEXT: &str = "StackSync 2026 blobstore at-rest v2 object key";
const CHECKSUM_CONTEXT: &str = "StackSync 2026 blobstore at-rest v2 checksum key";

/// One master key and the subkeys derived from it.
struct MasterKey {
    id: [u8; 8],
    objects: Zeroizing<[u8; 32]>,
    checksum: Zeroizing<[u8; 32]>,
}

impl MasterKey {
    fn new(bytes: Zeroizing<[u8; 32]>) -> MasterKey {
        let mut id = [0u8; 8];
        id.copy_from_slice(&blake3::derive_key(KEY_ID_CONTEXT, &bytes[..])[..8]);
        MasterKey {
            id,
            objects: Zeroizing::new(blake3::derive_key(OBJECT_KEY_CONTEXT, &bytes[..])),
            checksum: Zeroizing::new(blake3::derive_key(CHECKSUM_CONTEXT, &bytes[..])),
        }
    }
}

/// The operator's at-rest keys: the one new objects are sealed with, and
/// older ones that objects written before a rotation still need.
#[derive(Clone)]
pub struct AtRestKeys {
    current: Arc<MasterKey>,
    others: Arc<Vec<MasterKey>>,
}

impl std::fmt::Debug for AtRestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AtRestKeys(current {}, {} older)",
            hex::encode(self.current.id),
            self.others.len()
        )
    }
}

impl AtRestKeys {
    /// Keys from raw bytes: `current` seals, `older` only open.
    pub fn from_bytes(current: [u8; 32], older: &[[u8; 32]]) -> AtRestKeys {
        AtRestKeys {
            current: Arc::new(MasterKey::new(Zeroizing::new(current))),
            others: Arc::new(
                older
                    .iter()
                    .map(|k| MasterKey::new(Zeroizing::new(*k)))
                    .collect(),
            ),
        }
    }

    /// Reads the current key file and the older ones.
    pub fn load(current: &Path, older: &[PathBuf]) -> Result<AtRestKeys> {
        let current = MasterKey::new(read_key_file(current)?);
        let others = older
            .iter()
            .map(|p| read_key_file(p).map(MasterKey::new))
            .collect::<Result<Vec<_>>>()?;
        Ok(AtRestKeys {
            current: Arc::new(current),
            others: Arc::new(others),
        })
    }

    /// Reads `path`, creating it with a new random key (mode 0600, never
    /// replacing a file that appeared meanwhile) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<AtRestKeys> {
        if !path.exists() {
            create_key_file(path)?;
        }
        AtRestKeys::load(path, &[])
    }

    /// The id of the key new objects are sealed with, as hex.
    pub fn current_id(&self) -> String {
        hex::encode(self.current.id)
    }

    /// Whether `header` was sealed under the current key.
    pub fn is_current(&self, header: &SealedHeader) -> bool {
        header.key_id() == self.current.id
    }

    fn by_id(&self, id: &[u8; 8]) -> Option<&MasterKey> {
        std::iter::once(&*self.current)
            .chain(self.others.iter())
            .find(|k| &k.id == id)
    }

    /// A hasher for the keyed checksum under the current key.
    pub fn checksum_hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.current.checksum)
    }

    /// A hasher for the keyed checksum under the key that sealed `header`
    /// (`None` when this server does not hold it).
    pub fn checksum_hasher_for(&self, header: &SealedHeader) -> Option<blake3::Hasher> {
        self.by_id(&header.key_id())
            .map(|k| blake3::Hasher::new_keyed(&k.checksum))
    }

    /// Starts sealing a new object named `id` in `container`.
    pub fn sealer(&self, container: &str, id: &[u8]) -> Result<Sealer> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| {
            BlobError::new(
                BlobErrorKind::Io,
                format!("no random salt for an object: {e}"),
            )
        })?;
        let mut bound = [0u8; BOUND_LEN];
        bound[..8].copy_from_slice(&MAGIC);
        bound[8] = CIPHER_AES_256_GCM;
        bound[16..24].copy_from_slice(&self.current.id);
        bound[24..40].copy_from_slice(&salt);
        Ok(Sealer {
            cipher: object_cipher(&self.current, container, id, &salt),
            bound,
            pending: BytesMut::new(),
            index: 0,
        })
    }

    /// What opens the object whose header is `header`.
    pub fn opener(
        &self,
        header: &SealedHeader,
        container: &str,
        id: &[u8],
        what: &str,
    ) -> Result<Opener> {
        let Some(key) = self.by_id(&header.key_id()) else {
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!(
                    "{what}: sealed with at-rest key {}, which this server does not hold",
                    hex::encode(header.key_id())
                ),
            ));
        };
        Ok(Opener {
            cipher: object_cipher(key, container, id, &header.salt()),
            bound: header.bound(),
            segments: segment_count(header.len),
            what: what.to_owned(),
        })
    }
}

fn object_cipher(key: &MasterKey, container: &str, id: &[u8], salt: &[u8; 16]) -> Aes256Gcm {
    let mut h = blake3::Hasher::new_keyed(&key.objects);
    h.update(&(container.len() as u64).to_le_bytes());
    h.update(container.as_bytes());
    h.update(&(id.len() as u64).to_le_bytes());
    h.update(id);
    h.update(salt);
    let object_key = Zeroizing::new(*h.finalize().as_bytes());
    Aes256Gcm::new(&(*object_key).into())
}

fn nonce(index: u64) -> aes_gcm::Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_le_bytes());
    n.into()
}

fn aad(bound: &[u8; BOUND_LEN], index: u64, last: bool) -> [u8; BOUND_LEN + 9] {
    let mut out = [0u8; BOUND_LEN + 9];
    out[..BOUND_LEN].copy_from_slice(bound);
    out[BOUND_LEN..BOUND_LEN + 8].copy_from_slice(&index.to_le_bytes());
    out[BOUND_LEN + 8] = u8::from(last);
    out
}

/// Segments of an object of `len` plaintext bytes (an empty one has one).
pub fn segment_count(len: u64) -> u64 {
    len.div_ceil(SEGMENT).max(1)
}

/// Where segment `index` starts in the file.
pub fn segment_offset(index: u64) -> u64 {
    HEADER_LEN + index * (SEGMENT + TAG)
}

/// Stored bytes of an object of `len` plaintext bytes, header included.
pub fn file_len(len: u64) -> u64 {
    HEADER_LEN + len + segment_count(len) * TAG
}

/// Seals a stream of plaintext into segments as it arrives.
pub struct Sealer {
    cipher: Aes256Gcm,
    bound: [u8; BOUND_LEN],
    pending: BytesMut,
    index: u64,
}

impl Sealer {
    /// Takes more plaintext; returns the ciphertext of every segment it
    /// completed (the last full one is held back until it is known whether
    /// more follows, since the last segment is marked).
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>> {
        self.pending.extend_from_slice(piece);
        let mut out = Vec::new();
        while self.pending.len() as u64 > SEGMENT {
            let mut segment = self.pending.split_to(SEGMENT as usize);
            self.seal_into(&mut segment, false, &mut out)?;
        }
        Ok(out)
    }

    /// Seals what is left as the last segment and returns it with the
    /// header for `checksum` and `len`.
    pub fn finish(mut self, checksum: [u8; 32], len: u64) -> Result<(Vec<u8>, SealedHeader)> {
        let mut last = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        self.seal_into(&mut last, true, &mut out)?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..BOUND_LEN].copy_from_slice(&self.bound);
        header[40..72].copy_from_slice(&checksum);
        header[72..80].copy_from_slice(&len.to_le_bytes());
        Ok((out, SealedHeader { bytes: header, len }))
    }

    fn seal_into(&mut self, segment: &mut BytesMut, last: bool, out: &mut Vec<u8>) -> Result<()> {
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &nonce(self.index),
                &aad(&self.bound, self.index, last),
                segment.as_mut().into(),
            )
            .map_err(|_| BlobError::new(BlobErrorKind::Io, "at-rest encryption failed"))?;
        out.extend_from_slice(segment);
        out.extend_from_slice(&tag);
        self.index += 1;
        Ok(())
    }
}

/// Opens the segments of one sealed object.
pub struct Opener {
    cipher: Aes256Gcm,
    bound: [u8; BOUND_LEN],
    segments: u64,
    what: String,
}

impl Opener {
    /// Decrypts segment `index` (ciphertext and tag, as stored) in place.
    pub fn open(&self, index: u64, mut stored: BytesMut) -> Result<Bytes> {
        let refused = || {
            BlobError::new(
                BlobErrorKind::Integrity,
                format!(
                    "{}: stored bytes fail authentication at segment {index}",
                    self.what
                ),
            )
        };
        if index >= self.segments || (stored.len() as u64) < TAG {
            return Err(refused());
        }
        let tag_at = stored.len() - TAG as usize;
        let tag: [u8; TAG as usize] = stored[tag_at..].try_into().map_err(|_| refused())?;
        stored.truncate(tag_at);
        self.cipher
            .decrypt_inout_detached(
                &nonce(index),
                &aad(&self.bound, index, index + 1 == self.segments),
                stored.as_mut().into(),
                &tag.into(),
            )
            .map_err(|_| refused())?;
        Ok(stored.freeze())
    }
}

/// The parsed header of a sealed object file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    bytes: [u8; HEADER_LEN as usize],
    /// Plaintext length.
    pub len: u64,
}

impl SealedHeader {
    /// The header's bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        self.bytes
    }

    /// Parses header bytes whose magic is already known to be [`MAGIC`].
    pub fn decode(bytes: [u8; HEADER_LEN as usize], what: &str) -> Result<SealedHeader> {
        if bytes[..8] != MAGIC || bytes[8] != CIPHER_AES_256_GCM || bytes[9..16] != [0; 7] {
            return Err(BlobError::new(
                BlobErrorKind::Integrity,
                format!("{what}: not a sealed object file of a known kind"),
            ));
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&bytes[72..80]);
        Ok(SealedHeader {
            bytes,
            len: u64::from_le_bytes(len),
        })
    }

    /// The keyed checksum of the plaintext.
    pub fn checksum(&self) -> [u8; 32] {
        let mut c = [0u8; 32];
        c.copy_from_slice(&self.bytes[40..72]);
        c
    }

    /// Which master key sealed the object.
    pub fn key_id(&self) -> [u8; 8] {
        let mut id = [0u8; 8];
        id.copy_from_slice(&self.bytes[16..24]);
        id
    }

    fn salt(&self) -> [u8; 16] {
        let mut s = [0u8; 16];
        s.copy_from_slice(&self.bytes[24..40]);
        s
    }

    fn bound(&self) -> [u8; BOUND_LEN] {
        let mut b = [0u8; BOUND_LEN];
        b.copy_from_slice(&self.bytes[..BOUND_LEN]);
        b
    }
}

fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| BlobError::io(format!("read at-rest key file {}", path.display()), e))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), &mut key[..]).map_err(|_| {
        BlobError::new(
            BlobErrorKind::Protocol,
            format!(
                "at-rest key file {} must hold 64 hexadecimal digits",
                path.display()
            ),
        )
    })?;
    Ok(key)
}

/// Writes a new random key to `path` (mode 0600); never replaces a file.
pub fn create_key_file(path: &Path) -> Result<()> {
    use std::io::Write;
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut key[..])
        .map_err(|e| BlobError::new(BlobErrorKind::Io, format!("no random key: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::io(format!("create {}", dir.display()), e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| BlobError::io(format!("create at-rest key file {}", path.display()), e))?;
    let text = Zeroizing::new(format!("{}\n", hex::encode(&key[..])));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| BlobError::io(format!("write at-rest key file {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(keys: &AtRestKeys, c: &str, id: &[u8], data: &[u8]) -> (SealedHeader, Vec<u8>) {
        let mut s = keys.sealer(c, id).unwrap();
        let mut body = Vec::new();
        for piece in data.chunks(10_000) {
            body.extend(s.push(piece).unwrap());
        }
        let (tail, header) = s.finish([0; 32], data.len() as u64).unwrap();
        body.extend(tail);
        (header, body)
    }

    fn open_all(
        keys: &AtRestKeys,
        h: &SealedHeader,
        c: &str,
        id: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>> {
        let opener = keys.opener(h, c, id, "x")?;
        let mut out = Vec::new();
        for (i, seg) in body.chunks((SEGMENT + TAG) as usize).enumerate() {
            out.extend_from_slice(&opener.open(i as u64, BytesMut::from(seg))?);
        }
        Ok(out)
    }

    #[test]
    fn seals_and_opens_every_length_around_segment_edges() {
        let keys = AtRestKeys::from_bytes([1; 32], &[]);
        for len in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (h, body) = seal(&keys, "c", b"id", &data);
            assert_eq!(body.len() as u64 + HEADER_LEN, file_len(len), "len {len}");
            assert_eq!(
                open_all(&keys, &h, "c", b"id", &body).unwrap(),
                data,
                "len {len}"
            );
            if len >= 16 {
                assert!(
                    !body.windows(16).any(|w| w == &data[..16]),
                    "plaintext visible"
                );
            }
        }
    }

    #[test]
    fn another_name_container_or_key_does_not_open() {
        let keys = AtRestKeys::from_bytes([1; 32], &[]);
        let data = vec![7u8; 1000];
        let (h, body) = seal(&keys, "c", b"id", &data);
        assert!(open_all(&keys, &h, "c", b"other", &body).is_err());
        assert!(open_all(&keys, &h, "d", b"id", &body).is_err());
        let stranger = AtRestKeys::from_bytes([2; 32], &[]);
        assert_eq!(
            open_all(&stranger, &h, "c", b"id", &body).unwrap_err().kind,
            BlobErrorKind::Integrity
        );
        // After a rotation the old key still opens what it sealed.
        let rotated = AtRestKeys::from_bytes([2; 32], &[[1; 32]]);
        assert_eq!(open_all(&rotated, &h, "c", b"id", &body).unwrap(), data);
    }

    #[test]
    fn reordered_dropped_or_cut_segments_fail() {
        let keys = AtRestKeys::from_bytes([3; 32], &[]);
        let data: Vec<u8> = (0..3 * SEGMENT).map(|i| (i % 13) as u8).collect();
        let (h, body) = seal(&keys, "c", b"id", &data);
        let seg = (SEGMENT + TAG) as usize;
        let opener = keys.opener(&h, "c", b"id", "x").unwrap();
        // Segment 1's bytes at index 0.
        assert!(opener.open(0, BytesMut::from(&body[seg..2 * seg])).is_err());
        // A header claiming two segments: segment 1 is not marked last.
        let mut short = h;
        short.len = 2 * SEGMENT;
        short.bytes[72..80].copy_from_slice(&short.len.to_le_bytes());
        let opener = keys.opener(&short, "c", b"id", "x").unwrap();
        assert!(opener.open(1, BytesMut::from(&body[seg..2 * seg])).is_err());
        // One flipped bit anywhere in a segment.
        let opener = keys.opener(&h, "c", b"id", "x").unwrap();
        let mut flipped = BytesMut::from(&body[..seg]);
        flipped[100] ^= 1;
        assert!(opener.open(0, flipped).is_err());
    }

    #[test]
    fn key_files_are_created_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/at-rest.key");
        let a = AtRestKeys::load_or_create(&path).unwrap();
        let b = AtRestKeys::load_or_create(&path).unwrap();
        assert_eq!(a.current_id(), b.current_id());
        assert!(create_key_file(&path).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not hex\n").unwrap();
        assert_eq!(
            AtRestKeys::load(&path, &[]).unwrap_err().kind,
            BlobErrorKind::Protocol
        );
    }
}
