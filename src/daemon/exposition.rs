//! The wire formats of `/metrics`: OpenMetrics for Prometheus, the Prometheus text format
//! (0.0.4) for everyone else, chosen by the client's `Accept` header.

use std::fmt::Write as _;

use prometheus_client::registry::Registry;

/// The content type `/metrics` is served with.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of the Prometheus text format, for clients that do not ask for
/// OpenMetrics (curl, promtool, older scrapers).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header prefers OpenMetrics to the Prometheus text format, by the
/// q-values of its media ranges (as client_golang negotiates). No header: text.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut openmetrics, mut text) = (0.0f64, 0.0f64);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f64>().ok())
            .filter(|q| q.is_finite())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// The Prometheus text format (0.0.4) of an OpenMetrics body: counters' metadata named
/// after their `_total` samples, info metrics as `_info` gauges, no `# UNIT` and no
/// `# EOF`. `promtool check metrics` accepts both forms.
pub fn openmetrics_to_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, help));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some((_, help)) = pending_help.take() {
                let _ = writeln!(out, "# HELP {name} {help}");
            }
            let _ = writeln!(out, "# TYPE {name} {kind}");
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Renders the registry as OpenMetrics text.
pub fn render(registry: &Registry, size_hint: usize) -> Result<String, std::fmt::Error> {
    let mut body = String::with_capacity(size_hint);
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

#[cfg(test)]
mod negotiation_tests {
    use super::*;

    #[test]
    fn accept_headers_as_scrapers_send_them() {
        // Prometheus 2.x/3.x
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain;version=0.0.4")));
        assert!(!wants_openmetrics(Some(
            "application/openmetrics-text;q=0.2, text/plain;q=0.9"
        )));
    }

    #[test]
    fn text_format_renames_counters_and_info_and_drops_units() {
        let om = "# HELP a_shares Shares.\n# TYPE a_shares counter\na_shares_total{device=\"x\"} 5\n\
# HELP a Build.\n# TYPE a info\na_info{version=\"1\"} 1\n\
# HELP t Temp.\n# TYPE t gauge\n# UNIT t celsius\nt 60.5\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_shares_total Shares.\n# TYPE a_shares_total counter\na_shares_total{device=\"x\"} 5\n\
# HELP a_info Build.\n# TYPE a_info gauge\na_info{version=\"1\"} 1\n\
# HELP t Temp.\n# TYPE t gauge\nt 60.5\n"
        );
    }
}
