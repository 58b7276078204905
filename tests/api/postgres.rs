//! The acceptance path on PostgreSQL (`database.url = postgres://…`): two real `App`s on one
//! database, as behind a load balancer, plus the CLI as a third process. Each test has a database
//! of its own on the server named by `GOPHERGATE_TEST_POSTGRES_URL` (scripts/test.sh starts one);
//! without it these tests say so and pass (under CI they fail).

#[path = "../support/pg.rs"]
pub mod pg;

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

/// An install that grew up on SQLite, moved with `gophergate db migrate`, then served from
/// PostgreSQL: keys, users, stored provider keys, settings, the log and its usage all carry over.
#[tokio::test]
async fn db_migrate_moves_a_sqlite_install_to_postgres() {
    let Some(db) = pg::fresh_database("e2e_db_migrate").await else {
        return;
    };
    // The provider key lives only in the database (set from the dashboard, encrypted).
    let no_config_key = |c: &mut gophergate::config::Config| {
        if let Some(p) = c.providers.get_mut("openai") {
            p.api_key = None;
        }
    };
    let mut old = spawn_app_with(MockConfig::default(), no_config_key).await;
    add_user(&old, "ops", UserRole::Admin).await;
    let token = token_for(&old, "ops").await;
    let resp = old
        .http
        .put(old.url("/api/providers/openai/key"))
        .bearer_auth(&token)
        .json(&json!({"api_key": UPSTREAM_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let store = old.app().state().store.clone();
    store.set_provider_enabled("xai", false).await.unwrap();
    let gone = store
        .create_user("temp", "h", UserRole::Viewer)
        .await
        .unwrap();
    store.delete_user("temp").await.unwrap();
    let revoked = old.create_key("old-key", None).await;
    store.revoke_key("old-key").await.unwrap();
    assert_eq!(old.chat(user_msg("one")).await.status(), 200);
    let mut streamed = user_msg("two");
    streamed["stream"] = json!(true);
    read_stream(old.chat(streamed).await).await;
    let unknown =
        json!({"model": "no-such-model-x", "messages": [{"role": "user", "content": "x"}]});
    assert_eq!(old.chat(unknown).await.status(), 404);
    old.exact_logs(3).await;
    let (_, logs_before, _) = api_get(&old, "/api/logs?limit=50", &token).await;
    let (_, usage_before, _) = api_get(&old, "/api/usage?group_by=model", &token).await;
    old.shutdown().await;

    let migrate = |to: &str| {
        gophergate(old.dir.path())
            .args(["db", "migrate", "--from", &old.db_url(), "--to", to])
            .output()
            .unwrap()
    };
    let out = migrate(&db.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("copied into "), "{stdout}");
    assert!(
        stdout.contains(": users 1, keys 2, provider keys 1, provider settings 1, log rows 3, "),
        "{stdout}"
    );
    assert!(!stdout.contains("gophergate:gophergate@"), "{stdout}");
    // A second run refuses to mix installs, in one sentence.
    let again = migrate(&db.url);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("already holds GopherGate data") && err.lines().count() == 1,
        "{err}"
    );

    // The same data_dir (so the same encryption key), now on PostgreSQL.
    let mut config = test_config(old.dir.path(), &old.mock);
    no_config_key(&mut config);
    config.database.url = Some(db.url.clone().into());
    let app = App::build(config).await.unwrap();
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(&token);
    // The session signed before the move still holds; the log and usage read the same.
    let logs_after: Value = get("/api/logs?limit=50")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(logs_after, logs_before);
    let usage_after: Value = get("/api/usage?group_by=model")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage_after["items"], usage_before["items"]);
    // The client key works (with the stored, still decryptable provider key); the revoked one not.
    let chat = |key: &str| {
        http.post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&user_msg("after the move"))
            .send()
    };
    assert_eq!(chat(&old.key).await.unwrap().status(), 200);
    assert_eq!(chat(&revoked).await.unwrap().status(), 401);
    let pg_store = app.state().store.clone();
    assert_eq!(pg_store.provider_enabled("xai").await.unwrap(), Some(false));
    // Ids go on past the old ones, the deleted user's included.
    let newcomer = pg_store
        .create_user("newcomer", "h", UserRole::Viewer)
        .await
        .unwrap();
    assert!(newcomer.id > gone.id);
    let newest_before = logs_before["items"][0]["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = pg_store
            .query_logs(&gophergate::store::LogQuery {
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        if rows[0].id > newest_before {
            break;
        }
        assert!(Instant::now() < deadline, "the new row never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.shutdown().await.unwrap();
    db.drop_database().await;
}
