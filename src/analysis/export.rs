//! `analyze export`: the samples as CSV or JSON, streamed row by row from SQLite to the
//! output (memory does not grow with the row count), with units in the column names.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};
use serde_json::json;

use crate::analysis::csv_field;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Json,
}

/// Columns of an export, in order. Units are in the names.
pub const COLUMNS: &[&str] = &[
    "time",
    "unix_time_s",
    "device",
    "segment_id",
    "frequency_mhz",
    "core_voltage_mv",
    "hashrate_ghs",
    "expected_hashrate_ghs",
    "power_w",
    "efficiency_j_per_th",
    "asic_temp_c",
    "vr_temp_c",
    "core_voltage_measured_mv",
    "input_voltage_v",
    "input_current_a",
    "fan_percent",
    "fan_rpm",
    "shares_accepted",
    "shares_rejected",
    "error_percent",
    "uptime_s",
    "best_difficulty",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("reading the ledger: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes a file through a temporary file in the same folder, renamed over `path` only
/// once `write` succeeded: a failed or interrupted export never truncates what was there.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, ExportError>,
) -> Result<u64, ExportError> {
    let file_error = |source| ExportError::File {
        path: path.to_path_buf(),
        source,
    };
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let temporary = tempfile::Builder::new()
        .prefix(".bitaxe-export-")
        .tempfile_in(folder)
        .map_err(file_error)?;
    let mut out = io::BufWriter::with_capacity(64 * 1024, temporary);
    let written = write(&mut out)?;
    let temporary = out.into_inner().map_err(|e| file_error(e.into_error()))?;
    temporary.as_file().sync_all().map_err(file_error)?;
    temporary.persist(path).map_err(|e| file_error(e.error))?;
    Ok(written)
}

/// Writes the samples of `device_id` (or all devices) in [since, until]; returns the row count.
pub fn export(
    conn: &Connection,
    out: &mut dyn Write,
    format: ExportFormat,
    device_id: Option<i64>,
    since: f64,
    until: f64,
) -> Result<u64, ExportError> {
    let mut stmt = conn.prepare(
        "SELECT s.t, d.name, s.segment_id, s.frequency_mhz, s.core_voltage_mv, s.hashrate_ghs, s.expected_ghs,
         s.power_w, s.asic_temp_c, s.vr_temp_c, s.core_voltage_measured_mv, s.input_voltage_v, s.input_current_a,
         s.fan_percent, s.fan_rpm, s.shares_accepted, s.shares_rejected, s.error_percent, s.uptime_s,
         s.best_difficulty
         FROM samples s JOIN devices d ON d.id = s.device_id
         WHERE (?1 IS NULL OR s.device_id = ?1) AND s.t >= ?2 AND s.t <= ?3
         ORDER BY s.t, d.name",
    )?;
    let mut rows = stmt.query(params![device_id, since, until])?;
    let mut count = 0u64;
    match format {
        ExportFormat::Csv => writeln!(out, "{}", COLUMNS.join(","))?,
        ExportFormat::Json => out.write_all(b"[")?,
    }
    let mut line = String::with_capacity(256);
    while let Some(row) = rows.next()? {
        let t: f64 = row.get(0)?;
        let name: String = row.get(1)?;
        let segment_id: i64 = row.get(2)?;
        let f = |i: usize| -> rusqlite::Result<Option<f64>> { row.get(i) };
        let n = |i: usize| -> rusqlite::Result<Option<i64>> { row.get(i) };
        let (hashrate, power) = (f(5)?, f(7)?);
        let efficiency = match (power, hashrate) {
            (Some(p), Some(h)) if h > 0.0 => Some(p / (h / 1000.0)),
            _ => None,
        };
        let floats = [
            f(3)?,
            f(4)?,
            hashrate,
            f(6)?,
            power,
            efficiency,
            f(8)?,
            f(9)?,
            f(10)?,
            f(11)?,
            f(12)?,
            f(13)?,
            f(14)?,
        ];
        let ints = [n(15)?, n(16)?];
        let error_percent = f(17)?;
        let uptime = n(18)?;
        let best = f(19)?;
        let time = crate::time::format(t);
        line.clear();
        match format {
            ExportFormat::Csv => {
                use std::fmt::Write as _;
                let _ = write!(line, "{time},{t:.3},{},{segment_id}", csv_field(&name));
                for v in floats {
                    push_csv(&mut line, v);
                }
                for v in ints {
                    line.push(',');
                    if let Some(v) = v {
                        let _ = write!(line, "{v}");
                    }
                }
                push_csv(&mut line, error_percent);
                line.push(',');
                if let Some(v) = uptime {
                    let _ = write!(line, "{v}");
                }
                push_csv(&mut line, best);
                line.push('\n');
            }
            ExportFormat::Json => {
                let object = json!({
                    "time": time, "unix_time_s": t, "device": name, "segment_id": segment_id,
                    "frequency_mhz": floats[0], "core_voltage_mv": floats[1], "hashrate_ghs": floats[2],
                    "expected_hashrate_ghs": floats[3], "power_w": floats[4], "efficiency_j_per_th": floats[5],
                    "asic_temp_c": floats[6], "vr_temp_c": floats[7], "core_voltage_measured_mv": floats[8],
                    "input_voltage_v": floats[9], "input_current_a": floats[10], "fan_percent": floats[11],
                    "fan_rpm": floats[12], "shares_accepted": ints[0], "shares_rejected": ints[1],
                    "error_percent": error_percent, "uptime_s": uptime, "best_difficulty": best,
                });
                if count > 0 {
                    line.push(',');
                }
                line.push_str("\n  ");
                line.push_str(&object.to_string());
            }
        }
        out.write_all(line.as_bytes())?;
        count += 1;
    }
    if format == ExportFormat::Json {
        out.write_all(if count > 0 { b"\n]\n" } else { b"]\n" })?;
    }
    out.flush()?;
    Ok(count)
}

fn push_csv(line: &mut String, value: Option<f64>) {
    use std::fmt::Write as _;
    line.push(',');
    if let Some(v) = value {
        let _ = write!(line, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_export_leaves_the_existing_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("samples.csv");
        std::fs::write(&path, "yesterday's export\n").unwrap();
        let failed = write_atomically(&path, |out| {
            out.write_all(b"half a row")?;
            Err(ExportError::Io(io::Error::other("the ledger went away")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "yesterday's export\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "a temporary file was left behind"
        );

        let written = write_atomically(&path, |out| {
            out.write_all(b"new\n")?;
            Ok(1)
        });
        assert_eq!(written.unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new\n");
    }
}
