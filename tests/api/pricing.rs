//! Every row is priced from the registry, exactly: the cost the gateway records (and sends in
//! `x-gophergate-cost-usd`) is checked against the formula computed here, independently, from the
//! prices in the real models.dev snapshots in ../shared/data and from registry files written here.

use crate::helpers::*;
use gophergate::{
    config::ProviderConfig,
    mock::{Dialect, MockConfig, MockServer},
    store::LogRow,
};
use serde_json::{Value, json};

/// USD per million tokens, read straight from a registry file.
fn prices(registry: &str, provider: &str, model: &str) -> Value {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(registry).unwrap()).unwrap();
    doc[provider]["models"][model]["cost"].clone()
}

/// The formula from the wire-format notes, written out independently of the gateway's code.
fn expected_cost(p: &Value, prompt: u64, completion: u64, cached: u64, reasoning: u64) -> f64 {
    let f = |k: &str| p[k].as_f64();
    let input = f("input").unwrap();
    let output = f("output").unwrap();
    ((prompt - cached) as f64 * input
        + cached as f64 * f("cache_read").unwrap_or(input)
        + (completion - reasoning) as f64 * output
        + reasoning as f64 * f("reasoning").unwrap_or(output))
        / 1e6
}

fn assert_close(actual: f64, expected: f64) {
    assert!(expected > 0.0);
    let rel = ((actual - expected) / expected).abs();
    assert!(
        rel < 1e-9,
        "cost {actual} differs from {expected} (relative {rel})"
    );
}

fn check_row(row: &LogRow, registry: &str, provider: &str, model: &str) -> f64 {
    let u = row.usage.expect("the row has usage");
    let cost = row.cost_usd.expect("the row is priced");
    assert_close(
        cost,
        expected_cost(
            &prices(registry, provider, model),
            u.prompt,
            u.completion,
            u.cached,
            u.reasoning,
        ),
    );
    assert!(
        row.registry_version
            .as_deref()
            .is_some_and(|v| !v.is_empty())
    );
    cost
}

