//! The miner's own memory, read without trust: the pure decoder of its statistics ring
//! (`GET /api/system/statistics`, v2.8+, three shapes across the eras) into readings placed
//! on the wall clock, and the cleaning of its log tail (`GET /api/system/logs`, v2.14+) into
//! a few printable lines. Which firmware has which is decided here too.

use std::time::{Duration, SystemTime};

use crate::axeos::family::{firmware_version, FirmwareFamily};
use crate::axeos::sample::{DecodeError, Sample};
use crate::axeos::untrusted::{printable, MAX_HEAP_BYTES, SMALLEST_READING};

/// The firmware's ring holds at most this many rows (`MAX_STATISTICS_COUNT`); a body with
/// more is not a miner's.
pub const MAX_HISTORY_ROWS: usize = 720;
/// Columns asked for where the firmware lets a client choose (v2.11+): the readings the
/// ledger keeps, so the miner builds a smaller body.
pub const STATISTICS_COLUMNS: &str =
    "hashrate,errorPercentage,asicTemp,vrTemp,asicVoltage,voltage,power,current,fanSpeed,fanRpm";
/// The most log lines kept with an incident, and the most bytes they may take.
pub const LOG_TAIL_LINES: usize = 40;
pub const LOG_TAIL_BYTES: usize = 4096;
/// The most of the log body read from the miner (its end is what matters; a RAM ring is
/// tens of KiB).
pub const MAX_LOG_BODY_BYTES: usize = 256 * 1024;

/// Whether this firmware keeps a statistics ring: upstream from v2.8 (the NerdQAxe family
/// and Lucky's stock builds have none the exporter knows of).
pub fn has_statistics(family: FirmwareFamily, firmware: Option<&str>) -> bool {
    family == FirmwareFamily::EspMiner && firmware.and_then(firmware_version).is_some_and(|v| v >= (2, 8))
}

/// Whether the ring lets a client choose its columns (`?columns=`, v2.11+).
pub fn selects_columns(firmware: Option<&str>) -> bool {
    firmware.and_then(firmware_version).is_some_and(|v| v >= (2, 11))
}

/// Whether the firmware serves its log over HTTP (`/api/system/logs`, upstream v2.14+).
pub fn has_logs(family: FirmwareFamily, firmware: Option<&str>) -> bool {
    family == FirmwareFamily::EspMiner && firmware.and_then(firmware_version).is_some_and(|v| v >= (2, 14))
}

/// The ring as the miner sent it: its clock now and its rows, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinerHistory {
    /// "Now" on the miner's clock (milliseconds since boot).
    pub now_ms: u64,
    pub rows: Vec<HistoryRow>,
    /// Cells outside their plausibility window (absent in the rows), counted.
    pub implausible: usize,
}

/// One reading of the ring: when (ms since boot) and what, as a partial [`Sample`] (only
/// the readings the ring carries; the uptime from its timestamp).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryRow {
    pub since_boot_ms: u64,
    pub sample: Sample,
}

impl MinerHistory {
    /// The rows placed on the wall clock, given the instant `now` at which the body was
    /// read: a row `d` ms before the miner's now happened `d` ms before `now`. Only rows of
    /// this boot exist (the ring lives in RAM), so none lands before the boot.
    pub fn on_wall_clock(&self, now: SystemTime) -> Vec<(SystemTime, Sample)> {
        self.rows
            .iter()
            .filter(|row| row.since_boot_ms <= self.now_ms)
            .filter_map(|row| {
                let ago = Duration::from_millis(self.now_ms - row.since_boot_ms);
                Some((now.checked_sub(ago)?, row.sample.clone()))
            })
            .collect()
    }
}

/// What a column of the ring holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Timestamp,
    Hashrate,
    ErrorPercent,
    AsicTemp,
    AsicTemp2,
    VrTemp,
    /// Measured core voltage, mV.
    CoreVoltage,
    /// Input voltage, mV.
    InputVoltage,
    Power,
    /// Input current, mA.
    Current,
    FanPercent,
    FanRpm,
    Fan2Rpm,
    WifiRssi,
    FreeHeap,
    Ignored,
}

