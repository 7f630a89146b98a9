//! Pausing the daemon (`stacksync pause [--for DURATION]`, `resume`, the
//! file manager's and the tray's menus): while paused the daemon neither
//! uploads nor downloads; the watcher and push notifications keep noting
//! what changed, and all of it syncs on resume.
//!
//! The pause is kept in `paused.json` in the client's home (mode 0600), so
//! that it holds across daemon restarts and a pause asked for while no
//! daemon runs takes effect when one starts. A pause with an end
//! (`until`, ms since the epoch) is over once that time has passed: the
//! file is then removed by whoever notices first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use stacksync_proto::Millis;
use tokio::sync::watch;

use crate::private;
use crate::profile::{ProfileError, write_atomic};

/// The file in the client's home that holds a pause.
pub const PAUSE_FILE: &str = "paused.json";

/// Whether syncing is paused, and until when.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseState {
    /// Paused.
    pub paused: bool,
    /// When the pause ends on its own (ms since the epoch); `None`: until
    /// resumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Millis>,
}

impl PauseState {
    /// Paused until `until` (or until resumed).
    pub fn paused(until: Option<Millis>) -> PauseState {
        PauseState {
            paused: true,
            until,
        }
    }

    /// Whether it still holds at `now` (ms since the epoch).
    pub fn holds_at(&self, now: Millis) -> bool {
        self.paused && self.until.is_none_or(|u| now < u)
    }

    /// What it is at `now`: an expired pause is no pause.
    pub fn at(self, now: Millis) -> PauseState {
        if self.holds_at(now) {
            self
        } else {
            PauseState::default()
        }
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX))
        .unwrap_or(0)
}

/// The pause recorded in `home` as it is now (an expired one is removed).
/// A file that does not parse counts as no pause (and is reported): a
/// broken file must not stop syncing for good.
pub fn load(home: &Path) -> PauseState {
    let path = home.join(PAUSE_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return PauseState::default();
    };
    let state = match serde_json::from_str::<PauseState>(&text) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(file = %path.display(), %e, "pause file unreadable; not paused");
            PauseState::default()
        }
    };
    let now = state.at(now_ms());
    if !now.paused {
        let _ = std::fs::remove_file(&path);
    }
    now
}

/// Records `state` in `home` (removes the file when not paused).
pub fn save(home: &Path, state: PauseState) -> Result<(), ProfileError> {
    let path = home.join(PAUSE_FILE);
    if !state.paused {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ProfileError::Io {
                doing: "removing",
                path,
                source: e,
            }),
            _ => Ok(()),
        };
    }
    let text = serde_json::to_vec(&state)
        .map_err(|e| ProfileError::Invalid(format!("cannot encode the pause: {e}")))?;
    write_atomic(&path, &text, private::FILE_MODE)
}

/// The daemon's pause: what `paused.json` says, shared by the daemon's loop
/// (which waits on changes) and its socket (which changes it). Clones share
/// one.
#[derive(Clone)]
pub struct PauseSwitch {
    home: Arc<PathBuf>,
    state: watch::Sender<PauseState>,
}

impl PauseSwitch {
    /// The pause recorded in `home`.
    pub fn open(home: &Path) -> PauseSwitch {
        PauseSwitch {
            home: Arc::new(home.to_path_buf()),
            state: watch::Sender::new(load(home)),
        }
    }

    /// The pause now (an expired one is ended, file and all).
    pub fn now(&self) -> PauseState {
        let state = *self.state.borrow();
        if state.paused && !state.holds_at(now_ms()) {
            let _ = self.set(PauseState::default());
            return PauseState::default();
        }
        state
    }

    /// Pauses until `until` (ms since the epoch; `None`: until resumed).
    pub fn pause(&self, until: Option<Millis>) -> Result<PauseState, ProfileError> {
        let state = PauseState::paused(until);
        self.set(state)?;
        Ok(state)
    }

    /// Resumes.
    pub fn resume(&self) -> Result<(), ProfileError> {
        self.set(PauseState::default())
    }

    fn set(&self, state: PauseState) -> Result<(), ProfileError> {
        save(&self.home, state)?;
        self.state.send_replace(state);
        Ok(())
    }

    /// Changes as they are made.
    pub fn watch(&self) -> watch::Receiver<PauseState> {
        self.state.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_kept_in_the_home_until_resumed_or_over() {
        let home = tempfile::tempdir().expect("a scratch folder");
        assert_eq!(load(home.path()), PauseState::default());
        let switch = PauseSwitch::open(home.path());
        switch.pause(None).expect("paused");
        // Another process (a daemon started later) sees it.
        assert_eq!(load(home.path()), PauseState::paused(None));
        assert!(PauseSwitch::open(home.path()).now().paused);
        switch.resume().expect("resumed");
        assert!(!home.path().join(PAUSE_FILE).exists());
        assert!(!PauseSwitch::open(home.path()).now().paused);

        let later = now_ms() + 3_600_000;
        switch.pause(Some(later)).expect("paused for an hour");
        assert_eq!(load(home.path()), PauseState::paused(Some(later)));
        // A pause whose end has passed is no pause, and its file goes.
        save(home.path(), PauseState::paused(Some(now_ms() - 1))).expect("saved");
        assert!(!load(home.path()).paused);
        assert!(!home.path().join(PAUSE_FILE).exists());
    }

    #[test]
    fn a_broken_pause_file_does_not_stop_syncing() {
        let home = tempfile::tempdir().expect("a scratch folder");
        std::fs::write(home.path().join(PAUSE_FILE), b"{not json").expect("written");
        assert!(!load(home.path()).paused);
    }
}
