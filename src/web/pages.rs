//! What every dashboard page and API answer shares: [`Pages`] (the snapshot, the ledger's
//! path, the turns at reading it), [`PageError`] and how it answers (an HTML page or JSON,
//! with `Retry-After` when busy), pagination. The pages themselves are in `fleet`, `device`,
//! `configs` and `sessions`, each with its routes. Read-only.
//!
//! Every ledger-backed answer is read *and rendered* on a blocking thread with its own
//! read-only connection, at most [`LEDGER_READERS`] at once, so a slow history query never
//! holds up `/metrics` or the fleet page, and a burst of requests never holds more than that
//! many bodies being built; at most [`MAX_WAITING`] more wait their turn (up to
//! [`MAX_WAIT`]), the rest get 503 with `Retry-After`. Lists that grow with the fleet or
//! with time are paginated ([`config_pages`], `?page=N`), so no answer is larger than a few
//! MB whatever the fleet.

use crate::ledger::sessions::SessionRow;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Thresholds;
use crate::daemon::fleet::Fleet;
use crate::ledger::{DeviceRow, Ledger, LedgerError};
use crate::web::render::html::{self, Context};
use crate::web::render::text::escape;

/// Ledger-backed answers read and rendered at once.
pub(crate) const LEDGER_READERS: usize = 2;
/// Requests that may wait for a turn; more are answered 503 at once.
pub(crate) const MAX_WAITING: usize = 8;
/// How long a request waits for its turn before it is answered 503.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(10);
/// The `Retry-After` of a 503, seconds.
pub(crate) const RETRY_AFTER_SECONDS: u64 = 5;

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

pub use crate::web::assets::FLEET_SCRIPT;

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

    pub(super) fn thresholds(&self) -> Thresholds {
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
    pub(super) async fn render<T: Send + 'static>(
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

    pub(super) fn page(&self) -> Response {
        let body = format!(
            "<h1>{}</h1><p><a href=\"/\">Back to the fleet</a></p>",
            escape(&self.to_string())
        );
        self.with_retry_after((self.status(), Html(html::document(Context::Web, "error", &body, None))).into_response())
    }

    pub(super) fn json(&self) -> Response {
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

pub(super) fn json_body<T: Serialize>(value: &T) -> Result<Vec<u8>, PageError> {
    serde_json::to_vec(value).map_err(|e| PageError::Internal(format!("cannot encode: {e}")))
}

/// A JSON answer, with the `Link` header of its neighbouring pages when it is one of several.
pub(super) fn json_answer(result: Result<Vec<u8>, PageError>, link: Option<String>) -> Response {
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
pub(super) fn page_answer(result: Result<String, PageError>) -> Response {
    match result {
        Ok(document) => Html(document).into_response(),
        Err(e) => e.page(),
    }
}

pub(super) fn known_device(ledger: &Ledger, name: &str) -> Result<DeviceRow, PageError> {
    ledger
        .find_device(name)?
        .ok_or_else(|| PageError::UnknownDevice(name.to_string()))
}

/// A JSON string safe to place inside `<script>`: no `<`, `>` or `&` survive as such.
pub(super) fn script_json(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `?page=N`, counted from 1; anything else is the first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageNumber(pub(super) usize);

impl PageNumber {
    pub(super) fn parse(text: Option<&str>) -> PageNumber {
        PageNumber(text.and_then(|t| t.trim().parse::<usize>().ok()).unwrap_or(1).max(1))
    }

    /// The 0-based index.
    pub(super) fn index(self) -> usize {
        self.0 - 1
    }
}

/// The `Link` header (RFC 8288) of page `page` of `pages` at `base` (a path with its other
/// query parameters, ending in `?` or `&`).
pub(super) fn link_header(base: &str, page: PageNumber, pages: usize) -> Option<String> {
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
pub(super) fn pager(page: PageNumber, pages: usize, href: impl Fn(usize) -> String) -> String {
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

/// The newest `n` sessions, and how many are left out.
pub(super) fn newest(sessions: &[SessionRow], n: usize) -> (Vec<SessionRow>, usize) {
    let mut newest_first: Vec<&SessionRow> = sessions.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.id));
    let kept = newest_first.iter().take(n).map(|s| (*s).clone()).collect();
    (kept, sessions.len().saturating_sub(n))
}

#[cfg(test)]
mod tests {
    use super::*;

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
