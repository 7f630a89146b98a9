//! Encoding one chunk: id, adaptive compression, encryption, header; and the
//! total decoder that undoes it and proves the result matches the id.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use stacksync_proto::{ChunkId, ContentHash};

pub use crate::aead::Cipher;
use crate::aead::Crypto;
use crate::chunker::{ChunkReader, ChunkerConfig, MAX_CHUNK_LEN, chunk_reader_with_table};
use crate::error::{ChunkProblem, ContentError};
use crate::format::{
    FLAG_AES_GCM, FLAG_ENCRYPTED, Header, NONCE_LEN, TAG_LEN, pad, padded_len, unpad_chunk,
};
use crate::gear::GearTable;
use crate::generations::KeyGenerations;
use crate::keys::{WorkspaceKey, random_bytes};

/// Whether and how hard to compress chunk bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Never compress.
    Off,
    /// zstd at this level, for chunks that a cheap sample shows are
    /// compressible.
    Zstd {
        /// zstd level (1 fastest .. 19; negative levels are faster still).
        level: i32,
    },
}

impl Default for Compression {
    /// zstd level 3 (zstd's own default); incompressible chunks skip it
    /// entirely (a 16 KiB sample decides). Measured on the bench's text-like
    /// data in 1 MiB pieces, one thread, including id hash and framing:
    ///
    /// | level | CPU-s per GB | stored |
    /// |-------|--------------|--------|
    /// | -1    | 4.2          | 41.0 % |
    /// | 1     | 4.0          | 30.5 % |
    /// | 3     | 4.6          | 25.2 % |
    ///
    /// Level 1 is only ~13 % cheaper but uploads and stores ~21 % more
    /// bytes. At two cores level 3 still compresses text at several hundred
    /// MB/s, faster than the uplinks a sync client sees, where every byte
    /// saved is upload time saved; so level 3 gives the better trade-off.
    fn default() -> Self {
        Compression::Zstd { level: 3 }
    }
}

/// Bytes taken from each of [`SAMPLES`] places in a chunk to judge whether
/// compressing it pays.
const SAMPLE_LEN: usize = 4096;
const SAMPLES: usize = 4;

/// Encodes and decodes chunks for one workspace: plain, compressed, and/or
/// encrypted with the workspace key. An encrypted codec holds one or more
/// key generations: it encodes with the current one and decodes chunks and
/// deltas of any it holds. Cheap to clone and shareable across threads.
#[derive(Clone)]
pub struct ChunkCodec {
    compression: Compression,
    cipher: Cipher,
    keys: Option<Arc<KeyGenerations>>,
}

impl fmt::Debug for ChunkCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkCodec")
            .field("compression", &self.compression)
            .field("encrypted", &self.is_encrypted())
            .field("generation", &self.generation())
            .field("cipher", &self.cipher)
            .finish()
    }
}

/// One encoded chunk, ready to store under `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedChunk {
    /// The chunk's id (object name).
    pub id: ChunkId,
    /// The encoded object: header and body.
    pub bytes: Vec<u8>,
    /// Length of the plaintext. Known to the encoder only: an encrypted
    /// object (format version 2) does not show it.
    pub plaintext_len: u32,
    /// Offset of the chunk in its file (0 when encoded on its own).
    pub offset: u64,
    /// Whether the body was compressed.
    pub compressed: bool,
}

impl ChunkCodec {
    /// A codec for a workspace: `key` is `Some` for encrypted workspaces,
    /// which encrypt with [`Cipher::fastest`] (see [`Self::with_cipher`]).
    /// The key is key generation 1, the only one held: see
    /// [`Self::encrypted_generations`] for a workspace whose key was
    /// rotated.
    pub fn new(compression: Compression, key: Option<&WorkspaceKey>) -> ChunkCodec {
        ChunkCodec {
            compression,
            cipher: Cipher::fastest(),
            keys: key.map(|key| Arc::new(KeyGenerations::first(key))),
        }
    }

    /// Default compression and encryption with every key generation of a
    /// workspace in `keys` (generation, key): new chunks and deltas are
    /// written under `current`, and chunks and deltas of any generation
    /// given decode. Each generation's secrets are derived once, here.
    ///
    /// Refused ([`ContentError::Generations`]) when `keys` is empty, a
    /// generation is 0 or above [`MAX_KEY_GENERATION`](crate::MAX_KEY_GENERATION)
    /// or given twice, or `current` is not among them.
    pub fn encrypted_generations<'k>(
        current: u32,
        keys: impl IntoIterator<Item = (u32, &'k WorkspaceKey)>,
    ) -> Result<ChunkCodec, ContentError> {
        Ok(ChunkCodec {
            compression: Compression::default(),
            cipher: Cipher::fastest(),
            keys: Some(Arc::new(KeyGenerations::new(current, keys)?)),
        })
    }

