//! Filling a hole in a device's history from the miner's own statistics ring: which of its
//! readings fall in the hole (strictly between the last stored sample and the poll that
//! found the miner again), and under which configuration each ran — the one before the hole,
//! the one after it, or, for a retune inside it, each side of the change where the readings
//! show it. Pure: the writer stores what this decides.

use crate::axeos::sample::Sample;
use crate::ledger::segments::Point;

/// A reading this close (seconds) to a stored or polled sample is not added: it is the
/// same moment seen twice.
const MIN_SPACING_SECONDS: f64 = 1.0;
/// The uptime may fall this far (seconds) behind the wall clock across a hole before the
/// miner is taken to have rebooted in it (whole-second uptimes, clock skew).
const REBOOT_SLACK_SECONDS: f64 = 30.0;
/// Core voltages (mV) and hashrates (fraction of the expected) closer than this cannot
/// place a retune: the readings' noise is as large.
const MIN_VOLTAGE_STEP_MV: f64 = 8.0;
const MIN_HASHRATE_STEP: f64 = 0.06;
/// A change point is accepted only when at least this share of the readings agree with it.
const MIN_AGREEMENT: f64 = 0.8;

/// What a hole gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The readings to store, oldest first (times in Unix seconds), each with the
    /// configuration and firmware it ran under; whether the miner rebooted in the hole.
    Fill {
        readings: Vec<(f64, Sample)>,
        rebooted: bool,
    },
    /// Nothing is stored, and why (for the log).
    Skip(&'static str),
}

/// What is known around the hole: the last stored sample (`before`), the poll that ends the
/// hole (its time and reading), and the miner's ring placed on the wall clock.
pub fn plan(before: Option<&Point>, after_t: f64, after: &Sample, ring: Vec<(f64, Sample)>) -> Plan {
    let Some(before) = before else {
        return Plan::Skip("no earlier sample of this device: no hole to fill");
    };
    if ring.is_empty() {
        return Plan::Skip("the miner's statistics ring is empty (statistics off: statsFrequency 0)");
    }
    // Where this boot began on the wall clock, by the poll that ends the hole.
    let boot_t = after.uptime_seconds.map(|up| after_t - up as f64);
    let rebooted = match (before.uptime_seconds, after.uptime_seconds) {
        (Some(then), Some(now)) => (now as f64) + REBOOT_SLACK_SECONDS < then as f64 + (after_t - before.t),
        // Without uptimes a reboot cannot be ruled out, and no reading can be placed.
        _ => return Plan::Skip("the miner reports no uptime: a reboot inside the hole cannot be ruled out"),
    };
    let mut in_hole: Vec<(f64, Sample)> = ring
        .into_iter()
        .filter(|(t, _)| *t >= before.t + MIN_SPACING_SECONDS && *t <= after_t - MIN_SPACING_SECONDS)
        .filter(|(t, _)| boot_t.is_none_or(|boot| *t >= boot))
        .collect();
    if in_hole.is_empty() {
        return Plan::Skip("the miner's ring holds no reading inside the hole");
    }
    in_hole.sort_by(|a, b| a.0.total_cmp(&b.0));
    let after_clock = Clock::of_sample(after);
    let before_clock = Clock::of_point(before);
    // After a reboot the ring holds only this boot's readings: they ran on what runs now.
    let split = if rebooted || before_clock.same_setting(&after_clock) {
        if rebooted {
            0
        } else {
            in_hole.len()
        }
    } else {
        match change_point(&in_hole, &before_clock, &after_clock, after) {
            Some(split) => split,
            None => {
                return Plan::Skip(
                    "the configuration changed inside the hole and the miner's readings do not show when",
                )
            }
        }
    };
    let readings = in_hole
        .into_iter()
        .enumerate()
        .map(|(i, (t, mut sample))| {
            let (clock, firmware) = if i < split {
                (&before_clock, before.firmware.clone())
            } else {
                (&after_clock, after.identity.firmware.clone())
            };
            sample.frequency_mhz = clock.frequency_mhz;
            sample.core_voltage_mv = clock.core_voltage_mv;
            sample.expected_hashrate_ghs = clock.expected_ghs(after);
            sample.identity.firmware = firmware;
            sample.asic_count = after.asic_count;
            // The ring's timestamp is the uptime; where a row came without one, the boot
            // the poll reports gives it (so a reboot in the hole is a segment boundary).
            if sample.uptime_seconds.is_none() {
                sample.uptime_seconds = boot_t.map(|boot| (t - boot).max(0.0) as u64);
            }
            (t, sample)
        })
        .collect();
    Plan::Fill { readings, rebooted }
}

/// A clock configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Clock {
    frequency_mhz: Option<f64>,
    core_voltage_mv: Option<f64>,
}

