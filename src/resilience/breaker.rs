//! Circuit breakers, one per `provider/model` target, fed by every upstream attempt (passive
//! health). A target that fails `failure_threshold` times in a row, or at `failure_rate` over the
//! last `window` once `min_requests` were seen, is opened: skipped for `cooldown`, then half-open,
//! when exactly one trial request is let through; its success closes the circuit, its failure opens
//! it again. Every change is published as an event (the dashboard shows it live).

use crate::{
    config::HealthConfig,
    events::{Event, Events},
    store::format_time,
};
use chrono::Utc;
use serde::Serialize;
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Circuits kept at most; clients choose model names, so idle healthy ones are forgotten first.
const MAX_CIRCUITS: usize = 10_000;
/// Outcomes remembered per circuit for the failure rate (within `window`).
const MAX_SAMPLES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Circuit {
    state: CircuitState,
    open_until: Instant,
    trial_in_flight: bool,
    consecutive_failures: u32,
    /// `(when, failed)` within the window, oldest first.
    samples: VecDeque<(Instant, bool)>,
    last_error: Option<String>,
    last_change: chrono::DateTime<Utc>,
}

impl Circuit {
    fn new() -> Self {
        Self {
            state: CircuitState::Closed,
            open_until: Instant::now(),
            trial_in_flight: false,
            consecutive_failures: 0,
            samples: VecDeque::new(),
            last_error: None,
            last_change: Utc::now(),
        }
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some((t, _)) = self.samples.front() {
            if now.duration_since(*t) > window || self.samples.len() > MAX_SAMPLES {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }
}

/// A circuit as the API and the dashboard show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CircuitStatus {
    pub target: String,
    pub state: CircuitState,
    pub consecutive_failures: u32,
    /// Attempts and failures within the window.
    pub requests: usize,
    pub failures: usize,
    pub error_rate: f64,
    /// Milliseconds until an open circuit lets a trial through.
    pub retry_in_ms: Option<u64>,
    pub last_error: Option<String>,
    /// RFC 3339, UTC: when the state last changed.
    pub since: String,
}

pub struct Breakers {
    cfg: HealthConfig,
    events: Events,
    // A std mutex: held for a few operations on one circuit, never across an await.
    circuits: Mutex<HashMap<String, Circuit>>,
}

/// Permission to call a target; report how it went with `success`/`failure`. Dropped without a
/// report (the client left), a half-open trial slot is handed back.
pub struct Ticket {
    breakers: Arc<Breakers>,
    target: String,
    done: bool,
    /// Not a trial slot: nothing to hand back.
    forced: bool,
}

impl Ticket {
    pub fn target(&self) -> &str {
        &self.target
    }

    pub fn success(mut self) {
        self.done = true;
        self.breakers.record(&self.target, None);
    }

