//! The simulated miner's log (`GET /api/system/logs`, upstream v2.14+): a bounded ring of
//! ESP-IDF lines with their colour escapes (`\x1b[0;32mI (12345) tag: text\x1b[0m`), the
//! oldest whole lines dropped, kept across a soft reset (the firmware keeps it in PSRAM the
//! boot leaves alone and marks `--- SYSTEM RESTART ---`) and emptied by a power loss; and
//! the lines the firmware prints at boot, on a share, from its fan loop, on an overheat
//! trip, a regulator fault, a hardware fault, a pause and before a reset.

use std::collections::VecDeque;

use crate::sim::dialects::{self, ResetReason};

/// The simulated ring's size. The firmware's is 512 KiB; a small one keeps a thousand
/// simulated miners light and still holds several minutes of lines.
pub(crate) const LOG_CAPACITY_BYTES: usize = 16 * 1024;
/// The firmware's log timestamp is a `uint32_t` of milliseconds.
const LOG_CLOCK_WRAP_MS: u64 = 1 << 32;

/// ESP-IDF's log levels the firmware uses here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Error,
    Warn,
    Info,
}

impl Level {
    fn letter_and_colour(self) -> (char, &'static str) {
        match self {
            Level::Error => ('E', "\u{1b}[0;31m"),
            Level::Warn => ('W', "\u{1b}[0;33m"),
            Level::Info => ('I', "\u{1b}[0;32m"),
        }
    }
}

/// One miner's log ring.
#[derive(Debug, Clone, Default)]
pub(crate) struct MinerLog {
    /// Whole lines (or the restart marker), each ending in `\n`.
    lines: VecDeque<String>,
    bytes: usize,
}

impl MinerLog {
    /// One line as `ESP_LOGx(tag, …)` prints it, at `at_ms` since boot.
    pub(crate) fn print(&mut self, at_ms: u64, level: Level, tag: &str, text: &str) {
        let (letter, colour) = level.letter_and_colour();
        let at = at_ms % LOG_CLOCK_WRAP_MS;
        self.write(format!("{colour}{letter} ({at}) {tag}: {text}\u{1b}[0m\n"));
    }

