//! The web dashboard `serve` answers: the fleet page `/` (from the in-memory snapshot, kept
//! current by its own script), `/device/NAME`, `/configs` and `/sessions` (from the ledger,
//! drawn server-side), and the ledger-backed JSON API (`/api/v1/devices/NAME/history`,
//! `/api/v1/configs`, `/api/v1/sessions`). Read-only; every ledger read runs on a blocking
//! thread with its own read-only connection, at most [`LEDGER_READERS`] at once, so a slow
//! history query never holds up `/metrics` or the fleet page.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::analysis::history::{default_step, device_history, range_bounds, Range};
use crate::analysis::html::{self, escape, url_segment, Context};
use crate::analysis::{self, Metric};
use crate::config::Thresholds;
use crate::daemon::fleet::Fleet;
use crate::ledger::{DeviceRow, Ledger, LedgerError};

/// Ledger reads served at once; more wait their turn.
pub const LEDGER_READERS: usize = 2;

/// The fleet page's script, ours, inlined into the page.
const FLEET_SCRIPT: &str = include_str!("../../assets/fleet.js");

/// What the ledger-backed pages need.
#[derive(Debug)]
pub struct Pages {
    pub fleet: Arc<Fleet>,
    pub ledger_path: Option<PathBuf>,
    pub warmup_seconds: f64,
    readers: Arc<Semaphore>,
}

impl Pages {
    pub fn new(fleet: Arc<Fleet>, ledger_path: Option<PathBuf>) -> Pages {
        let warmup_seconds = fleet.warmup().as_secs_f64();
        Pages {
            fleet,
            ledger_path,
            warmup_seconds,
            readers: Arc::new(Semaphore::new(LEDGER_READERS)),
        }
    }

    fn thresholds(&self) -> Thresholds {
        self.fleet.thresholds()
    }

    /// Runs `read` against a fresh read-only connection on a blocking thread.
    async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        read: impl FnOnce(&Ledger) -> Result<T, PageError> + Send + 'static,
    ) -> Result<T, PageError> {
        let path = self.ledger_path.clone().ok_or(PageError::NoLedger)?;
        let permit = self
            .readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PageError::ShuttingDown)?;
        // The permit goes with the read: a client that hangs up leaves the read running,
        // and its place is not given to another until it ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ledger = Ledger::open_read_only(&path)?;
            read(&ledger)
        })
        .await
        .map_err(|e| PageError::Internal(e.to_string()))?
    }
}

/// Why a page or an API call could not answer.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("no ledger is configured")]
    NoLedger,
    #[error("the exporter is shutting down")]
    ShuttingDown,
    #[error("unknown device \"{0}\"")]
    UnknownDevice(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl PageError {
    fn status(&self) -> StatusCode {
        match self {
            PageError::UnknownDevice(_) => StatusCode::NOT_FOUND,
            PageError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PageError::Ledger(LedgerError::Missing(_)) => StatusCode::SERVICE_UNAVAILABLE,
            PageError::NoLedger | PageError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Ledger(e) if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Ledger(_) | PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(&self) -> Response {
        let body = format!(
            "<h1>{}</h1><p><a href=\"/\">Back to the fleet</a></p>",
            escape(&self.to_string())
        );
        (self.status(), Html(html::document(Context::Web, "error", &body, None))).into_response()
    }

    fn json(&self) -> Response {
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": self.to_string() }).to_string(),
        )
            .into_response()
    }
}

fn json_response<T: Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => PageError::BadRequest(format!("cannot encode: {e}")).json(),
    }
}

fn known_device(ledger: &Ledger, name: &str) -> Result<DeviceRow, PageError> {
    ledger
        .find_device(name)?
        .ok_or_else(|| PageError::UnknownDevice(name.to_string()))
}

/// A JSON string safe to place inside `<script>`: no `<`, `>` or `&` survive as such.
fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

// ---------------------------------------------------------------------------------------
// The fleet page

/// `GET /`: the fleet table, filled and kept current by the inline script from
/// `/api/v1/fleet` (the first data inlined, so it shows at once).
pub async fn fleet_page(State(pages): State<Arc<Pages>>) -> Response {
    let fleet = super::api::fleet_json(&pages.fleet);
    let data = serde_json::to_string(&fleet).unwrap_or_else(|_| "{}".into());
    let body = format!(
        "<h1>Fleet</h1>\n<div class=\"totals\" id=\"totals\"></div>\n\
         <div class=\"controls\"><input id=\"filter\" type=\"search\" placeholder=\"filter by name\" aria-label=\"filter by name\">\
         <span class=\"muted\" id=\"status\"></span></div>\n\
         <noscript><p>This page updates itself with JavaScript; <a href=\"/api/v1/fleet\">/api/v1/fleet</a> has the same data.</p></noscript>\n\
         <div class=\"scroll\"><table id=\"fleet\"><thead><tr></tr></thead><tbody></tbody></table></div>\n\
         <script id=\"fleet-data\" type=\"application/json\">{}</script>",
        script_json(&data)
    );
    Html(html::document(Context::Web, "Fleet", &body, Some(FLEET_SCRIPT))).into_response()
}

