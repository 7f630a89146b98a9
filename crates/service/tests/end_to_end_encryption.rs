//! End-to-end encrypted workspaces over the bus: a user makes their own
//! private workspace end-to-end encrypted only while nothing was ever
//! written to it; there every version must carry its sealed record under
//! its sealed name and no MIME type, and anywhere else none may carry a
//! record (each refused proposal alone); the server restores nothing
//! there; a sealed private identity goes back to its owner only; and the
//! server shares no folder it would have to move into or out of an
//! end-to-end encrypted workspace.

mod common;

use common::{Env, User, file, folder, next_notification, share_folder};
use stacksync_proto::keys::{MAX_SEALED_IDENTITY_BYTES, PublishedIdentity, to_hex};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    CommitOutcome, CommitRequest, CommitResult, EncryptionMode, Error, ErrorKind, ItemId, ItemMeta,
    Notification, ProposedItem, Workspace, WorkspaceId,
};

/// `p` as a client of an end-to-end encrypted workspace proposes it.
fn sealed(mut p: ProposedItem, record: &[u8]) -> ProposedItem {
    p.name = ProposedItem::sealed_name(p.id);
    p.mimetype = None;
    p.record = Some(record.to_vec());
    p
}

async fn encrypt(env: &Env, user: &User, workspace: WorkspaceId) -> Result<Workspace, Error> {
    match env
        .call(&user.token, Request::EncryptWorkspace { workspace })
        .await?
    {
        Reply::Workspace(w) => Ok(w),
        other => panic!("encrypt: {other:?}"),
    }
}

async fn commit(
    env: &Env,
    user: &User,
    workspace: WorkspaceId,
    items: Vec<ProposedItem>,
) -> CommitResult {
    let c = CommitRequest {
        workspace,
        device: user.device,
        items,
    };
    match env.call(&user.token, Request::Commit(c)).await {
        Ok(Reply::Commit(result)) => result,
        other => panic!("commit: {other:?}"),
    }
}

/// Each item's outcome, as `Ok(meta)` when committed, `Err(kind)` when
/// refused, and `Err(Conflict)` for a conflict.
fn outcomes(result: &CommitResult) -> Vec<Result<ItemMeta, ErrorKind>> {
    result
        .results
        .iter()
        .map(|r| match &r.outcome {
            CommitOutcome::Committed { meta } => Ok(meta.clone()),
            CommitOutcome::Refused { error } => Err(error.kind),
            CommitOutcome::Conflict { .. } => Err(ErrorKind::Conflict),
        })
        .collect()
}

async fn feed(env: &Env, user: &User, workspace: WorkspaceId) -> Vec<ItemMeta> {
    let request = Request::GetChanges {
        workspace,
        since: 0,
        limit: 1000,
    };
    match env.call(&user.token, request).await {
        Ok(Reply::Changes(page)) => page.items,
        other => panic!("changes: {other:?}"),
    }
}

async fn setting(env: &Env, user: &User, workspace: WorkspaceId) -> Option<EncryptionMode> {
    match env.call(&user.token, Request::GetWorkspaces).await {
        Ok(Reply::Workspaces { workspaces }) => workspaces
            .iter()
            .find(|w| w.id == workspace)
            .map(|w| w.encryption),
        other => panic!("workspaces: {other:?}"),
    }
}

fn kind<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) -> ErrorKind {
    match result {
        Err(e) => e.kind,
        Ok(v) => panic!("{what}: expected a refusal, got {v:?}"),
    }
}

