//! The desktop commands: `pause [--for DURATION]` and `resume` (through
//! the running daemon's socket, or the pause file when none runs),
//! `notifications` (which desktop notifications are shown) and
//! `integrate install|remove|status` (the file-manager extensions and
//! their emblems, embedded in this binary, installed per user).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::json;
use stacksync_client::pause::{self, PauseState};
use stacksync_client::status::protocol;
use stacksync_client::{Profile, STATUS_SOCKET};

/// `stacksync integrate`.
#[derive(Subcommand, Debug, Clone, Copy)]
pub enum IntegrateCommand {
    /// Installs the extensions of Nautilus, Nemo and Caja (those present
    /// or not: a file manager installed later finds them) and the emblems,
    /// for this user.
    Install,
    /// Removes what `install` put in place.
    Remove,
    /// Says which file managers and extension hosts are present, and what
    /// is installed.
    Status,
}

/// `on` or `off`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnOff {
    /// Shown.
    On,
    /// Silenced.
    Off,
}

/// Parses `90s`, `30m`, `2h`, `1d`, `1h30m` (a bare number is minutes).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    if text.is_empty() {
        bail!("an empty duration");
    }
    if let Ok(minutes) = text.parse::<u64>() {
        return Ok(Duration::from_secs(minutes.saturating_mul(60)));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => bail!("{text:?}: a duration is like 90s, 30m, 2h, 1d or 1h30m"),
        };
        let n: u64 = number
            .parse()
            .with_context(|| format!("{text:?}: a number must come before {c:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        bail!("{text:?}: the last number has no unit (s, m, h or d)");
    }
    if total == 0 {
        bail!("{text:?}: the duration must be longer than zero");
    }
    Ok(Duration::from_secs(total))
}

/// `stacksync pause [--for DURATION]`.
pub async fn pause(home: &Path, duration: Option<&str>) -> anyhow::Result<()> {
    Profile::load(home)?;
    let secs = duration
        .map(parse_duration)
        .transpose()?
        .map(|d| d.as_secs());
    let request = match secs {
        Some(s) => json!({"v": protocol::VERSION, "op": "pause", "for_secs": s}),
        None => json!({"v": protocol::VERSION, "op": "pause"}),
    };
    let until = secs.map(|s| pause::now_ms().saturating_add(s.saturating_mul(1000) as i64));
    match protocol::request(&home.join(STATUS_SOCKET), request)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
    {
        Some(_) => println!("syncing paused{}", until_text(until)),
        None => {
            pause::save(home, PauseState::paused(until))?;
            println!(
                "no daemon is running: syncing stays paused{} from its next start",
                until_text(until)
            );
        }
    }
    Ok(())
}

/// `stacksync resume`.
pub async fn resume(home: &Path) -> anyhow::Result<()> {
    Profile::load(home)?;
    let request = json!({"v": protocol::VERSION, "op": "resume"});
    match protocol::request(&home.join(STATUS_SOCKET), request)
        .await
        .map_err(|e| anyhow::anyhow!(e))?
    {
        Some(_) => println!("syncing resumed"),
        None => {
            pause::save(home, PauseState::default())?;
            println!("no daemon is running: it syncs from its next start");
        }
    }
    Ok(())
}

fn until_text(until: Option<i64>) -> String {
    match until {
        Some(ms) => format!(" until {} UTC", stacksync_engine::conflict::format_utc(ms)),
        None => " until `stacksync resume`".into(),
    }
}

/// `stacksync notifications [--conflicts on|off] [--invitations on|off]
/// [--errors on|off]`: changes what is given, then shows the settings.
pub fn notifications(
    home: &Path,
    conflicts: Option<OnOff>,
    invitations: Option<OnOff>,
    errors: Option<OnOff>,
) -> anyhow::Result<()> {
    let mut profile = Profile::load(home)?;
    let n = &mut profile.config.notifications;
    let on = |v: OnOff| v == OnOff::On;
    let before = *n;
    if let Some(v) = conflicts {
        n.conflicts = on(v);
    }
    if let Some(v) = invitations {
        n.invitations = on(v);
    }
    if let Some(v) = errors {
        n.errors = on(v);
    }
    if *n != before {
        profile.save()?;
    }
    let n = profile.config.notifications;
    let word = |b: bool| if b { "on" } else { "off" };
    println!("conflicts    {}", word(n.conflicts));
    println!("invitations  {}", word(n.invitations));
    println!("errors       {}", word(n.errors));
    Ok(())
}

