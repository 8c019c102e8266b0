//! The limits a sweep checks on every sample (temperatures, power, supply voltage, the
//! firmware's own protection, a miner that stops hashing or answering) and what breaking
//! each one means for the sweep.

use std::fmt;

use crate::axeos::facts::board_facts;
use crate::axeos::printable;
use crate::axeos::sample::Sample;
use crate::config::TuneSettings;

/// Consecutive readings without hashrate (or without an ASIC temperature) that end a step:
/// v2.14+ reads 0 for about a second after every new block, so one zero is not a stopped
/// miner, and one missed sensor read is not a blind sweep.
pub(crate) const MISSING_READINGS: u32 = 3;

/// Readings in a row that lacked what the limits need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gaps {
    pub hashrate: u32,
    pub asic_temperature: u32,
}

impl Gaps {
    /// Counts this reading in.
    pub fn after(self, sample: &Sample) -> Gaps {
        let count = |missing: bool, run: u32| if missing { run + 1 } else { 0 };
        Gaps {
            hashrate: count(!sample.hashrate_ghs.is_some_and(|h| h > 0.0), self.hashrate),
            asic_temperature: count(
                sample.asic_temp_celsius.is_none() && sample.asic_temp2_celsius.is_none(),
                self.asic_temperature,
            ),
        }
    }
}

/// Readings the decoder dropped as out of range: for a limit, as bad as too high.
const GUARDED_FIELDS: [(&str, &str); 4] = [
    ("asic_temperature_celsius", "ASIC temperature"),
    ("asic_temperature2_celsius", "second ASIC temperature"),
    ("vr_temperature_celsius", "regulator temperature"),
    ("power_watts", "power"),
];

/// The limits for one miner, resolved from `tune:` and what the board is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_asic_celsius: f64,
    pub max_vr_celsius: f64,
    /// `None` when neither the miner nor its board version says what its PSU is rated for
    /// and `tune.max_power_watts` is not set.
    pub max_power_watts: Option<f64>,
    /// `None` when the supply voltage is not known.
    pub input_volts: Option<(f64, f64)>,
}

impl Limits {
    pub fn for_miner(settings: &TuneSettings, sample: &Sample) -> Limits {
        let board = board_facts(sample);
        let rated = board
            .and_then(|b| b.rated_watts)
            .map(|watts| watts * settings.max_power_fraction);
        let max_power_watts = match (settings.max_power_watts, rated) {
            (Some(set), Some(rated)) => Some(set.min(rated)),
            (set, rated) => set.or(rated),
        };
        let window = board.and_then(|b| b.input_window);
        let input_volts = match (settings.min_input_volts, settings.max_input_volts, window) {
            (None, None, None) => None,
            (low, high, window) => Some((
                low.or(window.map(|w| w.0)).unwrap_or(0.0),
                high.or(window.map(|w| w.1)).unwrap_or(f64::INFINITY),
            )),
        };
        Limits {
            max_asic_celsius: settings.max_asic_temp,
            max_vr_celsius: settings.max_vr_temp,
            max_power_watts,
            input_volts,
        }
    }

