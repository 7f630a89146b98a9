//! StackSync vault: the client-side data model of an end-to-end encrypted
//! workspace.
//!
//! **What it is for.** Everything a client needs so that a server it does
//! not trust can store and relay an encrypted workspace without being able
//! to read it or to change it undetectably: long-term user identities
//! ([`identity`]), trust-on-first-use key pinning ([`pins`]), the signed,
//! hash-chained membership statement that is the only source of workspace
//! keys and commits to each generation's key, so that even a malicious
//! signing member cannot give two members different keys ([`membership`]), the key ring of every key generation
//! ([`keyring`]), item names encrypted and bound to their place ([`names`]),
//! signed and encrypted item records ([`record`]), size padding
//! ([`padding`]) and rollback detection ([`freshness`]). The attack classes
//! of "End-to-End Encrypted Cloud Storage in the Wild" (CCS 2024), "MEGA:
//! Malleable Encryption Goes Awry" (S&P 2023) and "Share with Care"
//! (EuroS&P 2024) are the bar: no unauthenticated ciphertext, no key the
//! server can substitute, no metadata it can swap, no downgrade, no
//! rollback. Chunk encryption and keyed chunk ids stay in
//! `stacksync-content` (`ChunkCodec::encrypted_generations` with every
//! generation's [`stacksync_content::WorkspaceKey`] from the
//! [`keyring::KeyRing`]).
//!
//! **What it must never do.** No I/O, no async, no network, no database:
//! callers move the byte blobs it produces. Everything it parses came from
//! the adversary, so no decoder may panic, allocate more than the input
//! length and explicit caps allow, accept trailing bytes, or accept a
//! format or KDF parameters weaker than the ones it writes. It never uses a
//! key it did not get from a verified membership statement or the client's
//! own sealed storage, never trusts a public key the pin store has not
//! accepted, and its errors never echo attacker-chosen bytes.
//!
//! **What the server still sees** of an encrypted workspace:
//! * opaque ids: workspace, item and user ids, chunk ids (keyed BLAKE3,
//!   unlinkable across workspaces) and pack names;
//! * the tree shape: which item id is the parent of which, which items are
//!   folders, which are deleted;
//! * revision numbers: item versions, membership epochs, key generations
//!   (each stored chunk's header names the generation it is encrypted
//!   under);
//! * sizes: each chunk's [`padding::padme`]-padded length (a record's
//!   [`record::RecordContext`] lists them), chunk counts, each stored
//!   chunk's (compressed, encrypted, padded) size, record lengths (which
//!   include the encrypted name, padded to 32 bytes);
//! * who commits what and when (the account that sends each commit, and its
//!   own timestamps), and who fetches what;
//! * the membership: how many members, their user ids, public keys, roles
//!   and read-only flags, who signed each statement, and whether a recovery
//!   copy exists; for a shared folder, the name each member gives it (the
//!   workspace name it is mounted under).
//!
//! It does not see names, contents, true sizes, modification times the
//! client records, content hashes, or who authored a version (the signature
//! is inside the ciphertext).
//!
//! **What callers must do themselves**: persist the [`pins::PinStore`],
//! [`freshness::Freshness`] and last [`membership::Verified`] (sealed with
//! [`membership::Verified::seal_local`]) where the server cannot write;
//! after each verified statement, pin first-use members and observe its
//! epoch; after each opened record, observe its version; fill a
//! [`record::RecordContext`] with exactly what the server claimed; show a
//! [`pins::Pin::Changed`] or [`error::ErrorKind::KeyChanged`] to the user
//! with both fingerprints.

mod codec;
mod crypto;
pub mod error;
pub mod freshness;
#[doc(hidden)]
pub mod fuzz;
pub mod identity;
pub mod kdf;
pub mod keyring;
pub mod membership;
pub mod names;
pub mod padding;
pub mod pins;
pub mod record;

pub use error::{ErrorKind, Result, VaultError};
pub use freshness::Freshness;
pub use identity::{Fingerprint, Identity, PublicIdentity};
pub use kdf::MIN_KDF;
pub use keyring::{Generation, KeyRing};
pub use membership::{Member, RecoveryPassphrase, Role, Statement, Verified};
pub use names::{open_name, seal_name};
pub use padding::padme;
pub use pins::{Pin, PinStore};
pub use record::{ChunkEntry, ItemKind, Record, RecordContext};
