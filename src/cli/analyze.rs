//! `analyze compare-configs | optimize | export | report | events`: the questions the ledger answers.

use std::path::Path;

use clap::Subcommand;

use super::output::{emit, print_json, status_line, ListFormat};
use super::settings::{known_device, ledger_failure, parse_time_arg, session_failure, LedgerSettings};
use super::Failure;
use crate::analysis::export::ExportFormat;
use crate::analysis::{self, ConfigRow, Metric, Query};
use crate::axeos::printable;
use crate::ledger::sessions::SessionError;
use crate::ledger::Ledger;
use crate::time;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Subcommand)]
pub enum AnalyzeCommand {
    /// Statistics per device × clock configuration (warm-up excluded).
    CompareConfigs(CompareConfigsArgs),
    /// The best configuration per device among those that pass the health gate.
    Optimize(OptimizeArgs),
    /// The samples, streamed as CSV or JSON.
    Export(ExportArgs),
    /// One self-contained HTML file with every device's charts, the configurations, the
    /// sessions and sweeps (works offline; no script).
    Report(ReportArgs),
    /// What happened: reboots (with the firmware's reset reason), faults, overheat trips
    /// and mining problems, with the miner's log tail where it keeps one (v2.14+).
    Events(super::events::EventsArgs),
    /// Rows, bytes and bytes per raw sample of each table of the ledger.
    LedgerStats {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
    },
}

/// `analyze report`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The HTML file to write (replaced atomically; never the ledger or the config).
    #[arg(long)]
    pub output: String,
    #[arg(long)]
    pub device: Option<String>,
    /// Start of the range: RFC 3339 or a duration ago (24h, 7d); default all history.
    #[arg(long)]
    pub since: Option<String>,
}

/// `analyze compare-configs`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CompareConfigsArgs {
    #[arg(long)]
    pub device: Option<String>,
    /// Only the time range of this session (and its device).
    #[arg(long)]
    pub session: Option<i64>,
    /// Start of the range: RFC 3339 or a duration ago (24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// End of the range: RFC 3339 or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
}

/// `analyze optimize`'s arguments.
#[derive(Debug, clap::Args)]
pub struct OptimizeArgs {
    /// What "best" means (default: efficiency, the lowest J/TH).
    #[arg(long, value_enum, default_value = "efficiency")]
    pub metric: Metric,
    #[arg(long)]
    pub device: Option<String>,
    /// ASIC temperature limit for the p95, °C (default: safety.max_temp_warning).
    #[arg(long)]
    pub max_temp: Option<f64>,
    /// Start of the data considered: RFC 3339 or a duration ago.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// `analyze export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// File to write, or - for standard output.
    #[arg(long, default_value = "-")]
    pub output: String,
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
}

impl AnalyzeCommand {
    pub fn run(self, settings: &LedgerSettings) -> Result<(), Failure> {
        analyze_command(settings, self)
    }
}

fn analyze_command(settings: &LedgerSettings, action: AnalyzeCommand) -> Result<(), Failure> {
    let ledger = settings.open()?;
    match action {
        AnalyzeCommand::Report(args) => write_report(settings, &ledger, args),
        AnalyzeCommand::CompareConfigs(args) => compare_configs(settings, &ledger, args),
        AnalyzeCommand::Optimize(args) => optimize(settings, &ledger, args),
        AnalyzeCommand::Export(args) => export(settings, &ledger, args),
        AnalyzeCommand::Events(args) => super::events::list_events(&ledger, args),
        AnalyzeCommand::LedgerStats { format } => super::ledger_stats::ledger_stats(&ledger, format),
    }
}

/// The id of `--device`, when given; an unknown name is the user's to fix.
fn device_id(ledger: &Ledger, device: Option<&str>) -> Result<Option<i64>, Failure> {
    match device {
        Some(name) => Ok(Some(known_device(ledger, name)?.id)),
        None => Ok(None),
    }
}

