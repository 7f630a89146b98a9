//! The RabbitMQ management HTTP API (`rabbitmq_management` plugin), as far
//! as issuing and withdrawing per-session broker users needs it.

use reqwest::{Client, Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

/// Where the management API is and who administers it.
#[derive(Clone)]
pub struct BrokerAdminConfig {
    /// The management API's base URL, e.g. `http://127.0.0.1:15672`.
    pub url: String,
    /// An administrator (tag `administrator`): creates users and sets their
    /// permissions. Never given to a client.
    pub user: String,
    /// The administrator's password.
    pub password: String,
    /// The virtual host the bus uses (`/` by default).
    pub vhost: String,
}

impl std::fmt::Debug for BrokerAdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAdminConfig")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// A management API call that failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configured URL cannot be used.
    #[error("broker management URL {url:?} is invalid: {reason}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// Why.
        reason: String,
    },
    /// No answer (refused, timed out, TLS failure).
    #[error("broker management API unreachable while {during}: {source}")]
    Unreachable {
        /// What was being done.
        during: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// An answer other than success.
    #[error("broker management API answered {status} while {during}: {body}")]
    Status {
        /// What was being done.
        during: String,
        /// The HTTP status.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
}

/// One binding of a queue, as the management API lists it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Binding {
    pub source: String,
    pub routing_key: String,
    pub properties_key: String,
}

#[derive(Debug, Deserialize)]
struct Named {
    name: String,
}

#[derive(Debug, Deserialize)]
struct ConnectionInfo {
    name: String,
    #[serde(default)]
    user: String,
}

/// A client of the management API.
#[derive(Debug, Clone)]
pub(crate) struct ManagementApi {
    http: Client,
    base: Url,
    config: BrokerAdminConfig,
}

