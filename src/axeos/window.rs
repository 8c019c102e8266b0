//! The plausibility window every write to a miner passes: frequency and core voltage
//! targets outside what the miner's chip can plausibly take are refused before they reach
//! the regulator (firmware before v2.11 validates nothing, and a `12000` typed for `1200`
//! would be sent as is). The only way to build a [`CheckedPatch`], which is all the client
//! sends, is through [`SettingsWindow::check`] or an explicit [`CheckedPatch::forced`].

use std::fmt;

/// The firmware's own option lists per ASIC (ESP-Miner `device_config.h`, v2.8 → v2.15;
/// reference/axeos-api.md §5): (model, frequency options MHz, voltage options mV).
const CHIP_OPTIONS: &[(&str, &[f64], &[f64])] = &[
    (
        "BM1397",
        &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0, 600.0],
        &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0, 1350.0, 1400.0, 1450.0, 1500.0],
    ),
    (
        "BM1366",
        &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0],
        &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0],
    ),
    (
        "BM1368",
        &[400.0, 425.0, 450.0, 475.0, 485.0, 490.0, 500.0, 525.0, 550.0, 575.0],
        &[1100.0, 1150.0, 1166.0, 1200.0, 1250.0, 1300.0],
    ),
    (
        // Includes the GammaDuo's "XP" frequencies (350–410 MHz).
        "BM1370",
        &[
            350.0, 375.0, 380.0, 400.0, 410.0, 490.0, 525.0, 550.0, 600.0, 625.0, 690.0,
        ],
        &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0],
    ),
    (
        "BM1372",
        &[327.0, 350.0, 375.0, 380.0, 400.0, 410.0],
        &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0],
    ),
    (
        "BM1373",
        &[327.0, 350.0, 375.0, 380.0, 400.0, 410.0],
        &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0],
    ),
];

/// How far past the option lists a target may go. Overclockers run above the listed
/// maximum and undervolters below the minimum; these margins leave room for that while a
/// typo (an extra digit, MHz for mV) stays far outside.
const FREQUENCY_BELOW_MHZ: f64 = 100.0;
const FREQUENCY_ABOVE_MHZ: f64 = 250.0;
const VOLTAGE_BELOW_MV: f64 = 100.0;
const VOLTAGE_ABOVE_MV: f64 = 100.0;

/// The firmware's option lists for a chip, when it is one this build knows.
pub fn chip_options(asic_model: &str) -> Option<(&'static [f64], &'static [f64])> {
    CHIP_OPTIONS
        .iter()
        .find(|(model, _, _)| crate::axeos::boards::chip_matches(asic_model, model))
        .map(|(_, frequencies, voltages)| (*frequencies, *voltages))
}

/// Where a window came from, for the message that refuses a target.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowSource {
    /// The miner's own `/api/system/asic` option lists (firmware v2.7+).
    MinerOptions,
    /// The documented window of the chip the miner reports.
    Chip(String),
    /// No chip known: the union of every chip's window.
    AnyChip,
}

impl fmt::Display for WindowSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowSource::MinerOptions => {
                f.write_str("from the miner's /api/system/asic option lists, within its chip's documented window")
            }
            WindowSource::Chip(model) => write!(f, "the documented window of a {model}"),
            WindowSource::AnyChip => f.write_str("the widest window of any known chip (the miner reports none)"),
        }
    }
}

/// The frequency and core-voltage targets a miner may be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingsWindow {
    pub frequency_mhz: (f64, f64),
    pub core_voltage_mv: (f64, f64),
    pub source: WindowSource,
}

