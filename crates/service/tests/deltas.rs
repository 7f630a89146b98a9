//! Chunks stored as deltas through the service, on both combos: a member
//! finds a delta's base wherever it is stored, and sharing a folder copies
//! a delta chunk into the shared container whole.

mod common;

use bytes::Bytes;
use common::{Env, User, file, folder, share_folder};
use stacksync_content::{ChunkCodec, delta};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, ItemId, ItemMeta, PackSpan, ProposedItem,
    WorkspaceId,
};

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn commit(
    env: &Env,
    user: &User,
    ws: WorkspaceId,
    items: Vec<ProposedItem>,
) -> Vec<ItemMeta> {
    let Ok(Reply::Commit(r)) = env
        .call(
            &user.token,
            Request::Commit(CommitRequest {
                workspace: ws,
                device: user.device,
                items,
            }),
        )
        .await
    else {
        panic!("the commit is answered");
    };
    r.results
        .into_iter()
        .map(|r| match r.outcome {
            CommitOutcome::Committed { meta } => meta,
            other => panic!("expected a commit, got {other:?}"),
        })
        .collect()
}

/// Stores `bytes` as pack `pack` of `ws` and returns where they are.
async fn put_pack(env: &Env, user: &User, ws: WorkspaceId, pack: u8, bytes: &[u8]) -> PackSpan {
    let pack = ChunkId([pack; 32]);
    env.service
        .put_chunk(user.id, ws, &pack, Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
    PackSpan::new(pack, 0, bytes.len() as u32).unwrap()
}

async fn locate(
    env: &Env,
    user: &User,
    ws: WorkspaceId,
    id: ChunkId,
    bases: bool,
) -> Option<ChunkRef> {
    let Ok(Reply::ChunkLocations { mut chunks }) = env
        .call(
            &user.token,
            Request::LocateChunks {
                workspace: ws,
                ids: vec![id],
                bases,
            },
        )
        .await
    else {
        panic!("chunks are located");
    };
    chunks.pop().flatten()
}

async fn a_shared_delta_is_copied_whole(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let ws = alice.private.id;
    let codec = ChunkCodec::compressed();
    let base_plain = noise(300_000, 1);
    let mut target_plain = base_plain.clone();
    target_plain[150_000] ^= 0xff;
    let base = codec.encode(&base_plain).unwrap();
    let patch = delta::encode_delta(&codec, &base_plain, &target_plain).unwrap();
    assert!(delta::delta_pays(patch.bytes.len(), base.bytes.len()));

    // Version 1 whole in one pack, version 2 a delta against it in another.
    let (dir, doc) = (ItemId::new(), ItemId::new());
    let base_ref = ChunkRef {
        id: base.id,
        size: base_plain.len() as u32,
        span: Some(put_pack(env, &alice, ws, 0xa1, &base.bytes).await),
    };
    let mut v1 = file(doc, Some(dir), "big.bin", 1, "v1");
    v1.size = base_plain.len() as u64;
    v1.chunks = vec![base_ref];
    commit(env, &alice, ws, vec![folder(dir, None, "Project"), v1]).await;
    let span = put_pack(env, &alice, ws, 0xa2, &patch.bytes).await;
    let delta_ref = ChunkRef {
        id: patch.id,
        size: target_plain.len() as u32,
        span: Some(span.delta_of(Some(base.id))),
    };
    let mut v2 = file(doc, Some(dir), "big.bin", 2, "v2");
    v2.size = target_plain.len() as u64;
    v2.chunks = vec![delta_ref];
    let v2 = commit(env, &alice, ws, vec![v2]).await.remove(0);
    assert_eq!(v2.chunks, vec![delta_ref]);
    // Where to read the base from; a delta is never offered as one.
    assert_eq!(locate(env, &alice, ws, base.id, true).await, Some(base_ref));
    assert_eq!(locate(env, &alice, ws, patch.id, true).await, None);
    assert_eq!(
        locate(env, &alice, ws, patch.id, false).await,
        Some(delta_ref)
    );

    // Alice shares the folder with Bob, who accepts.
    let shared = share_folder(env, &alice, &bob, dir).await;
    let Ok(Reply::Changes(page)) = env
        .call(
            &bob.token,
            Request::GetChanges {
                workspace: shared.id,
                since: 0,
                limit: 100,
            },
        )
        .await
    else {
        panic!("bob reads the shared feed");
    };
    let shared_doc = page.items.iter().find(|m| m.id == doc).unwrap();
    assert_eq!(
        shared_doc.chunks,
        vec![ChunkRef::whole(patch.id, target_plain.len() as u32)],
        "the shared workspace stores the chunk whole"
    );
    let bytes = env
        .service
        .get_chunk(bob.id, shared.id, &patch.id, None)
        .await
        .unwrap();
    assert_eq!(codec.decode(&patch.id, &bytes).unwrap(), target_plain);
}
both_combos!(a_shared_delta_is_copied_whole);
