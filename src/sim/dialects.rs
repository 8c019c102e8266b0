//! The AxeOS firmware dialects the simulator speaks: which keys `/api/system/info` has in
//! each era, how numbers and difficulties are printed (float32 noise, `"4.29G"`,
//! `"4.29 G"`, integers), and which endpoints exist. Follows
//! shared/reference/axeos-api.md §3–§4.

use serde_json::{json, Map, Value};

use crate::sim::physics::{MinerPhysics, Reading};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dialect {
    /// v2.0.x: RPM under `fanSpeed`, no MAC, no board version; string `bestDiff` (`%.3g`).
    V2_0,
    /// v2.4.0: `fanrpm`, `asicCount`, `macAddr`, string diffs (`%.3g`), float32 noise.
    V2_4,
    /// v2.9.0: `asicCount` gone from info, `poolDifficulty`, `expectedHashrate`, `%.2f` diffs.
    V2_9,
    /// v2.10.1: diffs `"4.29 G"` with a space, fractional `frequency`, `temp2: 0`.
    V2_10,
    /// v2.15.0: numeric diffs, `actualFrequency`, `errorPercentage`, pools, compact JSON.
    V2_15,
}

impl Dialect {
    pub const ALL: [Dialect; 5] = [
        Dialect::V2_0,
        Dialect::V2_4,
        Dialect::V2_9,
        Dialect::V2_10,
        Dialect::V2_15,
    ];

    pub fn version(self) -> &'static str {
        match self {
            Dialect::V2_0 => "v2.0.4",
            Dialect::V2_4 => "v2.4.0",
            Dialect::V2_9 => "v2.9.0",
            Dialect::V2_10 => "v2.10.1",
            Dialect::V2_15 => "v2.15.0",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Dialect::V2_0 => "2.0",
            Dialect::V2_4 => "2.4",
            Dialect::V2_9 => "2.9",
            Dialect::V2_10 => "2.10",
            Dialect::V2_15 => "2.15",
        }
    }

    /// `/api/system/asic` exists from v2.7.0.
    pub fn has_asic_endpoint(self) -> bool {
        self >= Dialect::V2_9
    }

    /// Unknown `/api` paths: 404 JSON from v2.9, a 302 to the web UI before.
    pub fn unknown_path_is_404(self) -> bool {
        self >= Dialect::V2_9
    }

    /// From v2.11 the firmware cools down and retries by itself after an overheat.
    pub fn overheat_self_clears(self) -> bool {
        self >= Dialect::V2_15
    }

    /// From v2.10 frequency is a float and may be fractional.
    pub fn fractional_frequency(self) -> bool {
        self >= Dialect::V2_10
    }

    /// The `PATCH /api/system` key for manual fan duty.
    pub fn manual_fan_key(self) -> &'static str {
        if self >= Dialect::V2_15 {
            "manualFanSpeed"
        } else {
            "fanspeed"
        }
    }

    /// Pretty-printed (cJSON_Print) up to v2.13, compact from v2.14.
    pub fn pretty(self) -> bool {
        self < Dialect::V2_15
    }

    /// v2.11+ answers `PATCH` with 400 when a value is out of range.
    pub fn validates_patch(self) -> bool {
        self >= Dialect::V2_15
    }
}

/// The dialects as the command line lists and reads them (`--firmware 2.15`, or `v2.15.0`).
impl clap::ValueEnum for Dialect {
    fn value_variants<'a>() -> &'a [Self] {
        &Dialect::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(
            clap::builder::PossibleValue::new(self.short())
                .alias(self.version())
                .alias(self.version().trim_start_matches('v')),
        )
    }
}

/// Identity of a simulated device.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    pub mac: String,
}

/// How a float leaves the firmware: float32 printed as a double before v2.12
/// (`11.930000305175781`), rounded to 7 decimals after.
fn float(dialect: Dialect, value: f64) -> Value {
    let printed = if dialect >= Dialect::V2_15 {
        (value * 1e7).round() / 1e7
    } else {
        f64::from(value as f32)
    };
    if printed.fract() == 0.0 && printed.abs() < 1e15 {
        json!(printed as i64)
    } else {
        json!(printed)
    }
}

