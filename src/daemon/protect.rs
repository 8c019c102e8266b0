//! Opt-in protective action (`safety.protective_action`, default `none`): what the daemon
//! does to a miner at `safety.max_temp_shutdown`, with hysteresis, a cool-down and an
//! hourly cap that survive a restart (rebuilt from the ledger's events); a failed action is
//! retried with a back-off while the miner stays hot, a pause that fails or is ignored
//! falls back to a step down, and an action that did not cool the miner is repeated after
//! the cool-down. This file decides; `protect_write` carries a plan out. Every write goes
//! through [`crate::axeos::apply`] (the plausibility
//! window, read back until it holds), and is logged, put in the ledger and counted — or,
//! in a dry run, only logged. Nothing here runs unless the configuration asks for it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::axeos::sample::Sample;
use crate::config::{Protection, ProtectiveAction, Thresholds};

use super::protect_write::{Outcome, Plan};

/// A miner re-arms once it is this far below the threshold it tripped.
pub(crate) const HYSTERESIS_CELSIUS: f64 = 5.0;
/// The least time between two actions on one miner.
pub(crate) const COOL_DOWN: Duration = Duration::from_secs(600);
/// The most actions on one miner in an hour.
pub(crate) const MAX_PER_HOUR: usize = 3;
/// The longest wait before a failed action is tried again (the first wait, a poll interval
/// within 5–30 s, doubles up to this).
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
const HOUR: Duration = Duration::from_secs(3600);

/// One miner's protective state.
#[derive(Debug, Clone)]
pub struct Protector {
    protection: Protection,
    /// Cleared by an action, set again below the threshold minus the hysteresis (or when
    /// the miner is still over the threshold once the cool-down has passed).
    armed: bool,
    /// Actions taken (or dry-run) in the last hour: the cool-down and the cap.
    recent: VecDeque<Instant>,
    /// After a failed attempt: when to try again.
    retry: Option<Retry>,
    /// The first wait after a failure.
    retry_after: Duration,
    /// A step down found nothing lower: no more attempts until the miner cools.
    at_floor: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Retry {
    at: Instant,
    failures: u32,
    /// A pause failed or was ignored: the next attempt steps down instead.
    step_down_instead: bool,
    /// What the miner ran when the attempt failed: lower settings since mean it applied
    /// after all (late), and count as an action.
    from: Option<(f64, f64)>,
}

/// What the fleet knows that a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub thresholds: Thresholds,
    /// The last configuration that ran healthy (MHz, mV).
    pub last_good: Option<(f64, f64)>,
    /// The miner runs what its overheat protection left behind.
    pub protection_dropped: bool,
}

impl Protector {
    pub fn new(protection: Protection, poll_interval: Duration) -> Protector {
        Protector {
            protection,
            armed: true,
            recent: VecDeque::new(),
            retry: None,
            retry_after: poll_interval.clamp(Duration::from_secs(5), Duration::from_secs(30)),
            at_floor: false,
        }
    }

    /// Remembers actions an earlier run of the daemon took, `ages` ago (from the ledger),
    /// so a restart neither resets the cool-down nor the hourly cap.
    pub fn remember(&mut self, now: Instant, ages: &[Duration]) {
        let mut times: Vec<Instant> = ages
            .iter()
            .filter(|age| **age < HOUR)
            .filter_map(|age| now.checked_sub(*age))
            .collect();
        times.sort();
        if let Some(last) = times.last() {
            // The miner was acted on: it re-arms as after any action.
            self.armed = now.duration_since(*last) >= COOL_DOWN;
        }
        self.recent.extend(times);
    }

    pub fn action(&self) -> ProtectiveAction {
        self.protection.action
    }

    pub fn dry_run(&self) -> bool {
        self.protection.dry_run
    }

