//! RabbitMQ only: the bus survives the broker dropping its connections.
//!
//! The broker is disturbed with `rabbitmqctl` (run as root on the test
//! machine). Only this test's own connections are closed, found by the
//! connection name that carries the test's unique namespace, because the
//! broker is shared with other tests and services.

mod common;

use bytes::Bytes;
use common::{DEADLINE, Fixture, next_message, within};
use stacksync_bus::{BusError, QueueKind, SubscriptionEvent, Topic};
use stacksync_proto::WorkspaceId;
use tokio::process::Command;

/// Runs `rabbitmqctl`; `None` (after the skip/CI rule) if it is missing.
async fn rabbitmqctl(args: &[&str]) -> Option<String> {
    match Command::new("rabbitmqctl").args(args).output().await {
        Ok(out) if out.status.success() => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => panic!(
            "rabbitmqctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("rabbitmqctl not runnable but CI=true: {err}");
            }
            eprintln!("SKIP: rabbitmqctl not runnable: {err}");
            None
        }
    }
}

/// Closes every broker connection whose properties mention `namespace`;
/// returns how many. (The table output is used because it prints pids in
/// the form `close_connection` accepts; the JSON one does not.)
async fn close_connections_of(namespace: &str) -> Option<usize> {
    let listing =
        rabbitmqctl(&["-q", "-s", "list_connections", "pid", "client_properties"]).await?;
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(namespace)) {
        let pid = line
            .split('\t')
            .next()
            .expect("split yields at least one field");
        rabbitmqctl(&["close_connection", pid, "test"]).await?;
        closed += 1;
    }
    Some(closed)
}

/// How the broker is disturbed.
enum Disruption {
    CloseConnections,
    RestartBroker,
}

async fn disrupt(how: &Disruption, namespace: &str) -> Option<()> {
    match how {
        Disruption::CloseConnections => {
            let closed = close_connections_of(namespace).await?;
            assert_eq!(closed, 3, "server, client and subscriber connections");
        }
        Disruption::RestartBroker => {
            rabbitmqctl(&["stop_app"]).await?;
            rabbitmqctl(&["start_app"]).await?;
        }
    }
    Some(())
}

async fn check_recovery(how: Disruption) {
    let Some(fixture) = Fixture::rabbit(QueueKind::Durable, 64) else {
        return;
    };
    let namespace = fixture
        .namespace()
        .expect("rabbit fixture has a namespace")
        .to_owned();
    let server = fixture.bus().await;
    let client = fixture.bus().await;
    let topic = Topic::Workspace(WorkspaceId::new());
    let mut device = fixture
        .bus()
        .await
        .subscribe(&[topic])
        .await
        .expect("subscribe");
    let mut requests = server.serve(1).await.expect("serve");

    // A request is being worked on when the connections go away.
    let caller = client.clone();
    let call =
        tokio::spawn(async move { caller.call(Bytes::from_static(b"held"), DEADLINE).await });
    let held = within("request", requests.next()).await.expect("a request");
    if disrupt(&how, &namespace).await.is_none() {
        return;
    }

    let err = within("in-flight call", call)
        .await
        .expect("call task")
        .expect_err("connection died");
    assert!(
        err.is_transient(),
        "in-flight call must fail transiently, got {err:?}"
    );
    assert!(matches!(err, BusError::Disconnected { .. }), "got {err:?}");
    assert!(
        held.reply(Bytes::from_static(b"late")).await.is_err(),
        "its channel is gone"
    );

    assert_eq!(
        within("gap signal", device.recv()).await,
        Some(SubscriptionEvent::Reconnected)
    );

    // The unacknowledged request comes back once the server has re-attached.
    let again = within("redelivery", requests.next())
        .await
        .expect("serving resumed");
    assert_eq!(again.payload().as_ref(), b"held");
    if matches!(how, Disruption::CloseConnections) {
        assert!(again.redelivered());
    }
    again
        .reply(Bytes::from_static(b"nobody waits for this"))
        .await
        .expect("reply");

    // Calls and notifications work again.
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let payload = request.payload().clone();
            let _ = request.reply(payload).await;
        }
    });
    let echoed = client
        .call(Bytes::from_static(b"after"), DEADLINE)
        .await
        .expect("call after reconnect");
    assert_eq!(echoed.as_ref(), b"after");
    client
        .publish(&topic, Bytes::from_static(b"commit"))
        .await
        .expect("publish after reconnect");
    assert_eq!(
        next_message(&mut device).await,
        (topic, Bytes::from_static(b"commit"))
    );

    fixture.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovers_after_broker_closes_connections() {
    check_recovery(Disruption::CloseConnections).await;
}

/// Restarts the RabbitMQ application, disturbing every user of the broker;
/// run on purpose with `cargo test -p stacksync-bus -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared broker"]
async fn recovers_after_broker_restart() {
    check_recovery(Disruption::RestartBroker).await;
}
