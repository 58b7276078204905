//! The acceptance path on PostgreSQL (`database.url = postgres://…`): two real `App`s on one
//! database, as behind a load balancer, plus the CLI as a third process. Each test has a database
//! of its own on the server named by `GOPHERGATE_TEST_POSTGRES_URL` (scripts/test.sh starts one);
//! without it these tests say so and pass (under CI they fail).

#[path = "../support/pg.rs"]
mod pg;

use crate::{
    cli::gophergate,
    dashboard_api::{add_user, api_get, token_for},
    helpers::*,
};
use gophergate::{app::App, mock::MockConfig, store::UserRole};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Every instance of a deployment shares the encryption key (sessions and stored provider keys
/// depend on it).
const SHARED_KEY: &str = "8f3a61c2d94b07e5a1c3f5e7092b4d6f8a0c2e4f6a8b0d2f4e6c8a0b2d4f6e8a";

#[tokio::test]
async fn two_instances_share_keys_logs_and_sessions_on_postgres() {
    let Some(db) = pg::fresh_database("e2e_two_instances").await else {
        return;
    };
    let url = db.url.clone();
    let shared = move |c: &mut gophergate::config::Config| {
        c.database.url = Some(url.clone().into());
        c.encryption_key = Some(SHARED_KEY.to_string().into());
    };
    let mut a = spawn_app_with(MockConfig::default(), shared.clone()).await;
    let dir_b = tempfile::tempdir().unwrap();
    let mut config_b = test_config(dir_b.path(), &a.mock);
    shared(&mut config_b);
    let b = App::build(config_b).await.unwrap();
    let base_b = format!("http://{}", b.addr());

    // A key made through instance A works on B at once; a chat on each is logged once.
    let resp = a.chat(user_msg("via a")).await;
    assert_eq!(resp.status(), 200);
    let rid_a = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let mut streamed = user_msg("via b");
    streamed["stream"] = json!(true);
    let resp = a
        .http
        .post(format!("{base_b}/v1/chat/completions"))
        .bearer_auth(&a.key)
        .json(&streamed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rid_b = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(read_stream(resp).await.ends_with("data: [DONE]\n\n"));
    let rows = a.exact_logs(2).await;
    let by_rid = |rid: &str| rows.iter().find(|r| r.row.request_id == rid).unwrap();
    let (row_a, row_b) = (&by_rid(&rid_a).row, &by_rid(&rid_b).row);
    assert_eq!((row_a.status, row_a.stream), (200, false));
    assert_eq!((row_b.status, row_b.stream), (200, true));
    for row in [row_a, row_b] {
        assert_eq!(row.key_name.as_deref(), Some("default"));
        assert_eq!(row.provider.as_deref(), Some("openai"));
        assert_eq!(row.model.as_deref(), Some("gpt-4o-mini"));
        assert!(row.usage.is_some_and(|u| u.prompt > 0));
        assert!(row.cost_usd.is_some());
        assert_eq!(row.error, None);
    }
    assert!(row_b.ttft_ms.is_some());
    assert_eq!(row_a.ttft_ms, None);

    // /api/logs: a session from A is honoured by B (same encryption key), both rows listed.
    add_user(&a, "ops", UserRole::Viewer).await;
    let token = token_for(&a, "ops").await;
    let resp = a
        .http
        .get(format!("{base_b}/api/logs?limit=10"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    for (item, stored) in items.iter().zip(&rows) {
        assert_eq!(item["id"], stored.id);
        assert_eq!(item["request_id"], stored.row.request_id);
        assert_eq!(item["status"], 200);
        assert_eq!(item["key_name"], "default");
        assert_eq!(item["upstream_model"], "gpt-4o-mini-2024-07-18");
        let created = item["created_at"].as_str().unwrap();
        assert!(created.ends_with('Z') && created.len() == 24, "{created}");
    }
    let (status, usage, _) = api_get(&a, "/api/usage?group_by=key", &token).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["items"][0]["requests"], 2, "{usage}");

    // The CLI, a third process on the same database, revokes the key: both instances refuse it
    // within the 250 ms poll (plus slack for a loaded machine).
    let revoke = gophergate(a.dir.path())
        .env("GOPHERGATE_DATABASE__URL", &db.url)
        .args(["keys", "revoke", "default"])
        .output()
        .unwrap();
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let started = Instant::now();
    for base in [a.base.clone(), base_b.clone()] {
        loop {
            let status = a
                .http
                .get(format!("{base}/v1/models"))
                .bearer_auth(&a.key)
                .send()
                .await
                .unwrap()
                .status();
            if status == 401 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{base} still accepts a revoked key"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    b.shutdown().await.unwrap();
    a.shutdown().await;
    db.drop_database().await;
}

#[test]
fn serve_with_an_unreachable_postgres_stops_with_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let out = gophergate(dir.path())
        .env(
            "GOPHERGATE_DATABASE__URL",
            format!("postgres://gg:topsecret-pw@127.0.0.1:{port}/gophergate"),
        )
        .env("GOPHERGATE_SERVER__LISTEN", "127.0.0.1:0")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains(&format!(
            "could not connect to PostgreSQL at gg@127.0.0.1:{port}/gophergate"
        )),
        "{err}"
    );
    assert!(!err.contains("topsecret-pw"), "{err}");
}
