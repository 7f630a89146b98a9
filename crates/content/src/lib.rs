//! The StackSync content pipeline: turns a file's bytes into chunks and back.
//! It cuts streams with content-defined chunking (FastCDC) so that an edit
//! only changes nearby chunks, names chunks by BLAKE3 (keyed with the
//! workspace key in encrypted workspaces), compresses with zstd only when a
//! cheap sample says it pays, encrypts with AES-256-GCM where the CPU has
//! AES instructions and XChaCha20-Poly1305 elsewhere (see [`Cipher`]), and wraps
//! workspace keys under passphrases (Argon2id) or members' X25519 keys. In
//! encrypted workspaces the server learns as little as it can of what it
//! stores: cut points come from a gear table keyed by the workspace key and
//! chunk bodies are padded to Padmé buckets with their lengths inside the
//! ciphertext (format version 2).
//!
//! This crate must never do network or database I/O, and decoding must never
//! panic, allocate without bound, or return bytes that do not match the id
//! they were asked for: everything it decodes comes from an untrusted
//! server.
//!
//! Entry points: [`FileEncoder`] (a `Read` to encoded chunks plus a
//! [`FileSummary`], in parallel), [`FileDecoder`] (encoded chunks back to a
//! `Write`), [`ChunkCodec`] (one chunk; [`ChunkCodec::chunk_reader`] cuts a
//! stream where that codec's encoder does), [`chunk_reader`] (chunking
//! alone, unencrypted cut points), [`padme`] (the padded sizes the server
//! may see of encrypted data),
//! [`WorkspaceKey`] and [`WrappedKey`] (keys), [`delta`] (a changed chunk
//! encoded against the previous version's chunk).

#![deny(missing_docs)]

mod aead;
mod chunker;
mod codec;
pub mod delta;
mod error;
mod filehash;
mod format;
pub mod fuzz;
mod gear;
mod generations;
mod keys;
mod padme;
mod pipeline;
mod wrap;

pub use chunker::{Chunk, ChunkReader, ChunkerConfig, MAX_CHUNK_LEN, chunk_reader};
pub use codec::{ChunkCodec, Cipher, Compression, ContentHasher, EncodedChunk};
pub use error::{ChunkProblem, ContentError, GenerationProblem, KeyProblem};
pub use format::{ENCRYPTED_FORMAT_VERSION, FORMAT_VERSION, MAX_KEY_GENERATION};
pub use gear::NORMALIZATION;
pub use keys::WorkspaceKey;
pub use padme::padme;
pub use pipeline::{EncodeError, FileDecoder, FileEncoder, FileSummary, PipelineConfig};
pub use wrap::{KdfParams, MemberPublicKey, MemberSecretKey, WrappedKey};
