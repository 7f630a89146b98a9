//! Direct clients share one broker but not each other's traffic (issue 17,
//! finding 3). Two accounts set up direct clients against a real server on
//! PostgreSQL, RabbitMQ (with its management API) and Swift; then, with the
//! second client's broker credentials taken from its state folder, as an
//! attacker would, every way to another client's messages is tried and
//! must be refused by the broker or the service. The first client's login
//! is watched by a spy with the broker admin's rights, which must never see
//! the password. Finally the first session ends on the server, and its
//! broker credentials stop working.
//!
//! Needs `STACKSYNC_TEST_POSTGRES`, `STACKSYNC_TEST_AMQP`,
//! `STACKSYNC_TEST_AMQP_ADMIN` and `STACKSYNC_TEST_SWIFT` (scripts/test sets
//! them); unset, the test panics under `CI=true` and prints `SKIP:`
//! otherwise.

mod common;

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::uri::{AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use stacksync_bus::Topology;
use stacksync_client::Profile;
use stacksync_gateway_client::{GatewayClient, Session};
use stacksync_proto::rpc::{Reply, Request, RpcRequest, RpcResponse};
use stacksync_proto::{ErrorKind, wire};

use common::{Backend, Client, Cluster};

/// Longest any single wait may take before the test fails (a deadline, not
/// a measurement).
const DEADLINE: Duration = Duration::from_secs(30);

/// What one client keeps in its state folder.
struct Stolen {
    user: stacksync_proto::UserId,
    token: String,
    broker_user: String,
    broker_password: String,
}

fn stolen(client: &Client) -> Stolen {
    let profile = Profile::load(&client.home).expect("the client has a profile");
    let (broker_user, broker_password) = profile
        .load_broker_login()
        .expect("the broker login is readable by its owner")
        .expect("a direct client keeps its broker login");
    Stolen {
        user: profile.config.user_id,
        token: profile
            .load_token()
            .expect("the token is readable")
            .expect("a token"),
        broker_user,
        broker_password,
    }
}

async fn connect_as(amqp: &str, user: &str, password: &str) -> lapin::Result<Connection> {
    let mut uri: AMQPUri = amqp.parse().expect("STACKSYNC_TEST_AMQP is an AMQP URL");
    uri.authority.userinfo = AMQPUserInfo {
        username: user.to_owned(),
        password: password.to_owned(),
    };
    Connection::connect_uri(uri, ConnectionProperties::default()).await
}

/// Asserts that `result` is the broker's ACCESS_REFUSED.
fn assert_refused<T>(result: lapin::Result<T>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: the broker allowed it"),
        Err(e) => {
            let text = format!("{e:?} {e}").to_uppercase();
            assert!(
                text.contains("ACCESS_REFUSED") || text.contains("ACCESSREFUSED"),
                "{what}: refused, but not for access: {e:?}"
            );
        }
    }
}

/// A fresh channel (a refusal closes the channel it happened on).
async fn channel(connection: &Connection) -> Channel {
    connection
        .create_channel()
        .await
        .expect("a channel can be opened")
}

/// Publishes with a confirm; the result of the whole exchange.
async fn publish_confirmed(
    connection: &Connection,
    exchange: &str,
    key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> lapin::Result<()> {
    let ch = channel(connection).await;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = ch
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            payload,
            properties,
        )
        .await?;
    confirm.await?;
    // A refused publish closes the channel asynchronously; a round trip on
    // the same channel makes the refusal visible here.
    ch.basic_qos(1, Default::default()).await
}

/// Ready messages in `queue`, asked as the broker admin.
async fn ready_messages(admin: &Connection, queue: &str) -> u32 {
    let ch = channel(admin).await;
    let declared = ch
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the queue exists");
    declared.message_count()
}

