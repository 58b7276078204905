//! The real `gophergate` binary under load: SIGTERM mid-load ends within the grace period plus a
//! small bound and loses no row; SIGKILL mid-load leaves an intact database the gateway starts on
//! again. Every client request gets exactly one outcome: an answer (a complete one, a clean error,
//! or a stream ended by an error event) or no connection at all (refused, or closed unanswered
//! once the listener was gone); the log has one row per answer, with the status the client saw.

use crate::helpers::*;
use gophergate::mock::{MockConfig, MockServer};
use serde_json::{Value, json};
use sqlx::Row;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const GRACE: Duration = Duration::from_secs(2);
/// Requests in one load run, started 8 ms apart (about 2.4 s of arrivals).
const LOAD: usize = 300;

struct Gateway {
    child: Child,
    base: String,
    dir: PathBuf,
}

fn gophergate(dir: &Path, mock: &MockServer) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gophergate"));
    cmd.env_clear()
        .env("GOPHERGATE_DATA_DIR", dir)
        .env("GOPHERGATE_REGISTRY__URL", registry_snapshot_path())
        .env(
            "GOPHERGATE_SERVER__SHUTDOWN_GRACE",
            format!("{}s", GRACE.as_secs()),
        )
        .env("OPENAI_BASE_URL", mock.openai_base_url())
        .env("OPENAI_API_KEY", UPSTREAM_KEY)
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

fn serve_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
}

