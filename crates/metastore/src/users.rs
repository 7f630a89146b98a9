//! Users, devices and login sessions.

use sqlx::any::AnyRow;
use stacksync_proto::{Account, Device, DeviceId, Error, UserId};

use crate::error::{DbContext, StoreError};
use crate::rows::dynamic;
use crate::rows::{get, parse_id, to_u64};
use crate::{MetaStore, now_ms};

/// A user to create. The password must already be hashed (the service uses
/// Argon2id); the store never sees a password.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub quota_limit: u64,
    pub storage_user: Option<String>,
}

/// A stored user, with the password hash for the service to verify.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub account: Account,
    pub password_hash: String,
    /// Whether an administrator disabled the account: it may not log in and
    /// none of its sessions authenticates.
    pub disabled: bool,
}

/// Which of a user's sessions [`MetaStore::revoke_sessions`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation<'a> {
    /// The one session with this token hash (logout).
    Only(&'a str),
    /// Every session but the one with this token hash (a password change
    /// keeps the session that made it).
    AllExcept(&'a str),
    /// Every session (logout everywhere, disable, password reset).
    All,
}

const USER_COLS: &str =
    "id, email, name, password_hash, storage_user, quota_limit, quota_used, disabled_at";

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        account: Account {
            id: parse_id("users", &get::<String>(row, "id")?)?,
            name: get(row, "name")?,
            email: get(row, "email")?,
            quota_limit: to_u64("users", get(row, "quota_limit")?)?,
            quota_used: to_u64("users", get(row, "quota_used")?)?,
            storage_user: get(row, "storage_user")?,
        },
        password_hash: get(row, "password_hash")?,
        disabled: get::<Option<i64>>(row, "disabled_at")?.is_some(),
    })
}

pub(crate) fn device_from_row(row: &AnyRow) -> Result<Device, StoreError> {
    Ok(Device {
        id: parse_id("devices", &get::<String>(row, "id")?)?,
        user: parse_id("devices", &get::<String>(row, "user_id")?)?,
        name: get(row, "name")?,
        os: get(row, "os")?,
        app_version: get(row, "app_version")?,
        last_ip: get(row, "last_ip")?,
        last_access: get(row, "last_access")?,
    })
}

/// Lower-cases and trims an email; refuses what cannot be an address.
pub(crate) fn normalize_email(email: &str) -> Result<String, Error> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(e)
    } else {
        Err(Error::bad_request(format!(
            "not an email address: {email:?}"
        )))
    }
}

fn limited(field: &str, s: &str, max: usize) -> Result<(), Error> {
    if s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::bad_request(format!(
            "{field} is longer than {max} bytes or has control characters"
        )));
    }
    Ok(())
}