    pub fn failure(mut self, error: &str) {
        self.done = true;
        self.breakers.record(&self.target, Some(error));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done && !self.forced {
            self.breakers.release(&self.target);
        }
    }
}

impl Breakers {
    pub fn new(cfg: HealthConfig, events: Events) -> Arc<Self> {
        Arc::new(Self {
            cfg,
            events,
            circuits: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Circuit>> {
        self.circuits.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A ticket to call `target`, or how long until its open circuit allows a trial.
    pub fn admit(self: &Arc<Self>, target: &str) -> Result<Ticket, Duration> {
        let now = Instant::now();
        let mut changed = None;
        {
            let mut map = self.lock();
            if let Some(c) = map.get_mut(target) {
                match c.state {
                    CircuitState::Closed => {}
                    CircuitState::Open if now >= c.open_until => {
                        c.state = CircuitState::HalfOpen;
                        c.trial_in_flight = true;
                        c.last_change = Utc::now();
                        changed = Some((CircuitState::HalfOpen, c.last_error.clone()));
                    }
                    CircuitState::Open => return Err(c.open_until - now),
                    CircuitState::HalfOpen if c.trial_in_flight => {
                        return Err(Duration::from_secs(1));
                    }
                    CircuitState::HalfOpen => c.trial_in_flight = true,
                }
            }
        }
        if let Some((state, reason)) = changed {
            self.publish(target, state, reason);
        }
        Ok(Ticket {
            breakers: self.clone(),
            target: target.to_string(),
            done: false,
            forced: false,
        })
    }

    /// A ticket whatever the circuit says: for a request whose every target is open, which is
    /// sent to the upstream anyway (its own answer beats a guess), its outcome still counted.
    pub fn force(self: &Arc<Self>, target: &str) -> Ticket {
        Ticket {
            breakers: self.clone(),
            target: target.to_string(),
            done: false,
            forced: true,
        }
    }

    fn release(&self, target: &str) {
        if let Some(c) = self.lock().get_mut(target) {
            c.trial_in_flight = false;
        }
    }

    /// Records one attempt's outcome (`None` = success).
    pub fn record(&self, target: &str, error: Option<&str>) {
        let now = Instant::now();
        let cfg = &self.cfg;
        let changed = {
            let mut map = self.lock();
            if !map.contains_key(target) {
                if error.is_none() {
                    // A healthy target needs no circuit until it first fails.
                    return;
                }
                if map.len() >= MAX_CIRCUITS {
                    map.retain(|_, c| {
                        c.state != CircuitState::Closed || c.consecutive_failures > 0
                    });
                    if map.len() >= MAX_CIRCUITS {
                        return;
                    }
                }
            }
            let c = map.entry(target.to_string()).or_insert_with(Circuit::new);
            c.prune(now, cfg.window);
            c.samples.push_back((now, error.is_some()));
            let before = c.state;
            match error {
                None => {
                    c.consecutive_failures = 0;
                    if c.state == CircuitState::HalfOpen {
                        c.state = CircuitState::Closed;
                        c.trial_in_flight = false;
                        // A fresh start: the failures that opened it are history.
                        c.samples.clear();
                    }
                }
                Some(e) => {
                    c.consecutive_failures += 1;
                    c.last_error = Some(e.chars().take(300).collect());
                    let failures = c.samples.iter().filter(|(_, f)| *f).count();
                    let rate_tripped = c.samples.len() >= cfg.min_requests as usize
                        && failures as f64 / c.samples.len() as f64 >= cfg.failure_rate;
                    let trip = match c.state {
                        CircuitState::HalfOpen => true,
                        CircuitState::Closed => {
                            c.consecutive_failures >= cfg.failure_threshold || rate_tripped
                        }
                        CircuitState::Open => false,
                    };
                    if trip {
                        c.state = CircuitState::Open;
                        c.trial_in_flight = false;
                        c.open_until = now + cfg.cooldown;
                    }
                }
            }
            if c.state != before {
                c.last_change = Utc::now();
                Some((c.state, c.last_error.clone()))
            } else {
                None
            }
        };
        if let Some((state, reason)) = changed {
            self.publish(target, state, reason);
        }
    }

    fn publish(&self, target: &str, state: CircuitState, reason: Option<String>) {
        match state {
            CircuitState::Open => {
                tracing::warn!(target = %target, reason = ?reason, "circuit opened")
            }
            _ => tracing::info!(target = %target, state = state.as_str(), "circuit changed"),
        }
        self.events.publish(Event::CircuitChanged {
            target: target.to_string(),
            state,
            reason: if state == CircuitState::Closed {
                None
            } else {
                reason
            },
        });
    }

    /// Every circuit that has seen a failure, sorted by target.
    pub fn snapshot(&self) -> Vec<CircuitStatus> {
        let now = Instant::now();
        let window = self.cfg.window;
        let mut out: Vec<CircuitStatus> = self
            .lock()
            .iter_mut()
            .map(|(target, c)| {
                c.prune(now, window);
                let failures = c.samples.iter().filter(|(_, f)| *f).count();
                let requests = c.samples.len();
                CircuitStatus {
                    target: target.clone(),
                    state: c.state,
                    consecutive_failures: c.consecutive_failures,
                    requests,
                    failures,
                    error_rate: if requests == 0 {
                        0.0
                    } else {
                        failures as f64 / requests as f64
                    },
                    retry_in_ms: (c.state == CircuitState::Open)
                        .then(|| c.open_until.saturating_duration_since(now).as_millis() as u64),
                    last_error: c.last_error.clone(),
                    since: format_time(c.last_change),
                }
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    pub fn state(&self, target: &str) -> CircuitState {
        self.lock()
            .get(target)
            .map_or(CircuitState::Closed, |c| c.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(threshold: u32, cooldown_ms: u64) -> Arc<Breakers> {
        Breakers::new(
            HealthConfig {
                failure_threshold: threshold,
                cooldown: Duration::from_millis(cooldown_ms),
                ..Default::default()
            },
            Events::default(),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_and_closes() {
        let b = breakers(3, 50);
        let mut rx = b.events.subscribe();
        for _ in 0..2 {
            b.admit("p/m").unwrap().failure("503");
        }
        assert_eq!(b.state("p/m"), CircuitState::Closed);
        b.admit("p/m").unwrap().failure("503");
        assert_eq!(b.state("p/m"), CircuitState::Open);
        assert!(b.admit("p/m").is_err(), "open circuits refuse");
        std::thread::sleep(Duration::from_millis(60));
        let trial = b.admit("p/m").expect("a trial after the cool-down");
        assert_eq!(b.state("p/m"), CircuitState::HalfOpen);
        assert!(b.admit("p/m").is_err(), "one trial at a time");
        trial.success();
        assert_eq!(b.state("p/m"), CircuitState::Closed);
        let states: Vec<_> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| match e {
                Event::CircuitChanged { state, .. } => state,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            states,
            [
                CircuitState::Open,
                CircuitState::HalfOpen,
                CircuitState::Closed
            ]
        );
    }

    #[test]
    fn a_failed_trial_opens_again_and_an_abandoned_one_frees_the_slot() {
        let b = breakers(1, 20);
        b.admit("t").unwrap().failure("x");
        std::thread::sleep(Duration::from_millis(30));
        b.admit("t").unwrap().failure("y");
        assert_eq!(b.state("t"), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(30));
        drop(b.admit("t").unwrap());
        assert!(
            b.admit("t").is_ok(),
            "the abandoned trial handed its slot back"
        );
    }

    #[test]
    fn failure_rate_over_the_window_opens() {
        let b = Breakers::new(
            HealthConfig {
                failure_threshold: 100,
                failure_rate: 0.5,
                min_requests: 10,
                ..Default::default()
            },
            Events::default(),
        );
        for i in 0..9 {
            b.record("t", (i % 2 == 0).then_some("e"));
        }
        assert_eq!(b.state("t"), CircuitState::Closed, "below min_requests");
        b.record("t", Some("e"));
        assert_eq!(b.state("t"), CircuitState::Open);
        let s = &b.snapshot()[0];
        assert_eq!((s.requests, s.failures), (10, 6));
    }

    #[test]
    fn successes_alone_create_no_circuits() {
        let b = breakers(1, 10);
        for i in 0..100 {
            b.admit(&format!("p/m{i}")).unwrap().success();
        }
        assert!(b.snapshot().is_empty());
    }
}
