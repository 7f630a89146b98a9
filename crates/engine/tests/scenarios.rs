//! Whole-engine scenarios: devices around one fake server, converging.

mod common;

use common::World;
use stacksync_proto::ItemStatus;

#[tokio::test]
async fn create_files_folders_empty_folders_and_deep_trees_on_three_clients() {
    let mut w = World::new(3);
    w.dev(0).write("docs/report.txt", b"hello");
    w.dev(0).fs.user_mkdir_p("empty/inner");
    let deep: String = (0..20).map(|i| format!("d{i}/")).collect();
    w.dev(0).write(&format!("{deep}leaf.bin"), b"deep");
    w.dev(1).write("photos/a.jpg", b"jpeg bytes");
    w.converge().await;
    assert_eq!(
        w.dev(2).read("docs/report.txt").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(
        w.dev(2).read(&format!("{deep}leaf.bin")).as_deref(),
        Some(&b"deep"[..])
    );
    assert!(w.dev(2).fs.snapshot().contains_key("empty/inner"));
    assert_eq!(
        w.dev(0).read("photos/a.jpg").as_deref(),
        Some(&b"jpeg bytes"[..])
    );
}

#[tokio::test]
async fn modify_and_delete_files_and_folder_trees() {
    let mut w = World::new(2);
    w.dev(0).write("a.txt", b"one");
    w.dev(0).write("tree/x/y.txt", b"y");
    w.dev(0).write("tree/z.txt", b"z");
    w.converge().await;
    w.dev(1).write("a.txt", b"two");
    w.converge().await;
    assert_eq!(w.dev(0).read("a.txt").as_deref(), Some(&b"two"[..]));
    assert!(w.dev(0).fs.user_remove("tree"));
    assert!(w.dev(0).fs.user_remove("a.txt"));
    w.converge().await;
    assert!(
        w.dev(1).fs.snapshot().is_empty(),
        "{:?}",
        w.dev(1).fs.snapshot()
    );
    // Deletes are versions: the history keeps the contents.
    let deleted = w
        .server
        .latest()
        .iter()
        .filter(|m| m.status == ItemStatus::Deleted)
        .count();
    assert_eq!(deleted, 5);
}

#[tokio::test]
async fn renames_and_moves_are_moves_not_uploads() {
    let mut w = World::new(3);
    w.dev(0).write("a/file.txt", b"content of a file");
    w.dev(0).write("b/other.txt", b"other");
    w.converge().await;
    let chunks = w.server.chunk_uploads();
    assert!(w.dev(1).fs.user_rename("a/file.txt", "a/renamed.txt"));
    assert!(w.dev(1).fs.user_rename("b", "a/b"));
    w.converge().await;
    assert_eq!(w.server.chunk_uploads(), chunks, "a move uploaded content");
    assert_eq!(
        w.dev(2).read("a/renamed.txt").as_deref(),
        Some(&b"content of a file"[..])
    );
    assert_eq!(
        w.dev(2).read("a/b/other.txt").as_deref(),
        Some(&b"other"[..])
    );
    let statuses: Vec<ItemStatus> = w.server.latest().iter().map(|m| m.status).collect();
    assert!(
        statuses.contains(&ItemStatus::Renamed) && statuses.contains(&ItemStatus::Moved),
        "{statuses:?}"
    );
    assert!(!statuses.contains(&ItemStatus::Deleted), "{statuses:?}");
}

#[tokio::test]
async fn moves_without_file_ids_are_found_by_content() {
    let mut w = World::new(2);
    w.dev(0).fs.without_file_ids();
    w.dev(0).write("a/file.txt", b"some file content");
    w.converge().await;
    let chunks = w.server.chunk_uploads();
    assert!(w.dev(0).fs.user_rename("a/file.txt", "moved.txt"));
    w.converge().await;
    assert_eq!(w.server.chunk_uploads(), chunks);
    assert_eq!(
        w.dev(1).read("moved.txt").as_deref(),
        Some(&b"some file content"[..])
    );
}

#[tokio::test]
async fn rename_of_a_large_tree_uploads_no_chunk() {
    let mut w = World::with_chunk_size(2, 1024);
    let mut rng = stacksync_engine::sim::SimRng::new(42);
    for i in 0..30 {
        let data: Vec<u8> = (0..20_000u32).map(|_| rng.next_u64() as u8).collect();
        w.dev(0).write(&format!("big/sub{}/f{i}.bin", i % 4), &data);
    }
    w.converge().await;
    let chunks = w.server.chunk_uploads();
    assert!(chunks > 300);
    assert!(w.dev(0).fs.user_rename("big", "renamed"));
    w.converge().await;
    assert_eq!(
        w.server.chunk_uploads(),
        chunks,
        "the rename re-uploaded chunks"
    );
    assert!(w.dev(1).fs.snapshot().keys().all(|k| !k.starts_with("big")));
}

#[tokio::test]
async fn swapping_two_names_converges() {
    let mut w = World::new(2);
    w.dev(0).write("a", b"A");
    w.dev(0).write("b", b"B");
    w.converge().await;
    assert!(w.dev(0).fs.user_rename("a", "t"));
    assert!(w.dev(0).fs.user_rename("b", "a"));
    assert!(w.dev(0).fs.user_rename("t", "b"));
    w.converge().await;
    assert_eq!(w.dev(1).read("a").as_deref(), Some(&b"B"[..]));
    assert_eq!(w.dev(1).read("b").as_deref(), Some(&b"A"[..]));
}

#[tokio::test]
async fn large_files_round_trip() {
    let mut w = World::with_chunk_size(2, 64 * 1024);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i ^ (i >> 7)) as u8).collect();
    w.dev(0).write("video.bin", &data);
    w.converge().await;
    assert_eq!(w.dev(1).read("video.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn interrupted_download_resumes_without_fetching_finished_chunks() {
    let mut w = World::with_chunk_size(2, 1000);
    let mut rng = stacksync_engine::sim::SimRng::new(5);
    let data: Vec<u8> = (0..40_000).map(|_| rng.next_u64() as u8).collect();
    w.dev(0).write("big.bin", &data);
    w.sync(0).await;
    // The 40-chunk download crashes after 20 chunks are on disk.
    w.dev(1).fs.crash_after_bytes(20_000);
    assert!(w.dev(1).try_sync().await.is_err());
    assert!(
        w.dev(1).read("big.bin").is_none(),
        "a partial file was put in place"
    );
    w.dev(1).stop();
    w.dev(1).fs.recover();
    let before = w.server.chunk_downloads();
    w.sync(1).await;
    assert_eq!(
        w.server.chunk_downloads() - before,
        20,
        "finished chunks were fetched again"
    );
    assert_eq!(w.dev(1).read("big.bin").as_deref(), Some(&data[..]));
    assert!(
        w.dev(1).fs.snapshot().len() == 1,
        "the temporary file was left behind"
    );
}

#[tokio::test]
async fn concurrent_edit_makes_exactly_one_conflicted_copy_and_loses_nothing() {
    let mut w = World::new(3);
    w.dev(0).write("notes.txt", b"base");
    w.converge().await;
    w.dev(0).write("notes.txt", b"edit from dev0");
    w.dev(1).write("notes.txt", b"edit from dev1");
    w.sync(0).await;
    w.sync(1).await;
    w.converge().await;
    for i in 0..3 {
        let copies = w.conflicted_copies(i);
        assert_eq!(copies.len(), 1, "{copies:?}");
        assert!(
            copies[0].starts_with("notes (conflicted copy from dev1 "),
            "{copies:?}"
        );
    }
    assert_eq!(
        w.dev(2).read("notes.txt").as_deref(),
        Some(&b"edit from dev0"[..])
    );
    let copy = w.conflicted_copies(2).remove(0);
    assert_eq!(
        w.dev(2).read(&copy).as_deref(),
        Some(&b"edit from dev1"[..])
    );
}

#[tokio::test]
async fn same_new_name_on_two_devices_keeps_both() {
    let mut w = World::new(2);
    w.dev(0).write("plan.md", b"mine");
    w.dev(1).write("plan.md", b"theirs");
    w.converge().await;
    assert_eq!(w.conflicted_copies(0).len(), 1);
    let contents: Vec<Vec<u8>> = w.dev(1).fs.snapshot().into_values().flatten().collect();
    assert!(contents.contains(&b"mine".to_vec()) && contents.contains(&b"theirs".to_vec()));
}

#[tokio::test]
async fn edit_against_delete_keeps_the_edit_both_ways() {
    // Local edit, remote delete.
    let mut w = World::new(2);
    w.dev(0).write("d/f.txt", b"base");
    w.converge().await;
    assert!(w.dev(1).fs.user_remove("d"));
    w.sync(1).await;
    w.dev(0).write("d/f.txt", b"edited");
    w.converge().await;
    assert_eq!(w.dev(1).read("d/f.txt").as_deref(), Some(&b"edited"[..]));

    // Remote edit, local delete.
    let mut w = World::new(2);
    w.dev(0).write("g.txt", b"base");
    w.converge().await;
    w.dev(1).write("g.txt", b"edited");
    w.sync(1).await;
    assert!(w.dev(0).fs.user_remove("g.txt"));
    w.converge().await;
    assert_eq!(w.dev(0).read("g.txt").as_deref(), Some(&b"edited"[..]));
    assert!(w.conflicted_copies(0).is_empty());
}

#[tokio::test]
async fn offline_edits_are_reconciled_at_start_up() {
    let mut w = World::new(2);
    w.dev(0).write("keep.txt", b"k");
    w.dev(0).write("edit.txt", b"v1");
    w.dev(0).write("gone.txt", b"g");
    w.dev(0).write("dir/moved.txt", b"m");
    w.converge().await;
    w.dev(0).stop();
    w.dev(0).write("edit.txt", b"v2 offline");
    assert!(w.dev(0).fs.user_remove("gone.txt"));
    assert!(w.dev(0).fs.user_rename("dir/moved.txt", "moved.txt"));
    w.dev(0).write("new.txt", b"n");
    let chunks = w.server.chunk_uploads();
    w.converge().await;
    let snap = w.dev(1).fs.snapshot();
    let keys: Vec<&str> = snap.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["dir", "edit.txt", "keep.txt", "moved.txt", "new.txt"]
    );
    assert_eq!(
        w.server.chunk_uploads(),
        chunks + 2,
        "only the edit and the new file are uploaded"
    );
}

