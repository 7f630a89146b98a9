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
    let out = succeeds(a.run(&["versions", a.path(NAMES[2]).to_str().unwrap(), "--json"]));
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let sizes: Vec<u64> = versions
        .iter()
        .map(|v| v["size"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes, vec![big.len() as u64, edited.len() as u64]);
    succeeds(a.run(&[
        "restore",
        a.path(NAMES[2]).to_str().unwrap(),
        "--version",
        "1",
    ]));
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

/// Every chunk of the live files of `workspace`, as (stored bytes, id),
/// read as `email` (a member) through the gateway: what a removed member
/// would get from a server that kept serving them.
async fn stored_chunks(
    cluster: &Cluster,
    email: &str,
    workspace: stacksync_proto::WorkspaceId,
) -> Vec<(stacksync_proto::ChunkId, bytes::Bytes)> {
    use stacksync_client::Connection;
    use stacksync_proto::rpc::{Reply, Request};
    let conn = logged_in(cluster, email).await;
    let ws = stacksync_client::connection::workspaces(&conn)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.id == workspace)
        .expect("the member lists the workspace");
    let Reply::Changes(page) = conn
        .rpc(Request::GetChanges {
            workspace,
            since: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
    else {
        panic!("changes");
    };
    let transport = conn.chunks(&ws).await.unwrap();
    let mut out = Vec::new();
    for item in page.items.iter().filter(|m| m.status.is_live()) {
        for c in &item.chunks {
            let bytes = match &c.span {
                None => transport.get_chunk(&c.id).await.unwrap(),
                Some(s) if s.base.is_none() => {
                    transport.get_range(&s.pack, s.offset, s.len).await.unwrap()
                }
                Some(_) => continue,
            };
            out.push((c.id, bytes));
        }
    }
    out
}

/// The names of the live items of `email`'s private workspace.
async fn private_live_names(cluster: &Cluster, email: &str) -> Vec<String> {
    use stacksync_client::Connection;
    use stacksync_proto::rpc::{Reply, Request};
    let conn = logged_in(cluster, email).await;
    let private = stacksync_client::connection::workspaces(&conn)
        .await
        .unwrap()
        .into_iter()
        .find(|w| !w.is_shared)
        .expect("a private workspace");
    let Reply::Changes(page) = conn
        .rpc(Request::GetChanges {
            workspace: private.id,
            since: 0,
            limit: 10_000,
        })
        .await
        .unwrap()
    else {
        panic!("changes");
    };
    page.items
        .iter()
        .filter(|m| m.status.is_live())
        .map(|m| m.name.to_string())
        .collect()
}

/// The statements of `workspace`'s key chain after `after`, read as
/// `email`.
async fn key_statements(
    cluster: &Cluster,
    email: &str,
    workspace: stacksync_proto::WorkspaceId,
    after: u64,
) -> Vec<Vec<u8>> {
    use stacksync_client::Connection;
    use stacksync_proto::rpc::{Reply, Request};
    let conn = logged_in(cluster, email).await;
    match conn
        .rpc(Request::GetKeyStatements {
            workspace,
            after_epoch: after,
            limit: 100,
        })
        .await
        .unwrap()
    {
        Reply::KeyStatements { statements, .. } => {
            statements.into_iter().map(|s| s.statement).collect()
        }
        other => panic!("key statements: {other:?}"),
    }
}

/// An end-to-end encrypted shared folder between two users: the owner
/// shares an empty folder with `--encrypted`, the member accepts, the
/// owner's device gives them the key (pinned, shown by `members
/// --fingerprints`), files go both ways, and nothing the server keeps
/// holds a file's contents or names. After `unshare`, the owner's device
/// replaces the key: the removed member, with every key it holds, cannot
/// open the new key list nor a chunk written afterwards (and still opens
/// those written before, so the check can fail).
async fn an_encrypted_shared_folder_between_two_users(backend: Backend) {
    let extra = match backend {
        Backend::Embedded => "\n[storage]\nat_rest_encryption = false\n",
        Backend::Full { .. } => "",
    };
    let cluster = Cluster::start_with(&backend, extra).await;
    let alice_email = cluster.add_user("alice@example.com", None);
    let bob_email = cluster.add_user("bob@example.com", None);
    // Plain private workspaces, each with an encryption identity.
    let a = encrypted_client(&cluster, "alice", &alice_email);
    let b = match backend {
        Backend::Embedded => encrypted_client(&cluster, "bob", &bob_email),
        Backend::Full { .. } => {
            cluster.direct_client_with("bob", &bob_email, &["--passphrase", PASSPHRASE])
        }
    };
    // A folder that already has (plain) files: sharing it encrypted moves
    // them into the new workspace, uploaded again encrypted, and deletes
    // the plain copies from alice's private workspace.
    a.write("Together/was-plain.txt", b"stored plain before the share");
    a.sync();
    share_encrypted(&a, "Together", &[&bob_email]);
    let together = a.path("Together");
    assert_eq!(
        a.read("Together/was-plain.txt"),
        b"stored plain before the share"
    );
    let top: Vec<String> = std::fs::read_dir(&a.folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, vec!["Together".to_owned()], "nothing left aside");
    let private = a.status(None);
    assert_eq!(private["encryption"], "plain", "{private}");
    let live = private_live_names(&cluster, &alice_email).await;
    assert!(
        live.is_empty(),
        "the plain copies (and the folder aside) are deleted from the private workspace: {live:?}"
    );
    accept_the_invitation(&b);
    // Alice's device writes the key list with bob in it; bob's then opens it.
    a.sync();
    b.sync();
    assert_eq!(
        b.read("Together/was-plain.txt"),
        b"stored plain before the share"
    );

    let big = secret_file(3_000_000, 11);
    let small = secret_file(5_000, 12);
    a.write(&format!("Together/{}/{}", NAMES[1], NAMES[0]), &small);
    a.write(&format!("Together/{}", NAMES[2]), &big);
    a.sync();
    b.sync();
    assert_eq!(
        b.read(&format!("Together/{}/{}", NAMES[1], NAMES[0])),
        small
    );
    assert_eq!(b.read(&format!("Together/{}", NAMES[2])), big);
    b.write("Together/reply-from-bob.txt", CONTENT_MARKER);
    b.sync();
    a.sync();
    assert_eq!(a.read("Together/reply-from-bob.txt"), CONTENT_MARKER);

    // Alice sees bob's key, pinned on first use.
    let out = succeeds(a.run(&[
        "members",
        together.to_str().unwrap(),
        "--fingerprints",
        "--json",
    ]));
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let bob_row = keys
        .iter()
        .find(|k| k["email"] == bob_email.as_str())
        .expect("bob is listed");
    assert_eq!(bob_row["pin"], "pinned", "{keys:?}");
    assert!(
        bob_row["fingerprint"]
            .as_str()
            .is_some_and(|f| f.len() == 39)
    );

    let mut secrets: Vec<&[u8]> = vec![CONTENT_MARKER, b"reply-from-bob"];
    secrets.extend(NAMES.iter().map(|n| n.as_bytes()));
    let found = leaks(&cluster, &backend, &secrets);
    assert!(found.is_empty(), "the server holds plaintext: {found:?}");

    // The shared workspace, and what bob's device holds for it.
    let ws: stacksync_proto::WorkspaceId = std::fs::read_dir(&b.home)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("membership-")?
                .strip_suffix(".vault")?
                .parse()
                .ok()
        })
        .next()
        .expect("bob's device keeps the shared folder's key list");
    let before = stored_chunks(&cluster, &alice_email, ws).await;

    let out = succeeds(a.run(&["unshare", together.to_str().unwrap(), "--with", &bob_email]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("key was replaced"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let after_unshare = secret_file(2_000_000, 13);
    a.write("Together/after-unshare.bin", &after_unshare);
    a.sync();

    let files = stacksync_client::e2ee::KeyFiles::new(&b.home);
    let held = files.offline_keys(ws).unwrap().expect("bob's keys");
    let bob_codec = held.codec().unwrap();
    let alice_keys = stacksync_client::e2ee::KeyFiles::new(&a.home)
        .offline_keys(ws)
        .unwrap()
        .expect("alice's keys");
    assert!(
        alice_keys.membership.generation() > held.membership.generation(),
        "a new key generation after the unshare"
    );
    let alice_codec = alice_keys.codec().unwrap();
    // Written before: both open them (the control).
    assert!(!before.is_empty());
    for (id, bytes) in &before {
        assert!(
            bob_codec.decode(id, bytes).is_ok(),
            "bob opened chunk {id} before"
        );
    }
    // Written after: alice opens them, bob with his keys does not.
    let new: Vec<_> = stored_chunks(&cluster, &alice_email, ws)
        .await
        .into_iter()
        .filter(|(id, _)| !before.iter().any(|(b, _)| b == id))
        .collect();
    let mut recovered = Vec::new();
    for (id, bytes) in &new {
        recovered.extend(alice_codec.decode(id, bytes).expect("alice opens it"));
        let e = bob_codec
            .decode(id, bytes)
            .expect_err("bob must not open a chunk written after the unshare");
        assert!(e.to_string().contains("generation"), "{e}");
    }
    assert_eq!(
        recovered, after_unshare,
        "the new chunks are the new file's"
    );
    // Nor can he open the key list that replaced his key, were the
    // server to hand it to him.
    let statements = key_statements(&cluster, &alice_email, ws, held.membership.epoch()).await;
    assert!(!statements.is_empty());
    let refs: Vec<&[u8]> = statements.iter().map(Vec::as_slice).collect();
    let e = stacksync_vault::membership::verify_chain(
        &refs,
        &held.identity,
        Some(&held.membership),
        &stacksync_vault::PinStore::new(),
    )
    .expect_err("bob must not open the key list without him");
    assert_eq!(e.kind(), &stacksync_vault::ErrorKind::NotAMember, "{e}");
    succeeds(b.run(&["sync", "--once", "--json"]));
    assert!(
        !b.path("Together/after-unshare.bin").exists(),
        "the removed member gets nothing written after"
    );
}

on_both_backends!(an_encrypted_shared_folder_between_two_users);

/// The same with both accounts' daemons running: bob's waits for the key
/// (and says so), mounts the folder once alice's daemon adds him, and the
/// files flow; after `unshare` alice's daemon writes under the new key
/// generation, and bob's device gets nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_daemons_add_the_member_and_rotate_on_unshare() {
    use std::time::Duration;
    let (cluster, [alice_email, bob_email], [mut a, mut b]) = alice_and_bob().await;
    std::fs::create_dir_all(a.path("Together")).unwrap();
    a.sync();
    b.sync();
    share_encrypted(&a, "Together", &[&bob_email]);
    let together = a.path("Together");
    b.start_daemon();
    common::eventually(Duration::from_secs(30), "bob's daemon runs", || {
        b.status(None)["daemon_running"] == true
    })
    .await;
    accept_the_invitation(&b);
    // No device of alice's runs yet: bob's waits, and says why.
    common::eventually(
        Duration::from_secs(60),
        "bob's daemon waits for the key",
        || {
            b.daemon_log()
                .contains("waiting for the owner's device to add your key")
        },
    )
    .await;
    a.start_daemon();
    a.write("Together/first.txt", b"first, sealed for two");
    common::eventually(Duration::from_secs(60), "bob gets the first file", || {
        std::fs::read(b.path("Together/first.txt")).ok().as_deref()
            == Some(b"first, sealed for two".as_slice())
    })
    .await;
    b.write("Together/answer.txt", b"answer from bob");
    common::eventually(Duration::from_secs(60), "alice gets bob's answer", || {
        std::fs::read(a.path("Together/answer.txt")).ok().as_deref()
            == Some(b"answer from bob".as_slice())
    })
    .await;

    succeeds(a.run(&["unshare", together.to_str().unwrap(), "--with", &bob_email]));
    a.write("Together/later.txt", b"after bob left");
    let files = stacksync_client::e2ee::KeyFiles::new(&a.home);
    let ws = std::fs::read_dir(&a.home)
        .unwrap()
        .flatten()
        .find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("membership-")?
                .strip_suffix(".vault")?
                .parse::<stacksync_proto::WorkspaceId>()
                .ok()
        })
        .expect("alice's key list");
    // Alice's daemon reopens the folder with the new keys and syncs on.
    common::eventually(
        Duration::from_secs(60),
        "alice's later file is committed",
        || a.status(Some("Together/later.txt"))["target"]["status"] == "synced",
    )
    .await;
    let keys = files.offline_keys(ws).unwrap().unwrap();
    assert_eq!(keys.membership.generation().0, 2);
    assert_eq!(keys.membership.members().len(), 1, "alice alone holds it");
    // The later file went out under the new generation, even if alice's
    // daemon had it ready before it heard of the new keys: bob's keys do
    // not open it.
    let codec = keys.codec().unwrap();
    let bob_codec = stacksync_client::e2ee::KeyFiles::new(&b.home)
        .offline_keys(ws)
        .unwrap()
        .expect("bob's keys")
        .codec()
        .unwrap();
    let chunks = stored_chunks(&cluster, &alice_email, ws).await;
    let later = chunks
        .iter()
        .find(|(id, bytes)| codec.decode(id, bytes).ok().as_deref() == Some(b"after bob left"))
        .expect("the later file's chunk");
    assert!(bob_codec.decode(&later.0, &later.1).is_err());
    std::thread::sleep(Duration::from_secs(2));
    assert!(!b.path("Together/later.txt").exists());
    a.stop_daemon().await;
    b.stop_daemon().await;
}

