//! One poll's reading of a miner, normalised: the pure conversion of an AxeOS
//! `/api/system/info` body from any firmware era (v2.0 → v2.15) into [`Sample`].
//!
//! Rules (see shared/reference/axeos-api.md §4.2): a key the firmware does not send, a
//! `null` (cJSON's NaN) or a "no reading" sentinel becomes `None`, never 0; renamed keys are
//! merged; strings such as `"4.29 G"` and numbers are both accepted where firmware changed
//! the type. Secrets (SSID, stratum user, wallet) are never read into this type.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

use super::untrusted::{printable, MAX_ASIC_CHIPS, MAX_HEAP_BYTES, MAX_UPTIME_SECONDS, PLAUSIBLE, SMALLEST_READING};
use crate::axeos::family::firmware_version;

/// Everything the exporter keeps from one successful poll, in normalised units
/// (GH/s, W, V, A, °C, MHz, mV, %, seconds, bytes).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub identity: Identity,
    pub hashrate_ghs: Option<f64>,
    pub expected_hashrate_ghs: Option<f64>,
    pub power_watts: Option<f64>,
    pub input_voltage_volts: Option<f64>,
    pub input_current_amperes: Option<f64>,
    pub asic_temp_celsius: Option<f64>,
    pub asic_temp2_celsius: Option<f64>,
    pub vr_temp_celsius: Option<f64>,
    /// Requested frequency (MHz), as stored on the device.
    pub frequency_mhz: Option<f64>,
    /// Frequency the PLL is really at (v2.14+).
    pub actual_frequency_mhz: Option<f64>,
    /// Requested core voltage (mV).
    pub core_voltage_mv: Option<f64>,
    pub core_voltage_measured_mv: Option<f64>,
    /// Fan duty actually applied, percent (only firmware ≥ v2.1.9 reports the applied duty).
    pub fan_duty_percent: Option<f64>,
    pub fan_rpm: Option<f64>,
    pub fan2_rpm: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
    pub best_difficulty: Option<f64>,
    pub session_best_difficulty: Option<f64>,
    pub pool_difficulty: Option<f64>,
    pub uptime_seconds: Option<u64>,
    pub error_percent: Option<f64>,
    pub wifi_rssi_dbm: Option<f64>,
    pub free_heap_bytes: Option<u64>,
    pub free_heap_internal_bytes: Option<u64>,
    pub overheat: Option<bool>,
    pub using_fallback_pool: Option<bool>,
    /// The pool mined on (the fallback one while `using_fallback_pool`), as `host:port`:
    /// no scheme, no credentials.
    pub pool: Option<String>,
    pub mining_paused: Option<bool>,
    pub asic_count: Option<u32>,
    pub pool_response_time_ms: Option<f64>,
    /// Rolling averages of the hashrate (v2.12+), GH/s; absent while the firmware has no
    /// data yet (it sends 0).
    pub hashrate_1m_ghs: Option<f64>,
    pub hashrate_10m_ghs: Option<f64>,
    pub hashrate_1h_ghs: Option<f64>,
    /// Blocks found since boot (`blockFound`: a 0/1 flag in v2.11–v2.12, a count from v2.13).
    pub blocks_found: Option<u64>,
    /// The network's difficulty from the current job (v2.11+).
    pub network_difficulty: Option<f64>,
    /// Lifetime uptime (v2.15+), s.
    pub total_uptime_seconds: Option<u64>,
    /// Rejected shares by bounded reason (`sharesRejectedReasons`, v2.6+): the pool's own
    /// words sorted into `stale`, `duplicate`, `low_difficulty` and `other`.
    pub rejected_by_reason: Vec<(&'static str, u64)>,
    /// The board family's PSU rating (`maxPower`, v2.6+), W.
    pub rated_power_watts: Option<f64>,
    /// The board family's supply voltage (`nominalVoltage`, v2.6+), V.
    pub nominal_input_volts: Option<f64>,
    /// The regulator's fault text (`power_fault`, v2.6+), present only during a fault;
    /// as the miner sent it, so escape it where it is shown.
    pub power_fault: Option<String>,
    /// The input-voltage window the miner states for itself (NerdQAxe `minVoltage` /
    /// `maxVoltage`), V.
    pub input_window_volts: Option<(f64, f64)>,
    /// Per chip, in the miner's order: hashrate and error counter (`hashrateMonitor`,
    /// upstream v2.11+) and temperature (`asicTemps`, NerdQAxe family).
    pub chips: Vec<ChipReading>,
    /// Why the miner last booted (`resetReason` v2.12+, NerdQAxe `lastResetReason`), as sent:
    /// escape it where it is shown; [`reset_reason_label`] gives its bounded label.
    pub reset_reason: Option<String>,
    /// The firmware's hardware-fault text (`hardware_fault`, v2.14+), present only while
    /// mining is stopped by a fault.
    pub hardware_fault: Option<String>,
    /// SV2 shares submitted and not yet answered (v2.15+).
    pub shares_pending: Option<u64>,
    /// Jobs received from the pool (v2.15+; starts again when the pool connection does).
    pub work_received: Option<u64>,
    /// Hashes done over the miner's life (v2.15+).
    pub total_hashes: Option<f64>,
    /// The active pool's protocol (`SV1` / `SV2`) and whether it runs over TLS (v2.14+).
    pub pool_protocol: Option<&'static str>,
    pub pool_tls: Option<bool>,
    /// Fields the miner sent outside their plausibility window (and that are therefore
    /// absent above), by name.
    pub implausible: Vec<&'static str>,
}

/// One chip's readings; any may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChipReading {
    pub hashrate_ghs: Option<f64>,
    /// The chip's hardware-error register (monotonic, wraps, zeroed on reconnects).
    pub errors: Option<u64>,
    pub temp_celsius: Option<f64>,
}

/// What the device says it is. Never includes network secrets or the pool account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub hostname: Option<String>,
    pub mac: Option<String>,
    pub asic_model: Option<String>,
    pub board_version: Option<String>,
    pub firmware: Option<String>,
    /// Decided from the body before its version is read ([`crate::axeos::family`]).
    pub family: crate::axeos::family::FirmwareFamily,
    /// The board's human name (`Gamma`, `NerdQAxe++`, `LV07`), from its family's table or
    /// the model it names itself ([`crate::axeos::boards`]); `None` when not known.
    pub board: Option<String>,
    /// The web UI's version (`axeOSVersion`, v2.9+): `Unified` / `Unknown` on v2.15.
    pub web_ui_version: Option<String>,
    /// The mDNS name (`mdnsHostname`, v2.15+).
    pub mdns_hostname: Option<String>,
}

