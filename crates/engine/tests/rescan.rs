//! A partial rescan (`scan::rescan`) finds what a full scan finds, when
//! it is told every path that changed: random trees, random changes by the
//! "user" (files written, folders made, files and folders removed and
//! renamed, symlinks, ignored names, invalid names), from many seeds.

use std::collections::BTreeSet;

use stacksync_engine::RelPath;
use stacksync_engine::scan::{self, HashCache, Scan};
use stacksync_engine::sim::MemFs;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NAMES: [&str; 8] = ["a", "b", "c", "d.txt", "e.tmp", "f", "~g", "h.md"];

/// A random path of depth 1-3 over a few names, so changes collide.
fn path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(3);
    (0..depth)
        .map(|_| NAMES[rng.below(NAMES.len())])
        .collect::<Vec<_>>()
        .join("/")
}

/// Every existing path of `fs`, as the user sees it.
fn existing(fs: &MemFs) -> Vec<String> {
    fs.snapshot().into_keys().collect()
}

/// One random change; returns the paths it touched (as a watcher names
/// them: the changed entries themselves, not their folders).
fn change(fs: &MemFs, rng: &mut Rng, step: usize) -> Vec<String> {
    let paths = existing(fs);
    match rng.below(10) {
        0..=3 => {
            let p = path(rng);
            fs.user_write(&p, format!("{step}").as_bytes());
            vec![p]
        }
        4 if !paths.is_empty() => {
            let p = paths[rng.below(paths.len())].clone();
            fs.user_remove(&p);
            vec![p]
        }
        5 | 6 if !paths.is_empty() => {
            let from = paths[rng.below(paths.len())].clone();
            let to = path(rng);
            if fs.user_rename(&from, &to) {
                vec![from, to]
            } else {
                Vec::new()
            }
        }
        7 => {
            let p = path(rng);
            fs.user_mkdir_p(&p);
            vec![p]
        }
        8 => {
            let p = path(rng);
            fs.user_symlink(&p);
            vec![p]
        }
        _ => {
            // A name that is not valid (a control character), next to
            // valid ones.
            let dir = path(rng);
            fs.user_write_raw(&dir, "bad\u{1}name", b"x");
            vec![dir]
        }
    }
}

/// What a scan found, in a comparable form.
fn seen(scan: &Scan) -> (String, BTreeSet<String>, BTreeSet<String>) {
    let tree = format!("{:?}", scan.tree);
    let skipped = scan
        .skipped
        .iter()
        .map(|(d, n, why)| format!("{d}/{n}: {why:?}"))
        .collect();
    let temps = scan.stale_temps.iter().map(|p| p.to_string()).collect();
    (tree, skipped, temps)
}

#[tokio::test]
async fn a_partial_rescan_finds_what_a_full_scan_finds() {
    for seed in 1..=200u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let fs = MemFs::new();
        fs.user_write(".stacksyncignore", b"*.tmp\n");
        for step in 0..20 {
            change(&fs, &mut rng, step);
        }
        let cache = HashCache::default();
        let mut kept = scan::scan(&fs, &cache).await.unwrap();
        for round in 0..10 {
            let mut changed = BTreeSet::new();
            for step in 0..1 + rng.below(4) {
                for p in change(&fs, &mut rng, 100 * round + step) {
                    changed.insert(RelPath::parse(&p).unwrap());
                }
            }
            let before = kept.tree.clone();
            let moved = scan::rescan(&fs, &cache, &mut kept, &changed)
                .await
                .unwrap();
            let full = scan::scan(&fs, &cache).await.unwrap();
            assert_eq!(
                seen(&kept),
                seen(&full),
                "seed {seed}, round {round}, changed {changed:?}"
            );
            // Every entry that appeared, went or changed is reported (a
            // focused plan looks only there).
            let paths: BTreeSet<&RelPath> = before.keys().chain(kept.tree.keys()).collect();
            for p in paths {
                if before.get(p) != kept.tree.get(p) {
                    assert!(
                        moved.contains(p),
                        "seed {seed}, round {round}: {p} changed but was not reported"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn a_rescan_of_nothing_changes_nothing() {
    let fs = MemFs::new();
    fs.user_write("a/b.txt", b"b");
    fs.user_write("c.txt", b"c");
    let cache = HashCache::default();
    let mut kept = scan::scan(&fs, &cache).await.unwrap();
    let before = seen(&kept);
    scan::rescan(&fs, &cache, &mut kept, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(seen(&kept), before);
    // Not told of a change, a partial rescan does not see it: the
    // periodic full scan is the safety net.
    fs.user_write("a/new.txt", b"n");
    scan::rescan(&fs, &cache, &mut kept, &BTreeSet::new())
        .await
        .unwrap();
    assert_eq!(seen(&kept), before);
}