/// Alice, bob and carol, each with an encryption identity, and alice's
/// folder `Team` shared end-to-end encrypted with the other two (not yet
/// accepted).
async fn team_of_three() -> (Cluster, Vec<String>, Vec<Client>) {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let emails: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| cluster.add_user(&format!("{n}@example.com"), None))
        .collect();
    let clients: Vec<Client> = ["alice", "bob", "carol"]
        .iter()
        .zip(&emails)
        .map(|(n, e)| encrypted_client(&cluster, n, e))
        .collect();
    let a = &clients[0];
    std::fs::create_dir_all(a.path("Team")).unwrap();
    a.sync();
    share_encrypted(a, "Team", &[&emails[1], &emails[2]]);
    (cluster, emails, clients)
}

/// Alice and bob on the embedded default, each with an encryption
/// identity and a plain private workspace: their emails and clients.
async fn alice_and_bob() -> (Cluster, [String; 2], [Client; 2]) {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let alice = cluster.add_user("alice@example.com", None);
    let bob = cluster.add_user("bob@example.com", None);
    let a = encrypted_client(&cluster, "alice", &alice);
    let b = encrypted_client(&cluster, "bob", &bob);
    (cluster, [alice, bob], [a, b])
}

/// `owner` shares its folder `folder`, end-to-end encrypted, with `with`.
fn share_encrypted(owner: &Client, folder: &str, with: &[&str]) {
    let path = owner.path(folder);
    let mut args = vec!["share", path.to_str().unwrap()];
    for email in with {
        args.extend(["--with", email]);
    }
    args.push("--encrypted");
    succeeds(owner.run(&args));
}

