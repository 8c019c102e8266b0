//! A tuning run from its start to its end: every device read and planned before anything
//! is sent, the run and its restore plans claimed in the ledger, a task per device, the
//! run's end recorded; `tune resume`'s continuation of an interrupted run and `tune
//! restore`'s undoing of one. Errors are typed; the command line picks the exit code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};

use crate::axeos::sample::{needs_restart, Identity};
use crate::axeos::{printable, AxeOsClient, ClientBuildError};
use crate::config::{Config, DeviceConfig};
use crate::ledger::sessions::{self, SessionError};
use crate::ledger::tune::{TuneDevice, TuneRun, TuneStatus, TuneStep};
use crate::ledger::writer::{SegmentRules, Writer};
use crate::ledger::{DaemonLock, DeviceRow, Ledger, LedgerError};
use crate::time;
use crate::tune::plan::Outcome;
use crate::tune::prepare::{prepare, PlanLists, Prepared};
use crate::tune::report::{DeviceReport, Observer, StepReport};
use crate::tune::restore::{restore_settings, Restore};
use crate::tune::runs::{close_interrupted_step, live_runs, other_process_alive, process_alive, this_process};
use crate::tune::spec::SweepSpec;
use crate::tune::sweep::Sweep;

/// Why a run did not start, did not end well, or could not be resumed or restored.
/// [`RunError::is_refusal`] tells a request the run refused from a failure while running.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// Reading or planning a device failed, each problem said; nothing was sent.
    #[error("nothing was sent to any miner: {}", .0.join("; "))]
    NothingSent(Vec<String>),
    #[error(
        "another sweep (pid {0}) holds this ledger; nothing was sent to any miner: sweep every miner in one run \
         (--device A --device B), wait for it, or start `serve`, which stores the samples of every sweep"
    )]
    SweepHoldsLedger(u32),
    /// Another run has not let go of a device (checked before the claim).
    #[error("{}", unrestored_text(.device, *.run_id, *.live))]
    Unrestored { device: String, run_id: i64, live: bool },
    /// Another run took a device between the check and the claim.
    #[error("{}", conflict_text(.device, *.run_id, *.live))]
    Claimed { device: String, run_id: i64, live: bool },
    #[error("cannot encode the {what}")]
    Encode {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the ledger writer failed: {0}")]
    WriterFailed(tokio::task::JoinError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("no interrupted sweep to resume (`tune status` lists them)")]
    NothingToResume,
    #[error("sweep #{run_id} is still running (pid {pid}); it needs no resume")]
    StillRunning { run_id: i64, pid: u32 },
    #[error("sweep #{run_id} was stored by another version and cannot be resumed")]
    StoredByAnotherVersion { run_id: i64, source: serde_json::Error },
    #[error("sweep #{0} has no device left to sweep; `tune status` shows how each ended")]
    NothingLeft(i64),
    #[error("unknown device \"{0}\"; `tune restore` needs it in config.yaml to know its address")]
    NotConfigured(String),
    #[error("unknown device \"{name}\"; devices in the ledger: {known}")]
    NotInLedger { name: String, known: String },
    #[error("{0}: no sweep left it unrestored; nothing to do")]
    NothingToRestore(String),
    #[error("sweep #{run_id} is running (pid {pid}); stop it (Ctrl-C or SIGTERM) and it restores by itself")]
    RestoresItself { run_id: i64, pid: u32 },
    /// `tune restore` could not put the settings back (the restore's own words).
    #[error("{0}")]
    RestoreFailed(String),
    #[error("could not confirm the settings of {}; run `tune restore --device NAME` for each", .0.join(", "))]
    NotConfirmed(Vec<String>),
    #[error("interrupted; every miner is back on its original settings (read back)")]
    Interrupted,
    #[error("the sweep measured nothing ({}); every miner is back on its original settings", .0.join("; "))]
    MeasuredNothing(Vec<String>),
}