/// The clock configuration a sample was taken at, as label values (`"490"`, `"562.5"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ClockConfig {
    pub frequency_mhz: String,
    pub core_voltage_mv: String,
}

impl Sample {
    /// Takes a chip count the info body did not give (from `/api/system/asic`), and the
    /// expected hashrate it makes possible.
    pub(crate) fn fill_chip_count(&mut self, chips: u32) {
        if self.asic_count.is_some() {
            return;
        }
        self.asic_count = Some(chips);
        if self.expected_hashrate_ghs.is_none() {
            let cores = self.identity.asic_model.as_deref().and_then(small_cores_of);
            self.expected_hashrate_ghs = match (self.frequency_mhz, cores) {
                (Some(mhz), Some(cores)) => Some(theoretical_hashrate_ghs(mhz, cores, chips)),
                _ => None,
            };
        }
    }

    /// J/TH, only when both power and a positive hashrate are known.
    pub fn efficiency_joules_per_terahash(&self) -> Option<f64> {
        match (self.power_watts, self.hashrate_ghs) {
            (Some(p), Some(h)) if h > 0.0 && p >= 0.0 => Some(p / (h / 1000.0)),
            _ => None,
        }
    }

    /// GH/W, only when the hashrate is positive and the power known and positive.
    pub fn efficiency_gigahashes_per_watt(&self) -> Option<f64> {
        match (self.power_watts, self.hashrate_ghs) {
            (Some(p), Some(h)) if h > 0.0 && p > 0.0 => Some(h / p),
            _ => None,
        }
    }

    /// The clock configuration as label values; a setting the miner did not report (or
    /// reported as 0) is `"unknown"`, never an empty label, which Prometheus would treat
    /// as no label at all.
    pub(crate) fn clock_config(&self) -> ClockConfig {
        let label = |value: Option<f64>| value.map_or_else(|| "unknown".to_string(), format_label_number);
        ClockConfig {
            frequency_mhz: label(self.frequency_mhz),
            core_voltage_mv: label(self.core_voltage_mv),
        }
    }
}

/// Formats a device setting for a label the way a person writes it: `490`, `562.5`.
/// Float32 noise from older firmware (`512.0999755859375`) is rounded away at 3 decimals.
pub fn format_label_number(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    let text = format!("{rounded:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// `490/1150`: a clock configuration in a table cell (`?` for an unknown part).
pub(crate) fn short_clock_label(frequency_mhz: Option<f64>, core_voltage_mv: Option<f64>) -> String {
    format!(
        "{}/{}",
        frequency_mhz.map_or("?".into(), format_label_number),
        core_voltage_mv.map_or("?".into(), format_label_number)
    )
}

/// Why a body is not a usable `/api/system/info` reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("not JSON or not the expected shape: {0}")]
    Json(String),
    #[error("the JSON is not an AxeOS /api/system/info object (no hashRate and no ASICModel)")]
    NotAxeOs,
}

/// Decodes and normalises one `/api/system/info` body.
pub fn decode_system_info(body: &[u8]) -> Result<Sample, DecodeError> {
    // serde would read a JSON array positionally into the struct; only an object is valid.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(DecodeError::Json("expected a JSON object".into()));
    }
    let wire: WireInfo =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(printable(&e.to_string()).into_owned()))?;
    wire.into_sample()
}