async fn a_private_workspace_is_encrypted_only_while_empty(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let carol = env.user("carol@example.com").await;
    let mut alice_hears = env
        .bus
        .subscribe(&env.service.topics_for(alice.id).await.unwrap())
        .await
        .unwrap();
    let ws = alice.private.id;
    assert_eq!(setting(env, &alice, ws).await, Some(EncryptionMode::Plain));

    let encrypted = encrypt(env, &alice, ws).await.unwrap();
    assert_eq!((encrypted.id, encrypted.owner), (ws, alice.id));
    assert_eq!(encrypted.encryption, EncryptionMode::ClientSide);
    // The account's setting is its private workspace's: every listing says
    // so, and alice's devices hear of it.
    assert_eq!(
        setting(env, &alice, ws).await,
        Some(EncryptionMode::ClientSide)
    );
    loop {
        if let Notification::WorkspaceUpdated { workspace } =
            next_notification(&mut alice_hears).await
        {
            assert_eq!(workspace, encrypted);
            break;
        }
    }
    // Asked again, answered the same, also once written to.
    assert_eq!(encrypt(env, &alice, ws).await.unwrap(), encrypted);
    let dir = ItemId::new();
    commit(env, &alice, ws, vec![sealed(folder(dir, None, "d"), b"r")]).await;
    let again = encrypt(env, &alice, ws).await.unwrap();
    assert_eq!(again.encryption, EncryptionMode::ClientSide);
    // Its key chain may start now.
    let put = Request::PutKeyStatement {
        workspace: ws,
        epoch: 1,
        statement: b"genesis".to_vec(),
    };
    env.call(&alice.token, put).await.unwrap();

    // Written to: refused, and it stays as it was.
    commit(
        env,
        &bob,
        bob.private.id,
        vec![folder(ItemId::new(), None, "x")],
    )
    .await;
    let e = encrypt(env, &bob, bob.private.id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e}");
    assert!(e.message.contains("committed"), "{e}");
    assert_eq!(
        setting(env, &bob, bob.private.id).await,
        Some(EncryptionMode::Plain)
    );
    // Someone else's private workspace, or a shared folder: never.
    assert_eq!(
        kind("carol on alice's", encrypt(env, &carol, ws).await),
        ErrorKind::Forbidden
    );
    let team = ItemId::new();
    commit(env, &bob, bob.private.id, vec![folder(team, None, "Team")]).await;
    let shared = share_folder(env, &bob, &carol, team).await;
    assert_eq!(
        kind(
            "a member on a shared folder",
            encrypt(env, &carol, shared.id).await
        ),
        ErrorKind::Forbidden
    );
    let e = encrypt(env, &bob, shared.id).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert_eq!(
        setting(env, &bob, shared.id).await,
        Some(EncryptionMode::Plain)
    );
}
both_combos!(a_private_workspace_is_encrypted_only_while_empty);

async fn client_side_proposals_are_checked_one_by_one(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let ws = alice.private.id;
    encrypt(env, &alice, ws).await.unwrap();
    let (dir, doc) = (ItemId::new(), ItemId::new());
    let unsealed = ItemId::new();
    let mut typed = sealed(file(ItemId::new(), Some(dir), "t", 1, "t"), b"typed");
    typed.mimetype = Some("text/plain".into());
    let mut named = sealed(file(ItemId::new(), Some(dir), "n", 1, "n"), b"named");
    named.name = stacksync_proto::ItemName::new("tax return.pdf").unwrap();
    let record = vec![0x5a; 300];
    let batch = vec![
        sealed(folder(dir, None, "d"), b"folder record"),
        file(unsealed, Some(dir), "plain.txt", 1, "p"),
        named,
        typed,
        sealed(file(doc, Some(dir), "doc", 1, "one"), &record),
    ];
    let ids: Vec<ItemId> = batch.iter().map(|p| p.id).collect();
    let result = commit(env, &alice, ws, batch).await;
    assert_eq!(
        result.results.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids,
        "every proposal answered in its place"
    );
    let got = outcomes(&result);
    assert!(got[0].is_ok() && got[4].is_ok(), "{got:?}");
    assert_eq!(
        got[1..4].to_vec(),
        vec![Err(ErrorKind::BadRequest); 3],
        "no record, a real name, a MIME type"
    );
    for r in &result.results[1..4] {
        let CommitOutcome::Refused { error } = &r.outcome else {
            unreachable!()
        };
        assert!(error.message.contains("end-to-end encrypted"), "{error}");
        assert!(!error.message.contains("tax return"), "{error}");
    }
    assert_eq!(result.revision, 2);
    let stored = got[4].clone().unwrap();
    assert_eq!(stored.record, Some(record.clone()));

    // What members read back: the feed and the versions carry the records.
    let listed = feed(env, &alice, ws).await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].record, Some(b"folder record".to_vec()));
    assert_eq!(listed[1], stored);
    let request = Request::GetVersions {
        workspace: ws,
        item: doc,
    };
    let Ok(Reply::Versions { versions }) = env.call(&alice.token, request).await else {
        panic!("versions");
    };
    assert_eq!(versions, vec![stored.clone()]);

    // A retry (the same sealed bytes) is the stored version; another
    // record for that version is a conflict.
    let retry = sealed(file(doc, Some(dir), "doc", 1, "one"), &record);
    let again = commit(env, &alice, ws, vec![retry.clone()]).await;
    assert_eq!(outcomes(&again), vec![Ok(stored.clone())]);
    let other = ProposedItem {
        record: Some(vec![0x5b; 300]),
        ..retry
    };
    let conflict = commit(env, &alice, ws, vec![other]).await;
    assert_eq!(outcomes(&conflict), vec![Err(ErrorKind::Conflict)]);
    assert_eq!(feed(env, &alice, ws).await.len(), 2);
}
both_combos!(client_side_proposals_are_checked_one_by_one);

