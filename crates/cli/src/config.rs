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
//! [gc]                                 # garbage collection of stored objects
//! interval_minutes = 60                # 0: the server never collects on its own
//! grace_minutes = 60                   # younger objects are never collected
//! retention_days = 30                  # history kept after a version is replaced
//!
//! [storage]
//! kind = "swift"                       # or "local" (root defaults to DATA_DIR/blobs)
//! at_rest_encryption = true            # local: seal objects with a key file (default)
//! at_rest_key_file = "/etc/stacksync/at-rest.key"  # default DATA_DIR/at-rest.key, made once
//! at_rest_old_key_files = []           # keys before a rotation, still read
//! storage_url = "https://swift.example/v1/AUTH_stacksync"  # told to clients
//! [storage.swift]                      # the blobstore's SwiftConfig
//! account = "AUTH_stacksync"
//! auth = { kind = "v1", auth_url = "http://127.0.0.1:8080/auth/v1.0", user = "stacksync:admin", key = "..." }
//!
//! [limits]                             # what unauthenticated clients may cost
//! header_timeout_ms = 15000            # whole request head; also keep-alive idleness
//! idle_timeout_ms = 90000              # silence while a body/response/WebSocket is open
//! max_connections = 4096
//! max_connections_per_address = 64     # per IPv4 address or IPv6 /64
//! max_sockets_per_user = 16            # notification WebSockets
//! max_client_message_bytes = 4096      # what a notification client may send
//! login_hash_workers = 2               # Argon2 hashes at once (~19 MiB each)
//! login_hash_queue = 16                # logins waiting for one; more get 503
//! login_account_failures = 5           # failures before an account is blocked
//! login_address_failures = 20          # failures before an address is blocked
//! login_backoff_base_ms = 1000         # first block, doubled per failure
//! login_backoff_max_secs = 900         # longest block
//!
//! [api]                                # REST API v2 and its OAuth 1.0a provider
//! trusted_proxies = ["127.0.0.1"]      # whose X-Forwarded-Proto/Host/Uri/For count (or "10.0.0.0/8")
//! allow_plaintext = false              # PLAINTEXT signatures (TLS or loopback only)
//! timestamp_window_secs = 300          # oauth_timestamp vs. the server's clock
//! request_token_lifetime_secs = 900    # to authorize and exchange a request token
//!
//! [observability]                      # logs, GET /metrics and GET /ready
//! log_format = "text"                  # or "json" (one object per line); STACKSYNC_LOG_FORMAT
//! metrics = true                       # serve GET /metrics (Prometheus text) on `listen`
//! metrics_token = "..."                # STACKSYNC_METRICS_TOKEN; `Authorization: Bearer` opens it anywhere
//! metrics_allow = ["127.0.0.1", "::1"] # served without the token (never through a proxy); ranges too
//! check_timeout_ms = 2000              # each /ready check and each scrape-time sample
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;
use stacksync_blobstore::SwiftConfig;
use stacksync_gateway::{AddressSet, ApiSettings, GatewayLimits, ObserveSettings};
use stacksync_service::LoginLimits;
use stacksync_service::stacksync_oauth::Config as OAuthConfig;

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
    /// Garbage collection.
    pub gc: GcSection,
    /// Timeouts and caps against exhaustion.
    pub limits: LimitsSection,
    /// The REST API v2 and its OAuth provider.
    pub api: ApiSection,
    /// Logs, metrics and readiness.
    pub observability: ObservabilitySection,
}

/// `[observability]`: the log format, who may read `/metrics`, and how
/// long `/ready` waits for each thing it checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObservabilitySection {
    /// `"text"` (default) or `"json"`: one JSON object per line, each with
    /// the spans it happened in (an HTTP request's and an RPC's carry
    /// `request_id`). `STACKSYNC_LOG_FORMAT` wins over it.
    pub log_format: crate::logging::LogFormat,
    /// Whether `GET /metrics` is served. Default true.
    pub metrics: bool,
    /// A token that opens `/metrics` from any address
    /// (`Authorization: Bearer TOKEN`); `STACKSYNC_METRICS_TOKEN` wins
    /// over it. Default none.
    pub metrics_token: Option<String>,
    /// Addresses `/metrics` is served to without the token, unless the
    /// request came through a proxy (from an `[api] trusted_proxies`
    /// address, or with `X-Forwarded-For`/`Forwarded`). Addresses or
    /// ranges (`"10.0.0.0/8"`). Default loopback.
    pub metrics_allow: AddressSet,
    /// Longest wait, in milliseconds, for each check of `/ready` and each
    /// sample `/metrics` takes (request queue, session counts). Default 2000.
    pub check_timeout_ms: u64,
}