// ---------------------------------------------------------------------------------------
// The wire format. Every field optional; unknown keys are skipped by serde.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WireInfo {
    power: Num,
    voltage: Num,
    current: Num,
    temp: Num,
    temp2: Num,
    #[serde(rename = "vrTemp")]
    vr_temp: Num,
    #[serde(rename = "hashRate")]
    hash_rate: Num,
    /// v2.12+: rolling averages of `hashRate`, GH/s; 0 until data exists.
    #[serde(rename = "hashRate_1m")]
    hash_rate_1m: Num,
    #[serde(rename = "hashRate_10m")]
    hash_rate_10m: Num,
    #[serde(rename = "hashRate_1h")]
    hash_rate_1h: Num,
    /// v2.11–v2.12 a 0/1 flag, a count of blocks found since boot from v2.13.
    #[serde(rename = "blockFound")]
    block_found: Num,
    /// v2.11+, while a job is known.
    #[serde(rename = "networkDifficulty")]
    network_difficulty: Num,
    /// v2.15+: lifetime uptime, persisted hourly.
    #[serde(rename = "totalUptimeSeconds")]
    total_uptime_seconds: Num,
    /// v2.6+: `[{message, count}]`, at most 10, the pool's words.
    #[serde(rename = "sharesRejectedReasons", default)]
    shares_rejected_reasons: RejectReasons,
    #[serde(rename = "expectedHashrate")]
    expected_hashrate: Num,
    #[serde(rename = "coreVoltage")]
    core_voltage: Num,
    #[serde(rename = "coreVoltageActual")]
    core_voltage_actual: Num,
    frequency: Num,
    #[serde(rename = "actualFrequency")]
    actual_frequency: Num,
    /// Applied duty % since v2.1.9; the configured manual % before.
    fanspeed: Num,
    /// RPM under three names across eras: v2.0–2.1.3, v2.1.4–2.1.8, v2.1.9+.
    #[serde(rename = "fanSpeed")]
    fan_speed_v20: Num,
    #[serde(rename = "fanSpeedRpm")]
    fan_speed_rpm: Num,
    fanrpm: Num,
    fan2rpm: Num,
    #[serde(rename = "sharesAccepted")]
    shares_accepted: Num,
    #[serde(rename = "sharesRejected")]
    shares_rejected: Num,
    #[serde(rename = "bestDiff")]
    best_diff: Difficulty,
    #[serde(rename = "bestSessionDiff")]
    best_session_diff: Difficulty,
    #[serde(rename = "poolDifficulty")]
    pool_difficulty: Difficulty,
    #[serde(rename = "stratumDiff")]
    stratum_diff: Difficulty,
    #[serde(rename = "uptimeSeconds")]
    uptime_seconds: Num,
    #[serde(rename = "errorPercentage")]
    error_percentage: Num,
    #[serde(rename = "wifiRSSI")]
    wifi_rssi: Num,
    #[serde(rename = "freeHeap")]
    free_heap: Num,
    #[serde(rename = "freeHeapInternal")]
    free_heap_internal: Num,
    overheat_mode: Num,
    /// v2.1.9 only, renamed to overheat_mode in v2.1.10.
    overheat: Num,
    #[serde(rename = "overheatMode")]
    overheat_mode_camel: Num,
    #[serde(rename = "isUsingFallbackStratum")]
    using_fallback: Num,
    #[serde(rename = "miningPaused")]
    mining_paused: Num,
    #[serde(rename = "asicCount")]
    asic_count: Num,
    #[serde(rename = "smallCoreCount")]
    small_core_count: Num,
    #[serde(rename = "responseTime")]
    response_time: Num,
    #[serde(rename = "ASICModel")]
    asic_model: Text,
    #[serde(rename = "boardVersion")]
    board_version: Text,
    /// v2.6+: the board family's nominal maximum power (its PSU rating), W.
    #[serde(rename = "maxPower")]
    max_power: Num,
    /// v2.6+: the board family's supply voltage, V.
    #[serde(rename = "nominalVoltage")]
    nominal_voltage: Num,
    /// v2.6+: present only while the TPS546 regulator reports a fault.
    power_fault: Text,
    version: Text,
    hostname: Text,
    #[serde(rename = "stratumURL")]
    stratum_url: Text,
    #[serde(rename = "stratumPort")]
    stratum_port: Num,
    #[serde(rename = "fallbackStratumURL")]
    fallback_stratum_url: Text,
    #[serde(rename = "fallbackStratumPort")]
    fallback_stratum_port: Num,
    #[serde(rename = "macAddr")]
    mac_addr: Text,
    // What tells the firmware families apart (only their presence, or the model names).
    #[serde(rename = "deviceModel")]
    device_model: Text,
    #[serde(rename = "minerModel")]
    miner_model: Text,
    #[serde(rename = "axeOSVersion")]
    axeos_version: Text,
    #[serde(rename = "mdnsHostname")]
    mdns_hostname: Text,
    /// v2.11+: `{"asics": [{"total": GH/s, "errorCount": n, "domains": [..]}]}`.
    #[serde(rename = "hashrateMonitor")]
    hashrate_monitor: Option<serde_json::Value>,
    /// v2.12+ upstream; `lastResetReason` on the NerdQAxe family.
    #[serde(rename = "resetReason")]
    reset_reason: Text,
    #[serde(rename = "lastResetReason")]
    last_reset_reason: Text,
    /// v2.14+: present only during a fault that stopped mining.
    hardware_fault: Text,
    #[serde(rename = "sharesPending")]
    shares_pending: Num,
    #[serde(rename = "workReceived")]
    work_received: Num,
    #[serde(rename = "totalHashes")]
    total_hashes: Num,
    /// v2.15+: the configured pool slots; the active one is picked by index.
    pools: Option<serde_json::Value>,
    #[serde(rename = "primaryPoolIndex")]
    primary_pool_index: Num,
    #[serde(rename = "secondaryPoolIndex")]
    secondary_pool_index: Num,
    /// v2.14: the primary pool's protocol and TLS mode at the top level.
    #[serde(rename = "stratumProtocol")]
    stratum_protocol: Text,
    #[serde(rename = "stratumTLS")]
    stratum_tls: Num,
    /// The fallback pool's, beside them (upstream's legacy fields, the NerdQAxe family).
    #[serde(rename = "fallbackStratumProtocol")]
    fallback_stratum_protocol: Text,
    #[serde(rename = "fallbackStratumTLS")]
    fallback_stratum_tls: Num,
    // The NerdQAxe family's names for upstream's fields (and its own).
    #[serde(rename = "asicTemps")]
    asic_temps: Option<serde_json::Value>,
    #[serde(rename = "freeHeapInt")]
    free_heap_int: Num,
    fanrpm2: Num,
    #[serde(rename = "foundBlocks")]
    found_blocks: Num,
    #[serde(rename = "vrTempInt")]
    vr_temp_int: Option<serde::de::IgnoredAny>,
    /// NerdQAxe: mining stopped (its "paused").
    shutdown: Num,
    /// NerdQAxe: the board's own input window, V.
    #[serde(rename = "minVoltage")]
    min_voltage: Num,
    #[serde(rename = "maxVoltage")]
    max_voltage: Num,
    /// Lucky LV07's misspelt input voltage, mV.
    voltagei: Num,
    /// forge-os (BitForge Nano): one temperature per chip.
    chiptemp1: Num,
    chiptemp2: Num,
}

/// `host:port` of a pool URL as the firmware stores it (`public-pool.io`,
/// `stratum+tcp://host`, once in a while with `user:password@`): the scheme, any
/// credentials and any path left out.
fn pool_address(url: Option<String>, port: Option<f64>) -> Option<String> {
    let url = url?;
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("").trim();
    // A host name, an IPv4 address or a bracketed IPv6 one, with its port: anything else
    // (spaces, a leftover secret, markup) is not shown at all.
    let plausible = host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if host.is_empty() || !plausible {
        return None;
    }
    match port.filter(|p| (1.0..=65_535.0).contains(p) && p.fract() == 0.0) {
        Some(port) if !host.contains(':') => Some(format!("{host}:{port}")),
        _ => Some(host.to_string()),
    }
}

