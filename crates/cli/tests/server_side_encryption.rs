//! Server-side encryption end to end, through the real binaries: an
//! account made with `admin user add --encryption server` syncs between
//! two devices like any other, `status` says its setting, and no stored
//! object holds its files' bytes: the local store's files (embedded), the
//! object servers' files (Swift with its encryption middleware). A control
//! server without encryption at rest shows the same bytes in the clear, so
//! the scan can fail, and refuses the setting.

#[macro_use]
mod common;

use std::path::Path;

use common::{Backend, Cluster, random_bytes};

/// Random (incompressible, so stored as is unless encrypted) with a
/// recognisable marker at several places.
fn secret_file(marker: &[u8]) -> Vec<u8> {
    let mut body = random_bytes(300_000, 42);
    for at in [0, 70_000, 150_000, 299_000 - marker.len()] {
        body[at..at + marker.len()].copy_from_slice(marker);
    }
    body
}

/// Paths of the files under `root` holding `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    common::files_under(root)
        .into_iter()
        .filter(|path| {
            std::fs::read(path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .map(|path| path.display().to_string())
        .collect()
}

fn add_user(cluster: &Cluster, email: &str, encryption: &str) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(["admin", "--config"])
        .arg(&cluster.config)
        .args([
            "user",
            "add",
            email,
            "--password",
            "secret-pw",
            "--encryption",
            encryption,
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin runs")
}

async fn encrypted_at_rest(backend: Backend) {
    let marker = b"SERVER-SIDE-MARKER: salaries 2027";
    let cluster = Cluster::start(&backend).await;
    let out = add_user(&cluster, "sse@example.com", "server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = cluster.client("a", "sse@example.com");
    let b = cluster.client("b", "sse@example.com");
    let body = secret_file(marker);
    a.write("private/payroll.bin", &body);
    a.sync();
    b.sync();
    assert_eq!(b.read("private/payroll.bin"), body);
    assert_eq!(a.status(None)["encryption"], "server_side");
    let human = a.run(&["status"]);
    assert!(
        String::from_utf8_lossy(&human.stdout).contains("encryption: server-side"),
        "{}",
        String::from_utf8_lossy(&human.stdout)
    );

    let stored = match &backend {
        Backend::Embedded => cluster.dir.path().join("server/blobs"),
        Backend::Full { .. } => std::env::var("STACKSYNC_TEST_SWIFT_DEVICES")
            .expect("scripts/swift env exports STACKSYNC_TEST_SWIFT_DEVICES")
            .into(),
    };
    assert!(stored.is_dir(), "{}", stored.display());
    let leaks = files_holding(&stored, marker);
    assert!(leaks.is_empty(), "plaintext at rest in {leaks:?}");
}

on_both_backends!(encrypted_at_rest);

/// The control: the same bytes on a server whose store keeps objects as
/// they come are found by the same scan, and the setting is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_encryption_at_rest_the_scan_finds_the_bytes_and_the_setting_is_refused() {
    let marker = b"SERVER-SIDE-MARKER: salaries 2027";
    let cluster = Cluster::start_with(
        &Backend::Embedded,
        "\n[storage]\nat_rest_encryption = false\n",
    )
    .await;
    let out = add_user(&cluster, "sse@example.com", "server");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encrypts at rest"), "{err}");
    let out = add_user(&cluster, "plain@example.com", "plain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = cluster.client("a", "plain@example.com");
    a.write("private/payroll.bin", &secret_file(marker));
    a.sync();
    assert_eq!(a.status(None)["encryption"], "plain");
    let leaks = files_holding(&cluster.dir.path().join("server/blobs"), marker);
    assert!(!leaks.is_empty(), "the scan finds plain objects");
}

/// A server refuses to start when workspaces were promised server-side
/// encryption and its storage no longer encrypts at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stopped_encrypting_does_not_start() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let out = add_user(&cluster, "sse@example.com", "server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut config = std::fs::read_to_string(&cluster.config).unwrap();
    config.push_str("\n[storage]\nat_rest_encryption = false\n");
    let other = cluster.dir.path().join("unsealed.toml");
    std::fs::write(&other, config).unwrap();
    let out = std::process::Command::new(common::BIN)
        .args(["server", "--config"])
        .arg(&other)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the server runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server-side encryption"), "{err}");
}

/// Key rotation on the local store, through the commands an operator
/// runs: a new key with the old one kept for reading, `admin storage
/// reseal`, then the old key retired; a new device still gets every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_at_rest_key_rotates_and_the_old_one_retires() {
    let mut cluster = Cluster::start(&Backend::Embedded).await;
    let out = add_user(&cluster, "rot@example.com", "server");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = cluster.client("a", "rot@example.com");
    let files: Vec<(String, Vec<u8>)> = (0..5u64)
        .map(|i| {
            (
                format!("docs/f{i}.bin"),
                random_bytes(50_000 + i as usize * 7_000, i),
            )
        })
        .collect();
    for (path, body) in &files {
        a.write(path, body);
    }
    a.sync();

    let old_key = cluster.dir.path().join("server/at-rest.key");
    assert!(old_key.is_file(), "the server made its key on first start");
    let new_key = cluster.dir.path().join("new-at-rest.key");
    let hex: String = random_bytes(32, 99)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(&new_key, format!("{hex}\n")).unwrap();
    let base = std::fs::read_to_string(&cluster.config).unwrap();
    let rotating = cluster.dir.path().join("rotating.toml");
    std::fs::write(
        &rotating,
        format!(
            "{base}\n[storage]\nat_rest_key_file = {:?}\nat_rest_old_key_files = [{:?}]\n",
            new_key.display().to_string(),
            old_key.display().to_string()
        ),
    )
    .unwrap();
    let reseal = std::process::Command::new(common::BIN)
        .args(["admin", "--config"])
        .arg(&rotating)
        .args(["storage", "reseal"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&reseal.stdout);
    assert!(
        reseal.status.success(),
        "{}",
        String::from_utf8_lossy(&reseal.stderr)
    );
    assert!(
        said.starts_with("resealed ") && !said.starts_with("resealed 0 "),
        "{said}"
    );

    let retired = cluster.dir.path().join("retired.toml");
    std::fs::write(
        &retired,
        format!(
            "{base}\n[storage]\nat_rest_key_file = {:?}\n",
            new_key.display().to_string()
        ),
    )
    .unwrap();
    std::fs::remove_file(&old_key).unwrap();
    cluster.restart_with_config(&retired).await;
    let b = cluster.client("b", "rot@example.com");
    b.sync();
    for (path, body) in &files {
        assert_eq!(&b.read(path), body, "{path}");
    }
}
