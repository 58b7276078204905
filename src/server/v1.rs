//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/models`.

use super::{
    SharedState, attempts,
    middleware::RequestId,
    relay::{EstimateInput, Relay, StreamTimers},
    request_log::RequestLog,
};
use crate::{
    domain::{embeddings::parse_embeddings_request, validate::parse_chat_request},
    error::ApiError,
    providers::{ChunkStream, StreamEvent, UpstreamError},
    registry,
    routing::{Plan, Route, RouteError},
    store::KeyRecord,
};
use axum::{
    Extension, Json, Router,
    body::{Body, Bytes},
    extract::{OriginalUri, Path, State, rejection::BytesRejection},
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use futures::StreamExt;
use serde::Serialize;
use std::{sync::Arc, time::Duration};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route(
            "/chat/completions",
            post(chat_completions).fallback(method_not_allowed),
        )
        .route("/embeddings", post(embeddings).fallback(method_not_allowed))
        .route("/models", get(list_models).fallback(method_not_allowed))
        .route("/models/{*id}", get(get_model).fallback(method_not_allowed))
        .fallback(unknown_route)
}

async fn chat_completions(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut log = RequestLog::new(&state.logs, &rid.0, &key);
    match chat(&state, &key, &mut log, body).await {
        Ok(Reply::Json(resp)) => {
            log.finish(200, None).await;
            resp
        }
        Ok(Reply::Stream(relay_parts)) => {
            let (stream, headers) = relay_parts(log);
            let mut resp = Response::new(Body::from_stream(stream));
            *resp.headers_mut() = headers;
            resp
        }
        Err(e) => {
            log.finish_error(&e).await;
            e.into_response()
        }
    }
}

type StreamBuilder = Box<dyn FnOnce(RequestLog) -> (Relay, axum::http::HeaderMap) + Send>;

enum Reply {
    Json(Response),
    Stream(StreamBuilder),
}

/// The body, or 413 / 400 when it could not be read.
fn body_bytes(state: &SharedState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rej| {
        if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.config.server.max_body_bytes,
            }
        } else {
            ApiError::invalid(rej.body_text(), None)
        }
    })
}

/// Checks the key may use `model` and plans which targets serve it; records the model on the log
/// row (each attempt records its target).
fn plan(
    state: &SharedState,
    key: &KeyRecord,
    log: &mut RequestLog,
    model: &str,
) -> Result<Plan, ApiError> {
    log.row().model = Some(model.to_string());
    if !key.allows_model(model) {
        return Err(ApiError::Forbidden(format!(
            "This API key is not allowed to use the model `{model}`."
        )));
    }
    let catalog = state.registry.snapshot();
    let plan = state
        .providers
        .load()
        .plan(model, |m| catalog.provider_of(m).map(str::to_string))
        .map_err(|e| match e {
            RouteError::UnknownModel => ApiError::ModelNotFound(model.to_string()),
            RouteError::Unavailable(reason) => ApiError::ProviderNotConfigured(reason),
        })?;
    if let Some(first) = plan.targets.first() {
        // Until an attempt is made, the row names the first target.
        log.set_route(
            first.provider.name(),
            &first.upstream_model,
            state.pricer.clone(),
        );
    }
    Ok(plan)
}

/// Admission: the in-flight cap (503, fast, so overload never turns into unbounded memory), then
/// the key's requests per minute (429 with `Retry-After`). The request already has its log row.
async fn check_rate(state: &SharedState, key: &KeyRecord) -> Result<(), ApiError> {
    // This request counts itself (its `RequestLog` exists).
    let in_flight = state
        .logs
        .stats()
        .in_flight
        .load(std::sync::atomic::Ordering::Relaxed);
    if in_flight > state.config.server.max_in_flight as i64 {
        return Err(ApiError::Overloaded);
    }
    let Some(rpm) = key.rpm else { return Ok(()) };
    let shared = match &state.coord {
        Some(c) => c
            .check_rpm(key.id, rpm)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "shared rate limit unavailable; counting in process"))
            .ok(),
        None => None,
    };
    let d = shared.unwrap_or_else(|| {
        state
            .rate_limits
            .check(key.id, rpm, std::time::Instant::now())
    });
    if d.allowed {
        Ok(())
    } else {
        Err(ApiError::RateLimited(d))
    }
}

