//! Broker credentials for direct clients: one RabbitMQ user per session,
//! created through the management API and confined by its permissions.
//!
//! A session's broker user (also the name of its notification queue) is
//! `<ns>.s.<token hash>`: the service recognises the session a request
//! came from by the broker-checked AMQP `user_id`, and the sweep finds the
//! session of any broker user without a table of its own. Its permissions:
//! - configure `^$`: it declares, binds and deletes nothing;
//! - write: only the request exchange `<ns>.rpc` (never the default
//!   exchange, which routes to any queue by name);
//! - read: only its own notification queue, which the service declares and
//!   binds to the topics of the workspaces the user belongs to (direct
//!   reply-to needs no permission: the broker hands each channel its own
//!   replies).
//!
//! No exchange is a topic exchange, so no topic permissions are needed.
//! Credentials stop working when the session ends: [`Service::sweep_broker_users`]
//! deletes every broker user of this namespace whose session is gone (logout,
//! revocation or expiry alike), and [`Service::revoke_broker_session`] does it
//! at once for one session.

mod admin;

use std::collections::HashSet;

use stacksync_bus::{Topic, Topology};
use stacksync_proto::{Error, UserId};

use admin::ManagementApi;
pub use admin::{BrokerAdminConfig, BrokerError};

use crate::Service;
use crate::auth::token_hash;
use crate::error::ServiceError;

/// Most notifications a session's queue keeps while its device is away;
/// older ones are dropped (the change feed has them all).
const QUEUE_MAX_LENGTH: u32 = 10_000;

/// Longest namespace that still leaves room for `.s.<64 hex>` in a queue
/// name (at most 255 bytes).
const MAX_NAMESPACE: usize = 180;

/// Issues and withdraws per-session broker users for one bus namespace.
#[derive(Debug, Clone)]
pub struct BrokerAdmin {
    api: ManagementApi,
    namespace: String,
    topology: Topology,
}

/// What a direct client gets: its own broker user, and the queue its
/// notifications arrive in.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerCredentials {
    /// The broker user name.
    pub user: String,
    /// Its password (shown once).
    pub password: String,
    /// The notification queue the user may consume.
    pub queue: String,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCredentials")
            .field("user", &self.user)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl BrokerAdmin {
    /// An administration of `namespace`'s broker users through the
    /// management API in `config`.
    pub fn new(config: BrokerAdminConfig, namespace: &str) -> Result<BrokerAdmin, BrokerError> {
        if namespace.len() > MAX_NAMESPACE {
            return Err(BrokerError::BadUrl {
                url: config.url,
                reason: format!(
                    "the bus namespace must be at most {MAX_NAMESPACE} characters to issue broker credentials"
                ),
            });
        }
        Ok(BrokerAdmin {
            api: ManagementApi::new(config)?,
            namespace: namespace.to_owned(),
            topology: Topology::for_namespace(namespace),
        })
    }

    /// The prefix of every broker user (and queue) this namespace issues.
    fn prefix(&self) -> String {
        format!("{}.s.", self.namespace)
    }

    /// The broker user (and queue) of the session with this token hash.
    fn user_for(&self, token_hash: &str) -> String {
        format!("{}{token_hash}", self.prefix())
    }

    /// `(configure, write, read)` for a session's user.
    fn permissions(&self, queue: &str) -> (String, String, String) {
        (
            "^$".to_owned(),
            format!("^{}$", regex_literal(&self.topology.request_exchange)),
            format!("^{}$", regex_literal(queue)),
        )
    }
}

