//! The simulated miner's statistics ring (`GET /api/system/statistics`, upstream v2.8+):
//! when the firmware's statistics task takes a reading, how a full ring makes room (the
//! oldest row out before v2.14; uneven thinning from v2.14), and the bodies of each era
//! (fixed v2.8–v2.10 labels and the `/dashboard` rows, v2.11+ `?columns=` selection).
//! Timestamps are milliseconds since boot on the simulated clock; the ring lives in RAM.

use std::collections::VecDeque;

use serde_json::{json, Value};

use crate::sim::dialects::{self, Dialect};
use crate::sim::physics::{MinerPhysics, Reading};

/// The firmware's `MAX_STATISTICS_COUNT`.
pub(crate) const MAX_ROWS: usize = 720;
/// v2.8–v2.13's statistics task wakes every 5 s (`DEFAULT_POLL_RATE`).
const PERIODIC_TASK_MS: u64 = 5_000;
/// v2.14+'s statistics task wakes, and reads, every second.
const THINNED_TASK_MS: u64 = 1_000;

/// v2.8–v2.10's fixed labels (`timestamp` included, last).
const LABELS_V2_8: [&str; 12] = [
    "hashRate",
    "temp",
    "vrTemp",
    "power",
    "voltage",
    "current",
    "coreVoltageActual",
    "fanspeed",
    "fanrpm",
    "wifiRSSI",
    "freeHeap",
    "timestamp",
];

/// v2.11+'s selectable columns in firmware order (v2.15's set); `timestamp` always follows.
const COLUMNS_V2_11: [&str; 18] = [
    "hashrate",
    "hashrate_1m",
    "hashrate_10m",
    "hashrate_1h",
    "errorPercentage",
    "asicTemp",
    "asicTemp2",
    "vrTemp",
    "asicVoltage",
    "voltage",
    "power",
    "current",
    "fanSpeed",
    "fanRpm",
    "fan2Rpm",
    "wifiRssi",
    "freeHeap",
    "responseTime",
];

/// How an era's statistics task fills its ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filling {
    /// v2.8–v2.13: the task wakes every 5 s and reads once `statsFrequency` has about
    /// passed since its last reading (it reads when more than the frequency less half a
    /// wake-up has gone by, so 7 s reads every 5 s and 8 s every 10 s); a full ring drops
    /// its oldest row.
    EveryFrequency,
    /// v2.14+: a reading every second; a full ring that spans less than 720 ×
    /// `statsFrequency` drops a row from its densest stretch, one that spans that much
    /// drops its oldest. The rows read a second apart thin out as they age, so the ring
    /// reaches back about 720 × `statsFrequency` with uneven gaps (1 s to about twice the
    /// frequency), its newest rows a second or two apart.
    ThinnedEverySecond,
}

impl Filling {
    /// The ring of this firmware dialect, if it keeps one (the simulator's v2.9, v2.10 and
    /// v2.15; not v2.0 / v2.4, and not the forks, whose statistics the exporter does not read).
    pub(crate) fn of(dialect: Dialect) -> Option<Filling> {
        match dialect {
            Dialect::V2_9 | Dialect::V2_10 => Some(Filling::EveryFrequency),
            Dialect::V2_15 => Some(Filling::ThinnedEverySecond),
            Dialect::V2_0 | Dialect::V2_4 | Dialect::NerdQaxe | Dialect::Lucky => None,
        }
    }
}

/// One reading as the statistics task stores it, in the firmware's units: GH/s, °C, mV,
/// W, mA, % and rpm, taken from the same physics and the same fault as the info body.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct RingReading {
    pub hashrate_ghs: f64,
    /// `hashrate_1m`, `_10m` and `_1h` (the info body's rolling averages).
    pub rolling_hashrate_ghs: f64,
    pub error_percent: f64,
    pub asic_celsius: f64,
    /// 0 on a board without the regulator's sensor, as the info body.
    pub vr_celsius: f64,
    pub core_mv: f64,
    pub input_mv: f64,
    pub power_watts: f64,
    pub current_ma: f64,
    pub fan_percent: f64,
    pub fan_rpm: f64,
}