impl WireInfo {
    fn into_sample(mut self) -> Result<Sample, DecodeError> {
        if self.hash_rate.0.is_none() && non_empty(&self.asic_model).is_none() {
            return Err(DecodeError::NotAxeOs);
        }
        let (pool_protocol, pool_tls) = active_pool(&self);
        let family = self.family();
        let mut chips = chip_readings(self.hashrate_monitor.as_ref(), self.chip_temps().as_ref());
        // Each chip's readings pass their window before any of them is used: one broken
        // (or hostile) chip sensor must not become the board's ASIC temperature, nor a
        // chip at 1e308 GH/s an infinite series.
        let implausible_chip_readings = drop_implausible_chip_readings(&mut chips);
        let board = crate::axeos::boards::resolve(&crate::axeos::boards::BoardEvidence {
            family,
            board_version: non_empty(&self.board_version),
            device_model: non_empty(&self.device_model),
            miner_model: non_empty(&self.miner_model),
            asic_model: non_empty(&self.asic_model),
            reported_chips: self.reported_chips(),
            has_v219_keys: self.fanrpm.0.is_some(),
        });
        let asic_count = board.chips;
        let expected_hashrate_ghs = self.expected_hashrate_ghs(asic_count);
        // −1 = not initialised; 0 = driver error. Neither is a temperature. Where the
        // miner reports each chip, the hottest one is the ASIC temperature.
        let asic_temp_celsius = chips
            .iter()
            .filter_map(|c| c.temp_celsius)
            .chain(self.temp.positive())
            .reduce(f64::max);
        let implausible = self.unreadable().chain(implausible_chip_readings).collect();
        let pool = self.active_pool_address();
        let identity = self.take_identity(family, board.name);

        let mut sample = Sample {
            hashrate_ghs: self.hash_rate.0.filter(|v| *v >= 0.0),
            expected_hashrate_ghs,
            power_watts: self.power.0.filter(|v| *v >= 0.0),
            input_voltage_volts: self.input_voltage_volts(),
            input_current_amperes: self.current.0.filter(|v| *v >= 0.0).map(|ma| ma / 1000.0),
            asic_temp_celsius,
            asic_temp2_celsius: self.temp2.positive(),
            // 0 on boards without a TPS546 regulator.
            vr_temp_celsius: self.vr_temp.positive(),
            frequency_mhz: self.frequency.positive(),
            actual_frequency_mhz: self.actual_frequency.positive(),
            core_voltage_mv: self.core_voltage.positive(),
            core_voltage_measured_mv: self.core_voltage_actual.positive(),
            fan_duty_percent: self.fan_duty_percent(),
            fan_rpm: self.fan_rpm().filter(|v| *v >= 0.0),
            // 0 when the board has no second fan.
            fan2_rpm: self.fan2rpm.positive().or(self.fanrpm2.positive()),
            shares_accepted: self.shares_accepted.count(),
            shares_rejected: self.shares_rejected.count(),
            best_difficulty: self.best_diff.0,
            session_best_difficulty: self.best_session_diff.0,
            pool_difficulty: self.pool_difficulty.0.or(self.stratum_diff.0).filter(|v| *v > 0.0),
            uptime_seconds: self.uptime_seconds.count(),
            error_percent: self.error_percentage.0.filter(|v| *v >= 0.0),
            // −90 is what the firmware reports when it cannot read the RSSI.
            wifi_rssi_dbm: self.wifi_rssi.0.filter(|v| *v < 0.0 && *v != -90.0),
            free_heap_bytes: self.free_heap.count(),
            free_heap_internal_bytes: self.free_heap_internal.count().or(self.free_heap_int.count()),
            overheat: self.overheat(),
            using_fallback_pool: self.using_fallback.flag(),
            pool,
            mining_paused: self.mining_paused.flag().or(self.shutdown.flag()),
            asic_count,
            pool_response_time_ms: self.response_time.0.filter(|v| *v >= 0.0),
            hashrate_1m_ghs: self.hash_rate_1m.positive(),
            hashrate_10m_ghs: self.hash_rate_10m.positive(),
            hashrate_1h_ghs: self.hash_rate_1h.positive(),
            blocks_found: self.block_found.count().or(self.found_blocks.count()),
            network_difficulty: self.network_difficulty.positive(),
            total_uptime_seconds: self.total_uptime_seconds.count(),
            rejected_by_reason: std::mem::take(&mut self.shares_rejected_reasons.0),
            rated_power_watts: self.max_power.positive(),
            nominal_input_volts: self.nominal_voltage.positive(),
            power_fault: fault_text(self.power_fault.0.take()),
            hardware_fault: fault_text(self.hardware_fault.0.take()),
            reset_reason: self.take_reset_reason(),
            shares_pending: self.shares_pending.count(),
            work_received: self.work_received.count(),
            total_hashes: self.total_hashes.0.filter(|v| *v >= 0.0),
            pool_protocol,
            pool_tls,
            input_window_volts: self.input_window_volts(),
            chips,
            identity,
            implausible,
        };
        sample.drop_implausible();
        Ok(sample)
    }

    /// The firmware family, from the version strings and the keys only some families send.
    fn family(&self) -> crate::axeos::family::FirmwareFamily {
        crate::axeos::family::decide(&crate::axeos::family::FamilyHints {
            version: self.version.0.as_deref(),
            device_model: non_empty(&self.device_model),
            miner_model: non_empty(&self.miner_model),
            board_version: non_empty(&self.board_version),
            has_axeos_version: self.axeos_version.0.as_deref().is_some_and(|v| !v.is_empty()),
            has_nerdqaxe_fields: self.asic_temps.is_some()
                || self.free_heap_int.0.is_some()
                || self.fanrpm2.0.is_some()
                || self.found_blocks.0.is_some()
                || self.vr_temp_int.is_some(),
        })
    }

    /// Per-chip temperatures: `asicTemps` (NerdQAxe), else forge-os's `chiptemp1/2`.
    fn chip_temps(&self) -> Option<serde_json::Value> {
        self.asic_temps.clone().or_else(|| {
            let temps: Vec<serde_json::Value> = [self.chiptemp1.0, self.chiptemp2.0]
                .into_iter()
                .map_while(|t| t.map(serde_json::Value::from))
                .collect();
            (!temps.is_empty()).then_some(serde_json::Value::Array(temps))
        })
    }

    /// The miner's own chip count, which beats any table: `asicCount`, else one entry per
    /// chip in `hashrateMonitor.asics` (upstream v2.11+).
    fn reported_chips(&self) -> Option<u32> {
        let monitor_chips = self
            .hashrate_monitor
            .as_ref()
            .and_then(|m| m.get("asics")?.as_array().map(Vec::len))
            .filter(|&n| n > 0 && n <= MAX_CHIPS);
        self.asic_count
            .positive()
            .filter(|&n| n.fract() == 0.0 && n <= MAX_CHIPS as f64)
            .map(|n| n as u32)
            .or(monitor_chips.map(|n| n as u32))
    }

    /// `expectedHashrate` where the firmware sends it, else frequency × small cores × chips.
    fn expected_hashrate_ghs(&self, asic_count: Option<u32>) -> Option<f64> {
        // 65535 means "unknown ASIC" on v2.1.9–v2.7.x.
        let small_cores = self.small_core_count.positive().filter(|&n| n < 65_535.0);
        self.expected_hashrate.positive().or_else(|| {
            let cores = small_cores.or_else(|| non_empty(&self.asic_model).and_then(small_cores_of))?;
            Some(theoretical_hashrate_ghs(self.frequency.positive()?, cores, asic_count?))
        })
    }

    /// The applied fan duty: only from v2.1.9 (when `fanrpm` appeared) does `fanspeed`
    /// report it.
    fn fan_duty_percent(&self) -> Option<f64> {
        if self.fanrpm.0.is_some() {
            self.fanspeed.0.filter(|v| (0.0..=100.0).contains(v))
        } else {
            None
        }
    }

