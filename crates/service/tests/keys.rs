//! Public identities and key chains of end-to-end encrypted workspaces,
//! over the bus: the server stores them as opaque bytes, gives identities
//! only to people who share a workspace, serves a chain only to members,
//! appends to it only the next epoch (one writer wins each, on both
//! databases; the same bytes again are a retry), refuses read-only members,
//! plain workspaces and oversized statements, notifies members, and
//! forgets both with their user or workspace.

mod common;

use common::{Env, User, folder, next_notification};
use stacksync_proto::keys::{MAX_IDENTITY_BYTES, MAX_KEY_STATEMENT_BYTES, PublishedIdentity};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    CommitRequest, EncryptionMode, Error, ErrorKind, ItemId, Notification, UserId, WorkspaceId,
};

async fn publish(env: &Env, user: &User, identity: Vec<u8>) -> Result<i64, Error> {
    match env
        .call(
            &user.token,
            Request::PublishIdentity {
                identity,
                sealed: None,
            },
        )
        .await?
    {
        Reply::IdentityPublished { changed_at } => Ok(changed_at),
        other => panic!("publish: {other:?}"),
    }
}

async fn identities(
    env: &Env,
    user: &User,
    users: Vec<UserId>,
) -> Result<Vec<Option<PublishedIdentity>>, Error> {
    match env
        .call(&user.token, Request::GetIdentities { users })
        .await?
    {
        Reply::Identities { identities } => Ok(identities),
        other => panic!("identities: {other:?}"),
    }
}

async fn put(
    env: &Env,
    user: &User,
    workspace: WorkspaceId,
    epoch: u64,
    statement: Vec<u8>,
) -> Result<(), Error> {
    let request = Request::PutKeyStatement {
        workspace,
        epoch,
        statement,
    };
    match env.call(&user.token, request).await? {
        Reply::KeyStatementStored {
            workspace: w,
            epoch: e,
        } => {
            assert_eq!((w, e), (workspace, epoch));
            Ok(())
        }
        other => panic!("put: {other:?}"),
    }
}

/// (epochs returned, latest epoch).
async fn get(
    env: &Env,
    user: &User,
    workspace: WorkspaceId,
    after_epoch: u64,
    limit: u32,
) -> Result<(Vec<(u64, Vec<u8>)>, u64), Error> {
    let request = Request::GetKeyStatements {
        workspace,
        after_epoch,
        limit,
    };
    match env.call(&user.token, request).await? {
        Reply::KeyStatements {
            workspace: w,
            statements,
            latest_epoch,
        } => {
            assert_eq!(w, workspace);
            let list = statements
                .into_iter()
                .map(|s| (s.epoch, s.statement))
                .collect();
            Ok((list, latest_epoch))
        }
        other => panic!("get: {other:?}"),
    }
}

fn epochs(page: &[(u64, Vec<u8>)]) -> Vec<u64> {
    page.iter().map(|(e, _)| *e).collect()
}

/// `owner` shares a new folder of their private workspace with
/// `members`, end-to-end encrypted (read-only when `read_only`); the
/// shared workspace's id.
async fn e2e_workspace(env: &Env, owner: &User, members: &[&User], read_only: bool) -> WorkspaceId {
    let dir = ItemId::new();
    let c = CommitRequest {
        workspace: owner.private.id,
        device: owner.device,
        items: vec![folder(dir, None, &format!("Vault {dir}"))],
    };
    env.call(&owner.token, Request::Commit(c)).await.unwrap();
    let request = Request::CreateShareProposal {
        workspace: owner.private.id,
        folder: dir,
        emails: members.iter().map(|m| m.email.clone()).collect(),
        encryption: EncryptionMode::ClientSide,
        read_only,
    };
    let Ok(Reply::ShareProposal { proposal, .. }) = env.call(&owner.token, request).await else {
        panic!("the proposal is made");
    };
    let mut id = None;
    for member in members {
        let answer = Request::AnswerShareProposal {
            proposal,
            accept: true,
        };
        match env.call(&member.token, answer).await {
            Ok(Reply::ShareAnswered {
                workspace: Some(ws),
            }) => {
                assert_eq!(ws.encryption, EncryptionMode::ClientSide, "{ws:?}");
                assert_eq!(ws.read_only, read_only, "{ws:?}");
                id = Some(ws.id);
            }
            other => panic!("{} accepts: {other:?}", member.email),
        }
    }
    id.expect("at least one member")
}

