//! A device's page `/device/NAME` (its live state in words, history charts, configurations,
//! events and sessions, drawn server-side from the ledger) and its history API
//! `/api/v1/devices/NAME/history`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::analysis::history::{default_step, device_history, range_bounds, Range as HistoryRange};
use crate::analysis::{self, ConfigRow, Metric};
use crate::config::Thresholds;
use crate::web::pages::*;
use crate::web::render::html::{self, url_segment, Context};
use crate::web::render::text::escape;

/// `/device/NAME` and `/api/v1/devices/NAME/history`.
pub fn routes(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/device/{name}", get(device_page))
        .route("/api/v1/devices/{name}/history", get(api_history))
        .with_state(pages)
}

#[derive(Debug, serde::Deserialize)]
pub struct HistoryParams {
    since: Option<String>,
    until: Option<String>,
    step: Option<String>,
}

/// `GET /api/v1/devices/NAME/history?since=&until=&step=`: times as RFC 3339, `24h`-style
/// durations before now or Unix seconds; default the last 24 hours in about 600 points.
pub async fn api_history(
    State(pages): State<Arc<Pages>>,
    Path(name): Path<String>,
    Query(params): Query<HistoryParams>,
) -> Response {
    let now = crate::time::now_unix();
    let parse = |what: &str, text: &Option<String>| -> Result<Option<f64>, PageError> {
        match text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(None),
            Some(t) => match t.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Some(v)),
                _ => crate::time::parse(t, std::time::SystemTime::now())
                    .map(Some)
                    .map_err(|e| PageError::BadRequest(format!("{what}: {e}"))),
            },
        }
    };
    let bounds = parse("since", &params.since).and_then(|since| Ok((since, parse("until", &params.until)?)));
    let (since, until) = match bounds {
        Ok((since, until)) => {
            let until = until.unwrap_or(now);
            (since.unwrap_or(until - 86_400.0), until)
        }
        Err(e) => return e.json(),
    };
    // Times a ledger can hold: from 1970 to a day ahead of this clock.
    let plausible = |t: f64| (0.0..=now + 86_400.0).contains(&t);
    if !plausible(since) || !plausible(until) {
        return PageError::BadRequest("since and until must lie between 1970 and tomorrow".into()).json();
    }
    if since >= until {
        return PageError::BadRequest("since must be before until".into()).json();
    }
    let step = match params.step.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => default_step(since, until),
        Some(text) => match text.parse::<f64>() {
            // At most 10,000 points, whatever step is asked for.
            Ok(step) if step.is_finite() && step >= 1.0 => step.max((until - since) / 10_000.0),
            _ => {
                return PageError::BadRequest(format!("step must be a number of seconds, at least 1, not \"{text}\""))
                    .json()
            }
        },
    };
    let thresholds = pages.thresholds();
    let result = pages
        .render(move |ledger| {
            let device = known_device(ledger, &name)?;
            let history = device_history(ledger, &device, since, until, step)?;
            json_body(&crate::web::api::HistoryJson {
                history,
                max_temp_warning_c: thresholds.warning_celsius,
                max_temp_shutdown_c: thresholds.shutdown_celsius,
            })
        })
        .await;
    json_answer(result, None)
}

#[derive(Debug, serde::Deserialize)]
pub struct DeviceParams {
    range: Option<String>,
}

/// `GET /device/NAME?range=1h|24h|7d|30d|all`.
pub async fn device_page(
    State(pages): State<Arc<Pages>>,
    Path(name): Path<String>,
    Query(params): Query<DeviceParams>,
) -> Response {
    let range = params
        .range
        .as_deref()
        .and_then(HistoryRange::parse)
        .unwrap_or(HistoryRange::Day);
    let thresholds = pages.thresholds();
    let warmup_seconds = pages.warmup_seconds;
    let live = super::api::fleet_json(&pages.fleet)
        .devices
        .into_iter()
        .find(|device| device.name == name);
    let result = pages
        .render(move |ledger| {
            // A configured miner that never answered has no history yet, but a page that
            // says where it is looked for and what went wrong.
            let device = match (ledger.find_device(&name)?, live.as_ref()) {
                (Some(device), _) => device,
                (None, Some(live)) => return Ok(never_polled_document(&name, live)),
                (None, None) => return Err(PageError::UnknownDevice(name)),
            };
            let (since, until) = range_bounds(ledger, &device, range, crate::time::now_unix())?;
            let history = device_history(ledger, &device, since, until, default_step(since, until))?;
            let rows = analysis::compare_configs(
                ledger,
                &analysis::Query {
                    device_id: Some(device.id),
                    warmup_seconds,
                    ..Default::default()
                },
            )?;
            Ok(device_document(&name, live, range, &history, rows, &thresholds))
        })
        .await;
    page_answer(result)
}

