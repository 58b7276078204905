//! Per-key request-rate limits (`keys create --rpm N`), in process: a sliding one-minute window
//! (GCRA), so a key gets N requests per minute spread however it likes but never a burst of 2N
//! across a window edge. Answered with 429, `Retry-After` and OpenAI's `x-ratelimit-*` headers.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys tracked before idle ones are forgotten (bounds memory).
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Default)]
pub struct RateLimiter {
    // Theoretical arrival time per key; a std mutex held for a few arithmetic operations.
    tat: Mutex<HashMap<i64, Instant>>,
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    #[default]
    Requests,
    Tokens,
}

impl Unit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requests => "requests",
            Self::Tokens => "tokens",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub unit: Unit,
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until a request would be allowed again (zero when allowed).
    pub retry_after: Duration,
    /// Until the window is fully replenished.
    pub reset: Duration,
}

impl RateLimiter {
    pub fn check(&self, key_id: i64, rpm: u32, now: Instant) -> Decision {
        let rpm = rpm.max(1);
        let interval = WINDOW / rpm;
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if tat.len() >= MAX_KEYS {
            tat.retain(|_, t| *t > now);
        }
        let current = tat.get(&key_id).copied().unwrap_or(now).max(now);
        let next = current + interval;
        // Allowed while the theoretical arrival time stays within one window of now.
        let allowed = next <= now + WINDOW;
        if allowed {
            tat.insert(key_id, next);
        }
        let used_until = if allowed { next } else { current };
        let backlog = used_until.saturating_duration_since(now);
        let remaining = ((WINDOW.saturating_sub(backlog)).as_secs_f64() / interval.as_secs_f64())
            .floor() as u32;
        Decision {
            unit: Unit::Requests,
            allowed,
            limit: rpm,
            remaining: remaining.min(rpm),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                next.saturating_duration_since(now + WINDOW)
            },
            reset: backlog,
        }
    }
}

impl Decision {
    /// OpenAI's `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers.
    pub fn write_headers(&self, h: &mut axum::http::HeaderMap) {
        let unit = self.unit.as_str();
        for (name, value) in [
            (format!("x-ratelimit-limit-{unit}"), self.limit.to_string()),
            (
                format!("x-ratelimit-remaining-{unit}"),
                self.remaining.to_string(),
            ),
            (
                format!("x-ratelimit-reset-{unit}"),
                format!("{:.3}s", self.reset.as_secs_f64()),
            ),
        ] {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::try_from(name),
                axum::http::HeaderValue::from_str(&value),
            ) {
                h.insert(n, v);
            }
        }
    }
}

/// Per-key tokens-per-minute limits (`keys create --tpm N`): a sliding one-minute window of
/// per-second buckets. A request is admitted when the tokens used in the last minute plus its own
/// estimate (prompt plus `max_tokens` when given) fit; its real usage replaces the estimate when it
/// finishes.
#[derive(Debug, Default)]
pub struct TokenLimiter {
    // Per key: (second since `epoch`, tokens) buckets within the last minute, oldest first.
    keys: Mutex<HashMap<i64, std::collections::VecDeque<(u64, i64)>>>,
    epoch: std::sync::OnceLock<Instant>,
}

/// Tokens counted against a key for one request; `settle` corrects the estimate.
pub struct TokenCharge {
    ledger: Ledger,
    key_id: i64,
    second: u64,
    charged: i64,
}

enum Ledger {
    Local(std::sync::Arc<TokenLimiter>),
    /// Counted in Redis (`coordination`), shared by every instance.
    Shared(std::sync::Arc<crate::coordination::Coordinator>),
}

impl TokenCharge {
    /// A charge made in Redis (`Coordinator::check_tpm`).
    pub fn shared(
        coord: std::sync::Arc<crate::coordination::Coordinator>,
        key_id: i64,
        second: u64,
        charged: u64,
    ) -> Self {
        Self {
            ledger: Ledger::Shared(coord),
            key_id,
            second,
            charged: charged as i64,
        }
    }