impl MetaStore {
    /// Creates a user. An email already in use is a bad request.
    pub async fn create_user(&self, new: NewUser) -> Result<Account, StoreError> {
        let email = normalize_email(&new.email)?;
        limited("name", &new.name, 255)?;
        let quota =
            i64::try_from(new.quota_limit).map_err(|_| Error::bad_request("quota too large"))?;
        let id = UserId::new();
        let taken = sqlx::query("SELECT 1 AS one FROM users WHERE email = $1")
            .bind(&email)
            .fetch_optional(&self.pool)
            .await
            .ctx("checking an email")?;
        if taken.is_some() {
            return Err(
                Error::bad_request(format!("a user with email {email} exists already")).into(),
            );
        }
        sqlx::query(
            "INSERT INTO users (id, email, name, password_hash, storage_user, quota_limit, quota_used, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(id.to_string())
        .bind(&email)
        .bind(&new.name)
        .bind(&new.password_hash)
        .bind(&new.storage_user)
        .bind(quota)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .ctx("creating a user")?;
        Ok(self.user(id).await?.account)
    }

    /// The user with this id.
    pub async fn user(&self, id: UserId) -> Result<UserRecord, StoreError> {
        let row = sqlx::query(dynamic(format!(
            "SELECT {USER_COLS} FROM users WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a user")?
        .ok_or_else(|| Error::not_found(format!("no user {id}")))?;
        user_from_row(&row)
    }

    /// The user with this email (case-insensitive), if any.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRecord>, StoreError> {
        let Ok(email) = normalize_email(email) else {
            return Ok(None);
        };
        let row = sqlx::query(dynamic(format!(
            "SELECT {USER_COLS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a user by email")?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Registers a device for `user` (`id: None`, or an id not yet known) or
    /// updates one the user owns. A device id of another user is forbidden.
    pub async fn upsert_device(
        &self,
        user: UserId,
        id: Option<DeviceId>,
        name: &str,
        os: &str,
        app_version: &str,
        last_ip: Option<&str>,
    ) -> Result<Device, StoreError> {
        limited("device name", name, 255)?;
        limited("os", os, 255)?;
        limited("app version", app_version, 64)?;
        let now = now_ms();
        // Not `unwrap_or_default`: the default id is NIL, a new device needs a fresh one.
        let id = match id {
            Some(id) => id,
            None => DeviceId::new(),
        };
        if id == DeviceId::NIL {
            return Err(Error::bad_request("the nil device id is not a device").into());
        }
        match self.device(id).await? {
            Some(d) if d.user != user => {
                return Err(
                    Error::forbidden(format!("device {id} belongs to another user")).into(),
                );
            }
            Some(_) => {
                sqlx::query(
                    "UPDATE devices SET name = $1, os = $2, app_version = $3, last_ip = $4, last_access = $5 \
                     WHERE id = $6",
                )
                .bind(name)
                .bind(os)
                .bind(app_version)
                .bind(last_ip)
                .bind(now)
                .bind(id.to_string())
                .execute(&self.pool)
                .await
                .ctx("updating a device")?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO devices (id, user_id, name, os, app_version, last_ip, last_access) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id.to_string())
                .bind(user.to_string())
                .bind(name)
                .bind(os)
                .bind(app_version)
                .bind(last_ip)
                .bind(now)
                .execute(&self.pool)
                .await
                .ctx("registering a device")?;
            }
        }
        self.device(id)
            .await?
            .ok_or_else(|| Error::internal("device vanished").into())
    }

    /// The device with this id, if any.
    pub async fn device(&self, id: DeviceId) -> Result<Option<Device>, StoreError> {
        let row = sqlx::query(
            "SELECT id, user_id, name, os, app_version, last_ip, last_access FROM devices WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a device")?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// Records a login session under the hash of its token.
    pub async fn create_session(
        &self,
        user: UserId,
        token_hash: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user.to_string())
            .bind(now_ms())
            .bind(expires_at)
            .execute(&self.pool)
            .await
            .ctx("creating a session")?;
        Ok(())
    }

    /// The user of an unexpired session of an enabled account, if any.
    /// Read from the database on every call (never cached), so that a
    /// revoked session or a disabled account is refused at once.
    pub async fn session_user(&self, token_hash: &str) -> Result<Option<UserId>, StoreError> {
        let row = sqlx::query(
            "SELECT s.user_id FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .ctx("reading a session")?;
        row.map(|r| parse_id("sessions", &get::<String>(&r, "user_id")?))
            .transpose()
    }

    /// The token hashes of `user`'s sessions (expired ones included), so
    /// that what was issued per session can be adjusted for each.
    pub async fn session_hashes(&self, user: UserId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT token_hash FROM sessions WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_all(&self.pool)
            .await
            .ctx("listing a user's sessions")?;
        rows.iter()
            .map(|r| get::<String>(r, "token_hash"))
            .collect()
    }

    /// Ends a session.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await
            .ctx("deleting a session")?;
        Ok(())
    }

    /// Ends `which` of `user`'s sessions (expired ones included) and
    /// returns the token hashes it ended, so that whatever was issued per
    /// session (e.g. broker credentials) can be revoked with them. A token
    /// hash of another user's session is never touched.
    pub async fn revoke_sessions(
        &self,
        user: UserId,
        which: Revocation<'_>,
    ) -> Result<Vec<String>, StoreError> {
        let (sql, hash) = match which {
            Revocation::Only(h) => (
                "DELETE FROM sessions WHERE user_id = $1 AND token_hash = $2 RETURNING token_hash",
                Some(h),
            ),
            Revocation::AllExcept(h) => (
                "DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2 RETURNING token_hash",
                Some(h),
            ),
            Revocation::All => (
                "DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash",
                None,
            ),
        };
        let mut query = sqlx::query(sql).bind(user.to_string());
        if let Some(h) = hash {
            query = query.bind(h);
        }
        let rows = query.fetch_all(&self.pool).await.ctx("revoking sessions")?;
        rows.iter()
            .map(|r| get::<String>(r, "token_hash"))
            .collect()
    }

    /// Replaces a user's password hash (the caller revokes sessions).
    pub async fn set_password_hash(
        &self,
        user: UserId,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user.to_string())
            .execute(&self.pool)
            .await
            .ctx("changing a password")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no user {user}")).into());
        }
        Ok(())
    }

    /// Disables (`true`) or re-enables a user. Disabling also ends every
    /// session in the same transaction, so no request of the user succeeds
    /// once this returns; returns the token hashes it ended.
    pub async fn set_disabled(
        &self,
        user: UserId,
        disabled: bool,
    ) -> Result<Vec<String>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let done = sqlx::query("UPDATE users SET disabled_at = $1 WHERE id = $2")
            .bind(disabled.then(now_ms))
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .ctx("disabling or enabling a user")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no user {user}")).into());
        }
        let ended = if disabled {
            let rows = sqlx::query("DELETE FROM sessions WHERE user_id = $1 RETURNING token_hash")
                .bind(user.to_string())
                .fetch_all(&mut *tx)
                .await
                .ctx("ending a disabled user's sessions")?;
            rows.iter()
                .map(|r| get::<String>(r, "token_hash"))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        tx.commit().await.ctx("committing a disabled user")?;
        Ok(ended)
    }
}
