//! What `stacksync admin` and `stacksync doctor` read and change beyond the
//! service's own operations: every user, device and workspace with the
//! figures an operator asks for (items, logical and stored bytes), the
//! installation's totals, a user's quota and storage user, the storage
//! grants each member's place calls for, and the state of the schema's
//! migrations read without applying any.
//!
//! Logical bytes are the sizes of the live files' latest versions (what
//! users see); stored bytes are the object ledger's (what the containers
//! hold, after deduplication, compression and packing, history included).

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Connection};
use stacksync_proto::{Account, Device, EncryptionMode, Error, UserId, Workspace, WorkspaceId};

use crate::error::{DbContext, StoreError};
use crate::rows::{corrupt, dynamic, flag, get, parse_id, to_u64};
use crate::store::{Backend, MIGRATOR};
use crate::users::device_from_row;
use crate::{MetaStore, now_ms};

/// A user as the administrator lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    /// The account (email, name, quota and its use, storage user).
    pub account: Account,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// When it was created (milliseconds since the epoch).
    pub created_at: i64,
    /// Devices registered.
    pub devices: u64,
    /// Workspaces owned (the private one and shared ones).
    pub owned_workspaces: u64,
    /// Workspaces they are a member of, owned ones included.
    pub memberships: u64,
    /// Unexpired sessions.
    pub live_sessions: u64,
}

/// A device with its owner's email and how many sessions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSummary {
    /// The device.
    pub device: Device,
    /// Its user's email.
    pub email: String,
    /// Unexpired sessions that registered it.
    pub live_sessions: u64,
}

/// A workspace with its figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSummary {
    /// Its id.
    pub id: WorkspaceId,
    /// Its owner.
    pub owner: UserId,
    /// The owner's email.
    pub owner_email: String,
    /// The owner's name for it.
    pub name: String,
    /// Whether it is a shared folder.
    pub is_shared: bool,
    /// Its encryption setting.
    pub encryption: EncryptionMode,
    /// Its storage container.
    pub container: String,
    /// Its latest revision.
    pub latest_revision: u64,
    /// Members, the owner included.
    pub members: u64,
    /// Live items (files and folders).
    pub live_items: u64,
    /// Sizes of the live files' latest versions.
    pub logical_bytes: u64,
    /// Objects in its container, per the ledger.
    pub stored_objects: u64,
    /// Bytes of those objects.
    pub stored_bytes: u64,
}

/// The installation's totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallationStats {
    /// User accounts.
    pub users: u64,
    /// Registered devices.
    pub devices: u64,
    /// Workspaces (private and shared).
    pub workspaces: u64,
    /// Live items in all workspaces.
    pub live_items: u64,
    /// Versions in all histories (deletes included).
    pub versions: u64,
    /// Objects in the ledger.
    pub stored_objects: u64,
    /// Bytes in the ledger.
    pub stored_bytes: u64,
    /// Sizes of the live files' latest versions.
    pub logical_bytes: u64,
}

impl InstallationStats {
    /// Logical bytes per stored byte (above 1: deduplication and
    /// compression save more than history and packing cost); `None` when
    /// nothing is stored.
    pub fn dedup_ratio(&self) -> Option<f64> {
        (self.stored_bytes > 0).then(|| self.logical_bytes as f64 / self.stored_bytes as f64)
    }
}

/// One member's storage user in a workspace, with the workspace as that
/// member sees it (read-only or not), for checking container ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageGrant {
    /// The workspace, as the member sees it.
    pub workspace: Workspace,
    /// The member's storage user.
    pub storage_user: String,
}

/// The schema's migrations as a database has them, next to this binary's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// Versions applied that this binary knows.
    pub applied: Vec<i64>,
    /// Migrations of this binary not applied yet (version, description):
    /// the server applies them on its next start.
    pub pending: Vec<(i64, String)>,
    /// Versions applied that this binary does not know (the database was
    /// used by a newer version).
    pub unknown: Vec<i64>,
    /// Versions whose application failed part-way.
    pub failed: Vec<i64>,
}

/// What [`probe`] found: the database answers, its schema, its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseProbe {
    /// Which database it is.
    pub backend: Backend,
    /// Its migrations.
    pub migrations: MigrationStatus,
    /// The database's clock (milliseconds since the epoch).
    pub now_ms: i64,
}

