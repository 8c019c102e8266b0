//! The `/api/v1` contract, one set of types for the server and its clients (`top`): the
//! fleet snapshot (declared here), a device's history, the configuration rows and the
//! sessions (the ledger's and the analysis's own types, named here). Every field is
//! optional on the wire and unknown ones are ignored, so a client of another version still
//! reads what it has. Strings are the miners' own (JSON-escaped by the encoder; pages escape
//! them for HTML where they show them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::analysis::history::{DeviceHistory, Marker};
pub use crate::analysis::ConfigRow;
use crate::daemon::fleet::{DeviceView, Fleet, FleetSummary};
use crate::daemon::sparkline::HourOfHashrate;
pub use crate::ledger::rollup::{HistoryPoint, Span};
pub use crate::ledger::sessions::SessionRow;

/// `GET /api/v1/fleet`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetJson {
    /// Unix seconds of the snapshot.
    pub generated_at: f64,
    pub poll_interval_seconds: f64,
    pub max_temp_warning_c: f64,
    pub max_temp_shutdown_c: f64,
    pub totals: Totals,
    pub devices: Vec<DeviceJson>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Totals {
    pub devices: usize,
    pub up: usize,
    /// Up and judged really mining (or not judged yet).
    pub mining: usize,
    /// Up, but not really mining (a verdict holds).
    pub problems: usize,
    /// Not answering.
    pub down: usize,
    pub hashrate_ghs: f64,
    pub power_w: f64,
    /// Energy over work across the fleet, J/TH.
    pub joules_per_terahash: Option<f64>,
    pub hottest_device: Option<String>,
    pub hottest_asic_c: Option<f64>,
}

/// One device as the fleet page shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceJson {
    pub name: String,
    /// The configured address (`host` or `host:port`).
    pub address: String,
    /// `up` (fresh, latest poll fine), `stale` (latest poll failed, last reading still
    /// fresh) or `down`.
    pub state: String,
    pub last_error: Option<String>,
    /// While down: Unix seconds of its last good reading (`None`: it never answered).
    pub down_since: Option<f64>,
    /// The miner's own web UI (AxeOS), from the configured address.
    pub web_ui: String,
    /// What is being done to it now: "tuning: sweep #R, step K" or "session: NOTES".
    pub activity: Option<String>,
    pub fan_percent: Option<f64>,
    pub wifi_rssi_dbm: Option<f64>,
    /// Rejected ÷ (accepted + rejected) shares since the miner booted, %.
    pub reject_percent: Option<f64>,
    /// `None` while down.
    pub mining_healthy: Option<bool>,
    pub problems: Vec<String>,
    /// What a person needs beyond a reason's name, by reason: which chip, the fault text.
    pub problem_details: BTreeMap<String, String>,
    pub model: Option<String>,
    /// The board's human name (`Gamma`, `NerdQAxe++`, `LV07`), where known.
    pub board: Option<String>,
    pub firmware: Option<String>,
    /// `esp-miner`, `nerdqaxe`, `lucky` or `unknown`.
    pub firmware_family: Option<String>,
    pub hostname: Option<String>,
    /// Why the miner last booted, in the firmware's words (v2.12+, NerdQAxe).
    pub reset_reason: Option<String>,
    /// Per chip, where the firmware reports each (`hashrateMonitor`, `asicTemps`).
    pub chips: Vec<ChipJson>,
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
    pub best_difficulty: Option<f64>,
    pub session_best_difficulty: Option<f64>,
    pub fallback_pool: Option<bool>,
    /// `host:port` of the pool mined on (the fallback one while `fallback_pool`).
    pub pool: Option<String>,
    /// Its protocol, `SV1` or `SV2` (v2.14+), and whether it runs over TLS.
    pub pool_protocol: Option<String>,
    pub pool_tls: Option<bool>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    /// The last hour's hashrate, per-minute means oldest first (60, `null` where no
    /// reading came), from memory: a sparkline.
    pub hashrate_1h_ghs: Vec<Option<f64>>,
    /// Coefficient of variation of the last hour's readings, %.
    pub hashrate_cv_1h_percent: Option<f64>,
    /// A `tune` sweep stopped without putting this miner back; `null` otherwise.
    pub tune_interrupted: Option<TuneInterruptedJson>,
}

