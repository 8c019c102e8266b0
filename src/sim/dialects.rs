//! The AxeOS firmware dialects the simulator speaks: which keys `/api/system/info` has in
//! each era of upstream ESP-Miner, in the NerdQAxe family's fork and in Lucky Miner's vendor
//! firmware; how numbers and difficulties are printed (float32 noise, `"4.29G"`,
//! `"4.29 G"`, integers), which endpoints exist and how each applies a written setting.
//! Follows shared/reference/axeos-api.md §3–§4 and firmware-families.md; the sources of
//! the later shapes are listed in tests/fixtures/axeos/SOURCES.md.

use serde_json::{json, Map, Value};

use crate::sim::physics::{Board, MinerPhysics, Reading};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// v2.0.x: RPM under `fanSpeed`, no MAC, no board version; string `bestDiff` (`%.3g`).
    /// Clock settings are stored and run only after a restart.
    V2_0,
    /// v2.4.0: `fanrpm`, `asicCount`, `macAddr`, string diffs (`%.3g`), float32 noise.
    V2_4,
    /// v2.9.0: `asicCount` gone from info, `poolDifficulty`, `expectedHashrate`, `%.2f` diffs.
    V2_9,
    /// v2.10.1: diffs `"4.29 G"` with a space, fractional `frequency`, `temp2: 0`.
    V2_10,
    /// v2.15.0: numeric diffs, `actualFrequency`, `errorPercentage`, pools, compact JSON,
    /// `hashrateMonitor`, `resetReason`, `hardware_fault`, `workReceived`, `totalHashes`.
    V2_15,
    /// The NerdQAxe family's fork (`v1.0.37`): `deviceModel`, `asicCount`, `asicTemps`,
    /// `lastResetReason`, `shutdown`; a PATCH takes only integer settings, applied live.
    NerdQaxe,
    /// Lucky Miner's stock firmware (`1.1.0`, from an early upstream): `minerModel`,
    /// board `302`, the stratum password in the body; settings run after a restart.
    Lucky,
}

impl Dialect {
    pub const ALL: [Dialect; 7] = [
        Dialect::V2_0,
        Dialect::V2_4,
        Dialect::V2_9,
        Dialect::V2_10,
        Dialect::V2_15,
        Dialect::NerdQaxe,
        Dialect::Lucky,
    ];

    pub fn version(self) -> &'static str {
        match self {
            Dialect::V2_0 => "v2.0.4",
            Dialect::V2_4 => "v2.4.0",
            Dialect::V2_9 => "v2.9.0",
            Dialect::V2_10 => "v2.10.1",
            Dialect::V2_15 => "v2.15.0",
            Dialect::NerdQaxe => "v1.0.37",
            Dialect::Lucky => "1.1.0",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Dialect::V2_0 => "2.0",
            Dialect::V2_4 => "2.4",
            Dialect::V2_9 => "2.9",
            Dialect::V2_10 => "2.10",
            Dialect::V2_15 => "2.15",
            Dialect::NerdQaxe => "nerdqaxe",
            Dialect::Lucky => "lucky",
        }
    }

    /// The upstream era, in release order; `None` for a fork (its own shape entirely).
    fn upstream_rank(self) -> Option<u8> {
        match self {
            Dialect::V2_0 => Some(0),
            Dialect::V2_4 => Some(1),
            Dialect::V2_9 => Some(2),
            Dialect::V2_10 => Some(3),
            Dialect::V2_15 => Some(4),
            Dialect::NerdQaxe | Dialect::Lucky => None,
        }
    }

    /// Upstream firmware of this era or later (never a fork).
    pub(crate) fn at_least(self, era: Dialect) -> bool {
        match (self.upstream_rank(), era.upstream_rank()) {
            (Some(mine), Some(theirs)) => mine >= theirs,
            _ => false,
        }
    }

    /// The board this firmware runs on when none is chosen.
    pub(crate) fn default_board(self) -> Board {
        match self {
            Dialect::V2_0 => Board::Max,
            Dialect::V2_4 => Board::Ultra,
            Dialect::V2_9 => Board::GammaTurbo,
            Dialect::V2_10 => Board::Supra,
            Dialect::V2_15 => Board::Gamma,
            Dialect::NerdQaxe => Board::NerdQAxePlusPlus,
            Dialect::Lucky => Board::LuckyLV07,
        }
    }

    /// `/api/system/asic` exists from upstream v2.7.0, and in the NerdQAxe fork.
    pub(crate) fn has_asic_endpoint(self) -> bool {
        self.at_least(Dialect::V2_9) || self == Dialect::NerdQaxe
    }

    /// Unknown `/api` paths: 404 JSON from v2.9, a 302 to the web UI before (and in forks).
    pub(crate) fn unknown_path_is_404(self) -> bool {
        self.at_least(Dialect::V2_9)
    }

    /// From v2.11 the firmware cools down and retries by itself after an overheat.
    pub(crate) fn overheat_self_clears(self) -> bool {
        self.at_least(Dialect::V2_15) || self == Dialect::NerdQaxe
    }

    /// From v2.10 frequency is a float and may be fractional.
    pub(crate) fn fractional_frequency(self) -> bool {
        self.at_least(Dialect::V2_10)
    }

    /// The `PATCH /api/system` key for manual fan duty.
    pub(crate) fn manual_fan_key(self) -> &'static str {
        if self.at_least(Dialect::V2_15) || self == Dialect::NerdQaxe {
            "manualFanSpeed"
        } else {
            "fanspeed"
        }
    }

    /// Pretty-printed (cJSON_Print) up to v2.13 and in Lucky's build; compact from v2.14
    /// and from ArduinoJson (NerdQAxe).
    pub(crate) fn pretty(self) -> bool {
        !(self.at_least(Dialect::V2_15) || self == Dialect::NerdQaxe)
    }

    /// v2.11+ answers `PATCH` with 400 when a value is out of range.
    pub(crate) fn validates_patch(self) -> bool {
        self.at_least(Dialect::V2_15)
    }

    /// A written frequency / core voltage is stored at once (and read back at once) but
    /// runs only after a restart: upstream before v2.2 and Lucky's stock firmware.
    pub(crate) fn restart_to_apply(self) -> bool {
        matches!(self, Dialect::V2_0 | Dialect::Lucky)
    }

    /// The PATCH handler reads `frequency` and `coreVoltage` only when they are JSON
    /// integers (ArduinoJson `is<uint16_t>()`): `600.0` is ignored without a word.
    pub(crate) fn integer_settings_only(self) -> bool {
        self == Dialect::NerdQaxe
    }

    /// `GET /api/system/logs`, the firmware's log ring (v2.14+).
    pub(crate) fn has_log_endpoint(self) -> bool {
        self.at_least(Dialect::V2_15)
    }

    /// `POST /api/system/pause` and `/resume` (v2.14+).
    pub(crate) fn has_pause(self) -> bool {
        self.at_least(Dialect::V2_15)
    }

    /// The key that names why the miner last booted, if the firmware sends one.
    pub fn reset_reason_key(self) -> Option<&'static str> {
        if self.at_least(Dialect::V2_15) {
            Some("resetReason")
        } else if self == Dialect::NerdQaxe {
            Some("lastResetReason")
        } else {
            None
        }
    }
}

