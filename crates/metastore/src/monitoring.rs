//! What the server's `/metrics` and `/ready` read of the database: the
//! connection pool's use, a round trip, and two cheap counts (live
//! sessions, signed-in devices). No table is written.

use crate::error::{DbContext, StoreError};
use crate::rows::{get, to_u64};
use crate::{MetaStore, now_ms};

/// The connection pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// Connections open (idle or in use).
    pub size: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// Sessions and devices that could act now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCounts {
    /// Unexpired sessions (of every kind: desktop, web, app).
    pub sessions: u64,
    /// Devices with at least one unexpired session.
    pub devices: u64,
}

impl MetaStore {
    /// The connection pool's use, without touching the database.
    pub fn pool_use(&self) -> PoolUse {
        PoolUse {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }

    /// One round trip to the database (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .fetch_one(&self.pool)
            .await
            .ctx("pinging the database")?;
        Ok(())
    }

    /// Live sessions and signed-in devices: two counts over the sessions
    /// table, one statement.
    pub async fn live_counts(&self) -> Result<LiveCounts, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS sessions, COUNT(DISTINCT device_id) AS devices \
             FROM sessions WHERE expires_at > $1",
        )
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await
        .ctx("counting live sessions")?;
        Ok(LiveCounts {
            sessions: to_u64("sessions", get(&row, "sessions")?)?,
            devices: to_u64("sessions", get(&row, "devices")?)?,
        })
    }
}
