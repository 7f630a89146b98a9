//! Session revocation and account control through the service, over the
//! bus on both backend combos (finding 12): logout, logout everywhere,
//! password change, disable / enable, reset, and removal of a user (with
//! the folders they shared, when asked to).

mod common;

use bytes::Bytes;
use common::{Env, User, file, folder, next_notification, share_folder};
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{ChunkId, CommitRequest, Error, ErrorKind, ItemId, Notification};
use stacksync_service::SharedWorkspaces;

async fn login(env: &Env, email: &str, password: &str) -> Result<String, Error> {
    match env
        .call(
            "",
            Request::Login {
                email: email.into(),
                password: password.into(),
            },
        )
        .await?
    {
        Reply::Session { token, .. } => Ok(token),
        other => panic!("login answered {other:?}"),
    }
}

async fn works(env: &Env, token: &str) -> bool {
    match env.call(token, Request::GetAccount).await {
        Ok(_) => true,
        Err(e) if e.kind == ErrorKind::Unauthenticated => {
            assert!(e.message.contains("log in again"), "{e}");
            false
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

async fn logout_ends_one_session_and_everywhere_ends_all(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let bo = env.user("bo@example.com").await;
    let second = login(env, &ana.email, "pw-123456").await.unwrap();
    let third = login(env, &ana.email, "pw-123456").await.unwrap();
    assert_eq!(
        env.call(&second, Request::Logout { everywhere: false })
            .await,
        Ok(Reply::LoggedOut { sessions: 1 })
    );
    assert!(
        !works(env, &second).await,
        "a logged-out token is refused at once"
    );
    assert!(works(env, &ana.token).await && works(env, &third).await);
    assert_eq!(
        env.call(&third, Request::Logout { everywhere: true }).await,
        Ok(Reply::LoggedOut { sessions: 2 })
    );
    assert!(!works(env, &ana.token).await && !works(env, &third).await);
    assert!(
        works(env, &bo.token).await,
        "other users keep their sessions"
    );
    // The Service API (used by the gateway) agrees and ignores ended tokens.
    env.service.logout(&bo.token).await.unwrap();
    env.service.logout(&bo.token).await.unwrap();
    assert!(!works(env, &bo.token).await);
}
both_combos!(logout_ends_one_session_and_everywhere_ends_all);

async fn password_change_keeps_this_session_and_ends_the_others(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let other = login(env, &ana.email, "pw-123456").await.unwrap();
    let change = |current: &str, new: &str| Request::ChangePassword {
        current_password: current.into(),
        new_password: new.into(),
    };
    let wrong = env
        .call(&ana.token, change("nope", "new-pw"))
        .await
        .unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Forbidden, "{wrong}");
    let empty = env
        .call(&ana.token, change("pw-123456", ""))
        .await
        .unwrap_err();
    assert_eq!(empty.kind, ErrorKind::BadRequest, "{empty}");
    assert!(works(env, &other).await, "refused changes end nothing");
    assert_eq!(
        env.call(&ana.token, change("pw-123456", "new-pw")).await,
        Ok(Reply::PasswordChanged { other_sessions: 1 })
    );
    assert!(works(env, &ana.token).await);
    assert!(!works(env, &other).await);
    let old = login(env, &ana.email, "pw-123456").await.unwrap_err();
    assert_eq!(old.kind, ErrorKind::Unauthenticated);
    let fresh = login(env, &ana.email, "new-pw").await.unwrap();
    // An administrator's reset ends every session.
    assert_eq!(env.service.reset_password(ana.id, "reset-pw").await, Ok(2));
    assert!(!works(env, &ana.token).await && !works(env, &fresh).await);
    login(env, &ana.email, "reset-pw").await.unwrap();
}
both_combos!(password_change_keeps_this_session_and_ends_the_others);

async fn disable_refuses_login_and_ends_sessions_at_once(env: &Env) {
    let ana = env.user("ana@example.com").await;
    assert_eq!(env.service.set_user_disabled(ana.id, true).await, Ok(1));
    assert!(!works(env, &ana.token).await);
    let refused = login(env, &ana.email, "pw-123456").await.unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Unauthenticated);
    assert!(refused.message.contains("disabled"), "{refused}");
    // A wrong password does not learn that the account is disabled.
    let probe = login(env, &ana.email, "wrong").await.unwrap_err();
    assert!(!probe.message.contains("disabled"), "{probe}");
    assert_eq!(env.service.set_user_disabled(ana.id, false).await, Ok(0));
    let token = login(env, &ana.email, "pw-123456").await.unwrap();
    assert!(works(env, &token).await);
    assert!(!works(env, &ana.token).await, "ended sessions stay ended");
}
both_combos!(disable_refuses_login_and_ends_sessions_at_once);

/// `owner` shares a new folder with `member`, who accepts; returns the
/// shared workspace's id.
async fn share(env: &Env, owner: &User, member: &User, name: &str) -> stacksync_proto::WorkspaceId {
    let (dir, doc) = (ItemId::new(), ItemId::new());
    let c = CommitRequest {
        workspace: owner.private.id,
        device: owner.device,
        items: vec![
            folder(dir, None, name),
            file(doc, Some(dir), "f.txt", 1, name),
        ],
    };
    env.call(&owner.token, Request::Commit(c)).await.unwrap();
    let ws = share_folder(env, owner, member, dir).await;
    ws.id
}

async fn removal_deletes_the_user_and_storage_and_keeps_others_shared_folders(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let bo = env.user("bo@example.com").await;
    let team = share(env, &bo, &ana, "Team").await;
    let hers = share(env, &ana, &bo, "Hers").await;
    env.service
        .put_chunk(
            ana.id,
            ana.private.id,
            &ChunkId([9; 32]),
            Bytes::from_static(b"ana's bytes"),
        )
        .await
        .unwrap();

    let refused = env
        .service
        .remove_user(ana.id, SharedWorkspaces::Refuse)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict, "{refused}");
    assert!(
        works(env, &ana.token).await,
        "a refused removal changes nothing"
    );
    let Ok(Reply::Unshared { .. }) = env
        .call(
            &ana.token,
            Request::Unshare {
                workspace: hers,
                emails: vec![bo.email.clone()],
            },
        )
        .await
    else {
        panic!("ana unshares her folder");
    };

    let done = env
        .service
        .remove_user(ana.id, SharedWorkspaces::Refuse)
        .await
        .unwrap();
    assert!(done.storage_errors.is_empty(), "{:?}", done.storage_errors);
    assert_eq!(done.removed.deleted_containers.len(), 2);
    assert_eq!(done.removed.left_workspaces.len(), 1);
    assert!(!works(env, &ana.token).await);
    assert!(login(env, &ana.email, "pw-123456").await.is_err());
    for container in &done.removed.deleted_containers {
        let name = stacksync_blobstore::ContainerName::new(container).unwrap();
        let gone = env.blobs.list(&name).await.unwrap_err();
        assert_eq!(
            gone.kind,
            stacksync_blobstore::BlobErrorKind::NotFound,
            "{container}"
        );
    }
    // Bo's shared folder survives without ana, files and all.
    let Ok(Reply::Members { members }) = env
        .call(&bo.token, Request::GetMembers { workspace: team })
        .await
    else {
        panic!("bo lists the members");
    };
    assert_eq!(
        members.iter().map(|m| m.user).collect::<Vec<_>>(),
        vec![bo.id]
    );
    let Ok(Reply::Changes(page)) = env
        .call(
            &bo.token,
            Request::GetChanges {
                workspace: team,
                since: 0,
                limit: 10,
            },
        )
        .await
    else {
        panic!("bo reads his shared folder");
    };
    assert!(!page.items.is_empty(), "the shared files are still there");
    let unknown = env
        .service
        .remove_user(ana.id, SharedWorkspaces::Refuse)
        .await
        .unwrap_err();
    assert_eq!(unknown.kind, ErrorKind::NotFound);
}
both_combos!(removal_deletes_the_user_and_storage_and_keeps_others_shared_folders);

