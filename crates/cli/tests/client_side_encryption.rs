//! Client-side (end-to-end) encryption through the real binaries: an
//! account set up with `setup --encrypted --passphrase` syncs its private
//! workspace between two devices (the second unlocks the same keys with
//! the passphrase; on real backends it reaches RabbitMQ and Swift
//! directly) through edits, renames, moves, deletes, versions and a
//! restore, and nothing
//! the server keeps holds a file's contents or names: not the stored
//! objects, not the metadata database, as raw bytes, base64 or hex. The
//! scan is shown able to fail on a plain account. The setup refusals (no
//! passphrase, the login password as passphrase, a wrong passphrase, a
//! device without keys) are clear errors.

#[macro_use]
mod common;

use std::path::Path;

use common::{Backend, Client, Cluster, random_bytes};

const PASSPHRASE: &str = "correct horse battery staple";
const CONTENT_MARKER: &[u8] = b"E2EE-CONTENT-MARKER quarterly numbers";
const NAMES: [&str; 3] = [
    "merger-plans-2027.txt",
    "board-minutes",
    "salaries-zurich.bin",
];

/// Random (incompressible) bytes with the marker at several places.
fn secret_file(len: usize, seed: u64) -> Vec<u8> {
    let mut body = random_bytes(len, seed);
    for at in [0, len / 2, len - CONTENT_MARKER.len()] {
        body[at..at + CONTENT_MARKER.len()].copy_from_slice(CONTENT_MARKER);
    }
    body
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=group.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// Every spelling of `secret` a careless store could keep: raw, hex (both
/// cases), base64 of the secret at each of the three alignments (minus the
/// edge characters that depend on neighbouring bytes).
fn spellings(secret: &[u8]) -> Vec<Vec<u8>> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![
        secret.to_vec(),
        hex.clone().into_bytes(),
        hex.to_uppercase().into_bytes(),
    ];
    for shift in 0..3 {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(secret);
        let text = base64(&padded);
        let inner = &text[4..text.len() - 4];
        out.push(inner.as_bytes().to_vec());
    }
    out
}

/// (file, what it holds) for every file under `root` holding a spelling
/// of `secret`.
fn files_holding(root: &Path, secret: &[u8]) -> Vec<(String, String)> {
    let needles = spellings(secret);
    common::files_under(root)
        .into_iter()
        .filter_map(|path| Some((path.display().to_string(), std::fs::read(&path).ok()?)))
        .flat_map(|(place, bytes)| holding(&place, &bytes, &needles, secret))
        .collect()
}

fn holding(place: &str, bytes: &[u8], needles: &[Vec<u8>], secret: &[u8]) -> Vec<(String, String)> {
    needles
        .iter()
        .filter(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|_| {
            (
                place.to_owned(),
                String::from_utf8_lossy(secret).into_owned(),
            )
        })
        .collect()
}

