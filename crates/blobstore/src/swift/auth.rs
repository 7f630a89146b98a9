//! Authentication against Swift: TempAuth (v1) and Keystone v3 password,
//! with the token cached until the server refuses it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::{Client, StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::error::{BlobError, BlobErrorKind, Result};

/// How to obtain a token and storage URL.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SwiftAuth {
    /// TempAuth / swauth v1: `GET auth_url` with `X-Auth-User` and `X-Auth-Key`.
    V1 {
        /// E.g. `http://127.0.0.1:8080/auth/v1.0`.
        auth_url: String,
        /// `account:user`.
        user: String,
        /// The user's key.
        key: String,
    },
    /// Keystone v3 password authentication, project-scoped; the storage URL
    /// is the catalog's `object-store` endpoint.
    KeystoneV3 {
        /// Keystone's v3 base, e.g. `https://keystone:5000/v3`.
        auth_url: String,
        /// User name.
        user: String,
        /// The user's password.
        password: String,
        /// Domain of the user (usually `Default`).
        user_domain: String,
        /// Project to scope the token to (the installation's Swift account).
        project: String,
        /// Domain of the project.
        project_domain: String,
        /// Region to pick in the catalog; any if `None`.
        #[serde(default)]
        region: Option<String>,
        /// Endpoint interface: `public` unless told otherwise.
        #[serde(default = "default_interface")]
        interface: String,
    },
}

fn default_interface() -> String {
    "public".to_owned()
}

// Hand-written so that secrets never reach logs.
impl std::fmt::Debug for SwiftAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SwiftAuth::V1 { auth_url, user, .. } => {
                write!(
                    f,
                    "V1 {{ auth_url: {auth_url:?}, user: {user:?}, key: <hidden> }}"
                )
            }
            SwiftAuth::KeystoneV3 {
                auth_url,
                user,
                project,
                ..
            } => write!(
                f,
                "KeystoneV3 {{ auth_url: {auth_url:?}, user: {user:?}, project: {project:?}, password: <hidden> }}"
            ),
        }
    }
}

/// A token and the storage URL it is good for.
#[derive(Debug)]
pub struct Session {
    /// Value for `X-Auth-Token`.
    pub token: String,
    /// The account URL requests go to (`.../v1/AUTH_x`), without a trailing `/`.
    pub storage_url: String,
    /// Increases with each login, so that a 401 on an old token does not
    /// throw away a newer one.
    pub generation: u64,
}

/// The cached session, renewed when the server refuses it.
#[derive(Debug)]
pub struct Authenticator {
    auth: SwiftAuth,
    /// `AUTH_x`-style account to use instead of the user's own.
    account: Option<String>,
    current: tokio::sync::RwLock<Option<Arc<Session>>>,
    /// Only one login at a time; the others wait and reuse its result.
    login_lock: tokio::sync::Mutex<()>,
    logins: AtomicU64,
}

impl Authenticator {
    /// A new authenticator; nothing is sent until the first request.
    pub fn new(auth: SwiftAuth, account: Option<String>) -> Authenticator {
        Authenticator {
            auth,
            account,
            current: tokio::sync::RwLock::new(None),
            login_lock: tokio::sync::Mutex::new(()),
            logins: AtomicU64::new(0),
        }
    }

    /// How many logins succeeded so far.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The cached session, logging in first if there is none.
    pub async fn session(&self, http: &Client) -> Result<Arc<Session>> {
        if let Some(s) = self.current.read().await.clone() {
            return Ok(s);
        }
        let _login = self.login_lock.lock().await;
        if let Some(s) = self.current.read().await.clone() {
            return Ok(s);
        }
        let (token, storage_url) = match &self.auth {
            SwiftAuth::V1 {
                auth_url,
                user,
                key,
            } => login_v1(http, auth_url, user, key).await?,
            SwiftAuth::KeystoneV3 { .. } => login_keystone(http, &self.auth).await?,
        };
        let storage_url = match &self.account {
            Some(account) => with_account(&storage_url, account)?,
            None => storage_url.trim_end_matches('/').to_owned(),
        };
        let generation = self.logins.fetch_add(1, Ordering::Relaxed) + 1;
        let session = Arc::new(Session {
            token,
            storage_url,
            generation,
        });
        *self.current.write().await = Some(session.clone());
        Ok(session)
    }

    /// Forgets `session` after the server refused its token (unless a newer
    /// one already replaced it).
    pub async fn invalidate(&self, session: &Session) {
        let mut current = self.current.write().await;
        if current
            .as_ref()
            .is_some_and(|c| c.generation == session.generation)
        {
            *current = None;
        }
    }

    /// Replaces the cached token by `token` (for tests of renewal).
    pub async fn set_token(&self, token: &str) {
        let mut current = self.current.write().await;
        if let Some(c) = current.as_ref() {
            let generation = c.generation;
            let storage_url = c.storage_url.clone();
            *current = Some(Arc::new(Session {
                token: token.to_owned(),
                storage_url,
                generation,
            }));
        }
    }
}

