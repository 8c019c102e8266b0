//! The configurations page `/configs` (every device's configurations with the health gate's
//! verdicts, heat maps and scatters) and its API `/api/v1/configs`, paginated by whole
//! devices.

use std::ops::Range;

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use crate::analysis::{self, ConfigRow, Metric};
use crate::ledger::Ledger;
use crate::web::pages::*;
use crate::web::render::html::{self, url_segment, Context};
use crate::web::render::text::escape;

/// `/configs` and `/api/v1/configs`.
pub fn routes(pages: Arc<Pages>) -> Router {
    Router::new()
        .route("/configs", get(configs_page))
        .route("/api/v1/configs", get(api_configs))
        .with_state(pages)
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
                    hourly_samples: 0,
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
}
