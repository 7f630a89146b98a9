//! Push notifications over the gateway's WebSocket: a commit by one device
//! reaches another, the stream follows the user into shared workspaces,
//! credentials are required, and the client reconnects after a cut.

mod common;

use common::{Gateway, Proxy, new_folder, next, wait_for};
use reqwest::StatusCode;
use stacksync_proto::rpc::{Reply, Request};
use stacksync_proto::{EncryptionMode, ErrorKind, ItemId, Notification};

#[tokio::test]
async fn a_commit_by_one_device_reaches_another() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let laptop = gw.user_via_existing(&alice).await;
    let mut stream = laptop.notifications().unwrap();
    // The first message says the subscription is live.
    assert_eq!(next(&mut stream).await, Notification::Resync);

    alice
        .client
        .rpc(new_folder(&alice.private, alice.device, "docs"))
        .await
        .unwrap();
    let Notification::Commit {
        workspace,
        device,
        items,
        ..
    } = next(&mut stream).await
    else {
        panic!("the commit is announced");
    };
    assert_eq!((workspace, device), (alice.private.id, alice.device));
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].name.as_str(), "docs");
}

#[tokio::test]
async fn the_stream_follows_the_user_into_a_shared_workspace() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let bob = gw.user("bob@example.org").await;
    let mut bobs = bob.client.notifications().unwrap();
    assert_eq!(next(&mut bobs).await, Notification::Resync);

    let folder = ItemId::new();
    let mut request = new_folder(&alice.private, alice.device, "shared");
    if let Request::Commit(commit) = &mut request {
        commit.items[0].id = folder;
    }
    alice.client.rpc(request).await.unwrap();
    let Reply::ShareProposal { proposal, .. } = alice
        .client
        .rpc(Request::CreateShareProposal {
            workspace: alice.private.id,
            folder,
            emails: vec![bob.email.clone()],
            encryption: EncryptionMode::Plain,
            read_only: false,
        })
        .await
        .unwrap()
    else {
        panic!("the proposal is created");
    };
    wait_for(&mut bobs, |n| {
        matches!(n, Notification::ShareProposal { .. })
    })
    .await;
    let Reply::ShareAnswered {
        workspace: Some(shared),
    } = bob
        .client
        .rpc(Request::AnswerShareProposal {
            proposal,
            accept: true,
        })
        .await
        .unwrap()
    else {
        panic!("bob joins the shared workspace");
    };
    wait_for(&mut bobs, |n| {
        matches!(n, Notification::WorkspaceJoined { .. })
    })
    .await;

    // Alice commits into the shared workspace: Bob's existing socket hears it.
    alice
        .client
        .rpc(new_folder(&shared, alice.device, "inside"))
        .await
        .unwrap();
    wait_for(&mut bobs, |n| {
        matches!(n, Notification::Commit { workspace, items, .. }
            if *workspace == shared.id && items.iter().any(|i| i.name.as_str() == "inside"))
    })
    .await;
}

#[tokio::test]
async fn notifications_need_credentials() {
    let gw = Gateway::start().await;
    let url = format!("{}/api/v1/notifications", gw.url);
    let anonymous = common::http().get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let bad = common::http()
        .get(format!("{url}?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    // The client gives up (with the reason) instead of retrying forever.
    let alice = gw.user("alice@example.org").await;
    let bogus = stacksync_gateway_client::GatewayClient::with_session(
        &gw.url,
        stacksync_gateway_client::Session {
            token: "nope".into(),
            ..alice.client.session().clone()
        },
    )
    .unwrap();
    let mut stream = bogus.notifications().unwrap();
    let err = tokio::time::timeout(common::DEADLINE, stream.next())
        .await
        .expect("the refusal arrives before the deadline")
        .expect("the refusal is reported")
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unauthenticated);
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn query_token_works_for_clients_without_headers() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let url = format!(
        "ws://{}/api/v1/notifications?token={}",
        gw.addr,
        alice.client.session().token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures::StreamExt;
    let first = tokio::time::timeout(common::DEADLINE, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.into_text().unwrap().as_str(),
        r#"{"v":1,"body":{"type":"resync"}}"#
    );
}

#[tokio::test]
async fn the_client_reconnects_after_a_cut_and_asks_for_a_resync() {
    let gw = Gateway::start().await;
    let proxy = Proxy::to(gw.addr).await;
    let alice = gw.user("alice@example.org").await;
    let laptop = gw.user_via_existing_at(&alice, &proxy.url).await;
    let mut stream = laptop.notifications().unwrap();
    assert_eq!(next(&mut stream).await, Notification::Resync);

    proxy.cut();
    // The new connection announces itself with a resync: whatever was
    // published while the device was away must be read from the feed.
    assert_eq!(next(&mut stream).await, Notification::Resync);
    alice
        .client
        .rpc(new_folder(&alice.private, alice.device, "after the cut"))
        .await
        .unwrap();
    let Notification::Commit { items, .. } = next(&mut stream).await else {
        panic!("the commit after the reconnection is announced");
    };
    assert_eq!(items[0].name.as_str(), "after the cut");
}

#[tokio::test]
async fn the_socket_of_an_ended_session_is_closed() {
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let url = format!(
        "ws://{}/api/v1/notifications?token={}",
        gw.addr,
        alice.client.session().token
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    use futures::StreamExt;
    let first = tokio::time::timeout(common::DEADLINE, socket.next()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "the resync arrives");

    // A revoked device must stop hearing about the account's files.
    alice
        .client
        .rpc(Request::Logout { everywhere: false })
        .await
        .unwrap();
    // The session is checked at every ping; reading answers the pings.
    let closed = async {
        while let Some(Ok(message)) = socket.next().await {
            assert!(
                !message.is_text(),
                "no notification reaches an ended session: {message:?}"
            );
        }
    };
    tokio::time::timeout(stacksync_gateway::PING_INTERVAL * 3, closed)
        .await
        .expect("the socket of the ended session is closed within a ping interval or two");
}

#[tokio::test]
async fn a_browser_cookie_opens_a_socket_only_from_this_site() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let gw = Gateway::start().await;
    let alice = gw.user("alice@example.org").await;
    let cookie = format!("stacksync_session={}", alice.client.session().token);
    let url = format!("ws://{}/api/v1/notifications?hints=1", gw.addr);
    let open = |origin: &str| {
        let mut request = url.as_str().into_client_request().unwrap();
        let h = request.headers_mut();
        h.insert("cookie", cookie.parse().unwrap());
        h.insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    // A page of another site would carry the cookie too: refused.
    let foreign = open("http://evil.example").await;
    assert!(foreign.is_err(), "a foreign page's socket is refused");
    // The site's own page: the socket opens and the stream is live.
    let (mut socket, _) = open(&format!("http://{}", gw.addr)).await.unwrap();
    let first = tokio::time::timeout(common::DEADLINE, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        first.into_text().unwrap().as_str(),
        r#"{"v":1,"body":{"type":"resync"}}"#
    );
}
