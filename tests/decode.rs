//! Decoding `/api/system/info` bodies from every firmware era into normalised samples:
//! every field of [`Sample`] is checked for every fixture, sentinels and missing keys must
//! come out absent.

// Expected values are copied verbatim from the fixtures, which print floats the way the
// firmware does (17 significant digits before v2.12).
#![allow(clippy::excessive_precision)]

use bitaxe_exporter::axeos::family::FirmwareFamily;
use bitaxe_exporter::axeos::sample::{decode_system_info, Identity, Sample};

use crate::support::local_fixture;

/// Every numeric field of a sample, by name, so that a test must state each one.
fn fields(s: &Sample) -> Vec<(&'static str, Option<f64>)> {
    let u = |v: Option<u64>| v.map(|x| x as f64);
    let b = |v: Option<bool>| v.map(|x| if x { 1.0 } else { 0.0 });
    vec![
        ("hashrate_ghs", s.hashrate_ghs),
        ("expected_hashrate_ghs", s.expected_hashrate_ghs),
        ("power_watts", s.power_watts),
        ("input_voltage_volts", s.input_voltage_volts),
        ("input_current_amperes", s.input_current_amperes),
        ("asic_temp_celsius", s.asic_temp_celsius),
        ("asic_temp2_celsius", s.asic_temp2_celsius),
        ("vr_temp_celsius", s.vr_temp_celsius),
        ("frequency_mhz", s.frequency_mhz),
        ("actual_frequency_mhz", s.actual_frequency_mhz),
        ("core_voltage_mv", s.core_voltage_mv),
        ("core_voltage_measured_mv", s.core_voltage_measured_mv),
        ("fan_duty_percent", s.fan_duty_percent),
        ("fan_rpm", s.fan_rpm),
        ("fan2_rpm", s.fan2_rpm),
        ("shares_accepted", u(s.shares_accepted)),
        ("shares_rejected", u(s.shares_rejected)),
        ("best_difficulty", s.best_difficulty),
        ("session_best_difficulty", s.session_best_difficulty),
        ("pool_difficulty", s.pool_difficulty),
        ("uptime_seconds", u(s.uptime_seconds)),
        ("error_percent", s.error_percent),
        ("wifi_rssi_dbm", s.wifi_rssi_dbm),
        ("free_heap_bytes", u(s.free_heap_bytes)),
        ("free_heap_internal_bytes", u(s.free_heap_internal_bytes)),
        ("overheat", b(s.overheat)),
        ("using_fallback_pool", b(s.using_fallback_pool)),
        ("mining_paused", b(s.mining_paused)),
        ("asic_count", s.asic_count.map(f64::from)),
        ("pool_response_time_ms", s.pool_response_time_ms),
        ("efficiency_joules_per_terahash", s.efficiency_joules_per_terahash()),
        ("efficiency_gigahashes_per_watt", s.efficiency_gigahashes_per_watt()),
    ]
}

fn check(body: &[u8], expected: &[(&str, Option<f64>)], identity: Identity) {
    let sample = decode_system_info(body).expect("decodes");
    let actual = fields(&sample);
    let mut problems = Vec::new();
    for (name, got) in &actual {
        let Some((_, want)) = expected.iter().find(|(n, _)| n == name) else {
            problems.push(format!("{name}: not stated by the test (got {got:?})"));
            continue;
        };
        let same = match (got, want) {
            (Some(g), Some(w)) => (g - w).abs() <= w.abs() * 1e-6 + 1e-9,
            (None, None) => true,
            _ => false,
        };
        if !same {
            problems.push(format!("{name}: expected {want:?}, got {got:?}"));
        }
    }
    for (name, _) in expected {
        if !actual.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: no such field"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(sample.identity, identity);
}

fn id(hostname: Option<&str>, mac: Option<&str>, asic: &str, board: Option<&str>, firmware: &str) -> Identity {
    Identity {
        hostname: hostname.map(Into::into),
        mac: mac.map(Into::into),
        asic_model: Some(asic.into()),
        board_version: board.map(Into::into),
        firmware: Some(firmware.into()),
        // Every fixture here is upstream ESP-Miner.
        family: FirmwareFamily::EspMiner,
        board: None,
        web_ui_version: None,
        mdns_hostname: None,
    }
}

/// The board's name from the upstream table, and the web UI's and mDNS names where the
/// fixture's firmware sends them.
fn named(identity: Identity, board: &str, web_ui: Option<&str>, mdns: Option<&str>) -> Identity {
    Identity {
        board: Some(board.into()),
        web_ui_version: web_ui.map(Into::into),
        mdns_hostname: mdns.map(Into::into),
        ..identity
    }
}

#[test]
fn v2_0_max_reports_rpm_as_fan_speed_and_has_no_identity_keys() {
    check(
        &local_fixture("v2.0.4-max.json"),
        &[
            ("hashrate_ghs", Some(281.45614624023438)),
            // No expectedHashrate before v2.8: frequency × BM1397 cores × 1 chip.
            ("expected_hashrate_ghs", Some(425.0 * 672.0 / 1000.0)),
            ("power_watts", Some(14.529999732971191)),
            ("input_voltage_volts", Some(5.0375)),
            ("input_current_amperes", Some(2.884375)),
            ("asic_temp_celsius", Some(58.0)),
            ("asic_temp2_celsius", None),
            ("vr_temp_celsius", None),
            ("frequency_mhz", Some(425.0)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1400.0)),
            ("core_voltage_measured_mv", Some(1387.0)),
            // `fanspeed` is the configured manual duty before v2.1.9, not the applied one.
            ("fan_duty_percent", None),
            ("fan_rpm", Some(4917.0)),
            ("fan2_rpm", None),
            ("shares_accepted", Some(2210.0)),
            ("shares_rejected", Some(2.0)),
            ("best_difficulty", Some(512e6)),
            ("session_best_difficulty", None),
            ("pool_difficulty", None),
            ("uptime_seconds", Some(86411.0)),
            ("error_percent", None),
            ("wifi_rssi_dbm", None),
            ("free_heap_bytes", Some(152840.0)),
            ("free_heap_internal_bytes", None),
            ("overheat", None),
            ("using_fallback_pool", None),
            ("mining_paused", None),
            ("asic_count", Some(1.0)),
            ("pool_response_time_ms", None),
            (
                "efficiency_joules_per_terahash",
                Some(14.529999732971191 / 0.28145614624023438),
            ),
            (
                "efficiency_gigahashes_per_watt",
                Some(281.45614624023438 / 14.529999732971191),
            ),
        ],
        named(id(None, None, "BM1397", None, "v2.0.4"), "Max", None, None),
    );
}

