//! The web dashboard `serve` answers: the fleet page `/` (from the in-memory snapshot, kept
//! current by its own script), `/device/NAME`, `/configs` and `/sessions` (from the ledger,
//! drawn server-side), and the ledger-backed JSON API (`/api/v1/devices/NAME/history`,
//! `/api/v1/configs`, `/api/v1/sessions`). Read-only.
//!
//! Every ledger-backed answer is read *and rendered* on a blocking thread with its own
//! read-only connection, at most [`LEDGER_READERS`] at once, so a slow history query never
//! holds up `/metrics` or the fleet page, and a burst of requests never holds more than that
//! many bodies being built; at most [`MAX_WAITING`] more wait their turn (up to
//! [`MAX_WAIT`]), the rest get 503 with `Retry-After`. Lists that grow with the fleet or
//! with time are paginated ([`config_pages`], `?page=N`), so no answer is larger than a few
//! MB whatever the fleet.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::analysis::history::{default_step, device_history, range_bounds, Range as HistoryRange};
use crate::analysis::html::{self, escape, url_segment, Context};
use crate::analysis::{self, ConfigRow, Metric};
use crate::config::Thresholds;
use crate::daemon::fleet::Fleet;
use crate::ledger::sessions::SessionRow;
use crate::ledger::{DeviceRow, Ledger, LedgerError};

/// Ledger-backed answers read and rendered at once.
pub const LEDGER_READERS: usize = 2;
/// Requests that may wait for a turn; more are answered 503 at once.
pub const MAX_WAITING: usize = 8;
/// How long a request waits for its turn before it is answered 503.
pub const MAX_WAIT: Duration = Duration::from_secs(10);
/// The `Retry-After` of a 503, seconds.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// The most devices and configuration rows on one page of `/configs`: the HTML is about
/// 1.3 KB a row (table, heat-map cell and scatter point) and 15 KB a device (its two
/// charts), so a page stays under 3 MB.
pub const PAGE_DEVICES: usize = 25;
pub const PAGE_ROWS: usize = 2000;
/// The same for `/api/v1/configs` (about 0.7 KB of JSON a row: under 4 MB).
pub const API_PAGE_DEVICES: usize = 200;
pub const API_PAGE_ROWS: usize = 5000;
/// Sessions on one page of `/sessions` (newest first) and of `/api/v1/sessions`, sweeps on
/// one page of `/sessions`, and sessions on a device page.
pub const PAGE_SESSIONS: usize = 200;
pub const API_PAGE_SESSIONS: usize = 1000;
pub const PAGE_SWEEPS: usize = 5;

/// The fleet page's script, ours, inlined into the page.
pub const FLEET_SCRIPT: &str = include_str!("../../assets/fleet.js");

/// What the ledger-backed pages need.
#[derive(Debug)]
pub struct Pages {
    pub fleet: Arc<Fleet>,
    pub ledger_path: Option<PathBuf>,
    pub warmup_seconds: f64,
    readers: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// A request's place in the queue for a turn, given back when it gets one or gives up.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn enter(counter: &Arc<AtomicUsize>) -> Option<Waiting> {
        let before = counter.fetch_add(1, Ordering::AcqRel);
        if before >= MAX_WAITING {
            counter.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Waiting(counter.clone()))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pages {
    pub fn new(fleet: Arc<Fleet>, ledger_path: Option<PathBuf>) -> Pages {
        let warmup_seconds = fleet.warmup().as_secs_f64();
        Pages {
            fleet,
            ledger_path,
            warmup_seconds,
            readers: Arc::new(Semaphore::new(LEDGER_READERS)),
            waiting: Arc::default(),
        }
    }

    fn thresholds(&self) -> Thresholds {
        self.fleet.thresholds()
    }

    /// A turn to read and render: at once if one is free, else after waiting in a queue of
    /// at most [`MAX_WAITING`] for at most [`MAX_WAIT`]; [`PageError::Busy`] otherwise.
    async fn turn(&self) -> Result<OwnedSemaphorePermit, PageError> {
        if let Ok(permit) = self.readers.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting::enter(&self.waiting).ok_or(PageError::Busy)?;
        match tokio::time::timeout(MAX_WAIT, self.readers.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(PageError::ShuttingDown),
            Err(_) => Err(PageError::Busy),
        }
    }

    /// Runs `work` (the ledger read and the rendering of the answer) against a fresh
    /// read-only connection on a blocking thread, in its turn.
    async fn render<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Ledger) -> Result<T, PageError> + Send + 'static,
    ) -> Result<T, PageError> {
        let path = self.ledger_path.clone().ok_or(PageError::NoLedger)?;
        let permit = self.turn().await?;
        // The permit goes with the work: a client that hangs up leaves it running, and its
        // place is not given to another until it ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let ledger = Ledger::open_read_only(&path)?;
            work(&ledger)
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
    #[error("busy drawing other pages; try again in {RETRY_AFTER_SECONDS} s")]
    Busy,
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
            PageError::NoLedger | PageError::ShuttingDown | PageError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Ledger(e) if e.is_busy() => StatusCode::SERVICE_UNAVAILABLE,
            PageError::Ledger(_) | PageError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(&self) -> Response {
        let body = format!(
            "<h1>{}</h1><p><a href=\"/\">Back to the fleet</a></p>",
            escape(&self.to_string())
        );
        self.with_retry_after((self.status(), Html(html::document(Context::Web, "error", &body, None))).into_response())
    }

    fn json(&self) -> Response {
        self.with_retry_after(
            (
                self.status(),
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::json!({ "error": self.to_string() }).to_string(),
            )
                .into_response(),
        )
    }

    /// A busy answer says when to come back.
    fn with_retry_after(&self, mut response: Response) -> Response {
        if matches!(self, PageError::Busy) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}

fn json_body<T: Serialize>(value: &T) -> Result<Vec<u8>, PageError> {
    serde_json::to_vec(value).map_err(|e| PageError::Internal(format!("cannot encode: {e}")))
}

/// A JSON answer, with the `Link` header of its neighbouring pages when it is one of several.
fn json_answer(result: Result<Vec<u8>, PageError>, link: Option<String>) -> Response {
    match result {
        Ok(body) => {
            let mut response = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LINK, value);
            }
            response
        }
        Err(e) => e.json(),
    }
}

