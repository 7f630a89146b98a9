//! Login throttling: what stands between a password guesser and Argon2.
//!
//! Every login, from the gateway or over the bus, passes through the one
//! [`LoginGuard`] of its [`crate::Service`]:
//!
//! * **Backoff per account and per address.** After a few failures a key is
//!   blocked for a time that doubles with every further failure; while it
//!   is blocked every attempt, even with the right password, is refused
//!   with `TooManyRequests` and a retry delay, without hashing anything. An
//!   account is keyed by its normalized email whether or not it exists, so
//!   the throttle itself tells nothing about which emails are accounts. An
//!   address is an IPv4 address or an IPv6 /64 (one subscriber's network).
//!   Over the bus there is no address: only the account limit applies.
//! * **A bounded hashing pool** ([`pool`]): few hashes at once, a short
//!   queue, overload refused at once (`Unavailable` with a retry delay).
//! * **Equal work for unknown emails**: they are verified against a dummy
//!   hash made once with the same parameters, so that a wrong email costs
//!   what a wrong password does.
//!
//! The state lives in this process: several server instances each keep
//! their own, so an attacker spread over N instances gets N times the
//! failures before a block. That is accepted: the blocks still grow
//! exponentially, and keeping the counters in the database would put a
//! write on every failed login for every instance. Each table is bounded
//! (see [`LoginLimits::max_tracked`]).

mod pool;
mod throttle;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use stacksync_proto::Error;

use crate::auth::{hash_password, verify_password};
use crate::error::ServiceError;
use pool::{HashPool, PoolError};
use throttle::{Policy, Throttle};

/// Limits on logins (part of [`crate::ServiceConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Password hashes computed at once (each takes ~19 MiB). Default 2.
    pub hash_workers: usize,
    /// Logins waiting for a hashing thread before further ones are refused
    /// at once. Default 16.
    pub hash_queue: usize,
    /// Failed logins an account may have before it is blocked. Default 5.
    pub account_failures: u32,
    /// Failed logins an address may have before it is blocked (higher: many
    /// people may share one address). Default 20.
    pub address_failures: u32,
    /// The first block; each further failure doubles it. Default 1 s.
    pub backoff_base: Duration,
    /// The longest block. Default 15 minutes.
    pub backoff_max: Duration,
    /// Failures older than this (and not blocking) are forgotten. Default 1 hour.
    pub forget_after: Duration,
    /// Most accounts and most addresses tracked, each (about 100 bytes per
    /// entry). Default 65536.
    pub max_tracked: usize,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            hash_workers: 2,
            hash_queue: 16,
            account_failures: 5,
            address_failures: 20,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(15 * 60),
            forget_after: Duration::from_secs(3600),
            max_tracked: 65_536,
        }
    }
}

/// The throttle key of an account: a hash of the normalized email, so that
/// a table entry is small whatever the client sent.
type AccountKey = [u8; 32];

fn account_key(email: &str) -> AccountKey {
    let normalized = email.trim().to_lowercase();
    *blake3::hash(normalized.as_bytes()).as_bytes()
}

/// The unit in which client addresses are counted (login throttling, the
/// gateway's connection caps): an IPv4 address, or an IPv6 /64, because an
/// IPv6 client usually holds a whole /64 and could rotate through billions
/// of addresses in it.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// The throttle and hashing pool of one service.
#[derive(Debug)]
pub(crate) struct LoginGuard {
    accounts: Mutex<Throttle<AccountKey>>,
    addresses: Mutex<Throttle<IpAddr>>,
    pool: HashPool,
    verifications: AtomicU64,
}

/// A refusal for a block of `wait`.
fn blocked(wait: Duration) -> Error {
    // Round up: "retry in 0 s" would invite an immediate retry.
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    Error::too_many_requests(
        format!("too many failed logins; try again in {secs} s"),
        secs,
    )
}

impl LoginGuard {
    /// A guard with these limits; starts the hashing threads.
    pub fn new(limits: &LoginLimits) -> std::io::Result<LoginGuard> {
        let policy = |free_failures| Policy {
            free_failures,
            base: limits.backoff_base,
            max: limits.backoff_max,
            forget_after: limits.forget_after,
            capacity: limits.max_tracked,
        };
        Ok(LoginGuard {
            accounts: Mutex::new(Throttle::new(policy(limits.account_failures))),
            addresses: Mutex::new(Throttle::new(policy(limits.address_failures))),
            pool: HashPool::new(limits.hash_workers, limits.hash_queue)?,
            verifications: AtomicU64::new(0),
        })
    }