    /// The overheat mode under whichever of its names this firmware sends.
    fn overheat(&self) -> Option<bool> {
        self.overheat_mode
            .flag()
            .or(self.overheat_mode_camel.flag())
            .or(self.overheat.flag())
    }

    /// Why the miner last restarted: `resetReason` (upstream) or `lastResetReason`
    /// (NerdQAxe), absent when empty.
    fn take_reset_reason(&mut self) -> Option<String> {
        self.reset_reason
            .0
            .take()
            .or(self.last_reset_reason.0.take())
            .filter(|s| !s.is_empty())
    }

    /// The fan's RPM under whichever of its three names this era sends.
    fn fan_rpm(&self) -> Option<f64> {
        self.fanrpm.0.or(self.fan_speed_rpm.0).or(self.fan_speed_v20.0)
    }

    /// The input voltage: mV upstream; a fork that sends volts (< 100) is read as volts.
    fn input_voltage_volts(&self) -> Option<f64> {
        self.voltage
            .positive()
            .or(self.voltagei.positive())
            .map(|v| if v < 100.0 { v } else { v / 1000.0 })
    }

    /// NerdQAxe's input window, in volts, when it is one a real supply fits in.
    fn input_window_volts(&self) -> Option<(f64, f64)> {
        match (self.min_voltage.positive(), self.max_voltage.positive()) {
            (Some(low), Some(high)) if low < high && high <= 60.0 => Some((low, high)),
            _ => None,
        }
    }

    /// Values the normalisation leaves out without being sentinels: negative readings
    /// (other than the firmware's −1 "no reading") and counts past any counter. They are
    /// broken sensors or hostile bodies, and counted as implausible.
    fn unreadable(&self) -> impl Iterator<Item = &'static str> {
        let negative = |v: Option<f64>| v.is_some_and(|v| v < 0.0 && v != -1.0);
        let not_a_count = |v: Option<f64>| v.is_some_and(|v| !(0.0..1.8e19).contains(&v));
        [
            ("hashrate_ghs", negative(self.hash_rate.0)),
            ("power_watts", negative(self.power.0)),
            ("input_current_amperes", negative(self.current.0)),
            ("asic_temperature_celsius", negative(self.temp.0)),
            ("asic_temperature2_celsius", negative(self.temp2.0)),
            ("vr_temperature_celsius", negative(self.vr_temp.0)),
            ("error_percent", negative(self.error_percentage.0)),
            ("fan_rpm", negative(self.fan_rpm())),
            ("shares_accepted", not_a_count(self.shares_accepted.0)),
            ("shares_rejected", not_a_count(self.shares_rejected.0)),
            ("uptime_seconds", not_a_count(self.uptime_seconds.0)),
            ("free_heap_bytes", not_a_count(self.free_heap.0)),
            ("free_heap_internal_bytes", not_a_count(self.free_heap_internal.0)),
            ("asic_chips", not_a_count(self.asic_count.0)),
        ]
        .into_iter()
        .filter_map(|(name, flagged)| flagged.then_some(name))
    }

    /// The pool in use: the fallback's `host:port` while the miner is on it, else the
    /// primary's.
    fn active_pool_address(&mut self) -> Option<String> {
        if self.using_fallback.flag() == Some(true) {
            pool_address(self.fallback_stratum_url.0.take(), self.fallback_stratum_port.0)
        } else {
            pool_address(self.stratum_url.0.take(), self.stratum_port.0)
        }
    }

    /// The miner's names and versions, each absent when empty (taken out of the body).
    fn take_identity(&mut self, family: crate::axeos::family::FirmwareFamily, board: Option<String>) -> Identity {
        let take = |text: &mut Text| text.0.take().filter(|s| !s.is_empty());
        Identity {
            hostname: take(&mut self.hostname),
            mac: take(&mut self.mac_addr).map(|s| s.to_ascii_uppercase()),
            asic_model: take(&mut self.asic_model),
            board_version: take(&mut self.board_version),
            firmware: take(&mut self.version),
            family,
            board,
            web_ui_version: take(&mut self.axeos_version),
            mdns_hostname: take(&mut self.mdns_hostname),
        }
    }
}

/// A text field's value, absent when empty.
fn non_empty(text: &Text) -> Option<&str> {
    text.0.as_deref().filter(|s| !s.is_empty())
}

/// More chips than any board carries is a broken or hostile body.
const MAX_CHIPS: usize = 256;

/// Per-chip readings from `hashrateMonitor.asics` and `asicTemps` (whichever the family
/// sends), bounded; an entry that is not a number is a missing reading, not a failed poll.
fn chip_readings(monitor: Option<&serde_json::Value>, temps: Option<&serde_json::Value>) -> Vec<ChipReading> {
    let number = |v: Option<&serde_json::Value>| v.and_then(serde_json::Value::as_f64).and_then(reading);
    let asics = monitor.and_then(|m| m.get("asics")?.as_array());
    let temps = temps.and_then(serde_json::Value::as_array);
    let count = asics.map_or(0, Vec::len).max(temps.map_or(0, Vec::len)).min(MAX_CHIPS);
    (0..count)
        .map(|i| {
            let asic = asics.and_then(|a| a.get(i));
            ChipReading {
                // Outside its window (negative, 1e308) it is dropped and counted later.
                hashrate_ghs: number(asic.and_then(|a| a.get("total"))),
                errors: number(asic.and_then(|a| a.get("errorCount")))
                    .filter(|v| (0.0..1.8e19).contains(v))
                    .map(|v| v as u64),
                // 0 is "no reading" (some NerdQAxe boards send only zeros).
                temp_celsius: number(temps.and_then(|t| t.get(i))).filter(|v| *v > 0.0),
            }
        })
        .collect()
}

/// A fault text as the firmware sent it, or `None` when it says there is no fault: absent,
/// empty, `0`, `false`, `none`, `ok` (a fork may send the key always).
fn fault_text(text: Option<String>) -> Option<String> {
    let text = text?;
    let quiet = text.trim().is_empty()
        || ["0", "false", "none", "ok", "no fault", "null"]
            .iter()
            .any(|no| text.trim().eq_ignore_ascii_case(no));
    (!quiet).then_some(text)
}

