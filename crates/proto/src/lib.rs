//! The language every part of StackSync speaks: ids, item metadata, commit
//! requests and results, change-feed pages, notifications, RPC messages and
//! the one error enum that every layer maps to.
//!
//! This crate does no I/O and depends on no other StackSync crate. Everything
//! here is serialized with serde; the [`wire`] module wraps messages in a
//! versioned envelope so that old clients keep working as fields are added,
//! and compresses them (and [`brief`] shortens commit replies) for peers
//! that said they read it.

pub mod account;
pub mod brief;
pub mod commit_rules;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod ids;
pub mod item;
pub mod keys;
pub mod name;
pub mod notify;
pub mod rpc;
pub mod wire;
mod wire_dictionary;

pub use account::{Account, Device, EncryptionMode, Invitation, Member, Workspace};
pub use error::{Error, ErrorKind};
pub use ids::{ChunkId, ContentHash, DeviceId, ItemId, ParseIdError, UserId, WorkspaceId};
pub use item::{
    ChangesPage, ChunkRef, CommitOutcome, CommitRequest, CommitResult, ItemCommitResult, ItemMeta,
    ItemName, ItemStatus, MAX_CHUNK_SIZE, MAX_ENCODED_CHUNK, MAX_STORED_NUMBER, NameError,
    PackSpan, ProposedItem, same_chunks,
};
pub use name::{InvisibleKind, fold_key, printable};
pub use notify::Notification;

/// Milliseconds since the Unix epoch, UTC. Used for every timestamp on the
/// wire so that both databases and every platform agree on precision.
pub type Millis = i64;