/// The firmware's `_suffix_string()` for best difficulties before v2.11.
pub fn difficulty_string(dialect: Dialect, value: f64) -> String {
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut mantissa = value.max(0.0);
    let mut index = 0;
    while mantissa >= 1000.0 && index < SUFFIXES.len() - 1 {
        mantissa /= 1000.0;
        index += 1;
    }
    let suffix = SUFFIXES[index];
    match dialect {
        Dialect::V2_0 | Dialect::V2_4 => {
            // %.3g: three significant digits, trailing zeros dropped.
            let decimals = if mantissa >= 100.0 {
                0
            } else if mantissa >= 10.0 {
                1
            } else {
                2
            };
            let text = format!("{mantissa:.decimals$}");
            let text = if text.contains('.') {
                text.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                text
            };
            format!("{text}{suffix}")
        }
        Dialect::V2_9 => {
            if index == 0 {
                format!("{}", mantissa as u64)
            } else {
                format!("{mantissa:.2}{suffix}")
            }
        }
        Dialect::V2_10 | Dialect::V2_15 => {
            if index == 0 {
                format!("{} ", mantissa as u64)
            } else {
                format!("{mantissa:.2} {suffix}")
            }
        }
    }
}

fn difficulty(dialect: Dialect, value: f64) -> Value {
    if dialect >= Dialect::V2_15 {
        json!(value.floor() as u64)
    } else {
        json!(difficulty_string(dialect, value))
    }
}

/// Renders `/api/system/info` for the physics state in this dialect.
pub fn system_info(dialect: Dialect, id: &Identity, p: &MinerPhysics, r: &Reading) -> Value {
    let d = dialect;
    let spec = &p.spec;
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_string(), value);
    };
    let frequency = if d.fractional_frequency() {
        float(d, p.frequency_mhz)
    } else {
        json!(p.frequency_mhz.round() as i64)
    };
    let fan_rpm = json!(r.fan_rpm as i64);
    let fan_percent = if d >= Dialect::V2_15 {
        json!(r.fan_percent)
    } else {
        json!(r.fan_percent.round() as i64)
    };

    put("power", float(d, r.power_watts));
    put("voltage", float(d, r.input_mv));
    put("current", float(d, r.current_ma));
    put("temp", float(d, r.asic_celsius));
    if d >= Dialect::V2_10 {
        put("temp2", json!(if d >= Dialect::V2_15 { -1 } else { 0 }));
    }
    if d >= Dialect::V2_4 {
        put(
            "vrTemp",
            if spec.has_vr_sensor {
                float(d, r.vr_celsius)
            } else {
                json!(0)
            },
        );
    }
    if d >= Dialect::V2_9 {
        put("maxPower", json!(spec.max_power_watts));
        put("nominalVoltage", json!(spec.nominal_volts));
    }
    put("hashRate", float(d, r.hashrate_ghs));
    if d >= Dialect::V2_15 {
        for key in ["hashRate_1m", "hashRate_10m", "hashRate_1h"] {
            put(key, float(d, r.expected_ghs * if p.overheat { 0.0 } else { 0.995 }));
        }
        put("errorPercentage", float(d, r.error_percent));
        put(
            "actualFrequency",
            float(d, if p.overheat { 50.0 } else { p.frequency_mhz }),
        );
    }
    if d >= Dialect::V2_9 {
        put("expectedHashrate", float(d, r.expected_ghs));
    }
    put("bestDiff", difficulty(d, p.best_difficulty));
    if d >= Dialect::V2_4 {
        put("bestSessionDiff", difficulty(d, p.session_best_difficulty));
    }
    if d >= Dialect::V2_9 {
        put("poolDifficulty", json!(p.pool_difficulty));
    }
    if d >= Dialect::V2_4 {
        put("isUsingFallbackStratum", json!(0));
    }
    put("freeHeap", json!(if d >= Dialect::V2_9 { 8_231_544 } else { 148_236 }));
    if d >= Dialect::V2_15 {
        put("freeHeapInternal", json!(84_213));
        put("freeHeapSpiram", json!(8_129_199));
    }
    put("coreVoltage", json!(p.core_voltage_mv.round() as i64));
    put("coreVoltageActual", json!(r.core_mv_measured.round() as i64));
    put("frequency", frequency);
    put("ssid", json!("HomeLab-IoT"));
    if d >= Dialect::V2_4 {
        put("macAddr", json!(id.mac));
        put("hostname", json!(id.hostname));
    }
    put("wifiStatus", json!("Connected!"));
    if d >= Dialect::V2_9 {
        put("wifiRSSI", json!(-58));
    }
    put("sharesAccepted", json!(p.shares_accepted.floor() as u64));
    put("sharesRejected", json!(p.shares_rejected.floor() as u64));
    put("uptimeSeconds", json!(p.uptime_s.floor() as u64));
    if (Dialect::V2_4..Dialect::V2_9).contains(&d) {
        put("asicCount", json!(spec.chips));
    }
    if d >= Dialect::V2_4 {
        put("smallCoreCount", json!(spec.small_cores));
    }
    put("ASICModel", json!(spec.asic_model));
    put("stratumURL", json!("public-pool.io"));
    put("stratumPort", json!(21496));
    put(
        "stratumUser",
        json!("bc1qsimulatedsimulatedsimulatedsimulated0wallet.sim"),
    );
    if d >= Dialect::V2_9 {
        put("responseTime", float(d, 38.25));
    }
    put("version", json!(d.version()));
    if d >= Dialect::V2_9 {
        put(
            "axeOSVersion",
            json!(if d >= Dialect::V2_15 {
                "Unified".to_string()
            } else {
                d.version().to_string()
            }),
        );
    }
    if d >= Dialect::V2_4 {
        put("boardVersion", json!(spec.board_version));
    }
    put("runningPartition", json!("ota_0"));
    if d >= Dialect::V2_4 {
        put("overheat_mode", json!(i64::from(p.overheat)));
    }
    put("invertscreen", json!(0));
    put("autofanspeed", json!(i64::from(p.fan.auto)));
    if d == Dialect::V2_0 {
        // v2.0: RPM under `fanSpeed`; `fanspeed` is the configured manual duty.
        put("fanSpeed", fan_rpm);
        put("fanspeed", json!(p.fan.manual_percent.round() as i64));
    } else {
        put("fanspeed", fan_percent);
        put("fanrpm", fan_rpm);
    }
    if d >= Dialect::V2_10 {
        put("minFanSpeed", json!(p.fan.min_percent.round() as i64));
        put("temptarget", json!(p.fan.target_celsius.round() as i64));
    }
    if d >= Dialect::V2_15 {
        put("fan2rpm", json!(0));
        put("manualFanSpeed", json!(p.fan.manual_percent.round() as i64));
        put("miningPaused", json!(false));
        put("sharesPending", json!(0));
        put("cpuUsage", float(d, 23.6));
        put("resetReason", json!("Software reset via esp_restart"));
        put("poolConnectionInfo", json!("IPv4"));
        put(
            "hashrateMonitor",
            json!({"asics": (0..spec.chips).map(|_| json!({
                "total": r.hashrate_ghs / f64::from(spec.chips),
                "errorCount": 1000,
                "domains": [0, 0, 0, 0],
            })).collect::<Vec<_>>()}),
        );
        put(
            "pools",
            json!([{"id": 0, "stratumProtocol": "SV1", "stratumURL": "public-pool.io", "stratumPort": 21496,
                    "stratumUser": "bc1qsimulatedsimulatedsimulatedsimulated0wallet.sim", "stratumPassword": "*****"}]),
        );
    }
    Value::Object(m)
}