/// The active pool's protocol and TLS: from its slot in `pools[]` (v2.15+, picked by
/// `primaryPoolIndex` / `secondaryPoolIndex` and whether the fallback is in use), else the
/// top-level `stratumProtocol` / `stratumTLS` (v2.13–v2.14). Nothing else of a slot (user,
/// password) is read.
fn active_pool(wire: &WireInfo) -> (Option<&'static str>, Option<bool>) {
    let on_fallback = wire.using_fallback.flag() == Some(true);
    let index = if on_fallback {
        wire.secondary_pool_index.0
    } else {
        wire.primary_pool_index.0
    };
    let slot = wire
        .pools
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .and_then(|pools| {
            let index = index.filter(|i| i.fract() == 0.0 && *i >= 0.0)?;
            pools
                .iter()
                .find(|p| p.get("id").and_then(serde_json::Value::as_f64) == Some(index))
                .or_else(|| pools.get(index as usize))
        });
    let (top_protocol, top_tls) = if on_fallback {
        (&wire.fallback_stratum_protocol, wire.fallback_stratum_tls)
    } else {
        (&wire.stratum_protocol, wire.stratum_tls)
    };
    let protocol_text = slot
        .and_then(|s| s.get("stratumProtocol")?.as_str().map(str::to_string))
        .or_else(|| top_protocol.0.clone());
    // Upstream names it; the NerdQAxe family sends its enum (0 = SV1, 1 = SV2).
    let protocol = protocol_text.and_then(|p| match p.trim().to_ascii_uppercase().as_str() {
        "SV1" | "0" => Some("SV1"),
        "SV2" | "1" => Some("SV2"),
        _ => None,
    });
    let tls = slot
        .and_then(|s| s.get("stratumTLS").and_then(serde_json::Value::as_f64))
        .or(top_tls.0)
        .map(|mode| mode > 0.0);
    (protocol, tls)
}

/// The reason a miner last booted as a bounded label (`bitaxe_last_reset_info{reason}`),
/// from ESP-IDF's `esp_reset_reason()` texts as upstream and the NerdQAxe family print them.
pub fn reset_reason_label(text: &str) -> &'static str {
    let t = text.to_ascii_lowercase();
    if t.contains("brownout") {
        "brownout"
    } else if t.contains("watchdog") || t.contains("wdt") {
        "watchdog"
    } else if t.contains("panic") || t.contains("exception") {
        "panic"
    } else if t.contains("power on") || t.contains("power-on") || t.contains("poweron") {
        "power_on"
    } else if t.contains("software") || t.contains("esp_restart") || t.contains("sw reset") {
        "software"
    } else if t.contains("deep sleep") || t.contains("deepsleep") {
        "deep_sleep"
    } else if t.contains("external") || t.contains("pin") {
        "external"
    } else {
        "other"
    }
}

/// Whether a written clock setting runs only after a restart: by the miner's family, then
/// its version (upstream before v2.2 and Lucky's stock firmware store it and run it at
/// boot; the NerdQAxe family applies it live). An unknown family falls back to reading an
/// upstream-shaped `v2.x` version as upstream's, and anything else as live.
pub fn needs_restart(identity: &Identity) -> bool {
    let firmware = identity.firmware.as_deref();
    crate::axeos::family::restart_to_apply(identity.family, firmware).unwrap_or_else(|| {
        firmware
            .and_then(firmware_version)
            .is_some_and(|v| v.0 == 2 && v < (2, 2))
    })
}

/// What the chips can do, GH/s: frequency (MHz) × small cores per chip × chips.
fn theoretical_hashrate_ghs(frequency_mhz: f64, small_cores: f64, chips: u32) -> f64 {
    frequency_mhz * small_cores * f64::from(chips) / 1000.0
}

/// Small cores per chip by ASIC model (shared/reference/axeos-api.md §5).
pub(crate) fn small_cores_of(asic_model: &str) -> Option<f64> {
    match asic_model.trim() {
        "BM1397" => Some(672.0),
        "BM1366" => Some(894.0),
        "BM1368" => Some(1276.0),
        "BM1370" => Some(2040.0),
        // Upstream master after v2.15.0 names the chip as one string.
        "BM1372" | "BM1373" | "BM1372/BM1373" => Some(6725.0),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Lenient scalar types.

/// A number that firmware may send as a JSON number, a numeric string, a bool, or `null`.
#[derive(Debug, Default, Clone, Copy)]
struct Num(Option<f64>);

/// `sharesRejectedReasons`, read leniently: anything that is not a list of
/// `{message, count}` objects counts as no reasons.
#[derive(Debug, Default)]
struct RejectReasons(Vec<(&'static str, u64)>);

impl<'de> Deserialize<'de> for RejectReasons {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        let mut counts: Vec<(&'static str, u64)> = Vec::new();
        for entry in value.as_array().into_iter().flatten().take(10) {
            let message = entry.get("message").and_then(|m| m.as_str()).unwrap_or("");
            let Some(count) = entry.get("count").and_then(serde_json::Value::as_u64) else {
                continue;
            };
            let reason = reject_reason(message);
            match counts.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, total)) => *total = total.saturating_add(count),
                None => counts.push((reason, count)),
            }
        }
        counts.sort();
        Ok(RejectReasons(counts))
    }
}

/// A pool's reject message (free text, up to 63 characters) as a bounded label value.
pub fn reject_reason(message: &str) -> &'static str {
    let message = message.to_ascii_lowercase();
    if message.contains("duplicate") {
        "duplicate"
    } else if message.contains("stale") || message.contains("job not found") || message.contains("unknown job") {
        "stale"
    } else if message.contains("difficulty") || message.contains("above target") || message.contains("high-hash") {
        "low_difficulty"
    } else {
        "other"
    }
}

impl Num {
    fn positive(self) -> Option<f64> {
        self.0.filter(|v| *v > 0.0)
    }

    /// Non-negative integer counts (shares, seconds, bytes).
    fn count(self) -> Option<u64> {
        self.0.filter(|v| *v >= 0.0 && *v < 1.8e19).map(|v| v as u64)
    }

    fn flag(self) -> Option<bool> {
        self.0.map(|v| v != 0.0)
    }
}

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor { parse_suffix: false }).map(Num)
    }
}

/// A difficulty: a number (v2.11+) or a suffixed string such as `"4.29G"`, `"4.29 G"`,
/// `"28.3M"`, `"512"`, `"1e+03k"` (v2.0–v2.10 and forks).
#[derive(Debug, Default, Clone, Copy)]
struct Difficulty(Option<f64>);

impl<'de> Deserialize<'de> for Difficulty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor { parse_suffix: true })
            .map(|v| Difficulty(v.filter(|x| *x >= 0.0)))
    }
}

