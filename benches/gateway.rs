//! `cargo bench --bench gateway`: what the gateway adds on top of an upstream, measured against
//! the bundled mock provider on one machine (see BENCHMARKS.md for the method and the results).
//!
//! The real binaries run as child processes: `gophergate-mock` (one per mock latency) and
//! `gophergate serve` on a temporary data dir (request logging on, registry from a local file, one
//! dashboard WebSocket client signed in and draining the live feed). This process is the load
//! generator: closed-loop workers, one persistent HTTP/1.1 connection each, drive the mock directly
//! and through the gateway in alternating slices of the same cell, so both paths see the same
//! machine noise. Then three extra scenarios: many slow streams at once (RSS), a long run (RSS
//! growth), and start-up to first answer. Prints tables; writes JSON (`target/bench/gateway.json`).
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

#[path = "support/bare_proxy.rs"]
mod bare_proxy;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use futures::{SinkExt, StreamExt, future::join_all};
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::{net::TcpStream, process::Command};

const MOCK_KEY: &str = "sk-bench-mock";
const BENCH_USER: &str = "bench";
const CHAT_PATH: &str = "/v1/chat/completions";

#[derive(Parser, Debug, Clone)]
#[command(about = "Gateway overhead against the mock provider (see BENCHMARKS.md).")]
struct Opts {
    /// A short smoke run: short slices, fewer slow streams, a shorter long run.
    #[arg(long)]
    quick: bool,
    /// Measured seconds per path and cell (split into alternating one-second slices).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Mock latencies to measure, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "0,60")]
    latencies: Vec<u64>,
    /// Concurrency levels (workers, one connection each).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    concurrency: Vec<usize>,
    /// Gap the mock leaves between stream chunks, in milliseconds (`[[mock:stall=N]]`).
    #[arg(long, default_value_t = 2)]
    chunk_gap_ms: u64,
    /// Slow streams held open at once in the memory scenario.
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Requests in the RSS-growth scenario.
    #[arg(long, default_value_t = 100_000)]
    requests: usize,
    /// Warm starts timed in the start-up scenario.
    #[arg(long, default_value_t = 5)]
    starts: usize,
    /// Start each slice's workers together (in lockstep bursts with a slow mock) instead of
    /// spreading their first requests over one mock latency.
    #[arg(long)]
    burst: bool,
    /// Skip the matrix (only the extra scenarios).
    #[arg(long)]
    no_matrix: bool,
    /// Skip the extra scenarios (only the matrix).
    #[arg(long)]
    no_extras: bool,
    /// Measure nginx (from PATH, no access log) as a plain reverse proxy in the gateway's place:
    /// the floor two extra loopback hops set on this machine (BENCHMARKS.md). Matrix only.
    #[arg(long)]
    nginx: bool,
    /// Measure a reverse proxy made of hyper's server and hyper-util's pooled client alone (this
    /// binary, re-run) in the gateway's place: the floor of the stack the gateway is built on.
    /// The matrix and the memory scenarios (not start-up).
    #[arg(long, conflicts_with = "nginx")]
    bare_hyper: bool,
    /// Where to write the JSON (default: target/bench/gateway.json).
    #[arg(long)]
    out: Option<PathBuf>,
    /// models.dev snapshot the gateway loads (default: ../shared/data/models-dev-snapshot.json).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Another `gophergate` binary to measure (A/B against a saved build); default: this build's.
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Opts {
    /// What stands in the gateway's place: "gateway", "nginx" or "bare-hyper".
    fn through(&self) -> &'static str {
        if self.nginx {
            "nginx"
        } else if self.bare_hyper {
            "bare-hyper"
        } else {
            "gateway"
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(bare_proxy::BARE_PROXY_ARG) {
        let parsed = (|| {
            anyhow::Ok((
                args.get(2).context("listen")?.parse()?,
                args.get(3).context("upstream")?.parse()?,
            ))
        })();
        let result = parsed.and_then(|(listen, upstream)| {
            bare_proxy::serve(listen, upstream, format!("Bearer {MOCK_KEY}"))
        });
        if let Err(e) = result {
            eprintln!("bare proxy failed: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let mut opts = Opts::parse();
    if opts.quick {
        opts.duration = opts.duration.min(1.0);
        opts.streams = opts.streams.min(200);
        opts.requests = opts.requests.min(10_000);
        opts.starts = opts.starts.min(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Err(e) = rt.block_on(run(opts)) {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

struct Proc {
    name: String,
    child: tokio::process::Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Resident set size in MiB, from /proc.
    fn rss_mib(&self) -> f64 {
        rss_mib(self.pid())
    }

    /// SIGTERM (a graceful stop: the gateway drains and writes its queued log rows), then kill.
    async fn stop(mut self) {
        let pid = self.pid().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("{} did not stop within 15 s; killing it", self.name);
            let _ = self.child.kill().await;
        }
    }
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// A process and its children (nginx's workers), from /proc.
fn tree(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"));
    pids.extend(
        children
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok()),
    );
    pids
}

/// CPU time (user + system) a process and its children have used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    tree(pid).into_iter().map(cpu_time_of).sum()
}

/// CPU time (user + system) one process has used, from /proc (clock ticks of 10 ms).
fn cpu_time_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Env {
    root: tempfile::TempDir,
    data_dir: PathBuf,
    registry: PathBuf,
    gateway_bin: PathBuf,
}

impl Env {
    /// The gateway's command line, with nothing from our environment but PATH (no stray provider
    /// keys or config file), logging at its default level into a file.
    fn gophergate(&self, data_dir: &Path, args: &[&str], mock: SocketAddr) -> Command {
        let mut cmd = Command::new(&self.gateway_bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GOPHERGATE_DATA_DIR", data_dir)
            .env("GOPHERGATE_REGISTRY__URL", &self.registry)
            .env("OPENAI_API_KEY", MOCK_KEY)
            .env("OPENAI_BASE_URL", format!("http://{mock}/v1"))
            .current_dir(data_dir)
            .kill_on_drop(true);
        cmd
    }

    fn spawn_gateway(
        &self,
        data_dir: &Path,
        listen: SocketAddr,
        mock: SocketAddr,
        log_name: &str,
    ) -> anyhow::Result<Proc> {
        let log = std::fs::File::create(self.root.path().join(log_name))?;
        let child = self
            .gophergate(data_dir, &["serve"], mock)
            .env("GOPHERGATE_SERVER__LISTEN", listen.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Proc {
            name: "gophergate".into(),
            child,
        })
    }

    /// `gophergate keys create` on a data dir; returns the key.
    async fn create_key(&self, data_dir: &Path, mock: SocketAddr) -> anyhow::Result<String> {
        let out = self
            .gophergate(data_dir, &["keys", "create", "--name", "bench"], mock)
            .output()
            .await?;
        anyhow::ensure!(
            out.status.success(),
            "keys create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    }

    async fn create_user(&self, password: &str, mock: SocketAddr) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut child = self
            .gophergate(
                &self.data_dir,
                &[
                    "users",
                    "create",
                    "--username",
                    BENCH_USER,
                    "--role",
                    "admin",
                    "--password-stdin",
                ],
                mock,
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(password.as_bytes()).await?;
        drop(stdin);
        anyhow::ensure!(child.wait().await?.success(), "users create failed");
        Ok(())
    }
}

async fn spawn_mock(latency_ms: u64) -> anyhow::Result<(Proc, SocketAddr)> {
    let addr = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gophergate-mock"))
        .args([
            "--listen",
            &addr.to_string(),
            "--api-key",
            MOCK_KEY,
            "--latency-ms",
            &latency_ms.to_string(),
            "--dialect",
            "openai",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let proc = Proc {
        name: format!("gophergate-mock ({latency_ms} ms)"),
        child,
    };
    let auth = format!("Bearer {MOCK_KEY}");
    until_ok(addr, "/v1/models", Some(&auth), Duration::from_secs(30))
        .await
        .map_err(|_| anyhow::anyhow!("the mock did not come up"))?;
    Ok((proc, addr))
}

async fn wait_until<F, Fut>(limit: Duration, mut ready: F) -> Result<Duration, ()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if ready().await {
            return Ok(start.elapsed());
        }
        // Short: the start-up scenario measures with this loop.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Err(())
}

/// Polls `GET path` until it answers 200 (a server that is up).
async fn until_ok(
    addr: SocketAddr,
    path: &str,
    auth: Option<&str>,
    limit: Duration,
) -> Result<Duration, ()> {
    wait_until(limit, || async {
        matches!(
            http_once(addr, Method::GET, path, auth, None).await,
            Ok((StatusCode::OK, _))
        )
    })
    .await
}

/// What the matrix measures against the direct path: the gateway, or a floor (nginx, or hyper's
/// server and client alone).
enum Through {
    Gateway(Gateway),
    Proxy(Proxy),
}

impl Through {
    /// The gateway, or the floor the options ask for, in front of `mock`.
    async fn start(
        opts: &Opts,
        env: &Env,
        mock: SocketAddr,
        password: &str,
        log: &str,
    ) -> anyhow::Result<Self> {
        Ok(if opts.nginx {
            Self::Proxy(spawn_nginx(env, mock).await?)
        } else if opts.bare_hyper {
            Self::Proxy(spawn_bare(mock).await?)
        } else {
            Self::Gateway(Gateway::start(env, mock, password, log).await?)
        })
    }

    fn proc(&self) -> &Proc {
        match self {
            Self::Gateway(g) => &g.proc,
            Self::Proxy(p) => &p.proc,
        }
    }

    fn pid(&self) -> u32 {
        self.proc().pid()
    }

    fn target(&self, key: &str) -> Target {
        match self {
            Self::Gateway(g) => g.target(key),
            // A proxy puts the mock's key on every request itself.
            Self::Proxy(p) => Target::new(p.addr, "unused"),
        }
    }

    async fn stop(self) {
        match self {
            Self::Gateway(g) => g.stop().await,
            Self::Proxy(p) => p.proc.stop().await,
        }
    }
}

/// A plain reverse proxy in the gateway's place (nginx, or the bare hyper proxy).
struct Proxy {
    proc: Proc,
    addr: SocketAddr,
}

impl Proxy {
    /// The proxy started as `child`, once it answers on `addr`.
    async fn up(
        name: &str,
        child: tokio::process::Child,
        addr: SocketAddr,
        failed: &str,
    ) -> anyhow::Result<Self> {
        let proc = Proc {
            name: name.into(),
            child,
        };
        until_ok(addr, "/v1/models", None, Duration::from_secs(10))
            .await
            .map_err(|_| anyhow::anyhow!("{failed}"))?;
        Ok(Self { proc, addr })
    }
}

/// This binary as the bare hyper proxy (`bare_proxy`) in front of the mock.
async fn spawn_bare(mock: SocketAddr) -> anyhow::Result<Proxy> {
    let addr = free_port();
    let child = Command::new(std::env::current_exe()?)
        .args([
            bare_proxy::BARE_PROXY_ARG,
            &addr.to_string(),
            &mock.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Proxy::up(
        "bare hyper proxy",
        child,
        addr,
        "the bare hyper proxy did not come up",
    )
    .await
}

/// nginx as a bare reverse proxy to the mock: two workers (one per core here), kept-alive
/// upstream connections, no buffering (streams pass through as they come), no access log.
async fn spawn_nginx(env: &Env, mock: SocketAddr) -> anyhow::Result<Proxy> {
    let addr = free_port();
    let dir = env.root.path().join(format!("nginx-{}", addr.port()));
    std::fs::create_dir_all(&dir)?;
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process on; worker_processes 2; pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  access_log off;
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  upstream mock {{ server {mock}; keepalive 1024; keepalive_requests 1000000; }}
  server {{
    listen {addr};
    keepalive_requests 1000000;
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_set_header Authorization \"Bearer {MOCK_KEY}\";
      proxy_buffering off;
      proxy_request_buffering off;
    }}
  }}
}}
"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(&dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("could not start nginx (is it installed?): {e}"))?;
    Proxy::up(
        "nginx",
        child,
        addr,
        &format!("nginx did not come up; see {d}/error.log"),
    )
    .await
}

/// A gateway that is up, with a signed-in dashboard client draining the live feed.
struct Gateway {
    proc: Proc,
    addr: SocketAddr,
    hub: Arc<HubCounts>,
    hub_task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct HubCounts {
    messages: AtomicU64,
    request_logs: AtomicU64,
    lagged: AtomicU64,
}

impl Gateway {
    async fn start(env: &Env, mock: SocketAddr, password: &str, log: &str) -> anyhow::Result<Self> {
        let addr = free_port();
        let proc = env.spawn_gateway(&env.data_dir, addr, mock, log)?;
        until_ok(addr, "/health", None, Duration::from_secs(30))
            .await
            .map_err(|_| anyhow::anyhow!("the gateway did not come up; see its log {log}"))?;
        let hub = Arc::new(HubCounts::default());
        let hub_task = tokio::spawn(drain_hub(addr, login(addr, password).await?, hub.clone()));
        // The live feed is subscribed once its first message (the latest metrics) arrives.
        wait_until(Duration::from_secs(10), || async {
            hub.messages.load(Ordering::Relaxed) > 0
        })
        .await
        .map_err(|_| anyhow::anyhow!("the dashboard live feed did not answer"))?;
        Ok(Self {
            proc,
            addr,
            hub,
            hub_task,
        })
    }

    fn target(&self, key: &str) -> Target {
        Target::new(self.addr, key)
    }

    async fn stop(self) {
        self.hub_task.abort();
        self.proc.stop().await;
    }
}

async fn login(addr: SocketAddr, password: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"username": BENCH_USER, "password": password}).to_string();
    let (status, body) = http_once(addr, Method::POST, "/api/auth/login", None, Some(body))
        .await
        .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(status == StatusCode::OK, "sign-in failed: {status}");
    let v: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(v["token"].as_str().unwrap_or_default().to_string())
}

async fn drain_hub(addr: SocketAddr, token: String, counts: Arc<HubCounts>) {
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let Ok(mut req) = format!("ws://{addr}/api/ws").into_client_request() else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        req.headers_mut().insert(AUTHORIZATION, v);
    }
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(req).await else {
        eprintln!("could not open the dashboard live feed");
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) => {
                counts.messages.fetch_add(1, Ordering::Relaxed);
                if t.contains("\"type\":\"request_log\"") {
                    counts.request_logs.fetch_add(1, Ordering::Relaxed);
                } else if t.contains("\"type\":\"lagged\"") {
                    counts.lagged.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Ping(p) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The load generator

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (tx, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // Ends when the sender is dropped or the peer closes.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(tx)
}

/// One request on a fresh connection (set-up, sign-in, probes).
async fn http_once(
    addr: SocketAddr,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<String>,
) -> Result<(StatusCode, Bytes), String> {
    let mut tx = connect(addr).await?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, addr.to_string());
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a);
    }
    if body.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| e.to_string())?;
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    auth: HeaderValue,
}

impl Target {
    fn new(addr: SocketAddr, key: &str) -> Self {
        Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).unwrap(),
            auth: HeaderValue::from_str(&format!("Bearer {key}")).unwrap(),
        }
    }
}

/// Raw samples in nanoseconds.
#[derive(Default)]
struct Samples {
    latency: Vec<u64>,
    ttft: Vec<u64>,
    gaps: Vec<u64>,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Wall time the samples were taken over (sum of slices).
    elapsed: Duration,
}

impl Samples {
    fn error(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }

    fn merge(&mut self, o: Samples) {
        self.latency.extend(o.latency);
        self.ttft.extend(o.ttft);
        self.gaps.extend(o.gaps);
        self.ok += o.ok;
        self.errors += o.errors;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

/// Sends one chat completion on `tx` and reads the whole answer. Latency is from just before the
/// request is written to the last byte (streams: to `data: [DONE]`); for streams also the first
/// chunk (TTFT) and the gaps between chunks as they arrive.
async fn one_request(
    tx: &mut Sender,
    target: &Target,
    body: &Bytes,
    stream: bool,
    s: &mut Samples,
) -> Result<(), String> {
    let req = Request::post(CHAT_PATH)
        .header(HOST, target.host.clone())
        .header(AUTHORIZATION, target.auth.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .body(Full::new(body.clone()))
        .map_err(|e| e.to_string())?;
    tx.ready().await.map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let mut body = resp.into_body();
    let mut first: Option<Instant> = None;
    let mut last: Option<Instant> = None;
    let mut gaps = Vec::new();
    let mut done = false;
    // A stream is over for its reader at `[DONE]` (SDKs stop there), whenever the body ends.
    let mut done_at: Option<Instant> = None;
    let mut bytes = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let now = Instant::now();
        bytes += data.len();
        if stream {
            if first.is_none() {
                first = Some(now);
            }
            if let Some(prev) = last {
                gaps.push(nanos(now - prev));
            }
            last = Some(now);
            done = data.ends_with(b"data: [DONE]\n\n");
            if done && done_at.is_none() {
                done_at = Some(now);
            }
        }
    }
    let end = done_at.unwrap_or_else(Instant::now);
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    if stream && !done {
        return Err("the stream did not end with [DONE]".into());
    }
    if bytes == 0 {
        return Err("empty answer".into());
    }
    s.latency.push(nanos(end - t0));
    if let Some(f) = first {
        s.ttft.push(nanos(f - t0));
    }
    s.gaps.extend(gaps);
    s.ok += 1;
    Ok(())
}

/// A closed-loop worker: from `begin`, requests back to back on its own connection until `until`.
async fn worker(
    mut tx: Option<Sender>,
    target: Target,
    body: Bytes,
    stream: bool,
    begin: Instant,
    until: Instant,
) -> (Option<Sender>, Samples) {
    let mut s = Samples::default();
    tokio::time::sleep_until(begin.into()).await;
    while Instant::now() < until {
        if tx.as_ref().is_none_or(|t| t.is_closed()) {
            match connect(target.addr).await {
                Ok(t) => tx = Some(t),
                Err(e) => {
                    s.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let sender = tx.as_mut().unwrap();
        if let Err(e) = one_request(sender, &target, &body, stream, &mut s).await {
            s.error(e);
        }
    }
    (tx, s)
}

/// `c` workers for `length`, their first requests spread evenly over `spread`; returns the
/// connections for the next slice.
async fn slice(
    conns: Vec<Option<Sender>>,
    target: &Target,
    body: &Bytes,
    stream: bool,
    length: Duration,
    spread: Duration,
) -> (Vec<Option<Sender>>, Samples) {
    let start = Instant::now();
    let until = start + length;
    let n = conns.len().max(1) as u32;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, tx)| {
            let begin = start + spread * i as u32 / n;
            tokio::spawn(worker(
                tx,
                target.clone(),
                body.clone(),
                stream,
                begin,
                until,
            ))
        })
        .collect();
    let mut all = Samples::default();
    let mut back = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (tx, s) = t.await.unwrap();
        back.push(tx);
        all.merge(s);
    }
    // Requests started before the deadline finish after it; the rate counts that time too.
    all.elapsed = start.elapsed();
    (back, all)
}

async fn open(addr: SocketAddr, n: usize) -> Vec<Option<Sender>> {
    let mut out = Vec::with_capacity(n);
    // In groups, so a burst of connects never overflows the listen backlog.
    for group in (0..n).collect::<Vec<_>>().chunks(100) {
        out.extend(
            join_all(group.iter().map(|_| connect(addr)))
                .await
                .into_iter()
                .map(Result::ok),
        );
    }
    out
}

fn chat_body(text: &str, stream: bool) -> Bytes {
    let mut v = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": text}],
    });
    if stream {
        // The gateway always asks the upstream for usage; asking on both paths keeps the chunk
        // sequence (and so the gaps) identical.
        v["stream"] = true.into();
        v["stream_options"] = serde_json::json!({"include_usage": true});
    }
    Bytes::from(v.to_string())
}

/// One cell: direct and gateway, alternating one-second slices (ABBA), after a short warm-up.
/// Each slice's workers start `spread` apart in all (see `Opts::burst`).
#[allow(clippy::too_many_arguments)]
async fn cell(
    direct: &Target,
    gateway: &Target,
    stream: bool,
    concurrency: usize,
    body: &Bytes,
    duration: Duration,
    spread: Duration,
    gateway_pid: u32,
) -> (Samples, Samples, Duration) {
    let mut conns = [
        open(direct.addr, concurrency).await,
        open(gateway.addr, concurrency).await,
    ];
    let targets = [direct, gateway];
    let mut samples = [Samples::default(), Samples::default()];
    let warm = Duration::from_millis(300);
    for i in 0..2 {
        let (c, _) = slice(
            std::mem::take(&mut conns[i]),
            targets[i],
            body,
            stream,
            warm,
            spread,
        )
        .await;
        conns[i] = c;
    }
    let cpu_before = cpu_time(gateway_pid);
    let slice_len = Duration::from_secs(1).min(duration);
    let rounds = (duration.as_secs_f64() / slice_len.as_secs_f64())
        .round()
        .max(1.0) as usize;
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (c, s) = slice(
                std::mem::take(&mut conns[i]),
                targets[i],
                body,
                stream,
                slice_len,
                spread,
            )
            .await;
            conns[i] = c;
            samples[i].elapsed += s.elapsed;
            samples[i].merge(s);
        }
    }
    let [d, g] = samples;
    (d, g, cpu_time(gateway_pid).saturating_sub(cpu_before))
}

// ---------------------------------------------------------------------------------------------
// Statistics and reports

fn ms(ns: f64) -> f64 {
    (ns / 1e6 * 1000.0).round() / 1000.0
}

/// Nearest-rank percentile, in ms (None without samples).
fn pct(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(ms(sorted[rank.clamp(1, sorted.len()) - 1] as f64))
}

fn stddev_ms(v: &[u64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    Some(ms(var.sqrt()))
}

#[derive(Serialize, Clone, Debug)]
struct PathStats {
    requests: u64,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    rps: f64,
    p50_ms: Option<f64>,
    p90_ms: Option<f64>,
    p99_ms: Option<f64>,
    ttft_p50_ms: Option<f64>,
    ttft_p99_ms: Option<f64>,
    gap_p50_ms: Option<f64>,
    gap_p99_ms: Option<f64>,
    /// p99 gap minus p50 gap.
    jitter_ms: Option<f64>,
    gap_stddev_ms: Option<f64>,
}

impl PathStats {
    fn from(mut s: Samples) -> Self {
        s.latency.sort_unstable();
        s.ttft.sort_unstable();
        s.gaps.sort_unstable();
        let secs = s.elapsed.as_secs_f64();
        let gap50 = pct(&s.gaps, 50.0);
        let gap99 = pct(&s.gaps, 99.0);
        Self {
            requests: s.ok,
            errors: s.errors,
            first_error: s.first_error,
            seconds: (secs * 100.0).round() / 100.0,
            rps: if secs > 0.0 {
                (s.ok as f64 / secs).round()
            } else {
                0.0
            },
            p50_ms: pct(&s.latency, 50.0),
            p90_ms: pct(&s.latency, 90.0),
            p99_ms: pct(&s.latency, 99.0),
            ttft_p50_ms: pct(&s.ttft, 50.0),
            ttft_p99_ms: pct(&s.ttft, 99.0),
            gap_p50_ms: gap50,
            gap_p99_ms: gap99,
            jitter_ms: gap99.zip(gap50).map(|(a, b)| ms((a - b) * 1e6)),
            gap_stddev_ms: stddev_ms(&s.gaps),
        }
    }
}

fn diff(g: Option<f64>, d: Option<f64>) -> Option<f64> {
    g.zip(d).map(|(g, d)| ms((g - d) * 1e6))
}

#[derive(Serialize, Clone, Debug)]
struct Cell {
    mock_latency_ms: u64,
    mode: &'static str,
    concurrency: usize,
    direct: PathStats,
    gateway: PathStats,
    /// Gateway requests per second over direct requests per second.
    throughput_ratio: f64,
    added_p50_ms: Option<f64>,
    added_p90_ms: Option<f64>,
    added_p99_ms: Option<f64>,
    ttft_overhead_p50_ms: Option<f64>,
    ttft_overhead_p99_ms: Option<f64>,
    jitter_added_ms: Option<f64>,
    gateway_rss_mib: f64,
    /// Gateway CPU time over the whole cell (its log writes included) per gateway request.
    gateway_cpu_us_per_request: f64,
}

impl Cell {
    fn new(
        mock_latency_ms: u64,
        stream: bool,
        concurrency: usize,
        direct: PathStats,
        gateway: PathStats,
        rss: f64,
        cpu: Duration,
    ) -> Self {
        Self {
            mock_latency_ms,
            mode: if stream { "stream" } else { "non-stream" },
            concurrency,
            throughput_ratio: if direct.rps > 0.0 {
                (gateway.rps / direct.rps * 1000.0).round() / 1000.0
            } else {
                0.0
            },
            added_p50_ms: diff(gateway.p50_ms, direct.p50_ms),
            added_p90_ms: diff(gateway.p90_ms, direct.p90_ms),
            added_p99_ms: diff(gateway.p99_ms, direct.p99_ms),
            ttft_overhead_p50_ms: diff(gateway.ttft_p50_ms, direct.ttft_p50_ms),
            ttft_overhead_p99_ms: diff(gateway.ttft_p99_ms, direct.ttft_p99_ms),
            jitter_added_ms: diff(gateway.jitter_ms, direct.jitter_ms),
            gateway_rss_mib: (rss * 10.0).round() / 10.0,
            gateway_cpu_us_per_request: if gateway.requests > 0 {
                (cpu.as_secs_f64() * 1e6 / gateway.requests as f64).round()
            } else {
                0.0
            },
            direct,
            gateway,
        }
    }
}

fn f(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

fn print_header(stream: bool) {
    print!(
        "{:>4} | {:>7} {:>7} {:>5} | {:>23} | {:>23} | {:>23}",
        "c",
        "rps dir",
        "rps gw",
        "ratio",
        "direct p50/p90/p99 ms",
        "gateway p50/p90/p99 ms",
        "added p50/p90/p99 ms"
    );
    if stream {
        print!(
            " | {:>17} | {:>17} | {:>13}",
            "TTFT p50 d/g/+", "TTFT p99 d/g/+", "jitter d/g"
        );
    }
    println!(" | {:>7} | {:>6} | {:>4}", "RSS MiB", "CPU/rq", "err");
}

fn three(a: Option<f64>, b: Option<f64>, c: Option<f64>) -> String {
    format!("{}/{}/{}", f(a), f(b), f(c))
}

fn print_cell(c: &Cell) {
    let (d, g) = (&c.direct, &c.gateway);
    print!(
        "{:>4} | {:>7} {:>7} {:>5.2} | {:>23} | {:>23} | {:>23}",
        c.concurrency,
        d.rps,
        g.rps,
        c.throughput_ratio,
        three(d.p50_ms, d.p90_ms, d.p99_ms),
        three(g.p50_ms, g.p90_ms, g.p99_ms),
        three(c.added_p50_ms, c.added_p90_ms, c.added_p99_ms),
    );
    if c.mode == "stream" {
        print!(
            " | {:>17} | {:>17} | {:>13}",
            three(d.ttft_p50_ms, g.ttft_p50_ms, c.ttft_overhead_p50_ms),
            three(d.ttft_p99_ms, g.ttft_p99_ms, c.ttft_overhead_p99_ms),
            format!("{}/{}", f(d.jitter_ms), f(g.jitter_ms)),
        );
    }
    println!(
        " | {:>7.1} | {:>4}µs | {:>4}",
        c.gateway_rss_mib,
        c.gateway_cpu_us_per_request,
        d.errors + g.errors
    );
    for (path, p) in [("direct", d), ("gateway", g)] {
        if let Some(e) = &p.first_error {
            println!("       {path}: {} errors, first: {e}", p.errors);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Extra scenarios

#[derive(Serialize, Debug)]
struct SlowStreams {
    streams: usize,
    completed: u64,
    errors: u64,
    first_error: Option<String>,
    /// Most streams the client had open at once (request sent, answer not finished).
    max_open: usize,
    rss_idle_mib: f64,
    rss_peak_mib: f64,
    rss_after_mib: f64,
    seconds: f64,
}

/// `n` streams of several seconds each, all started together; RSS sampled every 20 ms.
async fn slow_streams(gw: &Proc, target: &Target, n: usize) -> SlowStreams {
    let body = chat_body("slow stream [[mock:latency=60]] [[mock:stall=150]]", true);
    let conns = open(target.addr, n).await;
    let rss_idle = gw.rss_mib();
    let open_now = Arc::new(AtomicUsize::new(0));
    let max_open = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|tx| {
            let (target, body) = (target.clone(), body.clone());
            let (open_now, max_open) = (open_now.clone(), max_open.clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                let Some(mut tx) = tx else {
                    s.error("connect failed".into());
                    return s;
                };
                let now = open_now.fetch_add(1, Ordering::Relaxed) + 1;
                max_open.fetch_max(now, Ordering::Relaxed);
                if let Err(e) = one_request(&mut tx, &target, &body, true, &mut s).await {
                    s.error(e);
                }
                open_now.fetch_sub(1, Ordering::Relaxed);
                s
            })
        })
        .collect();
    let pid = gw.pid();
    // Peak RSS in KiB, sampled while the streams run.
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max((rss_mib(pid) * 1024.0) as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut all = Samples::default();
    for t in tasks {
        all.merge(t.await.unwrap());
    }
    sampler.abort();
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak.load(Ordering::Relaxed) as f64 / 1024.0;
    tokio::time::sleep(Duration::from_millis(500)).await;
    SlowStreams {
        streams: n,
        completed: all.ok,
        errors: all.errors,
        first_error: all.first_error,
        max_open: max_open.load(Ordering::Relaxed),
        rss_idle_mib: round1(rss_idle),
        rss_peak_mib: round1(peak),
        rss_after_mib: round1(gw.rss_mib()),
        seconds: round1(seconds),
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[derive(Serialize, Debug)]
struct LongRun {
    requests: usize,
    concurrency: usize,
    warm_up_requests: usize,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
    rps: f64,
    rss_before_warm_up_mib: f64,
    rss_start_mib: f64,
    rss_end_mib: f64,
    growth_pct: f64,
    /// Growth from the first tenth of the run to the end (caches that fill once are excluded).
    growth_after_first_tenth_pct: Option<f64>,
    /// (requests done, RSS MiB), about every tenth of the run.
    trace: Vec<(usize, f64)>,
}

/// `total` non-streaming requests at concurrency 64 after a warm-up; RSS at start and end.
async fn long_run(gw: &Proc, target: &Target, total: usize) -> LongRun {
    const C: usize = 64;
    let warm = 2_000.min(total / 10).max(C);
    let body = chat_body("long run", false);
    let rss_before = gw.rss_mib();
    let conns = open(target.addr, C).await;
    let (conns, _) = run_count(conns, target, &body, warm, None).await;
    let rss_start = gw.rss_mib();
    let trace = Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let (_, s) = run_count(conns, target, &body, total, Some((gw.pid(), trace.clone()))).await;
    let seconds = start.elapsed().as_secs_f64();
    let rss_end = gw.rss_mib();
    let mut trace = std::mem::take(&mut *trace.lock().unwrap());
    trace.sort_by_key(|t| t.0);
    LongRun {
        requests: total,
        concurrency: C,
        warm_up_requests: warm,
        errors: s.errors,
        first_error: s.first_error,
        seconds: round1(seconds),
        rps: (s.ok as f64 / seconds).round(),
        rss_before_warm_up_mib: round1(rss_before),
        rss_start_mib: round1(rss_start),
        rss_end_mib: round1(rss_end),
        growth_pct: round1((rss_end - rss_start) / rss_start * 100.0),
        growth_after_first_tenth_pct: trace
            .iter()
            .find(|(done, _)| *done > 0)
            .map(|(_, tenth)| round1((rss_end - tenth) / tenth * 100.0)),
        trace,
    }
}

type Trace = Arc<std::sync::Mutex<Vec<(usize, f64)>>>;

/// Exactly `total` requests spread over the connections; optionally RSS every tenth.
async fn run_count(
    conns: Vec<Option<Sender>>,
    target: &Target,
    body: &Bytes,
    total: usize,
    trace: Option<(u32, Trace)>,
) -> (Vec<Option<Sender>>, Samples) {
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut tx| {
            let (target, body, next, trace) =
                (target.clone(), body.clone(), next.clone(), trace.clone());
            tokio::spawn(async move {
                let mut s = Samples::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    if let Some((pid, t)) = &trace
                        && i % (total / 10).max(1) == 0
                    {
                        t.lock().unwrap().push((i, round1(rss_mib(*pid))));
                    }
                    if tx.as_ref().is_none_or(|t| t.is_closed()) {
                        match connect(target.addr).await {
                            Ok(t) => tx = Some(t),
                            Err(e) => {
                                s.error(format!("connect: {e}"));
                                continue;
                            }
                        }
                    }
                    let sender = tx.as_mut().unwrap();
                    if let Err(e) = one_request(sender, &target, &body, false, &mut s).await {
                        s.error(e);
                    }
                }
                (tx, s)
            })
        })
        .collect();
    let mut all = Samples::default();
    let mut back = Vec::new();
    for t in tasks {
        let (tx, s) = t.await.unwrap();
        back.push(tx);
        all.merge(s);
    }
    (back, all)
}

#[derive(Serialize, Debug)]
struct Startup {
    /// Empty data dir but for the database `keys create` made: generates the encryption key,
    /// creates the first admin, has no registry cache.
    first_start_ms: f64,
    keys_create_ms: f64,
    /// The bench's own data dir (key cache cold, registry cached): spawn to first 200.
    warm_starts_ms: Vec<f64>,
    warm_start_median_ms: f64,
}

/// Spawns `gophergate serve` and times until the first chat completion answers 200.
async fn time_to_first_answer(
    env: &Env,
    data_dir: &Path,
    mock: SocketAddr,
    key: &str,
    log: &str,
) -> anyhow::Result<f64> {
    let addr = free_port();
    let auth = format!("Bearer {key}");
    let body = String::from_utf8(chat_body("start-up probe", false).to_vec())?;
    let t0 = Instant::now();
    let proc = env.spawn_gateway(data_dir, addr, mock, log)?;
    let answered = loop {
        if let Ok((StatusCode::OK, _)) = http_once(
            addr,
            Method::POST,
            CHAT_PATH,
            Some(&auth),
            Some(body.clone()),
        )
        .await
        {
            break Some(t0.elapsed());
        }
        if t0.elapsed() > Duration::from_secs(30) {
            break None;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    };
    proc.stop().await;
    let d = answered.ok_or_else(|| anyhow::anyhow!("no answer within 30 s; see {log}"))?;
    Ok(ms(nanos(d) as f64))
}

async fn startup(env: &Env, mock: SocketAddr, key: &str, starts: usize) -> anyhow::Result<Startup> {
    let fresh = env.root.path().join("fresh");
    std::fs::create_dir_all(&fresh)?;
    let t = Instant::now();
    let fresh_key = env.create_key(&fresh, mock).await?;
    let keys_create_ms = ms(nanos(t.elapsed()) as f64);
    let first_start_ms =
        time_to_first_answer(env, &fresh, mock, &fresh_key, "gateway-first-start.log").await?;
    let mut warm = Vec::new();
    for i in 0..starts {
        let log = format!("gateway-warm-start-{i}.log");
        warm.push(time_to_first_answer(env, &env.data_dir, mock, key, &log).await?);
    }
    let mut sorted = warm.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Startup {
        first_start_ms,
        keys_create_ms,
        warm_start_median_ms: sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        warm_starts_ms: warm,
    })
}

// ---------------------------------------------------------------------------------------------
// The run

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    cpu: String,
    kernel: String,
    memory_gib: f64,
    git_commit: String,
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let run = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu,
        kernel: run("uname", &["-sr"]),
        memory_gib: round1(mem_kib / 1024.0 / 1024.0),
        git_commit: run("git", &["rev-parse", "--short", "HEAD"]),
    }
}

#[derive(Serialize)]
struct TargetCheck {
    name: String,
    target: String,
    measured: String,
    met: bool,
}

#[derive(Serialize)]
struct Report {
    machine: Machine,
    /// What stood in the gateway's place: "gateway", "nginx" or "bare-hyper".
    through: &'static str,
    duration_s: f64,
    chunk_gap_ms: u64,
    quick: bool,
    cells: Vec<Cell>,
    /// Dashboard live-feed messages the bench's WebSocket client received (per gateway run).
    hub_messages: Vec<u64>,
    slow_streams: Option<SlowStreams>,
    long_run: Option<LongRun>,
    startup: Option<Startup>,
    targets: Vec<TargetCheck>,
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let root = tempfile::Builder::new()
        .prefix("gophergate-bench")
        .tempdir()?;
    let data_dir = root.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let registry = opts.registry.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/models-dev-snapshot.json"
        ))
    });
    let registry = if registry.exists() {
        registry
    } else {
        // Without a catalog the gateway still routes `gpt-4o-mini` (by prefix), just unpriced.
        let empty = root.path().join("registry.json");
        std::fs::write(&empty, "{}")?;
        empty
    };
    let env = Env {
        root,
        data_dir,
        registry,
        gateway_bin: opts
            .gateway_bin
            .clone()
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_gophergate").into()),
    };
    let duration = Duration::from_secs_f64(opts.duration);
    let machine = machine();
    println!(
        "gateway bench: {} × {} ({} cores), {}; {} s per path per cell; logs in {}",
        machine.cpu,
        machine.nproc,
        machine.nproc,
        machine.kernel,
        opts.duration,
        env.root.path().display()
    );

