//! `stacksync doctor --config FILE`: the server side's checks. The data
//! folder's modes; the metadata database (reached, migrations applied,
//! none unknown) read without migrating it; the bus; the blob store (Swift:
//! credentials and every container's ACL against its members' grants);
//! the clock against the database's and Swift's. Nothing is changed but a
//! probe file created and removed in the folders checked for writing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use stacksync_blobstore::{BlobErrorKind, SwiftAuth, SwiftConfig, SwiftStore};
use stacksync_bus::{Bus, BusConfig, MemoryConfig, QueueKind};
use stacksync_metastore::{DatabaseProbe, MetaStore};
use stacksync_service::{Service, ServiceConfig};

use crate::config::{BusKind, Config, QueueKindName, StorageKind};
use crate::doctor::{CHECK_TIMEOUT, Report, Status};

/// Clocks further apart than this break session expiry and OAuth
/// timestamps.
const MAX_SKEW: Duration = Duration::from_secs(30);

/// Runs every server check on the configuration in `file`.
pub async fn check_server(file: &Path) -> Report {
    let mut report = Report::default();
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => {
            report.add(
                "config",
                Status::Fail,
                format!("{e:#}\nfix the file (every key is in the README's configuration section)"),
            );
            return report;
        }
    };
    report.add("config", Status::Ok, format!("{} read", file.display()));
    let data_dir = match config.data_dir() {
        Ok(d) => d,
        Err(e) => {
            report.add("data folder", Status::Fail, format!("{e:#}\nset data_dir"));
            return report;
        }
    };
    check_private_folder("data folder", &data_dir, &mut report);
    let url = config.database_url(&data_dir);
    let probe = check_database(&url, &mut report).await;
    if let Some(p) = &probe {
        check_clock("database", p.now_ms - crate::doctor::now_ms(), &mut report);
    }
    check_bus(&config, &mut report).await;
    match config.storage.kind {
        StorageKind::Local => {
            let root = config
                .storage
                .root
                .clone()
                .unwrap_or_else(|| data_dir.join("blobs"));
            check_private_folder("blob folder", &root, &mut report);
        }
        StorageKind::Swift => match &config.storage.swift {
            None => report.add(
                "swift",
                Status::Fail,
                "storage kind \"swift\" without a [storage.swift] section\nadd one (see the README)",
            ),
            Some(swift) => {
                let migrated = probe.as_ref().is_some_and(|p| {
                    p.migrations.pending.is_empty()
                        && p.migrations.unknown.is_empty()
                        && p.migrations.failed.is_empty()
                });
                check_swift(swift, migrated.then_some(url.as_str()), &mut report).await;
            }
        },
    }
    report
}

/// `url` without its password, for messages.
fn shown_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, rest)), Some((_, host))) if rest.contains('@') => {
            let user = rest.split(['@', ':']).next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        _ => url.to_owned(),
    }
}

