//! The simulated miner's own memory: its statistics ring (`GET /api/system/statistics`,
//! v2.8+ dialects: a reading every `statsFrequency` simulated seconds, timestamps in ms since
//! boot, at most 720 rows, emptied by a reboot) and its log ring (`GET /api/system/logs`,
//! v2.14+: ESP-IDF lines with colour escapes, kept across a soft reboot).

use std::collections::VecDeque;

use crate::sim::dialects::Dialect;
use crate::sim::physics::Reading;

/// The firmware's `MAX_STATISTICS_COUNT`.
const MAX_ROWS: usize = 720;
/// The log ring's size, bytes (oldest lines dropped).
const MAX_LOG_BYTES: usize = 16 * 1024;

/// v2.11+ labels in firmware order (`timestamp` is appended last).
const LABELS_V2_11: [&str; 10] = [
    "hashrate",
    "errorPercentage",
    "asicTemp",
    "vrTemp",
    "asicVoltage",
    "voltage",
    "power",
    "current",
    "fanSpeed",
    "fanRpm",
];
/// v2.8–v2.10 fixed labels.
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

/// The ring and the log of one simulated miner.
#[derive(Debug, Default)]
pub(crate) struct MinerMemory {
    /// Seconds between readings; 0 = statistics off (the firmware's default).
    pub stats_frequency: u16,
    rows: VecDeque<(u64, Reading)>,
    /// Uptime (ms) of the next reading.
    next_ms: u64,
    log: VecDeque<String>,
    log_bytes: usize,
}

impl MinerMemory {
    /// A miner's memory with its ring taking a reading every `stats_frequency` seconds.
    pub(crate) fn new(stats_frequency: u16) -> Self {
        Self {
            stats_frequency,
            ..Self::default()
        }
    }

    /// Takes a reading if one is due at this uptime (ms since boot).
    pub(crate) fn tick(&mut self, uptime_ms: u64, reading: &Reading) {
        if self.stats_frequency == 0 {
            return;
        }
        if uptime_ms >= self.next_ms {
            self.rows.push_back((uptime_ms, *reading));
            if self.rows.len() > MAX_ROWS {
                self.rows.pop_front();
            }
            self.next_ms = uptime_ms + u64::from(self.stats_frequency) * 1000;
        }
    }

    /// A reboot: the ring (RAM) is gone; the log survives a soft reboot only.
    pub(crate) fn reboot(&mut self, soft: bool, reason: &str) {
        self.rows.clear();
        self.next_ms = 0;
        if !soft {
            self.log.clear();
            self.log_bytes = 0;
        }
        self.log_line(0, 'I', "cpu_start", "Pro cpu start user code");
        self.log_line(0, 'I', "system", &format!("Last reset reason: {reason}"));
    }

    /// One ESP-IDF log line, coloured as the firmware prints it.
    pub(crate) fn log_line(&mut self, uptime_ms: u64, level: char, tag: &str, text: &str) {
        let colour = match level {
            'E' => "0;31",
            'W' => "0;33",
            _ => "0;32",
        };
        let line = format!("\u{1b}[{colour}m{level} ({uptime_ms}) {tag}: {text}\u{1b}[0m\n");
        self.log_bytes += line.len();
        self.log.push_back(line);
        while self.log_bytes > MAX_LOG_BYTES {
            match self.log.pop_front() {
                Some(old) => self.log_bytes -= old.len(),
                None => break,
            }
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn log_text(&self) -> String {
        self.log.iter().map(String::as_str).collect()
    }

    /// The body of `GET /api/system/statistics[?columns=…]` in this dialect at this uptime.
    pub(crate) fn statistics_body(&self, dialect: Dialect, now_ms: u64, query: Option<&str>) -> serde_json::Value {
        let new_labels = dialect == Dialect::V2_15;
        let labels: Vec<&str> = if new_labels {
            let asked: Vec<&str> = query
                .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("columns=")))
                .map(|list| list.split(',').collect())
                .unwrap_or_default();
            let chosen: Vec<&str> = LABELS_V2_11.iter().copied().filter(|l| asked.contains(l)).collect();
            let mut labels = if chosen.is_empty() {
                LABELS_V2_11.to_vec()
            } else {
                chosen
            };
            labels.push("timestamp");
            labels
        } else {
            LABELS_V2_8.to_vec()
        };
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|(ms, r)| serde_json::Value::from(labels.iter().map(|l| cell(l, *ms, r)).collect::<Vec<_>>()))
            .collect();
        serde_json::json!({"currentTimestamp": now_ms, "labels": labels, "statistics": rows})
    }
}

