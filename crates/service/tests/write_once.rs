//! Finding 8 through the service: objects are written once (a member
//! cannot replace what another stored; a retry of the same bytes still
//! succeeds), a name the workspace's chunk index knows as a chunk id must
//! carry that chunk, and members' own storage users get read-only ACLs on
//! shared containers (writes go through the service).

mod common;

use bytes::Bytes;
use common::{Env, User, file, folder, share_folder};
use stacksync_blobstore::ContainerName;
use stacksync_content::ChunkCodec;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, ErrorKind, ItemId, Workspace,
};

/// An encoded plain chunk of `text` (what a client uploads), and its ref.
fn encoded(text: &str) -> (ChunkRef, Bytes) {
    let chunk = ChunkCodec::compressed()
        .encode(text.repeat(50).as_bytes())
        .unwrap();
    (
        ChunkRef::whole(chunk.id, chunk.plaintext_len),
        Bytes::from(chunk.bytes),
    )
}

/// Commits a file made of `chunk` into `ws` as `user`.
async fn commit_file(env: &Env, user: &User, ws: &Workspace, name: &str, chunk: ChunkRef) {
    let mut f = file(ItemId::new(), None, name, 1, name);
    f.size = u64::from(chunk.size);
    f.chunks = vec![chunk];
    let Ok(Reply::Commit(r)) = env
        .call(
            &user.token,
            Request::Commit(CommitRequest {
                workspace: ws.id,
                device: user.device,
                items: vec![f],
            }),
        )
        .await
    else {
        panic!("the commit is answered");
    };
    assert!(
        matches!(r.results[0].outcome, CommitOutcome::Committed { .. }),
        "{r:?}"
    );
}

/// Alice shares a new folder with Bob; the shared workspace as Alice sees it.
async fn shared_workspace(env: &Env, alice: &User, bob: &User) -> Workspace {
    let dir = ItemId::new();
    env.call(
        &alice.token,
        Request::Commit(CommitRequest {
            workspace: alice.private.id,
            device: alice.device,
            items: vec![folder(dir, None, "Together")],
        }),
    )
    .await
    .unwrap();
    share_folder(env, alice, bob, dir).await
}

async fn members_cannot_overwrite_each_others_objects(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let shared = shared_workspace(env, &alice, &bob).await;
    let (chunk, data) = encoded("alice's plan");
    env.service
        .put_chunk(alice.id, shared.id, &chunk.id, data.clone())
        .await
        .unwrap();
    commit_file(env, &alice, &shared, "plan.txt", chunk).await;
    // A pack (random name, nothing the index knows) is written once too.
    let pack = ChunkId([0x5a; 32]);
    let pack_data = Bytes::from(vec![1u8; 10_000]);
    env.service
        .put_chunk(alice.id, shared.id, &pack, pack_data.clone())
        .await
        .unwrap();

    let (_, other) = encoded("bob's forgery");
    for (name, forged) in [
        (chunk.id, other.clone()),
        (chunk.id, Bytes::new()),
        (pack, other.clone()),
        (pack, Bytes::from(vec![2u8; 10_000])),
    ] {
        let e = env
            .service
            .put_chunk(bob.id, shared.id, &name, forged)
            .await
            .unwrap_err();
        assert!(
            matches!(e.kind, ErrorKind::Conflict | ErrorKind::BadRequest),
            "{name}: {e:?}"
        );
    }
    // The same bytes again (a retry after a lost answer) still succeed,
    // whoever sends them.
    for user in [&alice, &bob] {
        env.service
            .put_chunk(user.id, shared.id, &chunk.id, data.clone())
            .await
            .unwrap();
        env.service
            .put_chunk(user.id, shared.id, &pack, pack_data.clone())
            .await
            .unwrap();
    }
    // The originals are intact and the chunk still decodes to its id.
    let stored = env
        .service
        .get_chunk(bob.id, shared.id, &chunk.id, None)
        .await
        .unwrap();
    assert_eq!(stored, data);
    let plain = ChunkCodec::plain().decode(&chunk.id, &stored).unwrap();
    assert_eq!(plain.len(), chunk.size as usize);
    let stored_pack = env
        .service
        .get_chunk(alice.id, shared.id, &pack, None)
        .await
        .unwrap();
    assert_eq!(stored_pack, pack_data);
}
both_combos!(members_cannot_overwrite_each_others_objects);

async fn known_chunk_ids_must_carry_their_chunk(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let (chunk, data) = encoded("a chunk the index knows");
    // Committed first (as if stored in a pack elsewhere): the index knows
    // the id, so an object under that name must be that chunk.
    commit_file(env, &alice, &alice.private, "known.txt", chunk).await;
    let (_, other) = encoded("something else");
    for forged in [other, Bytes::from_static(b"not a chunk"), Bytes::new()] {
        let e = env
            .service
            .put_chunk(alice.id, alice.private.id, &chunk.id, forged)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{e:?}");
    }
    let container = ContainerName::new(&alice.private.container).unwrap();
    assert!(
        env.blobs
            .existing(&container, &[chunk.id])
            .await
            .unwrap()
            .is_empty(),
        "nothing was stored under the known id"
    );
    env.service
        .put_chunk(alice.id, alice.private.id, &chunk.id, data.clone())
        .await
        .unwrap();
    assert_eq!(
        env.blobs.get_bytes(&container, &chunk.id).await.unwrap(),
        data
    );
}
both_combos!(known_chunk_ids_must_carry_their_chunk);

async fn storage_users_only_read_shared_containers(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let shared = shared_workspace(env, &alice, &bob).await;
    let private = ContainerName::new(&alice.private.container).unwrap();
    let acl = env.blobs.acl(&private).await.unwrap();
    assert_eq!(acl.write.len(), 1, "alice writes her private container");
    assert_eq!(acl.write[0].as_str(), "t:alice");
    let container = ContainerName::new(&shared.container).unwrap();
    let acl = env.blobs.acl(&container).await.unwrap();
    let readers: Vec<&str> = acl.read.iter().map(|u| u.as_str()).collect();
    assert_eq!(readers, ["t:alice", "t:bob"]);
    assert!(
        acl.write.is_empty(),
        "nobody writes a shared container directly: {acl:?}"
    );
}
both_combos!(storage_users_only_read_shared_containers);
