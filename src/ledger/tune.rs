//! Tuning sweeps in the ledger: a run (its arguments, so it can be resumed, and the pid
//! that runs it), each device's restore plan (the settings it had before the first PATCH,
//! written before anything is sent) and outcome, and every step with its session.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use crate::ledger::{Ledger, Result};

/// Where a run or a device of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TuneStatus {
    /// Being swept now (or interrupted, if the process that ran it is gone).
    Running,
    /// Ended normally; the device runs the configuration the run chose.
    Finished,
    /// Stopped early (a signal, an error, a limit that ends the sweep); the starting
    /// settings were restored and read back.
    Restored,
    /// Stopped, and the starting settings could not be confirmed: `tune restore` is needed.
    RestoreFailed,
    /// `serve`'s protective action stepped in; the miner keeps what protection set
    /// (the starting settings ran hotter).
    #[serde(rename = "stopped_by_protection")]
    Protected,
}

impl TuneStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TuneStatus::Running => "running",
            TuneStatus::Finished => "finished",
            TuneStatus::Restored => "restored",
            TuneStatus::RestoreFailed => "restore_failed",
            TuneStatus::Protected => "stopped_by_protection",
        }
    }

    pub(crate) fn parse(text: &str) -> TuneStatus {
        match text {
            "finished" => TuneStatus::Finished,
            "restored" => TuneStatus::Restored,
            "restore_failed" => TuneStatus::RestoreFailed,
            "stopped_by_protection" => TuneStatus::Protected,
            _ => TuneStatus::Running,
        }
    }
}

/// One sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneRun {
    pub id: i64,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub status: TuneStatus,
    pub pid: u32,
    /// When that process started (clock ticks since boot, `/proc/PID/stat`), so a reused
    /// pid is not taken for the sweep.
    pub process_start: Option<u64>,
    /// The sweep's arguments as JSON (what `tune resume` runs again).
    pub spec: String,
}

/// One device of a sweep: its restore plan and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneDevice {
    pub run_id: i64,
    pub device_id: i64,
    pub device: String,
    pub original_frequency_mhz: Option<f64>,
    pub original_core_voltage_mv: Option<f64>,
    pub status: TuneStatus,
    pub final_frequency_mhz: Option<f64>,
    pub final_core_voltage_mv: Option<f64>,
    pub note: String,
    /// The device's candidate lists as JSON, fixed at the start so `resume` replays the
    /// same plan.
    pub plan: Option<String>,
}

/// One configuration tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TuneStep {
    pub run_id: i64,
    pub device_id: i64,
    pub step: u32,
    pub frequency_mhz: f64,
    pub core_voltage_mv: f64,
    pub session_id: Option<i64>,
    /// `healthy`, `unhealthy`, `limit`, `aborted`.
    pub outcome: String,
    pub reason: String,
    /// The step's measured result as JSON.
    pub result: Option<String>,
}

/// A device another sweep has not let go of: why a new sweep may not take it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimConflict {
    pub device_id: i64,
    pub run_id: i64,
    /// That sweep's process is still running it (else it was interrupted and left the
    /// device unrestored).
    pub live: bool,
}

/// One device a sweep takes: its id, the settings it runs now (the restore plan) and the
/// candidate lists as JSON.
pub(crate) type Claim = (i64, (Option<f64>, Option<f64>), String);

