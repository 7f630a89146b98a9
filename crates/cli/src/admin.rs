//! `stacksync admin`: administration of the installation, run against its
//! configuration (database and storage) while the server runs or not.
//! Each command is a variant of [`AdminCommand`] with its handling in
//! [`run`]; add new ones the same way.

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::config::Config;
use crate::secret::PasswordArgs;
use crate::server;

/// What `stacksync admin` does.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// User accounts.
    User {
        #[command(subcommand)]
        what: UserCommand,
    },
    /// Deletes stored objects nothing references and expired history.
    Gc(crate::admin_gc::GcArgs),
    /// Stored objects.
    Storage {
        #[command(subcommand)]
        what: StorageCommand,
    },
    /// Apps (OAuth consumers) of the REST API v2.
    Oauth {
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
        /// The app's key.
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
    /// Creates a user and their private workspace; prints the user id.
    Add {
        /// The user's email (their login).
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Display name (default: the part of the email before '@').
        #[arg(long)]
        name: Option<String>,
        /// Quota in bytes (default 10 GiB).
        #[arg(long, default_value_t = 10 * 1024 * 1024 * 1024)]
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
    /// own a folder shared with others.
    Remove {
        /// The user's email.
        email: String,
    },
    /// Sets a new password and ends every session of the user.
    ResetPassword {
        /// The user's email.
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

/// Runs one administration command.
pub async fn run(config: &Config, what: AdminCommand) -> anyhow::Result<()> {
    let service = server::open_service(config, false).await?;
    let result = match what {
        AdminCommand::User { what } => user(&service, what).await,
        AdminCommand::Gc(args) => crate::admin_gc::run(&service, config, args).await,
        AdminCommand::Oauth { what } => oauth(&service, what).await,
        AdminCommand::Storage {
            what: StorageCommand::Reseal,
        } => reseal(config).await,
    };
    service.store().close().await;
    result
}

async fn oauth(service: &stacksync_service::Service, what: OAuthCommand) -> anyhow::Result<()> {
    match what {
        OAuthCommand::Add { name, callback } => {
            let app = service
                .add_oauth_consumer(&name, callback.as_deref())
                .await
                .with_context(|| format!("registering app {name:?}"))?;
            println!("key: {}", app.key);
            println!("secret: {}", app.secret);
        }
        OAuthCommand::List => {
            for app in service.oauth_consumers().await? {
                println!(
                    "{}\t{}\t{}",
                    app.key,
                    app.name,
                    app.callback.as_deref().unwrap_or("-")
                );
            }
        }
        OAuthCommand::Remove { key } => {
            service
                .remove_oauth_consumer(&key)
                .await
                .with_context(|| format!("removing app {key}"))?;
            println!("removed {key}");
        }
    }
    Ok(())
}

async fn reseal(config: &Config) -> anyhow::Result<()> {
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
    println!(
        "resealed {} of {} object(s) in {} container(s) under key {}",
        done.resealed,
        done.objects,
        done.containers,
        keys.current_id()
    );
    Ok(())
}

async fn user(service: &stacksync_service::Service, what: UserCommand) -> anyhow::Result<()> {
    match what {
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
            let (account, _) = service
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
            println!("{}", account.id);
        }
        UserCommand::Disable { email } => {
            let id = service.user_id(&email).await?;
            let ended = service
                .set_user_disabled(id, true)
                .await
                .with_context(|| format!("disabling {email}"))?;
            println!("disabled {email}; {ended} session(s) ended");
        }
        UserCommand::Enable { email } => {
            let id = service.user_id(&email).await?;
            service
                .set_user_disabled(id, false)
                .await
                .with_context(|| format!("enabling {email}"))?;
            println!("enabled {email}");
        }
        UserCommand::Remove { email } => {
            let id = service.user_id(&email).await?;
            let done = service
                .remove_user(id)
                .await
                .with_context(|| format!("removing {email}"))?;
            println!(
                "removed {email}: {} workspace(s) deleted, left {} shared workspace(s), {} session(s) ended",
                done.removed.deleted_containers.len(),
                done.removed.left_workspaces.len(),
                done.removed.ended_sessions.len()
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
            println!("password of {email} reset; {ended} session(s) ended");
        }
    }
    Ok(())
}
