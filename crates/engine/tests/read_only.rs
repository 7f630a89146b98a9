//! A read-only member's device (`EngineConfig::read_only`): the engine
//! never commits; what the user changes stays on this device (an edit in a
//! conflicted copy with the server's version back in place, what the server
//! does not have left where it is and reported once), what they delete or
//! move comes back from the server, remote changes arrive as usual, and
//! nothing local is lost.
//!
//! The read-only device talks to the server through a connection that
//! refuses every commit with `Forbidden`, as the service does for a
//! read-only member, and counts them: the engine must send none (it never
//! relies on the server to stop it). Each scenario runs twice: synced in
//! full, and the daemon's way after a watcher event (partial rescan,
//! focused plan).

mod common;

use std::sync::Arc;

use common::{ReadOnlyLink, World};
use stacksync_engine::SyncReport;
use stacksync_engine::planner::READ_ONLY_REASON;
use stacksync_proto::{ItemMeta, ItemStatus};

/// Device 0 may write and holds `files`; device 1 is a read-only member
/// (read-only from its first sync). Both are in step when this returns.
async fn world(files: &[(&str, &[u8])]) -> (World, Arc<ReadOnlyLink>) {
    let mut w = World::new(2);
    for (path, data) in files {
        w.dev(0).write(path, data);
    }
    let link = w.dev(1).make_read_only();
    w.converge().await;
    (w, link)
}

/// Syncs device `i` in full, or the daemon's way after a watcher event.
async fn sync(w: &mut World, i: usize, watched: bool) -> SyncReport {
    let r = if watched {
        w.sync_watched(i).await
    } else {
        w.sync(i).await
    };
    assert!(r.converged, "{r:#?}");
    r
}

/// The paths a report gives as kept on this device, each with the
/// read-only reason (and no other refusal).
fn kept(r: &SyncReport) -> Vec<String> {
    for (path, why) in &r.refused {
        assert_eq!(why, READ_ONLY_REASON, "{path}");
    }
    r.refused.iter().map(|(p, _)| p.to_string()).collect()
}

/// Syncs the read-only device again (both ways): nothing left to do, and
/// the same entries still reported.
async fn assert_quiet(w: &mut World, kept_before: &[String]) {
    for watched in [true, false] {
        let r = sync(w, 1, watched).await;
        assert_eq!(r.applied, 0, "no loop: {r:#?}");
        assert_eq!(kept(&r), kept_before);
    }
}

/// The server's live items, by name.
fn live_on_server(w: &World) -> Vec<ItemMeta> {
    let mut live: Vec<ItemMeta> = w
        .server
        .latest()
        .into_iter()
        .filter(|m| m.status != ItemStatus::Deleted)
        .collect();
    live.sort_by(|a, b| a.name.cmp(&b.name));
    live
}

fn names(items: &[ItemMeta]) -> Vec<String> {
    items.iter().map(|m| m.name.to_string()).collect()
}

fn read(w: &mut World, i: usize, path: &str) -> Option<String> {
    w.dev(i)
        .read(path)
        .map(|d| String::from_utf8_lossy(&d).into_owned())
}

#[tokio::test]
async fn an_edit_becomes_a_conflicted_copy_and_the_original_comes_back() {
    for watched in [false, true] {
        let (mut w, link) = world(&[("a.txt", b"server"), ("d/b.txt", b"b")]).await;
        let before = w.server.latest();
        w.dev(1).write("a.txt", b"mine");
        w.dev(1).write("d/b.txt", b"mine too");
        let r = sync(&mut w, 1, watched).await;
        assert_eq!(r.conflicts, 2, "{r:#?}");
        assert_eq!(read(&mut w, 1, "a.txt").as_deref(), Some("server"));
        assert_eq!(read(&mut w, 1, "d/b.txt").as_deref(), Some("b"));
        let copies = w.conflicted_copies(1);
        assert_eq!(copies.len(), 2, "{copies:?}");
        assert!(copies[0].starts_with("a (conflicted copy"), "{copies:?}");
        assert!(copies[1].starts_with("d/b (conflicted copy"), "{copies:?}");
        assert_eq!(read(&mut w, 1, &copies[0]).as_deref(), Some("mine"));
        assert_eq!(read(&mut w, 1, &copies[1]).as_deref(), Some("mine too"));
        // Each copy reported once, as kept here.
        assert_eq!(kept(&r), copies, "{r:#?}");
        assert_eq!(link.proposals(), 0);
        assert_quiet(&mut w, &copies).await;
        // The server and the other device never see the copies.
        assert_eq!(w.server.latest(), before);
        sync(&mut w, 0, watched).await;
        assert!(w.conflicted_copies(0).is_empty());
        assert_eq!(link.proposals(), 0);
        w.assert_nothing_lost();
    }
}

