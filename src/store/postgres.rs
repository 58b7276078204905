//! PostgreSQL backend, for several gateway instances on one database. Behaves exactly like
//! `sqlite`: the same errors, orderings, NULLs, millisecond timestamps and double-precision money
//! (tests/store_backends.rs runs one suite against both).
//!
//! Where SQLite's single writer made a statement safe on its own, PostgreSQL needs a lock or a
//! fixed order instead: deleting an admin locks the admin rows first, and the log writer upserts
//! rollups and key spend in sorted key order, so two instances' batches never deadlock.

use super::*;
use sqlx::{
    Connection, PgConnection, Row,
    postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow},
};
use std::{collections::BTreeMap, str::FromStr, time::Duration};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long start-up waits for the server before saying it cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects, then brings the schema up to date (sqlx holds an advisory lock meanwhile, so
    /// instances starting together migrate once).
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let place = describe_url(url);
        let opts = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Connect(scrub(
                url,
                format!("database.url is not a valid PostgreSQL URL ({e})"),
            ))
        })?;
        // One plain connection first: the pool would retry a refused connection until its
        // timeout and then report only "timed out", which does not say what to fix.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts))
            .await
            .map_err(|_| {
                StoreError::Connect(format!(
                    "could not connect to PostgreSQL at {place}: no answer within {}s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                StoreError::Connect(format!(
                    "could not connect to PostgreSQL at {place}: {}",
                    scrub(url, e.to_string())
                ))
            })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for tests and `gophergate db migrate`.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// `user@host:port/database` from a PostgreSQL URL: enough to say where, never the password.
pub fn describe_url(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => rest.to_string(),
    }
}

/// Removes the URL's password from a message, should a driver error ever quote it.
fn scrub(url: &str, message: String) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
    {
        Some((_, password)) if !password.is_empty() => message.replace(password, "***"),
        _ => message,
    }
}

/// SQLite keeps milliseconds (RFC 3339 text); so does this backend, or a value written here would
/// read back different from the same value written there.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(3)
}

const KEY_COLUMNS: &str = "id, name, key_prefix, models, rpm, tpm, budget_usd, spent_usd, \
     expires_at, revoked_at, created_at";

fn key_from_row(row: &PgRow) -> StoreResult<KeyRecord> {
    let models: Option<String> = row.try_get("models")?;
    let models = models
        .map(|m| serde_json::from_str::<Vec<String>>(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("api_keys.models: {e}")))?;
    let limit = |col: &str| -> StoreResult<Option<u32>> {
        Ok(row
            .try_get::<Option<i64>, _>(col)?
            .map(|r| r.clamp(0, i64::from(u32::MAX)) as u32))
    };
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("key_prefix")?,
        models,
        rpm: limit("rpm")?,
        tpm: limit("tpm")?,
        budget_usd: row.try_get("budget_usd")?,
        spent_usd: row.try_get("spent_usd")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        created_at: row.try_get("created_at")?,
    })
}

const USER_COLUMNS: &str = "id, username, password_hash, role, session_epoch, created_at";

fn user_from_row(row: &PgRow) -> StoreResult<UserRecord> {
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        password_hash: row.try_get("password_hash")?,
        role: UserRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("users.role {role:?}")))?,
        session_epoch: row.try_get("session_epoch")?,
        created_at: row.try_get("created_at")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl KeyStore for PgStore {
    async fn create_key(&self, key: NewKey) -> StoreResult<KeyRecord> {
        let models = key
            .models
            .as_ref()
            .map(|m| serde_json::to_string(m).unwrap_or_else(|_| "[]".into()));
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (name, key_hash, key_prefix, models, rpm, tpm, budget_usd, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {KEY_COLUMNS}"
        ))
        .bind(&key.name)
        .bind(key.hash.as_slice())
        .bind(&key.prefix)
        .bind(models)
        .bind(key.rpm.map(i64::from))
        .bind(key.tpm.map(i64::from))
        .bind(key.budget_usd)
        .bind(key.expires_at.map(ms))
        .bind(ms(Utc::now()))
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
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
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
            "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL RETURNING {KEY_COLUMNS}"
        ))
        .bind(ms(Utc::now()))
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
impl UserStore for PgStore {
    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: UserRole,
    ) -> StoreResult<UserRecord> {
        let now = ms(Utc::now());
        let row = sqlx::query(&format!(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4) RETURNING {USER_COLUMNS}"
        ))
        .bind(username)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
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
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_id(&self, id: i64) -> StoreResult<Option<UserRecord>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
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
            "UPDATE users SET session_epoch = session_epoch + 1, updated_at = $1 WHERE id = $2
             RETURNING session_epoch",
        )
        .bind(ms(Utc::now()))
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
        // Under READ COMMITTED two admins deleting each other at once would both see two admins;
        // locking the admin rows first makes the second wait and then count again.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM users WHERE role = 'admin' ORDER BY id FOR UPDATE")
            .fetch_all(&mut *tx)
            .await?;
        let row = sqlx::query(&format!(
            "DELETE FROM users WHERE username = $1
             AND (role <> 'admin' OR (SELECT COUNT(*) FROM users WHERE role = 'admin') > 1)
             RETURNING {USER_COLUMNS}"
        ))
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
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
            "UPDATE users SET password_hash = $1, session_epoch = session_epoch + 1, updated_at = $2
             WHERE id = $3 RETURNING session_epoch",
        )
        .bind(password_hash)
        .bind(ms(Utc::now()))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no user with id {id}")))
    }
}