/// A folder that must exist, be writable and be private (0700).
fn check_private_folder(name: &'static str, dir: &Path, report: &mut Report) {
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            report.add(
                name,
                Status::Fail,
                format!(
                    "{} is not a folder\nfix data_dir (or [storage] root)",
                    dir.display()
                ),
            );
            return;
        }
        Err(e) => {
            report.add(
                name,
                Status::Fail,
                format!(
                    "{}: {e}\ncheck data_dir (or [storage] root); the server creates it on its \
                     first start if its parent is writable",
                    dir.display()
                ),
            );
            return;
        }
    };
    let probe = dir.join(format!(".stacksync-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        report.add(
            name,
            Status::Fail,
            format!(
                "cannot write in {}: {e}\nrun the server (and this check) as the user owning it, \
                 or `chown -R` it to that user",
                dir.display()
            ),
        );
        return;
    }
    let _ = std::fs::remove_file(&probe);
    let mut open = Vec::new();
    if meta.permissions().mode() & 0o077 != 0 {
        open.push(format!(
            "{} (mode {:o})",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(m) = entry.metadata()
            && m.is_file()
            && m.permissions().mode() & 0o077 != 0
        {
            open.push(format!(
                "{} (mode {:o})",
                entry.path().display(),
                m.permissions().mode() & 0o777
            ));
        }
    }
    if open.is_empty() {
        report.add(
            name,
            Status::Ok,
            format!("{} is writable and private", dir.display()),
        );
    } else {
        report.add(
            name,
            Status::Warn,
            format!(
                "other users may read: {}\nit holds password hashes and everyone's file names: \
                 `chmod -R go-rwx {}` (the server also repairs this when it starts)",
                open.join(", "),
                dir.display()
            ),
        );
    }
}

/// Reaches the database and reads its migrations; `None` if unreachable.
async fn check_database(url: &str, report: &mut Report) -> Option<DatabaseProbe> {
    if let Some(file) = Config::sqlite_file(url)
        && !file.exists()
    {
        report.add(
            "database",
            Status::Fail,
            format!(
                "the SQLite database {} does not exist\ncheck data_dir and [database] url; the \
                 server creates it on its first start",
                file.display()
            ),
        );
        return None;
    }
    let probe = match stacksync_metastore::probe(url, CHECK_TIMEOUT).await {
        Ok(p) => p,
        Err(e) => {
            report.add(
                "database",
                Status::Fail,
                format!(
                    "cannot use the metadata database {}: {e}\ncheck [database] url (or \
                     STACKSYNC_DATABASE_URL): host, port, database name, user and password, and \
                     that the database server runs and accepts connections from here",
                    shown_url(url)
                ),
            );
            return None;
        }
    };
    report.add(
        "database",
        Status::Ok,
        format!("{:?} at {} answers", probe.backend, shown_url(url)),
    );
    let m = &probe.migrations;
    if !m.unknown.is_empty() || !m.failed.is_empty() {
        let mut what = Vec::new();
        if !m.unknown.is_empty() {
            what.push(format!(
                "migration(s) {:?} are applied but unknown to this binary: the database was used \
                 by a newer StackSync; run that version (or newer) instead",
                m.unknown
            ));
        }
        if !m.failed.is_empty() {
            what.push(format!(
                "migration(s) {:?} failed part-way: restore the database from its backup and \
                 start the server again",
                m.failed
            ));
        }
        report.add("migrations", Status::Fail, what.join("\n"));
    } else if !m.pending.is_empty() {
        let names: Vec<String> = m
            .pending
            .iter()
            .map(|(v, d)| format!("{v:04} {d}"))
            .collect();
        report.add(
            "migrations",
            Status::Warn,
            format!(
                "{} migration(s) pending: {}\nthe server applies them when it next starts; back \
                 the database up first",
                names.len(),
                names.join(", ")
            ),
        );
    } else {
        report.add(
            "migrations",
            Status::Ok,
            format!("up to date ({} applied)", m.applied.len()),
        );
    }
    Some(probe)
}

/// Reports how far `skew_ms` (theirs minus ours) sets the clocks apart.
fn check_clock(against: &str, skew_ms: i64, report: &mut Report) {
    let secs = skew_ms.unsigned_abs() / 1000;
    if skew_ms.unsigned_abs() > MAX_SKEW.as_millis() as u64 {
        let side = if skew_ms > 0 { "behind" } else { "ahead of" };
        report.add(
            "clock",
            Status::Fail,
            format!(
                "this machine's clock is {secs} s {side} the {against}'s (more than {} s): \
                 sessions and OAuth timestamps go wrong\nsynchronise both with NTP (e.g. \
                 `timedatectl set-ntp true`, chrony)",
                MAX_SKEW.as_secs()
            ),
        );
    } else {
        report.add(
            "clock",
            Status::Ok,
            format!("within {secs} s of the {against}'s"),
        );
    }
}

async fn check_bus(config: &Config, report: &mut Report) {
    if config.bus.kind == BusKind::InProcess {
        report.add(
            "bus",
            Status::Ok,
            "in-process (one server process; nothing to reach)",
        );
        return;
    }
    let Some(url) = config.bus.url.clone() else {
        report.add(
            "bus",
            Status::Fail,
            "bus kind \"rabbitmq\" without a url\nset [bus] url (or STACKSYNC_BUS_URL)",
        );
        return;
    };
    // As the server connects (`server::open_bus`): the same topology is
    // declared, so a mismatch the server would hit shows here too.
    let mut bc = BusConfig::new(url.clone(), config.bus.namespace.clone());
    bc.queue_kind = match config.bus.queue_kind {
        QueueKindName::Classic => QueueKind::Classic,
        QueueKindName::Durable => QueueKind::Durable,
        QueueKindName::Quorum => QueueKind::Quorum,
    };
    match tokio::time::timeout(CHECK_TIMEOUT, Bus::rabbitmq(bc)).await {
        Ok(Ok(_bus)) => report.add(
            "bus",
            Status::Ok,
            format!("RabbitMQ at {} answers", shown_url(&url)),
        ),
        Ok(Err(e)) => report.add(
            "bus",
            Status::Fail,
            format!(
                "cannot use RabbitMQ at {}: {e}\ncheck [bus] url (host, port, user, password, \
                 vhost), queue_kind, and that the broker runs",
                shown_url(&url)
            ),
        ),
        Err(_) => report.add(
            "bus",
            Status::Fail,
            format!(
                "RabbitMQ at {} did not answer within {} s\ncheck [bus] url and the network",
                shown_url(&url),
                CHECK_TIMEOUT.as_secs()
            ),
        ),
    }
}

fn swift_login(auth: &SwiftAuth) -> (String, String) {
    match auth {
        SwiftAuth::V1 { auth_url, user, .. } | SwiftAuth::KeystoneV3 { auth_url, user, .. } => {
            (auth_url.clone(), user.clone())
        }
    }
}

/// Logs in to Swift; with `database` (migrated), also checks every
/// container's ACL and Swift's clock.
async fn check_swift(config: &SwiftConfig, database: Option<&str>, report: &mut Report) {
    let (auth_url, user) = swift_login(&config.auth);
    let mut quick = config.clone();
    // One attempt: a doctor reports, it does not ride out an outage.
    quick.retry.max_attempts = 1;
    let store = match SwiftStore::new(quick) {
        Ok(s) => s,
        Err(e) => {
            report.add("swift", Status::Fail, format!("{e}"));
            return;
        }
    };
    match tokio::time::timeout(CHECK_TIMEOUT, store.connect()).await {
        Ok(Ok(())) => report.add(
            "swift",
            Status::Ok,
            format!("logged in to {auth_url} as {user}"),
        ),
        Ok(Err(e))
            if matches!(
                e.kind,
                BlobErrorKind::Unauthenticated | BlobErrorKind::Forbidden
            ) =>
        {
            report.add(
                "swift",
                Status::Fail,
                format!(
                    "Swift refused the credentials of [storage.swift.auth] (user {user} at \
                     {auth_url}): {e}\ncheck user and key (or password and project)"
                ),
            );
            return;
        }
        Ok(Err(e)) => {
            report.add(
                "swift",
                Status::Fail,
                format!(
                    "cannot log in to Swift at {auth_url}: {e}\ncheck [storage.swift.auth] \
                     auth_url and that the proxy runs"
                ),
            );
            return;
        }
        Err(_) => {
            report.add(
                "swift",
                Status::Fail,
                format!(
                    "Swift at {auth_url} did not answer within {} s",
                    CHECK_TIMEOUT.as_secs()
                ),
            );
            return;
        }
    }
    if let Some(date) = swift_date(&auth_url).await {
        check_clock("Swift proxy", date - crate::doctor::now_ms(), report);
    }
    let Some(url) = database else {
        report.add(
            "swift acl",
            Status::Warn,
            "not checked: the database is unreachable or not migrated",
        );
        return;
    };
    let audit = async {
        let store = MetaStore::connect(url).await?;
        let service = Service::new(
            store.clone(),
            Arc::new(SwiftStore::new(config.clone())?),
            Bus::in_process(MemoryConfig::default()),
            ServiceConfig::default(),
        );
        let found = service.audit_storage_acls().await;
        store.close().await;
        anyhow::Ok(found?)
    };
    match audit.await {
        Err(e) => report.add(
            "swift acl",
            Status::Fail,
            format!("cannot read the containers' ACLs: {e:#}"),
        ),
        Ok(found) if found.is_empty() => report.add(
            "swift acl",
            Status::Ok,
            "every container grants exactly what its members' places allow",
        ),
        Ok(found) => {
            let too_much = found.iter().any(|m| m.grants_too_much());
            let lines: Vec<String> = found
                .iter()
                .map(|m| {
                    let mut parts = Vec::new();
                    for (list, what) in [
                        (&m.missing_read, "lacks read for"),
                        (&m.missing_write, "lacks write for"),
                        (&m.unexpected_read, "grants read to non-members"),
                        (
                            &m.unexpected_write,
                            "grants write beyond members' places to",
                        ),
                    ] {
                        if !list.is_empty() {
                            parts.push(format!("{what} {}", list.join(", ")));
                        }
                    }
                    format!(
                        "container {} (workspace {}): {}",
                        m.container,
                        m.workspace,
                        parts.join("; ")
                    )
                })
                .collect();
            report.add(
                "swift acl",
                if too_much { Status::Fail } else { Status::Warn },
                format!(
                    "{}\nto re-grant a user's places: `stacksync admin user storage-user EMAIL \
                     SWIFT_USER`; to take an ACL entry back: `swift post -r/-w '<list>' CONTAINER` \
                     as the installation's Swift account",
                    lines.join("\n")
                ),
            );
        }
    }
}

/// The `Date` of the Swift proxy's answer to `GET /info` (plain HTTP only:
/// the clock is compared with the database's anyway).
async fn swift_date(auth_url: &str) -> Option<i64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = auth_url.strip_prefix("http://")?;
    let host = rest.split('/').next()?;
    let addr = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    };
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(&addr).await.ok()?;
        let request = format!("GET /info HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut head = vec![0u8; 8192];
        let n = conn.read(&mut head).await.ok()?;
        let text = String::from_utf8_lossy(&head[..n]).into_owned();
        text.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("date")
                    .then(|| value.trim().to_owned())
            })
            .and_then(|d| http_date_ms(&d))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// `Sun, 06 Dec 2026 17:38:47 GMT` as milliseconds since the epoch.
fn http_date_ms(s: &str) -> Option<i64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, _] = parts.as_slice() else {
        return None;
    };
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|x| x == month)? as i64 + 1;
    let (d, y): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
    let [hh, mm, ss] = hms.as_slice() else {
        return None;
    };
    // Days since the epoch of a civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse() {
        assert_eq!(http_date_ms("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date_ms("Mon, 07 Dec 2026 00:00:01 GMT"),
            Some(1_796_601_601_000)
        );
        assert_eq!(
            http_date_ms("Tue, 29 Feb 2000 00:00:00 GMT"),
            Some(951_782_400_000)
        );
        assert_eq!(http_date_ms("yesterday"), None);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            shown_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app@db:5432/x"
        );
        assert_eq!(
            shown_url("sqlite:///d/meta.sqlite"),
            "sqlite:///d/meta.sqlite"
        );
    }
}
