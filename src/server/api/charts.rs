//! `GET /api/charts/{metric}.svg`: the dashboard's charts, drawn on the server with `plotters`
//! (SVG backend) so the browser needs no charting code and the binary needs no JavaScript build.
//!
//! `metric` is `requests`, `tokens`, `cost` or `errors`, computed from the daily usage rollups
//! (`store.usage`, the same numbers as `/api/usage`), or `latency`, from the most recent request-log
//! rows (the rollups keep no latency). Query: `group_by=day|key|model|provider` (default `day`:
//! a line over the days; the others: horizontal bars, the top groups), `from`/`to` (whole UTC days,
//! as `/api/usage`), `key_name`/`model`/`provider` to narrow, `theme=light|dark`, `w`/`h` (the size in
//! CSS pixels the page shows it at, so text is drawn at its real size), and `v`, ignored, for
//! cache-busting. Money stays honest: the cost chart sums priced requests only and says how
//! many requests had no price.

use super::{ApiFailure, Params};
use crate::{
    server::SharedState,
    store::{LogQuery, UsageGroup, UsageQuery, UsageTotals},
};
use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};
use std::collections::HashMap;

/// Default size, and the limits of `w` and `h`.
pub const WIDTH: u32 = 720;
pub const HEIGHT: u32 = 260;
const SIZE_MIN: (u32, u32) = (280, 140);
const SIZE_MAX: (u32, u32) = (2000, 900);
/// Longest range a day chart draws (a year and a bit).
const MAX_DAYS: u64 = 400;
/// Bars drawn before the rest are summed into one "others" bar.
const MAX_BARS: usize = 12;
/// Requests drawn on the latency chart.
const LATENCY_ROWS: u32 = 200;
/// Points labelled with their value before labels would crowd: then only the highest and last.
const MAX_POINT_LABELS: usize = 14;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Requests,
    Tokens,
    Cost,
    Errors,
    Latency,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requests" => Self::Requests,
            "tokens" => Self::Tokens,
            "cost" => Self::Cost,
            "errors" => Self::Errors,
            "latency" => Self::Latency,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Theme {
    Light,
    Dark,
}

/// Colours match the dashboard's CSS (`--card`, `--text`, … in `app.css`).
struct Palette {
    background: RGBColor,
    text: RGBColor,
    muted: RGBColor,
    grid: RGBColor,
    axis: RGBColor,
    series: [RGBColor; 3],
}