/// Parses a difficulty string with an optional SI suffix (`k`/`K`, `M`, `G`, `T`, `P`, `E`).
pub(crate) fn parse_difficulty(text: &str) -> Option<f64> {
    let s = text.trim();
    let (number, multiplier) = match s.char_indices().last() {
        Some((i, c)) => match c {
            'k' | 'K' => (&s[..i], 1e3),
            'M' => (&s[..i], 1e6),
            'G' => (&s[..i], 1e9),
            'T' => (&s[..i], 1e12),
            'P' => (&s[..i], 1e15),
            'E' => (&s[..i], 1e18),
            _ => (s, 1.0),
        },
        None => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    value.is_finite().then_some(value * multiplier)
}

struct LenientVisitor {
    parse_suffix: bool,
}

/// A number as a miner sent it: not a number when it is infinite or NaN, and 0 when it is
/// closer to 0 than [`SMALLEST_READING`] (a subnormal hashrate is no hashrate, and would
/// make an infinite J/TH and a CSV cell of 324 digits).
fn reading(v: f64) -> Option<f64> {
    if !v.is_finite() {
        None
    } else if v.abs() < SMALLEST_READING {
        Some(0.0)
    } else {
        Some(v)
    }
}

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Option<f64>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, a numeric string, a boolean or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(reading(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(if v { 1.0 } else { 0.0 }))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(if self.parse_suffix {
            parse_difficulty(v).and_then(reading)
        } else {
            v.trim().parse::<f64>().ok().and_then(reading)
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    // An object or array where a number belongs is "no reading", not a failed poll.
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        skip_seq(seq).map(|()| None)
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        skip_map(map).map(|()| None)
    }
}

fn skip_seq<'de, A: de::SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<de::IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: de::MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A string field; any other JSON type is treated as absent.
#[derive(Debug, Default, Clone)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // Bounded: a hostile miner must not grow label values without limit. Control
                // characters are escaped here, once, so no miner string can forge a log line
                // or drive an operator's terminal wherever it is shown later.
                let bounded: String = v.trim().chars().take(64).collect();
                Ok(Some(printable(&bounded).into_owned()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(format_label_number(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|()| None)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|()| None)
            }
        }
        d.deserialize_any(TextVisitor).map(Text)
    }
}

impl Sample {
    /// Makes every reading outside its plausibility window absent, and records which.
    fn drop_implausible(&mut self) {
        let mut dropped = Vec::new();
        let mut check = |value: &mut Option<f64>, (name, low, high): (&'static str, f64, f64)| {
            if value.is_some_and(|v| !(v.is_finite() && v >= low && v <= high)) {
                *value = None;
                dropped.push(name);
            }
        };
        let [hashrate, expected, power, input_voltage, input_current, asic, asic2, vr, frequency, actual_frequency, voltage, measured_voltage, fan_rpm, fan2_rpm, error, rssi, difficulty, session_difficulty, pool_difficulty, response] =
            PLAUSIBLE;
        check(&mut self.hashrate_ghs, hashrate);
        check(&mut self.expected_hashrate_ghs, expected);
        check(&mut self.power_watts, power);
        check(&mut self.input_voltage_volts, input_voltage);
        check(&mut self.input_current_amperes, input_current);
        check(&mut self.asic_temp_celsius, asic);
        check(&mut self.asic_temp2_celsius, asic2);
        check(&mut self.vr_temp_celsius, vr);
        check(&mut self.frequency_mhz, frequency);
        check(&mut self.actual_frequency_mhz, actual_frequency);
        check(&mut self.core_voltage_mv, voltage);
        check(&mut self.core_voltage_measured_mv, measured_voltage);
        check(&mut self.fan_rpm, fan_rpm);
        check(&mut self.fan2_rpm, fan2_rpm);
        check(&mut self.error_percent, error);
        check(&mut self.wifi_rssi_dbm, rssi);
        check(&mut self.best_difficulty, difficulty);
        check(&mut self.session_best_difficulty, session_difficulty);
        check(&mut self.pool_difficulty, pool_difficulty);
        check(&mut self.pool_response_time_ms, response);
        if self.uptime_seconds.is_some_and(|u| u > MAX_UPTIME_SECONDS) {
            self.uptime_seconds = None;
            dropped.push("uptime_seconds");
        }
        if self.free_heap_bytes.is_some_and(|b| b > MAX_HEAP_BYTES) {
            self.free_heap_bytes = None;
            dropped.push("free_heap_bytes");
        }
        if self.free_heap_internal_bytes.is_some_and(|b| b > MAX_HEAP_BYTES) {
            self.free_heap_internal_bytes = None;
            dropped.push("free_heap_internal_bytes");
        }
        if self.asic_count.is_some_and(|n| n > MAX_ASIC_CHIPS) {
            self.asic_count = None;
            dropped.push("asic_chips");
        }
        self.implausible.extend(dropped);
    }

    /// Makes every reading outside its plausibility window absent (and names it in
    /// `implausible`); returns how many were.
    pub(crate) fn drop_implausible_readings(&mut self) -> usize {
        let before = self.implausible.len();
        self.drop_implausible();
        self.implausible.len() - before
    }
}