/// `m` accepts the one invitation it has.
fn accept_the_invitation(m: &Client) {
    let id = String::from_utf8_lossy(&m.run(&["invitations"]).stdout)
        .trim()
        .to_owned();
    assert!(!id.is_empty(), "{} has the invitation", m.name);
    succeeds(m.run(&["accept", &id]));
}

/// `out`, which must be a success.
fn succeeds(out: std::process::Output) -> std::process::Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A gateway connection logged in as `email`.
async fn logged_in(cluster: &Cluster, email: &str) -> stacksync_client::GatewayConnection {
    let client = stacksync_gateway_client::GatewayClient::login(&cluster.url, email, "secret-pw")
        .await
        .unwrap();
    stacksync_client::GatewayConnection::new(client)
}

/// A member who leaves is rotated out by the owner's device at its next
/// sync; the member who stays gets the new key and reads what is written
/// under it, and their own writes reach the owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_who_leaves_is_rotated_out_and_the_others_read_on() {
    let (cluster, emails, clients) = team_of_three().await;
    let [a, b, c] = &clients[..] else {
        unreachable!()
    };
    let team = a.path("Team");
    for m in [b, c] {
        accept_the_invitation(m);
    }
    a.sync();
    a.write("Team/before.txt", b"for all three");
    a.sync();
    b.sync();
    c.sync();
    assert_eq!(c.read("Team/before.txt"), b"for all three");

    succeeds(b.run(&["leave", b.path("Team").to_str().unwrap()]));
    // Alice's next sync replaces the key; what she writes then is under it.
    a.sync();
    a.write("Team/after.txt", b"for alice and carol");
    a.sync();
    c.sync();
    assert_eq!(c.read("Team/after.txt"), b"for alice and carol");
    c.write("Team/from-carol.txt", b"carol, under the new key");
    c.sync();
    a.sync();
    assert_eq!(a.read("Team/from-carol.txt"), b"carol, under the new key");
    let out = a.run(&["members", team.to_str().unwrap(), "--fingerprints"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("key generation 2"), "{listing}");
    assert!(!listing.contains(&emails[1]), "{listing}");
    b.sync();
    assert!(!b.path("Team/after.txt").exists());
    // A new device of carol's reads both generations: the file written
    // before the rotation keeps its chunks under the old key.
    let c2 = encrypted_client(&cluster, "carol2", &emails[2]);
    c2.sync();
    assert_eq!(c2.read("Team/before.txt"), b"for all three");
    assert_eq!(c2.read("Team/after.txt"), b"for alice and carol");
}

