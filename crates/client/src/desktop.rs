//! Desktop notifications (conflicts, share invitations, errors) through the
//! freedesktop notification service, by way of `notify-send`.
//!
//! Only when a desktop session exists (a session bus or a display) and
//! `notify-send` is installed; otherwise every call is quietly nothing, so
//! a headless daemon on a server never fails or logs noise for want of a
//! desktop. Notifications are fire-and-forget: a hung notification service
//! never blocks syncing.

use std::path::PathBuf;
use std::process::Stdio;

/// Sends desktop notifications when a desktop session exists.
#[derive(Debug, Clone)]
pub struct DesktopNotifier {
    program: Option<PathBuf>,
}

/// How urgent a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// Informational (a share invitation).
    Normal,
    /// Needs attention (a conflict, an error).
    Critical,
}

impl DesktopNotifier {
    /// Looks for a desktop session and `notify-send` in `PATH`.
    pub fn detect() -> DesktopNotifier {
        let has = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let session = has("DBUS_SESSION_BUS_ADDRESS") || has("DISPLAY") || has("WAYLAND_DISPLAY");
        let program = if session && std::env::var_os("STACKSYNC_NO_DESKTOP").is_none() {
            find_in_path("notify-send")
        } else {
            None
        };
        DesktopNotifier { program }
    }

    /// A notifier that never shows anything.
    pub fn disabled() -> DesktopNotifier {
        DesktopNotifier { program: None }
    }

    /// Whether notifications will be shown.
    pub fn enabled(&self) -> bool {
        self.program.is_some()
    }

    /// Shows a notification (or nothing, without a desktop).
    pub fn notify(&self, urgency: Urgency, summary: &str, body: &str) {
        let Some(program) = &self.program else {
            return;
        };
        let urgency = match urgency {
            Urgency::Normal => "normal",
            Urgency::Critical => "critical",
        };
        let spawned = std::process::Command::new(program)
            .args([
                "--app-name=StackSync",
                "--urgency",
                urgency,
                "--",
                summary,
                body,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            // Reaped on a thread so no zombie is left and nothing waits.
            Ok(mut child) => {
                std::thread::spawn(move || child.wait());
            }
            Err(e) => tracing::debug!(%e, "cannot run notify-send"),
        }
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_notifier_shows_nothing_and_does_not_fail() {
        let n = DesktopNotifier::disabled();
        assert!(!n.enabled());
        n.notify(Urgency::Critical, "x", "y");
    }

    #[test]
    fn path_lookup_finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-stacksync").is_none());
    }
}
