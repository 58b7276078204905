//! What several instances share through Redis (`redis.url`): per-key request and token rates,
//! budget reservations, the live feed, and prompt key-cache invalidation. Every counter changes
//! inside one Lua script, so concurrent requests on different instances cannot both pass a check
//! that only one of them should; the clock is Redis's own (`TIME`), so instances with skewed clocks
//! agree. Without `redis.url` none of this runs and the in-process versions are used.
//!
//! Money is counted in integer nanodollars in Redis: exact sums, no float drift between instances.
//! A reservation is a member of a sorted set scored by its expiry, so a crashed instance's
//! reservations lapse instead of blocking the key forever.

use crate::{
    hub::Hub,
    keys::KeyCache,
    ratelimit::{Decision, Unit},
    secret::Secret,
};
use futures::StreamExt;
use redis::{Script, aio::ConnectionManager};
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Live-feed messages waiting to be published; beyond this they are skipped (counted), never
/// waited for: the feed is best effort, the request path is not.
const FANOUT_QUEUE: usize = 4096;
/// How long a budget reservation lives if its request never settles it (a crashed instance).
pub const RESERVATION_TTL: Duration = Duration::from_secs(3600);

pub struct Coordinator {
    conn: ConnectionManager,
    /// `redis.prefix`: the start of every key and channel name.
    prefix: String,
    hub_channel: String,
    keys_channel: String,
    client: redis::Client,
    /// Tells this instance's own messages apart on the shared channels.
    pub instance: String,
    gcra: Script,
    tokens: Script,
    tokens_settle: Script,
    reserve: Script,
    settle: Script,
    pub fanout_skipped: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
#[error("Redis: {0}")]
pub struct CoordError(#[from] redis::RedisError);

/// Dollars to integer nanodollars (rounded), and back.
pub fn to_nanos(usd: f64) -> i64 {
    (usd * 1e9).round() as i64
}

pub fn from_nanos(n: i64) -> f64 {
    n as f64 / 1e9
}

const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = 60000
local interval = window / tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
if nxt <= now + window then
  redis.call('SET', KEYS[1], tostring(nxt), 'PX', math.ceil(nxt - now) + 1000)
  return {1, math.floor((window - (nxt - now)) / interval), 0, math.ceil(nxt - now)}
end
return {0, math.floor((window - (tat - now)) / interval), math.ceil(nxt - now - window), math.ceil(tat - now)}
"#;

const TOKENS: &str = r#"
local t = redis.call('TIME')
local sec = tonumber(t[1])
local h = redis.call('HGETALL', KEYS[1])
local used = 0
local buckets = {}
for i = 1, #h, 2 do
  local s = tonumber(h[i])
  local v = tonumber(h[i + 1])
  if s <= sec - 60 then
    redis.call('HDEL', KEYS[1], h[i])
  else
    used = used + v
    table.insert(buckets, {s, v})
  end
end
if used < 0 then used = 0 end
local limit = tonumber(ARGV[1])
local est = tonumber(ARGV[2])
if used + est > limit and used > 0 then
  table.sort(buckets, function(a, b) return a[1] < b[1] end)
  local freed = 0
  local wait_until = sec + 60
  for _, b in ipairs(buckets) do
    freed = freed + b[2]
    if used - freed + est <= limit then
      wait_until = b[1] + 60
      break
    end
  end
  local remaining = limit - used
  if remaining < 0 then remaining = 0 end
  return {0, remaining, math.max(wait_until - sec, 1), sec}
end
redis.call('HINCRBY', KEYS[1], sec, est)
redis.call('EXPIRE', KEYS[1], 120)
local remaining = limit - used - est
if remaining < 0 then remaining = 0 end
return {1, remaining, 0, sec}
"#;

const TOKENS_SETTLE: &str = r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
end
return 1
"#;

// KEYS: spent, reservations. ARGV: budget, spent in the database, amount, member, ttl (ms).
const RESERVE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[2], 'NX')
local spent = tonumber(redis.call('GET', KEYS[1]))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local reserved = 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  reserved = reserved + tonumber(string.match(m, ':(%d+)$'))
end
local amount = tonumber(ARGV[3])
if spent + reserved + amount > tonumber(ARGV[1]) then
  return {0, spent, reserved}
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return {1, spent, reserved}
"#;

// KEYS: spent, reservations. ARGV: member, actual cost. Spend only counts into a ledger that
// exists: a missing one is rebuilt from the database, which the log writer keeps current.
const SETTLE: &str = r#"
redis.call('ZREM', KEYS[2], ARGV[1])
if tonumber(ARGV[2]) > 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBY', KEYS[1], ARGV[2])
end
return 1
"#;

/// A budget reservation held in Redis.
#[derive(Debug)]
pub struct SharedReservation {
    pub key_id: i64,
    pub member: String,
}

pub enum BudgetAnswer {
    Reserved(SharedReservation),
    /// (spent, reserved) in dollars.
    Refused(f64, f64),
}

impl Coordinator {
    /// Connects (bounded by a timeout, so a wrong URL stops start-up with a clear message).
    pub async fn connect(url: &Secret<String>, prefix: &str) -> anyhow::Result<Arc<Self>> {
        let client = redis::Client::open(url.expose().as_str())
            .map_err(|e| anyhow::anyhow!("redis.url is not a valid Redis URL ({:?})", e.kind()))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("could not reach Redis at redis.url within 5s"))?
        .map_err(|e| anyhow::anyhow!("could not connect to Redis at redis.url ({:?})", e.kind()))?;
        Ok(Arc::new(Self {
            conn,
            prefix: prefix.to_string(),
            hub_channel: format!("{prefix}:hub"),
            keys_channel: format!("{prefix}:keys"),
            client,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            gcra: Script::new(GCRA),
            tokens: Script::new(TOKENS),
            tokens_settle: Script::new(TOKENS_SETTLE),
            reserve: Script::new(RESERVE),
            settle: Script::new(SETTLE),
            fanout_skipped: AtomicU64::new(0),
        }))
    }