/// Connects once to `url` (without applying any migration, unlike
/// [`MetaStore::connect`]) and reads the state of its migrations and its
/// clock. Gives up after `timeout`.
pub async fn probe(url: &str, timeout: Duration) -> Result<DatabaseProbe, StoreError> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("sqlite:") {
        Backend::Sqlite
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Backend::Postgres
    } else {
        return Err(
            Error::bad_request("the database url is neither sqlite:// nor postgres://").into(),
        );
    };
    let mut conn = match tokio::time::timeout(timeout, AnyConnection::connect(url)).await {
        Ok(c) => c.ctx("connecting to the metadata database")?,
        Err(_) => {
            return Err(Error::unavailable(format!(
                "the metadata database did not answer within {}s",
                timeout.as_secs()
            ))
            .into());
        }
    };
    let found = probe_on(&mut conn, backend).await;
    let _ = conn.close().await;
    found
}

async fn probe_on(conn: &mut AnyConnection, backend: Backend) -> Result<DatabaseProbe, StoreError> {
    let (exists_sql, now_sql) = match backend {
        Backend::Sqlite => (
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS now_ms",
        ),
        Backend::Postgres => (
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now_ms",
        ),
    };
    let now_ms: i64 = get(
        &sqlx::query(now_sql)
            .fetch_one(&mut *conn)
            .await
            .ctx("reading the database's clock")?,
        "now_ms",
    )?;
    let exists: i64 = get(
        &sqlx::query(exists_sql)
            .fetch_one(&mut *conn)
            .await
            .ctx("looking for the migrations table")?,
        "n",
    )?;
    let mut done = Vec::new();
    if exists > 0 {
        let rows = sqlx::query(
            "SELECT version, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) AS ok \
             FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await
        .ctx("reading the applied migrations")?;
        for row in &rows {
            done.push((get::<i64>(row, "version")?, get::<i64>(row, "ok")? == 1));
        }
    }
    let mut status = MigrationStatus::default();
    for m in MIGRATOR.iter() {
        match done.iter().find(|(v, _)| *v == m.version) {
            Some((v, true)) => status.applied.push(*v),
            Some((v, false)) => status.failed.push(*v),
            None => status.pending.push((m.version, m.description.to_string())),
        }
    }
    status.unknown = done
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| !MIGRATOR.iter().any(|m| m.version == *v))
        .collect();
    Ok(DatabaseProbe {
        backend,
        migrations: status,
        now_ms,
    })
}

fn count(row: &AnyRow, col: &'static str) -> Result<u64, StoreError> {
    to_u64("admin", get(row, col)?)
}

const USER_SUMMARY: &str = "SELECT u.id, u.email, u.name, u.storage_user, u.quota_limit, u.quota_used, \
     u.disabled_at, u.created_at, \
     (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id) AS devices, \
     (SELECT COUNT(*) FROM workspaces w WHERE w.owner_id = u.id) AS owned, \
     (SELECT COUNT(*) FROM workspace_members m WHERE m.user_id = u.id) AS memberships, \
     (SELECT COUNT(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at > $1) AS sessions \
     FROM users u";

fn user_summary(row: &AnyRow) -> Result<UserSummary, StoreError> {
    Ok(UserSummary {
        account: Account {
            id: parse_id("users", &get::<String>(row, "id")?)?,
            name: get(row, "name")?,
            email: get(row, "email")?,
            quota_limit: to_u64("users", get(row, "quota_limit")?)?,
            quota_used: to_u64("users", get(row, "quota_used")?)?,
            storage_user: get(row, "storage_user")?,
        },
        disabled: get::<Option<i64>>(row, "disabled_at")?.is_some(),
        created_at: get(row, "created_at")?,
        devices: count(row, "devices")?,
        owned_workspaces: count(row, "owned")?,
        memberships: count(row, "memberships")?,
        live_sessions: count(row, "sessions")?,
    })
}

const WORKSPACE_SUMMARY: &str = "SELECT w.id, w.owner_id, u.email AS owner_email, om.name, w.is_shared, \
     w.encryption, w.container, w.latest_revision, \
     (SELECT COUNT(*) FROM workspace_members m WHERE m.workspace_id = w.id) AS members, \
     (SELECT COUNT(*) FROM items i WHERE i.workspace_id = w.id AND i.status <> 'DELETED') AS live_items, \
     (SELECT CAST(COALESCE(SUM(i.size), 0) AS BIGINT) FROM items i \
        WHERE i.workspace_id = w.id AND i.status <> 'DELETED' AND i.is_folder = 0) AS logical_bytes, \
     (SELECT COUNT(*) FROM objects o WHERE o.workspace_id = w.id) AS stored_objects, \
     (SELECT CAST(COALESCE(SUM(o.size), 0) AS BIGINT) FROM objects o WHERE o.workspace_id = w.id) AS stored_bytes \
     FROM workspaces w JOIN users u ON u.id = w.owner_id \
     LEFT JOIN workspace_members om ON om.workspace_id = w.id AND om.user_id = w.owner_id";

