//! `gophergate db migrate`: copies a SQLite install into an empty PostgreSQL database, with its
//! ids, so sessions, key ids in the log and the cursor of `/api/logs` stay valid.
//!
//! The source is read in one read transaction (a consistent snapshot, even if a server is still
//! writing to it) and the target written in one transaction: a failure leaves the target empty,
//! so the command can simply be run again. Rows are streamed in batches, never all in memory.

use super::{StoreError, StoreResult, is_postgres_url, parse_time, postgres::PgStore};
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use sqlx::{
    Connection, Row, SqliteConnection,
    sqlite::{SqliteConnectOptions, SqliteRow},
};
use std::str::FromStr;

/// What was copied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyReport {
    pub users: u64,
    pub keys: u64,
    pub credentials: u64,
    pub provider_settings: u64,
    pub log_rows: u64,
    pub rollup_rows: u64,
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

/// Copies everything from the SQLite database at `from` into the empty PostgreSQL database at
/// `to`, `batch_rows` log or rollup rows per statement. Both schemas are brought up to date first.
pub async fn sqlite_to_postgres(
    from: &str,
    to: &str,
    batch_rows: usize,
) -> StoreResult<CopyReport> {
    if !from.starts_with("sqlite:") || !is_postgres_url(to) {
        return Err(StoreError::Connect(
            "db migrate copies from a sqlite:// database into a postgres:// one".into(),
        ));
    }
    let opts = SqliteConnectOptions::from_str(from)?;
    let path = opts.get_filename().to_path_buf();
    // Opening the store would create an empty database: a mistyped path must fail instead.
    if !path.is_file() {
        return Err(StoreError::NotFound(format!(
            "there is no SQLite database at {}",
            path.display()
        )));
    }
    // Brings an older install's schema up to date, as its next start would.
    drop(super::sqlite::SqliteStore::open(from, 1).await?);
    let mut src = SqliteConnection::connect_with(&opts).await?;

    let target = PgStore::open(to, 2).await?;
    let existing: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM api_keys)
              + (SELECT COUNT(*) FROM provider_credentials) + (SELECT COUNT(*) FROM request_logs)
              + (SELECT COUNT(*) FROM usage_rollups)",
    )
    .fetch_one(target.pool())
    .await?;
    if existing > 0 {
        return Err(StoreError::Conflict(
            "the target database already holds GopherGate data; migrate into an empty database"
                .into(),
        ));
    }

    let batch_rows = batch_rows.max(1);
    let mut report = CopyReport::default();
    let mut tx = target.pool().begin().await?;
    sqlx::query("BEGIN").execute(&mut src).await?;
    report.users = copy_users(&mut src, &mut tx).await?;
    report.keys = copy_keys(&mut src, &mut tx).await?;
    report.credentials = copy_credentials(&mut src, &mut tx).await?;
    report.provider_settings = copy_provider_settings(&mut src, &mut tx).await?;
    report.log_rows = copy_logs(&mut src, &mut tx, batch_rows).await?;
    report.rollup_rows = copy_rollups(&mut src, &mut tx, batch_rows).await?;
    // Ids handed out after the copy continue past the highest ever used (SQLite's
    // AUTOINCREMENT counter included), so a deleted user's id is never given again.
    for table in ["users", "api_keys", "request_logs"] {
        let seq: Option<i64> = sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = ?")
            .bind(table)
            .fetch_optional(&mut src)
            .await?;
        let max: Option<i64> = sqlx::query_scalar(&format!("SELECT MAX(id) FROM {table}"))
            .fetch_one(&mut src)
            .await?;
        let last = seq.unwrap_or(0).max(max.unwrap_or(0));
        if last > 0 {
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), $1)"
            ))
            .bind(last)
            .execute(&mut *tx)
            .await?;
        }
    }
    sqlx::query("COMMIT").execute(&mut src).await?;
    tx.commit().await?;
    Ok(report)
}

fn time(r: &SqliteRow, col: &str) -> StoreResult<DateTime<Utc>> {
    parse_time(&r.try_get::<String, _>(col)?)
}

fn opt_time(r: &SqliteRow, col: &str) -> StoreResult<Option<DateTime<Utc>>> {
    r.try_get::<Option<String>, _>(col)?
        .as_deref()
        .map(parse_time)
        .transpose()
}

