//! Commits the server accepted but the client never saved: the client dies
//! (or loses the reply) after the server applied a commit batch and before
//! the outcomes reach the saved state. The intent record saved before the
//! batch is sent lets the next run recognise its own versions, so the
//! user's later edits and renames stay edits and renames.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use common::World;
use stacksync_engine::io::MemStateStore;
use stacksync_engine::sim::DeviceLink;
use stacksync_engine::{Engine, EngineConfig, EngineIo, Remote, StateStore, SyncState};
use stacksync_proto::{
    ChangesPage, CommitResult, ContentHash, Error, ItemId, ItemMeta, ItemStatus, ProposedItem,
};

/// Where the next sync dies.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The server applies the batch; the reply never arrives.
    LostReply,
    /// The reply arrives and its outcomes are applied in memory, but the
    /// save that would record them fails: the process died mid-way.
    SaveAfterReply,
    /// The batch never reaches the server.
    BeforeServer,
}

const AFTER_SERVER: [Crash; 2] = [Crash::LostReply, Crash::SaveAfterReply];

/// Progress of the one injected crash.
const WAITING: u8 = 0;
const ARMED: u8 = 1;
const DONE: u8 = 2;

/// A device link that fails the first commit call before the server sees
/// it (`BeforeServer`), or arms [`FailingStore`] once the server answered.
struct CrashingRemote {
    inner: DeviceLink,
    crash: Crash,
    step: Arc<AtomicU8>,
}

#[async_trait]
impl Remote for CrashingRemote {
    async fn get_changes(&self, since: u64, limit: u32) -> Result<ChangesPage, Error> {
        self.inner.get_changes(since, limit).await
    }

    async fn commit(&self, items: Vec<ProposedItem>) -> Result<CommitResult, Error> {
        let first = self
            .step
            .compare_exchange(WAITING, ARMED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        if first && matches!(self.crash, Crash::BeforeServer) {
            self.step.store(DONE, Ordering::SeqCst);
            return Err(Error::unavailable(
                "connection lost before sending (simulated)",
            ));
        }
        self.inner.commit(items).await
    }
}

/// A state store whose first save after an answered commit fails.
struct FailingStore {
    inner: Arc<MemStateStore>,
    step: Arc<AtomicU8>,
}

#[async_trait]
impl StateStore for FailingStore {
    async fn load(&self) -> Result<Option<SyncState>, String> {
        self.inner.load().await
    }