    /// Decides on a reading taken at `now`. What the action did must be passed to
    /// [`Protector::record`].
    pub fn consider(&mut self, now: Instant, sample: &Sample, context: &Context) -> Option<Plan> {
        if self.protection.action == ProtectiveAction::None {
            return None;
        }
        let hottest = [sample.asic_temp_celsius, sample.asic_temp2_celsius]
            .into_iter()
            .flatten()
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))?;
        let shutdown = context.thresholds.shutdown_celsius;
        if hottest < shutdown - HYSTERESIS_CELSIUS {
            self.armed = true;
            self.at_floor = false;
        }
        while self.recent.front().is_some_and(|t| now.duration_since(*t) >= HOUR) {
            self.recent.pop_front();
        }
        let current = (sample.frequency_mhz?, sample.core_voltage_mv?);
        let hot = hottest >= shutdown;
        let restore = match context.last_good {
            // Only once the firmware's protection replaced the configuration and the miner
            // is below the warning threshold again.
            Some(good) if context.protection_dropped && !same(good, current) => {
                let cooled = hottest < context.thresholds.warning_celsius - HYSTERESIS_CELSIUS;
                cooled.then_some(Plan::Restore {
                    frequency_mhz: good.0,
                    core_voltage_mv: good.1,
                })
            }
            _ => None,
        };
        let last = self.recent.back().copied();
        let cooled_down = last.is_none_or(|t| now.duration_since(t) >= COOL_DOWN);
        let paused = sample.mining_paused == Some(true);
        let wanted = match self.protection.action {
            ProtectiveAction::None => None,
            _ if self.at_floor => None,
            ProtectiveAction::StepDown => hot.then_some(Plan::StepDown),
            ProtectiveAction::Pause if !paused => hot.then_some(Plan::Pause),
            // Paused and still over the threshold a whole cool-down later (or a firmware
            // that reports itself paused and goes on hashing): a step down as well.
            ProtectiveAction::Pause => (hot && cooled_down).then_some(Plan::StepDown),
            ProtectiveAction::RestoreLastGood => restore,
        };
        // A failed attempt is tried again while its reason holds, without waiting for the
        // cool-down: nothing was done.
        if let Some(retry) = self.retry {
            // A write reported failed that the miner took after all (a late read-back):
            // it was an action, with its cool-down.
            let applied_late = retry.from.is_some_and(|from| {
                (current.0 < from.0 - 1e-6 || current.1 < from.1 - 0.5)
                    && current.0 <= from.0 + 1e-6
                    && current.1 <= from.1 + 0.5
            });
            if applied_late && !matches!(wanted, Some(Plan::Restore { .. })) {
                self.retry = None;
                self.armed = false;
                self.recent.push_back(now);
                return None;
            }
            let Some(plan) = wanted else {
                self.retry = None;
                return None;
            };
            if now < retry.at {
                return None;
            }
            return Some(match plan {
                Plan::Pause if retry.step_down_instead => Plan::StepDown,
                plan => plan,
            });
        }
        // Still over the threshold a whole cool-down after an action: it did not help enough.
        if hot && cooled_down {
            self.armed = true;
        }
        let allowed = self.recent.len() < MAX_PER_HOUR && cooled_down;
        let plan = wanted?;
        if !allowed || (!self.armed && !matches!(plan, Plan::Restore { .. })) {
            return None;
        }
        Some(plan)
    }

    /// Takes note of what an action did: a success (or dry run) counts against the
    /// cool-down and the cap; a failure is retried with a back-off.
    pub fn record(&mut self, now: Instant, plan: &Plan, outcome: &Outcome) {
        self.record_from(now, plan, outcome, None);
    }

    /// [`Protector::record`], knowing what the miner ran (MHz, mV) when the action began.
    pub fn record_from(&mut self, now: Instant, plan: &Plan, outcome: &Outcome, from: Option<(f64, f64)>) {
        self.armed = false;
        if outcome.at_floor {
            // Nothing lower to go to: said once, not retried until the miner cools.
            self.retry = None;
            self.at_floor = true;
            return;
        }
        if outcome.result == "failed" {
            let failures = self.retry.map_or(0, |r| r.failures) + 1;
            let wait = self
                .retry_after
                .saturating_mul(1 << (failures - 1).min(8))
                .min(MAX_RETRY_AFTER);
            self.retry = Some(Retry {
                at: now + wait,
                failures,
                step_down_instead: matches!(plan, Plan::Pause) || self.retry.is_some_and(|r| r.step_down_instead),
                from: self.retry.and_then(|r| r.from).or(from),
            });
        } else {
            self.retry = None;
            self.recent.push_back(now);
        }
    }
}

