//! The server's configuration: one typed struct read from a TOML file, then
//! overridden by environment variables, then by command-line flags (the
//! overriding is done by clap, which reads each flag's variable).
//!
//! Every field has a default, so an empty file (or none) is the embedded
//! setup: SQLite and blobs in the data folder, in-process bus.
//!
//! ```toml
//! data_dir = "/var/lib/stacksync"      # STACKSYNC_DATA_DIR, --data-dir
//! listen = "127.0.0.1:8080"            # STACKSYNC_LISTEN, --listen
//! workers = 1                          # request consumers per process
//! prefetch = 16                        # STACKSYNC_PREFETCH, --prefetch
//! session_ttl_days = 30
//!
//! [database]
//! url = "postgres://stacksync@db/stacksync"   # STACKSYNC_DATABASE_URL, --database-url
//!
//! [bus]
//! kind = "rabbitmq"                    # or "in-process"; STACKSYNC_BUS_KIND
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"  # STACKSYNC_BUS_URL, --bus-url
//! namespace = "stacksync"              # STACKSYNC_BUS_NAMESPACE, --bus-namespace
//! queue_kind = "durable"               # "classic" | "durable" | "quorum"
//! rpc_timeout_ms = 30000
//! [bus.admin]                          # per-session broker users for direct clients
//! url = "http://127.0.0.1:15672"       # the rabbitmq_management API
//! user = "stacksync-admin"             # an administrator; never given to clients
//! password = "..."                     # STACKSYNC_BUS_ADMIN_PASSWORD
//! vhost = "/"
//! sweep_interval_secs = 60             # withdraws broker users of ended sessions
//!
//! [storage]
//! kind = "swift"                       # or "local" (root defaults to DATA_DIR/blobs)
//! storage_url = "https://swift.example/v1/AUTH_stacksync"  # told to clients
//! [storage.swift]                      # the blobstore's SwiftConfig
//! account = "AUTH_stacksync"
//! auth = { kind = "v1", auth_url = "http://127.0.0.1:8080/auth/v1.0", user = "stacksync:admin", key = "..." }
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use stacksync_blobstore::SwiftConfig;

/// The whole server configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Folder for the embedded database, local blobs and anything else the
    /// server keeps on disk. Default: `$XDG_DATA_HOME/stacksync-server`
    /// (or `~/.local/share/stacksync-server`).
    pub data_dir: Option<PathBuf>,
    /// HTTP address to listen on (`"127.0.0.1:PORT"`; port 0 picks a free
    /// one and prints it). Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// How many request consumers this process runs on the bus (each takes
    /// up to `prefetch` requests at a time). Default 1.
    pub workers: Option<usize>,
    /// Requests a consumer holds at once; idle servers get the rest.
    /// Default 16.
    pub prefetch: Option<u16>,
    /// Days a login session stays valid. Default 30.
    pub session_ttl_days: Option<u64>,
    /// The metadata database.
    pub database: DatabaseConfig,
    /// The message bus.
    pub bus: BusSection,
    /// Chunk storage.
    pub storage: StorageSection,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://USER@HOST:PORT/DB`. Default
    /// `sqlite://DATA_DIR/meta.sqlite?mode=rwc`.
    pub url: Option<String>,
}

/// Which bus backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum BusKind {
    /// Everything in this process (the embedded default).
    #[default]
    InProcess,
    /// RabbitMQ: many server processes share one request queue.
    Rabbitmq,
}

/// Durability of the RabbitMQ request queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QueueKindName {
    /// Fast, lost on broker restart.
    Classic,
    /// Survives a broker restart (default).
    #[default]
    Durable,
    /// Replicated over a RabbitMQ cluster.
    Quorum,
}

/// `[bus]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusSection {
    /// `"in-process"` (default) or `"rabbitmq"`.
    pub kind: BusKind,
    /// AMQP URL (RabbitMQ only), e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: Option<String>,
    /// Prefix of every exchange and queue, so deployments can share a
    /// broker. Default `stacksync`.
    pub namespace: String,
    /// `"classic"`, `"durable"` (default) or `"quorum"`.
    pub queue_kind: QueueKindName,
    /// Timeout of an RPC and of waits for the broker, milliseconds.
    pub rpc_timeout_ms: u64,
    /// The broker's management API (RabbitMQ only). When set, direct
    /// clients get a broker user of their own per session and requests on
    /// the bus must come from their session's user; unset, the server
    /// issues none and direct clients cannot log in.
    pub admin: Option<BusAdminSection>,
}

