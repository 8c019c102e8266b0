//! What `top` reads from a running exporter's JSON API (`/api/v1/fleet`, a device's
//! history and configurations), as the API documents it. Every field is optional on the
//! wire, so an exporter of another version still shows what it has.

use serde::Deserialize;

/// `GET /api/v1/fleet`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Fleet {
    pub generated_at: f64,
    pub poll_interval_seconds: f64,
    pub max_temp_warning_c: f64,
    pub max_temp_shutdown_c: f64,
    pub totals: Totals,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub devices: usize,
    pub up: usize,
    pub hashrate_ghs: f64,
    pub power_w: f64,
    pub joules_per_terahash: Option<f64>,
    pub hottest_device: Option<String>,
    pub hottest_asic_c: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    pub name: String,
    pub address: String,
    /// `up`, `stale` or `down`.
    pub state: String,
    pub last_error: Option<String>,
    pub mining_healthy: Option<bool>,
    pub problems: Vec<String>,
    /// Which chip, which fault text, by reason.
    pub problem_details: std::collections::BTreeMap<String, String>,
    pub model: Option<String>,
    pub board: Option<String>,
    pub firmware: Option<String>,
    pub firmware_family: Option<String>,
    pub reset_reason: Option<String>,
    pub hashrate_ghs: Option<f64>,
    pub expected_hashrate_ghs: Option<f64>,
    pub percent_of_expected: Option<f64>,
    pub power_w: Option<f64>,
    pub joules_per_terahash: Option<f64>,
    pub asic_temp_c: Option<f64>,
    pub vr_temp_c: Option<f64>,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub uptime_s: Option<u64>,
    pub hashrate_1h_ghs: Vec<Option<f64>>,
    pub hashrate_cv_1h_percent: Option<f64>,
    /// A sweep stopped without putting this miner back.
    pub tune_interrupted: Option<TuneInterrupted>,
}

/// An interrupted sweep's restore plan (`tune restore` puts it back).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TuneInterrupted {
    pub run: i64,
    pub original_frequency_mhz: Option<f64>,
    pub original_core_voltage_mv: Option<f64>,
}

/// `{min, mean, max}` of a reading over a bucket.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(default)]
pub struct Span {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Point {
    pub t: f64,
    pub hashrate_ghs: Option<Span>,
    pub expected_ghs: Option<Span>,
    pub power_w: Option<Span>,
    pub asic_temp_c: Option<Span>,
    pub vr_temp_c: Option<Span>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Marker {
    pub t: f64,
    pub kind: String,
    pub detail: String,
}

/// A session overlapping the range.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Session {
    pub id: i64,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub notes: String,
}

/// `GET /api/v1/devices/NAME/history`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct History {
    pub since: f64,
    pub until: f64,
    pub points: Vec<Point>,
    pub markers: Vec<Marker>,
    pub sessions: Vec<Session>,
}

impl History {
    /// Events and session starts and ends, oldest first, as (time, what, detail).
    pub fn timeline(&self) -> Vec<(f64, String, String)> {
        let mut lines: Vec<(f64, String, String)> = self
            .markers
            .iter()
            .map(|m| (m.t, m.kind.replace('_', " "), m.detail.clone()))
            .collect();
        for s in &self.sessions {
            if s.started_at >= self.since {
                lines.push((s.started_at, format!("session #{} began", s.id), s.notes.clone()));
            }
            if let Some(end) = s.ended_at.filter(|e| *e <= self.until) {
                lines.push((end, format!("session #{} ended", s.id), String::new()));
            }
        }
        lines.sort_by(|a, b| a.0.total_cmp(&b.0));
        lines
    }
}

/// One row of `GET /api/v1/configs?device=NAME`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConfigRow {
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub steady_samples: u64,
    pub steady_seconds: f64,
    pub mean_hashrate_ghs: Option<f64>,
    pub hashrate_ci95_ghs: Option<f64>,
    pub percent_of_expected: Option<f64>,
    pub joules_per_terahash: Option<f64>,
    pub asic_temp_p95_c: Option<f64>,
    pub error_percent: Option<f64>,
}

/// What the device view shows besides the live row.
#[derive(Debug, Clone, Default)]
pub struct DeviceDetail {
    pub name: String,
    /// The range it covers, seconds before its end.
    pub seconds: u64,
    pub history: History,
    pub configs: Vec<ConfigRow>,
    /// Why the detail could not be fetched, if it could not.
    pub error: Option<String>,
}
