//! SQLite backend: WAL so readers never block the log writer, a busy timeout so the CLI and a
//! running server can share one file, foreign keys on.

use super::*;
use sqlx::{
    Row,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
        SqliteSynchronous,
    },
};
use std::{str::FromStr, time::Duration};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// The request-log writer's own connection. SQLite has one writer at a time anyway; with the
    /// shared pool, successive batches landed on different connections and each filled its own
    /// page cache with the log's pages (RSS grew by about 14 MiB over a long run; BENCHMARKS.md).
    log_pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across process crashes in WAL mode; only an OS crash can lose
            // the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(path) = opts.get_filename().parent()
            && !path.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(path);
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(opts.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        // Appends touch the right edge of each B-tree only: a quarter of SQLite's default page
        // cache (2 MiB, which the connection filled as the table grew) holds them.
        let log_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.pragma("cache_size", "-512"))
            .await?;
        Ok(Self { pool, log_pool })
    }
}

fn opt_time(s: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_time).transpose()
}

const KEY_COLUMNS: &str = "id, name, key_prefix, models, rpm, tpm, budget_usd, spent_usd, expires_at, revoked_at, created_at";

fn key_from_row(row: &SqliteRow) -> StoreResult<KeyRecord> {
    let models: Option<String> = row.try_get("models")?;
    let models = models
        .map(|m| serde_json::from_str::<Vec<String>>(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("api_keys.models: {e}")))?;
    let rpm: Option<i64> = row.try_get("rpm")?;
    let tpm: Option<i64> = row.try_get("tpm")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("key_prefix")?,
        models,
        rpm: rpm.map(|r| r.clamp(0, u32::MAX as i64) as u32),
        tpm: tpm.map(|r| r.clamp(0, u32::MAX as i64) as u32),
        budget_usd: row.try_get("budget_usd")?,
        spent_usd: row.try_get("spent_usd")?,
        expires_at: opt_time(row.try_get("expires_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

const USER_COLUMNS: &str = "id, username, password_hash, role, session_epoch, created_at";

fn user_from_row(row: &SqliteRow) -> StoreResult<UserRecord> {
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: UserRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("users.role {role:?}")))?,
        session_epoch: row.try_get("session_epoch")?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: NewKey) -> StoreResult<KeyRecord> {
        let models = key
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
        let now = format_time(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (name, key_hash, key_prefix, models, rpm, tpm, budget_usd, expires_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {KEY_COLUMNS}"
        ))
        .bind(&key.name)
        .bind(key.hash.as_slice())
        .bind(&key.prefix)
        .bind(models)
        .bind(key.rpm.map(i64::from))
        .bind(key.tpm.map(i64::from))
        .bind(key.budget_usd)
        .bind(key.expires_at.map(format_time))
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a live key named {:?} already exists", key.name))
            } else {
                e.into()
            }
        })?;
        key_from_row(&row)
    }

    async fn find_key_by_hash(&self, hash: &[u8; 32]) -> StoreResult<Option<KeyRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"
        ))
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, name: &str) -> StoreResult<KeyRecord> {
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        ))
        .bind(format_time(Utc::now()))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => key_from_row(&r),
            None => Err(StoreError::NotFound(format!("no live key named {name:?}"))),
        }
    }

    async fn keys_version(&self) -> StoreResult<i64> {
        Ok(
            sqlx::query_scalar("SELECT value FROM meta WHERE name = 'keys_version'")
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
    ) -> StoreResult<UserRecord> {
        let now = format_time(Utc::now());
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
             RETURNING id, username, password_hash, role, session_epoch, created_at",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(&now)
        .bind(&now)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("a user named {username:?} already exists"))
            } else {
                e.into()
            }
        })?;
        user_from_row(&row)
    }

    async fn find_user(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role, session_epoch, created_at FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, role, session_epoch, created_at FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn bump_session_epoch(&self, id: i64) -> StoreResult<i64> {
        sqlx::query_scalar(
            "UPDATE users SET session_epoch = session_epoch + 1, updated_at = ? WHERE id = ? RETURNING session_epoch",
        )
        .bind(format_time(Utc::now()))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(user_from_row).collect()
    }

    async fn delete_user(&self, username: &str) -> StoreResult<UserRecord> {
        // One statement: two admins deleting each other at once cannot both succeed.
        let row = sqlx::query(&format!(
            "DELETE FROM users WHERE username = ?
             AND (role <> 'admin' OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)
             RETURNING {USER_COLUMNS}"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => user_from_row(&r),
            None if self.find_user(username).await?.is_some() => Err(StoreError::Conflict(
                format!("{username:?} is the last admin; make another admin first"),
            )),
            None => Err(StoreError::NotFound(format!("no user named {username:?}"))),
        }
    }

    async fn set_password(&self, id: i64, password_hash: &str) -> StoreResult<i64> {
        sqlx::query_scalar(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1, updated_at = ?
             WHERE id = ? RETURNING session_epoch",
        )
        .bind(password_hash)
        .bind(format_time(Utc::now()))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn put_credential(&self, provider: &str, sealed: &Sealed) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO provider_credentials (provider, key_id, nonce, ciphertext, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (provider) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(format_time(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_credential(&self, provider: &str) -> StoreResult<Option<Sealed>> {
        let row = sqlx::query(
            "SELECT key_id, nonce, ciphertext FROM provider_credentials WHERE provider = ?",
        )
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Sealed {
                key_id: r.try_get("key_id")?,
                nonce: r.try_get("nonce")?,
                ciphertext: r.try_get("ciphertext")?,
            })
        })
        .transpose()
    }

    async fn set_provider_enabled(&self, provider: &str, enabled: bool) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO provider_settings (provider, enabled, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (provider) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(enabled)
        .bind(format_time(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn provider_enabled(&self, provider: &str) -> StoreResult<Option<bool>> {
        Ok(
            sqlx::query_scalar("SELECT enabled FROM provider_settings WHERE provider = ?")
                .bind(provider)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn list_credentials(&self) -> StoreResult<Vec<(String, Sealed)>> {
        let rows = sqlx::query("SELECT provider, key_id, nonce, ciphertext FROM provider_credentials ORDER BY provider")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("provider")?,
                    Sealed {
                        key_id: r.try_get("key_id")?,
                        nonce: r.try_get("nonce")?,
                        ciphertext: r.try_get("ciphertext")?,
                    },
                ))
            })
            .collect()
    }
}

/// Rows per multi-row INSERT, at most (22 columns each: 1,408 bound parameters).
const LOG_CHUNK: usize = 64;

/// How a batch of `n` rows is cut into INSERT statements: full chunks of `LOG_CHUNK`, then the
/// rest in powers of two. So the log connection prepares at most seven statement shapes, each
/// once, instead of one statement per batch size: no parsing per batch, and no transient
/// megabyte-sized statement for a 500-row batch (freed memory that the allocator kept, and RSS
/// grew with the largest batch seen).
fn log_chunks(n: usize) -> impl Iterator<Item = usize> {
    let rest = n % LOG_CHUNK;
    std::iter::repeat_n(LOG_CHUNK, n / LOG_CHUNK).chain(
        (0..LOG_CHUNK.trailing_zeros())
            .rev()
            .map(|bit| 1usize << bit)
            .filter(move |size| rest & size != 0),
    )
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn insert_logs(&self, rows: &[LogRow]) -> StoreResult<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.log_pool.begin().await?;
        let mut start = 0;
        for size in log_chunks(rows.len()) {
            let chunk = &rows[start..start + size];
            start += size;
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO request_logs (request_id, created_at, key_id, key_name, provider, model, upstream_model,
                 stream, status, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
                 reasoning_tokens, cost_usd, usage_source, price_source, registry_version, price_note, error, attempts) ",
            );
            qb.push_values(chunk, |mut b, r| {
                let u = r.usage;
                b.push_bind(&r.request_id)
                    .push_bind(format_time(r.created_at))
                    .push_bind(r.key_id)
                    .push_bind(&r.key_name)
                    .push_bind(&r.provider)
                    .push_bind(&r.model)
                    .push_bind(&r.upstream_model)
                    .push_bind(r.stream)
                    .push_bind(i64::from(r.status))
                    .push_bind(r.latency_ms as i64)
                    .push_bind(r.ttft_ms.map(|t| t as i64))
                    .push_bind(u.map(|u| u.prompt as i64))
                    .push_bind(u.map(|u| u.completion as i64))
                    .push_bind(u.map(|u| u.cached as i64))
                    .push_bind(u.map(|u| u.reasoning as i64))
                    .push_bind(r.cost_usd)
                    .push_bind(r.usage_source)
                    .push_bind(&r.price_source)
                    .push_bind(&r.registry_version)
                    .push_bind(&r.price_note)
                    .push_bind(&r.error)
                    .push_bind(&r.attempts);
            });
            // Cached: `log_chunks` keeps the statement shapes few.
            qb.build().execute(&mut *tx).await?;
        }
        // One writer, inside one transaction, with AUTOINCREMENT: the batch's ids are consecutive
        // and end at the last inserted rowid (read before the rollup upserts move it).
        let last: i64 = sqlx::query_scalar("SELECT last_insert_rowid()")
            .fetch_one(&mut *tx)
            .await?;
        upsert_rollups(&mut tx, rows).await?;
        add_key_spend(&mut tx, rows).await?;
        tx.commit().await?;
        let first = last - rows.len() as i64 + 1;
        Ok((first..=last).collect())
    }

    async fn count_logs(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM request_logs")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn query_logs(&self, q: &LogQuery) -> StoreResult<Vec<StoredLog>> {
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT * FROM request_logs WHERE 1 = 1");
        if let Some(before) = q.before {
            qb.push(" AND id < ").push_bind(before);
        }
        if let Some(k) = &q.key_name {
            qb.push(" AND key_name = ").push_bind(k);
        }
        if let Some(m) = &q.model {
            qb.push(" AND model = ").push_bind(m);
        }
        if let Some(p) = &q.provider {
            qb.push(" AND provider = ").push_bind(p);
        }
        if let Some(s) = q.status {
            qb.push(" AND status = ").push_bind(i64::from(s));
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(q.limit.max(1)));
        let rows = qb.build().fetch_all(&self.pool).await?;
        rows.iter().map(log_from_row).collect()
    }

    async fn usage(&self, q: &UsageQuery) -> StoreResult<Vec<UsageTotals>> {
        usage_totals(&self.pool, q).await
    }

    async fn delete_logs_before(&self, cutoff: DateTime<Utc>, max_rows: u32) -> StoreResult<u64> {
        // One statement is one short transaction; the created_at index finds the oldest rows
        // whatever order their ids are in.
        let done = sqlx::query(
            "DELETE FROM request_logs WHERE id IN
             (SELECT id FROM request_logs WHERE created_at < ? ORDER BY created_at LIMIT ?)",
        )
        .bind(format_time(cutoff))
        .bind(i64::from(max_rows.max(1)))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn log_from_row(r: &SqliteRow) -> StoreResult<StoredLog> {
    let n = |col: &str| -> StoreResult<Option<u64>> {
        Ok(r.try_get::<Option<i64>, _>(col)?.map(|v| v.max(0) as u64))
    };
    let usage = match (n("prompt_tokens")?, n("completion_tokens")?) {
        (Some(prompt), Some(completion)) => Some(TokenCounts {
            prompt,
            completion,
            cached: n("cached_tokens")?.unwrap_or(0),
            reasoning: n("reasoning_tokens")?.unwrap_or(0),
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        }),
        _ => None,
    };
    let usage_source: Option<String> = r.try_get("usage_source")?;
    Ok(StoredLog {
        id: r.try_get("id")?,
        row: LogRow {
            request_id: r.try_get("request_id")?,
            created_at: parse_time(&r.try_get::<String, _>("created_at")?)?,
            key_id: r.try_get("key_id")?,
            key_name: r.try_get("key_name")?,
            provider: r.try_get("provider")?,
            model: r.try_get("model")?,
            upstream_model: r.try_get("upstream_model")?,
            stream: r.try_get("stream")?,
            status: r.try_get::<i64, _>("status")?.clamp(0, 999) as u16,
            latency_ms: n("latency_ms")?.unwrap_or(0),
            ttft_ms: n("ttft_ms")?,
            usage,
            cost_usd: r.try_get("cost_usd")?,
            usage_source: match usage_source.as_deref() {
                Some("reported") => Some("reported"),
                Some("estimated") => Some("estimated"),
                _ => None,
            },
            price_source: r.try_get("price_source")?,
            registry_version: r.try_get("registry_version")?,
            price_note: r.try_get("price_note")?,
            error: r.try_get("error")?,
            attempts: r.try_get("attempts")?,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// Usage rollups (migrations/sqlite/0003_usage.sql)

/// One rollup row's increments. `''` stands for a missing key, model or provider.
#[derive(Default, Clone, Copy)]
struct RollupDelta {
    requests: i64,
    errors: i64,
    prompt: i64,
    completion: i64,
    cached: i64,
    reasoning: i64,
    cost: f64,
    unpriced: i64,
}

impl RollupDelta {
    fn add_row(&mut self, r: &LogRow) {
        self.requests += 1;
        self.errors += i64::from(r.status >= 400);
        if let Some(u) = r.usage {
            self.prompt += u.prompt as i64;
            self.completion += u.completion as i64;
            self.cached += u.cached as i64;
            self.reasoning += u.reasoning as i64;
        }
        match r.cost_usd {
            Some(c) => self.cost += c,
            None => self.unpriced += 1,
        }
    }

    fn add(&mut self, o: &RollupDelta) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.prompt += o.prompt;
        self.completion += o.completion;
        self.cached += o.cached;
        self.reasoning += o.reasoning;
        self.cost += o.cost;
        self.unpriced += o.unpriced;
    }
}

const ROLLUP_SUMS: &str = "requests, errors, prompt_tokens, completion_tokens, cached_tokens, \
    reasoning_tokens, cost_usd, unpriced_requests";
const ROLLUP_ADD: &str = "requests = requests + excluded.requests, \
    errors = errors + excluded.errors, \
    prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = completion_tokens + excluded.completion_tokens, \
    cached_tokens = cached_tokens + excluded.cached_tokens, \
    reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
    cost_usd = cost_usd + excluded.cost_usd, \
    unpriced_requests = unpriced_requests + excluded.unpriced_requests";
const ROLLUP_SELECT: &str = "SUM(requests) AS requests, SUM(errors) AS errors, \
    SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens, \
    SUM(cached_tokens) AS cached_tokens, SUM(reasoning_tokens) AS reasoning_tokens, \
    SUM(cost_usd) AS cost_usd, SUM(unpriced_requests) AS unpriced_requests";

/// Adds a batch of log rows to both rollup tables, inside the batch's own transaction. The batch
/// is summed in memory first, so each distinct (day, key, model, provider), and each distinct
/// (dimension, day, value), gets one upsert row.
async fn upsert_rollups(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[LogRow],
) -> StoreResult<()> {
    use std::collections::HashMap;
    let mut full: HashMap<(String, &str, &str, &str), RollupDelta> = HashMap::new();
    for r in rows {
        full.entry((
            r.created_at.format("%Y-%m-%d").to_string(),
            r.key_name.as_deref().unwrap_or(""),
            r.model.as_deref().unwrap_or(""),
            r.provider.as_deref().unwrap_or(""),
        ))
        .or_default()
        .add_row(r);
    }
    let mut dims: HashMap<[&str; 3], RollupDelta> = HashMap::new();
    for ((day, key, model, provider), d) in &full {
        for (dim, value) in [("key", key), ("model", model), ("provider", provider)] {
            dims.entry([dim, day.as_str(), value]).or_default().add(d);
        }
    }
    let full: Vec<([&str; 4], RollupDelta)> = full
        .iter()
        .map(|((day, k, m, p), d)| ([day.as_str(), *k, *m, *p], *d))
        .collect();
    upsert_deltas(
        tx,
        "usage_rollups",
        ["day", "key_name", "model", "provider"],
        &full,
    )
    .await?;
    let dims: Vec<([&str; 3], RollupDelta)> = dims.into_iter().collect();
    upsert_deltas(
        tx,
        "usage_dim_rollups",
        ["dimension", "day", "value"],
        &dims,
    )
    .await
}

async fn upsert_deltas<const N: usize>(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    table: &str,
    key_columns: [&str; N],
    groups: &[([&str; N], RollupDelta)],
) -> StoreResult<()> {
    let keys = key_columns.join(", ");
    // SQLite allows 32,766 bound parameters per statement.
    for chunk in groups.chunks(32_000 / (N + 8)) {
        let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO {table} ({keys}, {ROLLUP_SUMS}) "
        ));
        qb.push_values(chunk, |mut b, (key, d)| {
            for k in key {
                b.push_bind(*k);
            }
            b.push_bind(d.requests)
                .push_bind(d.errors)
                .push_bind(d.prompt)
                .push_bind(d.completion)
                .push_bind(d.cached)
                .push_bind(d.reasoning)
                .push_bind(d.cost)
                .push_bind(d.unpriced);
        });
        qb.push(format!(" ON CONFLICT ({keys}) DO UPDATE SET {ROLLUP_ADD}"));
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Without filters, from `usage_dim_rollups` (a few rows per day: fast whatever the traffic);
/// with a key, model or provider filter, from the full-grain `usage_rollups`.
async fn usage_totals(pool: &SqlitePool, q: &UsageQuery) -> StoreResult<Vec<UsageTotals>> {
    let from = q.from.format("%Y-%m-%d").to_string();
    let to = q.to.format("%Y-%m-%d").to_string();
    let filtered = q.key_name.is_some() || q.model.is_some() || q.provider.is_some();
    let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new("SELECT ");
    if filtered {
        let column = match q.group_by {
            UsageGroup::Key => "key_name",
            UsageGroup::Model => "model",
            UsageGroup::Provider => "provider",
            UsageGroup::Day => "day",
        };
        qb.push(format!(
            "{column} AS grp, {ROLLUP_SELECT} FROM usage_rollups WHERE day >= "
        ))
        .push_bind(from)
        .push(" AND day <= ")
        .push_bind(to);
        for (column, value) in [
            ("key_name", &q.key_name),
            ("model", &q.model),
            ("provider", &q.provider),
        ] {
            if let Some(v) = value {
                qb.push(format!(" AND {column} = ")).push_bind(v.as_str());
            }
        }
    } else {
        // Every row counts once in each dimension, so a day's total is its providers' sum.
        let (dimension, column) = match q.group_by {
            UsageGroup::Key => ("key", "value"),
            UsageGroup::Model => ("model", "value"),
            UsageGroup::Provider => ("provider", "value"),
            UsageGroup::Day => ("provider", "day"),
        };
        qb.push(format!(
            "{column} AS grp, {ROLLUP_SELECT} FROM usage_dim_rollups WHERE dimension = "
        ))
        .push_bind(dimension)
        .push(" AND day >= ")
        .push_bind(from)
        .push(" AND day <= ")
        .push_bind(to);
    }
    qb.push(match q.group_by {
        UsageGroup::Day => " GROUP BY grp ORDER BY grp",
        _ => " GROUP BY grp ORDER BY requests DESC, grp",
    });
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            let n = |col: &str| -> StoreResult<u64> {
                Ok(r.try_get::<Option<i64>, _>(col)?.unwrap_or(0).max(0) as u64)
            };
            let group: String = r.try_get("grp")?;
            let requests = n("requests")?;
            let unpriced = n("unpriced_requests")?;
            let cost: Option<f64> = r.try_get("cost_usd")?;
            Ok(UsageTotals {
                group: (!group.is_empty()).then_some(group),
                requests,
                errors: n("errors")?,
                prompt_tokens: n("prompt_tokens")?,
                completion_tokens: n("completion_tokens")?,
                cached_tokens: n("cached_tokens")?,
                reasoning_tokens: n("reasoning_tokens")?,
                // Never a made-up 0: with no priced request there is no cost to report.
                cost_usd: if requests > unpriced { cost } else { None },
                unpriced_requests: unpriced,
            })
        })
        .collect()
}

/// Adds each key's priced cost in the batch to `api_keys.spent_usd`, in the rows' transaction, so
/// the stored spend always equals the sum of the logged costs (budgets start from it).
async fn add_key_spend(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    rows: &[LogRow],
) -> StoreResult<()> {
    let mut by_key: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
    for r in rows {
        if let (Some(id), Some(cost)) = (r.key_id, r.cost_usd) {
            *by_key.entry(id).or_default() += cost;
        }
    }
    for (id, cost) in by_key {
        sqlx::query("UPDATE api_keys SET spent_usd = spent_usd + ? WHERE id = ?")
            .bind(cost)
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_into_few_statement_shapes() {
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=1_000 {
            let sizes: Vec<usize> = log_chunks(n).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{n}: {sizes:?}");
            assert!(sizes.iter().all(|s| *s <= LOG_CHUNK), "{n}: {sizes:?}");
            shapes.extend(sizes);
        }
        assert_eq!(
            shapes.into_iter().collect::<Vec<_>>(),
            [1, 2, 4, 8, 16, 32, 64]
        );
        assert_eq!(log_chunks(133).collect::<Vec<_>>(), [64, 64, 4, 1]);
    }
}