impl ManagementApi {
    pub(crate) fn new(config: BrokerAdminConfig) -> Result<ManagementApi, BrokerError> {
        let bad = |reason: String| BrokerError::BadUrl {
            url: config.url.clone(),
            reason,
        };
        let base = Url::parse(&config.url).map_err(|e| bad(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(bad("must be an http:// or https:// URL".into()));
        }
        // reqwest is built without a default TLS provider; ring is the one
        // the rest of the tree uses (installing twice is harmless).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|source| BrokerError::Unreachable {
                during: "building the HTTP client".into(),
                source,
            })?;
        Ok(ManagementApi { http, base, config })
    }

    /// `<base>/api/<segments...>`, each segment percent-encoded (the
    /// default vhost is `/`).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("api").extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<Value>,
        during: impl Fn() -> String,
    ) -> Result<reqwest::Response, BrokerError> {
        let mut request = self
            .http
            .request(method, self.url(segments))
            .basic_auth(&self.config.user, Some(&self.config.password));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| BrokerError::Unreachable {
                during: during(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(BrokerError::Status {
            during: during(),
            status,
            body: body.chars().take(300).collect(),
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        during: impl Fn() -> String,
    ) -> Result<T, BrokerError> {
        let response = self.send(Method::GET, segments, None, &during).await?;
        response
            .json()
            .await
            .map_err(|source| BrokerError::Unreachable {
                during: during(),
                source,
            })
    }

    /// Deletes something; one that is already gone is fine.
    async fn delete(
        &self,
        segments: &[&str],
        during: impl Fn() -> String,
    ) -> Result<(), BrokerError> {
        match self.send(Method::DELETE, segments, None, during).await {
            Ok(_) => Ok(()),
            Err(BrokerError::Status { status, .. }) if status == StatusCode::NOT_FOUND => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates `user` (no tags: no management access) or resets its password.
    pub(crate) async fn put_user(&self, user: &str, password: &str) -> Result<(), BrokerError> {
        let body = json!({ "password": password, "tags": "" });
        self.send(Method::PUT, &["users", user], Some(body), || {
            format!("creating broker user {user}")
        })
        .await
        .map(drop)
    }

    /// Sets `user`'s configure/write/read regular expressions on the vhost.
    pub(crate) async fn set_permissions(
        &self,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), BrokerError> {
        let body = json!({ "configure": configure, "write": write, "read": read });
        let vhost = self.config.vhost.as_str();
        self.send(
            Method::PUT,
            &["permissions", vhost, user],
            Some(body),
            || format!("setting the permissions of broker user {user}"),
        )
        .await
        .map(drop)
    }

    /// Deletes `user`; gone already is fine.
    pub(crate) async fn delete_user(&self, user: &str) -> Result<(), BrokerError> {
        self.delete(&["users", user], || format!("deleting broker user {user}"))
            .await
    }

    /// Every broker user's name.
    pub(crate) async fn users(&self) -> Result<Vec<String>, BrokerError> {
        let users: Vec<Named> = self
            .json(&["users"], || "listing broker users".into())
            .await?;
        Ok(users.into_iter().map(|u| u.name).collect())
    }

    /// Closes every connection `user` has open (deleting a user does not).
    pub(crate) async fn close_connections(&self, user: &str) -> Result<(), BrokerError> {
        let vhost = self.config.vhost.as_str();
        let connections: Vec<ConnectionInfo> = self
            .json(&["vhosts", vhost, "connections"], || {
                format!("listing the connections of {user}")
            })
            .await?;
        for connection in connections.iter().filter(|c| c.user == user) {
            self.delete(&["connections", &connection.name], || {
                format!("closing a connection of {user}")
            })
            .await?;
        }
        Ok(())
    }

    /// Declares a durable queue that keeps at most `max_length` messages
    /// (the oldest are dropped: notifications are hints).
    pub(crate) async fn declare_queue(
        &self,
        queue: &str,
        max_length: u32,
    ) -> Result<(), BrokerError> {
        let body = json!({
            "durable": true,
            "auto_delete": false,
            "arguments": { "x-max-length": max_length, "x-overflow": "drop-head" },
        });
        let vhost = self.config.vhost.as_str();
        self.send(Method::PUT, &["queues", vhost, queue], Some(body), || {
            format!("declaring queue {queue}")
        })
        .await
        .map(drop)
    }

    /// Deletes `queue`; gone already is fine.
    pub(crate) async fn delete_queue(&self, queue: &str) -> Result<(), BrokerError> {
        let vhost = self.config.vhost.as_str();
        self.delete(&["queues", vhost, queue], || {
            format!("deleting queue {queue}")
        })
        .await
    }

    /// The bindings of `queue` (including the default exchange's).
    pub(crate) async fn bindings(&self, queue: &str) -> Result<Vec<Binding>, BrokerError> {
        let vhost = self.config.vhost.as_str();
        self.json(&["queues", vhost, queue, "bindings"], || {
            format!("listing the bindings of {queue}")
        })
        .await
    }

    /// Binds `queue` to `exchange` under `key`.
    pub(crate) async fn bind(
        &self,
        exchange: &str,
        queue: &str,
        key: &str,
    ) -> Result<(), BrokerError> {
        let vhost = self.config.vhost.as_str();
        let body = json!({ "routing_key": key });
        self.send(
            Method::POST,
            &["bindings", vhost, "e", exchange, "q", queue],
            Some(body),
            || format!("binding {queue} to {key}"),
        )
        .await
        .map(drop)
    }

    /// Removes one binding (as listed by [`ManagementApi::bindings`]).
    pub(crate) async fn unbind(&self, queue: &str, binding: &Binding) -> Result<(), BrokerError> {
        let vhost = self.config.vhost.as_str();
        let segments = [
            "bindings",
            vhost,
            "e",
            binding.source.as_str(),
            "q",
            queue,
            binding.properties_key.as_str(),
        ];
        self.delete(&segments, || {
            format!("unbinding {queue} from {}", binding.routing_key)
        })
        .await
    }
}