/// Sends `request` over the request exchange as `connection`'s user and
/// waits for the service's answer on direct reply-to.
async fn call_as(
    connection: &Connection,
    topology: &Topology,
    sender: &str,
    token: &str,
    request: Request,
) -> RpcResponse {
    let ch = channel(connection).await;
    let mut replies = ch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("a client may consume its own direct replies");
    let message = RpcRequest {
        request_id: uuid::Uuid::now_v7(),
        token: token.to_owned(),
        request,
    };
    let properties = BasicProperties::default()
        .with_reply_to("amq.rabbitmq.reply-to".into())
        .with_correlation_id("c1".into())
        .with_user_id(sender.into());
    ch.basic_publish(
        topology.request_exchange.as_str().into(),
        "".into(),
        BasicPublishOptions::default(),
        &wire::encode(&message),
        properties,
    )
    .await
    .expect("a client may publish to the request exchange");
    let delivery = tokio::time::timeout(DEADLINE, replies.next())
        .await
        .expect("the service answers before the deadline")
        .expect("the reply consumer is open")
        .expect("a reply");
    wire::decode(&delivery.data).expect("the reply decodes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_clients_cannot_reach_each_others_messages() {
    let Some(backend) = Backend::full() else {
        return;
    };
    let Backend::Full { amqp, .. } = &backend else {
        unreachable!("Backend::full gives the real backends");
    };
    let cluster = Cluster::start(&backend).await;
    let (_, namespace, _) = cluster.direct.clone().expect("real backends");
    let topology = Topology::for_namespace(&namespace);
    let admin = Connection::connect(amqp, ConnectionProperties::default())
        .await
        .expect("the broker admin connects");

    // The spy: everything published to the request exchange, as the admin
    // sees it.
    let spy_channel = channel(&admin).await;
    let spy_queue = spy_channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the spy queue is declared");
    spy_channel
        .queue_bind(
            spy_queue.name().clone(),
            topology.request_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("the spy hears the request exchange");
    let mut spy = spy_channel
        .basic_consume(
            spy_queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("the spy consumes");

    let ann = cluster.add_user("ann@example.org", None);
    let bob = cluster.add_user("bob@example.org", None);
    let ann = cluster.direct_client("ann", &ann);
    let bob = cluster.direct_client("bob", &bob);
    ann.write("hello.txt", b"ann's file");
    ann.sync();

    // Everything the logins and the first sync put on the bus is there by
    // now (each request was answered); a marker closes the capture.
    publish_confirmed(
        &admin,
        &topology.request_exchange,
        "",
        b"spy-marker",
        BasicProperties::default(),
    )
    .await
    .expect("the admin may publish");
    let mut captured = Vec::new();
    loop {
        let delivery = tokio::time::timeout(DEADLINE, spy.next())
            .await
            .expect("the marker reaches the spy before the deadline")
            .expect("the spy is open")
            .expect("a delivery");
        if delivery.data == b"spy-marker" {
            break;
        }
        captured.push(delivery.data);
    }
    // Device registrations, workspace listings, commits: the spy did hear
    // the clients' traffic...
    assert!(captured.len() >= 3, "only {} requests seen", captured.len());
    // ... and never a password (the login went over HTTP).
    let password = b"secret-pw";
    for message in &captured {
        assert!(
            !message.windows(password.len()).any(|w| w == password),
            "a password travelled on the bus: {}",
            String::from_utf8_lossy(message)
        );
    }

    let a = stolen(&ann);
    let b = stolen(&bob);
    let ann_queue = a.broker_user.clone();
    let bob_queue = b.broker_user.clone();
    let ann_workspace = {
        let session = Session {
            token: a.token.clone(),
            user: a.user,
            expires_at: 0,
        };
        let http = GatewayClient::with_session(&cluster.url, session).expect("a client");
        match http.rpc(Request::GetWorkspaces).await.expect("listed") {
            Reply::Workspaces { workspaces } => workspaces[0].id,
            other => panic!("expected workspaces, got {other:?}"),
        }
    };

    // The attacker: B's own broker credentials.
    let attacker = connect_as(amqp, &b.broker_user, &b.broker_password)
        .await
        .expect("B's own credentials work");
    // What B may do works (so the refusals below are selective): read its
    // own queue, and call the service as itself.
    channel(&attacker)
        .await
        .basic_consume(
            bob_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("B may consume its own notification queue");
    let own = call_as(
        &attacker,
        &topology,
        &b.broker_user,
        &b.token,
        Request::GetAccount,
    )
    .await;
    assert!(own.result.is_ok(), "{:?}", own.result);

    // 1. Consume (or get from) the shared request queue.
    let requests = topology.requests.as_str();
    assert_refused(
        channel(&attacker)
            .await
            .basic_consume(
                requests.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await,
        "consuming the request queue",
    );
    assert_refused(
        channel(&attacker)
            .await
            .basic_get(requests.into(), BasicGetOptions::default())
            .await,
        "getting from the request queue",
    );

    // 2. Declare a queue and bind it (or its own) to A's workspace topic.
    let ann_topic = format!("ws.{ann_workspace}");
    assert_refused(
        channel(&attacker)
            .await
            .queue_declare(
                "".into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await,
        "declaring a queue",
    );
    assert_refused(
        channel(&attacker)
            .await
            .queue_declare(
                format!("{namespace}.bob-spy").into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await,
        "declaring a named queue",
    );
    assert_refused(
        channel(&attacker)
            .await
            .queue_bind(
                bob_queue.as_str().into(),
                topology.notify_exchange.as_str().into(),
                ann_topic.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await,
        "binding its own queue to A's workspace",
    );

    // 3. Publish into A's notification queue, by name or by topic.
    let before = ready_messages(&admin, &ann_queue).await;
    assert_refused(
        publish_confirmed(
            &attacker,
            "",
            &ann_queue,
            b"fake",
            BasicProperties::default(),
        )
        .await,
        "publishing into A's queue through the default exchange",
    );
    assert_refused(
        publish_confirmed(
            &attacker,
            &topology.notify_exchange,
            &ann_topic,
            b"fake",
            BasicProperties::default(),
        )
        .await,
        "publishing to A's workspace topic",
    );
    assert_eq!(ready_messages(&admin, &ann_queue).await, before);

    // 4. Read A's replies or notifications: consume A's queue; use A's
    // token (stolen from a request) as B's broker user.
    assert_refused(
        channel(&attacker)
            .await
            .basic_consume(
                ann_queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await,
        "consuming A's notification queue",
    );
    let as_ann = call_as(
        &attacker,
        &topology,
        &b.broker_user,
        &a.token,
        Request::GetAccount,
    )
    .await;
    assert_eq!(
        as_ann.result.as_ref().map_err(|e| e.kind),
        Err(ErrorKind::Unauthenticated),
        "A's token used by B's broker user: {:?}",
        as_ann.result
    );
    // Claiming to be A is refused by the broker itself.
    let claim = publish_confirmed(
        &attacker,
        &topology.request_exchange,
        "",
        b"{}",
        BasicProperties::default().with_user_id(a.broker_user.as_str().into()),
    )
    .await;
    assert!(claim.is_err(), "publishing as A's broker user was allowed");
    let claim = format!("{claim:?}").to_uppercase();
    assert!(
        claim.contains("PRECONDITION") && claim.contains("USER_ID"),
        "publishing as A's broker user: {claim}"
    );

    // 5. A's session ends on the server (revoked: the session row goes);
    // the sweep withdraws its broker user, and its credentials stop
    // working.
    let db = cluster.database_url().expect("real backends");
    revoke_session(&db, &a.token).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match connect_as(amqp, &a.broker_user, &a.broker_password).await {
            Err(_) => break,
            Ok(connection) => {
                let _ = connection.close(200, "still allowed".into()).await;
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "A's broker credentials still work after its session ended"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // B is unaffected.
    let still = connect_as(amqp, &b.broker_user, &b.broker_password).await;
    assert!(still.is_ok(), "B's credentials stopped working too");
}

/// Ends the session of `token` on the server, as a revocation does.
async fn revoke_session(database_url: &str, token: &str) {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut db = sqlx::AnyConnection::connect(database_url)
        .await
        .expect("the server's database accepts connections");
    let hash = blake3::hash(token.as_bytes()).to_hex().to_string();
    let deleted = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
        .bind(hash)
        .execute(&mut db)
        .await
        .expect("the session can be deleted");
    assert_eq!(deleted.rows_affected(), 1, "the session existed");
    let _ = db.close().await;
}
