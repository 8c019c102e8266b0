//! What a sweep needs to know about a board that the miner may not say: the PSU rating its
//! family ships with and the supply voltage it runs on (AxeOS reports both as `maxPower` and
//! `nominalVoltage` from v2.6; older firmware only names the board version), and the clock
//! it ships with and the options AxeOS offers for it (served from v2.7 only).

use crate::axeos::sample::Sample;

/// A board family's power facts (shared/reference/axeos-api.md §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardFacts {
    pub family: &'static str,
    /// The PSU rating the family ships with, W.
    pub rated_watts: f64,
    /// Its supply voltage, V (5 or 12).
    pub nominal_volts: f64,
}

/// (board versions, family, rated W, supply V).
const FAMILIES: &[(&[&str], &str, f64, f64)] = &[
    (&["2.2", "102"], "Max", 25.0, 5.0),
    (&["0.11", "201", "202", "203", "204", "205", "207"], "Ultra", 25.0, 5.0),
    (&["302", "303"], "Hex", 90.0, 12.0),
    (&["400", "401", "402", "403"], "Supra", 40.0, 5.0),
    (&["600", "601", "602", "603"], "Gamma", 40.0, 5.0),
    (&["650"], "GammaDuo", 40.0, 5.0),
    (&["701", "702"], "SupraHex", 120.0, 12.0),
    (&["800", "801"], "GammaTurbo", 60.0, 12.0),
];

/// A family from the chip alone, where only one family uses that chip in that number
/// (firmware before v2.0.7 sends no board version).
fn family_of_chip(asic_model: Option<&str>, chips: Option<u32>) -> Option<&'static str> {
    match (asic_model?, chips.unwrap_or(1)) {
        ("BM1397", 1) => Some("Max"),
        ("BM1366", 1) => Some("Ultra"),
        ("BM1366", 6) => Some("Hex"),
        ("BM1368", 1) => Some("Supra"),
        ("BM1368", 6) => Some("SupraHex"),
        ("BM1370", 1) => Some("Gamma"),
        // Two BM1370s are a GammaDuo (5 V) or a GammaTurbo (12 V): not known.
        _ => None,
    }
}

/// A board family's stock clock and the frequency / core-voltage options AxeOS lists for
/// it (`device_config.h`, reference/axeos-api.md §5). Firmware before v2.7 serves no list
/// and firmware before v2.8 took the same defaults from per-board NVS images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardDefaults {
    pub default_mhz: f64,
    pub default_mv: f64,
    pub frequency_options: &'static [f64],
    pub voltage_options: &'static [f64],
}

const BM1397_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0, 600.0];
const BM1397_MV: &[f64] = &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0, 1350.0, 1400.0, 1450.0, 1500.0];
const BM1366_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0];
const BM1366_MV: &[f64] = &[1100.0, 1150.0, 1200.0, 1250.0, 1300.0];
const BM1368_MHZ: &[f64] = &[400.0, 425.0, 450.0, 475.0, 485.0, 490.0, 500.0, 525.0, 550.0, 575.0];
const BM1368_MV: &[f64] = &[1100.0, 1150.0, 1166.0, 1200.0, 1250.0, 1300.0];
const BM1370_MHZ: &[f64] = &[400.0, 490.0, 525.0, 550.0, 600.0, 625.0];
/// The GammaDuo's "XP" configuration of the same chip.
const BM1370_XP_MHZ: &[f64] = &[350.0, 375.0, 380.0, 400.0, 410.0];
const BM1370_MV: &[f64] = &[1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];

/// The stock clock and option lists of a family (as [`BoardFacts::family`] names it).
pub fn board_defaults(family: &str) -> Option<BoardDefaults> {
    let (default_mhz, default_mv, frequency_options, voltage_options) = match family {
        "Max" => (425.0, 1400.0, BM1397_MHZ, BM1397_MV),
        "Ultra" | "Hex" => (485.0, 1200.0, BM1366_MHZ, BM1366_MV),
        "Supra" | "SupraHex" => (490.0, 1166.0, BM1368_MHZ, BM1368_MV),
        "Gamma" | "GammaTurbo" => (525.0, 1150.0, BM1370_MHZ, BM1370_MV),
        "GammaDuo" => (400.0, 1150.0, BM1370_XP_MHZ, BM1370_MV),
        _ => return None,
    };
    Some(BoardDefaults {
        default_mhz,
        default_mv,
        frequency_options,
        voltage_options,
    })
}

