//! Shared test harness: boots the real `App` on port 0 with a fresh SQLite database against the
//! mock provider, and helpers to create keys and read the request log.
#![allow(dead_code)]

use gophergate::{
    app::App,
    config::{Config, ProviderConfig},
    crypto,
    mock::{MockConfig, MockServer},
    store::{LogQuery, NewKey, StoredLog},
};
use std::time::Duration;

pub const UPSTREAM_KEY: &str = "sk-upstream-secret-0123456789";

pub struct TestApp {
    pub app: Option<App>,
    pub base: String,
    pub mock: MockServer,
    pub dir: tempfile::TempDir,
    /// A live client key for this app.
    pub key: String,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(MockConfig::default(), |_| {}).await
}

pub fn test_config(dir: &std::path::Path, mock: &MockServer) -> Config {
    let mut config = Config {
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.shutdown_grace = Duration::from_secs(5);
    // The real models.dev snapshot from ../shared when present; never the network.
    config.registry.url = registry_snapshot_path();
    config.providers.insert(
        "openai".into(),
        ProviderConfig {
            base_url: Some(mock.openai_base_url()),
            api_key: Some(UPSTREAM_KEY.to_string().into()),
            ..Default::default()
        },
    );
    config
}

pub fn registry_snapshot_path() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/models-dev-snapshot.json"
    )
    .to_string()
}

pub async fn spawn_app_with(
    mut mock_config: MockConfig,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    if mock_config.api_key.is_none() {
        mock_config.api_key = Some(UPSTREAM_KEY.into());
    }
    let mock = MockServer::start(mock_config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path(), &mock);
    tweak(&mut config);
    let app = App::build(config).await.unwrap();
    let base = format!("http://{}", app.addr());
    let mut t = TestApp {
        app: Some(app),
        base,
        mock,
        dir,
        key: String::new(),
        http: reqwest::Client::new(),
    };
    t.key = t.create_key("default", None).await;
    t
}

impl TestApp {
    pub fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    pub async fn create_key(&self, name: &str, models: Option<Vec<String>>) -> String {
        self.create_key_with(NewKey {
            name: name.into(),
            hash: [0; 32],
            prefix: String::new(),
            models,
            rpm: None,
            tpm: None,
            budget_usd: None,
            expires_at: None,
        })
        .await
    }

    pub async fn create_key_with(&self, mut new: NewKey) -> String {
        let key = crypto::generate_client_key();
        new.hash = crypto::hash_client_key(&key);
        new.prefix = crypto::key_prefix(&key);
        self.app().state().store.create_key(new).await.unwrap();
        key
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the log holds at least `n` rows, then returns them newest first.
    pub async fn logs(&self, n: usize) -> Vec<StoredLog> {
        let store = &self.app().state().store;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let rows = store
                .query_logs(&LogQuery {
                    limit: 10_000,
                    ..Default::default()
                })
                .await
                .unwrap();
            if rows.len() >= n {
                return rows;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} log rows, found {}",
                rows.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for exactly `n` rows, and checks no more arrive shortly after.
    pub async fn exact_logs(&self, n: usize) -> Vec<StoredLog> {
        self.logs(n).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
        let rows = self.logs(n).await;
        assert_eq!(rows.len(), n, "expected exactly {n} log rows");
        rows
    }

    pub async fn shutdown(&mut self) {
        self.app.take().unwrap().shutdown().await.unwrap();
    }
}

pub fn user_msg(text: &str) -> serde_json::Value {
    serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
}

/// Reads an SSE body into its `data:` payloads.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

impl TestApp {
    /// An authenticated GET with this app's default key.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// An authenticated POST of raw bytes as JSON to a `/v1` path.
    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// A chat request with another client key.
    pub async fn chat_as(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The URL of this app's SQLite database (valid after `shutdown` too).
    pub fn db_url(&self) -> String {
        format!("sqlite://{}/gophergate.db", self.dir.path().display())
    }
}

/// Checks `{"error": {"message", "type", "param", "code"}}` with all four keys present and a
/// non-empty message; returns the inner object.
pub fn openai_error(body: &serde_json::Value) -> &serde_json::Map<String, serde_json::Value> {
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    let err = obj["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object: {body}"));
    for k in ["message", "type", "param", "code"] {
        assert!(err.contains_key(k), "error body lacks `{k}`: {body}");
    }
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message missing: {body}"
    );
    assert!(err["type"].is_string(), "error type missing: {body}");
    err
}

/// A port nobody listens on (bound, read, released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Reads a streamed response chunk by chunk until it ends (or errors), returning the text.
pub async fn read_stream(resp: reqwest::Response) -> String {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut s = resp.bytes_stream();
    while let Some(Ok(chunk)) = s.next().await {
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).unwrap()
}

impl TestApp {
    /// Waits until the background worker has loaded the registry.
    pub async fn wait_registry(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.app().state().registry.snapshot().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the registry never loaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
