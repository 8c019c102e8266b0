//! Nothing a miner sends is trusted: the plausibility window of every normalised reading
//! (a value outside is absent and counted, by `sample`), and the escaping of every string it
//! sends. Knows no type of its own layer, so `sample` can use it without a circle.

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
pub(crate) const SMALLEST_READING: f64 = 1e-6;
/// Ten years.
pub(super) const MAX_UPTIME_SECONDS: u64 = 10 * 366 * 86_400;
/// 1 GB: an ESP32-S3 has 512 KiB of SRAM and at most 32 MiB of PSRAM.
pub(super) const MAX_HEAP_BYTES: u64 = 1 << 30;
pub(super) const MAX_ASIC_CHIPS: u32 = 256;

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
