//! `cargo bench --bench usage_api`: how fast `/api/usage` answers over a large request log.
//!
//! Starts the real `App` on a temporary SQLite database, writes 1,000,000 synthetic request-log
//! rows through the real `LogStore::insert_logs` in batches of 1,000 (so the daily rollups are
//! built exactly as the log writer builds them), spread over 90 days, 50 keys, 20 models and 4
//! providers (each model belongs to one provider). Then it times the usage query for each
//! `group_by` over the full range, both at the store (`LogStore::usage`) and end to end over HTTP
//! (`GET /api/usage` with a session token: auth, query, JSON), and prints the medians against the
//! 50 ms target. `BENCH_ROWS=N` changes the row count.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration as ChronoDuration, Utc};
use gophergate::{
    app::App,
    config::Config,
    domain::TokenCounts,
    store::{LogRow, UsageGroup, UsageQuery, UserRole},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

const DAYS: i64 = 90;
const KEYS: usize = 50;
const MODELS: usize = 20;
const PROVIDERS: [&str; 4] = ["openai", "gemini", "deepseek", "xai"];
const BATCH: usize = 1_000;
const RUNS: usize = 20;
const TARGET: Duration = Duration::from_millis(50);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn synthetic_rows(total: usize) -> impl Iterator<Item = LogRow> {
    let mut rng = StdRng::seed_from_u64(42);
    let end = Utc::now();
    let start = end - ChronoDuration::days(DAYS);
    let step_ms = (DAYS * 86_400_000) / total as i64;
    let models: Vec<String> = (0..MODELS).map(|m| format!("model-{m:02}")).collect();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k:02}")).collect();
    (0..total).map(move |i| {
        let m = rng.gen_range(0..MODELS);
        let k = rng.gen_range(0..KEYS);
        let roll: u32 = rng.gen_range(0..100);
        let status = match roll {
            0..=2 => 429,
            3..=4 => 502,
            _ => 200,
        };
        let usage = (status == 200).then(|| {
            let prompt = rng.gen_range(10..4_000);
            TokenCounts {
                prompt,
                completion: rng.gen_range(1..1_000),
                cached: prompt / 4,
                reasoning: if m % 5 == 0 { rng.gen_range(0..500) } else { 0 },
                cache_write: 0,
                audio_prompt: 0,
                audio_completion: 0,
            }
        });
        // Two of the twenty models have no price.
        let cost = usage
            .filter(|_| m < MODELS - 2)
            .map(|u| (u.prompt as f64 * 2.5 + u.completion as f64 * 10.0) / 1e6);
        LogRow {
            request_id: format!("bench-{i}"),
            created_at: start + ChronoDuration::milliseconds(step_ms * i as i64),
            key_id: Some(k as i64 + 1),
            key_name: Some(keys[k].clone()),
            provider: Some(PROVIDERS[m % PROVIDERS.len()].to_string()),
            model: Some(models[m].clone()),
            upstream_model: Some(models[m].clone()),
            stream: roll.is_multiple_of(2),
            status,
            latency_ms: rng.gen_range(100..5_000),
            ttft_ms: roll.is_multiple_of(2).then(|| rng.gen_range(50..800)),
            usage,
            cost_usd: cost,
            usage_source: usage.map(|_| "reported"),
            price_source: cost.map(|_| "registry".to_string()),
            error: (status != 200).then(|| "upstream_error: synthetic".to_string()),
            ..Default::default()
        }
    })
}

struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    Stats {
        median: samples[samples.len() / 2],
        min: samples[0],
        max: samples[samples.len() - 1],
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

async fn run() {
    let total: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Default::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    // No network: a registry file that does not exist (the gateway serves without one).
    config.registry.url = dir.path().join("no-registry.json").display().to_string();
    // Keep every row: the rows reach back the full 90 days.
    config.log.retention = Duration::ZERO;
    let app = App::build(config).await.unwrap();
    let store = app.state().store.clone();

    println!(
        "usage_api benchmark: {total} rows, {DAYS} days, {KEYS} keys, {MODELS} models, 4 providers"
    );
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for row in synthetic_rows(total) {
        batch.push(row);
        if batch.len() == BATCH {
            store.insert_logs(&batch).await.unwrap();
            batch.clear();
        }
    }
    if !batch.is_empty() {
        store.insert_logs(&batch).await.unwrap();
    }
    let insert = started.elapsed();
    println!(
        "inserted {} rows in {:.1} s ({:.0} rows/s, batches of {BATCH}, rollups in the same transactions)",
        store.count_logs().await.unwrap(),
        insert.as_secs_f64(),
        total as f64 / insert.as_secs_f64()
    );

    // The full range: every day that has rows.
    let to = Utc::now().date_naive();
    let from = to - ChronoDuration::days(DAYS + 1);

    // A session for the HTTP side.
    let hash = bcrypt::hash("benchmark-password", 4).unwrap();
    store
        .create_user("bench", &hash, UserRole::Viewer)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}", app.addr());
    let login: serde_json::Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "bench", "password": "benchmark-password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();

    println!();
    println!(
        "{:<10} {:>7} {:>13} {:>10} {:>10} {:>14} {:>10}",
        "group_by", "groups", "store median", "min", "max", "HTTP median", "vs 50 ms"
    );
    let mut worst = Duration::ZERO;
    let cases = [
        ("key", UsageGroup::Key, None),
        ("model", UsageGroup::Model, None),
        ("provider", UsageGroup::Provider, None),
        ("day", UsageGroup::Day, None),
        // A drill-down: one key's usage by model, from the full-grain rollups.
        ("model*", UsageGroup::Model, Some("key-07")),
    ];
    for (label, group_by, key_name) in cases {
        let q = UsageQuery {
            group_by,
            from,
            to,
            key_name: key_name.map(str::to_string),
            model: None,
            provider: None,
        };
        let mut samples = Vec::with_capacity(RUNS);
        let mut groups = 0;
        let mut requests = 0;
        // One warm-up run (page cache), then the timed ones.
        store.usage(&q).await.unwrap();
        for _ in 0..RUNS {
            let t = Instant::now();
            let items = store.usage(&q).await.unwrap();
            samples.push(t.elapsed());
            groups = items.len();
            requests = items.iter().map(|i| i.requests).sum::<u64>();
        }
        if key_name.is_none() {
            assert_eq!(requests as usize, total, "the rollups lost rows");
        }
        let mut url = format!(
            "{base}/api/usage?group_by={}&from={from}&to={to}",
            group_by.as_str()
        );
        if let Some(k) = key_name {
            url.push_str(&format!("&key_name={k}"));
        }
        let mut http_samples = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let t = Instant::now();
            let resp = http.get(&url).bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap();
            http_samples.push(t.elapsed());
        }
        let s = stats(samples);
        let h = stats(http_samples);
        if key_name.is_none() {
            worst = worst.max(h.median);
        }
        println!(
            "{:<10} {:>7} {:>10} ms {:>7} ms {:>7} ms {:>11} ms {:>9.2}x",
            label,
            groups,
            ms(s.median),
            ms(s.min),
            ms(s.max),
            ms(h.median),
            h.median.as_secs_f64() / TARGET.as_secs_f64()
        );
    }
    println!(
        "(model* = group_by=model&key_name=key-07: a filtered drill-down, full-grain rollups)"
    );
    println!();
    println!(
        "medians of {RUNS} runs each; the ratio is the HTTP median over the 50 ms target (below 1 meets it). Worst unfiltered: {} ms ({}).",
        ms(worst),
        if worst <= TARGET {
            "target met"
        } else {
            "TARGET MISSED"
        }
    );
    app.shutdown().await.unwrap();
}
