//! HTML shared by the web pages and the report: the document shell with the embedded
//! stylesheet, the configurations table with the health gate's verdicts, heat maps and
//! scatters per device, the sessions and sweeps tables, and a device's history charts.
//! Every string from a miner or the ledger goes through [`escape`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::history::DeviceHistory;
use crate::analysis::{gate, ConfigRow, Metric, Recommendation, MIN_PERCENT_OF_EXPECTED};
use crate::config::Thresholds;
use crate::ledger::sessions::SessionRow;
use crate::ledger::tune::{TuneDevice, TuneRun, TuneStep};
use crate::time;
use crate::web::render::charts::{self, HeatCell, HistoryChart, ScatterPoint, Series};
use crate::web::render::text::escape;

/// The stylesheet every page and the report carry inline.
pub use crate::web::assets::STYLE;

/// A path segment of a URL (`/device/NAME`): everything but unreserved characters
/// percent-encoded, so any device name makes a working, harmless link.
pub fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// A number with `decimals` decimals (past a trillion in scientific notation, never
/// hundreds of digits), or a dash.
pub fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() && v.abs() < 1e12 => format!("{v:.decimals$}"),
        Some(v) if v.is_finite() => format!("{v:.decimals$e}"),
        _ => "–".into(),
    }
}

/// A difficulty the way miners print it: 4.29 G, 1.02 T.
pub fn difficulty(value: Option<f64>) -> String {
    let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) else {
        return "–".into();
    };
    let units = ["", " k", " M", " G", " T", " P", " E"];
    let mut scaled = v;
    let mut unit = 0;
    while scaled >= 1000.0 && unit + 1 < units.len() {
        scaled /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{scaled:.0}")
    } else {
        format!("{scaled:.2}{}", units[unit])
    }
}

/// Where a page is shown: served by `serve` (with navigation) or in the report (none: it
/// must work offline, with nothing to follow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Web,
    Report,
}

/// A whole document. `script` is inline JavaScript (the fleet page's), trusted: it is ours.
pub fn document(context: Context, title: &str, body: &str, script: Option<&str>) -> String {
    let nav = match context {
        Context::Web => {
            "<nav><a href=\"/\">Fleet</a><a href=\"/configs\">Configurations</a><a href=\"/sessions\">Sessions</a>\
             <a href=\"/metrics\">Metrics</a></nav>"
        }
        Context::Report => "",
    };
    let script = script.map_or(String::new(), |s| format!("<script>{s}</script>"));
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><link rel=\"icon\" href=\"data:,\">\
         <title>{title} · bitaxe-exporter</title><style>{STYLE}</style></head>\n<body><header><b>bitaxe-exporter</b> \
         <span class=\"muted\">{version}</span>{nav}</header>\n<main>\n{body}\n</main>{script}</body></html>\n",
        title = escape(title),
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// How a temperature reads against the thresholds: a CSS class.
pub fn temperature_class(celsius: Option<f64>, thresholds: &Thresholds) -> &'static str {
    match celsius {
        Some(t) if t >= thresholds.shutdown_celsius => "hot",
        Some(t) if t >= thresholds.warning_celsius => "warn",
        _ => "",
    }
}

/// A short word for why a configuration was rejected, for the heat map's cells.
fn rejection_word(row: &ConfigRow, max_temp_c: f64) -> &'static str {
    if !row.enough_data {
        "few data"
    } else if row.percent_of_expected.is_some_and(|p| p < MIN_PERCENT_OF_EXPECTED) {
        "low GH/s"
    } else if row.asic_temp_p95_c.is_some_and(|t| t >= max_temp_c) {
        "hot"
    } else {
        "rejected"
    }
}

/// The answer per device in one sentence ([`crate::analysis::best_sentence`]), for the
/// devices of `rows`.
pub fn best_sentences(rows: &[ConfigRow], recommendations: &[Recommendation]) -> String {
    let mut html = String::new();
    for rec in recommendations
        .iter()
        .filter(|r| rows.iter().any(|row| row.device == r.device))
    {
        let _ = writeln!(
            html,
            "<p class=\"verdict\">{}</p>",
            escape(&crate::analysis::best_sentence(rec))
        );
    }
    html
}