    /// Requests per minute for a key, shared by every instance (GCRA on Redis's clock).
    pub async fn check_rpm(&self, key_id: i64, rpm: u32) -> Result<Decision, CoordError> {
        let rpm = rpm.max(1);
        let (allowed, remaining, retry_ms, reset_ms): (i64, i64, i64, i64) = self
            .gcra
            .key(format!("{}:rpm:{key_id}", self.prefix))
            .arg(rpm)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(Decision {
            unit: Unit::Requests,
            allowed: allowed == 1,
            limit: rpm,
            remaining: remaining.clamp(0, i64::from(rpm)) as u32,
            retry_after: Duration::from_millis(retry_ms.max(0) as u64),
            reset: Duration::from_millis(reset_ms.max(0) as u64),
        })
    }

    /// Tokens per minute: admits `estimate` or says how long to wait. On admission returns the
    /// second the estimate was counted in (for the correction).
    pub async fn check_tpm(
        &self,
        key_id: i64,
        tpm: u32,
        estimate: u64,
    ) -> Result<Result<u64, Decision>, CoordError> {
        let (allowed, remaining, retry_s, second): (i64, i64, i64, i64) = self
            .tokens
            .key(format!("{}:tpm:{key_id}", self.prefix))
            .arg(tpm.max(1))
            .arg(estimate)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if allowed == 1 {
            return Ok(Ok(second.max(0) as u64));
        }
        let wait = Duration::from_secs(retry_s.max(1) as u64);
        Ok(Err(Decision {
            unit: Unit::Tokens,
            allowed: false,
            limit: tpm,
            remaining: remaining.clamp(0, i64::from(tpm)) as u32,
            retry_after: wait,
            reset: wait,
        }))
    }

