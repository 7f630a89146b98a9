//! The sync state is saved once per batch of local operations, not after
//! each one, and a crash that drops the unsaved records loses nothing: the
//! next plan finds disk and server in agreement and transfers nothing again.

mod common;

use common::World;
use stacksync_engine::StateStore;

const FILES: usize = 200;

fn data(i: usize) -> Vec<u8> {
    (0..300u32).map(|b| (b as usize * 31 + i) as u8).collect()
}

fn write_files(w: &mut World) {
    for i in 0..FILES {
        w.dev(0).write(&format!("d{}/f{i:03}.bin", i % 4), &data(i));
    }
}

#[tokio::test]
async fn a_first_sync_saves_the_state_per_batch_not_per_file() {
    let mut w = World::with_chunk_size(2, 1024);
    write_files(&mut w);
    w.sync(0).await;
    let before = w.dev(1).store.saves();
    let report = w.sync(1).await;
    assert!(report.converged);
    assert!(report.applied >= FILES, "{report:?}");
    let saves = w.dev(1).store.saves() - before;
    // The feed is read in pages of 7 items (a save each: the cursor); the
    // 200 downloads and 4 folders add a handful, not one each.
    let pages = (FILES + 4).div_ceil(7) as u64;
    assert!(
        saves <= pages + 10,
        "{saves} saves for {} operations and {pages} feed pages",
        report.applied
    );
    w.assert_same();
}

#[tokio::test]
async fn a_crash_before_the_deferred_save_transfers_nothing_again() {
    let mut w = World::with_chunk_size(2, 1024);
    write_files(&mut w);
    w.sync(0).await;
    // Device 1 downloads and puts files in place, then "crashes" before
    // the records of the last ones were saved.
    w.dev(1).fs.crash_after(300);
    assert!(w.dev(1).try_sync().await.is_err());
    w.dev(1).stop();
    w.dev(1).fs.recover();
    let on_disk = (0..FILES)
        .filter(|i| w.dev(1).read(&format!("d{}/f{i:03}.bin", i % 4)).is_some())
        .count();
    let saved = w
        .dev(1)
        .store
        .load()
        .await
        .unwrap()
        .map_or(0, |s| s.synced.values().filter(|s| !s.is_folder).count());
    assert!(
        saved < on_disk,
        "the crash left no unsaved download ({saved} saved, {on_disk} on disk): the test proves nothing"
    );
    let fetched = w.server.chunk_downloads();
    w.converge().await;
    let again = w.server.chunk_downloads() - fetched;
    assert!(
        again <= (FILES - on_disk) as u64,
        "{again} chunks fetched again, but only {} files were missing",
        FILES - on_disk
    );
    assert!(w.conflicted_copies(1).is_empty());
    w.assert_same();
    w.assert_nothing_lost();
}

/// A restart reads no file that did not change, with file ids (the synced
/// records know each file's content by its stamp) and without (the hash
/// cache is filled from them by path); an edit made while stopped is read.
#[tokio::test]
async fn a_restart_reads_only_what_changed() {
    for file_ids in [true, false] {
        let mut w = World::new(2);
        if !file_ids {
            for i in 0..2 {
                w.dev(i).fs.without_file_ids();
            }
        }
        for i in 0..40 {
            w.dev(0).write(&format!("d{}/f{i:02}.bin", i % 4), &data(i));
        }
        w.converge().await;
        for i in 0..2 {
            w.dev(i).stop();
            let before = w.dev(i).fs.reads();
            w.sync(i).await;
            assert_eq!(
                w.dev(i).fs.reads(),
                before,
                "device {i} (file ids: {file_ids}) read unchanged files after a restart"
            );
        }
        w.dev(0).stop();
        w.dev(0).write("d1/f01.bin", b"edited while stopped");
        let before = w.dev(0).fs.reads();
        w.sync(0).await;
        assert!(w.dev(0).fs.reads() > before, "the edit was not read");
        w.converge().await;
        assert_eq!(
            w.dev(1).read("d1/f01.bin").as_deref(),
            Some(&b"edited while stopped"[..])
        );
    }
}
