//! The client's configuration and state folder (its "home").
//!
//! `STACKSYNC_HOME` selects the folder; without it, the platform's
//! configuration folder (`$XDG_CONFIG_HOME/stacksync`, else
//! `~/.config/stacksync`), private (0700, every file in it 0600). Inside: `profile.toml` (server, account, device,
//! synced folder, transport), `session.token` (mode 0600, never in the
//! TOML so the profile can be shown or shared without the secret),
//! `state.sqlite` (the sync state) and `uploads.sqlite` (the upload
//! journal). These are small files read once at start-up, so plain
//! blocking calls are used.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stacksync_proto::{DeviceId, UserId, WorkspaceId};

use crate::private;

/// Environment variable that selects the client's home folder.
pub const HOME_ENV: &str = "STACKSYNC_HOME";
const PROFILE_FILE: &str = "profile.toml";
const TOKEN_FILE: &str = "session.token";
const STATE_FILE: &str = "state.sqlite";
const UPLOADS_FILE: &str = "uploads.sqlite";
const SWIFT_KEY_FILE: &str = "swift.key";
/// The direct transport's broker user and password, one per line.
const BROKER_LOGIN_FILE: &str = "broker.login";

/// How the client reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// Through the HTTP/WebSocket gateway (metadata RPC, chunks and
    /// notifications over one endpoint).
    #[default]
    Gateway,
    /// Directly to the message bus and Swift, as the original client did.
    Direct,
}

/// What `profile.toml` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// The service's base URL.
    pub server_url: String,
    /// The account's e-mail address.
    pub email: String,
    /// This device's id, chosen at setup.
    pub device_id: DeviceId,
    /// Shown in conflicted-copy names.
    #[serde(default = "default_device_name")]
    pub device_name: String,
    /// The synced folder (absolute).
    pub folder: PathBuf,
    /// How the service is reached.
    #[serde(default)]
    pub transport: TransportKind,
    /// The account (from the login at setup).
    #[serde(default)]
    pub user_id: UserId,
    /// The private workspace this folder mirrors, recorded at the first
    /// sync: a profile later pointed at another server or account is
    /// refused instead of merging two accounts' files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceId>,
    /// How to reach RabbitMQ and Swift when `transport = "direct"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectProfile>,
    /// Which desktop notifications are shown (`[notifications]`).
    #[serde(default, skip_serializing_if = "NotificationSettings::all_on")]
    pub notifications: NotificationSettings,
}

/// `[notifications]`: which kinds of desktop notification are shown (all
/// by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationSettings {
    /// Conflicting edits kept as conflicted copies.
    #[serde(default = "on")]
    pub conflicts: bool,
    /// Folders shared with the user (offered, added, taken away).
    #[serde(default = "on")]
    pub invitations: bool,
    /// Sync failures and names the server refuses.
    #[serde(default = "on")]
    pub errors: bool,
}

impl Default for NotificationSettings {
    fn default() -> NotificationSettings {
        NotificationSettings {
            conflicts: true,
            invitations: true,
            errors: true,
        }
    }
}

impl NotificationSettings {
    /// Whether every kind is shown (the default, left out of the file).
    pub fn all_on(&self) -> bool {
        *self == NotificationSettings::default()
    }
}

fn on() -> bool {
    true
}

/// The notification settings of the profile in `home` as the file has
/// them now (all on when it cannot be read: silencing is the exception).
pub fn notification_settings(home: &Path) -> NotificationSettings {
    #[derive(Deserialize)]
    struct Only {
        #[serde(default)]
        notifications: NotificationSettings,
    }
    fs::read_to_string(home.join(PROFILE_FILE))
        .ok()
        .and_then(|t| toml::from_str::<Only>(&t).ok())
        .map(|o| o.notifications)
        .unwrap_or_default()
}

/// `[direct]`: the broker and Swift, for `transport = "direct"`. Secrets
/// are not here: the Swift key is in `swift.key` and the session's own
/// broker user in `broker.login` (both mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectProfile {
    /// The broker, e.g. `amqps://mq.example:5671/%2f`, without credentials
    /// (the session's broker user is used; `STACKSYNC_AMQP_URL` overrides).
    pub amqp_url: String,
    /// The server's `[bus] namespace`.
    pub namespace: String,
    /// The server's `[bus] queue_kind`: "classic", "durable" or "quorum".
    #[serde(default = "default_queue_kind")]
    pub queue_kind: String,
    /// Swift TempAuth (v1) URL.
    pub swift_auth_url: String,
    /// The account's storage user, `account:user`.
    pub swift_user: String,
    /// The installation's Swift account (e.g. `AUTH_stacksync`) when it is
    /// not the storage user's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swift_account: Option<String>,
}

fn default_queue_kind() -> String {
    "durable".into()
}