    /// The key generation new chunks and deltas are written under; `None`
    /// without a key.
    pub fn generation(&self) -> Option<u32> {
        self.keys.as_deref().map(KeyGenerations::current)
    }

    /// The same codec, encrypting new chunks with `cipher` (decoding always
    /// accepts both). Without a key it changes nothing.
    pub fn with_cipher(mut self, cipher: Cipher) -> ChunkCodec {
        self.cipher = cipher;
        self
    }

    /// The cipher new chunks are encrypted with (when a key is set).
    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// No compression, no encryption.
    pub fn plain() -> ChunkCodec {
        ChunkCodec::new(Compression::Off, None)
    }

    /// Default compression, no encryption.
    pub fn compressed() -> ChunkCodec {
        ChunkCodec::new(Compression::default(), None)
    }

    /// Default compression and encryption with `key`, as key generation 1
    /// (the only one held).
    pub fn encrypted(key: &WorkspaceKey) -> ChunkCodec {
        ChunkCodec::new(Compression::default(), Some(key))
    }

    /// Whether chunks are encrypted (and ids and content hashes keyed).
    pub fn is_encrypted(&self) -> bool {
        self.keys.is_some()
    }

    /// The compression setting.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The id of a chunk with this plaintext: BLAKE3, keyed with a subkey of
    /// the current generation's workspace key in encrypted workspaces (the
    /// same plaintext has another id under each generation).
    pub fn chunk_id(&self, plaintext: &[u8]) -> ChunkId {
        chunk_id_under(self.current_crypto(), plaintext)
    }

    /// The current generation's secrets; `None` without a key.
    fn current_crypto(&self) -> Option<&Crypto> {
        self.keys.as_deref().map(KeyGenerations::current_crypto)
    }

    /// The secrets of the key generation an encrypted chunk or delta
    /// header names: [`ChunkProblem::KeyRequired`] without a key,
    /// [`ChunkProblem::UnknownGeneration`] for one this codec does not
    /// hold (fails closed).
    pub(crate) fn crypto_of(&self, generation: u32) -> Result<&Crypto, ChunkProblem> {
        let keys = self.keys.as_deref().ok_or(ChunkProblem::KeyRequired)?;
        keys.get(generation)
            .ok_or(ChunkProblem::UnknownGeneration { generation })
    }

    /// An incremental hasher for a whole file's [`ContentHash`]: plain
    /// BLAKE3 in every workspace. A file hash never leaves the client in
    /// the clear (an encrypted workspace's version record carries it
    /// sealed), and an unkeyed one compares a file on disk with a version
    /// written under any key generation.
    pub fn content_hasher(&self) -> ContentHasher {
        ContentHasher(blake3::Hasher::new())
    }

    /// The [`ContentHash`] of a whole file held in memory.
    pub fn content_hash(&self, data: &[u8]) -> ContentHash {
        let mut h = self.content_hasher();
        h.update(data);
        h.finalize()
    }

