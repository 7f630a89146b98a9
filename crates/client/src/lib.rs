//! The StackSync desktop client's building blocks: the engine's traits on
//! real things — [`LocalFs`] (the synced folder on disk),
//! [`SqliteStateStore`] (the sync state in a local database),
//! [`ChunkedContentStore`] (the content pipeline over a [`ChunkTransport`],
//! packing chunks into few objects, with an [`UploadJournal`] to resume)
//! — plus the client's [`Profile`] (configuration and state folder) and a
//! debounced folder [`Watcher`]. The `stacksync` binary wires these to an
//! [`stacksync_engine::Engine`] and a transport.
//!
//! This crate must never depend on the server (`stacksync-service`,
//! `stacksync-metastore`, the gateway's server half), never touch a path
//! outside the synced folder except its own state folder, never follow a
//! symlink inside the synced folder, and never overwrite a file by a
//! rename: everything it writes into the folder goes through a temporary
//! file that is fsynced and renamed into place.

#![warn(missing_docs)]

pub mod app;
pub mod connection;
pub mod desktop;
pub mod direct;
pub mod e2ee;
#[doc(hidden)]
pub mod fuzz;
pub mod localfs;
pub mod mounts;
mod own_changes;
pub mod pause;
pub mod private;
pub mod profile;
pub mod schedule;
mod sqlite;
pub mod state;
pub mod status;
pub mod transfer;
pub mod watcher;
pub mod workspace_sync;

pub use app::{AppError, ClientOptions, STATUS_SOCKET, SyncClient, offline_status};
pub use connection::{
    Connection, GatewayConnection, GatewayTransport, NotificationStream, WorkspaceRemote,
};
pub use desktop::{DesktopNotifier, NoticeKind, Urgency};
pub use direct::{DirectConfig, DirectConnection};
pub use localfs::{LocalFs, OpenFolderError};
pub use profile::{DirectProfile, Profile, ProfileConfig, ProfileError, TransportKind};
pub use state::{SqliteStateStore, StateDbError};
pub use status::{FileStatus, StatusEntry, StatusReport};
pub use transfer::{
    BlobTransport, ChunkTransport, ChunkedContentStore, JournalError, TokenBucket, TransferConfig,
    TransferError, TransferStats, UploadJournal,
};
pub use watcher::{WatchConfig, WatchError, WatchEvent, Watcher};