    fn write(&mut self, text: String) {
        self.bytes += text.len();
        self.lines.push_back(text);
        while self.bytes > LOG_CAPACITY_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// The body of `GET /api/system/logs`: the ring, oldest line first.
    pub(crate) fn text(&self) -> String {
        let mut text = String::with_capacity(self.bytes);
        self.lines.iter().for_each(|line| text.push_str(line));
        text
    }

    /// What a reset does to the ring: a soft one leaves it and the next boot marks the
    /// restart; one the power went through empties it.
    pub(crate) fn reset(&mut self, reason: ResetReason) {
        if reason.loses_power() {
            self.lines.clear();
            self.bytes = 0;
        } else {
            self.write("\n--- SYSTEM RESTART ---\n".to_string());
        }
    }
}

/// What the boot lines name.
#[derive(Debug, Clone)]
pub(crate) struct BootFacts {
    pub version: String,
    pub chips: u32,
    pub frequency_mhz: f64,
    pub expected_ghs: f64,
    pub pool_difficulty: f64,
    pub reason: ResetReason,
}

/// The lines a booting v2.14+ miner logs once its log ring is hooked up (what ESP-IDF and
/// the ROM print before that goes to the serial port only), up to its first pool job.
pub(crate) fn boot(log: &mut MinerLog, facts: &BootFacts) {
    use Level::{Info, Warn};
    log.print(312, Info, "bitaxe", "Welcome to the bitaxe - FOSS || GTFO!");
    // Upstream names the reset reason only in `/api/system/info` (`resetReason`); the
    // simulated log names it too, so that a log tail read after a reboot says why.
    let level = if matches!(facts.reason, ResetReason::PowerOn | ResetReason::Software) {
        Info
    } else {
        Warn
    };
    log.print(
        313,
        level,
        "bitaxe",
        &format!("Last reset reason: {}", facts.reason.text()),
    );
    log.print(325, Info, "bitaxe", "I2C initialized successfully");
    log.print(336, Info, "system", "Initial overheat_mode value: 0");
    log.print(402, Info, "system", &format!("Firmware Version: {}", facts.version));
    log.print(1_540, Info, "power_management", "Starting");
    log.print(
        1_562,
        Info,
        "power_management",
        &format!(
            "ASIC Frequency: {} MHz, Expected hashrate: {}H/s",
            facts.frequency_mhz,
            suffixed(facts.expected_ghs * 1e9)
        ),
    );
    log.print(
        1_618,
        Info,
        "power_management",
        &format!("Mining started successfully ({} chip(s))", facts.chips),
    );
    log.print(1_622, Info, "statistics_task", "Starting");
    log.print(
        2_905,
        Info,
        "stratum_v1_task",
        &format!(
            "Connecting to: stratum+tcp://{}:{} (203.0.113.7)",
            dialects::POOL_URL,
            dialects::POOL_PORT
        ),
    );
    // The firmware logs what it sends the pool, the worker name with it.
    log.print(
        3_012,
        Info,
        "stratum_api",
        &format!(
            "tx: {{\"id\": 2, \"method\": \"mining.authorize\", \"params\": [\"{}\", \"x\"]}}",
            dialects::POOL_USER
        ),
    );
    log.print(
        3_118,
        Info,
        "stratum_api",
        &format!("Set pool difficulty: {:.2}", facts.pool_difficulty),
    );
}

/// What the firmware logs just before a reset of this kind (a panic and the interrupt
/// watchdog print over the serial port only; a power loss logs nothing).
pub(crate) fn before_reset(log: &mut MinerLog, at_ms: u64, reason: ResetReason, by_api: bool) {
    if by_api {
        log.print(
            at_ms,
            Level::Info,
            "http_server",
            "Restarting System because of API Request",
        );
    }
    if reason == ResetReason::TaskWatchdog {
        for text in [
            "Task watchdog got triggered. The following tasks/users did not reset the watchdog in time:",
            " - IDLE0 (CPU 0)",
            "Tasks currently running:",
            "CPU 0: stratum_v1",
            "CPU 1: IDLE1",
            "Print CPU 0 (current core) backtrace",
        ] {
            log.print(at_ms, Level::Error, "task_wdt", text);
        }
    }
}

/// The regulator reports a fault (`TPS546_check_status` → `TPS546_parse_status`): the
/// status word, the regulator off, its input under voltage.
pub(crate) fn power_fault(log: &mut MinerLog, at_ms: u64) {
    for text in [
        "Status: 0x2848",
        "The voltage regulator is turned off",
        "An input undervoltage fault has occurred",
    ] {
        log.print(at_ms, Level::Error, "TPS546", text);
    }
}

/// The fan controller cannot drive the fan: the one hardware fault upstream raises.
pub(crate) fn hardware_fault(log: &mut MinerLog, at_ms: u64) {
    log.print(
        at_ms,
        Level::Error,
        "fan_controller",
        "FATAL: Fan Control Failed (Auto). Flagging hardware fault.",
    );
    mining_stopped(log, at_ms);
}

/// The power-management loop stops the ASIC (a pause, a hardware fault).
pub(crate) fn mining_stopped(log: &mut MinerLog, at_ms: u64) {
    log.print(at_ms, Level::Info, "power_management", "Stopping mining");
    log.print(at_ms + 180, Level::Info, "power_management", "Mining stopped");
}

/// … and starts it again (a resume).
pub(crate) fn mining_started(log: &mut MinerLog, at_ms: u64, chips: u32) {
    log.print(at_ms, Level::Info, "power_management", "Starting mining");
    log.print(
        at_ms + 420,
        Level::Info,
        "power_management",
        &format!("Mining started successfully ({chips} chip(s))"),
    );
}

/// An overheat trip (v2.11+: safe mode, then a cool-down and a retry at lower settings).
pub(crate) fn overheat_trip(log: &mut MinerLog, at_ms: u64, vr_celsius: f64, asic_celsius: f64) {
    log.print(
        at_ms,
        Level::Error,
        "power_management",
        &format!("OVERHEAT! VR: {vr_celsius:.6}C ASIC: {asic_celsius:.6}C"),
    );
    log.print(
        at_ms,
        Level::Warn,
        "power_management",
        "Entering safe mode due to overheat condition. System operation halted.",
    );
    mining_stopped(log, at_ms);
}

/// One 5-s cycle of the overheat cool-down (a board whose ASIC sensor is off while the
/// chip is powered down: the regulator's temperature only).
pub(crate) fn cooling_cycle(log: &mut MinerLog, at_ms: u64, cycle: u32, vr_celsius: f64) {
    log.print(
        at_ms,
        Level::Warn,
        "power_management",
        &format!(
            "Safe mode active (cycle {cycle}/6) - VR: {vr_celsius:.1}°C (ASIC temps unavailable while powered down)"
        ),
    );
}

/// The retry after the cool-down, at the settings lowered by 100.
pub(crate) fn overheat_recovered(
    log: &mut MinerLog,
    at_ms: u64,
    cycles: u32,
    was: (f64, f64),
    now: (f64, f64),
    chips: u32,
) {
    let (was_mhz, was_mv) = was;
    let (mhz, mv) = now;
    log.print(
        at_ms,
        Level::Info,
        "power_management",
        &format!("Temperature normalized after {cycles} cooling cycles. Reinitializing ASIC..."),
    );
    log.print(
        at_ms,
        Level::Info,
        "power_management",
        &format!("Restoring at reduced settings: {mv:.0}mV (was {was_mv:.0}mV), {mhz:.0} MHz (was {was_mhz:.0} MHz)"),
    );
    mining_started(log, at_ms, chips);
    log.print(
        at_ms + 421,
        Level::Info,
        "power_management",
        &format!("Resuming normal operation. Reduced frequency ({mhz:.0} MHz) will be applied automatically."),
    );
}

/// The automatic fan loop's line (the firmware prints it every 2 s; the simulator every
/// 10 s, so an incident's lines stay within a short log tail).
pub(crate) fn fan_loop(log: &mut MinerLog, at_ms: u64, celsius: f64, target: f64, duty_percent: f64) {
    log.print(
        at_ms,
        Level::Info,
        "fan_controller",
        &format!("Temp: {celsius:.1}°C, SetPoint: {target:.1}°C, Output: {duty_percent:.1}%"),
    );
}

/// What a share found and submitted looks like (one of them every 10 s: the firmware logs
/// each): the ASIC's result, the submission, and the pool's answer unless the pool never
/// sees it.
pub(crate) struct Share {
    /// Counts the shares logged since boot (job ids, nonces and message ids follow from it).
    pub number: u64,
    pub chips: u32,
    pub small_cores: u32,
    pub pool_difficulty: f64,
    pub answered: bool,
}

pub(crate) fn share(log: &mut MinerLog, at_ms: u64, share: &Share) {
    let bits = mix(share.number);
    let job = (bits >> 40) as u32;
    let nonce = bits as u32;
    let version = ((bits >> 16) as u32 & 0x1FFF_E000) | 0x2000_0000;
    let asic = (bits % u64::from(share.chips.max(1))) as u32;
    let core = (bits >> 8) as u32 % share.small_cores.max(1);
    // A share's difficulty: the pool's divided by a uniform draw.
    let uniform = ((bits >> 11) as f64 / (1u64 << 53) as f64).max(1e-6);
    let difficulty = share.pool_difficulty / uniform;
    log.print(
        at_ms,
        Level::Info,
        "asic_result",
        &format!(
            "ID: {job:x}, ASIC nr: {asic}, Core: {}/{}, ver: {version:08X} Nonce {nonce:08X} diff {difficulty:.1} of {}.",
            core / 4,
            core % 4,
            share.pool_difficulty
        ),
    );
    let message_id = share.number + 5;
    log.print(
        at_ms + 1,
        Level::Info,
        "stratum_api",
        &format!(
            "tx: {{\"id\": {message_id}, \"method\": \"mining.submit\", \"params\": [\"{}\", \"{job:x}\", \"{:08x}\", \"{:08x}\", \"{nonce:08x}\", \"{:08x}\"]}}",
            dialects::POOL_USER,
            share.number,
            0x68B9_C000u32.wrapping_add(share.number as u32),
            version & 0x1FFF_E000
        ),
    );
    if share.answered {
        log.print(at_ms + 39, Level::Info, "stratum_v1_task", "message result accepted");
        log.print(
            at_ms + 39,
            Level::Info,
            "stratum_v1_task",
            &format!("Stratum response time: {:.1} ms", dialects::RESPONSE_TIME_MS),
        );
    }
}

/// A number with the firmware's SI suffix (`1.07 T`), for the expected hashrate.
fn suffixed(value: f64) -> String {
    const SUFFIXES: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    let mut mantissa = value.max(0.0);
    let mut index = 0;
    while mantissa >= 1000.0 && index < SUFFIXES.len() - 1 {
        mantissa /= 1000.0;
        index += 1;
    }
    format!("{mantissa:.2} {}", SUFFIXES[index])
}

/// splitmix64: varied, repeatable bits for a share's job id and nonce.
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(reason: ResetReason) -> BootFacts {
        BootFacts {
            version: "v2.15.0".into(),
            chips: 1,
            frequency_mhz: 525.0,
            expected_ghs: 1071.0,
            pool_difficulty: 1000.0,
            reason,
        }
    }

