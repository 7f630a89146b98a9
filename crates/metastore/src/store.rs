//! Connecting, migrating, and the handle every operation hangs off.

use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions, Executor};

use crate::error::{DbContext, StoreError};

/// Which database sits behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The metadata store. Cheap to clone (a pool handle); safe to share between
/// tasks and between sync-service instances on one PostgreSQL.
#[derive(Clone, Debug)]
pub struct MetaStore {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

/// Every schema migration, in order (`migrations/NNNN_*.sql`), embedded in
/// the binary: `connect` brings any older database up to date.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl MetaStore {
    /// Connects to `url` (`sqlite:///path/db.sqlite?mode=rwc` or
    /// `postgres://user@host:port/db`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<MetaStore, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(stacksync_proto::Error::bad_request(format!(
                "unsupported database url {:?}: use sqlite:// or postgres://",
                url.split('@').next_back().unwrap_or(url)
            ))
            .into());
        };
        let options: AnyConnectOptions = url.parse().ctx("parsing the database url")?;
        let options = options.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            // SQLite allows one writer at a time; more connections only
            // queue on its lock. Readers still run in parallel under WAL.
            .max_connections(match backend {
                Backend::Sqlite => 4,
                Backend::Postgres => 16,
            })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Pages are read through a memory map and a larger
                        // cache: with SQLite's default 2 MB cache, listing
                        // a large workspace spent a fifth of its time in
                        // `pread` copying pages in again. The map's size is
                        // a ceiling, not an allocation.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000; \
                             PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -32768;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .ctx("connecting to the metadata database")?;
        MIGRATOR.run(&pool).await?;
        let keyed = crate::name_keys::fill_missing(&pool).await?;
        if keyed > 0 {
            tracing::info!(
                items = keyed,
                "stored the name keys of items written before them"
            );
        }
        Ok(MetaStore { pool, backend })
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; pending operations finish first.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl MetaStore {
    /// The connection pool, for tests that must reach under the store's
    /// rules (e.g. to show that the database itself enforces a constraint).
    #[doc(hidden)]
    pub fn raw_pool(&self) -> &AnyPool {
        &self.pool
    }
}