fn assert_kind(what: &str, result: Result<impl std::fmt::Debug, Error>, kind: ErrorKind) -> Error {
    match result {
        Err(e) => {
            assert_eq!(e.kind, kind, "{what}: {e}");
            e
        }
        Ok(v) => panic!("{what}: expected {kind:?}, got {v:?}"),
    }
}

async fn identities_go_only_to_people_sharing_a_workspace(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let carol = env.user("carol@example.com").await;
    let mallory = env.user("mallory@example.com").await;
    let first = publish(env, &alice, vec![1; 80]).await.unwrap();
    publish(env, &bob, vec![2; 80]).await.unwrap();
    publish(env, &carol, vec![3; 80]).await.unwrap();
    e2e_workspace(env, &alice, &[&bob], false).await;

    let nobody = UserId(uuid::Uuid::new_v4());
    let asked = vec![alice.id, bob.id, carol.id, mallory.id, nobody];
    let seen = identities(env, &alice, asked.clone()).await.unwrap();
    let got: Vec<Option<(UserId, Vec<u8>)>> = seen
        .iter()
        .map(|i| i.as_ref().map(|i| (i.user, i.identity.clone())))
        .collect();
    assert_eq!(
        got,
        vec![
            Some((alice.id, vec![1; 80])),
            Some((bob.id, vec![2; 80])),
            // Carol published but shares nothing with alice; mallory has
            // none; nobody does not exist: all three look the same.
            None,
            None,
            None,
        ]
    );
    assert_eq!(seen[0].as_ref().unwrap().changed_at, first);
    // Bob sees alice; carol sees only herself, mallory nothing at all.
    let seen = identities(env, &bob, vec![alice.id]).await.unwrap();
    assert_eq!(seen[0].as_ref().unwrap().identity, vec![1; 80]);
    let seen = identities(env, &carol, asked.clone()).await.unwrap();
    assert_eq!(
        seen.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![false, false, true, false, false]
    );
    let seen = identities(env, &mallory, asked).await.unwrap();
    assert!(seen.iter().all(Option::is_none), "{seen:?}");

    // Publishing the same bytes again is no change; other bytes replace
    // them.
    assert_eq!(publish(env, &alice, vec![1; 80]).await.unwrap(), first);
    let later = publish(env, &alice, vec![9; 80]).await.unwrap();
    assert!(later >= first);
    let seen = identities(env, &bob, vec![alice.id, alice.id])
        .await
        .unwrap();
    assert_eq!(seen.len(), 2);
    for s in seen {
        let s = s.unwrap();
        assert_eq!(
            (s.user, s.identity, s.changed_at),
            (alice.id, vec![9; 80], later)
        );
    }

    assert_kind(
        "empty identity",
        publish(env, &alice, vec![]).await,
        ErrorKind::BadRequest,
    );
    assert_kind(
        "oversized identity",
        publish(env, &alice, vec![1; MAX_IDENTITY_BYTES + 1]).await,
        ErrorKind::TooLarge,
    );
    let too_many = vec![alice.id; stacksync_proto::keys::MAX_IDENTITY_USERS + 1];
    assert_kind(
        "too many users",
        identities(env, &alice, too_many).await,
        ErrorKind::BadRequest,
    );
    assert_eq!(identities(env, &alice, vec![]).await.unwrap(), vec![]);
}
both_combos!(identities_go_only_to_people_sharing_a_workspace);

