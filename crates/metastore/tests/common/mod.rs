//! Helpers shared by the metastore test suites.
#![allow(dead_code)]

use stacksync_metastore::{MetaStore, NewUser};
use stacksync_proto::{
    Account, ChunkId, ChunkRef, CommitOutcome, CommitRequest, CommitResult, ContentHash, Device,
    DeviceId, EncryptionMode, ItemId, ItemMeta, ItemName, ItemStatus, ProposedItem, Workspace,
};

/// Runs each named async test function against SQLite and PostgreSQL, as
/// `sqlite::NAME` and `postgres::NAME`: one suite, two backends.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = stacksync_metastore::testing::TestDb::sqlite().await;
                    super::$name(&db.store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = stacksync_metastore::testing::TestDb::postgres().await else { return };
                    super::$name(&db.store).await;
                }
            )*
        }
    };
}

pub struct Fixture {
    pub user: Account,
    pub device: Device,
    pub ws: Workspace,
}

pub async fn fixture(store: &MetaStore, email: &str, quota: u64) -> Fixture {
    let user = store
        .create_user(NewUser {
            email: email.into(),
            name: email.split('@').next().unwrap().into(),
            password_hash: "not-a-real-hash".into(),
            quota_limit: quota,
            storage_user: None,
        })
        .await
        .unwrap();
    let device = store
        .upsert_device(user.id, None, "laptop", "linux", "0.1", None)
        .await
        .unwrap();
    let ws = store
        .create_workspace(user.id, "StackSync", false, EncryptionMode::Plain)
        .await
        .unwrap();
    Fixture { user, device, ws }
}

pub fn name(s: &str) -> ItemName {
    ItemName::new(s).unwrap()
}

/// A file proposal whose content is `size` bytes in one chunk derived from `seed`.
pub fn file(
    id: ItemId,
    parent: Option<ItemId>,
    n: &str,
    version: u64,
    seed: u8,
    size: u32,
) -> ProposedItem {
    let chunks = if size == 0 {
        vec![]
    } else {
        vec![ChunkRef::whole(ChunkId([seed; 32]), size)]
    };
    ProposedItem {
        id,
        parent,
        name: name(n),
        is_folder: false,
        mimetype: Some("text/plain".into()),
        status: if version == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version,
        content_hash: Some(ContentHash([seed; 32])),
        size: u64::from(size),
        client_modified: 1_700_000_000_000 + i64::from(seed),
        chunks,
        record: None,
    }
}

pub fn folder(id: ItemId, parent: Option<ItemId>, n: &str, version: u64) -> ProposedItem {
    ProposedItem {
        id,
        parent,
        name: name(n),
        is_folder: true,
        mimetype: None,
        status: if version == 1 {
            ItemStatus::New
        } else {
            ItemStatus::Changed
        },
        version,
        content_hash: None,
        size: 0,
        client_modified: 1_700_000_000_000,
        chunks: vec![],
        record: None,
    }
}

/// The proposal that deletes `m` (its next version).
pub fn delete_of(m: &ItemMeta) -> ProposedItem {
    ProposedItem {
        id: m.id,
        parent: m.parent,
        name: m.name.clone(),
        is_folder: m.is_folder,
        mimetype: m.mimetype.clone(),
        status: ItemStatus::Deleted,
        version: m.version + 1,
        content_hash: None,
        size: 0,
        client_modified: m.client_modified,
        chunks: vec![],
        record: None,
    }
}

/// The proposal that moves/renames `m` (its next version).
pub fn place_of(m: &ItemMeta, parent: Option<ItemId>, n: &str) -> ProposedItem {
    ProposedItem {
        id: m.id,
        parent,
        name: name(n),
        is_folder: m.is_folder,
        mimetype: m.mimetype.clone(),
        status: ItemStatus::Moved,
        version: m.version + 1,
        content_hash: m.content_hash,
        size: m.size,
        client_modified: m.client_modified,
        chunks: m.chunks.clone(),
        record: None,
    }
}

pub async fn commit(store: &MetaStore, f: &Fixture, items: Vec<ProposedItem>) -> CommitResult {
    store
        .commit(&CommitRequest {
            workspace: f.ws.id,
            device: f.device.id,
            items,
        })
        .await
        .expect("the batch is applied")
}

pub async fn commit_as(
    store: &MetaStore,
    f: &Fixture,
    device: DeviceId,
    items: Vec<ProposedItem>,
) -> CommitResult {
    store
        .commit(&CommitRequest {
            workspace: f.ws.id,
            device,
            items,
        })
        .await
        .expect("the batch is applied")
}

/// The committed metadata of the only item of a batch; panics otherwise.
pub fn committed(r: &CommitResult) -> ItemMeta {
    assert_eq!(r.results.len(), 1);
    match &r.results[0].outcome {
        CommitOutcome::Committed { meta } => meta.clone(),
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// Chunk `seed` (`size` bytes) stored at `offset` of pack `pack` (the
/// encoded chunk is 40 bytes longer, as framing makes it).
pub fn packed(seed: u8, size: u32, pack: u8, offset: u64) -> ChunkRef {
    ChunkRef {
        id: ChunkId([seed; 32]),
        size,
        span: Some(stacksync_proto::PackSpan {
            pack: ChunkId([pack; 32]),
            offset,
            len: size + 40,
            base: None,
        }),
    }
}

/// Records packs 5 to 9 as stored in `ws` by `f`'s user, so that chunks
/// may be placed in them (a location must point into a stored pack).
pub async fn stock(store: &MetaStore, f: &Fixture, ws: stacksync_proto::WorkspaceId) {
    for pack in 5..=9u8 {
        store
            .record_object(
                ws,
                ChunkId([pack; 32]),
                1 << 20,
                Some(f.user.id),
                stacksync_metastore::Charge::Always,
            )
            .await
            .unwrap();
    }
}

/// A new file whose content is `chunks`.
pub fn file_of(id: ItemId, parent: Option<ItemId>, n: &str, chunks: Vec<ChunkRef>) -> ProposedItem {
    let mut p = file(id, parent, n, 1, chunks[0].id.0[0], 1);
    p.size = chunks.iter().map(|c| u64::from(c.size)).sum();
    p.chunks = chunks;
    p
}
