//! `stacksync admin`: administration of the installation, run against its
//! configuration (database and storage) while the server runs or not.
//! Each command is a variant of [`AdminCommand`] with its handling in
//! [`run`]; add new ones the same way. Every command prints for people by
//! default and one JSON value with `--json` (`admin_output.rs`); users are
//! here, devices, workspaces and the totals in `admin_inventory.rs`.

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use stacksync_metastore::UserSummary;
use stacksync_proto::ErrorKind;
use stacksync_service::{Service, SharedWorkspaces};

use crate::admin_inventory::{DeviceCommand, WorkspaceCommand};
use crate::admin_output::{emit, human_bytes, parse_size, table, when};
use crate::config::Config;
use crate::secret::PasswordArgs;
use crate::server;

/// What `stacksync admin` does.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// User accounts.
    User {
        /// Print one JSON value.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: UserCommand,
    },
    /// Devices and their sessions.
    Device {
        /// Print one JSON value.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: DeviceCommand,
    },
    /// Workspaces (private and shared folders).
    Workspace {
        /// Print one JSON value.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: WorkspaceCommand,
    },
    /// The installation's totals: users, devices, workspaces, items,
    /// versions, bytes stored and logical, deduplication ratio.
    Stats {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Deletes stored objects nothing references and expired history.
    Gc(crate::admin_gc::GcArgs),
    /// Stored objects.
    Storage {
        /// Print one JSON value.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: StorageCommand,
    },
    /// Apps (OAuth consumers) of the REST API v2.
    Oauth {
        /// Print one JSON value.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        what: OAuthCommand,
    },
}

/// `stacksync admin oauth ...`.
#[derive(Subcommand, Debug)]
pub enum OAuthCommand {
    /// Registers an app; prints its key and secret (`key: ...`, `secret:
    /// ...`). The secret is shown this once.
    Add {
        /// The app's name, shown to users on the authorization page.
        name: String,
        /// The app's callback URI: request tokens must then call back under
        /// it (or use `oob`).
        #[arg(long)]
        callback: Option<String>,
    },
    /// Lists the registered apps: key, name, callback (never the secret).
    List,
    /// Removes an app and ends every token it holds.
    Remove {
        /// The app's key. Keys are base64url, so one may begin with `-`:
        /// it is taken as the key, not as an option.
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
}

/// `stacksync admin storage ...`.
#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Rewrites every object of the local store not sealed under the
    /// current at-rest key (plain ones, and ones sealed under a key in
    /// `at_rest_old_key_files`), so the old keys can be retired. On Swift,
    /// rotation is the keymaster's (see docs/threat-model.md).
    Reseal,
}

/// `stacksync admin user ...`.
#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Lists every user: email, name, quota and its use, storage user,
    /// whether disabled, devices and workspaces.
    List,
    /// One user in full, with their devices and workspaces.
    Show {
        /// The user's email.
        email: String,
    },
    /// Creates a user and their private workspace; prints the user id.
    Add {
        /// The user's email (their login).
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Display name (default: the part of the email before '@').
        #[arg(long)]
        name: Option<String>,
        /// Quota: bytes stored in the workspaces they own, in bytes or
        /// with a unit (500MiB, 50GiB, 2TB).
        #[arg(long, default_value = "10GiB", value_parser = parse_size)]
        quota: u64,
        /// The Swift user this account maps to, if clients reach Swift.
        #[arg(long)]
        storage_user: Option<String>,
        /// The private workspace's encryption: `plain`, or `server` (the
        /// storage encrypts it at rest with keys the operator holds; needs
        /// at-rest encryption configured). Client-side encryption is chosen
        /// by the user's client (`stacksync setup --encrypted`).
        #[arg(long, default_value = "plain", value_parser = ["plain", "server"])]
        encryption: String,
    },
    /// Refuses the user's logins and ends every session of theirs at once.
    Disable {
        /// The user's email.
        email: String,
    },
    /// Lets a disabled user log in again.
    Enable {
        /// The user's email.
        email: String,
    },
    /// Deletes the user: account, devices, sessions, their workspaces with
    /// their files, versions and stored objects. Shared folders of other
    /// users they were a member of stay (without them). Refused while they
    /// own a folder shared with others, naming each, unless
    /// `--delete-shared`. Prints `deleted_containers` (the containers of
    /// their workspaces nobody else was a member of), `dissolved_shared`
    /// (their shared folders deleted for everyone: workspace, container,
    /// the members' emails), `left_workspaces` (other owners' shared
    /// folders they left), `ended_sessions` and `storage_errors`.
    Remove {
        /// The user's email.
        email: String,
        /// Also deletes the folders they own that are shared with others,
        /// for every member: the members' devices stop syncing them and
        /// keep their copies, no longer synced. (Otherwise disable the user
        /// until those folders are unshared.)
        #[arg(long)]
        delete_shared: bool,
    },
    /// Sets a new password and ends every session of the user.
    ResetPassword {
        /// The user's email.
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Sets the user's quota (bytes stored in the workspaces they own;
    /// shared folders count against their owner). The next upload is held
    /// to it; lowering it below what is stored deletes nothing.
    Quota {
        /// The user's email.
        email: String,
        /// Bytes, or a size with a unit: 500MiB, 50GiB, 2TB.
        #[arg(value_parser = parse_size)]
        size: u64,
    },
    /// Shows, sets or clears (`--clear`) the Swift user the account's
    /// clients reach storage as; the container grants move with it.
    StorageUser {
        /// The user's email.
        email: String,
        /// The Swift user (`account:user`).
        #[arg(conflicts_with = "clear")]
        swift_user: Option<String>,
        /// The account no longer reaches Swift directly.
        #[arg(long)]
        clear: bool,
    },
}

