//! Sweeps a `tune` process left behind: a run whose process is gone (SIGKILL, an OOM
//! kill, a crash) or whose restore failed leaves its miner on a step's settings, and the
//! ledger holds the restore plan. `serve` reads those plans at start and every
//! [`CHECK_EVERY`] (a sweep counts as alive while its process runs, or, seen from another
//! pid namespace, while it keeps its heartbeat file fresh): each such miner is an event (once per sweep), a warning in the log,
//! `bitaxe_tune_interrupted{device} 1` and a banner on the fleet page and in `top` — and,
//! with `tune.restore_interrupted: true`, `serve` puts it back itself through the one apply
//! path and records that in the ledger.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::axeos::sample::needs_restart;
use crate::axeos::AxeOsClient;
use crate::daemon::events::DeviceEvent;
use crate::daemon::fleet::{Fleet, InterruptedSweep};
use crate::ledger::tune::TuneStatus;
use crate::ledger::writer::LedgerSender;
use crate::ledger::Ledger;
use crate::tune::report::Observer;
use crate::tune::restore::{fmt_setting, restore_settings, Restore};

/// How often the ledger's restore plans are read again.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(10);

/// One device an interrupted sweep left unrestored, as the ledger says.
#[derive(Debug, Clone)]
struct Found {
    index: usize,
    device_id: i64,
    sweep: InterruptedSweep,
    /// An earlier run of `serve` already recorded the event.
    reported: bool,
}

