//! End-to-end encrypted workspaces (`EncryptionMode::ClientSide`) on this
//! device: where their keys come from ([`keys`]) and the engine's view of
//! such a workspace, which seals every version it proposes and opens and
//! checks every version the server lists ([`SealedRemote`]). Chunks are
//! encrypted by the content store's codec, made from the workspace's key
//! ([`keys::WorkspaceKeys::codec`]). The data model and every check are in
//! `stacksync-vault`; this module moves its blobs and keeps its state.

pub mod keys;
mod remote;

pub use keys::{KeyFiles, WorkspaceKeys};
pub use remote::SealedRemote;
/// What callers compare and pin (fingerprints, pin states).
pub use stacksync_vault::{Pin, PublicIdentity};