    pub fn settle(self, actual: u64) {
        let delta = actual as i64 - self.charged;
        if delta == 0 {
            return;
        }
        match self.ledger {
            Ledger::Local(limiter) => limiter.add(self.key_id, self.second, delta),
            Ledger::Shared(coord) => {
                let (key_id, second) = (self.key_id, self.second);
                // Called where a row is finished, possibly outside async code: off to the runtime.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = coord.settle_tpm(key_id, second, delta).await {
                            tracing::warn!(error = %e, "could not correct a token charge");
                        }
                    });
                }
            }
        }
    }
}

impl TokenLimiter {
    fn second(&self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_init(|| now);
        now.saturating_duration_since(epoch).as_secs()
    }

    fn add(&self, key_id: i64, second: u64, tokens: i64) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let buckets = keys.entry(key_id).or_default();
        // When its bucket has expired already, the correction no longer matters.
        if let Some((_, t)) = buckets.iter_mut().find(|(s, _)| *s == second) {
            *t += tokens;
        }
    }

    pub fn check(
        self: &std::sync::Arc<Self>,
        key_id: i64,
        tpm: u32,
        estimate: u64,
        now: Instant,
    ) -> Result<TokenCharge, Decision> {
        let second = self.second(now);
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS {
            keys.retain(|_, b| b.back().is_some_and(|(s, _)| second < s + 60));
        }
        let buckets = keys.entry(key_id).or_default();
        while buckets.front().is_some_and(|(s, _)| second >= s + 60) {
            buckets.pop_front();
        }
        let used: i64 = buckets.iter().map(|(_, t)| *t).sum::<i64>().max(0);
        let limit = i64::from(tpm.max(1));
        let est = estimate as i64;
        if used + est > limit && used > 0 {
            // Wait until enough of the oldest buckets have left the window.
            let mut freed = 0;
            let mut wait_until = second + 60;
            for (s, t) in buckets.iter() {
                freed += t;
                if used - freed + est <= limit {
                    wait_until = s + 60;
                    break;
                }
            }
            let retry_after = Duration::from_secs(wait_until.saturating_sub(second).max(1));
            return Err(Decision {
                unit: Unit::Tokens,
                allowed: false,
                limit: tpm,
                remaining: (limit - used).max(0) as u32,
                retry_after,
                reset: retry_after,
            });
        }
        // A request larger than the whole limit is admitted alone into an empty window, never
        // refused forever.
        match buckets.back_mut() {
            Some((s, t)) if *s == second => *t += est,
            _ => buckets.push_back((second, est)),
        }
        Ok(TokenCharge {
            ledger: Ledger::Local(self.clone()),
            key_id,
            second,
            charged: est,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_per_minute_admit_until_full_then_refuse_with_a_wait() {
        let l = std::sync::Arc::new(TokenLimiter::default());
        let t0 = Instant::now();
        let a = l.check(7, 1000, 400, t0).unwrap();
        a.settle(600);
        let b = l.check(7, 1000, 300, t0 + Duration::from_secs(10)).unwrap();
        b.settle(300);
        let d = l
            .check(7, 1000, 200, t0 + Duration::from_secs(20))
            .err()
            .expect("900 used + 200 > 1000");
        assert_eq!(d.unit, Unit::Tokens);
        assert_eq!(d.remaining, 100);
        // The first 600 leave the window at t0 + 60s.
        assert_eq!(d.retry_after, Duration::from_secs(40));
        assert!(l.check(7, 1000, 200, t0 + Duration::from_secs(61)).is_ok());
        assert!(l.check(8, 1000, 999, t0).is_ok(), "keys are separate");
    }

    #[test]
    fn an_oversized_request_is_admitted_into_an_empty_window_only() {
        let l = std::sync::Arc::new(TokenLimiter::default());
        let t0 = Instant::now();
        l.check(1, 100, 5000, t0).unwrap().settle(5000);
        assert!(l.check(1, 100, 1, t0 + Duration::from_secs(59)).is_err());
        assert!(l.check(1, 100, 1, t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn n_per_minute_then_refused_then_refilled() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        for i in 0..3 {
            let d = l.check(1, 3, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let d = l.check(1, 3, t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Duration::from_secs(20));
        // Other keys are not affected.
        assert!(l.check(2, 3, t0).allowed);
        // One interval later, one more.
        assert!(l.check(1, 3, t0 + Duration::from_secs(20)).allowed);
        assert!(!l.check(1, 3, t0 + Duration::from_secs(20)).allowed);
    }
}