#[test]
fn v2_1_4_ultra_booting_has_no_temperature_and_no_efficiency() {
    check(
        &local_fixture("v2.1.4-ultra-0.11.json"),
        &[
            ("hashrate_ghs", Some(0.0)),
            ("expected_hashrate_ghs", Some(485.0 * 894.0 / 1000.0)),
            ("power_watts", Some(4.8125)),
            ("input_voltage_volts", Some(5.1125)),
            ("input_current_amperes", Some(0.94125)),
            // temp: -1 while the ASIC is not initialised.
            ("asic_temp_celsius", None),
            ("asic_temp2_celsius", None),
            ("vr_temp_celsius", None),
            ("frequency_mhz", Some(485.0)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1200.0)),
            ("core_voltage_measured_mv", Some(1196.0)),
            ("fan_duty_percent", None),
            ("fan_rpm", Some(3150.0)),
            ("fan2_rpm", None),
            ("shares_accepted", Some(0.0)),
            ("shares_rejected", Some(0.0)),
            ("best_difficulty", Some(4290.0)),
            ("session_best_difficulty", None),
            ("pool_difficulty", None),
            ("uptime_seconds", Some(12.0)),
            ("error_percent", None),
            ("wifi_rssi_dbm", None),
            ("free_heap_bytes", Some(161204.0)),
            ("free_heap_internal_bytes", None),
            ("overheat", None),
            ("using_fallback_pool", None),
            ("mining_paused", None),
            ("asic_count", Some(1.0)),
            ("pool_response_time_ms", None),
            ("efficiency_joules_per_terahash", None),
            ("efficiency_gigahashes_per_watt", None),
        ],
        named(id(None, None, "BM1366", Some("0.11"), "v2.1.4"), "Ultra", None, None),
    );
}

#[test]
fn v2_4_ultra_fixture() {
    check(
        &local_fixture("v2.4.0-ultra-204.json"),
        &[
            ("hashrate_ghs", Some(487.62953914281)),
            ("expected_hashrate_ghs", Some(485.0 * 894.0 / 1000.0)),
            ("power_watts", Some(11.930000305175781)),
            ("input_voltage_volts", Some(5.09375)),
            ("input_current_amperes", Some(2.3425)),
            ("asic_temp_celsius", Some(57.0)),
            ("asic_temp2_celsius", None),
            // vrTemp: 0 on a board without a TPS546.
            ("vr_temp_celsius", None),
            ("frequency_mhz", Some(485.0)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1200.0)),
            ("core_voltage_measured_mv", Some(1193.0)),
            ("fan_duty_percent", Some(78.0)),
            ("fan_rpm", Some(5712.0)),
            ("fan2_rpm", None),
            ("shares_accepted", Some(4127.0)),
            ("shares_rejected", Some(3.0)),
            ("best_difficulty", Some(1.93e9)),
            ("session_best_difficulty", Some(28.3e6)),
            ("pool_difficulty", None),
            ("uptime_seconds", Some(183452.0)),
            ("error_percent", None),
            ("wifi_rssi_dbm", None),
            ("free_heap_bytes", Some(148236.0)),
            ("free_heap_internal_bytes", None),
            ("overheat", Some(0.0)),
            ("using_fallback_pool", Some(0.0)),
            ("mining_paused", None),
            ("asic_count", Some(1.0)),
            ("pool_response_time_ms", None),
            (
                "efficiency_joules_per_terahash",
                Some(11.930000305175781 / 0.48762953914281),
            ),
            (
                "efficiency_gigahashes_per_watt",
                Some(487.62953914281 / 11.930000305175781),
            ),
        ],
        named(
            id(
                Some("bitaxe"),
                Some("34:85:18:A1:B2:C3"),
                "BM1366",
                Some("204"),
                "v2.4.0",
            ),
            "Ultra",
            None,
            None,
        ),
    );
}