/// A label of either era (v2.8–v2.10 and v2.11+ spell some differently).
fn column_of(label: &str) -> Column {
    match label {
        "timestamp" => Column::Timestamp,
        "hashRate" | "hashrate" => Column::Hashrate,
        "errorPercentage" => Column::ErrorPercent,
        "temp" | "asicTemp" => Column::AsicTemp,
        "asicTemp2" => Column::AsicTemp2,
        "vrTemp" => Column::VrTemp,
        "coreVoltageActual" | "asicVoltage" => Column::CoreVoltage,
        "voltage" => Column::InputVoltage,
        "power" => Column::Power,
        "current" => Column::Current,
        "fanspeed" | "fanSpeed" => Column::FanPercent,
        "fanrpm" | "fanRpm" => Column::FanRpm,
        "fan2Rpm" => Column::Fan2Rpm,
        "wifiRSSI" | "wifiRssi" => Column::WifiRssi,
        "freeHeap" => Column::FreeHeap,
        _ => Column::Ignored,
    }
}

/// The columns of v2.8–v2.10's `/api/system/statistics/dashboard`, which sends no labels.
const DASHBOARD_COLUMNS: [Column; 4] = [Column::Hashrate, Column::AsicTemp, Column::Power, Column::Timestamp];

#[derive(serde::Deserialize)]
struct WireStatistics {
    #[serde(rename = "currentTimestamp")]
    current_timestamp: serde_json::Value,
    #[serde(default)]
    labels: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    statistics: Vec<serde_json::Value>,
}

/// Decodes a `/api/system/statistics` body of any era (or the dashboard's, whose rows have
/// no labels). Rows that are not arrays, lack a timestamp, come from the miner's future or
/// go back in time are left out; a body with more rows than the ring can hold is refused.
pub fn decode_statistics(body: &[u8]) -> Result<MinerHistory, DecodeError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(DecodeError::Json("expected a JSON object".into()));
    }
    let wire: WireStatistics =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(printable(&e.to_string()).into_owned()))?;
    let now_ms =
        wire.current_timestamp
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0 && *t < 1e15)
            .ok_or_else(|| DecodeError::Json("currentTimestamp is not a time in milliseconds".into()))? as u64;
    if wire.statistics.len() > MAX_HISTORY_ROWS {
        return Err(DecodeError::Json(format!(
            "{} rows: more than the {MAX_HISTORY_ROWS} a miner's ring holds",
            wire.statistics.len()
        )));
    }
    let columns: Vec<Column> = match &wire.labels {
        Some(labels) => labels
            .iter()
            .map(|l| l.as_str().map_or(Column::Ignored, column_of))
            .collect(),
        None => DASHBOARD_COLUMNS.to_vec(),
    };
    let Some(timestamp_at) = columns.iter().position(|c| *c == Column::Timestamp) else {
        return Err(DecodeError::Json("the statistics have no timestamp column".into()));
    };
    let mut history = MinerHistory {
        now_ms,
        ..MinerHistory::default()
    };
    let mut last_ms = None;
    for row in &wire.statistics {
        let Some(cells) = row.as_array() else { continue };
        let Some(since_boot_ms) = cells
            .get(timestamp_at)
            .and_then(serde_json::Value::as_f64)
            .filter(|t| t.is_finite() && *t >= 0.0 && *t <= now_ms as f64)
            .map(|t| t as u64)
        else {
            continue;
        };
        // The ring is in time order; a row out of it is not trusted.
        if last_ms.is_some_and(|last| since_boot_ms <= last) {
            continue;
        }
        last_ms = Some(since_boot_ms);
        let mut sample = Sample {
            uptime_seconds: Some(since_boot_ms / 1000),
            ..Sample::default()
        };
        for (column, cell) in columns.iter().zip(cells) {
            let value = cell
                .as_f64()
                .filter(|v| v.is_finite())
                .map(|v| if v.abs() < SMALLEST_READING { 0.0 } else { v });
            history.implausible += usize::from(set_reading(&mut sample, *column, value));
        }
        history.implausible += sample.drop_implausible_readings();
        history.rows.push(HistoryRow { since_boot_ms, sample });
    }
    Ok(history)
}