/// One file the integration installs: where (under the user's data
/// folder) and what.
struct Installed {
    path: &'static str,
    text: &'static str,
}

const COMMON: &str = include_str!("../../../integrations/stacksync_common.py");
const EMBLEMS: [(&str, &str); 6] = [
    (
        "emblem-stacksync-synced.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-synced.svg"),
    ),
    (
        "emblem-stacksync-syncing.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-syncing.svg"),
    ),
    (
        "emblem-stacksync-pending.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-pending.svg"),
    ),
    (
        "emblem-stacksync-conflict.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-conflict.svg"),
    ),
    (
        "emblem-stacksync-error.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-error.svg"),
    ),
    (
        "emblem-stacksync-ignored.svg",
        include_str!("../../../integrations/icons/emblem-stacksync-ignored.svg"),
    ),
];

/// A file manager: its name, the program, the Python extension host's
/// module (as Debian ships it) and its extension folder.
struct Manager {
    name: &'static str,
    program: &'static str,
    host_package: &'static str,
    host_lib: &'static [&'static str],
    folder: &'static str,
    shim: Installed,
}

const MANAGERS: [Manager; 3] = [
    Manager {
        name: "Nautilus (GNOME Files)",
        program: "nautilus",
        host_package: "python3-nautilus",
        host_lib: &["nautilus/extensions-4/libnautilus-python.so"],
        folder: "nautilus-python/extensions",
        shim: Installed {
            path: "stacksync_nautilus.py",
            text: include_str!("../../../integrations/nautilus/stacksync_nautilus.py"),
        },
    },
    Manager {
        name: "Nemo",
        program: "nemo",
        host_package: "nemo-python",
        host_lib: &["nemo/extensions-3.0/libnemo-python.so"],
        folder: "nemo-python/extensions",
        shim: Installed {
            path: "stacksync_nemo.py",
            text: include_str!("../../../integrations/nemo/stacksync_nemo.py"),
        },
    },
    Manager {
        name: "Caja",
        program: "caja",
        host_package: "python3-caja",
        host_lib: &["caja/extensions-2.0/libcaja-python.so"],
        folder: "caja-python/extensions",
        shim: Installed {
            path: "stacksync_caja.py",
            text: include_str!("../../../integrations/caja/stacksync_caja.py"),
        },
    },
];

/// The user's data folder (`$XDG_DATA_HOME`, else `~/.local/share`).
fn data_home() -> anyhow::Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("XDG_DATA_HOME") {
        return Ok(PathBuf::from(d));
    }
    let home = var("HOME").context("HOME is not set")?;
    Ok(PathBuf::from(home).join(".local").join("share"))
}