/// The key's tokens per minute: admitted when the last minute's tokens plus this request's
/// estimate (prompt, plus `max_tokens` when given) fit; the real usage replaces the estimate.
async fn check_tokens(
    state: &SharedState,
    key: &KeyRecord,
    log: &mut RequestLog,
    plan: &Plan,
    body: &[u8],
    max_output: Option<u64>,
) -> Result<(), ApiError> {
    let Some(tpm) = key.tpm else { return Ok(()) };
    let Some(first) = plan.targets.first() else {
        return Ok(());
    };
    let prompt =
        crate::estimate::estimate(first.provider.kind(), &first.upstream_model, body, "").prompt;
    let estimate = prompt + max_output.unwrap_or(0);
    if let Some(c) = &state.coord {
        match c.check_tpm(key.id, tpm, estimate).await {
            Ok(Ok(second)) => {
                let charge =
                    crate::ratelimit::TokenCharge::shared(c.clone(), key.id, second, estimate);
                log.set_token_charge(charge);
                return Ok(());
            }
            Ok(Err(d)) => return Err(ApiError::RateLimited(d)),
            Err(e) => {
                tracing::warn!(error = %e, "shared token limit unavailable; counting in process")
            }
        }
    }
    let charge = state
        .token_limits
        .check(key.id, tpm, estimate, std::time::Instant::now())
        .map_err(ApiError::RateLimited)?;
    log.set_token_charge(charge);
    Ok(())
}

/// Output tokens assumed for a budget reservation when neither the request nor the registry says.
const DEFAULT_MAX_OUTPUT: u64 = 32_768;

/// For keys with a budget: reserves the most this request can cost on any of its targets, or
/// refuses it (429). A target without a price cannot be budgeted, so it is dropped from the plan;
/// with none left the model cannot be used with this key (403).
async fn reserve_budget(
    state: &SharedState,
    key: &KeyRecord,
    log: &mut RequestLog,
    plan: &mut Plan,
    body: &[u8],
    max_output: Option<u64>,
) -> Result<(), ApiError> {
    if key.budget_usd.is_none() {
        return Ok(());
    }
    let catalog = state.registry.snapshot();
    let mut max = 0.0f64;
    let mut unpriced = Vec::new();
    plan.targets.retain(|route| {
        let provider = route.provider.name();
        let Some(prices) = state
            .pricer
            .prices(provider, &[route.upstream_model.as_str()])
        else {
            unpriced.push(route.upstream_model.clone());
            return false;
        };
        let limit = max_output.or_else(|| {
            let source = crate::registry::PROVIDER_MAP
                .iter()
                .find(|(_, g)| *g == provider)?
                .1;
            catalog
                .model(source, &route.upstream_model)
                .and_then(|m| m.limit.and_then(|l| l.output))
        });
        let prompt =
            crate::estimate::estimate(route.provider.kind(), &route.upstream_model, body, "")
                .prompt;
        max = max.max(crate::budget::max_cost(
            &prices,
            prompt,
            limit.unwrap_or(DEFAULT_MAX_OUTPUT),
        ));
        true
    });
    if plan.targets.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "This API key has a budget, and the model `{}` has no known price, so it cannot be used with this key.",
            unpriced.first().map(String::as_str).unwrap_or("?")
        )));
    }
    let reservation = match &state.coord {
        Some(c) => crate::budget::Budgets::reserve_shared(c, key, max).await?,
        None => state.budgets.reserve(key, max)?,
    };
    log.set_reservation(reservation);
    Ok(())
}

/// How long a stream may stay silent before the client gets its headers and a keep-alive comment
/// (after which no other target can be tried).
fn commit_after(state: &SharedState, route: &Route) -> Duration {
    let keepalive = state.config.server.sse_keepalive;
    let idle = route.provider.timeouts().idle;
    if keepalive.is_zero() {
        idle
    } else {
        keepalive.min(idle)
    }
}