impl Clock {
    fn of_sample(s: &Sample) -> Self {
        Self {
            frequency_mhz: s.frequency_mhz,
            core_voltage_mv: s.core_voltage_mv,
        }
    }

    fn of_point(p: &Point) -> Self {
        Self {
            frequency_mhz: p.frequency_mhz,
            core_voltage_mv: p.core_voltage_mv,
        }
    }

    fn same_setting(&self, other: &Clock) -> bool {
        let same = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-6,
            (None, None) => true,
            _ => false,
        };
        same(self.frequency_mhz, other.frequency_mhz) && same(self.core_voltage_mv, other.core_voltage_mv)
    }

    /// The hashrate this clock promises, from what the chips promise now: the expected
    /// hashrate is proportional to the frequency.
    fn expected_ghs(&self, now: &Sample) -> Option<f64> {
        let expected = now.expected_hashrate_ghs?;
        match (self.frequency_mhz, now.frequency_mhz) {
            (Some(f), Some(now_f)) if now_f > 0.0 => Some(expected * f / now_f),
            _ => None,
        }
    }
}

/// Where a retune inside the hole happened: the index of the first reading that ran on the
/// new clock. Read from the measured core voltage when the voltage changed enough to show,
/// else from the hashrate against what each clock promises; `None` when neither shows it
/// (or the readings disagree too much to trust one place).
fn change_point(readings: &[(f64, Sample)], before: &Clock, after: &Clock, now: &Sample) -> Option<usize> {
    // The regulator's offset between the set and the measured voltage, from the poll now.
    let voltage = match (before.core_voltage_mv, after.core_voltage_mv) {
        (Some(old), Some(new)) if (old - new).abs() >= MIN_VOLTAGE_STEP_MV => {
            let offset = match (now.core_voltage_measured_mv, now.core_voltage_mv) {
                (Some(measured), Some(set)) => measured - set,
                _ => 0.0,
            };
            let sides: Vec<Option<bool>> = readings
                .iter()
                .map(|(_, s)| {
                    s.core_voltage_measured_mv
                        .map(|m| ((m - offset) - new).abs() < ((m - offset) - old).abs())
                })
                .collect();
            best_split(&sides)
        }
        _ => None,
    };
    voltage.or_else(|| {
        let (old, new) = (before.expected_ghs(now)?, after.expected_ghs(now)?);
        if (old - new).abs() < MIN_HASHRATE_STEP * old.max(new) {
            return None;
        }
        let sides: Vec<Option<bool>> = readings
            .iter()
            .map(|(_, s)| s.hashrate_ghs.map(|h| (h - new).abs() < (h - old).abs()))
            .collect();
        best_split(&sides)
    })
}