/// The user's autostart folder (`$XDG_CONFIG_HOME/autostart`, else
/// `~/.config/autostart`), where the tray's entry goes.
fn autostart_entry() -> anyhow::Result<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let config = match var("XDG_CONFIG_HOME") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(var("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(config.join("autostart").join("stacksync-tray.desktop"))
}

/// The autostart entry that starts `stacksync tray` with the session,
/// with this binary and (when set) this client's `STACKSYNC_HOME`.
#[cfg(feature = "tray")]
fn tray_entry() -> anyhow::Result<String> {
    // The Exec key's quoting (Desktop Entry Specification): arguments in
    // double quotes, with `"`, `` ` ``, `$` and `\` escaped.
    let quote = |arg: &str| {
        let mut q = String::from("\"");
        for c in arg.chars() {
            if matches!(c, '"' | '`' | '$' | '\\') {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q.replace('%', "%%")
    };
    let exe = std::env::current_exe().context("finding this program")?;
    let exe = exe.to_str().context("this program's path is not UTF-8")?;
    let mut exec = String::new();
    if let Some(home) = std::env::var_os("STACKSYNC_HOME").filter(|v| !v.is_empty()) {
        let home = std::path::absolute(PathBuf::from(home))?;
        let home = home.to_str().context("STACKSYNC_HOME is not UTF-8")?;
        exec.push_str(&format!(
            "env {} ",
            quote(&format!("STACKSYNC_HOME={home}"))
        ));
    }
    exec.push_str(&format!("{} tray", quote(exe)));
    Ok(format!(
        "[Desktop Entry]\nType=Application\nName=StackSync\n\
         Comment=Shows whether your files are synced, in the tray\n\
         Exec={exec}\nIcon=emblem-stacksync-synced\nTerminal=false\n\
         X-GNOME-Autostart-enabled=true\n"
    ))
}

fn emblem_dir(data: &Path) -> PathBuf {
    data.join("icons/hicolor/scalable/emblems")
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn host_present(m: &Manager) -> bool {
    [
        "/usr/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .any(|lib| {
        m.host_lib
            .iter()
            .any(|rel| Path::new(lib).join(rel).is_file())
    })
}

fn write_file(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn remove_file(path: &Path) -> anyhow::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// `stacksync integrate ...`.
pub fn integrate(what: IntegrateCommand) -> anyhow::Result<()> {
    let data = data_home()?;
    match what {
        IntegrateCommand::Install => {
            for m in &MANAGERS {
                let dir = data.join(m.folder);
                write_file(&dir.join("stacksync_common.py"), COMMON)?;
                write_file(&dir.join(m.shim.path), m.shim.text)?;
                println!("installed {}", dir.join(m.shim.path).display());
            }
            for (name, text) in EMBLEMS {
                write_file(&emblem_dir(&data).join(name), text)?;
            }
            println!("installed the emblems in {}", emblem_dir(&data).display());
            #[cfg(feature = "tray")]
            {
                let entry = autostart_entry()?;
                write_file(&entry, &tray_entry()?)?;
                println!(
                    "installed {} (the tray starts with your session; now: `stacksync tray &`)",
                    entry.display()
                );
            }
            let missing: Vec<&str> = MANAGERS
                .iter()
                .filter(|m| on_path(m.program) && !host_present(m))
                .map(|m| m.host_package)
                .collect();
            if !missing.is_empty() {
                println!(
                    "to load them, install {} (then restart the file manager, e.g. `nautilus -q`)",
                    missing.join(", ")
                );
            } else {
                println!("restart the file manager to load them (e.g. `nautilus -q`)");
            }
            Ok(())
        }
        IntegrateCommand::Remove => {
            for m in &MANAGERS {
                let dir = data.join(m.folder);
                if remove_file(&dir.join(m.shim.path))? {
                    println!("removed {}", dir.join(m.shim.path).display());
                }
                remove_file(&dir.join("stacksync_common.py"))?;
            }
            for (name, _) in EMBLEMS {
                remove_file(&emblem_dir(&data).join(name))?;
            }
            // Whatever this build: an entry left by a build with the tray
            // would start a command this one may not have.
            if let Ok(entry) = autostart_entry()
                && remove_file(&entry)?
            {
                println!("removed {}", entry.display());
            }
            println!("removed; restart the file manager to unload them");
            Ok(())
        }
        IntegrateCommand::Status => {
            for m in &MANAGERS {
                let installed = data.join(m.folder).join(m.shim.path);
                let current = std::fs::read_to_string(&installed).is_ok_and(|t| t == m.shim.text)
                    && std::fs::read_to_string(data.join(m.folder).join("stacksync_common.py"))
                        .is_ok_and(|t| t == COMMON);
                println!(
                    "{:<24} file manager: {:<11} extension host ({}): {:<11} extension: {}",
                    m.name,
                    if on_path(m.program) {
                        "present"
                    } else {
                        "not found"
                    },
                    m.host_package,
                    if host_present(m) {
                        "present"
                    } else {
                        "not found"
                    },
                    if current {
                        "installed"
                    } else if installed.exists() {
                        "installed (another version: run `stacksync integrate install`)"
                    } else {
                        "not installed"
                    }
                );
            }
            let emblems = EMBLEMS
                .iter()
                .all(|(name, _)| emblem_dir(&data).join(name).is_file());
            println!(
                "emblems: {}",
                if emblems {
                    "installed"
                } else {
                    "not installed"
                }
            );
            #[cfg(feature = "tray")]
            println!(
                "tray: {}",
                if autostart_entry()?.is_file() {
                    "starts with the session"
                } else {
                    "not started with the session (`stacksync integrate install`)"
                }
            );
            #[cfg(not(feature = "tray"))]
            println!("tray: not in this build (cargo feature `tray`)");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs()).ok();
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("30m"), Some(1800));
        assert_eq!(secs("2h"), Some(7200));
        assert_eq!(secs("1h30m"), Some(5400));
        assert_eq!(secs("1d"), Some(86_400));
        assert_eq!(secs("15"), Some(900), "a bare number is minutes");
        for bad in ["", "h", "10x", "1h30", "0m", "-5m"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }
}