    async fn save(&self, state: &SyncState) -> Result<(), String> {
        if self
            .step
            .compare_exchange(ARMED, DONE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err("killed before saving the commit outcomes (simulated)".into());
        }
        self.inner.save(state).await
    }
}

/// Runs one sync of device `i` that dies as `crash` says at its first
/// commit batch, and drops its engine (the process is gone).
async fn sync_crashing(w: &mut World, i: usize, crash: Crash) {
    w.dev(i).stop();
    let calls = w.server.commit_calls();
    if let Crash::LostReply = crash {
        w.dev(i).link.lose_next_reply();
        let r = w.dev(i).try_sync().await;
        assert!(r.is_err(), "the lost reply did not end the sync: {r:?}");
        w.dev(i).stop();
    } else {
        let d = &w.devices[i];
        let step = Arc::new(AtomicU8::new(WAITING));
        // The intent save before the batch must go through: arm only once
        // the server has been called (for `SaveAfterReply`).
        let remote = CrashingRemote {
            inner: d.link.clone(),
            crash,
            step: step.clone(),
        };
        let io = EngineIo {
            fs: Arc::new(d.fs.clone()),
            remote: Arc::new(remote),
            content: Arc::new(d.link.clone()),
            clock: d.clock.clone(),
            ids: d.ids.clone(),
            store: Arc::new(FailingStore {
                inner: d.store.clone(),
                step: step.clone(),
            }),
        };
        let config = EngineConfig {
            device_name: d.name.clone(),
            page_limit: 7,
            ..EngineConfig::default()
        };
        let mut engine = Engine::open(io, config).await.expect("the engine opens");
        let r = engine.sync().await;
        assert!(
            r.is_err(),
            "{crash:?}: the crash did not end the sync: {r:?}"
        );
        assert_eq!(
            step.load(Ordering::SeqCst),
            DONE,
            "{crash:?} never happened"
        );
    }
    let expected = match crash {
        Crash::BeforeServer => calls,
        _ => calls + 1,
    };
    assert_eq!(
        w.server.commit_calls(),
        expected,
        "{crash:?}: not exactly the one crashing batch reached the server"
    );
}

fn hash(data: &[u8]) -> ContentHash {
    ContentHash(*blake3::hash(data).as_bytes())
}

fn live(w: &World) -> Vec<ItemMeta> {
    w.server
        .latest()
        .into_iter()
        .filter(|m| m.status.is_live())
        .collect()
}

fn id_named(w: &World, name: &str) -> ItemId {
    let found: Vec<ItemId> = live(w)
        .iter()
        .filter(|m| m.name.as_str() == name)
        .map(|m| m.id)
        .collect();
    assert_eq!(found.len(), 1, "live items named {name}: {found:?}");
    found[0]
}

async fn saved_state(w: &World, i: usize) -> SyncState {
    w.devices[i]
        .store
        .load()
        .await
        .expect("the memory store loads")
        .expect("a state was saved")
}

#[tokio::test]
async fn an_edit_after_an_unsaved_commit_is_a_new_version_not_a_conflict() {
    for crash in AFTER_SERVER {
        let mut w = World::new(2);
        w.dev(0).write("f.txt", b"first");
        w.converge().await;
        let id = id_named(&w, "f.txt");

        w.dev(0).write("f.txt", b"second, committed then lost");
        sync_crashing(&mut w, 0, crash).await;
        assert_eq!(w.server.history(id).len(), 2, "{crash:?}: the edit landed");
        w.dev(0).write("f.txt", b"third, edited after the crash");
        w.converge().await;

        assert!(
            w.conflicted_copies(0).is_empty() && w.conflicted_copies(1).is_empty(),
            "{crash:?}: our own version was taken for a concurrent edit: {:?}",
            w.conflicted_copies(0)
        );
        let versions: Vec<(u64, Option<ContentHash>)> = w
            .server
            .history(id)
            .iter()
            .map(|m| (m.version, m.content_hash))
            .collect();
        assert_eq!(
            versions,
            [
                (1, Some(hash(b"first"))),
                (2, Some(hash(b"second, committed then lost"))),
                (3, Some(hash(b"third, edited after the crash"))),
            ],
            "{crash:?}"
        );
        assert_eq!(
            w.dev(1).read("f.txt").as_deref(),
            Some(&b"third, edited after the crash"[..])
        );
        assert!(saved_state(&w, 0).await.pending.is_empty());
    }
}

#[tokio::test]
async fn a_folder_renamed_after_an_unsaved_create_is_moved_not_duplicated() {
    for crash in AFTER_SERVER {
        let mut w = World::new(2);
        w.dev(0).write("late/keep.txt", b"keep");
        w.converge().await;

        w.dev(0).write("late/k0/a.txt", b"file a");
        w.dev(0).write("late/k0/sub/b.txt", b"file b");
        sync_crashing(&mut w, 0, crash).await;
        let folder = id_named(&w, "k0");
        let a = id_named(&w, "a.txt");
        let chunks = w.server.chunk_uploads();
        assert!(w.dev(0).fs.user_rename("late/k0", "late/moved1"));
        w.converge().await;

        // late, keep.txt, moved1, a.txt, sub, b.txt: nothing created twice.
        let names: Vec<String> = live(&w).iter().map(|m| m.name.to_string()).collect();
        assert_eq!(names.len(), 6, "{crash:?}: {names:?}");
        assert_eq!(id_named(&w, "moved1"), folder, "{crash:?}: not a rename");
        assert_eq!(id_named(&w, "a.txt"), a, "{crash:?}: a.txt created again");
        let last = w.server.history(folder).last().cloned().expect("a history");
        assert_eq!(last.status, ItemStatus::Renamed, "{crash:?}");
        assert_eq!(w.server.chunk_uploads(), chunks, "{crash:?}: re-uploaded");
        for d in 0..2 {
            let snap = w.dev(d).fs.snapshot();
            assert!(
                !snap.keys().any(|p| p.starts_with("late/k0")),
                "{crash:?}: the renamed folder came back on dev{d}: {:?}",
                snap.keys().collect::<Vec<_>>()
            );
            assert_eq!(
                w.dev(d).read("late/moved1/sub/b.txt").as_deref(),
                Some(&b"file b"[..])
            );
        }
    }
}

#[tokio::test]
async fn a_file_recreated_after_an_unsaved_delete_is_a_new_item() {
    for crash in AFTER_SERVER {
        let mut w = World::new(2);
        w.dev(0).write("gone.txt", b"old content");
        w.converge().await;
        let old = id_named(&w, "gone.txt");

        assert!(w.dev(0).fs.user_remove("gone.txt"));
        sync_crashing(&mut w, 0, crash).await;
        assert!(
            w.server
                .history(old)
                .last()
                .is_some_and(|m| !m.status.is_live())
        );
        w.dev(0).write("gone.txt", b"new content");
        w.converge().await;

        let state = saved_state(&w, 0).await;
        assert!(
            !state.synced.contains_key(&old),
            "{crash:?}: the deleted item is still synced"
        );
        assert_ne!(id_named(&w, "gone.txt"), old, "{crash:?}");
        assert_eq!(
            w.server.history(old).len(),
            2,
            "{crash:?}: old item revived"
        );
        assert_eq!(
            w.dev(1).read("gone.txt").as_deref(),
            Some(&b"new content"[..])
        );
        assert!(w.conflicted_copies(0).is_empty(), "{crash:?}");
    }
}

#[tokio::test]
async fn a_batch_that_never_reached_the_server_is_planned_again() {
    let mut w = World::new(2);
    w.dev(0).write("f.txt", b"first");
    w.converge().await;
    w.dev(0).write("f.txt", b"second");
    w.dev(0).write("new/n.txt", b"new file");
    sync_crashing(&mut w, 0, Crash::BeforeServer).await;
    // The intent is on record, though nothing landed.
    assert_eq!(saved_state(&w, 0).await.pending.len(), 3);
    assert!(w.dev(0).fs.user_rename("new", "renamed"));
    w.converge().await;

    assert!(saved_state(&w, 0).await.pending.is_empty());
    let names: Vec<String> = live(&w).iter().map(|m| m.name.to_string()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(w.dev(1).read("f.txt").as_deref(), Some(&b"second"[..]));
    assert_eq!(
        w.dev(1).read("renamed/n.txt").as_deref(),
        Some(&b"new file"[..])
    );
    assert!(w.dev(1).fs.snapshot().keys().all(|p| !p.starts_with("new")));
}

#[tokio::test]
async fn a_created_folder_renamed_on_both_sides_after_a_crash_is_not_duplicated() {
    let mut w = World::new(2);
    w.dev(0).write("k0/a.txt", b"file a");
    sync_crashing(&mut w, 0, Crash::LostReply).await;
    let folder = id_named(&w, "k0");
    // Another device renames the new folder before this one restarts,
    // superseding the version this one created.
    w.sync(1).await;
    assert!(w.dev(1).fs.user_rename("k0", "theirs"));
    w.sync(1).await;
    assert!(w.dev(0).fs.user_rename("k0", "mine"));
    w.converge().await;

    let files: Vec<ItemMeta> = live(&w)
        .into_iter()
        .filter(|m| m.name.as_str() == "a.txt")
        .collect();
    assert_eq!(files.len(), 1, "a.txt duplicated: {files:?}");
    let folders: Vec<ItemMeta> = live(&w).into_iter().filter(|m| m.is_folder).collect();
    assert_eq!(folders.len(), 1, "folder duplicated: {folders:?}");
    assert_eq!(folders[0].id, folder);
}

#[tokio::test]
async fn a_clean_sync_leaves_no_intent_behind() {
    let mut w = World::new(1);
    w.dev(0).commit_batch = 2;
    for i in 0..7 {
        w.dev(0)
            .write(&format!("d/f{i}.txt"), format!("{i}").as_bytes());
    }
    w.converge().await;
    let state = saved_state(&w, 0).await;
    assert!(state.pending.is_empty(), "{:?}", state.pending);
    assert_eq!(state.synced.len(), 8);
}