async fn plain_workspaces_take_no_records(env: &Env) {
    let bob = env.user("bob@example.com").await;
    let ws = bob.private.id;
    let mut with_record = folder(ItemId::new(), None, "sealed?");
    with_record.record = Some(b"nobody can open this".to_vec());
    let result = commit(
        env,
        &bob,
        ws,
        vec![with_record, folder(ItemId::new(), None, "plain")],
    )
    .await;
    let got = outcomes(&result);
    assert_eq!(got[0], Err(ErrorKind::BadRequest));
    let meta = got[1].clone().unwrap();
    assert_eq!(meta.record, None);
    assert_eq!(feed(env, &bob, ws).await, vec![meta]);
}
both_combos!(plain_workspaces_take_no_records);

async fn the_server_restores_nothing_it_cannot_seal(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    encrypt(env, &alice, alice.private.id).await.unwrap();
    for (user, e2e) in [(&alice, true), (&bob, false)] {
        let ws = user.private.id;
        let doc = ItemId::new();
        let version = |v: u64, seed: &str| {
            let p = file(doc, None, "doc", v, seed);
            if e2e { sealed(p, seed.as_bytes()) } else { p }
        };
        commit(env, user, ws, vec![version(1, "one")]).await;
        commit(env, user, ws, vec![version(2, "two")]).await;
        let restore = Request::Restore {
            workspace: ws,
            item: doc,
            version: 1,
            device: user.device,
        };
        let restored = env.call(&user.token, restore).await;
        if e2e {
            let e = restored.unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
            assert!(e.message.contains("end-to-end encrypted"), "{e}");
            let listed = feed(env, user, ws).await;
            assert_eq!(listed[0].version, 2, "nothing restored");
        } else {
            let Ok(Reply::Restored { meta }) = restored else {
                panic!("a plain restore works: {restored:?}");
            };
            assert_eq!((meta.version, meta.record), (3, None));
        }
    }
}
both_combos!(the_server_restores_nothing_it_cannot_seal);

async fn publish(
    env: &Env,
    user: &User,
    identity: &[u8],
    sealed: Option<&[u8]>,
) -> Result<(), Error> {
    let request = Request::PublishIdentity {
        identity: identity.to_vec(),
        sealed: sealed.map(<[u8]>::to_vec),
    };
    match env.call(&user.token, request).await? {
        Reply::IdentityPublished { .. } => Ok(()),
        other => panic!("publish: {other:?}"),
    }
}

async fn own(env: &Env, user: &User) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match env.call(&user.token, Request::GetOwnIdentity).await {
        Ok(Reply::OwnIdentity { identity, sealed }) => (identity, sealed),
        other => panic!("own identity: {other:?}"),
    }
}