async fn chat(
    state: &SharedState,
    key: &KeyRecord,
    log: &mut RequestLog,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    check_rate(state, key).await?;
    let body = body_bytes(state, body)?;
    let req = parse_chat_request(&body).map_err(|e| ApiError::invalid(e.message, e.param))?;
    let stream = req.stream == Some(true);
    log.row().stream = stream;
    let requested = req.model.clone();
    let mut plan = plan(state, key, log, &requested)?;
    let max_output = req.max_completion_tokens.or(req.max_tokens);
    reserve_budget(state, key, log, &mut plan, &body, max_output).await?;
    check_tokens(state, key, log, &plan, &body, max_output).await?;

    if stream {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let st = state.clone();
        let ok = attempts::run(state, &plan, log, move |route| {
            let mut req = req.clone();
            req.model = route.upstream_model.clone();
            let wait = commit_after(&st, &route);
            async move { first_chunk(&route, req, wait).await }
        })
        .await?;
        let (chunks, first) = ok.value;
        let route = ok.route;
        let estimate = EstimateInput {
            kind: route.provider.kind(),
            model: route.upstream_model.clone(),
            // A copy: `body` shares the connection's whole read buffer (8 KiB or more), which a
            // long stream would otherwise keep alive.
            request_body: Bytes::copy_from_slice(&body),
        };
        let timers = StreamTimers {
            keepalive: state.config.server.sse_keepalive,
            idle: route.provider.timeouts().idle,
        };
        let hard_stop = state.hard_stop.clone();
        let ticket = ok.ticket;
        return Ok(Reply::Stream(Box::new(move |log| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
            let relay = Relay::new(chunks, log, estimate, include_usage, hard_stop)
                .with_first(first)
                .with_ticket(ticket)
                .with_timers(timers);
            (relay, headers)
        })));
    }

    let ok = attempts::run(state, &plan, log, |route| {
        let mut req = req.clone();
        req.model = route.upstream_model.clone();
        async move { route.provider.chat(req).await }
    })
    .await?;
    ok.ticket.success();
    let answer = ok.value;
    if let Some(model) = answer.model {
        log.row().upstream_model = Some(model);
    }
    log.set_usage(answer.usage, "reported");
    let resp = json_answer(answer.body, log.price());
    Ok(Reply::Json(resp))
}

/// Opens the upstream stream and waits up to `wait` for its first chunk, so that a stream which
/// fails before sending anything can still be retried or sent elsewhere. A slower first chunk is
/// not an error: the stream is handed on and the relay keeps the client's connection alive.
async fn first_chunk(
    route: &Route,
    req: crate::domain::ChatRequest,
    wait: Duration,
) -> Result<(ChunkStream, Option<StreamEvent>), UpstreamError> {
    let mut chunks = route.provider.chat_stream(req).await?;
    match tokio::time::timeout(wait, chunks.next()).await {
        Ok(Some(Ok(ev))) => Ok((chunks, Some(ev))),
        Ok(Some(Err(e))) => Err(e),
        Ok(None) => Err(UpstreamError::BadResponse {
            provider: route.provider.name().to_string(),
            detail: "the stream ended before its first chunk".into(),
        }),
        Err(_) => Ok((chunks, None)),
    }
}

pub const COST_HEADER: &str = "x-gophergate-cost-usd";