// ---------------------------------------------------------------------------------------
// The device page and its history API

#[derive(Debug, serde::Deserialize)]
pub struct HistoryParams {
    since: Option<String>,
    until: Option<String>,
    step: Option<String>,
}

/// The history API's answer: the history with the thresholds its charts draw.
#[derive(Debug, Serialize)]
struct HistoryJson {
    #[serde(flatten)]
    history: analysis::history::DeviceHistory,
    max_temp_warning_c: f64,
    max_temp_shutdown_c: f64,
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
        .read(move |ledger| {
            let device = known_device(ledger, &name)?;
            Ok(device_history(ledger, &device, since, until, step)?)
        })
        .await;
    match result {
        Ok(history) => json_response(&HistoryJson {
            history,
            max_temp_warning_c: thresholds.warning_celsius,
            max_temp_shutdown_c: thresholds.shutdown_celsius,
        }),
        Err(e) => e.json(),
    }
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
    let range = params.range.as_deref().and_then(Range::parse).unwrap_or(Range::Day);
    let thresholds = pages.thresholds();
    let warmup_seconds = pages.warmup_seconds;
    let live = super::api::fleet_json(&pages.fleet)
        .devices
        .into_iter()
        .find(|device| device.name == name);
    let lookup = name.clone();
    let result = pages
        .read(move |ledger| {
            let device = known_device(ledger, &lookup)?;
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
            Ok((history, rows))
        })
        .await;
    let (history, rows) = match result {
        Ok(found) => found,
        Err(e) => return e.page(),
    };
    let mut body = format!("<h1>{}</h1>\n", escape(&name));
    if let Some(live) = live {
        let _ = writeln!(
            body,
            "<div class=\"totals\"><div><span>state</span>{}</div><div><span>hashrate</span>{} GH/s</div>\
             <div><span>power</span>{} W</div><div><span>J/TH</span>{}</div><div><span>ASIC</span>{} °C</div>\
             <div><span>configuration</span>{} MHz / {} mV</div><div><span>model · firmware</span>{} · {}</div></div>",
            escape(live.state),
            html::number(live.hashrate_ghs, 1),
            html::number(live.power_w, 1),
            html::number(live.joules_per_terahash, 2),
            html::number(live.asic_temp_c, 1),
            html::number(live.frequency_mhz, 0),
            html::number(live.core_voltage_mv, 0),
            escape(live.model.as_deref().unwrap_or("–")),
            escape(live.firmware.as_deref().unwrap_or("–")),
        );
    }
    body.push_str("<p class=\"ranges\">range: ");
    for option in Range::ALL {
        let _ = write!(
            body,
            "<a href=\"/device/{}?range={r}\"{}>{r}</a>",
            url_segment(&name),
            if option == range { " class=\"current\"" } else { "" },
            r = option.as_str()
        );
    }
    let _ = writeln!(
        body,
        " · <a href=\"/api/v1/devices/{}/history\">JSON</a></p>",
        url_segment(&name)
    );
    body.push_str(&html::history_charts(&history, &thresholds));
    body.push_str("<h2>Configurations (all time)</h2>\n");
    let recommendations = analysis::optimize(rows.clone(), Metric::Efficiency, thresholds.warning_celsius);
    body.push_str(&html::configs_table(Context::Web, &rows, &recommendations));
    body.push_str("<h2>Events in this range</h2>\n");
    body.push_str(&html::events_table(&history));
    body.push_str("<h2>Sessions in this range</h2>\n");
    body.push_str(&html::sessions_table(&history.sessions));
    Html(html::document(Context::Web, &name, &body, None)).into_response()
}

// ---------------------------------------------------------------------------------------
// Configurations

#[derive(Debug, serde::Deserialize)]
pub struct ConfigParams {
    device: Option<String>,
    metric: Option<String>,
}

fn device_query(ledger: &Ledger, device: Option<&str>, warmup_seconds: f64) -> Result<analysis::Query, PageError> {
    Ok(analysis::Query {
        device_id: match device.filter(|d| !d.is_empty()) {
            Some(name) => Some(known_device(ledger, name)?.id),
            None => None,
        },
        warmup_seconds,
        ..Default::default()
    })
}

