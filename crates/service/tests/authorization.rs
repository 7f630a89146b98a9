//! Authorization, data-driven: one table with every request variant, sent
//! by a user who is not a member (or with a device that is not theirs).
//! Each must be refused with the expected kind and change nothing. A second
//! table sends every request that names a workspace as a read-only member
//! of it: reads are answered, writes refused, and nothing changes.

mod common;

use bytes::Bytes;
use common::{Env, User, file, folder};
use stacksync_blobstore::ContainerName;
use stacksync_metastore::OwnIdentity;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{
    ChunkId, ChunkRef, CommitRequest, EncryptionMode, ErrorKind, ItemId, ItemMeta, Member,
    PackSpan, Workspace,
};
use uuid::Uuid;

/// The variant's name. Exhaustive on purpose: a new variant does not
/// compile until it is added here, and the coverage check below then fails
/// until the table has a row for it.
fn variant(r: &Request) -> &'static str {
    match r {
        Request::Login { .. } => "login",
        Request::GetAccount => "get_account",
        Request::GetWorkspaces => "get_workspaces",
        Request::GetChanges { .. } => "get_changes",
        Request::Commit(_) => "commit",
        Request::UpdateDevice { .. } => "update_device",
        Request::UpdateWorkspace { .. } => "update_workspace",
        Request::CreateShareProposal { .. } => "create_share_proposal",
        Request::AnswerShareProposal { .. } => "answer_share_proposal",
        Request::Unshare { .. } => "unshare",
        Request::GetMembers { .. } => "get_members",
        Request::GetInvitations => "get_invitations",
        Request::LeaveWorkspace { .. } => "leave_workspace",
        Request::GetVersions { .. } => "get_versions",
        Request::Restore { .. } => "restore",
        Request::LocateChunks { .. } => "locate_chunks",
        Request::ChangePassword { .. } => "change_password",
        Request::Logout { .. } => "logout",
        Request::IssueBrokerCredentials => "issue_broker_credentials",
        Request::BindNotifications => "bind_notifications",
        Request::PublishIdentity { .. } => "publish_identity",
        Request::GetOwnIdentity => "get_own_identity",
        Request::EncryptWorkspace { .. } => "encrypt_workspace",
        Request::GetIdentities { .. } => "get_identities",
        Request::GetKeyStatements { .. } => "get_key_statements",
        Request::PutKeyStatement { .. } => "put_key_statement",
    }
}

/// Whether the request acts on one workspace (named in it), which a
/// read-only member may or may not be allowed. Exhaustive on purpose, as
/// [`variant`] is.
fn names_a_workspace(r: &Request) -> bool {
    match r {
        Request::GetChanges { .. }
        | Request::Commit(_)
        | Request::UpdateWorkspace { .. }
        | Request::CreateShareProposal { .. }
        | Request::Unshare { .. }
        | Request::GetMembers { .. }
        | Request::LeaveWorkspace { .. }
        | Request::GetVersions { .. }
        | Request::Restore { .. }
        | Request::LocateChunks { .. }
        | Request::GetKeyStatements { .. }
        | Request::PutKeyStatement { .. }
        | Request::EncryptWorkspace { .. } => true,
        Request::Login { .. }
        | Request::GetAccount
        | Request::GetWorkspaces
        | Request::UpdateDevice { .. }
        | Request::AnswerShareProposal { .. }
        | Request::GetInvitations
        | Request::ChangePassword { .. }
        | Request::Logout { .. }
        | Request::IssueBrokerCredentials
        | Request::BindNotifications
        | Request::PublishIdentity { .. }
        | Request::GetOwnIdentity
        | Request::GetIdentities { .. } => false,
    }
}

const ALL: &[&str] = &[
    "login",
    "get_account",
    "get_workspaces",
    "get_changes",
    "commit",
    "update_device",
    "update_workspace",
    "create_share_proposal",
    "answer_share_proposal",
    "unshare",
    "get_members",
    "get_invitations",
    "leave_workspace",
    "get_versions",
    "restore",
    "locate_chunks",
    "change_password",
    "logout",
    "issue_broker_credentials",
    "bind_notifications",
    "publish_identity",
    "get_own_identity",
    "encrypt_workspace",
    "get_identities",
    "get_key_statements",
    "put_key_statement",
];