fn default_device_name() -> String {
    "device".into()
}

/// Why a profile could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Neither `STACKSYNC_HOME` nor a home folder is known.
    #[error("cannot tell where the client's profile lives: set {HOME_ENV} or HOME")]
    NoHome,
    /// No profile at this home yet.
    #[error("no profile in {0}; run `stacksync setup` first")]
    NotSetUp(PathBuf),
    /// `create` found a profile already there.
    #[error("a profile already exists in {0}")]
    AlreadyExists(PathBuf),
    /// A field has an unusable value.
    #[error("invalid profile: {0}")]
    Invalid(String),
    /// `profile.toml` does not parse.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: toml::de::Error,
    },
    /// The token file can be read by other users.
    #[error("{0} is readable by other users; run `chmod 600` on it or log in again")]
    TokenExposed(PathBuf),
    /// A file could not be read or written.
    #[error("{doing} {path}: {source}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The platform error.
        #[source]
        source: io::Error,
    },
}

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ProfileError {
    let path = path.to_path_buf();
    move |source| ProfileError::Io {
        doing,
        path,
        source,
    }
}

/// A loaded profile: its home folder and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    home: PathBuf,
    /// The configuration from `profile.toml`.
    pub config: ProfileConfig,
}

impl Profile {
    /// The home folder from `STACKSYNC_HOME`, else the platform default.
    pub fn home_from_env() -> Result<PathBuf, ProfileError> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(home) = var(HOME_ENV) {
            return Ok(PathBuf::from(home));
        }
        if let Some(xdg) = var("XDG_CONFIG_HOME") {
            return Ok(PathBuf::from(xdg).join("stacksync"));
        }
        var("HOME")
            .map(|h| PathBuf::from(h).join(".config").join("stacksync"))
            .ok_or(ProfileError::NoHome)
    }

    /// Creates a profile in `home` (made with mode 0700 if missing);
    /// refuses to replace an existing one.
    pub fn create(home: &Path, config: ProfileConfig) -> Result<Profile, ProfileError> {
        validate(&config)?;
        Profile::prepare_home(home)?;
        let path = home.join(PROFILE_FILE);
        if path.exists() {
            return Err(ProfileError::AlreadyExists(home.to_path_buf()));
        }
        let text = toml::to_string(&config)
            .map_err(|e| ProfileError::Invalid(format!("cannot encode: {e}")))?;
        write_atomic(&path, text.as_bytes(), private::FILE_MODE)?;
        Ok(Profile {
            home: home.to_path_buf(),
            config,
        })
    }

    /// Rewrites `profile.toml` with the current configuration (atomically).
    pub fn save(&self) -> Result<(), ProfileError> {
        validate(&self.config)?;
        let text = toml::to_string(&self.config)
            .map_err(|e| ProfileError::Invalid(format!("cannot encode: {e}")))?;
        write_atomic(
            &self.home.join(PROFILE_FILE),
            text.as_bytes(),
            private::FILE_MODE,
        )
    }

    /// Creates `home` (mode 0700) if missing, and repairs the modes of an
    /// existing one: the folder to 0700, every file in it (profile, sync
    /// state, upload journal, their SQLite companions, the status socket)
    /// to 0600. Secrets found readable by others (`session.token`,
    /// `swift.key`) are not repaired but refused when read
    /// ([`ProfileError::TokenExposed`]): they may have been copied, so the
    /// user should log in again.
    pub fn prepare_home(home: &Path) -> Result<(), ProfileError> {
        private::dir(home).map_err(io_err("creating", home))?;
        let entries = fs::read_dir(home).map_err(io_err("listing", home))?;
        for entry in entries {
            let entry = entry.map_err(io_err("listing", home))?;
            let name = entry.file_name();
            if name == TOKEN_FILE || name == SWIFT_KEY_FILE {
                continue;
            }
            let path = entry.path();
            private::narrow(&path).map_err(io_err("making private", &path))?;
        }
        Ok(())
    }

    /// Removes an existing profile's configuration, token and sync state
    /// (for `stacksync setup --force`); the synced folder is not touched.
    pub fn remove(home: &Path) -> Result<(), ProfileError> {
        for name in [
            PROFILE_FILE,
            TOKEN_FILE,
            SWIFT_KEY_FILE,
            BROKER_LOGIN_FILE,
            STATE_FILE,
            "state.sqlite-wal",
            "state.sqlite-shm",
            UPLOADS_FILE,
            "mounts.toml",
            "uploads.sqlite-wal",
            "uploads.sqlite-shm",
        ] {
            let path = home.join(name);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_err("removing", &path)(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Loads the profile in `home`.
    pub fn load(home: &Path) -> Result<Profile, ProfileError> {
        let path = home.join(PROFILE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ProfileError::NotSetUp(home.to_path_buf()));
            }
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        let config: ProfileConfig =
            toml::from_str(&text).map_err(|source| ProfileError::Parse { path, source })?;
        validate(&config)?;
        Profile::prepare_home(home)?;
        Ok(Profile {
            home: home.to_path_buf(),
            config,
        })
    }

    /// The home folder.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Where the sync state database lives.
    pub fn state_db_path(&self) -> PathBuf {
        self.home.join(STATE_FILE)
    }

    /// Where the base cache of `workspace` lives (recently synced chunks
    /// kept to send and read deltas against, `transfer::bases`).
    pub fn bases_dir(&self, workspace: stacksync_proto::WorkspaceId) -> PathBuf {
        self.home.join("bases").join(workspace.to_string())
    }

    /// Where the upload journal lives (chunks written into packs, so that
    /// an upload interrupted by a crash resumes without sending them again).
    pub fn uploads_db_path(&self) -> PathBuf {
        self.home.join(UPLOADS_FILE)
    }

    /// Stores the session token, readable by the owner only.
    pub fn save_token(&self, token: &str) -> Result<(), ProfileError> {
        write_atomic(&self.home.join(TOKEN_FILE), token.as_bytes(), 0o600)
    }

    /// The session token, or `None` when not logged in. Refuses a token
    /// file others can read: the token is as good as the password.
    pub fn load_token(&self) -> Result<Option<String>, ProfileError> {
        read_secret(&self.home.join(TOKEN_FILE))
    }

    /// Stores the Swift key of the direct transport, readable by the owner only.
    pub fn save_swift_key(&self, key: &str) -> Result<(), ProfileError> {
        write_atomic(&self.home.join(SWIFT_KEY_FILE), key.as_bytes(), 0o600)
    }

    /// The Swift key of the direct transport, if stored; refused when
    /// others can read it.
    pub fn load_swift_key(&self) -> Result<Option<String>, ProfileError> {
        read_secret(&self.home.join(SWIFT_KEY_FILE))
    }

    /// Stores the session's broker user of the direct transport (user and
    /// password, one per line), readable by the owner only.
    pub fn save_broker_login(&self, user: &str, password: &str) -> Result<(), ProfileError> {
        let text = format!("{user}\n{password}");
        write_atomic(&self.home.join(BROKER_LOGIN_FILE), text.as_bytes(), 0o600)
    }

    /// The stored broker user and password, if any; refused when others
    /// can read the file.
    pub fn load_broker_login(&self) -> Result<Option<(String, String)>, ProfileError> {
        let Some(text) = read_secret(&self.home.join(BROKER_LOGIN_FILE))? else {
            return Ok(None);
        };
        Ok(text
            .split_once('\n')
            .map(|(user, password)| (user.trim().to_owned(), password.trim().to_owned())))
    }

    /// Forgets the session token (logout); fine if there was none.
    pub fn remove_token(&self) -> Result<(), ProfileError> {
        let path = self.home.join(TOKEN_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", &path)(e)),
            _ => Ok(()),
        }
    }
}

/// A secret file's trimmed content; `None` when absent or empty. Refused
/// when others can read it: the token is as good as the password.
fn read_secret(path: &Path) -> Result<Option<String>, ProfileError> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("reading", path)(e)),
    };
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ProfileError::TokenExposed(path.to_path_buf()));
    }
    let secret = fs::read_to_string(path).map_err(io_err("reading", path))?;
    Ok(Some(secret.trim().to_string()).filter(|t| !t.is_empty()))
}