    /// The first limit this reading breaks. `gaps` counts the readings in a row (this one
    /// included) that lacked a hashrate or an ASIC temperature.
    pub fn check(&self, sample: &Sample, gaps: Gaps) -> Option<Breach> {
        if sample.overheat == Some(true) {
            return Some(Breach::Overheat);
        }
        if let Some((_, what)) = GUARDED_FIELDS
            .iter()
            .find(|(field, _)| sample.implausible.contains(field))
        {
            return Some(Breach::Unreadable(what));
        }
        if let Some(fault) = &sample.power_fault {
            return Some(Breach::PowerFault(fault.clone()));
        }
        let hottest = [sample.asic_temp_celsius, sample.asic_temp2_celsius]
            .into_iter()
            .flatten()
            .fold(None, |max: Option<f64>, t| Some(max.map_or(t, |m| m.max(t))));
        if let Some(t) = hottest.filter(|t| *t >= self.max_asic_celsius) {
            return Some(Breach::AsicTemperature {
                celsius: t,
                limit: self.max_asic_celsius,
            });
        }
        if let Some(t) = sample.vr_temp_celsius.filter(|t| *t >= self.max_vr_celsius) {
            return Some(Breach::VrTemperature {
                celsius: t,
                limit: self.max_vr_celsius,
            });
        }
        if let (Some(watts), Some(limit)) = (sample.power_watts, self.max_power_watts) {
            if watts > limit {
                return Some(Breach::Power { watts, limit });
            }
        }
        if let (Some(volts), Some((low, high))) = (sample.input_voltage_volts, self.input_volts) {
            if volts < low || volts > high {
                return Some(Breach::InputVoltage { volts, low, high });
            }
        }
        if gaps.asic_temperature >= MISSING_READINGS {
            return Some(Breach::NoTemperature(gaps.asic_temperature));
        }
        if gaps.hashrate >= MISSING_READINGS {
            return Some(Breach::NoHashrate(gaps.hashrate));
        }
        None
    }
}

/// A limit a step broke.
#[derive(Debug, Clone, PartialEq)]
pub enum Breach {
    AsicTemperature {
        celsius: f64,
        limit: f64,
    },
    VrTemperature {
        celsius: f64,
        limit: f64,
    },
    Power {
        watts: f64,
        limit: f64,
    },
    InputVoltage {
        volts: f64,
        low: f64,
        high: f64,
    },
    /// The firmware's overheat protection tripped (`overheat_mode`).
    Overheat,
    /// The regulator reports a fault (`power_fault`), as the miner worded it.
    PowerFault(String),
    /// This many readings in a row without hashrate.
    NoHashrate(u32),
    /// This many readings in a row without an ASIC temperature: the limit cannot be checked.
    NoTemperature(u32),
    /// A reading the decoder dropped as out of range (a sensor reading 400 °C, say).
    Unreadable(&'static str),
    /// The miner stopped answering.
    Unreachable(String),
}

impl Breach {
    /// A limit that more frequency or voltage can only make worse: a climb stops there.
    pub fn ends_climb(&self) -> bool {
        matches!(
            self,
            Breach::AsicTemperature { .. }
                | Breach::VrTemperature { .. }
                | Breach::Power { .. }
                | Breach::InputVoltage { .. }
                | Breach::Overheat
                | Breach::PowerFault(_)
                | Breach::Unreadable(_)
        )
    }