impl Theme {
    fn palette(self) -> Palette {
        match self {
            Self::Light => Palette {
                background: RGBColor(0xff, 0xff, 0xff),
                text: RGBColor(0x1f, 0x29, 0x33),
                muted: RGBColor(0x5f, 0x6b, 0x7a),
                grid: RGBColor(0xe8, 0xeb, 0xf0),
                axis: RGBColor(0xc3, 0xcb, 0xd5),
                series: [
                    RGBColor(0x0e, 0x7c, 0x86),
                    RGBColor(0xd9, 0x77, 0x06),
                    RGBColor(0xc5, 0x30, 0x30),
                ],
            },
            Self::Dark => Palette {
                background: RGBColor(0x16, 0x1b, 0x22),
                text: RGBColor(0xe6, 0xed, 0xf3),
                muted: RGBColor(0x9a, 0xa5, 0xb4),
                grid: RGBColor(0x26, 0x2d, 0x37),
                axis: RGBColor(0x3d, 0x46, 0x53),
                series: [
                    RGBColor(0x3f, 0xc1, 0xc9),
                    RGBColor(0xf6, 0xad, 0x55),
                    RGBColor(0xfc, 0x81, 0x81),
                ],
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Usd,
    Ms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Points in order (days, requests), drawn as lines with shaded areas.
    Line,
    /// One horizontal bar per label.
    Bars,
}

/// One chart's numbers: a label per point and one or more series of the same length.
#[derive(Debug, Clone)]
pub struct ChartData {
    pub shape: Shape,
    pub unit: Unit,
    pub labels: Vec<String>,
    pub series: Vec<Series>,
    /// Series add up (tokens: input + output); else each is drawn from zero (latency and TTFT).
    pub stacked: bool,
    /// A line at the top right, e.g. how many requests had no price.
    pub note: Option<String>,
    /// Per point, a label that replaces the value's (`unpriced` where a cost is unknown).
    pub point_labels: Vec<Option<String>>,
}

/// The drawing's size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Default for Size {
    fn default() -> Self {
        Self {
            width: WIDTH,
            height: HEIGHT,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Series {
    pub name: &'static str,
    /// NaN where the point has no value (time to first token of an unstreamed request): such a
    /// series is drawn as dots, not as a line through made-up zeros.
    pub values: Vec<f64>,
    /// Index into the theme's series colours.
    pub color: usize,
}

pub async fn svg(
    State(state): State<SharedState>,
    Path(file): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiFailure> {
    let metric = file
        .strip_suffix(".svg")
        .and_then(Metric::parse)
        .ok_or_else(|| {
            ApiFailure::invalid(
                "Charts are requests.svg, tokens.svg, cost.svg, errors.svg or latency.svg.",
                Some("metric"),
            )
        })?;
    let (q, theme, size) = parse(Params::new(query)?, Utc::now())?;
    let data = match metric {
        Metric::Latency => {
            let rows = state
                .store
                .query_logs(&LogQuery {
                    limit: LATENCY_ROWS,
                    before: None,
                    key_name: q.key_name.clone(),
                    model: q.model.clone(),
                    provider: q.provider.clone(),
                    status: None,
                })
                .await?;
            let points: Vec<LatencyPoint> = rows
                .iter()
                .rev()
                .filter(|r| {
                    let day = r.row.created_at.date_naive();
                    q.from <= day && day <= q.to
                })
                .map(|r| LatencyPoint {
                    at: r.row.created_at,
                    latency_ms: r.row.latency_ms,
                    ttft_ms: r.row.ttft_ms,
                })
                .collect();
            latency_data(&points)
        }
        _ => {
            let totals = state.store.usage(&q).await?;
            usage_data(metric, &q, &totals)
        }
    };
    let svg = render(&data, theme, size).map_err(ApiFailure::internal)?;
    let mut resp = ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response();
    let h = resp.headers_mut();
    // Per-user data: never stored by a cache. The SVG has no script; it needs its inline styling.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    Ok(resp)
}

fn parse(mut p: Params, now: DateTime<Utc>) -> Result<(UsageQuery, Theme, Size), ApiFailure> {
    let group_by = match p.take("group_by") {
        None => UsageGroup::Day,
        Some(g) => UsageGroup::parse(g.trim()).ok_or_else(|| {
            ApiFailure::invalid(
                "`group_by` must be one of key, model, provider, day.",
                Some("group_by"),
            )
        })?,
    };
    let theme = match p.take("theme").as_deref().map(str::trim) {
        None | Some("" | "light") => Theme::Light,
        Some("dark") => Theme::Dark,
        Some(_) => {
            return Err(ApiFailure::invalid(
                "`theme` must be light or dark.",
                Some("theme"),
            ));
        }
    };
    let _cache_buster = p.take("v");
    let mut size = Size::default();
    for (name, slot, (min, max)) in [
        ("w", &mut size.width, (SIZE_MIN.0, SIZE_MAX.0)),
        ("h", &mut size.height, (SIZE_MIN.1, SIZE_MAX.1)),
    ] {
        if let Some(v) = p.take(name) {
            let n: f64 = v.trim().parse().map_err(|_| {
                ApiFailure::invalid(
                    format!("`{name}` must be a size in pixels."),
                    Some(if name == "w" { "w" } else { "h" }),
                )
            })?;
            // Whatever the page measured, within sane bounds.
            *slot = (n.round().max(0.0) as u32).clamp(min, max);
        }
    }
    let (from, to) = super::usage::date_range(&mut p, now)?;
    if (to - from).num_days() >= MAX_DAYS as i64 {
        return Err(ApiFailure::invalid(
            format!("A chart covers at most {MAX_DAYS} days."),
            Some("from"),
        ));
    }
    let (key_name, model, provider) = super::usage::filters(&mut p);
    let q = UsageQuery {
        group_by,
        from,
        to,
        key_name,
        model,
        provider,
    };
    p.finish()?;
    Ok((q, theme, size))
}

/// The rollup totals as a chart: a point per day (missing days are zeros) or a bar per group.
pub fn usage_data(metric: Metric, q: &UsageQuery, totals: &[UsageTotals]) -> ChartData {
    let (labels, rows): (Vec<String>, Vec<UsageTotals>) = if q.group_by == UsageGroup::Day {
        let by_day: HashMap<&str, &UsageTotals> = totals
            .iter()
            .filter_map(|t| t.group.as_deref().map(|g| (g, t)))
            .collect();
        q.from
            .iter_days()
            .take_while(|d| *d <= q.to)
            .map(|d| {
                let key = d.format("%Y-%m-%d").to_string();
                let row = by_day.get(key.as_str()).map(|t| (*t).clone());
                (d.format("%b %-d").to_string(), row.unwrap_or_default())
            })
            .unzip()
    } else {
        let mut rows: Vec<UsageTotals> = totals.to_vec();
        rows.sort_by(|a, b| {
            metric_value(metric, b)
                .total_cmp(&metric_value(metric, a))
                .then_with(|| a.group.cmp(&b.group))
        });
        if rows.len() > MAX_BARS {
            let rest = rows.split_off(MAX_BARS - 1);
            let mut other = UsageTotals {
                group: Some(format!("{} others", rest.len())),
                ..Default::default()
            };
            for r in &rest {
                other.requests += r.requests;
                other.errors += r.errors;
                other.prompt_tokens += r.prompt_tokens;
                other.completion_tokens += r.completion_tokens;
                other.unpriced_requests += r.unpriced_requests;
                other.cost_usd = match (other.cost_usd, r.cost_usd) {
                    (None, None) => None,
                    (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                };
            }
            rows.push(other);
        }
        rows.into_iter()
            .map(|r| (r.group.clone().unwrap_or_else(|| "(none)".into()), r))
            .unzip()
    };
    let col = |f: fn(&UsageTotals) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let (series, unit, stacked) = match metric {
        Metric::Requests => (
            vec![Series {
                name: "requests",
                values: col(|t| t.requests as f64),
                color: 0,
            }],
            Unit::Count,
            false,
        ),
        Metric::Tokens => (
            vec![
                Series {
                    name: "input",
                    values: col(|t| t.prompt_tokens as f64),
                    color: 0,
                },
                Series {
                    name: "output",
                    values: col(|t| t.completion_tokens as f64),
                    color: 1,
                },
            ],
            Unit::Count,
            true,
        ),
        Metric::Cost => (
            vec![Series {
                name: "cost (USD)",
                values: col(|t| t.cost_usd.unwrap_or(0.0)),
                color: 0,
            }],
            Unit::Usd,
            false,
        ),
        Metric::Errors | Metric::Latency => (
            vec![Series {
                name: "errors (status ≥ 400)",
                values: col(|t| t.errors as f64),
                color: 2,
            }],
            Unit::Count,
            false,
        ),
    };
    let unpriced: u64 = rows.iter().map(|r| r.unpriced_requests).sum();
    let note = (metric == Metric::Cost && unpriced > 0).then(|| {
        format!(
            "priced requests only: {unpriced} unpriced request{} not counted",
            if unpriced == 1 { "" } else { "s" }
        )
    });
    let bars = q.group_by != UsageGroup::Day;
    // Money is never a made-up $0: a group with requests but no known price says so.
    let point_labels = rows
        .iter()
        .map(|r| match (metric, r.cost_usd) {
            (Metric::Cost, None) if r.requests > 0 => Some("unpriced".to_string()),
            (Metric::Cost, Some(c)) if bars && r.unpriced_requests > 0 => Some(format!(
                "{} + {} unpriced",
                format_value(Unit::Usd, c),
                r.unpriced_requests
            )),
            _ => None,
        })
        .collect();
    ChartData {
        shape: if bars { Shape::Bars } else { Shape::Line },
        unit,
        labels,
        series,
        stacked,
        note,
        point_labels,
    }
}

fn metric_value(metric: Metric, t: &UsageTotals) -> f64 {
    match metric {
        Metric::Requests | Metric::Latency => t.requests as f64,
        Metric::Tokens => (t.prompt_tokens + t.completion_tokens) as f64,
        Metric::Cost => t.cost_usd.unwrap_or(0.0),
        Metric::Errors => t.errors as f64,
    }
}

#[derive(Debug, Clone)]
pub struct LatencyPoint {
    pub at: DateTime<Utc>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
}

/// Recent requests oldest first: total latency, and time to first token where streamed.
pub fn latency_data(points: &[LatencyPoint]) -> ChartData {
    let mut sorted: Vec<u64> = points.iter().map(|p| p.latency_ms).collect();
    sorted.sort_unstable();
    let pct = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    let note = (!sorted.is_empty()).then(|| {
        format!(
            "last {} requests: p50 {}, p95 {}",
            sorted.len(),
            format_value(Unit::Ms, pct(0.5) as f64),
            format_value(Unit::Ms, pct(0.95) as f64)
        )
    });
    let mut series = vec![Series {
        name: "latency",
        values: points.iter().map(|p| p.latency_ms as f64).collect(),
        color: 0,
    }];
    if points.iter().any(|p| p.ttft_ms.is_some()) {
        series.push(Series {
            name: "time to first token",
            values: points
                .iter()
                .map(|p| p.ttft_ms.map_or(f64::NAN, |t| t as f64))
                .collect(),
            color: 1,
        });
    }
    ChartData {
        shape: Shape::Line,
        unit: Unit::Ms,
        labels: points
            .iter()
            .map(|p| p.at.format("%H:%M:%S").to_string())
            .collect(),
        series,
        stacked: false,
        note,
        point_labels: Vec::new(),
    }
}

/// Short human numbers: `950`, `1.2k`, `3.4M`; dollars with enough digits to see a small cost.
pub fn format_value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Count => {
            let a = v.abs();
            if a >= 1e9 {
                format!("{:.1}G", v / 1e9)
            } else if a >= 1e6 {
                format!("{:.1}M", v / 1e6)
            } else if a >= 1e4 {
                format!("{:.0}k", v / 1e3)
            } else if a >= 1e3 {
                format!("{:.1}k", v / 1e3)
            } else if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        Unit::Usd => {
            let a = v.abs();
            if a == 0.0 {
                "$0".into()
            } else if a >= 100.0 {
                format!("${v:.0}")
            } else if a >= 1.0 {
                format!("${v:.2}")
            } else if a >= 0.01 {
                format!("${v:.3}")
            } else {
                format!("${v:.6}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        }
        Unit::Ms => {
            if v >= 10_000.0 {
                format!("{:.0} s", v / 1000.0)
            } else if v >= 1000.0 {
                format!("{:.1} s", v / 1000.0)
            } else {
                format!("{v:.0} ms")
            }
        }
    }
}

type DrawResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Draws the chart as an SVG document (width and height set, with a `viewBox`, so it scales).
/// Bar charts take the width and grow in height with the number of bars.
pub fn render(data: &ChartData, theme: Theme, size: Size) -> Result<String, String> {
    let mut out = String::new();
    let pal = theme.palette();
    let drawn = match data.shape {
        Shape::Line => draw_line(&mut out, data, &pal, size),
        Shape::Bars => draw_bars(&mut out, data, &pal, size.width),
    };
    drawn.map_err(|e| format!("chart drawing failed: {e}"))?;
    Ok(out)
}

/// The top of each series: its own values, or the running sum when stacked.
fn tops(data: &ChartData) -> Vec<Vec<f64>> {
    let mut acc = vec![0.0; data.labels.len()];
    data.series
        .iter()
        .map(|s| {
            if data.stacked {
                for (a, v) in acc.iter_mut().zip(&s.values) {
                    *a += v;
                }
                acc.clone()
            } else {
                s.values.clone()
            }
        })
        .collect()
}

/// The series whose points carry value labels: the total when stacked, else the first.
fn labelled_series(data: &ChartData, tops: &[Vec<f64>]) -> Option<Vec<f64>> {
    if data.stacked {
        tops.last().cloned()
    } else {
        tops.first().cloned()
    }
}

fn point_label(data: &ChartData, i: usize, v: f64) -> String {
    data.point_labels
        .get(i)
        .cloned()
        .flatten()
        .unwrap_or_else(|| format_value(data.unit, v))
}

fn y_max(tops: &[Vec<f64>], unit: Unit) -> f64 {
    let max = tops.iter().flatten().copied().fold(0.0_f64, f64::max);
    if max <= 0.0 {
        return match unit {
            Unit::Usd => 0.01,
            _ => 1.0,
        };
    }
    // Headroom for the value labels.
    let max = max * 1.18;
    if unit == Unit::Count && max < 5.0 {
        max.ceil()
    } else {
        max
    }
}

fn font(size: u32, color: &RGBColor) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(color)
}

fn draw_line(out: &mut String, data: &ChartData, pal: &Palette, size: Size) -> DrawResult<()> {
    let root = SVGBackend::with_string(out, (size.width, size.height)).into_drawing_area();
    root.fill(&pal.background)?;
    let n = data.labels.len() as i32;
    let tops = tops(data);
    let ymax = y_max(&tops, data.unit);
    // One point still needs an axis of some width: centre it.
    let xrange = if n <= 1 { -1..1 } else { 0..n - 1 };
    // About one x label per 80 pixels, never more than there are points.
    let x_labels = ((size.width / 80).max(2) as usize).min(n.max(1) as usize);
    let mut chart = ChartBuilder::on(&root)
        .margin_top(header_height(data, size.width).max(14))
        .margin_right(24)
        .margin_left(6)
        .margin_bottom(4)
        .x_label_area_size(26)
        .y_label_area_size(62)
        .build_cartesian_2d(xrange, 0.0..ymax)?;
    let labels = &data.labels;
    let x_fmt = |x: &i32| {
        usize::try_from(*x)
            .ok()
            .and_then(|i| labels.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let y_fmt = |y: &f64| format_value(data.unit, *y);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(pal.grid)
        .axis_style(pal.axis)
        .x_labels(x_labels)
        .y_labels(5)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(font(12, &pal.muted))
        .draw()?;

    // Stacked series are drawn top first, so the lower ones paint over them.
    let order: Vec<usize> = if data.stacked {
        (0..data.series.len()).rev().collect()
    } else {
        (0..data.series.len()).collect()
    };
    for &si in &order {
        let s = &data.series[si];
        let color = pal.series[s.color % pal.series.len()];
        let points: Vec<(i32, f64)> = tops[si]
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i32, *v))
            .collect();
        if points.iter().any(|(_, v)| v.is_nan()) {
            chart.draw_series(
                points
                    .iter()
                    .filter(|(_, v)| v.is_finite())
                    .map(|p| Circle::new(*p, 3, color.filled())),
            )?;
            continue;
        }
        chart.draw_series(
            AreaSeries::new(points.clone(), 0.0, color.mix(0.16))
                .border_style(color.stroke_width(2)),
        )?;
        if points.len() as u32 <= size.width / 12 {
            chart.draw_series(
                points
                    .iter()
                    .map(|p| Circle::new(*p, 2, color.filled()).into_dyn()),
            )?;
        }
    }

    if let Some(top) = labelled_series(data, &tops) {
        let color = pal.text;
        let with_override: Vec<usize> = (0..top.len())
            .filter(|&i| matches!(data.point_labels.get(i), Some(Some(_))))
            .collect();
        let mut chosen = labelled_points(&top, (size.width / 48) as usize);
        for i in with_override {
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chart.draw_series(chosen.into_iter().map(|i| {
            Text::new(
                point_label(data, i, top[i]),
                (i as i32, top[i]),
                font(11, &color).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )
        }))?;
    }
    draw_header(&root, data, pal, size.width)?;
    root.present()?;
    Ok(())
}

/// Which points get a value label: all non-zero ones when they fit, else the highest and the
/// last.
fn labelled_points(values: &[f64], room: usize) -> Vec<usize> {
    let nonzero: Vec<usize> = (0..values.len()).filter(|&i| values[i] > 0.0).collect();
    if nonzero.len() <= room.clamp(2, MAX_POINT_LABELS) {
        return nonzero;
    }
    let max = nonzero
        .iter()
        .copied()
        .max_by(|&a, &b| values[a].total_cmp(&values[b]));
    let last = nonzero.last().copied();
    let mut v: Vec<usize> = max.into_iter().chain(last).collect();
    v.dedup();
    v
}

/// Pixels above the plot for the legend and the note: one row, or two when a narrow chart has
/// both.
fn header_height(data: &ChartData, width: u32) -> u32 {
    match (data.series.len() > 1, data.note.is_some()) {
        (true, true) if width < 640 => 46,
        (false, false) => 0,
        _ => 30,
    }
}

/// The note (top right, or top left beside no legend); an empty chart says so in the middle.
fn draw_header<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    data: &ChartData,
    pal: &Palette,
    width: u32,
) -> DrawResult<()>
where
    DB::ErrorType: 'static,
{
    // The legend, when there is more than one series: a swatch and a name each, left to right.
    if data.series.len() > 1 {
        let mut x = 66;
        for series in &data.series {
            let color = pal.series[series.color % pal.series.len()];
            if series.values.iter().any(|v| v.is_nan()) {
                root.draw(&Circle::new((x + 5, 12), 4, color.filled()))?;
            } else {
                root.draw(&Rectangle::new([(x, 7), (x + 10, 17)], color.filled()))?;
            }
            root.draw(&Text::new(
                series.name,
                (x + 15, 6),
                font(12, &pal.text).pos(Pos::new(HPos::Left, VPos::Top)),
            ))?;
            x += 15 + 7 * series.name.chars().count() as i32 + 18;
        }
    }
    if let Some(note) = &data.note {
        root.draw(&Text::new(
            note.clone(),
            (
                width.saturating_sub(12) as i32,
                if header_height(data, width) > 30 {
                    24
                } else {
                    6
                },
            ),
            font(12, &pal.muted).pos(Pos::new(HPos::Right, VPos::Top)),
        ))?;
    }
    let empty = data
        .series
        .iter()
        .all(|s| s.values.iter().all(|v| *v == 0.0))
        && data.point_labels.iter().all(Option::is_none);
    if empty {
        let (w, h) = root.dim_in_pixel();
        root.draw(&Text::new(
            if data.labels.is_empty() {
                "No requests yet"
            } else {
                "No requests in this range"
            },
            (w as i32 / 2 + 28, h as i32 / 2 - 8),
            font(14, &pal.muted).pos(Pos::new(HPos::Center, VPos::Center)),
        ))?;
    }
    Ok(())
}

fn draw_bars(out: &mut String, data: &ChartData, pal: &Palette, width: u32) -> DrawResult<()> {
    let n = data.labels.len().max(1);
    let height = (48 + 32 * n as u32 + header_height(data, width)).max(150);
    let root = SVGBackend::with_string(out, (width, height)).into_drawing_area();
    root.fill(&pal.background)?;
    let tops = tops(data);
    // Room on the right for the value labels.
    let xmax = y_max(&tops, data.unit) * 1.25;
    let label_area = (width / 4).clamp(90, 200);
    let mut chart = ChartBuilder::on(&root)
        .margin_top(header_height(data, width).max(12))
        .margin_right(24)
        .margin_left(6)
        .margin_bottom(4)
        .x_label_area_size(26)
        .y_label_area_size(label_area)
        .build_cartesian_2d(
            0.0..xmax,
            // Key points named, so one bar (a range of width zero) still gets its label.
            (0..n as i32 - 1)
                .with_key_points((0..n as i32).collect::<Vec<_>>())
                .into_segmented(),
        )?;
    // The biggest bar on top: row i sits at position n - 1 - i.
    let pos = |i: usize| (n - 1 - i) as i32;
    let max_chars = (label_area / 7).max(8) as usize;
    // The group names are drawn beside the axis below, not as mesh labels: plotters gives a
    // single-segment axis no key point to label.
    let y_fmt = |_: &SegmentValue<i32>| String::new();
    let x_fmt = |x: &f64| format_value(data.unit, *x);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(pal.grid)
        .axis_style(pal.axis)
        .y_labels(n)
        .x_labels(((width / 140).max(2)) as usize)
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .label_style(font(12, &pal.muted))
        .draw()?;
    let mut base = vec![0.0; data.labels.len()];
    for s in &data.series {
        let color = pal.series[s.color % pal.series.len()];
        let bars: Vec<Rectangle<(f64, SegmentValue<i32>)>> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let from = if data.stacked { base[i] } else { 0.0 };
                let mut r = Rectangle::new(
                    [
                        (from, SegmentValue::Exact(pos(i))),
                        (from + v, SegmentValue::Exact(pos(i) + 1)),
                    ],
                    color.filled(),
                );
                r.set_margin(7, 7, 0, 0);
                r
            })
            .collect();
        chart.draw_series(bars)?;
        if data.stacked {
            for (b, v) in base.iter_mut().zip(&s.values) {
                *b += v;
            }
        }
    }
    for (i, label) in data.labels.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, SegmentValue::CenterOf(pos(i))));
        root.draw(&Text::new(
            truncate(label, max_chars),
            (x - 8, y),
            font(12, &pal.muted).pos(Pos::new(HPos::Right, VPos::Center)),
        ))?;
    }
    if let Some(top) = labelled_series(data, &tops) {
        let color = pal.text;
        chart.draw_series(top.iter().enumerate().map(|(i, v)| {
            Text::new(
                format!(" {}", point_label(data, i, *v)),
                (*v, SegmentValue::CenterOf(pos(i))),
                font(12, &color).pos(Pos::new(HPos::Left, VPos::Center)),
            )
        }))?;
    }
    draw_header(&root, data, pal, width)?;
    root.present()?;
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn totals(group: &str, requests: u64, cost: Option<f64>, unpriced: u64) -> UsageTotals {
        UsageTotals {
            group: Some(group.into()),
            requests,
            errors: requests / 4,
            prompt_tokens: requests * 100,
            completion_tokens: requests * 40,
            cost_usd: cost,
            unpriced_requests: unpriced,
            ..Default::default()
        }
    }

    fn query(group_by: UsageGroup, from: &str, to: &str) -> UsageQuery {
        UsageQuery {
            group_by,
            from: day(from),
            to: day(to),
            key_name: None,
            model: None,
            provider: None,
        }
    }

    /// The text of every `<text>` element, in order.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                let body = &t[t.find('>')? + 1..];
                Some(body[..body.find("</text>")?].trim().to_string())
            })
            .collect()
    }