/// The owner's device gives the key only to people it invited, whoever
/// the server lists as a member: carol, whom alice's device has no record
/// of inviting (as if the server had added her), waits for ever, while bob
/// syncs. `trust` pins a key only with the fingerprint the server's key
/// really has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_invitees_get_the_key() {
    let (_cluster, emails, clients) = team_of_three().await;
    let [a, b, c] = &clients[..] else {
        unreachable!()
    };
    let team = a.path("Team");
    // Alice's device forgets having invited carol.
    let invited = std::fs::read_dir(&a.home)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("invited-")
        })
        .expect("alice's device keeps whom it invited");
    let kept: String = std::fs::read_to_string(&invited)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("carol"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&invited, kept).unwrap();
    for m in [b, c] {
        accept_the_invitation(m);
    }
    a.sync();
    a.write("Team/plan.txt", b"for bob only");
    a.sync();
    b.sync();
    assert_eq!(b.read("Team/plan.txt"), b"for bob only");
    let out = c.run(&["sync", "--once"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("waiting for the owner's device to add your key"),
        "{said}"
    );
    assert!(!c.path("Team/plan.txt").exists());
    let out = a.run(&[
        "members",
        team.to_str().unwrap(),
        "--fingerprints",
        "--json",
    ]);
    let keys: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = |email: &str| {
        keys.iter()
            .find(|k| k["email"] == email)
            .cloned()
            .unwrap_or_else(|| panic!("{email} listed: {keys:?}"))
    };
    assert_eq!(row(&emails[2])["pin"], "no key yet");
    assert_eq!(row(&emails[1])["pin"], "pinned");

    let bob_fingerprint = row(&emails[1])["fingerprint"].as_str().unwrap().to_owned();
    let out = a.run(&["trust", &emails[1], "aaaa bbbb cccc dddd"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing trusted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    succeeds(a.run(&["trust", &emails[1], &bob_fingerprint.replace(' ', "")]));
}

/// `share --encrypted` of a folder with files while the owner's daemon
/// runs: the command has the daemon sync each step, and the files end up
/// in the encrypted workspace only (hard-linked in, so never copied), the
/// plain copies deleted from the private workspace after the encrypted
/// ones are committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_a_folder_with_files_while_the_daemon_runs() {
    use std::time::Duration;
    let (cluster, [alice_email, bob_email], [mut a, b]) = alice_and_bob().await;
    a.write("Docs/a.txt", b"first, plain until shared");
    a.write("Docs/sub/b.txt", b"second, deeper");
    a.sync();
    a.start_daemon();
    common::eventually(Duration::from_secs(30), "alice's daemon runs", || {
        a.status(None)["daemon_running"] == true
    })
    .await;
    share_encrypted(&a, "Docs", &[&bob_email]);
    assert_eq!(a.read("Docs/a.txt"), b"first, plain until shared");
    assert_eq!(a.read("Docs/sub/b.txt"), b"second, deeper");
    let top: Vec<String> = std::fs::read_dir(&a.folder)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(top, vec!["Docs".to_owned()], "nothing left aside");
    let live = private_live_names(&cluster, &alice_email).await;
    assert!(live.is_empty(), "the plain copies are deleted: {live:?}");
    accept_the_invitation(&b);
    common::eventually(Duration::from_secs(60), "bob gets the files", || {
        b.sync();
        std::fs::read(b.path("Docs/sub/b.txt")).ok().as_deref()
            == Some(b"second, deeper".as_slice())
    })
    .await;
    assert_eq!(b.read("Docs/a.txt"), b"first, plain until shared");
    a.stop_daemon().await;
}