/// Everything a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    revision: u64,
    members: Vec<Member>,
    feed: Vec<ItemMeta>,
    workspace_names: Vec<String>,
    device_name: String,
    invitees: Vec<(String, String)>,
    mallory_revision: u64,
    encryption: EncryptionMode,
    alice_identity: Option<OwnIdentity>,
}

struct World {
    alice: User,
    bob: User,
    mallory: User,
    doc: ItemId,
    dir: ItemId,
    /// A chunk of alice's `plan.txt`, stored in a pack.
    chunk: ChunkId,
    proposal: Uuid,
}

async fn snapshot(env: &Env, w: &World) -> Snapshot {
    let store = env.service.store();
    let ws = w.alice.private.id;
    Snapshot {
        revision: store
            .workspace_as(w.alice.id, ws)
            .await
            .unwrap()
            .latest_revision,
        members: store.members(ws).await.unwrap(),
        feed: store.get_changes(ws, 0, 1000).await.unwrap().items,
        workspace_names: store
            .workspaces_of(w.alice.id)
            .await
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect(),
        device_name: store.device(w.alice.device).await.unwrap().unwrap().name,
        invitees: store
            .share_proposal(w.proposal)
            .await
            .unwrap()
            .invitees
            .into_iter()
            .map(|(e, s)| (e, format!("{s:?}")))
            .collect(),
        mallory_revision: store
            .workspace_as(w.mallory.id, w.mallory.private.id)
            .await
            .unwrap()
            .latest_revision,
        encryption: store.workspace_as(w.alice.id, ws).await.unwrap().encryption,
        alice_identity: store.own_identity(w.alice.id).await.unwrap(),
    }
}

async fn world(env: &Env) -> World {
    let alice = env.user("alice@example.com").await;
    let bob = env.user("bob@example.com").await;
    let mallory = env.user("mallory@example.com").await;
    let (dir, doc) = (ItemId::new(), ItemId::new());
    let chunk = ChunkId(*blake3::hash(b"the plan").as_bytes());
    let mut plan = file(doc, Some(dir), "plan.txt", 1, "p");
    plan.size = 8;
    plan.chunks = vec![ChunkRef {
        id: chunk,
        size: 8,
        span: Some(PackSpan {
            pack: ChunkId([7; 32]),
            offset: 100,
            len: 40,
            base: None,
        }),
    }];
    let c = CommitRequest {
        workspace: alice.private.id,
        device: alice.device,
        items: vec![folder(dir, None, "Secret"), plan],
    };
    env.call(&alice.token, Request::Commit(c)).await.unwrap();
    // An identity mallory must not be given: she shares nothing with alice;
    // and its sealed private half, which is alice's alone.
    let identity = Request::PublishIdentity {
        identity: vec![0xa1; 80],
        sealed: Some(vec![0x5e; 200]),
    };
    env.call(&alice.token, identity).await.unwrap();
    let Ok(Reply::ShareProposal { proposal, .. }) = env
        .call(
            &alice.token,
            Request::CreateShareProposal {
                workspace: alice.private.id,
                folder: dir,
                emails: vec![bob.email.clone()],
                encryption: EncryptionMode::Plain,
                read_only: false,
            },
        )
        .await
    else {
        panic!("alice proposes to bob");
    };
    World {
        alice,
        bob,
        mallory,
        doc,
        dir,
        chunk,
        proposal,
    }
}

