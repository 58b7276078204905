//! The dashboard's management API: keys, providers (stored keys, connection tests), models, users,
//! password change, system; and what guards it: roles, the sign-in throttle, the CSRF rule,
//! security headers, `/metrics`, the first admin of a fresh install, and that no secret comes back.

use crate::{
    cli::gophergate,
    dashboard_api::{PASSWORD, add_user, api_get, assert_session_401, login, token_for},
    helpers::*,
};
use gophergate::{
    config::{ProviderConfig, ProviderKind},
    events::Event,
    mock::{Dialect, MockConfig, MockServer},
    providers::health::HealthStatus,
    store::UserRole,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

/// A call with a bearer token (so no CSRF rule applies); JSON body when given.
async fn call(
    t: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, String) {
    let mut req = t.http.request(method, t.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
    };
    (status, body, text)
}

fn assert_code(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    let err = openai_error(body);
    assert_eq!(err["code"], want_code, "{body}");
}

/// An app with an admin `root` and a viewer `val`, and their tokens.
async fn app_with_users() -> (TestApp, String, String) {
    let t = spawn_app().await;
    add_user(&t, "root", UserRole::Admin).await;
    add_user(&t, "val", UserRole::Viewer).await;
    let admin = token_for(&t, "root").await;
    let viewer = token_for(&t, "val").await;
    (t, admin, viewer)
}

#[tokio::test]
async fn every_route_needs_a_session_and_admin_routes_refuse_viewers() {
    let (t, admin, viewer) = app_with_users().await;
    let reads = ["/api/keys", "/api/providers", "/api/models", "/api/system"];
    for path in reads {
        let (status, body, _) = call(&t, Method::GET, path, None, None).await;
        assert_session_401(status, &body);
        for token in [&admin, &viewer] {
            let (status, body, _) = call(&t, Method::GET, path, Some(token), None).await;
            assert_eq!(status, 200, "{path}: {body}");
        }
    }
    let admin_only: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, "/api/users", None),
        (
            Method::POST,
            "/api/users",
            Some(json!({"username": "x", "password": "long enough", "role": "viewer"})),
        ),
        (Method::DELETE, "/api/users/root", None),
        (Method::POST, "/api/keys", Some(json!({"name": "v"}))),
        (Method::POST, "/api/keys/default/revoke", None),
        (
            Method::PUT,
            "/api/providers/gemini/key",
            Some(json!({"api_key": "AIza-viewer-key"})),
        ),
        (Method::POST, "/api/providers/openai/test", None),
    ];
    for (method, path, body) in &admin_only {
        let (status, resp, _) = call(&t, method.clone(), path, None, body.clone()).await;
        assert_session_401(status, &resp);
        let (status, resp, _) = call(&t, method.clone(), path, Some(&viewer), body.clone()).await;
        assert_code(status, &resp, 403, "admin_required");
    }
    // The viewer changed nothing: the key still works, no user or provider key appeared.
    assert_eq!(t.chat(user_msg("still here")).await.status(), 200);
    let (_, users, _) = call(&t, Method::GET, "/api/users", Some(&admin), None).await;
    assert_eq!(users["items"].as_array().unwrap().len(), 2, "{users}");
    let (_, providers, _) = call(&t, Method::GET, "/api/providers", Some(&viewer), None).await;
    let gemini = provider(&providers, "gemini");
    assert_eq!(gemini["has_key"], false);
    // Any signed-in user may change their own password (it is checked, not refused).
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/auth/password",
        Some(&viewer),
        Some(json!({"current_password": "wrong", "new_password": "another long one"})),
    )
    .await;
    assert_code(status, &body, 400, "wrong_password");
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/auth/password",
        None,
        Some(json!({"current_password": "x", "new_password": "y"})),
    )
    .await;
    assert_session_401(status, &body);
}

/// The next key event (the registry worker may publish its own meanwhile).
async fn next_key_event(rx: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(ev, Event::KeyCreated { .. } | Event::KeyRevoked { .. }) {
            return ev;
        }
    }
}

