//! `tune`, `tune status`, `tune resume`, `tune restore`: the sweep's command line — plans
//! checked before anything is sent, `--dry-run`, signals that restore, a live line per
//! device — and its results as a ranked table, JSON, or an SVG heat map.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use tokio::sync::{watch, Semaphore};

use super::output::{emit, print_json, status_line};
use super::settings::ledger_failure;
use super::table::{self, Column};
use super::Failure;
use crate::analysis::Metric;
use crate::axeos::sample::format_label_number;
use crate::axeos::{printable, AxeOsClient};
use crate::config::{self, Config};
use crate::ledger::sessions;
use crate::ledger::tune::{TuneDevice, TuneRun, TuneStatus};
use crate::ledger::writer::{SegmentRules, Writer};
use crate::ledger::{DaemonLock, Ledger, LedgerError};
use crate::time;
use crate::tune::limits::Limits;
use crate::tune::plan::{PlanKind, Span};
use crate::tune::prepare::{needs_restart, prepare, PlanLists, Prepared};
use crate::tune::restore::{restore_settings, Restore};
use crate::tune::sweep::{DeviceReport, Observer, StepReport, Sweep, SweepSpec, Then};

use super::tune_detach::{detach, DETACHED_ENV};
pub use super::tune_progress::LogObserver;
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

fn client() -> Result<AxeOsClient, Failure> {
    Ok(AxeOsClient::new(Duration::from_secs(5), Duration::from_secs(30))?)
}

/// Reads every device and builds its plan (a resumed run's stored lists where it has
/// them); sends nothing. Every problem is reported.
async fn prepare_all(
    config: &Config,
    spec: &SweepSpec,
    client: &AxeOsClient,
    resumed: Option<&Resumed>,
) -> Result<Vec<Prepared>, Failure> {
    let mut prepared = Vec::new();
    let mut problems = Vec::new();
    for name in &spec.devices {
        let Some(device) = config.devices.iter().find(|d| &d.name == name) else {
            let known: Vec<&str> = config.devices.iter().map(|d| d.name.as_str()).collect();
            problems.push(format!(
                "unknown device \"{}\"; config.yaml has {}",
                printable(name),
                known.join(", ")
            ));
            continue;
        };
        let fixed = resumed.and_then(|r| r.lists_of(name));
        match prepare(client, name, &device.address, spec, &config.tune, fixed).await {
            Ok(p) => prepared.push(p),
            Err(e) => problems.push(e),
        }
    }
    if problems.is_empty() {
        Ok(prepared)
    } else {
        Err(Failure::Usage(anyhow::anyhow!(
            "nothing was sent to any miner: {}",
            problems.join("; ")
        )))
    }
}

async fn dry_run(config: &Config, spec: &SweepSpec, format: Format) -> Result<(), Failure> {
    let client = client()?;
    let prepared = prepare_all(config, spec, &client, None).await?;
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

/// SIGINT, SIGTERM and SIGHUP (the terminal or SSH session closed) set the flag every
/// device's sweep watches; the sweeps then restore. A detached sweep has no terminal to
/// lose: it ignores SIGHUP and stops on SIGINT or SIGTERM.
fn cancel_on_signals() -> Result<watch::Receiver<bool>, Failure> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(false);
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let detached = std::env::var_os(DETACHED_ENV).is_some();
    tokio::spawn(async move {
        let name = loop {
            tokio::select! {
                _ = interrupt.recv() => break "SIGINT",
                _ = terminate.recv() => break "SIGTERM",
                _ = hangup.recv() => {
                    if detached {
                        status_line("SIGHUP ignored: this sweep runs detached (stop it with SIGTERM)");
                        continue;
                    }
                    break "SIGHUP (the terminal closed)";
                }
            }
        };
        status_line(&format!(
            "{name}: stopping the sweep and restoring every miner's original settings"
        ));
        let _ = tx.send(true);
        // Further signals are absorbed: the restore must finish.
        loop {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                _ = hangup.recv() => {}
            }
            status_line("still restoring; the miners are put back before this exits");
        }
    });
    Ok(rx)
}