/// What is wrong with a device now, in words (each reason with its chip or fault text), why
/// it last booted, and its chips where the firmware reports each.
fn device_condition(live: &super::api::DeviceJson) -> String {
    let mut out = String::new();
    if !live.problems.is_empty() {
        out.push_str("<ul class=\"problems\">");
        for problem in &live.problems {
            let _ = write!(
                out,
                "<li><span class=\"badge problem\">{}</span>",
                escape(&problem.replace('_', " "))
            );
            if let Some(detail) = live.problem_details.get(problem) {
                let _ = write!(out, " {}", escape(detail));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>\n");
    }
    let mut facts = Vec::new();
    if let Some(pool) = &live.pool {
        let how: Vec<&str> = [
            live.pool_protocol.as_deref(),
            live.pool_tls.map(|tls| if tls { "TLS" } else { "no TLS" }),
            (live.fallback_pool == Some(true)).then_some("fallback"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let how = if how.is_empty() {
            String::new()
        } else {
            format!(" ({})", how.join(", "))
        };
        facts.push(format!("pool {}{}", escape(pool), escape(&how)));
    }
    if let Some(reason) = &live.reset_reason {
        facts.push(format!("last reset: {}", escape(reason)));
    }
    if !facts.is_empty() {
        let _ = writeln!(out, "<p class=\"muted\">{}</p>", facts.join(" · "));
    }
    if live.chips.len() > 1 || live.chips.iter().any(|c| c.temp_c.is_some()) {
        out.push_str("<table class=\"chips\"><thead><tr><th>chip</th><th>GH/s</th><th>errors</th><th>°C</th></tr></thead><tbody>");
        for (index, chip) in live.chips.iter().enumerate() {
            let _ = write!(
                out,
                "<tr><td>{index}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                html::number(chip.hashrate_ghs, 1),
                chip.errors.map_or_else(|| "–".to_string(), |e| e.to_string()),
                html::number(chip.temp_c, 1)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out
}

/// The address a device is polled at (linking to its own web UI), and the last error while
/// it does not answer, with what to check.
fn where_and_why(live: &super::api::DeviceJson) -> String {
    let mut html = format!(
        "<p class=\"address\">address <a href=\"{}\" rel=\"noopener noreferrer\" target=\"_blank\">{}</a> \
         (the miner's own web UI)</p>\n",
        escape(&live.web_ui),
        escape(&live.address)
    );
    if live.state != "up" {
        let since = match live.down_since {
            Some(t) => format!(" since {}", crate::time::format_short(t)),
            None if live.state == "down" => " (it never answered)".into(),
            None => String::new(),
        };
        let _ = writeln!(
            html,
            "<p class=\"banner\">{}{since}: {}. Check <code>ip:</code> for this device in config.yaml, or run \
             <code>bitaxe-exporter discover</code> to find the miner on the network.</p>",
            escape(&live.state),
            escape(live.last_error.as_deref().unwrap_or("no answer yet"))
        );
    }
    html
}

/// The page of a configured miner that has not answered once: where it is looked for, why
/// it is not seen.
fn never_polled_document(name: &str, live: &super::api::DeviceJson) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(name));
    body.push_str(&where_and_why(live));
    body.push_str(
        "<p class=\"muted\">No reading of this miner is stored yet: its history starts with its first answer.</p>\n",
    );
    html::document(Context::Web, name, &body, None)
}

fn device_document(
    name: &str,
    live: Option<super::api::DeviceJson>,
    range: HistoryRange,
    history: &analysis::history::DeviceHistory,
    rows: Vec<ConfigRow>,
    thresholds: &Thresholds,
) -> String {
    let mut body = format!("<h1>{}</h1>\n", escape(name));
    if let Some(live) = live {
        body.push_str(&where_and_why(&live));
        let _ = writeln!(
            body,
            "<div class=\"totals\"><div><span>state</span>{}</div><div><span>hashrate</span>{} GH/s</div>\
             <div><span>power</span>{} W</div><div><span>J/TH</span>{}</div><div><span>ASIC</span>{} °C</div>\
             <div><span>configuration</span>{} MHz / {} mV</div><div><span>board · model · firmware</span>{} · {} · {} ({})</div></div>",
            escape(&live.state),
            html::number(live.hashrate_ghs, 1),
            html::number(live.power_w, 1),
            html::number(live.joules_per_terahash, 2),
            html::number(live.asic_temp_c, 1),
            html::number(live.frequency_mhz, 0),
            html::number(live.core_voltage_mv, 0),
            escape(live.board.as_deref().unwrap_or("–")),
            escape(live.model.as_deref().unwrap_or("–")),
            escape(live.firmware.as_deref().unwrap_or("–")),
            escape(live.firmware_family.as_deref().unwrap_or("unknown")),
        );
        body.push_str(&device_condition(&live));
    }
    body.push_str("<p class=\"ranges\">range: ");
    for option in HistoryRange::ALL {
        let _ = write!(
            body,
            "<a href=\"/device/{}?range={r}\"{}>{r}</a>",
            url_segment(name),
            if option == range { " class=\"current\"" } else { "" },
            r = option.as_str()
        );
    }
    let _ = writeln!(
        body,
        " · <a href=\"/api/v1/devices/{}/history\">JSON</a></p>",
        url_segment(name)
    );
    body.push_str(&html::history_charts(history, thresholds));
    body.push_str("<h2>Configurations (all time)</h2>\n");
    let recommendations = analysis::optimize(rows.clone(), Metric::Efficiency, thresholds.warning_celsius);
    let shown = &rows[..rows.len().min(PAGE_ROWS)];
    body.push_str(&html::best_sentences(&rows, &recommendations));
    body.push_str(&html::configs_table(Context::Web, shown, &recommendations));
    if rows.len() > shown.len() {
        let _ = writeln!(
            body,
            "<p class=\"muted\">The first {} of {} configurations; <a href=\"/configs?device={}\">all of them</a>.</p>",
            shown.len(),
            rows.len(),
            url_segment(name)
        );
    }
    body.push_str("<h2>Events in this range</h2>\n");
    body.push_str(&html::events_table(history));
    body.push_str("<h2>Sessions in this range</h2>\n");
    let (sessions, older) = newest(&history.sessions, PAGE_SESSIONS);
    body.push_str(&html::sessions_table(&sessions));
    if older > 0 {
        let _ = writeln!(
            body,
            "<p class=\"muted\">{older} older sessions in this range not shown (<a href=\"/sessions\">all sessions</a>).</p>"
        );
    }
    html::document(Context::Web, name, &body, None)
}