fn workspace_summary(row: &AnyRow) -> Result<WorkspaceSummary, StoreError> {
    let enc: String = get(row, "encryption")?;
    Ok(WorkspaceSummary {
        id: parse_id("workspaces", &get::<String>(row, "id")?)?,
        owner: parse_id("workspaces", &get::<String>(row, "owner_id")?)?,
        owner_email: get(row, "owner_email")?,
        name: get::<Option<String>>(row, "name")?.unwrap_or_default(),
        is_shared: flag(row, "is_shared")?,
        encryption: EncryptionMode::parse(&enc)
            .ok_or_else(|| corrupt("workspaces", enc.clone()))?,
        container: get(row, "container")?,
        latest_revision: to_u64("workspaces", get(row, "latest_revision")?)?,
        members: count(row, "members")?,
        live_items: count(row, "live_items")?,
        logical_bytes: count(row, "logical_bytes")?,
        stored_objects: count(row, "stored_objects")?,
        stored_bytes: count(row, "stored_bytes")?,
    })
}

impl MetaStore {
    /// Every user, by email.
    pub async fn admin_users(&self) -> Result<Vec<UserSummary>, StoreError> {
        let rows = sqlx::query(dynamic(format!("{USER_SUMMARY} ORDER BY u.email")))
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await
            .ctx("listing users")?;
        rows.iter().map(user_summary).collect()
    }

    /// One user.
    pub async fn admin_user(&self, user: UserId) -> Result<UserSummary, StoreError> {
        let row = sqlx::query(dynamic(format!("{USER_SUMMARY} WHERE u.id = $2")))
            .bind(now_ms())
            .bind(user.to_string())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a user")?
            .ok_or_else(|| Error::not_found(format!("no user {user}")))?;
        user_summary(&row)
    }