#[test]
fn v2_9_gammaturbo_without_asic_count_uses_the_board_table() {
    check(
        &local_fixture("v2.9.0-gammaturbo-800.json"),
        &[
            ("hashrate_ghs", Some(2098.7353515625)),
            ("expected_hashrate_ghs", Some(2142.0)),
            ("power_watts", Some(38.1234016418457)),
            ("input_voltage_volts", Some(11.96875)),
            // null (NaN) is no reading.
            ("input_current_amperes", None),
            ("asic_temp_celsius", Some(61.25)),
            ("asic_temp2_celsius", None),
            ("vr_temp_celsius", Some(52.0)),
            ("frequency_mhz", Some(525.0)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1150.0)),
            ("core_voltage_measured_mv", Some(1147.0)),
            ("fan_duty_percent", Some(81.0)),
            ("fan_rpm", Some(6120.0)),
            ("fan2_rpm", None),
            ("shares_accepted", Some(5120.0)),
            ("shares_rejected", Some(12.0)),
            ("best_difficulty", Some(4.29e9)),
            ("session_best_difficulty", Some(512.0)),
            ("pool_difficulty", Some(2048.0)),
            ("uptime_seconds", Some(7260.0)),
            ("error_percent", None),
            // −90 means the firmware could not read the RSSI.
            ("wifi_rssi_dbm", None),
            ("free_heap_bytes", Some(8201632.0)),
            ("free_heap_internal_bytes", None),
            ("overheat", Some(0.0)),
            ("using_fallback_pool", Some(1.0)),
            ("mining_paused", None),
            ("asic_count", Some(2.0)),
            ("pool_response_time_ms", Some(52.5)),
            (
                "efficiency_joules_per_terahash",
                Some(38.1234016418457 / 2.0987353515625),
            ),
            (
                "efficiency_gigahashes_per_watt",
                Some(2098.7353515625 / 38.1234016418457),
            ),
        ],
        named(
            id(
                Some("turbo"),
                Some("F4:12:FA:80:00:01"),
                "BM1370",
                Some("800"),
                "v2.9.0",
            ),
            "GammaTurbo",
            Some("v2.9.0"),
            None,
        ),
    );
}

#[test]
fn v2_10_supra_shared_fixture_with_spaced_difficulties() {
    check(
        &local_fixture("v2.10.1-supra-401.json"),
        &[
            ("hashrate_ghs", Some(611.83720463523912)),
            ("expected_hashrate_ghs", Some(625.239990234375)),
            ("power_watts", Some(14.300000190734863)),
            ("input_voltage_volts", Some(5.05)),
            ("input_current_amperes", Some(2.83125)),
            ("asic_temp_celsius", Some(56.0)),
            // temp2: 0 when absent on v2.10.
            ("asic_temp2_celsius", None),
            ("vr_temp_celsius", None),
            ("frequency_mhz", Some(490.0)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1166.0)),
            ("core_voltage_measured_mv", Some(1158.0)),
            ("fan_duty_percent", Some(62.0)),
            ("fan_rpm", Some(4521.0)),
            ("fan2_rpm", None),
            ("shares_accepted", Some(9312.0)),
            ("shares_rejected", Some(4.0)),
            ("best_difficulty", Some(1.27e9)),
            ("session_best_difficulty", Some(43.61e6)),
            ("pool_difficulty", Some(1000.0)),
            ("uptime_seconds", Some(402117.0)),
            ("error_percent", None),
            ("wifi_rssi_dbm", Some(-61.0)),
            ("free_heap_bytes", Some(8231544.0)),
            ("free_heap_internal_bytes", None),
            ("overheat", Some(0.0)),
            ("using_fallback_pool", Some(0.0)),
            ("mining_paused", None),
            ("asic_count", Some(1.0)),
            ("pool_response_time_ms", Some(38.214)),
            (
                "efficiency_joules_per_terahash",
                Some(14.300000190734863 / 0.61183720463523912),
            ),
            (
                "efficiency_gigahashes_per_watt",
                Some(611.83720463523912 / 14.300000190734863),
            ),
        ],
        named(
            id(
                Some("bitaxe-supra"),
                Some("F4:12:FA:5D:07:9A"),
                "BM1368",
                Some("401"),
                "v2.10.1",
            ),
            "Supra",
            Some("v2.10.1"),
            None,
        ),
    );
}