/// Starts `gophergate serve` on a free port and waits for `/health`.
async fn start(dir: &Path, mock: &MockServer) -> Gateway {
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let port = closed_port();
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut child = gophergate(dir, mock)
            .arg("serve")
            .env("GOPHERGATE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: another one
            }
            if let Ok(r) = http.get(format!("{base}/health")).send().await
                && r.status() == 200
            {
                return Gateway {
                    child,
                    base,
                    dir: dir.to_path_buf(),
                };
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("gateway did not start: {}", serve_log(dir));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    panic!("gateway would not start: {}", serve_log(dir));
}

fn create_key(dir: &Path, mock: &MockServer) -> String {
    let o = gophergate(dir, mock)
        .args(["keys", "create", "--name", "t"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

impl Gateway {
    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} failed");
    }

    /// Waits for the process to exit; returns when it did. Fails (and kills it) past `limit`.
    async fn exit_within(&mut self, limit: Duration) -> (Instant, std::process::ExitStatus) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (Instant::now(), status);
            }
            if started.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "gateway still running {limit:?} after the signal: {}",
                    serve_log(&self.dir)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What one request came to, as the client saw it.
#[derive(Debug)]
enum Outcome {
    /// A status line arrived; `end` says how the body ended.
    Answered { status: u16, end: End },
    /// Connection refused: the listener was already closed.
    Refused,
    /// Connected but closed with no answer at all (left in the backlog when the listener closed).
    Unanswered(String),
}

#[derive(Debug, PartialEq)]
enum End {
    /// A JSON body (an answer or an OpenAI error).
    Json,
    /// An SSE stream that ended with `[DONE]`.
    Done,
    /// An SSE stream that ended with an error event (ended by the stop).
    ErrorEvent(String),
    /// The body broke off: never acceptable.
    Broken(String),
}

/// The load mix: quick and slow answers and streams, some outliving the grace period.
fn load_request(i: usize) -> Value {
    let (text, stream) = match i % 8 {
        0 => (format!("hello {i}"), false),
        1 => (format!("[[mock:latency=300]] slow {i}"), false),
        2 => (format!("stream {i}"), true),
        3 => (
            format!("[[mock:stall=40]] a stream of some twenty words, {i}, to read"),
            true,
        ),
        // Outlives the grace period: ended by the stop with an error event.
        4 => (
            format!("[[mock:stall=400]] a long stream that takes seconds, {i}"),
            true,
        ),
        // Outlives the grace period: a 503 `shutting_down`.
        5 => (format!("[[mock:latency=8000]] very slow {i}"), false),
        6 => (format!("[[mock:latency=1200]] slowish {i}"), false),
        _ => (format!("[[mock:stall=20]] short stream {i}"), true),
    };
    let mut req = user_msg(&text);
    if stream {
        req["stream"] = json!(true);
    }
    req
}

async fn send(http: &reqwest::Client, base: &str, key: &str, id: &str, body: Value) -> Outcome {
    let sent = http
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-request-id", id)
        .json(&body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Refused,
        Err(e) => return Outcome::Unanswered(format!("{e:?}")),
    };
    let status = resp.status().as_u16();
    let is_sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let end = match resp.bytes().await {
        Err(e) => End::Broken(format!("{e:?}")),
        Ok(b) if !is_sse => match serde_json::from_slice::<Value>(&b) {
            Ok(_) => End::Json,
            Err(e) => End::Broken(format!("not JSON ({e}): {}", String::from_utf8_lossy(&b))),
        },
        Ok(b) => {
            let text = String::from_utf8_lossy(&b).to_string();
            let data = sse_data(&text);
            match data.last().map(String::as_str) {
                Some("[DONE]") => End::Done,
                Some(last) => match serde_json::from_str::<Value>(last) {
                    Ok(v) if v["error"]["code"].is_string() => {
                        End::ErrorEvent(v["error"]["code"].as_str().unwrap_or("").to_string())
                    }
                    _ => End::Broken(format!("stream ended mid-way: {text}")),
                },
                None => End::Broken(format!("empty stream: {text}")),
            }
        }
    };
    Outcome::Answered { status, end }
}

/// Starts `LOAD` requests 8 ms apart; calls `stop` once the upstream has seen `stop_after` of
/// them; returns every outcome by request id.
async fn run_load(
    gw: &Gateway,
    key: &str,
    mock: &MockServer,
    stop_after: u64,
    stop: impl FnOnce(),
) -> BTreeMap<String, Outcome> {
    // One connection per request: no pooled connection racing the server closing it.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..LOAD)
        .map(|i| {
            let (http, base, key) = (http.clone(), gw.base.clone(), key.to_string());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(8 * i as u64)).await;
                let id = format!("load-{i}");
                let outcome = send(&http, &base, &key, &id, load_request(i)).await;
                (id, outcome)
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while mock.state.stats().received < stop_after {
        assert!(Instant::now() < deadline, "the load never reached the mock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop();
    let mut outcomes = BTreeMap::new();
    for task in tasks {
        let (id, outcome) = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a client request hung")
            .unwrap();
        outcomes.insert(id, outcome);
    }
    outcomes
}

async fn open_db(dir: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite://{}/gophergate.db", dir.display());
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap()
}

/// Every row: request id → (status, error).
async fn rows(db: &sqlx::SqlitePool) -> Vec<(String, u16, Option<String>)> {
    sqlx::query("SELECT request_id, status, error FROM request_logs")
        .fetch_all(db)
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get::<String, _>(0),
                r.get::<i64, _>(1) as u16,
                r.get::<Option<String>, _>(2),
            )
        })
        .collect()
}

/// Requests counted in the usage rollups: written in the same transactions as the rows, so equal
/// to the row count unless a crash split a transaction.
async fn rolled_up(db: &sqlx::SqlitePool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(requests), 0) FROM usage_rollups")
        .fetch_one(db)
        .await
        .unwrap()
}

async fn integrity(db: &sqlx::SqlitePool) -> String {
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_ends_within_the_grace_period_and_loses_no_row() {
    let mock = MockServer::start(MockConfig {
        api_key: Some(UPSTREAM_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), &mock);
    let mut gw = start(dir.path(), &mock).await;

    let mut signalled = None;
    let outcomes = run_load(&gw, &key, &mock, 120, || {
        gw.signal("-TERM");
        signalled = Some(Instant::now());
    })
    .await;
    let (exited, status) = gw.exit_within(GRACE + Duration::from_secs(10)).await;
    let exit_after = exited - signalled.unwrap();
    eprintln!("SIGTERM → exit in {exit_after:?} (grace {GRACE:?})");
    assert!(
        status.success(),
        "exit {status:?}: {}",
        serve_log(dir.path())
    );
    assert!(
        exit_after < GRACE + Duration::from_secs(3),
        "took {exit_after:?} to stop: {}",
        serve_log(dir.path())
    );

    // Every request has exactly one outcome, and none broke off mid-answer.
    assert_eq!(outcomes.len(), LOAD);
    let mut answered = BTreeMap::new();
    let (mut refused, mut unanswered) = (0, 0);
    for (id, o) in &outcomes {
        match o {
            Outcome::Answered { status, end } => {
                assert!(!matches!(end, End::Broken(_)), "{id}: {o:?}");
                answered.insert(id.clone(), *status);
            }
            Outcome::Refused => refused += 1,
            Outcome::Unanswered(e) => {
                if unanswered == 0 {
                    eprintln!("closed unanswered, e.g. {id}: {e}");
                }
                unanswered += 1;
            }
        }
    }
    let ended_by_stop = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Answered { end: End::ErrorEvent(c), .. } if c == "shutting_down"))
        .count();
    let shutting_down_503 = answered.values().filter(|s| **s == 503).count();
    eprintln!(
        "{} answered ({ended_by_stop} streams ended by the stop, {shutting_down_503} × 503), \
         {refused} refused, {unanswered} closed unanswered",
        answered.len()
    );
    // The stop came mid-load: some requests were answered, later ones were turned away, and
    // work still running at the end of the grace period was ended, not abandoned.
    assert!(answered.len() >= 120, "{}", answered.len());
    assert!(refused + unanswered > 0, "the stop came after the load");
    assert!(ended_by_stop + shutting_down_503 > 0);

    // Zero rows lost: one row per answer, with the status the client saw, and no other row.
    let db = open_db(dir.path()).await;
    assert_eq!(integrity(&db).await, "ok");
    let rows = rows(&db).await;
    let mut logged = BTreeMap::new();
    for (id, status, error) in &rows {
        assert!(
            logged.insert(id.clone(), *status).is_none(),
            "two rows for {id}"
        );
        if answered.get(id) == Some(&200) && error.is_some() {
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("shutting_down")),
                "{id}: {error:?}"
            );
        }
    }
    assert_eq!(rows.len(), answered.len(), "rows vs answers");
    assert_eq!(logged, answered);
    assert_eq!(rolled_up(&db).await, rows.len() as i64, "rollups vs rows");
    assert!(
        serve_log(dir.path()).contains("lost=0"),
        "{}",
        serve_log(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_leaves_an_intact_database_and_the_gateway_starts_again() {
    let mock = MockServer::start(MockConfig {
        api_key: Some(UPSTREAM_KEY.into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = create_key(dir.path(), &mock);
    let mut gw = start(dir.path(), &mock).await;

    let outcomes = run_load(&gw, &key, &mock, 120, || gw.signal("-KILL")).await;
    let (_, status) = gw.exit_within(Duration::from_secs(10)).await;
    assert!(!status.success());
    assert_eq!(outcomes.len(), LOAD);
    let answered = outcomes
        .values()
        .filter(|o| matches!(o, Outcome::Answered { .. }))
        .count();
    assert!(answered > 0);

    {
        let db = open_db(dir.path()).await;
        assert_eq!(integrity(&db).await, "ok");
        // Rows still queued in memory die with the process; none can exist for an unanswered
        // request, and the rollups agree with the rows that were written.
        let rows = rows(&db).await;
        assert_eq!(rolled_up(&db).await, rows.len() as i64, "rollups vs rows");
        for (id, ..) in &rows {
            assert!(
                matches!(outcomes.get(id), Some(Outcome::Answered { .. })),
                "row for {id}, which got no answer: {:?}",
                outcomes.get(id)
            );
        }
        db.close().await;
    }

    // The same data dir serves again, and the new request is logged.
    let mut gw = start(dir.path(), &mock).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&key)
        .header("x-request-id", "after-the-crash")
        .json(&user_msg("hello again"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    gw.signal("-TERM");
    let (_, status) = gw.exit_within(GRACE + Duration::from_secs(10)).await;
    assert!(status.success(), "{}", serve_log(dir.path()));
    let db = open_db(dir.path()).await;
    assert_eq!(integrity(&db).await, "ok");
    let rows = rows(&db).await;
    assert!(
        rows.iter()
            .any(|(id, status, _)| id == "after-the-crash" && *status == 200),
        "the request after the restart was not logged"
    );
}
