//! The export's columns: one table that drives the SELECT, the CSV header and the JSON
//! keys, and the stream of rows read with it.

use crate::ledger::store::{self, Located};

use super::{Ledger, LedgerError};

/// How an export column's values come out of SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Unix seconds, shown as RFC 3339.
    Time,
    Real,
    Integer,
    Text,
}

/// A column of `analyze export`: its name (with its unit) and where its value comes from.
/// One table drives the rows, the CSV header and the JSON keys.
#[derive(Debug, Clone, Copy)]
pub struct ExportColumn {
    pub name: &'static str,
    value: Value,
    pub kind: ColumnKind,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, Copy)]
enum Value {
    Time,
    /// Milliseconds are all a poll time means.
    UnixTime,
    Device,
    Segment,
    /// A stored reading, by its name in [`crate::ledger::blocks::FIELDS`].
    Reading(&'static str),
    Efficiency,
    Source,
}

const fn column(name: &'static str, value: Value, kind: ColumnKind) -> ExportColumn {
    ExportColumn { name, value, kind }
}

const fn reading(name: &'static str, kind: ColumnKind) -> ExportColumn {
    column(name, Value::Reading(name), kind)
}

/// The columns of an export, in order.
pub const EXPORT_COLUMNS: &[ExportColumn] = &[
    column("time", Value::Time, ColumnKind::Time),
    column("unix_time_s", Value::UnixTime, ColumnKind::Real),
    column("device", Value::Device, ColumnKind::Text),
    column("segment_id", Value::Segment, ColumnKind::Integer),
    reading("frequency_mhz", ColumnKind::Real),
    reading("core_voltage_mv", ColumnKind::Real),
    reading("hashrate_ghs", ColumnKind::Real),
    column(
        "expected_hashrate_ghs",
        Value::Reading("expected_ghs"),
        ColumnKind::Real,
    ),
    reading("power_w", ColumnKind::Real),
    column("efficiency_j_per_th", Value::Efficiency, ColumnKind::Real),
    reading("asic_temp_c", ColumnKind::Real),
    reading("vr_temp_c", ColumnKind::Real),
    reading("core_voltage_measured_mv", ColumnKind::Real),
    reading("input_voltage_v", ColumnKind::Real),
    reading("input_current_a", ColumnKind::Real),
    reading("fan_percent", ColumnKind::Real),
    reading("fan_rpm", ColumnKind::Real),
    reading("shares_accepted", ColumnKind::Integer),
    reading("shares_rejected", ColumnKind::Integer),
    reading("error_percent", ColumnKind::Real),
    reading("uptime_s", ColumnKind::Integer),
    reading("best_difficulty", ColumnKind::Real),
    // A poll, or a reading from the miner's own ring that filled a hole in the polls.
    column("source", Value::Source, ColumnKind::Text),
];

impl ExportColumn {
    fn value_of(&self, device: &str, located: &Located) -> ExportValue {
        let s = &located.sample;
        let number = |v: Option<f64>| match (v, self.kind) {
            (None, _) => ExportValue::Null,
            (Some(v), ColumnKind::Integer) => ExportValue::Integer(v as i64),
            (Some(v), _) => ExportValue::Real(v),
        };
        match self.value {
            Value::Time => ExportValue::Time(s.t),
            Value::UnixTime => ExportValue::Real(s.t),
            Value::Device => ExportValue::Text(device.to_string()),
            Value::Segment => ExportValue::Integer(located.segment_id),
            Value::Reading(name) => number(s.value(name)),
            Value::Efficiency => match (s.value("hashrate_ghs"), s.value("power_w")) {
                (Some(h), Some(p)) if h > 0.0 => ExportValue::Real(p / (h / 1000.0)),
                _ => ExportValue::Null,
            },
            Value::Source => ExportValue::Text(s.source.as_str().to_string()),
        }
    }
}

/// One value of an exported row.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportValue {
    Null,
    /// Unix seconds.
    Time(f64),
    Real(f64),
    Integer(i64),
    Text(String),
}

impl Ledger {
    /// Streams the samples of `device_id` (or every device) in [since, until], oldest
    /// first, as the values of [`EXPORT_COLUMNS`]; `each` may stop the stream with its
    /// error. Returns the row count.
    pub fn export_rows<E: From<LedgerError>>(
        &self,
        device_id: Option<i64>,
        since: f64,
        until: f64,
        mut each: impl FnMut(&[ExportValue]) -> std::result::Result<(), E>,
    ) -> std::result::Result<u64, E> {
        let mut values = Vec::with_capacity(EXPORT_COLUMNS.len());
        let streamed = store::stream_in_order(&self.conn, device_id, since, until, |device, located| {
            values.clear();
            values.extend(EXPORT_COLUMNS.iter().map(|c| c.value_of(device, located)));
            each(&values).map_err(Streamed::Caller)
        });
        match streamed {
            Ok(count) => Ok(count),
            Err(Streamed::Caller(e)) => Err(e),
            Err(Streamed::Sqlite(e)) => Err(E::from(self.err(e))),
        }
    }
}

/// Why a stream stopped: the caller's error, or SQLite's.
enum Streamed<E> {
    Caller(E),
    Sqlite(rusqlite::Error),
}

impl<E> From<rusqlite::Error> for Streamed<E> {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}