/// Puts one cell into its reading, in normalised units; the firmware's "no reading" values
/// (a −1 second sensor, a 0 temperature of a board without that sensor) stay absent.
/// True when the cell was a negative number no sensor gives.
fn set_reading(sample: &mut Sample, column: Column, value: Option<f64>) -> bool {
    let Some(v) = value else { return false };
    let positive = (v > 0.0).then_some(v);
    match column {
        Column::Hashrate => sample.hashrate_ghs = (v >= 0.0).then_some(v),
        Column::ErrorPercent => sample.error_percent = (v >= 0.0).then_some(v),
        Column::AsicTemp => sample.asic_temp_celsius = positive,
        Column::AsicTemp2 => sample.asic_temp2_celsius = positive,
        Column::VrTemp => sample.vr_temp_celsius = positive,
        Column::CoreVoltage => sample.core_voltage_measured_mv = positive,
        Column::InputVoltage => {
            sample.input_voltage_volts = positive.map(|mv| if mv < 100.0 { mv } else { mv / 1000.0 })
        }
        Column::Power => sample.power_watts = (v >= 0.0).then_some(v),
        Column::Current => sample.input_current_amperes = (v >= 0.0).then_some(v / 1000.0),
        Column::FanPercent => sample.fan_duty_percent = (0.0..=100.0).contains(&v).then_some(v),
        Column::FanRpm => sample.fan_rpm = (v >= 0.0).then_some(v),
        Column::Fan2Rpm => sample.fan2_rpm = (v >= 0.0).then_some(v),
        Column::WifiRssi => sample.wifi_rssi_dbm = (v < 0.0).then_some(v),
        Column::FreeHeap => sample.free_heap_bytes = (0.0..=MAX_HEAP_BYTES as f64).contains(&v).then_some(v as u64),
        Column::Timestamp | Column::Ignored => return false,
    }
    v < 0.0 && v != -1.0 && !matches!(column, Column::WifiRssi)
}

/// The last lines of a miner's log, fit to keep with an event: the body's end (at most
/// [`LOG_TAIL_LINES`] lines and [`LOG_TAIL_BYTES`] bytes), invalid UTF-8 replaced, colour
/// escapes removed and every other control character written as an escape, blank lines
/// dropped.
pub fn log_tail(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    let mut lines: Vec<String> = Vec::new();
    let mut bytes = 0;
    for line in text.lines().rev() {
        let clean = printable(&without_account(strip_ansi(line).trim_end())).into_owned();
        if clean.trim().is_empty() {
            continue;
        }
        let clean = truncate_chars(clean, 240);
        if lines.len() == LOG_TAIL_LINES || bytes + clean.len() + 1 > LOG_TAIL_BYTES {
            break;
        }
        bytes += clean.len() + 1;
        lines.push(clean);
    }
    lines.reverse();
    lines
}

/// A line without the pool account: the firmware logs its stratum traffic, and the user
/// (a wallet address) and password travel as the first strings of `mining.authorize`'s
/// params (the user also in `mining.submit`'s). Those become `***`, and so does any word that
/// looks like a bech32 address (`bc1…`, `tb1…`) wherever it appears.
fn without_account(line: &str) -> String {
    let mut line = line.to_string();
    if let (Some(method_at), Some(params_at)) = (line.find("\"mining."), line.find("\"params\"")) {
        let secrets = if line[method_at..].starts_with("\"mining.authorize\"") {
            2
        } else {
            1
        };
        let mut at = params_at + "\"params\"".len();
        for _ in 0..secrets {
            let Some(open) = line[at..].find('"').map(|i| at + i + 1) else {
                break;
            };
            let Some(close) = line[open..].find('"').map(|i| open + i) else {
                break;
            };
            line.replace_range(open..close, "***");
            at = open + "***".len() + 1;
        }
    }
    line.split_inclusive(|c: char| !c.is_ascii_alphanumeric())
        .map(|word| {
            let bare = word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric());
            let lower = bare.to_ascii_lowercase();
            if (lower.starts_with("bc1") || lower.starts_with("tb1")) && bare.len() >= 20 {
                word.replacen(bare, "***", 1)
            } else {
                word.to_string()
            }
        })
        .collect()
}

