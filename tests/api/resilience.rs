//! Retries, fallbacks, load balancing, circuit breakers, timeouts, keep-alives and tokens-per-minute
//! limits, driven through the real server against the mock's fault directives.

use crate::helpers::*;
use gophergate::{
    config::{Config, ProviderConfig, ProviderKind, RouteConfig, RouteStrategy, RouteTarget},
    events::Event,
    mock::MockConfig,
    resilience::breaker::CircuitState,
    store::NewKey,
};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn fast_retries(c: &mut Config) {
    c.retry.initial_backoff = Duration::from_millis(5);
    c.retry.max_backoff = Duration::from_millis(20);
}

fn route(c: &mut Config, name: &str, strategy: RouteStrategy, targets: &[(&str, u32)]) {
    c.routes.insert(
        name.into(),
        RouteConfig {
            targets: targets
                .iter()
                .map(|(m, w)| RouteTarget::Weighted {
                    model: m.to_string(),
                    weight: *w,
                })
                .collect(),
            strategy,
            retries: None,
        },
    );
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

fn attempts(row: &gophergate::store::StoredLog) -> Vec<Value> {
    serde_json::from_str::<Vec<Value>>(row.row.attempts.as_deref().expect("attempts recorded"))
        .unwrap()
}

fn models_seen(t: &TestApp) -> Vec<String> {
    t.mock
        .state
        .requests()
        .iter()
        .map(|r| r["model"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn a_transient_503_is_retried_and_the_row_lists_every_attempt() {
    let t = spawn_app_with(MockConfig::default(), fast_retries).await;
    let resp = t
        .chat(chat_body(
            "gpt-4o-mini",
            "[[mock:fail=2]][[mock:error=503]] hi",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        t.mock.state.requests().len(),
        3,
        "two failures, then success"
    );
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.status, 200);
    let a = attempts(&rows[0]);
    let statuses: Vec<Value> = a.iter().map(|x| x["status"].clone()).collect();
    assert_eq!(statuses, [json!(503), json!(503), json!(200)]);
    assert_eq!(a[0]["target"], "openai/gpt-4o-mini");
    assert!(a[2]["error"].is_null());
}

#[tokio::test]
async fn retries_are_bounded_and_client_errors_are_not_retried() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        c.retry.max_retries = 2;
    })
    .await;
    let resp = t.chat(chat_body("gpt-4o-mini", "[[mock:error=502]]")).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(t.mock.state.requests().len(), 3, "1 try + 2 retries");
    for status in [400, 404, 422] {
        let before = t.mock.state.requests().len();
        let resp = t
            .chat(chat_body(
                "gpt-4o-mini",
                &format!("[[mock:error={status}]]"),
            ))
            .await;
        assert_eq!(resp.status(), status);
        assert_eq!(t.mock.state.requests().len(), before + 1, "{status} once");
    }
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_its_cap() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        c.retry.max_retry_after = Duration::from_secs(5);
    })
    .await;
    let started = Instant::now();
    let resp = t
        .chat(chat_body(
            "gpt-4o-mini",
            "[[mock:fail=1]][[mock:error=429]][[mock:retry_after=1]] a",
        ))
        .await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After: {:?}",
        started.elapsed()
    );
    // Longer than the cap: not waited for; with no other target the 429 goes to the client.
    let started = Instant::now();
    let resp = t
        .chat(chat_body(
            "gpt-4o-mini",
            "[[mock:error=429]][[mock:retry_after=60]] b",
        ))
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "60");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(t.mock.state.requests().len(), 3);
}