/// Runs a sweep (a new one, or `resume`'s continuation of `resumed`).
async fn run_sweep(config: &Config, spec: SweepSpec, resumed: Option<Resumed>, output: Output) -> Result<(), Failure> {
    let cancel = cancel_on_signals()?;
    let observer: Arc<dyn Observer> = Arc::new(Progress::new(&spec, config.tune.confidence_percent));
    let (run_id, reports) = execute(config, &spec, resumed, cancel.clone(), observer).await?;
    if let Some(path) = &output.plot {
        super::tune_plot::write_heat_map(path, &reports).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match output.format {
        Format::Json => print_json(&serde_json::json!({"run": run_id, "spec": spec, "devices": reports}))?,
        Format::Table => emit(&results_text(run_id, &spec, &reports))?,
    }
    let failed: Vec<&DeviceReport> = reports
        .iter()
        .filter(|r| r.status == TuneStatus::RestoreFailed)
        .collect();
    if !failed.is_empty() {
        let names: Vec<String> = failed.iter().map(|r| printable(&r.device).into_owned()).collect();
        return Err(Failure::Runtime(anyhow::anyhow!(
            "could not confirm the settings of {}; run `tune restore --device NAME` for each",
            names.join(", ")
        )));
    }
    if *cancel.borrow() {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "interrupted; every miner is back on its original settings (read back)"
        )));
    }
    // Every device stopped before any step gave a verdict (its samples could not be
    // stored, it stopped answering): the run answered nothing, which is a failure.
    let measured_nothing = !reports.is_empty()
        && reports
            .iter()
            .all(|r| !r.note.is_empty() && r.steps.iter().all(|s| s.outcome == "aborted" && s.result.is_none()));
    if measured_nothing {
        let why: Vec<String> = reports
            .iter()
            .map(|r| format!("{}: {}", printable(&r.device), printable(&r.note)))
            .collect();
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the sweep measured nothing ({}); every miner is back on its original settings",
            why.join("; ")
        )));
    }
    Ok(())
}

