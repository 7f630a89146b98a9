//! `LocalFs` against a temporary folder.

use std::os::unix::fs::symlink;

use stacksync_client::LocalFs;
use stacksync_engine::io::EntryKind;
use stacksync_engine::{Fs, FsErrorKind, RelPath};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn p(s: &str) -> RelPath {
    RelPath::parse(s).expect("test paths are valid")
}

fn setup() -> (tempfile::TempDir, LocalFs) {
    let dir = tempfile::tempdir().expect("temp dir");
    let fs = LocalFs::open(dir.path()).expect("open temp dir");
    (dir, fs)
}

async fn write(fs: &LocalFs, temp: &str, dest: &str, data: &[u8]) {
    let mut w = fs.create_temp(&p(temp)).await.expect("create temp");
    w.write_all(data).await.expect("write");
    w.shutdown().await.expect("shutdown");
    fs.persist_temp(&p(temp), &p(dest)).await.expect("persist");
}

async fn read(fs: &LocalFs, path: &str) -> Vec<u8> {
    let mut r = fs.open_read(&p(path)).await.expect("open");
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn rename_never_overwrites() {
    let (_d, fs) = setup();
    write(&fs, "t1", "a", b"A").await;
    write(&fs, "t2", "b", b"B").await;
    let err = fs
        .rename(&p("a"), &p("b"))
        .await
        .expect_err("target exists");
    assert_eq!(err.kind, FsErrorKind::AlreadyExists);
    assert_eq!(read(&fs, "a").await, b"A");
    assert_eq!(read(&fs, "b").await, b"B");
    // Folders too, and a rename to a free name works and keeps the inode.
    fs.mkdir(&p("d1")).await.expect("mkdir");
    fs.mkdir(&p("d2")).await.expect("mkdir");
    let err = fs
        .rename(&p("d1"), &p("d2"))
        .await
        .expect_err("folder exists");
    assert_eq!(err.kind, FsErrorKind::AlreadyExists);
    let before = fs.stat(&p("a")).await.unwrap().unwrap();
    fs.rename(&p("a"), &p("d1/a2")).await.expect("rename");
    let after = fs.stat(&p("d1/a2")).await.unwrap().unwrap();
    assert_eq!(before.stamp.file_id, after.stamp.file_id);
    assert!(fs.stat(&p("a")).await.unwrap().is_none());
}

#[tokio::test]
async fn persist_temp_replaces_atomically() {
    let (d, fs) = setup();
    write(&fs, ".stacksync-dl-1", "f", b"old").await;
    write(&fs, ".stacksync-dl-2", "f", b"new content").await;
    assert_eq!(read(&fs, "f").await, b"new content");
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["f".to_string()], "temporaries are gone");
    let m = fs.stat(&p("f")).await.unwrap().unwrap();
    assert_eq!(m.kind, EntryKind::File);
    assert_eq!(m.stamp.size, 11);
}

#[tokio::test]
async fn resume_temp_keeps_prefix_and_appends() {
    let (_d, fs) = setup();
    let mut w = fs.create_temp(&p("t")).await.unwrap();
    w.write_all(b"0123456789").await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    let mut w = fs.resume_temp(&p("t"), 4).await.unwrap();
    w.write_all(b"xy").await.unwrap();
    w.shutdown().await.unwrap();
    drop(w);
    assert_eq!(read(&fs, "t").await, b"0123xy");
    let err = fs
        .resume_temp(&p("missing"), 0)
        .await
        .err()
        .expect("no temp");
    assert_eq!(err.kind, FsErrorKind::NotFound);
}

