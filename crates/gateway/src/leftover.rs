//! Request bodies a handler answered without reading.
//!
//! A refusal made before the body is read (a missing name, a bad
//! signature, a quota) leaves the body's bytes on the connection. hyper
//! then reads what has already arrived and, if the body is not all there,
//! closes the connection after the response, which it may already have
//! written as keep-alive: a client that sent its head and its body in two
//! writes then finds its next request on a closed connection (seen as
//! `RemoteDisconnected` in the API tests under load).
//!
//! So [`track`](crate::observe) hands back the unread body, and
//! [`settle`] reads a small one to its end before the response goes (the
//! connection stays usable), or marks the response `Connection: close`
//! when the body is large, unbounded or slow to come, so that the client
//! knows not to reuse the connection. A refusal of a large upload is never
//! delayed by its body.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use axum::http::{HeaderMap, HeaderValue, Version};
use axum::response::Response;

/// The largest declared body read to its end after a refusal.
pub(crate) const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long the rest of such a body may take to arrive.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// Where a request body dropped before its end is put back.
#[derive(Clone, Default)]
pub(crate) struct Slot(Arc<Mutex<Option<Body>>>);

impl Slot {
    /// Keeps `body`, which its reader dropped before its end.
    pub(crate) fn put(&self, body: Body) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
    }

    fn take(&self) -> Option<Body> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What a request declared about its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Declared {
    /// No body (no `Content-Length`, or zero, and not chunked).
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked: no length known.
    Unknown,
}

impl Declared {
    pub(crate) fn of(headers: &HeaderMap) -> Declared {
        if headers.contains_key(TRANSFER_ENCODING) {
            return Declared::Unknown;
        }
        match headers.get(CONTENT_LENGTH) {
            None => Declared::None,
            Some(v) => match v.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                Some(0) => Declared::None,
                Some(n) => Declared::Length(n),
                None => Declared::Unknown,
            },
        }
    }
}

/// Reads what is left of the request's body if the handler did not, when
/// it is small and comes soon; otherwise marks the response
/// `Connection: close` (HTTP/1 only; HTTP/2 streams end on their own).
/// Returns the bytes read.
pub(crate) async fn settle(
    slot: &Slot,
    version: Version,
    declared: Declared,
    response: &mut Response,
) -> u64 {
    let Some(body) = slot.take() else {
        return 0;
    };
    if !matches!(version, Version::HTTP_10 | Version::HTTP_11) {
        return 0;
    }
    let drained = match declared {
        Declared::None => return 0,
        Declared::Length(n) if n <= DRAIN_LIMIT => {
            match tokio::time::timeout(DRAIN_WAIT, axum::body::to_bytes(body, DRAIN_LIMIT as usize))
                .await
            {
                Ok(Ok(bytes)) => Some(bytes.len() as u64),
                Ok(Err(_)) | Err(_) => None,
            }
        }
        Declared::Length(_) | Declared::Unknown => None,
    };
    match drained {
        Some(n) => n,
        None => {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_bodies() {
        let mut h = HeaderMap::new();
        assert_eq!(Declared::of(&h), Declared::None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(Declared::of(&h), Declared::None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("12"));
        assert_eq!(Declared::of(&h), Declared::Length(12));
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(Declared::of(&h), Declared::Unknown);
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(Declared::of(&h), Declared::Unknown);
    }

    #[tokio::test]
    async fn a_small_unread_body_is_read_and_the_connection_kept() {
        let slot = Slot::default();
        slot.put(Body::from(vec![7u8; 100]));
        let mut response = Response::new(Body::empty());
        let n = settle(
            &slot,
            Version::HTTP_11,
            Declared::Length(100),
            &mut response,
        )
        .await;
        assert_eq!(n, 100);
        assert!(response.headers().get(CONNECTION).is_none());
    }

    #[tokio::test]
    async fn a_large_or_unknown_unread_body_closes_the_connection() {
        for declared in [Declared::Length(DRAIN_LIMIT + 1), Declared::Unknown] {
            let slot = Slot::default();
            slot.put(Body::from(vec![7u8; 100]));
            let mut response = Response::new(Body::empty());
            settle(&slot, Version::HTTP_11, declared, &mut response).await;
            assert_eq!(response.headers()[CONNECTION], "close", "{declared:?}");
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_come_closes_the_connection() {
        let slot = Slot::default();
        let (_tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
        slot.put(Body::from_stream(tokio_stream_of(rx)));
        let mut response = Response::new(Body::empty());
        settle(&slot, Version::HTTP_11, Declared::Length(10), &mut response).await;
        assert_eq!(response.headers()[CONNECTION], "close");
    }

    #[tokio::test]
    async fn nothing_left_or_http2_changes_nothing() {
        let slot = Slot::default();
        let mut response = Response::new(Body::empty());
        settle(&slot, Version::HTTP_11, Declared::Length(10), &mut response).await;
        assert!(response.headers().get(CONNECTION).is_none());
        slot.put(Body::from(vec![1u8; 10]));
        settle(&slot, Version::HTTP_2, Declared::Unknown, &mut response).await;
        assert!(response.headers().get(CONNECTION).is_none());
    }

    /// A stream of what `rx` receives.
    fn tokio_stream_of(
        rx: tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
    }
}