#[tokio::test]
async fn files_changing_while_read_are_retried_not_uploaded_half_written() {
    let mut w = World::new(2);
    w.dev(0).write("log.txt", b"first");
    // Change it during the scan's hash, then again during the upload.
    w.dev(0).fs.change_on_next_read("log.txt");
    // Not `w.sync`: the first content is overwritten by the "user" during
    // the read, before the engine could keep it, so it is not expected.
    let r = w.dev(0).sync().await;
    assert!(r.converged);
    w.converge().await;
    let got = w.dev(1).read("log.txt").expect("synced eventually");
    assert_eq!(got, w.dev(0).read("log.txt").expect("still there"));
    assert!(got.starts_with(b"first (edited while read)"));
    assert!(
        w.server.all_contents().len() == 1,
        "a half-read version was committed"
    );
}

#[tokio::test]
async fn refused_names_are_reported_and_not_looped_on() {
    let mut w = World::new(2);
    w.server.refuse_names_containing(":");
    w.dev(0).write("bad:name.txt", b"x");
    w.dev(0).write("bad:dir/child.txt", b"c");
    w.dev(0).write("fine.txt", b"y");
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    let refused: Vec<String> = r.refused.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(refused, ["bad:dir", "bad:name.txt"]);
    let again = w.sync(0).await;
    assert_eq!(again.applied, 0, "{again:#?}");
    w.sync(1).await;
    let keys: Vec<String> = w.dev(1).fs.snapshot().into_keys().collect();
    assert_eq!(keys, ["fine.txt"]);
    // Renaming the file to an accepted name lets it through.
    assert!(w.dev(0).fs.user_rename("bad:name.txt", "good name.txt"));
    w.sync(0).await;
    w.sync(1).await;
    assert_eq!(w.dev(1).read("good name.txt").as_deref(), Some(&b"x"[..]));
}