/// Runs one administration command.
pub async fn run(config: &Config, what: AdminCommand) -> anyhow::Result<()> {
    let service = server::open_service(config, false).await?;
    let result = match what {
        AdminCommand::User { json, what } => user(&service, what, json).await,
        AdminCommand::Device { json, what } => {
            crate::admin_inventory::device(&service, what, json).await
        }
        AdminCommand::Workspace { json, what } => {
            crate::admin_inventory::workspace(&service, what, json).await
        }
        AdminCommand::Stats { json } => crate::admin_inventory::stats(&service, json).await,
        AdminCommand::Gc(args) => crate::admin_gc::run(&service, config, args).await,
        AdminCommand::Oauth { json, what } => oauth(&service, what, json).await,
        AdminCommand::Storage {
            json,
            what: StorageCommand::Reseal,
        } => reseal(config, json).await,
    };
    service.store().close().await;
    result
}

async fn oauth(service: &Service, what: OAuthCommand, json: bool) -> anyhow::Result<()> {
    match what {
        OAuthCommand::Add { name, callback } => {
            let app = service
                .add_oauth_consumer(&name, callback.as_deref())
                .await
                .with_context(|| format!("registering app {name:?}"))?;
            emit(
                json,
                json!({"key": app.key, "secret": app.secret, "name": name, "callback": callback}),
                || format!("key: {}\nsecret: {}", app.key, app.secret),
            );
        }
        OAuthCommand::List => {
            let apps = service.oauth_consumers().await?;
            let value = apps
                .iter()
                .map(|a| json!({"key": a.key, "name": a.name, "callback": a.callback}))
                .collect();
            emit(json, Value::Array(value), || {
                apps.iter()
                    .map(|a| {
                        format!(
                            "{}\t{}\t{}\n",
                            a.key,
                            a.name,
                            a.callback.as_deref().unwrap_or("-")
                        )
                    })
                    .collect()
            });
        }
        OAuthCommand::Remove { key } => {
            service
                .remove_oauth_consumer(&key)
                .await
                .with_context(|| format!("removing app {key}"))?;
            emit(json, json!({"removed": key}), || format!("removed {key}"));
        }
    }
    Ok(())
}

async fn reseal(config: &Config, json: bool) -> anyhow::Result<()> {
    use stacksync_blobstore::{AtRestKeys, LocalStore, StoreConfig};
    let data_dir = config.data_dir()?;
    let StoreConfig::Local {
        root,
        at_rest_key_file: Some(key),
        at_rest_old_key_files,
        ..
    } = server::store_config(config, &data_dir)?
    else {
        bail!(
            "resealing is for the local store with encryption at rest; Swift's keymaster \
             rotates its own root secrets (see docs/threat-model.md)"
        );
    };
    let keys = AtRestKeys::load(&key, &at_rest_old_key_files)
        .with_context(|| format!("reading the at-rest keys ({})", key.display()))?;
    let store = LocalStore::open_sealed(root, keys.clone()).await?;
    let done = store.reseal().await.context("resealing")?;
    emit(
        json,
        json!({
            "resealed": done.resealed,
            "objects": done.objects,
            "containers": done.containers,
            "key": keys.current_id().to_string(),
        }),
        || {
            format!(
                "resealed {} of {} object(s) in {} container(s) under key {}",
                done.resealed,
                done.objects,
                done.containers,
                keys.current_id()
            )
        },
    );
    Ok(())
}