impl RunError {
    /// The run refused what was asked (exit 2 on the command line), rather than failing
    /// while it ran. Ledger and session errors say so themselves.
    pub(crate) fn is_refusal(&self) -> bool {
        matches!(
            self,
            RunError::NothingSent(_)
                | RunError::SweepHoldsLedger(_)
                | RunError::Unrestored { .. }
                | RunError::Claimed { .. }
                | RunError::NothingToResume
                | RunError::StillRunning { .. }
                | RunError::StoredByAnotherVersion { .. }
                | RunError::NothingLeft(_)
                | RunError::NotConfigured(_)
                | RunError::NotInLedger { .. }
                | RunError::NothingToRestore(_)
                | RunError::RestoresItself { .. }
        )
    }
}

fn unrestored_text(device: &str, run_id: i64, live: bool) -> String {
    if live {
        format!("{device}: sweep #{run_id} is tuning it now")
    } else {
        format!(
            "{device}: sweep #{run_id} was interrupted and left it unrestored; run `tune restore --device {device}` \
             (or `tune resume`) first"
        )
    }
}

fn conflict_text(device: &str, run_id: i64, live: bool) -> String {
    if live {
        format!("{device}: sweep #{run_id} is tuning it now; nothing was sent")
    } else {
        format!("{device}: sweep #{run_id} left it unrestored; run `tune restore --device {device}` (or `tune resume`) first")
    }
}

/// How a run ended: its id and each device's report, sorted by name.
pub(crate) struct RunReport {
    pub run_id: i64,
    pub devices: Vec<DeviceReport>,
}

impl RunReport {
    /// What went wrong for the run as a whole, once its results are shown: a device left
    /// on settings not read back, a stop signal, or a run that measured nothing.
    pub(crate) fn problem(&self, cancelled: bool) -> Option<RunError> {
        let unconfirmed: Vec<String> = self
            .devices
            .iter()
            .filter(|r| r.status == TuneStatus::RestoreFailed)
            .map(|r| printable(&r.device).into_owned())
            .collect();
        if !unconfirmed.is_empty() {
            return Some(RunError::NotConfirmed(unconfirmed));
        }
        if cancelled {
            return Some(RunError::Interrupted);
        }
        // Every device stopped before any step gave a verdict (its samples could not be
        // stored, it stopped answering): the run answered nothing, which is a failure.
        let measured_nothing = !self.devices.is_empty()
            && self.devices.iter().all(|r| {
                !r.note.is_empty()
                    && r.steps
                        .iter()
                        .all(|s| s.outcome == Outcome::Aborted && s.result.is_none())
            });
        measured_nothing.then(|| {
            RunError::MeasuredNothing(
                self.devices
                    .iter()
                    .map(|r| format!("{}: {}", printable(&r.device), printable(&r.note)))
                    .collect(),
            )
        })
    }
}

/// The HTTP client a sweep talks to its miners with.
fn client() -> Result<AxeOsClient, ClientBuildError> {
    AxeOsClient::new(Duration::from_secs(5), Duration::from_secs(30))
}

/// Reads every device and builds its plan (for `--dry-run`); sends nothing.
pub(crate) async fn plan_only(config: &Config, spec: &SweepSpec) -> Result<Vec<Prepared>, RunError> {
    prepare_all(config, spec, &client()?, None).await
}

/// Reads every device and builds its plan (a resumed run's stored lists where it has
/// them); sends nothing. Every problem is reported.
async fn prepare_all(
    config: &Config,
    spec: &SweepSpec,
    client: &AxeOsClient,
    resumed: Option<&Resumed>,
) -> Result<Vec<Prepared>, RunError> {
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
        Err(RunError::NothingSent(problems))
    }
}

