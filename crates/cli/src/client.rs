//! The desktop client's commands: `setup`, `login`, `logout`, `password`,
//! `sync [--once]`, `status`, `versions`, `restore`, and the desktop ones
//! (`pause`, `resume`, `notifications`, `integrate`: `desktop.rs`). Wiring only: the work is in
//! `stacksync-client` (which never links server code).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use stacksync_blobstore::{SwiftAuth, SwiftConfig};
use stacksync_bus::{ClientLogin, QueueKind};
use stacksync_client::e2ee::KeyFiles;
use stacksync_client::e2ee::keys::{encrypt_private, unlock_identity};
use stacksync_client::status::{self, FileStatus, StatusReport};
use stacksync_client::{
    ClientOptions, Connection, DirectConfig, DirectConnection, DirectProfile, GatewayConnection,
    Profile, ProfileConfig, STATUS_SOCKET, SyncClient, TransportKind, offline_status,
};
use stacksync_gateway_client::{GatewayClient, Session};
use stacksync_proto::ItemStatus;
use stacksync_proto::rpc::{Reply, Request};

use crate::account;
use crate::sharing;

/// The client's commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Creates this device's client profile (no prompts): logs in,
    /// registers the device and chooses the synced folder.
    Setup(Box<SetupArgs>),
    /// Opens a new session for the profile (after the old one expired).
    Login {
        /// The account's password (or STACKSYNC_PASSWORD).
        #[arg(long, env = "STACKSYNC_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Ends this device's session on the server and forgets its token.
    Logout {
        /// Ends every session of the account instead: every device (this
        /// one included) must log in again.
        #[arg(long)]
        everywhere: bool,
    },
    /// Changes the account's password and signs out every other device.
    /// Reads the current password and the new one, one per line, from
    /// standard input (or --password-file); nothing is prompted.
    Password {
        /// Reads the two lines from this file instead of standard input.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// Syncs the folder: as a daemon, or with --once until nothing is left.
    Sync {
        /// Syncs until nothing is left to do, then exits (0 on success).
        #[arg(long)]
        once: bool,
        /// No progress display even on a terminal.
        #[arg(long)]
        quiet: bool,
        /// With --once: prints a JSON summary (operations, conflicts, bytes
        /// and chunks moved, refused names) on stdout.
        #[arg(long)]
        json: bool,
        /// Upload limit in KiB/s.
        #[arg(long)]
        upload_limit: Option<u64>,
        /// Download limit in KiB/s.
        #[arg(long)]
        download_limit: Option<u64>,
        /// Seconds without any progress (no RPC answered, no transfer or
        /// file operation finished) after which a sync round is reported as
        /// stalled and retried.
        #[arg(long, env = "STACKSYNC_STALL_SECS")]
        stall_secs: Option<u64>,
    },
    /// Per-file sync status: synced, syncing, pending, conflict, error, ignored.
    Status {
        /// A file or folder in the synced folder (default: all of it).
        path: Option<PathBuf>,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the stored versions of a file.
    Versions {
        /// A file in the synced folder (deleted files too).
        path: PathBuf,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists the shared folders offered to this account that wait for an
    /// answer: on a terminal a table, otherwise one id per line.
    Invitations {
        /// Prints JSON (id, folder, who shares it, when).
        #[arg(long)]
        json: bool,
    },
    /// Declines an invitation (see `stacksync invitations`).
    Decline {
        /// The invitation's id.
        id: String,
    },
    /// Shares a folder of the synced folder: invites people by e-mail; it
    /// becomes a shared folder when one accepts (your copy stays where it is).
    Share {
        /// A folder in the synced folder.
        path: PathBuf,
        /// Whom to invite (repeat for several).
        #[arg(long = "with", required = true)]
        with: Vec<String>,
        /// Those who accept may read but not change it.
        #[arg(long)]
        read_only: bool,
        /// End-to-end encrypted: only the members' devices hold its keys
        /// (needs this device's encryption identity, `setup --passphrase`,
        /// and an empty folder; each invitee needs one too).
        #[arg(long)]
        encrypted: bool,
    },
    /// Accepts an invitation: the shared folder is synced into the synced
    /// folder, under its own name or `--as NAME`, at the top or `--into DIR`.
    Accept {
        /// The invitation's id (see `stacksync invitations`).
        id: String,
        /// The name to give the shared folder here.
        #[arg(long = "as")]
        name: Option<String>,
        /// A folder of yours to put it in (default: the synced folder's top).
        #[arg(long)]
        into: Option<PathBuf>,
    },
    /// Lists the members of a shared folder.
    Members {
        /// The shared folder (or anything in it).
        path: PathBuf,
        /// Prints JSON.
        #[arg(long)]
        json: bool,
        /// For an end-to-end encrypted folder: each member's key
        /// fingerprint, as the folder's verified key list has it, and
        /// whether it matches the key this device pinned.
        #[arg(long)]
        fingerprints: bool,
    },
    /// Confirms a member's changed encryption key after comparing its
    /// fingerprint with them (as `stacksync members --fingerprints` and the
    /// daemon's log show it).
    Trust {
        /// The member's e-mail.
        email: String,
        /// The new fingerprint, as shown (spaces optional).
        fingerprint: String,
    },
    /// Removes members from a shared folder you own (their copies are kept
    /// on their devices but no longer synced).
    Unshare {
        /// The shared folder.
        path: PathBuf,
        /// Whom to remove (repeat for several).
        #[arg(long = "with", required = true)]
        with: Vec<String>,
    },
    /// Leaves a shared folder someone else owns (your copy is kept, no
    /// longer synced).
    Leave {
        /// The shared folder.
        path: PathBuf,
    },
    /// Pauses syncing: the daemon neither uploads nor downloads (it keeps
    /// noting changes, synced on resume). Kept across daemon restarts.
    Pause {
        /// Resumes on its own after this long (90s, 30m, 2h, 1d, 1h30m).
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Resumes syncing after `stacksync pause`.
    Resume,
    /// Which desktop notifications are shown; without options, shows the
    /// settings.
    Notifications {
        /// Conflicting edits kept as conflicted copies.
        #[arg(long, value_enum)]
        conflicts: Option<crate::desktop::OnOff>,
        /// Folders shared with you.
        #[arg(long, value_enum)]
        invitations: Option<crate::desktop::OnOff>,
        /// Sync failures and names that cannot be synced.
        #[arg(long, value_enum)]
        errors: Option<crate::desktop::OnOff>,
    },
    /// Shows the daemon's state in the desktop's tray (StatusNotifierItem):
    /// synced, syncing, paused or error, with recent files, pause and
    /// resume, the synced folder and the website. Needs a build with the
    /// `tray` feature.
    Tray,
    /// File-manager integration (overlay emblems and menu items in
    /// Nautilus, Nemo and Caja), for this user.
    Integrate {
        #[command(subcommand)]
        what: crate::desktop::IntegrateCommand,
    },
    /// Brings back a version of a file (also undeletes it).
    Restore {
        /// A file in the synced folder (deleted files too).
        path: PathBuf,
        /// The version to bring back (see `stacksync versions`).
        #[arg(long)]
        version: u64,
    },
}

/// `stacksync setup`.
#[derive(clap::Args, Debug)]
pub struct SetupArgs {
    /// The server's URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: String,
    /// The account's email.
    #[arg(long)]
    pub email: String,
    /// The account's password (or STACKSYNC_PASSWORD).
    #[arg(long, env = "STACKSYNC_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// The folder to sync (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// This device's name, shown in conflicted copies (default: the host name).
    #[arg(long)]
    pub device_name: Option<String>,
    /// Replaces an existing profile (its sync state is forgotten; the
    /// folder's files are kept and re-synced).
    #[arg(long)]
    pub force: bool,
    /// How to reach the service: through the server's HTTP gateway, or
    /// directly to RabbitMQ (metadata, push) and Swift (data). With
    /// "direct", --server is still the server's http(s):// URL (the login
    /// goes there, never over the broker) and --broker is the broker's.
    #[arg(long, value_enum, default_value = "gateway")]
    pub transport: TransportArg,
    #[command(flatten)]
    pub direct: DirectArgs,
    /// Makes the account's (new, empty) private workspace end-to-end
    /// encrypted: only this user's devices, unlocked with the encryption
    /// passphrase, can read its names and contents. Needs --passphrase.
    #[arg(long)]
    pub encrypted: bool,
    /// The account's encryption passphrase (or STACKSYNC_PASSPHRASE): it
    /// unlocks the user's keys on this device (on the first device it
    /// creates them). Must differ from the login password, which the
    /// server sees.
    #[arg(long, env = "STACKSYNC_PASSPHRASE", hide_env_values = true)]
    pub passphrase: Option<String>,
}

/// `--transport`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportArg {
    /// HTTP + WebSocket to the server (chunks through the server).
    Gateway,
    /// RabbitMQ for metadata and push, Swift for chunks.
    Direct,
}

/// Settings of the direct transport (`setup --transport direct`).
#[derive(clap::Args, Debug, Clone)]
pub struct DirectArgs {
    /// The broker's URL without credentials, e.g. amqps://mq.example:5671/%2f
    /// (the server issues this session its own broker user).
    #[arg(long)]
    broker: Option<String>,
    /// The server's bus namespace.
    #[arg(long, default_value = "stacksync")]
    namespace: String,
    /// The server's queue kind: classic, durable or quorum.
    #[arg(long, default_value = "durable")]
    queue_kind: String,
    /// Swift TempAuth (v1) URL.
    #[arg(long)]
    swift_auth_url: Option<String>,
    /// The account's storage user (`account:user`).
    #[arg(long)]
    swift_user: Option<String>,
    /// The storage user's key (or STACKSYNC_SWIFT_KEY).
    #[arg(long, env = "STACKSYNC_SWIFT_KEY", hide_env_values = true)]
    swift_key: Option<String>,
    /// The installation's Swift account, when not the storage user's own.
    #[arg(long)]
    swift_account: Option<String>,
}

/// Runs one client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<()> {
    let home = Profile::home_from_env()?;
    match command {
        ClientCommand::Setup(args) => {
            let args = *args;
            let direct = match args.transport {
                TransportArg::Gateway => None,
                TransportArg::Direct => Some(direct_setup(&args.server, args.direct.clone())?),
            };
            setup(&home, &args, direct).await
        }
        ClientCommand::Login { password } => {
            let mut profile = Profile::load(&home)?;
            let (token, user) = match profile.config.transport {
                TransportKind::Gateway => {
                    let client = GatewayClient::login(
                        &profile.config.server_url,
                        &profile.config.email,
                        &password,
                    )
                    .await
                    .context("logging in")?;
                    (client.session().token.clone(), client.session().user)
                }
                TransportKind::Direct => {
                    let conn = DirectConnection::login(
                        direct_config(&profile)?,
                        &profile.config.server_url,
                        &profile.config.email,
                        &password,
                    )
                    .await
                    .context("logging in")?;
                    let broker = conn.broker_login();
                    profile.save_broker_login(&broker.user, &broker.password)?;
                    (conn.token().to_owned(), conn.user())
                }
            };
            // The session this login replaces must not keep working.
            let previous = profile.load_token().ok().flatten();
            profile.config.user_id = user;
            profile.save()?;
            profile.save_token(&token)?;
            if let Some(old) = previous.filter(|old| *old != token) {
                account::end_replaced_session(&profile, old).await;
            }
            println!("logged in as {}", profile.config.email);
            Ok(())
        }
        ClientCommand::Logout { everywhere } => account::logout(&home, everywhere).await,
        ClientCommand::Invitations { json } => sharing::invitations(&home, json).await,
        ClientCommand::Decline { id } => sharing::decline(&home, &id).await,
        ClientCommand::Share {
            path,
            with,
            read_only,
            encrypted,
        } => sharing::share(&home, &path, &with, read_only, encrypted).await,
        ClientCommand::Accept { id, name, into } => {
            sharing::accept(&home, &id, name.as_deref(), into.as_deref()).await
        }
        ClientCommand::Members {
            path,
            json,
            fingerprints,
        } => sharing::members(&home, &path, json, fingerprints).await,
        ClientCommand::Trust { email, fingerprint } => {
            sharing::trust(&home, &email, &fingerprint).await
        }
        ClientCommand::Unshare { path, with } => sharing::unshare(&home, &path, &with).await,
        ClientCommand::Leave { path } => sharing::leave(&home, &path).await,
        ClientCommand::Password { password_file } => {
            account::change_password(&home, password_file.as_deref()).await
        }
        ClientCommand::Sync {
            once,
            quiet,
            json,
            upload_limit,
            download_limit,
            stall_secs,
        } => {
            let mut options = ClientOptions::default();
            if let Some(secs) = stall_secs {
                options.deadlines.stall = std::time::Duration::from_secs(secs.max(1));
            }
            options.transfer.upload_limit = upload_limit.map(|k| k * 1024);
            options.transfer.download_limit = download_limit.map(|k| k * 1024);
            let mut client = open(&home, options).await?;
            if once {
                let progress =
                    (!quiet && std::io::stderr().is_terminal()).then(|| progress(&client));
                let result = client.sync_until_done().await;
                if let Some(p) = progress {
                    p.abort();
                    eprintln!();
                }
                let report = result.context("sync failed")?;
                for (path, why) in &report.refused {
                    eprintln!("not synced: {}: {}", shown(&path.to_string()), shown(why));
                }
                for line in &report.not_synced {
                    eprintln!("not synced: {}", shown(line));
                }
                for (path, raw) in &report.composed {
                    eprintln!(
                        "renamed {} to its composed (NFC) form {}",
                        shown(&format!("{raw:?}")),
                        shown(&path.to_string())
                    );
                }
                let stats = client.stats();
                if json {
                    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
                    let summary = serde_json::json!({
                        "applied": report.applied,
                        "conflicts": report.conflicts,
                        "rounds": report.rounds,
                        "bytes_uploaded": load(&stats.bytes_uploaded),
                        "chunks_uploaded": load(&stats.chunks_uploaded),
                        "packs_uploaded": load(&stats.packs_uploaded),
                        "chunks_deduplicated": load(&stats.chunks_deduplicated),
                        "bytes_downloaded": load(&stats.bytes_downloaded),
                        "chunks_downloaded": load(&stats.chunks_downloaded),
                        "deltas_uploaded": load(&stats.deltas_uploaded),
                        "deltas_downloaded": load(&stats.deltas_downloaded),
                        "refused": report.refused.iter().map(|(p, why)| serde_json::json!({"path": p.to_string(), "reason": why})).collect::<Vec<_>>(),
                        "not_synced": report.not_synced,
                    });
                    println!("{summary}");
                }
                eprintln!(
                    "synced: {} operation(s), {} conflicted copy(ies), {} uploaded, {} downloaded",
                    report.applied,
                    report.conflicts,
                    human(stats.bytes_uploaded.load(Ordering::Relaxed)),
                    human(stats.bytes_downloaded.load(Ordering::Relaxed)),
                );
                Ok(())
            } else {
                eprintln!(
                    "syncing {} (status: `stacksync status`; stop with Ctrl-C)",
                    client.folder().display()
                );
                client
                    .run(shutdown_signal())
                    .await
                    .context("sync stopped")?;
                Ok(())
            }
        }
        ClientCommand::Pause { duration } => {
            crate::desktop::pause(&home, duration.as_deref()).await
        }
        ClientCommand::Resume => crate::desktop::resume(&home).await,
        ClientCommand::Notifications {
            conflicts,
            invitations,
            errors,
        } => crate::desktop::notifications(&home, conflicts, invitations, errors),
        ClientCommand::Integrate { what } => crate::desktop::integrate(what),
        #[cfg(feature = "tray")]
        ClientCommand::Tray => crate::tray::run(&home).await,
        #[cfg(not(feature = "tray"))]
        ClientCommand::Tray => anyhow::bail!(
            "this build of stacksync has no tray: build it with `cargo build --release -p stacksync --features tray` (needs libdbus-1-dev)"
        ),
        ClientCommand::Status { path, json } => {
            let profile = Profile::load(&home)?;
            let abs = path.map(|p| absolute(&p)).transpose()?;
            let report = match status::query(&home.join(STATUS_SOCKET), abs.clone())
                .await
                .map_err(|e| anyhow::anyhow!(e))?
            {
                Some(r) => r,
                None => {
                    let target = abs.unwrap_or_else(|| profile.config.folder.clone());
                    offline_status(&profile, &target).await?
                }
            };
            print_status(&report, json)
        }
        ClientCommand::Versions { path, json } => {
            let mut client = open(&home, quiet_options()).await?;
            let rel = client.relative(&absolute(&path)?)?;
            let versions = client.versions(&rel).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&versions)?);
                return Ok(());
            }
            println!(
                "{:>7}  {:<8}  {:>10}  {:<19}  content",
                "version", "state", "size", "modified (UTC)"
            );
            for v in versions {
                let state = match v.status {
                    ItemStatus::Deleted => "deleted",
                    _ => "present",
                };
                let hash = v
                    .content_hash
                    .map(|h| h.to_hex()[..12].to_string())
                    .unwrap_or_default();
                println!(
                    "{:>7}  {:<8}  {:>10}  {:<19}  {}",
                    v.version,
                    state,
                    human(v.size),
                    stacksync_engine::conflict::format_utc(v.client_modified),
                    hash
                );
            }
            Ok(())
        }
        ClientCommand::Restore { path, version } => {
            let mut client = open(&home, quiet_options()).await?;
            let rel = client.relative(&absolute(&path)?)?;
            let meta = client.restore(&rel, version).await?;
            println!(
                "restored {rel} to the content of version {version} (now version {})",
                meta.version
            );
            Ok(())
        }
    }
}

