//! Test sessions: a time range on one device with target settings and notes, opened and
//! closed from the CLI while the daemon runs. At most one open session per device.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::axeos::sample::short_clock_label;
use crate::ledger::{self, DeviceRow, Ledger, LedgerError};
use crate::time;

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct SessionRow {
    pub id: i64,
    pub device: String,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub target_frequency_mhz: Option<f64>,
    pub target_core_voltage_mv: Option<f64>,
    pub notes: String,
    pub end_notes: String,
    /// The targets were sent to the miner (`--apply`, or a `tune` step).
    pub applied: bool,
    /// The tuning sweep this session is a step of.
    pub tune_run_id: Option<i64>,
}

impl SessionRow {
    pub fn target(&self) -> String {
        match (self.target_frequency_mhz, self.target_core_voltage_mv) {
            (None, None) => "-".into(),
            (f, v) => short_clock_label(f, v),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("unknown device \"{name}\"; known devices: {known}")]
    UnknownDevice { name: String, known: String },
    #[error(
        "{device} already has an open session: #{id} started {started} (target {target}); \
         end it first with `session end --device {device}`"
    )]
    AlreadyOpen {
        device: String,
        id: i64,
        started: String,
        target: String,
    },
    #[error("{device} has no open session{last}")]
    NoneOpen { device: String, last: String },
    #[error("no session #{0}; `session list` shows the sessions")]
    NotFound(i64),
    #[error("{0}")]
    Ledger(#[from] LedgerError),
}

impl SessionError {
    /// Errors in what the user asked (exit 2), rather than failures (exit 1).
    pub fn is_usage(&self) -> bool {
        !matches!(self, SessionError::Ledger(_))
    }
}

const COLUMNS: &str = "s.id, d.name, s.started_at, s.ended_at, s.target_frequency_mhz, s.target_core_voltage_mv, \
     s.notes, s.end_notes, s.applied, s.tune_run_id";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get(0)?,
        device: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        target_frequency_mhz: r.get(4)?,
        target_core_voltage_mv: r.get(5)?,
        notes: r.get(6)?,
        end_notes: r.get(7)?,
        applied: r.get::<_, i64>(8)? != 0,
        tune_run_id: r.get(9)?,
    })
}

/// The device a session command names: known to the ledger, or configured (then it gets a
/// ledger row now). Otherwise an error listing the known devices.
pub fn resolve_device(ledger: &mut Ledger, name: &str, configured: &[String]) -> Result<DeviceRow, SessionError> {
    if let Some(device) = ledger.find_device(name)? {
        return Ok(device);
    }
    if configured.iter().any(|c| c == name) {
        let now = crate::time::now_unix();
        let path = ledger.path.clone();
        let wrap = |source| LedgerError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = ledger.write()?;
        let id = ledger::device_by_name_or_new(&tx, name, now).map_err(wrap)?;
        tx.commit().map_err(wrap)?;
        return Ok(DeviceRow {
            id,
            name: name.to_string(),
            mac: None,
            asic_model: None,
            firmware: None,
            first_seen: now,
            last_seen: now,
        });
    }
    let mut known: Vec<String> = ledger
        .devices()?
        .into_iter()
        .map(|d| d.name)
        .chain(configured.iter().cloned())
        .collect();
    known.sort();
    known.dedup();
    Err(SessionError::UnknownDevice {
        name: name.to_string(),
        known: if known.is_empty() {
            "(none yet)".into()
        } else {
            known.join(", ")
        },
    })
}

pub(crate) fn open_session(conn: &Connection, device_id: i64) -> rusqlite::Result<Option<SessionRow>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions s JOIN devices d ON d.id = s.device_id WHERE s.device_id = ?1 AND s.ended_at IS NULL"),
        [device_id],
        from_row,
    )
    .optional()
}

/// The device's open session, if it has one.
pub fn current(ledger: &Ledger, device: &DeviceRow) -> Result<Option<SessionRow>, SessionError> {
    Ok(open_session(&ledger.conn, device.id).map_err(|e| ledger.err(e))?)
}