/// Runs a sweep to its end (or the cancel signal): a new one, or `resumed`'s continuation.
/// For `tune`, `tune resume` and the demo.
pub(crate) async fn execute(
    config: &Config,
    spec: &SweepSpec,
    resumed: Option<Resumed>,
    cancel: watch::Receiver<bool>,
    observer: Arc<dyn Observer>,
) -> Result<RunReport, RunError> {
    let client = client()?;
    let mut prepared = prepare_all(config, spec, &client, resumed.as_ref()).await?;
    let configured: Vec<String> = config.devices.iter().map(|d| d.name.clone()).collect();
    let writer = sample_writer(config, &configured, &*observer)?;
    let mut ledger = Ledger::open_existing(&config.database_path)?;
    let this_run = resumed.as_ref().map(|r| r.run.id);
    let devices = claimable_devices(&mut ledger, &prepared, &configured, this_run)?;
    let run_id = claim(&mut ledger, spec, &mut prepared, &devices, resumed.as_ref())?;
    let heartbeat = beat_while_running(config.database_path.clone(), run_id);
    let sweep = Arc::new(Sweep {
        client,
        settings: config.tune,
        spec: spec.clone(),
        run_id,
        ledger_path: config.database_path.clone(),
        configured,
        samples: writer.as_ref().map(|w| w.sender.clone()),
        serve_poll_interval: config.poll_interval,
        cancel,
        observer,
    });
    let done = |row: &DeviceRow| resumed.as_ref().map(|r| r.steps_of(row.id)).unwrap_or_default();
    let mut reports = sweep_devices(&sweep, &prepared, &devices, done).await;
    restore_unreported(&sweep, &mut ledger, &prepared, &devices, &reports).await;
    // The sweep holds a sender of the writer: dropped first, so the writer sees the end.
    drop(sweep);
    let status = run_status(&reports, prepared.len());
    heartbeat.abort();
    crate::ledger::clear_heartbeat(&config.database_path, run_id);
    ledger.tune_end(run_id, time::now_unix(), status)?;
    if let Some(writer) = writer {
        tokio::task::spawn_blocking(move || writer.finish())
            .await
            .map_err(RunError::WriterFailed)?;
    }
    reports.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(RunReport {
        run_id,
        devices: reports,
    })
}

/// This process keeps the samples unless `serve` already does (it holds the ledger):
/// then there is no writer of its own.
fn sample_writer(config: &Config, configured: &[String], observer: &dyn Observer) -> Result<Option<Writer>, RunError> {
    let rules = SegmentRules::for_poll_interval(config.tune.sample_interval, config.warmup);
    match Writer::start_for_sweep(&config.database_path, rules, configured.to_vec()) {
        Ok(writer) => Ok(Some(writer)),
        Err(LedgerError::InUse { holder, .. }) => {
            // Another sweep (not `serve`) stores samples only for its own miners: this one
            // would have no sample writer.
            if let Some(pid) = DaemonLock::sweep_holder(&config.database_path) {
                return Err(RunError::SweepHoldsLedger(pid));
            }
            observer.run_note(&format!(
                "`serve` ({holder}) keeps this ledger's samples; the sweep judges the samples it stores"
            ));
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Every device checked before the first write: known, not left unrestored by another
/// sweep (its "original" would be that sweep's setting), no session of someone else.
fn claimable_devices(
    ledger: &mut Ledger,
    prepared: &[Prepared],
    configured: &[String],
    this_run: Option<i64>,
) -> Result<Vec<DeviceRow>, RunError> {
    let mut devices = Vec::new();
    for p in prepared {
        let row = sessions::resolve_device(ledger, &p.name, configured)?;
        if let Some(plan) = ledger.tune_unrestored(row.id)? {
            if Some(plan.run_id) != this_run {
                let live = live_runs(ledger)?.iter().any(|r| r.id == plan.run_id);
                return Err(RunError::Unrestored {
                    device: printable(&p.name).into_owned(),
                    run_id: plan.run_id,
                    live,
                });
            }
        }
        close_interrupted_step(ledger, &row)?;
        sessions::check_none_open(ledger, &row)?;
        devices.push(row);
    }
    Ok(devices)
}

/// Registers the run with each device's restore plan — what each miner ran before it (a
/// resumed run keeps the plan it made) — before anything is sent, and returns its id.
fn claim(
    ledger: &mut Ledger,
    spec: &SweepSpec,
    prepared: &mut [Prepared],
    devices: &[DeviceRow],
    resumed: Option<&Resumed>,
) -> Result<i64, RunError> {
    let spec_json = serde_json::to_string(spec).map_err(|source| RunError::Encode { what: "sweep", source })?;
    let mut claims = Vec::new();
    for (p, row) in prepared.iter_mut().zip(devices) {
        if let Some(original) = resumed.and_then(|r| r.devices.iter().find(|d| d.device_id == row.id)) {
            p.original = (original.original_frequency_mhz, original.original_core_voltage_mv);
        }
        let lists = serde_json::to_string(&p.lists).map_err(|source| RunError::Encode { what: "plan", source })?;
        claims.push((row.id, p.original, lists));
    }
    // Checked and registered in one transaction: of two sweeps started together on one
    // miner, one is refused here, before either writes to it.
    let this_run = resumed.map(|r| r.run.id);
    let claimed = ledger.tune_begin_claiming(
        time::now_unix(),
        this_process(),
        &spec_json,
        this_run,
        &claims,
        &other_process_alive,
    )?;
    claimed.map_err(|conflict| RunError::Claimed {
        device: devices
            .iter()
            .find(|d| d.id == conflict.device_id)
            .map_or_else(|| "a device".to_string(), |d| printable(&d.name).into_owned()),
        run_id: conflict.run_id,
        live: conflict.live,
    })
}

/// The sweep's heartbeat, for a `serve` that cannot see this process (another pid
/// namespace): it takes the sweep for alive while this beats.
fn beat_while_running(database: PathBuf, run_id: i64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            crate::ledger::touch_heartbeat(&database, run_id);
            tokio::time::sleep(crate::ledger::HEARTBEAT_EVERY).await;
        }
    })
}

