//! `GET /api/ws`: the dashboard's live feed. Authenticated like every `/api` route (the session
//! cookie, which browsers send on the upgrade, or a Bearer token); relays the hub's messages until
//! the client leaves, the session expires, or the gateway stops.

use super::Session;
use crate::server::SharedState;
use axum::{
    Extension,
    extract::{
        State,
        ws::{Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures::SinkExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast::{
    Receiver,
    error::{RecvError, TryRecvError},
};

/// Messages written to a client's socket before it is flushed.
const MAX_BATCH: usize = 256;

pub async fn connect(
    State(state): State<SharedState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Browsers always send Origin on a WebSocket upgrade and do not apply SameSite to it the way
    // they do to fetches: only the dashboard's own origin may open the feed.
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
    }
    ws.on_upgrade(move |socket| relay(state, session, socket))
}

/// True without an Origin header (not a browser), or when Origin names the host that was asked.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

async fn relay(state: SharedState, session: Session, mut socket: WebSocket) {
    let hub = &state.hub;
    let mut rx = hub.subscribe();
    hub.stats().clients.fetch_add(1, Ordering::Relaxed);
    let expires = (session.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    let expiry = tokio::time::sleep(expires);
    tokio::pin!(expiry);
    // The latest metrics at once, so a fresh page is not empty for two seconds.
    let hello = serde_json::json!({"type": "metrics", "data": *state.sampler.latest()}).to_string();
    let mut alive = socket.send(Message::Text(hello.into())).await.is_ok();
    while alive {
        tokio::select! {
            msg = rx.recv() => alive = send_waiting(hub, &mut rx, &mut socket, msg).await,
            incoming = socket.recv() => {
                // Clients only listen; anything but a close (or an error) is ignored.
                alive = matches!(incoming, Some(Ok(m)) if !matches!(m, Message::Close(_)));
            }
            _ = &mut expiry => break,
            _ = state.shutdown.cancelled() => break,
        }
    }
    let _ = socket.send(Message::Close(None)).await;
    hub.stats().clients.fetch_sub(1, Ordering::Relaxed);
}

/// Writes `first` and whatever else is already waiting (up to `MAX_BATCH`: the writer publishes a
/// whole batch of rows at once), then flushes once. False when the client or the hub is gone.
async fn send_waiting(
    hub: &crate::hub::Hub,
    rx: &mut Receiver<Arc<str>>,
    socket: &mut WebSocket,
    first: Result<Arc<str>, RecvError>,
) -> bool {
    let mut msg = first;
    for fed in 1..=MAX_BATCH {
        let text: String = match msg {
            Ok(m) => m.to_string(),
            Err(RecvError::Lagged(n)) => {
                hub.stats().skipped.fetch_add(n, Ordering::Relaxed);
                serde_json::json!({"type": "lagged", "data": {"skipped": n}}).to_string()
            }
            Err(RecvError::Closed) => return false,
        };
        if socket.feed(Message::Text(text.into())).await.is_err() {
            return false;
        }
        if fed == MAX_BATCH {
            break;
        }
        msg = match rx.try_recv() {
            Ok(m) => Ok(m),
            Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
            Err(TryRecvError::Empty) => break,
        };
    }
    socket.flush().await.is_ok()
}