/// Runs a sweep to its end (or the cancel signal) and returns the run's id and each
/// device's report, sorted by name: for `tune`, `tune resume` and the demo.
pub async fn execute(
    config: &Config,
    spec: &SweepSpec,
    resumed: Option<Resumed>,
    cancel: watch::Receiver<bool>,
    observer: Arc<dyn Observer>,
) -> Result<(i64, Vec<DeviceReport>), Failure> {
    let spec = spec.clone();
    let client = client()?;
    let mut prepared = prepare_all(config, &spec, &client, resumed.as_ref()).await?;
    let configured: Vec<String> = config.devices.iter().map(|d| d.name.clone()).collect();
    let this_run = resumed.as_ref().map(|r| r.run.id);

    // This process keeps the samples unless `serve` already does (it holds the ledger).
    let rules = SegmentRules::for_poll_interval(config.tune.sample_interval, config.warmup);
    let writer = match Writer::start_for_sweep(&config.database_path, rules, configured.clone()) {
        Ok(writer) => Some(writer),
        Err(LedgerError::InUse { holder, .. }) => {
            // Another sweep (not `serve`) stores samples only for its own miners: this one
            // would have no sample writer.
            if let Some(pid) = DaemonLock::sweep_holder(&config.database_path) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "another sweep (pid {pid}) holds this ledger; nothing was sent to any miner: sweep every miner \
                     in one run (--device A --device B), wait for it, or start `serve`, which stores the samples of \
                     every sweep"
                )));
            }
            status_line(&format!(
                "`serve` ({holder}) keeps this ledger's samples; the sweep judges the samples it stores"
            ));
            None
        }
        Err(e) => return Err(ledger_failure(e)),
    };
    let mut ledger = Ledger::open_existing(&config.database_path).map_err(ledger_failure)?;

    // Every device checked before the first write: known, not left unrestored by another
    // sweep (its "original" would be that sweep's setting), no session of someone else.
    let mut devices = Vec::new();
    for p in &prepared {
        let row =
            sessions::resolve_device(&mut ledger, &p.name, &configured).map_err(super::settings::session_failure)?;
        if let Some(plan) = ledger.tune_unrestored(row.id).map_err(ledger_failure)? {
            if Some(plan.run_id) != this_run {
                let live = live_runs(&ledger)?.iter().any(|r| r.id == plan.run_id);
                return Err(Failure::Usage(anyhow::anyhow!(if live {
                    format!("{}: sweep #{} is tuning it now", printable(&p.name), plan.run_id)
                } else {
                    format!(
                        "{}: sweep #{} was interrupted and left it unrestored; run `tune restore --device {}` \
                         (or `tune resume`) first",
                        printable(&p.name),
                        plan.run_id,
                        printable(&p.name)
                    )
                })));
            }
        }
        close_interrupted_step(&mut ledger, &row)?;
        sessions::check_none_open(&ledger, &row).map_err(super::settings::session_failure)?;
        devices.push(row);
    }
    let spec_json = serde_json::to_string(&spec).context("cannot encode the sweep")?;
    // The restore plan, before anything is sent: what each miner ran before this run
    // (a resumed run keeps the plan it made).
    let mut claims = Vec::new();
    for (p, row) in prepared.iter_mut().zip(&devices) {
        if let Some(original) = resumed
            .as_ref()
            .and_then(|r| r.devices.iter().find(|d| d.device_id == row.id))
        {
            p.original = (original.original_frequency_mhz, original.original_core_voltage_mv);
        }
        let lists = serde_json::to_string(&p.lists).context("cannot encode the plan")?;
        claims.push((row.id, p.original, lists));
    }
    // Checked and registered in one transaction: of two sweeps started together on one
    // miner, one is refused here, before either writes to it.
    let alive =
        |pid: u32, start: Option<u64>| pid != std::process::id() && crate::daemon::process::still_running(pid, start);
    let claimed = ledger
        .tune_begin_claiming(time::now_unix(), this_process(), &spec_json, this_run, &claims, &alive)
        .map_err(ledger_failure)?;
    let run_id = match claimed {
        Ok(run_id) => run_id,
        Err(conflict) => {
            let name = devices
                .iter()
                .find(|d| d.id == conflict.device_id)
                .map_or_else(|| "a device".to_string(), |d| printable(&d.name).into_owned());
            return Err(Failure::Usage(anyhow::anyhow!(if conflict.live {
                format!("{name}: sweep #{} is tuning it now; nothing was sent", conflict.run_id)
            } else {
                format!(
                    "{name}: sweep #{} left it unrestored; run `tune restore --device {name}` (or `tune resume`) first",
                    conflict.run_id
                )
            })));
        }
    };

    // The sweep's heartbeat, for a `serve` that cannot see this process (another pid
    // namespace): it takes the sweep for alive while this beats.
    let heartbeat = {
        let path = config.database_path.clone();
        tokio::spawn(async move {
            loop {
                crate::ledger::touch_heartbeat(&path, run_id);
                tokio::time::sleep(crate::ledger::HEARTBEAT_EVERY).await;
            }
        })
    };
    let sweep = Arc::new(Sweep {
        client,
        settings: config.tune,
        spec: spec.clone(),
        run_id,
        ledger_path: config.database_path.clone(),
        configured,
        samples: writer.as_ref().map(|w| w.sender.clone()),
        serve_poll_interval: config.poll_interval,
        cancel: cancel.clone(),
        observer: observer.clone(),
    });
    let permits = Arc::new(Semaphore::new(spec.max_parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (p, row) in prepared.iter().cloned().zip(devices.iter().cloned()) {
        let done: Vec<StepReport> = resumed.as_ref().map(|r| r.steps_of(row.id)).unwrap_or_default();
        let sweep = sweep.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            sweep.run_device(p, row, done).await
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(report) => reports.push(report),
            Err(e) => status_line(&format!("a device's sweep stopped unexpectedly: {e}")),
        }
    }
    // A sweep that ended without a report (it cannot, short of a bug): restore it here.
    for (p, row) in prepared.iter().zip(&devices) {
        if reports.iter().any(|r| r.device == p.name) {
            continue;
        }
        let restore = Restore {
            target: p.original,
            what: "the original settings",
            restart: needs_restart(&p.first.identity),
        };
        let restored = restore_settings(&sweep.client, &p.name, &p.address, restore, &*observer).await;
        let status = if restored.is_ok() {
            TuneStatus::Restored
        } else {
            TuneStatus::RestoreFailed
        };
        let settings = restored.clone().unwrap_or((None, None));
        let _ = ledger.tune_finish_device(run_id, row.id, status, settings, "the sweep task failed");
    }
    // The sweep holds a sender of the writer: dropped first, so the writer sees the end.
    drop(sweep);
    let all_finished = reports.iter().all(|r| r.status == TuneStatus::Finished) && reports.len() == prepared.len();
    let run_status = if all_finished {
        TuneStatus::Finished
    } else if reports.iter().any(|r| r.status == TuneStatus::RestoreFailed) {
        TuneStatus::RestoreFailed
    } else {
        TuneStatus::Restored
    };
    heartbeat.abort();
    crate::ledger::clear_heartbeat(&config.database_path, run_id);
    ledger
        .tune_end(run_id, time::now_unix(), run_status)
        .map_err(ledger_failure)?;
    if let Some(writer) = writer {
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("the ledger writer failed: {e}")))?;
    }
    reports.sort_by(|a, b| a.device.cmp(&b.device));
    Ok((run_id, reports))
}