#[tokio::test]
async fn a_route_falls_back_to_the_next_target_on_a_retryable_failure() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        c.retry.max_retries = 1;
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai/gpt-a", 1), ("openai/gpt-b", 1)],
        );
    })
    .await;
    let resp = t
        .chat(chat_body("smart", "[[mock:error=500]][[mock:only=gpt-a]]"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(body["model"].as_str().unwrap().starts_with("gpt-b"));
    assert_eq!(models_seen(&t), ["gpt-a", "gpt-a", "gpt-b"]);
    let rows = t.exact_logs(1).await;
    let row = &rows[0].row;
    assert_eq!(row.model.as_deref(), Some("smart"));
    assert_eq!(row.provider.as_deref(), Some("openai"));
    assert!(row.upstream_model.as_deref().unwrap().starts_with("gpt-b"));
    let targets: Vec<Value> = attempts(&rows[0])
        .iter()
        .map(|a| a["target"].clone())
        .collect();
    assert_eq!(targets, ["openai/gpt-a", "openai/gpt-a", "openai/gpt-b"]);

    // The request's own mistake is not sent elsewhere.
    let resp = t
        .chat(chat_body("smart", "[[mock:error=400]][[mock:only=gpt-a]]"))
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(models_seen(&t).len(), 4);
}

#[tokio::test]
async fn an_unreachable_target_is_retried_then_skipped_for_the_next() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        c.providers.insert(
            "dead".into(),
            ProviderConfig {
                kind: Some(ProviderKind::OpenaiCompatible),
                base_url: Some(format!("http://127.0.0.1:{}/v1", closed_port())),
                ..Default::default()
            },
        );
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("dead/gpt-x", 1), ("openai/gpt-4o-mini", 1)],
        );
    })
    .await;
    let resp = t.chat(chat_body("smart", "hello")).await;
    assert_eq!(resp.status(), 200);
    let rows = t.exact_logs(1).await;
    let a = attempts(&rows[0]);
    assert_eq!(
        a.len(),
        4,
        "dead three times (1 + 2 retries), then openai: {a:?}"
    );
    assert!(
        a[..3]
            .iter()
            .all(|x| x["target"] == "dead/gpt-x" && x["status"].is_null())
    );
    assert_eq!(a[3]["status"], 200);
}

#[tokio::test]
async fn a_weighted_route_spreads_requests_by_weight() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        route(
            c,
            "balanced",
            RouteStrategy::Weighted,
            &[("openai/gpt-a", 3), ("openai/gpt-b", 1)],
        );
    })
    .await;
    let n = 400;
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (http, url, key) = (t.http.clone(), t.url("/v1/chat/completions"), t.key.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .bearer_auth(key)
                .json(&chat_body("balanced", "hi"))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    let a = models_seen(&t).iter().filter(|m| *m == "gpt-a").count();
    let share = a as f64 / n as f64;
    assert!(
        (0.67..=0.83).contains(&share),
        "gpt-a got {share} of requests"
    );
}

#[tokio::test]
async fn a_stream_that_fails_before_its_first_chunk_goes_to_the_next_target() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai/gpt-a", 1), ("openai/gpt-b", 1)],
        );
    })
    .await;
    let mut body = chat_body("smart", "[[mock:error=503]][[mock:only=gpt-a]] hello there");
    body["stream"] = json!(true);
    let resp = t.chat(body).await;
    assert_eq!(resp.status(), 200);
    let text = read_stream(resp).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    assert!(text.contains("gpt-b"), "{text}");
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.error, None);
    let a = attempts(&rows[0]);
    assert_eq!(
        a.len(),
        4,
        "gpt-a three times (503 is retried), then gpt-b: {a:?}"
    );
    assert!(
        a[..3]
            .iter()
            .all(|x| x["target"] == "openai/gpt-a" && x["status"] == 503)
    );

    // 200 and headers, then garbage before any chunk: still nothing sent, so still a fallback
    // (garbled answers are not retried on the same target).
    let mut body = chat_body("smart", "[[mock:garbage=0]][[mock:only=gpt-a]] again");
    body["stream"] = json!(true);
    let text = read_stream(t.chat(body).await).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"error\""), "{text}");
    let rows = t.exact_logs(2).await;
    let a = attempts(&rows[0]);
    assert_eq!(a.len(), 2, "{a:?}");
    assert!(
        a[0]["error"].as_str().unwrap().contains("could not read"),
        "{a:?}"
    );
}

