//! A database of its own per test on the machine's PostgreSQL and MariaDB/MySQL (or those
//! scripts/peers/{postgres,mariadb}/up.sh started), dropped afterwards, also when the test fails.

#![allow(dead_code)]

use sqlx::{Connection, Row};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MariaDb,
}

impl Server {
    /// FERRY_TEST_POSTGRES_URL / FERRY_TEST_MYSQL_URL, else the port of scripts/peers/{postgres,mariadb}
    /// (FERRY_TEST_POSTGRES_PORT / FERRY_TEST_MYSQL_PORT, default 5432 / 3306) as scripts/test.sh sets them up.
    fn admin_url(self) -> String {
        let (url_var, port_var, default_port, template) = match self {
            Server::Postgres => ("FERRY_TEST_POSTGRES_URL", "FERRY_TEST_POSTGRES_PORT", "5432", "postgres://postgres@127.0.0.1:{port}/postgres"),
            Server::MariaDb => ("FERRY_TEST_MYSQL_URL", "FERRY_TEST_MYSQL_PORT", "3306", "mysql://root@127.0.0.1:{port}/mysql"),
        };
        std::env::var(url_var).ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            template.replace("{port}", &std::env::var(port_var).unwrap_or_else(|_| default_port.into()))
        })
    }
}

pub struct TestDb {
    pub server: Server,
    pub name: String,
    /// The URL of this test's database, for the connector.
    pub url: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `scheme://user@host:port/` + `db`.
fn with_database(admin: &str, db: &str) -> String {
    let (base, _) = admin.rsplit_once('/').expect("an admin URL names a database");
    format!("{base}/{db}")
}

async fn admin_exec(server: Server, sql: &str) {
    let url = server.admin_url();
    match server {
        Server::Postgres => {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e}"));
            sqlx::Executor::execute(&mut c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = c.close().await;
        }
        Server::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap_or_else(|e| panic!("MariaDB at {url}: {e}"));
            sqlx::Executor::execute(&mut c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            let _ = c.close().await;
        }
    }
}

impl TestDb {
    pub async fn create(server: Server, label: &str) -> TestDb {
        let name = format!("ferry_{label}_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), rand::random::<u16>());
        admin_exec(server, &format!("CREATE DATABASE {name}")).await;
        TestDb { server, url: with_database(&server.admin_url(), &name), name }
    }

    /// Runs SQL (several statements allowed) in this database.
    pub async fn exec(&self, sql: &str) {
        match self.server {
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                sqlx::Executor::execute(&mut c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
            }
            Server::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                sqlx::Executor::execute(&mut c, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
            }
        }
    }

    /// `expr` cast to text in this server's SQL.
    pub fn text(&self, expr: &str) -> String {
        match self.server {
            Server::Postgres => format!("CAST({expr} AS TEXT)"),
            Server::MariaDb => format!("CAST({expr} AS CHAR)"),
        }
    }

    /// Rows of a query whose columns are all text (use [`TestDb::text`]).
    pub async fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        fn collect<R: Row>(rows: Vec<R>) -> Vec<Vec<Option<String>>>
        where
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
            usize: sqlx::ColumnIndex<R>,
        {
            rows.iter().map(|r| (0..r.len()).map(|i| r.try_get::<Option<String>, _>(i).unwrap()).collect()).collect()
        }
        match self.server {
            Server::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                collect(rows)
            }
            Server::MariaDb => {
                let mut c = sqlx::MySqlConnection::connect(&self.url).await.unwrap();
                let rows = sqlx::query(sql).fetch_all(&mut c).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                collect(rows)
            }
        }
    }

    /// The first column of the first row, as text.
    pub async fn scalar(&self, sql: &str) -> String {
        self.rows(sql).await.into_iter().next().and_then(|r| r.into_iter().next().flatten()).unwrap_or_default()
    }

    /// Terminates the server sessions of this database that are inside `SLEEP`/`pg_sleep` (a trigger holding
    /// a write open), as a network drop or a DBA would; how many it ended.
    pub async fn kill_sleeping_sessions(&self) -> usize {
        match self.server {
            Server::Postgres => self
                .rows(&format!(
                    "SELECT CAST(pg_terminate_backend(pid) AS TEXT) FROM pg_stat_activity WHERE datname = '{}' AND wait_event = 'PgSleep'",
                    self.name
                ))
                .await
                .len(),
            Server::MariaDb => {
                let ids = self.rows(&format!("SELECT CAST(ID AS CHAR) FROM information_schema.PROCESSLIST WHERE DB = '{}' AND STATE = 'User sleep'", self.name)).await;
                for id in &ids {
                    self.exec(&format!("KILL CONNECTION {}", id[0].as_deref().unwrap())).await;
                }
                ids.len()
            }
        }
    }

    /// A column type by server: `pg` on PostgreSQL, `my` on MariaDB.
    pub fn ty<'a>(&self, pg: &'a str, my: &'a str) -> &'a str {
        match self.server {
            Server::Postgres => pg,
            Server::MariaDb => my,
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server, self.name.clone());
        let sql = match server {
            Server::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            Server::MariaDb => format!("DROP DATABASE IF EXISTS {name}"),
        };
        // Drop runs inside the test's runtime: a thread with a runtime of its own does the async work.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(admin_exec(server, &sql));
        })
        .join();
    }
}