#[tokio::test]
async fn new_local_files_and_folders_stay_and_are_reported() {
    for watched in [false, true] {
        let (mut w, link) = world(&[("a.txt", b"a")]).await;
        w.dev(1).write("new.txt", b"n");
        w.dev(1).write("newdir/inner.txt", b"i");
        w.dev(1).fs.user_mkdir_p("empty");
        let r = sync(&mut w, 1, watched).await;
        // The topmost of a local-only folder only.
        let reported = ["empty", "new.txt", "newdir"].map(String::from);
        assert_eq!(kept(&r), reported, "{r:#?}");
        assert_eq!(read(&mut w, 1, "new.txt").as_deref(), Some("n"));
        assert_eq!(read(&mut w, 1, "newdir/inner.txt").as_deref(), Some("i"));
        assert!(w.dev(1).fs.snapshot().contains_key("empty"));
        assert_quiet(&mut w, &reported).await;
        w.assert_nothing_lost();
        // Changed again (the user's own overwrite): still kept here, still
        // nothing sent.
        w.dev(1).write("new.txt", b"n2");
        w.dev(1).write("newdir/inner.txt", b"i2");
        let r = sync(&mut w, 1, watched).await;
        assert_eq!(kept(&r), reported, "{r:#?}");
        assert_eq!(read(&mut w, 1, "new.txt").as_deref(), Some("n2"));
        assert_eq!(link.proposals(), 0);
        assert_eq!(names(&live_on_server(&w)), ["a.txt"]);
        sync(&mut w, 0, watched).await;
        assert_eq!(w.dev(0).read("new.txt"), None);
    }
}

#[tokio::test]
async fn a_local_delete_is_downloaded_again() {
    for watched in [false, true] {
        let files: [(&str, &[u8]); 3] = [("a.txt", b"a"), ("d/b.txt", b"b"), ("d/e/c.txt", b"c")];
        let (mut w, link) = world(&files).await;
        let before = w.server.latest();
        assert!(w.dev(1).fs.user_remove("a.txt"));
        assert!(w.dev(1).fs.user_remove("d"));
        let r = sync(&mut w, 1, watched).await;
        for (path, data) in files {
            assert_eq!(w.dev(1).read(path).as_deref(), Some(data), "{path}: {r:#?}");
        }
        assert_eq!(kept(&r), Vec::<String>::new());
        assert_eq!(link.proposals(), 0);
        assert_eq!(w.server.latest(), before);
        assert_quiet(&mut w, &[]).await;
        w.assert_same();
    }
}

#[tokio::test]
async fn a_local_rename_keeps_the_new_place_here_and_brings_the_old_one_back() {
    for watched in [false, true] {
        let (mut w, link) = world(&[("a.txt", b"a"), ("d/b.txt", b"b")]).await;
        let before = w.server.latest();
        assert!(w.dev(1).fs.user_rename("a.txt", "z.txt"));
        assert!(w.dev(1).fs.user_rename("d", "e"));
        let r = sync(&mut w, 1, watched).await;
        for (path, data) in [
            ("a.txt", "a"),
            ("z.txt", "a"),
            ("d/b.txt", "b"),
            ("e/b.txt", "b"),
        ] {
            assert_eq!(read(&mut w, 1, path).as_deref(), Some(data), "{path}");
        }
        let reported = ["e", "z.txt"].map(String::from);
        assert_eq!(kept(&r), reported, "{r:#?}");
        assert_eq!(link.proposals(), 0);
        assert_eq!(w.server.latest(), before, "never a server-side rename");
        assert_quiet(&mut w, &reported).await;
    }
}

