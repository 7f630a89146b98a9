//! The OAuth 1.0a provider over the metadata store, on SQLite and on
//! PostgreSQL (with RabbitMQ): the three-legged flow, single use of request
//! tokens and nonces, the throttled password check of the authorization
//! page, denial, expiry, revocation and removal of apps. Requests are
//! signed here with the `stacksync_oauth` primitives; the independent
//! client (Python's `oauthlib`) is `crates/cli/tests/oauth.rs`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Combo, Env};
use stacksync_oauth::{
    HttpRequest, OAuthError, ParsedRequest, Transport, hmac_sha1, percent_encode, plaintext,
};
use stacksync_proto::ErrorKind;
use stacksync_proto::rpc::Request;
use stacksync_service::{Service, ServiceConfig};

const HOST: &str = "127.0.0.1:8080";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A request signed by an app, owned so a test can replay or tamper.
#[derive(Clone, Debug)]
struct Signed {
    method: &'static str,
    path: String,
    query: Option<String>,
    authorization: String,
}

impl Signed {
    fn http(&self) -> HttpRequest<'_> {
        HttpRequest {
            method: self.method,
            scheme: "http",
            authority: HOST,
            path: &self.path,
            query: self.query.as_deref(),
            authorization: Some(self.authorization.as_bytes()),
            content_type: None,
            body: b"",
        }
    }
}

/// Client credentials, and token credentials once it has some.
#[derive(Clone, Debug)]
struct App {
    key: String,
    secret: String,
}

struct Sign<'a> {
    method: &'static str,
    path_and_query: &'a str,
    app: &'a App,
    token: Option<(&'a str, &'a str)>,
    extra: &'a [(&'a str, &'a str)],
    timestamp: u64,
    nonce: String,
    plaintext: bool,
}

impl Sign<'_> {
    fn new<'a>(method: &'static str, path_and_query: &'a str, app: &'a App) -> Sign<'a> {
        Sign {
            method,
            path_and_query,
            app,
            token: None,
            extra: &[],
            timestamp: now(),
            nonce: nonce(),
            plaintext: false,
        }
    }

    fn sign(&self) -> Signed {
        let (path, query) = match self.path_and_query.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (self.path_and_query.to_owned(), None),
        };
        let timestamp = self.timestamp.to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("oauth_consumer_key", &self.app.key),
            (
                "oauth_signature_method",
                if self.plaintext {
                    "PLAINTEXT"
                } else {
                    "HMAC-SHA1"
                },
            ),
            ("oauth_timestamp", &timestamp),
            ("oauth_nonce", &self.nonce),
            ("oauth_version", "1.0"),
        ];
        if let Some((token, _)) = self.token {
            params.push(("oauth_token", token));
        }
        params.extend_from_slice(self.extra);
        let header = |signature: &str| {
            let mut all = params.clone();
            all.push(("oauth_signature", signature));
            let fields: Vec<String> = all
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", percent_encode(v)))
                .collect();
            format!("OAuth realm=\"test\", {}", fields.join(", "))
        };
        let mut signed = Signed {
            method: self.method,
            path,
            query,
            authorization: header("placeholder"),
        };
        let token_secret = self.token.map(|(_, s)| s).unwrap_or("");
        let signature = if self.plaintext {
            plaintext(&self.app.secret, token_secret)
        } else {
            let base = ParsedRequest::parse(&signed.http())
                .expect("the test's request parses")
                .signature_base_string();
            hmac_sha1(&base, &self.app.secret, token_secret)
        };
        signed.authorization = header(&signature);
        signed
    }
}

async fn register(service: &Service, callback: Option<&str>) -> App {
    let app = service
        .add_oauth_consumer("Photo <Printer>", callback)
        .await
        .expect("an app is registered");
    App {
        key: app.key,
        secret: app.secret,
    }
}

/// A request token for `app` with `callback`: (token, secret).
async fn request_token(service: &Service, app: &App, callback: &str) -> (String, String) {
    let extra = [("oauth_callback", callback)];
    let mut sign = Sign::new("POST", "/oauth/request_token", app);
    sign.extra = &extra;
    let issued = service
        .oauth_request_token(&sign.sign().http(), Transport::Secure)
        .await
        .expect("a request token is issued");
    let body = issued.temporary_credentials_body();
    assert!(body.ends_with("oauth_callback_confirmed=true"));
    (issued.token, issued.secret.expose().to_owned())
}

