//! What a sweep needs to know about a board that the miner may not say: the PSU rating its
//! family ships with and the supply voltage it runs on (AxeOS reports both as `maxPower` and
//! `nominalVoltage` from v2.6; older firmware only names the board version).

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
}