/// The split of a sequence of "looks like the new clock" votes (`None`: no reading) that
/// the most votes agree with: everything before it old, everything from it on new.
fn best_split(sides: &[Option<bool>]) -> Option<usize> {
    let votes = sides.iter().flatten().count();
    if votes == 0 {
        return None;
    }
    // Disagreements with a split at 0: every "old" vote.
    let mut wrong = sides.iter().flatten().filter(|new| !**new).count();
    let (mut best, mut best_wrong) = (0, wrong);
    for (i, side) in sides.iter().enumerate() {
        match side {
            Some(true) => wrong += 1,
            Some(false) => wrong -= 1,
            None => {}
        }
        if wrong < best_wrong {
            (best, best_wrong) = (i + 1, wrong);
        }
    }
    let agreement = 1.0 - best_wrong as f64 / votes as f64;
    (agreement >= MIN_AGREEMENT).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, f: f64, v: f64, uptime: u64) -> Point {
        Point {
            t,
            frequency_mhz: Some(f),
            core_voltage_mv: Some(v),
            firmware: Some("v2.15.0".into()),
            uptime_seconds: Some(uptime),
        }
    }

    fn poll(f: f64, v: f64, uptime: u64) -> Sample {
        Sample {
            frequency_mhz: Some(f),
            core_voltage_mv: Some(v),
            core_voltage_measured_mv: Some(v - 10.0),
            expected_hashrate_ghs: Some(f * 2.0),
            hashrate_ghs: Some(f * 2.0),
            uptime_seconds: Some(uptime),
            ..Sample::default()
        }
    }

    fn ring(times: impl Iterator<Item = f64>, reading: impl Fn(f64) -> (f64, f64)) -> Vec<(f64, Sample)> {
        times
            .map(|t| {
                let (hashrate, measured) = reading(t);
                (
                    t,
                    Sample {
                        hashrate_ghs: Some(hashrate),
                        core_voltage_measured_mv: Some(measured),
                        ..Sample::default()
                    },
                )
            })
            .collect()
    }

    fn filled(plan: Plan) -> (Vec<(f64, Sample)>, bool) {
        match plan {
            Plan::Fill { readings, rebooted } => (readings, rebooted),
            Plan::Skip(why) => panic!("skipped: {why}"),
        }
    }

    #[test]
    fn only_readings_strictly_inside_the_hole_are_taken_on_the_clock_that_ran() {
        let before = point(1000.0, 500.0, 1150.0, 5000);
        let after = poll(500.0, 1150.0, 5300);
        let (readings, rebooted) = filled(plan(
            Some(&before),
            1300.0,
            &after,
            ring((900..=1300).step_by(10).map(f64::from), |_| (1000.0, 1140.0)),
        ));
        assert!(!rebooted);
        let times: Vec<f64> = readings.iter().map(|(t, _)| *t).collect();
        assert_eq!(times.first(), Some(&1010.0));
        assert_eq!(times.last(), Some(&1290.0), "not the polled moments themselves");
        assert!(readings
            .iter()
            .all(|(_, s)| s.frequency_mhz == Some(500.0) && s.expected_hashrate_ghs == Some(1000.0)));
    }

    #[test]
    fn after_a_reboot_in_the_hole_nothing_lands_before_the_boot_and_all_runs_on_the_new_clock() {
        let before = point(1000.0, 500.0, 1150.0, 5000);
        // Booted at 1200 on a new clock stored for the boot.
        let after = poll(550.0, 1200.0, 100);
        let ring = ring((1100..=1290).step_by(10).map(f64::from), |_| (1100.0, 1190.0));
        let (readings, rebooted) = filled(plan(Some(&before), 1300.0, &after, ring));
        assert!(rebooted);
        assert!(readings.iter().all(|(t, _)| *t >= 1200.0));
        assert!(readings.iter().all(|(_, s)| s.frequency_mhz == Some(550.0)));
    }

    #[test]
    fn a_retune_inside_the_hole_is_placed_where_the_measured_voltage_steps() {
        let before = point(1000.0, 500.0, 1150.0, 5000);
        let after = poll(525.0, 1200.0, 5300);
        let ring = ring((1010..=1290).step_by(10).map(f64::from), |t| {
            if t < 1150.0 {
                (1000.0, 1141.0)
            } else {
                (1050.0, 1189.0)
            }
        });
        let (readings, _) = filled(plan(Some(&before), 1300.0, &after, ring));
        for (t, s) in &readings {
            let expected = if *t < 1150.0 { 500.0 } else { 525.0 };
            assert_eq!(s.frequency_mhz, Some(expected), "at {t}");
        }
        assert_eq!(readings[0].1.expected_hashrate_ghs, Some(1000.0));
    }

    #[test]
    fn a_frequency_only_retune_is_placed_by_the_hashrate_or_not_at_all() {
        let before = point(1000.0, 400.0, 1150.0, 5000);
        let after = poll(600.0, 1150.0, 5300);
        let steps = ring((1010..=1290).step_by(10).map(f64::from), |t| {
            (if t < 1200.0 { 800.0 } else { 1200.0 }, 1140.0)
        });
        let (readings, _) = filled(plan(Some(&before), 1300.0, &after, steps));
        assert!(readings
            .iter()
            .all(|(t, s)| s.frequency_mhz == Some(if *t < 1200.0 { 400.0 } else { 600.0 })));
        // Readings that jump about show no single change: the hole stays a hole.
        let noise = ring((1010..=1290).step_by(10).map(f64::from), |t| {
            (
                if (t as u64 / 10).is_multiple_of(2) {
                    800.0
                } else {
                    1200.0
                },
                1140.0,
            )
        });
        assert!(matches!(plan(Some(&before), 1300.0, &after, noise), Plan::Skip(_)));
    }

    #[test]
    fn nothing_is_filled_without_an_earlier_sample_an_uptime_or_a_reading() {
        let after = poll(500.0, 1150.0, 5300);
        let ring = || ring([1100.0].into_iter(), |_| (1000.0, 1140.0));
        assert!(matches!(plan(None, 1300.0, &after, ring()), Plan::Skip(_)));
        let before = point(1000.0, 500.0, 1150.0, 5000);
        assert!(matches!(plan(Some(&before), 1300.0, &after, Vec::new()), Plan::Skip(_)));
        let no_uptime = Sample {
            uptime_seconds: None,
            ..after.clone()
        };
        assert!(matches!(plan(Some(&before), 1300.0, &no_uptime, ring()), Plan::Skip(_)));
    }

    #[test]
    fn best_split_needs_agreement() {
        assert_eq!(
            best_split(&[Some(false), None, Some(false), Some(true), Some(true)]),
            Some(3)
        );
        assert_eq!(best_split(&[Some(true), Some(true)]), Some(0));
        assert_eq!(best_split(&[None, None]), None);
        assert_eq!(
            best_split(&[
                Some(true),
                Some(false),
                Some(true),
                Some(false),
                Some(true),
                Some(false)
            ]),
            None
        );
    }
}
