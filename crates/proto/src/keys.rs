//! Public identities and key statements of end-to-end encrypted workspaces
//! (`EncryptionMode::ClientSide`), as the server sees them: opaque bytes it
//! stores and relays but can neither verify nor create. What they mean is
//! the client's business (`stacksync-vault`: a public identity, and the
//! signed, hash-chained membership statement of each epoch); the server's
//! part is to keep each workspace's chain append-only and serialized, to
//! serve it only to members, and to serve identities only to people who
//! share a workspace.
//!
//! Bytes travel as lower-case hex strings (`hex_bytes`): JSON has no bytes,
//! and a compressed message gives the doubling back.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::ids::UserId;

/// Largest public identity the server stores (a vault identity is 80
/// bytes; the margin leaves room for a later format).
pub const MAX_IDENTITY_BYTES: usize = 1024;

/// Most users one `GetIdentities` asks about.
pub const MAX_IDENTITY_USERS: usize = 1024;

/// Largest sealed private identity the server keeps for its owner (a
/// vault identity sealed under a passphrase is about 200 bytes).
pub const MAX_SEALED_IDENTITY_BYTES: usize = 1024;

/// Largest key statement the server stores. A statement of 1024 members
/// with their wrapped keys and a long key history stays well below it.
pub const MAX_KEY_STATEMENT_BYTES: usize = 256 * 1024;

/// Most statements one `GetKeyStatements` page holds (a larger `limit` is
/// lowered to it).
pub const MAX_KEY_STATEMENTS: u32 = 256;

/// Statement bytes one page stops after (the statement that crosses it
/// is the page's last; a page always holds at least one statement when
/// there is one), so a page stays far below `wire::MAX_MESSAGE_BYTES`
/// once hex-encoded.
pub const KEY_STATEMENTS_PAGE_BYTES: u64 = 4 * 1024 * 1024;

/// A user's public identity as they last published it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedIdentity {
    pub user: UserId,
    /// Opaque to the server.
    #[serde(with = "hex_bytes")]
    pub identity: Vec<u8>,
    /// When these bytes were first published (a publication of the same
    /// bytes again leaves it as it was), milliseconds since the epoch.
    pub changed_at: Millis,
}

/// One statement of a workspace's key chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatement {
    /// 1 for the first statement, then each one more than the previous.
    pub epoch: u64,
    /// Opaque to the server.
    #[serde(with = "hex_bytes")]
    pub statement: Vec<u8>,
}

/// Bytes as lower-case hex, the spelling they have on the wire and in
/// the metadata store.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Inverse of [`to_hex`]; `None` for anything but hex.
pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// Serde for bytes as a lower-case hex string.
pub mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as lower-case hex.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    /// Reads hex (either case) into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Serde for optional bytes as a lower-case hex string (absent when `None`;
/// use with `#[serde(default, skip_serializing_if = "Option::is_none")]`).
pub mod hex_bytes_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as lower-case hex (or nothing).
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    /// Reads hex (either case) into bytes; `null` is `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|t| hex::decode(t.as_bytes()).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_travel_as_hex() {
        let s = KeyStatement {
            epoch: 2,
            statement: vec![0, 0xab, 0xff],
        };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json, serde_json::json!({"epoch": 2, "statement": "00abff"}));
        let back: KeyStatement = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        let bad = serde_json::json!({"epoch": 2, "statement": "0g"});
        assert!(serde_json::from_value::<KeyStatement>(bad).is_err());
    }
}