/// Makes each chip's reading outside its window absent (the hashrate and temperature
/// windows of the whole board, [`PLAUSIBLE`]), and names each kind dropped once.
fn drop_implausible_chip_readings(chips: &mut [ChipReading]) -> Vec<&'static str> {
    let window = |name: &str| {
        PLAUSIBLE
            .iter()
            .find(|(field, _, _)| *field == name)
            .map_or((0.0, 0.0), |(_, low, high)| (*low, *high))
    };
    let (rate_low, rate_high) = window("hashrate_ghs");
    let (temp_low, temp_high) = window("asic_temperature_celsius");
    let mut dropped = Vec::new();
    let mut check = |value: &mut Option<f64>, (low, high): (f64, f64), name: &'static str| {
        if value.is_some_and(|v| !(v.is_finite() && v >= low && v <= high)) {
            *value = None;
            if !dropped.contains(&name) {
                dropped.push(name);
            }
        }
    };
    for chip in chips.iter_mut() {
        check(&mut chip.hashrate_ghs, (rate_low, rate_high), "chip_hashrate_ghs");
        check(
            &mut chip.temp_celsius,
            (temp_low, temp_high),
            "chip_temperature_celsius",
        );
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_shown_is_the_one_mined_on_without_scheme_or_credentials() {
        let body =
            br#"{"hashRate": 1000, "ASICModel": "BM1370", "stratumURL": "stratum+tcp://bob:secret@public-pool.io/x",
            "stratumPort": 21496, "fallbackStratumURL": "solo.ckpool.org", "fallbackStratumPort": 3333,
            "isUsingFallbackStratum": 0}"#;
        assert_eq!(
            decode_system_info(body).unwrap().pool.as_deref(),
            Some("public-pool.io:21496")
        );
        let fallback =
            String::from_utf8_lossy(body).replace("\"isUsingFallbackStratum\": 0", "\"isUsingFallbackStratum\": 1");
        assert_eq!(
            decode_system_info(fallback.as_bytes()).unwrap().pool.as_deref(),
            Some("solo.ckpool.org:3333")
        );
        let query = br#"{"hashRate": 1000, "ASICModel": "BM1370", "stratumURL": "pool.example:3333?pass=secret#x", "stratumPort": 3333}"#;
        assert_eq!(
            decode_system_info(query).unwrap().pool.as_deref(),
            Some("pool.example:3333")
        );
        let markup = br#"{"hashRate": 1000, "ASICModel": "BM1370", "stratumURL": "<img src=x>", "stratumPort": 3333}"#;
        assert_eq!(decode_system_info(markup).unwrap().pool, None);
        let bare = br#"{"hashRate": 1000, "ASICModel": "BM1370", "stratumURL": "", "stratumPort": 0}"#;
        assert_eq!(decode_system_info(bare).unwrap().pool, None);
    }

    #[test]
    fn negative_readings_and_impossible_counts_are_counted_not_just_dropped() {
        let body = br#"{"hashRate": 1000, "ASICModel": "BM1370", "temp": -1e9, "temp2": -1, "vrTemp": 0,
            "sharesAccepted": -5, "sharesRejected": 18446744073709551616, "uptimeSeconds": -100,
            "errorPercentage": -3, "freeHeap": 1e30, "asicCount": -1}"#;
        let sample = decode_system_info(body).unwrap();
        for field in [
            "asic_temperature_celsius",
            "shares_accepted",
            "shares_rejected",
            "uptime_seconds",
            "error_percent",
            "free_heap_bytes",
            "asic_chips",
        ] {
            assert!(
                sample.implausible.contains(&field),
                "{field} not counted: {:?}",
                sample.implausible
            );
        }
        // The firmware's own "no reading" sentinels are not implausible.
        assert!(!sample.implausible.contains(&"asic_temperature2_celsius"));
        assert!(!sample.implausible.contains(&"vr_temperature_celsius"));
        assert_eq!(sample.asic_temp_celsius, None);
        assert_eq!(sample.shares_accepted, None);
    }

    #[test]
    fn deceptive_characters_are_escaped() {
        assert_eq!(printable("BM1370"), "BM1370");
        assert_eq!(printable("a\nb\r\u{1b}[2J"), "a\\nb\\r\\u{1b}[2J");
        assert_eq!(printable("BM\u{202e}0731"), "BM\\u{202e}0731");
        assert_eq!(printable("x\u{2028}y\u{200b}"), "x\\u{2028}y\\u{200b}");
        assert_eq!(printable("Ünïcödé ✓"), "Ünïcödé ✓");
    }

    #[test]
    fn difficulty_strings_of_every_era() {
        let cases = [
            ("4.29G", 4.29e9),
            ("4.29 G", 4.29e9),
            ("28.3M", 28.3e6),
            ("512", 512.0),
            ("512 ", 512.0),
            ("1.5k", 1500.0),
            ("1.5K", 1500.0),
            ("1e+03k", 1e6),
            ("2.1T", 2.1e12),
        ];
        for (text, want) in cases {
            let got = parse_difficulty(text).unwrap();
            assert!((got - want).abs() <= want * 1e-9, "{text}: {got} != {want}");
        }
        assert_eq!(parse_difficulty(""), None);
        assert_eq!(parse_difficulty("G"), None);
        assert_eq!(parse_difficulty("n/a"), None);
    }

    #[test]
    fn label_numbers() {
        assert_eq!(format_label_number(490.0), "490");
        assert_eq!(format_label_number(562.5), "562.5");
        assert_eq!(format_label_number(512.0999755859375), "512.1");
        assert_eq!(format_label_number(1200.0), "1200");
    }

    #[test]
    fn rejects_json_that_is_not_a_miner() {
        assert_eq!(
            decode_system_info(br#"{"name":"Hue bridge"}"#),
            Err(DecodeError::NotAxeOs)
        );
        assert!(matches!(decode_system_info(b"<html>"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode_system_info(br#"{"hashRate": 1"#),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(decode_system_info(b"[1,2]"), Err(DecodeError::Json(_))));
    }

    #[test]
    fn wrong_types_are_absent_not_fatal() {
        let s = decode_system_info(br#"{"hashRate":"fast","ASICModel":"BM1370","temp":{"a":1},"power":[1]}"#).unwrap();
        assert_eq!(s.hashrate_ghs, None);
        assert_eq!(s.asic_temp_celsius, None);
        assert_eq!(s.power_watts, None);
    }

    #[test]
    fn efficiency_needs_positive_hashrate() {
        let mut s = Sample {
            power_watts: Some(18.0),
            hashrate_ghs: Some(0.0),
            ..Sample::default()
        };
        assert_eq!(s.efficiency_joules_per_terahash(), None);
        assert_eq!(s.efficiency_gigahashes_per_watt(), None);
        s.hashrate_ghs = Some(1000.0);
        assert_eq!(s.efficiency_joules_per_terahash(), Some(18.0));
    }

    #[test]
    fn a_number_closer_to_0_than_a_millionth_reads_as_0() {
        let s = decode_system_info(
            br#"{"hashRate":1e-320,"expectedHashrate":"1e-320","power":15.5,"temp":1e-320,"bestDiff":"1e-320","ASICModel":"BM1370"}"#,
        )
        .unwrap();
        assert_eq!(s.hashrate_ghs, Some(0.0));
        assert_eq!(s.efficiency_joules_per_terahash(), None);
        assert_eq!(s.expected_hashrate_ghs, None);
        // 0 is the firmware's "no reading" for a temperature.
        assert_eq!(s.asic_temp_celsius, None);
        assert_eq!(s.best_difficulty, Some(0.0));
        assert!(s.implausible.is_empty(), "{:?}", s.implausible);
        // A millionth itself is still a reading.
        let s = decode_system_info(br#"{"hashRate":0.000001,"power":15.5,"ASICModel":"BM1370"}"#).unwrap();
        assert_eq!(s.hashrate_ghs, Some(0.000001));
    }
}