/// An HTML answer.
fn page_answer(result: Result<String, PageError>) -> Response {
    match result {
        Ok(document) => Html(document).into_response(),
        Err(e) => e.page(),
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

/// `?page=N`, counted from 1; anything else is the first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageNumber(usize);

impl PageNumber {
    fn parse(text: Option<&str>) -> PageNumber {
        PageNumber(text.and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1).max(1))
    }

    /// The 0-based index.
    fn index(self) -> usize {
        self.0 - 1
    }
}

/// The `Link` header (RFC 8288) of page `page` of `pages` at `base` (a path with its other
/// query parameters, ending in `?` or `&`).
fn link_header(base: &str, page: PageNumber, pages: usize) -> Option<String> {
    let mut links = Vec::new();
    if page.0 > 1 && pages > 0 {
        links.push(format!("<{base}page={}>; rel=\"prev\"", (page.0 - 1).min(pages)));
    }
    if page.0 < pages {
        links.push(format!("<{base}page={}>; rel=\"next\"", page.0 + 1));
    }
    (!links.is_empty()).then(|| links.join(", "))
}

/// "page 2 of 7 · ← previous · next →" for an HTML page; `href(n)` is the link to page n.
fn pager(page: PageNumber, pages: usize, href: impl Fn(usize) -> String) -> String {
    if pages <= 1 && page.0 == 1 {
        return String::new();
    }
    let mut html = format!("<p class=\"ranges\">page {} of {}", page.0, pages.max(1));
    if page.0 > 1 {
        let _ = write!(
            html,
            " · <a href=\"{}\" rel=\"prev\">← previous</a>",
            href((page.0 - 1).min(pages.max(1)))
        );
    }
    if page.0 < pages {
        let _ = write!(html, " · <a href=\"{}\" rel=\"next\">next →</a>", href(page.0 + 1));
    }
    html.push_str("</p>\n");
    html
}

/// Splits configuration rows (sorted by device, as [`analysis::compare_configs`] returns
/// them) into pages of whole devices, at most `max_devices` and `max_rows` rows each; only a
/// device with more than `max_rows` rows by itself is split across pages.
pub fn config_pages(rows: &[ConfigRow], max_devices: usize, max_rows: usize) -> Vec<Range<usize>> {
    let (max_devices, max_rows) = (max_devices.max(1), max_rows.max(1));
    let mut pages = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let (mut end, mut devices) = (start, 0);
        while end < rows.len() {
            let device = &rows[end].device;
            let device_end = end + rows[end..].iter().take_while(|r| &r.device == device).count();
            if devices > 0 && (devices == max_devices || device_end - start > max_rows) {
                break;
            }
            end = device_end.min(start + max_rows);
            devices += 1;
            if end - start >= max_rows {
                break;
            }
        }
        pages.push(start..end);
        start = end;
    }
    pages
}

