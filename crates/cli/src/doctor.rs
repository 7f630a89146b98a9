//! `stacksync doctor`: checks that the pieces an installation or a device
//! depends on work, each reported as OK, WARN or FAIL with what to do about
//! it; exits non-zero if any check fails.
//!
//! With `--config FILE` (server builds) it checks the server the file
//! describes (`admin_doctor.rs`); without, this device's client profile
//! (`STACKSYNC_HOME`): the server answers, the session is valid, the synced
//! folder exists and is writable, the inotify watch limit covers its
//! folders, and the disk has room. Nothing is changed but a probe file
//! created and removed in the folders checked for writing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use serde_json::json;
use stacksync_client::Profile;
use stacksync_gateway_client::{GatewayClient, RetryPolicy, Session};
use stacksync_proto::ErrorKind;
use stacksync_proto::rpc::{Reply, Request};

use crate::admin_output::human_bytes;

/// Milliseconds since the epoch on this machine's clock.
#[cfg(feature = "server")]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Where Linux says how many inotify watches a user may hold.
const INOTIFY_LIMIT_FILE: &str = "/proc/sys/fs/inotify/max_user_watches";
/// Below this much free space a sync will soon fail.
const FREE_FAIL: u64 = 100 << 20;
/// Below this much free space, warn.
const FREE_WARN: u64 = 1 << 30;
/// How long one network check may take.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// `stacksync doctor`.
#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// Checks the server installation this configuration file describes
    /// (database, migrations, bus, storage, clock, data folder) instead of
    /// this device's client.
    #[cfg(feature = "server")]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print one JSON object: `{"ok": bool, "checks": [{"name", "status",
    /// "message"}]}`.
    #[arg(long)]
    pub json: bool,
    /// The file holding the inotify watch limit (for tests).
    #[arg(
        long,
        hide = true,
        env = "STACKSYNC_DOCTOR_INOTIFY_LIMIT_FILE",
        default_value = INOTIFY_LIMIT_FILE
    )]
    pub inotify_limit_file: PathBuf,
    /// Free bytes to assume on the synced folder's disk (for tests).
    #[arg(long, hide = true, env = "STACKSYNC_DOCTOR_FREE_BYTES")]
    pub free_bytes: Option<u64>,
}

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Works, but something should be looked at.
    Warn,
    /// Does not work.
    Fail,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One check's outcome: what was checked, how it went, and what to do.
#[derive(Debug, Clone)]
pub struct Check {
    /// A short name (`database`, `inotify`, ...).
    pub name: &'static str,
    /// How it went.
    pub status: Status,
    /// What was found and, unless OK, what to do about it.
    pub message: String,
}

/// The checks of one run, in order.
#[derive(Debug, Default)]
pub struct Report(pub Vec<Check>);

impl Report {
    /// Records a check.
    pub fn add(&mut self, name: &'static str, status: Status, message: impl Into<String>) {
        self.0.push(Check {
            name,
            status,
            message: message.into(),
        });
    }

    fn failures(&self) -> usize {
        self.0.iter().filter(|c| c.status == Status::Fail).count()
    }

    fn print(&self, json: bool) {
        if json {
            let checks: Vec<_> = self
                .0
                .iter()
                .map(|c| json!({"name": c.name, "status": c.status.as_str(), "message": c.message}))
                .collect();
            println!("{}", json!({"ok": self.failures() == 0, "checks": checks}));
            return;
        }
        for c in &self.0 {
            let tag = match c.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            let mut lines = c.message.lines();
            println!("{tag}  {}: {}", c.name, lines.next().unwrap_or(""));
            for more in lines {
                println!("      {more}");
            }
        }
    }
}

/// Runs the checks the arguments ask for, prints them, and fails if any
/// check failed.
pub async fn run(args: DoctorArgs) -> anyhow::Result<()> {
    #[cfg(feature = "server")]
    let report = match &args.config {
        Some(file) => crate::admin_doctor::check_server(file).await,
        None => check_client(&args).await,
    };
    #[cfg(not(feature = "server"))]
    let report = check_client(&args).await;
    report.print(args.json);
    match report.failures() {
        0 => Ok(()),
        n => bail!("{n} check(s) failed"),
    }
}

