//! `tune`, `tune status`, `tune resume`, `tune restore`: the sweep's command line — its
//! arguments, the `--dry-run` text, a live line per device — and its results as a ranked
//! table, JSON, or an SVG heat map, with the exit code each error of the run
//! (`tune::run`) deserves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use super::output::{emit, print_json, status_line};
use super::settings::{ledger_failure, session_failure};
use super::table::{self, Column};
use super::Failure;
use crate::analysis::Metric;
use crate::axeos::printable;
use crate::axeos::sample::format_label_number;
use crate::config::{self, Config};
use crate::ledger::tune::TuneStatus;
use crate::time;
use crate::tune::limits::Limits;
use crate::tune::plan::{Outcome, PlanKind, Span};
use crate::tune::report::{DeviceReport, Observer, StepReport};
use crate::tune::run::{self as tune_run, Resumed, RunError};
use crate::tune::runs::{latest_runs, RunState};
use crate::tune::spec::{SweepSpec, Then};

use super::tune_detach::{cancel_on_signals, detach};
use super::tune_progress::Progress;

/// `tune`'s arguments: a sweep, or one of its subcommands.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub action: Option<TuneAction>,
    #[command(flatten)]
    pub sweep: SweepArgs,
}

#[derive(Debug, Subcommand)]
pub enum TuneAction {
    /// The latest sweeps: running, finished or interrupted, and what each device was left on.
    Status(StatusArgs),
    /// Continue the interrupted sweep where it stopped.
    Resume(ResumeArgs),
    /// Put a device back on the settings it had before an interrupted sweep.
    Restore(RestoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write a heat map of J/TH over frequency × voltage to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[arg(long)]
    pub device: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// A sweep's arguments.
#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// A configured device to sweep (repeat for several).
    #[arg(long = "device", required = true)]
    pub devices: Vec<String>,
    #[arg(long, value_enum, default_value_t = PlanKind::Grid)]
    pub plan: PlanKind,
    /// Frequencies, MHz: `A..B` (the miner's listed options in that range), `A..B:STEP`, or one value.
    #[arg(long, value_parser = Span::parse)]
    pub freq: Option<Span>,
    /// Core voltages, mV: `A..B`, `A..B:STEP`, or one value.
    #[arg(long, value_parser = Span::parse)]
    pub voltage: Option<Span>,
    /// What "best" means.
    #[arg(long, value_enum, default_value_t = Metric::Efficiency)]
    pub metric: Metric,
    /// Minutes of steady data each configuration gets at least.
    #[arg(long, default_value_t = 5.0)]
    pub dwell: f64,
    /// Minutes after which a configuration is judged even if its interval is still wide.
    #[arg(long, default_value_t = 20.0)]
    pub max_dwell: f64,
    /// Minutes left out after each change [default: analysis.warmup_minutes].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Devices swept at once.
    #[arg(long, default_value_t = 1)]
    pub max_parallel: usize,
    /// What to leave each miner on at the end.
    #[arg(long, value_enum, default_value_t = Then::Best)]
    pub then: Then,
    /// Print the plan (pairs, order, duration, limits) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Allow values the miner does not list in /api/system/asic.
    #[arg(long)]
    pub allow_unlisted: bool,
    /// Allow frequency steps under 25 MHz (they cause PLL errors on real boards).
    #[arg(long)]
    pub allow_small_steps: bool,
    /// Send pairs outside the chip's plausibility window too.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also write a heat map of J/TH over frequency × voltage to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Write to a miner of an unknown firmware family by this family's rules.
    #[arg(long, value_parser = crate::axeos::family::parse_known)]
    pub assume_family: Option<crate::axeos::family::FirmwareFamily>,
    /// Run in the background, unaffected by a closed terminal; output to --log-file.
    #[arg(long)]
    pub detach: bool,
    /// Where a detached sweep writes its output [default: tune-TIME.log beside the ledger].
    #[arg(long, requires = "detach")]
    pub log_file: Option<PathBuf>,
}

impl TuneArgs {
    pub async fn run(self, config_path: &Path) -> Result<(), Failure> {
        let config = config::load(config_path)?;
        match self.action {
            Some(TuneAction::Status(args)) => status(&config, args.format),
            Some(TuneAction::Restore(args)) => restore(&config, &args.device).await,
            Some(TuneAction::Resume(args)) => resume(&config, args).await,
            None => {
                let spec = self.sweep.spec(&config)?;
                let output = Output {
                    format: self.sweep.format,
                    plot: self.sweep.plot,
                };
                if self.sweep.dry_run {
                    return dry_run(&config, &spec, output.format).await;
                }
                if self.sweep.detach {
                    return detach(&config, self.sweep.log_file).await;
                }
                run_sweep(&config, spec, None, output).await
            }
        }
    }
}

impl SweepArgs {
    fn spec(&self, config: &Config) -> Result<SweepSpec, Failure> {
        let usage = |message: String| Failure::Usage(anyhow::anyhow!(message));
        let minutes = |flag: &str, value: f64| {
            if value.is_finite() && (0.0..=config::MAX_WARMUP_MINUTES).contains(&value) {
                Ok(value)
            } else {
                Err(usage(format!(
                    "{flag} {value} is not a number of minutes from 0 to {}",
                    config::MAX_WARMUP_MINUTES
                )))
            }
        };
        let dwell = minutes("--dwell", self.dwell)?;
        if dwell <= 0.0 {
            return Err(usage(
                "--dwell 0 measures nothing: give each configuration some minutes of steady data (fractions such as \
                 0.5 are fine)"
                    .into(),
            ));
        }
        let max_dwell = minutes("--max-dwell", self.max_dwell)?;
        if max_dwell < dwell {
            return Err(usage(format!(
                "--max-dwell {max_dwell} is shorter than --dwell {dwell}"
            )));
        }
        let warmup = minutes("--warmup", self.warmup.unwrap_or(config.warmup.as_secs_f64() / 60.0))?;
        if self.max_parallel == 0 {
            return Err(usage("--max-parallel must be at least 1".into()));
        }
        let mut devices = self.devices.clone();
        devices.sort();
        devices.dedup();
        Ok(SweepSpec {
            plan: self.plan,
            freq: self.freq,
            voltage: self.voltage,
            metric: self.metric,
            dwell_minutes: dwell,
            max_dwell_minutes: max_dwell,
            warmup_minutes: warmup,
            then: self.then,
            allow_unlisted: self.allow_unlisted,
            allow_small_steps: self.allow_small_steps,
            force: self.force,
            // More permits than devices would only be idle (and tokio caps a semaphore).
            max_parallel: self.max_parallel.min(devices.len().max(1)),
            devices,
            assume_family: self.assume_family,
        })
    }
}

/// Where the results go.
struct Output {
    format: Format,
    plot: Option<PathBuf>,
}

async fn dry_run(config: &Config, spec: &SweepSpec, format: Format) -> Result<(), Failure> {
    let prepared = tune_run::plan_only(config, spec).await.map_err(failure)?;
    let step = spec.max_step_duration();
    let shortest = spec.min_step_duration();
    if format == Format::Json {
        let plans: Vec<serde_json::Value> = prepared
            .iter()
            .map(|p| {
                serde_json::json!({
                    "device": p.name,
                    "plan": spec.plan,
                    "pairs": p.planner.possible_pairs().iter().map(|(f, v)| serde_json::json!({"frequency_mhz": f, "core_voltage_mv": v})).collect::<Vec<_>>(),
                    "max_steps": p.planner.max_steps(),
                    "step_minutes": {"at_least": shortest.as_secs_f64() / 60.0, "at_most": step.as_secs_f64() / 60.0},
                    "limits": limits_json(&p.limits),
                    "original": {"frequency_mhz": p.original.0, "core_voltage_mv": p.original.1},
                })
            })
            .collect();
        return print_json(&serde_json::json!({"dry_run": true, "devices": plans}));
    }
    let mut text = String::new();
    for p in &prepared {
        let steps = p.planner.max_steps();
        let pairs = p.planner.possible_pairs();
        text.push_str(&format!(
            "{}: {} plan, up to {steps} step(s), at most {} (each step {} warm-up, then {} to {} measuring); starts from {}\n",
            printable(&p.name),
            format!("{:?}", spec.plan).to_lowercase(),
            crate::analysis::duration_text(step.as_secs_f64() * steps as f64),
            crate::analysis::duration_text(spec.warmup_minutes * 60.0),
            crate::analysis::duration_text(spec.dwell_minutes * 60.0),
            crate::analysis::duration_text(spec.max_dwell_minutes.max(spec.dwell_minutes) * 60.0),
            pair_text(p.original),
        ));
        text.push_str(&format!("  limits: {}\n", limits_text(&p.limits)));
        let listed: Vec<String> = pairs
            .iter()
            .map(|(f, v)| format!("{}/{}", format_label_number(*f), format_label_number(*v)))
            .collect();
        text.push_str(&format!("  pairs (MHz/mV, in order): {}\n", listed.join(" ")));
    }
    text.push_str("dry run: nothing was sent to any miner\n");
    emit(&text)
}

fn pair_text(pair: (Option<f64>, Option<f64>)) -> String {
    let show = |v: Option<f64>| v.map_or_else(|| "?".into(), format_label_number);
    format!("{} MHz / {} mV", show(pair.0), show(pair.1))
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = vec![
        format!("ASIC < {} °C", limits.max_asic_celsius),
        format!("VR < {} °C", limits.max_vr_celsius),
    ];
    match limits.max_power_watts {
        Some(w) => parts.push(format!("power ≤ {w:.1} W")),
        None => parts.push("power: no limit known (set tune.max_power_watts)".into()),
    }
    if let Some((low, high)) = limits.input_volts {
        parts.push(format!("input {low}–{high} V"));
    }
    parts.push("overheat / power fault / no hashrate / unreachable stop a step".into());
    parts.join(", ")
}

fn limits_json(limits: &Limits) -> serde_json::Value {
    serde_json::json!({
        "max_asic_celsius": limits.max_asic_celsius,
        "max_vr_celsius": limits.max_vr_celsius,
        "max_power_watts": limits.max_power_watts,
        "input_volts": limits.input_volts.map(|(l, h)| [l, h]),
    })
}

/// Runs a sweep (a new one, or `resume`'s continuation of `resumed`), shows its results,
/// then says what went wrong for the run as a whole.
async fn run_sweep(config: &Config, spec: SweepSpec, resumed: Option<Resumed>, output: Output) -> Result<(), Failure> {
    let cancel = cancel_on_signals()?;
    let observer: Arc<dyn Observer> = Arc::new(Progress::new(&spec, config.tune.confidence_percent));
    let run = tune_run::execute(config, &spec, resumed, cancel.clone(), observer)
        .await
        .map_err(failure)?;
    if let Some(path) = &output.plot {
        super::tune_plot::write_heat_map(path, &run.devices)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    match output.format {
        Format::Json => print_json(&serde_json::json!({"run": run.run_id, "spec": spec, "devices": run.devices}))?,
        Format::Table => emit(&results_text(run.run_id, &spec, &run.devices))?,
    }
    let cancelled = *cancel.borrow();
    match run.problem(cancelled) {
        Some(problem) => Err(failure(problem)),
        None => Ok(()),
    }
}

/// A run's error with the exit code it deserves: 2 for what it refused, 1 for what failed.
fn failure(e: RunError) -> Failure {
    match e {
        RunError::Ledger(e) => ledger_failure(e),
        RunError::Session(e) => session_failure(e),
        e if e.is_refusal() => Failure::Usage(e.into()),
        e => Failure::Runtime(e.into()),
    }
}

/// The ranked table of each device's steps.
fn results_text(run_id: i64, spec: &SweepSpec, reports: &[DeviceReport]) -> String {
    let mut text = format!("tune #{run_id}: {:?} plan, best by {:?}\n", spec.plan, spec.metric).to_lowercase();
    for report in reports {
        let best = report.best_step;
        text.push_str(&format!(
            "\n{}: {} — {}{}\n",
            printable(&report.device),
            report.status.as_str().replace('_', " "),
            match (report.final_frequency_mhz, report.final_core_voltage_mv) {
                (None, None) => "settings not confirmed".into(),
                pair => format!("left on {}", pair_text(pair)),
            },
            if report.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", printable(&report.note))
            }
        ));
        let mut ranked: Vec<&StepReport> = report.steps.iter().collect();
        let score = |s: &StepReport| -> f64 {
            let healthy = if s.outcome == Outcome::Healthy { 1e9 } else { 0.0 };
            let r = s.result.as_ref();
            healthy
                + match spec.metric {
                    Metric::Hashrate => r.and_then(|r| r.mean_hashrate_ghs).unwrap_or(0.0),
                    _ => -r.and_then(|r| r.joules_per_terahash).unwrap_or(1e6),
                }
        };
        ranked.sort_by(|a, b| score(b).total_cmp(&score(a)));
        let columns: [Column; 8] = [
            table::number("#"),
            table::label("MHz/mV"),
            table::number("GH/s ±%"),
            table::number("J/TH ±%"),
            table::number("% exp"),
            table::number("err %"),
            table::number("ASIC max"),
            table::text("verdict"),
        ];
        let rows: Vec<Vec<String>> = ranked
            .iter()
            .map(|s| {
                let r = s.result.as_ref();
                let with_ci = |value: Option<f64>, ci: Option<f64>, decimals: usize| match (value, ci) {
                    (Some(v), Some(c)) if c.is_finite() => format!("{v:.decimals$} ±{c:.1}"),
                    (Some(v), _) => format!("{v:.decimals$}"),
                    _ => "-".into(),
                };
                let verdict = match (s.outcome, best == Some(s.step)) {
                    (Outcome::Healthy, true) => "best".to_string(),
                    (Outcome::Healthy, false) if s.reason.is_empty() => "healthy".to_string(),
                    (outcome, _) => format!("{outcome}: {}", printable(&s.reason)),
                };
                vec![
                    s.step.to_string(),
                    format!(
                        "{}/{}",
                        format_label_number(s.frequency_mhz),
                        format_label_number(s.core_voltage_mv)
                    ),
                    with_ci(
                        r.and_then(|r| r.mean_hashrate_ghs),
                        r.and_then(|r| r.hashrate_ci_percent),
                        1,
                    ),
                    with_ci(
                        r.and_then(|r| r.joules_per_terahash),
                        r.and_then(|r| r.jth_ci_percent),
                        2,
                    ),
                    r.and_then(|r| r.percent_of_expected)
                        .map_or("-".into(), |p| format!("{p:.1}")),
                    r.and_then(|r| r.error_percent)
                        .map_or("-".into(), |e| format!("{e:.2}")),
                    r.and_then(|r| r.asic_temp_max_c)
                        .map_or("-".into(), |t| format!("{t:.1}")),
                    verdict,
                ]
            })
            .collect();
        text.push_str(&table::render(&columns, &rows));
    }
    text
}

async fn resume(config: &Config, args: ResumeArgs) -> Result<(), Failure> {
    let resumed = Resumed::load(config).map_err(failure)?;
    status_line(&format!(
        "resuming sweep #{} after {} step(s)",
        resumed.run_id(),
        resumed.steps_taken()
    ));
    let output = Output {
        format: args.format,
        plot: args.plot,
    };
    run_sweep(config, resumed.spec.clone(), Some(resumed), output).await
}

fn status(config: &Config, format: Format) -> Result<(), Failure> {
    let shown = latest_runs(&config.database_path).map_err(ledger_failure)?;
    if format == Format::Json {
        let json: Vec<serde_json::Value> = shown
            .iter()
            .map(|s| {
                serde_json::json!({"id": s.run.id, "state": s.state.as_str(), "started": time::format(s.run.started_at),
                    "ended": s.run.ended_at.map(time::format), "pid": s.run.pid, "steps": s.steps, "devices": s.devices})
            })
            .collect();
        return print_json(&json);
    }
    if shown.is_empty() {
        return emit("no sweeps yet\n");
    }
    let mut text = String::new();
    for summary in &shown {
        let interrupted = summary.state == RunState::Interrupted;
        text.push_str(&format!(
            "#{} {}: started {}, {} step(s){}\n",
            summary.run.id,
            summary.state.as_str(),
            time::format(summary.run.started_at),
            summary.steps,
            if interrupted {
                " — run `tune restore --device NAME` (or `tune resume`)"
            } else {
                ""
            }
        ));
        for d in &summary.devices {
            let now = match d.status {
                TuneStatus::Running if interrupted => "interrupted".to_string(),
                status => status.as_str().replace('_', " "),
            };
            text.push_str(&format!(
                "  {}: {now}; started on {}{}\n",
                printable(&d.device),
                pair_text((d.original_frequency_mhz, d.original_core_voltage_mv)),
                match (d.final_frequency_mhz, d.final_core_voltage_mv) {
                    (None, None) => String::new(),
                    pair => format!(", left on {}", pair_text(pair)),
                }
            ));
        }
    }
    emit(&text)
}

async fn restore(config: &Config, device_name: &str) -> Result<(), Failure> {
    let restored = tune_run::restore_interrupted(config, device_name, &Progress::plain())
        .await
        .map_err(failure)?;
    emit(&format!(
        "{}: back on {} (read back), as before sweep #{}\n",
        printable(device_name),
        pair_text(restored.settings),
        restored.run_id
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::measure::StepResult;
    use crate::tune::plan::PlanKind;

    fn step(number: u32, pair: (f64, f64), outcome: Outcome, reason: &str, jth: Option<f64>) -> StepReport {
        StepReport {
            step: number,
            frequency_mhz: pair.0,
            core_voltage_mv: pair.1,
            outcome,
            reason: reason.into(),
            converged: true,
            result: jth.map(|jth| StepResult {
                samples: 20,
                mean_hashrate_ghs: Some(pair.0 * 2.04),
                hashrate_ci_percent: Some(0.8),
                joules_per_terahash: Some(jth),
                jth_ci_percent: Some(0.7),
                percent_of_expected: Some(99.8),
                error_percent: Some(if outcome == Outcome::Unhealthy { 7.91 } else { 0.5 }),
                error_source: Some("errorPercentage".into()),
                asic_temp_max_c: Some(60.2),
                ..StepResult::default()
            }),
            session_id: Some(i64::from(number)),
        }
    }

    #[test]
    fn the_ranked_table_puts_the_best_first_and_says_why_each_other_configuration_lost() {
        let spec = SweepSpec::for_test("gamma", PlanKind::Grid);
        let report = DeviceReport {
            device: "gamma".into(),
            original_frequency_mhz: Some(525.0),
            original_core_voltage_mv: Some(1150.0),
            steps: vec![
                step(1, (490.0, 1100.0), Outcome::Healthy, "", Some(16.43)),
                step(2, (525.0, 1100.0), Outcome::Healthy, "", Some(16.07)),
                step(
                    3,
                    (550.0, 1100.0),
                    Outcome::Unhealthy,
                    "ASIC errors 7.91 % (> 3 %)",
                    Some(15.85),
                ),
                step(
                    4,
                    (600.0, 1200.0),
                    Outcome::Limit,
                    "ASIC temperature 65.2 °C reached the 65 °C limit",
                    None,
                ),
            ],
            status: TuneStatus::Finished,
            final_frequency_mhz: Some(525.0),
            final_core_voltage_mv: Some(1100.0),
            best_step: Some(2),
            note: String::new(),
        };
        let text = results_text(7, &spec, &[report]);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("tune #7: grid plan, best by efficiency"), "{text}");
        assert!(text.contains("gamma: finished — left on 525 MHz / 1100 mV"), "{text}");
        // The rows in rank order: healthy by J/TH, then the rejected ones.
        let order: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|first| first.parse::<u32>().is_ok())
            .collect();
        assert_eq!(order, ["2", "1", "3", "4"], "{text}");
        let row = |step: &str| {
            text.lines()
                .find(|l| l.split_whitespace().next() == Some(step))
                .unwrap_or_default()
        };
        assert!(
            row("2").contains("525/1100") && row("2").contains("16.07 ±0.7"),
            "{text}"
        );
        assert!(row("2").trim_end().ends_with("best"), "{text}");
        assert!(row("1").trim_end().ends_with("healthy"), "{text}");
        // A verdict too long for its column wraps onto the next line: read it as one text.
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains("7.91 60.2 unhealthy: ASIC errors 7.91 % (> 3 %)"),
            "the undervolt with the lowest J/TH says why it lost: {text}"
        );
        assert!(
            flat.contains("limit: ASIC temperature 65.2 °C reached the 65 °C limit"),
            "{text}"
        );
    }
}
