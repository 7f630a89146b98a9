//! Names that cannot deceive or collide, seen from the engine: names that
//! differ only in case from a live sibling's are refused by the server and
//! kept on disk (reported once, retried when changed or renamed);
//! decomposed (NFD) names are renamed to their composed form when it is
//! free; names with control, bidirectional or invisible characters are
//! reported, never synced, never touched.

mod common;

use common::World;

#[tokio::test]
async fn case_twins_are_reported_once_and_kept() {
    let mut w = World::new(2);
    w.dev(0).write("Report.txt", b"upper");
    w.dev(0).write("report.txt", b"lower");
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    let (refused, why) = r.refused[0].clone();
    // The metadata store's wording (one set of commit rules): a case twin.
    assert!(why.contains("differs only in case"), "{why}");
    // Both stay on this (case-sensitive) disk, untouched.
    assert_eq!(w.dev(0).read("Report.txt").as_deref(), Some(&b"upper"[..]));
    assert_eq!(w.dev(0).read("report.txt").as_deref(), Some(&b"lower"[..]));
    // Not retried while it stays the same.
    let calls = w.server.commit_calls();
    let again = w.sync(0).await;
    assert!(again.converged && again.applied == 0, "{again:#?}");
    assert_eq!(again.refused.len(), 1, "no longer reported: {again:#?}");
    assert_eq!(w.server.commit_calls(), calls, "a refused twin was retried");
    // The other device gets the one the server took.
    w.sync(1).await;
    let keys: Vec<String> = w.dev(1).fs.snapshot().into_keys().collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_ne!(keys[0], refused.to_string());
    // Renamed, the refused twin goes through.
    assert!(
        w.dev(0)
            .fs
            .user_rename(&refused.to_string(), "report (2).txt")
    );
    w.converge().await;
    assert_eq!(w.dev(1).fs.snapshot().len(), 2);
    assert!(w.sync(0).await.refused.is_empty());
}

#[tokio::test]
async fn a_twin_from_another_device_does_not_overwrite_a_local_file() {
    let mut w = World::new(2);
    w.dev(0).write("Notes.md", b"from device 0");
    w.sync(0).await;
    // Device 1 made its own file before it ever synced.
    w.dev(1).write("notes.md", b"from device 1");
    let r = w.sync(1).await;
    assert!(r.converged, "{r:#?}");
    let refused: Vec<String> = r.refused.iter().map(|(p, _)| p.to_string()).collect();
    assert_eq!(refused, ["notes.md"]);
    assert_eq!(
        w.dev(1).read("Notes.md").as_deref(),
        Some(&b"from device 0"[..])
    );
    assert_eq!(
        w.dev(1).read("notes.md").as_deref(),
        Some(&b"from device 1"[..])
    );
    // Changed, it is tried again (and refused again: the rule holds).
    w.dev(1).write("notes.md", b"edited on device 1");
    let calls = w.server.commit_calls();
    let r = w.sync(1).await;
    assert_eq!(r.refused.len(), 1, "{r:#?}");
    assert!(
        w.server.commit_calls() > calls,
        "a changed twin was not retried"
    );
}

#[tokio::test]
async fn decomposed_names_are_renamed_to_their_composed_form() {
    let mut w = World::new(2);
    w.dev(0)
        .fs
        .user_write_raw("docs", "cafe\u{301}.txt", b"coffee");
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    let composed: Vec<(String, String)> = r
        .composed
        .iter()
        .map(|(p, raw)| (p.to_string(), raw.clone()))
        .collect();
    assert_eq!(
        composed,
        [(
            "docs/caf\u{e9}.txt".to_owned(),
            "cafe\u{301}.txt".to_owned()
        )]
    );
    assert!(r.not_synced.is_empty(), "{r:#?}");
    assert_eq!(w.dev(0).fs.user_read_raw("docs", "cafe\u{301}.txt"), None);
    w.converge().await;
    assert_eq!(
        w.dev(1).read("docs/caf\u{e9}.txt").as_deref(),
        Some(&b"coffee"[..])
    );
}

#[tokio::test]
async fn a_decomposed_name_beside_its_composed_twin_is_reported_and_kept() {
    let mut w = World::new(2);
    w.dev(0).write("caf\u{e9}.txt", b"composed");
    w.dev(0)
        .fs
        .user_write_raw("", "cafe\u{301}.txt", b"decomposed");
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert!(r.composed.is_empty(), "{r:#?}");
    assert_eq!(r.not_synced.len(), 1, "{r:#?}");
    assert!(r.not_synced[0].contains("already exists"), "{r:#?}");
    assert_eq!(
        w.dev(0).fs.user_read_raw("", "cafe\u{301}.txt").as_deref(),
        Some(&b"decomposed"[..])
    );
    w.converge().await;
    assert_eq!(
        w.dev(1).read("caf\u{e9}.txt").as_deref(),
        Some(&b"composed"[..])
    );
}

#[tokio::test]
async fn deceptive_names_are_reported_escaped_and_never_synced() {
    let mut w = World::new(2);
    w.dev(0)
        .fs
        .user_write_raw("", "invoice\u{202e}txt.exe", b"payload");
    w.dev(0).fs.user_write_raw("", "two\nlines\u{1b}[2J", b"x");
    w.dev(0).write("fine.txt", b"y");
    let r = w.sync(0).await;
    assert!(r.converged, "{r:#?}");
    assert_eq!(r.not_synced.len(), 2, "{r:#?}");
    for line in &r.not_synced {
        assert!(
            !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
            "printed raw: {line:?}"
        );
    }
    assert!(
        r.not_synced
            .iter()
            .any(|l| l.contains("invoice\\u{202e}txt.exe") && l.contains("U+202E")),
        "{r:#?}"
    );
    assert_eq!(
        w.dev(0)
            .fs
            .user_read_raw("", "invoice\u{202e}txt.exe")
            .as_deref(),
        Some(&b"payload"[..])
    );
    w.converge().await;
    let keys: Vec<String> = w.dev(1).fs.snapshot().into_keys().collect();
    assert_eq!(keys, ["fine.txt"]);
}