async fn check_client(args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    let profile = match Profile::home_from_env().and_then(|home| Profile::load(&home)) {
        Ok(p) => p,
        Err(e) => {
            report.add(
                "profile",
                Status::Fail,
                format!("{e:#}\nset STACKSYNC_HOME to the client's home, or run `stacksync setup`"),
            );
            return report;
        }
    };
    report.add(
        "profile",
        Status::Ok,
        format!(
            "{} on {} ({})",
            profile.config.email,
            profile.config.server_url,
            profile.home().display()
        ),
    );
    check_server_and_session(&profile, &mut report).await;
    let folder = profile.config.folder.clone();
    if check_writable_folder(&folder, &mut report) {
        check_inotify(&folder, &args.inotify_limit_file, &mut report);
        check_free_space(&folder, args.free_bytes, &mut report);
    }
    report
}

/// One request with the stored session: any answer shows the server is
/// reachable; only a refusal of the session says it ended.
async fn check_server_and_session(profile: &Profile, report: &mut Report) {
    let url = &profile.config.server_url;
    let token = match profile.load_token() {
        Ok(t) => t,
        Err(e) => {
            report.add("session", Status::Fail, format!("{e:#}"));
            return;
        }
    };
    let session = Session {
        // Without a token the server still answers (refusing it).
        token: token.clone().unwrap_or_else(|| "0".repeat(64)),
        user: profile.config.user_id,
        expires_at: 0,
    };
    let client = match GatewayClient::with_session(url, session) {
        Ok(c) => c.with_retry(RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }),
        Err(e) => {
            report.add(
                "server",
                Status::Fail,
                format!(
                    "{e}\nfix server_url in {}",
                    profile.home().join("profile.toml").display()
                ),
            );
            return;
        }
    };
    let answer = tokio::time::timeout(CHECK_TIMEOUT, client.rpc(Request::GetAccount)).await;
    let answer = match answer {
        Ok(a) => a,
        Err(_) => Err(stacksync_proto::Error::unavailable(format!(
            "no answer within {}s",
            CHECK_TIMEOUT.as_secs()
        ))),
    };
    let unreachable = |e: &stacksync_proto::Error| {
        format!(
            "cannot reach {url}: {e}\nis the server running and reachable from here (proxy, \
             firewall)? Is server_url right in {}?",
            profile.home().join("profile.toml").display()
        )
    };
    match &answer {
        Err(e) if e.kind == ErrorKind::Unavailable => {
            report.add("server", Status::Fail, unreachable(e));
            report.add(
                "session",
                Status::Warn,
                "not checked: the server cannot be reached",
            );
            return;
        }
        _ => report.add("server", Status::Ok, format!("{url} answers")),
    }
    let relogin = "log in again: `stacksync login --password ...` (or STACKSYNC_PASSWORD)";
    match (token, answer) {
        (None, _) => report.add(
            "session",
            Status::Fail,
            format!("this device is not logged in\n{relogin}"),
        ),
        (Some(_), Ok(Reply::Account(a))) => {
            report.add("session", Status::Ok, format!("logged in as {}", a.email));
        }
        (Some(_), Ok(other)) => report.add(
            "session",
            Status::Warn,
            format!("the server answered the account request with {other:?}"),
        ),
        (Some(_), Err(e)) if e.kind == ErrorKind::Unauthenticated => report.add(
            "session",
            Status::Fail,
            format!("the session has ended or expired ({e})\n{relogin}"),
        ),
        (Some(_), Err(e)) => report.add(
            "session",
            Status::Fail,
            format!("the server refused the account request: {e}"),
        ),
    }
}

