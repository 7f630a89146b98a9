//! Versioned encoding of every message that crosses a process boundary.
//!
//! A message travels as `{"v": N, "body": ...}` JSON. Readers accept any
//! `v` up to their own [`PROTOCOL_VERSION`] and ignore fields they do not
//! know, so a newer peer may add optional fields without breaking older
//! ones; a change that old readers cannot ignore bumps the version, and a
//! reader refuses a body from the future with a clear error instead of
//! misreading it.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest message accepted from a peer, in bytes. Chunk data never travels
/// in these messages, only metadata, so this is generous.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    v: u16,
    body: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn<T> {
    // `v` was checked first through `VersionOnly`; serde ignores it here.
    body: T,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u16,
}

/// Encodes `body` in the current protocol version.
pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    // Serializing our own types to JSON cannot fail: no maps with non-string
    // keys, no foreign Serialize impls that error.
    serde_json::to_vec(&EnvelopeOut {
        v: PROTOCOL_VERSION,
        body,
    })
    .expect("protocol types always serialize to JSON")
}

/// Decodes a message, refusing oversized input, unknown future versions and
/// malformed bodies with a [`ErrorKind::BadRequest`] or
/// [`ErrorKind::UnsupportedVersion`] error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "message of {} bytes exceeds {MAX_MESSAGE_BYTES}",
                bytes.len()
            ),
        ));
    }
    let version: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_request(format!("malformed message: {e}")))?;
    if version.v == 0 || version.v > PROTOCOL_VERSION {
        return Err(Error::new(
            ErrorKind::UnsupportedVersion,
            format!(
                "protocol version {} not supported (this side speaks 1..={PROTOCOL_VERSION})",
                version.v
            ),
        ));
    }
    let env: EnvelopeIn<T> = serde_json::from_slice(bytes)
        .map_err(|e| Error::bad_request(format!("malformed message body: {e}")))?;
    Ok(env.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkspaceId;
    use crate::rpc::{Request, RpcRequest};

    fn sample() -> RpcRequest {
        RpcRequest {
            request_id: uuid::Uuid::nil(),
            token: "t".into(),
            request: Request::GetChanges {
                workspace: WorkspaceId::NIL,
                since: 7,
                limit: 100,
            },
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample());
        assert_eq!(decode::<RpcRequest>(&bytes).unwrap(), sample());
    }

    #[test]
    fn unknown_fields_from_newer_peers_are_ignored() {
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample())).unwrap();
        v["body"]["future_field"] = serde_json::json!(42);
        v["body"]["request"]["another"] = serde_json::json!("x");
        let bytes = serde_json::to_vec(&v).unwrap();
        assert_eq!(decode::<RpcRequest>(&bytes).unwrap(), sample());
    }

    #[test]
    fn future_versions_and_garbage_are_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&encode(&sample())).unwrap();
        v["v"] = serde_json::json!(PROTOCOL_VERSION + 1);
        let err = decode::<RpcRequest>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::UnsupportedVersion);
        assert_eq!(
            decode::<RpcRequest>(b"{").unwrap_err().kind,
            ErrorKind::BadRequest
        );
        assert_eq!(
            decode::<RpcRequest>(b"{\"v\":1,\"body\":{}}")
                .unwrap_err()
                .kind,
            ErrorKind::BadRequest
        );
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            decode::<RpcRequest>(&huge).unwrap_err().kind,
            ErrorKind::TooLarge
        );
    }
}