    if opts.through() != "gateway" {
        println!(
            "{} in the gateway's place: the \"gateway\" columns below measure it",
            opts.through()
        );
    }
    let (mock0, mock0_addr) = spawn_mock(0).await?;
    let password = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let key = env.create_key(&env.data_dir, mock0_addr).await?;
    env.create_user(&password, mock0_addr).await?;

    let mut cells = Vec::new();
    let mut hub_messages = Vec::new();
    if !opts.no_matrix {
        for &latency in &opts.latencies {
            let extra_mock = if latency == 0 {
                None
            } else {
                Some(spawn_mock(latency).await?)
            };
            let mock_addr = extra_mock.as_ref().map_or(mock0_addr, |m| m.1);
            let log = format!("gateway-{latency}ms.log");
            let gw = Through::start(&opts, &env, mock_addr, &password, &log).await?;
            let direct = Target::new(mock_addr, MOCK_KEY);
            let through = gw.target(&key);
            for stream in [false, true] {
                println!(
                    "\nmock latency {latency} ms, {}{}:",
                    if stream { "stream" } else { "non-stream" },
                    if stream {
                        format!(", chunks {} ms apart", opts.chunk_gap_ms)
                    } else {
                        String::new()
                    }
                );
                print_header(stream);
                let text = if stream {
                    format!("bench stream [[mock:stall={}]]", opts.chunk_gap_ms)
                } else {
                    "bench".to_string()
                };
                let body = chat_body(&text, stream);
                // Closed-loop workers started together against a fixed-latency upstream stay in
                // step: every request of a cell would arrive in one burst per round trip.
                let spread = if opts.burst {
                    Duration::ZERO
                } else {
                    Duration::from_millis(latency)
                };
                for &c in &opts.concurrency {
                    let (d, g, cpu) = cell(
                        &direct,
                        &through,
                        stream,
                        c,
                        &body,
                        duration,
                        spread,
                        gw.pid(),
                    )
                    .await;
                    let cell = Cell::new(
                        latency,
                        stream,
                        c,
                        PathStats::from(d),
                        PathStats::from(g),
                        tree(gw.pid()).iter().map(|&p| rss_mib(p)).sum(),
                        cpu,
                    );
                    print_cell(&cell);
                    cells.push(cell);
                }
            }
            if let Through::Gateway(gw) = &gw {
                let hub = gw.hub.request_logs.load(Ordering::Relaxed);
                println!(
                    "dashboard live feed: {} messages ({hub} request rows, {} lagged notices)",
                    gw.hub.messages.load(Ordering::Relaxed),
                    gw.hub.lagged.load(Ordering::Relaxed)
                );
                hub_messages.push(gw.hub.messages.load(Ordering::Relaxed));
            }
            gw.stop().await;
            if let Some((m, _)) = extra_mock {
                m.stop().await;
            }
        }
    }

