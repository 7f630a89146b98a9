//! Compact wire messages over the bus, on both backend combos: a request
//! that says its sender reads compact messages gets a compressed, brief
//! commit reply that expands to exactly what the service stored; a request
//! from an older peer (no compact level) gets the plain, full reply.

mod common;

use common::{Env, file, folder};
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{CommitOutcome, CommitRequest, ItemId, ItemMeta, brief, wire};
use uuid::Uuid;

/// Sends `req` over the bus as `encode` makes it; the raw reply.
async fn send(env: &Env, bytes: Vec<u8>) -> Vec<u8> {
    env.bus
        .call(bytes.into(), common::DEADLINE)
        .await
        .expect("the bus answers")
        .to_vec()
}

/// The committed metas of a commit reply, in order.
fn committed(reply: Reply) -> Vec<ItemMeta> {
    let Reply::Commit(result) = reply else {
        panic!("a commit result, got {reply:?}");
    };
    result
        .results
        .into_iter()
        .map(|r| match r.outcome {
            CommitOutcome::Committed { meta } => meta,
            other => panic!("committed, got {other:?}"),
        })
        .collect()
}

async fn compact_replies_only_for_peers_that_read_them(env: &Env) {
    let alice = env.user("compact@example.com").await;
    let ws = alice.private.id;
    let dir = ItemId::new();
    let mut items = vec![folder(dir, None, "many")];
    items.extend((0..30).map(|i| {
        file(
            ItemId::new(),
            Some(dir),
            &format!("f{i}"),
            1,
            &format!("{i}"),
        )
    }));
    let request = Request::Commit(CommitRequest {
        workspace: ws,
        device: alice.device,
        items,
    });
    let req = RpcRequest {
        request_id: Uuid::new_v4(),
        token: alice.token.clone(),
        request: request.clone(),
    };

    let compact = send(env, wire::encode_for(&req, wire::Peer::default())).await;
    assert!(
        wire::is_compressed(&compact),
        "a large reply to a compact peer is compressed"
    );
    let (response, peer): (RpcResponse, _) = wire::decode_from(&compact).unwrap();
    assert!(peer.reads_compact());
    let reply = response.result.unwrap();
    assert!(matches!(reply, Reply::CommitBrief(_)), "{reply:?}");
    let metas = committed(brief::expand_reply(&request, reply).unwrap());

    // What the service stored is what the brief reply expanded to.
    let Ok(Reply::Changes(page)) = env
        .call(
            &alice.token,
            Request::GetChanges {
                workspace: ws,
                since: 0,
                limit: 1000,
            },
        )
        .await
    else {
        panic!("the feed is answered");
    };
    assert_eq!(page.items, metas);

    // The same request again from an older peer (a retry: same id) is
    // answered plain and in full, with the same versions.
    let plain = send(env, wire::encode(&req)).await;
    assert!(!wire::is_compressed(&plain));
    let (response, peer): (RpcResponse, _) = wire::decode_from(&plain).unwrap();
    assert!(peer.reads_compact(), "the service says what it reads");
    assert_eq!(committed(response.result.unwrap()), metas);
}
both_combos!(compact_replies_only_for_peers_that_read_them);