async fn exchange(
    service: &Service,
    app: &App,
    token: &(String, String),
    verifier: &str,
) -> Result<App, OAuthError> {
    let extra = [("oauth_verifier", verifier)];
    let mut sign = Sign::new("POST", "/oauth/access_token", app);
    sign.token = Some((&token.0, &token.1));
    sign.extra = &extra;
    let issued = service
        .oauth_access_token(&sign.sign().http(), Transport::Secure)
        .await?;
    Ok(App {
        key: issued.token,
        secret: issued.secret.expose().to_owned(),
    })
}

/// An access token of `app` for the user `email` (password `pw-123456`).
async fn authorised(env: &Env, app: &App, email: &str) -> App {
    let token = request_token(&env.service, app, "oob").await;
    let approval = env
        .service
        .oauth_approve(&token.0, email, "pw-123456", None)
        .await
        .expect("the user approves");
    assert_eq!(approval.redirect, None, "oob shows the verifier");
    exchange(&env.service, app, &token, &approval.verifier)
        .await
        .expect("the exchange works")
}

fn account_request<'a>(app: &'a App, access: &'a App) -> Sign<'a> {
    let mut sign = Sign::new("GET", "/api/v2/account?x=%20y", app);
    sign.token = Some((&access.key, &access.secret));
    sign
}

fn assert_401(result: Result<impl std::fmt::Debug, OAuthError>, what: &str) -> OAuthError {
    let e = result.expect_err(what);
    assert_eq!(e.http_status(), 401, "{what}: {e}");
    e
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                let env = super::Env::new(super::Combo::Embedded).await.expect("embedded runs");
                super::$name(&env).await;
                env.shutdown().await;
            })*
        }
        mod postgres_rabbitmq {
            $(#[tokio::test]
            async fn $name() {
                let Some(env) = super::Env::new(super::Combo::Real).await else { return };
                super::$name(&env).await;
                env.shutdown().await;
            })*
        }
    };
}

on_both!(
    the_three_legs_and_a_signed_request,
    exchanges_and_nonces_are_single_use,
    a_wrong_password_is_throttled_like_a_login,
    a_denied_request_gives_nothing,
    an_expired_request_token_is_refused,
    revoked_apps_and_removed_consumers_are_refused,
    callbacks_transports_and_plaintext,
);

async fn the_three_legs_and_a_signed_request(env: &Env) {
    let ann = env.user("ann@example.org").await;
    let app = register(&env.service, Some("https://app.example/cb")).await;
    let token = request_token(&env.service, &app, "https://app.example/cb?state=1").await;
    let pending = env.service.oauth_pending(&token.0).await.unwrap();
    assert_eq!(pending.name, "Photo <Printer>");
    assert!(!pending.out_of_band);
    let approval = env
        .service
        .oauth_approve(&token.0, "ANN@example.org", "pw-123456", None)
        .await
        .unwrap();
    let redirect = approval.redirect.expect("a redirect to the callback");
    assert_eq!(
        redirect,
        format!(
            "https://app.example/cb?state=1&oauth_token={}&oauth_verifier={}",
            percent_encode(&token.0),
            percent_encode(&approval.verifier)
        )
    );
    assert_eq!(
        env.service.oauth_pending(&token.0).await.unwrap_err().kind,
        ErrorKind::NotFound,
        "an answered request is not shown again"
    );
    let access = exchange(&env.service, &app, &token, &approval.verifier)
        .await
        .unwrap();
    let caller = env
        .service
        .verify_api_request(
            &account_request(&app, &access).sign().http(),
            Transport::Insecure,
        )
        .await
        .expect("a signed request is verified, over plain HTTP too");
    assert_eq!(caller.user, ann.id);
    assert_eq!(caller.consumer_key, app.key);
    let account = env.service.account(caller.user).await.unwrap();
    assert_eq!(account.email, "ann@example.org");

    // The same request tampered with, stale, or signed with the wrong
    // token secret.
    let mut tampered = account_request(&app, &access).sign();
    tampered.query = Some("x=%20z".into());
    let e = assert_401(
        env.service
            .verify_api_request(&tampered.http(), Transport::Secure)
            .await,
        "a tampered request",
    );
    assert_eq!(e.problem(), "signature_invalid");
    let mut stale = account_request(&app, &access);
    stale.timestamp -= 301;
    let e = assert_401(
        env.service
            .verify_api_request(&stale.sign().http(), Transport::Secure)
            .await,
        "an old timestamp",
    );
    assert_eq!(e.problem(), "timestamp_refused");
    let wrong = App {
        key: access.key.clone(),
        secret: "not-the-secret".into(),
    };
    assert_401(
        env.service
            .verify_api_request(
                &account_request(&app, &wrong).sign().http(),
                Transport::Secure,
            )
            .await,
        "a wrong token secret",
    );
    // A request token is no access token.
    let other = request_token(&env.service, &app, "oob").await;
    let as_access = App {
        key: other.0.clone(),
        secret: other.1.clone(),
    };
    assert_401(
        env.service
            .verify_api_request(
                &account_request(&app, &as_access).sign().http(),
                Transport::Secure,
            )
            .await,
        "a request token on the API",
    );
    let apps = env.service.authorized_apps(ann.id).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(apps[0].consumer_key, app.key);
}