    let (mut slow, mut long, mut start) = (None, None, None);
    if !opts.no_extras && !opts.nginx {
        println!("\nextra scenarios (mock latency 0 ms unless a directive says otherwise):");
        let gw = Through::start(&opts, &env, mock0_addr, &password, "gateway-streams.log").await?;
        let s = slow_streams(gw.proc(), &gw.target(&key), opts.streams).await;
        println!(
            "  {} slow streams at once (60 ms + 150 ms gaps): {} done, {} errors, {} open at most, \
             RSS idle {:.1} MiB, peak {:.1} MiB, after {:.1} MiB ({:.1} s)",
            s.streams,
            s.completed,
            s.errors,
            s.max_open,
            s.rss_idle_mib,
            s.rss_peak_mib,
            s.rss_after_mib,
            s.seconds
        );
        if let Some(e) = &s.first_error {
            println!("    first error: {e}");
        }
        slow = Some(s);
        gw.stop().await;

        let gw = Through::start(&opts, &env, mock0_addr, &password, "gateway-long.log").await?;
        let l = long_run(gw.proc(), &gw.target(&key), opts.requests).await;
        println!(
            "  {} requests at c{} ({} rps, {} errors): RSS {:.1} MiB before warm-up, \
             {:.1} at start, {:.1} at end: {:+.1}% ({:+.1}% from the first tenth)",
            l.requests,
            l.concurrency,
            l.rps,
            l.errors,
            l.rss_before_warm_up_mib,
            l.rss_start_mib,
            l.rss_end_mib,
            l.growth_pct,
            l.growth_after_first_tenth_pct.unwrap_or(0.0)
        );
        if let Some(e) = &l.first_error {
            println!("    first error: {e}");
        }
        long = Some(l);
        gw.stop().await;

        if !opts.bare_hyper {
            let s = startup(&env, mock0_addr, &key, opts.starts).await?;
            println!(
                "  start-up to first answer: first start {:.1} ms (after keys create, {:.1} ms); \
                 warm starts {:?} ms, median {:.1} ms",
                s.first_start_ms, s.keys_create_ms, s.warm_starts_ms, s.warm_start_median_ms
            );
            start = Some(s);
        }
    }
    mock0.stop().await;