async fn app_with(dialect: Dialect, provider: &str, registry: String) -> (TestApp, MockServer) {
    let mock = MockServer::start(MockConfig {
        dialect,
        api_key: Some("upstream-key-123456".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let base = mock.base_url();
    let provider = provider.to_string();
    let t = spawn_app_with(MockConfig::default(), move |c| {
        c.registry.url = registry;
        if provider != "openai" {
            c.providers.insert(
                provider,
                ProviderConfig {
                    base_url: Some(base),
                    api_key: Some("upstream-key-123456".to_string().into()),
                    ..Default::default()
                },
            );
        }
    })
    .await;
    t.wait_registry().await;
    (t, mock)
}

fn old_snapshot() -> String {
    registry_snapshot_path().replace(
        "models-dev-snapshot.json",
        "models-dev-snapshot-2026-05-15.json",
    )
}

async fn both_ways(t: &TestApp, model: &str, text: &str) -> Vec<LogRow> {
    let body = json!({"model": model, "messages": [{"role": "user", "content": text}]});
    let resp = t.chat(body.clone()).await;
    assert_eq!(resp.status(), 200);
    let header: f64 = resp.headers()["x-gophergate-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut streamed = body;
    streamed["stream"] = json!(true);
    // No include_usage: the stream is priced all the same.
    let text = t.chat(streamed).await.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"));
    let rows: Vec<LogRow> = t.exact_logs(2).await.into_iter().map(|r| r.row).collect();
    let non_stream = rows.iter().find(|r| !r.stream).unwrap();
    assert_close(header, non_stream.cost_usd.unwrap());
    assert!(rows.iter().all(|r| r.usage_source == Some("reported")));
    rows
}

#[tokio::test]
async fn openai_rows_are_priced_with_cached_and_reasoning_tokens() {
    let (t, _m) = app_with(Dialect::OpenAi, "openai", registry_snapshot_path()).await;
    for row in both_ways(
        &t,
        "o4-mini",
        "think [[mock:cache=3]] [[mock:reasoning=40]]",
    )
    .await
    {
        let u = row.usage.unwrap();
        assert_eq!((u.cached, u.reasoning), (3, 40));
        check_row(&row, &registry_snapshot_path(), "openai", "o4-mini");
        assert_eq!(row.price_source.as_deref(), Some("exact"));
    }
}

#[tokio::test]
async fn gemini_rows_are_priced_with_thinking_and_cache() {
    let (t, _m) = app_with(Dialect::Gemini, "gemini", registry_snapshot_path()).await;
    for row in both_ways(
        &t,
        "gemini-2.5-flash",
        "hello [[mock:thinking]] [[mock:cache=2]]",
    )
    .await
    {
        let u = row.usage.unwrap();
        assert!(u.reasoning > 0 && u.cached == 2);
        check_row(
            &row,
            &registry_snapshot_path(),
            "google",
            "gemini-2.5-flash",
        );
    }
}

#[tokio::test]
async fn deepseek_rows_are_priced_with_cache_hits_and_reasoning() {
    let (t, _m) = app_with(Dialect::DeepSeek, "deepseek", registry_snapshot_path()).await;
    for row in both_ways(&t, "deepseek-reasoner", "why? [[mock:cache=4]]").await {
        let u = row.usage.unwrap();
        assert!(u.reasoning > 0 && u.cached == 4, "{u:?}");
        check_row(
            &row,
            &registry_snapshot_path(),
            "deepseek",
            "deepseek-reasoner",
        );
    }
}

#[tokio::test]
async fn xai_rows_are_priced_with_reasoning_at_its_own_price() {
    let (t, _m) = app_with(Dialect::Xai, "xai", old_snapshot()).await;
    for row in both_ways(&t, "grok-3-mini", "hmm [[mock:cache=2]]").await {
        let u = row.usage.unwrap();
        assert!(u.reasoning > 0 && u.cached == 2, "{u:?}");
        check_row(&row, &old_snapshot(), "xai", "grok-3-mini");
    }
}

#[tokio::test]
async fn dated_prefixed_and_bare_ids_cost_the_same() {
    let (t, _m) = app_with(Dialect::OpenAi, "openai", registry_snapshot_path()).await;
    let mut costs = Vec::new();
    for model in [
        "gpt-4o-mini-2024-07-18",
        "openai/gpt-4o-mini",
        "gpt-4o-mini",
    ] {
        let resp = t
            .chat(json!({"model": model, "messages": [{"role": "user", "content": "same text"}]}))
            .await;
        assert_eq!(resp.status(), 200);
        costs.push(
            resp.headers()["x-gophergate-cost-usd"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(costs[0], costs[1]);
    assert_eq!(costs[1], costs[2]);
    let rows = t.exact_logs(3).await;
    let sources: Vec<_> = rows
        .iter()
        .rev()
        .map(|r| r.row.price_source.clone().unwrap())
        .collect();
    assert_eq!(sources, ["stripped", "exact", "exact"]);
    assert!(
        rows.iter()
            .all(|r| r.row.price_note.as_deref() == Some("openai/gpt-4o-mini"))
    );
}

#[tokio::test]
async fn an_unknown_model_is_unpriced_with_a_reason() {
    let (t, _m) = app_with(Dialect::OpenAi, "openai", registry_snapshot_path()).await;
    let resp = t
        .chat(json!({"model": "gpt-unreleased-9", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-gophergate-cost-usd").is_none());
    let row = &t.exact_logs(1).await[0].row;
    assert!(row.usage.is_some());
    assert_eq!(row.cost_usd, None, "never a made-up 0");
    assert_eq!(row.price_source.as_deref(), Some("none"));
    assert!(
        row.price_note
            .as_deref()
            .unwrap()
            .contains("gpt-unreleased-9")
    );
}

#[tokio::test]
async fn a_registry_file_written_here_prices_tiers_and_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.json");
    std::fs::write(
        &path,
        r#"{"openai": {"models": {"gpt-4o-mini": {"id": "gpt-4o-mini",
            "cost": {"input": 1, "output": 2, "cache_read": 0.5,
                     "tiers": [{"input": 10, "output": 20, "cache_read": 5, "tier": {"type": "context", "size": 5}}]}}}}}"#,
    )
    .unwrap();
    let registry = path.to_string_lossy().to_string();
    let (t, _m) = app_with(Dialect::OpenAi, "openai", registry.clone()).await;
    // A prompt above the 5-token tier is priced at the tier's prices.
    let resp = t.chat(json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a long enough prompt here"}]})).await;
    let header: f64 = resp.headers()["x-gophergate-cost-usd"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let row = &t.exact_logs(1).await[0].row;
    let u = row.usage.unwrap();
    assert!(u.prompt > 5);
    let tier = json!({"input": 10, "output": 20, "cache_read": 5});
    assert_close(
        header,
        expected_cost(&tier, u.prompt, u.completion, u.cached, u.reasoning),
    );
}

#[tokio::test]
async fn a_stream_the_client_abandons_is_priced_from_an_estimate() {
    let (t, _m) = app_with(Dialect::OpenAi, "openai", registry_snapshot_path()).await;
    let resp = t
        .chat(json!({"model": "gpt-4o-mini", "stream": true,
                     "messages": [{"role": "user", "content": "one two three four five six [[mock:stall=300]]"}]}))
        .await;
    let mut stream = resp.bytes_stream();
    use futures::StreamExt;
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    drop(stream);
    let row = &t.exact_logs(1).await[0].row;
    assert_eq!(row.usage_source, Some("estimated"));
    let u = row.usage.unwrap();
    assert!(u.prompt > 0);
    assert!(row.cost_usd.unwrap() > 0.0);
    assert!(row.error.as_deref().unwrap().contains("client"));
}
