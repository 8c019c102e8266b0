//! Every HTTP endpoint in one place: `/metrics` (OpenMetrics or the Prometheus text format
//! by `Accept`, rendered from the snapshot), `/healthz`, the Alertmanager webhook `/alerts`,
//! and the dashboard's feature routers (fleet, device, configs, sessions, each with its
//! `/api/v1` part) merged. No handler contacts a miner. Connections, their cap and timeouts
//! are [`crate::web::server`]'s; the `Host` check, the alerts token and the security headers
//! are [`crate::web::guard`]'s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::sync::Mutex;

use crate::daemon::exposition::{self, OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE};
use crate::daemon::fleet::Fleet;
use crate::daemon::metrics;
use crate::daemon::self_metrics::HttpStats;
use crate::ledger::writer::LedgerStats;
use crate::web;
use crate::web::guard::{self, Guard};
use crate::web::pages::Pages;

#[derive(Debug)]
struct AppState {
    registry: Registry,
    /// The latest `/metrics` body. Held locked while a render runs, so renders never
    /// overlap and scrapes that arrive meanwhile wait for that render and share its body:
    /// a scrape storm costs one render at a time and one body in memory, not a blocking
    /// thread and a body per scrape.
    last_render: Arc<Mutex<Rendered>>,
    guard: Guard,
}

#[derive(Debug, Clone, Default)]
struct Bodies {
    openmetrics: Bytes,
    /// The Prometheus text format (0.0.4) of the same render, made when a client first
    /// asks for it (Prometheus itself never does).
    text: Option<Bytes>,
}

#[derive(Debug)]
struct Rendered {
    body: Bodies,
    /// When the render finished; `None` before the first.
    finished: Option<Instant>,
}

pub fn router(
    fleet: Arc<Fleet>,
    ledger: Option<Arc<LedgerStats>>,
    http: Option<Arc<HttpStats>>,
    ledger_path: Option<PathBuf>,
    guard: Guard,
) -> Router {
    let pages = Arc::new(Pages::new(fleet.clone(), ledger_path));
    // The dashboard and its API answer only to the names a browser may legitimately use
    // (DNS rebinding); /metrics, /healthz and the token-guarded /alerts answer to any.
    let web = Router::new()
        .merge(web::fleet::routes(pages.clone()))
        .merge(web::device::routes(pages.clone()))
        .merge(web::configs::routes(pages.clone()))
        .merge(web::sessions::routes(pages))
        .layer(axum::middleware::from_fn_with_state(guard.clone(), guard::check_host));
    let state = Arc::new(AppState {
        registry: metrics::registry(fleet, ledger, http),
        last_render: Arc::new(Mutex::new(Rendered {
            body: Bodies::default(),
            finished: None,
        })),
        guard,
    });
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/alerts", axum::routing::post(receive_alerts))
        .with_state(state)
        .merge(web)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found; try / or /metrics\n") })
        .layer(axum::middleware::from_fn(guard::security_headers))
}

/// `/metrics` in the format the client's `Accept` asks for: OpenMetrics for Prometheus,
/// the Prometheus text format for everyone else (curl, promtool, older scrapers).
async fn serve_metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let openmetrics = exposition::wants_openmetrics(accept);
    match render_shared(state, !openmetrics).await {
        Some(body) if openmetrics => {
            ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], body.openmetrics).into_response()
        }
        Some(Bodies { text: Some(text), .. }) => ([(header::CONTENT_TYPE, TEXT_CONTENT_TYPE)], text).into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "failed to encode metrics\n").into_response(),
    }
}

