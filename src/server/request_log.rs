//! `RequestLog`: the one log row a `/v1` request owes. Created once the key is known, filled in as
//! the request goes, and always written: on `finish`, or from `Drop` when the client went away
//! (the handler future or the stream body was dropped before finishing).

use crate::{
    budget::Reservation,
    domain::TokenCounts,
    error::ApiError,
    registry::pricing::Pricer,
    store::{KeyRecord, LogRow},
    workers::log_writer::LogSink,
};
use chrono::Utc;
use std::time::Instant;

pub struct RequestLog {
    sink: LogSink,
    row: Option<LogRow>,
    started: Instant,
    /// Set once the request has a provider: rows with usage are priced when they finish.
    pricer: Option<Pricer>,
    /// The model id sent upstream (the row keeps the one the upstream reported).
    sent_model: Option<String>,
    /// Budget held for this request; settled to the real cost when the row is priced.
    reservation: Option<Reservation>,
    /// Tokens counted against the key's per-minute limit; corrected to the real usage at the end.
    tokens: Option<crate::ratelimit::TokenCharge>,
    attempts: Vec<Attempt>,
}

/// One upstream attempt, as the log row's `attempts` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Attempt {
    /// `provider/model`.
    pub target: String,
    /// The upstream's HTTP status; `None` when none came (connection failed, timed out, skipped).
    pub status: Option<u16>,
    /// `None` for the attempt that answered.
    pub error: Option<String>,
    pub ms: u64,
}

impl RequestLog {
    pub fn new(sink: &LogSink, request_id: &str, key: &KeyRecord) -> Self {
        sink.stats()
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self {
            sink: sink.clone(),
            started: Instant::now(),
            pricer: None,
            sent_model: None,
            reservation: None,
            tokens: None,
            attempts: Vec::new(),
            row: Some(LogRow {
                request_id: request_id.to_string(),
                created_at: Utc::now(),
                key_id: Some(key.id),
                key_name: Some(key.name.clone()),
                ..LogRow::default()
            }),
        }
    }

    /// The row being built (always present until the log is finished).
    pub fn row(&mut self) -> &mut LogRow {
        // `row` is only taken by `take_row`, which consumes the log.
        self.row.get_or_insert_with(LogRow::default)
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Records where the request goes; from here on its usage is priced.
    pub fn set_route(&mut self, provider: &str, sent_model: &str, pricer: Pricer) {
        let row = self.row();
        row.provider = Some(provider.to_string());
        row.upstream_model = Some(sent_model.to_string());
        self.sent_model = Some(sent_model.to_string());
        self.pricer = Some(pricer);
    }

    /// Prices the row's usage now (idempotent); returns the cost when the model has a price.
    pub fn price(&mut self) -> Option<f64> {
        let pricer = self.pricer.clone()?;
        let row = self.row.as_mut()?;
        if row.price_source.is_some() {
            return row.cost_usd;
        }
        let (usage, provider) = (row.usage?, row.provider.clone()?);
        let sent = self.sent_model.clone().unwrap_or_default();
        let reported = row.upstream_model.clone().unwrap_or_default();
        let priced = pricer.price(&provider, &[sent.as_str(), reported.as_str()], &usage);
        row.cost_usd = priced.cost_usd;
        row.price_source = Some(priced.source.as_str().to_string());
        row.price_note = Some(priced.note);
        row.registry_version = priced.registry_version;
        row.cost_usd
    }

    pub fn set_reservation(&mut self, r: Option<Reservation>) {
        self.reservation = r;
    }

    pub fn set_token_charge(&mut self, charge: crate::ratelimit::TokenCharge) {
        self.tokens = Some(charge);
    }

    pub fn add_attempt(&mut self, attempt: Attempt) {
        // Bounded by the retry policy; the cap only guards the row's size.
        if self.attempts.len() < 64 {
            self.attempts.push(attempt);
        }
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    pub fn set_usage(&mut self, usage: Option<TokenCounts>, source: &'static str) {
        let row = self.row();
        row.usage_source = usage.is_some().then_some(source);
        row.usage = usage;
    }

    fn take_row(&mut self, status: u16, error: Option<String>) -> Option<LogRow> {
        let latency = self.elapsed_ms();
        let cost = self.price();
        if let Some(r) = self.reservation.take() {
            r.settle(cost.unwrap_or(0.0));
        }
        let used = self
            .row
            .as_ref()
            .and_then(|r| r.usage)
            .map(|u| u.prompt.saturating_add(u.completion));
        if let (Some(charge), Some(used)) = (self.tokens.take(), used) {
            charge.settle(used);
        }
        let mut row = self.row.take()?;
        if !self.attempts.is_empty() {
            row.attempts = serde_json::to_string(&self.attempts).ok();
        }
        self.sink
            .stats()
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        row.status = status;
        row.latency_ms = latency;
        if row.error.is_none() {
            row.error = error;
        }
        super::prometheus::record(&row);
        Some(row)
    }

    pub async fn finish(mut self, status: u16, error: Option<String>) {
        if let Some(row) = self.take_row(status, error) {
            self.sink.submit(row).await;
        }
    }

    pub async fn finish_error(self, err: &ApiError) {
        let status = err.status().as_u16();
        self.finish(status, Some(err.log_message())).await;
    }

    /// Finishes from a synchronous context (a stream's end or drop).
    pub fn finish_now(&mut self, status: u16, error: Option<String>) {
        if let Some(row) = self.take_row(status, error) {
            self.sink.submit_detached(row);
        }
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        // 499: nginx's "client closed request"; nothing was sent.
        self.finish_now(
            499,
            Some("client_disconnected: the client went away before the response".into()),
        );
    }
}