#[tokio::test]
async fn a_failing_target_is_opened_skipped_then_tried_half_open() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.retry.max_retries = 0;
        c.health.failure_threshold = 2;
        c.health.cooldown = Duration::from_millis(400);
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai/gpt-a", 1), ("openai/gpt-b", 1)],
        );
    })
    .await;
    let mut events = t.app().state().events.subscribe();
    let failing = "[[mock:error=503]][[mock:only=gpt-a]]";
    for _ in 0..2 {
        assert_eq!(t.chat(chat_body("smart", failing)).await.status(), 200);
    }
    assert_eq!(models_seen(&t), ["gpt-a", "gpt-b", "gpt-a", "gpt-b"]);
    let breakers = &t.app().state().breakers;
    assert_eq!(breakers.state("openai/gpt-a"), CircuitState::Open);
    let opened = loop {
        match events.recv().await.unwrap() {
            Event::CircuitChanged { target, state, .. } => break (target, state),
            _ => continue,
        }
    };
    assert_eq!(opened, ("openai/gpt-a".to_string(), CircuitState::Open));

    // Open: skipped without a call, and the row says so.
    assert_eq!(t.chat(chat_body("smart", failing)).await.status(), 200);
    assert_eq!(models_seen(&t).len(), 5);
    assert_eq!(models_seen(&t)[4], "gpt-b");
    let rows = t.exact_logs(3).await;
    let a = attempts(&rows[0]);
    assert!(a[0]["error"].as_str().unwrap().starts_with("circuit_open"));

    // Asked for alone while open: there is no other target, so the upstream is asked anyway and
    // its own answer is the client's (a breaker never invents an error).
    let resp = t
        .chat(chat_body("openai/gpt-a", "[[mock:error=503]] alone"))
        .await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_ne!(body["error"]["code"], "circuit_open");
    assert_eq!(models_seen(&t).len(), 6);
    assert_eq!(breakers.state("openai/gpt-a"), CircuitState::Open);

    // After the cool-down one trial goes through; it succeeds and closes the circuit.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        t.chat(chat_body("openai/gpt-a", "fine now")).await.status(),
        200
    );
    assert_eq!(breakers.state("openai/gpt-a"), CircuitState::Closed);

    // The API shows circuits (a dashboard session is needed).
    let snapshot = breakers.snapshot();
    assert_eq!(snapshot[0].target, "openai/gpt-a");
    assert_eq!(snapshot[0].state, CircuitState::Closed);
}

#[tokio::test]
async fn no_response_headers_within_first_byte_timeout_is_a_504() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        let p = c.providers.get_mut("openai").unwrap();
        p.first_byte_timeout = Some(Duration::from_millis(300));
    })
    .await;
    let started = Instant::now();
    let resp = t
        .chat(chat_body("gpt-4o-mini", "[[mock:latency=3000]]"))
        .await;
    assert_eq!(resp.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert_eq!(t.mock.state.requests().len(), 1, "a timeout is not retried");
}

