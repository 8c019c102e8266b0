//! What the ledger keeps of each device: segments with their running aggregates, the
//! samples, and the events.

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::ledger::segments::{Boundary, Reading, SteadyStats};
use crate::ledger::store;

/// A segment as stored, with its running steady-state aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub id: i64,
    pub device_id: i64,
    pub started_at: f64,
    pub ended_at: f64,
    pub reason: Boundary,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub firmware: Option<String>,
    pub samples: u64,
    pub last_uptime: Option<u64>,
    pub warmup_seconds: f64,
    pub steady: SteadyStats,
}

/// Reads a stored aggregate; `None` when it does not parse (a file written by a build that
/// let a non-finite sum through stored `null` there), and the caller rebuilds it.
pub(crate) fn parse_steady(text: &str) -> Option<SteadyStats> {
    serde_json::from_str::<SteadyStats>(text)
        .ok()
        .filter(SteadyStats::is_finite)
}

pub(crate) const SEGMENT_COLUMNS: &str =
    "id, device_id, started_at, ended_at, reason, frequency_mhz, core_voltage_mv, firmware, \
     samples, last_uptime, warmup_seconds, steady";

pub(crate) fn segment_from_row(r: &rusqlite::Row) -> rusqlite::Result<(SegmentRow, bool)> {
    let reason: String = r.get(4)?;
    let steady: String = r.get(11)?;
    Ok(SegmentRow {
        id: r.get(0)?,
        device_id: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        reason: Boundary::parse(&reason).unwrap_or(Boundary::Gap),
        frequency_mhz: r.get(5)?,
        core_voltage_mv: r.get(6)?,
        firmware: r.get(7)?,
        samples: r.get::<_, i64>(8)?.max(0) as u64,
        last_uptime: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        warmup_seconds: r.get(10)?,
        steady: parse_steady(&steady).unwrap_or_default(),
    })
    .map(|row| (row, parse_steady(&steady).is_none()))
}

/// A segment whose stored aggregate is unreadable gets it back from its own samples: the
/// samples are the truth, the aggregate only a cache of them.
pub(crate) fn with_rebuilt_steady(
    conn: &Connection,
    (mut segment, unreadable): (SegmentRow, bool),
) -> rusqlite::Result<SegmentRow> {
    if unreadable {
        let steady_from = segment.started_at + segment.warmup_seconds;
        let mut steady = SteadyStats::default();
        for (t, reading) in segment_readings(conn, &segment, segment.started_at, segment.ended_at)? {
            if t >= steady_from {
                steady.add(&reading);
            }
        }
        tracing::warn!(
            "{}: segment {} had an unreadable aggregate; rebuilt it from its {} steady samples",
            conn.path().unwrap_or("ledger"),
            segment.id,
            steady.samples
        );
        segment.steady = steady;
    }
    Ok(segment)
}

pub(crate) fn last_segment(conn: &Connection, device_id: i64) -> rusqlite::Result<Option<SegmentRow>> {
    // The segment written last (highest id), which after a clock stepped back is not the
    // one that starts latest.
    conn.query_row(
        &format!("SELECT {SEGMENT_COLUMNS} FROM segments WHERE device_id = ?1 ORDER BY id DESC LIMIT 1"),
        [device_id],
        segment_from_row,
    )
    .optional()?
    .map(|row| with_rebuilt_steady(conn, row))
    .transpose()
}

/// Segments overlapping [since, until], optionally of one device, oldest first.
pub(crate) fn segments_between(
    conn: &Connection,
    device_id: Option<i64>,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<SegmentRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {SEGMENT_COLUMNS} FROM segments
         WHERE (?1 IS NULL OR device_id = ?1) AND ended_at >= ?2 AND started_at <= ?3
         ORDER BY device_id, started_at"
    ))?;
    let rows = stmt.query_map(params![device_id, since, until], segment_from_row)?;
    let rows: Vec<(SegmentRow, bool)> = rows.collect::<rusqlite::Result<_>>()?;
    rows.into_iter().map(|row| with_rebuilt_steady(conn, row)).collect()
}

pub(crate) fn insert_segment(tx: &Transaction, s: &SegmentRow) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO segments (device_id, started_at, ended_at, reason, frequency_mhz, core_voltage_mv, firmware,
         samples, last_uptime, warmup_seconds, steady) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        params![
            s.device_id,
            s.started_at,
            s.ended_at,
            s.reason.as_str(),
            s.frequency_mhz,
            s.core_voltage_mv,
            s.firmware,
            s.samples as i64,
            s.last_uptime.map(|u| u as i64),
            s.warmup_seconds,
            steady_json(&s.steady),
        ],
    )?;
    Ok(tx.last_insert_rowid())
}

pub(crate) fn save_segment(tx: &Transaction, s: &SegmentRow) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(
        "UPDATE segments SET ended_at = ?1, samples = ?2, last_uptime = ?3, steady = ?4 WHERE id = ?5",
    )?;
    stmt.execute(params![
        s.ended_at,
        s.samples as i64,
        s.last_uptime.map(|u| u as i64),
        steady_json(&s.steady),
        s.id
    ])?;
    Ok(())
}

