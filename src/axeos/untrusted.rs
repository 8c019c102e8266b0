//! Nothing a miner sends is trusted: the plausibility window of every normalised reading
//! (a value outside is absent and counted), and the escaping of every string it sends.

use super::sample::{ChipReading, Sample};

impl Sample {
    /// Makes every reading outside its plausibility window absent, and records which.
    pub(super) fn drop_implausible(&mut self) {
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
}

/// Makes each chip's reading outside its window absent (the hashrate and temperature
/// windows of the whole board, [`PLAUSIBLE`]), and names each kind dropped once.
pub(super) fn drop_implausible_chip_readings(chips: &mut [ChipReading]) -> Vec<&'static str> {
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

/// Plausibility windows, in normalised units: (field, lowest, highest). A value outside is
/// a broken sensor or a hostile body, not a reading: it is absent and counted
/// (`bitaxe_implausible_readings_total`). Wide on purpose: the largest AxeOS boards hash
/// about 5 TH/s at about 100 W, and mining-health verdicts judge the merely odd readings.
pub const PLAUSIBLE: [(&str, f64, f64); 20] = [
    ("hashrate_ghs", 0.0, 1e6),
    ("expected_hashrate_ghs", 0.0, 1e6),
    ("power_watts", 0.0, 1000.0),
    ("input_voltage_volts", 0.0, 60.0),
    ("input_current_amperes", 0.0, 100.0),
    ("asic_temperature_celsius", -40.0, 150.0),
    ("asic_temperature2_celsius", -40.0, 150.0),
    ("vr_temperature_celsius", -40.0, 150.0),
    ("frequency_mhz", 1.0, 3000.0),
    ("actual_frequency_mhz", 1.0, 3000.0),
    ("core_voltage_mv", 1.0, 3000.0),
    ("core_voltage_measured_mv", 1.0, 3000.0),
    ("fan_rpm", 0.0, 50_000.0),
    ("fan2_rpm", 0.0, 50_000.0),
    ("error_percent", 0.0, 100.0),
    ("wifi_rssi_dbm", -130.0, 0.0),
    ("best_difficulty", 0.0, 1e30),
    ("session_best_difficulty", 0.0, 1e30),
    ("pool_difficulty", 0.0, 1e30),
    ("pool_response_time_ms", 0.0, 600_000.0),
];
/// The smallest magnitude a miner's number is read as, in the units it sends (GH/s, W, mV,
/// mA, °C, MHz, %, ms); anything closer to 0 is 0. No reading of a Bitaxe means anything
/// at a millionth of its unit, and a subnormal one (1e-320) divides into infinity.
pub const SMALLEST_READING: f64 = 1e-6;
/// Ten years.
const MAX_UPTIME_SECONDS: u64 = 10 * 366 * 86_400;
/// 1 GB: an ESP32-S3 has 512 KiB of SRAM and at most 32 MiB of PSRAM.
const MAX_HEAP_BYTES: u64 = 1 << 30;
const MAX_ASIC_CHIPS: u32 = 256;

/// Text with the characters that could deceive a reader written as escapes (`\n`,
/// `\u{1b}`, `\u{202e}`): control characters (a newline that forges a log line, an escape
/// sequence that drives a terminal), Unicode line and paragraph separators, and the
/// invisible bidirectional and zero-width format characters (which can make a line read
/// backwards). Borrowed when there is nothing to escape.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    fn deceptive(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
    }
    if !text.chars().any(deceptive) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if deceptive(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}