/// `analyze report`: one self-contained HTML file.
fn write_report(settings: &LedgerSettings, ledger: &Ledger, args: ReportArgs) -> Result<(), Failure> {
    let ReportArgs { output, device, since } = args;
    let spec = crate::web::report::ReportSpec {
        device: match &device {
            Some(name) => Some(known_device(ledger, name)?),
            None => None,
        },
        since: parse_time_arg("--since", since.as_deref())?,
        now: time::now_unix(),
        warmup_seconds: settings.warmup_seconds,
        thresholds: settings.thresholds,
    };
    let output = Path::new(&output);
    settings.refuse_to_overwrite(output)?;
    let report = crate::web::report::render(ledger, &spec).map_err(ledger_failure)?;
    crate::analysis::export::write_to_path(output, |out| {
        out.write_all(report.as_bytes())?;
        Ok(report.len() as u64)
    })
    .map_err(export_failure)?;
    status_line(&format!(
        "wrote {} ({:.0} KB): open it in a browser; it needs no network",
        output.display(),
        report.len() as f64 / 1024.0
    ));
    Ok(())
}

/// `analyze compare-configs`: one row per configuration run, optionally within a session.
fn compare_configs(settings: &LedgerSettings, ledger: &Ledger, args: CompareConfigsArgs) -> Result<(), Failure> {
    let CompareConfigsArgs {
        device,
        session: session_id,
        since,
        until,
        format,
    } = args;
    let mut query = Query {
        device_id: device_id(ledger, device.as_deref())?,
        since: parse_time_arg("--since", since.as_deref())?,
        until: parse_time_arg("--until", until.as_deref())?,
        warmup_seconds: settings.warmup_seconds,
    };
    if let Some(id) = session_id {
        narrow_to_session(ledger, &mut query, id, device.as_deref())?;
    }
    let rows = analysis::compare_configs(ledger, &query).map_err(ledger_failure)?;
    match format {
        TableFormat::Table => {
            let mut text = configs_table(&rows);
            text.push_str(&protection_events(ledger, &rows, &query)?);
            emit(&text)?;
        }
        TableFormat::Json => print_json(&rows)?,
        TableFormat::Csv => emit(&analysis::configs_csv(&rows))?,
    }
    Ok(())
}

/// Narrows `query` to session `id`'s device and time span (within any `--since`/`--until`);
/// a session on another device than `--device` is the user's to fix.
fn narrow_to_session(ledger: &Ledger, query: &mut Query, id: i64, device: Option<&str>) -> Result<(), Failure> {
    let found = ledger.session(id).map_err(ledger_failure)?;
    let shown = found.ok_or_else(|| session_failure(SessionError::NotFound(id)))?;
    let session_device = known_device(ledger, &shown.device)?;
    if query.device_id.is_some_and(|d| d != session_device.id) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "session #{id} is on {}, not on {}",
            shown.device,
            device.unwrap_or_default()
        )));
    }
    query.device_id = Some(session_device.id);
    query.since = Some(query.since.map_or(shown.started_at, |s| s.max(shown.started_at)));
    let end = shown.ended_at.unwrap_or_else(time::now_unix);
    query.until = Some(query.until.map_or(end, |u| u.min(end)));
    Ok(())
}

/// `analyze optimize`: the best configurations by a metric, under a temperature.
fn optimize(settings: &LedgerSettings, ledger: &Ledger, args: OptimizeArgs) -> Result<(), Failure> {
    let OptimizeArgs {
        metric,
        device,
        max_temp,
        since,
        format,
    } = args;
    let query = Query {
        device_id: device_id(ledger, device.as_deref())?,
        since: parse_time_arg("--since", since.as_deref())?,
        until: None,
        warmup_seconds: settings.warmup_seconds,
    };
    let max_temp = max_temp.unwrap_or(settings.thresholds.warning_celsius);
    if !max_temp.is_finite() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--max-temp must be a temperature in °C"
        )));
    }
    let rows = analysis::compare_configs(ledger, &query).map_err(ledger_failure)?;
    let recommendations = analysis::optimize(rows, metric, max_temp);
    match format {
        ListFormat::Table => emit(&analysis::recommendations_text(&recommendations))?,
        ListFormat::Json => print_json(&recommendations)?,
    }
    Ok(())
}