/// The table: (request sent by mallory, expected error kind, or `None` for
/// requests on the caller's own data, which must answer with only that).
fn table(w: &World) -> Vec<(Request, Option<ErrorKind>)> {
    let ws = w.alice.private.id;
    let forbidden = Some(ErrorKind::Forbidden);
    vec![
        (
            Request::Login {
                email: w.alice.email.clone(),
                password: "wrong".into(),
            },
            Some(ErrorKind::Unauthenticated),
        ),
        (Request::GetAccount, None),
        (Request::GetWorkspaces, None),
        (
            Request::GetChanges {
                workspace: ws,
                since: 0,
                limit: 10,
            },
            forbidden,
        ),
        (
            Request::Commit(CommitRequest {
                workspace: ws,
                device: w.mallory.device,
                items: vec![file(ItemId::new(), None, "evil", 1, "e")],
            }),
            forbidden,
        ),
        // Mallory's own workspace, but alice's device.
        (
            Request::Commit(CommitRequest {
                workspace: w.mallory.private.id,
                device: w.alice.device,
                items: vec![file(ItemId::new(), None, "spoof", 1, "s")],
            }),
            forbidden,
        ),
        (
            Request::UpdateDevice {
                id: Some(w.alice.device),
                name: "pwned".into(),
                os: String::new(),
                app_version: String::new(),
            },
            forbidden,
        ),
        (
            Request::UpdateWorkspace {
                workspace: ws,
                name: "mine".into(),
                mount_parent: None,
            },
            forbidden,
        ),
        (
            Request::CreateShareProposal {
                workspace: ws,
                folder: w.dir,
                emails: vec![w.mallory.email.clone()],
                encryption: EncryptionMode::Plain,
                read_only: false,
            },
            forbidden,
        ),
        (
            Request::AnswerShareProposal {
                proposal: w.proposal,
                accept: true,
            },
            forbidden,
        ),
        (
            Request::AnswerShareProposal {
                proposal: Uuid::new_v4(),
                accept: true,
            },
            forbidden,
        ),
        (
            Request::Unshare {
                workspace: ws,
                emails: vec![w.bob.email.clone()],
            },
            forbidden,
        ),
        (Request::GetMembers { workspace: ws }, forbidden),
        // Her own invitations: none, and never bob's.
        (Request::GetInvitations, None),
        (Request::LeaveWorkspace { workspace: ws }, forbidden),
        (
            Request::GetVersions {
                workspace: ws,
                item: w.doc,
            },
            forbidden,
        ),
        (
            Request::Restore {
                workspace: ws,
                item: w.doc,
                version: 1,
                device: w.mallory.device,
            },
            forbidden,
        ),
        // Her own workspace, alice's device.
        (
            Request::Restore {
                workspace: w.mallory.private.id,
                item: w.doc,
                version: 1,
                device: w.alice.device,
            },
            forbidden,
        ),
        (
            Request::LocateChunks {
                workspace: ws,
                ids: vec![w.chunk],
                bases: false,
            },
            forbidden,
        ),
        // Her own workspace: alice's chunks are not found there.
        (
            Request::LocateChunks {
                workspace: w.mallory.private.id,
                ids: vec![w.chunk],
                bases: false,
            },
            None,
        ),
        // Only her own identity; alice's and bob's are not hers to see.
        (
            Request::PublishIdentity {
                identity: vec![0x66; 80],
                sealed: None,
            },
            None,
        ),
        // Her own, never alice's sealed one.
        (Request::GetOwnIdentity, None),
        (Request::EncryptWorkspace { workspace: ws }, forbidden),
        (
            Request::GetIdentities {
                users: vec![w.alice.id, w.bob.id],
            },
            None,
        ),
        (
            Request::GetKeyStatements {
                workspace: ws,
                after_epoch: 0,
                limit: 10,
            },
            forbidden,
        ),
        (
            Request::PutKeyStatement {
                workspace: ws,
                epoch: 1,
                statement: vec![1; 100],
            },
            forbidden,
        ),
        // Only her own password, which she must know.
        (
            Request::ChangePassword {
                current_password: "guess".into(),
                new_password: "mine now".into(),
            },
            forbidden,
        ),
        // Only her own session's broker user and queue; this server issues
        // none (no [bus.admin]), and the bus refuses the first outright.
        (Request::IssueBrokerCredentials, Some(ErrorKind::BadRequest)),
        (Request::BindNotifications, Some(ErrorKind::BadRequest)),
        // Only her own session; last, since it ends it.
        (Request::Logout { everywhere: false }, None),
    ]
}