async fn removal_deletes_their_shared_folders_when_asked_and_tells_the_members(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let bo = env.user("bo@example.com").await;
    let carol = env.user("carol@example.com").await;
    let hers = share(env, &ana, &bo, "Hers").await;
    let bos = share(env, &bo, &carol, "Bo's").await;
    let mut bo_hears = env
        .bus
        .subscribe(&env.service.topics_for(bo.id).await.unwrap())
        .await
        .unwrap();

    let refused = env
        .service
        .remove_user(ana.id, SharedWorkspaces::Refuse)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::Conflict, "{refused}");
    assert!(
        refused.message.contains(&hers.to_string()) && refused.message.contains(&bo.email),
        "{refused}"
    );
    assert!(works(env, &ana.token).await, "nothing changed");

    let done = env
        .service
        .remove_user(ana.id, SharedWorkspaces::Delete)
        .await
        .unwrap();
    assert!(done.storage_errors.is_empty(), "{:?}", done.storage_errors);
    assert_eq!(done.removed.deleted_containers.len(), 1, "her private one");
    let [dissolved] = done.removed.dissolved_shared.as_slice() else {
        panic!("one shared folder dissolved: {:?}", done.removed);
    };
    assert_eq!(dissolved.workspace, hers);
    assert_eq!(
        dissolved.members.iter().map(|m| m.user).collect::<Vec<_>>(),
        vec![bo.id]
    );
    // Bo hears it as being unshared from it.
    loop {
        match next_notification(&mut bo_hears).await {
            Notification::Unshared { workspace, user } => {
                assert_eq!((workspace, user), (hers, bo.id));
                break;
            }
            Notification::Commit { .. } => {}
            other => panic!("unexpected notification {other:?}"),
        }
    }
    let name = stacksync_blobstore::ContainerName::new(&dissolved.container).unwrap();
    let gone = env.blobs.list(&name).await.unwrap_err();
    assert_eq!(gone.kind, stacksync_blobstore::BlobErrorKind::NotFound);
    let Ok(Reply::Workspaces { workspaces }) = env.call(&bo.token, Request::GetWorkspaces).await
    else {
        panic!("bo lists his workspaces");
    };
    let mut ids: Vec<_> = workspaces.iter().map(|w| w.id).collect();
    ids.sort();
    let mut want = vec![bo.private.id, bos];
    want.sort();
    assert_eq!(ids, want, "his own and his shared folder, not hers");
    let feed = env
        .call(
            &bo.token,
            Request::GetChanges {
                workspace: hers,
                since: 0,
                limit: 10,
            },
        )
        .await;
    assert!(feed.is_err(), "{feed:?}");
    let Ok(Reply::Members { members }) = env
        .call(&carol.token, Request::GetMembers { workspace: bos })
        .await
    else {
        panic!("carol lists the members of bo's folder");
    };
    assert_eq!(members.len(), 2, "{members:?}");
}
both_combos!(removal_deletes_their_shared_folders_when_asked_and_tells_the_members);
