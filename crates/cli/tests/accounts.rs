//! Accounts end to end with the real binary: logout (here and
//! everywhere), password change, admin disable / enable / remove /
//! reset-password, passwords read from standard input or a file, and the
//! modes of the client's home and the server's data folder (finding 12:
//! sessions that cannot be revoked; finding 14: world-readable files).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{BIN, Backend, Client, Cluster, eventually};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sync --once` must fail and tell the user to log in again.
fn assert_must_log_in_again(c: &Client) {
    let out = c.run(&["sync", "--once"]);
    assert!(!out.status.success(), "{}: sync worked", c.name);
    let err = stderr(&out);
    assert!(err.contains("log in again"), "{}: {err}", c.name);
}

/// Runs `cmd` with `input` on its standard input.
fn with_stdin(mut cmd: std::process::Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input.as_bytes())
        .expect("stdin takes the input");
    child.wait_with_output().expect("the command ends")
}

fn admin(cluster: &Cluster, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["admin", "--config"])
        .arg(&cluster.config)
        .arg("user")
        .args(args)
        .env("RUST_LOG", "warn");
    cmd
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Finding 12: logout ends this device's session only; logout everywhere
/// and a password change end the others'; each refused client is told to
/// log in again, and logging in again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_and_password_change_end_sessions() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.com", None);
    let laptop = cluster.client("laptop", &email);
    let phone = cluster.client("phone", &email);
    laptop.write("a.txt", b"a");
    laptop.sync();

    ok(laptop.run(&["logout"]), "logout");
    assert!(!laptop.home.join("session.token").exists());
    assert_must_log_in_again(&laptop);
    phone.sync();
    assert_eq!(phone.read("a.txt"), b"a", "the other device is still in");

    ok(
        laptop.run(&["login", "--password", "secret-pw"]),
        "login after logout",
    );
    laptop.sync();
    ok(
        phone.run(&["logout", "--everywhere"]),
        "logout --everywhere",
    );
    assert_must_log_in_again(&laptop);
    assert_must_log_in_again(&phone);

    ok(laptop.run(&["login", "--password", "secret-pw"]), "login");
    let stale = std::fs::read_to_string(laptop.home.join("session.token")).unwrap();
    ok(phone.run(&["login", "--password", "secret-pw"]), "login");
    // A new login ends the session it replaces.
    ok(
        laptop.run(&["login", "--password", "secret-pw"]),
        "re-login",
    );
    let fresh = std::fs::read_to_string(laptop.home.join("session.token")).unwrap();
    assert_ne!(stale, fresh);
    std::fs::write(laptop.home.join("session.token"), &stale).unwrap();
    assert_must_log_in_again(&laptop);
    std::fs::write(laptop.home.join("session.token"), &fresh).unwrap();
    laptop.sync();

    let wrong = with_stdin(phone.command(&["password"]), "not-it\nnew-pw-2\n");
    assert!(
        !wrong.status.success(),
        "a wrong current password is refused"
    );
    laptop.sync();
    let changed = with_stdin(phone.command(&["password"]), "secret-pw\nnew-pw-2\n");
    ok(changed, "password");
    assert_must_log_in_again(&laptop);
    phone.sync();
    let old = laptop.run(&["login", "--password", "secret-pw"]);
    assert!(!old.status.success(), "the old password is refused");
    let file = cluster.dir.path().join("pw-change");
    std::fs::write(&file, "new-pw-2\nnew-pw-3\n").unwrap();
    ok(
        phone.run(&["password", "--password-file", file.to_str().unwrap()]),
        "password --password-file",
    );
    ok(laptop.run(&["login", "--password", "new-pw-3"]), "login");
    laptop.sync();
}