pub(crate) fn quiet_options() -> ClientOptions {
    ClientOptions {
        desktop: false,
        ..ClientOptions::default()
    }
}

/// Opens the profile's connection and folder.
pub(crate) async fn open(home: &Path, options: ClientOptions) -> anyhow::Result<SyncClient> {
    let profile = Profile::load(home)?;
    let conn = connect(&profile).await?;
    Ok(SyncClient::open(profile, conn, options).await?)
}

/// The connection the profile asks for, with its stored session.
pub(crate) async fn connect(profile: &Profile) -> anyhow::Result<Arc<dyn Connection>> {
    let token = profile.load_token()?.context(
        "this device is not logged in (logged out?): log in again with `stacksync login --password ...`",
    )?;
    connect_with(profile, token).await
}

/// The connection the profile asks for, with the session `token`.
pub(crate) async fn connect_with(
    profile: &Profile,
    token: String,
) -> anyhow::Result<Arc<dyn Connection>> {
    match profile.config.transport {
        TransportKind::Gateway => gateway_connection(profile, token),
        TransportKind::Direct => {
            let (user, password) = profile
                .load_broker_login()?
                .context("no broker login stored: run `stacksync login --password ...` again")?;
            let broker = ClientLogin { user, password };
            let conn = DirectConnection::connect(direct_config(profile)?, &token, broker)
                .await
                .context("connecting to RabbitMQ and Swift")?;
            Ok(Arc::new(conn))
        }
    }
}

