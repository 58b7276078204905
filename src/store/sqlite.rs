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
            .connect_with(opts)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }
}

fn opt_time(s: Option<String>) -> StoreResult<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_time).transpose()
}

const KEY_COLUMNS: &str =
    "id, name, key_prefix, models, rpm, budget_usd, spent_usd, expires_at, revoked_at, created_at";

fn key_from_row(row: &SqliteRow) -> StoreResult<KeyRecord> {
    let models: Option<String> = row.try_get("models")?;
    let models = models
        .map(|m| serde_json::from_str::<Vec<String>>(&m))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("api_keys.models: {e}")))?;
    let rpm: Option<i64> = row.try_get("rpm")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("key_prefix")?,
        models,
        rpm: rpm.map(|r| r.clamp(0, u32::MAX as i64) as u32),
        budget_usd: row.try_get("budget_usd")?,
        spent_usd: row.try_get("spent_usd")?,
        expires_at: opt_time(row.try_get("expires_at")?)?,
        revoked_at: opt_time(row.try_get("revoked_at")?)?,
        created_at: parse_time(&row.try_get::<String, _>("created_at")?)?,
    })
}

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
            "INSERT INTO api_keys (name, key_hash, key_prefix, models, rpm, budget_usd, expires_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING {KEY_COLUMNS}"
        ))
        .bind(&key.name)
        .bind(key.hash.as_slice())
        .bind(&key.prefix)
        .bind(models)
        .bind(key.rpm.map(i64::from))
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

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?)
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

/// Columns per row in the multi-row insert; SQLite allows 32,766 bound parameters per statement.
const LOG_COLUMNS: usize = 19;
const LOG_ROWS_PER_STATEMENT: usize = 32_000 / LOG_COLUMNS;

#[async_trait]
impl LogStore for SqliteStore {
    async fn insert_logs(&self, rows: &[LogRow]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        for chunk in rows.chunks(LOG_ROWS_PER_STATEMENT) {
            let mut qb = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO request_logs (request_id, created_at, key_id, key_name, provider, model, upstream_model,
                 stream, status, latency_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
                 reasoning_tokens, cost_usd, usage_source, price_source, error) ",
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
                    .push_bind(&r.error);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
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
            error: r.try_get("error")?,
        },
    })
}
