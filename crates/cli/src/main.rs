//! The `stacksync` binary: `stacksync server` runs the sync service (RPC
//! workers on the bus and the HTTP surface), `stacksync admin` manages
//! users, and the client commands (`setup`, `login`, `logout`, `password`,
//! `sync`, `status`, `versions`, `restore`) run the desktop client. Thin by design: argument parsing,
//! configuration and wiring of the library crates only; it must never hold
//! sync logic of its own. Built with `--no-default-features`, the binary
//! has the client commands only and links no server code.

mod account;
#[cfg(feature = "server")]
mod admin;
#[cfg(feature = "server")]
mod admin_doctor;
#[cfg(feature = "server")]
mod admin_gc;
#[cfg(feature = "server")]
mod admin_inventory;
mod admin_output;
mod client;
#[cfg(feature = "server")]
mod config;
mod desktop;
mod doctor;
mod logging;
mod secret;
#[cfg(feature = "server")]
mod server;
mod sharing;
#[cfg(feature = "tray")]
mod tray;

#[cfg(feature = "server")]
use std::path::PathBuf;

use anyhow::Context;
#[cfg(feature = "server")]
use clap::Args;
use clap::{Parser, Subcommand};

#[cfg(feature = "server")]
use crate::config::{BusKind, Config};

#[derive(Parser, Debug)]
#[command(name = "stacksync", version, about = "StackSync personal cloud")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the sync service and its HTTP surface.
    #[cfg(feature = "server")]
    Server(Overrides),
    /// Administration of the installation.
    #[cfg(feature = "server")]
    Admin {
        #[command(flatten)]
        overrides: Overrides,
        #[command(subcommand)]
        what: admin::AdminCommand,
    },
    /// Checks what this device's client (or, with --config, the server)
    /// depends on; prints OK/WARN/FAIL with what to do; fails if any fails.
    Doctor(doctor::DoctorArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

#[cfg(feature = "server")]
/// Where the configuration comes from. Each flag can also be given by its
/// environment variable; flags win over variables, variables over the file.
#[derive(Args, Debug, Clone)]
struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "STACKSYNC_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data folder (database, local blobs).
    #[arg(long, env = "STACKSYNC_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address, e.g. 127.0.0.1:8080.
    #[arg(long, env = "STACKSYNC_LISTEN", global = true)]
    listen: Option<String>,
    /// Metadata database URL (sqlite:// or postgres://).
    #[arg(long, env = "STACKSYNC_DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Bus backend.
    #[arg(long, env = "STACKSYNC_BUS_KIND", value_enum, global = true)]
    bus_kind: Option<BusKind>,
    /// AMQP URL; implies the RabbitMQ bus unless --bus-kind says otherwise.
    #[arg(long, env = "STACKSYNC_BUS_URL", global = true)]
    bus_url: Option<String>,
    /// Namespace of the bus's queues and exchanges.
    #[arg(long, env = "STACKSYNC_BUS_NAMESPACE", global = true)]
    bus_namespace: Option<String>,
    /// Requests each consumer holds at once.
    #[arg(long, env = "STACKSYNC_PREFETCH", global = true)]
    prefetch: Option<u16>,
}

#[cfg(feature = "server")]
impl Overrides {
    /// The file's configuration with variables and flags applied.
    fn resolve(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(d) = &self.data_dir {
            config.data_dir = Some(d.clone());
        }
        if let Some(l) = &self.listen {
            config.listen = Some(l.clone());
        }
        if let Some(u) = &self.database_url {
            config.database.url = Some(u.clone());
        }
        if let Some(u) = &self.bus_url {
            config.bus.url = Some(u.clone());
            config.bus.kind = BusKind::Rabbitmq;
        }
        if let Some(k) = self.bus_kind {
            config.bus.kind = k;
        }
        if let Some(n) = &self.bus_namespace {
            config.bus.namespace = n.clone();
        }
        if let Some(p) = self.prefetch {
            config.prefetch = Some(p);
        }
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logging::init(&cli.command)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Client(c) => client::run(c).await,
            Command::Doctor(args) => doctor::run(args).await,
            #[cfg(feature = "server")]
            Command::Server(o) => server::run(o.resolve()?).await,
            #[cfg(feature = "server")]
            Command::Admin { overrides, what } => admin::run(&overrides.resolve()?, what).await,
        }
    })
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;

    #[test]
    fn an_oauth_key_that_begins_with_a_dash_is_a_key() {
        // Keys are base64url: one in 64 begins with '-'.
        let cli = Cli::try_parse_from(["stacksync", "admin", "oauth", "remove", "-Tp3rxu2dg"])
            .expect("a key beginning with '-' parses");
        let Command::Admin {
            what:
                admin::AdminCommand::Oauth {
                    what: admin::OAuthCommand::Remove { key },
                    ..
                },
            ..
        } = cli.command
        else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(key, "-Tp3rxu2dg");
    }
}
