//! Log output on stderr, filtered by `RUST_LOG` (default `info`): lines
//! for people, or (server builds) one JSON object per line for a log
//! collector, chosen by `STACKSYNC_LOG_FORMAT` or, for the server and
//! administration commands, the config file's `[observability] log_format`.
//! A JSON line carries its event's fields, its target, the innermost span
//! (`span`) and every span it happened in (`spans`): an HTTP request's
//! (`http`, with `request_id`, method, route) and an RPC's (`rpc`, with
//! `request_id` and operation).

use std::io::IsTerminal;

use anyhow::Context;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<LogFormat> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => anyhow::bail!("log format {other:?} is neither \"text\" nor \"json\""),
        }
    }
}

/// Installs the subscriber for `command`'s run.
pub(crate) fn init(command: &crate::Command) -> anyhow::Result<()> {
    let format = format_for(command)?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        #[cfg(feature = "server")]
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
        #[cfg(not(feature = "server"))]
        LogFormat::Json => anyhow::bail!("JSON logs are for the server (a build with `server`)"),
        // Colours only on a terminal: a log file or a journal gets plain text.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    Ok(())
}

/// `STACKSYNC_LOG_FORMAT`, else the config file's (server and admin
/// commands), else text. A config file that does not load is reported
/// later by the command itself.
fn format_for(command: &crate::Command) -> anyhow::Result<LogFormat> {
    if let Ok(v) = std::env::var("STACKSYNC_LOG_FORMAT")
        && !v.is_empty()
    {
        return v.parse().context("STACKSYNC_LOG_FORMAT");
    }
    #[cfg(feature = "server")]
    if let crate::Command::Server(o) | crate::Command::Admin { overrides: o, .. } = command
        && let Some(path) = &o.config
        && let Ok(config) = crate::config::Config::load(path)
    {
        return Ok(config.observability.log_format);
    }
    let _ = command;
    Ok(LogFormat::Text)
}