fn provider<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no provider {name}: {list}"))
}

#[tokio::test]
async fn keys_made_in_the_dashboard_are_shown_once_work_and_revoke_at_once() {
    let (t, admin, viewer) = app_with_users().await;
    let mut events = t.app().state().events.subscribe();
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/keys",
        Some(&admin),
        Some(
            json!({"name": " web ", "models": ["gpt-4o-mini"], "rpm": 100, "budget_usd": 5.0,
                    "expires_at": "2099-01-01T00:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("gg-") && key.len() == 46, "{key}");
    let item = &body["item"];
    assert_eq!(item["name"], "web");
    assert_eq!(item["prefix"], key[..9]);
    assert_eq!(item["status"], "active");
    assert_eq!(item["models"], json!(["gpt-4o-mini"]));
    assert_eq!(item["rpm"], 100);
    assert_eq!(item["budget_usd"], 5.0);
    assert_eq!(item["spent_usd"], 0.0);
    assert_eq!(item["expires_at"], "2099-01-01T00:00:00.000Z");
    assert!(item["revoked_at"].is_null() && item["created_at"].is_string());
    assert_eq!(
        next_key_event(&mut events).await,
        Event::KeyCreated { name: "web".into() }
    );

    // Listed (for viewers too) without the key or any more of it than the prefix.
    let (status, list, text) = call(&t, Method::GET, "/api/keys", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(!text.contains(&key[..12]), "{text}");
    let listed: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["default", "web"]);
    for field in [
        "id",
        "name",
        "prefix",
        "status",
        "models",
        "rpm",
        "budget_usd",
        "spent_usd",
        "expires_at",
        "revoked_at",
        "created_at",
    ] {
        assert!(list["items"][1].get(field).is_some(), "{field}: {list}");
    }

    // It works on /v1 (within its model list) and stops at once when revoked.
    assert_eq!(t.chat_as(&key, user_msg("hello")).await.status(), 200);
    assert_eq!(
        t.chat_as(
            &key,
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
        )
        .await
        .status(),
        403
    );
    let (status, body, _) =
        call(&t, Method::POST, "/api/keys/web/revoke", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["status"], "revoked");
    assert!(body["item"]["revoked_at"].is_string());
    assert_eq!(t.chat_as(&key, user_msg("again")).await.status(), 401);
    assert_eq!(
        next_key_event(&mut events).await,
        Event::KeyRevoked { name: "web".into() }
    );
    // Revoking again, or a key that never was: 404.
    for name in ["web", "nobody"] {
        let (status, body, _) = call(
            &t,
            Method::POST,
            &format!("/api/keys/{name}/revoke"),
            Some(&admin),
            None,
        )
        .await;
        assert_code(status, &body, 404, "key_not_found");
    }

    // The CLI's rules, with the JSON field named.
    for (bad, param) in [
        (json!({"name": "  "}), "name"),
        (json!({"name": "z", "rpm": 0}), "rpm"),
        (json!({"name": "z", "budget_usd": -1}), "budget_usd"),
        (json!({"name": "z", "expires_at": "tomorrow"}), "expires_at"),
        (
            json!({"name": "z", "expires_at": "2001-01-01T00:00:00Z"}),
            "expires_at",
        ),
    ] {
        let (status, body, _) = call(&t, Method::POST, "/api/keys", Some(&admin), Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(openai_error(&body)["param"], param, "{body}");
    }
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/keys",
        Some(&admin),
        Some(json!({"name": "z", "rpm": "fast"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A live key's name is taken; a revoked one's is free again.
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/keys",
        Some(&admin),
        Some(json!({"name": "default"})),
    )
    .await;
    assert_code(status, &body, 409, "key_exists");
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/keys",
        Some(&admin),
        Some(json!({"name": "web"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_provider_key_set_in_the_dashboard_is_stored_encrypted_and_works_without_restart() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.providers.get_mut("openai").unwrap().api_key = None;
    })
    .await;
    add_user(&t, "root", UserRole::Admin).await;
    let admin = token_for(&t, "root").await;

    let resp = t.chat(user_msg("before")).await;
    assert_eq!(resp.status(), 404);
    let (_, list, _) = call(&t, Method::GET, "/api/providers", Some(&admin), None).await;
    let openai = provider(&list, "openai");
    assert_eq!(openai["has_key"], false, "{openai}");
    assert_eq!(openai["key_source"], "none");
    assert_eq!(openai["available"], false);
    assert!(openai["unavailable_reason"].is_string());
    assert_eq!(openai["health"]["status"], "unknown");
    assert_eq!(openai["kind"], "openai");
    assert_eq!(openai["base_url"], t.mock.openai_base_url());

    let (status, body, text) = call(
        &t,
        Method::PUT,
        "/api/providers/openai/key",
        Some(&admin),
        Some(json!({"api_key": UPSTREAM_KEY})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!text.contains(UPSTREAM_KEY) && !text.contains(&UPSTREAM_KEY[..8]));
    assert_eq!(body["item"]["key_source"], "database");
    assert_eq!(body["item"]["has_key"], true);
    assert_eq!(body["item"]["available"], true);

    // Effective at once, against the mock (which checks the key).
    let resp = t.chat(user_msg("after")).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // Stored encrypted: neither the row nor the database files hold the key.
    let sealed = t
        .app()
        .state()
        .store
        .get_credential("openai")
        .await
        .unwrap()
        .unwrap();
    let needle = UPSTREAM_KEY.as_bytes();
    assert!(!sealed.ciphertext.windows(needle.len()).any(|w| w == needle));
    for file in ["gophergate.db", "gophergate.db-wal"] {
        if let Ok(bytes) = std::fs::read(t.dir.path().join(file)) {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{file}");
        }
    }

    // Bad input and unknown providers.
    for bad in [
        json!({"api_key": ""}),
        json!({"api_key": "has space"}),
        json!({}),
    ] {
        let (status, body, _) = call(
            &t,
            Method::PUT,
            "/api/providers/openai/key",
            Some(&admin),
            Some(bad),
        )
        .await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, body, _) = call(
        &t,
        Method::PUT,
        "/api/providers/nope/key",
        Some(&admin),
        Some(json!({"api_key": "k-123456789"})),
    )
    .await;
    assert_code(status, &body, 404, "provider_not_found");
}

#[tokio::test]
async fn a_configured_key_wins_over_a_stored_one() {
    let (t, admin, _) = app_with_users().await;
    let (status, body, _) = call(
        &t,
        Method::PUT,
        "/api/providers/openai/key",
        Some(&admin),
        Some(json!({"api_key": "sk-stored-but-unused-999"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["key_source"], "config");
    // Still the configured (right) key: the mock accepts it.
    assert_eq!(t.chat(user_msg("config key")).await.status(), 200);
}

#[tokio::test]
async fn connection_tests_report_ok_and_failing_and_set_health() {
    let gemini = MockServer::start(MockConfig {
        dialect: Dialect::Gemini,
        api_key: Some("gemini-mock-key-123".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let gemini_base = gemini.base_url();
    let dead = format!("http://127.0.0.1:{}/v1", closed_port());
    let t = spawn_app_with(MockConfig::default(), move |c| {
        c.providers.insert(
            "gemini".into(),
            ProviderConfig {
                base_url: Some(gemini_base),
                api_key: Some("gemini-mock-key-123".to_string().into()),
                ..Default::default()
            },
        );
        c.providers.insert(
            "deepseek".into(),
            ProviderConfig {
                base_url: Some(c.providers["openai"].base_url.clone().unwrap()),
                api_key: Some("sk-wrong-key-0000000000".to_string().into()),
                ..Default::default()
            },
        );
        c.providers.insert(
            "xai".into(),
            ProviderConfig {
                base_url: Some(dead),
                api_key: Some("xai-key-11111111".to_string().into()),
                ..Default::default()
            },
        );
        c.providers.insert(
            "nokey".into(),
            ProviderConfig {
                kind: Some(ProviderKind::Openai),
                base_url: Some("http://127.0.0.1:9/v1".into()),
                ..Default::default()
            },
        );
    })
    .await;
    add_user(&t, "root", UserRole::Admin).await;
    let admin = token_for(&t, "root").await;
    let mut events = t.app().state().events.subscribe();

    let test = |name: &'static str| {
        let t = &t;
        let admin = admin.clone();
        async move {
            let path = format!("/api/providers/{name}/test");
            let (status, body, text) = call(t, Method::POST, &path, Some(&admin), None).await;
            assert_eq!(status, 200, "{body}");
            for key in [UPSTREAM_KEY, "gemini-mock-key", "sk-wrong-key", "xai-key-1"] {
                assert!(!text.contains(key), "{text}");
            }
            body
        }
    };
    let ok = test("openai").await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["status"], 200);
    assert!(ok["latency_ms"].is_u64() && ok["message"].is_string());
    let g = test("gemini").await;
    assert_eq!(g["ok"], true, "{g}");

    // The mock refuses the wrong key with OpenAI's 401 (whose message quotes part of the key).
    let wrong = test("deepseek").await;
    assert_eq!(wrong["ok"], false, "{wrong}");
    assert_eq!(wrong["status"], 401);
    assert!(
        wrong["message"].as_str().unwrap().contains("rejected"),
        "{wrong}"
    );
    let unreachable = test("xai").await;
    assert_eq!(unreachable["ok"], false, "{unreachable}");
    assert!(unreachable["status"].is_null());
    // No key at all: failing without a call.
    let none = test("nokey").await;
    assert_eq!(none["ok"], false, "{none}");
    assert!(none["status"].is_null());
    assert!(
        none["message"].as_str().unwrap().contains("No API key"),
        "{none}"
    );
    // Still fine: no change, no event.
    assert_eq!(test("openai").await["ok"], true);

    let (_, list, _) = call(&t, Method::GET, "/api/providers", Some(&admin), None).await;
    let health = |name| provider(&list, name)["health"].clone();
    assert_eq!(health("openai")["status"], "ok");
    assert!(health("openai")["checked_at"].is_string());
    assert!(health("openai")["latency_ms"].is_u64());
    assert_eq!(health("deepseek")["status"], "failing");
    assert_eq!(health("xai")["status"], "failing");

    // One event per change of state (openai's second ok changed nothing).
    let mut changes = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let Event::ProviderHealthChanged { provider, status } = ev {
            changes.push((provider, status));
        }
    }
    assert_eq!(
        changes,
        [
            ("openai".to_string(), HealthStatus::Ok),
            ("gemini".to_string(), HealthStatus::Ok),
            ("deepseek".to_string(), HealthStatus::Failing),
            ("xai".to_string(), HealthStatus::Failing),
            ("nokey".to_string(), HealthStatus::Failing),
        ]
    );
    let (status, body, _) = call(
        &t,
        Method::POST,
        "/api/providers/nope/test",
        Some(&admin),
        None,
    )
    .await;
    assert_code(status, &body, 404, "provider_not_found");
}

#[tokio::test]
async fn models_lists_available_providers_with_their_prices() {
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.providers.get_mut("openai").unwrap().models = vec!["my-local-model".into()];
        c.pricing
            .aliases
            .insert("my-alias".into(), "openai/gpt-4o".into());
    })
    .await;
    t.wait_registry().await;
    add_user(&t, "val", UserRole::Viewer).await;
    let viewer = token_for(&t, "val").await;
    let (status, body, _) = call(&t, Method::GET, "/api/models", Some(&viewer), None).await;
    assert_eq!(status, 200);
    assert!(
        body["registry_version"].is_string(),
        "{}",
        body["registry_version"]
    );
    assert!(body["loaded_at"].is_string());
    assert_eq!(body["aliases"]["my-alias"], "openai/gpt-4o");
    assert!(body["overrides"].is_object());
    let items = body["items"].as_array().unwrap();
    // Only available providers: openai has a key, the other built-ins none.
    assert!(items.iter().all(|m| m["provider"] == "openai"), "{body}");
    let find = |id: &str| {
        items
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("no {id}"))
            .clone()
    };
    let gpt4o = find("gpt-4o");
    assert_eq!(gpt4o["input"], 2.5);
    assert_eq!(gpt4o["output"], 10.0);
    assert_eq!(gpt4o["cache_read"], 1.25);
    assert_eq!(gpt4o["routes_bare"], true);
    assert!(gpt4o["context"].is_u64() && gpt4o["max_output"].is_u64());
    assert!(gpt4o["name"].is_string());
    assert_eq!(gpt4o["price_source"], "exact");
    for field in ["cache_write", "reasoning"] {
        assert!(gpt4o.get(field).is_some(), "{field}");
    }
    let local = find("my-local-model");
    assert!(local["input"].is_null() && local["name"].is_null());
    assert_eq!(local["price_source"], "none");
    assert_eq!(local["routes_bare"], true);
}

#[tokio::test]
async fn users_are_managed_by_admins_with_rules() {
    let (t, admin, _) = app_with_users().await;
    let create = |body: Value| {
        let t = &t;
        let admin = admin.clone();
        async move { call(t, Method::POST, "/api/users", Some(&admin), Some(body)).await }
    };
    let (status, body, text) =
        create(json!({"username": "carol", "password": "carol's long password", "role": "viewer"}))
            .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["item"]["username"], "carol");
    assert_eq!(body["item"]["role"], "viewer");
    assert!(body["item"]["id"].is_i64() && body["item"]["created_at"].is_string());
    assert!(
        !text.contains("carol's long") && !text.contains("$2"),
        "{text}"
    );
    // Stored with bcrypt cost 12.
    let stored = t
        .app()
        .state()
        .store
        .find_user("carol")
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored.password_hash.starts_with("$2b$12$"),
        "{}",
        stored.password_hash
    );
    assert_eq!(
        login(&t, "carol", "carol's long password").await.status(),
        200
    );

    for (bad, param) in [
        (
            json!({"username": "d", "password": "short", "role": "viewer"}),
            "password",
        ),
        (
            json!({"username": " ", "password": "long enough", "role": "viewer"}),
            "username",
        ),
        (
            json!({"username": "d", "password": "long enough", "role": "owner"}),
            "role",
        ),
    ] {
        let (status, body, text) = create(bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(openai_error(&body)["param"], param, "{body}");
        assert!(!text.contains("long enough"), "{text}");
    }
    let (status, body, _) = create(json!({"username": "d", "role": "viewer"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body, _) =
        create(json!({"username": "carol", "password": "long enough", "role": "admin"})).await;
    assert_code(status, &body, 409, "user_exists");

    let (status, list, text) = call(&t, Method::GET, "/api/users", Some(&admin), None).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "val", "carol"]);
    assert!(!text.contains("password") && !text.contains("$2"), "{text}");

    // Not yourself; the others go, with their sessions; unknown names are 404.
    let (status, body, _) = call(&t, Method::DELETE, "/api/users/root", Some(&admin), None).await;
    assert_code(status, &body, 409, "cannot_delete_self");
    let carol = token_for_password(&t, "carol", "carol's long password").await;
    let (status, _, _) = call(&t, Method::DELETE, "/api/users/carol", Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, body, _) = api_get(&t, "/api/keys", &carol).await;
    assert_session_401(status, &body);
    let (status, body, _) = call(&t, Method::DELETE, "/api/users/carol", Some(&admin), None).await;
    assert_code(status, &body, 404, "user_not_found");

    // A new user never gets a deleted one's id, so an old token cannot sign in as them.
    let (_, body, _) =
        create(json!({"username": "dave", "password": "dave's long password", "role": "admin"}))
            .await;
    assert!(body["item"]["id"].as_i64().unwrap() > stored.id, "{body}");
    let (status, body, _) = api_get(&t, "/api/keys", &carol).await;
    assert_session_401(status, &body);

    // The last admin cannot go (checked in the same statement that deletes).
    let store = &t.app().state().store;
    store.delete_user("dave").await.unwrap();
    let err = store.delete_user("root").await.unwrap_err();
    assert!(err.to_string().contains("last admin"), "{err}");
    assert!(store.find_user("root").await.unwrap().is_some());
}

async fn token_for_password(t: &TestApp, username: &str, password: &str) -> String {
    let resp = login(t, username, password).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn changing_the_password_ends_every_session() {
    let (t, _, _) = app_with_users().await;
    let first = token_for(&t, "val").await;
    let second = token_for(&t, "val").await;
    let change = |current: &'static str, new: &'static str| {
        let t = &t;
        let first = first.clone();
        async move {
            call(
                t,
                Method::POST,
                "/api/auth/password",
                Some(&first),
                Some(json!({"current_password": current, "new_password": new})),
            )
            .await
        }
    };
    let (status, body, _) = change("not it", "a new long password").await;
    assert_code(status, &body, 400, "wrong_password");
    let (status, body, _) = change(PASSWORD, "short").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(openai_error(&body)["param"], "new_password");
    // Nothing changed so far.
    assert_eq!(api_get(&t, "/api/auth/me", &second).await.0, 200);

    let resp = t
        .http
        .post(t.url("/api/auth/password"))
        .bearer_auth(&first)
        .json(&json!({"current_password": PASSWORD, "new_password": "a new long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let cleared = resp.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    for stale in [&first, &second] {
        let (status, body, _) = api_get(&t, "/api/auth/me", stale).await;
        assert_session_401(status, &body);
    }
    assert_eq!(login(&t, "val", PASSWORD).await.status(), 401);
    assert_eq!(login(&t, "val", "a new long password").await.status(), 200);
}

#[tokio::test]
async fn repeated_failed_sign_ins_are_throttled() {
    let t = spawn_app().await;
    add_user(&t, "alice", UserRole::Admin).await;
    add_user(&t, "bob", UserRole::Viewer).await;
    for _ in 0..10 {
        assert_eq!(login(&t, "alice", "guess").await.status(), 401);
    }
    let resp = login(&t, "alice", "guess").await;
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(openai_error(&body)["code"], "too_many_attempts");
    // Even the right password waits: the throttle comes before the check.
    assert_eq!(login(&t, "alice", PASSWORD).await.status(), 429);
    // Another account from the same address is not locked out by alice's failures…
    assert_eq!(login(&t, "bob", PASSWORD).await.status(), 200);
    // …and a success clears that user's count.
    for _ in 0..9 {
        assert_eq!(login(&t, "bob", "guess").await.status(), 401);
    }
    assert_eq!(login(&t, "bob", PASSWORD).await.status(), 200);
    assert_eq!(login(&t, "bob", "guess").await.status(), 401);
    assert_eq!(login(&t, "bob", PASSWORD).await.status(), 200);
}

#[tokio::test]
async fn cookie_calls_that_change_state_need_json_or_the_csrf_header() {
    let (t, admin, _) = app_with_users().await;
    let cookie = format!("gg_session={admin}");
    let post = |path: &str| t.http.post(t.url(path)).header("cookie", cookie.clone());

    // A cross-site form could send this: refused.
    let resp = post("/api/keys")
        .header("content-type", "text/plain")
        .body(r#"{"name": "csrf"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(openai_error(&body)["code"], "csrf_check_failed");
    let resp = post("/api/keys/default/revoke").send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(t.chat(user_msg("not revoked")).await.status(), 200);

    // JSON, or the header, passes.
    let resp = post("/api/keys")
        .json(&json!({"name": "csrf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = post("/api/keys/csrf/revoke")
        .header("x-gophergate-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Reads need neither; a bearer token needs neither.
    let resp = t
        .http
        .get(t.url("/api/keys"))
        .header("cookie", cookie.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, _) = call(
        &t,
        Method::POST,
        "/api/keys/default/revoke",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200);
    // Sign-in too: a form cannot sign a browser into another account.
    let resp = t
        .http
        .post(t.url("/api/auth/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            r#"{{"username": "root", "password": "{PASSWORD}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn security_headers_everywhere_but_v1() {
    let t = spawn_app().await;
    for path in ["/api/auth/me", "/api/keys", "/", "/health", "/metrics"] {
        let resp = t.http.get(t.url(path)).send().await.unwrap();
        let h = resp.headers();
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert!(h.contains_key("referrer-policy"), "{path}");
    }
    let resp = t.get("/v1/models").await;
    assert_eq!(resp.status(), 200);
    assert!(!resp.headers().contains_key("content-security-policy"));
}

/// The value of the first sample line of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_v1_requests_and_can_need_a_token() {
    let t = spawn_app().await;
    let scrape = || async {
        let resp = t.http.get(t.url("/metrics")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        resp.text().await.unwrap()
    };
    let labels = [
        "provider=\"openai\"",
        "model=\"gpt-4o-mini\"",
        "status_class=\"2xx\"",
    ];
    t.wait_registry().await; // so the request is priced
    let before = sample(&scrape().await, "gophergate_requests_total", &labels);
    assert_eq!(t.chat(user_msg("count me")).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    let text = loop {
        let text = scrape().await;
        if sample(&text, "gophergate_requests_total", &labels) >= before + 1.0 {
            break text;
        }
        assert!(Instant::now() < deadline, "not counted: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        sample(
            &text,
            "gophergate_tokens_total",
            &["provider=\"openai\"", "kind=\"prompt\""]
        ) > 0.0
    );
    assert!(sample(&text, "gophergate_cost_usd_total", &["provider=\"openai\""]) > 0.0);
    assert!(
        text.contains("gophergate_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(text.contains("gophergate_log_queue_depth"), "{text}");
    assert!(text.contains("gophergate_hub_clients"), "{text}");
    // An unknown model cannot mint a label value.
    t.chat(json!({"model": "no-such-model-xyz", "messages": [{"role": "user", "content": "x"}]}))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!scrape().await.contains("no-such-model-xyz"));
    // No secret in the scrape.
    assert!(!text.contains(UPSTREAM_KEY) && !text.contains(&t.key));

    // With a token: required, compared exactly.
    let t = spawn_app_with(MockConfig::default(), |c| {
        c.metrics.token = Some("scrape-token-42".to_string().into());
    })
    .await;
    for auth in [None, Some("wrong"), Some("scrape-token-4")] {
        let mut req = t.http.get(t.url("/metrics"));
        if let Some(a) = auth {
            req = req.bearer_auth(a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{auth:?}");
    }
    let resp = t
        .http
        .get(t.url("/metrics"))
        .bearer_auth("scrape-token-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Switched off: not served.
    let t = spawn_app_with(MockConfig::default(), |c| c.metrics.enabled = false).await;
    assert_eq!(
        t.http.get(t.url("/metrics")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn no_response_holds_a_secret() {
    let (t, admin, viewer) = app_with_users().await;
    let (_, created, _) = call(
        &t,
        Method::POST,
        "/api/keys",
        Some(&admin),
        Some(json!({"name": "secretive"})),
    )
    .await;
    let client_key = created["key"].as_str().unwrap().to_string();
    call(
        &t,
        Method::PUT,
        "/api/providers/gemini/key",
        Some(&admin),
        Some(json!({"api_key": "AIza-stored-gemini-key-777"})),
    )
    .await;
    assert_eq!(t.chat(user_msg("some traffic")).await.status(), 200);
    t.logs(1).await;
    let master = std::fs::read_to_string(t.dir.path().join("encryption.key")).unwrap();
    let secrets = [
        UPSTREAM_KEY,
        "AIza-stored-gemini-key",
        &client_key[3..15],
        &t.key[3..15],
        PASSWORD,
        admin.as_str(),
        viewer.as_str(),
        &master.trim()[..16],
    ];
    let mut seen = String::new();
    for token in [&admin, &viewer] {
        for path in [
            "/api/keys",
            "/api/providers",
            "/api/models",
            "/api/users",
            "/api/system",
            "/api/auth/me",
            "/api/logs",
            "/api/usage",
        ] {
            let (_, _, text) = call(&t, Method::GET, path, Some(token), None).await;
            seen.push_str(&text);
        }
    }
    let (_, system, _) = call(&t, Method::GET, "/api/system", Some(&admin), None).await;
    assert_eq!(
        system["config"]["providers"]["openai"]["api_key"],
        "********"
    );
    assert!(system["version"].is_string() && system["uptime_seconds"].is_u64());
    for field in ["queue_depth", "written", "full_waits", "lost"] {
        assert!(system["log"][field].is_u64(), "{field}: {system}");
    }
    assert!(system.get("metrics").is_some());
    for secret in secrets {
        assert!(!seen.contains(secret), "a response holds {secret:?}");
    }
}

/// `gophergate serve` on a free port with stdout captured; returns the child, its base URL and a
/// receiver of its stdout lines.
async fn serve_capturing_stdout(
    dir: &std::path::Path,
) -> (
    std::process::Child,
    String,
    std::sync::mpsc::Receiver<String>,
) {
    let port = closed_port();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut child = gophergate(dir)
        .arg("serve")
        .env("GOPHERGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = reqwest::get(format!("{base}/health")).await
            && r.status() == 200
        {
            return (child, base, rx);
        }
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "serve did not start: {}",
                std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_first_start_creates_an_admin_once_and_prints_its_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, lines) = serve_capturing_stdout(dir.path()).await;
    let mut out = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
        let done = line.contains("users create");
        out.push(line);
        if done {
            break;
        }
    }
    let text = out.join("\n");
    let password = out
        .iter()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed: {text}"))
        .to_string();
    assert_eq!(password.len(), 20, "{text}");
    assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(text.contains("username: admin"), "{text}");
    assert!(
        text.contains("Account & password") && text.contains("gophergate users create"),
        "{text}"
    );

    let http = reqwest::Client::new();
    let login = |password: String| {
        let http = http.clone();
        let url = format!("{base}/api/auth/login");
        async move {
            http.post(url)
                .json(&json!({"username": "admin", "password": password}))
                .send()
                .await
                .unwrap()
        }
    };
    let resp = login(password.clone()).await;
    assert_eq!(resp.status(), 200);
    let me: Value = resp.json().await.unwrap();
    assert_eq!(me["user"]["role"], "admin");
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(!log.contains(&password), "the password reached the log");

    // A second start (a user exists) prints nothing and keeps the password.
    let (mut child, base, lines) = serve_capturing_stdout(dir.path()).await;
    let resp = http
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(rest.is_empty(), "printed again: {rest:?}");
}

#[tokio::test]
async fn a_provider_switched_off_in_the_dashboard_stops_serving_at_once() {
    let (t, admin, viewer) = app_with_users().await;
    assert_eq!(t.chat(user_msg("before")).await.status(), 200);
    let off = Some(json!({"enabled": false}));
    let (status, body, _) = call(
        &t,
        Method::PUT,
        "/api/providers/openai/enabled",
        Some(&viewer),
        off.clone(),
    )
    .await;
    assert_code(status, &body, 403, "admin_required");
    let (status, body, _) = call(
        &t,
        Method::PUT,
        "/api/providers/openai/enabled",
        Some(&admin),
        off,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["item"]["enabled"], false);
    assert_eq!(body["item"]["available"], false);
    let resp = t.chat(user_msg("while off")).await;
    assert_eq!(resp.status(), 404);
    let err: Value = resp.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{err}"
    );
    // Remembered across a reload of the providers, and switched back on.
    let on = Some(json!({"enabled": true}));
    let (status, _, _) = call(
        &t,
        Method::PUT,
        "/api/providers/openai/enabled",
        Some(&admin),
        on,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(t.chat(user_msg("after")).await.status(), 200);
    let (status, body, _) = call(
        &t,
        Method::PUT,
        "/api/providers/nope/enabled",
        Some(&admin),
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
}
