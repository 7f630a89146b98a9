//! Server-side encryption: an account or shared folder with this setting
//! exists only on storage that encrypts at rest, a folder shared out of
//! such an account keeps it, and a server whose storage stopped encrypting
//! refuses to start while workspaces were promised it.

mod common;

use common::{Combo, Env, folder};
use stacksync_blobstore::AtRestKeys;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{CommitRequest, EncryptionMode, ErrorKind, ItemId};

async fn sealed(combo: Combo) -> Option<Env> {
    Env::new_with(combo, Some(AtRestKeys::from_bytes([7; 32], &[]))).await
}

async fn check_accounts_and_shares(env: &Env, plain: &Env) {
    // On storage without encryption at rest the setting is refused, and
    // nothing is created.
    let e = plain
        .service
        .create_user_with_encryption(
            "ssa@example.com",
            "ssa",
            "pw-123456",
            1 << 30,
            None,
            EncryptionMode::ServerSide,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");
    assert!(e.message.contains("encrypts at rest"), "{e}");
    assert!(plain.service.user_id("ssa@example.com").await.is_err());
    // Client-side is the client's choice, never the administrator's.
    let e = env
        .service
        .create_user_with_encryption(
            "csa@example.com",
            "csa",
            "pw-123456",
            1 << 30,
            None,
            EncryptionMode::ClientSide,
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");

    let (account, private) = env
        .service
        .create_user_with_encryption(
            "ssb@example.com",
            "ssb",
            "pw-123456",
            1 << 30,
            None,
            EncryptionMode::ServerSide,
        )
        .await
        .unwrap();
    assert_eq!(private.encryption, EncryptionMode::ServerSide);
    let owner = env.login(&account.email).await;
    let member = env.user("member@example.com").await;
    assert_eq!(member.private.encryption, EncryptionMode::Plain);

    // A folder shared out of it, even when asked as plain, stays encrypted
    // at rest: for the owner and for the member.
    let docs = ItemId::new();
    let commit = Request::Commit(CommitRequest {
        workspace: owner.private.id,
        device: owner.device,
        items: vec![folder(docs, None, "docs")],
    });
    env.call(&owner.token, commit).await.unwrap();
    let shared = common::share_folder(env, &owner, &member, docs).await;
    assert_eq!(shared.encryption, EncryptionMode::ServerSide);
    match env
        .call(&owner.token, Request::GetWorkspaces)
        .await
        .unwrap()
    {
        Reply::Workspaces { workspaces: list } => {
            let mine = list.iter().find(|w| w.id == shared.id).unwrap();
            assert_eq!(mine.encryption, EncryptionMode::ServerSide);
        }
        other => panic!("workspaces: {other:?}"),
    }
    // Asking for it explicitly on storage that cannot keep it is refused.
    let plain_owner = plain.user("po@example.com").await;
    let plain_member = plain.user("pm@example.com").await;
    let f = ItemId::new();
    let commit = Request::Commit(CommitRequest {
        workspace: plain_owner.private.id,
        device: plain_owner.device,
        items: vec![folder(f, None, "f")],
    });
    plain.call(&plain_owner.token, commit).await.unwrap();
    let ask = Request::CreateShareProposal {
        workspace: plain_owner.private.id,
        folder: f,
        emails: vec![plain_member.email.clone()],
        encryption: EncryptionMode::ServerSide,
        read_only: false,
    };
    let e = plain.call(&plain_owner.token, ask).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadRequest, "{e}");

    // The promise is checked at startup: the sealed server starts, a server
    // on the same database whose storage does not encrypt at rest refuses.
    env.service.check_at_rest_promise().await.unwrap();
    plain.service.check_at_rest_promise().await.unwrap();
    let unsealed = stacksync_service::Service::new(
        env.db.store.clone(),
        plain.blobs.clone(),
        env.bus.clone(),
        stacksync_service::ServiceConfig::default(),
    );
    let e = unsealed.check_at_rest_promise().await.unwrap_err();
    assert!(e.message.contains("2 workspace(s)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_shares_embedded() {
    let env = sealed(Combo::Embedded).await.unwrap();
    let plain = Env::new(Combo::Embedded).await.unwrap();
    check_accounts_and_shares(&env, &plain).await;
    env.shutdown().await;
    plain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_and_shares_rabbitmq_postgres() {
    let Some(env) = sealed(Combo::Real).await else {
        return;
    };
    let plain = Env::new(Combo::Real).await.unwrap();
    check_accounts_and_shares(&env, &plain).await;
    env.shutdown().await;
    plain.shutdown().await;
}