    /// Sets a user's quota (bytes stored in the workspaces they own). It
    /// applies to the next upload: every charge compares with the limit in
    /// the same statement. Lowering it below what is stored refuses new
    /// uploads and deletes nothing.
    pub async fn set_quota_limit(&self, user: UserId, bytes: u64) -> Result<(), StoreError> {
        let bytes = i64::try_from(bytes).map_err(|_| Error::bad_request("quota too large"))?;
        let done = sqlx::query("UPDATE users SET quota_limit = $1 WHERE id = $2")
            .bind(bytes)
            .bind(user.to_string())
            .execute(&self.pool)
            .await
            .ctx("setting a quota")?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!("no user {user}")).into());
        }
        Ok(())
    }

    /// Sets (or with `None` clears) the Swift user a user's clients reach
    /// storage as; returns the previous one. The caller moves the
    /// container grants.
    pub async fn set_storage_user(
        &self,
        user: UserId,
        storage_user: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await.ctx("beginning a transaction")?;
        let previous: Option<String> = sqlx::query("SELECT storage_user FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *tx)
            .await
            .ctx("reading a storage user")?
            .map(|r| get(&r, "storage_user"))
            .transpose()?
            .ok_or_else(|| Error::not_found(format!("no user {user}")))?;
        sqlx::query("UPDATE users SET storage_user = $1 WHERE id = $2")
            .bind(storage_user)
            .bind(user.to_string())
            .execute(&mut *tx)
            .await
            .ctx("setting a storage user")?;
        tx.commit().await.ctx("committing a storage user")?;
        Ok(previous)
    }

    /// Every device (or `user`'s), most recently seen first.
    pub async fn admin_devices(
        &self,
        user: Option<UserId>,
    ) -> Result<Vec<DeviceSummary>, StoreError> {
        let filter = if user.is_some() {
            "WHERE d.user_id = $2"
        } else {
            ""
        };
        let mut query = sqlx::query(dynamic(format!(
            "SELECT d.id, d.user_id, d.name, d.os, d.app_version, d.last_ip, d.last_access, u.email, \
             (SELECT COUNT(*) FROM sessions s WHERE s.device_id = d.id AND s.expires_at > $1) AS sessions \
             FROM devices d JOIN users u ON u.id = d.user_id {filter} \
             ORDER BY d.last_access DESC, d.id"
        )))
        .bind(now_ms());
        if let Some(u) = user {
            query = query.bind(u.to_string());
        }
        let rows = query.fetch_all(&self.pool).await.ctx("listing devices")?;
        rows.iter()
            .map(|r| {
                Ok(DeviceSummary {
                    device: device_from_row(r)?,
                    email: get(r, "email")?,
                    live_sessions: count(r, "sessions")?,
                })
            })
            .collect()
    }

    /// Every workspace (or those `member` belongs to), by owner and id.
    pub async fn admin_workspaces(
        &self,
        member: Option<UserId>,
    ) -> Result<Vec<WorkspaceSummary>, StoreError> {
        let filter = if member.is_some() {
            "WHERE w.id IN (SELECT workspace_id FROM workspace_members WHERE user_id = $1)"
        } else {
            ""
        };
        let mut query = sqlx::query(dynamic(format!(
            "{WORKSPACE_SUMMARY} {filter} ORDER BY u.email, w.is_shared, w.id"
        )));
        if let Some(u) = member {
            query = query.bind(u.to_string());
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .ctx("listing workspaces")?;
        rows.iter().map(workspace_summary).collect()
    }

    /// One workspace.
    pub async fn admin_workspace(&self, ws: WorkspaceId) -> Result<WorkspaceSummary, StoreError> {
        let row = sqlx::query(dynamic(format!("{WORKSPACE_SUMMARY} WHERE w.id = $1")))
            .bind(ws.to_string())
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a workspace")?
            .ok_or_else(|| Error::not_found(format!("no workspace {ws}")))?;
        workspace_summary(&row)
    }

    /// The installation's totals.
    pub async fn installation_stats(&self) -> Result<InstallationStats, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM users) AS users, \
             (SELECT COUNT(*) FROM devices) AS devices, \
             (SELECT COUNT(*) FROM workspaces) AS workspaces, \
             (SELECT COUNT(*) FROM items WHERE status <> 'DELETED') AS live_items, \
             (SELECT COUNT(*) FROM item_versions) AS versions, \
             (SELECT COUNT(*) FROM objects) AS stored_objects, \
             (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM objects) AS stored_bytes, \
             (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM items \
                WHERE status <> 'DELETED' AND is_folder = 0) AS logical_bytes",
        )
        .fetch_one(&self.pool)
        .await
        .ctx("counting the installation")?;
        Ok(InstallationStats {
            users: count(&row, "users")?,
            devices: count(&row, "devices")?,
            workspaces: count(&row, "workspaces")?,
            live_items: count(&row, "live_items")?,
            versions: count(&row, "versions")?,
            stored_objects: count(&row, "stored_objects")?,
            stored_bytes: count(&row, "stored_bytes")?,
            logical_bytes: count(&row, "logical_bytes")?,
        })
    }

    /// Every member with a storage user, with the workspace as they see
    /// it: what the containers' ACLs should grant.
    pub async fn storage_grants(&self) -> Result<Vec<StorageGrant>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.id, w.owner_id, w.is_shared, w.encryption, w.container, w.latest_revision, \
             m.name, m.read_only, u.storage_user FROM workspace_members m \
             JOIN workspaces w ON w.id = m.workspace_id JOIN users u ON u.id = m.user_id \
             WHERE u.storage_user IS NOT NULL ORDER BY w.container, u.storage_user",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("listing storage grants")?;
        rows.iter()
            .map(|r| {
                let enc: String = get(r, "encryption")?;
                Ok(StorageGrant {
                    workspace: Workspace {
                        id: parse_id("workspaces", &get::<String>(r, "id")?)?,
                        owner: parse_id("workspaces", &get::<String>(r, "owner_id")?)?,
                        name: get(r, "name")?,
                        is_shared: flag(r, "is_shared")?,
                        encryption: EncryptionMode::parse(&enc)
                            .ok_or_else(|| corrupt("workspaces", enc.clone()))?,
                        container: get(r, "container")?,
                        latest_revision: to_u64("workspaces", get(r, "latest_revision")?)?,
                        mount_parent: None,
                        read_only: flag(r, "read_only")?,
                    },
                    storage_user: get(r, "storage_user")?,
                })
            })
            .collect()
    }

    /// The containers of every workspace.
    pub async fn containers(&self) -> Result<Vec<(WorkspaceId, String)>, StoreError> {
        let rows = sqlx::query("SELECT id, container FROM workspaces ORDER BY container")
            .fetch_all(&self.pool)
            .await
            .ctx("listing containers")?;
        rows.iter()
            .map(|r| {
                Ok((
                    parse_id("workspaces", &get::<String>(r, "id")?)?,
                    get(r, "container")?,
                ))
            })
            .collect()
    }
}