fn same(a: (f64, f64), b: (f64, f64)) -> bool {
    (a.0 - b.0).abs() < 0.01 && (a.1 - b.1).abs() < 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(celsius: f64) -> Sample {
        Sample {
            asic_temp_celsius: Some(celsius),
            frequency_mhz: Some(600.0),
            core_voltage_mv: Some(1200.0),
            ..Sample::default()
        }
    }

    fn context(dropped: bool) -> Context {
        Context {
            thresholds: Thresholds::default(),
            last_good: Some((550.0, 1150.0)),
            protection_dropped: dropped,
        }
    }

    fn applied(action: &'static str) -> Outcome {
        Outcome {
            action,
            result: "applied",
            detail: String::new(),
            at_floor: false,
        }
    }

    fn failed(action: &'static str) -> Outcome {
        Outcome {
            action,
            result: "failed",
            detail: String::new(),
            at_floor: false,
        }
    }

    /// The first retry after a failure, for a 20-s poll interval.
    const RETRY_AFTER: Duration = Duration::from_secs(20);

    fn protector(action: ProtectiveAction) -> Protector {
        Protector::new(Protection { action, dry_run: false }, RETRY_AFTER)
    }

    fn step_down() -> Protector {
        protector(ProtectiveAction::StepDown)
    }

    /// Considers a reading and, when an action comes out, records it as `outcome`.
    fn act(protector: &mut Protector, at: Instant, celsius: f64, outcome: fn(&'static str) -> Outcome) -> Option<Plan> {
        let plan = protector.consider(at, &hot(celsius), &context(false))?;
        protector.record(at, &plan, &outcome("step_down"));
        Some(plan)
    }

    #[test]
    fn none_never_acts_and_step_down_repeats_only_after_the_cool_down_within_the_cap() {
        let start = Instant::now();
        let mut none = Protector::new(Protection::default(), RETRY_AFTER);
        assert_eq!(none.consider(start, &hot(90.0), &context(true)), None);

        let mut protector = step_down();
        assert_eq!(act(&mut protector, start, 69.9, applied), None);
        assert_eq!(act(&mut protector, start, 70.0, applied), Some(Plan::StepDown));
        // Still hot within the cool-down: nothing more yet.
        assert_eq!(act(&mut protector, start + COOL_DOWN / 2, 71.0, applied), None);
        // Still hot a whole cool-down later: the step did not help enough, one more.
        assert_eq!(
            act(&mut protector, start + COOL_DOWN, 71.0, applied),
            Some(Plan::StepDown)
        );
        // Cooled, then hot again within the cool-down: nothing.
        assert_eq!(
            act(&mut protector, start + COOL_DOWN + COOL_DOWN / 2, 60.0, applied),
            None
        );
        assert_eq!(
            act(
                &mut protector,
                start + COOL_DOWN * 2 - Duration::from_secs(1),
                72.0,
                applied
            ),
            None
        );
        // The third in the hour…
        assert_eq!(
            act(&mut protector, start + COOL_DOWN * 2, 72.0, applied),
            Some(Plan::StepDown)
        );
        // …and the cap: no fourth until the first is an hour old.
        assert_eq!(act(&mut protector, start + COOL_DOWN * 3, 72.0, applied), None);
        assert_eq!(act(&mut protector, start + COOL_DOWN * 5, 72.0, applied), None);
        assert_eq!(act(&mut protector, start + HOUR, 72.0, applied), Some(Plan::StepDown));
    }

    #[test]
    fn a_failed_action_is_retried_with_a_back_off_while_the_miner_stays_hot() {
        let start = Instant::now();
        let mut protector = step_down();
        assert_eq!(act(&mut protector, start, 75.0, failed), Some(Plan::StepDown));
        assert_eq!(act(&mut protector, start + RETRY_AFTER / 2, 75.0, failed), None);
        assert_eq!(
            act(&mut protector, start + RETRY_AFTER, 75.0, failed),
            Some(Plan::StepDown)
        );
        // The second failure waits twice as long.
        let second = start + RETRY_AFTER;
        assert_eq!(act(&mut protector, second + RETRY_AFTER, 75.0, failed), None);
        assert_eq!(
            act(&mut protector, second + RETRY_AFTER * 2, 75.0, applied),
            Some(Plan::StepDown)
        );
        // Once one worked, the cool-down applies again.
        let worked = second + RETRY_AFTER * 2;
        assert_eq!(act(&mut protector, worked + RETRY_AFTER * 4, 75.0, applied), None);
        // Failures never count against the cap: 14 minutes of failures, then three actions.
        let mut stubborn = step_down();
        let mut at = start;
        let mut attempts = 0;
        while at < start + Duration::from_secs(14 * 60) {
            if act(&mut stubborn, at, 75.0, failed).is_some() {
                attempts += 1;
            }
            at += Duration::from_secs(5);
        }
        assert!((4..=8).contains(&attempts), "{attempts} attempts in 14 minutes");
        // A miner that cooled is not retried.
        let mut cooled = step_down();
        assert!(act(&mut cooled, start, 75.0, failed).is_some());
        assert_eq!(act(&mut cooled, start + RETRY_AFTER * 2, 60.0, failed), None);
        assert_eq!(act(&mut cooled, start + RETRY_AFTER * 3, 61.0, failed), None);
    }

    #[test]
    fn a_pause_that_failed_falls_back_to_a_step_down() {
        let start = Instant::now();
        let mut protector = protector(ProtectiveAction::Pause);
        let plan = protector.consider(start, &hot(75.0), &context(false));
        assert_eq!(plan, Some(Plan::Pause));
        protector.record(start, &Plan::Pause, &failed("pause"));
        assert_eq!(
            protector.consider(start + RETRY_AFTER, &hot(75.0), &context(false)),
            Some(Plan::StepDown)
        );
    }

    #[test]
    fn a_restart_remembers_the_cool_down_and_the_cap_from_the_ledger() {
        let now = Instant::now() + HOUR * 2;
        // Acted two minutes ago: still in the cool-down.
        let mut recent = step_down();
        recent.remember(now, &[Duration::from_secs(120)]);
        assert_eq!(act(&mut recent, now, 75.0, applied), None);
        assert_eq!(act(&mut recent, now + COOL_DOWN, 75.0, applied), Some(Plan::StepDown));
        // Three in the last hour: the cap holds across the restart.
        let mut capped = step_down();
        capped.remember(
            now,
            &[
                Duration::from_secs(3000),
                Duration::from_secs(2000),
                Duration::from_secs(1000),
            ],
        );
        assert_eq!(act(&mut capped, now, 75.0, applied), None);
        assert_eq!(
            act(&mut capped, now + Duration::from_secs(601), 75.0, applied),
            Some(Plan::StepDown)
        );
        // Older than an hour: forgotten.
        let mut old = step_down();
        old.remember(now, &[Duration::from_secs(4000)]);
        assert_eq!(act(&mut old, now, 75.0, applied), Some(Plan::StepDown));
    }

    #[test]
    fn restore_last_good_waits_for_the_protections_drop_and_the_cooling() {
        let start = Instant::now();
        let mut protector = protector(ProtectiveAction::RestoreLastGood);
        let mut dropped = hot(72.0);
        dropped.frequency_mhz = Some(500.0);
        dropped.core_voltage_mv = Some(1100.0);
        assert_eq!(protector.consider(start, &dropped, &context(true)), None, "still hot");
        dropped.asic_temp_celsius = Some(58.0);
        assert_eq!(
            protector.consider(start, &dropped, &context(false)),
            None,
            "no drop by the firmware"
        );
        assert_eq!(
            protector.consider(start, &dropped, &context(true)),
            Some(Plan::Restore {
                frequency_mhz: 550.0,
                core_voltage_mv: 1150.0
            })
        );
    }

    #[test]
    fn a_failure_the_miner_took_late_counts_as_an_action_and_the_floor_is_not_retried() {
        let start = Instant::now();
        // Reported failed (the read-back gave up), applied a moment later: the next poll
        // shows lower settings, which is an action with its cool-down, not a retry.
        let mut late = step_down();
        let plan = late.consider(start, &hot(75.0), &context(false)).unwrap();
        late.record_from(start, &plan, &failed("step_down"), Some((600.0, 1200.0)));
        let mut lower = hot(75.0);
        lower.frequency_mhz = Some(550.0);
        lower.core_voltage_mv = Some(1150.0);
        assert_eq!(late.consider(start + RETRY_AFTER, &lower, &context(false)), None);
        assert_eq!(late.consider(start + COOL_DOWN / 2, &lower, &context(false)), None);
        let seen_lower = start + RETRY_AFTER;
        assert_eq!(
            late.consider(seen_lower + COOL_DOWN, &lower, &context(false)),
            Some(Plan::StepDown)
        );
        // At the bottom of the lists: said once, then quiet until the miner cools.
        let mut floor = step_down();
        let plan = floor.consider(start, &hot(75.0), &context(false)).unwrap();
        let mut bottom = failed("step_down");
        bottom.at_floor = true;
        floor.record(start, &plan, &bottom);
        for minutes in [1, 10, 30, 59] {
            let at = start + Duration::from_secs(60 * minutes);
            assert_eq!(floor.consider(at, &hot(75.0), &context(false)), None, "{minutes} min");
        }
        let _ = floor.consider(start + HOUR, &hot(60.0), &context(false));
        assert_eq!(
            floor.consider(start + HOUR, &hot(75.0), &context(false)),
            Some(Plan::StepDown)
        );
    }

    #[test]
    fn a_paused_miner_still_over_the_threshold_a_cool_down_later_is_stepped_down() {
        let start = Instant::now();
        let mut protector = protector(ProtectiveAction::Pause);
        let plan = protector.consider(start, &hot(75.0), &context(false)).unwrap();
        assert_eq!(plan, Plan::Pause);
        protector.record(start, &plan, &applied("pause"));
        let mut paused = hot(75.0);
        paused.mining_paused = Some(true);
        assert_eq!(
            protector.consider(start + COOL_DOWN / 2, &paused, &context(false)),
            None
        );
        assert_eq!(
            protector.consider(start + COOL_DOWN, &paused, &context(false)),
            Some(Plan::StepDown)
        );
    }
}