impl Default for ObservabilitySection {
    fn default() -> Self {
        let gateway = ObserveSettings::default();
        ObservabilitySection {
            log_format: crate::logging::LogFormat::default(),
            metrics: gateway.metrics,
            metrics_token: gateway.metrics_token,
            metrics_allow: gateway.metrics_allow,
            check_timeout_ms: millis(gateway.check_timeout),
        }
    }
}

impl ObservabilitySection {
    /// The gateway's settings, with `STACKSYNC_METRICS_TOKEN` applied.
    pub fn gateway(&self) -> ObserveSettings {
        let token = match std::env::var("STACKSYNC_METRICS_TOKEN") {
            Ok(t) if !t.is_empty() => Some(t),
            _ => self.metrics_token.clone().filter(|t| !t.is_empty()),
        };
        ObserveSettings {
            metrics: self.metrics,
            metrics_token: token,
            metrics_allow: self.metrics_allow.clone(),
            check_timeout: Duration::from_millis(self.check_timeout_ms.max(1)),
        }
    }
}

/// `[api]`: the REST API v2 and its OAuth 1.0a provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSection {
    /// Addresses of proxies in front of the server (the Swift proxy with
    /// the `stacksync_api` middleware, a TLS terminator) whose
    /// `X-Forwarded-Proto/Host/Uri/For` are believed: addresses or ranges,
    /// e.g. `["127.0.0.1"]` or an ingress controller's pod network
    /// `["10.244.0.0/16"]`. Default: none.
    pub trusted_proxies: AddressSet,
    /// Whether PLAINTEXT signatures are accepted (then only over TLS, as a
    /// trusted proxy reports it, or from loopback). Default false.
    pub allow_plaintext: bool,
    /// How far `oauth_timestamp` may be from the server's clock, in
    /// seconds. Default 300.
    pub timestamp_window_secs: u64,
    /// How long a request token waits for its user and its exchange, in
    /// seconds. Default 900.
    pub request_token_lifetime_secs: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        let oauth = OAuthConfig::default();
        ApiSection {
            trusted_proxies: AddressSet::none(),
            allow_plaintext: oauth.allow_plaintext,
            timestamp_window_secs: oauth.timestamp_window_secs,
            request_token_lifetime_secs: oauth.temporary_credentials_lifetime_secs,
        }
    }
}

impl ApiSection {
    /// The OAuth provider's settings.
    pub fn oauth(&self) -> OAuthConfig {
        OAuthConfig {
            timestamp_window_secs: self.timestamp_window_secs,
            allow_plaintext: self.allow_plaintext,
            temporary_credentials_lifetime_secs: self.request_token_lifetime_secs,
            ..OAuthConfig::default()
        }
    }