/// Whether `folder` is a folder this process can write in (a probe file
/// is created and removed).
fn check_writable_folder(folder: &Path, report: &mut Report) -> bool {
    if !folder.is_dir() {
        report.add(
            "folder",
            Status::Fail,
            format!(
                "the synced folder {} does not exist (the client stops rather than taking that \
                 as \"everything was deleted\")\nput it back (e.g. mount its disk), or choose \
                 another with `stacksync setup --force --dir ...`",
                folder.display()
            ),
        );
        return false;
    }
    let probe = folder.join(format!(".stacksync-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            report.add(
                "folder",
                Status::Ok,
                format!("{} exists and is writable", folder.display()),
            );
            true
        }
        Err(e) => {
            report.add(
                "folder",
                Status::Fail,
                format!(
                    "cannot write in the synced folder {}: {e}\ngive this user write access \
                     (e.g. `chown -R $USER {}`), or check that its disk is not mounted read-only",
                    folder.display(),
                    folder.display()
                ),
            );
            false
        }
    }
}

/// Folders under `root` (itself included), not following symbolic links:
/// the watcher holds one inotify watch per folder.
fn count_folders(root: &Path) -> u64 {
    let mut count = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        count += 1;
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    count
}

/// The limit to recommend for `folders` folders: twice as many (other
/// programs watch too, and the tree grows), at least Linux's usual 524288.
pub fn recommended_watches(folders: u64) -> u64 {
    folders.saturating_mul(2).next_power_of_two().max(524_288)
}

fn check_inotify(folder: &Path, limit_file: &Path, report: &mut Report) {
    let limit = std::fs::read_to_string(limit_file)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let Some(limit) = limit else {
        report.add(
            "inotify",
            Status::Warn,
            format!(
                "cannot read the inotify watch limit from {} (not Linux?); changes are then \
                 found by the periodic rescan only",
                limit_file.display()
            ),
        );
        return;
    };
    let folders = count_folders(folder);
    let n = recommended_watches(folders);
    let fix = format!(
        "raise it now: sudo sysctl fs.inotify.max_user_watches={n}\n\
         and keep it after a reboot with this line in /etc/sysctl.d/90-stacksync.conf:\n\
         fs.inotify.max_user_watches={n}"
    );
    let found = format!("the inotify watch limit is {limit} for {folders} folder(s)");
    if limit < folders {
        report.add(
            "inotify",
            Status::Fail,
            format!("{found}: changes in some folders will be missed until a rescan\n{fix}"),
        );
    } else if limit < folders.saturating_mul(2) {
        report.add(
            "inotify",
            Status::Warn,
            format!("{found}: little room for other programs and new folders\n{fix}"),
        );
    } else {
        report.add("inotify", Status::Ok, found);
    }
}

/// Free bytes on the file system holding `path`, from POSIX `df -Pk`.
fn free_bytes(path: &Path) -> Result<u64, String> {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .map_err(|e| format!("running df: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // Filesystem 1024-blocks Used Available Capacity Mounted-on
    text.lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|a| a.parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("cannot read df's answer {text:?}"))
}

fn check_free_space(folder: &Path, given: Option<u64>, report: &mut Report) {
    let free = match given.map_or_else(|| free_bytes(folder), Ok) {
        Ok(f) => f,
        Err(e) => {
            report.add(
                "disk",
                Status::Warn,
                format!("cannot tell the free space of {}: {e}", folder.display()),
            );
            return;
        }
    };
    let found = format!(
        "{} free on the disk of {}",
        human_bytes(free),
        folder.display()
    );
    let fix = "free some space (empty the trash, remove large files) or move the synced folder \
               to a larger disk";
    if free < FREE_FAIL {
        report.add(
            "disk",
            Status::Fail,
            format!("{found}: downloads will fail\n{fix}"),
        );
    } else if free < FREE_WARN {
        report.add("disk", Status::Warn, format!("{found}: running low\n{fix}"));
    } else {
        report.add("disk", Status::Ok, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_limits() {
        assert_eq!(recommended_watches(10), 524_288);
        assert_eq!(recommended_watches(300_000), 1_048_576);
    }

    #[test]
    fn folders_are_counted_with_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        std::fs::write(dir.path().join("c/file"), b"x").unwrap();
        assert_eq!(count_folders(dir.path()), 4);
    }
}