/// The ranked table of each device's steps.
pub fn results_text(run_id: i64, spec: &SweepSpec, reports: &[DeviceReport]) -> String {
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
            let healthy = if s.outcome == "healthy" { 1e9 } else { 0.0 };
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
                let verdict = match (s.outcome.as_str(), best == Some(s.step)) {
                    ("healthy", true) => "best".to_string(),
                    ("healthy", false) if s.reason.is_empty() => "healthy".to_string(),
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

/// The interrupted run `resume` continues.
pub struct Resumed {
    run: TuneRun,
    devices: Vec<TuneDevice>,
    steps: Vec<crate::ledger::tune::TuneStep>,
}

impl Resumed {
    /// A device's candidate lists as the run fixed them.
    fn lists_of(&self, name: &str) -> Option<PlanLists> {
        let device = self.devices.iter().find(|d| d.device == name)?;
        serde_json::from_str(device.plan.as_deref()?).ok()
    }

    fn steps_of(&self, device_id: i64) -> Vec<StepReport> {
        self.steps
            .iter()
            .filter(|s| s.device_id == device_id)
            .map(StepReport::from_ledger)
            .collect()
    }
}

/// Ends the session a killed sweep left open on this device (its step was never judged);
/// a session of a live sweep or of a user stays.
fn close_interrupted_step(ledger: &mut Ledger, device: &crate::ledger::DeviceRow) -> Result<(), Failure> {
    let open = sessions::current(ledger, device).map_err(super::settings::session_failure)?;
    let Some(run_id) = open.and_then(|s| s.tune_run_id) else {
        return Ok(());
    };
    let runs = ledger.tune_runs().map_err(ledger_failure)?;
    let alive = runs
        .iter()
        .any(|r| r.id == run_id && r.status == TuneStatus::Running && process_alive(r));
    if !alive {
        sessions::end(ledger, device, time::now_unix(), "the sweep was interrupted")
            .map_err(super::settings::session_failure)?;
    }
    Ok(())
}

/// This process, as a run records it.
fn this_process() -> (u32, Option<u64>) {
    let pid = std::process::id();
    (pid, crate::daemon::process::start_ticks(pid))
}

/// Whether another process that ran a sweep is still running it (a run this process
/// registered is not another one's).
fn process_alive(run: &TuneRun) -> bool {
    run.pid != std::process::id() && crate::daemon::process::still_running(run.pid, run.process_start)
}

/// The runs whose process is still sweeping.
fn live_runs(ledger: &Ledger) -> Result<Vec<TuneRun>, Failure> {
    Ok(ledger
        .tune_runs()
        .map_err(ledger_failure)?
        .into_iter()
        .filter(|r| r.status == TuneStatus::Running && process_alive(r))
        .collect())
}

fn run_state(run: &TuneRun) -> &'static str {
    match run.status {
        TuneStatus::Running if process_alive(run) => "running",
        TuneStatus::Running => "interrupted",
        other => other.as_str(),
    }
}

async fn resume(config: &Config, args: ResumeArgs) -> Result<(), Failure> {
    let ledger = Ledger::open_existing(&config.database_path).map_err(ledger_failure)?;
    let runs = ledger.tune_runs().map_err(ledger_failure)?;
    let Some(run) = runs.into_iter().find(|r| r.status == TuneStatus::Running) else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "no interrupted sweep to resume (`tune status` lists them)"
        )));
    };
    if process_alive(&run) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "sweep #{} is still running (pid {}); it needs no resume",
            run.id,
            run.pid
        )));
    }
    let mut spec: SweepSpec = serde_json::from_str(&run.spec)
        .with_context(|| format!("sweep #{} was stored by another version and cannot be resumed", run.id))
        .map_err(Failure::Usage)?;
    let devices = ledger.tune_devices(run.id).map_err(ledger_failure)?;
    // Only the devices the sweep had not finished with: one that ended (finished,
    // restored, or stopped by protection, which keeps the protection's settings) is left
    // as it is, never swept or restored again.
    let unfinished: Vec<String> = devices
        .iter()
        .filter(|d| matches!(d.status, TuneStatus::Running | TuneStatus::RestoreFailed))
        .map(|d| d.device.clone())
        .collect();
    spec.devices.retain(|name| unfinished.contains(name));
    if spec.devices.is_empty() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "sweep #{} has no device left to sweep; `tune status` shows how each ended",
            run.id
        )));
    }
    let devices: Vec<TuneDevice> = devices.into_iter().filter(|d| unfinished.contains(&d.device)).collect();
    let steps = ledger.tune_steps(run.id).map_err(ledger_failure)?;
    drop(ledger);
    status_line(&format!("resuming sweep #{} after {} step(s)", run.id, steps.len()));
    let output = Output {
        format: args.format,
        plot: args.plot,
    };
    run_sweep(config, spec, Some(Resumed { run, devices, steps }), output).await
}