#[tokio::test]
async fn a_connect_that_hangs_is_cut_at_connect_timeout() {
    // A listener with a backlog of one, filled: further SYNs are dropped, so connects hang.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.retry.max_retries = 0;
        c.providers.insert(
            "slowconnect".into(),
            ProviderConfig {
                kind: Some(ProviderKind::OpenaiCompatible),
                base_url: Some(format!("http://{addr}/v1")),
                connect_timeout: Some(Duration::from_millis(300)),
                first_byte_timeout: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        );
    })
    .await;
    let started = Instant::now();
    let resp = t.chat(chat_body("slowconnect/m", "hi")).await;
    let status = resp.status().as_u16();
    assert!(status == 502 || status == 504, "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn a_silent_stream_gets_keepalives_then_ends_at_its_idle_timeout() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.server.sse_keepalive = Duration::from_millis(100);
        c.providers.get_mut("openai").unwrap().idle_timeout = Some(Duration::from_millis(1000));
    })
    .await;
    // Chunks 350 ms apart: keep-alive comments in between, no timeout.
    let mut body = chat_body("gpt-4o-mini", "[[mock:stall=350]] one two");
    body["stream"] = json!(true);
    let text = read_stream(t.chat(body).await).await;
    assert!(text.contains(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // Chunks 2 s apart: the stream is ended with a timeout error event.
    let mut body = chat_body("gpt-4o-mini", "[[mock:stall=2000]] one two three");
    body["stream"] = json!(true);
    let started = Instant::now();
    let text = read_stream(t.chat(body).await).await;
    assert!(started.elapsed() < Duration::from_millis(3500));
    let events = sse_data(&text);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");
    let rows = t.exact_logs(2).await;
    assert!(
        rows[0]
            .row
            .error
            .as_deref()
            .unwrap()
            .starts_with("upstream_timeout")
    );
}

#[tokio::test]
async fn the_total_timeout_ends_a_long_stream() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.providers.get_mut("openai").unwrap().timeout = Some(Duration::from_millis(800));
    })
    .await;
    let mut body = chat_body(
        "gpt-4o-mini",
        "[[mock:stall=200]] a b c d e f g h i j k l m n o p",
    );
    body["stream"] = json!(true);
    let started = Instant::now();
    let text = read_stream(t.chat(body).await).await;
    assert!(started.elapsed() < Duration::from_millis(2500), "{text}");
    let last: Value = serde_json::from_str(sse_data(&text).last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_timeout", "{text}");
}

#[tokio::test]
async fn tokens_per_minute_are_limited_per_key() {
    let t = spawn_app().await;
    let key = t
        .create_key_with(NewKey {
            name: "tpm".into(),
            hash: [0; 32],
            prefix: String::new(),
            models: None,
            rpm: None,
            tpm: Some(1000),
            budget_usd: None,
            expires_at: None,
        })
        .await;
    let mut body = chat_body("gpt-4o-mini", "hello");
    body["max_tokens"] = json!(995);
    assert_eq!(t.chat_as(&key, body.clone()).await.status(), 200);
    let resp = t.chat_as(&key, body.clone()).await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers();
    assert_eq!(h["x-ratelimit-limit-tokens"], "1000");
    let remaining: u64 = h["x-ratelimit-remaining-tokens"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(remaining < 1000);
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert_eq!(err["error"]["type"], "tokens");
    // The real usage (a few tokens) replaced the 995-token estimate: small requests still fit.
    let small = chat_body("gpt-4o-mini", "hi");
    assert_eq!(t.chat_as(&key, small).await.status(), 200);
    // Other keys are not limited.
    assert_eq!(t.chat(body).await.status(), 200);
}

#[tokio::test]
async fn routes_are_listed_as_models_and_unknown_route_targets_refuse_to_start() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai/gpt-4o-mini", 1)],
        );
    })
    .await;
    let list: Value = t.get("/v1/models").await.json().await.unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"smart"), "{ids:?}");
    let mut bad = Config::default();
    route(&mut bad, "r", RouteStrategy::Fallback, &[("nowhere/m", 1)]);
    let err = gophergate::config::Config::from_figment(figment::Figment::from(
        figment::providers::Serialized::defaults(&bad),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("routes.r.targets"), "{err}");
}