async fn the_chain_is_append_only_and_members_hear_of_it(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let mallory = env.user("mallory@example.com").await;
    let ws = e2e_workspace(env, &alice, &[&bob], false).await;
    let mut bob_hears = env
        .bus
        .subscribe(&env.service.topics_for(bob.id).await.unwrap())
        .await
        .unwrap();

    assert_eq!(get(env, &bob, ws, 0, 10).await.unwrap(), (vec![], 0));
    // The first statement is the owner's to write: a member who joined
    // first cannot name themselves the keys' owner.
    assert_kind(
        "a member's genesis",
        put(env, &bob, ws, 1, b"bob's genesis".to_vec()).await,
        ErrorKind::Forbidden,
    );
    assert_eq!(get(env, &bob, ws, 0, 10).await.unwrap(), (vec![], 0));
    put(env, &alice, ws, 1, b"genesis".to_vec()).await.unwrap();
    loop {
        match next_notification(&mut bob_hears).await {
            Notification::KeysChanged { workspace, epoch } => {
                assert_eq!((workspace, epoch), (ws, 1));
                break;
            }
            _ => continue,
        }
    }
    put(env, &bob, ws, 2, b"bob rotates".to_vec())
        .await
        .unwrap();

    // A gap, a second writer at a stored epoch, and epoch 0 are refused,
    // saying where the chain is.
    let e = assert_kind(
        "gap",
        put(env, &alice, ws, 4, b"x".to_vec()).await,
        ErrorKind::Conflict,
    );
    assert!(e.message.contains("latest epoch is 2"), "{e}");
    let e = assert_kind(
        "second writer",
        put(env, &alice, ws, 2, b"alice rotates".to_vec()).await,
        ErrorKind::Conflict,
    );
    assert!(e.message.contains("latest epoch is 2"), "{e}");
    assert_kind(
        "epoch 0",
        put(env, &alice, ws, 0, b"x".to_vec()).await,
        ErrorKind::BadRequest,
    );
    // The same bytes at a stored epoch are a retry (even an old one).
    put(env, &bob, ws, 2, b"bob rotates".to_vec())
        .await
        .unwrap();
    put(env, &alice, ws, 1, b"genesis".to_vec()).await.unwrap();
    put(env, &alice, ws, 3, b"third".to_vec()).await.unwrap();

    // Paging.
    let (all, latest) = get(env, &alice, ws, 0, 10).await.unwrap();
    assert_eq!(latest, 3);
    assert_eq!(
        all,
        vec![
            (1, b"genesis".to_vec()),
            (2, b"bob rotates".to_vec()),
            (3, b"third".to_vec())
        ]
    );
    let (page, latest) = get(env, &bob, ws, 0, 2).await.unwrap();
    assert_eq!((epochs(&page), latest), (vec![1, 2], 3));
    let (page, _) = get(env, &bob, ws, 2, 2).await.unwrap();
    assert_eq!(epochs(&page), vec![3]);
    let (page, _) = get(env, &bob, ws, 1, 1).await.unwrap();
    assert_eq!(epochs(&page), vec![2]);
    let (page, _) = get(env, &bob, ws, 0, 0).await.unwrap();
    assert_eq!(epochs(&page), vec![1], "a limit of 0 still reads one");
    let (page, latest) = get(env, &bob, ws, 3, 10).await.unwrap();
    assert_eq!((page, latest), (vec![], 3));
    let (page, _) = get(env, &bob, ws, u64::MAX, 10).await.unwrap();
    assert!(page.is_empty());

    // Sizes: empty and oversized statements are refused; the largest fits.
    let big = vec![7; MAX_KEY_STATEMENT_BYTES];
    assert_kind(
        "oversized",
        put(env, &alice, ws, 4, vec![7; MAX_KEY_STATEMENT_BYTES + 1]).await,
        ErrorKind::TooLarge,
    );
    assert_kind(
        "empty",
        put(env, &alice, ws, 4, vec![]).await,
        ErrorKind::BadRequest,
    );
    put(env, &alice, ws, 4, big.clone()).await.unwrap();
    let (page, _) = get(env, &bob, ws, 3, 10).await.unwrap();
    assert_eq!(page, vec![(4, big)]);

    // Non-members learn nothing; a plain workspace has no chain.
    assert_kind(
        "mallory reads",
        get(env, &mallory, ws, 0, 10).await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        "mallory writes",
        put(env, &mallory, ws, 5, b"evil".to_vec()).await,
        ErrorKind::Forbidden,
    );
    assert_kind(
        "plain workspace",
        put(env, &alice, alice.private.id, 1, b"x".to_vec()).await,
        ErrorKind::BadRequest,
    );
    assert_eq!(get(env, &alice, ws, 0, 10).await.unwrap().1, 4);
}
both_combos!(the_chain_is_append_only_and_members_hear_of_it);