/// A task per device, at most `max_parallel` at once; `done` gives the steps a resumed
/// run already took on a device. Returns the reports of the tasks that ended.
async fn sweep_devices(
    sweep: &Arc<Sweep>,
    prepared: &[Prepared],
    devices: &[DeviceRow],
    done: impl Fn(&DeviceRow) -> Vec<StepReport>,
) -> Vec<DeviceReport> {
    let permits = Arc::new(Semaphore::new(sweep.spec.max_parallel));
    let mut tasks = tokio::task::JoinSet::new();
    for (p, row) in prepared.iter().cloned().zip(devices.iter().cloned()) {
        let done = done(&row);
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
            Err(e) => sweep
                .observer
                .run_note(&format!("a device's sweep stopped unexpectedly: {e}")),
        }
    }
    reports
}

/// A device whose sweep ended without a report (it cannot, short of a bug) is restored
/// here, and its end recorded.
async fn restore_unreported(
    sweep: &Sweep,
    ledger: &mut Ledger,
    prepared: &[Prepared],
    devices: &[DeviceRow],
    reports: &[DeviceReport],
) {
    for (p, row) in prepared.iter().zip(devices) {
        if reports.iter().any(|r| r.device == p.name) {
            continue;
        }
        let restore = Restore {
            target: p.original,
            what: "the original settings",
            restart: needs_restart(&p.first.identity),
        };
        let restored = restore_settings(&sweep.client, &p.name, &p.address, restore, &*sweep.observer).await;
        let status = if restored.is_ok() {
            TuneStatus::Restored
        } else {
            TuneStatus::RestoreFailed
        };
        let settings = restored.clone().unwrap_or((None, None));
        let _ = ledger.tune_finish_device(sweep.run_id, row.id, status, settings, "the sweep task failed");
    }
}

/// How the run as a whole ended, from its devices' reports.
fn run_status(reports: &[DeviceReport], devices: usize) -> TuneStatus {
    if reports.iter().all(|r| r.status == TuneStatus::Finished) && reports.len() == devices {
        TuneStatus::Finished
    } else if reports.iter().any(|r| r.status == TuneStatus::RestoreFailed) {
        TuneStatus::RestoreFailed
    } else {
        TuneStatus::Restored
    }
}

/// The interrupted run `resume` continues: its arguments, and what it did before it
/// stopped on the devices it had not finished with.
pub(crate) struct Resumed {
    /// The run's arguments, narrowed to those devices.
    pub spec: SweepSpec,
    run: TuneRun,
    devices: Vec<TuneDevice>,
    steps: Vec<TuneStep>,
}

