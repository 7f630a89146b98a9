//! Login throttling as every login path sees it (issue 17, finding 5):
//! without a peer address (as over the bus), only the per-account limit applies, and an
//! unknown email costs the same password verification as a wrong password.

mod common;

use common::{Combo, Env};
use stacksync_proto::ErrorKind;
use stacksync_proto::rpc::Request;

async fn login(env: &Env, email: &str, password: &str) -> Result<(), stacksync_proto::Error> {
    let request = Request::Login {
        email: email.into(),
        password: password.into(),
    };
    env.call("", request).await.map(|_| ())
}

/// An unknown email runs one verification (against the dummy hash), as a
/// wrong password does; a blocked attempt runs none.
#[tokio::test]
async fn finding_5_unknown_and_known_emails_do_the_same_work() {
    let env = Env::new(Combo::Embedded)
        .await
        .expect("embedded always runs");
    let ann = env.user("ann@example.org").await;
    let checks = env.service.password_checks();

    let wrong = login(&env, &ann.email, "wrong").await.unwrap_err();
    assert_eq!(wrong.kind, ErrorKind::Unauthenticated);
    assert_eq!(env.service.password_checks(), checks + 1);

    let unknown = login(&env, "nobody@example.org", "wrong")
        .await
        .unwrap_err();
    assert_eq!(unknown, wrong, "the same answer");
    assert_eq!(
        env.service.password_checks(),
        checks + 2,
        "and the same work"
    );
    env.shutdown().await;
}

/// Over the bus, repeated failures block the account (default: five free
/// failures), with a retry delay, even for the right password.
#[tokio::test]
async fn finding_5_repeated_failures_over_the_bus_block_the_account() {
    let env = Env::new(Combo::Embedded)
        .await
        .expect("embedded always runs");
    let ann = env.user("ann@example.org").await;
    for _ in 0..6 {
        let e = login(&env, &ann.email, "wrong").await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Unauthenticated);
    }
    let checks = env.service.password_checks();
    let e = login(&env, &ann.email, "pw-123456").await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    assert!(e.retry_after_secs.is_some_and(|s| s >= 1));
    assert_eq!(
        env.service.password_checks(),
        checks,
        "a blocked attempt hashes nothing"
    );
    env.shutdown().await;
}