/// The body for a scrape that arrives now: the one a render in progress produces (waiting
/// for it), or a new render. Either way it is built from the snapshot as it is at or after
/// this scrape's arrival, less at most one render's duration.
async fn render_shared(state: Arc<AppState>, wants_text: bool) -> Option<Bodies> {
    let arrived = Instant::now();
    // Tokio's mutex queues waiters in order: each scrape that waited through a render
    // finds it finished after its arrival and takes its body without rendering again.
    let mut last = state.last_render.clone().lock_owned().await;
    let fresh = last.finished.is_some_and(|finished| finished >= arrived);
    if fresh && (!wants_text || last.body.text.is_some()) {
        return Some(last.body.clone());
    }
    // Rendering a large fleet takes milliseconds of CPU; keep it off the async worker the
    // pollers run on. The lock moves into the blocking task, so a scrape abandoned by its
    // client cannot let a second render start beside this one, and the text format of a
    // render is made once, under the same lock.
    let rendered = tokio::task::spawn_blocking(move || {
        if !fresh {
            let hint = last.body.openmetrics.len() + 4096;
            let openmetrics = exposition::render(&state.registry, hint).ok()?;
            last.body = Bodies {
                openmetrics: Bytes::from(openmetrics),
                text: None,
            };
            last.finished = Some(Instant::now());
        }
        if wants_text && last.body.text.is_none() {
            let openmetrics = std::str::from_utf8(&last.body.openmetrics).ok()?;
            last.body.text = Some(Bytes::from(exposition::openmetrics_to_text(openmetrics)));
        }
        Some(last.body.clone())
    })
    .await;
    rendered.ok().flatten()
}

/// The largest Alertmanager notification read (one carries a group of alerts; 1 MiB is
/// thousands of them).
const MAX_ALERT_BODY: usize = 1024 * 1024;

/// `POST /alerts`: an Alertmanager webhook receiver that writes each alert to the
/// exporter's log, so the compose stack's alerts go somewhere out of the box (journald,
/// `docker logs`). Off (404) unless `server.alerts_token_file` is set; then only JSON with
/// `Authorization: Bearer TOKEN` is read (Alertmanager's `http_config.authorization`), so a
/// web page the user happens to open cannot write to the log: it can neither know the token
/// nor send JSON across origins without a preflight this server never grants. Every label
/// and annotation is escaped like any text from outside.
async fn receive_alerts(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let Some(token) = &state.guard.alerts_token else {
        return (
            StatusCode::NOT_FOUND,
            "POST /alerts is off: set server.alerts_token_file to a file holding a token, \
             and give Alertmanager the same file as its webhook's credentials_file\n",
        )
            .into_response();
    };
    if !token.admits(request.headers().get(header::AUTHORIZATION)) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "POST /alerts needs Authorization: Bearer with the token of server.alerts_token_file\n",
        )
            .into_response();
    }
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /alerts takes Content-Type: application/json (Alertmanager's webhook)\n",
        )
            .into_response();
    }
    let Ok(body) = axum::body::to_bytes(request.into_body(), MAX_ALERT_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "notification too large\n").into_response();
    };
    log_alerts(&body).into_response()
}

/// Writes each alert of an Alertmanager notification to the log.
fn log_alerts(body: &[u8]) -> (StatusCode, &'static str) {
    let Ok(notification) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (StatusCode::BAD_REQUEST, "expected Alertmanager's webhook JSON\n");
    };
    let text = |value: &serde_json::Value| crate::axeos::printable(value.as_str().unwrap_or("")).into_owned();
    for alert in notification["alerts"].as_array().into_iter().flatten().take(1000) {
        let status = text(&alert["status"]);
        let name = text(&alert["labels"]["alertname"]);
        let severity = text(&alert["labels"]["severity"]);
        let device = text(&alert["labels"]["device"]);
        let summary = text(&alert["annotations"]["summary"]);
        if status == "firing" && severity == "critical" {
            tracing::error!(alert = name, severity, device, "alert {status}: {summary}");
        } else if status == "firing" {
            tracing::warn!(alert = name, severity, device, "alert {status}: {summary}");
        } else {
            tracing::info!(alert = name, severity, device, "alert {status}: {summary}");
        }
    }
    (StatusCode::OK, "ok\n")
}
