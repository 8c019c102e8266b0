//! The fleet page `/` (from the in-memory snapshot, kept current by its own script from
//! `/api/v1/fleet`) and that API.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::web::pages::*;
use crate::web::render::html::{self, Context};

/// `/` and `/api/v1/fleet`.
pub fn routes(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/", get(fleet_page))
        .route("/api/v1/fleet", get(api_fleet))
        .with_state(pages)
}

/// `GET /`: the fleet table, filled and kept current by the inline script from
/// `/api/v1/fleet` (the first data inlined, so it shows at once).
pub async fn fleet_page(State(pages): State<Arc<Pages>>) -> Response {
    let fleet = fleet_with_activities(&pages).await;
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

/// `GET /api/v1/fleet`: the snapshot as JSON.
async fn api_fleet(State(pages): State<Arc<Pages>>) -> Response {
    json_answer(json_body(&fleet_with_activities(&pages).await), None)
}

/// The snapshot, with what the ledger says is being done to each device (a sweep's step, an
/// open session). Without a ledger, or while it is busy, the badges are left out: the
/// snapshot never waits on them.
async fn fleet_with_activities(pages: &Arc<Pages>) -> crate::web::api::FleetJson {
    let mut fleet = super::api::fleet_json(&pages.fleet);
    if let Ok(activities) = pages
        .render(|ledger| Ok(crate::analysis::activity::device_activities(ledger)?))
        .await
    {
        for device in &mut fleet.devices {
            device.activity = activities.get(&device.name).cloned();
        }
    }
    fleet
}