/// `[bus.admin]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusAdminSection {
    /// The management API, e.g. `http://127.0.0.1:15672`.
    pub url: String,
    /// A broker administrator.
    pub user: String,
    /// Its password (or `STACKSYNC_BUS_ADMIN_PASSWORD`).
    #[serde(default)]
    pub password: Option<String>,
    /// The bus's virtual host. Default `/`.
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// How often broker users of ended sessions are withdrawn. Default 60.
    #[serde(default = "default_sweep_secs")]
    pub sweep_interval_secs: u64,
}

impl std::fmt::Debug for BusAdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password is a secret: never in logs.
        f.debug_struct("BusAdminSection")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .field("sweep_interval_secs", &self.sweep_interval_secs)
            .finish_non_exhaustive()
    }
}

fn default_vhost() -> String {
    "/".into()
}

fn default_sweep_secs() -> u64 {
    60
}

impl Default for BusSection {
    fn default() -> Self {
        BusSection {
            kind: BusKind::InProcess,
            url: None,
            namespace: "stacksync".into(),
            queue_kind: QueueKindName::Durable,
            rpc_timeout_ms: 30_000,
            admin: None,
        }
    }
}

/// Which storage backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StorageKind {
    /// A local directory (the embedded default).
    #[default]
    Local,
    /// OpenStack Swift.
    Swift,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// `"local"` (default) or `"swift"`.
    pub kind: StorageKind,
    /// Local only: the folder holding containers. Default `DATA_DIR/blobs`.
    pub root: Option<PathBuf>,
    /// Swift only: the blobstore's Swift settings (`[storage.swift]`).
    pub swift: Option<SwiftConfig>,
    /// The storage URL clients may use to reach Swift directly.
    pub storage_url: Option<String>,
}

impl Config {
    /// Reads a TOML file; unknown keys are errors (a typo should not
    /// silently fall back to a default).
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// The data folder: configured, or the platform default.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let base = match std::env::var_os("XDG_DATA_HOME") {
            Some(x) if !x.is_empty() => PathBuf::from(x),
            _ => {
                let home = std::env::var_os("HOME")
                    .context("neither data_dir, XDG_DATA_HOME nor HOME is set")?;
                PathBuf::from(home).join(".local/share")
            }
        };
        Ok(base.join("stacksync-server"))
    }

    /// The database URL: configured, or SQLite in the data folder.
    pub fn database_url(&self, data_dir: &Path) -> String {
        self.database.url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("meta.sqlite").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.bus.kind, BusKind::InProcess);
        assert_eq!(c.storage.kind, StorageKind::Local);
        let d = Path::new("/data");
        assert_eq!(c.database_url(d), "sqlite:///data/meta.sqlite?mode=rwc");
    }

    #[test]
    fn full_file_parses_and_typos_are_refused() {
        let c: Config = toml::from_str(
            r#"
            data_dir = "/srv/ss"
            listen = "127.0.0.1:9000"
            prefetch = 4
            [database]
            url = "postgres://postgres@127.0.0.1:5432/ss"
            [bus]
            kind = "rabbitmq"
            url = "amqp://guest:guest@127.0.0.1:5672/%2f"
            namespace = "t1"
            queue_kind = "classic"
            [bus.admin]
            url = "http://127.0.0.1:15672"
            user = "admin"
            password = "secret"
            [storage]
            kind = "swift"
            [storage.swift]
            auth = { kind = "v1", auth_url = "http://h/auth/v1.0", user = "a:b", key = "k" }
            "#,
        )
        .unwrap();
        assert_eq!(c.bus.kind, BusKind::Rabbitmq);
        assert_eq!(c.bus.queue_kind, QueueKindName::Classic);
        assert_eq!(c.prefetch, Some(4));
        assert!(c.storage.swift.is_some());
        let admin = c.bus.admin.as_ref().expect("a [bus.admin] section");
        assert_eq!((admin.vhost.as_str(), admin.sweep_interval_secs), ("/", 60));
        assert!(!format!("{admin:?}").contains("secret"));
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
