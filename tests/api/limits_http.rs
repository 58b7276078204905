//! Connection limits: `server.header_timeout` closes connections whose request head is too slow to
//! arrive (slow-loris) or that sit idle between requests; `server.max_header_bytes` answers 431.

use crate::helpers::*;
use std::time::{Duration, Instant};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Generous room past the timeout for a loaded machine; far below hyper's 30 s default.
const SLACK: Duration = Duration::from_secs(3);

async fn app_with_short_header_timeout() -> TestApp {
    spawn_app_with(Default::default(), |c| {
        c.server.header_timeout = HEADER_TIMEOUT;
    })
    .await
}

fn addr(t: &TestApp) -> std::net::SocketAddr {
    t.app().addr()
}

/// Reads until the server closes the connection (EOF or reset); returns what was read.
async fn read_until_closed(reader: &mut tokio::net::tcp::OwnedReadHalf) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn headers_trickled_too_slowly_get_the_connection_closed() {
    let t = app_with_short_header_timeout().await;
    let stream = TcpStream::connect(addr(&t)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let started = Instant::now();
    // One byte every 100 ms: the head would take far longer than the timeout to arrive.
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(200)
    );
    let trickle = async move {
        for b in head.bytes() {
            if writer.write_all(&[b]).await.is_err() {
                return; // closed by the server
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The whole head went through: the timeout never fired. Keep the socket open.
        std::future::pending::<()>().await;
    };
    let closed = tokio::time::timeout(HEADER_TIMEOUT + SLACK, async {
        tokio::select! {
            got = read_until_closed(&mut reader) => got,
            () = trickle => read_until_closed(&mut reader).await,
        }
    })
    .await;
    let elapsed = started.elapsed();
    let got = closed.unwrap_or_else(|_| panic!("still open after {elapsed:?}"));
    assert!(elapsed >= HEADER_TIMEOUT, "closed too early: {elapsed:?}");
    // Never answered: the request was never read whole.
    assert!(
        !String::from_utf8_lossy(&got).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&got)
    );

    // The server itself is fine.
    let resp = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let t = app_with_short_header_timeout().await;
    let stream = TcpStream::connect(addr(&t)).await.unwrap();
    let (mut reader, _writer) = stream.into_split();
    let started = Instant::now();
    tokio::time::timeout(HEADER_TIMEOUT + SLACK, read_until_closed(&mut reader))
        .await
        .unwrap_or_else(|_| panic!("still open after {:?}", started.elapsed()));
    assert!(started.elapsed() >= HEADER_TIMEOUT);
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_timeout() {
    let t = app_with_short_header_timeout().await;
    let stream = TcpStream::connect(addr(&t)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    // The server's idle clock starts once it has answered, which is after this moment; the
    // moment the client reads the answer can be later than the server's start (another thread).
    let idle_since = Instant::now();
    writer
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer comes, and the connection stays open for the next request...
    let mut buf = vec![0u8; 4096];
    let n = reader.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // ...but not forever.
    tokio::time::timeout(HEADER_TIMEOUT + SLACK, read_until_closed(&mut reader))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "idle connection still open after {:?}",
                idle_since.elapsed()
            )
        });
    assert!(idle_since.elapsed() >= HEADER_TIMEOUT);
}

#[tokio::test]
async fn a_slow_stream_is_not_cut_by_the_header_timeout() {
    // The timeout covers the request head only, never a response in progress.
    let t = app_with_short_header_timeout().await;
    let mut req = user_msg("[[mock:stall=150]] one two three four five six seven eight nine ten");
    req["stream"] = serde_json::json!(true);
    let resp = t.chat(req).await;
    assert_eq!(resp.status(), 200);
    let started = Instant::now();
    let text = read_stream(resp).await;
    assert!(
        started.elapsed() > HEADER_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    assert!(sse_data(&text).iter().any(|d| d == "[DONE]"), "{text}");
}

#[tokio::test]
async fn oversize_request_headers_get_431_and_normal_requests_still_work() {
    let t = spawn_app().await;
    let big = "a".repeat(100 * 1024);
    let resp = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-big", big)
        .json(&user_msg("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    // Headers that fit are fine, on the same server.
    let resp = t
        .http
        .post(t.url("/v1/chat/completions"))
        .bearer_auth(&t.key)
        .header("x-medium", "a".repeat(16 * 1024))
        .json(&user_msg("hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = t.chat(user_msg("hello again")).await;
    assert_eq!(resp.status(), 200);
    // The refused request never reached a handler: only the two answered ones are logged.
    assert_eq!(t.exact_logs(2).await.len(), 2);
}

#[tokio::test]
async fn the_header_limit_follows_the_configuration() {
    let t = spawn_app_with(Default::default(), |c| c.server.max_header_bytes = 4096).await;
    let resp = t
        .http
        .get(t.url("/health"))
        .header("x-big", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let resp = t.http.get(t.url("/health")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