impl SettingsWindow {
    /// From the lists a miner gave (both non-empty), bounded by its chip's documented
    /// window (a miner's lists are not trusted to widen it: a hostile or broken firmware
    /// could list 65535 mV); else the chip's window; else the widest of any chip.
    pub fn for_miner(asic_model: Option<&str>, miner_options: Option<(&[f64], &[f64])>) -> SettingsWindow {
        let chip = Self::for_chip(asic_model);
        let Some(own) = miner_options.and_then(|(f, v)| Self::around(f, v, WindowSource::MinerOptions)) else {
            return chip;
        };
        let intersect = |a: (f64, f64), b: (f64, f64)| (a.0.max(b.0), a.1.min(b.1));
        let frequency_mhz = intersect(own.frequency_mhz, chip.frequency_mhz);
        let core_voltage_mv = intersect(own.core_voltage_mv, chip.core_voltage_mv);
        if frequency_mhz.0 > frequency_mhz.1 || core_voltage_mv.0 > core_voltage_mv.1 {
            return chip;
        }
        SettingsWindow {
            frequency_mhz,
            core_voltage_mv,
            source: WindowSource::MinerOptions,
        }
    }

    /// The documented window of a chip, or the widest of any chip when it is unknown.
    fn for_chip(asic_model: Option<&str>) -> SettingsWindow {
        if let Some((model, (frequencies, voltages))) = asic_model.and_then(|m| Some((m, chip_options(m)?))) {
            if let Some(window) = Self::around(frequencies, voltages, WindowSource::Chip(model.to_string())) {
                return window;
            }
        }
        let frequencies: Vec<f64> = CHIP_OPTIONS.iter().flat_map(|(_, f, _)| f.iter().copied()).collect();
        let voltages: Vec<f64> = CHIP_OPTIONS.iter().flat_map(|(_, _, v)| v.iter().copied()).collect();
        Self::around(&frequencies, &voltages, WindowSource::AnyChip).unwrap_or(SettingsWindow {
            frequency_mhz: (250.0, 850.0),
            core_voltage_mv: (900.0, 1600.0),
            source: WindowSource::AnyChip,
        })
    }

    fn around(frequencies: &[f64], voltages: &[f64], source: WindowSource) -> Option<SettingsWindow> {
        let (f_low, f_high) = finite_range(frequencies)?;
        let (v_low, v_high) = finite_range(voltages)?;
        Some(SettingsWindow {
            frequency_mhz: ((f_low - FREQUENCY_BELOW_MHZ).max(1.0), f_high + FREQUENCY_ABOVE_MHZ),
            core_voltage_mv: ((v_low - VOLTAGE_BELOW_MV).max(1.0), v_high + VOLTAGE_ABOVE_MV),
            source,
        })
    }

    /// The patch, if every target in it is inside the window; else why not.
    pub fn check(&self, patch: &SettingsPatch) -> Result<CheckedPatch, OutOfWindow> {
        let mut problems = Vec::new();
        if let Some(f) = patch.frequency {
            if !inside(f, self.frequency_mhz) {
                problems.push(format!(
                    "frequency {f} MHz is outside {}–{} MHz",
                    self.frequency_mhz.0, self.frequency_mhz.1
                ));
            }
        }
        if let Some(v) = patch.core_voltage {
            if !inside(f64::from(v), self.core_voltage_mv) {
                problems.push(format!(
                    "core voltage {v} mV is outside {}–{} mV",
                    self.core_voltage_mv.0, self.core_voltage_mv.1
                ));
            }
        }
        if problems.is_empty() {
            Ok(CheckedPatch(patch.clone()))
        } else {
            Err(OutOfWindow {
                problems,
                window: self.source.clone(),
            })
        }
    }
}

fn inside(value: f64, (low, high): (f64, f64)) -> bool {
    value.is_finite() && value >= low && value <= high
}

fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    let finite = values.iter().copied().filter(|v| v.is_finite() && *v > 0.0);
    let low = finite.clone().reduce(f64::min)?;
    let high = finite.reduce(f64::max)?;
    Some((low, high))
}

/// A target refused by the window.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} ({window}); nothing was sent to the miner. If you mean it, add --force", problems.join(", "))]
pub struct OutOfWindow {
    pub problems: Vec<String>,
    pub window: WindowSource,
}

/// Settings that `PATCH /api/system` changes.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SettingsPatch {
    /// Sent as a JSON integer when whole (`600`, never `600.0`): the NerdQAxe family's
    /// handler reads `frequency` only as an integer and ignores `600.0` without a word.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "whole_number_or_fraction")]
    pub frequency: Option<f64>,
    #[serde(rename = "coreVoltage", skip_serializing_if = "Option::is_none")]
    pub core_voltage: Option<u32>,
}

