//! The website's own operations on the service, on SQLite and on
//! PostgreSQL with RabbitMQ: browser sessions and the devices page (a
//! desktop session is named by the device it registered, and signing it
//! out ends every session of that device and nothing else), the trash
//! (what shows, and restoring a folder with what was deleted with it but
//! not what was deleted before), and invitations answered from the web.

#[macro_use]
mod common;

use bytes::Bytes;
use common::{Env, User};
use stacksync_proto::ErrorKind;
use stacksync_proto::rpc::Request;
use stacksync_service::{ApiCaller, ApiNode, NewContent, UploadTo, token_hash};

fn caller(user: &User) -> ApiCaller {
    ApiCaller {
        user: user.id,
        consumer_key: "Website".to_owned(),
    }
}

fn content(data: &[u8]) -> NewContent {
    let piece: Result<Bytes, std::io::Error> = Ok(Bytes::copy_from_slice(data));
    NewContent::from_stream(futures::stream::iter([piece]), None)
}

async fn upload(env: &Env, user: &User, parent: Option<uuid::Uuid>, name: &str) -> uuid::Uuid {
    let to = UploadTo::New {
        parent,
        name: name.into(),
    };
    env.service
        .api_upload(&caller(user), to, content(name.as_bytes()))
        .await
        .unwrap()
        .id()
        .unwrap()
}

fn names(nodes: &[ApiNode]) -> Vec<String> {
    nodes
        .iter()
        .map(|n| match n {
            ApiNode::Item { meta, .. } => meta.name.as_str().to_owned(),
            ApiNode::SharedRoot { workspace } => workspace.name.clone(),
            ApiNode::Root { .. } => "/".to_owned(),
        })
        .collect()
}

async fn devices_are_signed_out_by_their_sessions(env: &Env) {
    // Two logins of one desktop device (each registers the same device
    // again), one browser, and another user's session.
    let ana = env.user("ana@example.com").await;
    let again = env.login("ana@example.com").await;
    // The second login is the same laptop: it registers under its id.
    env.call(
        &again.token,
        Request::UpdateDevice {
            id: Some(ana.device),
            name: "ana's laptop".into(),
            os: "linux".into(),
            app_version: "test".into(),
        },
    )
    .await
    .unwrap();
    let bo = env.user("bo@example.com").await;
    let browser = env
        .service
        .web_sign_in("ana@example.com", "pw-123456", None, "Firefox on Linux")
        .await
        .unwrap();
    let wrong = env
        .service
        .web_sign_in("ana@example.com", "nope-nope", None, "x")
        .await
        .unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Unauthenticated);

    let sessions = env
        .service
        .web_sessions(ana.id, &token_hash(&browser.token))
        .await
        .unwrap();
    assert_eq!(sessions.len(), 3, "{sessions:?}");
    let web: Vec<_> = sessions.iter().filter(|s| s.web).collect();
    assert_eq!(web.len(), 1);
    assert!(web[0].current);
    assert_eq!(web[0].label, "Firefox on Linux");
    let desktop: Vec<_> = sessions.iter().filter(|s| !s.web).collect();
    assert_eq!(desktop.len(), 2);
    for s in &desktop {
        let device = s
            .device
            .as_ref()
            .expect("the session registered its device");
        assert_eq!(device.id, ana.device);
        assert_eq!(device.name, "ana's laptop");
        assert!(!s.current);
    }

    // Another user cannot sign ana's device out, even knowing its id.
    let refused = env
        .service
        .web_sign_out_session(bo.id, &desktop[0].id)
        .await
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::NotFound);
    assert!(env.service.authenticate(&ana.token).await.is_ok());

    // Signing the device out ends both of its sessions, not the browser's.
    let ended = env
        .service
        .web_sign_out_session(ana.id, &desktop[0].id)
        .await
        .unwrap();
    assert_eq!(ended, 2);
    for token in [&ana.token, &again.token] {
        let e = env.service.authenticate(token).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthenticated);
    }
    assert!(env.service.authenticate(&browser.token).await.is_ok());
    assert!(env.service.authenticate(&bo.token).await.is_ok());
    let bad = env
        .service
        .web_sign_out_session(ana.id, "not-an-id")
        .await
        .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::NotFound);
}
both_combos!(devices_are_signed_out_by_their_sessions);

