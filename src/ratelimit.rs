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

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
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

#[cfg(test)]
mod tests {
    use super::*;

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