    #[test]
    fn a_day_chart_renders_with_day_and_value_labels() {
        let q = query(UsageGroup::Day, "2026-05-12", "2026-05-15");
        let rows = [
            totals("2026-05-12", 42, Some(0.5), 0),
            totals("2026-05-14", 1234, Some(1.25), 3),
        ];
        let data = usage_data(Metric::Requests, &q, &rows);
        // Days without traffic are points at zero, not gaps.
        assert_eq!(data.labels, ["May 12", "May 13", "May 14", "May 15"]);
        assert_eq!(data.series[0].values, [42.0, 0.0, 1234.0, 0.0]);
        let svg = render(&data, Theme::Light, Size::default()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("viewBox=\"0 0 720 260\""));
        let t = texts(&svg);
        for label in ["May 12", "May 13", "May 14", "May 15", "42", "1.2k"] {
            assert!(t.iter().any(|x| x == label), "{label} missing from {t:?}");
        }
        // The light background.
        assert!(svg.contains("#FFFFFF"), "light background");
        let dark = render(&data, Theme::Dark, Size::default()).unwrap();
        assert!(dark.contains("#161B22"), "dark background");
    }

    #[test]
    fn the_cost_chart_sums_priced_requests_and_says_what_is_unpriced() {
        let q = query(UsageGroup::Day, "2026-05-14", "2026-05-15");
        let rows = [
            totals("2026-05-14", 10, Some(0.0123), 2),
            totals("2026-05-15", 5, None, 5),
        ];
        let data = usage_data(Metric::Cost, &q, &rows);
        assert_eq!(data.series[0].values, [0.0123, 0.0]);
        let t = texts(&render(&data, Theme::Dark, Size::default()).unwrap());
        assert!(t.iter().any(|x| x == "$0.012"), "{t:?}");
        assert!(
            t.iter()
                .any(|x| x.contains("7 unpriced requests not counted")),
            "{t:?}"
        );
        // The day with requests but no price is marked, not drawn as a $0 day.
        assert!(t.iter().any(|x| x == "unpriced"), "{t:?}");

        // By model: an unpriced model is "unpriced", a partly priced one says how many were not.
        let q = query(UsageGroup::Model, "2026-05-01", "2026-05-15");
        let rows = [
            totals("gpt-4o-mini", 10, Some(0.5), 2),
            totals("my-local-llama", 5, None, 5),
        ];
        let t = texts(
            &render(
                &usage_data(Metric::Cost, &q, &rows),
                Theme::Light,
                Size::default(),
            )
            .unwrap(),
        );
        assert!(t.iter().any(|x| x == "$0.500 + 2 unpriced"), "{t:?}");
        assert!(t.iter().any(|x| x == "unpriced"), "{t:?}");
    }

