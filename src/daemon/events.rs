//! Transitions worth telling a person about, found by comparing a device's new poll with
//! what was known before: up/down, a retune, a reboot, a firmware change, and temperature
//! crossings of the configured thresholds (with a small hysteresis so a reading hovering at
//! the limit does not flood the log). Pure functions; the poller logs what they return.

use std::fmt;

use crate::daemon::health::Problem;

use crate::axeos::sample::{ClockConfig, Sample};
use crate::config::Thresholds;

/// Degrees below a threshold a temperature must fall before "back below" is reported.
pub(crate) const TEMPERATURE_HYSTERESIS_CELSIUS: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum TempLevel {
    #[default]
    Normal,
    Warning,
    Shutdown,
}

impl TempLevel {
    pub(crate) fn classify(previous: TempLevel, celsius: f64, t: &Thresholds) -> TempLevel {
        let h = TEMPERATURE_HYSTERESIS_CELSIUS;
        let shutdown =
            celsius >= t.shutdown_celsius || (previous == TempLevel::Shutdown && celsius > t.shutdown_celsius - h);
        let warning =
            celsius >= t.warning_celsius || (previous >= TempLevel::Warning && celsius > t.warning_celsius - h);
        if shutdown {
            TempLevel::Shutdown
        } else if warning {
            TempLevel::Warning
        } else {
            TempLevel::Normal
        }
    }
}

/// What the watcher remembers of a device between polls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tracked {
    /// `None` before the first poll finished.
    pub up: Option<bool>,
    pub clock: Option<ClockConfig>,
    pub uptime_seconds: Option<u64>,
    pub firmware: Option<String>,
    /// The web UI's version with the firmware's, as last seen (`axeOSVersion`).
    pub web_ui_version: Option<String>,
    pub temp_level: TempLevel,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent {
    Up {
        firmware: String,
        model: String,
        clock: ClockConfig,
    },
    Down {
        reason: String,
    },
    ConfigChanged {
        from: ClockConfig,
        to: ClockConfig,
    },
    Rebooted {
        uptime_before: u64,
        uptime_now: u64,
        /// The firmware's own reason (`resetReason`), as sent.
        reason: Option<String>,
    },
    /// The web UI (`axeOSVersion`) and the firmware (`version`) come from different releases.
    WebUiMismatch {
        firmware: String,
        web_ui: String,
    },
    FirmwareChanged {
        from: String,
        to: String,
    },
    TemperatureRose {
        level: TempLevel,
        celsius: f64,
        limit: f64,
    },
    TemperatureFell {
        level: TempLevel,
        celsius: f64,
        limit: f64,
    },
    /// The firmware's overheat protection replaced the configuration.
    ProtectionChangedConfig {
        from: ClockConfig,
        to: ClockConfig,
    },
    /// What `safety.protective_action` did (or, in a dry run, would do).
    ProtectiveAction {
        action: &'static str,
        result: &'static str,
        detail: String,
    },
    /// A mining-health verdict began.
    MiningProblem {
        problem: Problem,
        /// Which chip, which fault text, where the reason has one.
        detail: Option<String>,
    },
    /// …and ended.
    MiningRecovered {
        problem: Problem,
    },
    /// A `tune` process stopped without putting the miner back (killed, crashed, its
    /// restore failed): `detail` says which sweep and the settings from before it.
    TuneInterrupted {
        run_id: i64,
        detail: String,
    },
    /// `serve` put such a miner back (`tune.restore_interrupted`), or tried to.
    TuneRestoredByServe {
        run_id: i64,
        restored: bool,
        detail: String,
    },
}

impl DeviceEvent {
    /// Whether this deserves a WARN line rather than INFO.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Self::Down { .. }
                | Self::TemperatureRose { .. }
                | Self::Rebooted { .. }
                | Self::WebUiMismatch { .. }
                | Self::MiningProblem { .. }
                | Self::ProtectionChangedConfig { .. }
                | Self::ProtectiveAction { .. }
                | Self::TuneInterrupted { .. }
                | Self::TuneRestoredByServe { restored: false, .. }
        )
    }
}

impl fmt::Display for ClockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} MHz / {} mV",
            or_unknown(&self.frequency_mhz),
            or_unknown(&self.core_voltage_mv)
        )
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "?"
    } else {
        s
    }
}

