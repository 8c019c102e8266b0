//! `analyze report`: one self-contained HTML file (inline stylesheet and SVG charts, no
//! script, no external request) with what the web pages show from the ledger — each
//! device's history charts and events, the configurations with heat maps and scatters, the
//! sessions and sweeps — to mail or archive.

use std::fmt::Write as _;

use crate::analysis::history::{default_step, device_history};
use crate::analysis::{compare_configs, Metric, Query};
use crate::config::Thresholds;
use crate::ledger::{self, DeviceRow, Ledger};
use crate::time;
use crate::web::render::html::{self, Context, SweepRecord};
use crate::web::render::text::escape;

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportSpec {
    /// One device, or all.
    pub device: Option<DeviceRow>,
    /// Start of the range (Unix seconds); `None`: each device's first sample.
    pub since: Option<f64>,
    pub now: f64,
    pub warmup_seconds: f64,
    pub thresholds: Thresholds,
}

/// The report as one HTML document.
pub fn render(ledger: &Ledger, spec: &ReportSpec) -> ledger::Result<String> {
    let devices: Vec<DeviceRow> = match &spec.device {
        Some(device) => vec![device.clone()],
        None => ledger.devices()?,
    };
    let mut body = String::new();
    write_title(&mut body, ledger, spec, devices.len());
    write_devices_at_a_glance(&mut body, &devices);
    write_configurations(&mut body, ledger, spec)?;
    write_device_histories(&mut body, ledger, spec, &devices)?;
    write_sessions(&mut body, ledger, spec)?;
    body.push_str("<h1>Tuning sweeps</h1>\n");
    body.push_str(&html::sweeps_table(&sweeps(ledger, spec)?));
    Ok(html::document(Context::Report, "Report", &body, None))
}

/// The heading: what the report covers, from which ledger, when.
fn write_title(body: &mut String, ledger: &Ledger, spec: &ReportSpec, device_count: usize) {
    let _ = writeln!(
        body,
        "<h1>Report{}</h1><p class=\"muted\">Generated {} UTC from {} · {} · {}</p>",
        spec.device
            .as_ref()
            .map_or(String::new(), |d| format!(": {}", escape(&d.name))),
        time::format_short(spec.now),
        escape(
            &ledger
                .path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        ),
        spec.since.map_or("all history".to_string(), |s| format!(
            "since {} UTC",
            time::format_short(s)
        )),
        match device_count {
            1 => "1 device".to_string(),
            n => format!("{n} devices"),
        }
    );
}

/// One row per device, linking to its section.
fn write_devices_at_a_glance(body: &mut String, devices: &[DeviceRow]) {
    body.push_str(
        "<div class=\"scroll\"><table><thead><tr><th class=\"text\">device</th><th class=\"text\">model</th>\
         <th class=\"text\">firmware</th><th class=\"text\">first seen</th><th class=\"text\">last seen</th></tr></thead><tbody>\n",
    );
    for device in devices {
        let _ = writeln!(
            body,
            "<tr><td class=\"text\"><a href=\"#device-{}\">{}</a></td><td class=\"text\">{}</td><td class=\"text\">{}</td>\
             <td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
            device.id,
            escape(&device.name),
            escape(device.asic_model.as_deref().unwrap_or("–")),
            escape(device.firmware.as_deref().unwrap_or("–")),
            time::format_short(device.first_seen),
            time::format_short(device.last_seen),
        );
    }
    body.push_str("</tbody></table></div>\n");
}

fn write_configurations(body: &mut String, ledger: &Ledger, spec: &ReportSpec) -> ledger::Result<()> {
    body.push_str("<h1>Configurations</h1>\n");
    let rows = compare_configs(
        ledger,
        &Query {
            device_id: spec.device.as_ref().map(|d| d.id),
            since: spec.since,
            until: None,
            warmup_seconds: spec.warmup_seconds,
        },
    )?;
    body.push_str(&html::configs_section(
        Context::Report,
        &rows,
        Metric::Efficiency,
        spec.thresholds.warning_celsius,
    ));
    Ok(())
}

/// Each device's history charts and events over the range (or a line saying it has none).
fn write_device_histories(
    body: &mut String,
    ledger: &Ledger,
    spec: &ReportSpec,
    devices: &[DeviceRow],
) -> ledger::Result<()> {
    for device in devices {
        let Some((first, last)) = ledger.sample_span(device.id)? else {
            let _ = writeln!(
                body,
                "<h1 id=\"device-{}\">{}</h1><p class=\"muted\">No samples.</p>",
                device.id,
                escape(&device.name)
            );
            continue;
        };
        let since = spec.since.unwrap_or(first).min(last);
        let until = last.max(since + 1.0);
        let history = device_history(ledger, device, since, until, default_step(since, until))?;
        let _ = writeln!(
            body,
            "<h1 id=\"device-{}\">{}</h1><p class=\"muted\">{} – {} UTC</p>",
            device.id,
            escape(&device.name),
            time::format_short(since),
            time::format_short(until)
        );
        body.push_str(&html::history_charts(&history, &spec.thresholds));
        body.push_str("<h2>Events</h2>\n");
        body.push_str(&html::events_table(&history));
    }
    Ok(())
}

/// The sessions that overlap the range.
fn write_sessions(body: &mut String, ledger: &Ledger, spec: &ReportSpec) -> ledger::Result<()> {
    let sessions: Vec<_> = ledger
        .sessions(spec.device.as_ref().map(|d| d.id))?
        .into_iter()
        .filter(|s| spec.since.is_none_or(|since| s.ended_at.is_none_or(|e| e >= since)))
        .collect();
    body.push_str("<h1>Sessions</h1>\n");
    body.push_str(&html::sessions_table(&sessions));
    Ok(())
}

/// The tuning sweeps that overlap the range, of the one device when the report is on one.
fn sweeps(ledger: &Ledger, spec: &ReportSpec) -> ledger::Result<Vec<SweepRecord>> {
    let sweeps: Vec<SweepRecord> = ledger
        .tune_runs()?
        .into_iter()
        .filter(|run| spec.since.is_none_or(|since| run.ended_at.is_none_or(|e| e >= since)))
        .map(|run| {
            let devices = ledger.tune_devices(run.id)?;
            let steps = ledger.tune_steps(run.id)?;
            Ok(SweepRecord { run, devices, steps })
        })
        .collect::<ledger::Result<_>>()?;
    Ok(match &spec.device {
        Some(device) => sweeps
            .into_iter()
            .filter(|s| s.devices.iter().any(|d| d.device_id == device.id))
            .collect(),
        None => sweeps,
    })
}