/// Errors while talking to the auth service: connection problems are
/// transient, refusals are not.
fn auth_transport_error(url: &str, e: reqwest::Error) -> BlobError {
    BlobError::with_source(BlobErrorKind::Unavailable, format!("auth at {url}: {e}"), e)
}

fn auth_status_error(url: &str, status: StatusCode) -> BlobError {
    let kind = match status.as_u16() {
        401 | 403 => BlobErrorKind::Unauthenticated,
        s if s >= 500 => BlobErrorKind::Unavailable,
        _ => BlobErrorKind::Protocol,
    };
    BlobError::new(kind, format!("auth at {url} answered {status}"))
}

fn header(resp: &reqwest::Response, name: &str, url: &str) -> Result<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| BlobError::new(BlobErrorKind::Protocol, format!("auth at {url}: no {name}")))
}

async fn login_v1(http: &Client, url: &str, user: &str, key: &str) -> Result<(String, String)> {
    let resp = http
        .get(url)
        .header("X-Auth-User", user)
        .header("X-Auth-Key", key)
        .send()
        .await
        .map_err(|e| auth_transport_error(url, e))?;
    if !resp.status().is_success() {
        return Err(auth_status_error(url, resp.status()));
    }
    Ok((
        header(&resp, "X-Auth-Token", url)?,
        header(&resp, "X-Storage-Url", url)?,
    ))
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenInfo,
}

#[derive(Deserialize)]
struct TokenInfo {
    #[serde(default)]
    catalog: Vec<CatalogEntry>,
}

#[derive(Deserialize)]
struct CatalogEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<Endpoint>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

async fn login_keystone(http: &Client, auth: &SwiftAuth) -> Result<(String, String)> {
    let SwiftAuth::KeystoneV3 {
        auth_url,
        user,
        password,
        user_domain,
        project,
        project_domain,
        region,
        interface,
    } = auth
    else {
        return Err(BlobError::new(
            BlobErrorKind::Protocol,
            "not a Keystone configuration",
        ));
    };
    let url = format!("{}/auth/tokens", auth_url.trim_end_matches('/'));
    let body = serde_json::json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": { "name": user, "domain": { "name": user_domain }, "password": password }
                }
            },
            "scope": { "project": { "name": project, "domain": { "name": project_domain } } }
        }
    });
    let resp = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| auth_transport_error(&url, e))?;
    if !resp.status().is_success() {
        return Err(auth_status_error(&url, resp.status()));
    }
    let token = header(&resp, "X-Subject-Token", &url)?;
    let parsed: TokenBody = resp.json().await.map_err(|e| {
        BlobError::with_source(
            BlobErrorKind::Protocol,
            format!("auth at {url}: bad token body"),
            e,
        )
    })?;
    let endpoint = parsed
        .token
        .catalog
        .iter()
        .filter(|e| e.kind == "object-store")
        .flat_map(|e| e.endpoints.iter())
        .find(|e| {
            e.interface == *interface
                && region.as_ref().is_none_or(|r| {
                    e.region.as_deref() == Some(r.as_str())
                        || e.region_id.as_deref() == Some(r.as_str())
                })
        })
        .ok_or_else(|| {
            BlobError::new(
                BlobErrorKind::Protocol,
                format!("auth at {url}: no {interface} object-store endpoint in the catalog"),
            )
        })?;
    Ok((token, endpoint.url.trim_end_matches('/').to_owned()))
}

/// The storage URL of `account` on the same Swift as `storage_url`: its
/// last path segment (`AUTH_x`) replaced. This is how a storage user reaches
/// the installation's account, where the workspace containers live.
pub fn with_account(storage_url: &str, account: &str) -> Result<String> {
    let valid = !account.is_empty()
        && account.len() <= 256
        && account
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !account.starts_with('.');
    if !valid {
        return Err(BlobError::new(
            BlobErrorKind::InvalidName,
            format!("invalid account {account:?}"),
        ));
    }
    let mut url = Url::parse(storage_url).map_err(|e| {
        BlobError::with_source(
            BlobErrorKind::Protocol,
            format!("bad storage URL {storage_url:?}"),
            e,
        )
    })?;
    let path = url.path().trim_end_matches('/').to_owned();
    let Some((parent, _)) = path.rsplit_once('/') else {
        return Err(BlobError::new(
            BlobErrorKind::Protocol,
            format!("bad storage URL {storage_url:?}"),
        ));
    };
    url.set_path(&format!("{parent}/{account}"));
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_replacement() {
        assert_eq!(
            with_account("http://h:1/v1/AUTH_test2", "AUTH_test").unwrap(),
            "http://h:1/v1/AUTH_test"
        );
        assert_eq!(
            with_account("https://h/swift/v1/AUTH_abc/", "AUTH_def").unwrap(),
            "https://h/swift/v1/AUTH_def"
        );
        assert!(with_account("http://h:1/v1/AUTH_x", "../x").is_err());
        assert!(with_account("http://h:1/v1/AUTH_x", "a/b").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let a = SwiftAuth::V1 {
            auth_url: "u".into(),
            user: "a:b".into(),
            key: "sekrit".into(),
        };
        assert!(!format!("{a:?}").contains("sekrit"));
    }
}
