//! Passwords, session tokens and ids derived from requests.
//!
//! Passwords are stored as Argon2id PHC strings. A session token is 32
//! random bytes shown to the client once, in hex; the database keeps only
//! its BLAKE3 hash, so a leaked database does not leak live sessions.

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordVerifier};
use std::net::IpAddr;

use stacksync_metastore::SessionKind;
use stacksync_proto::{Error, ErrorKind, Millis, UserId};

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

pub(crate) use stacksync_proto::ids::derived_id;

pub(crate) fn now_ms() -> Millis {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl Service {
    /// Checks a password and opens a session. A wrong password and an
    /// unknown email give the same answer after the same work, so accounts
    /// cannot be probed. Same as [`Service::login_from`] without an address
    /// (the bus carries none).
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, Error> {
        self.login_from(email, password, None).await
    }

    /// [`Service::login`] from a known client address: failures count
    /// against the address as well as the account, and either may be
    /// blocked for a while (`TooManyRequests`, see `login_guard`).
    pub async fn login_from(
        &self,
        email: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Session, Error> {
        let user = self.check_password(email, password, peer).await?;
        self.open_session(user).await.map_err(|e| e.to_proto())
    }

    /// The one password check of every path that takes a password (login,
    /// the OAuth authorization page): the throttle admits the attempt, the
    /// hashing pool verifies it (an unknown email against the dummy hash),
    /// and the outcome is counted against the account and `peer`. A
    /// disabled account is refused, said only to whoever knows its
    /// password.
    pub(crate) async fn check_password(
        &self,
        email: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<UserId, Error> {
        let guard = self.login_guard();
        guard.admit(email, peer)?;
        match self.password_user(email, password).await {
            Ok(user) => {
                guard.succeeded(email);
                Ok(user)
            }
            Err(e) => {
                let e = e.to_proto();
                if e.kind == ErrorKind::Unauthenticated {
                    guard.failed(email, peer);
                }
                Err(e)
            }
        }
    }

    async fn password_user(&self, email: &str, password: &str) -> Result<UserId, ServiceError> {
        let refused = || Error::unauthenticated("wrong email or password");
        if password.len() > 1024 {
            return Err(refused().into());
        }
        // An unknown email is verified against a dummy hash: the same work
        // as a wrong password, so timing does not tell accounts apart.
        let user = self.store().user_by_email(email).await?;
        let stored = user.as_ref().map(|u| u.password_hash.clone());
        let ok = self.login_guard().verify(password, stored).await?;
        let Some(user) = user.filter(|_| ok) else {
            return Err(refused().into());
        };
        // Said only to whoever knows the password: it cannot probe accounts.
        if user.disabled {
            return Err(
                Error::unauthenticated("this account is disabled; ask the administrator").into(),
            );
        }
        Ok(user.account.id)
    }

    async fn open_session(&self, user: UserId) -> Result<Session, ServiceError> {
        self.open_session_of(user, SessionKind::Client, "").await
    }

    /// Opens a session of `kind` (a browser's carries its `label`).
    pub(crate) async fn open_session_of(
        &self,
        user: UserId,
        kind: SessionKind,
        label: &str,
    ) -> Result<Session, ServiceError> {
        let token = new_token()?;
        let ttl = Millis::try_from(self.config().session_ttl.as_millis()).unwrap_or(Millis::MAX);
        let expires_at = now_ms().saturating_add(ttl);
        self.store()
            .create_session_of(user, &token_hash(&token), expires_at, kind, label)
            .await?;
        Ok(Session {
            token,
            user,
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
            Ok(None) => Err(Error::unauthenticated(
                "the session has ended or expired (logged out, password changed or account disabled): log in again",
            )),
            Err(e) => Err(ServiceError::from(e).to_proto()),
        }
    }

    /// Ends a session (logout). Unknown or ended tokens are ignored.
    pub async fn logout(&self, token: &str) -> Result<(), Error> {
        match self.authenticate(token).await {
            Ok(user) => {
                let hash = token_hash(token);
                self.revoke_sessions(user, stacksync_metastore::Revocation::Only(&hash))
                    .await
                    .map(drop)
            }
            Err(e) if e.kind == stacksync_proto::ErrorKind::Unauthenticated => Ok(()),
            Err(e) => Err(e),
        }
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
}