    let targets = check_targets(&cells, slow.as_ref(), long.as_ref(), start.as_ref());
    if !targets.is_empty() {
        println!("\ntargets:");
        for t in &targets {
            println!(
                "  {:<4} {:<58} target {:<10} measured {}",
                if t.met { "met" } else { "MISS" },
                t.name,
                t.target,
                t.measured
            );
        }
    }
    let report = Report {
        through: opts.through(),
        machine,
        duration_s: opts.duration,
        chunk_gap_ms: opts.chunk_gap_ms,
        quick: opts.quick,
        cells,
        hub_messages,
        slow_streams: slow,
        long_run: long,
        startup: start,
        targets,
    };
    let out = opts.out.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/bench/gateway.json"
        ))
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("\nJSON written to {}", out.display());
    let errors: u64 = report
        .cells
        .iter()
        .map(|c| c.direct.errors + c.gateway.errors)
        .sum();
    anyhow::ensure!(errors == 0, "{errors} requests failed in the matrix");
    Ok(())
}

fn check_targets(
    cells: &[Cell],
    slow: Option<&SlowStreams>,
    long: Option<&LongRun>,
    start: Option<&Startup>,
) -> Vec<TargetCheck> {
    let find = |lat: u64, mode: &str, c: usize| {
        cells
            .iter()
            .find(|x| x.mock_latency_ms == lat && x.mode == mode && x.concurrency == c)
    };
    let mut out = Vec::new();
    let mut check =
        |name: String, target: f64, measured: Option<f64>, unit: &str, at_most: bool| {
            if let Some(m) = measured {
                out.push(TargetCheck {
                    name,
                    target: format!("{}{target}{unit}", if at_most { "<= " } else { ">= " }),
                    measured: format!("{m}{unit}"),
                    met: if at_most { m <= target } else { m >= target },
                });
            }
        };
    if let Some(c) = find(60, "non-stream", 64) {
        check(
            "added latency p50, c64, 60 ms mock".into(),
            0.15,
            c.added_p50_ms,
            " ms",
            true,
        );
        check(
            "added latency p99, c64, 60 ms mock".into(),
            1.0,
            c.added_p99_ms,
            " ms",
            true,
        );
    }
    if let Some(c) = find(0, "non-stream", 64) {
        check(
            "throughput vs direct, c64, 0 ms mock".into(),
            0.5,
            Some(c.throughput_ratio),
            "x",
            false,
        );
    }
    if let Some(c) = find(60, "stream", 64) {
        check(
            "time-to-first-token overhead p50, c64, 60 ms mock".into(),
            0.5,
            c.ttft_overhead_p50_ms,
            " ms",
            true,
        );
    }
    if let Some(s) = slow {
        check(
            format!("RSS with {} concurrent streams (peak)", s.streams),
            60.0,
            Some(s.rss_peak_mib),
            " MiB",
            true,
        );
    }
    if let Some(l) = long {
        check(
            format!("RSS growth over {} requests", l.requests),
            5.0,
            Some(l.growth_pct),
            "%",
            true,
        );
    }
    if let Some(s) = start.filter(|s| !s.warm_starts_ms.is_empty()) {
        check(
            "start-up to first answer (warm, median)".into(),
            100.0,
            Some(s.warm_start_median_ms),
            " ms",
            true,
        );
    }
    out
}