/// A user as `--json` prints them.
pub fn user_json(u: &UserSummary) -> Value {
    json!({
        "id": u.account.id.to_string(),
        "email": u.account.email,
        "name": u.account.name,
        "quota_limit": u.account.quota_limit,
        "quota_used": u.account.quota_used,
        "storage_user": u.account.storage_user,
        "disabled": u.disabled,
        "created_at": u.created_at,
        "device_count": u.devices,
        "owned_workspace_count": u.owned_workspaces,
        "membership_count": u.memberships,
        "live_sessions": u.live_sessions,
    })
}

fn user_row(u: &UserSummary) -> Vec<String> {
    vec![
        u.account.email.clone(),
        u.account.name.clone(),
        format!(
            "{} / {}",
            human_bytes(u.account.quota_used),
            human_bytes(u.account.quota_limit)
        ),
        u.account.storage_user.clone().unwrap_or_else(|| "-".into()),
        if u.disabled { "disabled" } else { "active" }.into(),
        u.devices.to_string(),
        u.memberships.to_string(),
    ]
}

const USER_HEADERS: [&str; 7] = [
    "EMAIL",
    "NAME",
    "USED / QUOTA",
    "STORAGE USER",
    "STATE",
    "DEVICES",
    "WORKSPACES",
];

async fn user(service: &Service, what: UserCommand, json: bool) -> anyhow::Result<()> {
    match what {
        UserCommand::List => {
            let users = service.store().admin_users().await?;
            emit(json, users.iter().map(user_json).collect(), || {
                table(
                    &USER_HEADERS,
                    &users.iter().map(user_row).collect::<Vec<_>>(),
                )
            });
        }
        UserCommand::Show { email } => {
            let id = service.user_id(&email).await?;
            let u = service.store().admin_user(id).await?;
            let devices = service.store().admin_devices(Some(id)).await?;
            let workspaces = service.store().admin_workspaces(Some(id)).await?;
            let mut value = user_json(&u);
            value["devices"] = devices
                .iter()
                .map(crate::admin_inventory::device_json)
                .collect();
            value["workspaces"] = workspaces
                .iter()
                .map(crate::admin_inventory::workspace_json)
                .collect();
            emit(json, value, || {
                let a = &u.account;
                let mut out = format!(
                    "user {}\n  id: {}\n  name: {}\n  state: {}\n  quota: {} of {} used\n  \
                     storage user: {}\n  created: {}\n  live sessions: {}\n",
                    a.email,
                    a.id,
                    a.name,
                    if u.disabled { "disabled" } else { "active" },
                    human_bytes(a.quota_used),
                    human_bytes(a.quota_limit),
                    a.storage_user.as_deref().unwrap_or("-"),
                    when(u.created_at),
                    u.live_sessions,
                );
                out.push_str(&format!("\ndevices ({}):\n", devices.len()));
                out.push_str(&crate::admin_inventory::device_table(&devices));
                out.push_str(&format!("\nworkspaces ({}):\n", workspaces.len()));
                out.push_str(&crate::admin_inventory::workspace_table(&workspaces));
                out
            });
        }
        UserCommand::Add {
            email,
            password,
            name,
            quota,
            storage_user,
            encryption,
        } => {
            let password = password.read()?;
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or(&email).to_owned());
            let encryption = match encryption.as_str() {
                "server" => stacksync_proto::EncryptionMode::ServerSide,
                _ => stacksync_proto::EncryptionMode::Plain,
            };
            let (account, ws) = service
                .create_user_with_encryption(
                    &email,
                    &name,
                    &password,
                    quota,
                    storage_user,
                    encryption,
                )
                .await
                .with_context(|| format!("creating user {email}"))?;
            emit(
                json,
                json!({
                    "id": account.id.to_string(),
                    "email": account.email,
                    "workspace": ws.id.to_string(),
                }),
                || account.id.to_string(),
            );
        }
        UserCommand::Disable { email } => {
            let id = service.user_id(&email).await?;
            let ended = service
                .set_user_disabled(id, true)
                .await
                .with_context(|| format!("disabling {email}"))?;
            emit(
                json,
                json!({"email": email, "disabled": true, "ended_sessions": ended}),
                || format!("disabled {email}; {ended} session(s) ended"),
            );
        }
        UserCommand::Enable { email } => {
            let id = service.user_id(&email).await?;
            service
                .set_user_disabled(id, false)
                .await
                .with_context(|| format!("enabling {email}"))?;
            emit(json, json!({"email": email, "disabled": false}), || {
                format!("enabled {email}")
            });
        }
        UserCommand::Remove {
            email,
            delete_shared,
        } => {
            let id = service.user_id(&email).await?;
            let shared = if delete_shared {
                SharedWorkspaces::Delete
            } else {
                SharedWorkspaces::Refuse
            };
            let done = match service.remove_user(id, shared).await {
                Err(e) if e.kind == ErrorKind::Conflict && !delete_shared => bail!(
                    "not removing {email}: {}.\n\
                     To delete those folders for every member (they keep the copies on \
                     their devices, no longer synced): \
                     stacksync admin user remove {email} --delete-shared\n\
                     Or disable the user until they are unshared: \
                     stacksync admin user disable {email}",
                    e.message
                ),
                r => r.with_context(|| format!("removing {email}"))?,
            };
            let r = &done.removed;
            let dissolved: Vec<Value> = r
                .dissolved_shared
                .iter()
                .map(|d| {
                    json!({
                        "workspace": d.workspace.to_string(),
                        "container": d.container,
                        "members": d.members.iter().map(|m| &m.email).collect::<Vec<_>>(),
                    })
                })
                .collect();
            emit(
                json,
                json!({
                    "email": email,
                    "deleted_containers": r.deleted_containers,
                    "dissolved_shared": dissolved,
                    "left_workspaces": r.left_workspaces.iter().map(|(w, _)| w.to_string()).collect::<Vec<_>>(),
                    "ended_sessions": r.ended_sessions.len(),
                    "storage_errors": done.storage_errors,
                }),
                || {
                    let mut out = format!(
                        "removed {email}: {} workspace(s) deleted, {} shared folder(s) deleted for their members, left {} shared workspace(s), {} session(s) ended",
                        r.deleted_containers.len(),
                        r.dissolved_shared.len(),
                        r.left_workspaces.len(),
                        r.ended_sessions.len()
                    );
                    for d in &r.dissolved_shared {
                        let members: Vec<&str> =
                            d.members.iter().map(|m| m.email.as_str()).collect();
                        out.push_str(&format!(
                            "\n  deleted shared folder {} (members: {})",
                            d.workspace,
                            members.join(", ")
                        ));
                    }
                    out
                },
            );
            if !done.storage_errors.is_empty() {
                bail!(
                    "the user is removed, but storage clean-up failed (the objects left are unreferenced): {}",
                    done.storage_errors.join("; ")
                );
            }
        }
        UserCommand::ResetPassword { email, password } => {
            let password = password.read()?;
            let id = service.user_id(&email).await?;
            let ended = service
                .reset_password(id, &password)
                .await
                .with_context(|| format!("resetting the password of {email}"))?;
            emit(
                json,
                json!({"email": email, "ended_sessions": ended}),
                || format!("password of {email} reset; {ended} session(s) ended"),
            );
        }
        UserCommand::Quota { email, size } => {
            let id = service.user_id(&email).await?;
            service
                .store()
                .set_quota_limit(id, size)
                .await
                .with_context(|| format!("setting the quota of {email}"))?;
            let u = service.store().admin_user(id).await?;
            emit(json, user_json(&u), || {
                format!(
                    "quota of {email}: {} ({} used)",
                    human_bytes(u.account.quota_limit),
                    human_bytes(u.account.quota_used)
                )
            });
        }
        UserCommand::StorageUser {
            email,
            swift_user,
            clear,
        } => {
            let id = service.user_id(&email).await?;
            if swift_user.is_none() && !clear {
                let u = service.store().admin_user(id).await?;
                let current = u.account.storage_user;
                emit(
                    json,
                    json!({"email": email, "storage_user": current}),
                    || current.unwrap_or_else(|| "-".into()),
                );
                return Ok(());
            }
            let change = service
                .set_storage_user(id, swift_user.as_deref())
                .await
                .with_context(|| format!("setting the storage user of {email}"))?;
            emit(
                json,
                json!({
                    "email": email,
                    "storage_user": swift_user,
                    "previous": change.previous,
                    "containers": change.containers,
                    "storage_errors": change.storage_errors,
                }),
                || match &swift_user {
                    Some(s) => format!(
                        "storage user of {email}: {s}; grants on {} container(s)",
                        change.containers
                    ),
                    None => format!(
                        "storage user of {email} cleared; grants taken back on {} container(s)",
                        change.containers
                    ),
                },
            );
            if !change.storage_errors.is_empty() {
                bail!(
                    "the storage user is changed, but some grants failed (run the command again): {}",
                    change.storage_errors.join("; ")
                );
            }
        }
    }
    Ok(())
}
