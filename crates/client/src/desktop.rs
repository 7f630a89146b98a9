//! Desktop notifications (conflicts, share invitations, errors) through the
//! freedesktop notification service, by way of `notify-send`.
//!
//! Only when a desktop session exists (a session bus or a display) and
//! `notify-send` is installed; otherwise every call is quietly nothing, so
//! a headless daemon on a server never fails or logs noise for want of a
//! desktop. Notifications are fire-and-forget: a hung notification service
//! never blocks syncing.
//!
//! Each kind ([`NoticeKind`]) can be silenced per user in the profile's
//! `[notifications]` section (`stacksync notifications --conflicts off`),
//! read again at every notification so that a running daemon follows a
//! change at once.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::profile::NotificationSettings;

/// Sends desktop notifications when a desktop session exists.
#[derive(Debug, Clone)]
pub struct DesktopNotifier {
    program: Option<PathBuf>,
    /// The client's home, whose profile says which kinds are silenced.
    settings_from: Option<PathBuf>,
}

/// What a notification is about: each kind can be silenced on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    /// Conflicting edits kept as conflicted copies.
    Conflicts,
    /// Folders shared with the user, added or taken away.
    Invitations,
    /// Sync failures, refused names, a paused shared folder, a stopped daemon.
    Errors,
}

impl NoticeKind {
    /// How urgent notifications of this kind are.
    pub fn urgency(self) -> Urgency {
        match self {
            NoticeKind::Invitations => Urgency::Normal,
            NoticeKind::Conflicts | NoticeKind::Errors => Urgency::Critical,
        }
    }

    /// Whether `settings` let this kind through.
    pub fn allowed_by(self, settings: &NotificationSettings) -> bool {
        match self {
            NoticeKind::Conflicts => settings.conflicts,
            NoticeKind::Invitations => settings.invitations,
            NoticeKind::Errors => settings.errors,
        }
    }
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
        DesktopNotifier {
            program,
            settings_from: None,
        }
    }

    /// Follows the notification settings of the profile in `home`.
    pub fn with_settings_from(mut self, home: &Path) -> DesktopNotifier {
        self.settings_from = Some(home.to_path_buf());
        self
    }

    /// A notifier that never shows anything.
    pub fn disabled() -> DesktopNotifier {
        DesktopNotifier {
            program: None,
            settings_from: None,
        }
    }

    /// Whether notifications will be shown.
    pub fn enabled(&self) -> bool {
        self.program.is_some()
    }

    /// Shows a notification of `kind` (or nothing, without a desktop or
    /// when the user silenced that kind).
    pub fn notify(&self, kind: NoticeKind, summary: &str, body: &str) {
        let Some(program) = &self.program else {
            return;
        };
        if let Some(home) = &self.settings_from
            && !kind.allowed_by(&crate::profile::notification_settings(home))
        {
            return;
        }
        let urgency = match kind.urgency() {
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
        n.notify(NoticeKind::Errors, "x", "y");
    }

    #[test]
    fn each_kind_is_silenced_by_its_own_setting() {
        let all = NotificationSettings::default();
        let kinds = [
            NoticeKind::Conflicts,
            NoticeKind::Invitations,
            NoticeKind::Errors,
        ];
        assert!(kinds.iter().all(|k| k.allowed_by(&all)));
        for (i, silenced) in kinds.iter().enumerate() {
            let mut s = all;
            match silenced {
                NoticeKind::Conflicts => s.conflicts = false,
                NoticeKind::Invitations => s.invitations = false,
                NoticeKind::Errors => s.errors = false,
            }
            for (j, k) in kinds.iter().enumerate() {
                assert_eq!(k.allowed_by(&s), i != j, "{silenced:?} off, {k:?}");
            }
        }
    }

    #[test]
    fn path_lookup_finds_sh_and_not_nonsense() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-program-stacksync").is_none());
    }
}