/// `analyze export`: the samples to stdout (`-`) or a file.
fn export(settings: &LedgerSettings, ledger: &Ledger, args: ExportArgs) -> Result<(), Failure> {
    let ExportArgs {
        format,
        output,
        device,
        since,
        until,
    } = args;
    let device_id = device_id(ledger, device.as_deref())?;
    let since = parse_time_arg("--since", since.as_deref())?.unwrap_or(f64::MIN);
    let until = parse_time_arg("--until", until.as_deref())?.unwrap_or(f64::MAX);
    let result = if output == "-" {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        crate::analysis::export::export(ledger, &mut out, format, device_id, since, until)
    } else {
        let output = Path::new(&output);
        settings.refuse_to_overwrite(output)?;
        let written = crate::analysis::export::write_to_path(output, |out| {
            crate::analysis::export::export(ledger, out, format, device_id, since, until)
        });
        if let Ok(n) = &written {
            status_line(&format!("wrote {n} samples to {}", output.display()));
        }
        written
    };
    match result {
        Ok(_) => Ok(()),
        // `… | head` closing the pipe early is not an error.
        Err(crate::analysis::export::ExportError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(export_failure(e)),
    }
}

/// An output name refused (a symlink planted by another user) is the user's to fix: exit 2.
fn export_failure(e: crate::analysis::export::ExportError) -> Failure {
    if e.is_refusal() {
        Failure::Usage(e.into())
    } else {
        Failure::Runtime(e.into())
    }
}

/// The configurations the firmware's overheat protection replaced within the range, for
/// the devices of the table: a configuration people did not choose deserves a line.
fn protection_events(ledger: &Ledger, rows: &[analysis::ConfigRow], query: &Query) -> Result<String, Failure> {
    use std::fmt::Write as _;
    let mut devices: Vec<&str> = rows.iter().map(|r| r.device.as_str()).collect();
    devices.dedup();
    let mut text = String::new();
    for name in devices {
        let Some(device) = ledger.find_device(name).map_err(ledger_failure)? else {
            continue;
        };
        let events = ledger
            .events_between(
                device.id,
                query.since.unwrap_or(f64::MIN),
                query.until.unwrap_or(f64::MAX),
            )
            .map_err(ledger_failure)?;
        for event in events.iter().filter(|e| e.kind == "overheat_protection") {
            let (t, detail) = (&event.t, &event.detail);
            if text.is_empty() {
                text.push_str("\nconfigurations the firmware's overheat protection set (not chosen):\n");
            }
            let _ = writeln!(
                text,
                "  {}  {}: {}",
                time::format(*t),
                printable(name),
                printable(detail)
            );
        }
    }
    Ok(text)
}

/// compare-configs as a table sized to the terminal (names whole, never wrapped nor cut).
pub(crate) fn configs_table(rows: &[ConfigRow]) -> String {
    use super::table::{key, label, number, text};
    use analysis::{duration_text, opt};
    if rows.is_empty() {
        return "(no samples in this range)\n".into();
    }
    let columns = [
        key("DEVICE"),
        label("MHZ/MV"),
        number("GH/S ±95%"),
        number("%EXP"),
        number("J/TH"),
        number("P95°C"),
        number("MAX°C"),
        number("STEADY"),
        text("NOTE"),
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let hashrate = match (r.mean_hashrate_ghs, r.hashrate_ci95_ghs) {
                (Some(m), Some(ci)) => format!("{m:.1} ±{ci:.1}"),
                (Some(m), None) => format!("{m:.1}"),
                _ => "-".into(),
            };
            vec![
                r.device.clone(),
                r.short_label(),
                hashrate,
                opt(r.percent_of_expected, 1),
                opt(r.joules_per_terahash, 2),
                opt(r.asic_temp_p95_c, 1),
                opt(r.asic_temp_max_c, 1),
                duration_text(r.steady_seconds),
                match (r.enough_data, r.hourly_samples > 0) {
                    (false, _) => "few data".into(),
                    (true, true) => "hourly".into(),
                    (true, false) => String::new(),
                },
            ]
        })
        .collect();
    super::table::render(&columns, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::analysis::test_row as row;

    #[test]
    fn the_device_name_is_whole_on_its_row() {
        let mut long = row(562.5, 123_456.7, 99.0, 17.0, 60.0, false);
        long.device = "a-very-long-device-name-32-chars".into();
        long.hashrate_ci95_ghs = Some(12_345.6);
        let table = configs_table(&[long, row(525.0, 1070.0, 99.5, 17.1, 60.0, true)]);
        // Whatever the terminal's width (the table module tests 80, 200 and a pipe), the
        // name is never split across lines nor cut to look like another.
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("a-very-long-device-name-32-chars ")),
            "{table}"
        );
        assert!(table.contains("few data"));
    }
}