#[tokio::test]
async fn active_probes_record_provider_health_and_publish_changes() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.health.probe_interval = Duration::from_secs(1);
        c.providers.insert(
            "down".into(),
            ProviderConfig {
                kind: Some(ProviderKind::OpenaiCompatible),
                base_url: Some(format!("http://127.0.0.1:{}/v1", closed_port())),
                ..Default::default()
            },
        );
    })
    .await;
    let mut events = t.app().state().events.subscribe();
    let health = &t.app().state().provider_health;
    let deadline = Instant::now() + Duration::from_secs(5);
    use gophergate::providers::health::HealthStatus;
    while health.get("openai").status != HealthStatus::Ok
        || health.get("down").status != HealthStatus::Failing
    {
        assert!(Instant::now() < deadline, "probes never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut seen = Vec::new();
    while let Ok(Event::ProviderHealthChanged { provider, status }) =
        tokio::time::timeout(Duration::from_millis(100), events.recv())
            .await
            .unwrap_or(Err(tokio::sync::broadcast::error::RecvError::Closed))
    {
        seen.push((provider, status));
    }
    // Events may have fired before the subscription; the board is the truth, and any event seen
    // must agree with it.
    for (provider, status) in seen {
        assert_eq!(health.get(&provider).status, status);
    }
}

#[tokio::test]
async fn several_keys_for_one_upstream_are_providers_of_one_kind_in_a_route() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        let base = c.providers["openai"].base_url.clone();
        // The same upstream under a second name with a key it rejects (a revoked project key).
        c.providers.insert(
            "openai-old".into(),
            ProviderConfig {
                kind: Some(ProviderKind::Openai),
                base_url: base,
                api_key: Some("sk-revoked-0000000000".to_string().into()),
                ..Default::default()
            },
        );
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai-old/gpt-4o-mini", 1), ("openai/gpt-4o-mini", 1)],
        );
    })
    .await;
    let resp = t.chat(chat_body("smart", "hi")).await;
    assert_eq!(resp.status(), 200);
    let rows = t.exact_logs(1).await;
    assert_eq!(rows[0].row.provider.as_deref(), Some("openai"));
    let a = attempts(&rows[0]);
    assert_eq!(
        a.len(),
        2,
        "a rejected key is not retried, the next key is used: {a:?}"
    );
    assert_eq!(a[0]["target"], "openai-old/gpt-4o-mini");
    assert_eq!(a[0]["status"], Value::Null);
    assert!(
        a[0]["error"].as_str().unwrap().contains("rejected"),
        "{a:?}"
    );
}

#[tokio::test]
async fn every_transient_status_is_retried_and_every_target_fault_falls_back() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        fast_retries(c);
        route(
            c,
            "smart",
            RouteStrategy::Fallback,
            &[("openai/gpt-a", 1), ("openai/gpt-b", 1)],
        );
    })
    .await;
    // Each transient status once, then success on the same target.
    for status in [429, 500, 502, 503, 504] {
        let before = t.mock.state.requests().len();
        let text = format!("[[mock:fail=1]][[mock:error={status}]] s{status}");
        let resp = t.chat(chat_body("gpt-4o-mini", &text)).await;
        assert_eq!(resp.status(), 200, "{status}");
        assert_eq!(
            t.mock.state.requests().len(),
            before + 2,
            "{status}: one retry"
        );
    }
    // Faults of one target: the route answers from the next (reset connection, truncated JSON,
    // garbled stream, every transient status that never clears).
    let faults = [
        ("[[mock:reset]]", false),
        ("[[mock:truncate]]", false),
        ("[[mock:garbage=0]]", true),
        ("[[mock:error=429]]", false),
        ("[[mock:error=500]]", false),
        ("[[mock:error=502]]", true),
        ("[[mock:error=503]]", false),
        ("[[mock:error=504]]", true),
    ];
    for (fault, stream) in faults {
        let mut body = chat_body("smart", &format!("{fault}[[mock:only=gpt-a]] x"));
        body["stream"] = json!(stream);
        let resp = t.chat(body).await;
        assert_eq!(resp.status(), 200, "{fault}");
        if stream {
            let text = read_stream(resp).await;
            assert!(text.ends_with("data: [DONE]\n\n"), "{fault}: {text}");
            assert!(text.contains("gpt-b"), "{fault}: {text}");
        } else {
            let v: Value = resp.json().await.unwrap();
            assert!(v["model"].as_str().unwrap().starts_with("gpt-b"), "{fault}");
        }
    }
}
