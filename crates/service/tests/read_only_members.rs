//! Read-only members of shared folders, end to end over the bus: the role a
//! proposal offers travels with the invitation, the membership, every view
//! of the workspace and the member list; a read-only member reads
//! everything (feed, versions, chunks) but every write is refused before
//! it has an effect (commits, restores, uploads), while a read-write member
//! writes; their storage user only reads the container.

mod common;

use bytes::Bytes;
use common::{Env, User, file, folder, next_notification};
use stacksync_blobstore::{ContainerName, StorageUser};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitOutcome, CommitRequest, EncryptionMode, Error, ErrorKind, ItemId,
    Notification, ProposedItem, Workspace, WorkspaceId,
};
use uuid::Uuid;

/// What every refused write says.
const READ_ONLY: &str = "you are a read-only member of the shared folder";

fn assert_read_only_refusal(what: &str, e: &Error) {
    assert_eq!(e.kind, ErrorKind::Forbidden, "{what}: {e}");
    assert!(e.message.contains(READ_ONLY), "{what}: {e}");
}

async fn propose(env: &Env, owner: &User, folder: ItemId, to: &User, read_only: bool) -> Uuid {
    let request = Request::CreateShareProposal {
        workspace: owner.private.id,
        folder,
        emails: vec![to.email.clone()],
        encryption: EncryptionMode::Plain,
        read_only,
    };
    match env.call(&owner.token, request).await {
        Ok(Reply::ShareProposal { proposal, .. }) => proposal,
        other => panic!("the proposal is made: {other:?}"),
    }
}

async fn accept(env: &Env, user: &User, proposal: Uuid) -> Workspace {
    let answer = Request::AnswerShareProposal {
        proposal,
        accept: true,
    };
    match env.call(&user.token, answer).await {
        Ok(Reply::ShareAnswered {
            workspace: Some(ws),
        }) => ws,
        other => panic!("the proposal is accepted: {other:?}"),
    }
}

/// `user`'s pending invitations, as (proposal, read-only).
async fn invitations(env: &Env, user: &User) -> Vec<(Uuid, bool)> {
    match env.call(&user.token, Request::GetInvitations).await {
        Ok(Reply::Invitations { invitations }) => invitations
            .into_iter()
            .map(|i| (i.proposal, i.read_only))
            .collect(),
        other => panic!("invitations: {other:?}"),
    }
}

/// `user`'s workspaces, as (id, read-only).
async fn workspaces(env: &Env, user: &User) -> Vec<(WorkspaceId, bool)> {
    match env.call(&user.token, Request::GetWorkspaces).await {
        Ok(Reply::Workspaces { workspaces }) => {
            workspaces.iter().map(|w| (w.id, w.read_only)).collect()
        }
        other => panic!("workspaces: {other:?}"),
    }
}

async fn commit(env: &Env, user: &User, ws: WorkspaceId, items: Vec<ProposedItem>) -> Reply {
    let request = Request::Commit(CommitRequest {
        workspace: ws,
        device: user.device,
        items,
    });
    env.call(&user.token, request)
        .await
        .unwrap_or_else(|e| panic!("{}'s commit: {e}", user.email))
}

fn all_committed(reply: &Reply) -> bool {
    matches!(reply, Reply::Commit(r)
        if r.results.iter().all(|r| matches!(r.outcome, CommitOutcome::Committed { .. })))
}

/// An encoded-looking object and its id (what is stored is opaque here).
fn object(seed: &str) -> (ChunkId, Bytes) {
    let data = Bytes::from(format!("object {seed}").repeat(100));
    (ChunkId(*blake3::hash(&data).as_bytes()), data)
}