    /// The gear table this codec's files are cut with: FastCDC's public
    /// one without a key (the cut points of every stored unencrypted
    /// chunk), one derived from the workspace key with it (see `gear`).
    pub(crate) fn gear_table(&self) -> Cow<'_, GearTable> {
        match self.keys.as_deref() {
            None => Cow::Owned(GearTable::public()),
            Some(keys) => Cow::Borrowed(keys.gear()),
        }
    }

    /// A streaming chunker over `source` that cuts exactly where this
    /// codec's [`FileEncoder`](crate::FileEncoder) cuts: with a key, at
    /// cut points that depend on the current generation's workspace key
    /// (files are only cut to write new chunks); without one, where
    /// [`chunk_reader`](crate::chunk_reader) cuts. Anything that chunks a
    /// file to find chunks the workspace already has (e.g. reusing a local
    /// copy) must chunk through this, or it finds none in an encrypted
    /// workspace.
    pub fn chunk_reader<R: Read>(
        &self,
        source: R,
        config: ChunkerConfig,
    ) -> Result<ChunkReader<R>, ContentError> {
        chunk_reader_with_table(source, config, &self.gear_table())
    }

    /// The key for the parallel file hasher: none, whole-file hashes are
    /// unkeyed ([`Self::content_hasher`]).
    pub(crate) fn content_key(&self) -> Option<&[u8; 32]> {
        None
    }

    /// Header flags and a fresh random nonce for a body this codec
    /// encrypts; no flags and no nonce without a key. Shared by chunks and
    /// deltas so that both are sealed the same way.
    pub(crate) fn seal_params(&self) -> Result<(u8, Option<[u8; NONCE_LEN]>), ContentError> {
        if self.keys.is_none() {
            return Ok((0, None));
        }
        let mut flags = FLAG_ENCRYPTED;
        if self.cipher == Cipher::Aes256Gcm {
            flags |= FLAG_AES_GCM;
        }
        let mut nonce = [0u8; NONCE_LEN];
        random_bytes(&mut nonce)?;
        Ok((flags, Some(nonce)))
    }

    /// Encrypts `body` in place with the nonce from [`Self::seal_params`]
    /// and the current generation's key, and appends the tag; `aad` is the
    /// header (which names the current generation) and the object's id.
    pub(crate) fn seal_body(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        body: &mut Vec<u8>,
        from: usize,
    ) -> Result<(), ContentError> {
        let Some(crypto) = self.current_crypto() else {
            return Ok(());
        };
        let len = body.len() - from;
        let tag = crypto
            .seal(self.cipher, nonce, aad, &mut body[from..])
            .map_err(|()| ContentError::PlaintextTooLarge {
                len,
                max: MAX_CHUNK_LEN,
            })?;
        body.extend_from_slice(&tag);
        Ok(())
    }

    /// Encodes one chunk (at most [`MAX_CHUNK_LEN`] bytes).
    pub fn encode(&self, plaintext: &[u8]) -> Result<EncodedChunk, ContentError> {
        self.encode_with_id(plaintext, self.chunk_id(plaintext))
    }

    /// Encodes a chunk whose id the caller computed with [`Self::chunk_id`].
    pub(crate) fn encode_with_id(
        &self,
        plaintext: &[u8],
        id: ChunkId,
    ) -> Result<EncodedChunk, ContentError> {
        if plaintext.len() > MAX_CHUNK_LEN {
            return Err(ContentError::PlaintextTooLarge {
                len: plaintext.len(),
                max: MAX_CHUNK_LEN,
            });
        }
        let mut buf = self.chunk_buffer(plaintext.len());
        buf.extend_from_slice(plaintext);
        self.encode_in_place(buf, id)
    }

    /// Bytes before the plaintext in a buffer for [`Self::encode_in_place`]:
    /// exactly this codec's header length, so that a body stored raw never
    /// moves.
    pub(crate) fn header_room(&self) -> usize {
        Header::len_for(self.keys.is_some())
    }

    /// An empty chunk buffer: `header_room` zero bytes, with capacity for a
    /// plaintext of `len` bytes and what encoding adds after it (padding,
    /// inner lengths and tag when encrypted), so a raw body never moves.
    pub(crate) fn chunk_buffer(&self, len: usize) -> Vec<u8> {
        let room = self.header_room();
        let after = if self.keys.is_some() {
            padded_len::<1>(len) - len + TAG_LEN
        } else {
            0
        };
        let mut buf = Vec::with_capacity(room + len + after);
        buf.resize(room, 0);
        buf
    }

    /// Encodes the plaintext in `buf[header_room..]` (a buffer from
    /// [`Self::chunk_buffer`]), reusing `buf` as the encoded object when the
    /// body is stored raw: the header goes into the room before it and
    /// padding and encryption work in place, so the plaintext is never
    /// copied again.
    pub(crate) fn encode_in_place(
        &self,
        mut buf: Vec<u8>,
        id: ChunkId,
    ) -> Result<EncodedChunk, ContentError> {
        let room = self.header_room();
        let plaintext_len = buf.len().saturating_sub(room);
        if plaintext_len > MAX_CHUNK_LEN {
            return Err(ContentError::PlaintextTooLarge {
                len: plaintext_len,
                max: MAX_CHUNK_LEN,
            });
        }
        // Fits: plaintext_len <= MAX_CHUNK_LEN (16 MiB) was checked above.
        let plaintext_u32 = plaintext_len as u32;
        let compressed_body = match self.compression {
            Compression::Off => None,
            Compression::Zstd { level } => compress_if_it_pays(&buf[room..], level)?,
        };
        let compressed = compressed_body.is_some();
        let (_, nonce) = self.seal_params()?;
        let generation = self.generation().unwrap_or(1);
        if let Some(body) = compressed_body {
            // The buffer was sized for the plaintext; a sink that keeps
            // chunks should not hold that much per compressed chunk, so
            // the body moves to one sized for it and what follows it.
            let after = match nonce {
                Some(_) => padded_len::<1>(body.len()) - body.len() + TAG_LEN,
                None => 0,
            };
            buf = Vec::with_capacity(room + body.len() + after);
            buf.resize(room, 0);
            buf.extend_from_slice(&body);
        }
        let header = match nonce {
            None => Header::Plain {
                compressed,
                plaintext_len: plaintext_u32,
                // A kept compressed body is shorter than the plaintext.
                body_len: (buf.len() - room) as u32,
            },
            Some(nonce) => {
                let padded = pad(&mut buf, room, [plaintext_u32]);
                Header::Sealed {
                    aes_gcm: self.cipher == Cipher::Aes256Gcm,
                    generation,
                    // At most the bucket of 16 MiB + 8 plus the tag.
                    body_len: (padded + TAG_LEN) as u32,
                    nonce,
                }
            }
        };
        debug_assert_eq!(header.len(), room, "the room is the header's length");
        header.write_to(&mut buf[..room]);
        if let Header::Sealed { nonce, .. } = &header {
            let aad = associated_data(&buf[..room], &id);
            self.seal_body(nonce, &aad, &mut buf, room)?;
        }
        Ok(EncodedChunk {
            id,
            bytes: buf,
            plaintext_len: plaintext_u32,
            offset: 0,
            compressed,
        })
    }

    /// Decodes an encoded chunk and checks that it is the chunk `id` names.
    /// An encrypted chunk is opened, and its id checked, with the key of
    /// the generation its header names, which must be one this codec holds
    /// ([`ChunkProblem::UnknownGeneration`] otherwise).
    ///
    /// Total: any input, however truncated, corrupted or hostile, gives an
    /// error rather than a panic, never allocates more than
    /// [`MAX_CHUNK_LEN`] plus the input's length, and never returns bytes
    /// that do not hash to `id`. An encrypted chunk's lengths are only
    /// known, and checked, after it authenticates.
    pub fn decode(&self, id: &ChunkId, bytes: &[u8]) -> Result<Vec<u8>, ContentError> {
        let fail = |problem| ContentError::Chunk { id: *id, problem };
        let header = Header::parse(bytes).map_err(fail)?;
        let header_len = header.len();
        let body = &bytes[header_len..];
        // `crypto`: the generation that sealed and named the chunk; None
        // for a plain one.
        let (stored, plaintext_len, compressed, crypto): (Cow<'_, [u8]>, u32, bool, _) =
            match (&self.keys, header) {
                (None, Header::Sealed { .. }) => return Err(fail(ChunkProblem::KeyRequired)),
                (Some(_), Header::Plain { .. }) => return Err(fail(ChunkProblem::NotEncrypted)),
                (
                    None,
                    Header::Plain {
                        compressed,
                        plaintext_len,
                        ..
                    },
                ) => (Cow::Borrowed(body), plaintext_len, compressed, None),
                (
                    Some(_),
                    Header::Sealed {
                        aes_gcm,
                        generation,
                        nonce,
                        ..
                    },
                ) => {
                    let crypto = self.crypto_of(generation).map_err(fail)?;
                    // parse() checked body_len > TAG_LEN + INNER_LEN.
                    let aad = associated_data(&bytes[..header_len], id);
                    let mut opened = open_body(crypto, aes_gcm, &nonce, &aad, body)
                        .map_err(|()| fail(ChunkProblem::Authentication))?;
                    let inner = unpad_chunk(&mut opened).map_err(fail)?;
                    let stored = Cow::Owned(opened);
                    (stored, inner.plaintext_len, inner.compressed, Some(crypto))
                }
            };
        let plaintext = if compressed {
            let capacity = plaintext_len as usize;
            let out = zstd::bulk::decompress(&stored, capacity)
                .map_err(|e| fail(ChunkProblem::Decompress(e.to_string())))?;
            if out.len() != capacity {
                return Err(fail(ChunkProblem::Decompress(format!(
                    "inflated to {} bytes, header says {capacity}",
                    out.len()
                ))));
            }
            out
        } else {
            // Decrypted in place already (and cut to the stored body), or
            // a borrowed raw body: no extra copy in the encrypted case.
            stored.into_owned()
        };
        // Named under the generation that wrote it, not the current one.
        if chunk_id_under(crypto, &plaintext) != *id {
            return Err(fail(ChunkProblem::IdMismatch));
        }
        Ok(plaintext)
    }
}

