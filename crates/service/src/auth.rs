//! Passwords, session tokens and ids derived from requests.
//!
//! Passwords are stored as Argon2id PHC strings. A session token is 32
//! random bytes shown to the client once, in hex; the database keeps only
//! its BLAKE3 hash, so a leaked database does not leak live sessions.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordVerifier};
use stacksync_proto::{Error, Millis, UserId};
use uuid::Uuid;

use crate::error::ServiceError;
use crate::{Service, Session};

/// Hashes a password with Argon2id and a random salt (PHC string). Slow on
/// purpose: call it off the async runtime (`spawn_blocking`).
pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Password(e.to_string()))
}

/// Whether `password` matches a stored PHC string. A malformed stored hash
/// is an error, not a mismatch, so that it shows in the log.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, ServiceError> {
    match Argon2::default().verify_password(password.as_bytes(), stored) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(ServiceError::Password(e.to_string())),
    }
}

/// The hash under which a session token is stored (BLAKE3, hex).
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// A fresh session token: 32 bytes from the OS RNG, in hex.
fn new_token() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ServiceError::Password(e.to_string()))?;
    Ok(hex::encode(bytes))
}

/// An id that depends only on what it is for, who asks and the request id,
/// so that a retried request (same request id) finds what its first attempt
/// created instead of creating a second one.
pub(crate) fn derived_id(purpose: &str, scope: Uuid, request: Uuid) -> Uuid {
    let mut h = blake3::Hasher::new_derive_key("stacksync-service 2026 derived entity id");
    h.update(purpose.as_bytes());
    h.update(&[0]);
    h.update(scope.as_bytes());
    h.update(request.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn now_ms() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl Service {
    /// Checks a password and opens a session. A wrong password and an
    /// unknown email give the same answer, so accounts cannot be probed.
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, Error> {
        Ok(self.login_inner(email, password).await?)
    }

    async fn login_inner(&self, email: &str, password: &str) -> Result<Session, ServiceError> {
        let refused = || Error::unauthenticated("wrong email or password");
        if password.len() > 1024 {
            return Err(refused().into());
        }
        let Some(user) = self.store().user_by_email(email).await? else {
            return Err(refused().into());
        };
        let (password, stored) = (password.to_owned(), user.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &stored)).await??;
        if !ok {
            return Err(refused().into());
        }
        let token = new_token()?;
        let ttl = Millis::try_from(self.config().session_ttl.as_millis()).unwrap_or(Millis::MAX);
        let expires_at = now_ms().saturating_add(ttl);
        self.store()
            .create_session(user.account.id, &token_hash(&token), expires_at)
            .await?;
        Ok(Session {
            token,
            user: user.account.id,
            expires_at,
        })
    }

    /// The user of a live session token; `Unauthenticated` otherwise.
    pub async fn authenticate(&self, token: &str) -> Result<UserId, Error> {
        // Tokens are 64 hex characters; anything else cannot be one, and is
        // refused without a database round trip.
        if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::unauthenticated("missing or malformed session token"));
        }
        match self.store().session_user(&token_hash(token)).await {
            Ok(Some(user)) => Ok(user),
            Ok(None) => Err(Error::unauthenticated("unknown or expired session")),
            Err(e) => Err(ServiceError::from(e).to_proto()),
        }
    }

    /// Ends a session (logout). Unknown tokens are ignored.
    pub async fn logout(&self, token: &str) -> Result<(), Error> {
        let hash = token_hash(token);
        self.store()
            .delete_session(&hash)
            .await
            .map_err(|e| ServiceError::from(e).to_proto())?;
        // The session's broker user goes with it; if the broker cannot be
        // reached now, the periodic sweep withdraws it later.
        if let Err(e) = self.revoke_broker_session(&hash).await {
            tracing::warn!(error = %e, "broker user of an ended session not withdrawn yet");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_refuse() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h).unwrap());
        assert!(!verify_password("wrong horse", &h).unwrap());
        assert!(verify_password("x", "not a phc string").is_err());
    }

    #[test]
    fn derived_ids_depend_on_every_input() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(derived_id("device", a, b), derived_id("device", a, b));
        assert_ne!(derived_id("device", a, b), derived_id("share", a, b));
        assert_ne!(derived_id("device", a, b), derived_id("device", b, a));
    }
}