#[tokio::test]
async fn remote_changes_arrive_at_the_read_only_device() {
    for watched in [false, true] {
        let (mut w, link) = world(&[
            ("a.txt", b"a"),
            ("b.txt", b"b"),
            ("c.txt", b"c"),
            ("d/x.txt", b"x"),
        ])
        .await;
        // Something of its own does not hold them up.
        w.dev(1).write("mine.txt", b"m");
        sync(&mut w, 1, watched).await;
        w.dev(0).write("a.txt", b"a2");
        assert!(w.dev(0).fs.user_remove("b.txt"));
        assert!(w.dev(0).fs.user_rename("c.txt", "c2.txt"));
        assert!(w.dev(0).fs.user_rename("d", "d2"));
        w.dev(0).write("d2/new.txt", b"new");
        sync(&mut w, 0, watched).await;
        let r = sync(&mut w, 1, watched).await;
        assert_eq!(kept(&r), ["mine.txt"], "{r:#?}");
        assert!(w.dev(1).fs.user_remove("mine.txt"));
        w.assert_same();
        assert_eq!(link.proposals(), 0);
    }
}

#[tokio::test]
async fn a_concurrent_edit_keeps_the_remote_version_in_place_and_the_local_in_a_copy() {
    for watched in [false, true] {
        let (mut w, link) = world(&[("a.txt", b"base")]).await;
        w.dev(0).write("a.txt", b"theirs");
        sync(&mut w, 0, watched).await;
        w.dev(1).write("a.txt", b"mine");
        let r = sync(&mut w, 1, watched).await;
        assert_eq!(read(&mut w, 1, "a.txt").as_deref(), Some("theirs"));
        let copies = w.conflicted_copies(1);
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert_eq!(read(&mut w, 1, &copies[0]).as_deref(), Some("mine"));
        assert_eq!(kept(&r), copies, "{r:#?}");
        assert_eq!(link.proposals(), 0);
        assert_quiet(&mut w, &copies).await;
        w.assert_nothing_lost();
    }
}

#[tokio::test]
async fn an_edit_of_a_file_the_server_deleted_is_kept_here_alone() {
    for watched in [false, true] {
        let (mut w, link) = world(&[("a.txt", b"a"), ("b.txt", b"b")]).await;
        assert!(w.dev(0).fs.user_remove("a.txt"));
        assert!(w.dev(0).fs.user_remove("b.txt"));
        sync(&mut w, 0, watched).await;
        w.dev(1).write("a.txt", b"mine");
        let r = sync(&mut w, 1, watched).await;
        assert_eq!(read(&mut w, 1, "a.txt").as_deref(), Some("mine"));
        // Unchanged here: the delete applies as usual.
        assert_eq!(w.dev(1).read("b.txt"), None);
        assert_eq!(kept(&r), ["a.txt"], "{r:#?}");
        assert_eq!(link.proposals(), 0);
        assert!(live_on_server(&w).is_empty(), "never restored");
        assert_quiet(&mut w, &["a.txt".to_string()]).await;
        w.assert_nothing_lost();
    }
}

/// The connection above does refuse and count: a device that may write,
/// behind it, sends its edit and is refused for it.
#[tokio::test]
async fn the_read_only_connection_refuses_a_writer() {
    let (mut w, link) = world(&[("a.txt", b"a")]).await;
    w.dev(1).read_only = false;
    w.dev(1).stop();
    w.dev(1).write("a.txt", b"mine");
    let r = sync(&mut w, 1, false).await;
    assert_eq!(link.proposals(), 1);
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    assert_ne!(r.refused[0].1, READ_ONLY_REASON);
    assert_eq!(read(&mut w, 1, "a.txt").as_deref(), Some("mine"));
}
