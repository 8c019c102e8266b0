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

/// The facts of the board a sample comes from: what the miner reports, else its board
/// version's family.
pub fn board_facts(sample: &Sample) -> Option<BoardFacts> {
    let known = sample.identity.board_version.as_deref().and_then(|version| {
        FAMILIES
            .iter()
            .find(|(versions, ..)| versions.contains(&version.trim()))
            .map(|&(_, family, rated_watts, nominal_volts)| BoardFacts {
                family,
                rated_watts,
                nominal_volts,
            })
    });
    match (sample.rated_power_watts, sample.nominal_input_volts) {
        (Some(rated_watts), Some(nominal_volts)) => Some(BoardFacts {
            family: known.map_or("unknown", |k| k.family),
            rated_watts,
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
        let turbo = board_facts(&sample(Some("801"), None, None)).unwrap();
        assert_eq!(input_window(turbo.nominal_volts), (11.7, 13.2));
        assert!(board_facts(&sample(Some("999"), None, None)).is_none());
        assert!(board_facts(&sample(None, None, None)).is_none());
    }
}