async fn a_sealed_identity_goes_back_to_its_owner_only(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let (identity, secret) = (vec![0xa1; 80], vec![0x5e; 200]);
    publish(env, &alice, &identity, Some(&secret))
        .await
        .unwrap();
    assert_eq!(
        own(env, &alice).await,
        (Some(identity.clone()), Some(secret.clone()))
    );
    assert_eq!(own(env, &bob).await, (None, None));

    // Bob shares a folder with alice, so he is given her identity, and
    // nothing of the sealed copy: not even its bytes in the reply.
    let dir = ItemId::new();
    commit(env, &bob, bob.private.id, vec![folder(dir, None, "Both")]).await;
    share_folder(env, &bob, &alice, dir).await;
    let reply = env
        .call(
            &bob.token,
            Request::GetIdentities {
                users: vec![alice.id],
            },
        )
        .await
        .unwrap();
    let text = serde_json::to_string(&reply).unwrap();
    assert!(!text.contains(&to_hex(&secret)), "{text}");
    let Reply::Identities { identities } = reply else {
        panic!("identities");
    };
    let seen: Vec<Option<PublishedIdentity>> = identities;
    assert_eq!(seen[0].as_ref().unwrap().identity, identity);

    // The same identity without a sealed copy keeps it; another drops it.
    publish(env, &alice, &identity, None).await.unwrap();
    assert_eq!(own(env, &alice).await.1, Some(secret.clone()));
    publish(env, &alice, &[0xa2; 80], None).await.unwrap();
    assert_eq!(own(env, &alice).await, (Some(vec![0xa2; 80]), None));

    // Sizes.
    assert_eq!(
        kind("empty", publish(env, &alice, &identity, Some(&[])).await),
        ErrorKind::BadRequest
    );
    let big = vec![1; MAX_SEALED_IDENTITY_BYTES + 1];
    assert_eq!(
        kind(
            "oversized",
            publish(env, &alice, &identity, Some(&big)).await
        ),
        ErrorKind::TooLarge
    );
    publish(
        env,
        &alice,
        &identity,
        Some(&big[..MAX_SEALED_IDENTITY_BYTES]),
    )
    .await
    .unwrap();
    assert_eq!(
        own(env, &alice).await.1.map(|s| s.len()),
        Some(MAX_SEALED_IDENTITY_BYTES)
    );
}
both_combos!(a_sealed_identity_goes_back_to_its_owner_only);

async fn propose(
    env: &Env,
    owner: &User,
    workspace: WorkspaceId,
    folder: ItemId,
    to: &User,
    encryption: EncryptionMode,
) -> Result<uuid::Uuid, Error> {
    let request = Request::CreateShareProposal {
        workspace,
        folder,
        emails: vec![to.email.clone()],
        encryption,
        read_only: false,
    };
    match env.call(&owner.token, request).await? {
        Reply::ShareProposal { proposal, .. } => Ok(proposal),
        other => panic!("propose: {other:?}"),
    }
}

async fn accept(env: &Env, user: &User, proposal: uuid::Uuid) -> Result<Workspace, Error> {
    let request = Request::AnswerShareProposal {
        proposal,
        accept: true,
    };
    match env.call(&user.token, request).await? {
        Reply::ShareAnswered {
            workspace: Some(ws),
        } => Ok(ws),
        other => panic!("accept: {other:?}"),
    }
}

