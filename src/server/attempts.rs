//! The attempt loop every upstream call goes through: for each target of the request's plan (one
//! model, or a route's ordered or weighted targets), ask its circuit breaker, call it, and on a
//! transient failure retry it with backoff (or after its `Retry-After`), then fall back to the next
//! target. Only while nothing has reached the client: the caller commits (sends headers) after
//! this returns. Bounded by `retry.max_retries` per target and `retry.budget` in all. Every attempt
//! is recorded on the request's log row.

use super::{
    SharedState,
    request_log::{Attempt, RequestLog},
};
use crate::{
    error::ApiError,
    providers::UpstreamError,
    resilience::{self, Next, breaker::Ticket},
    routing::{Plan, Route},
};
use std::{future::Future, time::Instant};

/// The answer of the target that succeeded, and its breaker ticket: the caller reports the final
/// outcome (a stream can still fail after its first chunk).
pub struct Success<T> {
    pub value: T,
    pub route: Route,
    pub ticket: Ticket,
}

pub async fn run<T, F, Fut>(
    state: &SharedState,
    plan: &Plan,
    log: &mut RequestLog,
    mut call: F,
) -> Result<Success<T>, ApiError>
where
    F: FnMut(Route) -> Fut,
    Fut: Future<Output = Result<T, UpstreamError>>,
{
    let cfg = &state.config.retry;
    let deadline = Instant::now() + cfg.budget;
    let mut last: Option<UpstreamError> = None;
    for (target, reason) in &plan.skipped {
        log.add_attempt(Attempt {
            target: target.clone(),
            status: None,
            error: Some(format!("unavailable: {reason}")),
            ms: 0,
        });
    }
    let last_target = plan.targets.len().saturating_sub(1);
    'targets: for (i, route) in plan.targets.iter().enumerate() {
        let label = route.label();
        let retries = plan.retries.unwrap_or(cfg.max_retries);
        let mut retry = 0;
        loop {
            let ticket = match state.breakers.admit(&label) {
                Ok(t) => t,
                // Open circuits are skipped only while another target can answer: a request
                // never fails on the breaker's word alone.
                Err(_) if i == last_target && last.is_none() => state.breakers.force(&label),
                Err(_) => {
                    log.add_attempt(Attempt {
                        target: label.clone(),
                        status: None,
                        error: Some("circuit_open: skipped, this target keeps failing".into()),
                        ms: 0,
                    });
                    continue 'targets;
                }
            };
            log.set_route(
                route.provider.name(),
                &route.upstream_model,
                state.pricer.clone(),
            );
            let started = Instant::now();
            let outcome = tokio::select! {
                r = call(route.clone()) => r,
                _ = state.hard_stop.cancelled() => return Err(ApiError::ShuttingDown),
            };
            let ms = started.elapsed().as_millis() as u64;
            let e = match outcome {
                Ok(value) => {
                    log.add_attempt(Attempt {
                        target: label,
                        status: Some(200),
                        error: None,
                        ms,
                    });
                    return Ok(Success {
                        value,
                        route: route.clone(),
                        ticket,
                    });
                }
                Err(e) => e,
            };
            let message = e.to_string();
            log.add_attempt(Attempt {
                target: label.clone(),
                status: e.upstream_status(),
                error: Some(message.clone()),
                ms,
            });
            if resilience::counts_against_target(&e) {
                ticket.failure(&message);
            } else {
                // The target answered; the request was at fault.
                ticket.success();
            }
            let next = resilience::classify(&e, cfg);
            if next == Next::Stop {
                return Err(e.into());
            }
            last = Some(e);
            match next {
                Next::Retry { after } if retry < retries => {
                    let wait = after.unwrap_or_else(|| {
                        resilience::backoff(cfg, retry, &mut rand::thread_rng())
                    });
                    if Instant::now() + wait >= deadline {
                        break 'targets;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = state.hard_stop.cancelled() => return Err(ApiError::ShuttingDown),
                    }
                    retry += 1;
                }
                _ => break,
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => ApiError::Internal("the request had no target to try".into()),
    })
}