/// One ASIC chip's readings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChipJson {
    pub hashrate_ghs: Option<f64>,
    pub errors: Option<u64>,
    pub temp_c: Option<f64>,
}

/// An interrupted sweep's restore plan, as the fleet page and `top` show it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TuneInterruptedJson {
    pub run: i64,
    /// The settings from before the sweep.
    pub original_frequency_mhz: Option<f64>,
    pub original_core_voltage_mv: Option<f64>,
}

impl DeviceJson {
    fn of(view: &DeviceView, hour: HourOfHashrate) -> DeviceJson {
        let sample = view.sample.as_deref();
        let state = match (view.up, view.last_poll_ok) {
            (true, true) => "up",
            (true, false) => "stale",
            (false, _) => "down",
        };
        let field = |f: fn(&crate::axeos::sample::Sample) -> Option<f64>| sample.and_then(f);
        let hashrate = field(|s| s.hashrate_ghs);
        let expected = field(|s| s.expected_hashrate_ghs);
        DeviceJson {
            name: view.name.clone(),
            address: view.address.to_string(),
            state: state.to_string(),
            last_error: view.last_error.clone(),
            down_since: if view.up { None } else { view.last_success_unix },
            web_ui: format!("http://{}/", view.address),
            activity: None,
            fan_percent: field(|s| s.fan_duty_percent),
            wifi_rssi_dbm: field(|s| s.wifi_rssi_dbm),
            reject_percent: sample.and_then(|s| {
                let (accepted, rejected) = (s.shares_accepted?, s.shares_rejected?);
                let total = accepted.saturating_add(rejected);
                (total > 0).then(|| rejected as f64 / total as f64 * 100.0)
            }),
            mining_healthy: view.verdict.as_ref().map(|v| v.healthy()),
            problems: view
                .verdict
                .as_ref()
                .map(|v| v.problems.iter().map(|p| p.as_label().to_string()).collect())
                .unwrap_or_default(),
            problem_details: view
                .verdict
                .as_ref()
                .map(|v| {
                    v.problems
                        .iter()
                        .filter_map(|p| Some((p.as_label().to_string(), v.detail(*p)?)))
                        .collect()
                })
                .unwrap_or_default(),
            model: sample.and_then(|s| s.identity.asic_model.clone()),
            board: sample.and_then(|s| s.identity.board.clone()),
            firmware: sample.and_then(|s| s.identity.firmware.clone()),
            firmware_family: sample.map(|s| s.identity.family.as_label().to_string()),
            hostname: sample.and_then(|s| s.identity.hostname.clone()),
            reset_reason: sample.and_then(|s| s.reset_reason.clone()),
            chips: sample
                .map(|s| {
                    s.chips
                        .iter()
                        .map(|c| ChipJson {
                            hashrate_ghs: c.hashrate_ghs,
                            errors: c.errors,
                            temp_c: c.temp_celsius,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            hashrate_ghs: hashrate,
            expected_hashrate_ghs: expected,
            percent_of_expected: match (hashrate, expected) {
                (Some(h), Some(e)) if e > 0.0 => Some(h / e * 100.0),
                _ => None,
            },
            power_w: field(|s| s.power_watts),
            joules_per_terahash: sample.and_then(|s| s.efficiency_joules_per_terahash()),
            asic_temp_c: field(|s| s.asic_temp_celsius),
            vr_temp_c: field(|s| s.vr_temp_celsius),
            frequency_mhz: field(|s| s.frequency_mhz),
            core_voltage_mv: field(|s| s.core_voltage_mv),
            uptime_s: sample.and_then(|s| s.uptime_seconds),
            best_difficulty: field(|s| s.best_difficulty),
            session_best_difficulty: field(|s| s.session_best_difficulty),
            fallback_pool: sample.and_then(|s| s.using_fallback_pool),
            pool: sample.and_then(|s| s.pool.clone()),
            pool_protocol: sample.and_then(|s| s.pool_protocol.map(str::to_string)),
            pool_tls: sample.and_then(|s| s.pool_tls),
            // A tenth of a GH/s is below any sparkline's resolution and keeps the page small.
            hashrate_1h_ghs: hour
                .per_minute_ghs
                .iter()
                .map(|v| v.map(|v| (v * 10.0).round() / 10.0))
                .collect(),
            hashrate_cv_1h_percent: hour.cv_percent,
            shares_accepted: sample.and_then(|s| s.shares_accepted),
            shares_rejected: sample.and_then(|s| s.shares_rejected),
            tune_interrupted: view.tune_interrupted.as_ref().map(|sweep| TuneInterruptedJson {
                run: sweep.run_id,
                original_frequency_mhz: sweep.original.0,
                original_core_voltage_mv: sweep.original.1,
            }),
        }
    }
}

/// The fleet as the API serves it.
pub fn fleet_json(fleet: &Fleet) -> FleetJson {
    let views = fleet.views();
    let summary = FleetSummary::of(&views);
    let thresholds = fleet.thresholds();
    let now = crate::time::now_unix();
    let hours = fleet.hours_of_hashrate(now);
    FleetJson {
        generated_at: now,
        poll_interval_seconds: fleet.poll_interval().as_secs_f64(),
        max_temp_warning_c: thresholds.warning_celsius,
        max_temp_shutdown_c: thresholds.shutdown_celsius,
        totals: Totals {
            devices: summary.devices,
            up: summary.up,
            mining: views
                .iter()
                .filter(|v| v.up && v.verdict.as_ref().is_none_or(|verdict| verdict.healthy()))
                .count(),
            problems: views
                .iter()
                .filter(|v| v.up && v.verdict.as_ref().is_some_and(|verdict| !verdict.healthy()))
                .count(),
            down: views.iter().filter(|v| !v.up).count(),
            hashrate_ghs: summary.hashrate_ghs,
            power_w: summary.power_watts,
            joules_per_terahash: (summary.hashrate_ghs > 0.0)
                .then(|| summary.power_watts / summary.hashrate_ghs * 1000.0),
            hottest_device: summary.hottest.as_ref().map(|h| h.0.clone()),
            hottest_asic_c: summary.hottest.as_ref().map(|h| h.1),
        },
        devices: views
            .iter()
            .zip(hours)
            .map(|(view, hour)| DeviceJson::of(view, hour))
            .collect(),
    }
}

/// `GET /api/v1/devices/NAME/history`: the history with the thresholds its charts draw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryJson {
    #[serde(flatten)]
    pub history: DeviceHistory,
    pub max_temp_warning_c: f64,
    pub max_temp_shutdown_c: f64,
}

impl HistoryJson {
    pub fn since(&self) -> f64 {
        self.history.history.since
    }

    pub fn until(&self) -> f64 {
        self.history.history.until
    }

    pub fn points(&self) -> &[HistoryPoint] {
        &self.history.history.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_reads_what_the_server_writes_and_tolerates_other_versions() {
        let device = DeviceJson {
            name: "gamma".into(),
            state: "up".into(),
            problems: vec!["chip_dead".into()],
            problem_details: [("chip_dead".to_string(), "chip 1 of 4 (dead)".to_string())].into(),
            firmware_family: Some("esp-miner".into()),
            chips: vec![ChipJson {
                hashrate_ghs: Some(430.0),
                errors: Some(12),
                temp_c: None,
            }],
            ..DeviceJson::default()
        };
        let written = serde_json::to_string(&device).unwrap();
        let read: DeviceJson = serde_json::from_str(&written).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), written);
        // An older exporter sends fewer fields, a newer one more: both are read.
        let older: DeviceJson = serde_json::from_str(r#"{"name": "max", "state": "down"}"#).unwrap();
        assert_eq!((older.name.as_str(), older.problems.len()), ("max", 0));
        let newer: DeviceJson = serde_json::from_str(r#"{"name": "x", "a_field_from_the_future": [1, 2]}"#).unwrap();
        assert_eq!(newer.name, "x");
        let history: HistoryJson =
            serde_json::from_str(r#"{"since": 10, "until": 70, "points": [{"t": 10, "hashrate_ghs": {"min": 1, "mean": 2, "max": 3}}], "markers": [{"t": 20, "kind": "rebooted", "detail": "x"}]}"#)
                .unwrap();
        assert_eq!(
            (history.since(), history.until(), history.points().len()),
            (10.0, 70.0, 1)
        );
        assert_eq!(history.points()[0].hashrate_ghs.map(|s| s.mean), Some(2.0));
        assert_eq!(history.history.markers[0].kind, "rebooted");
    }
}
