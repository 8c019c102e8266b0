//! Which configurations a sweep tries, and in what order: the candidate frequencies and
//! voltages (from the miner's own option lists where it has them, else the options its
//! board is documented with, around its current and its stock settings), the `A..B[:STEP]` ranges people type, and the three plans — every pair
//! (`grid`), the benchmark scripts' climb, and an undervolt at a held frequency
//! (`efficiency`) — as a planner that picks the next pair from the outcomes so far.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Frequency steps below this cause PLL errors on real boards (Hurllz PR#1).
pub const MIN_FREQUENCY_STEP_MHZ: f64 = 25.0;
/// The step between voltages when no list or step is given (the scripts' +20 mV).
pub const DEFAULT_VOLTAGE_STEP_MV: f64 = 20.0;
/// The most pairs a grid may hold (36 is a full Gamma option grid).
pub const MAX_PAIRS: usize = 400;

/// How a sweep walks the configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    /// Every frequency × voltage pair.
    Grid,
    /// From the lowest pair: more frequency while healthy, more voltage when not, stop at a
    /// limit.
    Climb,
    /// Hold the frequency; lower the voltage while the configuration stays healthy.
    Efficiency,
}

/// `A..B[:STEP]` or a single value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub step: Option<f64>,
}

impl Span {
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let number = |t: &str| -> Result<f64, String> {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("\"{t}\" is not a positive number"))
        };
        let (range, step) = match text.split_once(':') {
            Some((range, step)) => (range, Some(number(step)?)),
            None => (text, None),
        };
        let (from, to) = match range.split_once("..") {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let v = number(range)?;
                (v, v)
            }
        };
        if from > to {
            return Err(format!("{from}..{to} runs backwards; write the smaller value first"));
        }
        Ok(Span { from, to, step })
    }

    fn contains(&self, value: f64) -> bool {
        value >= self.from - 1e-9 && value <= self.to + 1e-9
    }

    /// from, from + step, … up to `to`.
    fn stepped(&self, step: f64) -> Vec<f64> {
        let mut values = Vec::new();
        let mut v = self.from;
        while v <= self.to + 1e-9 && values.len() <= MAX_PAIRS {
            values.push((v * 1000.0).round() / 1000.0);
            v += step;
        }
        values
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            return write!(f, "{}", self.from);
        }
        write!(f, "{}..{}", self.from, self.to)?;
        if let Some(step) = self.step {
            write!(f, ":{step}")?;
        }
        Ok(())
    }
}

/// What the candidates are drawn from for one miner.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis<'a> {
    /// `--freq` / `--voltage`.
    pub span: Option<Span>,
    /// The miner's option list (`/api/system/asic`, v2.7+).
    pub options: Option<&'a [f64]>,
    /// The options its board is documented with: the default candidates where the miner
    /// lists none (firmware before v2.7). Not a limit on `--freq` / `--voltage`.
    pub board_options: Option<&'a [f64]>,
    /// The miner's current value (where an `efficiency` plan holds or starts).
    pub current: f64,
    /// The board's stock value: without a span the candidates reach around it as well as
    /// around the current value, so a sweep always measures the stock setting too.
    pub board_default: Option<f64>,
    /// The step used where there is neither a list nor a `:STEP`.
    pub default_step: f64,
    /// Without a span: how far below and above the current (and stock) value the listed
    /// options are taken (a full option list would sweep the GammaDuo's 350 MHz on a Gamma).
    pub default_reach: (f64, f64),
    pub allow_unlisted: bool,
    /// `MHz` or `mV`, for messages.
    pub unit: &'static str,
    pub flag: &'static str,
}