/// Fails if the device already has an open session.
pub fn check_none_open(ledger: &Ledger, device: &DeviceRow) -> Result<(), SessionError> {
    match open_session(&ledger.conn, device.id).map_err(|e| ledger.err(e))? {
        Some(open) => Err(SessionError::AlreadyOpen {
            device: device.name.clone(),
            id: open.id,
            started: time::format(open.started_at),
            target: open.target(),
        }),
        None => Ok(()),
    }
}

pub struct NewSession<'a> {
    pub device: &'a DeviceRow,
    pub at: f64,
    pub target_frequency_mhz: Option<f64>,
    pub target_core_voltage_mv: Option<f64>,
    pub notes: &'a str,
    pub applied: bool,
    pub tune_run_id: Option<i64>,
}

pub fn start(ledger: &mut Ledger, new: &NewSession) -> Result<SessionRow, SessionError> {
    let path = ledger.path.clone();
    let wrap = |source| LedgerError::Sqlite {
        path: path.clone(),
        source,
    };
    let tx = ledger.write()?;
    // Checked again inside the write lock: two `start`s at once cannot both succeed.
    if let Some(open) = open_session(&tx, new.device.id).map_err(wrap)? {
        return Err(SessionError::AlreadyOpen {
            device: new.device.name.clone(),
            id: open.id,
            started: time::format(open.started_at),
            target: open.target(),
        });
    }
    tx.execute(
        "INSERT INTO sessions (device_id, started_at, target_frequency_mhz, target_core_voltage_mv, notes, applied,
         tune_run_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            new.device.id,
            new.at,
            new.target_frequency_mhz,
            new.target_core_voltage_mv,
            new.notes,
            i64::from(new.applied),
            new.tune_run_id
        ],
    )
    .map_err(wrap)?;
    let id = tx.last_insert_rowid();
    tx.commit().map_err(wrap)?;
    get(&ledger.conn, id)
        .map_err(|e| ledger.err(e))?
        .ok_or(SessionError::NotFound(id))
}

pub fn end(ledger: &mut Ledger, device: &DeviceRow, at: f64, notes: &str) -> Result<SessionRow, SessionError> {
    let path = ledger.path.clone();
    let wrap = |source| LedgerError::Sqlite {
        path: path.clone(),
        source,
    };
    let tx = ledger.write()?;
    let Some(open) = open_session(&tx, device.id).map_err(wrap)? else {
        let last: Option<f64> = tx
            .query_row(
                "SELECT max(ended_at) FROM sessions WHERE device_id = ?1",
                [device.id],
                |r| r.get(0),
            )
            .map_err(wrap)?;
        return Err(SessionError::NoneOpen {
            device: device.name.clone(),
            last: last.map_or(String::new(), |t| format!(" (the last one ended {})", time::format(t))),
        });
    };
    tx.execute(
        "UPDATE sessions SET ended_at = ?1, end_notes = ?2 WHERE id = ?3",
        params![at.max(open.started_at), notes, open.id],
    )
    .map_err(wrap)?;
    tx.commit().map_err(wrap)?;
    get(&ledger.conn, open.id)
        .map_err(|e| ledger.err(e))?
        .ok_or(SessionError::NotFound(open.id))
}

pub(super) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<SessionRow>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM sessions s JOIN devices d ON d.id = s.device_id WHERE s.id = ?1"),
        [id],
        from_row,
    )
    .optional()
}

pub(super) fn list(conn: &Connection, device_id: Option<i64>) -> rusqlite::Result<Vec<SessionRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM sessions s JOIN devices d ON d.id = s.device_id
         WHERE (?1 IS NULL OR s.device_id = ?1) ORDER BY s.started_at, s.id"
    ))?;
    let rows = stmt.query_map([device_id], from_row)?;
    rows.collect()
}

impl Ledger {
    /// A session by id.
    pub fn session(&self, id: i64) -> ledger::Result<Option<SessionRow>> {
        self.read(|conn| get(conn, id))
    }

    /// Sessions, optionally of one device, oldest first.
    pub fn sessions(&self, device_id: Option<i64>) -> ledger::Result<Vec<SessionRow>> {
        self.read(|conn| list(conn, device_id))
    }
}
