//! Samples process and system metrics (sysinfo) and the gateway's own counters every two seconds;
//! keeps the latest sample for `/api/system` and pushes it to dashboards through the hub.

use crate::{hub::Hub, workers::log_writer::LogStats};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};
use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
use tokio_util::sync::CancellationToken;

pub const INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Sample {
    /// Process CPU, percent of one core.
    pub process_cpu_percent: f32,
    pub process_rss_bytes: u64,
    /// Whole machine, percent of all cores.
    pub system_cpu_percent: f32,
    pub system_memory_used_bytes: u64,
    pub system_memory_total_bytes: u64,
    pub requests_per_second: f64,
    pub in_flight: i64,
    /// Share of requests in the last interval that ended with status >= 400.
    pub error_rate: f64,
    pub log_queue_depth: usize,
    pub hub_clients: u64,
    pub uptime_seconds: u64,
}

pub struct Sampler {
    latest: ArcSwap<Sample>,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            latest: ArcSwap::from_pointee(Sample::default()),
        }
    }
}

impl Sampler {
    pub fn latest(&self) -> Arc<Sample> {
        self.latest.load_full()
    }

    /// Worker loop until shutdown.
    pub async fn run(
        self: Arc<Self>,
        stats: Arc<LogStats>,
        queue_depth: impl Fn() -> usize + Send + 'static,
        hub: Hub,
        token: CancellationToken,
    ) {
        let started = Instant::now();
        let mut sys = System::new();
        let pid = sysinfo::get_current_pid().ok();
        let mut last = (
            stats.submitted.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            Instant::now(),
        );
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            let (mut cpu, mut rss) = (0.0, 0);
            if let Some(pid) = pid {
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    true,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                if let Some(p) = sys.process(pid) {
                    cpu = p.cpu_usage();
                    rss = p.memory();
                }
            }
            let now = Instant::now();
            let (submitted, errors) = (
                stats.submitted.load(Ordering::Relaxed),
                stats.errors.load(Ordering::Relaxed),
            );
            let secs = now.duration_since(last.2).as_secs_f64().max(1e-3);
            let done = submitted.saturating_sub(last.0);
            let failed = errors.saturating_sub(last.1);
            last = (submitted, errors, now);
            let sample = Sample {
                process_cpu_percent: cpu,
                process_rss_bytes: rss,
                system_cpu_percent: sys.global_cpu_usage(),
                system_memory_used_bytes: sys.used_memory(),
                system_memory_total_bytes: sys.total_memory(),
                requests_per_second: done as f64 / secs,
                in_flight: stats.in_flight.load(Ordering::Relaxed),
                error_rate: if done == 0 {
                    0.0
                } else {
                    failed as f64 / done as f64
                },
                log_queue_depth: queue_depth(),
                hub_clients: hub.stats().clients.load(Ordering::Relaxed),
                uptime_seconds: started.elapsed().as_secs(),
            };
            hub.publish("metrics", &sample);
            self.latest.store(Arc::new(sample));
        }
    }
}