    #[test]
    fn lines_are_printed_as_esp_idf_does_with_their_colours() {
        let mut log = MinerLog::default();
        log.print(12_345, Level::Info, "stratum_v1_task", "message result accepted");
        log.print(12_346, Level::Error, "TPS546", "The voltage regulator is turned off");
        log.print(12_347, Level::Warn, "power_management", "Entering safe mode");
        assert_eq!(
            log.text(),
            "\u{1b}[0;32mI (12345) stratum_v1_task: message result accepted\u{1b}[0m\n\
             \u{1b}[0;31mE (12346) TPS546: The voltage regulator is turned off\u{1b}[0m\n\
             \u{1b}[0;33mW (12347) power_management: Entering safe mode\u{1b}[0m\n"
        );
    }

    #[test]
    fn the_ring_drops_whole_old_lines_and_stays_bounded() {
        let mut log = MinerLog::default();
        for i in 0..2_000u64 {
            log.print(i * 1000, Level::Info, "fan_controller", &format!("line {i}"));
        }
        let text = log.text();
        assert!(text.len() <= LOG_CAPACITY_BYTES, "{} bytes", text.len());
        assert!(text.len() > LOG_CAPACITY_BYTES - 200);
        assert!(text.starts_with("\u{1b}[0;32mI ("), "starts on a whole line");
        assert!(text.contains("line 1999") && !text.contains("line 10 "));
    }