async fn no_share_moves_items_into_or_out_of_an_encrypted_workspace(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let carol = env.user("carol@example.com").await;
    let ws = bob.private.id;
    let (docs, vault, paper) = (ItemId::new(), ItemId::new(), ItemId::new());
    commit(
        env,
        &bob,
        ws,
        vec![
            folder(docs, None, "Docs"),
            file(ItemId::new(), Some(docs), "plan.txt", 1, "p"),
            folder(vault, None, "Vault"),
        ],
    )
    .await;

    // A folder with files in it cannot become end-to-end encrypted.
    let e = propose(env, &bob, ws, docs, &carol, EncryptionMode::ClientSide)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert!(e.message.contains("empty folder"), "{e}");
    let Ok(Reply::Invitations { invitations }) =
        env.call(&carol.token, Request::GetInvitations).await
    else {
        panic!("invitations");
    };
    assert_eq!(invitations, vec![], "no proposal was made");

    // An empty one can: it becomes bob's own end-to-end encrypted
    // workspace at once, before anyone accepts, so that nothing plain is
    // ever put into it: a plain file committed into the folder now is
    // refused (the folder is gone from bob's private workspace), and
    // carol, accepting, joins the same workspace.
    let request_id = uuid::Uuid::new_v4();
    let request = |vault| stacksync_proto::rpc::RpcRequest {
        request_id,
        token: bob.token.clone(),
        request: Request::CreateShareProposal {
            workspace: ws,
            folder: vault,
            emails: vec![carol.email.clone()],
            encryption: EncryptionMode::ClientSide,
            read_only: false,
        },
    };
    let first = env.call_raw(&request(vault)).await;
    let Ok(Reply::ShareProposal { proposal, .. }) = first.result.clone() else {
        panic!("propose: {first:?}");
    };
    let shared_id = stacksync_proto::ids::shared_workspace_id(proposal);
    // A retry of the same request (its answer lost) finishes and answers
    // the same, though the folder has moved into the new workspace.
    let again = env.call_raw(&request(vault)).await;
    assert_eq!(again.result, first.result);
    assert_eq!(
        setting(env, &bob, shared_id).await,
        Some(EncryptionMode::ClientSide),
        "the encrypted workspace exists before anyone accepts"
    );
    let result = commit(
        env,
        &bob,
        ws,
        vec![file(paper, Some(vault), "paper.txt", 1, "x")],
    )
    .await;
    assert!(outcomes(&result)[0].is_err(), "{result:?}");
    assert!(
        feed(env, &bob, ws)
            .await
            .iter()
            .all(|m| m.id != vault || !m.status.is_live()),
        "the folder left bob's private workspace"
    );
    let joined = accept(env, &carol, proposal).await.unwrap();
    assert_eq!(joined.id, shared_id);
    assert_eq!(joined.encryption, EncryptionMode::ClientSide);
    let Ok(Reply::Workspaces { workspaces }) = env.call(&carol.token, Request::GetWorkspaces).await
    else {
        panic!("workspaces");
    };
    assert_eq!(workspaces.len(), 2, "carol joined it: {workspaces:?}");

    // Nothing is shared out of an end-to-end encrypted workspace.
    encrypt(env, &alice, alice.private.id).await.unwrap();
    let mine = ItemId::new();
    commit(
        env,
        &alice,
        alice.private.id,
        vec![sealed(folder(mine, None, "m"), b"r")],
    )
    .await;
    for encryption in [EncryptionMode::Plain, EncryptionMode::ClientSide] {
        let e = propose(env, &alice, alice.private.id, mine, &carol, encryption)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest, "{encryption:?}: {e}");
        assert!(e.message.contains("end-to-end encrypted"), "{e}");
    }

    // An end-to-end encrypted share of an empty folder is made; when its
    // last member leaves, its sealed items stay in it, with their owner,
    // and never move into the owner's plain workspace.
    let empty = ItemId::new();
    commit(env, &bob, ws, vec![folder(empty, None, "Empty")]).await;
    let proposal = propose(env, &bob, ws, empty, &carol, EncryptionMode::ClientSide)
        .await
        .unwrap();
    let shared = accept(env, &carol, proposal).await.unwrap();
    assert_eq!(shared.encryption, EncryptionMode::ClientSide);
    let note = ItemId::new();
    let result = commit(
        env,
        &carol,
        shared.id,
        vec![sealed(file(note, None, "note", 1, "n"), b"sealed note")],
    )
    .await;
    assert!(outcomes(&result)[0].is_ok());
    let leave = Request::LeaveWorkspace {
        workspace: shared.id,
    };
    env.call(&carol.token, leave).await.unwrap();
    assert_eq!(
        setting(env, &bob, shared.id).await,
        Some(EncryptionMode::ClientSide),
        "bob keeps the shared workspace"
    );
    let there = feed(env, &bob, shared.id).await;
    assert_eq!(there.len(), 1);
    assert_eq!(there[0].record, Some(b"sealed note".to_vec()));
    assert!(feed(env, &bob, ws).await.iter().all(|m| m.id != note));
}
both_combos!(no_share_moves_items_into_or_out_of_an_encrypted_workspace);
