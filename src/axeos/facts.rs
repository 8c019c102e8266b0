//! A board's power facts as a sweep judges them: the miner's own figures from a [`Sample`],
//! else its board's row in [`crate::axeos::boards`]. Apart from the board table so that the
//! table does not depend on the sample that resolves its board from it.

use crate::axeos::boards::{by_name, input_window};
use crate::axeos::sample::Sample;

/// A board's power facts as a sweep judges them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoardFacts {
    /// The board's name, or `unknown` where only the miner's figures are known.
    pub name: &'static str,
    /// The PSU rating, W.
    pub rated_watts: Option<f64>,
    /// The supply voltage, V.
    pub nominal_volts: Option<f64>,
    /// The input window, V: the miner's own where it reports one (NerdQAxe `minVoltage` /
    /// `maxVoltage`), else the supply's.
    pub input_window: Option<(f64, f64)>,
}

/// The facts of the board a sample comes from: the miner's own figures (never a larger
/// power rating than its board's: a broken or hostile firmware could claim 1e9 W), else its
/// board's row. `None` when nothing is known.
pub fn board_facts(sample: &Sample) -> Option<BoardFacts> {
    let spec = sample
        .identity
        .board
        .as_deref()
        .and_then(|name| by_name(name, sample.identity.family));
    let rated_watts = match (sample.rated_power_watts, spec) {
        (Some(reported), Some(spec)) => Some(reported.min(spec.rated_watts)),
        (Some(reported), None) => Some(reported),
        (None, spec) => spec.map(|s| s.rated_watts),
    };
    let nominal_volts = sample.nominal_input_volts.or(spec.map(|s| s.nominal_volts));
    let input_window = sample.input_window_volts.or(nominal_volts.map(input_window));
    if rated_watts.is_none() && nominal_volts.is_none() && input_window.is_none() {
        return None;
    }
    Some(BoardFacts {
        name: spec.map_or("unknown", |s| s.name),
        rated_watts,
        nominal_volts,
        input_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_miners_own_figures_win_but_never_raise_the_rating() {
        let mut sample = Sample::default();
        sample.identity.board = Some("Gamma".into());
        let gamma = board_facts(&sample).unwrap();
        assert_eq!((gamma.rated_watts, gamma.input_window), (Some(40.0), Some((4.8, 5.5))));
        sample.rated_power_watts = Some(1e9);
        assert_eq!(board_facts(&sample).unwrap().rated_watts, Some(40.0));
        sample.identity.board = Some("LV08".into());
        sample.rated_power_watts = None;
        let lv08 = board_facts(&sample).unwrap();
        assert_eq!((lv08.rated_watts, lv08.input_window), (Some(150.0), Some((11.7, 13.2))));
        let mut nerd = Sample::default();
        nerd.identity.board = Some("NerdQAxe++".into());
        nerd.rated_power_watts = Some(100.0);
        nerd.input_window_volts = Some((11.0, 13.0));
        let facts = board_facts(&nerd).unwrap();
        assert_eq!(
            (facts.rated_watts, facts.input_window),
            (Some(100.0), Some((11.0, 13.0)))
        );
        assert!(board_facts(&Sample::default()).is_none());
    }
}