/// A connection to the server's HTTP(S) gateway with the session `token`,
/// whatever the profile's transport: what carries passwords goes there,
/// never through the message bus (direct profiles log in there too).
pub(crate) fn gateway_connection(
    profile: &Profile,
    token: String,
) -> anyhow::Result<Arc<dyn Connection>> {
    let session = Session {
        token,
        user: profile.config.user_id,
        expires_at: 0,
    };
    let client = GatewayClient::with_session(&profile.config.server_url, session)?;
    Ok(Arc::new(GatewayConnection::new(client)))
}

/// The direct transport's configuration from a profile and its key file.
fn direct_config(profile: &Profile) -> anyhow::Result<DirectConfig> {
    let d = profile
        .config
        .direct
        .as_ref()
        .context("the profile's transport is \"direct\" but it has no [direct] section")?;
    let key = profile
        .load_swift_key()?
        .context("no Swift key stored; run `stacksync setup --force --transport direct ...`")?;
    let mut config = direct_config_from(d, key)?;
    config.server_url = Some(profile.config.server_url.clone());
    Ok(config)
}

/// The direct transport's configuration from its profile section and key.
/// `STACKSYNC_AMQP_URL` overrides the broker URL (its credentials, if any,
/// are replaced by the session's own broker user).
fn direct_config_from(d: &DirectProfile, key: String) -> anyhow::Result<DirectConfig> {
    let amqp_url = std::env::var("STACKSYNC_AMQP_URL").unwrap_or_else(|_| d.amqp_url.clone());
    let mut swift = SwiftConfig::new(SwiftAuth::V1 {
        auth_url: d.swift_auth_url.clone(),
        user: d.swift_user.clone(),
        key,
    });
    swift.account = d.swift_account.clone();
    let mut config = DirectConfig::new(amqp_url, d.namespace.clone(), swift);
    config.bus.queue_kind = match d.queue_kind.as_str() {
        "classic" => QueueKind::Classic,
        "durable" => QueueKind::Durable,
        "quorum" => QueueKind::Quorum,
        other => bail!("queue_kind {other:?} must be classic, durable or quorum"),
    };
    Ok(config)
}

