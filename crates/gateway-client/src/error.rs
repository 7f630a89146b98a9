//! What can go wrong between a device and the gateway, and how each failure
//! maps to the protocol error the rest of the client understands.

use stacksync_proto::{Error, ErrorKind};

/// A failure of one gateway call, with the endpoint it concerned.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL cannot be used.
    #[error("bad gateway URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The HTTP exchange failed before a response arrived (connection
    /// refused or reset, timeout): the server may or may not have acted.
    #[error("{endpoint}: transport failed: {source}")]
    Transport {
        /// The endpoint path.
        endpoint: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{endpoint}: {error}")]
    Server {
        /// The endpoint path.
        endpoint: String,
        /// The error as the server sent it.
        error: Error,
    },
    /// The server's answer could not be understood.
    #[error("{endpoint}: unreadable response (HTTP {status}): {reason}")]
    BadResponse {
        /// The endpoint path.
        endpoint: String,
        /// The HTTP status of the response.
        status: u16,
        /// What was wrong with it.
        reason: String,
    },
    /// The server's answer is longer than any right answer can be; it was
    /// refused while it streamed in.
    #[error("{endpoint}: response over {limit} bytes refused")]
    ResponseTooLarge {
        /// The endpoint path.
        endpoint: String,
        /// The most this answer may hold.
        limit: usize,
    },
    /// The WebSocket could not be opened or broke.
    #[error("notifications: websocket failed: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
}

impl ClientError {
    /// Whether repeating the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Transport { .. } | ClientError::WebSocket(_) => true,
            ClientError::Server { error, .. } => error.kind.is_transient(),
            // A proxy in front of the gateway answering 502/503/504 without
            // our JSON body means the gateway is restarting.
            ClientError::BadResponse { status, .. } => matches!(status, 502..=504),
            ClientError::BadUrl { .. } | ClientError::ResponseTooLarge { .. } => false,
        }
    }
}

impl From<ClientError> for Error {
    fn from(err: ClientError) -> Error {
        match err {
            ClientError::Server { error, .. } => error,
            ClientError::BadUrl { .. } => Error::bad_request(err.to_string()),
            ClientError::Transport { .. } | ClientError::WebSocket(_) => {
                Error::unavailable(err.to_string())
            }
            ClientError::BadResponse {
                status: 502..=504, ..
            } => Error::unavailable(err.to_string()),
            ClientError::BadResponse { .. } | ClientError::ResponseTooLarge { .. } => {
                Error::new(ErrorKind::Internal, err.to_string())
            }
        }
    }
}