/// The id of a chunk with this plaintext under one key generation's
/// secrets (keyed BLAKE3), or plain BLAKE3 with `None`.
pub(crate) fn chunk_id_under(crypto: Option<&Crypto>, plaintext: &[u8]) -> ChunkId {
    match crypto {
        None => ChunkId(*blake3::hash(plaintext).as_bytes()),
        Some(c) => ChunkId(*blake3::keyed_hash(&c.id_key.0, plaintext).as_bytes()),
    }
}

/// Decrypts `body` (ciphertext then tag) sealed by
/// [`ChunkCodec::seal_body`] under `crypto`'s generation; `Err` if it does
/// not authenticate.
pub(crate) fn open_body(
    crypto: &Crypto,
    aes_gcm: bool,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    body: &[u8],
) -> Result<Vec<u8>, ()> {
    let split = body.len().checked_sub(TAG_LEN).ok_or(())?;
    let (ciphertext, tag) = body.split_at(split);
    let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| ())?;
    let cipher = if aes_gcm {
        Cipher::Aes256Gcm
    } else {
        Cipher::XChaCha20Poly1305
    };
    let mut buf = ciphertext.to_vec();
    crypto.open(cipher, nonce, aad, &mut buf, tag)?;
    Ok(buf)
}

pub(crate) fn associated_data(header: &[u8], id: &ChunkId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + 32);
    aad.extend_from_slice(header);
    aad.extend_from_slice(id.as_bytes());
    aad
}