/// The dialects as the command line lists and reads them (`--firmware 2.15`, or `v2.15.0`,
/// `nerdqaxe`, `lucky`).
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

/// Why a miner last booted, as ESP-IDF's `esp_reset_reason()` is printed by upstream's
/// `get_reset_reason_str()` (`main/http_server/system_api_json.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResetReason {
    #[default]
    PowerOn,
    /// `esp_restart()`: what `POST /api/system/restart` leaves.
    Software,
    Panic,
    InterruptWatchdog,
    TaskWatchdog,
    Brownout,
}

impl ResetReason {
    pub const ALL: [ResetReason; 6] = [
        ResetReason::PowerOn,
        ResetReason::Software,
        ResetReason::Panic,
        ResetReason::InterruptWatchdog,
        ResetReason::TaskWatchdog,
        ResetReason::Brownout,
    ];

    /// What the firmware prints.
    pub fn text(self) -> &'static str {
        match self {
            ResetReason::PowerOn => "Reset due to power-on event",
            ResetReason::Software => "Software reset via esp_restart",
            ResetReason::Panic => "Software reset due to exception/panic",
            ResetReason::InterruptWatchdog => "Reset (software or hardware) due to interrupt watchdog",
            ResetReason::TaskWatchdog => "Reset due to task watchdog",
            ResetReason::Brownout => "Brownout reset (software or hardware)",
        }
    }

    /// A reset the power went through (power-on, brownout): what lived in RAM is gone,
    /// even the PSRAM the log ring keeps across a soft reset (software, panic, watchdogs).
    pub fn loses_power(self) -> bool {
        matches!(self, ResetReason::PowerOn | ResetReason::Brownout)
    }

    /// A short name (`/__sim` `reset_reason`).
    pub fn name(self) -> &'static str {
        match self {
            ResetReason::PowerOn => "power-on",
            ResetReason::Software => "software",
            ResetReason::Panic => "panic",
            ResetReason::InterruptWatchdog => "interrupt-watchdog",
            ResetReason::TaskWatchdog => "task-watchdog",
            ResetReason::Brownout => "brownout",
        }
    }

    /// By its short name or the firmware's text, any case.
    pub fn parse(text: &str) -> Option<ResetReason> {
        let wanted = text.trim().to_ascii_lowercase();
        ResetReason::ALL
            .into_iter()
            .find(|r| r.name() == wanted || r.text().to_ascii_lowercase() == wanted)
    }
}

/// What the miner is doing beyond its physics, for the body: faults it reports, why it booted.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Status {
    pub reset_reason: ResetReason,
    /// The regulator reports a fault (`power_fault`, v2.10+).
    pub power_fault: bool,
    /// The firmware flagged a hardware fault and stopped mining (`hardware_fault`, v2.14+).
    pub hardware_fault: bool,
    /// Mining paused (`miningPaused` v2.14+, `shutdown` on NerdQAxe).
    pub paused: bool,
}

/// The one hardware fault upstream raises today (`main/tasks/fan_controller_task.c`):
/// `"Fan Control Failed (%s)"` with the fan mode; mining stops while it is set.
pub(crate) const HARDWARE_FAULT_TEXT: &str = "Fan Control Failed (Auto)";

/// Identity of a simulated device.
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    pub mac: String,
}