    /// Refuses the attempt while its account or address is blocked.
    pub fn admit(&self, email: &str, peer: Option<IpAddr>) -> Result<(), Error> {
        let now = Instant::now();
        let account = lock(&self.accounts).check(&account_key(email), now);
        let address = match peer {
            Some(ip) => lock(&self.addresses).check(&address_group(ip), now),
            None => Ok(()),
        };
        let refused = match (account, address) {
            (Ok(()), Ok(())) => return Ok(()),
            (Err(a), Err(b)) => blocked(a.max(b)),
            (Err(wait), _) | (_, Err(wait)) => blocked(wait),
        };
        crate::metrics::login_failed("throttled");
        Err(refused)
    }

    /// Counts a failed attempt against its account and address.
    pub fn failed(&self, email: &str, peer: Option<IpAddr>) {
        crate::metrics::login_failed("password");
        let now = Instant::now();
        let key = account_key(email);
        if let Some(wait) = lock(&self.accounts).fail(&key, now) {
            tracing::info!(
                ?wait,
                "login blocked for an account after repeated failures"
            );
        }
        if let Some(ip) = peer
            && let Some(wait) = lock(&self.addresses).fail(&address_group(ip), now)
        {
            tracing::info!(%ip, ?wait, "logins blocked for an address after repeated failures");
        }
    }

    /// A successful login forgets its account's failures. The address's
    /// stay: otherwise a guesser holding one valid account could reset its
    /// address between guesses.
    pub fn succeeded(&self, email: &str) {
        lock(&self.accounts).clear(&account_key(email));
    }

    /// Verifies `password` against `stored`, or against the dummy hash when
    /// the account does not exist (`None`), on the hashing pool.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        let password = password.to_owned();
        let known = stored.is_some();
        let outcome = self
            .pool
            .run(move || {
                let stored = match &stored {
                    Some(s) => s.as_str(),
                    None => dummy_hash()?,
                };
                verify_password(&password, stored)
            })
            .await;
        match outcome {
            Ok(result) => {
                self.verifications.fetch_add(1, Ordering::Relaxed);
                // An unknown account never logs in, whatever the dummy says.
                Ok(result? && known)
            }
            Err(PoolError::Overloaded) => {
                let mut e = Error::unavailable("too many logins at once; try again shortly");
                e.retry_after_secs = Some(1);
                Err(e.into())
            }
            Err(PoolError::Gone) => Err(ServiceError::Password(
                "the password hashing threads stopped".into(),
            )),
        }
    }

    /// Password verifications run so far (known and unknown accounts alike).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }
}

/// A hash of a random password with the parameters of real ones, made once
/// per process (on a hashing thread, on first use).
fn dummy_hash() -> Result<&'static str, ServiceError> {
    static DUMMY: OnceLock<Result<String, String>> = OnceLock::new();
    let made = DUMMY.get_or_init(|| {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| e.to_string())?;
        hash_password(&hex::encode(secret)).map_err(|e| e.to_string())
    });
    match made {
        Ok(hash) => Ok(hash.as_str()),
        Err(e) => Err(ServiceError::Password(format!(
            "making the dummy hash: {e}"
        ))),
    }
}

/// Locks a table; a panic while holding it cannot leave a table half
/// updated in a way that matters (counts only), so poisoning is ignored.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_keyed_case_blind_and_ipv6_by_its_64() {
        assert_eq!(
            account_key(" Ann@Example.org"),
            account_key("ann@example.org")
        );
        assert_ne!(
            account_key("ann@example.org"),
            account_key("bob@example.org")
        );
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_group(a), address_group(b));
        assert_ne!(address_group(a), address_group(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_group(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_blocked_account_or_address_is_refused_with_a_retry_delay() {
        let limits = LoginLimits {
            account_failures: 2,
            address_failures: 3,
            backoff_base: Duration::from_secs(30),
            ..LoginLimits::default()
        };
        let guard = LoginGuard::new(&limits).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(guard.admit("a@x", Some(ip)).is_ok());
            guard.failed("a@x", Some(ip));
        }
        let e = guard.admit("A@x", None).unwrap_err();
        assert_eq!(e.kind, stacksync_proto::ErrorKind::TooManyRequests);
        assert_eq!(e.retry_after_secs, Some(30));
        // Not blocked per address yet (3 free failures), another account is fine.
        assert!(guard.admit("b@x", Some(ip)).is_ok());
        guard.failed("b@x", Some(ip));
        assert!(
            guard.admit("c@x", Some(ip)).is_err(),
            "the address is blocked now"
        );
        assert!(
            guard.admit("c@x", None).is_ok(),
            "over the bus only the account counts"
        );
        guard.succeeded("a@x");
        assert!(guard.admit("a@x", None).is_ok());
    }
}