#[tokio::test]
async fn symlinks_special_files_and_ignored_files_are_not_synced() {
    let mut w = World::new(2);
    w.dev(0).write(".stacksyncignore", b"*.log\nbuild/\n");
    w.dev(0).write("app.log", b"noise");
    w.dev(0).write("build/out.o", b"obj");
    w.dev(0).write("~$doc.docx", b"lock");
    w.dev(0).write("doc.docx", b"doc");
    w.dev(0).fs.user_symlink("link");
    w.dev(0).fs.user_special("fifo");
    let r = w.sync(0).await;
    assert_eq!(r.not_synced.len(), 2, "{r:#?}");
    w.sync(1).await;
    let keys: Vec<String> = w.dev(1).fs.snapshot().into_keys().collect();
    assert_eq!(keys, [".stacksyncignore", "doc.docx"]);
}

#[tokio::test]
async fn lost_commit_reply_is_recovered_idempotently() {
    let mut w = World::new(2);
    w.dev(0).write("a.txt", b"a");
    w.dev(0).link.lose_next_reply();
    assert!(w.dev(0).try_sync().await.is_err());
    w.converge().await;
    assert_eq!(
        w.server.latest().len(),
        1,
        "the retry created a second item"
    );
    assert_eq!(w.dev(1).read("a.txt").as_deref(), Some(&b"a"[..]));
}