async fn the_trash_restores_what_was_deleted_together(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let c = caller(&ana);
    let folder = env
        .service
        .api_create_folder(&c, None, "Trip")
        .await
        .unwrap()
        .id()
        .unwrap();
    let sub = env
        .service
        .api_create_folder(&c, Some(folder), "Day 1")
        .await
        .unwrap()
        .id()
        .unwrap();
    let kept = upload(env, &ana, Some(sub), "beach.jpg").await;
    let early = upload(env, &ana, Some(folder), "blurry.jpg").await;
    let loose = upload(env, &ana, None, "notes.txt").await;

    // Deleted by another device, well before the folder: stays deleted.
    let other_device = ApiCaller {
        user: ana.id,
        consumer_key: "another-app".to_owned(),
    };
    env.service
        .api_delete(&other_device, early, false, None)
        .await
        .unwrap();
    env.service
        .api_delete(&c, folder, true, None)
        .await
        .unwrap();
    env.service
        .api_delete(&c, loose, false, None)
        .await
        .unwrap();

    // The trash shows the folder and the loose file, not what was in the
    // folder (it stands for them), newest first.
    let trash = env.service.api_trash(ana.id).await.unwrap();
    assert_eq!(names(&trash), ["notes.txt", "Trip"]);

    // A file inside a deleted folder cannot come back alone.
    let e = env.service.api_untrash(&c, kept).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict, "{e:?}");
    // Another user cannot restore it.
    let bo = env.user("bo@example.com").await;
    let e = env
        .service
        .api_untrash(&caller(&bo), folder)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");

    let back = env.service.api_untrash(&c, folder).await.unwrap();
    assert!(matches!(&back, ApiNode::Item { meta, .. } if meta.status.is_live()));
    let trip = env.service.api_node(ana.id, Some(folder)).await.unwrap();
    let children = env
        .service
        .api_children(ana.id, &trip, false, 100, None)
        .await
        .unwrap();
    assert_eq!(
        names(&children.children),
        ["Day 1"],
        "blurry.jpg stays deleted"
    );
    let day = env.service.api_node(ana.id, Some(sub)).await.unwrap();
    let inside = env
        .service
        .api_children(ana.id, &day, false, 100, None)
        .await
        .unwrap();
    assert_eq!(names(&inside.children), ["beach.jpg"]);
    // Its bytes are back too.
    let beach = env.service.api_node(ana.id, Some(kept)).await.unwrap();
    let got = env.service.api_content(&beach, None).await.unwrap();
    assert_eq!(got.size, "beach.jpg".len() as u64);

    // Restoring twice is refused; the trash now holds the loose file and
    // the file deleted earlier (its folder stands again).
    let e = env.service.api_untrash(&c, folder).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    let trash = env.service.api_trash(ana.id).await.unwrap();
    assert_eq!(names(&trash), ["notes.txt", "blurry.jpg"]);
}
both_combos!(the_trash_restores_what_was_deleted_together);

async fn invitations_are_answered_from_the_web(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let bo = env.user("bo@example.com").await;
    let c = caller(&ana);
    let folder = env
        .service
        .api_create_folder(&c, None, "Band")
        .await
        .unwrap()
        .id()
        .unwrap();
    env.service
        .api_share(&c, folder, &["bo@example.com".to_owned()], false)
        .await
        .unwrap();
    let pending = env.service.api_invitations(bo.id).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].folder_name, "Band");
    // Only the invitee answers it.
    let e = env
        .service
        .api_answer_invitation(ana.id, pending[0].proposal, true)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    let e = env
        .service
        .api_answer_invitation(ana.id, pending[0].proposal, false)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e:?}");
    env.service
        .api_answer_invitation(bo.id, pending[0].proposal, true)
        .await
        .unwrap();
    assert!(env.service.api_invitations(bo.id).await.unwrap().is_empty());
    let shared = env.service.api_shared_folders(bo.id).await.unwrap();
    assert_eq!(shared.len(), 1);
    let emails: Vec<&str> = shared[0].1.iter().map(|m| m.email.as_str()).collect();
    assert!(emails.contains(&"ana@example.com") && emails.contains(&"bo@example.com"));
    assert!(env.service.api_shared_folders(ana.id).await.unwrap().len() == 1);
}
both_combos!(invitations_are_answered_from_the_web);

async fn an_unshared_folder_comes_back_under_a_free_name(env: &Env) {
    let ana = env.user("ana@example.com").await;
    let bo = env.user("bo@example.com").await;
    let c = caller(&ana);
    let folder = env
        .service
        .api_create_folder(&c, None, "Band")
        .await
        .unwrap()
        .id()
        .unwrap();
    env.service
        .api_share(&c, folder, &["bo@example.com".to_owned()], false)
        .await
        .unwrap();
    let invitation = env.service.api_invitations(bo.id).await.unwrap()[0].proposal;
    env.service
        .api_answer_invitation(bo.id, invitation, true)
        .await
        .unwrap();
    // While it is shared, ana makes another folder of that name where it
    // was shared from.
    let shared = env.service.api_shared_folders(ana.id).await.unwrap()[0]
        .0
        .id;
    env.service
        .api_create_folder(&c, None, "band")
        .await
        .unwrap();
    // Unsharing brings it back beside the new one, not over it.
    env.service
        .api_unshare(&c, shared.0, &["bo@example.com".to_owned()])
        .await
        .unwrap();
    let root = env.service.api_node(ana.id, None).await.unwrap();
    let mut listed = names(
        &env.service
            .api_children(ana.id, &root, false, 100, None)
            .await
            .unwrap()
            .children,
    );
    listed.sort();
    assert_eq!(listed, ["Band (2)", "band"]);
}
both_combos!(an_unshared_folder_comes_back_under_a_free_name);