thread_local! {
    /// A zstd context per thread and level: creating one per chunk would
    /// cost more than compressing a small chunk.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    /// The level-1 context for samples, kept apart so that judging a chunk
    /// never resets the context that compresses it.
    static SAMPLER: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Compresses `data` if a sample says it is worth trying and the result is
/// at least 1/32 smaller; `None` means store raw.
fn compress_if_it_pays(data: &[u8], level: i32) -> Result<Option<Vec<u8>>, ContentError> {
    if data.is_empty() || !sample_compresses(data)? {
        return Ok(None);
    }
    let out = COMPRESSOR.with(|cell| -> std::io::Result<Vec<u8>> {
        let mut slot = cell.borrow_mut();
        if !matches!(&*slot, Some((l, _)) if *l == level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot.as_mut() {
            Some((_, c)) => c.compress(data),
            None => unreachable!("the slot was filled just above"),
        }
    });
    let out = out.map_err(ContentError::Compress)?;
    Ok((out.len() < data.len() - data.len() / 32).then_some(out))
}

/// Trial-compresses a few small slices spread over `data` at the fastest
/// level: about 1.5 % of a 1 MiB chunk's work, and random data (media,
/// archives, ciphertext) is then never compressed in full.
fn sample_compresses(data: &[u8]) -> Result<bool, ContentError> {
    let sample_total = SAMPLE_LEN * SAMPLES;
    if data.len() <= 2 * sample_total {
        // Small chunks: the full attempt costs about as much as a sample.
        return Ok(true);
    }
    let stride = (data.len() - SAMPLE_LEN) / (SAMPLES - 1);
    let mut sample = Vec::with_capacity(sample_total);
    for i in 0..SAMPLES {
        sample.extend_from_slice(&data[i * stride..i * stride + SAMPLE_LEN]);
    }
    let packed = SAMPLER
        .with(|cell| -> std::io::Result<Vec<u8>> {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Compressor::new(1)?);
            }
            match slot.as_mut() {
                Some(c) => c.compress(&sample),
                None => unreachable!("the slot was filled just above"),
            }
        })
        .map_err(ContentError::Compress)?;
    // Below 90 %: the full chunk at the real level will usually save more.
    Ok(packed.len() * 10 < sample.len() * 9)
}

/// Incremental whole-file hash; see [`ChunkCodec::content_hasher`].
#[derive(Clone)]
pub struct ContentHasher(blake3::Hasher);

