//! End-to-end: real server and client processes through the CLI contract
//! (`setup`, `sync --once`, `sync` as a daemon, `status`, `versions`,
//! `restore`), on the embedded default and on PostgreSQL + RabbitMQ +
//! Swift. Every user operation converges on two and three devices; a
//! concurrent edit gives exactly one conflicted copy; renaming a 1 GiB tree
//! re-uploads no chunk.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, Client, Cluster, assert_converged, eventually, random_bytes, tree};

/// Creates, edits, renames, moves and deletes files and folders on one
/// device and checks after each step that the other converges; then the
/// other way round.
async fn every_operation_converges(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    let step = |from: &Client, to: &Client| {
        from.sync();
        to.sync();
        assert_converged(&[from, to])
    };

    // Create: files, nested folders, an empty folder, a large file, an
    // empty file, and a name with spaces and non-ASCII characters.
    a.write("notes.txt", b"first words");
    a.write("docs/deep/er/still/deeper/leaf.md", b"# leaf");
    a.write("empty.bin", b"");
    a.write("photos/été 2026 \u{1f3d6}.jpg", &random_bytes(300_000, 1));
    a.write("big/video.mkv", &random_bytes(20 * 1024 * 1024 + 17, 2));
    std::fs::create_dir_all(a.path("empty folder")).unwrap();
    let t = step(&a, &b);
    assert!(t.contains_key("empty folder"), "empty folders sync: {t:?}");
    assert_eq!(
        b.read("big/video.mkv"),
        random_bytes(20 * 1024 * 1024 + 17, 2)
    );

    // Modify (content and size), in place.
    a.write("notes.txt", b"second words, longer than the first");
    let mut video = random_bytes(20 * 1024 * 1024 + 17, 2);
    video.splice(10_000_000..10_000_000, *b"INSERTED");
    a.write("big/video.mkv", &video);
    let up = a.sync();
    b.sync();
    assert_converged(&[&a, &b]);
    // Content-defined chunks: the insert re-sends a chunk or two, not the file.
    assert!(
        up.bytes_uploaded < 6 * 1024 * 1024,
        "an 8-byte insert into 20 MiB uploaded {} bytes",
        up.bytes_uploaded
    );

    // Rename and move a file; rename and move a folder.
    std::fs::rename(a.path("notes.txt"), a.path("renamed notes.txt")).unwrap();
    std::fs::rename(
        a.path("photos/été 2026 \u{1f3d6}.jpg"),
        a.path("docs/beach.jpg"),
    )
    .unwrap();
    std::fs::rename(a.path("docs/deep"), a.path("moved-deep")).unwrap();
    std::fs::rename(a.path("big"), a.path("docs/big")).unwrap();
    let up = a.sync();
    assert_eq!(up.bytes_uploaded, 0, "moves upload nothing");
    let down = b.sync();
    assert_eq!(down.bytes_downloaded, 0, "moves download nothing");
    assert_converged(&[&a, &b]);

    // Delete a file and a non-empty folder.
    std::fs::remove_file(a.path("empty.bin")).unwrap();
    std::fs::remove_dir_all(a.path("moved-deep")).unwrap();
    let t = step(&a, &b);
    assert!(
        !t.keys()
            .any(|k| k.starts_with("moved-deep") || k == "empty.bin"),
        "{t:?}"
    );

    // The other direction, from B.
    b.write("from-b/hello.txt", b"hi from b");
    std::fs::rename(b.path("renamed notes.txt"), b.path("from-b/notes.txt")).unwrap();
    std::fs::remove_dir(b.path("empty folder")).unwrap();
    let t = step(&b, &a);
    assert_eq!(
        a.read("from-b/notes.txt"),
        b"second words, longer than the first"
    );
    assert!(!t.contains_key("empty folder"));

    // Ignored files and symlinks stay local; the status says so.
    a.write("draft.swp", b"editor swap file");
    a.write(".stacksyncignore", b"build/\n");
    a.write("build/out.o", b"object code");
    std::os::unix::fs::symlink("/etc/passwd", a.path("link-out")).unwrap();
    a.sync();
    b.sync();
    assert!(
        b.path(".stacksyncignore").exists(),
        "the ignore file itself syncs"
    );
    for local_only in ["draft.swp", "build", "link-out"] {
        assert!(
            !b.path(local_only).exists(),
            "{local_only} must not reach B"
        );
        let s = a.status(Some(local_only));
        assert_eq!(s["target"]["status"], "ignored", "{local_only}: {s}");
    }
    let s = a.status(Some("from-b/notes.txt"));
    assert_eq!(s["target"]["status"], "synced", "{s}");
    a.write("from-b/notes.txt", b"edited, not yet synced");
    let s = a.status(Some("from-b/notes.txt"));
    assert_eq!(s["target"]["status"], "pending", "{s}");
    let s = a.status(Some("from-b"));
    assert_eq!(
        s["target"]["status"], "pending",
        "a folder shows its worst child: {s}"
    );
    a.sync();
    b.sync();
    let s = a.status(None);
    assert_eq!(s["target"]["status"], "synced", "{s}");

    for local_only in ["draft.swp", "link-out"] {
        std::fs::remove_file(a.path(local_only)).unwrap();
    }
    std::fs::remove_dir_all(a.path("build")).unwrap();

    // A name no server could hold (not UTF-8) is reported, not synced, and
    // does not stop the rest.
    use std::os::unix::ffi::OsStrExt;
    let bad = a
        .folder
        .join(std::ffi::OsStr::from_bytes(b"bad-\xff-name.txt"));
    std::fs::write(&bad, b"unnameable").unwrap();
    a.write("good.txt", b"fine");
    let out = a.sync();
    assert!(out.applied > 0);
    b.sync();
    assert!(b.path("good.txt").exists());
    std::fs::remove_file(&bad).unwrap();

    // A file being written while the client reads it: the client waits for
    // it to settle and syncs the final bytes.
    let path = a.path("growing.log");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::File::create(&path).unwrap();
        for i in 0..40 {
            f.write_all(&random_bytes(64 * 1024, 1000 + i)).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
    });
    let during = a.run(&["sync", "--once", "--json"]);
    writer.join().unwrap();
    assert!(
        during.status.success(),
        "a file changing during the sync is retried, not a failure: {}",
        String::from_utf8_lossy(&during.stderr)
    );
    a.sync();
    b.sync();
    assert_converged(&[&a, &b]);
}