impl fmt::Display for DeviceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Up { firmware, model, clock } => write!(f, "up: {model}, firmware {firmware}, {clock}"),
            Self::Down { reason } => write!(f, "down: {reason}"),
            Self::ConfigChanged { from, to } => write!(f, "configuration changed: {from} -> {to}"),
            Self::Rebooted {
                uptime_before,
                uptime_now,
                reason,
            } => {
                write!(f, "rebooted: uptime went from {uptime_before} s to {uptime_now} s")?;
                match reason {
                    Some(reason) => write!(f, " (reset reason: {reason})"),
                    None => Ok(()),
                }
            }
            Self::WebUiMismatch { firmware, web_ui } => write!(
                f,
                "the web UI ({web_ui}) and the firmware ({firmware}) are from different releases: flash both from one release"
            ),
            Self::FirmwareChanged { from, to } => write!(f, "firmware changed: {from} -> {to}"),
            Self::TemperatureRose { level, celsius, limit } => {
                let what = if *level == TempLevel::Shutdown {
                    "shutdown"
                } else {
                    "warning"
                };
                write!(
                    f,
                    "ASIC temperature {celsius:.1} °C reached the {what} threshold ({limit} °C)"
                )
            }
            Self::ProtectionChangedConfig { from, to } => write!(
                f,
                "the firmware's overheat protection changed the configuration: {from} -> {to}"
            ),
            Self::ProtectiveAction { action, result, detail } => {
                write!(f, "protective action {action} ({result}): {detail}")
            }
            Self::MiningProblem { problem, detail } => {
                write!(f, "not really mining ({}): {}", problem.as_label(), problem.describe())?;
                match detail {
                    Some(detail) => write!(f, ": {detail}"),
                    None => Ok(()),
                }
            }
            Self::MiningRecovered { problem } => write!(f, "mining again: {} is over", problem.as_label()),
            Self::TuneInterrupted { run_id, detail } => write!(f, "sweep #{run_id} was interrupted: {detail}"),
            Self::TuneRestoredByServe { run_id, detail, .. } => {
                write!(f, "interrupted sweep #{run_id}: {detail}")
            }
            Self::TemperatureFell { level, celsius, limit } => {
                let what = if *level == TempLevel::Warning {
                    "shutdown"
                } else {
                    "warning"
                };
                write!(
                    f,
                    "ASIC temperature {celsius:.1} °C is back below the {what} threshold ({limit} °C)"
                )
            }
        }
    }
}

/// The settings the firmware's overheat protection leaves behind: from v2.11 it restarts
/// 100 MHz and 100 mV lower; before, it latches at 50 MHz / 1000 mV.
pub(crate) fn is_protective_drop(from: &ClockConfig, to: &ClockConfig) -> bool {
    let number = |s: &str| s.parse::<f64>().ok();
    let (Some(f0), Some(v0), Some(f1), Some(v1)) = (
        number(&from.frequency_mhz),
        number(&from.core_voltage_mv),
        number(&to.frequency_mhz),
        number(&to.core_voltage_mv),
    ) else {
        return false;
    };
    let latched = (f1 - 50.0).abs() < 0.5 && (v1 - 1000.0).abs() < 0.5 && (f0, v0) != (f1, v1);
    let stepped = (f0 - f1 - 100.0).abs() < 0.5 && (v0 - v1 - 100.0).abs() < 0.5;
    latched || stepped
}