/// What the server keeps: the local store and database files (embedded),
/// or the Swift object servers' files and a dump of every table.
fn leaks(cluster: &Cluster, backend: &Backend, secrets: &[&[u8]]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    match backend {
        Backend::Embedded => {
            let server = cluster.dir.path().join("server");
            assert!(server.is_dir(), "{}", server.display());
            for s in secrets {
                found.extend(files_holding(&server, s));
            }
        }
        Backend::Full { swift_auth, .. } => {
            let url = cluster.database_url().expect("PostgreSQL");
            let dump = std::process::Command::new("pg_dump")
                .args(["--data-only", "--no-owner", &url])
                .output()
                .expect("pg_dump runs");
            assert!(
                dump.status.success() && dump.stdout.len() > 1000,
                "pg_dump: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            // Every object of this server's workspaces (the Swift account
            // is shared with other tests), read through the proxy (which
            // takes its own at-rest encryption off): what a Swift operator
            // with the account's key reads.
            let containers = std::process::Command::new("psql")
                .args([&url, "-Atc", "SELECT container FROM workspaces"])
                .output()
                .expect("psql runs");
            assert!(containers.status.success());
            let containers: Vec<String> = String::from_utf8(containers.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            let objects = swift_objects(swift_auth, &containers);
            assert!(!objects.is_empty(), "the scan reads the stored objects");
            for s in secrets {
                let needles = spellings(s);
                found.extend(holding("database", &dump.stdout, &needles, s));
                for (name, bytes) in &objects {
                    found.extend(holding(name, bytes, &needles, s));
                }
            }
        }
    }
    found
}

/// (container/object, bytes) of every object in `containers` of the test
/// Swift account.
fn swift_objects(auth_url: &str, containers: &[String]) -> Vec<(String, Vec<u8>)> {
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-sf", "--max-time", "60"])
            .args(args)
            .output()
            .expect("curl runs");
        assert!(out.status.success(), "curl {args:?}: {}", out.status);
        out.stdout
    };
    let head = String::from_utf8(curl(&[
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-H",
        "X-Auth-User: test:tester",
        "-H",
        "X-Auth-Key: testing",
        auth_url,
    ]))
    .unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    let (storage, token) = (header("X-Storage-Url"), header("X-Auth-Token"));
    let auth = format!("X-Auth-Token: {token}");
    let list = |url: &str| -> Vec<String> {
        let body = curl(&["-H", &auth, &format!("{url}?format=json&limit=10000")]);
        let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
        items
            .iter()
            .filter_map(|v| v["name"].as_str().map(str::to_owned))
            .collect()
    };
    let mut out = Vec::new();
    for container in list(&storage)
        .into_iter()
        .filter(|c| containers.contains(c))
    {
        let base = format!("{storage}/{container}");
        for object in list(&base) {
            let bytes = curl(&["-H", &auth, &format!("{base}/{object}")]);
            out.push((format!("{container}/{object}"), bytes));
        }
    }
    out
}

fn encrypted_client(cluster: &Cluster, name: &str, email: &str) -> Client {
    cluster.client_with(name, email, &["--passphrase", PASSPHRASE])
}

async fn two_devices_and_nothing_readable_on_the_server(backend: Backend) {
    // Without encryption at rest, so that what the scan finds (or not) is
    // what the client sent.
    let extra = match backend {
        Backend::Embedded => "\n[storage]\nat_rest_encryption = false\n",
        // Swift's own at-rest encryption is taken off by its proxy, which
        // the scan reads through.
        Backend::Full { .. } => "",
    };
    let cluster = Cluster::start_with(&backend, extra).await;
    let email = cluster.add_user("e2ee@example.com", None);
    let a = cluster.client_with("a", &email, &["--encrypted", "--passphrase", PASSPHRASE]);
    let big = secret_file(3_000_000, 7);
    let small = secret_file(5_000, 8);
    a.write(&format!("{}/{}", NAMES[1], NAMES[0]), &small);
    a.write(NAMES[2], &big);
    // Names a careless user gives: the longest a file system takes,
    // non-Latin scripts, names differing only in case (the server no
    // longer compares names here: it never sees them).
    let longest = format!("{}.txt", "\u{e9}".repeat(125));
    assert_eq!(longest.len(), 254);
    let odd = [
        longest.as_str(),
        "\u{65e5}\u{672c}\u{8a9e} r\u{e9}sum\u{e9}.txt",
        "Case.txt",
        "case.txt",
    ];
    for (i, n) in odd.iter().enumerate() {
        a.write(&format!("odd/{n}"), format!("odd {i}").as_bytes());
    }
    a.sync();
    assert_eq!(a.status(None)["encryption"], "client_side");

    // On real backends the second device talks to RabbitMQ and Swift
    // directly (its chunks go to Swift as the account's storage user).
    let b = match backend {
        Backend::Embedded => encrypted_client(&cluster, "b", &email),
        Backend::Full { .. } => {
            cluster.direct_client_with("b", &email, &["--passphrase", PASSPHRASE])
        }
    };
    b.sync();
    assert_eq!(b.read(&format!("{}/{}", NAMES[1], NAMES[0])), small);
    assert_eq!(b.read(NAMES[2]), big);
    for (i, n) in odd.iter().enumerate() {
        assert_eq!(b.read(&format!("odd/{n}")), format!("odd {i}").as_bytes());
    }

    // Edits, a rename, a move and a delete come back the other way.
    let mut edited = big.clone();
    edited[1_000_000..1_000_010].copy_from_slice(b"0123456789");
    b.write(NAMES[2], &edited);
    std::fs::rename(
        b.path(&format!("{}/{}", NAMES[1], NAMES[0])),
        b.path("renamed-and-moved.txt"),
    )
    .unwrap();
    b.write(&format!("{}/later.txt", NAMES[1]), b"later");
    b.sync();
    a.sync();
    assert_eq!(a.read(NAMES[2]), edited);
    assert_eq!(a.read("renamed-and-moved.txt"), small);
    assert_eq!(a.read(&format!("{}/later.txt", NAMES[1])), b"later");
    // History: the versions show the real sizes, and a restore (sealed by
    // the client: the server cannot write a record) brings version 1 back.
    let out = a.run(&["versions", a.path(NAMES[2]).to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let sizes: Vec<u64> = versions
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![big.len() as u64, edited.len() as u64]);
    let out = a.run(&[
        "restore",
        a.path(NAMES[2]).to_str().unwrap(),
        "--version",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.read(NAMES[2]), big);
    b.sync();
    assert_eq!(b.read(NAMES[2]), big);
    std::fs::remove_file(a.path(&format!("{}/later.txt", NAMES[1]))).unwrap();
    a.sync();
    b.sync();
    assert!(!b.path(&format!("{}/later.txt", NAMES[1])).exists());
    common::assert_converged(&[&a, &b]);

    let mut secrets: Vec<&[u8]> = vec![CONTENT_MARKER, b"renamed-and-moved", b"later.txt"];
    secrets.extend(NAMES.iter().map(|n| n.as_bytes()));
    let found = leaks(&cluster, &backend, &secrets);
    assert!(found.is_empty(), "the server holds plaintext: {found:?}");

    // The control: a plain account's names and bytes are found by the
    // same scan, so the scan can fail.
    let plain = cluster.add_user("plain@example.com", None);
    let p = cluster.client("p", &plain);
    p.write(&format!("{}/{}", NAMES[1], NAMES[0]), &small);
    p.sync();
    let found = leaks(&cluster, &backend, &[CONTENT_MARKER, NAMES[0].as_bytes()]);
    assert!(
        found.len() >= 2,
        "the scan finds a plain account's data: {found:?}"
    );
}

on_both_backends!(two_devices_and_nothing_readable_on_the_server);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_refusals_are_clear() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("e2ee@example.com", None);
    let setup = |name: &str, extra: &[&str]| cluster.try_setup(name, &email, extra);
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).into_owned();

    let (_, out) = setup("x1", &["--encrypted"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the encryption passphrase"),
        "{}",
        stderr(&out)
    );

    let (_, out) = setup("x2", &["--encrypted", "--passphrase", "secret-pw"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("must differ from the login password"),
        "{}",
        stderr(&out)
    );

    let (a, out) = setup("a", &["--encrypted", "--passphrase", PASSPHRASE]);
    assert!(out.status.success(), "{}", stderr(&out));
    a.write("notes.txt", b"private");
    a.sync();

    let (_, out) = setup("x3", &["--passphrase", "not the passphrase"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("wrong encryption passphrase"),
        "{}",
        stderr(&out)
    );

    // A device set up without the passphrase holds no key: its sync fails
    // with the reason, and leaves the folder as it was.
    let (c, out) = setup("c", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.run(&["sync", "--once"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("holds no key"), "{}", stderr(&out));
    assert!(!c.path("notes.txt").exists());

    // An account with files cannot be turned end-to-end encrypted.
    let plain = cluster.add_user("plain@example.com", None);
    let p = cluster.client("p", &plain);
    p.write("notes.txt", b"plain");
    p.sync();
    let (_, out) = cluster.try_setup("q", &plain, &["--encrypted", "--passphrase", PASSPHRASE]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("end-to-end encrypted"),
        "{}",
        stderr(&out)
    );
}

/// Daemons already running on an account's devices when another device
/// makes its (empty) private workspace end-to-end encrypted: one set up
/// with the passphrase reopens the workspace and syncs the new files; one
/// without it stops syncing that workspace with the reason, and never
/// takes the sealed listing for plain (no folder named after an item id,
/// no file at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_daemons_follow_the_switch_or_stop_with_the_reason() {
    use std::time::Duration;
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("e2ee@example.com", None);
    let mut with_key = encrypted_client(&cluster, "k", &email);
    let mut without = cluster.client("n", &email);
    with_key.start_daemon();
    without.start_daemon();
    common::eventually(Duration::from_secs(30), "both daemons run", || {
        with_key.status(None)["daemon_running"] == true
            && without.status(None)["daemon_running"] == true
    })
    .await;

    let b = cluster.client_with("b", &email, &["--encrypted", "--passphrase", PASSPHRASE]);
    b.write("docs/secret.txt", b"sealed on the way");
    b.sync();

    let until = |cond: &dyn Fn() -> bool| {
        let start = std::time::Instant::now();
        while !cond() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(100));
        }
        cond()
    };
    assert!(
        until(&|| std::fs::read(with_key.path("docs/secret.txt"))
            .ok()
            .as_deref()
            == Some(b"sealed on the way".as_slice())),
        "the keyed daemon did not sync; its log:\n{}",
        with_key.daemon_log()
    );
    assert!(
        until(&|| without.daemon_log().contains("holds no key")),
        "the other daemon did not say why; its log:\n{}",
        without.daemon_log()
    );
    let entries: Vec<_> = std::fs::read_dir(&without.folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        entries.is_empty(),
        "nothing synced without the key: {entries:?}"
    );
    with_key.stop_daemon().await;
    without.stop_daemon().await;
}
