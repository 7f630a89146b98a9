//! Notification topics and their AMQP routing keys.

use std::fmt;
use std::str::FromStr;

use stacksync_proto::{UserId, WorkspaceId};

/// Who a notification is for: every device subscribed to a workspace
/// (multicast of commits), or every device of one user (share proposals,
/// workspace membership changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// All devices that follow this workspace.
    Workspace(WorkspaceId),
    /// All devices of this user.
    User(UserId),
}

impl Topic {
    /// The routing key used on the RabbitMQ notification exchange:
    /// `ws.<uuid>` or `user.<uuid>`. The prefix keeps the two id spaces apart
    /// even though both are UUIDs.
    pub fn routing_key(&self) -> String {
        self.to_string()
    }

    /// Parses a routing key produced by [`Topic::routing_key`].
    pub fn from_routing_key(key: &str) -> Option<Topic> {
        key.parse().ok()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::Workspace(id) => write!(f, "ws.{id}"),
            Topic::User(id) => write!(f, "user.{id}"),
        }
    }
}

/// A routing key that names no topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a topic routing key: {0:?}")]
pub struct ParseTopicError(pub String);

impl FromStr for Topic {
    type Err = ParseTopicError;

    fn from_str(key: &str) -> Result<Topic, ParseTopicError> {
        let bad = || ParseTopicError(key.chars().take(80).collect());
        if let Some(id) = key.strip_prefix("ws.") {
            return id.parse().map(Topic::Workspace).map_err(|_| bad());
        }
        if let Some(id) = key.strip_prefix("user.") {
            return id.parse().map(Topic::User).map_err(|_| bad());
        }
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_round_trip() {
        for topic in [
            Topic::Workspace(WorkspaceId::new()),
            Topic::User(UserId::new()),
        ] {
            assert_eq!(Topic::from_routing_key(&topic.routing_key()), Some(topic));
        }
    }

    #[test]
    fn foreign_keys_are_refused() {
        for key in [
            "",
            "ws.",
            "ws.nope",
            "user.1234",
            "group.00000000-0000-0000-0000-000000000000",
        ] {
            assert_eq!(Topic::from_routing_key(key), None, "{key:?}");
        }
    }
}