    #[test]
    fn one_bar_and_custom_sizes_render() {
        let q = query(UsageGroup::Provider, "2026-05-01", "2026-05-15");
        let data = usage_data(Metric::Requests, &q, &[totals("openai", 3, None, 3)]);
        let svg = render(
            &data,
            Theme::Light,
            Size {
                width: 400,
                height: 200,
            },
        )
        .unwrap();
        assert!(svg.contains("width=\"400\""), "{svg}");
        let t = texts(&svg);
        assert!(
            t.iter().any(|x| x == "openai") && t.iter().any(|x| x == "3"),
            "{t:?}"
        );

        let q = query(UsageGroup::Day, "2026-05-01", "2026-05-30");
        let rows: Vec<UsageTotals> = (1..=30)
            .map(|d| totals(&format!("2026-05-{d:02}"), d, Some(0.1), 0))
            .collect();
        let svg = render(
            &usage_data(Metric::Requests, &q, &rows),
            Theme::Dark,
            Size {
                width: 360,
                height: 180,
            },
        )
        .unwrap();
        assert!(svg.contains("viewBox=\"0 0 360 180\""));
        // Too many points to label each: the highest (and last) only.
        let t = texts(&svg);
        assert!(t.iter().any(|x| x == "30"), "{t:?}");
        assert!(!t.iter().any(|x| x == "17"), "{t:?}");
    }

