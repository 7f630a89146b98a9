//! The crate's error type. Every error says which chunk, which byte offset or
//! which key blob it is about, so that a caller can log it without context of
//! its own; [`ContentError::to_proto`] maps it to the protocol error at the
//! boundary.

use std::io;

use stacksync_proto::{ChunkId, ContentHash, Error as ProtoError, ErrorKind};

/// Why an encoded chunk was refused. Decoding never trusts the bytes it is
/// given, so each of these is an expected outcome, not a bug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkProblem {
    /// Fewer bytes than the header says there must be.
    #[error("truncated: need {needed} bytes, have {got}")]
    Truncated {
        /// Bytes required by the header.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// More bytes than the header accounts for.
    #[error("{extra} trailing bytes after the declared body")]
    TrailingBytes {
        /// Bytes past the declared end.
        extra: usize,
    },
    /// The first bytes are not a StackSync chunk header.
    #[error("not a StackSync chunk (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported chunk format version {0}")]
    UnsupportedVersion(u8),
    /// Flag or reserved bits this version does not define.
    #[error("unknown header bits set: flags {flags:#04x}, reserved {reserved:#06x}")]
    UnknownBits {
        /// The flags byte.
        flags: u8,
        /// The reserved field, which must be zero.
        reserved: u16,
    },
    /// The declared plaintext length exceeds the hard maximum.
    #[error("declared plaintext length {declared} exceeds the maximum {max}")]
    TooLarge {
        /// Length from the header.
        declared: u64,
        /// The hard maximum ([`crate::MAX_CHUNK_LEN`]).
        max: u64,
    },
    /// The body length disagrees with the declared plaintext length.
    #[error("body length {body} does not fit plaintext length {plaintext}")]
    LengthMismatch {
        /// Body length from the header.
        body: u64,
        /// Plaintext length from the header.
        plaintext: u64,
    },
    /// The chunk is encrypted but this codec has no key.
    #[error("chunk is encrypted and no workspace key was given")]
    KeyRequired,
    /// The workspace is encrypted but the chunk is not: a downgrade.
    #[error("chunk is not encrypted but the workspace is")]
    NotEncrypted,
    /// Authentication failed: wrong key, or the bytes were altered.
    #[error("authentication failed (wrong key or tampered chunk)")]
    Authentication,
    /// The compressed body is not valid zstd or inflates to the wrong size.
    #[error("decompression failed: {0}")]
    Decompress(String),
    /// The decoded bytes do not hash to the chunk's id.
    #[error("decoded bytes do not match the chunk id")]
    IdMismatch,
    /// An encrypted chunk in a format version that shows its lengths in
    /// the clear (version 1): refused as a downgrade, since a server could
    /// otherwise swap in such a chunk to learn lengths the encoder hid.
    #[error(
        "encrypted chunk in format version {version}, which shows its lengths: refused as a downgrade"
    )]
    Downgrade {
        /// The version in the header.
        version: u8,
    },
    /// An unencrypted chunk in the encrypted-only format version.
    #[error("unencrypted chunk in format version {version}, which is only for encrypted chunks")]
    PlainInEncryptedFormat {
        /// The version in the header.
        version: u8,
    },
    /// An encrypted chunk's padded body is not what the encoder writes:
    /// not a Padmé bucket, inner lengths that do not fit it, or padding
    /// bytes that are not zero.
    #[error("bad padding: {0}")]
    Padding(String),
    /// A delta was applied to a base whose length or id is not the base
    /// the delta names.
    #[error("delta applied to a base other than the one it names")]
    WrongBase,
    /// An encrypted chunk or delta written under a key generation this
    /// codec does not hold: a generation newer than the member's key ring,
    /// one it was never given, or a header whose generation bytes were
    /// altered (which would fail authentication anyway).
    #[error("written under key generation {generation}, which this codec does not hold")]
    UnknownGeneration {
        /// The generation in the header.
        generation: u32,
    },
}

/// Why a set of key generations cannot make an encrypted codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationProblem {
    /// No key was given.
    #[error("no key generation given")]
    Empty,
    /// A generation outside 1 to [`crate::MAX_KEY_GENERATION`], the range
    /// the chunk header can name.
    #[error("key generation {generation} is outside 1 to {max}")]
    OutOfRange {
        /// The generation given.
        generation: u32,
        /// The highest generation a header can name.
        max: u32,
    },
    /// The same generation given twice.
    #[error("key generation {generation} given twice")]
    Duplicate {
        /// The generation given twice.
        generation: u32,
    },
    /// The current generation is not among the keys given.
    #[error("current key generation {current} is not among the keys given")]
    CurrentMissing {
        /// The current generation asked for.
        current: u32,
    },
}