fn round(v: f64, places: i32) -> serde_json::Value {
    let scale = 10f64.powi(places);
    serde_json::json!((v * scale).round() / scale)
}

fn cell(label: &str, ms: u64, r: &Reading) -> serde_json::Value {
    match label {
        "timestamp" => serde_json::json!(ms),
        "hashrate" | "hashRate" => round(r.hashrate_ghs, 2),
        "errorPercentage" => round(r.error_percent, 2),
        "asicTemp" | "temp" => round(r.asic_celsius, 3),
        "vrTemp" => round(r.vr_celsius, 1),
        "asicVoltage" | "coreVoltageActual" => round(r.core_mv_measured, 0),
        "voltage" => round(r.input_mv, 0),
        "power" => round(r.power_watts, 2),
        "current" => round(r.current_ma, 0),
        "fanSpeed" | "fanspeed" => round(r.fan_percent, 0),
        "fanRpm" | "fanrpm" => round(r.fan_rpm, 0),
        "wifiRSSI" => serde_json::json!(-52),
        "freeHeap" => serde_json::json!(180_000),
        _ => serde_json::Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading() -> Reading {
        Reading {
            hashrate_ghs: 1000.0,
            expected_ghs: 1000.0,
            power_watts: 18.0,
            input_mv: 5000.0,
            current_ma: 3600.0,
            asic_celsius: 60.0,
            vr_celsius: 50.0,
            core_mv_measured: 1140.0,
            fan_percent: 50.0,
            fan_rpm: 4000.0,
            error_percent: 0.3,
        }
    }

    #[test]
    fn the_ring_samples_at_its_frequency_caps_and_forgets_on_reboot() {
        let mut memory = MinerMemory::default();
        memory.tick(1_000, &reading());
        assert_eq!(memory.rows(), 0, "statistics off by default");
        memory.stats_frequency = 5;
        for s in 0..5000u64 {
            memory.tick(s * 1000, &reading());
        }
        assert_eq!(memory.rows(), MAX_ROWS);
        memory.log_line(10, 'E', "power", "fault");
        memory.reboot(true, "Software reset via esp_restart");
        assert_eq!(memory.rows(), 0);
        assert!(memory.log_text().contains("fault"), "a soft reboot keeps the log");
        memory.reboot(false, "Power-on reset");
        assert!(!memory.log_text().contains("fault"));
    }

    #[test]
    fn columns_come_in_firmware_order_with_the_timestamp_last() {
        let mut memory = MinerMemory::new(1);
        memory.tick(2_000, &reading());
        let body = memory.statistics_body(Dialect::V2_15, 3_000, Some("columns=power,hashrate,bogus"));
        assert_eq!(body["labels"], serde_json::json!(["hashrate", "power", "timestamp"]));
        assert_eq!(body["statistics"][0], serde_json::json!([1000.0, 18.0, 2000]));
        let all = memory.statistics_body(Dialect::V2_15, 3_000, Some("columns=bogus"));
        assert_eq!(all["labels"].as_array().map(Vec::len), Some(LABELS_V2_11.len() + 1));
        let old = memory.statistics_body(Dialect::V2_10, 3_000, None);
        assert_eq!(old["labels"][0], "hashRate");
    }
}