/// `/api/system/asic` (v2.9+ shape).
pub fn asic_info(p: &MinerPhysics) -> Value {
    let spec = &p.spec;
    let (frequencies, voltages) = crate::axeos::window::chip_options(spec.asic_model).unwrap_or((&[], &[]));
    json!({
        "ASICModel": spec.asic_model,
        "deviceModel": spec.device_model,
        "asicCount": spec.chips,
        "hashDomains": 4,
        "defaultFrequency": spec.default_mhz,
        "frequencyOptions": frequencies,
        "defaultVoltage": spec.default_mv,
        "voltageOptions": voltages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axeos::sample::parse_difficulty;

    #[test]
    fn difficulty_strings_match_firmware_formats() {
        assert_eq!(difficulty_string(Dialect::V2_4, 1.93e9), "1.93G");
        assert_eq!(difficulty_string(Dialect::V2_4, 28.3e6), "28.3M");
        assert_eq!(difficulty_string(Dialect::V2_4, 512.0), "512");
        assert_eq!(difficulty_string(Dialect::V2_9, 4.29e9), "4.29G");
        assert_eq!(difficulty_string(Dialect::V2_10, 4.29e9), "4.29 G");
        assert_eq!(difficulty_string(Dialect::V2_10, 512.0), "512 ");
        for d in Dialect::ALL {
            let text = difficulty_string(d, 1.27e9);
            assert!((parse_difficulty(&text).unwrap() - 1.27e9).abs() < 1e7, "{d:?}: {text}");
        }
    }
}