pub(crate) fn validate(config: &ProfileConfig) -> Result<(), ProfileError> {
    let url = config.server_url.as_str();
    if config.transport == TransportKind::Direct {
        if config.direct.is_none() {
            return Err(ProfileError::Invalid(
                "transport \"direct\" needs a [direct] section".into(),
            ));
        }
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ProfileError::Invalid(format!(
            "server_url {url:?} must start with http:// or https://"
        )));
    }
    if !config.email.contains('@') {
        return Err(ProfileError::Invalid(format!(
            "email {:?} is not an address",
            config.email
        )));
    }
    if !config.folder.is_absolute() {
        return Err(ProfileError::Invalid(format!(
            "folder {} must be an absolute path",
            config.folder.display()
        )));
    }
    Ok(())
}

/// Writes `data` to `path` through a temporary file created with `mode`
/// and renamed into place, so a crash never leaves a half-written profile
/// and the token is never briefly readable by others.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ProfileError> {
    let temp = path.with_extension("tmp-write");
    let _ = fs::remove_file(&temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temp)
        .map_err(io_err("creating", &temp))?;
    file.write_all(data).map_err(io_err("writing", &temp))?;
    file.sync_all().map_err(io_err("syncing", &temp))?;
    fs::rename(&temp, path).map_err(io_err("replacing", path))
}