async fn non_members_are_refused_and_nothing_changes(env: &Env) {
    let w = world(env).await;
    let rows = table(&w);
    let covered: std::collections::BTreeSet<_> = rows.iter().map(|(r, _)| variant(r)).collect();
    assert_eq!(
        covered,
        ALL.iter().copied().collect(),
        "the table covers every request variant"
    );
    let before = snapshot(env, &w).await;
    for (request, expected) in rows {
        let name = variant(&request);
        let result = env.call(&w.mallory.token, request).await;
        match (expected, result) {
            (Some(kind), Err(e)) => assert_eq!(e.kind, kind, "{name}: {e}"),
            (Some(kind), Ok(reply)) => panic!("{name}: expected {kind:?}, got {reply:?}"),
            (None, Ok(Reply::Account(a))) => assert_eq!(a.id, w.mallory.id, "{name}"),
            (None, Ok(Reply::Workspaces { workspaces })) => {
                assert!(
                    workspaces.iter().all(|ws| ws.owner == w.mallory.id),
                    "{name}: {workspaces:?}"
                );
            }
            (None, Ok(Reply::ChunkLocations { chunks })) => {
                assert_eq!(chunks, vec![None], "{name}");
            }
            (None, Ok(Reply::LoggedOut { sessions })) => assert_eq!(sessions, 1, "{name}"),
            (None, Ok(Reply::Invitations { invitations })) => {
                assert_eq!(invitations, vec![], "{name}");
            }
            (None, Ok(Reply::IdentityPublished { .. })) => {}
            (None, Ok(Reply::OwnIdentity { identity, sealed })) => {
                assert_eq!((identity, sealed), (Some(vec![0x66; 80]), None), "{name}");
            }
            (None, Ok(Reply::Identities { identities })) => {
                assert_eq!(identities, vec![None, None], "{name}");
            }
            (None, other) => panic!("{name}: unexpected {other:?}"),
        }
        assert_eq!(snapshot(env, &w).await, before, "{name} changed something");
    }
}
both_combos!(non_members_are_refused_and_nothing_changes);

async fn bad_tokens_are_unauthenticated(env: &Env) {
    let w = world(env).await;
    let expired = "ab".repeat(32);
    env.service
        .store()
        .create_session(w.alice.id, &stacksync_service::token_hash(&expired), 1)
        .await
        .unwrap();
    let unknown = "cd".repeat(32);
    let before = snapshot(env, &w).await;
    for (request, _) in table(&w) {
        if matches!(request, Request::Login { .. }) {
            continue;
        }
        let name = variant(&request);
        for token in ["", "not-a-token", unknown.as_str(), expired.as_str()] {
            let e = env.call(token, request.clone()).await.unwrap_err();
            assert_eq!(
                e.kind,
                ErrorKind::Unauthenticated,
                "{name} with token {token:?}"
            );
        }
    }
    assert_eq!(snapshot(env, &w).await, before);
}
both_combos!(bad_tokens_are_unauthenticated);

/// What every write by a read-only member is refused with.
const READ_ONLY: &str = "you are a read-only member of the shared folder";

/// What a read-only member's request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Answered (a read, or a change to the member's own view).
    Answered,
    /// Refused as a write by a read-only member.
    ReadOnly,
    /// Refused for another reason (only the owner may do it).
    Forbidden,
}

/// The shared workspace alice made of `Team` (with `notes.txt` at version
/// 2 and one stored object), whose read-only member is mallory.
struct ReadOnlyWorld {
    /// The non-members' world it was made in.
    base: World,
    alice: User,
    mallory: User,
    team: Workspace,
    sub: ItemId,
    notes: ItemId,
    object: ChunkId,
}

