//! Random interleaved commits from several devices with stale views, on
//! SQLite and PostgreSQL. Checked: versions of an item are contiguous;
//! exactly one commit wins each version; a retried batch changes nothing;
//! replaying the change feed from 0 rebuilds exactly the current tree.
//!
//! A failing case prints its minimal step list; rerun with
//! `PROPTEST_CASES=… cargo test -p stacksync-metastore --test property`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};

use common::*;
use proptest::prelude::*;
use stacksync_metastore::MetaStore;
use stacksync_metastore::testing::TestDb;
use stacksync_proto::{
    CommitOutcome, CommitRequest, CommitResult, DeviceId, ItemId, ItemMeta, ItemStatus,
    ProposedItem,
};

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

#[derive(Debug, Clone)]
enum Step {
    /// Device pulls the change feed into its view.
    Sync(usize),
    CreateFile {
        dev: usize,
        parent: usize,
        name: usize,
        seed: u8,
    },
    /// A folder and a file inside it, in one batch.
    CreateTree {
        dev: usize,
        name: usize,
        seed: u8,
    },
    Edit {
        dev: usize,
        pick: usize,
        seed: u8,
    },
    /// A buggy or hostile client skipping a version number.
    SkipAhead {
        dev: usize,
        pick: usize,
        seed: u8,
    },
    Rename {
        dev: usize,
        pick: usize,
        name: usize,
    },
    Move {
        dev: usize,
        pick: usize,
        parent: usize,
    },
    Delete {
        dev: usize,
        pick: usize,
    },
    /// Replays an earlier batch (a client retrying after a lost answer).
    Retry {
        pick: usize,
    },
    /// Replays the latest batch right away: must change nothing at all.
    RetryNow,
}

fn step() -> impl Strategy<Value = Step> {
    let d = 0..3usize;
    prop_oneof![
        3 => d.clone().prop_map(Step::Sync),
        3 => (d.clone(), any::<usize>(), 0..4usize, 1..=255u8).prop_map(|(dev, parent, name, seed)| Step::CreateFile { dev, parent, name, seed }),
        1 => (d.clone(), 0..4usize, 1..=255u8).prop_map(|(dev, name, seed)| Step::CreateTree { dev, name, seed }),
        3 => (d.clone(), any::<usize>(), 1..=255u8).prop_map(|(dev, pick, seed)| Step::Edit { dev, pick, seed }),
        1 => (d.clone(), any::<usize>(), 1..=255u8).prop_map(|(dev, pick, seed)| Step::SkipAhead { dev, pick, seed }),
        2 => (d.clone(), any::<usize>(), 0..4usize).prop_map(|(dev, pick, name)| Step::Rename { dev, pick, name }),
        2 => (d.clone(), any::<usize>(), any::<usize>()).prop_map(|(dev, pick, parent)| Step::Move { dev, pick, parent }),
        2 => (d, any::<usize>()).prop_map(|(dev, pick)| Step::Delete { dev, pick }),
        1 => any::<usize>().prop_map(|pick| Step::Retry { pick }),
        1 => Just(Step::RetryNow),
    ]
}

struct View {
    device: DeviceId,
    cursor: u64,
    items: BTreeMap<ItemId, ItemMeta>,
}

impl View {
    fn live(&self, folders_only: bool) -> Vec<&ItemMeta> {
        self.items
            .values()
            .filter(|m| m.status.is_live() && (!folders_only || m.is_folder))
            .collect()
    }
    fn pick(&self, pick: usize, folders_only: bool) -> Option<ItemMeta> {
        let live = self.live(folders_only);
        (!live.is_empty()).then(|| live[pick % live.len()].clone())
    }
    fn learn(&mut self, r: &CommitResult) {
        for res in &r.results {
            if let CommitOutcome::Committed { meta } | CommitOutcome::Conflict { current: meta } =
                &res.outcome
            {
                let newer = self
                    .items
                    .get(&meta.id)
                    .is_none_or(|m| m.version <= meta.version);
                if newer {
                    self.items.insert(meta.id, meta.clone());
                }
            }
        }
    }
}

struct World<'a> {
    store: &'a MetaStore,
    f: Fixture,
    views: Vec<View>,
    batches: Vec<(CommitRequest, CommitResult)>,
    /// The one winning metadata of every (item, version).
    winners: HashMap<(ItemId, u64), ItemMeta>,
}