fn status(config: &Config, format: Format) -> Result<(), Failure> {
    let ledger = Ledger::open_read_only(&config.database_path).map_err(ledger_failure)?;
    let runs = ledger.tune_runs().map_err(ledger_failure)?;
    let mut shown = Vec::new();
    for run in runs.iter().take(10) {
        let devices = ledger.tune_devices(run.id).map_err(ledger_failure)?;
        let steps = ledger.tune_steps(run.id).map_err(ledger_failure)?;
        shown.push((run, run_state(run), devices, steps.len()));
    }
    if format == Format::Json {
        let json: Vec<serde_json::Value> = shown
            .iter()
            .map(|(run, state, devices, steps)| {
                serde_json::json!({"id": run.id, "state": state, "started": time::format(run.started_at),
                    "ended": run.ended_at.map(time::format), "pid": run.pid, "steps": steps, "devices": devices})
            })
            .collect();
        return print_json(&json);
    }
    if shown.is_empty() {
        return emit("no sweeps yet\n");
    }
    let mut text = String::new();
    for (run, state, devices, steps) in &shown {
        text.push_str(&format!(
            "#{} {state}: started {}, {steps} step(s){}\n",
            run.id,
            time::format(run.started_at),
            if *state == "interrupted" {
                " — run `tune restore --device NAME` (or `tune resume`)"
            } else {
                ""
            }
        ));
        for d in devices {
            let now = match d.status {
                TuneStatus::Running if *state == "interrupted" => "interrupted".to_string(),
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
    let Some(device) = config.devices.iter().find(|d| d.name == device_name) else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "unknown device \"{}\"; `tune restore` needs it in config.yaml to know its address",
            printable(device_name)
        )));
    };
    let mut ledger = Ledger::open_existing(&config.database_path).map_err(ledger_failure)?;
    let row = super::settings::known_device(&ledger, device_name)?;
    let Some(plan) = ledger.tune_unrestored(row.id).map_err(ledger_failure)? else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "{}: no sweep left it unrestored; nothing to do",
            printable(device_name)
        )));
    };
    let runs = ledger.tune_runs().map_err(ledger_failure)?;
    // A device its sweep is still working on restores itself on Ctrl-C; one it gave up
    // on (restore_failed) can be restored while the sweep runs on.
    if let Some(run) = runs
        .iter()
        .find(|r| r.id == plan.run_id && r.status == TuneStatus::Running)
        .filter(|_| plan.status == TuneStatus::Running)
    {
        if process_alive(run) {
            return Err(Failure::Usage(anyhow::anyhow!(
                "sweep #{} is running (pid {}); stop it (Ctrl-C or SIGTERM) and it restores by itself",
                run.id,
                run.pid
            )));
        }
    }
    close_interrupted_step(&mut ledger, &row)?;
    let client = client()?;
    let observer = Progress::plain();
    let target = (plan.original_frequency_mhz, plan.original_core_voltage_mv);
    // Firmware before v2.2 needs a restart to run what it stores.
    // Firmware that runs new settings only at boot needs a restart; what the miner is comes
    // from it now, else from what the ledger last saw of it.
    let identity = match client.system_info(&device.address).await {
        Ok(sample) => sample.identity,
        Err(_) => crate::axeos::sample::Identity {
            firmware: row.firmware.clone(),
            family: crate::axeos::family::decide(&crate::axeos::family::FamilyHints {
                version: row.firmware.as_deref(),
                ..Default::default()
            }),
            ..Default::default()
        },
    };
    let restore = Restore {
        target,
        what: "the original settings",
        restart: needs_restart(&identity),
    };
    let restored = restore_settings(&client, device_name, &device.address, restore, &observer).await;
    let (status, settings, note) = match &restored {
        Ok(read) => (TuneStatus::Restored, *read, "restored by `tune restore`".to_string()),
        Err(e) => (TuneStatus::RestoreFailed, (None, None), e.clone()),
    };
    ledger
        .tune_finish_device(plan.run_id, row.id, status, settings, &note)
        .map_err(ledger_failure)?;
    if ledger
        .tune_devices(plan.run_id)
        .map_err(ledger_failure)?
        .iter()
        .all(|d| d.status != TuneStatus::Running)
    {
        ledger
            .tune_end(plan.run_id, time::now_unix(), TuneStatus::Restored)
            .map_err(ledger_failure)?;
    }
    match restored {
        Ok(read) => emit(&format!(
            "{}: back on {} (read back), as before sweep #{}\n",
            printable(device_name),
            pair_text(read),
            plan.run_id
        )),
        Err(e) => Err(Failure::Runtime(anyhow::anyhow!(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::measure::StepResult;
    use crate::tune::plan::PlanKind;

    fn step(number: u32, pair: (f64, f64), outcome: &str, reason: &str, jth: Option<f64>) -> StepReport {
        StepReport {
            step: number,
            frequency_mhz: pair.0,
            core_voltage_mv: pair.1,
            outcome: outcome.into(),
            reason: reason.into(),
            converged: true,
            result: jth.map(|jth| StepResult {
                samples: 20,
                mean_hashrate_ghs: Some(pair.0 * 2.04),
                hashrate_ci_percent: Some(0.8),
                joules_per_terahash: Some(jth),
                jth_ci_percent: Some(0.7),
                percent_of_expected: Some(99.8),
                error_percent: Some(if outcome == "unhealthy" { 7.91 } else { 0.5 }),
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
                step(1, (490.0, 1100.0), "healthy", "", Some(16.43)),
                step(2, (525.0, 1100.0), "healthy", "", Some(16.07)),
                step(
                    3,
                    (550.0, 1100.0),
                    "unhealthy",
                    "ASIC errors 7.91 % (> 3 %)",
                    Some(15.85),
                ),
                step(
                    4,
                    (600.0, 1200.0),
                    "limit",
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
