//! The metadata store: users, devices, workspaces, members, items and their
//! versions, chunk references, share proposals and OAuth state, with the
//! commit rules of a personal cloud (reference section 4) and an incremental
//! change feed.
//!
//! One schema and one code path serve SQLite (the embedded default) and
//! PostgreSQL (production), through sqlx's `Any` driver: every query is
//! written in the SQL both share, with `$N` placeholders. This crate never
//! talks to blob storage or the bus, and never trusts ids, names or sizes it
//! is handed: callers get a [`stacksync_proto::Error`] with a clear kind.

mod admin;
mod change_page;
mod chunk_id_lists;
mod chunk_index;
mod claims;
mod commit;
mod error;
mod feed;
mod folder_move;
mod gc;
mod key_chain;
mod links;
mod monitoring;
mod name_keys;
mod oauth;
mod objects;
mod packed_item;
mod page_budget;
mod rows;
mod sharing;
mod store;
pub mod testing;
mod upload_sessions;
mod user_removal;
mod users;
mod web;

pub use admin::{
    DatabaseProbe, DeviceSummary, InstallationStats, MigrationStatus, StorageGrant, UserSummary,
    WorkspaceSummary, probe,
};
pub use error::StoreError;
pub use folder_move::{FolderBack, FolderMove};
pub use gc::GcPlan;
pub use key_chain::{Appended, KeyChainPage, OwnIdentity};
pub use links::{Attempt, LinkAccess, LinkRecord, PathStep};
pub use monitoring::{LiveCounts, PoolUse};
pub use oauth::{AccessToken, AuthorizedApp, OAuthConsumer, RequestToken};
pub use objects::{Charge, StoredObject};
pub use sharing::{InviteeState, ShareProposal, ShareTerms};
pub use store::{Backend, MetaStore};
pub use upload_sessions::{
    CommittedUpload, NewUploadSession, SessionEnd, SessionEndCause, StagedPiece, UploadSessionRow,
    UploadTarget,
};
pub use user_removal::{DissolvedWorkspace, FormerMember, RemovedUser, SharedWorkspaces};
pub use users::{NewUser, Revocation, UserRecord};
pub use web::{LiveSession, MAX_TRASH_PAGE, SessionKind};

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