#[test]
fn v2_12_hex_multi_chip_with_second_sensor_and_fan() {
    check(
        &local_fixture("v2.12.0-hex-302.json"),
        &[
            ("hashrate_ghs", Some(2580.125)),
            ("expected_hashrate_ghs", Some(2601.54)),
            ("power_watts", Some(78.5)),
            ("input_voltage_volts", Some(12.03125)),
            ("input_current_amperes", Some(24.125)),
            ("asic_temp_celsius", Some(57.5)),
            ("asic_temp2_celsius", Some(55.25)),
            ("vr_temp_celsius", Some(63.0)),
            ("frequency_mhz", Some(485.5)),
            ("actual_frequency_mhz", None),
            ("core_voltage_mv", Some(1200.0)),
            ("core_voltage_measured_mv", Some(1194.0)),
            ("fan_duty_percent", Some(100.0)),
            ("fan_rpm", Some(5880.0)),
            ("fan2_rpm", Some(5760.0)),
            ("shares_accepted", Some(40112.0)),
            ("shares_rejected", Some(31.0)),
            ("best_difficulty", Some(91234567890.0)),
            ("session_best_difficulty", Some(1234567.0)),
            ("pool_difficulty", Some(4096.0)),
            ("uptime_seconds", Some(1209600.0)),
            ("error_percent", Some(1.25)),
            ("wifi_rssi_dbm", Some(-67.0)),
            ("free_heap_bytes", Some(8150000.0)),
            ("free_heap_internal_bytes", Some(70123.0)),
            ("overheat", Some(1.0)),
            ("using_fallback_pool", Some(0.0)),
            ("mining_paused", None),
            ("asic_count", Some(6.0)),
            ("pool_response_time_ms", Some(40.5)),
            ("efficiency_joules_per_terahash", Some(78.5 / 2.580125)),
            ("efficiency_gigahashes_per_watt", Some(2580.125 / 78.5)),
        ],
        named(
            id(Some("hex"), Some("F4:12:FA:30:20:02"), "BM1366", Some("302"), "v2.12.0"),
            "Hex",
            Some("v2.12.0"),
            None,
        ),
    );
}

#[test]
fn v2_15_gamma_fixture() {
    check(
        &local_fixture("v2.15.0-gamma-601.json"),
        &[
            ("hashrate_ghs", Some(1093.4821777)),
            ("expected_hashrate_ghs", Some(1071.0)),
            ("power_watts", Some(18.2788086)),
            ("input_voltage_volts", Some(5.125)),
            ("input_current_amperes", Some(11.5625)),
            ("asic_temp_celsius", Some(59.875)),
            // temp2: −1 when absent from v2.11.
            ("asic_temp2_celsius", None),
            ("vr_temp_celsius", Some(47.0)),
            ("frequency_mhz", Some(525.0)),
            ("actual_frequency_mhz", Some(525.0)),
            ("core_voltage_mv", Some(1150.0)),
            ("core_voltage_measured_mv", Some(1148.0)),
            ("fan_duty_percent", Some(57.254901885986328)),
            ("fan_rpm", Some(4383.0)),
            // fan2rpm: 0 without a second fan.
            ("fan2_rpm", None),
            ("shares_accepted", Some(18342.0)),
            ("shares_rejected", Some(7.0)),
            ("best_difficulty", Some(2476153922.0)),
            ("session_best_difficulty", Some(88451203.0)),
            ("pool_difficulty", Some(1000.0)),
            ("uptime_seconds", Some(267513.0)),
            ("error_percent", Some(0.41273)),
            ("wifi_rssi_dbm", Some(-58.0)),
            ("free_heap_bytes", Some(8213412.0)),
            ("free_heap_internal_bytes", Some(84213.0)),
            ("overheat", Some(0.0)),
            ("using_fallback_pool", Some(0.0)),
            ("mining_paused", Some(0.0)),
            ("asic_count", Some(1.0)),
            ("pool_response_time_ms", Some(41.3720016)),
            ("efficiency_joules_per_terahash", Some(18.2788086 / 1.0934821777)),
            ("efficiency_gigahashes_per_watt", Some(1093.4821777 / 18.2788086)),
        ],
        named(
            id(
                Some("bitaxe-gamma"),
                Some("F4:12:FA:3C:9E:21"),
                "BM1370",
                Some("601"),
                "v2.15.0",
            ),
            "Gamma",
            Some("Unified"),
            Some("bitaxe-gamma"),
        ),
    );
}