async fn roles_travel_and_read_only_members_never_write(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let carol = env.user("carol@example.com").await;
    let (project, other, doc) = (ItemId::new(), ItemId::new(), ItemId::new());
    let setup = commit(
        env,
        &alice,
        alice.private.id,
        vec![
            folder(project, None, "Project"),
            folder(other, None, "Other"),
            file(doc, Some(project), "doc.txt", 1, "one"),
        ],
    )
    .await;
    assert!(all_committed(&setup), "{setup:?}");

    // The invitation says which role accepting gives.
    let to_bob = propose(env, &alice, project, &bob, true).await;
    let to_carol = propose(env, &alice, other, &carol, false).await;
    assert_eq!(invitations(env, &bob).await, vec![(to_bob, true)]);
    assert_eq!(invitations(env, &carol).await, vec![(to_carol, false)]);

    let mut bob_sub = env
        .bus
        .subscribe(&env.service.topics_for(bob.id).await.unwrap())
        .await
        .unwrap();
    let shared = accept(env, &bob, to_bob).await;
    assert!(shared.read_only, "{shared:?}");
    match next_notification(&mut bob_sub).await {
        Notification::WorkspaceJoined { workspace } => {
            assert_eq!(workspace.id, shared.id);
            assert!(workspace.read_only, "{workspace:?}");
        }
        other => panic!("expected bob's WorkspaceJoined, got {other:?}"),
    }
    let theirs = accept(env, &carol, to_carol).await;
    assert!(!theirs.read_only, "{theirs:?}");
    assert_eq!(
        workspaces(env, &bob).await,
        vec![(bob.private.id, false), (shared.id, true)]
    );
    assert!(
        workspaces(env, &alice).await.iter().all(|(_, ro)| !ro),
        "the owner is never read-only"
    );
    let members = match env
        .call(
            &bob.token,
            Request::GetMembers {
                workspace: shared.id,
            },
        )
        .await
    {
        Ok(Reply::Members { members }) => members,
        other => panic!("members: {other:?}"),
    };
    let roles: Vec<(&str, bool, bool)> = members
        .iter()
        .map(|m| (m.email.as_str(), m.is_owner, m.read_only))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("alice@example.com", true, false),
            ("bob@example.com", false, true)
        ]
    );

    // The owner writes: an object and a second version of the file.
    let (chunk, data) = object("alice");
    env.service
        .put_chunk(alice.id, shared.id, &chunk, data.clone())
        .await
        .unwrap();
    // The folder's children are the shared workspace's top level.
    let mut v2 = file(doc, None, "doc.txt", 2, "two");
    v2.size = data.len() as u64;
    v2.chunks = vec![ChunkRef::whole(chunk, data.len() as u32)];
    let edited = commit(env, &alice, shared.id, vec![v2]).await;
    assert!(all_committed(&edited), "{edited:?}");

    // Bob reads all of it.
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
        panic!("bob reads the feed");
    };
    assert!(page.items.iter().any(|m| m.id == doc && m.version == 2));
    let Ok(Reply::Versions { versions }) = env
        .call(
            &bob.token,
            Request::GetVersions {
                workspace: shared.id,
                item: doc,
            },
        )
        .await
    else {
        panic!("bob reads the versions");
    };
    assert_eq!(versions.len(), 2);
    assert_eq!(
        env.service
            .get_chunk(bob.id, shared.id, &chunk, None)
            .await
            .unwrap(),
        data
    );
    assert_eq!(
        env.service
            .has_chunks(bob.id, shared.id, &[chunk])
            .await
            .unwrap(),
        vec![true]
    );

    // Bob writes nothing: not a new file, an edit, a delete or a restore,
    // and no object, not even one the container already holds.
    let revision = env
        .service
        .store()
        .workspace_as(alice.id, shared.id)
        .await
        .unwrap()
        .latest_revision;
    let container = ContainerName::new(&shared.container).unwrap();
    let stored = env.blobs.list(&container).await.unwrap();
    let ledger = env.service.store().objects_of(shared.id).await.unwrap();
    let mut deleted = file(doc, None, "doc.txt", 3, "gone");
    deleted.status = stacksync_proto::ItemStatus::Deleted;
    deleted.content_hash = None;
    for (what, items) in [
        (
            "a new file",
            vec![file(ItemId::new(), None, "new.txt", 1, "n")],
        ),
        ("an edit", vec![file(doc, None, "doc.txt", 3, "three")]),
        ("a delete", vec![deleted]),
        ("nothing", vec![]),
    ] {
        let request = Request::Commit(CommitRequest {
            workspace: shared.id,
            device: bob.device,
            items,
        });
        let e = env.call(&bob.token, request).await.unwrap_err();
        assert_read_only_refusal(what, &e);
    }
    let restore = Request::Restore {
        workspace: shared.id,
        item: doc,
        version: 1,
        device: bob.device,
    };
    let e = env.call(&bob.token, restore).await.unwrap_err();
    assert_read_only_refusal("a restore", &e);
    let (new_chunk, new_data) = object("bob");
    for (what, id, bytes) in [
        ("a new object", new_chunk, new_data),
        ("a stored object again", chunk, data.clone()),
    ] {
        let e = env
            .service
            .put_chunk(bob.id, shared.id, &id, bytes)
            .await
            .unwrap_err();
        assert_read_only_refusal(what, &e);
    }
    let now = env
        .service
        .store()
        .workspace_as(alice.id, shared.id)
        .await
        .unwrap();
    assert_eq!(now.latest_revision, revision, "nothing was committed");
    assert_eq!(env.blobs.list(&container).await.unwrap(), stored);
    assert_eq!(
        env.service.store().objects_of(shared.id).await.unwrap(),
        ledger
    );

    // His own view of it is his to change, and the role stays.
    let Ok(Reply::Workspace(renamed)) = env
        .call(
            &bob.token,
            Request::UpdateWorkspace {
                workspace: shared.id,
                name: "Alice's project".into(),
                mount_parent: None,
            },
        )
        .await
    else {
        panic!("bob renames his mount");
    };
    assert!(renamed.read_only && renamed.name == "Alice's project");

    // A read-write member writes, objects and items.
    let (carols, carols_data) = object("carol");
    env.service
        .put_chunk(carol.id, theirs.id, &carols, carols_data.clone())
        .await
        .unwrap();
    let mut note = file(ItemId::new(), None, "note.txt", 1, "carol");
    note.size = carols_data.len() as u64;
    note.chunks = vec![ChunkRef::whole(carols, carols_data.len() as u32)];
    let written = commit(env, &carol, theirs.id, vec![note]).await;
    assert!(all_committed(&written), "{written:?}");

    // Storage: bob's storage user reads the container, never writes it.
    let acl = env.blobs.acl(&container).await.unwrap();
    let bob_su = StorageUser::new("t:bob").unwrap();
    assert!(acl.read.contains(&bob_su), "{acl:?}");
    assert!(!acl.write.contains(&bob_su), "{acl:?}");

    // And he may leave.
    let left = env
        .call(
            &bob.token,
            Request::LeaveWorkspace {
                workspace: shared.id,
            },
        )
        .await;
    assert!(matches!(left, Ok(Reply::Left { .. })), "{left:?}");
}
both_combos!(roles_travel_and_read_only_members_never_write);