impl Axis<'_> {
    /// The candidate values, ascending.
    pub fn values(&self) -> Result<Vec<f64>, String> {
        let listed = |v: f64| self.options.is_none_or(|o| o.iter().any(|x| (x - v).abs() < 1e-6));
        let mut values = match (self.span, self.options) {
            (Some(span), _) if span.step.is_some() || span.from == span.to => {
                let step = span.step.unwrap_or(self.default_step);
                span.stepped(step)
            }
            (Some(span), Some(options)) => options.iter().copied().filter(|v| span.contains(*v)).collect(),
            (Some(span), None) => span.stepped(self.default_step),
            (None, options) => match options.or(self.board_options) {
                Some(options) => {
                    let (below, above) = self.default_reach;
                    let stock = self.board_default.unwrap_or(self.current);
                    let (low, high) = (self.current.min(stock) - below, self.current.max(stock) + above);
                    let near: Vec<f64> = options.iter().copied().filter(|v| *v >= low && *v <= high).collect();
                    // Nothing listed near what it runs (a miner left at 50 MHz / 1000 mV by
                    // old firmware's overheat latch): never jump across the list to its
                    // far end; the current value alone, and --freq / --voltage to say more.
                    if near.is_empty() {
                        vec![self.current]
                    } else {
                        near
                    }
                }
                // An unknown board on firmware without a list: nothing to go by.
                None => vec![self.current],
            },
        };
        values.sort_by(f64::total_cmp);
        values.dedup_by(|a, b| (*a - *b).abs() < 1e-6);
        if values.is_empty() {
            return Err(format!(
                "no {} {} in {}; the miner lists {}",
                self.flag,
                self.unit,
                self.span.map_or_else(|| "range".into(), |s| s.to_string()),
                list_text(self.options)
            ));
        }
        if !self.allow_unlisted {
            if let Some(v) = values.iter().find(|v| !listed(**v)) {
                return Err(format!(
                    "{v} {} is not one of the miner's options ({}); pass --allow-unlisted to try it anyway",
                    self.unit,
                    list_text(self.options)
                ));
            }
        }
        Ok(values)
    }
}

fn list_text(options: Option<&[f64]>) -> String {
    options.map_or_else(
        || "no list".into(),
        |o| o.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", "),
    )
}

/// A step that frequency steps below [`MIN_FREQUENCY_STEP_MHZ`] would take, if any.
pub fn smallest_gap(values: &[f64]) -> Option<f64> {
    values
        .windows(2)
        .map(|w| w[1] - w[0])
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.min(g))))
}

