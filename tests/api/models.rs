//! `GET /v1/models` and `GET /v1/models/{id}`.

use crate::helpers::*;
use serde_json::Value;

async fn spawn_with_models() -> TestApp {
    spawn_app_with(Default::default(), |c| {
        c.providers.get_mut("openai").unwrap().models =
            vec!["gpt-4o-mini".into(), "gpt-4o".into(), "o3-mini".into()];
    })
    .await
}

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn lists_configured_models_in_openais_shape() {
    let t = spawn_with_models().await;
    let resp = t.get("/v1/models").await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    for m in data {
        assert!(m["id"].is_string(), "{m}");
        assert_eq!(m["object"], "model", "{m}");
        assert!(m["owned_by"].is_string(), "{m}");
    }
    for id in ["gpt-4o", "gpt-4o-mini", "o3-mini"] {
        let m = data
            .iter()
            .find(|m| m["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {body}"));
        assert_eq!(m["owned_by"], "openai");
    }
    // Listing does not call the upstream.
    assert!(t.mock.state.requests().is_empty());
}

#[tokio::test]
async fn models_of_providers_without_a_key_are_not_listed() {
    let t = spawn_app_with(Default::default(), |c| {
        c.providers.get_mut("openai").unwrap().models = vec!["gpt-4o".into()];
        c.providers.insert(
            "deepseek".into(),
            gophergate::config::ProviderConfig {
                models: vec!["deepseek-chat".into()],
                ..Default::default()
            },
        );
    })
    .await;
    let body: Value = t.get("/v1/models").await.json().await.unwrap();
    let listed = ids(&body);
    assert!(listed.contains(&"gpt-4o".to_string()), "{listed:?}");
    assert!(
        !listed.iter().any(|m| m.starts_with("deepseek")),
        "{listed:?}"
    );
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["owned_by"] != "deepseek"),
        "{body}"
    );
    // Nor can they be looked up.
    assert_eq!(t.get("/v1/models/deepseek-chat").await.status(), 404);
}

#[tokio::test]
async fn a_restricted_key_sees_only_its_models() {
    let t = spawn_with_models().await;
    let key = t.create_key("narrow", Some(vec!["gpt-4o".into()])).await;
    let resp = t
        .http
        .get(t.url("/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    // `gpt-4o`, and perhaps its `provider/gpt-4o` form; nothing else.
    let listed = ids(&body);
    assert!(listed.contains(&"gpt-4o".to_string()), "{listed:?}");
    for id in &listed {
        let bare = id.split_once('/').map_or(id.as_str(), |(_, m)| m);
        assert_eq!(bare, "gpt-4o", "{listed:?}");
    }

    // And cannot look up the others one by one.
    let resp = t
        .http
        .get(t.url("/v1/models/gpt-4o-mini"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = t
        .http
        .get(t.url("/v1/models/gpt-4o"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // The unrestricted key sees all three (and possibly more).
    let body: Value = t.get("/v1/models").await.json().await.unwrap();
    let listed = ids(&body);
    for id in ["gpt-4o", "gpt-4o-mini", "o3-mini"] {
        assert!(listed.contains(&id.to_string()), "{listed:?}");
    }
}

#[tokio::test]
async fn get_one_model() {
    let t = spawn_with_models().await;
    let resp = t.get("/v1/models/o3-mini").await;
    assert_eq!(resp.status(), 200);
    let m: Value = resp.json().await.unwrap();
    assert_eq!(m["id"], "o3-mini");
    assert_eq!(m["object"], "model");
    assert_eq!(m["owned_by"], "openai");

    let resp = t.get("/v1/models/no-such-model").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    let err = openai_error(&body);
    assert_eq!(err["code"], "model_not_found");
    assert!(err["message"].as_str().unwrap().contains("no-such-model"));
}

#[tokio::test]
async fn model_calls_are_logged_once_each() {
    let t = spawn_with_models().await;
    assert_eq!(t.get("/v1/models").await.status(), 200);
    assert_eq!(t.get("/v1/models/gpt-4o").await.status(), 200);
    assert_eq!(t.get("/v1/models/no-such-model").await.status(), 404);
    let rows = t.exact_logs(3).await;
    let statuses: Vec<u16> = rows.iter().rev().map(|r| r.row.status).collect();
    assert_eq!(statuses, vec![200, 200, 404]);
    assert!(
        rows.iter()
            .all(|r| r.row.key_name.as_deref() == Some("default"))
    );
    assert_eq!(rows[0].row.model.as_deref(), Some("no-such-model"));
    assert!(rows[0].row.error.is_some());
    assert_eq!(rows[1].row.error, None);
    assert_eq!(rows[2].row.error, None);
}