async fn read_only_members_read_the_chain_but_never_append(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let carol = env.user("carol@example.com").await;
    let ws = e2e_workspace(env, &alice, &[&carol], true).await;
    put(env, &alice, ws, 1, b"genesis".to_vec()).await.unwrap();
    let e = assert_kind(
        "read-only member",
        put(env, &carol, ws, 2, b"carol".to_vec()).await,
        ErrorKind::Forbidden,
    );
    assert!(e.message.contains("read-only member"), "{e}");
    let (page, latest) = get(env, &carol, ws, 0, 10).await.unwrap();
    assert_eq!((epochs(&page), latest), (vec![1], 1));
}
both_combos!(read_only_members_read_the_chain_but_never_append);

/// Two members append the same epoch at once, round after round: exactly
/// one wins each time, and the chain holds the winner's bytes.
async fn concurrent_appends_have_one_winner(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let ws = e2e_workspace(env, &alice, &[&bob], false).await;
    // The first is the owner's alone (see above).
    put(env, &alice, ws, 1, b"genesis".to_vec()).await.unwrap();
    for epoch in 2..=12u64 {
        let a = format!("alice {epoch}").into_bytes();
        let b = format!("bob {epoch}").into_bytes();
        let (ra, rb) = tokio::join!(
            put(env, &alice, ws, epoch, a.clone()),
            put(env, &bob, ws, epoch, b.clone())
        );
        let winner = match (&ra, &rb) {
            (Ok(()), Err(e)) | (Err(e), Ok(())) => {
                assert_eq!(e.kind, ErrorKind::Conflict, "epoch {epoch}: {e}");
                if ra.is_ok() { a } else { b }
            }
            _ => panic!("epoch {epoch}: exactly one must win: {ra:?} {rb:?}"),
        };
        let (page, latest) = get(env, &alice, ws, epoch - 1, 1).await.unwrap();
        assert_eq!((page, latest), (vec![(epoch, winner)], epoch));
    }
}
both_combos!(concurrent_appends_have_one_winner);

/// A removed user's identity goes with them, and so do the key
/// statements of the workspaces deleted with them.
async fn removal_forgets_identities_and_chains(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let store = env.service.store();
    // A workspace of alice's alone, end-to-end encrypted, made through the
    // store (the service makes them only by sharing).
    let vault = store
        .create_workspace(alice.id, "vault", false, EncryptionMode::ClientSide)
        .await
        .unwrap();
    publish(env, &alice, vec![1; 80]).await.unwrap();
    put(env, &alice, vault.id, 1, b"genesis".to_vec())
        .await
        .unwrap();
    put(env, &alice, vault.id, 2, b"second".to_vec())
        .await
        .unwrap();
    assert_eq!(store.latest_key_epoch(vault.id).await.unwrap(), 2);
    let own = store
        .identities_visible_to(alice.id, &[alice.id])
        .await
        .unwrap();
    assert!(own[0].is_some());
    store
        .remove_user(alice.id, stacksync_metastore::SharedWorkspaces::Refuse)
        .await
        .unwrap();
    // Had either survived, the foreign keys would have refused the removal;
    // the store finds neither.
    assert_eq!(store.latest_key_epoch(vault.id).await.unwrap(), 0);
    let own = store
        .identities_visible_to(alice.id, &[alice.id])
        .await
        .unwrap();
    assert_eq!(own, vec![None]);
}
both_combos!(removal_forgets_identities_and_chains);