on_both_backends!(every_operation_converges);

/// Three devices; two edit the same file at once. Exactly one conflicted
/// copy appears, everywhere, and both edits survive.
async fn concurrent_edit_one_conflicted_copy(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("ben@example.org", None);
    let a = cluster.client("alpha", &email);
    let b = cluster.client("beta", &email);
    // On real backends the third device talks to RabbitMQ and Swift
    // directly, as the original client did; the others use the gateway.
    let c = match cluster.direct {
        Some(_) => cluster.direct_client("gamma", &email),
        None => cluster.client("gamma", &email),
    };
    a.write("plan.txt", b"original plan");
    a.sync();
    b.sync();
    c.sync();
    assert_converged(&[&a, &b, &c]);

    a.write("plan.txt", b"alpha's plan");
    b.write("plan.txt", b"beta's plan, which is different");
    let first = a.sync();
    assert_eq!(first.conflicts, 0);
    let second = b.sync();
    assert_eq!(
        second.conflicts, 1,
        "the later commit loses and keeps a copy"
    );
    a.sync();
    c.sync();
    let t = assert_converged(&[&a, &b, &c]);
    let copies: Vec<&String> = t
        .keys()
        .filter(|k| k.contains("(conflicted copy from beta "))
        .collect();
    assert_eq!(copies.len(), 1, "exactly one conflicted copy: {t:?}");
    assert_eq!(c.read("plan.txt"), b"alpha's plan");
    assert_eq!(c.read(copies[0]), b"beta's plan, which is different");
    let s = c.status(Some(copies[0]));
    assert_eq!(s["target"]["status"], "conflict", "{s}");

    // Edit against delete keeps the edit.
    a.write("keep-me.txt", b"v1");
    a.sync();
    b.sync();
    std::fs::remove_file(a.path("keep-me.txt")).unwrap();
    b.write("keep-me.txt", b"v2 edited while deleted elsewhere");
    a.sync();
    b.sync();
    a.sync();
    c.sync();
    assert_converged(&[&a, &b, &c]);
    assert_eq!(c.read("keep-me.txt"), b"v2 edited while deleted elsewhere");
}