#[tokio::test]
async fn symlinks_are_not_followed() {
    let (d, fs) = setup();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    symlink(outside.path().join("secret"), d.path().join("link")).unwrap();
    symlink(outside.path(), d.path().join("dirlink")).unwrap();

    let m = fs.stat(&p("link")).await.unwrap().unwrap();
    assert_eq!(m.kind, EntryKind::Symlink);
    let mut listed = fs.list_dir(&RelPath::root()).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let kinds: Vec<_> = listed.iter().map(|e| (e.name.as_str(), e.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("dirlink", EntryKind::Symlink),
            ("link", EntryKind::Symlink)
        ]
    );

    let err = fs
        .open_read(&p("link"))
        .await
        .err()
        .expect("symlink refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    // A write through the symlink must not reach the target.
    let err = fs
        .create_temp(&p("link"))
        .await
        .err()
        .expect("symlink refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
    let err = fs.remove_file(&p("link")).await.expect_err("not a file");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
}

#[tokio::test]
async fn paths_through_symlinked_folders_are_refused() {
    let (d, fs) = setup();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    symlink(outside.path(), d.path().join("out")).unwrap();
    assert!(fs.stat(&p("out/secret")).await.unwrap().is_none());
    let err = fs
        .open_read(&p("out/secret"))
        .await
        .err()
        .expect("escape refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    let err = fs
        .create_temp(&p("out/new"))
        .await
        .err()
        .expect("escape refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    let err = fs.list_dir(&p("out")).await.expect_err("escape refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    let err = fs
        .remove_file(&p("out/secret"))
        .await
        .expect_err("escape refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    fs.mkdir(&p("in")).await.unwrap();
    let err = fs
        .rename(&p("in"), &p("out/in"))
        .await
        .expect_err("escape refused");
    assert_eq!(err.kind, FsErrorKind::WrongKind);
    assert!(!outside.path().join("new").exists());
    assert!(!outside.path().join("in").exists());
    assert!(outside.path().join("secret").exists());
    // And RelPath itself cannot express `..` or an absolute path.
    assert!(RelPath::parse("../x").is_err());
    assert!(RelPath::parse("/etc/passwd").is_err());
}

#[tokio::test]
async fn special_files_are_classified() {
    let (d, fs) = setup();
    let sock = d.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind socket");
    let listed = fs.list_dir(&RelPath::root()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kind, EntryKind::Special);
    let m = fs.stat(&p("sock")).await.unwrap().unwrap();
    assert_eq!(m.kind, EntryKind::Special);
    assert!(
        fs.open_read(&p("sock")).await.is_err(),
        "a socket is not read"
    );
}

#[tokio::test]
async fn folder_operations_map_errors() {
    let (_d, fs) = setup();
    fs.mkdir(&p("a")).await.unwrap();
    assert_eq!(
        fs.mkdir(&p("a")).await.unwrap_err().kind,
        FsErrorKind::AlreadyExists
    );
    assert_eq!(
        fs.mkdir(&p("x/y")).await.unwrap_err().kind,
        FsErrorKind::NotFound
    );
    write(&fs, "t", "a/f", b"1").await;
    assert_eq!(
        fs.remove_dir(&p("a")).await.unwrap_err().kind,
        FsErrorKind::NotEmpty
    );
    assert_eq!(
        fs.remove_dir(&p("a/f")).await.unwrap_err().kind,
        FsErrorKind::WrongKind
    );
    assert_eq!(
        fs.remove_file(&p("a")).await.unwrap_err().kind,
        FsErrorKind::WrongKind
    );
    assert_eq!(
        fs.remove_file(&p("nope")).await.unwrap_err().kind,
        FsErrorKind::NotFound
    );
    fs.remove_file(&p("a/f")).await.unwrap();
    fs.remove_dir(&p("a")).await.unwrap();
    assert!(fs.stat(&p("a")).await.unwrap().is_none());
    assert!(fs.list_dir(&RelPath::root()).await.unwrap().is_empty());
    assert_eq!(
        fs.remove_dir(&RelPath::root()).await.unwrap_err().kind,
        FsErrorKind::WrongKind
    );
}

#[tokio::test]
async fn hash_and_stat_in_one_call_agree_with_the_calls_they_replace() {
    let (dir, fs) = setup();
    fs.mkdir(&p("d")).await.expect("mkdir");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    write(&fs, "t1", "d/big", &big).await;
    write(&fs, "t2", "empty", b"").await;
    symlink(dir.path().join("d"), dir.path().join("link")).expect("symlink");
    std::fs::write(dir.path().join("d/plain"), b"x").expect("write");

    let streamed = stacksync_engine::scan::hash_file_streaming(&fs, &p("d/big"))
        .await
        .expect("streamed")
        .expect("a file");
    let at_once = fs
        .hash_file(&p("d/big"))
        .await
        .expect("hash")
        .expect("a file");
    assert_eq!(at_once, streamed);
    assert_eq!(at_once.0.0, *blake3::hash(&big).as_bytes());
    assert_eq!(
        fs.hash_file(&p("empty"))
            .await
            .expect("hash")
            .map(|h| h.0.0),
        Some(*blake3::hash(b"").as_bytes())
    );
    // Nothing there, or behind a symlinked folder: nothing of ours.
    assert_eq!(fs.hash_file(&p("gone")).await.expect("missing"), None);
    assert_eq!(
        fs.hash_file(&p("link/plain")).await.expect("through link"),
        None
    );
    // A folder or a symlink is not a file to hash.
    for wrong in ["d", "link"] {
        let e = fs.hash_file(&p(wrong)).await.expect_err("not a file");
        assert_eq!(e.kind, FsErrorKind::WrongKind, "{wrong}");
    }

    let paths: Vec<RelPath> = [
        "d/big",
        "d",
        "link",
        "gone",
        "gone/deeper",
        "link/plain",
        "empty",
    ]
    .into_iter()
    .map(p)
    .collect();
    let all = fs.stat_all(&paths).await;
    assert_eq!(all.len(), paths.len());
    for (path, got) in paths.iter().zip(all) {
        assert_eq!(
            got.expect("stat_all"),
            fs.stat(path).await.expect("stat"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_folder_stamp_does_not_change_with_its_entries() {
    let (_d, fs) = setup();
    fs.mkdir(&p("d")).await.expect("mkdir");
    let before = fs.stat(&p("d")).await.unwrap().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    write(&fs, "d/t", "d/f", b"content").await;
    fs.remove_file(&p("d/f")).await.expect("remove");
    let after = fs.stat(&p("d")).await.unwrap().unwrap();
    assert_eq!(after.kind, EntryKind::Folder);
    assert_eq!(after.stamp, before.stamp);
    assert_eq!(
        after.stamp,
        stacksync_engine::Stamp::folder(before.stamp.file_id)
    );
    assert!(after.stamp.file_id.is_some());
}

#[tokio::test]
async fn a_temporary_written_by_another_hand_is_still_put_in_place_whole() {
    // Left by an earlier run (no writer of this process synced it): the
    // persist must still work and keep the content.
    let (dir, fs) = setup();
    std::fs::write(dir.path().join("t"), b"left behind").expect("write");
    fs.persist_temp(&p("t"), &p("f")).await.expect("persist");
    assert_eq!(read(&fs, "f").await, b"left behind");
    // Written after its writer synced it: also put in place as it is now.
    let mut w = fs.create_temp(&p("t2")).await.expect("create");
    w.write_all(b"first").await.expect("write");
    w.shutdown().await.expect("shutdown");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(dir.path().join("t2"), b"second").expect("rewrite");
    fs.persist_temp(&p("t2"), &p("g")).await.expect("persist");
    assert_eq!(read(&fs, "g").await, b"second");
}