    /// What the gateway believes of proxies.
    pub fn gateway(&self) -> ApiSettings {
        ApiSettings {
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

/// `[gc]`: when the server collects garbage, and what it keeps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcSection {
    /// Minutes between collections by a running server; 0 turns them off
    /// (`stacksync admin gc` still works). Default 60.
    pub interval_minutes: u64,
    /// Objects stored less than this many minutes ago are never collected,
    /// so uploads not committed yet survive. Default 60.
    pub grace_minutes: u64,
    /// Days a replaced version (or a deleted file's content) stays in the
    /// history before its storage can be freed. Default 30.
    pub retention_days: u64,
}

impl Default for GcSection {
    fn default() -> Self {
        GcSection {
            interval_minutes: 60,
            grace_minutes: 60,
            retention_days: 30,
        }
    }
}

/// `[limits]`: timeouts and caps that keep clients, authenticated or not,
/// from exhausting the server. The defaults suit a server for a few
/// thousand devices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Time to send a whole request head, and longest keep-alive idleness.
    pub header_timeout_ms: u64,
    /// Longest silence while a request body, a response or a WebSocket is
    /// open (above the gateway's 20 s ping interval).
    pub idle_timeout_ms: u64,
    /// Open connections in all.
    pub max_connections: usize,
    /// Open connections from one IPv4 address or IPv6 /64.
    pub max_connections_per_address: usize,
    /// Open notification sockets per user.
    pub max_sockets_per_user: usize,
    /// Largest message a notification client may send.
    pub max_client_message_bytes: usize,
    /// Password hashes computed at once.
    pub login_hash_workers: usize,
    /// Logins waiting for a hashing thread; beyond, refused with 503.
    pub login_hash_queue: usize,
    /// Failed logins before an account is blocked.
    pub login_account_failures: u32,
    /// Failed logins before an address is blocked.
    pub login_address_failures: u32,
    /// The first block, doubled with each further failure.
    pub login_backoff_base_ms: u64,
    /// The longest block.
    pub login_backoff_max_secs: u64,
}

impl Default for LimitsSection {
    fn default() -> Self {
        let gateway = GatewayLimits::default();
        let login = LoginLimits::default();
        LimitsSection {
            header_timeout_ms: millis(gateway.header_timeout),
            idle_timeout_ms: millis(gateway.idle_timeout),
            max_connections: gateway.max_connections,
            max_connections_per_address: gateway.max_connections_per_address,
            max_sockets_per_user: gateway.max_sockets_per_user,
            max_client_message_bytes: gateway.max_client_message,
            login_hash_workers: login.hash_workers,
            login_hash_queue: login.hash_queue,
            login_account_failures: login.account_failures,
            login_address_failures: login.address_failures,
            login_backoff_base_ms: millis(login.backoff_base),
            login_backoff_max_secs: login.backoff_max.as_secs(),
        }
    }
}

impl GcSection {
    /// The collection settings these values give.
    pub fn settings(&self) -> stacksync_service::GcSettings {
        stacksync_service::GcSettings {
            grace: std::time::Duration::from_secs(self.grace_minutes.saturating_mul(60)),
            retention: std::time::Duration::from_secs(self.retention_days.saturating_mul(86_400)),
            dry_run: false,
        }
    }

    /// How often a server collects, or `None` when it does not.
    pub fn interval(&self) -> Option<std::time::Duration> {
        (self.interval_minutes > 0)
            .then(|| std::time::Duration::from_secs(self.interval_minutes.saturating_mul(60)))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LimitsSection {
    /// The gateway's share. Zero caps and timeouts are raised to the
    /// smallest working value rather than refusing everything.
    pub fn gateway(&self) -> GatewayLimits {
        GatewayLimits {
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_connections: self.max_connections.max(1),
            max_connections_per_address: self.max_connections_per_address.max(1),
            max_sockets_per_user: self.max_sockets_per_user.max(1),
            max_client_message: self.max_client_message_bytes.max(128),
        }
    }

    /// The service's login limits.
    pub fn login(&self) -> LoginLimits {
        LoginLimits {
            hash_workers: self.login_hash_workers.max(1),
            hash_queue: self.login_hash_queue,
            account_failures: self.login_account_failures,
            address_failures: self.login_address_failures,
            backoff_base: Duration::from_millis(self.login_backoff_base_ms),
            backoff_max: Duration::from_secs(self.login_backoff_max_secs),
            ..LoginLimits::default()
        }
    }
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
    /// Local only: seal every new object at rest with the key in
    /// `at_rest_key_file` (server-side encryption). Default true.
    pub at_rest_encryption: Option<bool>,
    /// Local only: the at-rest key (64 hexadecimal digits). Default
    /// `DATA_DIR/at-rest.key`, created on first start. Keep it (and its
    /// backups) apart from the blobs: whoever holds both reads everything.
    pub at_rest_key_file: Option<PathBuf>,
    /// Local only: keys replaced by a rotation, still needed to read the
    /// objects they sealed.
    pub at_rest_old_key_files: Vec<PathBuf>,
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

    /// The SQLite database file a `sqlite:` URL names (`None` for other
    /// databases and in-memory SQLite), so that it can be made private.
    pub fn sqlite_file(url: &str) -> Option<PathBuf> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && !path.starts_with(":memory:")).then(|| PathBuf::from(path))
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
    use std::net::IpAddr;

    #[test]
    fn empty_file_is_the_embedded_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.bus.kind, BusKind::InProcess);
        assert_eq!(c.storage.kind, StorageKind::Local);
        let d = Path::new("/data");
        assert_eq!(c.database_url(d), "sqlite:///data/meta.sqlite?mode=rwc");
        assert_eq!(
            Config::sqlite_file(&c.database_url(d)),
            Some(PathBuf::from("/data/meta.sqlite"))
        );
        assert_eq!(Config::sqlite_file("sqlite::memory:"), None);
        assert_eq!(Config::sqlite_file("postgres://u@h/db"), None);
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
            [gc]
            interval_minutes = 0
            grace_minutes = 5
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
        assert_eq!(c.gc.interval(), None);
        assert_eq!(c.gc.settings().grace.as_secs(), 300);
        assert_eq!(c.gc.retention_days, 30);
        let admin = c.bus.admin.as_ref().expect("a [bus.admin] section");
        assert_eq!((admin.vhost.as_str(), admin.sweep_interval_secs), ("/", 60));
        assert!(!format!("{admin:?}").contains("secret"));
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }

    #[test]
    fn limits_default_to_the_libraries_and_can_be_set() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.limits.gateway(), GatewayLimits::default());
        assert_eq!(c.limits.login(), LoginLimits::default());
        let c: Config =
            toml::from_str("[limits]\nheader_timeout_ms = 500\nlogin_account_failures = 2\n")
                .unwrap();
        assert_eq!(
            c.limits.gateway().header_timeout,
            Duration::from_millis(500)
        );
        assert_eq!(c.limits.login().account_failures, 2);
        assert!(toml::from_str::<Config>("[limits]\nmax_conections = 1\n").is_err());
    }

    #[test]
    fn trusted_proxies_take_ranges_and_refuse_what_is_neither() {
        let c: Config =
            toml::from_str("[api]\ntrusted_proxies = [\"10.244.0.0/16\", \"::1\"]\n").unwrap();
        let proxies = c.api.gateway().trusted_proxies;
        assert!(proxies.contains(IpAddr::from([10, 244, 9, 9])));
        assert!(!proxies.contains(IpAddr::from([10, 245, 0, 1])));
        let e = toml::from_str::<Config>("[api]\ntrusted_proxies = [\"10.244.0.1/16\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"10.244.0.0/16\"") && e.contains("trusted_proxies"),
            "{e}"
        );
    }

    #[test]
    fn observability_section_parses_and_defaults_to_loopback() {
        let c: Config = toml::from_str("").unwrap();
        let o = c.observability.gateway();
        assert_eq!(c.observability.log_format, crate::logging::LogFormat::Text);
        assert!(o.metrics);
        assert_eq!(o.metrics_allow, AddressSet::loopback());
        assert_eq!(o.check_timeout, Duration::from_secs(2));
        let c: Config = toml::from_str(
            r#"
            [observability]
            log_format = "json"
            metrics_token = "t0ken"
            metrics_allow = ["192.0.2.9", "10.42.0.0/16"]
            check_timeout_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(c.observability.log_format, crate::logging::LogFormat::Json);
        let o = c.observability.gateway();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(o.metrics_allow.contains(ip("192.0.2.9")));
        assert!(o.metrics_allow.contains(ip("10.42.7.1")));
        assert!(!o.metrics_allow.contains(ip("127.0.0.1")));
        assert_eq!(o.check_timeout, Duration::from_millis(500));
        if std::env::var_os("STACKSYNC_METRICS_TOKEN").is_none() {
            assert_eq!(o.metrics_token.as_deref(), Some("t0ken"));
        }
        assert!(toml::from_str::<Config>("[observability]\nlog_format = \"xml\"").is_err());
    }
}