async fn exchanges_and_nonces_are_single_use(env: &Env) {
    env.user("bob@example.org").await;
    let app = register(&env.service, None).await;
    let token = request_token(&env.service, &app, "oob").await;
    let approval = env
        .service
        .oauth_approve(&token.0, "bob@example.org", "pw-123456", None)
        .await
        .unwrap();
    let e = assert_401(
        exchange(&env.service, &app, &token, "not-the-verifier").await,
        "a wrong verifier",
    );
    assert_eq!(e.problem(), "permission_unknown");
    // Two exchanges at once: one access token.
    let (a, b) = tokio::join!(
        exchange(&env.service, &app, &token, &approval.verifier),
        exchange(&env.service, &app, &token, &approval.verifier),
    );
    assert_eq!(
        u8::from(a.is_ok()) + u8::from(b.is_ok()),
        1,
        "{a:?} / {b:?}"
    );
    let access = a.or(b).unwrap();
    assert_401(
        exchange(&env.service, &app, &token, &approval.verifier).await,
        "a second exchange",
    );

    let request = account_request(&app, &access).sign();
    env.service
        .verify_api_request(&request.http(), Transport::Secure)
        .await
        .unwrap();
    let e = assert_401(
        env.service
            .verify_api_request(&request.http(), Transport::Secure)
            .await,
        "a replay",
    );
    assert_eq!(e.problem(), "nonce_used");
    // The same nonce at once from two requests: one passes.
    let request = account_request(&app, &access).sign();
    let http = request.http();
    let (a, b) = tokio::join!(
        env.service.verify_api_request(&http, Transport::Secure),
        env.service.verify_api_request(&http, Transport::Secure),
    );
    assert_eq!(u8::from(a.is_ok()) + u8::from(b.is_ok()), 1);
}