/// The stored form of an aggregate. A non-finite one (which `SteadyStats::add` never
/// makes) is stored as unreadable, so the next reader rebuilds it from the samples instead
/// of trusting a `null`.
pub(crate) fn steady_json(stats: &SteadyStats) -> String {
    if stats.is_finite() {
        serde_json::to_string(stats).unwrap_or_default()
    } else {
        String::new()
    }
}

/// The readings of one segment's samples in [since, until], with their times.
pub(crate) fn segment_readings(
    conn: &Connection,
    segment: &SegmentRow,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<(f64, Reading)>> {
    let samples = store::device_samples(conn, segment.device_id, Some(segment.id), since, until)?;
    Ok(samples
        .iter()
        .map(|l| (l.sample.t, store::reading(&l.sample)))
        .collect())
}

/// The readings of a device's samples in [since, until], whatever their segment.
pub(crate) fn device_readings(
    conn: &Connection,
    device_id: i64,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<(f64, Reading)>> {
    let samples = store::device_samples(conn, device_id, None, since, until)?;
    Ok(samples
        .iter()
        .map(|l| (l.sample.t, store::reading(&l.sample)))
        .collect())
}

// ---------------------------------------------------------------------------------------
// Events

pub(crate) fn insert_event(
    tx: &Transaction,
    device_id: i64,
    t: f64,
    kind: &str,
    detail: &str,
    log_tail: Option<&str>,
) -> rusqlite::Result<()> {
    let mut stmt =
        tx.prepare_cached("INSERT INTO events (device_id, t, kind, detail, log_tail) VALUES (?1, ?2, ?3, ?4, ?5)")?;
    stmt.execute(params![device_id, t, kind, detail, log_tail])?;
    Ok(())
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Unix seconds.
    pub t: f64,
    /// `rebooted`, `mining_problem`, `overheat_protection`, … ([`crate::daemon`]'s kinds).
    pub kind: String,
    /// What a person reads (the reset reason of a reboot, the chip of a verdict).
    pub detail: String,
    /// The miner's last log lines, captured with an incident (firmware v2.14+), one per
    /// line, already cleaned of control characters.
    pub log_tail: Vec<String>,
}

impl EventRow {
    fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let log_tail: Option<String> = r.get(3)?;
        Ok(Self {
            t: r.get(0)?,
            kind: r.get(1)?,
            detail: r.get(2)?,
            log_tail: log_tail
                .map(|text| text.lines().map(str::to_string).collect())
                .unwrap_or_default(),
        })
    }
}

/// A device's events in a range, oldest first.
pub(crate) fn events_between(
    conn: &Connection,
    device_id: i64,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<EventRow>> {
    let mut stmt = conn.prepare(
        "SELECT t, kind, detail, log_tail FROM events WHERE device_id = ?1 AND t >= ?2 AND t <= ?3 ORDER BY t, id",
    )?;
    let rows = stmt.query_map(params![device_id, since, until], EventRow::from_row)?;
    rows.collect()
}

/// The events of every device (or one) in a range, oldest first, with the device's name.
pub(crate) fn fleet_events(
    conn: &Connection,
    device_id: Option<i64>,
    since: f64,
    until: f64,
) -> rusqlite::Result<Vec<(String, EventRow)>> {
    let mut stmt = conn.prepare(
        "SELECT e.t, e.kind, e.detail, e.log_tail, d.name FROM events e JOIN devices d ON d.id = e.device_id
         WHERE (?1 IS NULL OR e.device_id = ?1) AND e.t >= ?2 AND e.t <= ?3 ORDER BY e.t, e.id",
    )?;
    let rows = stmt.query_map(params![device_id, since, until], |r| {
        Ok((r.get(4)?, EventRow::from_row(r)?))
    })?;
    rows.collect()
}

/// The newest `limit` events of a device in a range, oldest first, and how many the range
/// holds in all: a device that flapped for months does not load its whole event log.
pub(crate) fn latest_events(
    conn: &Connection,
    device_id: i64,
    since: f64,
    until: f64,
    limit: usize,
) -> rusqlite::Result<(Vec<EventRow>, usize)> {
    let total: i64 = conn.query_row(
        "SELECT count(*) FROM events WHERE device_id = ?1 AND t >= ?2 AND t <= ?3",
        params![device_id, since, until],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare(
        "SELECT t, kind, detail, log_tail FROM events WHERE device_id = ?1 AND t >= ?2 AND t <= ?3
         ORDER BY t DESC, id DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![device_id, since, until, limit as i64], EventRow::from_row)?;
    let mut events: Vec<EventRow> = rows.collect::<rusqlite::Result<_>>()?;
    events.reverse();
    Ok((events, usize::try_from(total).unwrap_or(0)))
}