/// `GET /api/v1/configs?device=`: what `analyze compare-configs --format json` prints.
pub async fn api_configs(State(pages): State<Arc<Pages>>, Query(params): Query<ConfigParams>) -> Response {
    let warmup = pages.warmup_seconds;
    let result = pages
        .read(move |ledger| {
            let query = device_query(ledger, params.device.as_deref(), warmup)?;
            Ok(analysis::compare_configs(ledger, &query)?)
        })
        .await;
    match result {
        Ok(rows) => json_response(&rows),
        Err(e) => e.json(),
    }
}

/// `GET /configs?device=&metric=`: the table, heat maps and scatters.
pub async fn configs_page(State(pages): State<Arc<Pages>>, Query(params): Query<ConfigParams>) -> Response {
    let metric = match params.metric.as_deref() {
        Some("hashrate") => Metric::Hashrate,
        Some("balanced") => Metric::Balanced,
        _ => Metric::Efficiency,
    };
    let warmup = pages.warmup_seconds;
    let device = params.device.clone().filter(|d| !d.is_empty());
    let wanted = device.clone();
    let result = pages
        .read(move |ledger| {
            let query = device_query(ledger, wanted.as_deref(), warmup)?;
            let names: Vec<String> = ledger.devices()?.into_iter().map(|d| d.name).collect();
            Ok((analysis::compare_configs(ledger, &query)?, names))
        })
        .await;
    let (rows, names) = match result {
        Ok(found) => found,
        Err(e) => return e.page(),
    };
    let link = |device: Option<&str>, metric: &str| {
        let mut query: Vec<String> = Vec::new();
        if let Some(d) = device {
            query.push(format!("device={}", url_segment(d)));
        }
        query.push(format!("metric={metric}"));
        format!("/configs?{}", query.join("&amp;"))
    };
    let mut body = String::from("<h1>Configurations</h1>\n<p class=\"ranges\">device: ");
    let _ = write!(
        body,
        "<a href=\"{}\"{}>all</a>",
        link(None, metric_name(metric)),
        if device.is_none() { " class=\"current\"" } else { "" }
    );
    for name in &names {
        let _ = write!(
            body,
            "<a href=\"{}\"{}>{}</a>",
            link(Some(name), metric_name(metric)),
            if device.as_deref() == Some(name) {
                " class=\"current\""
            } else {
                ""
            },
            escape(name)
        );
    }
    body.push_str("</p><p class=\"ranges\">rank by: ");
    for option in ["efficiency", "hashrate", "balanced"] {
        let _ = write!(
            body,
            "<a href=\"{}\"{}>{option}</a>",
            link(device.as_deref(), option),
            if option == metric_name(metric) {
                " class=\"current\""
            } else {
                ""
            },
        );
    }
    body.push_str("</p>\n");
    body.push_str(&html::configs_section(
        Context::Web,
        &rows,
        metric,
        pages.thresholds().warning_celsius,
    ));
    Html(html::document(Context::Web, "Configurations", &body, None)).into_response()
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::Efficiency => "efficiency",
        Metric::Hashrate => "hashrate",
        Metric::Balanced => "balanced",
    }
}

// ---------------------------------------------------------------------------------------
// Sessions

fn sweeps(ledger: &Ledger) -> Result<Vec<html::SweepRecord>, LedgerError> {
    ledger
        .tune_runs()?
        .into_iter()
        .map(|run| {
            Ok(html::SweepRecord {
                devices: ledger.tune_devices(run.id)?,
                steps: ledger.tune_steps(run.id)?,
                run,
            })
        })
        .collect()
}

#[derive(Debug, serde::Deserialize)]
pub struct SessionParams {
    device: Option<String>,
}

/// `GET /api/v1/sessions?device=`: what `session list --format json` prints.
pub async fn api_sessions(State(pages): State<Arc<Pages>>, Query(params): Query<SessionParams>) -> Response {
    let result = pages
        .read(move |ledger| {
            let device_id = match params.device.as_deref().filter(|d| !d.is_empty()) {
                Some(name) => Some(known_device(ledger, name)?.id),
                None => None,
            };
            Ok(ledger.sessions(device_id)?)
        })
        .await;
    match result {
        Ok(sessions) => json_response(&sessions),
        Err(e) => e.json(),
    }
}

/// `GET /sessions`: sessions and tuning sweeps.
pub async fn sessions_page(State(pages): State<Arc<Pages>>) -> Response {
    let result = pages.read(|ledger| Ok((ledger.sessions(None)?, sweeps(ledger)?))).await;
    let (sessions, sweeps) = match result {
        Ok(found) => found,
        Err(e) => return e.page(),
    };
    let mut body = String::from("<h1>Sessions</h1>\n");
    body.push_str(&html::sessions_table(&sessions));
    body.push_str("<h1>Tuning sweeps</h1>\n");
    body.push_str(&html::sweeps_table(&sweeps));
    Html(html::document(Context::Web, "Sessions", &body, None)).into_response()
}