#[test]
fn hostile_and_odd_bodies() {
    // Not an object, not JSON, not a miner: errors, never a sample of zeros.
    for body in [
        &b"[1,2,3,4,5,6,7,8]"[..],
        b"",
        b"null",
        b"\"text\"",
        b"{\"hashRate\": 1",
        b"\xff\xfe",
    ] {
        assert!(
            decode_system_info(body).is_err(),
            "{:?} must not decode",
            String::from_utf8_lossy(body)
        );
    }
    // Strings where numbers belong, NaN as null, extra nesting: absent, not fatal.
    let s = decode_system_info(
        br#"{"ASICModel":"BM1370","hashRate":"1000.5","power":null,"temp":"hot","vrTemp":[1],"frequency":"600",
            "coreVoltage":1200,"bestDiff":"4.29 G","bestSessionDiff":12345,"stratumDiff":512,"overheat_mode":true,
            "someFutureKey":{"nested":[1,2,{"x":null}]}}"#,
    )
    .unwrap();
    assert_eq!(s.hashrate_ghs, Some(1000.5));
    assert_eq!(s.power_watts, None);
    assert_eq!(s.asic_temp_celsius, None);
    assert_eq!(s.vr_temp_celsius, None);
    assert_eq!(s.frequency_mhz, Some(600.0));
    assert_eq!(s.best_difficulty, Some(4.29e9));
    assert_eq!(s.session_best_difficulty, Some(12345.0));
    // stratumDiff (v2.4.1–v2.8) stands in for poolDifficulty.
    assert_eq!(s.pool_difficulty, Some(512.0));
    assert_eq!(s.overheat, Some(true));
    assert_eq!(s.efficiency_joules_per_terahash(), None);
    // A hostile hostname is bounded.
    let long = format!(r#"{{"ASICModel":"BM1370","hostname":"{}"}}"#, "x".repeat(10_000));
    let s = decode_system_info(long.as_bytes()).unwrap();
    assert_eq!(s.identity.hostname.unwrap().len(), 64);
}

#[test]
fn secrets_are_not_kept() {
    let sample = decode_system_info(&local_fixture("v2.15.0-gamma-601.json")).unwrap();
    let debug = format!("{sample:?}");
    // DESIGN.md: no stratum user, wallet address, SSID or pool password leaves the
    // exporter. The pool's host is not one of them: the fleet page shows which pool a
    // miner mines on (and only the one it mines on).
    for secret in ["HomeLab-IoT", "bc1q", "gamma.gamma", "*****", "ckpool"] {
        assert!(!debug.contains(secret), "the sample keeps {secret}");
    }
    assert_eq!(sample.pool.as_deref(), Some("public-pool.io:21496"));
}

#[test]
fn extra_fields_for_the_mining_verdicts_by_era() {
    use bitaxe_exporter::axeos::sample::{decode_system_info, reject_reason};
    let gamma = decode_system_info(&local_fixture("v2.15.0-gamma-601.json")).unwrap();
    // The pool's words, sorted into bounded reasons.
    assert_eq!(gamma.rejected_by_reason, vec![("duplicate", 2), ("stale", 5)]);
    assert!(gamma.hashrate_1m_ghs.is_some() && gamma.total_uptime_seconds.is_some());
    let supra = decode_system_info(&local_fixture("v2.10.1-supra-401.json")).unwrap();
    assert_eq!(supra.rejected_by_reason, vec![("duplicate", 1), ("stale", 3)]);
    // Fields an era does not have are absent, never 0.
    assert_eq!(supra.hashrate_1m_ghs, None);
    assert_eq!(supra.blocks_found, None);
    assert_eq!(supra.total_uptime_seconds, None);
    // v2.12+ sends 0 until it has an average: absent, not a zero hashrate.
    let starting = decode_system_info(
        br#"{"hashRate": 1000, "ASICModel": "BM1370", "hashRate_1m": 0, "blockFound": 1, "sharesRejectedReasons": "junk"}"#,
    )
    .unwrap();
    assert_eq!(starting.hashrate_1m_ghs, None);
    assert_eq!(starting.blocks_found, Some(1));
    assert!(starting.rejected_by_reason.is_empty());
    assert_eq!(reject_reason("Above target"), "low_difficulty");
    assert_eq!(reject_reason("Stale share"), "stale");
    assert_eq!(reject_reason("\u{1b}[31mweird"), "other");
}

/// A NerdQAxe++ body in the shape `shufps/ESP-Miner-NerdQAxePlus` sends
/// (`main/http_server/handler_system.cpp`: `deviceModel`, `asicCount`, `asicTemps`,
/// `freeHeapInt`, `fanrpm2`, a `v1.0.x` version); values constructed.
const NERDQAXE: &str = r#"{"power": 76.2, "voltage": 12050, "current": 6320, "currentA": 6.32,
  "temp": 61.5, "asicTemps": [58.2, 61.5, 60.1, 59.7], "vrTemp": 52, "vrTempInt": 50,
  "hashRate": 4811.2, "hashRate_1d": 4790.0, "bestDiff": "2.1G", "freeHeap": 156000,
  "freeHeapInt": 81000, "coreVoltage": 1150, "frequency": 600, "version": "v1.0.37",
  "deviceModel": "NerdQAxe++", "ASICModel": "BM1370", "asicCount": 4, "smallCoreCount": 2040,
  "hostname": "nerdqaxe", "macAddr": "24:0a:c4:00:11:22", "sharesAccepted": 1200,
  "sharesRejected": 3, "uptimeSeconds": 86400, "fanspeed": 60, "fanrpm": 4200, "fanrpm2": 4100,
  "foundBlocks": 0, "shutdown": false}"#;

