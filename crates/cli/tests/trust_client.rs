//! End-to-end: what the client leaves out of sync it never deletes, with
//! real server and client processes on the embedded default. Each test
//! reproduces a finding as a user meets it: ignore rules (finding 1),
//! files named like the client's temporaries (finding 2), and a symbolic
//! link where the server has a folder (finding 15).

mod common;

use common::{Backend, Client, Cluster};

fn names(refused: &[serde_json::Value]) -> Vec<String> {
    refused
        .iter()
        .filter_map(|r| r["path"].as_str().map(str::to_owned))
        .collect()
}

fn has(c: &Client, rel: &str, content: &[u8]) -> bool {
    std::fs::read(c.path(rel)).is_ok_and(|d| d == content)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_1_an_ignore_rule_deletes_nothing_on_any_device() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    a.write("a.txt", b"alpha");
    a.write("docs/b.txt", b"beta");
    a.write("build/out.o", b"object");
    a.write("keep.md", b"kept");
    a.sync();
    b.sync();
    assert!(has(&b, "docs/b.txt", b"beta"));

    a.write(".stacksyncignore", b"*.txt\nbuild/\n");
    for _ in 0..2 {
        a.sync();
        b.sync();
    }
    for c in [&a, &b] {
        for (p, d) in [
            ("a.txt", &b"alpha"[..]),
            ("docs/b.txt", b"beta"),
            ("build/out.o", b"object"),
            ("keep.md", b"kept"),
        ] {
            assert!(has(c, p, d), "{} lost {p}", c.name);
        }
    }
    // The server still has them: a new device gets every file.
    let c = cluster.client("tablet", &email);
    c.sync();
    assert!(has(&c, "a.txt", b"alpha") && has(&c, "build/out.o", b"object"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_files_named_like_temporaries_are_never_deleted() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    // A user's own file with the download temporaries' prefix, while the
    // client downloads (and so cleans up after its downloads).
    a.write(".stacksync-dl-notes", b"never uploaded");
    b.write("incoming.txt", b"from the desktop");
    b.write("notes.txt", b"notes");
    b.write("other.txt", b"other");
    b.sync();
    a.sync();
    a.sync();
    assert!(has(&a, ".stacksync-dl-notes", b"never uploaded"));
    assert!(has(&a, "incoming.txt", b"from the desktop"));

    // Another device renames items to reserved names: nothing is deleted
    // anywhere, and the clash is reported.
    std::fs::rename(b.path("notes.txt"), b.path(".stacksync-dl-notes")).unwrap();
    std::fs::rename(b.path("other.txt"), b.path(".stacksync-move-other")).unwrap();
    b.sync();
    let got = a.sync();
    a.sync();
    assert!(has(&b, ".stacksync-dl-notes", b"notes"));
    assert!(has(&b, ".stacksync-move-other", b"other"));
    assert!(has(&a, "notes.txt", b"notes"), "notes.txt was deleted");
    assert!(has(&a, "other.txt", b"other"), "other.txt was deleted");
    assert!(has(&a, ".stacksync-dl-notes", b"never uploaded"));
    assert_eq!(names(&got.refused), ["other.txt"], "{got:?}");
    // The server still has both: a new device gets them.
    let c = cluster.client("tablet", &email);
    c.sync();
    assert!(has(&c, "notes.txt", b"notes"), "the server lost notes.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_15_a_symlink_where_the_server_has_a_folder_is_reported_once() {
    let cluster = Cluster::start(&Backend::Embedded).await;
    let email = cluster.add_user("ana@example.org", None);
    let a = cluster.client("laptop", &email);
    let b = cluster.client("desktop", &email);
    a.write("docs/a.txt", b"a");
    a.write("docs/sub/b.txt", b"b");
    a.write("photo.jpg", b"jpeg");
    a.sync();
    std::fs::create_dir_all(&b.folder).unwrap();
    std::os::unix::fs::symlink("/tmp", b.path("docs")).unwrap();
    b.write("mine.txt", b"mine");
    let got = b.sync();
    assert_eq!(names(&got.refused), ["docs"], "{got:?}");
    assert!(has(&b, "photo.jpg", b"jpeg"), "the rest did not sync");
    assert!(
        std::fs::symlink_metadata(b.path("docs"))
            .unwrap()
            .is_symlink()
    );
    a.sync();
    assert!(has(&a, "mine.txt", b"mine"));
    assert!(has(&a, "docs/sub/b.txt", b"b"), "the folder was deleted");
}