on_both_backends!(concurrent_edit_one_conflicted_copy);

/// A 1 GiB tree (64 files of 16 MiB in nested folders) is renamed: the
/// rename uploads no chunk and the other device downloads nothing.
async fn rename_of_1gib_tree_reuploads_nothing(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("cy@example.org", Some(4 << 30));
    let a = cluster.client("one", &email);
    let b = cluster.client("two", &email);
    const FILE: usize = 16 * 1024 * 1024;
    for i in 0..64u64 {
        a.write(
            &format!("media/set{}/clip{i:02}.bin", i % 4),
            &random_bytes(FILE, 100 + i),
        );
    }
    let first = a.sync();
    assert!(
        first.bytes_uploaded >= 1 << 30,
        "the first sync uploads the tree"
    );
    let got = b.sync();
    assert!(got.bytes_downloaded >= 1 << 30);
    std::fs::rename(a.path("media"), a.path("archive-2026")).unwrap();
    let renamed = a.sync();
    assert_eq!(renamed.chunks_uploaded, 0, "a rename re-uploads no chunk");
    assert_eq!(renamed.bytes_uploaded, 0);
    let follow = b.sync();
    assert_eq!(
        follow.chunks_downloaded, 0,
        "the other device moves, not downloads"
    );
    let t = assert_converged(&[&a, &b]);
    assert_eq!(
        t.keys()
            .filter(|k| k.starts_with("archive-2026/") && t[*k].is_some())
            .count(),
        64
    );
}

on_both_backends!(rename_of_1gib_tree_reuploads_nothing);

/// A one-byte change inside a 10 MiB file travels as a delta (issue 18):
/// the editing device sends a few KB instead of the ~1 MiB chunk around
/// it; a device holding the old version applies it to its own copy, and a
/// new device (no old copy, no cache) fetches the base. A second edit of
/// the same chunk is a delta against the same, whole base (no chains).
async fn a_small_edit_travels_as_a_delta(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("dd@example.org", None);
    let a = cluster.client("one", &email);
    let b = cluster.client("two", &email);
    let mut data = random_bytes(10 << 20, 7);
    a.write("doc.bin", &data);
    assert_eq!(a.sync().deltas_uploaded, 0, "a new file has no base");
    b.sync();
    for (round, at) in [5_000_000usize, 5_000_001, 9_000_000]
        .into_iter()
        .enumerate()
    {
        data[at] ^= 0x5a;
        a.write("doc.bin", &data);
        let edit = a.sync();
        assert_eq!(edit.deltas_uploaded, 1, "round {round}: {edit:?}");
        assert!(
            edit.bytes_uploaded < 16 * 1024,
            "round {round}: a one-byte change sent {} bytes",
            edit.bytes_uploaded
        );
        let got = b.sync();
        assert_eq!(got.deltas_downloaded, 1, "round {round}: {got:?}");
        assert!(
            got.bytes_downloaded < 64 * 1024,
            "round {round}: the other device fetched {} bytes",
            got.bytes_downloaded
        );
        assert_eq!(b.read("doc.bin"), data, "round {round}");
    }
    let c = cluster.client("three", &email);
    let fresh = c.sync();
    assert!(fresh.deltas_downloaded >= 1, "{fresh:?}");
    assert_eq!(c.read("doc.bin"), data);
    assert_converged(&[&a, &b, &c]);
}

on_both_backends!(a_small_edit_travels_as_a_delta);