    #[test]
    fn grouped_charts_are_bars_named_by_group() {
        let q = query(UsageGroup::Model, "2026-05-01", "2026-05-15");
        let rows = [
            totals("gpt-4o-mini", 30, Some(0.2), 0),
            totals("gemini-2.5-flash", 70, Some(0.1), 0),
        ];
        let data = usage_data(Metric::Tokens, &q, &rows);
        assert_eq!(data.shape, Shape::Bars);
        // Biggest first.
        assert_eq!(data.labels, ["gemini-2.5-flash", "gpt-4o-mini"]);
        let t = texts(&render(&data, Theme::Light, Size::default()).unwrap());
        for label in ["gemini-2.5-flash", "gpt-4o-mini", "input", "output", "9.8k"] {
            assert!(t.iter().any(|x| x == label), "{label} missing from {t:?}");
        }
    }

    #[test]
    fn many_groups_fold_into_others() {
        let q = query(UsageGroup::Key, "2026-05-01", "2026-05-15");
        let rows: Vec<UsageTotals> = (0..20)
            .map(|i| totals(&format!("key-{i:02}"), 100 - i, None, 100 - i))
            .collect();
        let data = usage_data(Metric::Requests, &q, &rows);
        assert_eq!(data.labels.len(), MAX_BARS);
        assert_eq!(data.labels.last().unwrap(), "9 others");
        let others: f64 = (11..20).map(|i| 100.0 - i as f64).sum();
        assert_eq!(*data.series[0].values.last().unwrap(), others);
        render(&data, Theme::Light, Size::default()).unwrap();
    }