    #[test]
    fn a_soft_reset_keeps_the_log_and_marks_it_a_power_loss_empties_it() {
        for reason in ResetReason::ALL {
            let mut log = MinerLog::default();
            power_fault(&mut log, 70_000);
            before_reset(&mut log, 71_000, reason, reason == ResetReason::Software);
            log.reset(reason);
            boot(&mut log, &facts(reason));
            let text = log.text();
            let kept = text.contains("An input undervoltage fault has occurred");
            assert_eq!(kept, !reason.loses_power(), "{reason:?}: {text}");
            assert_eq!(text.contains("--- SYSTEM RESTART ---"), kept, "{reason:?}");
            assert!(
                text.contains(&format!("Last reset reason: {}", reason.text())),
                "{reason:?}"
            );
            assert_eq!(
                text.contains("task_wdt: Task watchdog got triggered"),
                reason == ResetReason::TaskWatchdog
            );
            assert_eq!(
                text.contains("Restarting System because of API Request"),
                reason == ResetReason::Software
            );
        }
    }

    #[test]
    fn a_share_names_the_pool_difficulty_and_its_answer() {
        let mut log = MinerLog::default();
        let mut share_at = |number, answered| {
            let s = Share {
                number,
                chips: 6,
                small_cores: 2040,
                pool_difficulty: 1000.0,
                answered,
            };
            share(&mut log, 10_000 * number, &s);
        };
        share_at(1, true);
        share_at(2, false);
        let text = log.text();
        assert_eq!(text.matches("asic_result: ID: ").count(), 2);
        assert_eq!(text.matches("mining.submit").count(), 2);
        assert_eq!(text.matches("message result accepted").count(), 1);
        assert!(text.contains(" of 1000."));
    }
}
