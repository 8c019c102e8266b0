//! The export's columns: one table that drives the SELECT, the CSV header and the JSON
//! keys, and the stream of rows read with it.

use rusqlite::params;

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

/// A column of `analyze export`: its name (with its unit), read from this SQL expression.
/// One table drives the SELECT, the CSV header and the JSON keys.
#[derive(Debug, Clone, Copy)]
pub struct ExportColumn {
    pub name: &'static str,
    sql: &'static str,
    pub kind: ColumnKind,
}

const fn column(name: &'static str, sql: &'static str, kind: ColumnKind) -> ExportColumn {
    ExportColumn { name, sql, kind }
}

/// The columns of an export, in order.
pub const EXPORT_COLUMNS: &[ExportColumn] = &[
    column("time", "s.t", ColumnKind::Time),
    // Milliseconds are all a poll time means.
    column("unix_time_s", "round(s.t, 3)", ColumnKind::Real),
    column("device", "d.name", ColumnKind::Text),
    column("segment_id", "s.segment_id", ColumnKind::Integer),
    column("frequency_mhz", "s.frequency_mhz", ColumnKind::Real),
    column("core_voltage_mv", "s.core_voltage_mv", ColumnKind::Real),
    column("hashrate_ghs", "s.hashrate_ghs", ColumnKind::Real),
    column("expected_hashrate_ghs", "s.expected_ghs", ColumnKind::Real),
    column("power_w", "s.power_w", ColumnKind::Real),
    column(
        "efficiency_j_per_th",
        "CASE WHEN s.hashrate_ghs > 0 THEN s.power_w / (s.hashrate_ghs / 1000.0) END",
        ColumnKind::Real,
    ),
    column("asic_temp_c", "s.asic_temp_c", ColumnKind::Real),
    column("vr_temp_c", "s.vr_temp_c", ColumnKind::Real),
    column(
        "core_voltage_measured_mv",
        "s.core_voltage_measured_mv",
        ColumnKind::Real,
    ),
    column("input_voltage_v", "s.input_voltage_v", ColumnKind::Real),
    column("input_current_a", "s.input_current_a", ColumnKind::Real),
    column("fan_percent", "s.fan_percent", ColumnKind::Real),
    column("fan_rpm", "s.fan_rpm", ColumnKind::Real),
    column("shares_accepted", "s.shares_accepted", ColumnKind::Integer),
    column("shares_rejected", "s.shares_rejected", ColumnKind::Integer),
    column("error_percent", "s.error_percent", ColumnKind::Real),
    column("uptime_s", "s.uptime_s", ColumnKind::Integer),
    column("best_difficulty", "s.best_difficulty", ColumnKind::Real),
    // A poll, or a reading from the miner's own ring that filled a hole in the polls.
    column(
        "source",
        "CASE s.source WHEN 1 THEN 'miner_history' ELSE 'poll' END",
        ColumnKind::Text,
    ),
];

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
        let columns: Vec<&str> = EXPORT_COLUMNS.iter().map(|c| c.sql).collect();
        let sql = format!(
            "SELECT {} FROM samples s JOIN devices d ON d.id = s.device_id
             WHERE (?1 IS NULL OR s.device_id = ?1) AND s.t >= ?2 AND s.t <= ?3
             ORDER BY s.t, d.name",
            columns.join(", ")
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| E::from(self.err(e)))?;
        let mut rows = stmt
            .query(params![device_id, since, until])
            .map_err(|e| E::from(self.err(e)))?;
        let mut values = Vec::with_capacity(EXPORT_COLUMNS.len());
        let mut count = 0u64;
        while let Some(row) = rows.next().map_err(|e| E::from(self.err(e)))? {
            values.clear();
            for (index, column) in EXPORT_COLUMNS.iter().enumerate() {
                let value = match column.kind {
                    ColumnKind::Time => row.get::<_, f64>(index).map(ExportValue::Time),
                    ColumnKind::Real => row
                        .get::<_, Option<f64>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Real)),
                    ColumnKind::Integer => row
                        .get::<_, Option<i64>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Integer)),
                    ColumnKind::Text => row
                        .get::<_, Option<String>>(index)
                        .map(|v| v.map_or(ExportValue::Null, ExportValue::Text)),
                };
                values.push(value.map_err(|e| E::from(self.err(e)))?);
            }
            each(&values)?;
            count += 1;
        }
        Ok(count)
    }
}
