//! The one error type of the crate.
//!
//! [`VaultError::kind`] is precise so callers and tests can react to each
//! failure; `Display` says only what a user needs. Nothing here ever carries
//! bytes chosen by the server, and the message never says which byte-level
//! check failed: an attacker probing with forged blobs learns "rejected" and
//! nothing more.

use std::fmt;

use stacksync_proto::ids::UserId;

/// What went wrong, precisely enough to act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// Authentication failed: an AEAD tag or a signature does not verify,
    /// or a key opened from a statement is not the key the statement's
    /// signed commitment lists for its generation.
    Tampered,
    /// Something older than what was already seen (a lower epoch, version
    /// or key generation).
    Rollback,
    /// Two different blobs claim the same place in a history (same
    /// membership epoch or same item version with different contents, or a
    /// statement committing to another key for a generation already
    /// committed).
    Fork,
    /// A statement does not follow the last one seen (previous-hash
    /// mismatch or missing statements in between).
    BrokenChain,
    /// An older or unknown format, or key-derivation parameters below the
    /// floor this client enforces.
    Downgrade,
    /// A key generation this key ring does not hold.
    UnknownGeneration,
    /// The user is not a member (me, or a signer or author).
    NotAMember,
    /// A member did something their role does not allow (a read-only member
    /// signing, a non-owner changing the member list).
    NotAllowed,
    /// A member's keys differ from the ones pinned for them; carries the
    /// user (a member id, already authenticated by the statement signature).
    KeyChanged {
        /// Whose keys changed.
        user: UserId,
    },
    /// A membership statement with no members.
    EmptyMembers,
    /// The same user listed twice, or members out of canonical order.
    DuplicateMember,
    /// Members were removed without a new key generation.
    ShrunkWithoutRotation,
    /// Bytes that do not parse (truncated, trailing bytes, over a cap).
    Malformed,
    /// A blob that is authentic but not for the place the server put it
    /// (other workspace, item, version, parent, name or size).
    WrongPlace,
    /// A passphrase-sealed blob that does not open: wrong passphrase or
    /// damaged blob (the two cannot be told apart).
    WrongPassphrase,
    /// The caller asked for something invalid (a name too long, a signer
    /// who is not a member, parameters below the floor when sealing).
    InvalidInput,
    /// The operating system's random source failed.
    Random,
}

/// The error of every operation in this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultError {
    kind: ErrorKind,
}

impl VaultError {
    /// An error of the given kind.
    pub(crate) fn new(kind: ErrorKind) -> VaultError {
        VaultError { kind }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl From<ErrorKind> for VaultError {
    fn from(kind: ErrorKind) -> VaultError {
        VaultError::new(kind)
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match &self.kind {
            Tampered | Malformed => f.write_str(
                "data from the server cannot be authenticated: it was changed or damaged",
            ),
            Rollback => {
                f.write_str("the server returned older data than this device has already seen")
            }
            Fork => f.write_str("the server showed two different versions of the same history"),
            BrokenChain => f.write_str(
                "the membership history is incomplete or does not follow the one this device knows",
            ),
            Downgrade => f.write_str("data uses an outdated or weakened format and was refused"),
            UnknownGeneration => {
                f.write_str("data is encrypted with a key this device does not have")
            }
            NotAMember => f.write_str("data was written or signed by someone who is not a member"),
            NotAllowed => f.write_str("a member made a change their role does not allow"),
            KeyChanged { user } => write!(
                f,
                "the security keys of user {user} changed; compare fingerprints before trusting them"
            ),
            EmptyMembers => f.write_str("the membership list is empty"),
            DuplicateMember => f.write_str("the membership list is invalid"),
            ShrunkWithoutRotation => {
                f.write_str("members were removed without changing the workspace key")
            }
            WrongPlace => f.write_str("the server put authentic data in the wrong place"),
            WrongPassphrase => f.write_str("wrong passphrase, or the protected key is damaged"),
            InvalidInput => f.write_str("invalid request"),
            Random => f.write_str("the system's random number generator failed"),
        }
    }
}

impl std::error::Error for VaultError {}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, VaultError>;

/// `Err` of the given kind.
pub(crate) fn fail<T>(kind: ErrorKind) -> Result<T> {
    Err(VaultError::new(kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only `KeyChanged` carries data, a user id from a signed statement;
    /// every other message is a fixed string. The match is exhaustive so a
    /// new variant with data has to be looked at here.
    #[test]
    fn display_echoes_nothing_but_a_signed_user_id() {
        use ErrorKind::*;
        let user = UserId::new();
        let all = [
            Tampered,
            Rollback,
            Fork,
            BrokenChain,
            Downgrade,
            UnknownGeneration,
            NotAMember,
            NotAllowed,
            KeyChanged { user },
            EmptyMembers,
            DuplicateMember,
            ShrunkWithoutRotation,
            Malformed,
            WrongPlace,
            WrongPassphrase,
            InvalidInput,
            Random,
        ];
        for kind in all {
            let shown = VaultError::new(kind.clone()).to_string();
            match kind {
                KeyChanged { user } => assert!(shown.contains(&user.to_string())),
                Tampered
                | Rollback
                | Fork
                | BrokenChain
                | Downgrade
                | UnknownGeneration
                | NotAMember
                | NotAllowed
                | EmptyMembers
                | DuplicateMember
                | ShrunkWithoutRotation
                | Malformed
                | WrongPlace
                | WrongPassphrase
                | InvalidInput
                | Random => {
                    assert!(!shown.contains(&user.to_string()));
                    assert!(!shown.chars().any(|c| c.is_ascii_digit()), "{shown}");
                }
            }
        }
    }

    #[test]
    fn display_never_names_the_failed_check() {
        let shown = VaultError::new(ErrorKind::Malformed).to_string();
        assert_eq!(shown, VaultError::new(ErrorKind::Tampered).to_string());
        assert!(!shown.contains("byte"));
    }
}
