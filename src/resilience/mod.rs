//! What happens when an upstream fails: which failures are worth another try (on the same target
//! or the next one), how long to wait between tries, and the circuit breakers that stop the gateway
//! from hammering a target that keeps failing. Pure policy: the attempt loop lives in
//! `server::attempts`, which is the only place that sleeps or calls upstreams.

pub mod breaker;

use crate::{config::RetryConfig, providers::UpstreamError};
use rand::Rng;
use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Try the same target again (after a backoff, or the upstream's `Retry-After`).
    Retry { after: Option<Duration> },
    /// This target will not do; try the next one, if any.
    Fallback,
    /// The request itself is at fault (a 400, a 404…): no other target would answer differently.
    Stop,
}

/// Classifies an upstream failure. Connect errors, 429, 500, 502, 503 and 504 are transient;
/// timeouts, garbled answers, a rejected gateway key and unsupported parameters are particular to
/// one target; every other status is the request's own fault.
pub fn classify(e: &UpstreamError, cfg: &RetryConfig) -> Next {
    match e {
        UpstreamError::Unreachable { .. } => Next::Retry { after: None },
        UpstreamError::Status { status, detail, .. } => match status {
            429 => match detail.retry_after.map(Duration::from_secs) {
                Some(d) if d > cfg.max_retry_after => Next::Fallback,
                after => Next::Retry { after },
            },
            500 | 502 | 503 | 504 => Next::Retry { after: None },
            // Other 5xx (501, 505…) will not get better by asking the same target again.
            s if *s >= 500 => Next::Fallback,
            _ => Next::Stop,
        },
        UpstreamError::Timeout { .. }
        | UpstreamError::BadResponse { .. }
        | UpstreamError::Auth { .. }
        | UpstreamError::Unsupported { .. } => Next::Fallback,
    }
}

/// Whether a failure says something about the target's health (client mistakes do not).
pub fn counts_against_target(e: &UpstreamError) -> bool {
    match e {
        UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
        UpstreamError::Unsupported { .. } => false,
        _ => true,
    }
}

/// The wait before retry number `retry` (0-based): exponential from `initial_backoff`, capped at
/// `max_backoff`, with "equal jitter" (half fixed, half random) so clients that failed together do
/// not retry together.
pub fn backoff(cfg: &RetryConfig, retry: u32, rng: &mut impl Rng) -> Duration {
    let exp = cfg
        .initial_backoff
        .saturating_mul(1u32 << retry.min(16))
        .min(cfg.max_backoff);
    let half = exp / 2;
    half + half.mul_f64(rng.r#gen::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::error::StatusDetail;

    fn status(status: u16, retry_after: Option<u64>) -> UpstreamError {
        UpstreamError::Status {
            provider: "p".into(),
            status,
            message: "m".into(),
            detail: Box::new(StatusDetail {
                retry_after,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn transient_statuses_are_retried_client_errors_are_not() {
        let cfg = RetryConfig::default();
        for s in [500, 502, 503, 504] {
            assert_eq!(
                classify(&status(s, None), &cfg),
                Next::Retry { after: None }
            );
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert_eq!(classify(&status(s, None), &cfg), Next::Stop, "{s}");
        }
        assert_eq!(classify(&status(501, None), &cfg), Next::Fallback);
        let unreachable = UpstreamError::Unreachable {
            provider: "p".into(),
            detail: "refused".into(),
        };
        assert_eq!(classify(&unreachable, &cfg), Next::Retry { after: None });
        let timeout = UpstreamError::Timeout {
            provider: "p".into(),
        };
        assert_eq!(classify(&timeout, &cfg), Next::Fallback);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let cfg = RetryConfig::default();
        assert_eq!(
            classify(&status(429, Some(2)), &cfg),
            Next::Retry {
                after: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(classify(&status(429, Some(3600)), &cfg), Next::Fallback);
        assert_eq!(
            classify(&status(429, None), &cfg),
            Next::Retry { after: None }
        );
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let cfg = RetryConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..Default::default()
        };
        let mut rng = rand::thread_rng();
        for _ in 0..200 {
            let d0 = backoff(&cfg, 0, &mut rng);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d2 = backoff(&cfg, 2, &mut rng);
            assert!(d2 >= Duration::from_millis(200) && d2 <= Duration::from_millis(400));
            let d9 = backoff(&cfg, 9, &mut rng);
            assert!(d9 >= Duration::from_millis(500) && d9 <= Duration::from_millis(1000));
        }
        let samples: std::collections::HashSet<_> =
            (0..50).map(|_| backoff(&cfg, 3, &mut rng)).collect();
        assert!(samples.len() > 10, "jitter spreads the waits");
    }
}