/// A Lucky Miner LV07 body in the shape users posted in the pyasic project's issues
/// (#278, #280): `boardVersion "302"` and no `asicCount`, a bare `1.x` version, `minerModel`;
/// values constructed.
const LUCKY_LV07: &str = r#"{"power": 30.1, "voltage": 12000, "current": 2500, "temp": 58,
  "vrTemp": 49, "hashRate": 857.3, "bestDiff": "45.2M", "freeHeap": 140000, "coreVoltage": 1200,
  "frequency": 575, "version": "1.1.0", "boardVersion": "302", "ASICModel": "BM1366",
  "minerModel": "Lucky Miner LV07", "hostname": "lv07", "macAddr": "AA:BB:CC:00:11:22",
  "sharesAccepted": 500, "sharesRejected": 1, "uptimeSeconds": 3600, "fanspeed": 55}"#;

#[test]
fn a_nerdqaxe_is_its_own_family_applies_live_and_counts_its_own_chips() {
    let sample = decode_system_info(NERDQAXE.as_bytes()).unwrap();
    assert_eq!(sample.identity.family, FirmwareFamily::NerdQaxe);
    assert_eq!(sample.asic_count, Some(4));
    // Its v1.0.37 is not upstream's "before v2.2": a write is never followed by a restart.
    assert!(!bitaxe_exporter::axeos::sample::needs_restart(&sample.identity));
    // Expected hashrate from its own chips: 600 MHz × 2040 cores × 4 chips.
    assert_eq!(sample.expected_hashrate_ghs, Some(600.0 * 2040.0 * 4.0 / 1000.0));
}

#[test]
fn a_lucky_lv07_is_not_taken_for_upstreams_six_chip_board_302() {
    let sample = decode_system_info(LUCKY_LV07.as_bytes()).unwrap();
    assert_eq!(sample.identity.family, FirmwareFamily::Lucky);
    assert_eq!(sample.identity.board.as_deref(), Some("LV07"));
    assert_eq!(
        sample.asic_count,
        Some(2),
        "board 302 of another family is not upstream's six-chip Hex: an LV07 has two"
    );
    // 575 MHz × 894 cores × 2 chips: its 857 GH/s is 83 % of that, not a third.
    assert_eq!(sample.expected_hashrate_ghs, Some(575.0 * 894.0 * 2.0 / 1000.0));
    // Stock Lucky firmware runs a written setting from boot.
    assert!(bitaxe_exporter::axeos::sample::needs_restart(&sample.identity));
}