/// `s` as a regular expression matching exactly itself. Names are made of
/// `[A-Za-z0-9._-]` (the bus checks namespaces), of which only `.` is
/// special; anything else is escaped too, to be safe.
fn regex_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !c.is_ascii_alphanumeric() && c != '_' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A fresh broker password: 32 bytes from the OS RNG, in hex.
fn new_password() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Password(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Service {
    fn broker_admin(&self) -> Result<&BrokerAdmin, Error> {
        self.broker().ok_or_else(|| {
            Error::bad_request(
                "this server does not issue broker credentials (its [bus.admin] section is not set); use the gateway transport",
            )
        })
    }

    /// Creates (or re-creates, with a new password) the broker user of the
    /// session `token`, with its notification queue bound to the user's
    /// topics. Only over HTTPS: the password must not travel on the bus.
    pub async fn issue_broker_credentials(&self, token: &str) -> Result<BrokerCredentials, Error> {
        let user = self.authenticate(token).await?;
        let admin = self.broker_admin()?;
        let name = admin.user_for(&token_hash(token));
        let password = new_password()?;
        let (configure, write, read) = admin.permissions(&name);
        let api = &admin.api;
        async {
            api.put_user(&name, &password).await?;
            api.set_permissions(&name, &configure, &write, &read).await
        }
        .await
        .map_err(ServiceError::from)?;
        let queue = self.bind_notifications(user, token).await?;
        Ok(BrokerCredentials {
            user: name,
            password,
            queue,
        })
    }

    /// Declares the notification queue of session `token` (of `user`) and
    /// binds it to exactly the user's topic and those of the workspaces
    /// they belong to now (stale bindings are removed). Returns the queue.
    pub async fn bind_notifications(&self, user: UserId, token: &str) -> Result<String, Error> {
        let admin = self.broker_admin()?;
        let queue = admin.user_for(&token_hash(token));
        let wanted: HashSet<String> = self
            .topics_for(user)
            .await?
            .iter()
            .map(Topic::routing_key)
            .collect();
        admin
            .api
            .declare_queue(&queue, QUEUE_MAX_LENGTH)
            .await
            .map_err(ServiceError::from)?;
        sync_bindings(admin, &queue, &wanted)
            .await
            .map_err(ServiceError::from)?;
        Ok(queue)
    }

    /// Re-binds the notification queue of every session of `user` that has
    /// a broker user to the topics the user follows now: after the user was
    /// removed from a workspace, their direct clients stop hearing it at
    /// once, whether or not they ask to be re-bound. A failure is logged
    /// (the client re-binds on the `Unshared` notification anyway).
    pub(crate) async fn rebind_sessions_of(&self, user: UserId) {
        let Some(admin) = self.broker() else {
            return;
        };
        let rebind = async {
            let hashes = self.store().session_hashes(user).await?;
            let users: HashSet<String> = admin.api.users().await?.into_iter().collect();
            let wanted: HashSet<String> = self
                .topics_for(user)
                .await?
                .iter()
                .map(Topic::routing_key)
                .collect();
            for hash in hashes {
                let queue = admin.user_for(&hash);
                if users.contains(&queue) {
                    sync_bindings(admin, &queue, &wanted).await?;
                }
            }
            Ok::<(), ServiceError>(())
        };
        if let Err(e) = rebind.await {
            tracing::warn!(%user, error = %e, "notification queues not re-bound yet");
        }
    }

    /// Checks that a request taken from the bus was published by the broker
    /// user of the session it names. Without broker administration (shared
    /// broker credentials) there is nothing to check against.
    pub fn check_bus_sender(&self, token: &str, sender: Option<&str>) -> Result<(), Error> {
        let Some(admin) = self.broker() else {
            return Ok(());
        };
        if sender == Some(admin.user_for(&token_hash(token)).as_str()) {
            Ok(())
        } else {
            Err(Error::unauthenticated(
                "this session's requests must come from its own broker user",
            ))
        }
    }

    /// Withdraws the broker user and queue of the session with this token
    /// hash, and closes its connections. Call it when a session ends (the
    /// sweep catches any path that does not).
    pub async fn revoke_broker_session(&self, token_hash: &str) -> Result<(), Error> {
        let Some(admin) = self.broker() else {
            return Ok(());
        };
        let name = admin.user_for(token_hash);
        let api = &admin.api;
        async {
            api.delete_user(&name).await?;
            api.close_connections(&name).await?;
            api.delete_queue(&name).await
        }
        .await
        .map_err(|e| ServiceError::from(e).to_proto())
    }

    /// Withdraws every broker user of this namespace whose session no longer
    /// exists or has expired. Returns how many were withdrawn.
    pub async fn sweep_broker_users(&self) -> Result<usize, Error> {
        let Some(admin) = self.broker() else {
            return Ok(0);
        };
        let prefix = admin.prefix();
        let users = admin.api.users().await.map_err(ServiceError::from)?;
        let mut withdrawn = 0;
        for name in users {
            let Some(hash) = name.strip_prefix(&prefix) else {
                continue;
            };
            // Only names this service could have made: 64 hex characters.
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let live = self
                .store()
                .session_user(hash)
                .await
                .map_err(ServiceError::from)?;
            if live.is_none() {
                self.revoke_broker_session(hash).await?;
                withdrawn += 1;
            }
        }
        Ok(withdrawn)
    }
}

/// Makes `queue`'s bindings on the notification exchange exactly `wanted`.
async fn sync_bindings(
    admin: &BrokerAdmin,
    queue: &str,
    wanted: &HashSet<String>,
) -> Result<(), BrokerError> {
    let exchange = admin.topology.notify_exchange.as_str();
    let api = &admin.api;
    let current: Vec<_> = api
        .bindings(queue)
        .await?
        .into_iter()
        .filter(|b| b.source == exchange)
        .collect();
    for stale in current.iter().filter(|b| !wanted.contains(&b.routing_key)) {
        api.unbind(queue, stale).await?;
    }
    let have: HashSet<&str> = current.iter().map(|b| b.routing_key.as_str()).collect();
    for key in wanted.iter().filter(|k| !have.contains(k.as_str())) {
        api.bind(exchange, queue, key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permissions_match_only_their_own_names() {
        let admin = BrokerAdmin::new(
            BrokerAdminConfig {
                url: "http://127.0.0.1:15672".into(),
                user: "admin".into(),
                password: "x".into(),
                vhost: "/".into(),
            },
            "ss-t.1",
        )
        .unwrap();
        let name = admin.user_for(&"ab".repeat(32));
        let (configure, write, read) = admin.permissions(&name);
        assert_eq!(configure, "^$");
        assert_eq!(write, "^ss\\-t\\.1\\.rpc$");
        assert_eq!(read, format!("^ss\\-t\\.1\\.s\\.{}$", "ab".repeat(32)));
        assert!(
            BrokerAdmin::new(
                BrokerAdminConfig {
                    url: "ftp://x".into(),
                    user: "a".into(),
                    password: "b".into(),
                    vhost: "/".into(),
                },
                "ns"
            )
            .is_err()
        );
    }
}