/// A non-streamed JSON answer, with its cost in `x-gophergate-cost-usd` when it is priced.
fn json_answer(body: Bytes, cost: Option<f64>) -> Response {
    let mut resp = Response::new(Body::from(body));
    if let Some(cost) = cost
        && let Ok(v) = HeaderValue::from_str(&format_cost(cost))
    {
        resp.headers_mut().insert(COST_HEADER, v);
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// A cost as plain decimal dollars with enough digits for a single cheap request.
pub fn format_cost(usd: f64) -> String {
    let s = format!("{usd:.12}");
    let s = s.trim_end_matches('0');
    s.strip_suffix('.')
        .map(|t| format!("{t}.0"))
        .unwrap_or_else(|| s.to_string())
}

async fn embeddings(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut log = RequestLog::new(&state.logs, &rid.0, &key);
    let result = async {
        check_rate(&state, &key).await?;
        let body = body_bytes(&state, body)?;
        let req =
            parse_embeddings_request(&body).map_err(|e| ApiError::invalid(e.message, e.param))?;
        let requested = req.model.clone();
        let mut plan = plan(&state, &key, &mut log, &requested)?;
        reserve_budget(&state, &key, &mut log, &mut plan, &body, Some(0)).await?;
        check_tokens(&state, &key, &mut log, &plan, &body, Some(0)).await?;
        let ok = attempts::run(&state, &plan, &mut log, |route| {
            let mut req = req.clone();
            req.model = route.upstream_model.clone();
            async move { route.provider.embeddings(req).await }
        })
        .await?;
        ok.ticket.success();
        let answer = ok.value;
        log.set_usage(
            answer.usage,
            if answer.estimated {
                "estimated"
            } else {
                "reported"
            },
        );
        Ok(json_answer(answer.body, log.price()))
    }
    .await;
    match result {
        Ok(resp) => {
            log.finish(200, None).await;
            resp
        }
        Err(e) => {
            log.finish_error(&e).await;
            e.into_response()
        }
    }
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<ModelObject>,
}

#[derive(Serialize, Clone)]
struct ModelObject {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

/// Every model of every usable provider: configured ids and the registry's catalog, each listed as
/// `provider/model` and, where a bare id routes to that same provider, as the bare id too.
fn available_models(state: &SharedState) -> Vec<ModelObject> {
    let catalog = state.registry.snapshot();
    let mut out: Vec<ModelObject> = Vec::new();
    let providers = state.providers.load_full();
    for entry in providers.entries().filter(|e| e.adapter.is_some()) {
        let name = &entry.settings.name;
        let configured = entry.settings.models.iter().map(|m| (m.clone(), 0));
        let listed = catalog.models(name).map(|m| {
            (
                m.id.clone(),
                registry::release_timestamp(m.release_date.as_deref()),
            )
        });
        for (id, created) in configured.chain(listed) {
            let bare_routes_here = providers
                .resolve(&id, |m| catalog.provider_of(m).map(str::to_string))
                .is_ok_and(|r| r.provider.name() == name);
            if bare_routes_here {
                out.push(ModelObject {
                    id: id.clone(),
                    object: "model",
                    created,
                    owned_by: name.clone(),
                });
            }
            out.push(ModelObject {
                id: format!("{name}/{id}"),
                object: "model",
                created,
                owned_by: name.clone(),
            });
        }
    }
    // Routes are models of their own, served by whichever of their targets answers.
    for name in providers.routes().keys() {
        out.push(ModelObject {
            id: name.clone(),
            object: "model",
            created: 0,
            owned_by: "gophergate".into(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    out
}

async fn list_models(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
) -> Response {
    let data: Vec<ModelObject> = available_models(&state)
        .into_iter()
        .filter(|m| key.allows_model(&m.id))
        .collect();
    RequestLog::new(&state.logs, &rid.0, &key)
        .finish(200, None)
        .await;
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

async fn get_model(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
    Path(id): Path<String>,
) -> Response {
    let mut log = RequestLog::new(&state.logs, &rid.0, &key);
    log.row().model = Some(id.clone());
    let found = available_models(&state)
        .into_iter()
        .find(|m| m.id == id && key.allows_model(&m.id));
    match found {
        Some(m) => {
            log.finish(200, None).await;
            Json(m).into_response()
        }
        None => {
            let e = ApiError::ModelNotFound(id);
            log.finish_error(&e).await;
            e.into_response()
        }
    }
}

async fn unknown_route(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
    method: Method,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let message = format!("Unknown request URL: {method} {}.", uri.path());
    refuse(
        &state,
        &key,
        &rid,
        StatusCode::NOT_FOUND,
        message,
        "unknown_url",
    )
    .await
}

async fn method_not_allowed(
    State(state): State<SharedState>,
    Extension(key): Extension<Arc<KeyRecord>>,
    Extension(rid): Extension<RequestId>,
    method: Method,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let message = format!("Method {method} is not allowed for {}.", uri.path());
    refuse(
        &state,
        &key,
        &rid,
        StatusCode::METHOD_NOT_ALLOWED,
        message,
        "method_not_allowed",
    )
    .await
}

/// An authenticated request to no route: logged like any other, answered in OpenAI's shape.
async fn refuse(
    state: &SharedState,
    key: &KeyRecord,
    rid: &RequestId,
    status: StatusCode,
    message: String,
    code: &'static str,
) -> Response {
    let e = ApiError::InvalidRequest {
        message,
        param: None,
        code: Some(code),
    };
    let log = RequestLog::new(&state.logs, &rid.0, key);
    log.finish(status.as_u16(), Some(e.log_message())).await;
    let mut resp = e.into_response();
    *resp.status_mut() = status;
    resp
}