#[test]
fn the_readmes_board_table_is_the_decoders() {
    let readme = std::fs::read_to_string(crate::support::repo_path("README.md")).unwrap();
    for board in bitaxe_exporter::axeos::boards::all() {
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| {} | ", board.name)))
            .unwrap_or_else(|| panic!("README has no row for {}", board.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[4], board.asic_model, "{row}");
        assert_eq!(cells[5], board.chips.to_string(), "{row}");
        assert_eq!(cells[6], format!("{} V", board.nominal_volts), "{row}");
        assert_eq!(cells[7], format!("{} W", board.rated_watts), "{row}");
    }
}

/// What a fixture of each family and board must decode to: family, board, chips, expected
/// hashrate (GH/s), the input window and PSU rating a sweep holds it to.
struct Expected {
    file: &'static str,
    family: FirmwareFamily,
    board: &'static str,
    chips: u32,
    expected_ghs: f64,
    input_window: (f64, f64),
    rated_watts: f64,
}

#[test]
fn each_family_and_board_decodes_with_its_own_chips_window_and_rating() {
    use bitaxe_exporter::axeos::facts::board_facts;
    let cases = [
        Expected {
            file: "nerdqaxe-v1.0.37-nerdqaxe++.json",
            family: FirmwareFamily::NerdQaxe,
            board: "NerdQAxe++",
            chips: 4,
            expected_ghs: 600.0 * 2040.0 * 4.0 / 1000.0,
            // The board's own minVoltage / maxVoltage and maxPower.
            input_window: (11.0, 13.0),
            rated_watts: 100.0,
        },
        Expected {
            file: "lucky-1.1.0-lv07.json",
            family: FirmwareFamily::Lucky,
            board: "LV07",
            // No asicCount: two chips from the Lucky table, not upstream 302's six.
            chips: 2,
            expected_ghs: 575.0 * 894.0 * 2.0 / 1000.0,
            input_window: (11.7, 13.2),
            rated_watts: 60.0,
        },
        Expected {
            file: "lucky-1.1.0-lv08.json",
            family: FirmwareFamily::Lucky,
            board: "LV08",
            chips: 9,
            expected_ghs: 485.0 * 894.0 * 9.0 / 1000.0,
            input_window: (11.7, 13.2),
            // Not the 90 W of upstream's board 302.
            rated_watts: 150.0,
        },
        Expected {
            file: "v2.15.3-najaduo-1201.json",
            family: FirmwareFamily::EspMiner,
            board: "Naja Duo",
            chips: 2,
            expected_ghs: 4398.1499023,
            input_window: (11.7, 13.2),
            rated_watts: 60.0,
        },
        Expected {
            file: "v2.15.3-gammahex-1300.json",
            family: FirmwareFamily::EspMiner,
            board: "Gamma Hex",
            chips: 6,
            expected_ghs: 8445.6,
            input_window: (11.7, 13.2),
            rated_watts: 180.0,
        },
        Expected {
            file: "v2.15.0-hex-302-dead-chip-brownout.json",
            family: FirmwareFamily::EspMiner,
            board: "Hex",
            chips: 6,
            expected_ghs: f64::NAN,
            input_window: (11.7, 13.2),
            rated_watts: 90.0,
        },
    ];
    for case in cases {
        let sample = decode_system_info(&local_fixture(case.file)).unwrap();
        let what = case.file;
        assert_eq!(sample.identity.family, case.family, "{what}");
        assert_eq!(sample.identity.board.as_deref(), Some(case.board), "{what}");
        assert_eq!(sample.asic_count, Some(case.chips), "{what}");
        if !case.expected_ghs.is_nan() {
            let expected = sample.expected_hashrate_ghs.unwrap();
            assert!((expected - case.expected_ghs).abs() < 1e-6, "{what}: {expected}");
        }
        let facts = board_facts(&sample).unwrap();
        assert_eq!(facts.input_window, Some(case.input_window), "{what}");
        assert_eq!(facts.rated_watts, Some(case.rated_watts), "{what}");
        // The input voltage is read in volts whatever the key (`voltagei` on the LV07).
        let volts = sample.input_voltage_volts.unwrap();
        assert!((11.0..13.0).contains(&volts), "{what}: {volts}");
    }
}

#[test]
fn a_dead_chip_a_reset_reason_and_a_hardware_fault_are_read() {
    use bitaxe_exporter::axeos::sample::reset_reason_label;
    let hex = decode_system_info(&local_fixture("v2.15.0-hex-302-dead-chip-brownout.json")).unwrap();
    let rates: Vec<Option<f64>> = hex.chips.iter().map(|c| c.hashrate_ghs).collect();
    assert_eq!(rates.len(), 6);
    assert_eq!(rates[3], Some(0.0), "{rates:?}");
    assert!(
        rates.iter().enumerate().all(|(i, r)| i == 3 || r.unwrap() > 100.0),
        "{rates:?}"
    );
    assert!(hex.chips.iter().all(|c| c.errors.is_some()));
    assert_eq!(reset_reason_label(hex.reset_reason.as_deref().unwrap()), "brownout");
    assert_eq!(hex.hardware_fault, None);
    let gamma = decode_system_info(&local_fixture("v2.15.0-gamma-601-hardware-fault.json")).unwrap();
    assert_eq!(gamma.hardware_fault.as_deref(), Some("Fan Control Failed (Auto)"));
    // NerdQAxe: the ASIC temperature is the hottest chip, each chip its own series.
    let nerd = decode_system_info(&local_fixture("nerdqaxe-v1.0.37-nerdqaxe++.json")).unwrap();
    let temps: Vec<Option<f64>> = nerd.chips.iter().map(|c| c.temp_celsius).collect();
    assert_eq!(temps, [Some(61.5), Some(60.25), Some(59.75), Some(58.5)]);
    assert_eq!(nerd.asic_temp_celsius, Some(61.5));
    assert_eq!(reset_reason_label(nerd.reset_reason.as_deref().unwrap()), "software");
    // forge-os names its chips' temperatures chiptemp1/2: the hottest is the ASIC's.
    let forge = decode_system_info(
        br#"{"hashRate": 2100, "ASICModel": "BM1370", "temp": 55, "chiptemp1": 58.5, "chiptemp2": 61.25, "version": "forge-1.2"}"#,
    )
    .unwrap();
    let temps: Vec<Option<f64>> = forge.chips.iter().map(|c| c.temp_celsius).collect();
    assert_eq!(temps, [Some(58.5), Some(61.25)]);
    assert_eq!(forge.asic_temp_celsius, Some(61.25));
    // A power_fault of 0 / false / "" is no fault.
    for quiet in [r#""0""#, "0", "false", r#""""#, r#""none""#] {
        let body = format!(r#"{{"hashRate": 1000, "ASICModel": "BM1370", "power_fault": {quiet}}}"#);
        assert_eq!(
            decode_system_info(body.as_bytes()).unwrap().power_fault,
            None,
            "{quiet}"
        );
    }
    let real = decode_system_info(br#"{"hashRate": 1000, "ASICModel": "BM1370", "power_fault": "VIN_UV"}"#).unwrap();
    assert_eq!(real.power_fault.as_deref(), Some("VIN_UV"));
}

#[test]
fn one_broken_chip_reading_is_dropped_alone_and_counted() {
    // A chip sensor at 1e308 °C (a broken sensor, or a hostile body) is no reading: the
    // board's ASIC temperature is the hottest of the others, not absent; a chip at 1e308
    // GH/s (or negative) is no hashrate, never an infinite series.
    let body = br#"{"hashRate": 4800, "ASICModel": "BM1370", "temp": 61.5, "asicCount": 4,
        "asicTemps": [61.5, 1e308, 59.75, 200],
        "hashrateMonitor": {"asics": [{"total": 1e308, "errorCount": 3}, {"total": -5, "errorCount": 1},
            {"total": 1200.5, "errorCount": 2}, {"total": 1190, "errorCount": 0}]}}"#;
    let s = decode_system_info(body).unwrap();
    let temps: Vec<Option<f64>> = s.chips.iter().map(|c| c.temp_celsius).collect();
    assert_eq!(temps, [Some(61.5), None, Some(59.75), None]);
    assert_eq!(s.asic_temp_celsius, Some(61.5), "the hottest plausible chip");
    let rates: Vec<Option<f64>> = s.chips.iter().map(|c| c.hashrate_ghs).collect();
    assert_eq!(rates, [None, None, Some(1200.5), Some(1190.0)]);
    assert!(
        s.implausible.contains(&"chip_temperature_celsius"),
        "{:?}",
        s.implausible
    );
    assert!(s.implausible.contains(&"chip_hashrate_ghs"), "{:?}", s.implausible);
    assert!(
        !s.implausible.contains(&"asic_temperature_celsius"),
        "{:?}",
        s.implausible
    );
}

#[test]
fn the_active_pools_protocol_as_the_nerdqaxe_family_and_the_fallback_fields_say_it() {
    // NerdQAxe v1.0.37 (`handler_system.cpp`): `stratumProtocol` is its enum, 0 = SV1,
    // 1 = SV2, with `fallbackStratumProtocol` / `fallbackStratumTLS` beside it.
    let nerd = |fallback: bool| {
        let body = format!(
            r#"{{"hashRate": 4800, "ASICModel": "BM1370", "version": "v1.0.37", "deviceModel": "NerdQAxe++",
            "stratumURL": "sv2.example", "stratumPort": 3336, "stratumProtocol": 1, "stratumTLS": true,
            "fallbackStratumURL": "public-pool.io", "fallbackStratumPort": 21496,
            "fallbackStratumProtocol": 0, "fallbackStratumTLS": false, "isUsingFallbackStratum": {fallback}}}"#
        );
        let s = decode_system_info(body.as_bytes()).unwrap();
        (s.pool, s.pool_protocol, s.pool_tls)
    };
    assert_eq!(nerd(false), (Some("sv2.example:3336".into()), Some("SV2"), Some(true)));
    assert_eq!(
        nerd(true),
        (Some("public-pool.io:21496".into()), Some("SV1"), Some(false)),
        "the fallback pool's own protocol and TLS, not the primary's"
    );
    // Upstream v2.14 (no pools[]) on its fallback: the fallback's fields.
    let upstream = decode_system_info(
        br#"{"hashRate": 1000, "ASICModel": "BM1370", "version": "v2.14.0", "stratumURL": "a.example", "stratumPort": 1,
        "stratumProtocol": "SV1", "stratumTLS": 0, "fallbackStratumURL": "b.example", "fallbackStratumPort": 2,
        "fallbackStratumProtocol": "SV2", "fallbackStratumTLS": 1, "isUsingFallbackStratum": 1}"#,
    )
    .unwrap();
    assert_eq!((upstream.pool_protocol, upstream.pool_tls), (Some("SV2"), Some(true)));
}

#[test]
fn a_build_named_by_its_commit_is_not_read_as_an_old_upstream_version() {
    use bitaxe_exporter::axeos::sample::needs_restart;
    // ESP-IDF names a build `git describe --always`: in a clone without tags (a fork's CI,
    // a shallow checkout) that is the commit, e.g. `2a1b3c4`. Read digit by digit it was
    // "v2.1": upstream before v2.2, restarted on every write.
    let body = String::from_utf8(local_fixture("v2.15.0-gamma-601.json"))
        .unwrap()
        .replacen(r#""version": "v2.15.0""#, r#""version": "2a1b3c4""#, 1);
    let upstream = decode_system_info(body.as_bytes()).unwrap();
    assert_eq!(
        upstream.identity.family,
        FirmwareFamily::EspMiner,
        "its web UI says upstream"
    );
    assert!(!needs_restart(&upstream.identity), "no version, so no pre-v2.2 restart");
    let bare = body.replacen(r#""axeOSVersion": "Unified""#, r#""axeOSVersion": """#, 1);
    assert_eq!(
        decode_system_info(bare.as_bytes()).unwrap().identity.family,
        FirmwareFamily::Unknown,
        "nothing says which family: nothing is written to it"
    );
}