/// The rows of one page, and how many pages there are.
fn config_page(rows: &[ConfigRow], page: PageNumber, max_devices: usize, max_rows: usize) -> (&[ConfigRow], usize) {
    let pages = config_pages(rows, max_devices, max_rows);
    let shown = pages.get(page.index()).map_or(&rows[..0], |range| &rows[range.clone()]);
    (shown, pages.len())
}

// ---------------------------------------------------------------------------------------
// The fleet page

/// `GET /`: the fleet table, filled and kept current by the inline script from
/// `/api/v1/fleet` (the first data inlined, so it shows at once).
pub async fn fleet_page(State(pages): State<Arc<Pages>>) -> Response {
    let fleet = super::api::fleet_json(&pages.fleet);
    let data = serde_json::to_string(&fleet).unwrap_or_else(|_| "{}".into());
    let body = format!(
        "<h1>Fleet</h1>\n<div id=\"banners\"></div>\n<div class=\"totals\" id=\"totals\"></div>\n\
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
        .render(move |ledger| {
            let device = known_device(ledger, &name)?;
            let history = device_history(ledger, &device, since, until, step)?;
            json_body(&HistoryJson {
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
            let device = known_device(ledger, &name)?;
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
            live.pool_protocol,
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
        let _ = writeln!(
            body,
            "<div class=\"totals\"><div><span>state</span>{}</div><div><span>hashrate</span>{} GH/s</div>\
             <div><span>power</span>{} W</div><div><span>J/TH</span>{}</div><div><span>ASIC</span>{} °C</div>\
             <div><span>configuration</span>{} MHz / {} mV</div><div><span>board · model · firmware</span>{} · {} · {} ({})</div></div>",
            escape(live.state),
            html::number(live.hashrate_ghs, 1),
            html::number(live.power_w, 1),
            html::number(live.joules_per_terahash, 2),
            html::number(live.asic_temp_c, 1),
            html::number(live.frequency_mhz, 0),
            html::number(live.core_voltage_mv, 0),
            escape(live.board.as_deref().unwrap_or("–")),
            escape(live.model.as_deref().unwrap_or("–")),
            escape(live.firmware.as_deref().unwrap_or("–")),
            escape(live.firmware_family.unwrap_or("unknown")),
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

/// The newest `n` sessions, and how many are left out.
fn newest(sessions: &[SessionRow], n: usize) -> (Vec<SessionRow>, usize) {
    let mut newest_first: Vec<&SessionRow> = sessions.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.id));
    let kept = newest_first.iter().take(n).map(|s| (*s).clone()).collect();
    (kept, sessions.len().saturating_sub(n))
}

// ---------------------------------------------------------------------------------------
// Configurations

#[derive(Debug, serde::Deserialize)]
pub struct ConfigParams {
    device: Option<String>,
    metric: Option<String>,
    page: Option<String>,
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

/// `GET /api/v1/configs?device=&page=`: what `analyze compare-configs --format json`
/// prints, [`API_PAGE_DEVICES`] devices (at most [`API_PAGE_ROWS`] rows) a page, the
/// neighbouring pages in the `Link` header.
pub async fn api_configs(State(pages): State<Arc<Pages>>, Query(params): Query<ConfigParams>) -> Response {
    let warmup = pages.warmup_seconds;
    let page = PageNumber::parse(params.page.as_deref());
    let device = params.device.clone().filter(|d| !d.is_empty());
    let result = pages
        .render(move |ledger| {
            let query = device_query(ledger, device.as_deref(), warmup)?;
            let rows = analysis::compare_configs(ledger, &query)?;
            let (shown, count) = config_page(&rows, page, API_PAGE_DEVICES, API_PAGE_ROWS);
            Ok((json_body(&shown)?, count))
        })
        .await;
    let base = match params.device.as_deref().filter(|d| !d.is_empty()) {
        Some(device) => format!("/api/v1/configs?device={}&", url_segment(device)),
        None => "/api/v1/configs?".into(),
    };
    match result {
        Ok((body, count)) => json_answer(Ok(body), link_header(&base, page, count)),
        Err(e) => e.json(),
    }
}

/// `GET /configs?device=&metric=&page=`: the table, heat maps and scatters of
/// [`PAGE_DEVICES`] devices (at most [`PAGE_ROWS`] rows) a page.
pub async fn configs_page(State(pages): State<Arc<Pages>>, Query(params): Query<ConfigParams>) -> Response {
    let metric = match params.metric.as_deref() {
        Some("hashrate") => Metric::Hashrate,
        Some("balanced") => Metric::Balanced,
        _ => Metric::Efficiency,
    };
    let page = PageNumber::parse(params.page.as_deref());
    let warmup = pages.warmup_seconds;
    let max_temp_c = pages.thresholds().warning_celsius;
    let device = params.device.clone().filter(|d| !d.is_empty());
    let result = pages
        .render(move |ledger| {
            let query = device_query(ledger, device.as_deref(), warmup)?;
            let rows = analysis::compare_configs(ledger, &query)?;
            Ok(configs_document(&rows, device.as_deref(), metric, page, max_temp_c))
        })
        .await;
    page_answer(result)
}

fn configs_document(
    rows: &[ConfigRow],
    device: Option<&str>,
    metric: Metric,
    page: PageNumber,
    max_temp_c: f64,
) -> String {
    let (shown, count) = config_page(rows, page, PAGE_DEVICES, PAGE_ROWS);
    // The verdicts of the devices on this page, over all their rows (a device split across
    // pages is judged whole).
    let mut names: Vec<&str> = shown.iter().map(|r| r.device.as_str()).collect();
    names.dedup();
    let theirs: Vec<ConfigRow> = rows
        .iter()
        .filter(|r| names.contains(&r.device.as_str()))
        .cloned()
        .collect();
    let recommendations = analysis::optimize(theirs, metric, max_temp_c);
    let link = |device: Option<&str>, metric: &str, page: Option<usize>| {
        let mut query: Vec<String> = Vec::new();
        if let Some(d) = device {
            query.push(format!("device={}", url_segment(d)));
        }
        query.push(format!("metric={metric}"));
        if let Some(page) = page.filter(|p| *p > 1) {
            query.push(format!("page={page}"));
        }
        format!("/configs?{}", query.join("&amp;"))
    };
    let mut body = String::from("<h1>Configurations</h1>\n<p class=\"ranges\">device: ");
    let _ = write!(
        body,
        "<a href=\"{}\"{}>all</a>",
        link(None, metric_name(metric), None),
        if device.is_none() { " class=\"current\"" } else { "" }
    );
    // The devices of this page (the others are on theirs).
    for name in &names {
        let _ = write!(
            body,
            "<a href=\"{}\"{}>{}</a>",
            link(Some(name), metric_name(metric), None),
            if device == Some(*name) {
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
            link(device, option, Some(page.0)),
            if option == metric_name(metric) {
                " class=\"current\""
            } else {
                ""
            },
        );
    }
    body.push_str("</p>\n");
    let pager = pager(page, count, |n| link(device, metric_name(metric), Some(n)));
    body.push_str(&pager);
    body.push_str(&html::configs_section_with(
        Context::Web,
        shown,
        &recommendations,
        metric,
        max_temp_c,
    ));
    body.push_str(&pager);
    html::document(Context::Web, "Configurations", &body, None)
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

#[derive(Debug, serde::Deserialize)]
pub struct SessionParams {
    device: Option<String>,
    page: Option<String>,
}

/// `GET /api/v1/sessions?device=&page=`: what `session list --format json` prints (oldest
/// first), [`API_PAGE_SESSIONS`] a page, the neighbouring pages in the `Link` header.
pub async fn api_sessions(State(pages): State<Arc<Pages>>, Query(params): Query<SessionParams>) -> Response {
    let page = PageNumber::parse(params.page.as_deref());
    let device = params.device.clone().filter(|d| !d.is_empty());
    let result = pages
        .render(move |ledger| {
            let device_id = match device.as_deref() {
                Some(name) => Some(known_device(ledger, name)?.id),
                None => None,
            };
            let sessions = ledger.sessions(device_id)?;
            let count = sessions.len().div_ceil(API_PAGE_SESSIONS);
            let shown: Vec<&SessionRow> = sessions
                .iter()
                .skip(page.index().saturating_mul(API_PAGE_SESSIONS))
                .take(API_PAGE_SESSIONS)
                .collect();
            Ok((json_body(&shown)?, count))
        })
        .await;
    let base = match params.device.as_deref().filter(|d| !d.is_empty()) {
        Some(device) => format!("/api/v1/sessions?device={}&", url_segment(device)),
        None => "/api/v1/sessions?".into(),
    };
    match result {
        Ok((body, count)) => json_answer(Ok(body), link_header(&base, page, count)),
        Err(e) => e.json(),
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct SessionsPageParams {
    page: Option<String>,
}

/// `GET /sessions?page=`: sessions ([`PAGE_SESSIONS`] a page) and tuning sweeps
/// ([`PAGE_SWEEPS`] a page), newest first.
pub async fn sessions_page(State(pages): State<Arc<Pages>>, Query(params): Query<SessionsPageParams>) -> Response {
    let page = PageNumber::parse(params.page.as_deref());
    let result = pages
        .render(move |ledger| {
            let sessions = ledger.sessions(None)?;
            let runs = ledger.tune_runs()?;
            let session_pages = sessions.len().div_ceil(PAGE_SESSIONS);
            let sweep_pages = runs.len().div_ceil(PAGE_SWEEPS);
            let (shown, _) = newest(&sessions, page.0.saturating_mul(PAGE_SESSIONS));
            let shown: Vec<SessionRow> = shown.into_iter().skip(page.index() * PAGE_SESSIONS).collect();
            let mut newest_runs = runs;
            newest_runs.sort_by_key(|run| std::cmp::Reverse(run.id));
            let sweeps = newest_runs
                .into_iter()
                .skip(page.index().saturating_mul(PAGE_SWEEPS))
                .take(PAGE_SWEEPS)
                .map(|run| {
                    Ok(html::SweepRecord {
                        devices: ledger.tune_devices(run.id)?,
                        steps: ledger.tune_steps(run.id)?,
                        run,
                    })
                })
                .collect::<Result<Vec<_>, LedgerError>>()?;
            let count = session_pages.max(sweep_pages);
            let pager = pager(page, count, |n| format!("/sessions?page={n}"));
            let mut body = String::from("<h1>Sessions</h1>\n");
            body.push_str(&pager);
            body.push_str(&html::sessions_table(&shown));
            body.push_str("<h1>Tuning sweeps</h1>\n");
            body.push_str(&html::sweeps_table(&sweeps));
            body.push_str(&pager);
            Ok(html::document(Context::Web, "Sessions", &body, None))
        })
        .await;
    page_answer(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(devices: &[(&str, usize)]) -> Vec<ConfigRow> {
        let mut rows = Vec::new();
        for (device, n) in devices {
            for i in 0..*n {
                rows.push(ConfigRow {
                    device: device.to_string(),
                    frequency_mhz: Some(400.0 + i as f64),
                    core_voltage_mv: Some(1200.0),
                    samples: 10,
                    steady_samples: 10,
                    steady_seconds: 300.0,
                    mean_hashrate_ghs: None,
                    hashrate_ci95_ghs: None,
                    median_hashrate_ghs: None,
                    percent_of_expected: None,
                    joules_per_terahash: None,
                    gigahashes_per_watt: None,
                    asic_temp_mean_c: None,
                    asic_temp_p95_c: None,
                    asic_temp_max_c: None,
                    vr_temp_max_c: None,
                    reject_percent: None,
                    error_percent: None,
                    enough_data: true,
                    first_seen: 0.0,
                    last_seen: 0.0,
                });
            }
        }
        rows
    }

    #[test]
    fn config_pages_keep_devices_whole_within_both_limits() {
        let all = rows(&[("a", 3), ("b", 2), ("c", 4), ("d", 1)]);
        assert_eq!(config_pages(&all, 2, 100), vec![0..5, 5..10]);
        assert_eq!(config_pages(&all, 10, 5), vec![0..5, 5..10]);
        assert_eq!(config_pages(&all, 10, 4), vec![0..3, 3..5, 5..9, 9..10]);
        // A device larger than a page by itself is split, and nothing is lost.
        assert_eq!(config_pages(&all, 10, 2), vec![0..2, 2..3, 3..5, 5..7, 7..9, 9..10]);
        assert!(config_pages(&[], 10, 10).is_empty());
    }

    #[tokio::test]
    async fn past_the_readers_and_the_queue_requests_are_refused_at_once() {
        let fleet = Arc::new(Fleet::new(
            &crate::config::parse("devices:\n  - {name: a, ip: 192.0.2.1}\n").unwrap(),
        ));
        let pages = Arc::new(Pages::new(fleet, None));
        let held: Vec<_> = futures_turns(&pages, LEDGER_READERS).await;
        // The queue fills with waiters…
        let mut waiters = tokio::task::JoinSet::new();
        for _ in 0..MAX_WAITING {
            let pages = pages.clone();
            waiters.spawn(async move { pages.turn().await.is_ok() });
        }
        while pages.waiting.load(Ordering::Acquire) < MAX_WAITING {
            tokio::task::yield_now().await;
        }
        // …and the next request is refused without waiting.
        assert!(matches!(pages.turn().await, Err(PageError::Busy)));
        let response = PageError::Busy.page();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        // The waiters get their turn as the readers finish.
        drop(held);
        while let Some(got) = waiters.join_next().await {
            assert!(got.unwrap());
        }
        assert_eq!(pages.waiting.load(Ordering::Acquire), 0);
    }

    async fn futures_turns(pages: &Arc<Pages>, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(pages.turn().await.unwrap());
        }
        held
    }
}
