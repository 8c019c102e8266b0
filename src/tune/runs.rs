//! The ledger's tuning runs as this process sees them: whether a run's process still
//! sweeps, each run's state for `tune status`, and the step session a killed run left open.

use std::path::Path;

use crate::ledger::sessions::{self, SessionError};
use crate::ledger::tune::{TuneDevice, TuneRun, TuneStatus};
use crate::ledger::{DeviceRow, Ledger, LedgerError};
use crate::time;

/// How many of the latest runs `tune status` shows.
const RUNS_SHOWN: usize = 10;

/// Where a run is, as `tune status` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    /// Its process is still sweeping.
    Running,
    /// Marked running, but its process is gone: `tune restore` or `tune resume` it.
    Interrupted,
    /// It ended so (finished, restored, restore failed…).
    Ended(TuneStatus),
}

impl RunState {
    fn of(run: &TuneRun) -> RunState {
        match run.status {
            TuneStatus::Running if process_alive(run) => RunState::Running,
            TuneStatus::Running => RunState::Interrupted,
            other => RunState::Ended(other),
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Interrupted => "interrupted",
            RunState::Ended(status) => status.as_str(),
        }
    }
}

/// One run as `tune status` shows it.
pub(crate) struct RunSummary {
    pub run: TuneRun,
    pub state: RunState,
    pub devices: Vec<TuneDevice>,
    /// Steps it recorded, over every device.
    pub steps: usize,
}

/// The latest runs in the ledger at `database`, newest first (read only).
pub(crate) fn latest_runs(database: &Path) -> Result<Vec<RunSummary>, LedgerError> {
    let ledger = Ledger::open_read_only(database)?;
    let mut shown = Vec::new();
    for run in ledger.tune_runs()?.into_iter().take(RUNS_SHOWN) {
        let devices = ledger.tune_devices(run.id)?;
        let steps = ledger.tune_steps(run.id)?.len();
        shown.push(RunSummary {
            state: RunState::of(&run),
            run,
            devices,
            steps,
        });
    }
    Ok(shown)
}

/// This process, as a run records it.
pub(crate) fn this_process() -> (u32, Option<u64>) {
    let pid = std::process::id();
    (pid, crate::process::start_ticks(pid))
}

/// Whether another process (pid and start time) is still running (this one is not
/// another one).
pub(crate) fn other_process_alive(pid: u32, process_start: Option<u64>) -> bool {
    pid != std::process::id() && crate::process::still_running(pid, process_start)
}

/// Whether another process that ran a sweep is still running it (a run this process
/// registered is not another one's).
pub(crate) fn process_alive(run: &TuneRun) -> bool {
    other_process_alive(run.pid, run.process_start)
}

/// The runs whose process is still sweeping.
pub(crate) fn live_runs(ledger: &Ledger) -> Result<Vec<TuneRun>, LedgerError> {
    Ok(ledger
        .tune_runs()?
        .into_iter()
        .filter(|r| r.status == TuneStatus::Running && process_alive(r))
        .collect())
}

/// Ends the session a killed sweep left open on this device (its step was never judged);
/// a session of a live sweep or of a user stays.
pub(crate) fn close_interrupted_step(ledger: &mut Ledger, device: &DeviceRow) -> Result<(), SessionError> {
    let open = sessions::current(ledger, device)?;
    let Some(run_id) = open.and_then(|s| s.tune_run_id) else {
        return Ok(());
    };
    let runs = ledger.tune_runs()?;
    let alive = runs
        .iter()
        .any(|r| r.id == run_id && r.status == TuneStatus::Running && process_alive(r));
    if !alive {
        sessions::end(ledger, device, time::now_unix(), "the sweep was interrupted")?;
    }
    Ok(())
}