/// Daemons on two devices: a save on one appears on the other without
/// anyone running a sync (watcher + push), deletes too; status is served
/// by the daemon's socket.
async fn daemons_push_changes(backend: Backend) {
    let cluster = Cluster::start(&backend).await;
    let email = cluster.add_user("dee@example.org", None);
    let mut a = cluster.client("left", &email);
    // Push over RabbitMQ to a direct client on real backends.
    let mut b = match cluster.direct {
        Some(_) => cluster.direct_client("right", &email),
        None => cluster.client("right", &email),
    };
    a.write("before-start.txt", b"offline edit, synced at start-up");
    a.start_daemon();
    b.start_daemon();
    let limit = Duration::from_secs(30);
    eventually(limit, "the offline edit reaches B", || {
        b.path("before-start.txt").exists()
    })
    .await;
    for i in 0..5 {
        let name = format!("live-{i}.txt");
        let body = format!("edit number {i}");
        a.write(&name, body.as_bytes());
        eventually(limit, "a live edit reaches B", || {
            std::fs::read(b.path(&name)).ok().as_deref() == Some(body.as_bytes())
        })
        .await;
    }
    b.write("reply.txt", b"from the right");
    eventually(limit, "B's edit reaches A", || a.path("reply.txt").exists()).await;
    std::fs::remove_file(a.path("live-0.txt")).unwrap();
    eventually(limit, "the delete reaches B", || {
        !b.path("live-0.txt").exists()
    })
    .await;
    eventually(limit, "both folders agree", || {
        tree(&a.folder) == tree(&b.folder)
    })
    .await;
    eventually(limit, "A's daemon reports synced", || {
        let s = a.status(None);
        s["daemon_running"] == true && s["target"]["status"] == "synced"
    })
    .await;
    a.stop_daemon().await;
    b.stop_daemon().await;
    let s = a.status(None);
    assert_eq!(
        s["daemon_running"], false,
        "after the daemon stops, status is computed offline"
    );
    assert_eq!(s["target"]["status"], "synced", "{s}");
}

on_both_backends!(daemons_push_changes);

/// Versions and restore, a refused commit (over quota) that is reported
/// and not looped on, and the setup contract's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_restore_quota_and_setup_errors() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("eve@example.org", Some(4 * 1024 * 1024));
    let a = cluster.client("a", &email);
    let b = cluster.client("b", &email);
    for v in ["one", "two", "three"] {
        a.write("story.txt", v.as_bytes());
        a.sync();
    }
    let out = a.run(&["versions", a.path("story.txt").to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let versions: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(versions.len(), 3, "{versions:?}");
    let out = a.run(&[
        "restore",
        a.path("story.txt").to_str().unwrap(),
        "--version",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.read("story.txt"), b"one");
    b.sync();
    assert_eq!(b.read("story.txt"), b"one");

    // A deleted file is restored too.
    std::fs::remove_file(a.path("story.txt")).unwrap();
    a.sync();
    let out = a.run(&[
        "restore",
        a.path("story.txt").to_str().unwrap(),
        "--version",
        "2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(a.read("story.txt"), b"two");

    // Over quota: refused, reported, the rest still syncs, exit 0, and the
    // next sync does not retry it.
    a.write("huge.bin", &random_bytes(6 * 1024 * 1024, 9));
    a.write("small.txt", b"fits");
    let s = a.sync();
    assert_eq!(s.refused.len(), 1, "{:?}", s.refused);
    assert!(
        s.refused[0]["reason"].as_str().unwrap().contains("quota"),
        "{:?}",
        s.refused
    );
    let again = a.sync();
    assert_eq!(again.bytes_uploaded, 0, "a refused file is not re-sent");
    b.sync();
    assert!(b.path("small.txt").exists());
    assert!(!b.path("huge.bin").exists());
    let st = a.status(Some("huge.bin"));
    assert_eq!(st["target"]["status"], "error", "{st}");

    // Errors: a wrong password, a second setup without --force, a path
    // outside the folder, an unknown version.
    let c = common_client(&cluster, "c");
    let out = c.run(&[
        "setup",
        "--server",
        &cluster.url,
        "--email",
        &email,
        "--password",
        "wrong",
        "--dir",
        c.folder.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("password")
            || String::from_utf8_lossy(&out.stderr).contains("unauthenticated"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = a.run(&[
        "setup",
        "--server",
        &cluster.url,
        "--email",
        &email,
        "--password",
        "secret-pw",
        "--dir",
        a.folder.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = a.run(&["versions", "/etc/passwd"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside the synced folder"));
    let out = a.run(&[
        "restore",
        a.path("story.txt").to_str().unwrap(),
        "--version",
        "99",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        a.read("story.txt"),
        b"two",
        "a failed restore changes nothing"
    );
    let out = common_client(&cluster, "nobody").run(&["sync", "--once"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stacksync setup"));
}

/// A client value for a home that has no profile yet.
fn common_client(cluster: &Cluster, name: &str) -> Client {
    let home = cluster.dir.path().join(format!("{name}-home"));
    let folder = cluster.dir.path().join(format!("{name}-folder"));
    Client::unconfigured(name, home, folder)
}