/// The compare-configs table with each row's verdict: `optimize`'s pick, ranked, or
/// rejected with the reasons.
pub fn configs_table(context: Context, rows: &[ConfigRow], recommendations: &[Recommendation]) -> String {
    let mut html = String::from(
        "<div class=\"scroll\"><table class=\"configs\"><thead><tr><th class=\"text\">device</th>\
         <th class=\"text\">verdict</th><th class=\"text\">configuration</th><th>steady samples</th><th>steady time</th>\
         <th>mean GH/s</th><th>±95 %</th><th>% of expected</th><th>J/TH ±95 %</th><th>GH/W</th><th>ASIC mean °C</th>\
         <th>ASIC p95 °C</th><th>VR max °C</th><th>reject %</th><th>error %</th></tr></thead><tbody>\n",
    );
    for row in rows {
        let recommendation = recommendations.iter().find(|r| r.device == row.device);
        let picked = recommendation.and_then(Recommendation::best) == Some(row);
        let rank = recommendation.and_then(|r| r.ranked.iter().position(|x| x == row));
        let reasons = recommendation
            .and_then(|r| r.rejected.iter().find(|x| &x.row == row))
            .map(|x| x.reasons.join("; "));
        let only_one = recommendation.is_some_and(|r| r.ranked.len() + r.rejected.len() == 1);
        let (class, verdict) = match (picked, rank, reasons) {
            (true, _, _) if only_one => ("", "the only one measured: run tune to compare".to_string()),
            (true, _, _) => ("pick", "best (optimize's pick)".to_string()),
            (false, Some(rank), _) => ("", format!("passes (#{})", rank + 1)),
            (false, None, Some(reasons)) => ("rejected", reasons),
            _ => ("", String::new()),
        };
        let device = match context {
            Context::Web => format!(
                "<a href=\"/device/{}\">{}</a>",
                url_segment(&row.device),
                escape(&row.device)
            ),
            Context::Report => escape(&row.device),
        };
        let _ = writeln!(
            html,
            "<tr class=\"{class}\"><td class=\"text\">{device}</td><td class=\"text wrap\">{}</td>\
             <td class=\"text\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&verdict),
            escape(&row.label()),
            row.steady_samples,
            escape(&crate::analysis::duration_text(row.steady_seconds)),
            number(row.mean_hashrate_ghs, 1),
            number(row.hashrate_ci95_ghs, 1),
            number(row.percent_of_expected, 1),
            match (row.joules_per_terahash, row.joules_per_terahash_ci95()) {
                (Some(_), Some(ci)) => format!("{} ± {}", number(row.joules_per_terahash, 2), number(Some(ci), 2)),
                _ => number(row.joules_per_terahash, 2),
            },
            number(row.gigahashes_per_watt, 1),
            number(row.asic_temp_mean_c, 1),
            number(row.asic_temp_p95_c, 1),
            number(row.vr_temp_max_c, 1),
            number(row.reject_percent, 2),
            number(row.error_percent, 2),
        );
    }
    if rows.is_empty() {
        html.push_str("<tr><td class=\"text\" colspan=\"15\">no configurations in this range yet</td></tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    html
}

/// Per device: the J/TH heat map and the hashrate × J/TH scatter with the Pareto front.
pub(crate) fn configs_charts(rows: &[ConfigRow], recommendations: &[Recommendation], max_temp_c: f64) -> String {
    let mut by_device: BTreeMap<&str, Vec<&ConfigRow>> = BTreeMap::new();
    for row in rows {
        by_device.entry(&row.device).or_default().push(row);
    }
    let mut html = String::new();
    for (device, rows) in by_device {
        let best = recommendations
            .iter()
            .find(|r| r.device == device)
            .and_then(Recommendation::best);
        let cells: Vec<HeatCell> = rows
            .iter()
            .filter_map(|row| {
                let passed = gate(row, max_temp_c).is_empty();
                Some(HeatCell {
                    frequency_mhz: row.frequency_mhz?,
                    core_voltage_mv: row.core_voltage_mv?,
                    joules_per_terahash: row.joules_per_terahash.filter(|_| passed),
                    label: rejection_word(row, max_temp_c).into(),
                    best: best == Some(*row),
                })
            })
            .collect();
        let points: Vec<ScatterPoint> = rows
            .iter()
            .filter_map(|row| {
                Some(ScatterPoint {
                    label: row.short_label(),
                    joules_per_terahash: row.joules_per_terahash?,
                    hashrate_ghs: row.mean_hashrate_ghs?,
                    passed: gate(row, max_temp_c).is_empty(),
                    picked: best == Some(*row),
                })
            })
            .collect();
        let _ = writeln!(
            html,
            "<h2>{}</h2><div class=\"charts\"><div class=\"chart\">{}</div><div class=\"chart\">{}</div></div>",
            escape(device),
            charts::heat_map(&[(format!("{device}: J/TH by frequency × core voltage"), cells)]),
            charts::scatter(
                &format!("{device}: hashrate against J/TH (blue passes, grey rejected, ringed: the pick)"),
                &points
            ),
        );
    }
    html
}

/// The configurations of a range: the table, then each device's charts.
pub fn configs_section(context: Context, rows: &[ConfigRow], metric: Metric, max_temp_c: f64) -> String {
    let recommendations = crate::analysis::optimize(rows.to_vec(), metric, max_temp_c);
    configs_section_with(context, rows, &recommendations, metric, max_temp_c)
}

/// [`configs_section`] for some of the rows (one page of them), with the verdicts
/// `recommendations` made over all of them.
pub fn configs_section_with(
    context: Context,
    rows: &[ConfigRow],
    recommendations: &[Recommendation],
    metric: Metric,
    max_temp_c: f64,
) -> String {
    let mut html = best_sentences(rows, recommendations);
    html.push_str(&configs_table(context, rows, recommendations));
    let _ = writeln!(
        html,
        "<p class=\"muted\">Steady samples only (after the warm-up). The health gate rejects a configuration \
         with too few steady samples, a hashrate below {MIN_PERCENT_OF_EXPECTED} % of expected, or an ASIC \
         p95 at or above {max_temp_c} °C; optimize ranks the rest by {}.</p>",
        match metric {
            Metric::Efficiency => "J/TH",
            Metric::Hashrate => "hashrate",
            Metric::Balanced => "hashrate × efficiency",
        }
    );
    html.push_str(&configs_charts(rows, recommendations, max_temp_c));
    html
}

/// Sessions, newest first.
pub fn sessions_table(sessions: &[SessionRow]) -> String {
    let mut sessions: Vec<&SessionRow> = sessions.iter().collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.id));
    let mut html = String::from(
        "<div class=\"scroll\"><table><thead><tr><th>#</th><th class=\"text\">device</th><th class=\"text\">started</th>\
         <th class=\"text\">ended</th><th class=\"text\">target</th><th class=\"text\">applied</th><th>sweep</th>\
         <th class=\"text\">notes</th></tr></thead><tbody>\n",
    );
    for s in &sessions {
        let notes = match (s.notes.is_empty(), s.end_notes.is_empty()) {
            (_, true) => s.notes.clone(),
            (true, false) => s.end_notes.clone(),
            (false, false) => format!("{} — {}", s.notes, s.end_notes),
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td class=\"text wrap\">{}</td></tr>",
            s.id,
            escape(&s.device),
            time::format_short(s.started_at),
            s.ended_at.map_or("open".into(), time::format_short),
            escape(&s.target()),
            if s.applied { "yes" } else { "no" },
            s.tune_run_id.map_or("–".into(), |id| format!("#{id}")),
            escape(&notes),
        );
    }
    if sessions.is_empty() {
        html.push_str("<tr><td class=\"text\" colspan=\"8\">no sessions yet</td></tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    html
}

/// A sweep with its devices and steps.
pub struct SweepRecord {
    pub run: TuneRun,
    pub devices: Vec<TuneDevice>,
    pub steps: Vec<TuneStep>,
}

/// Tuning sweeps, newest first: per device the original and final configuration, and
/// each step's outcome with its J/TH.
pub fn sweeps_table(sweeps: &[SweepRecord]) -> String {
    let mut html = String::new();
    let mut newest_first: Vec<&SweepRecord> = sweeps.iter().collect();
    newest_first.sort_by_key(|s| std::cmp::Reverse(s.run.id));
    for sweep in newest_first {
        let _ = writeln!(
            html,
            "<h2>Sweep #{} <span class=\"badge\">{}</span></h2><p class=\"muted\">started {}{}</p>",
            sweep.run.id,
            escape(sweep.run.status.as_str()),
            time::format_short(sweep.run.started_at),
            sweep
                .run
                .ended_at
                .map_or(String::new(), |e| format!(", ended {}", time::format_short(e))),
        );
        html.push_str(
            "<div class=\"scroll\"><table><thead><tr><th class=\"text\">device</th><th class=\"text\">status</th>\
             <th class=\"text\">before</th><th class=\"text\">left on</th><th class=\"text\">steps (J/TH or verdict)</th>\
             <th class=\"text\">note</th></tr></thead><tbody>\n",
        );
        for device in &sweep.devices {
            let steps: Vec<String> = sweep
                .steps
                .iter()
                .filter(|s| s.device_id == device.device_id)
                .map(|s| {
                    let jth = s
                        .result
                        .as_deref()
                        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                        .and_then(|r| r["joules_per_terahash"].as_f64());
                    let label = crate::axeos::sample::short_clock_label(Some(s.frequency_mhz), Some(s.core_voltage_mv));
                    match (s.outcome.as_str(), jth) {
                        ("healthy", Some(j)) => format!("{label}: {j:.2}"),
                        (outcome, _) => format!("{label}: {outcome}"),
                    }
                })
                .collect();
            let config = |f: Option<f64>, v: Option<f64>| match (f, v) {
                (None, None) => "–".to_string(),
                (f, v) => crate::axeos::sample::short_clock_label(f, v),
            };
            let _ = writeln!(
                html,
                "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
                 <td class=\"text wrap\">{}</td><td class=\"text wrap\">{}</td></tr>",
                escape(&device.device),
                escape(device.status.as_str()),
                escape(&config(device.original_frequency_mhz, device.original_core_voltage_mv)),
                escape(&config(device.final_frequency_mhz, device.final_core_voltage_mv)),
                escape(&steps.join(" · ")),
                escape(&device.note),
            );
        }
        html.push_str("</tbody></table></div>\n");
    }
    if sweeps.is_empty() {
        html.push_str("<p class=\"muted\">No tuning sweeps yet (<code>bitaxe-exporter tune --help</code>).</p>\n");
    }
    html
}

/// A device's history charts: hashrate against expected, power, J/TH, ASIC and VR
/// temperature with the threshold lines, fan; events as vertical lines, sessions shaded.
pub fn history_charts(history: &DeviceHistory, thresholds: &Thresholds) -> String {
    let h = &history.history;
    let spans: Vec<(f64, f64)> = history
        .sessions
        .iter()
        .map(|s| (s.started_at, s.ended_at.unwrap_or(h.until)))
        .collect();
    let chart = |title: &str, unit: &str, series: Vec<Series>, limits: Vec<(&str, charts::RGBColor, f64)>| {
        charts::history_chart(&HistoryChart {
            title,
            unit,
            since: h.since,
            until: h.until,
            step: h.step,
            points: &h.points,
            series,
            thresholds: limits,
            markers: &history.markers,
            spans: &spans,
        })
    };
    let band = |name, colour, value, band| Series {
        name,
        colour,
        value,
        band,
    };
    let jth = |p: &crate::ledger::rollup::HistoryPoint| {
        p.joules_per_terahash.map(|j| crate::ledger::rollup::Span {
            min: j,
            mean: j,
            max: j,
        })
    };
    let panels = [
        chart(
            "Hashrate",
            "GH/s",
            vec![
                band("hashrate (min–max band)", charts::BLUE, |p| p.hashrate_ghs, true),
                band("expected", charts::GREY, |p| p.expected_ghs, false),
            ],
            vec![],
        ),
        chart(
            "Power",
            "W",
            vec![band("power", charts::ORANGE, |p| p.power_w, true)],
            vec![],
        ),
        chart(
            "Efficiency",
            "J/TH",
            vec![band("J/TH", charts::GREEN, jth, false)],
            vec![],
        ),
        chart(
            "Temperature",
            "°C",
            vec![
                band("ASIC", charts::RED, |p| p.asic_temp_c, true),
                band("VR", charts::PURPLE, |p| p.vr_temp_c, true),
            ],
            vec![
                ("warning", charts::ORANGE, thresholds.warning_celsius),
                ("shutdown", charts::RED, thresholds.shutdown_celsius),
            ],
        ),
        chart(
            "Fan",
            "%",
            vec![band("fan", charts::GREY, |p| p.fan_percent, true)],
            vec![],
        ),
    ];
    let mut html = String::from("<div class=\"charts\">");
    for svg in panels {
        let _ = write!(html, "<div class=\"chart\">{svg}</div>");
    }
    html.push_str("</div>\n");
    let _ = writeln!(
        html,
        "<p class=\"muted\">{} points of {} from the {}; vertical lines: configuration changes (blue), \
         reboots and firmware changes (purple), temperature and mining events (red), offline (grey); \
         shaded: sessions.</p>",
        h.points.len(),
        crate::analysis::duration_text(h.step),
        match h.source {
            crate::ledger::rollup::HistorySource::Samples => "samples",
            crate::ledger::rollup::HistorySource::HourlyRollups => "hourly rollups",
        }
    );
    html
}

/// An incident's captured log lines, folded under its detail (the last line shown).
fn log_tail_html(lines: &[String]) -> String {
    let Some(last) = lines.last() else {
        return String::new();
    };
    let mut html = format!(
        "<details class=\"log-tail\"><summary>miner log ({} lines): {}</summary><pre>",
        lines.len(),
        escape(last)
    );
    for line in lines {
        html.push_str(&escape(line));
        html.push('\n');
    }
    html.push_str("</pre></details>");
    html
}

/// The events of a history, newest first.
pub fn events_table(history: &DeviceHistory) -> String {
    let mut html = String::from(
        "<div class=\"scroll\"><table><thead><tr><th class=\"text\">time</th><th class=\"text\">event</th>\
         <th class=\"text\">detail</th></tr></thead><tbody>\n",
    );
    for marker in history.markers.iter().rev() {
        let _ = writeln!(
            html,
            "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text wrap\">{}{}</td></tr>",
            time::format_short(marker.t),
            escape(&marker.kind.replace('_', " ")),
            escape(&marker.detail),
            log_tail_html(&marker.log_tail)
        );
    }
    if history.markers.is_empty() {
        html.push_str("<tr><td class=\"text\" colspan=\"3\">no events in this range</td></tr>\n");
    }
    html.push_str("</tbody></table></div>\n");
    if history.markers_omitted > 0 {
        let _ = writeln!(
            html,
            "<p class=\"muted\">{} older events in this range not shown.</p>",
            history.markers_omitted
        );
    }
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_control_characters() {
        assert_eq!(
            escape("<script>alert('x')</script>&\"\u{1b}[2J"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{FFFD}[2J"
        );
        assert_eq!(url_segment("a b/<c>"), "a%20b%2F%3Cc%3E");
    }

    #[test]
    fn difficulties_read_like_the_miners_print_them() {
        assert_eq!(difficulty(Some(4.29e9)), "4.29 G");
        assert_eq!(difficulty(Some(999.0)), "999");
        assert_eq!(difficulty(Some(1.5e21)), "1500.00 E");
        assert_eq!(difficulty(None), "–");
    }
}