    /// The bounded word for logs, JSON and the ledger.
    pub fn kind(&self) -> &'static str {
        match self {
            Breach::AsicTemperature { .. } => "asic_temperature",
            Breach::VrTemperature { .. } => "vr_temperature",
            Breach::Power { .. } => "power",
            Breach::InputVoltage { .. } => "input_voltage",
            Breach::Overheat => "overheat",
            Breach::PowerFault(_) => "power_fault",
            Breach::NoHashrate(_) => "no_hashrate",
            Breach::NoTemperature(_) => "no_temperature",
            Breach::Unreadable(_) => "unreadable",
            Breach::Unreachable(_) => "unreachable",
        }
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::AsicTemperature { celsius, limit } => {
                write!(f, "ASIC temperature {celsius:.1} °C reached the {limit} °C limit")
            }
            Breach::VrTemperature { celsius, limit } => {
                write!(f, "regulator temperature {celsius:.1} °C reached the {limit} °C limit")
            }
            Breach::Power { watts, limit } => write!(f, "power {watts:.1} W above the {limit:.1} W limit"),
            Breach::InputVoltage { volts, low, high } => {
                write!(f, "input voltage {volts:.2} V outside {low}–{high} V")
            }
            Breach::Overheat => f.write_str("the firmware's overheat protection tripped"),
            Breach::PowerFault(text) => write!(f, "the regulator reports a fault: {}", printable(text)),
            Breach::NoHashrate(n) => write!(f, "no hashrate in {n} readings in a row"),
            Breach::NoTemperature(n) => write!(f, "no ASIC temperature in {n} readings in a row"),
            Breach::Unreadable(what) => write!(f, "the {what} reading is out of range"),
            Breach::Unreachable(why) => write!(f, "the miner stopped answering ({why})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axeos::sample::Identity;
    use crate::config::{Thresholds, TuneSettings};

    fn gamma(celsius: f64, watts: f64, volts: f64) -> Sample {
        Sample {
            hashrate_ghs: Some(1000.0),
            asic_temp_celsius: Some(celsius),
            vr_temp_celsius: Some(50.0),
            power_watts: Some(watts),
            input_voltage_volts: Some(volts),
            identity: Identity {
                board_version: Some("601".into()),
                board: Some("Gamma".into()),
                ..Identity::default()
            },
            ..Sample::default()
        }
    }

    #[test]
    fn each_limit_names_its_value_and_a_healthy_reading_breaks_none() {
        let limits = Limits::for_miner(&TuneSettings::defaults(&Thresholds::default()), &gamma(60.0, 15.0, 5.0));
        assert_eq!(limits.max_power_watts, Some(32.0), "80 % of a Gamma's 40 W");
        assert_eq!(limits.input_volts, Some((4.8, 5.5)));
        let none = Gaps::default();
        let gaps = |hashrate, asic_temperature| Gaps {
            hashrate,
            asic_temperature,
        };
        assert_eq!(limits.check(&gamma(60.0, 15.0, 5.0), none), None);
        let hot = limits.check(&gamma(65.2, 15.0, 5.0), none).unwrap();
        assert_eq!(hot.to_string(), "ASIC temperature 65.2 °C reached the 65 °C limit");
        assert!(hot.ends_climb());
        assert_eq!(limits.check(&gamma(60.0, 33.0, 5.0), none).unwrap().kind(), "power");
        assert_eq!(
            limits.check(&gamma(60.0, 15.0, 4.7), none).unwrap().kind(),
            "input_voltage"
        );
        assert_eq!(
            limits.check(&gamma(60.0, 15.0, 5.0), gaps(3, 0)).unwrap().kind(),
            "no_hashrate"
        );
        assert_eq!(
            limits.check(&gamma(60.0, 15.0, 5.0), gaps(2, 2)),
            None,
            "one block's zeroes are not a stop"
        );
        assert_eq!(
            limits.check(&gamma(60.0, 15.0, 5.0), gaps(0, 3)).unwrap().kind(),
            "no_temperature"
        );
        let mut blind = gamma(60.0, 15.0, 5.0);
        blind.asic_temp_celsius = None;
        blind.implausible.push("asic_temperature_celsius");
        assert_eq!(
            limits.check(&blind, none).unwrap().to_string(),
            "the ASIC temperature reading is out of range"
        );
        assert_eq!(Gaps::default().after(&blind).after(&blind).asic_temperature, 2);
        let mut faulted = gamma(60.0, 15.0, 5.0);
        faulted.power_fault = Some("VIN_UV\\x1b[2J".into());
        assert_eq!(limits.check(&faulted, none).unwrap().kind(), "power_fault");
        let mut tripped = gamma(60.0, 15.0, 5.0);
        tripped.overheat = Some(true);
        assert_eq!(limits.check(&tripped, none), Some(Breach::Overheat));
    }

    #[test]
    fn an_absolute_power_limit_only_lowers_the_boards() {
        let mut settings = TuneSettings::defaults(&Thresholds::default());
        settings.max_power_watts = Some(20.0);
        assert_eq!(
            Limits::for_miner(&settings, &gamma(60.0, 15.0, 5.0)).max_power_watts,
            Some(20.0)
        );
        settings.max_power_watts = Some(100.0);
        assert_eq!(
            Limits::for_miner(&settings, &gamma(60.0, 15.0, 5.0)).max_power_watts,
            Some(32.0)
        );
        let unknown = Sample::default();
        assert_eq!(Limits::for_miner(&settings, &unknown).max_power_watts, Some(100.0));
    }
}
