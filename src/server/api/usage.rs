//! `GET /api/usage?group_by=key|model|provider|day&from=&to=`: totals answered from the daily
//! rollups only, so the cost of a query depends on the days and groups asked for, never on how many
//! requests were logged (and it still counts rows the retention worker has deleted).
//!
//! `from` and `to` are whole UTC days, both included: `YYYY-MM-DD`, or an RFC 3339 time, which
//! selects the UTC day it falls in. Defaults: `to` today, `from` 29 days before `to` (30 days);
//! `group_by` defaults to `day`. Optional `key_name`, `model`, `provider` narrow the totals to one
//! key, model or provider (e.g. one key's usage by model).

use super::{ApiFailure, Params};
use crate::{
    server::SharedState,
    store::{UsageGroup, UsageQuery, UsageTotals},
};
use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;
use std::collections::HashMap;

pub const DEFAULT_DAYS: u64 = 30;

#[derive(Debug, Serialize)]
pub struct UsageReport {
    pub group_by: &'static str,
    /// First day included, `YYYY-MM-DD` (UTC).
    pub from: String,
    /// Last day included, `YYYY-MM-DD` (UTC).
    pub to: String,
    pub items: Vec<UsageItem>,
}

#[derive(Debug, Serialize)]
pub struct UsageItem {
    /// The key name, model, provider or day (`YYYY-MM-DD`); null for requests without one (for
    /// example no provider when the model was unknown).
    pub group: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
    /// Sum over the priced requests; null when none was priced (never a made-up 0).
    pub cost_usd: Option<f64>,
    /// Requests with no known price, not included in `cost_usd`.
    pub unpriced_requests: u64,
}

impl From<UsageTotals> for UsageItem {
    fn from(t: UsageTotals) -> Self {
        Self {
            group: t.group,
            requests: t.requests,
            errors: t.errors,
            prompt_tokens: t.prompt_tokens,
            completion_tokens: t.completion_tokens,
            cached_tokens: t.cached_tokens,
            reasoning_tokens: t.reasoning_tokens,
            cost_usd: t.cost_usd,
            unpriced_requests: t.unpriced_requests,
        }
    }
}

pub async fn summary(
    State(state): State<SharedState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<UsageReport>, ApiFailure> {
    let q = parse(Params::new(query)?, Utc::now())?;
    let items = state.store.usage(&q).await?;
    Ok(Json(UsageReport {
        group_by: q.group_by.as_str(),
        from: q.from.format("%Y-%m-%d").to_string(),
        to: q.to.format("%Y-%m-%d").to_string(),
        items: items.into_iter().map(UsageItem::from).collect(),
    }))
}

fn parse(mut p: Params, now: DateTime<Utc>) -> Result<UsageQuery, ApiFailure> {
    let group_by = match p.take("group_by") {
        None => UsageGroup::Day,
        Some(g) => UsageGroup::parse(g.trim()).ok_or_else(|| {
            ApiFailure::invalid(
                "`group_by` must be one of key, model, provider, day.",
                Some("group_by"),
            )
        })?,
    };
    let (from, to) = date_range(&mut p, now)?;
    let (key_name, model, provider) = filters(&mut p);
    let q = UsageQuery {
        group_by,
        from,
        to,
        key_name,
        model,
        provider,
    };
    p.finish()?;
    Ok(q)
}

/// `from`/`to` (whole UTC days, both included; `to` defaults to today, `from` to the last
/// `DEFAULT_DAYS` days); shared with the charts.
pub(super) fn date_range(
    p: &mut Params,
    now: DateTime<Utc>,
) -> Result<(NaiveDate, NaiveDate), ApiFailure> {
    let day = |name: &'static str, v: Option<String>| -> Result<Option<NaiveDate>, ApiFailure> {
        v.filter(|v| !v.trim().is_empty())
            .map(|v| {
                parse_day(v.trim()).ok_or_else(|| {
                    ApiFailure::invalid(
                        format!("`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 time."),
                        Some(name),
                    )
                })
            })
            .transpose()
    };
    let from = day("from", p.take("from"))?;
    let to = day("to", p.take("to"))?.unwrap_or_else(|| now.date_naive());
    let from = match from {
        Some(f) => f,
        None => to
            .checked_sub_days(Days::new(DEFAULT_DAYS - 1))
            .unwrap_or(NaiveDate::MIN),
    };
    if from > to {
        return Err(ApiFailure::invalid(
            "`from` must not be after `to`.",
            Some("from"),
        ));
    }
    Ok((from, to))
}

/// The optional `key_name`, `model` and `provider` filters (empty means none).
pub(super) fn filters(p: &mut Params) -> (Option<String>, Option<String>, Option<String>) {
    let mut text = |name| p.take(name).filter(|s: &String| !s.is_empty());
    (text("key_name"), text("model"), text("provider"))
}

/// `YYYY-MM-DD`, or an RFC 3339 time taken as its UTC day. A `+` in an offset arrives as a space
/// when the client did not percent-encode it.
fn parse_day(s: &str) -> Option<NaiveDate> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d);
    }
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_rfc3339(&s.replace(' ', "+")))
        .ok()
        .map(|t| t.with_timezone(&Utc).date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_from_dates_and_times() {
        let d = |s| parse_day(s).map(|d| d.to_string());
        assert_eq!(d("2026-03-01").as_deref(), Some("2026-03-01"));
        assert_eq!(d("2026-03-01T23:30:00Z").as_deref(), Some("2026-03-01"));
        // 23:30 at UTC-05:00 is the next UTC day.
        assert_eq!(
            d("2026-03-01T23:30:00-05:00").as_deref(),
            Some("2026-03-02")
        );
        assert_eq!(
            d("2026-03-01T01:30:00 02:00").as_deref(),
            Some("2026-02-28")
        );
        assert_eq!(d("yesterday"), None);
        assert_eq!(d("2026-13-01"), None);
    }
}