/// How a float leaves the firmware: float32 printed as a double before v2.12 and by
/// Lucky's early-upstream build (`11.930000305175781`), rounded to 7 decimals after (and
/// by ArduinoJson, NerdQAxe).
pub(crate) fn float(dialect: Dialect, value: f64) -> Value {
    let printed = if dialect.at_least(Dialect::V2_15) || dialect == Dialect::NerdQaxe {
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
pub(crate) fn difficulty_string(dialect: Dialect, value: f64) -> String {
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut mantissa = value.max(0.0);
    let mut index = 0;
    while mantissa >= 1000.0 && index < SUFFIXES.len() - 1 {
        mantissa /= 1000.0;
        index += 1;
    }
    let suffix = SUFFIXES[index];
    match dialect {
        Dialect::V2_0 | Dialect::V2_4 | Dialect::Lucky => {
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
        Dialect::V2_10 | Dialect::V2_15 | Dialect::NerdQaxe => {
            if index == 0 {
                format!("{} ", mantissa as u64)
            } else {
                format!("{mantissa:.2} {suffix}")
            }
        }
    }
}

fn difficulty(dialect: Dialect, value: f64) -> Value {
    if dialect.at_least(Dialect::V2_15) || dialect == Dialect::NerdQaxe {
        json!(value.floor() as u64)
    } else {
        json!(difficulty_string(dialect, value))
    }
}

/// Placeholders for what a real miner would carry: never a real user's wallet or network.
const SSID: &str = "HomeLab-IoT";
pub(crate) const POOL_URL: &str = "public-pool.io";
pub(crate) const POOL_PORT: u16 = 21496;
pub(crate) const POOL_USER: &str = "bc1qsimulatedsimulatedsimulatedsimulated0wallet.sim";
const FALLBACK_URL: &str = "solo.ckpool.org";
const FALLBACK_PORT: u16 = 3333;

/// Upstream's Wi-Fi signal (v2.9+), dBm: the info body's `wifiRSSI` and the ring's column.
pub(crate) const WIFI_RSSI_DBM: i64 = -58;
/// Upstream's free heap (v2.9+, with PSRAM), bytes: `freeHeap` in the info body and the ring.
pub(crate) const FREE_HEAP_BYTES: u64 = 8_231_544;
/// Latency of the last share's answer (v2.9+), ms: `responseTime` in the info body and the ring.
pub(crate) const RESPONSE_TIME_MS: f64 = 38.25;

/// `hashRate_1m` / `_10m` / `_1h` (v2.12+): the rolling averages settle just under the
/// board's live expectation, and read 0 while an overheat has stopped the chips.
pub(crate) fn rolling_hashrate(p: &MinerPhysics, r: &Reading) -> f64 {
    r.expected_ghs * p.live_fraction() * if p.overheat { 0.0 } else { 0.995 }
}

/// Renders `/api/system/info` for the physics state in this dialect.
pub fn system_info(dialect: Dialect, id: &Identity, p: &MinerPhysics, r: &Reading, status: &Status) -> Value {
    match dialect {
        Dialect::NerdQaxe => nerdqaxe_info(id, p, r, status),
        Dialect::Lucky => lucky_info(id, p, r),
        Dialect::V2_0 | Dialect::V2_4 | Dialect::V2_9 | Dialect::V2_10 | Dialect::V2_15 => {
            upstream_info(dialect, id, p, r, status)
        }
    }
}

/// Upstream ESP-Miner's body, era by era.
fn upstream_info(d: Dialect, id: &Identity, p: &MinerPhysics, r: &Reading, status: &Status) -> Value {
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

    upstream_readings(d, p, r, &mut put);
    put("bestDiff", difficulty(d, p.best_difficulty));
    if d.at_least(Dialect::V2_4) {
        put("bestSessionDiff", difficulty(d, p.session_best_difficulty));
    }
    if d.at_least(Dialect::V2_9) {
        put("poolDifficulty", json!(p.pool_difficulty));
    }
    if d.at_least(Dialect::V2_4) {
        put("isUsingFallbackStratum", json!(0));
    }
    put(
        "freeHeap",
        json!(if d.at_least(Dialect::V2_9) {
            FREE_HEAP_BYTES
        } else {
            148_236
        }),
    );
    if d.at_least(Dialect::V2_15) {
        put("freeHeapInternal", json!(84_213));
        put("freeHeapSpiram", json!(8_129_199));
    }
    put("coreVoltage", json!(p.core_voltage_mv.round() as i64));
    put("coreVoltageActual", json!(r.core_mv_measured.round() as i64));
    put("frequency", frequency);
    put("ssid", json!(SSID));
    if d.at_least(Dialect::V2_4) {
        put("macAddr", json!(id.mac));
        put("hostname", json!(id.hostname));
    }
    put("wifiStatus", json!("Connected!"));
    if d.at_least(Dialect::V2_9) {
        put("wifiRSSI", json!(WIFI_RSSI_DBM));
    }
    put("sharesAccepted", json!(p.shares_accepted.floor() as u64));
    put("sharesRejected", json!(p.shares_rejected.floor() as u64));
    put("uptimeSeconds", json!(p.uptime_s.floor() as u64));
    if d.at_least(Dialect::V2_4) && !d.at_least(Dialect::V2_9) {
        put("asicCount", json!(spec.chips));
    }
    if d.at_least(Dialect::V2_4) {
        put("smallCoreCount", json!(spec.small_cores));
    }
    put("ASICModel", json!(spec.asic_model));
    put("stratumURL", json!(POOL_URL));
    put("stratumPort", json!(POOL_PORT));
    put("stratumUser", json!(POOL_USER));
    if d.at_least(Dialect::V2_9) {
        put("responseTime", float(d, RESPONSE_TIME_MS));
    }
    put("version", json!(d.version()));
    if d.at_least(Dialect::V2_9) {
        put(
            "axeOSVersion",
            json!(if d.at_least(Dialect::V2_15) {
                "Unified".to_string()
            } else {
                d.version().to_string()
            }),
        );
    }
    if d.at_least(Dialect::V2_4) {
        put("boardVersion", json!(spec.board_version));
    }
    put("runningPartition", json!("ota_0"));
    if d.at_least(Dialect::V2_4) {
        put("overheat_mode", json!(i64::from(p.overheat)));
    }
    put("invertscreen", json!(0));
    put("autofanspeed", json!(i64::from(p.fan.auto)));
    upstream_fan(d, p, r, &mut put);
    if status.power_fault && d.at_least(Dialect::V2_10) {
        put("power_fault", json!("VIN_UV_FAULT"));
    }
    if d.at_least(Dialect::V2_15) {
        upstream_v2_15_fields(d, p, r, status, &mut put);
    }
    Value::Object(m)
}

/// Upstream's fan: its RPM and duty under each era's names, and (v2.10+) its automatic
/// control's floor and target.
fn upstream_fan(d: Dialect, p: &MinerPhysics, r: &Reading, put: &mut dyn FnMut(&str, Value)) {
    let fan_rpm = json!(r.fan_rpm as i64);
    let fan_percent = if d.at_least(Dialect::V2_15) {
        json!(r.fan_percent)
    } else {
        json!(r.fan_percent.round() as i64)
    };
    if d == Dialect::V2_0 {
        // v2.0: RPM under `fanSpeed`; `fanspeed` is the configured manual duty.
        put("fanSpeed", fan_rpm);
        put("fanspeed", json!(p.fan.manual_percent.round() as i64));
    } else {
        put("fanspeed", fan_percent);
        put("fanrpm", fan_rpm);
    }
    if d.at_least(Dialect::V2_10) {
        put("minFanSpeed", json!(p.fan.min_percent.round() as i64));
        put("temptarget", json!(p.fan.target_celsius.round() as i64));
    }
}

/// Upstream's readings, era by era: power, input, temperatures, the board's rating, the
/// hashrate and its averages.
fn upstream_readings(d: Dialect, p: &MinerPhysics, r: &Reading, put: &mut dyn FnMut(&str, Value)) {
    let spec = &p.spec;
    put("power", float(d, r.power_watts));
    put("voltage", float(d, r.input_mv));
    put("current", float(d, r.current_ma));
    put("temp", float(d, r.asic_celsius));
    if d.at_least(Dialect::V2_10) {
        put("temp2", json!(if d.at_least(Dialect::V2_15) { -1 } else { 0 }));
    }
    if d.at_least(Dialect::V2_4) {
        put(
            "vrTemp",
            if spec.has_vr_sensor {
                float(d, r.vr_celsius)
            } else {
                json!(0)
            },
        );
    }
    if d.at_least(Dialect::V2_9) {
        put("maxPower", json!(spec.max_power_watts));
        put("nominalVoltage", json!(spec.nominal_volts));
    }
    put("hashRate", float(d, r.hashrate_ghs));
    if d.at_least(Dialect::V2_15) {
        for key in ["hashRate_1m", "hashRate_10m", "hashRate_1h"] {
            put(key, float(d, rolling_hashrate(p, r)));
        }
        put("errorPercentage", float(d, r.error_percent));
        put(
            "actualFrequency",
            float(d, if p.overheat { 50.0 } else { p.frequency_mhz }),
        );
    }
    if d.at_least(Dialect::V2_9) {
        put("expectedHashrate", float(d, r.expected_ghs));
    }
}

/// The fields upstream added in v2.11–v2.15: the second fan, pause, job and hash counters,
/// the reset reason, the per-chip monitor and the pool slots.
fn upstream_v2_15_fields(d: Dialect, p: &MinerPhysics, r: &Reading, status: &Status, put: &mut dyn FnMut(&str, Value)) {
    put("fan2rpm", json!(0));
    put("manualFanSpeed", json!(p.fan.manual_percent.round() as i64));
    put("miningPaused", json!(status.paused));
    put("sharesPending", json!(0));
    put("workReceived", json!(p.work_received.floor() as u64));
    put("totalHashes", json!(p.total_hashes.floor()));
    put("cpuUsage", float(d, 23.6));
    put("resetReason", json!(status.reset_reason.text()));
    put("poolConnectionInfo", json!("IPv4"));
    if status.hardware_fault {
        put("hardware_fault", json!(HARDWARE_FAULT_TEXT));
    }
    put("hashrateMonitor", hashrate_monitor(p, r));
    put("primaryPoolIndex", json!(0));
    put("secondaryPoolIndex", json!(1));
    put("useFallbackStratum", json!(1));
    put("stratumProtocol", json!("SV1"));
    put("fallbackStratumURL", json!(FALLBACK_URL));
    put("fallbackStratumPort", json!(FALLBACK_PORT));
    put("fallbackStratumUser", json!(POOL_USER));
    put("pools", pools());
}

/// `hashrateMonitor` (v2.11+): per chip its hashrate, four domains (one on a BM1397), and
/// its error counter.
fn hashrate_monitor(p: &MinerPhysics, r: &Reading) -> Value {
    let domains: u32 = if p.spec.asic_model == "BM1397" { 1 } else { 4 };
    let asics: Vec<Value> = p
        .chip_hashrates(r.hashrate_ghs)
        .iter()
        .zip(&p.chip_errors)
        .map(|(total, errors)| {
            json!({
                "total": (total * 100.0).round() / 100.0,
                "errorCount": errors.floor() as u64,
                "domains": vec![(total / f64::from(domains) * 100.0).round() / 100.0; domains as usize],
            })
        })
        .collect();
    json!({ "asics": asics })
}

/// `pools` (v2.15+): the primary and the fallback slot, the password masked.
fn pools() -> Value {
    let pool = |index: u32, url: &str, port: u16| {
        json!({"id": index, "stratumProtocol": "SV1", "stratumURL": url, "stratumPort": port,
               "stratumUser": POOL_USER, "stratumPassword": "*****",
               "stratumSuggestedDifficulty": 1000, "stratumExtranonceSubscribe": false, "stratumTLS": 0})
    };
    json!([pool(0, POOL_URL, POOL_PORT), pool(1, FALLBACK_URL, FALLBACK_PORT)])
}

/// The NerdQAxe family's `GET_system_info` (shufps/ESP-Miner-NerdQAxePlus
/// `main/http_server/handler_system.cpp`): board facts first, `temp` the hottest chip,
/// `current` in mA beside `currentA`, counters from its stratum manager, no stratum password.
fn nerdqaxe_info(id: &Identity, p: &MinerPhysics, r: &Reading, status: &Status) -> Value {
    let d = Dialect::NerdQaxe;
    let spec = &p.spec;
    let mining = !(status.paused || status.hardware_fault || status.power_fault);
    let hashrate = if mining { r.hashrate_ghs } else { 0.0 };
    let average = if mining && !p.overheat {
        r.expected_ghs * p.live_fraction() * 0.995
    } else {
        0.0
    };
    let input_current_ma = r.power_watts / (r.input_mv / 1000.0) * 1000.0;
    // The hottest chip is the reading; the others run a little cooler.
    let chip_temps: Vec<Value> = (0..spec.chips)
        .map(|i| float(d, (r.asic_celsius - 0.7 * f64::from(i)).max(0.0)))
        .collect();
    let two_fans = spec.chips > 4;
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_string(), value);
    };
    put("asicCount", json!(spec.chips));
    put("smallCoreCount", json!(spec.small_cores));
    put("deviceModel", json!(spec.device_model));
    put("hostip", json!("192.0.2.44"));
    put("macAddr", json!(id.mac));
    put("wifiRSSI", json!(-61));
    put("power", float(d, r.power_watts));
    put("maxPower", json!(spec.max_power_watts));
    put("minPower", json!(spec.min_power_watts));
    put("maxVoltage", json!(13.0));
    put("minVoltage", json!(11.0));
    put("current", float(d, input_current_ma));
    put("currentA", float(d, input_current_ma / 1000.0));
    put("minCurrentA", json!(0.0));
    put("maxCurrentA", json!(8.0));
    put("temp", float(d, r.asic_celsius));
    put("vrTemp", float(d, r.vr_celsius));
    put("vrTempInt", json!(r.vr_celsius.round() as i64));
    put("hashRateTimestamp", json!((p.uptime_s * 1000.0).floor() as u64));
    put("hashRate", float(d, hashrate));
    put("hashRate_1m", float(d, average));
    put("hashRate_10m", float(d, average));
    put("hashRate_1h", float(d, average));
    put("hashRate_1d", float(d, average));
    put("coreVoltage", json!(p.core_voltage_mv.round() as i64));
    put("defaultCoreVoltage", json!(spec.default_mv.round() as i64));
    put("coreVoltageActual", json!(r.core_mv_measured.round() as i64));
    put("fanspeed", float(d, r.fan_percent));
    put("manualFanSpeed", json!(p.fan.manual_percent.round() as i64));
    put("fanrpm", json!(r.fan_rpm as i64));
    put(
        "fanrpm2",
        json!(if two_fans { (r.fan_rpm * 0.98).round() as i64 } else { 0 }),
    );
    put("fanCount", json!(if two_fans { 2 } else { 1 }));
    put("lastpingrtt", float(d, 18.4));
    put("recentpingloss", json!(0));
    put("shutdown", json!(status.paused));
    put("duplicateHWNonces", json!(0));
    put("poolDifficulty", json!(p.pool_difficulty.round() as u64));
    put("foundBlocks", json!(0));
    put("totalFoundBlocks", json!(0));
    put("sharesAccepted", json!(p.shares_accepted.floor() as u64));
    put("sharesRejected", json!(p.shares_rejected.floor() as u64));
    put("bestDiff", difficulty(d, p.best_difficulty));
    put("bestSessionDiff", difficulty(d, p.session_best_difficulty));
    put("asicTemps", json!(chip_temps));
    nerdqaxe_settings(id, p, r, status, &mut put);
    Value::Object(m)
}

/// The NerdQAxe family's settings, pools and firmware facts, after its readings.
fn nerdqaxe_settings(id: &Identity, p: &MinerPhysics, r: &Reading, status: &Status, put: &mut dyn FnMut(&str, Value)) {
    let d = Dialect::NerdQaxe;
    let spec = &p.spec;
    put("pidTargetTemp", json!(55));
    put("pidP", json!(6.0));
    put("pidI", json!(0.1));
    put("pidD", json!(10.0));
    put("hostname", json!(id.hostname));
    put("ssid", json!(SSID));
    put("stratumURL", json!(POOL_URL));
    put("stratumPort", json!(POOL_PORT));
    put("stratumUser", json!(POOL_USER));
    put("stratumEnonceSubscribe", json!(false));
    put("stratumTLS", json!(false));
    put("fallbackStratumURL", json!(FALLBACK_URL));
    put("fallbackStratumPort", json!(FALLBACK_PORT));
    put("fallbackStratumUser", json!(POOL_USER));
    put("fallbackStratumEnonceSubscribe", json!(false));
    put("fallbackStratumTLS", json!(false));
    put("voltage", float(d, r.input_mv));
    put("frequency", json!(p.frequency_mhz.round() as i64));
    put("defaultFrequency", json!(spec.default_mhz.round() as i64));
    put("jobInterval", json!(500));
    put("stratumDifficulty", json!(1000));
    put("overheat_temp", json!(70));
    put("flipscreen", json!(0));
    put("invertscreen", json!(0));
    put("autoscreenoff", json!(0));
    put("invertfanpolarity", json!(0));
    put("autofanspeed", json!(if p.fan.auto { 2 } else { 0 }));
    put("stratum_keep", json!(0));
    put("vrFrequency", json!(0));
    put("defaultVrFrequency", json!(0));
    put("otp", json!(false));
    put("ASICModel", json!(spec.asic_model));
    put("uptimeSeconds", json!(p.uptime_s.floor() as u64));
    put("lastResetReason", json!(status.reset_reason.text()));
    put("wifiStatus", json!("Connected!"));
    put("freeHeap", json!(7_964_212));
    put("freeHeapInt", json!(91_376));
    put("version", json!(d.version()));
    put("runningPartition", json!("ota_1"));
    put("defaultTheme", json!("default"));
}

/// Lucky Miner's stock body (pyasic issues #280 for the LV07, #278 for the LV08): the LV07
/// misspells the input voltage `voltagei` and reports fan rpm as `fanSpeed` beside the
/// duty `fanspeed`; only the LV08 sends `asicCount`, a MAC and a session best. The stratum
/// password is in the body (a placeholder here).
fn lucky_info(id: &Identity, p: &MinerPhysics, r: &Reading) -> Value {
    let d = Dialect::Lucky;
    let spec = &p.spec;
    let lv08 = spec.chips >= 9;
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_string(), value);
    };
    put("power", float(d, r.power_watts));
    put(if lv08 { "voltage" } else { "voltagei" }, float(d, r.input_mv));
    put("current", float(d, r.current_ma.round()));
    if !lv08 {
        put("fanSpeed", json!(r.fan_rpm as i64));
    }
    put("temp", json!(r.asic_celsius.round() as i64));
    if lv08 {
        put("vrTemp", json!(r.vr_celsius.round() as i64));
    }
    put("hashRate", float(d, r.hashrate_ghs));
    put("bestDiff", difficulty(d, p.best_difficulty));
    if lv08 {
        put("bestSessionDiff", difficulty(d, p.session_best_difficulty));
        put("isUsingFallbackStratum", json!(0));
    }
    put("freeHeap", json!(8_445_720));
    put("coreVoltage", json!(p.core_voltage_mv.round() as i64));
    put("coreVoltageActual", json!(r.core_mv_measured.round() as i64));
    put("frequency", json!(p.frequency_mhz.round() as i64));
    put("ssid", json!(SSID));
    if lv08 {
        put("macAddr", json!(id.mac));
        put("hostname", json!(id.hostname));
    }
    put("wifiStatus", json!("Connected!"));
    put("sharesAccepted", json!(p.shares_accepted.floor() as u64));
    put("sharesRejected", json!(p.shares_rejected.floor() as u64));
    put("uptimeSeconds", json!(p.uptime_s.floor() as u64));
    if lv08 {
        put("asicCount", json!(spec.chips));
        put("asicDetected", json!(spec.chips));
        put("smallCoreCount", json!(spec.small_cores));
    }
    put("ASICModel", json!(spec.asic_model));
    put("minerModel", json!(spec.device_model));
    put("stratumURL", json!(POOL_URL));
    if lv08 {
        put("fallbackStratumURL", json!(FALLBACK_URL));
    }
    put("stratumPort", json!(POOL_PORT));
    if lv08 {
        put("fallbackStratumPort", json!(FALLBACK_PORT));
    }
    put("stratumUser", json!(POOL_USER));
    if lv08 {
        put("fallbackStratumUser", json!(POOL_USER));
    }
    put("stratumPassword", json!("x"));
    if lv08 {
        put("fallbackStratumPassword", json!("x"));
    }
    put("version", json!(d.version()));
    put("boardVersion", json!(spec.board_version));
    put("runningPartition", json!("factory"));
    put("flipscreen", json!(1));
    put("invertscreen", json!(0));
    put("invertfanpolarity", json!(1));
    put("autofanspeed", json!(i64::from(p.fan.auto)));
    put("fanspeed", json!(r.fan_percent.round() as i64));
    put("selftest", json!(0));
    put("allowUpdate", json!(0));
    put("initMiner", json!("lucky"));
    Value::Object(m)
}