/// Watches the ledger's restore plans until `stop`.
pub async fn watch_interrupted_sweeps(
    fleet: Arc<Fleet>,
    ledger_path: PathBuf,
    client: AxeOsClient,
    restore: bool,
    ledger: Option<LedgerSender>,
    mut stop: watch::Receiver<bool>,
) {
    // Per (sweep, device): failed restores in a row and when the next may be tried — a
    // miner that answers but will not take the settings is not written to every 30 s.
    let mut backoff: std::collections::HashMap<(i64, usize), (u32, tokio::time::Instant)> =
        std::collections::HashMap::new();
    loop {
        let names: Vec<String> = (0..fleet.len()).map(|i| fleet.device_name(i).to_string()).collect();
        let path = ledger_path.clone();
        let found = tokio::task::spawn_blocking(move || find_interrupted(&path, &names))
            .await
            .unwrap_or_default();
        for index in 0..fleet.len() {
            let now = found.iter().find(|f| f.index == index);
            let before = fleet.tune_interrupted(index);
            let device = fleet.device_name(index).to_string();
            match (now, &before) {
                (Some(found), previous) if previous.as_ref() != Some(&found.sweep) => {
                    let event = DeviceEvent::TuneInterrupted {
                        run_id: found.sweep.run_id,
                        detail: format!(
                            "it was left on the sweep's settings; before the sweep it ran {} MHz / {} mV: run \
                             `tune restore --device {device}`{}",
                            fmt_setting(found.sweep.original.0),
                            fmt_setting(found.sweep.original.1),
                            if restore {
                                " (serve puts it back: tune.restore_interrupted)"
                            } else {
                                ", or set tune.restore_interrupted: true"
                            }
                        ),
                    };
                    tracing::warn!(device = %device, "{event}");
                    if !found.reported {
                        send_event(ledger.as_ref(), &device, event);
                    }
                    fleet.set_tune_interrupted(index, Some(found.sweep.clone()));
                }
                (None, Some(previous)) => {
                    tracing::info!(
                        device = %device,
                        "interrupted sweep #{}: the miner is no longer waiting to be restored",
                        previous.run_id
                    );
                    fleet.set_tune_interrupted(index, None);
                }
                _ => {}
            }
        }
        if restore {
            for found in &found {
                if *stop.borrow() {
                    return;
                }
                let key = (found.sweep.run_id, found.index);
                let now = tokio::time::Instant::now();
                if backoff.get(&key).is_some_and(|(_, next)| now < *next) {
                    continue;
                }
                match restore_one(&fleet, &ledger_path, &client, ledger.as_ref(), found).await {
                    Some(true) | None => {
                        backoff.remove(&key);
                    }
                    Some(false) => {
                        let failures = backoff.get(&key).map_or(0, |(n, _)| *n) + 1;
                        let wait = CHECK_EVERY
                            .saturating_mul(1 << failures.min(7))
                            .min(Duration::from_secs(3600));
                        backoff.insert(key, (failures, now + wait));
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(CHECK_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// The configured devices an interrupted sweep left unrestored. A ledger that cannot be
/// read (not there yet, being replaced) has none.
fn find_interrupted(path: &std::path::Path, names: &[String]) -> Vec<Found> {
    let Ok(ledger) = Ledger::open_read_only(path) else {
        return Vec::new();
    };
    let Ok(runs) = ledger.tune_runs() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let Some(device) = ledger.find_device(name).ok().flatten() else {
            continue;
        };
        let Some(plan) = ledger.tune_unrestored(device.id).ok().flatten() else {
            continue;
        };
        let Some(run) = runs.iter().find(|r| r.id == plan.run_id) else {
            continue;
        };
        // A sweep still working on the miner restores it itself.
        // Alive by its pid, or by its heartbeat (a sweep in another pid namespace).
        let live = run.status == TuneStatus::Running
            && (crate::process::still_running(run.pid, run.process_start)
                || crate::ledger::heartbeat_fresh(path, run.id));
        if live && plan.status == TuneStatus::Running {
            continue;
        }
        let marker = format!("sweep #{} was interrupted", run.id);
        let reported = ledger
            .events_between(device.id, run.started_at, f64::MAX)
            .unwrap_or_default()
            .iter()
            .any(|e| e.kind == "tune_interrupted" && e.detail.starts_with(&marker));
        found.push(Found {
            index,
            device_id: device.id,
            sweep: InterruptedSweep {
                run_id: run.id,
                original: (plan.original_frequency_mhz, plan.original_core_voltage_mv),
            },
            reported,
        });
    }
    found
}

/// Puts one miner back on its settings from before the sweep, and records how it went:
/// `Some(restored)`, or `None` when it was not tried (the miner does not answer now).
async fn restore_one(
    fleet: &Fleet,
    ledger_path: &std::path::Path,
    client: &AxeOsClient,
    ledger: Option<&LedgerSender>,
    found: &Found,
) -> Option<bool> {
    let name = fleet.device_name(found.index).to_string();
    // Only a miner that answers now, with what it runs: its firmware decides the restart.
    let sample = fleet.latest_sample(found.index).filter(|_| fleet.is_up(found.index))?;
    let address = fleet.current_address(found.index)?;
    if sample.identity.family == crate::axeos::family::FirmwareFamily::Unknown {
        // Its write rules are not known: reported only; `tune restore` is the operator's call.
        return None;
    }
    let restore = Restore {
        target: found.sweep.original,
        what: "the settings from before the interrupted sweep",
        restart: needs_restart(&sample.identity),
    };
    let restored = restore_settings(client, &name, &address, restore, &QuietObserver).await;
    let (status, settings, detail) = match &restored {
        Ok(read) => (
            TuneStatus::Restored,
            *read,
            format!(
                "restored by serve (tune.restore_interrupted): {} MHz / {} mV, read back",
                fmt_setting(read.0),
                fmt_setting(read.1)
            ),
        ),
        Err(e) => (
            TuneStatus::RestoreFailed,
            (None, None),
            format!("serve could not restore it: {e}"),
        ),
    };
    let path = ledger_path.to_path_buf();
    let (run_id, device_id) = (found.sweep.run_id, found.device_id);
    let note = detail.clone();
    let recorded = tokio::task::spawn_blocking(move || -> Result<(), crate::ledger::LedgerError> {
        let mut ledger = Ledger::open_existing(&path)?;
        ledger.tune_finish_device(run_id, device_id, status, settings, &note)?;
        let devices = ledger.tune_devices(run_id)?;
        if devices.iter().all(|d| d.status != TuneStatus::Running) {
            let all_restored = devices.iter().all(|d| d.status != TuneStatus::RestoreFailed);
            let end = if all_restored {
                TuneStatus::Restored
            } else {
                TuneStatus::RestoreFailed
            };
            ledger.tune_end(run_id, crate::time::now_unix(), end)?;
        }
        Ok(())
    })
    .await;
    if let Ok(Err(e)) = &recorded {
        tracing::error!(device = %name, "restored sweep #{run_id}, but cannot record it in the ledger: {e}");
    }
    let event = DeviceEvent::TuneRestoredByServe {
        run_id,
        restored: restored.is_ok(),
        detail,
    };
    if restored.is_ok() {
        tracing::info!(device = %name, "{event}");
        fleet.set_tune_interrupted(found.index, None);
    } else {
        tracing::warn!(device = %name, "{event}");
    }
    let restored = matches!(event, DeviceEvent::TuneRestoredByServe { restored: true, .. });
    send_event(ledger, &name, event);
    Some(restored)
}

fn send_event(ledger: Option<&LedgerSender>, device: &str, event: DeviceEvent) {
    if let Some(ledger) = ledger {
        ledger.send(event.record(device, SystemTime::now()));
    }
}

/// The restore's progress notes go to the log (the restore logs its result itself).
struct QuietObserver;

impl Observer for QuietObserver {
    fn step_started(&self, _: &str, _: u32, _: usize, _: (f64, f64)) {}
    fn sampled(
        &self,
        _: &str,
        _: &crate::axeos::Sample,
        _: &crate::tune::limits::Limits,
        _: Option<&crate::tune::measure::StepResult>,
    ) {
    }
    fn step_finished(&self, _: &str, _: &crate::tune::report::StepReport) {}
    fn note(&self, device: &str, message: &str) {
        tracing::debug!(device, "{message}");
    }
    fn run_note(&self, message: &str) {
        tracing::debug!("{message}");
    }
}