/// The facts of the board a sample comes from: what the miner reports (never a larger
/// power rating than its family's: a broken or hostile firmware could claim 1e9 W), else
/// its board version's family.
pub fn board_facts(sample: &Sample) -> Option<BoardFacts> {
    let facts = |&(_, family, rated_watts, nominal_volts): &(&[&str], &'static str, f64, f64)| BoardFacts {
        family,
        rated_watts,
        nominal_volts,
    };
    let by_version = sample.identity.board_version.as_deref().and_then(|version| {
        FAMILIES
            .iter()
            .find(|(versions, ..)| versions.contains(&version.trim()))
            .map(facts)
    });
    let known = by_version.or_else(|| {
        let family = family_of_chip(sample.identity.asic_model.as_deref(), sample.asic_count)?;
        FAMILIES.iter().find(|(_, f, ..)| *f == family).map(facts)
    });
    match (sample.rated_power_watts, sample.nominal_input_volts) {
        (Some(rated_watts), Some(nominal_volts)) => Some(BoardFacts {
            family: known.map_or("unknown", |k| k.family),
            rated_watts: known.map_or(rated_watts, |k| rated_watts.min(k.rated_watts)),
            nominal_volts,
        }),
        _ => known,
    }
}

/// The supply window a board runs safely in, V: 4.8–5.5 V on 5 V boards (the benchmark
/// scripts' bounds), 11.7–13.2 V on 12 V boards (the firmware's own low-input threshold,
/// ESP-Miner#1682, and 10 % over nominal).
pub fn input_window(nominal_volts: f64) -> (f64, f64) {
    if nominal_volts > 8.0 {
        (11.7, 13.2)
    } else {
        (4.8, 5.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::axeos::sample::Identity;

    fn sample(board: Option<&str>, rated: Option<f64>, nominal: Option<f64>) -> Sample {
        Sample {
            rated_power_watts: rated,
            nominal_input_volts: nominal,
            identity: Identity {
                board_version: board.map(str::to_string),
                ..Identity::default()
            },
            ..Sample::default()
        }
    }

    #[test]
    fn the_miners_own_figures_win_and_the_board_version_fills_in_for_older_firmware() {
        let gamma = board_facts(&sample(Some("601"), None, None)).unwrap();
        assert_eq!(
            (gamma.family, gamma.rated_watts, gamma.nominal_volts),
            ("Gamma", 40.0, 5.0)
        );
        let reported = board_facts(&sample(Some("601"), Some(35.0), Some(5.0))).unwrap();
        assert_eq!(reported.rated_watts, 35.0);
        let boastful = board_facts(&sample(Some("601"), Some(1e9), Some(5.0))).unwrap();
        assert_eq!(boastful.rated_watts, 40.0, "never above the family's rating");
        let turbo = board_facts(&sample(Some("801"), None, None)).unwrap();
        assert_eq!(input_window(turbo.nominal_volts), (11.7, 13.2));
        assert!(board_facts(&sample(Some("999"), None, None)).is_none());
        let mut old_max = sample(None, None, None);
        old_max.identity.asic_model = Some("BM1397".into());
        assert_eq!(
            board_facts(&old_max).unwrap().family,
            "Max",
            "v2.0 sends no board version"
        );
        let mut two_chips = sample(None, None, None);
        two_chips.identity.asic_model = Some("BM1370".into());
        two_chips.asic_count = Some(2);
        assert!(board_facts(&two_chips).is_none(), "a GammaDuo or a GammaTurbo");
        assert!(board_facts(&sample(None, None, None)).is_none());
    }

    #[test]
    fn every_family_has_its_stock_clock_among_its_options() {
        for family in [
            "Max",
            "Ultra",
            "Hex",
            "Supra",
            "SupraHex",
            "Gamma",
            "GammaTurbo",
            "GammaDuo",
        ] {
            let d = board_defaults(family).unwrap();
            assert!(d.frequency_options.contains(&d.default_mhz), "{family}");
            assert!(d.voltage_options.contains(&d.default_mv), "{family}");
            assert!(d.frequency_options.windows(2).all(|w| w[0] < w[1]), "{family}");
        }
        assert_eq!(board_defaults("Max").unwrap().default_mv, 1400.0);
        assert_eq!(board_defaults("GammaDuo").unwrap().default_mhz, 400.0);
        assert!(board_defaults("unknown").is_none());
    }
}