/// Checks the direct transport's flags; returns the profile section and the key.
fn direct_setup(server: &str, args: DirectArgs) -> anyhow::Result<(DirectProfile, String)> {
    if !server.starts_with("http://") && !server.starts_with("https://") {
        bail!(
            "with --transport direct, --server is the server's http(s):// URL (the login goes there) and --broker the broker's amqp(s):// URL"
        );
    }
    let missing = |flag: &str| anyhow::anyhow!("--transport direct needs --{flag}");
    let broker = args.broker.ok_or_else(|| missing("broker"))?;
    if !broker.starts_with("amqp://") && !broker.starts_with("amqps://") {
        bail!("--broker must be an amqp:// or amqps:// URL");
    }
    let profile = DirectProfile {
        amqp_url: broker,
        namespace: args.namespace,
        queue_kind: args.queue_kind,
        swift_auth_url: args
            .swift_auth_url
            .ok_or_else(|| missing("swift-auth-url"))?,
        swift_user: args.swift_user.ok_or_else(|| missing("swift-user"))?,
        swift_account: args.swift_account,
    };
    let key = args.swift_key.ok_or_else(|| missing("swift-key"))?;
    Ok((profile, key))
}

async fn setup(
    home: &Path,
    args: &SetupArgs,
    direct: Option<(DirectProfile, String)>,
) -> anyhow::Result<()> {
    let SetupArgs {
        server,
        email,
        password,
        dir,
        device_name,
        force,
        ..
    } = args;
    let (server, email, password, force) =
        (server.clone(), email.clone(), password.as_str(), *force);
    let device_name = device_name.clone();
    if Profile::load(home).is_ok() {
        if !force {
            bail!(
                "a profile already exists in {}; use --force to replace it (or set STACKSYNC_HOME for another one)",
                home.display()
            );
        }
        Profile::remove(home)?;
        KeyFiles::remove_all(home).context("removing the old profile's keys")?;
    }
    if args.encrypted && args.passphrase.is_none() {
        bail!(
            "--encrypted needs the encryption passphrase: --passphrase (or STACKSYNC_PASSPHRASE)"
        );
    }
    let folder = absolute(dir)?;
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("creating the synced folder {}", folder.display()))?;
    let folder = folder
        .canonicalize()
        .with_context(|| format!("resolving {}", folder.display()))?;
    Profile::prepare_home(home)?;
    let home_abs = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    if home_abs.starts_with(&folder) || folder.starts_with(&home_abs) {
        bail!(
            "the synced folder {} and the client's state folder {} must not contain each other",
            folder.display(),
            home_abs.display()
        );
    }
    let mut broker: Option<ClientLogin> = None;
    let (conn, token, user): (Arc<dyn Connection>, String, _) = match &direct {
        None => {
            let client = GatewayClient::login(&server, &email, password)
                .await
                .with_context(|| format!("logging in to {server} as {email}"))?;
            let (token, user) = (client.session().token.clone(), client.session().user);
            (Arc::new(GatewayConnection::new(client)), token, user)
        }
        Some((d, key)) => {
            let config = direct_config_from(d, key.clone())?;
            let conn = DirectConnection::login(config, &server, &email, password)
                .await
                .with_context(|| format!("logging in to {server} as {email}"))?;
            let (token, user) = (conn.token().to_owned(), conn.user());
            broker = Some(conn.broker_login().clone());
            (Arc::new(conn), token, user)
        }
    };
    if let Some(passphrase) = &args.passphrase {
        let files = KeyFiles::new(home);
        let identity = unlock_identity(conn.as_ref(), user, passphrase, password)
            .await
            .context("unlocking the account's encryption keys")?;
        files.save_identity(&identity)?;
        if args.encrypted {
            let private = stacksync_client::connection::workspaces(conn.as_ref())
                .await
                .context("listing the account's workspaces")?
                .into_iter()
                .find(|w| !w.is_shared && w.owner == user)
                .context("the server lists no private workspace for this account")?;
            encrypt_private(&files, conn.as_ref(), private, &identity)
                .await
                .context("making the private workspace end-to-end encrypted")?;
        }
        eprintln!(
            "encryption keys unlocked on this device (identity fingerprint {})",
            identity.public().fingerprint()
        );
    }
    let device_name = device_name.unwrap_or_else(host_name);
    let device = match conn
        .rpc(Request::UpdateDevice {
            id: None,
            name: device_name.clone(),
            os: std::env::consts::OS.to_owned(),
            app_version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .await
        .context("registering this device")?
    {
        Reply::Device(d) => d,
        other => bail!("the server answered the device registration with {other:?}"),
    };
    let profile = Profile::create(
        home,
        ProfileConfig {
            server_url: server.clone(),
            email: email.clone(),
            device_id: device.id,
            device_name: device_name.clone(),
            folder: folder.clone(),
            transport: if direct.is_some() {
                TransportKind::Direct
            } else {
                TransportKind::Gateway
            },
            user_id: user,
            workspace: None,
            direct: direct.as_ref().map(|(d, _)| d.clone()),
            notifications: Default::default(),
        },
    )?;
    profile.save_token(&token)?;
    if let Some((_, key)) = &direct {
        profile.save_swift_key(key)?;
    }
    if let Some(broker) = &broker {
        profile.save_broker_login(&broker.user, &broker.password)?;
    }
    println!(
        "set up: {} syncs with {server} as {email} (device \u{201c}{device_name}\u{201d}); run `stacksync sync`",
        folder.display()
    );
    Ok(())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "device".into())
}

