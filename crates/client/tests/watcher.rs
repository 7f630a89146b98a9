//! The watcher reports real changes within a deadline. Each phase starts a
//! fresh watcher after the previous change, so an event left over from
//! one phase cannot satisfy the next.

use std::path::Path;
use std::time::Duration;

use stacksync_client::{WatchConfig, WatchEvent, Watcher};

const DEADLINE: Duration = Duration::from_secs(20);

fn config() -> WatchConfig {
    WatchConfig {
        quiet: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        rescan_every: Duration::from_secs(3600),
    }
}

async fn expect_change(w: &mut Watcher, what: &str) {
    match tokio::time::timeout(DEADLINE, w.next()).await {
        Ok(Some(WatchEvent::Changed { events, paths })) => {
            assert!(events >= 1, "{what}");
            // The platform names what changed.
            assert!(paths.is_some_and(|p| !p.is_empty()), "{what}");
        }
        other => panic!("{what}: expected a change, got {other:?}"),
    }
}

async fn phase(root: &Path, what: &str, change: impl FnOnce()) {
    let mut w = Watcher::start(root, config()).expect("start watcher");
    change();
    expect_change(&mut w, what).await;
}

#[tokio::test]
async fn sees_create_modify_rename_and_nested_changes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    phase(root, "create", || {
        std::fs::write(root.join("a.txt"), b"1").unwrap()
    })
    .await;
    phase(root, "modify", || {
        std::fs::write(root.join("a.txt"), b"22").unwrap()
    })
    .await;
    phase(root, "rename", || {
        std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap()
    })
    .await;
    phase(root, "mkdir", || {
        std::fs::create_dir(root.join("sub")).unwrap()
    })
    .await;
    phase(root, "write in a subfolder", || {
        std::fs::write(root.join("sub").join("c.txt"), b"3").unwrap()
    })
    .await;
    phase(root, "delete", || {
        std::fs::remove_file(root.join("b.txt")).unwrap()
    })
    .await;
}

#[tokio::test]
async fn periodic_rescan_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Watcher::start(
        dir.path(),
        WatchConfig {
            rescan_every: Duration::from_millis(20),
            ..config()
        },
    )
    .unwrap();
    for _ in 0..2 {
        let got = tokio::time::timeout(DEADLINE, w.next()).await;
        assert_eq!(got.ok().flatten(), Some(WatchEvent::Rescan));
    }
}

#[tokio::test]
async fn a_missing_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Watcher::start(&dir.path().join("nope"), config()).is_err());
}