/// `/api/system/asic` (upstream v2.9+ shape; the NerdQAxe fork adds its limits).
pub(crate) fn asic_info(dialect: Dialect, p: &MinerPhysics) -> Value {
    let spec = &p.spec;
    let (frequencies, voltages) = spec
        .options
        .or_else(|| crate::axeos::window::chip_options(spec.asic_model))
        .unwrap_or((&[], &[]));
    if dialect == Dialect::NerdQaxe {
        return json!({
            "ASICModel": spec.asic_model,
            "deviceModel": spec.device_model,
            "asicCount": spec.chips,
            "defaultFrequency": spec.default_mhz.round() as i64,
            "defaultVoltage": spec.default_mv.round() as i64,
            "absMaxFrequency": 800,
            "absMaxVoltage": 1400,
            "ecoFrequency": 0,
            "ecoVoltage": 0,
            "swarmColor": "#11d51e",
            "frequencyOptions": frequencies.iter().map(|f| f.round() as i64).collect::<Vec<_>>(),
            "voltageOptions": voltages.iter().map(|v| v.round() as i64).collect::<Vec<_>>(),
        });
    }
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
    use crate::axeos::family::FirmwareFamily;
    use crate::axeos::sample::{decode_system_info, parse_difficulty};

    fn render(dialect: Dialect, board: Board, status: &Status) -> (Value, MinerPhysics) {
        let mut physics = MinerPhysics::new(board.spec(), 9, false);
        physics.advance(std::time::Duration::from_secs(600));
        let reading = physics.read();
        let id = Identity {
            hostname: "sim".into(),
            mac: "F4:12:FA:00:00:01".into(),
        };
        (system_info(dialect, &id, &physics, &reading, status), physics)
    }

    fn keys(body: &Value) -> Vec<String> {
        body.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_nerdqaxe_body_has_the_forks_keys_and_never_a_password() {
        let (body, _) = render(Dialect::NerdQaxe, Board::NerdQAxePlusPlus, &Status::default());
        for key in [
            "asicCount",
            "smallCoreCount",
            "deviceModel",
            "maxPower",
            "minPower",
            "maxVoltage",
            "minVoltage",
            "current",
            "currentA",
            "temp",
            "vrTemp",
            "vrTempInt",
            "hashRate",
            "hashRate_1m",
            "hashRate_10m",
            "hashRate_1h",
            "hashRate_1d",
            "coreVoltage",
            "coreVoltageActual",
            "fanspeed",
            "manualFanSpeed",
            "fanrpm",
            "fanrpm2",
            "shutdown",
            "poolDifficulty",
            "foundBlocks",
            "totalFoundBlocks",
            "sharesAccepted",
            "sharesRejected",
            "bestDiff",
            "bestSessionDiff",
            "asicTemps",
            "lastResetReason",
            "freeHeap",
            "freeHeapInt",
            "version",
            "ASICModel",
            "uptimeSeconds",
            "frequency",
        ] {
            assert!(body.get(key).is_some(), "{key} missing: {body:#}");
        }
        assert!(body.get("boardVersion").is_none());
        assert!(
            !keys(&body).iter().any(|k| k.to_ascii_lowercase().contains("password")),
            "{body:#}"
        );
        assert_eq!(body["deviceModel"], "NerdQAxe++");
        assert_eq!(body["version"], "v1.0.37");
        assert_eq!(body["asicCount"], 4);
        assert!(body["frequency"].is_u64() && body["coreVoltage"].is_u64(), "{body:#}");
        assert!(body["bestDiff"].is_u64() && body["poolDifficulty"].is_u64());
        assert_eq!(body["shutdown"], false);
        // `temp` is the hottest of the per-chip readings; `current` mA beside `currentA`.
        let temps: Vec<f64> = body["asicTemps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .collect();
        assert_eq!(temps.len(), 4);
        assert_eq!(
            Some(temps.iter().cloned().fold(f64::MIN, f64::max)),
            body["temp"].as_f64()
        );
        let (ma, a) = (body["current"].as_f64().unwrap(), body["currentA"].as_f64().unwrap());
        assert!((ma / 1000.0 - a).abs() < 1e-3, "{ma} mA vs {a} A");
        let sample = decode_system_info(body.to_string().as_bytes()).unwrap();
        assert_eq!(sample.identity.family, FirmwareFamily::NerdQaxe);
        assert_eq!(sample.asic_count, Some(4));
        // About 4.9 TH/s at the board's 600 MHz.
        assert!((4_800.0..5_000.0).contains(&sample.hashrate_ghs.unwrap()), "{sample:?}");

        let (octaxe, _) = render(Dialect::NerdQaxe, Board::NerdOctaxe, &Status::default());
        assert_eq!(octaxe["deviceModel"], "NerdOCTAXE-γ");
        assert_eq!(octaxe["asicCount"], 8);
        assert_eq!(octaxe["maxPower"].as_f64(), Some(200.0));
        let paused = Status {
            paused: true,
            reset_reason: ResetReason::TaskWatchdog,
            ..Status::default()
        };
        let (stopped, _) = render(Dialect::NerdQaxe, Board::NerdQAxePlusPlus, &paused);
        assert_eq!(stopped["shutdown"], true);
        assert_eq!(stopped["hashRate"], 0);
        assert_eq!(stopped["lastResetReason"], "Reset due to task watchdog");
    }

    #[test]
    fn lucky_bodies_follow_the_posted_lv07_and_lv08() {
        let (lv07, _) = render(Dialect::Lucky, Board::LuckyLV07, &Status::default());
        assert_eq!(lv07["minerModel"], "LV07");
        assert_eq!(lv07["version"], "1.1.0");
        assert_eq!(lv07["boardVersion"], "302");
        assert!(lv07.get("asicCount").is_none() && lv07.get("voltage").is_none());
        assert!(
            (11_000.0..12_500.0).contains(&lv07["voltagei"].as_f64().unwrap()),
            "12 V: {lv07:#}"
        );
        assert!(lv07["fanSpeed"].as_u64().unwrap() > 100, "rpm under fanSpeed");
        assert!(lv07["fanspeed"].as_u64().unwrap() <= 100, "duty under fanspeed");
        assert!(lv07["bestDiff"].is_string());
        assert!(lv07["stratumPassword"].is_string(), "the vendor build sends it");
        // Two BM1366 at 485 MHz: about 867 GH/s.
        assert!((800.0..900.0).contains(&lv07["hashRate"].as_f64().unwrap()));
        let (lv08, _) = render(Dialect::Lucky, Board::LuckyLV08, &Status::default());
        assert_eq!(lv08["minerModel"], "LV08");
        assert_eq!(lv08["asicCount"], 9);
        assert_eq!(lv08["asicDetected"], 9);
        assert!(lv08.get("voltagei").is_none() && lv08["voltage"].as_f64().unwrap() > 11_000.0);
        // Nine BM1366 at 485 MHz: 3.9 TH/s in theory (the posted one made 3.59).
        assert!((3_800.0..4_000.0).contains(&lv08["hashRate"].as_f64().unwrap()));
        assert!(
            (80.0..120.0).contains(&lv08["power"].as_f64().unwrap()),
            "about 100 W: {lv08:#}"
        );
        for body in [&lv07, &lv08] {
            let sample = decode_system_info(body.to_string().as_bytes()).unwrap();
            assert_eq!(sample.identity.family, FirmwareFamily::Lucky);
        }
    }

    #[test]
    fn upstream_master_boards_and_the_v2_15_fields() {
        let (naja, _) = render(Dialect::V2_15, Board::NajaDuo, &Status::default());
        assert_eq!(naja["ASICModel"], "BM1372/BM1373");
        assert_eq!(naja["boardVersion"], "1201");
        assert_eq!(naja["smallCoreCount"], 6725);
        assert_eq!(naja["frequency"], 327);
        assert_eq!(naja["expectedHashrate"].as_f64(), Some(327.0 * 6725.0 * 2.0 / 1000.0));
        assert_eq!(naja["nominalVoltage"].as_f64(), Some(12.0));
        let (hex, _) = render(Dialect::V2_15, Board::GammaHex, &Status::default());
        assert_eq!(hex["boardVersion"], "1300");
        assert_eq!(hex["maxPower"].as_f64(), Some(180.0));
        assert!(hex["power"].as_f64().unwrap() < 180.0);
        let asics = hex["hashrateMonitor"]["asics"].as_array().unwrap().clone();
        assert_eq!(asics.len(), 6);
        let sum: f64 = asics.iter().map(|a| a["total"].as_f64().unwrap()).sum();
        assert!(
            (sum - hex["hashRate"].as_f64().unwrap()).abs() < 0.1,
            "{sum} vs {}",
            hex["hashRate"]
        );
        assert!(asics.iter().all(|a| a["errorCount"].is_u64()));
        assert_eq!(hex["resetReason"], "Reset due to power-on event");
        assert!(hex.get("hardware_fault").is_none());
        assert!(hex["workReceived"].as_u64().unwrap() > 0 && hex["totalHashes"].as_f64().unwrap() > 1e15);
        assert_eq!(hex["stratumProtocol"], "SV1");
        assert_eq!(hex["pools"].as_array().map(Vec::len), Some(2));
        let v2 = render(Dialect::V2_15, Board::GammaV2, &Status::default()).0;
        assert_eq!(
            (v2["boardVersion"].as_str(), v2["nominalVoltage"].as_f64()),
            (Some("601a"), Some(12.0))
        );
        assert!(v2["voltage"].as_f64().unwrap() > 11_000.0);

        let faulty = Status {
            hardware_fault: true,
            reset_reason: ResetReason::Brownout,
            ..Status::default()
        };
        let (body, _) = render(Dialect::V2_15, Board::Gamma, &faulty);
        assert_eq!(body["hardware_fault"], HARDWARE_FAULT_TEXT);
        assert_eq!(body["resetReason"], "Brownout reset (software or hardware)");
        // Older eras have neither field.
        let (old, _) = render(Dialect::V2_10, Board::Supra, &faulty);
        assert!(old.get("hardware_fault").is_none() && old.get("resetReason").is_none());
    }

    #[test]
    fn a_dead_chip_reads_zero_in_the_monitor_and_its_errors_climb() {
        let mut physics = MinerPhysics::new(Board::Hex.spec(), 4, false);
        let healthy = physics.read().hashrate_ghs;
        *physics.chip_health.last_mut().unwrap() = 0.0;
        let before = physics.chip_errors[5];
        physics.advance(std::time::Duration::from_secs(10));
        let reading = physics.read();
        let chips = physics.chip_hashrates(reading.hashrate_ghs);
        assert_eq!(chips[5], 0.0);
        assert!((chips.iter().sum::<f64>() - reading.hashrate_ghs).abs() < 1e-6);
        let lost = 1.0 - reading.hashrate_ghs / healthy;
        assert!((lost - physics.chip_shares[5]).abs() < 1e-9, "lost {lost}");
        assert!(physics.chip_errors[5] - before >= 2_000.0, "{:?}", physics.chip_errors);
    }

    #[test]
    fn each_firmware_says_how_it_takes_a_write() {
        assert!(Dialect::V2_0.restart_to_apply() && Dialect::Lucky.restart_to_apply());
        for d in [
            Dialect::V2_4,
            Dialect::V2_9,
            Dialect::V2_10,
            Dialect::V2_15,
            Dialect::NerdQaxe,
        ] {
            assert!(!d.restart_to_apply(), "{d:?}");
        }
        assert!(Dialect::NerdQaxe.integer_settings_only());
        assert!(Dialect::NerdQaxe.has_asic_endpoint() && !Dialect::Lucky.has_asic_endpoint());
        assert!(!Dialect::NerdQaxe.at_least(Dialect::V2_0) && !Dialect::Lucky.at_least(Dialect::V2_0));
        assert_eq!(ResetReason::parse("BROWNOUT"), Some(ResetReason::Brownout));
        assert_eq!(
            ResetReason::parse("Reset due to task watchdog"),
            Some(ResetReason::TaskWatchdog)
        );
        assert_eq!(ResetReason::parse("meltdown"), None);
    }

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
