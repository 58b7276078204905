//! The dashboard API: sign-in and sessions, `/api/logs`, `/api/usage`, log retention, and that no
//! secret ever comes back.

use crate::helpers::*;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use gophergate::{
    domain::TokenCounts,
    server::session::{SessionClaims, SessionSigner},
    store::{LogQuery, LogRow, StoredLog, UserRole},
    workers::retention,
};
use serde_json::{Value, json};
use std::{collections::BTreeMap, time::Duration};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery staple";

/// A user with a cheap bcrypt hash (the cost is read from the hash when verifying).
pub async fn add_user(t: &TestApp, username: &str, role: UserRole) {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    t.app()
        .state()
        .store
        .create_user(username, &hash, role)
        .await
        .unwrap();
}

pub async fn login(t: &TestApp, username: &str, password: &str) -> reqwest::Response {
    t.http
        .post(t.url("/api/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

pub async fn token_for(t: &TestApp, username: &str) -> String {
    let resp = login(t, username, PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

/// GET with a bearer token; returns the status and the body (raw text and parsed).
pub async fn api_get(t: &TestApp, path: &str, token: &str) -> (u16, Value, String) {
    let resp = t
        .http
        .get(t.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body, text)
}

async fn get_ok(t: &TestApp, path: &str, token: &str) -> Value {
    let (status, body, _) = api_get(t, path, token).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// A 401 with the dashboard's session error in the one error shape.
pub fn assert_session_401(status: u16, body: &Value) {
    assert_eq!(status, 401, "{body}");
    let err = openai_error(body);
    assert_eq!(err["code"], "invalid_session", "{body}");
}

#[tokio::test]
async fn login_gives_a_token_and_an_http_only_cookie() {
    let t = spawn_app().await;
    add_user(&t, "alice", UserRole::Admin).await;
    let resp = login(&t, "alice", PASSWORD).await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(body["user"], json!({"username": "alice", "role": "admin"}));
    assert!(
        cookie.starts_with(&format!("gg_session={token};")),
        "{cookie}"
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attr), "{attr} missing: {cookie}");
    }
    // Served over plain HTTP: a Secure cookie would never come back.
    assert!(!cookie.contains("Secure"), "{cookie}");

    // The token works as a bearer token, and the cookie alone works too.
    let me = get_ok(&t, "/api/auth/me", token).await;
    assert_eq!(me["username"], "alice");
    assert_eq!(me["role"], "admin");
    let resp = t
        .http
        .get(t.url("/api/auth/me"))
        .header("cookie", format!("theme=dark; gg_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Behind a TLS-terminating proxy the cookie is Secure.
    let resp = t
        .http
        .post(t.url("/api/auth/login"))
        .header("x-forwarded-proto", "https")
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
}

#[tokio::test]
async fn login_failures_are_one_401_whatever_was_wrong() {
    let t = spawn_app().await;
    add_user(&t, "alice", UserRole::Viewer).await;
    let mut errors = Vec::new();
    for (user, pw) in [
        ("alice", "wrong password"),
        ("nobody", PASSWORD),
        ("alice", ""),
        ("", ""),
    ] {
        let resp = login(&t, user, pw).await;
        assert_eq!(resp.status(), 401, "{user}/{pw}");
        assert!(resp.headers().get("set-cookie").is_none());
        let body: Value = resp.json().await.unwrap();
        let err = openai_error(&body).clone();
        assert_eq!(err["code"], "invalid_credentials");
        assert!(!body.to_string().contains(pw) || pw.is_empty());
        errors.push(err);
    }
    assert!(errors.windows(2).all(|w| w[0] == w[1]), "{errors:?}");

    // A body that is not the login object: 400 in the same shape, not echoing the password.
    for body in [
        "not json".to_string(),
        json!({"username": "alice"}).to_string(),
        json!({"username": "alice", "password": 12345678}).to_string(),
    ] {
        let resp = t
            .http
            .post(t.url("/api/auth/login"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let text = resp.text().await.unwrap();
        openai_error(&serde_json::from_str(&text).unwrap());
        assert!(!text.contains("12345678"), "{text}");
    }
    // Wrong method, unknown route: JSON errors too.
    let resp = t.http.get(t.url("/api/auth/login")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    openai_error(&resp.json().await.unwrap());
    let resp = t.http.get(t.url("/api/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    openai_error(&resp.json().await.unwrap());
}

#[tokio::test]
async fn missing_tampered_expired_and_logged_out_sessions_are_401() {
    let t = spawn_app().await;
    add_user(&t, "alice", UserRole::Admin).await;
    let token = token_for(&t, "alice").await;
    let other_session = token_for(&t, "alice").await;
    get_ok(&t, "/api/logs", &token).await;

    // No credentials at all, on every signed-in route.
    for path in ["/api/logs", "/api/usage", "/api/auth/me"] {
        let resp = t.http.get(t.url(path)).send().await.unwrap();
        let status = resp.status().as_u16();
        assert_session_401(status, &resp.json().await.unwrap());
    }
    let resp = t.http.post(t.url("/api/auth/logout")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // A client key is not a session.
    let (status, body, _) = api_get(&t, "/api/logs", &t.key).await;
    assert_session_401(status, &body);

    // Every single-character change is refused.
    for i in [0, 3, token.len() / 2, token.len() - 1] {
        let mut bytes = token.clone().into_bytes();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        let tampered = String::from_utf8(bytes).unwrap();
        let (status, body, _) = api_get(&t, "/api/logs", &tampered).await;
        assert_session_401(status, &body);
    }

    // Expired, though correctly signed with the server's key: issued through the same function.
    let store = &t.app().state().store;
    let user = store.find_user("alice").await.unwrap().unwrap();
    let signer: &SessionSigner = &t.app().state().sessions;
    let mut claims = SessionClaims::new(
        user.id,
        user.role,
        user.session_epoch,
        Utc::now() - ChronoDuration::hours(13),
    );
    let expired = signer.issue(&claims);
    let (status, body, _) = api_get(&t, "/api/logs", &expired).await;
    assert_session_401(status, &body);
    // The same claims, still current, are accepted: only the time was wrong.
    claims = SessionClaims::new(user.id, user.role, user.session_epoch, Utc::now());
    get_ok(&t, "/api/logs", &signer.issue(&claims)).await;
    // Signed by another key (another deployment's): refused.
    let foreign = SessionSigner::new([9; 32]).issue(&claims);
    let (status, body, _) = api_get(&t, "/api/logs", &foreign).await;
    assert_session_401(status, &body);

    // Logout (by cookie, with the CSRF header every cookie call that changes state needs) clears
    // the cookie and ends every session of the user.
    let resp = t
        .http
        .post(t.url("/api/auth/logout"))
        .header("cookie", format!("gg_session={token}"))
        .header("x-gophergate-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cleared.starts_with("gg_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    for stale in [&token, &other_session] {
        let (status, body, _) = api_get(&t, "/api/auth/me", stale).await;
        assert_session_401(status, &body);
        let resp = t
            .http
            .get(t.url("/api/logs"))
            .header("cookie", format!("gg_session={stale}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // Signing in again works.
    let fresh = token_for(&t, "alice").await;
    get_ok(&t, "/api/auth/me", &fresh).await;
}

/// Checks one `/api/logs` item against its stored row, field by field, and that it has exactly the
/// contract's fields plus the pricing provenance ones.
fn assert_item_matches(item: &Value, s: &StoredLog) {
    let obj = item.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = vec![
        "id",
        "request_id",
        "created_at",
        "key_name",
        "provider",
        "model",
        "upstream_model",
        "stream",
        "status",
        "latency_ms",
        "ttft_ms",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost_usd",
        "error",
        "usage_source",
        "price_source",
        "registry_version",
        "price_note",
        "attempts",
    ];
    want.sort_unstable();
    assert_eq!(keys, want);
    let r = &s.row;
    assert_eq!(item["id"], s.id);
    assert_eq!(item["request_id"], r.request_id);
    let created = item["created_at"].as_str().unwrap();
    assert!(created.ends_with('Z'), "{created}");
    let parsed = DateTime::parse_from_rfc3339(created).unwrap();
    assert_eq!(parsed.timestamp_millis(), r.created_at.timestamp_millis());
    assert_eq!(item["key_name"], json!(r.key_name));
    assert_eq!(item["provider"], json!(r.provider));
    assert_eq!(item["model"], json!(r.model));
    assert_eq!(item["upstream_model"], json!(r.upstream_model));
    assert_eq!(item["stream"], r.stream);
    assert_eq!(item["status"], r.status);
    assert_eq!(item["latency_ms"], r.latency_ms);
    assert_eq!(item["ttft_ms"], json!(r.ttft_ms));
    assert_eq!(item["prompt_tokens"], json!(r.usage.map(|u| u.prompt)));
    assert_eq!(
        item["completion_tokens"],
        json!(r.usage.map(|u| u.completion))
    );
    assert_eq!(item["cached_tokens"], json!(r.usage.map(|u| u.cached)));
    assert_eq!(
        item["reasoning_tokens"],
        json!(r.usage.map(|u| u.reasoning))
    );
    assert_eq!(item["cost_usd"], json!(r.cost_usd));
    assert_eq!(item["error"], json!(r.error));
    assert_eq!(item["usage_source"], json!(r.usage_source));
    assert_eq!(item["price_source"], json!(r.price_source));
    assert_eq!(item["registry_version"], json!(r.registry_version));
    assert_eq!(item["price_note"], json!(r.price_note));
}

fn ids(body: &Value) -> Vec<i64> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn logs_api_returns_the_rows_newest_first_with_filters_and_paging() {
    let t = spawn_app().await;
    add_user(&t, "viewer", UserRole::Viewer).await;
    let token = token_for(&t, "viewer").await;
    let other_key = t.create_key("batch-jobs", None).await;

    assert_eq!(t.chat(user_msg("one")).await.status(), 200);
    let mut streamed = user_msg("two");
    streamed["stream"] = json!(true);
    read_stream(t.chat(streamed).await).await;
    assert_eq!(
        t.chat(json!({"model": "no-such-model-x", "messages": [{"role": "user", "content": "x"}]}))
            .await
            .status(),
        404
    );
    assert_eq!(
        t.chat_as(&other_key, user_msg("[[mock:error=429]] slow down"))
            .await
            .status(),
        429
    );
    let mut four = user_msg("four");
    four["model"] = json!("gpt-4o");
    assert_eq!(t.chat_as(&other_key, four).await.status(), 200);
    let stored = t.exact_logs(5).await;

    // Everything, newest first, exactly the stored rows.
    let body = get_ok(&t, "/api/logs", &token).await;
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(body["next_before"], Value::Null);
    for (item, s) in items.iter().zip(&stored) {
        assert_item_matches(item, s);
    }
    let all = ids(&body);
    assert!(all.windows(2).all(|w| w[0] > w[1]), "{all:?}");
    let streamed_item = items.iter().find(|i| i["stream"] == true).unwrap();
    assert!(streamed_item["ttft_ms"].is_u64());
    let plain = items.iter().find(|i| i["model"] == "gpt-4o").unwrap();
    assert_eq!(plain["ttft_ms"], Value::Null);
    assert_eq!(plain["error"], Value::Null);
    let unknown = items.iter().find(|i| i["status"] == 404).unwrap();
    assert_eq!(unknown["provider"], Value::Null);
    assert!(unknown["error"].is_string());

    // Filters, alone and together.
    let expect = |f: &dyn Fn(&StoredLog) -> bool| -> Vec<i64> {
        stored.iter().filter(|s| f(s)).map(|s| s.id).collect()
    };
    let cases: Vec<(&str, Vec<i64>)> = vec![
        (
            "key_name=batch-jobs",
            expect(&|s| s.row.key_name.as_deref() == Some("batch-jobs")),
        ),
        (
            "model=gpt-4o-mini",
            expect(&|s| s.row.model.as_deref() == Some("gpt-4o-mini")),
        ),
        (
            "provider=openai",
            expect(&|s| s.row.provider.as_deref() == Some("openai")),
        ),
        ("status=429", expect(&|s| s.row.status == 429)),
        (
            "key_name=default&status=200",
            expect(&|s| s.row.key_name.as_deref() == Some("default") && s.row.status == 200),
        ),
        ("key_name=nobody", vec![]),
    ];
    for (query, want) in cases {
        let body = get_ok(&t, &format!("/api/logs?{query}"), &token).await;
        assert_eq!(ids(&body), want, "{query}");
    }

    // Paging with the cursor walks every row once, in order.
    let mut seen: Vec<i64> = Vec::new();
    let mut path = "/api/logs?limit=2".to_string();
    loop {
        let body = get_ok(&t, &path, &token).await;
        let page = ids(&body);
        assert!(page.len() <= 2);
        seen.extend(&page);
        match body["next_before"].as_i64() {
            Some(before) => {
                assert_eq!(Some(&before), page.last());
                path = format!("/api/logs?limit=2&before={before}");
            }
            None => break,
        }
    }
    assert_eq!(seen, all);

    // Bad parameters: 400 naming the parameter.
    for (query, param) in [
        ("limit=0", Some("limit")),
        ("limit=ten", Some("limit")),
        ("status=abc", Some("status")),
        ("before=x", Some("before")),
        ("key=default", Some("key")),
    ] {
        let (status, body, _) = api_get(&t, &format!("/api/logs?{query}"), &token).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(openai_error(&body)["param"], json!(param), "{query}");
    }
}

fn synthetic_row(i: usize, created_at: DateTime<Utc>) -> LogRow {
    let providers = [Some("openai"), Some("gemini"), None];
    let models = ["gpt-4o", "gemini-2.5-flash", "deepseek-chat", "mystery"];
    let status = [200, 200, 200, 429, 500, 404][i % 6];
    LogRow {
        request_id: format!("req-{i}"),
        created_at,
        key_id: Some((i % 3) as i64 + 1),
        key_name: [Some("alpha"), Some("beta"), None][i % 3].map(str::to_string),
        provider: providers[i % 3].map(str::to_string),
        model: Some(models[i % 4].to_string()),
        upstream_model: Some(models[i % 4].to_string()),
        stream: i.is_multiple_of(2),
        status,
        latency_ms: 100 + i as u64,
        ttft_ms: i.is_multiple_of(2).then_some(20),
        usage: (!i.is_multiple_of(5)).then_some(TokenCounts {
            prompt: 100 + i as u64,
            completion: 20 + (i % 7) as u64,
            cached: (i % 3) as u64 * 10,
            reasoning: (i % 4) as u64,
            cache_write: 0,
            audio_prompt: 0,
            audio_completion: 0,
        }),
        cost_usd: (i % 4 != 3).then_some(0.000_123 * (i % 9 + 1) as f64),
        usage_source: (!i.is_multiple_of(5)).then_some("reported"),
        error: (status >= 400).then(|| "upstream_error: synthetic".to_string()),
        ..Default::default()
    }
}

/// What `/api/usage` should say, computed from raw rows.
fn expected_usage(rows: &[StoredLog], group_by: &str) -> BTreeMap<String, Value> {
    let mut acc: BTreeMap<String, (u64, u64, [u64; 4], f64, u64)> = BTreeMap::new();
    for s in rows {
        let r = &s.row;
        let group = match group_by {
            "key" => r.key_name.clone(),
            "model" => r.model.clone(),
            "provider" => r.provider.clone(),
            _ => Some(r.created_at.format("%Y-%m-%d").to_string()),
        };
        let e = acc
            .entry(group.unwrap_or_else(|| "<null>".into()))
            .or_default();
        e.0 += 1;
        e.1 += u64::from(r.status >= 400);
        if let Some(u) = r.usage {
            e.2[0] += u.prompt;
            e.2[1] += u.completion;
            e.2[2] += u.cached;
            e.2[3] += u.reasoning;
        }
        match r.cost_usd {
            Some(c) => e.3 += c,
            None => e.4 += 1,
        }
    }
    acc.into_iter()
        .map(|(g, (n, errors, tok, cost, unpriced))| {
            let cost = if n > unpriced {
                json!(cost)
            } else {
                Value::Null
            };
            let v = json!({
                "requests": n, "errors": errors, "prompt_tokens": tok[0],
                "completion_tokens": tok[1], "cached_tokens": tok[2], "reasoning_tokens": tok[3],
                "cost_usd": cost, "unpriced_requests": unpriced,
            });
            (g, v)
        })
        .collect()
}

fn usage_by_group(body: &Value) -> BTreeMap<String, Value> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let mut v = i.clone();
            let g = v
                .as_object_mut()
                .unwrap()
                .remove("group")
                .unwrap()
                .as_str()
                .unwrap_or("<null>")
                .to_string();
            (g, v)
        })
        .collect()
}

fn assert_usage_eq(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, ctx: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{ctx}"
    );
    for (g, w) in want {
        let mut a = got[g].clone();
        let mut b = w.clone();
        // Costs are sums of floats, in another order.
        let ca = a["cost_usd"].take();
        let cb = b["cost_usd"].take();
        assert_eq!(a, b, "{ctx} {g}");
        match (ca.as_f64(), cb.as_f64()) {
            (Some(x), Some(y)) => assert!((x - y).abs() < 1e-9, "{ctx} {g}: {x} vs {y}"),
            _ => assert_eq!(ca, cb, "{ctx} {g}"),
        }
    }
}

#[tokio::test]
async fn usage_api_matches_sums_over_the_raw_rows_for_every_grouping() {
    let t = spawn_app().await;
    add_user(&t, "viewer", UserRole::Viewer).await;
    let token = token_for(&t, "viewer").await;
    let store = t.app().state().store.clone();

    // Real traffic today, and synthetic rows over the last ten days, in several batches (so the
    // same group is upserted more than once) through the real writer path.
    assert_eq!(t.chat(user_msg("hello")).await.status(), 200);
    assert!(
        t.chat(user_msg("[[mock:error=500]] boom"))
            .await
            .status()
            .is_server_error()
    );
    let now = Utc::now();
    let rows: Vec<LogRow> = (0..600)
        .map(|i| synthetic_row(i, now - ChronoDuration::hours((i % 240) as i64)))
        .collect();
    for chunk in rows.chunks(77) {
        store.insert_logs(chunk).await.unwrap();
    }
    let all = t.logs(602).await;

    let from = (now - ChronoDuration::days(12))
        .format("%Y-%m-%d")
        .to_string();
    let to = now.format("%Y-%m-%d").to_string();
    for group_by in ["key", "model", "provider", "day"] {
        let body = get_ok(
            &t,
            &format!("/api/usage?group_by={group_by}&from={from}&to={to}"),
            &token,
        )
        .await;
        assert_eq!(body["group_by"], group_by);
        assert_eq!(body["from"], from);
        assert_eq!(body["to"], to);
        let items = body["items"].as_array().unwrap();
        for item in items {
            let mut keys: Vec<&str> = item
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                [
                    "cached_tokens",
                    "completion_tokens",
                    "cost_usd",
                    "errors",
                    "group",
                    "prompt_tokens",
                    "reasoning_tokens",
                    "requests",
                    "unpriced_requests"
                ]
            );
        }
        assert_usage_eq(
            &usage_by_group(&body),
            &expected_usage(&all, group_by),
            group_by,
        );
    }

    // A narrower window (RFC 3339 times select whole UTC days), and the 30-day default.
    let since = now - ChronoDuration::days(3);
    let window: Vec<StoredLog> = all
        .iter()
        .filter(|s| s.row.created_at.date_naive() >= since.date_naive())
        .cloned()
        .collect();
    let body = get_ok(
        &t,
        &format!(
            "/api/usage?group_by=model&from={}",
            since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
        &token,
    )
    .await;
    assert_eq!(body["from"], since.format("%Y-%m-%d").to_string());
    assert_usage_eq(
        &usage_by_group(&body),
        &expected_usage(&window, "model"),
        "window",
    );
    // Drill-downs: one key by model, one model by day, a key and a provider by key.
    let only = |f: &dyn Fn(&LogRow) -> bool| -> Vec<StoredLog> {
        all.iter().filter(|s| f(&s.row)).cloned().collect()
    };
    let range = format!("from={from}&to={to}");
    for (query, group_by, rows) in [
        (
            "key_name=alpha",
            "model",
            only(&|r| r.key_name.as_deref() == Some("alpha")),
        ),
        (
            "model=gpt-4o",
            "day",
            only(&|r| r.model.as_deref() == Some("gpt-4o")),
        ),
        (
            "key_name=beta&provider=gemini",
            "key",
            only(&|r| {
                r.key_name.as_deref() == Some("beta") && r.provider.as_deref() == Some("gemini")
            }),
        ),
    ] {
        let body = get_ok(
            &t,
            &format!("/api/usage?group_by={group_by}&{query}&{range}"),
            &token,
        )
        .await;
        assert!(!rows.is_empty(), "{query}");
        assert_usage_eq(
            &usage_by_group(&body),
            &expected_usage(&rows, group_by),
            query,
        );
    }
    let body = get_ok(&t, "/api/usage?group_by=provider", &token).await;
    assert_usage_eq(
        &usage_by_group(&body),
        &expected_usage(&all, "provider"),
        "default range",
    );
    let body = get_ok(&t, "/api/usage", &token).await;
    assert_eq!(body["group_by"], "day");

    for (query, param) in [
        ("group_by=team", "group_by"),
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-02-02&to=2026-02-01", "from"),
    ] {
        let (status, body, _) = api_get(&t, &format!("/api/usage?{query}"), &token).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(openai_error(&body)["param"], param, "{query}");
    }
}

#[tokio::test]
async fn limit_500_works_and_larger_limits_are_capped() {
    let t = spawn_app().await;
    add_user(&t, "admin", UserRole::Admin).await;
    let token = token_for(&t, "admin").await;
    let now = Utc::now();
    let rows: Vec<LogRow> = (0..1_100)
        .map(|i| synthetic_row(i, now - ChronoDuration::seconds(1_100 - i as i64)))
        .collect();
    t.app().state().store.insert_logs(&rows).await.unwrap();

    let body = get_ok(&t, "/api/logs?limit=500", &token).await;
    let first = ids(&body);
    assert_eq!(first.len(), 500);
    assert_eq!(body["next_before"], json!(first.last()));
    assert_eq!(body["items"][0]["request_id"], "req-1099");
    let body = get_ok(
        &t,
        &format!("/api/logs?limit=500&before={}", first[499]),
        &token,
    )
    .await;
    let second = ids(&body);
    assert_eq!(second.len(), 500);
    assert_eq!(second[0], first[499] - 1);
    let body = get_ok(&t, "/api/logs?limit=5000", &token).await;
    assert_eq!(ids(&body).len(), 1000);
    let body = get_ok(&t, "/api/logs", &token).await;
    assert_eq!(ids(&body).len(), 100);
}

#[tokio::test]
async fn retention_deletes_old_rows_but_usage_still_counts_them() {
    let mut t = spawn_app().await;
    add_user(&t, "admin", UserRole::Admin).await;
    let token = token_for(&t, "admin").await;
    let store = t.app().state().store.clone();
    let now = Utc::now();
    // 12,000 rows 100 days old (more than two delete batches) and 50 from today.
    let old: Vec<LogRow> = (0..12_000)
        .map(|i| {
            synthetic_row(
                i,
                now - ChronoDuration::days(100) + ChronoDuration::seconds(i as i64),
            )
        })
        .collect();
    store.insert_logs(&old).await.unwrap();
    let recent: Vec<LogRow> = (0..50)
        .map(|i| synthetic_row(i, now - ChronoDuration::minutes(i as i64)))
        .collect();
    store.insert_logs(&recent).await.unwrap();
    let range = format!(
        "from={}&to={}",
        (now - ChronoDuration::days(101)).format("%Y-%m-%d"),
        now.format("%Y-%m-%d")
    );
    let before = get_ok(&t, &format!("/api/usage?group_by=key&{range}"), &token).await;

    let cutoff = retention::cutoff(now, Duration::from_secs(90 * 86_400)).unwrap();
    let deleted = retention::purge(&store, cutoff, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(deleted, 12_000);
    assert_eq!(store.count_logs().await.unwrap(), 50);
    let left = store
        .query_logs(&LogQuery {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(left.iter().all(|s| s.row.created_at > cutoff));

    // The rollups still count every row.
    let after = get_ok(&t, &format!("/api/usage?group_by=key&{range}"), &token).await;
    assert_eq!(before, after);
    let total: u64 = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 12_050);

    // The worker started by `App` does the same on its own (it purges at start).
    store.insert_logs(&old[..10]).await.unwrap();
    t.shutdown().await;
    let mut config = test_config(t.dir.path(), &t.mock);
    config.log.retention = Duration::from_secs(30 * 86_400);
    let app = gophergate::app::App::build(config).await.unwrap();
    let store = app.state().store.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.count_logs().await.unwrap() != 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker did not purge"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_secret_appears_in_any_api_response() {
    let t = spawn_app().await;
    add_user(&t, "alice", UserRole::Admin).await;
    let resp = login(&t, "alice", PASSWORD).await;
    let login_text = resp.text().await.unwrap();
    assert!(!login_text.contains(PASSWORD));
    let token = serde_json::from_str::<Value>(&login_text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(t.chat(user_msg("hello")).await.status(), 200);
    assert_eq!(
        t.chat(user_msg("[[mock:error=401]] bad provider key"))
            .await
            .status(),
        502
    );
    t.exact_logs(2).await;

    let mut texts = Vec::new();
    for path in [
        "/api/auth/me",
        "/api/logs",
        "/api/logs?limit=500",
        "/api/usage?group_by=key",
        "/api/usage?group_by=model",
        "/api/usage?group_by=provider",
        "/api/usage?group_by=day",
        "/api/logs?key=x",
        "/api/nope",
    ] {
        let (_, _, text) = api_get(&t, path, &token).await;
        texts.push(text);
    }
    let (_, _, text) = api_get(&t, "/api/logs", "not-a-token").await;
    texts.push(text);
    let resp = t
        .http
        .post(t.url("/api/auth/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    texts.push(format!("{:?}", resp.headers()));
    texts.push(resp.text().await.unwrap());
    let mac = token.rsplit('.').next().unwrap();
    for text in &texts {
        for secret in [t.key.as_str(), UPSTREAM_KEY, PASSWORD, token.as_str(), mac] {
            assert!(!text.contains(secret), "secret in response: {text}");
        }
    }
}