impl Resumed {
    /// The latest interrupted run, ready to continue where it stopped.
    pub(crate) fn load(config: &Config) -> Result<Resumed, RunError> {
        let ledger = Ledger::open_existing(&config.database_path)?;
        let runs = ledger.tune_runs()?;
        let Some(run) = runs.into_iter().find(|r| r.status == TuneStatus::Running) else {
            return Err(RunError::NothingToResume);
        };
        if process_alive(&run) {
            return Err(RunError::StillRunning {
                run_id: run.id,
                pid: run.pid,
            });
        }
        let mut spec: SweepSpec = serde_json::from_str(&run.spec)
            .map_err(|source| RunError::StoredByAnotherVersion { run_id: run.id, source })?;
        // Only the devices the sweep had not finished with: one that ended (finished,
        // restored, or stopped by protection, which keeps the protection's settings) is
        // left as it is, never swept or restored again.
        let devices: Vec<TuneDevice> = ledger
            .tune_devices(run.id)?
            .into_iter()
            .filter(|d| matches!(d.status, TuneStatus::Running | TuneStatus::RestoreFailed))
            .collect();
        spec.devices.retain(|name| devices.iter().any(|d| &d.device == name));
        if spec.devices.is_empty() {
            return Err(RunError::NothingLeft(run.id));
        }
        let steps = ledger.tune_steps(run.id)?;
        Ok(Resumed {
            spec,
            run,
            devices,
            steps,
        })
    }

    pub(crate) fn run_id(&self) -> i64 {
        self.run.id
    }