async fn read_only_world(env: &Env) -> ReadOnlyWorld {
    let base = world(env).await;
    let (alice, mallory) = (base.alice.clone(), base.mallory.clone());
    let (dir, sub, notes) = (ItemId::new(), ItemId::new(), ItemId::new());
    let c = CommitRequest {
        workspace: alice.private.id,
        device: alice.device,
        items: vec![
            folder(dir, None, "Team"),
            folder(sub, Some(dir), "Sub"),
            file(notes, Some(dir), "notes.txt", 1, "n1"),
        ],
    };
    env.call(&alice.token, Request::Commit(c)).await.unwrap();
    // Bob is in the team too: when mallory leaves (the table's last row),
    // the folder stays shared (a shared folder whose last member leaves
    // goes back to its owner).
    let Ok(Reply::ShareProposal { proposal, .. }) = env
        .call(
            &alice.token,
            Request::CreateShareProposal {
                workspace: alice.private.id,
                folder: dir,
                emails: vec![mallory.email.clone(), base.bob.email.clone()],
                encryption: EncryptionMode::Plain,
                read_only: true,
            },
        )
        .await
    else {
        panic!("the proposal is made");
    };
    let mut joined = Vec::new();
    for member in [&mallory, &base.bob] {
        let Ok(Reply::ShareAnswered {
            workspace: Some(shared),
        }) = env
            .call(
                &member.token,
                Request::AnswerShareProposal {
                    proposal,
                    accept: true,
                },
            )
            .await
        else {
            panic!("{} accepts", member.email);
        };
        joined.push(shared);
    }
    let team = joined.remove(0);
    assert!(team.read_only);
    let c = CommitRequest {
        workspace: team.id,
        device: alice.device,
        // The folder's children are the shared workspace's top level.
        items: vec![file(notes, None, "notes.txt", 2, "n2")],
    };
    env.call(&alice.token, Request::Commit(c)).await.unwrap();
    let object = ChunkId([0x0b; 32]);
    env.service
        .put_chunk(alice.id, team.id, &object, Bytes::from(vec![0x0b; 1000]))
        .await
        .unwrap();
    ReadOnlyWorld {
        base,
        alice,
        mallory,
        team,
        sub,
        notes,
        object,
    }
}

/// The table: (request sent by mallory, a read-only member of `team`,
/// what it must get). Leaving comes last, since it ends the membership.
fn read_only_table(w: &ReadOnlyWorld) -> Vec<(Request, Expect)> {
    use Expect::*;
    let ws = w.team.id;
    let commit = |items| {
        Request::Commit(CommitRequest {
            workspace: ws,
            device: w.mallory.device,
            items,
        })
    };
    let mut gone = file(w.notes, None, "notes.txt", 3, "gone");
    gone.status = stacksync_proto::ItemStatus::Deleted;
    gone.content_hash = None;
    vec![
        (
            Request::GetChanges {
                workspace: ws,
                since: 0,
                limit: 10,
            },
            Answered,
        ),
        (
            commit(vec![file(ItemId::new(), None, "new", 1, "x")]),
            ReadOnly,
        ),
        (
            commit(vec![file(w.notes, None, "notes.txt", 3, "n3")]),
            ReadOnly,
        ),
        (commit(vec![gone]), ReadOnly),
        (
            commit(vec![folder(ItemId::new(), Some(w.sub), "Mine")]),
            ReadOnly,
        ),
        // Their own name and mount point for it.
        (
            Request::UpdateWorkspace {
                workspace: ws,
                name: "Alice's team".into(),
                mount_parent: None,
            },
            Answered,
        ),
        (
            Request::CreateShareProposal {
                workspace: ws,
                folder: w.sub,
                emails: vec![w.alice.email.clone()],
                encryption: EncryptionMode::Plain,
                read_only: false,
            },
            Forbidden,
        ),
        (
            Request::Unshare {
                workspace: ws,
                emails: vec![w.alice.email.clone()],
            },
            Forbidden,
        ),
        (Request::GetMembers { workspace: ws }, Answered),
        (
            Request::GetVersions {
                workspace: ws,
                item: w.notes,
            },
            Answered,
        ),
        (
            Request::Restore {
                workspace: ws,
                item: w.notes,
                version: 1,
                device: w.mallory.device,
            },
            ReadOnly,
        ),
        (
            Request::LocateChunks {
                workspace: ws,
                ids: vec![w.object],
                bases: true,
            },
            Answered,
        ),
        (
            Request::GetKeyStatements {
                workspace: ws,
                after_epoch: 0,
                limit: 10,
            },
            Answered,
        ),
        (
            Request::PutKeyStatement {
                workspace: ws,
                epoch: 1,
                statement: vec![1; 100],
            },
            ReadOnly,
        ),
        // Only the owner's private workspace, and this is neither.
        (Request::EncryptWorkspace { workspace: ws }, Forbidden),
        (Request::LeaveWorkspace { workspace: ws }, Answered),
    ]
}