fn sealed_from_row(r: &PgRow) -> StoreResult<Sealed> {
    Ok(Sealed {
        key_id: r.try_get("key_id")?,
        nonce: r.try_get("nonce")?,
        ciphertext: r.try_get("ciphertext")?,
    })
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn put_credential(&self, provider: &str, sealed: &Sealed) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO provider_credentials (provider, key_id, nonce, ciphertext, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (provider) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(&sealed.key_id)
        .bind(&sealed.nonce)
        .bind(&sealed.ciphertext)
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_credential(&self, provider: &str) -> StoreResult<Option<Sealed>> {
        let row = sqlx::query(
            "SELECT key_id, nonce, ciphertext FROM provider_credentials WHERE provider = $1",
        )
        .bind(provider)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(sealed_from_row).transpose()
    }

    async fn list_credentials(&self) -> StoreResult<Vec<(String, Sealed)>> {
        // COLLATE "C": byte order, as SQLite sorts text, whatever the database's locale.
        let rows = sqlx::query(
            "SELECT provider, key_id, nonce, ciphertext FROM provider_credentials
             ORDER BY provider COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("provider")?, sealed_from_row(r)?)))
            .collect()
    }

    async fn set_provider_enabled(&self, provider: &str, enabled: bool) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO provider_settings (provider, enabled, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (provider) DO UPDATE SET enabled = excluded.enabled,
             updated_at = excluded.updated_at",
        )
        .bind(provider)
        .bind(enabled)
        .bind(ms(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn provider_enabled(&self, provider: &str) -> StoreResult<Option<bool>> {
        Ok(
            sqlx::query_scalar("SELECT enabled FROM provider_settings WHERE provider = $1")
                .bind(provider)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

/// A batch's columns as arrays, for one `INSERT … SELECT FROM UNNEST(…)`: one statement and 22
/// parameters whatever the batch size (PostgreSQL allows 65,535 parameters per statement, which
/// a multi-row VALUES list of 22 columns would reach at 2,978 rows).
#[derive(Default)]
struct LogColumns<'a> {
    request_id: Vec<&'a str>,
    created_at: Vec<DateTime<Utc>>,
    key_id: Vec<Option<i64>>,
    key_name: Vec<Option<&'a str>>,
    provider: Vec<Option<&'a str>>,
    model: Vec<Option<&'a str>>,
    upstream_model: Vec<Option<&'a str>>,
    stream: Vec<bool>,
    status: Vec<i32>,
    latency_ms: Vec<i64>,
    ttft_ms: Vec<Option<i64>>,
    prompt: Vec<Option<i64>>,
    completion: Vec<Option<i64>>,
    cached: Vec<Option<i64>>,
    reasoning: Vec<Option<i64>>,
    cost_usd: Vec<Option<f64>>,
    usage_source: Vec<Option<&'a str>>,
    price_source: Vec<Option<&'a str>>,
    registry_version: Vec<Option<&'a str>>,
    price_note: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    attempts: Vec<Option<&'a str>>,
}

impl<'a> LogColumns<'a> {
    fn new(rows: &'a [LogRow]) -> Self {
        let mut c = Self::default();
        for r in rows {
            let u = r.usage;
            c.request_id.push(&r.request_id);
            c.created_at.push(ms(r.created_at));
            c.key_id.push(r.key_id);
            c.key_name.push(r.key_name.as_deref());
            c.provider.push(r.provider.as_deref());
            c.model.push(r.model.as_deref());
            c.upstream_model.push(r.upstream_model.as_deref());
            c.stream.push(r.stream);
            c.status.push(i32::from(r.status));
            c.latency_ms.push(r.latency_ms as i64);
            c.ttft_ms.push(r.ttft_ms.map(|t| t as i64));
            c.prompt.push(u.map(|u| u.prompt as i64));
            c.completion.push(u.map(|u| u.completion as i64));
            c.cached.push(u.map(|u| u.cached as i64));
            c.reasoning.push(u.map(|u| u.reasoning as i64));
            c.cost_usd.push(r.cost_usd);
            c.usage_source.push(r.usage_source);
            c.price_source.push(r.price_source.as_deref());
            c.registry_version.push(r.registry_version.as_deref());
            c.price_note.push(r.price_note.as_deref());
            c.error.push(r.error.as_deref());
            c.attempts.push(r.attempts.as_deref());
        }
        c
    }
}

#[async_trait]
impl LogStore for PgStore {
    async fn insert_logs(&self, rows: &[LogRow]) -> StoreResult<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let c = LogColumns::new(rows);
        let mut tx = self.pool.begin().await?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO request_logs (request_id, created_at, key_id, key_name, provider, model,
                 upstream_model, stream, status, latency_ms, ttft_ms, prompt_tokens,
                 completion_tokens, cached_tokens, reasoning_tokens, cost_usd, usage_source,
                 price_source, registry_version, price_note, error, attempts)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[], $4::text[],
                 $5::text[], $6::text[], $7::text[], $8::bool[], $9::int4[], $10::int8[],
                 $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::float8[],
                 $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[])
             RETURNING id",
        )
        .bind(&c.request_id)
        .bind(&c.created_at)
        .bind(&c.key_id)
        .bind(&c.key_name)
        .bind(&c.provider)
        .bind(&c.model)
        .bind(&c.upstream_model)
        .bind(&c.stream)
        .bind(&c.status)
        .bind(&c.latency_ms)
        .bind(&c.ttft_ms)
        .bind(&c.prompt)
        .bind(&c.completion)
        .bind(&c.cached)
        .bind(&c.reasoning)
        .bind(&c.cost_usd)
        .bind(&c.usage_source)
        .bind(&c.price_source)
        .bind(&c.registry_version)
        .bind(&c.price_note)
        .bind(&c.error)
        .bind(&c.attempts)
        .fetch_all(&mut *tx)
        .await?;
        // UNNEST yields the rows in array order and each takes the next identity value as it is
        // inserted, so the ids ascend in row order (other instances' ids may fall in between);
        // RETURNING's own order is not promised, the sort restores it.
        ids.sort_unstable();
        if ids.len() != rows.len() {
            return Err(StoreError::Corrupt(format!(
                "inserted {} log rows but got {} ids",
                rows.len(),
                ids.len()
            )));
        }
        upsert_rollups(&mut tx, rows).await?;
        add_key_spend(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn count_logs(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM request_logs")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn query_logs(&self, q: &LogQuery) -> StoreResult<Vec<StoredLog>> {
        let mut qb =
            sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT * FROM request_logs WHERE 1 = 1");
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
            qb.push(" AND status = ").push_bind(i32::from(s));
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
        let done = sqlx::query(
            "DELETE FROM request_logs WHERE id IN
             (SELECT id FROM request_logs WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
        )
        .bind(ms(cutoff))
        .bind(i64::from(max_rows.max(1)))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn log_from_row(r: &PgRow) -> StoreResult<StoredLog> {
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
            created_at: r.try_get("created_at")?,
            key_id: r.try_get("key_id")?,
            key_name: r.try_get("key_name")?,
            provider: r.try_get("provider")?,
            model: r.try_get("model")?,
            upstream_model: r.try_get("upstream_model")?,
            stream: r.try_get("stream")?,
            status: r.try_get::<i32, _>("status")?.clamp(0, 999) as u16,
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
// Usage rollups (migrations/postgres/0001_init.sql), as in `sqlite`.

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

/// The sums as arrays, in the order of the group keys they belong to.
#[derive(Default)]
struct DeltaColumns {
    requests: Vec<i64>,
    errors: Vec<i64>,
    prompt: Vec<i64>,
    completion: Vec<i64>,
    cached: Vec<i64>,
    reasoning: Vec<i64>,
    cost: Vec<f64>,
    unpriced: Vec<i64>,
}

impl DeltaColumns {
    fn push(&mut self, d: &RollupDelta) {
        self.requests.push(d.requests);
        self.errors.push(d.errors);
        self.prompt.push(d.prompt);
        self.completion.push(d.completion);
        self.cached.push(d.cached);
        self.reasoning.push(d.reasoning);
        self.cost.push(d.cost);
        self.unpriced.push(d.unpriced);
    }

    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.requests)
            .bind(&self.errors)
            .bind(&self.prompt)
            .bind(&self.completion)
            .bind(&self.cached)
            .bind(&self.reasoning)
            .bind(&self.cost)
            .bind(&self.unpriced)
    }
}

const ROLLUP_SUMS: &str = "requests, errors, prompt_tokens, completion_tokens, cached_tokens, \
    reasoning_tokens, cost_usd, unpriced_requests";
const ROLLUP_ARRAYS: &str =
    "$int8[], $int8[], $int8[], $int8[], $int8[], $int8[], $float8[], $int8[]";
const ROLLUP_ADD: &str = "requests = t.requests + excluded.requests, \
    errors = t.errors + excluded.errors, \
    prompt_tokens = t.prompt_tokens + excluded.prompt_tokens, \
    completion_tokens = t.completion_tokens + excluded.completion_tokens, \
    cached_tokens = t.cached_tokens + excluded.cached_tokens, \
    reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens, \
    cost_usd = t.cost_usd + excluded.cost_usd, \
    unpriced_requests = t.unpriced_requests + excluded.unpriced_requests";
// SUM over BIGINT is NUMERIC in PostgreSQL; the casts keep the totals 64-bit integers.
const ROLLUP_SELECT: &str = "SUM(requests)::BIGINT AS requests, SUM(errors)::BIGINT AS errors, \
    SUM(prompt_tokens)::BIGINT AS prompt_tokens, \
    SUM(completion_tokens)::BIGINT AS completion_tokens, \
    SUM(cached_tokens)::BIGINT AS cached_tokens, \
    SUM(reasoning_tokens)::BIGINT AS reasoning_tokens, \
    SUM(cost_usd) AS cost_usd, SUM(unpriced_requests)::BIGINT AS unpriced_requests";

/// `$int8[]` → `$5::int8[]`, numbering from `first`.
fn numbered(template: &str, first: usize) -> String {
    let mut out = String::new();
    for (i, part) in template.split('$').enumerate() {
        if i > 0 {
            out.push_str(&format!("${}::", first + i - 1));
        }
        out.push_str(part);
    }
    out
}

/// Adds a batch to both rollup tables inside the batch's transaction: one upsert statement per
/// table. Groups go in sorted order, so concurrent batches from several instances lock shared
/// rollup rows in the same order and cannot deadlock.
async fn upsert_rollups(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[LogRow],
) -> StoreResult<()> {
    let mut full: BTreeMap<(NaiveDate, &str, &str, &str), RollupDelta> = BTreeMap::new();
    for r in rows {
        full.entry((
            r.created_at.date_naive(),
            r.key_name.as_deref().unwrap_or(""),
            r.model.as_deref().unwrap_or(""),
            r.provider.as_deref().unwrap_or(""),
        ))
        .or_default()
        .add_row(r);
    }
    let mut dims: BTreeMap<(&str, NaiveDate, &str), RollupDelta> = BTreeMap::new();
    for ((day, key, model, provider), d) in &full {
        for (dim, value) in [("key", key), ("model", model), ("provider", provider)] {
            dims.entry((dim, *day, value)).or_default().add(d);
        }
    }

    let (mut days, mut keys, mut models, mut providers) = (vec![], vec![], vec![], vec![]);
    let mut sums = DeltaColumns::default();
    for ((day, key, model, provider), d) in &full {
        days.push(*day);
        keys.push(*key);
        models.push(*model);
        providers.push(*provider);
        sums.push(d);
    }
    let sql = format!(
        "INSERT INTO usage_rollups AS t (day, key_name, model, provider, {ROLLUP_SUMS})
         SELECT * FROM UNNEST($1::date[], $2::text[], $3::text[], $4::text[], {})
         ON CONFLICT (day, key_name, model, provider) DO UPDATE SET {ROLLUP_ADD}",
        numbered(ROLLUP_ARRAYS, 5)
    );
    let q = sqlx::query(&sql)
        .bind(&days)
        .bind(&keys)
        .bind(&models)
        .bind(&providers);
    sums.bind(q).execute(&mut **tx).await?;

    let (mut dimensions, mut days, mut values) = (vec![], vec![], vec![]);
    let mut sums = DeltaColumns::default();
    for ((dim, day, value), d) in &dims {
        dimensions.push(*dim);
        days.push(*day);
        values.push(*value);
        sums.push(d);
    }
    let sql = format!(
        "INSERT INTO usage_dim_rollups AS t (dimension, day, value, {ROLLUP_SUMS})
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], {})
         ON CONFLICT (dimension, day, value) DO UPDATE SET {ROLLUP_ADD}",
        numbered(ROLLUP_ARRAYS, 4)
    );
    let q = sqlx::query(&sql)
        .bind(&dimensions)
        .bind(&days)
        .bind(&values);
    sums.bind(q).execute(&mut **tx).await?;
    Ok(())
}

/// As `sqlite::usage_totals`: unfiltered from `usage_dim_rollups`, filtered from
/// `usage_rollups`. Groups are text in byte order (COLLATE "C"), days `YYYY-MM-DD`.
async fn usage_totals(pool: &PgPool, q: &UsageQuery) -> StoreResult<Vec<UsageTotals>> {
    const DAY: &str = "to_char(day, 'YYYY-MM-DD')";
    let filtered = q.key_name.is_some() || q.model.is_some() || q.provider.is_some();
    let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new("SELECT ");
    if filtered {
        let column = match q.group_by {
            UsageGroup::Key => "key_name",
            UsageGroup::Model => "model",
            UsageGroup::Provider => "provider",
            UsageGroup::Day => DAY,
        };
        qb.push(format!(
            "{column} COLLATE \"C\" AS grp, {ROLLUP_SELECT} FROM usage_rollups WHERE day >= "
        ))
        .push_bind(q.from)
        .push(" AND day <= ")
        .push_bind(q.to);
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
            UsageGroup::Day => ("provider", DAY),
        };
        qb.push(format!(
            "{column} COLLATE \"C\" AS grp, {ROLLUP_SELECT} FROM usage_dim_rollups WHERE dimension = "
        ))
        .push_bind(dimension)
        .push(" AND day >= ")
        .push_bind(q.from)
        .push(" AND day <= ")
        .push_bind(q.to);
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

/// Adds each key's priced cost in the batch to `api_keys.spent_usd`, in the rows' transaction,
/// in key-id order (the same lock order in every instance).
async fn add_key_spend(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    rows: &[LogRow],
) -> StoreResult<()> {
    let mut by_key: BTreeMap<i64, f64> = BTreeMap::new();
    for r in rows {
        if let (Some(id), Some(cost)) = (r.key_id, r.cost_usd) {
            *by_key.entry(id).or_default() += cost;
        }
    }
    for (id, cost) in by_key {
        sqlx::query("UPDATE api_keys SET spent_usd = spent_usd + $1 WHERE id = $2")
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
    fn url_descriptions_never_hold_the_password() {
        assert_eq!(
            describe_url("postgres://gg:s3cret@db.internal:5432/gophergate?sslmode=require"),
            "gg@db.internal:5432/gophergate"
        );
        assert_eq!(
            describe_url("postgresql://db.internal/gophergate"),
            "db.internal/gophergate"
        );
        let url = "postgres://gg:p%40ss@host/db";
        assert_eq!(describe_url(url), "gg@host/db");
        assert_eq!(
            scrub(url, "bad p%40ss here".into()),
            "bad *** here".to_string()
        );
    }

    #[test]
    fn array_parameters_are_numbered_in_order() {
        assert_eq!(
            numbered("$int8[], $float8[]", 5),
            "$5::int8[], $6::float8[]"
        );
    }
}