    /// Steps the run took before it stopped, over every device.
    pub(crate) fn steps_taken(&self) -> usize {
        self.steps.len()
    }

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

/// A device `tune restore` put back: the settings read back, and the run it undid.
pub(crate) struct Restored {
    pub run_id: i64,
    pub settings: (Option<f64>, Option<f64>),
}

/// `tune restore`: puts a device back on the settings it had before the sweep that left
/// it unrestored, reads them back, and records it (ending the run once no device of it
/// is left running).
pub(crate) async fn restore_interrupted(
    config: &Config,
    device_name: &str,
    observer: &dyn Observer,
) -> Result<Restored, RunError> {
    let Some(device) = config.devices.iter().find(|d| d.name == device_name) else {
        return Err(RunError::NotConfigured(printable(device_name).into_owned()));
    };
    let mut ledger = Ledger::open_existing(&config.database_path)?;
    let row = known_device(&ledger, device_name)?;
    let plan = unrestored_plan(&ledger, &row, device_name)?;
    close_interrupted_step(&mut ledger, &row)?;
    let client = client()?;
    let restore = Restore {
        target: (plan.original_frequency_mhz, plan.original_core_voltage_mv),
        what: "the original settings",
        restart: needs_restart(&identity_now(&client, device, &row).await),
    };
    let restored = restore_settings(&client, device_name, &device.address, restore, observer).await;
    let (status, settings, note) = match &restored {
        Ok(read) => (TuneStatus::Restored, *read, "restored by `tune restore`".to_string()),
        Err(e) => (TuneStatus::RestoreFailed, (None, None), e.clone()),
    };
    ledger.tune_finish_device(plan.run_id, row.id, status, settings, &note)?;
    if ledger
        .tune_devices(plan.run_id)?
        .iter()
        .all(|d| d.status != TuneStatus::Running)
    {
        ledger.tune_end(plan.run_id, time::now_unix(), TuneStatus::Restored)?;
    }
    match restored {
        Ok(settings) => Ok(Restored {
            run_id: plan.run_id,
            settings,
        }),
        Err(e) => Err(RunError::RestoreFailed(e)),
    }
}

/// A device the ledger knows (by current or former name), else an error naming them.
fn known_device(ledger: &Ledger, name: &str) -> Result<DeviceRow, RunError> {
    if let Some(device) = ledger.find_device(name)? {
        return Ok(device);
    }
    let known: Vec<String> = ledger.devices()?.into_iter().map(|d| d.name).collect();
    Err(RunError::NotInLedger {
        name: name.to_string(),
        known: if known.is_empty() {
            "(none yet)".into()
        } else {
            known.join(", ")
        },
    })
}

/// The restore plan of the sweep that left `row` unrestored. A device its sweep is still
/// working on restores itself on Ctrl-C; one it gave up on (restore_failed) can be
/// restored while the sweep runs on.
fn unrestored_plan(ledger: &Ledger, row: &DeviceRow, device_name: &str) -> Result<TuneDevice, RunError> {
    let Some(plan) = ledger.tune_unrestored(row.id)? else {
        return Err(RunError::NothingToRestore(printable(device_name).into_owned()));
    };
    let runs = ledger.tune_runs()?;
    if let Some(run) = runs
        .iter()
        .find(|r| r.id == plan.run_id && r.status == TuneStatus::Running)
        .filter(|_| plan.status == TuneStatus::Running)
    {
        if process_alive(run) {
            return Err(RunError::RestoresItself {
                run_id: run.id,
                pid: run.pid,
            });
        }
    }
    Ok(plan)
}

/// What the miner is — whether its firmware runs new settings only after a restart —
/// from the miner now, else from what the ledger last saw of it.
async fn identity_now(client: &AxeOsClient, device: &DeviceConfig, row: &DeviceRow) -> Identity {
    match client.system_info(&device.address).await {
        Ok(sample) => sample.identity,
        Err(_) => Identity {
            firmware: row.firmware.clone(),
            family: crate::axeos::family::decide(&crate::axeos::family::FamilyHints {
                version: row.firmware.as_deref(),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tune::measure::StepResult;

    fn device(name: &str, status: TuneStatus, note: &str, outcomes: &[(Outcome, bool)]) -> DeviceReport {
        DeviceReport {
            device: name.into(),
            original_frequency_mhz: Some(525.0),
            original_core_voltage_mv: Some(1150.0),
            steps: outcomes
                .iter()
                .enumerate()
                .map(|(i, &(outcome, measured))| StepReport {
                    step: i as u32 + 1,
                    frequency_mhz: 525.0,
                    core_voltage_mv: 1150.0,
                    outcome,
                    reason: String::new(),
                    converged: measured,
                    result: measured.then(StepResult::default),
                    session_id: None,
                })
                .collect(),
            status,
            final_frequency_mhz: Some(525.0),
            final_core_voltage_mv: Some(1150.0),
            best_step: None,
            note: note.into(),
        }
    }

    fn problem(devices: Vec<DeviceReport>, cancelled: bool) -> Option<String> {
        RunReport { run_id: 1, devices }
            .problem(cancelled)
            .map(|e| e.to_string())
    }

    #[test]
    fn a_run_fails_on_unconfirmed_settings_a_signal_or_nothing_measured_and_not_otherwise() {
        let gone = |name| {
            device(
                name,
                TuneStatus::Restored,
                "stopped: gone",
                &[(Outcome::Aborted, false)],
            )
        };
        let finished = device("beta", TuneStatus::Finished, "", &[(Outcome::Healthy, true)]);
        assert_eq!(problem(vec![finished.clone(), gone("gamma")], false), None);
        assert_eq!(problem(vec![], false), None);
        // A step stopped at a limit is a verdict, though nothing was measured.
        let hot = device(
            "alpha",
            TuneStatus::Restored,
            "stopped: gone",
            &[(Outcome::Limit, false)],
        );
        assert_eq!(problem(vec![hot, gone("gamma")], false), None);
        assert_eq!(
            problem(vec![gone("alpha"), gone("gamma")], false).as_deref(),
            Some(
                "the sweep measured nothing (alpha: stopped: gone; gamma: stopped: gone); every miner is back on its \
                 original settings"
            )
        );
        assert_eq!(
            problem(vec![finished.clone()], true).as_deref(),
            Some("interrupted; every miner is back on its original settings (read back)")
        );
        // Settings not read back outrank the signal: the user must restore them.
        let unconfirmed = device("gamma", TuneStatus::RestoreFailed, "no answer", &[]);
        assert_eq!(
            problem(vec![finished, unconfirmed], true).as_deref(),
            Some("could not confirm the settings of gamma; run `tune restore --device NAME` for each")
        );
    }

    #[test]
    fn refusals_are_told_from_failures() {
        assert!(RunError::NothingSent(vec!["x".into()]).is_refusal());
        assert!(RunError::NothingToResume.is_refusal());
        assert!(!RunError::Interrupted.is_refusal());
        assert!(!RunError::RestoreFailed("no answer".into()).is_refusal());
    }
}