/// What went wrong with a key blob or key operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// The blob is not a StackSync wrapped key or is cut short.
    #[error("malformed wrapped key: {0}")]
    Malformed(&'static str),
    /// A wrapped-key format version this build cannot read.
    #[error("unsupported wrapped key version {0}")]
    UnsupportedVersion(u8),
    /// The blob was wrapped a different way than the caller tries to unwrap it.
    #[error("wrapped key uses method {found}, expected {expected}")]
    WrongMethod {
        /// Method byte expected.
        expected: u8,
        /// Method byte found.
        found: u8,
    },
    /// The blob holds a different kind of secret than asked for.
    #[error("wrapped key holds secret kind {found}, expected {expected}")]
    WrongKind {
        /// Kind byte expected.
        expected: u8,
        /// Kind byte found.
        found: u8,
    },
    /// Argon2 parameters outside the range this build accepts (a hostile
    /// blob could otherwise make us allocate gigabytes).
    #[error("key derivation parameters out of range: {0}")]
    BadParams(String),
    /// Wrong passphrase or private key, or the blob was altered.
    #[error("cannot unwrap: wrong passphrase or key, or the blob was altered")]
    Unwrap,
    /// The peer's public key is a low-order point.
    #[error("member public key is not usable (low-order point)")]
    WeakPublicKey,
    /// The operating system's random source failed.
    #[error("random number generator failed: {0}")]
    Random(String),
}

/// Errors of the content pipeline.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// Chunk sizes outside what the chunker supports.
    #[error("invalid chunker configuration: {0}")]
    InvalidConfig(String),
    /// The input stream failed.
    #[error("reading input at byte {offset}: {source}")]
    Read {
        /// Offset in the file where the read failed.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The output stream failed.
    #[error("writing output at byte {offset}: {source}")]
    Write {
        /// Offset in the file where the write failed.
        offset: u64,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A plaintext handed to the encoder is larger than any chunk may be.
    #[error("plaintext of {len} bytes exceeds the chunk maximum {max}")]
    PlaintextTooLarge {
        /// Length given.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// An encoded chunk was refused.
    #[error("chunk {id}: {problem}")]
    Chunk {
        /// The chunk the bytes were supposed to be.
        id: ChunkId,
        /// Why it was refused.
        problem: ChunkProblem,
    },
    /// A decoded chunk's size differs from the size in the file's chunk list.
    #[error("chunk {id} has {actual} bytes but the chunk list says {declared}")]
    ChunkSizeMismatch {
        /// The chunk.
        id: ChunkId,
        /// Size from the chunk list.
        declared: u32,
        /// Size decoded.
        actual: usize,
    },
    /// The reassembled file does not hash to the expected content hash.
    #[error("file content hash is {actual}, expected {expected}")]
    ContentHashMismatch {
        /// Hash from the item metadata.
        expected: ContentHash,
        /// Hash of the bytes written.
        actual: ContentHash,
    },
    /// A key could not be made, wrapped or unwrapped.
    #[error("key: {0}")]
    Key(#[from] KeyProblem),
    /// The key generations given to a codec do not fit together.
    #[error("key generations: {0}")]
    Generations(#[from] GenerationProblem),
    /// zstd failed while compressing (out of memory or a library bug).
    #[error("compressing chunk: {0}")]
    Compress(#[source] io::Error),
    /// A pipeline worker thread panicked; a bug, reported instead of hanging.
    #[error("pipeline worker failed: {0}")]
    Worker(String),
}

impl ContentError {
    /// Maps this error to the protocol error every layer speaks.
    pub fn to_proto(&self) -> ProtoError {
        let kind = match self {
            ContentError::InvalidConfig(_) | ContentError::Generations(_) => ErrorKind::BadRequest,
            ContentError::Read { .. } | ContentError::Write { .. } => ErrorKind::Unavailable,
            ContentError::PlaintextTooLarge { .. } => ErrorKind::TooLarge,
            ContentError::Chunk { problem, .. } => match problem {
                ChunkProblem::TooLarge { .. } => ErrorKind::TooLarge,
                ChunkProblem::UnsupportedVersion(_) => ErrorKind::UnsupportedVersion,
                _ => ErrorKind::BadRequest,
            },
            ContentError::ChunkSizeMismatch { .. } | ContentError::ContentHashMismatch { .. } => {
                ErrorKind::BadRequest
            }
            ContentError::Key(KeyProblem::Unwrap) => ErrorKind::Forbidden,
            ContentError::Key(KeyProblem::UnsupportedVersion(_)) => ErrorKind::UnsupportedVersion,
            ContentError::Key(KeyProblem::Random(_)) => ErrorKind::Internal,
            ContentError::Key(_) => ErrorKind::BadRequest,
            ContentError::Compress(_) | ContentError::Worker(_) => ErrorKind::Internal,
        };
        ProtoError::new(kind, self.to_string())
    }
}

impl From<ContentError> for ProtoError {
    fn from(e: ContentError) -> ProtoError {
        e.to_proto()
    }
}