pub(crate) fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("reading the current folder")?
            .join(path))
    }
}

/// `s` safe to print: control, bidirectional and invisible characters
/// escaped, so that a file name cannot rewrite the terminal.
pub(crate) fn shown(s: &str) -> std::borrow::Cow<'_, str> {
    stacksync_proto::printable(s)
}

/// A workspace's encryption setting as people read it.
fn encryption_shown(setting: &str) -> &str {
    match setting {
        "plain" => "plain (stored as is on the server)",
        "server_side" => "server-side (encrypted at rest by the server)",
        "client_side" => "client-side (end to end: only members' devices hold the keys)",
        other => other,
    }
}

fn print_status(report: &StatusReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    let target = if report.target.path.is_empty() {
        report.folder.display().to_string()
    } else {
        report.target.path.clone()
    };
    let target = shown(&target);
    let daemon = if report.daemon.paused {
        let until = report
            .daemon
            .paused_until
            .map(|ms| format!(" until {} UTC", stacksync_engine::conflict::format_utc(ms)))
            .unwrap_or_default();
        let running = if report.daemon_running {
            "daemon"
        } else {
            "daemon not running;"
        };
        format!("{running} paused{until}: `stacksync resume` syncs again")
    } else if !report.daemon_running {
        "daemon not running".to_owned()
    } else if report.daemon.busy {
        "daemon syncing".to_owned()
    } else if let Some(e) = &report.daemon.last_error {
        format!("daemon retrying: {}", shown(e))
    } else {
        "daemon idle".to_owned()
    };
    println!("{target}: {} ({daemon})", report.target.status.as_str());
    if let Some(d) = &report.target.detail {
        println!("  {}", shown(d));
    }
    if !report.encryption.is_empty() {
        println!("encryption: {}", encryption_shown(&report.encryption));
    }
    if !report.counts.is_empty() {
        let counts: Vec<String> = report
            .counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        println!("files: {}", counts.join(", "));
    }
    for f in &report.shared {
        let path = shown(&f.path);
        match f.state.as_str() {
            "shared" => {
                let role = match (f.owner, f.read_only) {
                    (true, _) => "yours",
                    (false, true) => "read-only",
                    (false, false) => "member",
                };
                let with = if f.members.is_empty() {
                    "nobody else yet".to_owned()
                } else {
                    f.members
                        .iter()
                        .map(|m| shown(m).into_owned())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let setting = match f.encryption.as_str() {
                    "" | "plain" => String::new(),
                    other => format!("; {}", encryption_shown(other)),
                };
                println!("shared   {path}/  ({role}; with {with}{setting})");
            }
            state => match &f.detail {
                Some(d) => println!("{state:<8} {path}/  ({})", shown(d)),
                None => println!("{state:<8} {path}/"),
            },
        }
    }
    for e in &report.entries {
        if e.status == FileStatus::Synced && report.target.path.is_empty() {
            continue;
        }
        let slash = if e.is_folder { "/" } else { "" };
        let path = shown(&e.path);
        match &e.detail {
            Some(d) => println!("{:<8} {path}{slash}  ({})", e.status.as_str(), shown(d)),
            None => println!("{:<8} {path}{slash}", e.status.as_str()),
        }
    }
    Ok(())
}

/// Shows transfer progress on stderr until aborted.
fn progress(client: &SyncClient) -> tokio::task::JoinHandle<()> {
    let counters = client.counters();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let s = &counters;
            eprint!(
                "\r\x1b[Ksyncing: \u{2191} {} ({} chunks, {} already there)  \u{2193} {} ({} chunks)",
                human(s.bytes_uploaded.load(Ordering::Relaxed)),
                s.chunks_uploaded.load(Ordering::Relaxed),
                s.chunks_deduplicated.load(Ordering::Relaxed),
                human(s.bytes_downloaded.load(Ordering::Relaxed)),
                s.chunks_downloaded.load(Ordering::Relaxed),
            );
        }
    })
}

pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