async fn a_wrong_password_is_throttled_like_a_login(env: &Env) {
    env.user("cat@example.org").await;
    let app = register(&env.service, None).await;
    let token = request_token(&env.service, &app, "oob").await;
    let checks = env.service.password_checks();
    let e = env
        .service
        .oauth_approve(&token.0, "cat@example.org", "wrong", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert_eq!(env.service.password_checks(), checks + 1, "one check");
    let e = env
        .service
        .oauth_approve(&token.0, "nobody@example.org", "wrong", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthenticated);
    assert_eq!(env.service.password_checks(), checks + 2, "the same work");
    for _ in 0..5 {
        let e = env
            .service
            .oauth_approve(&token.0, "cat@example.org", "wrong", None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.kind,
                ErrorKind::Unauthenticated | ErrorKind::TooManyRequests
            ),
            "{e:?}"
        );
    }
    // Blocked now, even with the right password, on the page and at login.
    let e = env
        .service
        .oauth_approve(&token.0, "cat@example.org", "pw-123456", None)
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooManyRequests);
    let login = env
        .call(
            "",
            Request::Login {
                email: "cat@example.org".into(),
                password: "pw-123456".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(login.kind, ErrorKind::TooManyRequests, "one throttle");
    assert!(
        env.service.oauth_pending(&token.0).await.is_ok(),
        "nothing was authorized"
    );
}

async fn a_denied_request_gives_nothing(env: &Env) {
    env.user("dan@example.org").await;
    let app = register(&env.service, None).await;
    let token = request_token(&env.service, &app, "oob").await;
    assert_eq!(
        env.service.oauth_deny(&token.0).await.unwrap(),
        "Photo <Printer>"
    );
    assert_eq!(
        env.service
            .oauth_approve(&token.0, "dan@example.org", "pw-123456", None)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    assert_401(
        exchange(&env.service, &app, &token, "anything").await,
        "a denied token",
    );
}

async fn an_expired_request_token_is_refused(env: &Env) {
    env.user("eve@example.org").await;
    let app = register(&env.service, None).await;
    let token = request_token(&env.service, &app, "oob").await;
    let approval = env
        .service
        .oauth_approve(&token.0, "eve@example.org", "pw-123456", None)
        .await
        .unwrap();
    // A service whose request tokens live no time at all (same store).
    let mut config = ServiceConfig::default();
    config.oauth.temporary_credentials_lifetime_secs = 0;
    let impatient = Service::new(
        env.db.store.clone(),
        env.blobs.clone(),
        env.bus.clone(),
        config,
    );
    // Issued in an earlier second than now, by the clock of the check.
    sqlx::query("UPDATE oauth_request_tokens SET created_at = created_at - 2000")
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    let e = assert_401(
        exchange(&impatient, &app, &token, &approval.verifier).await,
        "an expired request token",
    );
    assert_eq!(e.problem(), "token_expired");
    // And once past its stored expiry it is not found at all.
    sqlx::query("UPDATE oauth_request_tokens SET expires_at = 1")
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    assert_401(
        exchange(&env.service, &app, &token, &approval.verifier).await,
        "a request token past its expiry",
    );
    let fresh = request_token(&env.service, &app, "oob").await;
    sqlx::query("UPDATE oauth_request_tokens SET expires_at = 1")
        .execute(env.db.store.raw_pool())
        .await
        .unwrap();
    assert_eq!(
        env.service
            .oauth_approve(&fresh.0, "eve@example.org", "pw-123456", None)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

async fn revoked_apps_and_removed_consumers_are_refused(env: &Env) {
    let fay = env.user("fay@example.org").await;
    let app = register(&env.service, None).await;
    let other = register(&env.service, None).await;
    let access = authorised(env, &app, "fay@example.org").await;
    let other_access = authorised(env, &other, "fay@example.org").await;
    let verify = |app: &App, access: &App| {
        let request = account_request(app, access).sign();
        let service = env.service.clone();
        async move {
            service
                .verify_api_request(&request.http(), Transport::Secure)
                .await
        }
    };
    verify(&app, &access).await.unwrap();
    // Another app's token with this app's key: refused.
    assert_401(verify(&app, &other_access).await, "a token of another app");
    assert_eq!(env.service.authorized_apps(fay.id).await.unwrap().len(), 2);
    env.service.revoke_app(fay.id, &app.key).await.unwrap();
    assert_401(verify(&app, &access).await, "a revoked app");
    assert_eq!(
        env.service
            .revoke_app(fay.id, &app.key)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
    verify(&other, &other_access).await.unwrap();

    // A disabled account's tokens stop working.
    env.service
        .store()
        .set_disabled(fay.id, true)
        .await
        .unwrap();
    assert_401(verify(&other, &other_access).await, "a disabled user");
    env.service
        .store()
        .set_disabled(fay.id, false)
        .await
        .unwrap();
    verify(&other, &other_access).await.unwrap();

    let listed = env.service.oauth_consumers().await.unwrap();
    assert!(listed.iter().any(|c| c.key == other.key));
    env.service.remove_oauth_consumer(&other.key).await.unwrap();
    assert_401(verify(&other, &other_access).await, "a removed consumer");
    assert!(
        env.service
            .authorized_apps(fay.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        env.service
            .remove_oauth_consumer(&other.key)
            .await
            .unwrap_err()
            .kind,
        ErrorKind::NotFound
    );
}

async fn callbacks_transports_and_plaintext(env: &Env) {
    env.user("gil@example.org").await;
    let app = register(&env.service, Some("https://app.example/cb")).await;
    let extra = [("oauth_callback", "https://evil.example/cb")];
    let mut sign = Sign::new("POST", "/oauth/request_token", &app);
    sign.extra = &extra;
    let e = env
        .service
        .oauth_request_token(&sign.sign().http(), Transport::Secure)
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 400, "{e}");

    // Credentials are issued over TLS or loopback only.
    let extra = [("oauth_callback", "oob")];
    let mut sign = Sign::new("POST", "/oauth/request_token", &app);
    sign.extra = &extra;
    let e = env
        .service
        .oauth_request_token(&sign.sign().http(), Transport::Insecure)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::InsecureTransport), "{e}");

    // PLAINTEXT: refused unless configured, and then on secure transports
    // only.
    let access = authorised(env, &app, "gil@example.org").await;
    let plain = || {
        let mut sign = account_request(&app, &access);
        sign.plaintext = true;
        sign.sign()
    };
    let e = env
        .service
        .verify_api_request(&plain().http(), Transport::Secure)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::PlaintextRefused(_)), "{e}");
    let mut config = ServiceConfig::default();
    config.oauth.allow_plaintext = true;
    let lenient = Service::new(
        env.db.store.clone(),
        env.blobs.clone(),
        env.bus.clone(),
        config,
    );
    lenient
        .verify_api_request(&plain().http(), Transport::Secure)
        .await
        .expect("PLAINTEXT on a secure transport when allowed");
    let e = lenient
        .verify_api_request(&plain().http(), Transport::Insecure)
        .await
        .unwrap_err();
    assert!(matches!(e, OAuthError::PlaintextRefused(_)), "{e}");
}