impl ContentHasher {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, data: &[u8]) -> &mut Self {
        self.0.update(data);
        self
    }

    /// The hash of everything fed so far.
    pub fn finalize(&self) -> ContentHash {
        ContentHash(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::INNER_LEN;
    use crate::padme;

    /// Seals `inner` (a padded body as the encoder would have made it, or
    /// not) under a version-2 header: what a member holding the key could
    /// upload. Returns the object.
    fn sealed(codec: &ChunkCodec, id: &ChunkId, inner: &[u8]) -> Vec<u8> {
        let header = Header::Sealed {
            aes_gcm: false,
            generation: 1,
            body_len: (inner.len() + TAG_LEN) as u32,
            nonce: [7; NONCE_LEN],
        };
        let mut buf = Vec::new();
        header.write(&mut buf);
        let room = buf.len();
        buf.extend_from_slice(inner);
        let aad = associated_data(&buf[..room], id);
        codec
            .seal_body(&[7; NONCE_LEN], &aad, &mut buf, room)
            .unwrap();
        buf
    }

    fn inner(body: &[u8], pad_to: usize, stored: u32, plaintext: u32) -> Vec<u8> {
        let mut v = body.to_vec();
        v.resize(pad_to - INNER_LEN, 0);
        v.extend_from_slice(&stored.to_le_bytes());
        v.extend_from_slice(&plaintext.to_le_bytes());
        v
    }

    fn problem(codec: &ChunkCodec, id: &ChunkId, object: &[u8]) -> ChunkProblem {
        match codec.decode(id, object) {
            Err(ContentError::Chunk { problem, .. }) => problem,
            other => panic!("expected a chunk problem, got {other:?}"),
        }
    }

    /// Behind authentication the inner lengths and padding are checked as
    /// strictly as the header: the encoder's own layout decodes, and
    /// every deviation is refused without panicking.
    #[test]
    fn authenticated_bodies_with_bad_inner_lengths_or_padding_are_refused() {
        let key = WorkspaceKey::from_bytes([4; 32]);
        // XChaCha20-Poly1305, as `sealed` writes in the header.
        let codec =
            ChunkCodec::new(Compression::Off, Some(&key)).with_cipher(Cipher::XChaCha20Poly1305);
        let data = b"hello, padded world: twenty-nine".to_vec();
        let id = codec.chunk_id(&data);
        let len = data.len() as u32;
        let bucket = padded_len::<1>(data.len());
        let good = sealed(&codec, &id, &inner(&data, bucket, len, len));
        assert_eq!(codec.decode(&id, &good).unwrap(), data);

        let padding = |p: ChunkProblem| matches!(p, ChunkProblem::Padding(_));
        // A non-zero padding byte.
        let mut dirty = inner(&data, bucket, len, len);
        dirty[data.len()] = 1;
        assert!(padding(problem(&codec, &id, &sealed(&codec, &id, &dirty))));
        // Stored length past the padding, or past the plaintext.
        let over = inner(&data, bucket, bucket as u32, bucket as u32);
        assert!(padding(problem(&codec, &id, &sealed(&codec, &id, &over))));
        let longer = inner(&data, bucket, len, len - 1);
        assert!(padding(problem(&codec, &id, &sealed(&codec, &id, &longer))));
        let huge = inner(&data, bucket, len, u32::MAX);
        assert!(matches!(
            problem(&codec, &id, &sealed(&codec, &id, &huge)),
            ChunkProblem::TooLarge { .. }
        ));
        // Padded to a larger bucket than the body needs.
        let next = padded_len::<1>(bucket + 1);
        assert_eq!(padme::padme(next as u64), next as u64);
        let wide = inner(&data, next, len, len);
        assert!(padding(problem(&codec, &id, &sealed(&codec, &id, &wide))));
        // A stored length that says "compressed" over raw bytes.
        let fake = inner(&data, bucket, len, len + 5);
        assert!(matches!(
            problem(&codec, &id, &sealed(&codec, &id, &fake)),
            ChunkProblem::Decompress(_)
        ));
        // The smallest bucket: nothing but the inner lengths.
        let empty_id = codec.chunk_id(b"");
        let empty = sealed(&codec, &empty_id, &inner(b"", INNER_LEN, 0, 0));
        assert_eq!(codec.decode(&empty_id, &empty).unwrap(), b"");
    }
}