/// A retried answer to a read-only proposal keeps the member read-only,
/// and a write grant an older server left on the container is taken back.
async fn a_retried_answer_keeps_the_role_and_the_acl_read_only(env: &Env) {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let dir = ItemId::new();
    commit(
        env,
        &alice,
        alice.private.id,
        vec![folder(dir, None, "Look")],
    )
    .await;
    let proposal = propose(env, &alice, dir, &bob, true).await;
    let shared = accept(env, &bob, proposal).await;
    let container = ContainerName::new(&shared.container).unwrap();
    let bob_su = StorageUser::new("t:bob").unwrap();
    env.blobs
        .grant(&container, &bob_su, stacksync_blobstore::Access::ReadWrite)
        .await
        .unwrap();
    let again = accept(env, &bob, proposal).await;
    assert!(again.read_only, "{again:?}");
    let acl = env.blobs.acl(&container).await.unwrap();
    assert!(acl.read.contains(&bob_su), "{acl:?}");
    assert!(!acl.write.contains(&bob_su), "{acl:?}");
    let e = env
        .service
        .put_chunk(bob.id, shared.id, &object("x").0, object("x").1)
        .await
        .unwrap_err();
    assert_read_only_refusal("an upload after a retried answer", &e);
}
both_combos!(a_retried_answer_keeps_the_role_and_the_acl_read_only);
