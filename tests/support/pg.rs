//! PostgreSQL for tests: each test gets a database of its own on the server named by
//! `GOPHERGATE_TEST_POSTGRES_URL` (scripts/test.sh starts one), so tests run in parallel.
//! Without the variable the PostgreSQL tests say so and pass, except under CI, where they fail.
#![allow(dead_code)]

use sqlx::{Connection, PgConnection};
use std::io::Write;

pub const ENV: &str = "GOPHERGATE_TEST_POSTGRES_URL";

pub struct TestDb {
    admin_url: String,
    name: String,
    /// The URL of this test's own database.
    pub url: String,
}

/// The server's URL, or `None` after telling why the PostgreSQL tests are skipped.
pub fn server_url() -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").map_or(true, |v| v.is_empty() || v == "false"),
                "{ENV} is not set: under CI the PostgreSQL tests must run (scripts/test.sh starts a server)"
            );
            static ONCE: std::sync::Once = std::sync::Once::new();
            // Straight to stderr, past the test harness's capture, once per test binary.
            ONCE.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL tests skipped: set {ENV} (./scripts/test.sh starts a server)"
                );
            });
            None
        }
    }
}

/// A new, empty database for one test, or `None` when there is no server to test against.
pub async fn fresh_database(test: &str) -> Option<TestDb> {
    let admin_url = server_url()?;
    let tag: String = test
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    let name = format!(
        "gg_test_{tag}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the PostgreSQL test server ({ENV}): {e}"));
    sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let _ = admin.close().await;
    let url = with_database(&admin_url, &name);
    Some(TestDb {
        admin_url,
        name,
        url,
    })
}

impl TestDb {
    /// Drops the database (a failed test keeps its own, for a look).
    pub async fn drop_database(self) {
        if let Ok(mut admin) = PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::raw_sql(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
            let _ = admin.close().await;
        }
    }
}

/// The same server URL with another database name (query parameters kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    format!("{scheme}://{authority}/{database}{query}")
}