/// Finding 12 (admin side) and 14 (passwords off the command line):
/// disable refuses logins and ends sessions at once, enable undoes it,
/// reset-password ends sessions, remove deletes the account and its
/// container; `user add` reads the password from stdin or a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_disable_enable_reset_remove_and_password_input() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    ok(
        with_stdin(
            admin(&cluster, &["add", "ana@example.com", "--password-stdin"]),
            "from-stdin pw\n",
        ),
        "user add --password-stdin",
    );
    let file = cluster.dir.path().join("bo-password");
    std::fs::write(&file, "from-file-pw\n").unwrap();
    ok(
        admin(
            &cluster,
            &[
                "add",
                "bo@example.com",
                "--password-file",
                file.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap(),
        "user add --password-file",
    );
    let login = |c: &Client, pw: &str| c.run(&["login", "--password", pw]);
    let ana = Client::unconfigured(
        "ana",
        cluster.dir.path().join("ana-home"),
        cluster.dir.path().join("ana-folder"),
    );
    let setup = ana.command(&[
        "setup",
        "--server",
        &cluster.url,
        "--email",
        "ana@example.com",
        "--dir",
        ana.folder.to_str().unwrap(),
    ]);
    let mut setup = setup;
    setup.env("STACKSYNC_PASSWORD", "from-stdin pw");
    ok(setup.output().unwrap(), "setup with the stdin password");
    let bo = Client::unconfigured(
        "bo",
        cluster.dir.path().join("bo-home"),
        cluster.dir.path().join("bo-folder"),
    );
    let mut setup = bo.command(&[
        "setup",
        "--server",
        &cluster.url,
        "--email",
        "bo@example.com",
        "--dir",
        bo.folder.to_str().unwrap(),
    ]);
    setup.env("STACKSYNC_PASSWORD", "from-file-pw");
    ok(setup.output().unwrap(), "setup with the file password");
    ana.write("ana.txt", b"mine");
    ana.sync();
    bo.write("bo.txt", b"bo's");
    bo.sync();

    ok(
        admin(&cluster, &["disable", "ana@example.com"])
            .output()
            .unwrap(),
        "disable",
    );
    assert_must_log_in_again(&ana);
    let refused = login(&ana, "from-stdin pw");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("disabled"),
        "{}",
        stderr(&refused)
    );
    bo.sync();
    ok(
        admin(&cluster, &["enable", "ana@example.com"])
            .output()
            .unwrap(),
        "enable",
    );
    ok(login(&ana, "from-stdin pw"), "login after enable");
    ana.sync();

    ok(
        with_stdin(
            admin(
                &cluster,
                &["reset-password", "ana@example.com", "--password-stdin"],
            ),
            "reset-pw\n",
        ),
        "reset-password",
    );
    assert_must_log_in_again(&ana);
    ok(login(&ana, "reset-pw"), "login with the reset password");
    ana.sync();

    let blobs = cluster.dir.path().join("server").join("blobs");
    let containers = || std::fs::read_dir(&blobs).unwrap().count();
    let before = containers();
    ok(
        admin(&cluster, &["remove", "ana@example.com"])
            .output()
            .unwrap(),
        "remove",
    );
    assert_eq!(containers(), before - 1, "ana's container is deleted");
    assert_must_log_in_again(&ana);
    assert!(!login(&ana, "reset-pw").status.success());
    let again = admin(&cluster, &["remove", "ana@example.com"])
        .output()
        .unwrap();
    assert!(!again.status.success(), "ana is gone");
    bo.write("bo2.txt", b"still here");
    bo.sync();
    // The address can be used again, for a new, empty account.
    ok(
        with_stdin(
            admin(&cluster, &["add", "ana@example.com", "--password-stdin"]),
            "new-ana\n",
        ),
        "add again",
    );
}

/// Finding 14: a fresh server data folder and client home are private,
/// SQLite's -wal/-shm included, and looser modes are repaired on start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_folder_and_client_home_are_private() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.com", None);
    let data = cluster.dir.path().join("server");
    let wal = data.join("meta.sqlite-wal");
    // The running server holds the database open in WAL mode.
    assert!(wal.exists(), "SQLite created its -wal file");
    assert_eq!(mode(&data), 0o700, "data folder");
    for f in ["meta.sqlite", "meta.sqlite-wal", "meta.sqlite-shm"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&data.join("blobs")), 0o700, "blob folder");

    let mut client = cluster.client("laptop", &email);
    client.write("a.txt", b"a");
    client.sync();
    client.start_daemon();
    let home = client.home.clone();
    eventually(
        Duration::from_secs(30),
        "the daemon's socket and -wal",
        || home.join("status.sock").exists() && home.join("state.sqlite-wal").exists(),
    )
    .await;
    assert_eq!(mode(&home), 0o700, "client home");
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&home).unwrap() {
        let path = entry.unwrap().path();
        seen.push(path.file_name().unwrap().to_string_lossy().into_owned());
        // Folders (the base cache's) are 0700 and hold only private things.
        let mut walk = vec![path];
        while let Some(path) = walk.pop() {
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                walk.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    }
    for f in [
        "profile.toml",
        "session.token",
        "state.sqlite",
        "status.sock",
    ] {
        assert!(seen.iter().any(|s| s == f), "{f} in {seen:?}");
    }
    client.stop_daemon().await;

    // Modes left loose by an older version are repaired on start.
    let loosen =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    loosen(&home, 0o755);
    loosen(&home.join("profile.toml"), 0o644);
    loosen(&home.join("state.sqlite"), 0o644);
    ok(client.run(&["status"]), "status");
    assert_eq!(mode(&home), 0o700);
    assert_eq!(mode(&home.join("profile.toml")), 0o600);
    assert_eq!(mode(&home.join("state.sqlite")), 0o600);
    loosen(&data, 0o755);
    loosen(&data.join("meta.sqlite"), 0o644);
    loosen(&data.join("blobs"), 0o755);
    cluster.add_user("bo@example.com", None);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("meta.sqlite")), 0o600);
    assert_eq!(mode(&data.join("blobs")), 0o700);
}
