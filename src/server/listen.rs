//! Serving the router on a TCP listener, HTTP/1.1 with connection-level limits that `axum::serve`
//! cannot set:
//!
//! - `server.header_timeout`: a client must send a whole request head within it, on a new
//!   connection and between requests on a kept-alive one; otherwise the connection is closed. A
//!   slow-loris client (headers a byte at a time) or an idle connection cannot hold a socket.
//! - `server.max_header_bytes`: a larger request head gets 431 and the connection is closed.
//!
//! Each accepted connection is served on one of the `shards` (a thread per core) for its whole life.
//!
//! Graceful stop: when `shutdown` fires, no more connections are accepted, idle connections close,
//! and each busy one closes after its current response; `serve` returns when all are gone.

use super::shards::Shards;
use crate::config::ServerConfig;
use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt;

/// The connection settings taken from the `server` section.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_header_bytes: usize,
}

impl From<&ServerConfig> for Limits {
    fn from(c: &ServerConfig) -> Self {
        Self {
            header_timeout: c.header_timeout,
            max_header_bytes: c.max_header_bytes,
        }
    }
}

/// Serves `app` until `shutdown` fires and every connection has closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    mut shards: Shards,
    shutdown: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            // A stop wins over a connection waiting in the backlog.
            biased;
            _ = shutdown.cancelled() => break,
            _ = shards.stopped() => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    if !is_per_connection(&e) {
                        // Out of file descriptors and the like: retrying at once would spin.
                        tracing::error!(error = %e, "accept failed; retrying in 1s");
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                    continue;
                }
            },
        };
        // SSE chunks are small and must leave at once.
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not hand the connection to a server thread");
                continue;
            }
        };
        let app = app.clone();
        let http = http.clone();
        let shutdown = shutdown.clone();
        let token = connections.token();
        shards.send(Box::new(move || {
            Box::pin(async move {
                let _token = token;
                // Registered with this shard's own reactor, so its wake-ups stay on this thread.
                let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                    return;
                };
                let service = app.map_request(move |mut req: axum::http::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req
                });
                let conn = http
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = shutdown.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        conn.await
                    }
                };
                if let Err(e) = result {
                    // Timeouts, oversize heads and clients that left: routine.
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            })
        }));
    }
    drop(listener);
    drop(shards);
    connections.close();
    connections.wait().await;
}

/// Accept errors that concern one connection only (it was gone before it was accepted).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
