//! The bus's own error type, and its mapping onto the protocol error.

use std::time::Duration;

use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// What went wrong on the bus. [`BusError::is_transient`] says whether the
/// caller should retry (with the same request id, so that the service can
/// recognise a repeat).
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No reply arrived in time. The request may still be processed; retry
    /// with the same request id.
    #[error("no reply within {after:?}")]
    Timeout {
        /// The timeout that expired.
        after: Duration,
    },
    /// The broker connection was lost while this operation was in flight;
    /// the backend reconnects in the background.
    #[error("connection to the broker lost during {during}")]
    Disconnected {
        /// The operation that was interrupted.
        during: &'static str,
    },
    /// The broker is not reachable right now (or was not within the wait).
    #[error("broker unavailable: {reason}")]
    Unavailable {
        /// Why, for the log.
        reason: String,
    },
    /// The broker refused to take responsibility for a message (negative
    /// publisher confirm), e.g. because a queue is over its limits.
    #[error("broker refused to confirm {what}")]
    Refused {
        /// What was being published.
        what: &'static str,
    },
    /// An AMQP operation failed for a reason other than a lost connection,
    /// e.g. a queue declared elsewhere with different arguments.
    #[error("AMQP {during} failed: {source}")]
    Amqp {
        /// The operation that failed.
        during: &'static str,
        /// The client library's error.
        #[source]
        source: lapin::Error,
    },
    /// The configuration cannot work (bad URL, empty namespace, ...).
    #[error("invalid bus configuration: {0}")]
    InvalidConfig(String),
}

impl BusError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BusError::Timeout { .. }
                | BusError::Disconnected { .. }
                | BusError::Unavailable { .. }
                | BusError::Refused { .. }
        )
    }

    /// Classifies a lapin error: a dead connection or channel is transient
    /// (we reconnect), anything else is reported with its context.
    pub(crate) fn amqp(during: &'static str, source: lapin::Error) -> BusError {
        use lapin::ErrorKind as K;
        match source.kind() {
            K::InvalidChannelState(..)
            | K::InvalidConnectionState(_)
            | K::IOError(_)
            | K::MissingHeartbeatError => BusError::Disconnected { during },
            // The broker closing the connection on purpose (restart,
            // `rabbitmqctl close_connection`) is a disconnect, not a bug.
            K::ProtocolError(e)
                if matches!(
                    e.kind(),
                    AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED)
                ) =>
            {
                BusError::Disconnected { during }
            }
            // An exchange or queue the other side declares is not there
            // (yet): after a broker restart, a publish can come before the
            // service has declared its topology again. Retry later.
            K::ProtocolError(e)
                if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)) =>
            {
                BusError::Unavailable {
                    reason: format!("{during}: {e}"),
                }
            }
            _ => BusError::Amqp { during, source },
        }
    }
}

impl From<BusError> for stacksync_proto::Error {
    fn from(err: BusError) -> Self {
        if err.is_transient() {
            stacksync_proto::Error::unavailable(err.to_string())
        } else {
            stacksync_proto::Error::internal(err.to_string())
        }
    }
}