/// A scenario with every kind of change on both sides, to crash into.
async fn busy_world() -> World {
    let mut w = World::new(2);
    w.dev(0).write("a/one.txt", b"one");
    w.dev(0).write("a/two.txt", b"two");
    w.dev(0).write("b/three.txt", b"three");
    w.dev(0).write("shared.txt", b"base");
    w.converge().await;
    w.dev(1).write("shared.txt", b"remote edit");
    w.dev(1).write("a/remote-new.txt", b"rn");
    assert!(w.dev(1).fs.user_rename("b", "b2"));
    w.sync(1).await;
    w.dev(0).write("shared.txt", b"local edit");
    w.dev(0).write("local-new/x.txt", b"x");
    assert!(w.dev(0).fs.user_rename("a/one.txt", "one-moved.txt"));
    assert!(w.dev(0).fs.user_remove("a/two.txt"));
    w
}

#[tokio::test]
async fn crash_at_every_point_converges() {
    // How many mutating calls a clean run makes bounds the crash points.
    let mut clean = busy_world().await;
    let before = clean.dev(0).fs.mutations();
    clean.sync(0).await;
    let total = clean.dev(0).fs.mutations() - before;
    assert!(total > 5, "{total}");
    for crash_at in 0..=total {
        let mut w = busy_world().await;
        w.dev(0).fs.crash_after(crash_at);
        w.saved.extend(w.devices[0].contents());
        let _ = w.dev(0).try_sync().await;
        w.dev(0).stop();
        w.dev(0).fs.recover();
        w.converge().await;
        assert_eq!(
            w.conflicted_copies(1).len(),
            1,
            "crash at {crash_at}: {:?}",
            w.dev(1).fs.snapshot().keys()
        );
        assert_eq!(
            w.dev(1).read("one-moved.txt").as_deref(),
            Some(&b"one"[..]),
            "crash at {crash_at}"
        );
    }
}