/// A successful poll: the new tracked state and the events it implies.
pub fn observe_success(before: &Tracked, sample: &Sample, thresholds: &Thresholds) -> (Tracked, Vec<DeviceEvent>) {
    let mut events = Vec::new();
    let clock = sample.clock_config();
    let firmware = sample.identity.firmware.clone();

    if before.up != Some(true) {
        events.push(DeviceEvent::Up {
            firmware: firmware.clone().unwrap_or_else(|| "unknown".into()),
            model: sample
                .identity
                .asic_model
                .clone()
                .unwrap_or_else(|| "unknown ASIC".into()),
            clock: clock.clone(),
        });
    }
    if let (Some(from), Some(to)) = (&before.firmware, &firmware) {
        if from != to {
            events.push(DeviceEvent::FirmwareChanged {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    if let (Some(uptime_before), Some(uptime_now)) = (before.uptime_seconds, sample.uptime_seconds) {
        if uptime_now < uptime_before {
            events.push(DeviceEvent::Rebooted {
                uptime_before,
                uptime_now,
                reason: sample.reset_reason.clone(),
            });
        }
    }
    let web_ui_version = sample.identity.web_ui_version.clone();
    if let (Some(firmware), Some(web_ui)) = (&firmware, &web_ui_version) {
        let seen_before = before.firmware.as_ref() == Some(firmware) && before.web_ui_version.as_ref() == Some(web_ui);
        if !seen_before && releases_differ(firmware, web_ui) {
            events.push(DeviceEvent::WebUiMismatch {
                firmware: firmware.clone(),
                web_ui: web_ui.clone(),
            });
        }
    }
    if let Some(from) = &before.clock {
        if from != &clock {
            events.push(DeviceEvent::ConfigChanged {
                from: from.clone(),
                to: clock.clone(),
            });
            if sample.overheat == Some(true) || is_protective_drop(from, &clock) {
                events.push(DeviceEvent::ProtectionChangedConfig {
                    from: from.clone(),
                    to: clock.clone(),
                });
            }
        }
    }

    let mut temp_level = before.temp_level;
    if let Some(celsius) = sample.asic_temp_celsius {
        let level = TempLevel::classify(before.temp_level, celsius, thresholds);
        if level > before.temp_level {
            let limit = if level == TempLevel::Shutdown {
                thresholds.shutdown_celsius
            } else {
                thresholds.warning_celsius
            };
            events.push(DeviceEvent::TemperatureRose { level, celsius, limit });
        } else if level < before.temp_level {
            let limit = if before.temp_level == TempLevel::Shutdown && level == TempLevel::Warning {
                thresholds.shutdown_celsius
            } else {
                thresholds.warning_celsius
            };
            events.push(DeviceEvent::TemperatureFell { level, celsius, limit });
        }
        temp_level = level;
    }

    let after = Tracked {
        up: Some(true),
        clock: Some(clock),
        uptime_seconds: sample.uptime_seconds.or(before.uptime_seconds),
        firmware: firmware.or_else(|| before.firmware.clone()),
        web_ui_version: web_ui_version.or_else(|| before.web_ui_version.clone()),
        temp_level,
    };
    (after, events)
}

/// Whether two version strings name different releases: both must read as versions
/// (`v2.12.0`, `2.12.0-3-gabc`); `Unified` and `Unknown` (v2.15's embedded UI) never differ.
fn releases_differ(firmware: &str, web_ui: &str) -> bool {
    fn release(text: &str) -> Option<Vec<u32>> {
        let numbers = text.trim().trim_start_matches(['v', 'V']);
        let parts: Vec<u32> = numbers
            .split(|c: char| !c.is_ascii_digit())
            .take(3)
            .map_while(|n| n.parse().ok())
            .collect();
        // `v2.13` and `v2.13.0` are one release.
        (parts.len() >= 2).then(|| {
            let mut parts = parts;
            parts.resize(3, 0);
            parts
        })
    }
    match (release(firmware), release(web_ui)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    }
}

/// A failed poll: "down" is reported once, when a device that was up (or never seen) fails.
pub fn observe_failure(before: &Tracked, reason: &str) -> (Tracked, Vec<DeviceEvent>) {
    let events = if before.up != Some(false) {
        vec![DeviceEvent::Down { reason: reason.into() }]
    } else {
        Vec::new()
    };
    let after = Tracked {
        up: Some(false),
        ..before.clone()
    };
    (after, events)
}

/// The ledger's `kind` of an event (its `events.kind` column).
pub(crate) fn event_kind(event: &DeviceEvent) -> &'static str {
    match event {
        DeviceEvent::Up { .. } => "online",
        DeviceEvent::Down { .. } => "offline",
        DeviceEvent::ConfigChanged { .. } => "config_changed",
        DeviceEvent::Rebooted { .. } => "rebooted",
        DeviceEvent::FirmwareChanged { .. } => "firmware_changed",
        DeviceEvent::WebUiMismatch { .. } => "web_ui_mismatch",
        DeviceEvent::TemperatureRose {
            level: TempLevel::Shutdown,
            ..
        } => "temperature_shutdown",
        DeviceEvent::TemperatureRose { .. } => "temperature_warning",
        DeviceEvent::TemperatureFell {
            level: TempLevel::Warning,
            ..
        } => "temperature_below_shutdown",
        DeviceEvent::TemperatureFell { .. } => "temperature_normal",
        DeviceEvent::ProtectionChangedConfig { .. } => "overheat_protection",
        DeviceEvent::ProtectiveAction { .. } => "protective_action",
        DeviceEvent::MiningProblem { .. } => "mining_problem",
        DeviceEvent::MiningRecovered { .. } => "mining_recovered",
        DeviceEvent::TuneInterrupted { .. } => "tune_interrupted",
        DeviceEvent::TuneRestoredByServe { .. } => "tune_restored",
    }
}

impl DeviceEvent {
    /// The ledger record of this event.
    pub fn record(self, device: &str, at: std::time::SystemTime) -> crate::ledger::writer::Record {
        crate::ledger::writer::Record::Event {
            device: device.to_string(),
            at,
            kind: event_kind(&self),
            detail: self.to_string(),
            log_tail: None,
        }
    }

    /// The same, with the miner's last log lines captured for it.
    pub fn record_with_log(
        self,
        device: &str,
        at: std::time::SystemTime,
        log_tail: Option<&[String]>,
    ) -> crate::ledger::writer::Record {
        let mut record = self.record(device, at);
        if let crate::ledger::writer::Record::Event { log_tail: kept, .. } = &mut record {
            *kept = log_tail.filter(|lines| !lines.is_empty()).map(|lines| lines.join("\n"));
        }
        record
    }

    /// Whether this is an incident worth the miner's log tail: a reboot, the firmware's
    /// overheat protection, a fault or a new mining problem.
    pub fn is_incident(&self) -> bool {
        matches!(
            self,
            Self::Rebooted { .. } | Self::ProtectionChangedConfig { .. } | Self::MiningProblem { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(freq: f64, mv: f64, temp: f64, uptime: u64) -> Sample {
        Sample {
            frequency_mhz: Some(freq),
            core_voltage_mv: Some(mv),
            asic_temp_celsius: Some(temp),
            uptime_seconds: Some(uptime),
            ..Sample::default()
        }
    }

    #[test]
    fn first_poll_is_up_then_quiet() {
        let t = Thresholds::default();
        let (tracked, events) = observe_success(&Tracked::default(), &sample(525.0, 1150.0, 50.0, 10), &t);
        assert!(matches!(events[..], [DeviceEvent::Up { .. }]));
        let (_, events) = observe_success(&tracked, &sample(525.0, 1150.0, 50.0, 40), &t);
        assert!(events.is_empty());
    }

    #[test]
    fn retune_reboot_and_down() {
        let t = Thresholds::default();
        let (tracked, _) = observe_success(&Tracked::default(), &sample(525.0, 1150.0, 50.0, 1000), &t);
        let (tracked, events) = observe_success(&tracked, &sample(600.0, 1200.0, 50.0, 5), &t);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(events.iter().any(|e| matches!(
            e,
            DeviceEvent::Rebooted {
                uptime_before: 1000,
                uptime_now: 5,
                ..
            }
        )));
        assert!(events
            .iter()
            .any(|e| e.to_string() == "configuration changed: 525 MHz / 1150 mV -> 600 MHz / 1200 mV"));
        let (tracked, events) = observe_failure(&tracked, "timeout");
        assert_eq!(events.len(), 1);
        let (_, events) = observe_failure(&tracked, "timeout");
        assert!(events.is_empty(), "down is reported once");
    }

    #[test]
    fn a_reboot_says_why_and_a_web_ui_from_another_release_is_told_once() {
        let t = Thresholds::default();
        let mut first = sample(525.0, 1150.0, 50.0, 1000);
        first.identity.firmware = Some("v2.13.1".into());
        first.identity.web_ui_version = Some("v2.12.0".into());
        let (tracked, events) = observe_success(&Tracked::default(), &first, &t);
        let told: Vec<String> = events
            .iter()
            .filter(|e| matches!(e, DeviceEvent::WebUiMismatch { .. }))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            told,
            ["the web UI (v2.12.0) and the firmware (v2.13.1) are from different releases: flash both from one release"]
        );
        let mut rebooted = first.clone();
        rebooted.uptime_seconds = Some(3);
        rebooted.reset_reason = Some("Brownout reset (software or hardware)".into());
        let (_, events) = observe_success(&tracked, &rebooted, &t);
        let text: Vec<String> = events.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            ["rebooted: uptime went from 1000 s to 3 s (reset reason: Brownout reset (software or hardware))"]
        );
        let mut padded = first.clone();
        padded.identity.firmware = Some("v2.13".into());
        padded.identity.web_ui_version = Some("v2.13.0".into());
        let (_, events) = observe_success(&Tracked::default(), &padded, &t);
        assert!(!events.iter().any(|e| matches!(e, DeviceEvent::WebUiMismatch { .. })));
        let mut unified = first;
        unified.identity.web_ui_version = Some("Unified".into());
        let (_, events) = observe_success(&Tracked::default(), &unified, &t);
        assert!(!events.iter().any(|e| matches!(e, DeviceEvent::WebUiMismatch { .. })));
    }

    #[test]
    fn temperature_crossings_with_hysteresis() {
        let t = Thresholds {
            warning_celsius: 65.0,
            shutdown_celsius: 70.0,
        };
        let mut tracked = Tracked::default();
        let mut seen = Vec::new();
        for temp in [60.0, 65.0, 64.5, 65.5, 63.9, 71.0, 69.5, 68.0] {
            let (next, events) = observe_success(&tracked, &sample(525.0, 1150.0, temp, 10), &t);
            tracked = next;
            seen.extend(events.into_iter().filter(|e| !matches!(e, DeviceEvent::Up { .. })));
        }
        let text: Vec<String> = seen.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "ASIC temperature 65.0 °C reached the warning threshold (65 °C)",
                "ASIC temperature 63.9 °C is back below the warning threshold (65 °C)",
                "ASIC temperature 71.0 °C reached the shutdown threshold (70 °C)",
                "ASIC temperature 68.0 °C is back below the shutdown threshold (70 °C)",
            ]
        );
    }
}
