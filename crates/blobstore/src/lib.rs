//! Chunk object storage for StackSync: containers of content-addressed
//! objects (named by [`stacksync_proto::ChunkId`]) with per-container ACLs,
//! on a local directory (the embedded default) or on OpenStack Swift.
//!
//! As in the original StackSync, an installation is one Swift account, each
//! StackSync user a Swift user, each workspace a container
//! ([`ContainerName::for_workspace`]); the service grants each user's
//! storage user read/write on its private container and read-only on the
//! shared ones it belongs to. Objects are written once (an existing name is
//! never replaced; the same bytes again succeed). Both backends implement
//! [`BlobStore`] and pass one conformance suite (`tests/conformance`).
//!
//! This crate must never interpret object bytes (they are encoded chunks
//! from the content crate: compressed, maybe encrypted), never trust a
//! caller's names without validating them ([`ContainerName`],
//! [`StorageUser`]), never leave a partial object visible, and never
//! return a whole object it has not checked: the local backend keeps a
//! BLAKE3 checksum of the stored bytes in each file's header (the id is a
//! hash of the plaintext, so it cannot serve), and the Swift backend checks
//! MD5 against the ETag on PUT and on whole-object GET. Range reads (a
//! chunk out of a pack) cost only the range and are not checked here: the
//! chunk decoder checks each chunk against its id. It knows nothing of
//! users' files, metadata or quotas.
//!
//! Tests: the conformance suite runs on a temporary folder always, and on a
//! real Swift when `STACKSYNC_TEST_SWIFT` holds its TempAuth URL (see
//! `scripts/swift start` and `scripts/swift env`); without it the Swift tests
//! print `SKIP:` and pass, except under `CI=true`, where they fail.

pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod local;
pub mod metrics;
pub mod names;
pub mod store;
pub mod swift;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use error::{BlobError, BlobErrorKind, Result};
pub use local::{AtRestKeys, LocalIdentity, LocalStore, Resealed};
pub use names::{ContainerName, StorageUser};
pub use store::{
    Access, BlobStore, ByteRange, ByteStream, ContainerAcl, MAX_OBJECT_SIZE, ObjectInfo, collect,
    put_many, single_piece,
};
pub use swift::{RetryPolicy, SwiftAuth, SwiftConfig, SwiftStats, SwiftStore};

/// Which backend to use, as the server's configuration says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StoreConfig {
    /// A local directory.
    Local {
        /// The folder holding the containers.
        root: PathBuf,
        /// Act as this storage user instead of the owner.
        #[serde(default)]
        user: Option<StorageUser>,
        /// Seal new objects at rest with the key in this file (see
        /// [`local::at_rest`]); `None` stores them as they come.
        #[serde(default)]
        at_rest_key_file: Option<PathBuf>,
        /// Earlier keys, still needed to read what they sealed.
        #[serde(default)]
        at_rest_old_key_files: Vec<PathBuf>,
    },
    /// OpenStack Swift.
    Swift(Box<SwiftConfig>),
}

/// Opens the store `config` describes. A Swift store logs in at once, so
/// that wrong credentials or an unreachable Swift show at startup.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn BlobStore>> {
    match config {
        StoreConfig::Local {
            root,
            user,
            at_rest_key_file,
            at_rest_old_key_files,
        } => {
            let store = match at_rest_key_file {
                Some(key) => {
                    let keys = AtRestKeys::load(key, at_rest_old_key_files)?;
                    LocalStore::open_sealed(root.clone(), keys).await?
                }
                None => LocalStore::open(root.clone()).await?,
            };
            Ok(match user {
                Some(u) => Arc::new(store.as_user(u.clone())),
                None => Arc::new(store),
            })
        }
        StoreConfig::Swift(cfg) => {
            let store = SwiftStore::new((**cfg).clone())?;
            store.connect().await?;
            Ok(Arc::new(store))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_toml_like_json() {
        let local: StoreConfig =
            serde_json::from_str(r#"{"backend":"local","root":"/var/lib/stacksync/blobs"}"#)
                .unwrap();
        assert_eq!(
            local,
            StoreConfig::Local {
                root: "/var/lib/stacksync/blobs".into(),
                user: None,
                at_rest_key_file: None,
                at_rest_old_key_files: Vec::new(),
            }
        );
        let swift: StoreConfig = serde_json::from_str(
            r#"{"backend":"swift","auth":{"kind":"v1","auth_url":"http://h/auth/v1.0","user":"a:b","key":"k"},"account":"AUTH_a"}"#,
        )
        .unwrap();
        let StoreConfig::Swift(cfg) = swift else {
            panic!("expected swift, got {swift:?}")
        };
        assert_eq!(cfg.max_concurrency, 16);
        assert_eq!(cfg.account.as_deref(), Some("AUTH_a"));
        assert_eq!(cfg.retry, RetryPolicy::default());
    }
}
