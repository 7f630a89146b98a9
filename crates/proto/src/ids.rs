//! Typed identifiers. Entity ids are UUIDs (chosen by whoever creates the
//! entity; the service checks that a client-chosen id does not collide with
//! an entity it may not touch). Content ids are 32-byte BLAKE3 digests.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// An id string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {value:?}")]
pub struct ParseIdError {
    /// Which kind of id was expected.
    pub kind: &'static str,
    /// The offending input, truncated to 80 characters.
    pub value: String,
}

impl ParseIdError {
    fn new(kind: &'static str, value: &str) -> Self {
        ParseIdError {
            kind,
            value: value.chars().take(80).collect(),
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                $name(Uuid::now_v7())
            }
            /// The nil id; never a valid entity.
            pub const NIL: $name = $name(Uuid::nil());
        }

        impl Default for $name {
            fn default() -> Self {
                Self::NIL
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($kind, "({})"), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                Uuid::parse_str(s).map($name).map_err(|_| ParseIdError::new($kind, s))
            }
        }
    };
}

uuid_id!(
    /// A StackSync user (an account holder).
    UserId, "user"
);
uuid_id!(
    /// One installation of a client on one computer or phone.
    DeviceId, "device"
);
uuid_id!(
    /// A workspace: a user's private space or one shared folder. Maps to one
    /// storage container.
    WorkspaceId, "workspace"
);
uuid_id!(
    /// A file or folder. Chosen by the client that creates it, so that a
    /// retried create is naturally idempotent and a batch can create a folder
    /// and its children together without a temporary-id mapping.
    ItemId, "item"
);

macro_rules! digest_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Parses exactly 64 hex characters.
            pub fn from_hex(s: &str) -> Result<Self, ParseIdError> {
                let mut out = [0u8; 32];
                if s.len() != 64 {
                    return Err(ParseIdError::new($kind, s));
                }
                hex::decode_to_slice(s, &mut out).map_err(|_| ParseIdError::new($kind, s))?;
                Ok($name(out))
            }
            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($kind, "({}…)"), &self.to_hex()[..12])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;
            fn from_str(s: &str) -> Result<Self, ParseIdError> {
                Self::from_hex(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_id!(
    /// The name of a chunk object: BLAKE3 of the chunk's plaintext, or keyed
    /// BLAKE3 (with the workspace key) in encrypted workspaces so that the id
    /// reveals nothing about the content to the server.
    ChunkId, "chunk id"
);
digest_id!(
    /// BLAKE3 of a whole file's plaintext, carried in item metadata.
    ContentHash, "content hash"
);

/// An id that depends only on what it is for, its scope and a request id,
/// so that a retried request (same request id) finds what its first
/// attempt created instead of creating a second one.
pub fn derived_id(purpose: &str, scope: uuid::Uuid, request: uuid::Uuid) -> uuid::Uuid {
    let mut h = blake3::Hasher::new_derive_key("stacksync-service 2026 derived entity id");
    h.update(purpose.as_bytes());
    h.update(&[0]);
    h.update(scope.as_bytes());
    h.update(request.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The shared workspace a share proposal makes: one per proposal, whoever
/// accepts first. The proposer's client knows it from the proposal's id
/// before it exists (the invitations of an end-to-end encrypted share are
/// kept by that id, see the client's `e2ee::keys`).
pub fn shared_workspace_id(proposal: uuid::Uuid) -> WorkspaceId {
    WorkspaceId(derived_id("shared workspace", proposal, uuid::Uuid::nil()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_id_hex_round_trip_and_rejects_garbage() {
        let id = ChunkId([0xab; 32]);
        let s = id.to_hex();
        assert_eq!(s.len(), 64);
        assert_eq!(ChunkId::from_hex(&s).unwrap(), id);
        assert!(ChunkId::from_hex(&s[..63]).is_err());
        assert!(ChunkId::from_hex(&"zz".repeat(32)).is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ChunkId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<ChunkId>("\"../../etc/passwd\"").is_err());
    }

    #[test]
    fn derived_ids_depend_on_every_input() {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert_eq!(derived_id("device", a, b), derived_id("device", a, b));
        assert_ne!(derived_id("device", a, b), derived_id("share", a, b));
        assert_ne!(derived_id("device", a, b), derived_id("device", b, a));
        assert_ne!(shared_workspace_id(a), shared_workspace_id(b));
    }

    #[test]
    fn uuid_ids_parse_and_display() {
        let id = ItemId::new();
        assert_eq!(id.to_string().parse::<ItemId>().unwrap(), id);
        assert!("not-a-uuid".parse::<ItemId>().is_err());
    }
}