/// How a tried configuration came out, as the planner needs to know it. Its name
/// (`healthy`, `unhealthy`, `limit`, `aborted`) is what the ledger stores and what the JSON
/// output and the progress lines show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Healthy,
    Unhealthy,
    /// A limit that more frequency or voltage would only make worse.
    Limit,
    /// Could not be measured (refused, not read back, the miner stopped answering).
    Aborted,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Healthy => "healthy",
            Outcome::Unhealthy => "unhealthy",
            Outcome::Limit => "limit",
            Outcome::Aborted => "aborted",
        }
    }

    /// An outcome as the ledger stored it; a name this version does not know was not a
    /// measurement it can use, so it counts as aborted.
    pub(crate) fn from_ledger(stored: &str) -> Outcome {
        match stored {
            "healthy" => Outcome::Healthy,
            "unhealthy" => Outcome::Unhealthy,
            "limit" => Outcome::Limit,
            _ => Outcome::Aborted,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Picks the next pair from the outcomes so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Planner {
    Grid {
        pairs: Vec<(f64, f64)>,
        next: usize,
        /// Pairs that broke a limit: every pair at least as high in both is skipped.
        breached: Vec<(f64, f64)>,
    },
    Climb {
        frequencies: Vec<f64>,
        voltages: Vec<f64>,
        at: (usize, usize),
        done: bool,
    },
    Efficiency {
        frequency: f64,
        /// Descending.
        voltages: Vec<f64>,
        at: usize,
        done: bool,
    },
}

impl Planner {
    pub fn new(kind: PlanKind, frequencies: Vec<f64>, voltages: Vec<f64>, current_frequency: f64) -> Planner {
        match kind {
            PlanKind::Grid => Planner::Grid {
                pairs: every_pair(&frequencies, &voltages)
                    .into_iter()
                    .take(MAX_PAIRS)
                    .collect(),
                next: 0,
                breached: Vec::new(),
            },
            PlanKind::Climb => Planner::Climb {
                frequencies,
                voltages,
                at: (0, 0),
                done: false,
            },
            PlanKind::Efficiency => {
                // Held at the one frequency asked for, else the miner's current one.
                let frequency = if frequencies.len() == 1 {
                    frequencies[0]
                } else {
                    current_frequency
                };
                let mut voltages = voltages;
                voltages.reverse();
                Planner::Efficiency {
                    frequency,
                    voltages,
                    at: 0,
                    done: false,
                }
            }
        }
    }

    /// The next pair to try, or `None` when the plan is complete.
    pub fn next_pair(&mut self) -> Option<(f64, f64)> {
        match self {
            Planner::Grid { pairs, next, breached } => {
                while let Some(&pair) = pairs.get(*next) {
                    *next += 1;
                    let dominated = breached.iter().any(|b| pair.0 >= b.0 && pair.1 >= b.1);
                    if !dominated {
                        return Some(pair);
                    }
                }
                None
            }
            Planner::Climb {
                frequencies,
                voltages,
                at,
                done,
            } => {
                if *done {
                    return None;
                }
                Some((*frequencies.get(at.0)?, *voltages.get(at.1)?))
            }
            Planner::Efficiency {
                frequency,
                voltages,
                at,
                done,
            } => {
                if *done {
                    return None;
                }
                Some((*frequency, *voltages.get(*at)?))
            }
        }
    }

    /// Reports how the pair `next_pair` returned came out.
    pub fn report(&mut self, pair: (f64, f64), outcome: Outcome) {
        match self {
            Planner::Grid { breached, .. } => {
                if outcome == Outcome::Limit {
                    breached.push(pair);
                }
            }
            Planner::Climb { at, done, .. } => match outcome {
                Outcome::Healthy => at.0 += 1,
                Outcome::Unhealthy => at.1 += 1,
                Outcome::Limit | Outcome::Aborted => *done = true,
            },
            Planner::Efficiency { at, done, .. } => match outcome {
                Outcome::Healthy => *at += 1,
                _ => *done = true,
            },
        }
    }

    /// The most steps the plan can take.
    pub fn max_steps(&self) -> usize {
        match self {
            Planner::Grid { pairs, .. } => pairs.len(),
            Planner::Climb {
                frequencies, voltages, ..
            } => frequencies.len() + voltages.len() - 1,
            Planner::Efficiency { voltages, .. } => voltages.len(),
        }
    }

    /// Every pair the plan may try (for `--dry-run`), in the order it would.
    pub fn possible_pairs(&self) -> Vec<(f64, f64)> {
        match self {
            Planner::Grid { pairs, .. } => pairs.clone(),
            Planner::Climb {
                frequencies, voltages, ..
            } => every_pair(frequencies, voltages),
            Planner::Efficiency {
                frequency, voltages, ..
            } => voltages.iter().map(|v| (*frequency, *v)).collect(),
        }
    }
}

/// Every frequency × voltage pair, frequency-major.
fn every_pair(frequencies: &[f64], voltages: &[f64]) -> Vec<(f64, f64)> {
    frequencies
        .iter()
        .flat_map(|f| voltages.iter().map(move |v| (*f, *v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_as_people_type_them() {
        assert_eq!(
            Span::parse("500..600:25").unwrap(),
            Span {
                from: 500.0,
                to: 600.0,
                step: Some(25.0)
            }
        );
        assert_eq!(Span::parse(" 1150 ").unwrap().to, 1150.0);
        assert!(Span::parse("600..500").unwrap_err().contains("backwards"));
        assert!(Span::parse("fast").is_err());
        assert!(Span::parse("500..600:0").is_err());
    }

    fn axis<'a>(span: Option<&str>, options: Option<&'a [f64]>, allow_unlisted: bool) -> Axis<'a> {
        Axis {
            span: span.map(|s| Span::parse(s).unwrap()),
            options,
            board_options: None,
            current: 525.0,
            board_default: None,
            default_step: 25.0,
            default_reach: (75.0, 100.0),
            allow_unlisted,
            unit: "MHz",
            flag: "--freq",
        }
    }

    #[test]
    fn candidates_come_from_the_miners_list_and_unlisted_values_need_consent() {
        let options = [400.0, 490.0, 525.0, 550.0, 600.0, 625.0];
        assert_eq!(
            axis(Some("500..600"), Some(&options), false).values().unwrap(),
            vec![525.0, 550.0, 600.0]
        );
        let err = axis(Some("500..600:50"), Some(&options), false).values().unwrap_err();
        assert!(err.contains("500 MHz is not one of the miner's options"), "{err}");
        assert_eq!(
            axis(Some("500..600:50"), Some(&options), true).values().unwrap(),
            vec![500.0, 550.0, 600.0]
        );
        assert_eq!(axis(None, None, false).values().unwrap(), vec![525.0]);
        assert_eq!(
            axis(None, Some(&options), false).values().unwrap(),
            vec![490.0, 525.0, 550.0, 600.0, 625.0],
            "around the current 525 MHz"
        );
    }

    #[test]
    fn without_a_list_of_the_miners_the_boards_options_around_current_and_stock_are_the_candidates() {
        let board = [400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0, 600.0];
        let old_max = Axis {
            board_options: Some(&board),
            current: 425.0,
            board_default: Some(425.0),
            ..axis(None, None, false)
        };
        assert_eq!(
            old_max.values().unwrap(),
            vec![400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0]
        );
        // Overclocked by hand: the stock 425 MHz stays a candidate.
        let overclocked = Axis {
            current: 575.0,
            ..old_max.clone()
        };
        assert_eq!(
            overclocked.values().unwrap(),
            vec![400.0, 425.0, 450.0, 475.0, 485.0, 500.0, 525.0, 550.0, 575.0, 600.0]
        );
        // The board's list suggests; a span off it needs no --allow-unlisted.
        let typed = Axis {
            span: Some(Span::parse("410..430:20").unwrap()),
            ..old_max.clone()
        };
        assert_eq!(typed.values().unwrap(), vec![410.0, 430.0]);
        // An unknown board without a list: only what it runs.
        let unknown = Axis {
            board_options: None,
            board_default: None,
            ..old_max.clone()
        };
        assert_eq!(unknown.values().unwrap(), vec![425.0]);
        // Nothing listed near what it runs (an undervolt from 1000 mV, the list starting at
        // 1100): never the list's far end, only the current value.
        let volts = [1100.0, 1200.0, 1300.0, 1400.0, 1500.0];
        let latched = Axis {
            board_options: Some(&volts),
            current: 1000.0,
            board_default: None,
            default_reach: (100.0, 0.0),
            ..old_max
        };
        assert_eq!(latched.values().unwrap(), vec![1000.0]);
    }

    #[test]
    fn a_climb_raises_frequency_while_healthy_voltage_when_not_and_stops_at_a_limit() {
        let mut climb = Planner::new(PlanKind::Climb, vec![500.0, 525.0, 550.0], vec![1100.0, 1150.0], 500.0);
        assert_eq!(climb.next_pair(), Some((500.0, 1100.0)));
        climb.report((500.0, 1100.0), Outcome::Healthy);
        assert_eq!(climb.next_pair(), Some((525.0, 1100.0)));
        climb.report((525.0, 1100.0), Outcome::Unhealthy);
        assert_eq!(climb.next_pair(), Some((525.0, 1150.0)));
        climb.report((525.0, 1150.0), Outcome::Limit);
        assert_eq!(climb.next_pair(), None);
    }

    #[test]
    fn a_grid_skips_what_a_breached_pair_dominates_and_efficiency_stops_at_the_first_unhealthy() {
        let mut grid = Planner::new(PlanKind::Grid, vec![500.0, 600.0], vec![1100.0, 1200.0], 500.0);
        assert_eq!(grid.next_pair(), Some((500.0, 1100.0)));
        grid.report((500.0, 1100.0), Outcome::Healthy);
        assert_eq!(grid.next_pair(), Some((500.0, 1200.0)));
        grid.report((500.0, 1200.0), Outcome::Limit);
        assert_eq!(grid.next_pair(), Some((600.0, 1100.0)));
        grid.report((600.0, 1100.0), Outcome::Healthy);
        assert_eq!(
            grid.next_pair(),
            None,
            "600/1200 is hotter than 500/1200, which broke a limit"
        );

        let mut undervolt = Planner::new(
            PlanKind::Efficiency,
            vec![400.0, 525.0],
            vec![1100.0, 1150.0, 1200.0],
            525.0,
        );
        assert_eq!(undervolt.next_pair(), Some((525.0, 1200.0)));
        undervolt.report((525.0, 1200.0), Outcome::Healthy);
        assert_eq!(undervolt.next_pair(), Some((525.0, 1150.0)));
        undervolt.report((525.0, 1150.0), Outcome::Unhealthy);
        assert_eq!(undervolt.next_pair(), None);
    }

    #[test]
    fn an_outcome_keeps_the_name_the_ledger_and_the_json_output_use() {
        for (outcome, name) in [
            (Outcome::Healthy, "healthy"),
            (Outcome::Unhealthy, "unhealthy"),
            (Outcome::Limit, "limit"),
            (Outcome::Aborted, "aborted"),
        ] {
            assert_eq!(outcome.as_str(), name);
            assert_eq!(outcome.to_string(), name);
            assert_eq!(serde_json::to_value(outcome).unwrap(), serde_json::json!(name));
            assert_eq!(Outcome::from_ledger(name), outcome);
        }
        assert_eq!(Outcome::from_ledger("something newer"), Outcome::Aborted);
    }
}
