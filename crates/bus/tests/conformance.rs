//! One conformance suite, run against the in-process bus and RabbitMQ.
//!
//! Each check is a plain async function of a [`Fixture`]; the `suite!`
//! macro instantiates every check once per backend.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{Fixture, next_message, within};
use stacksync_bus::{BusError, QueueKind, SubscriptionEvent, Topic};
use stacksync_proto::{UserId, WorkspaceId};
use tokio::sync::{Notify, mpsc};

/// Small enough that the slow-subscriber check overflows it quickly.
const SUBSCRIBER_BUFFER: usize = 8;

macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::$check(&super::Fixture::memory(super::SUBSCRIBER_BUFFER)).await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(fixture) = super::Fixture::rabbit(
                        stacksync_bus::QueueKind::Classic,
                        super::SUBSCRIBER_BUFFER,
                    ) else {
                        return;
                    };
                    super::$check(&fixture).await;
                    fixture.cleanup().await;
                }
            )*
        }
    };
}

suite!(
    round_trip,
    concurrent_calls_are_correlated,
    two_servers_share_the_load,
    dropped_request_goes_to_another_server,
    call_without_server_times_out,
    workspace_multicast_reaches_members_only,
    user_notification_reaches_that_user,
    topics_can_be_added_and_removed,
    slow_subscriber_does_not_block_publisher,
);

/// Serves forever, replying `prefix ++ payload`.
fn spawn_echo(mut requests: stacksync_bus::RequestStream, prefix: &'static [u8]) {
    tokio::spawn(async move {
        while let Some(request) = requests.next().await {
            let mut reply = prefix.to_vec();
            reply.extend_from_slice(request.payload());
            tokio::spawn(async move {
                let _ = request.reply(Bytes::from(reply)).await;
            });
        }
    });
}

async fn round_trip(fixture: &Fixture) {
    let server = fixture.bus().await;
    let mut requests = server.serve(4).await.expect("serve");
    let client = fixture.bus().await;
    let call = tokio::spawn(async move {
        client
            .call(Bytes::from_static(b"ping"), common::DEADLINE)
            .await
    });
    let request = within("request", requests.next()).await.expect("a request");
    assert_eq!(request.payload().as_ref(), b"ping");
    assert!(!request.redelivered(), "first delivery is not a redelivery");
    request
        .reply(Bytes::from_static(b"pong"))
        .await
        .expect("reply");
    let reply = call.await.expect("call task").expect("reply");
    assert_eq!(reply.as_ref(), b"pong");
}

async fn concurrent_calls_are_correlated(fixture: &Fixture) {
    let server = fixture.bus().await;
    spawn_echo(server.serve(16).await.expect("serve"), b"re:");
    let client = fixture.bus().await;
    let calls: Vec<_> = (0..200u32)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let payload = Bytes::from(i.to_be_bytes().to_vec());
                (i, client.call(payload, common::DEADLINE).await)
            })
        })
        .collect();
    for call in calls {
        let (i, reply) = call.await.expect("call task");
        let reply = reply.expect("reply");
        assert_eq!(&reply[..3], b"re:");
        assert_eq!(
            &reply[3..],
            &i.to_be_bytes(),
            "call {i} got someone else's reply"
        );
    }
}

async fn two_servers_share_the_load(fixture: &Fixture) {
    // Each server holds its first request until both have one; with
    // prefetch 1 the second request can only go to the idle server.
    let (took, mut taken) = mpsc::channel(4);
    let release = Arc::new(Notify::new());
    for name in ["a", "b"] {
        let mut requests = fixture.bus().await.serve(1).await.expect("serve");
        let (took, release) = (took.clone(), Arc::clone(&release));
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let released = release.notified();
                let _ = took.send(name).await;
                released.await;
                let _ = request.reply(Bytes::from_static(name.as_bytes())).await;
            }
        });
    }
    let client = fixture.bus().await;
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call(Bytes::from_static(b"work"), common::DEADLINE)
                    .await
            })
        })
        .collect();
    let first = within("first server", taken.recv())
        .await
        .expect("server alive");
    let second = within("second server", taken.recv())
        .await
        .expect("server alive");
    assert_eq!(HashSet::from([first, second]), HashSet::from(["a", "b"]));
    release.notify_waiters();
    let mut repliers = HashSet::new();
    for call in calls {
        let reply = call.await.expect("call task").expect("reply");
        repliers.insert(reply);
    }
    assert_eq!(repliers.len(), 2, "each server answered one call");
}

async fn dropped_request_goes_to_another_server(fixture: &Fixture) {
    let mut dying = fixture.bus().await.serve(1).await.expect("serve");
    let client = fixture.bus().await;
    let call = tokio::spawn(async move {
        client
            .call(Bytes::from_static(b"job"), common::DEADLINE)
            .await
    });
    let request = within("first delivery", dying.next())
        .await
        .expect("a request");
    assert!(!request.redelivered());
    // The server stops and abandons its request without replying.
    drop(dying);
    drop(request);
    let mut survivor = fixture.bus().await.serve(1).await.expect("serve");
    let again = within("redelivery", survivor.next())
        .await
        .expect("a request");
    assert_eq!(again.payload().as_ref(), b"job");
    assert!(
        again.redelivered(),
        "the request must be marked as redelivered"
    );
    again
        .reply(Bytes::from_static(b"done"))
        .await
        .expect("reply");
    assert_eq!(
        call.await.expect("call task").expect("reply").as_ref(),
        b"done"
    );
}