impl Ledger {
    /// Registers a sweep and its devices' restore plans in one transaction, or — when
    /// another run still holds one of the devices (a live sweep, or one that left it
    /// unrestored) — nothing at all. Two sweeps started together on one miner: one of
    /// them is refused, before either sends anything. `resumed` continues that run.
    pub fn tune_begin_claiming(
        &mut self,
        at: f64,
        process: (u32, Option<u64>),
        spec: &str,
        resumed: Option<i64>,
        claims: &[Claim],
        alive: &dyn Fn(u32, Option<u64>) -> bool,
    ) -> Result<std::result::Result<i64, ClaimConflict>> {
        self.write_with(|tx| {
            for (device_id, _, _) in claims {
                let holder: Option<(i64, u32, Option<i64>, String)> = tx
                    .query_row(
                        "SELECT t.run_id, r.pid, r.process_start, r.status FROM tune_devices t
                         JOIN tune_runs r ON r.id = t.run_id
                         WHERE t.device_id = ?1 AND t.status IN ('running', 'restore_failed') AND t.run_id IS NOT ?2
                         ORDER BY t.run_id DESC LIMIT 1",
                        params![device_id, resumed],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                    )
                    .optional()?;
                if let Some((run_id, pid, start, status)) = holder {
                    let start = start.and_then(|t| u64::try_from(t).ok());
                    return Ok(Err(ClaimConflict {
                        device_id: *device_id,
                        run_id,
                        live: TuneStatus::parse(&status) == TuneStatus::Running && alive(pid, start),
                    }));
                }
            }
            let start = process.1.and_then(|t| i64::try_from(t).ok());
            let run_id = match resumed {
                Some(run_id) => {
                    tx.execute(
                        "UPDATE tune_runs SET pid = ?2, process_start = ?3, status = 'running', ended_at = NULL WHERE id = ?1",
                        params![run_id, process.0, start],
                    )?;
                    run_id
                }
                None => {
                    tx.execute(
                        "INSERT INTO tune_runs (started_at, status, pid, process_start, spec) VALUES (?1, 'running', ?2, ?3, ?4)",
                        params![at, process.0, start, spec],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            for (device_id, original, plan) in claims {
                tx.execute(
                    "INSERT INTO tune_devices (run_id, device_id, original_frequency_mhz, original_core_voltage_mv, status, plan)
                     VALUES (?1, ?2, ?3, ?4, 'running', ?5)
                     ON CONFLICT (run_id, device_id) DO UPDATE SET status = 'running'
                     WHERE status IN ('running', 'restore_failed')",
                    params![run_id, device_id, original.0, original.1, plan],
                )?;
            }
            Ok(Ok(run_id))
        })
    }

    /// Starts a run; returns its id.
    pub fn tune_begin(&mut self, at: f64, process: (u32, Option<u64>), spec: &str) -> Result<i64> {
        self.write_with(|tx| {
            tx.execute(
                "INSERT INTO tune_runs (started_at, status, pid, process_start, spec) VALUES (?1, 'running', ?2, ?3, ?4)",
                params![at, process.0, process.1.and_then(|t| i64::try_from(t).ok()), spec],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// A run taken up again by another process (`tune resume`).
    pub fn tune_resume(&mut self, run_id: i64, process: (u32, Option<u64>)) -> Result<()> {
        self.write_with(|tx| {
            tx.execute(
                "UPDATE tune_runs SET pid = ?2, process_start = ?3, status = 'running', ended_at = NULL WHERE id = ?1",
                params![run_id, process.0, process.1.and_then(|t| i64::try_from(t).ok())],
            )?;
            Ok(())
        })
    }

    /// The restore plan of a device: written before the sweep sends it anything.
    pub fn tune_add_device(
        &mut self,
        run_id: i64,
        device_id: i64,
        original: (Option<f64>, Option<f64>),
        plan: &str,
    ) -> Result<()> {
        self.write_with(|tx| {
            tx.execute(
                "INSERT INTO tune_devices (run_id, device_id, original_frequency_mhz, original_core_voltage_mv, status, plan)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5)
                 ON CONFLICT (run_id, device_id) DO UPDATE SET status = 'running'",
                params![run_id, device_id, original.0, original.1, plan],
            )?;
            Ok(())
        })
    }

    pub fn tune_record_step(&mut self, step: &TuneStep) -> Result<()> {
        self.write_with(|tx| {
            tx.execute(
                "INSERT OR REPLACE INTO tune_steps
                 (run_id, device_id, step, frequency_mhz, core_voltage_mv, session_id, outcome, reason, result)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    step.run_id,
                    step.device_id,
                    step.step,
                    step.frequency_mhz,
                    step.core_voltage_mv,
                    step.session_id,
                    step.outcome,
                    step.reason,
                    step.result
                ],
            )?;
            Ok(())
        })
    }

    /// Where a device of a run ended, and on which settings.
    pub fn tune_finish_device(
        &mut self,
        run_id: i64,
        device_id: i64,
        status: TuneStatus,
        settings: (Option<f64>, Option<f64>),
        note: &str,
    ) -> Result<()> {
        self.write_with(|tx| {
            tx.execute(
                "UPDATE tune_devices SET status = ?3, final_frequency_mhz = ?4, final_core_voltage_mv = ?5, note = ?6
                 WHERE run_id = ?1 AND device_id = ?2",
                params![run_id, device_id, status.as_str(), settings.0, settings.1, note],
            )?;
            Ok(())
        })
    }

    pub fn tune_end(&mut self, run_id: i64, at: f64, status: TuneStatus) -> Result<()> {
        self.write_with(|tx| {
            tx.execute(
                "UPDATE tune_runs SET ended_at = ?2, status = ?3 WHERE id = ?1",
                params![run_id, at, status.as_str()],
            )?;
            Ok(())
        })
    }

    /// Every run, newest first.
    pub fn tune_runs(&self) -> Result<Vec<TuneRun>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT id, started_at, ended_at, status, pid, process_start, spec FROM tune_runs ORDER BY id DESC",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(TuneRun {
                    id: r.get(0)?,
                    started_at: r.get(1)?,
                    ended_at: r.get(2)?,
                    status: TuneStatus::parse(&r.get::<_, String>(3)?),
                    pid: r.get(4)?,
                    process_start: r.get::<_, Option<i64>>(5)?.and_then(|t| u64::try_from(t).ok()),
                    spec: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The devices of a run.
    pub fn tune_devices(&self, run_id: i64) -> Result<Vec<TuneDevice>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT t.run_id, t.device_id, d.name, t.original_frequency_mhz, t.original_core_voltage_mv, t.status,
                        t.final_frequency_mhz, t.final_core_voltage_mv, t.note, t.plan
                 FROM tune_devices t JOIN devices d ON d.id = t.device_id WHERE t.run_id = ?1 ORDER BY d.name",
            )?;
            let rows = stmt.query_map([run_id], |r| {
                Ok(TuneDevice {
                    run_id: r.get(0)?,
                    device_id: r.get(1)?,
                    device: r.get(2)?,
                    original_frequency_mhz: r.get(3)?,
                    original_core_voltage_mv: r.get(4)?,
                    status: TuneStatus::parse(&r.get::<_, String>(5)?),
                    final_frequency_mhz: r.get(6)?,
                    final_core_voltage_mv: r.get(7)?,
                    note: r.get(8)?,
                    plan: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The steps of a run, in the order they were taken per device.
    pub fn tune_steps(&self, run_id: i64) -> Result<Vec<TuneStep>> {
        self.read(|conn| {
            let mut stmt = conn.prepare(
                "SELECT run_id, device_id, step, frequency_mhz, core_voltage_mv, session_id, outcome, reason, result
                 FROM tune_steps WHERE run_id = ?1 ORDER BY device_id, step",
            )?;
            let rows = stmt.query_map([run_id], |r| {
                Ok(TuneStep {
                    run_id: r.get(0)?,
                    device_id: r.get(1)?,
                    step: r.get(2)?,
                    frequency_mhz: r.get(3)?,
                    core_voltage_mv: r.get(4)?,
                    session_id: r.get(5)?,
                    outcome: r.get(6)?,
                    reason: r.get(7)?,
                    result: r.get(8)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The newest run that left this device without a confirmed end: its restore plan.
    pub fn tune_unrestored(&self, device_id: i64) -> Result<Option<TuneDevice>> {
        let run_id: Option<i64> = self.read(|conn| {
            conn.query_row(
                "SELECT run_id FROM tune_devices WHERE device_id = ?1 AND status IN ('running', 'restore_failed')
                 ORDER BY run_id DESC LIMIT 1",
                [device_id],
                |r| r.get(0),
            )
            .optional()
        })?;
        let Some(run_id) = run_id else {
            return Ok(None);
        };
        Ok(self
            .tune_devices(run_id)?
            .into_iter()
            .find(|d| d.device_id == device_id))
    }
}
