//! The sessions page `/sessions` (test sessions and tuning sweeps, newest first) and its API
//! `/api/v1/sessions`.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::ledger::sessions::SessionRow;
use crate::ledger::LedgerError;
use crate::web::pages::*;
use crate::web::render::html::{self, url_segment, Context};

/// `/sessions` and `/api/v1/sessions`.
pub fn routes(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/sessions", get(sessions_page))
        .route("/api/v1/sessions", get(api_sessions))
        .with_state(pages)
}

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