async fn copy_users(src: &mut SqliteConnection, tx: &mut Tx<'_>) -> StoreResult<u64> {
    let mut rows = sqlx::query(
        "SELECT id, username, password_hash, role, session_epoch, created_at, updated_at
         FROM users ORDER BY id",
    )
    .fetch(&mut *src);
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        sqlx::query(
            "INSERT INTO users (id, username, password_hash, role, session_epoch, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(r.try_get::<i64, _>("id")?)
        .bind(r.try_get::<String, _>("username")?)
        .bind(r.try_get::<String, _>("password_hash")?)
        .bind(r.try_get::<String, _>("role")?)
        .bind(r.try_get::<i64, _>("session_epoch")?)
        .bind(time(&r, "created_at")?)
        .bind(time(&r, "updated_at")?)
        .execute(&mut **tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

async fn copy_keys(src: &mut SqliteConnection, tx: &mut Tx<'_>) -> StoreResult<u64> {
    let mut rows = sqlx::query(
        "SELECT id, name, key_hash, key_prefix, models, rpm, tpm, budget_usd, spent_usd,
                expires_at, revoked_at, created_at
         FROM api_keys ORDER BY id",
    )
    .fetch(&mut *src);
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        sqlx::query(
            "INSERT INTO api_keys (id, name, key_hash, key_prefix, models, rpm, tpm, budget_usd,
                 spent_usd, expires_at, revoked_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(r.try_get::<i64, _>("id")?)
        .bind(r.try_get::<String, _>("name")?)
        .bind(r.try_get::<Vec<u8>, _>("key_hash")?)
        .bind(r.try_get::<String, _>("key_prefix")?)
        .bind(r.try_get::<Option<String>, _>("models")?)
        .bind(r.try_get::<Option<i64>, _>("rpm")?)
        .bind(r.try_get::<Option<i64>, _>("tpm")?)
        .bind(r.try_get::<Option<f64>, _>("budget_usd")?)
        .bind(r.try_get::<f64, _>("spent_usd")?)
        .bind(opt_time(&r, "expires_at")?)
        .bind(opt_time(&r, "revoked_at")?)
        .bind(time(&r, "created_at")?)
        .execute(&mut **tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

async fn copy_credentials(src: &mut SqliteConnection, tx: &mut Tx<'_>) -> StoreResult<u64> {
    let mut rows = sqlx::query(
        "SELECT provider, key_id, nonce, ciphertext, updated_at FROM provider_credentials",
    )
    .fetch(&mut *src);
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        // Copied sealed: the target's instances need the same encryption_key to open them.
        sqlx::query(
            "INSERT INTO provider_credentials (provider, key_id, nonce, ciphertext, updated_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(r.try_get::<String, _>("provider")?)
        .bind(r.try_get::<String, _>("key_id")?)
        .bind(r.try_get::<Vec<u8>, _>("nonce")?)
        .bind(r.try_get::<Vec<u8>, _>("ciphertext")?)
        .bind(time(&r, "updated_at")?)
        .execute(&mut **tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

async fn copy_provider_settings(src: &mut SqliteConnection, tx: &mut Tx<'_>) -> StoreResult<u64> {
    let mut rows =
        sqlx::query("SELECT provider, enabled, updated_at FROM provider_settings").fetch(&mut *src);
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        sqlx::query(
            "INSERT INTO provider_settings (provider, enabled, updated_at) VALUES ($1, $2, $3)",
        )
        .bind(r.try_get::<String, _>("provider")?)
        .bind(r.try_get::<bool, _>("enabled")?)
        .bind(time(&r, "updated_at")?)
        .execute(&mut **tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

/// Text columns of `request_logs` copied as they are, NULLs included.
const LOG_TEXT: [&str; 11] = [
    "key_name",
    "provider",
    "model",
    "upstream_model",
    "usage_source",
    "price_source",
    "registry_version",
    "price_note",
    "error",
    "attempts",
    "request_id",
];
/// Nullable integer columns of `request_logs`.
const LOG_INTS: [&str; 6] = [
    "key_id",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
];

/// One batch of log rows as arrays, for an `INSERT … SELECT FROM UNNEST`.
#[derive(Default)]
struct LogBatch {
    id: Vec<i64>,
    created_at: Vec<DateTime<Utc>>,
    stream: Vec<bool>,
    status: Vec<i32>,
    latency_ms: Vec<i64>,
    cost_usd: Vec<Option<f64>>,
    text: [Vec<Option<String>>; LOG_TEXT.len()],
    ints: [Vec<Option<i64>>; LOG_INTS.len()],
}

impl LogBatch {
    fn push(&mut self, r: &SqliteRow) -> StoreResult<()> {
        self.id.push(r.try_get("id")?);
        self.created_at.push(time(r, "created_at")?);
        self.stream.push(r.try_get("stream")?);
        let status: i64 = r.try_get("status")?;
        self.status
            .push(status.clamp(0, i64::from(i32::MAX)) as i32);
        self.latency_ms.push(r.try_get("latency_ms")?);
        self.cost_usd.push(r.try_get("cost_usd")?);
        for (col, v) in LOG_TEXT.iter().zip(self.text.iter_mut()) {
            v.push(r.try_get(*col)?);
        }
        for (col, v) in LOG_INTS.iter().zip(self.ints.iter_mut()) {
            v.push(r.try_get(*col)?);
        }
        Ok(())
    }

    async fn flush(&mut self, tx: &mut Tx<'_>) -> StoreResult<u64> {
        let n = self.id.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        let mut columns = vec![
            "id",
            "created_at",
            "stream",
            "status",
            "latency_ms",
            "cost_usd",
        ];
        columns.extend(LOG_TEXT);
        columns.extend(LOG_INTS);
        let mut types = vec!["int8", "timestamptz", "bool", "int4", "int8", "float8"];
        types.extend(
            [
                ["text"; LOG_TEXT.len()].as_slice(),
                &["int8"; LOG_INTS.len()],
            ]
            .concat(),
        );
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", i + 1))
            .collect();
        let sql = format!(
            "INSERT INTO request_logs ({}) SELECT * FROM UNNEST({})",
            columns.join(", "),
            arrays.join(", ")
        );
        let mut q = sqlx::query(&sql)
            .bind(&self.id)
            .bind(&self.created_at)
            .bind(&self.stream)
            .bind(&self.status)
            .bind(&self.latency_ms)
            .bind(&self.cost_usd);
        for v in &self.text {
            q = q.bind(v);
        }
        for v in &self.ints {
            q = q.bind(v);
        }
        q.execute(&mut **tx).await?;
        *self = Self::default();
        Ok(n)
    }
}

async fn copy_logs(
    src: &mut SqliteConnection,
    tx: &mut Tx<'_>,
    batch_rows: usize,
) -> StoreResult<u64> {
    let mut rows = sqlx::query("SELECT * FROM request_logs ORDER BY id").fetch(&mut *src);
    let mut batch = LogBatch::default();
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        batch.push(&r)?;
        if batch.id.len() >= batch_rows {
            n += batch.flush(tx).await?;
            tracing::info!(rows = n, "request log rows copied");
        }
    }
    n += batch.flush(tx).await?;
    Ok(n)
}

const ROLLUP_COUNTS: [&str; 7] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "unpriced_requests",
];

async fn copy_rollups(
    src: &mut SqliteConnection,
    tx: &mut Tx<'_>,
    batch_rows: usize,
) -> StoreResult<u64> {
    let full = copy_rollup_table(
        src,
        tx,
        "usage_rollups",
        &["key_name", "model", "provider"],
        batch_rows,
    )
    .await?;
    let dims = copy_rollup_table(
        src,
        tx,
        "usage_dim_rollups",
        &["dimension", "value"],
        batch_rows,
    )
    .await?;
    Ok(full + dims)
}

/// One batch of rollup rows: the day (parsed from SQLite's text), the text key columns, the
/// sums.
#[derive(Default)]
struct RollupBatch {
    days: Vec<NaiveDate>,
    keys: Vec<Vec<String>>,
    counts: [Vec<i64>; ROLLUP_COUNTS.len()],
    cost: Vec<f64>,
}

impl RollupBatch {
    fn new(key_columns: usize) -> Self {
        Self {
            keys: vec![Vec::new(); key_columns],
            ..Default::default()
        }
    }

    async fn flush(
        &mut self,
        tx: &mut Tx<'_>,
        table: &str,
        key_columns: &[&str],
    ) -> StoreResult<u64> {
        let n = self.days.len() as u64;
        if n == 0 {
            return Ok(0);
        }
        let mut columns = vec!["day"];
        columns.extend(key_columns);
        columns.extend(ROLLUP_COUNTS);
        columns.push("cost_usd");
        let mut types = vec!["date"];
        types.extend(std::iter::repeat_n("text", key_columns.len()));
        types.extend(["int8"; ROLLUP_COUNTS.len()]);
        types.push("float8");
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", i + 1))
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({}) SELECT * FROM UNNEST({})",
            columns.join(", "),
            arrays.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(&self.days);
        for k in &self.keys {
            q = q.bind(k);
        }
        for c in &self.counts {
            q = q.bind(c);
        }
        q.bind(&self.cost).execute(&mut **tx).await?;
        *self = Self::new(key_columns.len());
        Ok(n)
    }
}

async fn copy_rollup_table(
    src: &mut SqliteConnection,
    tx: &mut Tx<'_>,
    table: &str,
    key_columns: &[&str],
    batch_rows: usize,
) -> StoreResult<u64> {
    let sql = format!(
        "SELECT day, {}, {}, cost_usd FROM {table}",
        key_columns.join(", "),
        ROLLUP_COUNTS.join(", ")
    );
    let mut rows = sqlx::query(&sql).fetch(&mut *src);
    let mut batch = RollupBatch::new(key_columns.len());
    let mut n = 0;
    while let Some(r) = rows.try_next().await? {
        let day: String = r.try_get("day")?;
        batch.days.push(
            NaiveDate::parse_from_str(&day, "%Y-%m-%d")
                .map_err(|e| StoreError::Corrupt(format!("{table}.day {day:?}: {e}")))?,
        );
        for (col, v) in key_columns.iter().zip(batch.keys.iter_mut()) {
            v.push(r.try_get(*col)?);
        }
        for (col, v) in ROLLUP_COUNTS.iter().zip(batch.counts.iter_mut()) {
            v.push(r.try_get(*col)?);
        }
        batch.cost.push(r.try_get("cost_usd")?);
        if batch.days.len() >= batch_rows {
            n += batch.flush(tx, table, key_columns).await?;
        }
    }
    n += batch.flush(tx, table, key_columns).await?;
    Ok(n)
}