    #[test]
    fn empty_ranges_and_latency_render() {
        let q = query(UsageGroup::Day, "2026-05-15", "2026-05-15");
        let data = usage_data(Metric::Errors, &q, &[]);
        let t = texts(&render(&data, Theme::Light, Size::default()).unwrap());
        assert!(t.iter().any(|x| x == "No requests in this range"), "{t:?}");

        let at = DateTime::parse_from_rfc3339("2026-05-15T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let points: Vec<LatencyPoint> = (0..5)
            .map(|i| LatencyPoint {
                at: at + chrono::Duration::seconds(i),
                latency_ms: 100 * (i as u64 + 1),
                ttft_ms: (i % 2 == 0).then_some(40),
            })
            .collect();
        let data = latency_data(&points);
        assert_eq!(data.series.len(), 2);
        // Unstreamed requests have no time to first token, not a zero one.
        assert!(data.series[1].values[1].is_nan());
        let t = texts(&render(&data, Theme::Dark, Size::default()).unwrap());
        assert!(t.iter().any(|x| x == "10:00:00"), "{t:?}");
        assert!(t.iter().any(|x| x == "500 ms"), "{t:?}");
        assert!(
            t.iter()
                .any(|x| x == "last 5 requests: p50 300 ms, p95 500 ms"),
            "{t:?}"
        );
        let t = texts(&render(&latency_data(&[]), Theme::Light, Size::default()).unwrap());
        assert!(t.iter().any(|x| x == "No requests yet"), "{t:?}");
    }

    #[test]
    fn values_format_short_and_money_keeps_small_amounts() {
        assert_eq!(format_value(Unit::Count, 950.0), "950");
        assert_eq!(format_value(Unit::Count, 1234.0), "1.2k");
        assert_eq!(format_value(Unit::Count, 3_400_000.0), "3.4M");
        assert_eq!(format_value(Unit::Usd, 0.000123), "$0.000123");
        assert_eq!(format_value(Unit::Usd, 12.345), "$12.35");
        assert_eq!(format_value(Unit::Ms, 1500.0), "1.5 s");
    }

    #[test]
    fn query_parsing() {
        let now = Utc::now();
        let params = |pairs: &[(&str, &str)]| {
            Params::new(Ok(Query(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            )))
            .unwrap()
        };
        let (q, theme, size) = parse(
            params(&[
                ("from", "2026-05-01"),
                ("to", "2026-05-15"),
                ("theme", "dark"),
                ("v", "123"),
                ("w", "511.6"),
                ("h", "99999"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            (q.from, q.to, theme),
            (day("2026-05-01"), day("2026-05-15"), Theme::Dark)
        );
        assert_eq!(
            size,
            Size {
                width: 512,
                height: SIZE_MAX.1
            }
        );
        assert!(parse(params(&[("w", "wide")]), now).is_err());
        assert!(parse(params(&[("theme", "pink")]), now).is_err());
        assert!(parse(params(&[("from", "2020-01-01"), ("to", "2026-01-01")]), now).is_err());
        assert!(parse(params(&[("colour", "red")]), now).is_err());
    }
}
