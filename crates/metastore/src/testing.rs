//! Fresh databases for tests (this crate's and the service's): a SQLite file
//! in a temporary folder, or a new PostgreSQL database dropped afterwards.
//!
//! PostgreSQL is found through `STACKSYNC_TEST_POSTGRES` (an admin URL such
//! as `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset, a
//! test under `CI=true` panics (a missing service must fail loudly), and
//! anywhere else it is skipped with a message on stderr.

use std::path::PathBuf;

use sqlx::{AnyPool, Connection};

use crate::MetaStore;

/// A store on a database that lives as long as this value.
pub struct TestDb {
    pub store: MetaStore,
    _cleanup: Cleanup,
}

/// A database as an older server left it: only the migrations up to a
/// given version applied, and no store on it yet (a store's `connect`
/// would upgrade it). Lives as long as this value.
pub struct OldSchemaDb {
    /// Where it is: pass to [`MetaStore::connect`] to upgrade it.
    pub url: String,
    /// A plain connection pool, for writing rows in the old schema.
    pub pool: AnyPool,
    _cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

/// The PostgreSQL admin URL for tests, or `None` (after printing why) when
/// tests should skip. Panics under `CI=true` if the variable is unset.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("STACKSYNC_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "STACKSYNC_TEST_POSTGRES is not set under CI=true: PostgreSQL tests cannot run (scripts/test sets it)"
            )
        }
        _ => {
            eprintln!(
                "SKIP: STACKSYNC_TEST_POSTGRES is not set; PostgreSQL test skipped (run scripts/test)"
            );
            None
        }
    }
}

/// A new, empty database: a SQLite file in a temporary folder, or a
/// PostgreSQL database (`None` when PostgreSQL tests are skipped).
async fn fresh_database(postgres: bool) -> Option<(String, Cleanup)> {
    if !postgres {
        let dir =
            std::env::temp_dir().join(format!("stacksync-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let url = format!("sqlite://{}?mode=rwc", dir.join("meta.sqlite").display());
        return Some((url, Cleanup::Dir(dir)));
    }
    let admin_url = postgres_admin_url()?;
    sqlx::any::install_default_drivers();
    let name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at STACKSYNC_TEST_POSTGRES is unreachable: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("CREATE DATABASE works");
    admin.close().await.ok();
    let url = match admin_url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("STACKSYNC_TEST_POSTGRES must end in /DATABASE"),
    };
    Some((url, Cleanup::Postgres { admin_url, name }))
}

impl TestDb {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> TestDb {
        TestDb::new(false)
            .await
            .expect("SQLite tests are never skipped")
    }

    /// A store on a fresh PostgreSQL database, or `None` when PostgreSQL
    /// tests are skipped (see the module docs).
    pub async fn postgres() -> Option<TestDb> {
        TestDb::new(true).await
    }

    /// The SQLite test database, or the PostgreSQL one when `postgres`.
    pub async fn new(postgres: bool) -> Option<TestDb> {
        let (url, cleanup) = fresh_database(postgres).await?;
        let store = MetaStore::connect(&url)
            .await
            .expect("a fresh database opens");
        Some(TestDb {
            store,
            _cleanup: cleanup,
        })
    }
}

impl OldSchemaDb {
    /// Runs `statements` in order, each with its `$n` parameters bound to
    /// the strings given (rows written as an older server wrote them);
    /// panics naming the statement that fails.
    pub async fn execute(&self, statements: &[(&'static str, Vec<String>)]) {
        for (sql, binds) in statements {
            let mut query = sqlx::query(*sql);
            for b in binds {
                query = query.bind(b.as_str());
            }
            query
                .execute(&self.pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    /// Closes the plain pool and opens a store on the database, which
    /// upgrades it; panics if the upgrade fails.
    pub async fn upgrade(&self) -> MetaStore {
        self.pool.close().await;
        MetaStore::connect(&self.url)
            .await
            .expect("the old database upgrades")
    }

    /// A fresh database (SQLite, or PostgreSQL when `postgres`; `None` when
    /// PostgreSQL tests are skipped) with the migrations up to `version`
    /// applied, as a server of that schema would have left it.
    pub async fn new(postgres: bool, version: i64) -> Option<OldSchemaDb> {
        let (url, cleanup) = fresh_database(postgres).await?;
        sqlx::any::install_default_drivers();
        let pool = AnyPool::connect(&url)
            .await
            .expect("a fresh database opens");
        crate::store::MIGRATOR
            .run_to(version, &pool)
            .await
            .expect("the old migrations apply");
        Some(OldSchemaDb {
            url,
            pool,
            _cleanup: cleanup,
        })
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop runs outside async; a short-lived runtime on its own
                // thread drops the database (FORCE ends our pool's sessions).
                let (url, sql) = (
                    admin_url.clone(),
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                );
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let mut c = sqlx::AnyConnection::connect(&url).await.ok()?;
                        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut c)
                            .await
                            .ok()
                    })
                })
                .join();
            }
        }
    }
}