    pub async fn settle_tpm(&self, key_id: i64, second: u64, delta: i64) -> Result<(), CoordError> {
        let _: i64 = self
            .tokens_settle
            .key(format!("{}:tpm:{key_id}", self.prefix))
            .arg(second)
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    fn budget_keys(&self, key_id: i64) -> (String, String) {
        (
            format!("{}:budget:{key_id}:spent", self.prefix),
            format!("{}:budget:{key_id}:reserved", self.prefix),
        )
    }

    /// Reserves `amount` dollars against `budget` for every instance at once.
    pub async fn reserve(
        &self,
        key_id: i64,
        budget: f64,
        db_spent: f64,
        amount: f64,
    ) -> Result<BudgetAnswer, CoordError> {
        let (spent_key, reserved_key) = self.budget_keys(key_id);
        // Round the reservation up so that rounding can never let a request through.
        let amount_n = (amount * 1e9).ceil() as i64;
        let member = format!("{}:{amount_n}", uuid::Uuid::new_v4().simple());
        let (ok, spent, reserved): (i64, i64, i64) = self
            .reserve
            .key(&spent_key)
            .key(&reserved_key)
            .arg(to_nanos(budget))
            .arg(to_nanos(db_spent))
            .arg(amount_n)
            .arg(&member)
            .arg(RESERVATION_TTL.as_millis() as i64)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(if ok == 1 {
            BudgetAnswer::Reserved(SharedReservation { key_id, member })
        } else {
            BudgetAnswer::Refused(from_nanos(spent), from_nanos(reserved))
        })
    }

    /// Replaces a reservation with the real cost (0 releases it).
    pub async fn settle(&self, r: &SharedReservation, actual: f64) -> Result<(), CoordError> {
        let (spent_key, reserved_key) = self.budget_keys(r.key_id);
        let _: i64 = self
            .settle
            .key(&spent_key)
            .key(&reserved_key)
            .arg(&r.member)
            .arg(to_nanos(actual.max(0.0)))
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    /// Tells every instance that keys changed (revoked, created): their caches reload now.
    pub async fn announce_keys_changed(&self) {
        let r: Result<i64, _> = redis::cmd("PUBLISH")
            .arg(&self.keys_channel)
            .arg(&self.instance)
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not announce a key change on Redis");
        }
    }

    /// The queue the hub hands its shareable messages to (see `Hub::with_fanout`).
    pub fn fanout(self: &Arc<Self>, stop: CancellationToken) -> mpsc::Sender<Arc<str>> {
        let (tx, mut rx) = mpsc::channel::<Arc<str>>(FANOUT_QUEUE);
        let this = self.clone();
        tokio::spawn(async move {
            let mut conn = this.conn.clone();
            loop {
                let msg = tokio::select! {
                    m = rx.recv() => match m { Some(m) => m, None => return },
                    _ = stop.cancelled() => return,
                };
                let payload = format!("{}\n{msg}", this.instance);
                let r: Result<i64, _> = redis::cmd("PUBLISH")
                    .arg(&this.hub_channel)
                    .arg(payload)
                    .query_async(&mut conn)
                    .await;
                if r.is_err() {
                    this.fanout_skipped.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tx
    }

    /// Worker: listens for other instances' live-feed messages (into this instance's hub) and key
    /// changes (this instance's key cache reloads). Reconnects with a pause when Redis goes away.
    pub async fn listen(self: Arc<Self>, hub: Hub, keys: Arc<KeyCache>, stop: CancellationToken) {
        loop {
            if let Err(e) = self.listen_once(&hub, &keys, &stop).await {
                tracing::warn!(error = %e, "Redis subscription lost; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => return,
            }
        }
    }

    async fn listen_once(
        &self,
        hub: &Hub,
        keys: &KeyCache,
        stop: &CancellationToken,
    ) -> Result<(), CoordError> {
        let mut pubsub = self.client.get_async_pubsub().await?;
        pubsub.subscribe(&self.hub_channel).await?;
        pubsub.subscribe(&self.keys_channel).await?;
        // A change announced while we were not subscribed would be missed: reload once now.
        keys.invalidate();
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => match m { Some(m) => m, None => return Ok(()) },
                _ = stop.cancelled() => return Ok(()),
            };
            let payload: String = msg.get_payload()?;
            let (from, body) = payload.split_once('\n').unwrap_or((payload.as_str(), ""));
            if from == self.instance {
                continue;
            }
            let channel = msg.get_channel_name();
            if channel == self.keys_channel {
                keys.invalidate();
            } else if channel == self.hub_channel {
                hub.inject(Arc::from(body));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanodollars_are_exact_for_cents_and_round_trip() {
        assert_eq!(to_nanos(0.01), 10_000_000);
        assert_eq!(to_nanos(12.345678901), 12_345_678_901);
        assert_eq!(from_nanos(to_nanos(3.5)), 3.5);
        let sum: i64 = (0..1000).map(|_| to_nanos(0.001)).sum();
        assert_eq!(sum, to_nanos(1.0));
    }
}