async fn call_without_server_times_out(fixture: &Fixture) {
    let client = fixture.bus().await;
    let err = client
        .call(Bytes::from_static(b"anyone?"), Duration::from_millis(300))
        .await
        .expect_err("nobody serves");
    assert!(matches!(err, BusError::Timeout { .. }), "got {err:?}");
    assert!(err.is_transient());
}

async fn workspace_multicast_reaches_members_only(fixture: &Fixture) {
    let (ours, theirs) = (
        Topic::Workspace(WorkspaceId::new()),
        Topic::Workspace(WorkspaceId::new()),
    );
    let mut laptop = fixture
        .bus()
        .await
        .subscribe(&[ours])
        .await
        .expect("subscribe");
    let mut phone = fixture
        .bus()
        .await
        .subscribe(&[ours])
        .await
        .expect("subscribe");
    let mut outsider = fixture
        .bus()
        .await
        .subscribe(&[theirs])
        .await
        .expect("subscribe");
    let publisher = fixture.bus().await;
    publisher
        .publish(&ours, Bytes::from_static(b"commit"))
        .await
        .expect("publish");
    publisher
        .publish(&theirs, Bytes::from_static(b"marker"))
        .await
        .expect("publish");
    for device in [&mut laptop, &mut phone] {
        assert_eq!(
            next_message(device).await,
            (ours, Bytes::from_static(b"commit"))
        );
    }
    // Notifications from one publisher arrive in order, so had the outsider
    // received the commit it would come before the marker.
    assert_eq!(
        next_message(&mut outsider).await,
        (theirs, Bytes::from_static(b"marker"))
    );
}

async fn user_notification_reaches_that_user(fixture: &Fixture) {
    let (alice, bob) = (Topic::User(UserId::new()), Topic::User(UserId::new()));
    let mut alice_device = fixture
        .bus()
        .await
        .subscribe(&[alice])
        .await
        .expect("subscribe");
    let mut bob_device = fixture
        .bus()
        .await
        .subscribe(&[bob])
        .await
        .expect("subscribe");
    let publisher = fixture.bus().await;
    publisher
        .publish(&alice, Bytes::from_static(b"invite"))
        .await
        .expect("publish");
    publisher
        .publish(&bob, Bytes::from_static(b"marker"))
        .await
        .expect("publish");
    assert_eq!(
        next_message(&mut alice_device).await,
        (alice, Bytes::from_static(b"invite"))
    );
    assert_eq!(
        next_message(&mut bob_device).await,
        (bob, Bytes::from_static(b"marker"))
    );
}

async fn topics_can_be_added_and_removed(fixture: &Fixture) {
    let (own, shared) = (
        Topic::Workspace(WorkspaceId::new()),
        Topic::Workspace(WorkspaceId::new()),
    );
    let mut device = fixture
        .bus()
        .await
        .subscribe(&[own])
        .await
        .expect("subscribe");
    let publisher = fixture.bus().await;

    device.add(shared).await.expect("join shared workspace");
    assert_eq!(
        HashSet::<Topic>::from_iter(device.topics().await),
        HashSet::from([own, shared])
    );
    publisher
        .publish(&shared, Bytes::from_static(b"shared commit"))
        .await
        .expect("publish");
    assert_eq!(
        next_message(&mut device).await,
        (shared, Bytes::from_static(b"shared commit"))
    );

    device
        .remove(&shared)
        .await
        .expect("leave shared workspace");
    assert_eq!(device.topics().await, vec![own]);
    publisher
        .publish(&shared, Bytes::from_static(b"after leaving"))
        .await
        .expect("publish");
    publisher
        .publish(&own, Bytes::from_static(b"marker"))
        .await
        .expect("publish");
    assert_eq!(
        next_message(&mut device).await,
        (own, Bytes::from_static(b"marker"))
    );
}

async fn slow_subscriber_does_not_block_publisher(fixture: &Fixture) {
    let topic = Topic::Workspace(WorkspaceId::new());
    let mut sleepy = fixture
        .bus()
        .await
        .subscribe(&[topic])
        .await
        .expect("subscribe");
    let publisher = fixture.bus().await;
    let total = SUBSCRIBER_BUFFER as u64 * 8;
    for i in 0..total {
        // Would hang (and hit the deadline) if a full subscriber blocked us.
        within(
            "publish",
            publisher.publish(&topic, Bytes::from(i.to_be_bytes().to_vec())),
        )
        .await
        .expect("publish");
    }
    let (mut messages, mut missed) = (0u64, 0u64);
    while messages + missed < total {
        match within("notification or lag signal", sleepy.recv()).await {
            Some(SubscriptionEvent::Message { .. }) => messages += 1,
            Some(SubscriptionEvent::Lagged { missed: n }) => missed += n,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Every notification is accounted for: delivered, or counted as missed.
    assert_eq!(messages + missed, total);
    assert!(missed > 0, "a subscriber that never read must have lagged");
}

/// Durable and quorum request queues work end to end (RabbitMQ only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_durable_and_quorum_queues_serve() {
    for kind in [QueueKind::Durable, QueueKind::Quorum] {
        let Some(fixture) = Fixture::rabbit(kind, SUBSCRIBER_BUFFER) else {
            return;
        };
        round_trip(&fixture).await;
        fixture.cleanup().await;
    }
}