impl RingReading {
    /// What the task reads from the physics' reading `r` (bent by any fault already).
    pub(crate) fn observe(p: &MinerPhysics, r: &Reading) -> Self {
        Self {
            hashrate_ghs: r.hashrate_ghs,
            rolling_hashrate_ghs: dialects::rolling_hashrate(p, r),
            error_percent: r.error_percent,
            asic_celsius: r.asic_celsius,
            vr_celsius: if p.spec.has_vr_sensor { r.vr_celsius } else { 0.0 },
            core_mv: r.core_mv_measured,
            input_mv: r.input_mv,
            power_watts: r.power_watts,
            current_ma: r.current_ma,
            fan_percent: r.fan_percent,
            fan_rpm: r.fan_rpm,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Row {
    /// Milliseconds since boot.
    at_ms: u64,
    reading: RingReading,
}

/// One miner's statistics ring.
#[derive(Debug, Clone)]
pub(crate) struct StatisticsRing {
    filling: Filling,
    /// `statsFrequency` (s); 0 = off, the firmware's default.
    frequency_s: u16,
    /// v2.9 keeps its rows while statistics are off and only stops serving them; v2.10+
    /// frees the ring.
    keeps_rows_while_off: bool,
    rows: VecDeque<Row>,
    /// Boot time (ms) of the last reading (the task's `statsData.timestamp`, 0 at boot).
    last_ms: u64,
}

impl StatisticsRing {
    pub(crate) fn new(filling: Filling, dialect: Dialect, frequency_s: u16) -> Self {
        Self {
            filling,
            frequency_s,
            keeps_rows_while_off: dialect == Dialect::V2_9,
            rows: VecDeque::new(),
            last_ms: 0,
        }
    }

    pub(crate) fn frequency_s(&self) -> u16 {
        self.frequency_s
    }

    /// A new `statsFrequency`, as the task reads it from its settings: turning statistics
    /// off empties the ring from v2.10 on.
    pub(crate) fn set_frequency(&mut self, seconds: u16) {
        self.frequency_s = seconds;
        if seconds == 0 && !self.keeps_rows_while_off {
            self.rows.clear();
        }
    }

    /// A reboot: RAM is gone and the boot clock starts again.
    pub(crate) fn reboot(&mut self) {
        self.rows.clear();
        self.last_ms = 0;
    }

    /// The rows `GET /api/system/statistics` serves now.
    pub(crate) fn visible_rows(&self) -> usize {
        if self.frequency_s == 0 {
            0
        } else {
            self.rows.len()
        }
    }

    /// The first boot time (ms), after `after_ms`, at which the task takes a reading, if
    /// statistics are on. The task wakes at whole multiples of its period since boot.
    pub(crate) fn next_reading_after(&self, after_ms: u64) -> Option<u64> {
        if self.frequency_s == 0 {
            return None;
        }
        let frequency_ms = u64::from(self.frequency_s) * 1000;
        Some(match self.filling {
            Filling::EveryFrequency => {
                // It reads when now > last + frequency − half a wake-up.
                let threshold = (self.last_ms + frequency_ms).saturating_sub(PERIODIC_TASK_MS / 2);
                (after_ms.max(threshold) / PERIODIC_TASK_MS + 1) * PERIODIC_TASK_MS
            }
            Filling::ThinnedEverySecond => {
                // It reads when now ≥ last + 1 s.
                let earliest = (after_ms + 1).max(self.last_ms + THINNED_TASK_MS);
                earliest.div_ceil(THINNED_TASK_MS) * THINNED_TASK_MS
            }
        })
    }

    /// Stores a reading taken at `at_ms`, making room as the era does.
    pub(crate) fn record(&mut self, at_ms: u64, reading: RingReading) {
        if self.frequency_s == 0 {
            return;
        }
        self.last_ms = at_ms;
        if self.rows.len() >= MAX_ROWS {
            let leaving = match self.filling {
                Filling::EveryFrequency => 0,
                Filling::ThinnedEverySecond => {
                    let oldest = self.rows.front().map_or(at_ms, |r| r.at_ms);
                    let wanted_span = MAX_ROWS as u64 * u64::from(self.frequency_s) * 1000;
                    if at_ms.saturating_sub(oldest) >= wanted_span {
                        0
                    } else {
                        densest_index(self.rows.make_contiguous(), |row| row.at_ms)
                    }
                }
            };
            self.rows.remove(leaving);
        }
        self.rows.push_back(Row { at_ms, reading });
    }

    /// `GET /api/system/statistics[?query]` at boot time `now_ms`: v2.8–v2.10's fixed labels,
    /// or v2.11+'s chosen columns (v2.15 dialect).
    pub(crate) fn body(&self, dialect: Dialect, now_ms: u64, query: Option<&str>) -> Value {
        let rows = self.rows.iter().take(self.visible_rows());
        if dialect.at_least(Dialect::V2_15) {
            let columns = chosen_columns(query);
            let labels: Vec<&str> = columns.iter().map(|&c| COLUMNS_V2_11[c]).chain(["timestamp"]).collect();
            let statistics: Vec<Value> = rows
                .map(|row| {
                    let mut cells: Vec<Value> = columns.iter().map(|&c| cell_v2_11(c, &row.reading)).collect();
                    cells.push(json!(row.at_ms));
                    Value::Array(cells)
                })
                .collect();
            json!({"currentTimestamp": now_ms, "labels": labels, "statistics": statistics})
        } else {
            let statistics: Vec<Value> = rows.map(|row| row_v2_8(dialect, row)).collect();
            json!({"currentTimestamp": now_ms, "labels": LABELS_V2_8, "statistics": statistics})
        }
    }

    /// `GET /api/system/statistics/dashboard` (v2.8–v2.10): `[hashrate, temp, power,
    /// timestamp]` rows and no labels.
    pub(crate) fn dashboard_body(&self, dialect: Dialect, now_ms: u64) -> Value {
        let statistics: Vec<Value> = self
            .rows
            .iter()
            .take(self.visible_rows())
            .map(|row| {
                let r = &row.reading;
                json!([
                    r.hashrate_ghs,
                    dialects::float(dialect, r.asic_celsius),
                    dialects::float(dialect, r.power_watts),
                    row.at_ms
                ])
            })
            .collect();
        json!({"currentTimestamp": now_ms, "statistics": statistics})
    }
}

/// The row a full v2.14+ ring gives up while it spans less than it should (my reading of
/// `addStatisticData` in `main/tasks/statistics_task.c`): between the second and the last
/// row, cut the time range in half and go into the half that holds more rows (the newer
/// half on a tie), until two neighbours are left; the older of them goes. The oldest row
/// is never chosen, so the ring keeps reaching back while its dense newest stretch thins.
fn densest_index<T>(rows: &[T], at_ms: impl Fn(&T) -> u64) -> usize {
    let (mut low, mut high) = (1, rows.len().saturating_sub(1));
    while high > low + 1 {
        let (from, to) = (at_ms(&rows[low]), at_ms(&rows[high]));
        let middle = from + to.saturating_sub(from) / 2;
        let mut split = low + rows[low..=high].partition_point(|row| at_ms(row) < middle);
        if split == low {
            split += 1;
        }
        split = split.min(high);
        let older = split - low;
        let newer = high - split + 1;
        if older > newer {
            high = split - 1;
        } else {
            low = split;
        }
    }
    low
}

/// The columns a v2.11+ query asks for, in firmware order: names from the first
/// `columns=` (URL-decoded, as v2.14+ does; commas split it, empty names skipped); unknown
/// names dropped; none known ⇒ every column.
fn chosen_columns(query: Option<&str>) -> Vec<usize> {
    let asked: Vec<String> = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("columns="))
        .map(|value| {
            url_decode(value)
                .split(',')
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let chosen: Vec<usize> = (0..COLUMNS_V2_11.len())
        .filter(|&c| asked.iter().any(|name| name == COLUMNS_V2_11[c]))
        .collect();
    if chosen.is_empty() {
        (0..COLUMNS_V2_11.len()).collect()
    } else {
        chosen
    }
}

/// `%XX` escapes and `+` for a space, as the firmware's `url_decode`.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A v2.11+ cell: floats through the era's 7-decimal rounding (`cJSON_CreateFloat`), the
/// core voltage, fan rpm, RSSI and heap as integers.
fn cell_v2_11(column: usize, r: &RingReading) -> Value {
    let d = Dialect::V2_15;
    match COLUMNS_V2_11[column] {
        "hashrate" => dialects::float(d, r.hashrate_ghs),
        "hashrate_1m" | "hashrate_10m" | "hashrate_1h" => dialects::float(d, r.rolling_hashrate_ghs),
        "errorPercentage" => dialects::float(d, r.error_percent),
        "asicTemp" => dialects::float(d, r.asic_celsius),
        // No simulated board has a second sensor: −1, as the info body's `temp2`.
        "asicTemp2" => json!(-1),
        "vrTemp" => dialects::float(d, r.vr_celsius),
        "asicVoltage" => json!(r.core_mv.round() as i64),
        "voltage" => dialects::float(d, r.input_mv),
        "power" => dialects::float(d, r.power_watts),
        "current" => dialects::float(d, r.current_ma),
        "fanSpeed" => dialects::float(d, r.fan_percent),
        "fanRpm" => json!(r.fan_rpm as i64),
        "fan2Rpm" => json!(0),
        "wifiRssi" => json!(dialects::WIFI_RSSI_DBM),
        "freeHeap" => json!(dialects::FREE_HEAP_BYTES),
        "responseTime" => dialects::float(d, dialects::RESPONSE_TIME_MS),
        _ => Value::Null,
    }
}

/// A v2.8–v2.10 row in `LABELS_V2_8` order: the hashrate a double, temperatures, power,
/// input voltage and current float32 (with their printing noise), the core voltage, fan
/// and heap integers.
fn row_v2_8(d: Dialect, row: &Row) -> Value {
    let r = &row.reading;
    json!([
        r.hashrate_ghs,
        dialects::float(d, r.asic_celsius),
        dialects::float(d, r.vr_celsius),
        dialects::float(d, r.power_watts),
        dialects::float(d, r.input_mv),
        dialects::float(d, r.current_ma),
        r.core_mv.round() as i64,
        r.fan_percent.round() as i64,
        r.fan_rpm as i64,
        dialects::WIFI_RSSI_DBM,
        dialects::FREE_HEAP_BYTES,
        row.at_ms
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(hashrate: f64) -> RingReading {
        RingReading {
            hashrate_ghs: hashrate,
            rolling_hashrate_ghs: 1000.0,
            error_percent: 0.25,
            asic_celsius: 60.0,
            vr_celsius: 50.0,
            core_mv: 1140.0,
            input_mv: 5000.0,
            power_watts: 18.0,
            current_ma: 3600.0,
            fan_percent: 50.0,
            fan_rpm: 4000.0,
        }
    }

    /// Runs the task from boot to `until_ms`, reading as it schedules itself.
    fn run(ring: &mut StatisticsRing, until_ms: u64) {
        let mut now = ring.rows.back().map_or(0, |r| r.at_ms);
        while let Some(at) = ring.next_reading_after(now).filter(|at| *at <= until_ms) {
            ring.record(at, reading(1000.0));
            now = at;
        }
    }

    fn times(ring: &StatisticsRing) -> Vec<u64> {
        ring.rows.iter().map(|r| r.at_ms).collect()
    }

    #[test]
    fn columns_come_in_firmware_order_with_the_timestamp_last_whatever_was_asked() {
        let mut ring = StatisticsRing::new(Filling::ThinnedEverySecond, Dialect::V2_15, 1);
        ring.record(2_000, reading(1081.2));
        let body = ring.body(Dialect::V2_15, 3_000, Some("columns=power,bogus,hashrate,asicTemp"));
        assert_eq!(body["labels"], json!(["hashrate", "asicTemp", "power", "timestamp"]));
        assert_eq!(body["statistics"], json!([[1081.2, 60, 18, 2000]]));
        assert_eq!(body["currentTimestamp"], json!(3000));
        // v2.14+ decodes the query: an encoded comma splits too; other parameters are ignored.
        let encoded = ring.body(Dialect::V2_15, 3_000, Some("x=1&columns=fanRpm%2CwifiRssi"));
        assert_eq!(encoded["labels"], json!(["fanRpm", "wifiRssi", "timestamp"]));
        assert_eq!(encoded["statistics"][0], json!([4000, -58, 2000]));
        // No known name (the timestamp is not a column one asks for): every column.
        for query in [Some("columns=bogus,timestamp"), Some("columns="), None] {
            let all = ring.body(Dialect::V2_15, 3_000, query);
            let labels: Vec<&str> = all["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            let mut expected = COLUMNS_V2_11.to_vec();
            expected.push("timestamp");
            assert_eq!(labels, expected, "{query:?}");
            assert_eq!(all["statistics"][0].as_array().unwrap().len(), labels.len());
            // asicTemp2 with no second sensor.
            assert_eq!(all["statistics"][0][6], json!(-1));
        }
    }

    #[test]
    fn each_era_has_its_own_labels_and_the_dashboard_its_four_columns() {
        let mut ring = StatisticsRing::new(Filling::EveryFrequency, Dialect::V2_10, 5);
        ring.record(5_000, reading(480.5));
        for dialect in [Dialect::V2_9, Dialect::V2_10] {
            let body = ring.body(dialect, 6_000, Some("columns=power"));
            assert_eq!(body["labels"], json!(LABELS_V2_8), "no column choice before v2.11");
            let row = body["statistics"][0].as_array().unwrap();
            assert_eq!(row.len(), 12);
            assert_eq!(row[0], json!(480.5));
            assert_eq!(row[6], json!(1140), "coreVoltageActual in mV");
            assert_eq!(row[11], json!(5000));
            let dashboard = ring.dashboard_body(dialect, 6_000);
            assert!(dashboard.get("labels").is_none());
            assert_eq!(dashboard["statistics"], json!([[480.5, 60, 18, 5000]]));
        }
        let new = StatisticsRing::new(Filling::ThinnedEverySecond, Dialect::V2_15, 5).body(Dialect::V2_15, 1, None);
        assert_eq!(new["labels"][0], "hashrate");
        assert_eq!(new["labels"].as_array().unwrap().len(), 19);
    }

    #[test]
    fn statistics_off_serve_an_empty_ring_and_v2_10_on_frees_it() {
        let mut ring = StatisticsRing::new(Filling::EveryFrequency, Dialect::V2_10, 0);
        assert_eq!(ring.next_reading_after(0), None);
        ring.record(5_000, reading(1.0));
        assert_eq!(ring.body(Dialect::V2_10, 6_000, None)["statistics"], json!([]));
        ring.set_frequency(5);
        run(&mut ring, 60_000);
        assert_eq!(ring.visible_rows(), 12);
        ring.set_frequency(0);
        assert_eq!(ring.body(Dialect::V2_10, 61_000, None)["statistics"], json!([]));
        ring.set_frequency(5);
        assert_eq!(ring.visible_rows(), 0, "v2.10 freed the ring");
        // v2.9 only hides it.
        let mut old = StatisticsRing::new(Filling::EveryFrequency, Dialect::V2_9, 5);
        run(&mut old, 60_000);
        old.set_frequency(0);
        assert_eq!(old.visible_rows(), 0);
        old.set_frequency(5);
        assert_eq!(old.visible_rows(), 12);
    }

    #[test]
    fn the_old_task_reads_on_its_five_second_beat_and_drops_the_oldest_when_full() {
        let spacing = |frequency: u16| {
            let mut ring = StatisticsRing::new(Filling::EveryFrequency, Dialect::V2_10, frequency);
            run(&mut ring, 120_000);
            let t = times(&ring);
            (t[0], t[1] - t[0], t[t.len() - 1] - t[t.len() - 2])
        };
        assert_eq!(spacing(5), (5_000, 5_000, 5_000));
        assert_eq!(spacing(10), (10_000, 10_000, 10_000));
        assert_eq!(spacing(7), (5_000, 5_000, 5_000), "7 s passes within one wake-up");
        assert_eq!(spacing(8), (10_000, 10_000, 10_000));
        assert_eq!(spacing(1), (5_000, 5_000, 5_000));
        let mut ring = StatisticsRing::new(Filling::EveryFrequency, Dialect::V2_10, 5);
        run(&mut ring, 5_000 * 1000);
        let t = times(&ring);
        assert_eq!(t.len(), MAX_ROWS);
        assert_eq!(t[MAX_ROWS - 1], 5_000_000);
        assert_eq!(t[0], 5_000_000 - 719 * 5_000, "the newest 720 stay");
        ring.reboot();
        assert_eq!(ring.visible_rows(), 0);
        assert_eq!(ring.next_reading_after(0), Some(5_000), "the boot clock starts again");
    }

    #[test]
    fn the_new_task_reads_every_second_and_thins_unevenly_keeping_720_in_order() {
        let mut ring = StatisticsRing::new(Filling::ThinnedEverySecond, Dialect::V2_15, 10);
        run(&mut ring, 720_000);
        assert_eq!(times(&ring), (1..=720).map(|s| s * 1000).collect::<Vec<u64>>());
        // Hours on: at most 720 rows, in time order, reaching back about 720 × 10 s.
        for hour in 1..=4u64 {
            run(&mut ring, hour * 3_600_000);
            let t = times(&ring);
            assert_eq!(t.len(), MAX_ROWS);
            assert!(t.windows(2).all(|w| w[0] < w[1]), "in order");
            assert_eq!(*t.last().unwrap(), hour * 3_600_000, "the newest reading is there");
            let span = t[MAX_ROWS - 1] - t[0];
            assert!(span <= 7_200_000, "span {span} ms");
            if hour >= 2 {
                assert!(span >= 7_000_000, "it keeps reaching back: span {span} ms");
            }
            // The rows read every second were thinned: the oldest stretch is sparse, the
            // newest rows still a second or two apart, and the spacing uneven.
            let gaps: Vec<u64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let oldest = gaps[..60].iter().sum::<u64>() / 60;
            let newest = gaps[gaps.len() - 1];
            assert!(
                oldest >= 4_000 && newest <= 2_000,
                "hour {hour}: {oldest} ms, newest {newest} ms"
            );
            let (least, most) = (gaps.iter().min().unwrap(), gaps.iter().max().unwrap());
            assert!(most - least >= 5_000, "uneven: {least}..{most} ms");
        }
    }

    #[test]
    fn the_firmware_thinning_goes_into_the_denser_half() {
        // Sparse old rows, a dense new stretch: a row of the dense stretch goes.
        let mut times: Vec<u64> = (0..10).map(|i| i * 10_000).collect();
        times.extend((0..10).map(|i| 100_000 + i * 1_000));
        let index = densest_index(&times, |t| *t);
        assert!(index >= 10, "{index}");
        // Evenly spaced rows: never the oldest.
        let even: Vec<u64> = (0..720).map(|i| i * 1_000).collect();
        assert!(densest_index(&even, |t| *t) >= 1);
    }
}
