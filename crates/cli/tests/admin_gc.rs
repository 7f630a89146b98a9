//! `stacksync admin gc` on a real server's data (issue 17, finding 11):
//! a deleted file's objects stay through history retention and are freed
//! by a collection once retention and grace allow it.

mod common;

use std::path::Path;

use common::{Backend, Cluster, random_bytes};

/// Files under `dir`, recursively (the local blob store's objects and
/// container metadata).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { files_under(&p) } else { 1 }
        })
        .sum()
}

fn gc(cluster: &Cluster, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(common::BIN)
        .args(["admin", "--config"])
        .arg(&cluster.config)
        .arg("gc")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .expect("admin gc runs");
    assert!(
        out.status.success(),
        "admin gc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad report {stdout:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn f11_admin_gc_frees_a_deleted_files_storage() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let blobs = cluster.dir.path().join("server").join("blobs");
    let email = cluster.add_user("gc@example.com", None);
    let a = cluster.client("a", &email);
    a.sync();
    let baseline = files_under(&blobs);
    a.write("big.bin", &random_bytes(300_000, 7));
    let s = a.sync();
    assert!(s.bytes_uploaded > 0, "{s:?}");
    let stored = files_under(&blobs);
    assert!(stored > baseline, "the upload stored objects");
    std::fs::remove_file(a.path("big.bin")).unwrap();
    a.sync();

    // Within the retention period the history keeps the content.
    let kept = gc(&cluster, &["--grace", "0s"]);
    assert_eq!(kept["freed_bytes"], 0, "{kept}");
    assert_eq!(files_under(&blobs), stored);
    // A dry run reports what would go and deletes nothing.
    let dry = gc(
        &cluster,
        &["--grace", "0s", "--retention", "0s", "--dry-run"],
    );
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert!(dry["freed_bytes"].as_u64().unwrap() > 0, "{dry}");
    assert_eq!(files_under(&blobs), stored);
    // The real thing frees every object of the deleted file.
    let done = gc(&cluster, &["--grace", "0s", "--retention", "0s"]);
    assert_eq!(done["freed_bytes"], dry["freed_bytes"], "{done}");
    assert!(done["deleted_objects"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(files_under(&blobs), baseline);
    // The client still syncs, and new content still uploads.
    a.write("small.txt", b"after the collection");
    let s = a.sync();
    assert!(s.bytes_uploaded > 0, "{s:?}");
}
