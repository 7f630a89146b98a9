//! Fresh databases for tests (this crate's and the service's): a SQLite file
//! in a temporary folder, or a new PostgreSQL database dropped afterwards.
//!
//! PostgreSQL is found through `STACKSYNC_TEST_POSTGRES` (an admin URL such
//! as `postgres://postgres@127.0.0.1:5432/postgres`). When it is unset, a
//! test under `CI=true` panics (a missing service must fail loudly), and
//! anywhere else it is skipped with a message on stderr.

use std::path::PathBuf;

use sqlx::Connection;

use crate::MetaStore;

/// A store on a database that lives as long as this value.
pub struct TestDb {
    pub store: MetaStore,
    cleanup: Cleanup,
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

impl TestDb {
    /// A store on a fresh SQLite file.
    pub async fn sqlite() -> TestDb {
        let dir =
            std::env::temp_dir().join(format!("stacksync-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("the temp dir is writable");
        let url = format!("sqlite://{}?mode=rwc", dir.join("meta.sqlite").display());
        let store = MetaStore::connect(&url)
            .await
            .expect("a fresh SQLite database opens");
        TestDb {
            store,
            cleanup: Cleanup::Dir(dir),
        }
    }

    /// A store on a fresh PostgreSQL database, or `None` when PostgreSQL
    /// tests are skipped (see the module docs).
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = postgres_admin_url()?;
        sqlx::any::install_default_drivers();
        let name = format!("stacksync_t_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at STACKSYNC_TEST_POSTGRES is unreachable: {e}")
            });
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("CREATE DATABASE works");
        admin.close().await.ok();
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => panic!("STACKSYNC_TEST_POSTGRES must end in /DATABASE"),
        };
        let store = MetaStore::connect(&url)
            .await
            .expect("a fresh PostgreSQL database opens");
        Some(TestDb {
            store,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// The SQLite test database, or the PostgreSQL one when `postgres`.
    pub async fn new(postgres: bool) -> Option<TestDb> {
        if postgres {
            TestDb::postgres().await
        } else {
            Some(TestDb::sqlite().await)
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
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