/// Everything of `team` a read-only member's request must leave as it
/// was (as its owner sees it): revision and setting, items, ledger,
/// stored objects.
async fn team_snapshot(
    env: &Env,
    w: &ReadOnlyWorld,
) -> (
    (u64, EncryptionMode),
    Vec<ItemMeta>,
    Vec<String>,
    Vec<ChunkId>,
) {
    let store = env.service.store();
    let ws = w.team.id;
    let objects = store
        .objects_of(ws)
        .await
        .unwrap()
        .into_iter()
        .map(|o| format!("{} {}", o.id, o.size))
        .collect();
    let container = ContainerName::new(&w.team.container).unwrap();
    let team = store.workspace_as(w.alice.id, ws).await.unwrap();
    (
        (team.latest_revision, team.encryption),
        store.get_changes(ws, 0, 1000).await.unwrap().items,
        objects,
        env.blobs.list(&container).await.unwrap(),
    )
}

async fn read_only_members_read_and_never_write(env: &Env) {
    let w = read_only_world(env).await;
    let rows = read_only_table(&w);
    let covered: std::collections::BTreeSet<_> = rows.iter().map(|(r, _)| variant(r)).collect();
    let scoped: std::collections::BTreeSet<_> = table(&w.base)
        .iter()
        .filter(|(r, _)| names_a_workspace(r))
        .map(|(r, _)| variant(r))
        .collect();
    assert_eq!(covered, scoped, "the table covers every workspace request");
    let before = team_snapshot(env, &w).await;
    // Uploads, which are not RPCs, are writes too: refused before anything
    // is stored or charged, even the same bytes as a stored object.
    for (id, fill, len) in [(ChunkId([0x0c; 32]), 0x0c, 10), (w.object, 0x0b, 1000)] {
        let data = Bytes::from(vec![fill; len]);
        let e = env
            .service
            .put_chunk(w.mallory.id, w.team.id, &id, data)
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden, "{e}");
        assert!(e.message.contains(READ_ONLY), "{e}");
    }
    assert_eq!(team_snapshot(env, &w).await, before);
    for (request, expected) in rows {
        let name = variant(&request);
        let result = env.call(&w.mallory.token, request).await;
        match (expected, result) {
            (Expect::ReadOnly, Err(e)) => {
                assert_eq!(e.kind, ErrorKind::Forbidden, "{name}: {e}");
                assert!(e.message.contains(READ_ONLY), "{name}: {e}");
            }
            (Expect::Forbidden, Err(e)) => assert_eq!(e.kind, ErrorKind::Forbidden, "{name}: {e}"),
            (Expect::Answered, Ok(Reply::Workspace(ws))) => {
                assert!(ws.read_only, "{name}: {ws:?}");
            }
            (Expect::Answered, Ok(Reply::Members { members })) => {
                let me = members.iter().find(|m| m.user == w.mallory.id).unwrap();
                assert!(me.read_only, "{name}: {members:?}");
            }
            (Expect::Answered, Ok(Reply::Changes(page))) => {
                assert!(!page.items.is_empty(), "{name}: {page:?}");
            }
            (Expect::Answered, Ok(Reply::Versions { versions })) => {
                assert_eq!(versions.len(), 2, "{name}");
            }
            (Expect::Answered, Ok(Reply::KeyStatements { statements, .. })) => {
                assert_eq!(statements, vec![], "{name}");
            }
            (Expect::Answered, Ok(Reply::ChunkLocations { .. } | Reply::Left { .. })) => {}
            (expected, other) => panic!("{name}: expected {expected:?}, got {other:?}"),
        }
        assert_eq!(
            team_snapshot(env, &w).await,
            before,
            "{name} changed something"
        );
    }
}
both_combos!(read_only_members_read_and_never_write);