fn whole_number_or_fraction<S: serde::Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v) => serializer.serialize_u32(*v as u32),
        Some(v) => serializer.serialize_f64(*v),
        None => serializer.serialize_none(),
    }
}

/// Settings that passed the window (or were forced by the operator): the only thing
/// [`crate::axeos::AxeOsClient::patch_settings`] sends.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedPatch(SettingsPatch);

impl CheckedPatch {
    /// Skips the window because the operator said `--force`. Say so in the log.
    pub fn forced(patch: SettingsPatch) -> CheckedPatch {
        CheckedPatch(patch)
    }

    pub fn patch(&self) -> &SettingsPatch {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patch(frequency: Option<f64>, core_voltage: Option<u32>) -> SettingsPatch {
        SettingsPatch {
            frequency,
            core_voltage,
        }
    }

    #[test]
    fn typos_are_refused_and_overclocks_pass() {
        let gamma = SettingsWindow::for_miner(Some("BM1370"), None);
        assert_eq!(gamma.frequency_mhz, (250.0, 940.0));
        assert_eq!(gamma.core_voltage_mv, (900.0, 1350.0));
        assert!(gamma.check(&patch(Some(700.0), Some(1300))).is_ok());
        let refused = gamma.check(&patch(None, Some(12000))).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("core voltage 12000 mV is outside 900–1350 mV"),
            "{refused}"
        );
        assert!(refused.to_string().contains("BM1370"), "{refused}");
        assert!(gamma.check(&patch(Some(5250.0), None)).is_err());
        assert!(gamma.check(&patch(Some(f64::NAN), None)).is_err());
    }

    #[test]
    fn the_miners_own_lists_come_first_then_the_chip_then_the_widest() {
        let own = SettingsWindow::for_miner(Some("BM1370"), Some((&[400.0, 500.0], &[1100.0, 1200.0])));
        assert_eq!(own.source, WindowSource::MinerOptions);
        assert_eq!(own.frequency_mhz, (300.0, 750.0));
        // Empty lists from a miner fall back to the chip.
        let empty = SettingsWindow::for_miner(Some("BM1397"), Some((&[], &[])));
        assert_eq!(empty.source, WindowSource::Chip("BM1397".into()));
        assert_eq!(empty.core_voltage_mv, (1000.0, 1600.0));
        // A miner's lists never widen its chip's window.
        let hostile = SettingsWindow::for_miner(Some("BM1370"), Some((&[1.0, 65535.0], &[1.0, 65535.0])));
        assert_eq!(hostile.frequency_mhz, (250.0, 940.0));
        assert_eq!(hostile.core_voltage_mv, (900.0, 1350.0));
        assert!(hostile.check(&patch(Some(5000.0), Some(12000))).is_err());
        let unknown_chip_hostile = SettingsWindow::for_miner(None, Some((&[1.0, 65535.0], &[1.0, 1e308])));
        assert!(unknown_chip_hostile.check(&patch(None, Some(3000))).is_err());
        let unknown = SettingsWindow::for_miner(Some("BM9999"), None);
        assert_eq!(unknown.source, WindowSource::AnyChip);
        assert_eq!(unknown.core_voltage_mv, (900.0, 1600.0));
        assert!(unknown.check(&patch(None, Some(65535))).is_err());
    }

    #[test]
    fn a_whole_frequency_goes_out_as_an_integer_which_every_family_reads() {
        let whole = SettingsPatch {
            frequency: Some(600.0),
            core_voltage: Some(1150),
        };
        assert_eq!(
            serde_json::to_string(&whole).unwrap(),
            r#"{"frequency":600,"coreVoltage":1150}"#
        );
        let fractional = SettingsPatch {
            frequency: Some(562.5),
            core_voltage: None,
        };
        assert_eq!(serde_json::to_string(&fractional).unwrap(), r#"{"frequency":562.5}"#);
    }
}