/// A line without its ANSI escape sequences (`ESC [ … letter`): ESP-IDF colours each line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, then one final byte in @..~ ends it.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate_chars(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_15_columns_decode_in_units_and_on_the_wall_clock() {
        let body = br#"{"currentTimestamp":267513042,"labels":["hashrate","errorPercentage","asicTemp","asicTemp2","vrTemp","asicVoltage","voltage","power","current","fanSpeed","fanRpm","timestamp"],
            "statistics":[[1081.2,0.4,59.875,-1,48,1148,5102,18.27,3581,42,4020,266793000],[1090.0,0.5,60.0,-1,49,1150,5100,18.3,3600,42,4030,267213042]]}"#;
        let history = decode_statistics(body).expect("decodes");
        assert_eq!(history.rows.len(), 2);
        let first = &history.rows[0].sample;
        assert_eq!(first.hashrate_ghs, Some(1081.2));
        assert_eq!(first.asic_temp_celsius, Some(59.875));
        assert_eq!(first.asic_temp2_celsius, None, "-1 means no second sensor");
        assert_eq!(first.core_voltage_measured_mv, Some(1148.0));
        assert_eq!(first.input_voltage_volts, Some(5.102));
        assert_eq!(first.input_current_amperes, Some(3.581));
        assert_eq!(first.uptime_seconds, Some(266_793));
        assert_eq!(history.implausible, 0);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let placed = history.on_wall_clock(now);
        assert_eq!(placed[0].0, now - Duration::from_millis(720_042));
        assert_eq!(placed[1].0, now - Duration::from_millis(300_000));
    }

    #[test]
    fn the_v2_8_era_labels_and_the_dashboard_rows_decode() {
        let old = br#"{"currentTimestamp":100000,"labels":["hashRate","temp","vrTemp","power","voltage","current","coreVoltageActual","fanspeed","fanrpm","wifiRSSI","freeHeap","timestamp"],
            "statistics":[[480.5,55.5,45,11.2,5010,2200,1190,60,3500,-55,150000,90000]]}"#;
        let row = &decode_statistics(old).expect("decodes").rows[0].sample;
        assert_eq!(
            (row.hashrate_ghs, row.asic_temp_celsius, row.power_watts),
            (Some(480.5), Some(55.5), Some(11.2))
        );
        assert_eq!(
            (row.fan_duty_percent, row.fan_rpm, row.wifi_rssi_dbm),
            (Some(60.0), Some(3500.0), Some(-55.0))
        );
        assert_eq!(row.free_heap_bytes, Some(150_000));
        let dashboard = br#"{"currentTimestamp":100000,"statistics":[[480.5,55.5,11.2,90000]]}"#;
        let row = &decode_statistics(dashboard).expect("decodes").rows[0].sample;
        assert_eq!(
            (row.hashrate_ghs, row.asic_temp_celsius, row.power_watts),
            (Some(480.5), Some(55.5), Some(11.2))
        );
    }

    #[test]
    fn hostile_rows_are_left_out_and_implausible_cells_counted() {
        let body = br#"{"currentTimestamp":100000,"labels":["hashrate","power","asicTemp","timestamp"],
            "statistics":[[1,2,50,5000],"x",[1,2,50],[1,2,50,200000],[1,2,50,4000],[1e300,-7,900,6000],[1,2,50,7000]]}"#;
        let history = decode_statistics(body).expect("decodes");
        let times: Vec<u64> = history.rows.iter().map(|r| r.since_boot_ms).collect();
        assert_eq!(
            times,
            [5000, 6000, 7000],
            "future, out-of-order and timestamp-less rows left out"
        );
        let hostile = &history.rows[1].sample;
        assert_eq!(
            (hostile.hashrate_ghs, hostile.power_watts, hostile.asic_temp_celsius),
            (None, None, None)
        );
        assert_eq!(history.implausible, 3);
    }

    #[test]
    fn bodies_that_are_no_ring_are_errors() {
        assert!(decode_statistics(b"<html>").is_err());
        assert!(decode_statistics(br#"{"statistics":[]}"#).is_err(), "no clock");
        assert!(decode_statistics(br#"{"currentTimestamp":1,"labels":["hashrate"],"statistics":[[1]]}"#).is_err());
        let too_many = format!(
            r#"{{"currentTimestamp":1,"labels":["timestamp"],"statistics":[{}]}}"#,
            vec!["[0]"; MAX_HISTORY_ROWS + 1].join(",")
        );
        assert!(decode_statistics(too_many.as_bytes()).is_err());
        let off = decode_statistics(br#"{"currentTimestamp":5,"labels":["hashrate","timestamp"],"statistics":[]}"#);
        assert_eq!(off.expect("statistics off is an empty ring").rows.len(), 0);
    }

    #[test]
    fn which_firmware_keeps_what() {
        use FirmwareFamily::*;
        assert!(!has_statistics(EspMiner, Some("v2.7.0")));
        assert!(has_statistics(EspMiner, Some("v2.8.1")));
        assert!(
            !has_statistics(NerdQaxe, Some("v2.9.0")),
            "a fork's version is not upstream's"
        );
        assert!(!has_statistics(EspMiner, Some("2a1b3c4")));
        assert!(selects_columns(Some("v2.11.0")) && !selects_columns(Some("v2.10.1")));
        assert!(has_logs(EspMiner, Some("v2.14.0")) && !has_logs(EspMiner, Some("v2.13.2")));
        assert!(!has_logs(Lucky, Some("2.14.0")));
    }

    #[test]
    fn the_pool_account_never_leaves_in_a_log_tail() {
        let body = concat!(
            "I (5) stratum_api: tx: {\"id\": 2, \"method\": \"mining.authorize\", \"params\": [\"bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh.rig\", \"secretpw\"]}\n",
            "I (6) stratum_api: tx: {\"id\": 9, \"method\": \"mining.submit\", \"params\": [\"someuser.worker\", \"1a\", \"00\"]}\n",
            "I (7) stratum_task: pool user bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh connected\n",
        );
        let tail = log_tail(body.as_bytes()).join("\n");
        for secret in ["bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh", "secretpw", "someuser"] {
            assert!(!tail.contains(secret), "{secret} in {tail}");
        }
        assert!(tail.contains("mining.submit") && tail.contains("\"1a\""), "{tail}");
    }

    #[test]
    fn a_log_tail_is_short_clean_and_ends_where_the_log_does() {
        let mut body = String::new();
        for i in 0..100 {
            body.push_str(&format!("\x1b[0;32mI ({i}) stratum_task: line {i}\x1b[0m\r\n"));
        }
        body.push_str("\x1b[0;31mE (101) power: \x07fault\u{202e}x\x1b[0m\n\n");
        let tail = log_tail(body.as_bytes());
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(
            tail.last().map(String::as_str),
            Some("E (101) power: \\u{7}fault\\u{202e}x")
        );
        assert_eq!(tail[tail.len() - 2], "I (99) stratum_task: line 99");
        let huge = "y".repeat(10_000);
        let tail = log_tail(huge.as_bytes());
        assert!(tail[0].chars().count() <= 241 && tail.iter().map(String::len).sum::<usize>() <= LOG_TAIL_BYTES);
        assert!(log_tail(&[0xff, 0xfe, b'\n']).iter().all(|l| !l.contains('\u{0}')));
    }
}