impl World<'_> {
    async fn revision(&self) -> u64 {
        self.store
            .workspace_as(self.f.user.id, self.f.ws.id)
            .await
            .unwrap()
            .latest_revision
    }

    fn record_wins(&mut self, r: &CommitResult) -> Result<(), TestCaseError> {
        for res in &r.results {
            if let CommitOutcome::Committed { meta } = &res.outcome {
                match self.winners.get(&(meta.id, meta.version)) {
                    Some(w) => prop_assert_eq!(w, meta, "two different commits won one version"),
                    None => {
                        self.winners.insert((meta.id, meta.version), meta.clone());
                    }
                }
            }
        }
        Ok(())
    }

    async fn send(&mut self, dev: usize, items: Vec<ProposedItem>) -> Result<(), TestCaseError> {
        let req = CommitRequest {
            workspace: self.f.ws.id,
            device: self.views[dev].device,
            items,
        };
        let r = self.store.commit(&req).await.unwrap();
        prop_assert_eq!(r.results.len(), req.items.len());
        self.record_wins(&r)?;
        self.views[dev].learn(&r);
        self.batches.push((req, r));
        Ok(())
    }

    async fn retry(&mut self, idx: usize, right_away: bool) -> Result<(), TestCaseError> {
        let Some((req, first)) = self.batches.get(idx).cloned() else {
            return Ok(());
        };
        let before = self.revision().await;
        let again = self.store.commit(&req).await.unwrap();
        for (a, b) in first.results.iter().zip(&again.results) {
            if let CommitOutcome::Committed { meta } = &a.outcome {
                prop_assert_eq!(
                    &b.outcome,
                    &CommitOutcome::Committed { meta: meta.clone() },
                    "a retry re-applied a version"
                );
            }
        }
        // Immediate: nothing reached the workspace since the first answer
        // (a retry of an older batch may have applied items it refused
        // then, which moves the revision a retry reports).
        if right_away && before == first.revision {
            prop_assert_eq!(&again, &first, "an immediate retry must answer the same");
            prop_assert_eq!(
                self.revision().await,
                before,
                "an immediate retry must change nothing"
            );
        }
        self.record_wins(&again)
    }

    async fn apply(&mut self, s: &Step) -> Result<(), TestCaseError> {
        match *s {
            Step::Sync(dev) => loop {
                let page = self
                    .store
                    .get_changes(self.f.ws.id, self.views[dev].cursor, 5)
                    .await
                    .unwrap();
                let v = &mut self.views[dev];
                for m in page.items {
                    v.items.insert(m.id, m);
                }
                v.cursor = page.cursor;
                if !page.has_more {
                    break;
                }
            },
            Step::CreateFile {
                dev,
                parent,
                name,
                seed,
            } => {
                let parent = if parent % 3 == 0 {
                    None
                } else {
                    self.views[dev].pick(parent, true).map(|m| m.id)
                };
                self.send(
                    dev,
                    vec![file(
                        ItemId::new(),
                        parent,
                        NAMES[name],
                        1,
                        seed,
                        u32::from(seed),
                    )],
                )
                .await?;
            }
            Step::CreateTree { dev, name, seed } => {
                let d = ItemId::new();
                let items = vec![
                    folder(d, None, NAMES[name], 1),
                    file(ItemId::new(), Some(d), "inner", 1, seed, 3),
                ];
                self.send(dev, items).await?;
            }
            Step::Edit { dev, pick, seed } => {
                if let Some(m) = self.views[dev].pick(pick, false).filter(|m| !m.is_folder) {
                    self.send(
                        dev,
                        vec![file(
                            m.id,
                            m.parent,
                            m.name.as_str(),
                            m.version + 1,
                            seed,
                            7,
                        )],
                    )
                    .await?;
                }
            }
            Step::SkipAhead { dev, pick, seed } => {
                if let Some(m) = self.views[dev].pick(pick, false).filter(|m| !m.is_folder) {
                    self.send(
                        dev,
                        vec![file(
                            m.id,
                            m.parent,
                            m.name.as_str(),
                            m.version + 2,
                            seed,
                            9,
                        )],
                    )
                    .await?;
                }
            }
            Step::Rename { dev, pick, name } => {
                if let Some(m) = self.views[dev].pick(pick, false) {
                    self.send(dev, vec![place_of(&m, m.parent, NAMES[name])])
                        .await?;
                }
            }
            Step::Move { dev, pick, parent } => {
                let v = &self.views[dev];
                if let Some(m) = v.pick(pick, false) {
                    let to = if parent % 4 == 0 {
                        None
                    } else {
                        v.pick(parent, true).map(|p| p.id)
                    };
                    self.send(dev, vec![place_of(&m, to, m.name.as_str())])
                        .await?;
                }
            }
            Step::Delete { dev, pick } => {
                if let Some(m) = self.views[dev].pick(pick, false) {
                    // Children first, as a client deletes a tree.
                    let v = &self.views[dev];
                    let mut items: Vec<ProposedItem> = v
                        .live(false)
                        .into_iter()
                        .filter(|c| c.parent == Some(m.id))
                        .filter(|c| !c.is_folder)
                        .map(delete_of)
                        .collect();
                    items.push(delete_of(&m));
                    self.send(dev, items).await?;
                }
            }
            Step::Retry { pick } if !self.batches.is_empty() => {
                let n = self.batches.len();
                self.retry(pick % n, false).await?;
            }
            Step::RetryNow if !self.batches.is_empty() => {
                let n = self.batches.len();
                self.retry(n - 1, true).await?;
            }
            Step::Retry { .. } | Step::RetryNow => {}
        }
        Ok(())
    }

    async fn check_end_state(&self) -> Result<(), TestCaseError> {
        // Replaying the feed from 0 in small pages rebuilds the current tree.
        let mut rebuilt: BTreeMap<ItemId, ItemMeta> = BTreeMap::new();
        let mut since = 0;
        loop {
            let page = self
                .store
                .get_changes(self.f.ws.id, since, 7)
                .await
                .unwrap();
            for m in page.items {
                prop_assert!(m.revision > since);
                rebuilt.insert(m.id, m);
            }
            since = page.cursor;
            if !page.has_more {
                break;
            }
        }
        prop_assert_eq!(since, self.revision().await);
        let ids: HashSet<ItemId> = self.winners.keys().map(|(id, _)| *id).collect();
        prop_assert_eq!(ids.len(), rebuilt.len());
        for id in &ids {
            let latest = self.store.item(self.f.ws.id, *id).await.unwrap();
            prop_assert_eq!(rebuilt.get(id), Some(&latest));
            // Versions are contiguous, and each is the one winner we saw.
            let versions = self.store.versions(self.f.ws.id, *id).await.unwrap();
            let numbers: Vec<u64> = versions.iter().map(|v| v.version).collect();
            prop_assert_eq!(numbers, (1..=latest.version).collect::<Vec<_>>());
            for v in &versions {
                prop_assert_eq!(Some(v), self.winners.get(&(*id, v.version)));
            }
        }
        // The tree is a tree: live items sit in live folders, names unique.
        let mut names = HashSet::new();
        for m in rebuilt.values().filter(|m| m.status.is_live()) {
            if let Some(p) = m.parent {
                let parent = rebuilt.get(&p);
                prop_assert!(
                    parent.is_some_and(|p| p.is_folder && p.status.is_live()),
                    "orphan {:?}",
                    m
                );
            }
            prop_assert!(
                names.insert((m.parent, m.name.clone())),
                "duplicate live name {:?}",
                m.name
            );
        }
        prop_assert!(
            rebuilt
                .values()
                .all(|m| m.status != ItemStatus::New || m.version == 1)
        );
        Ok(())
    }
}

async fn run_case(store: &MetaStore, steps: &[Step]) -> Result<(), TestCaseError> {
    let f = fixture(store, "p@x.org", 1 << 40).await;
    let mut views = vec![View {
        device: f.device.id,
        cursor: 0,
        items: BTreeMap::new(),
    }];
    for name in ["phone", "desk"] {
        let d = store
            .upsert_device(f.user.id, None, name, "", "", None)
            .await
            .unwrap();
        views.push(View {
            device: d.id,
            cursor: 0,
            items: BTreeMap::new(),
        });
    }
    let mut world = World {
        store,
        f,
        views,
        batches: vec![],
        winners: HashMap::new(),
    };
    for s in steps {
        world.apply(s).await?;
    }
    world.check_end_state().await
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sqlite_interleaved_commits(steps in prop::collection::vec(step(), 1..60)) {
        runtime().block_on(async {
            let db = TestDb::sqlite().await;
            run_case(&db.store, &steps).await
        })?;
    }

    #[test]
    fn postgres_interleaved_commits(steps in prop::collection::vec(step(), 1..60)) {
        runtime().block_on(async {
            let Some(db) = TestDb::postgres().await else { return Ok(()) };
            run_case(&db.store, &steps).await
        })?;
    }
}
