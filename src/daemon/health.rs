//! "Is it really mining?": per-device verdicts from successive readings — shares that
//! stopped arriving, a hashrate frozen to the last digit, fewer shares than the reported
//! hashrate must find, readings no miner can produce, and the firmware's own "not mining"
//! flags. Pure: the fleet feeds it readings and their times, metrics and logs read it.

use std::time::{Duration, Instant};

use crate::axeos::sample::Sample;

/// Hashes per share at difficulty 1.
const HASHES_PER_DIFFICULTY: f64 = 4_294_967_296.0;
/// A stall is declared when no share has come for this many expected intervals: the
/// chance of that by luck alone is e^−6.91 = 0.1 % (Poisson).
pub(crate) const STALL_INTERVALS: f64 = 6.907_755;
/// Readings with a hashrate identical to the last digit that mean a frozen counter.
pub(crate) const FROZEN_READINGS: u32 = 10;
/// The expected share count a window needs before it is judged. At 150 the 3.29 σ floor is
/// 110 shares: a miner whose pool sees half its reported work (75 ± 8.7 shares) falls
/// below it in all but 3 windows in 100,000, where at 50 (floor 27, 25 ± 5 found) luck let a
/// third of such windows pass.
pub(crate) const SHARE_WINDOW_EXPECTED: f64 = 150.0;
/// z for a one-sided 0.05 % test: a healthy miner is called short once in 2,000 windows.
const SHARE_WINDOW_Z: f64 = 3.29;
/// Above this share of expected, a reported hashrate is not believed.
pub(crate) const MAX_PLAUSIBLE_RATIO: f64 = 1.5;
/// No Bitaxe chip does better than about 9 J/TH: less means the power reading is idle
/// while a hashrate is reported (a unit in overheat protection at 5 W, "online").
pub(crate) const MIN_PLAUSIBLE_JTH: f64 = 5.0;
/// A chip doing less than this share of its board's median chip is dead…
pub(crate) const CHIP_DEAD_RATIO: f64 = 0.1;
/// …and less than this share, weak.
pub(crate) const CHIP_WEAK_RATIO: f64 = 0.5;
/// Readings in a row a chip must lag before it is called: one reading of a chip is a few
/// seconds of its work, and a reconnect zeroes counters unevenly.
pub(crate) const CHIP_READINGS: u8 = 3;
/// Readings in a row without a firmware flag before its problem is over.
pub(crate) const FLAG_CLEAR_READINGS: u8 = 3;
/// Without a new job from the pool for this long, the pool has stopped sending work (pools
/// send one at least every block, and most every 30–60 s).
pub(crate) const NO_WORK_AFTER: Duration = Duration::from_secs(600);

/// Why a miner is not really mining: a bounded label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    SharesStalled,
    HashrateFrozen,
    ShareRateLow,
    ImplausibleReading,
    Overheat,
    PowerFault,
    Paused,
    /// The pool stopped sending work (`workReceived` flat), not the ASIC stopped hashing.
    NoWorkFromPool,
    /// One chip of a multi-chip board does (almost) nothing.
    ChipDead,
    /// One chip does far less than the others.
    ChipWeak,
    /// The firmware's `hardware_fault`: mining stopped.
    HardwareFault,
}

impl Problem {
    pub const ALL: [Problem; 11] = [
        Problem::SharesStalled,
        Problem::HashrateFrozen,
        Problem::ShareRateLow,
        Problem::ImplausibleReading,
        Problem::Overheat,
        Problem::PowerFault,
        Problem::Paused,
        Problem::NoWorkFromPool,
        Problem::ChipDead,
        Problem::ChipWeak,
        Problem::HardwareFault,
    ];

    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Problem::SharesStalled => "shares_stalled",
            Problem::HashrateFrozen => "hashrate_frozen",
            Problem::ShareRateLow => "share_rate_low",
            Problem::ImplausibleReading => "implausible_reading",
            Problem::Overheat => "overheat",
            Problem::PowerFault => "power_fault",
            Problem::Paused => "paused",
            Problem::NoWorkFromPool => "no_work_from_pool",
            Problem::ChipDead => "chip_dead",
            Problem::ChipWeak => "chip_weak",
            Problem::HardwareFault => "hardware_fault",
        }
    }

    /// What a person reads in the log.
    pub fn describe(self) -> &'static str {
        match self {
            Problem::SharesStalled => "no accepted share for far longer than the hashrate and difficulty explain",
            Problem::HashrateFrozen => "the reported hashrate has not changed to the last digit",
            Problem::ShareRateLow => "far fewer shares than the reported hashrate must find",
            Problem::ImplausibleReading => {
                "a reading no miner can produce (hashrate far above expected, or idle power while hashing)"
            }
            Problem::Overheat => "the firmware's overheat protection stopped mining",
            Problem::PowerFault => "the voltage regulator reports a fault",
            Problem::Paused => "mining is paused",
            Problem::NoWorkFromPool => {
                "the pool stopped sending work (no new job since the last accepted share, for over twice its usual gap)"
            }
            Problem::ChipDead => "one ASIC chip does almost nothing while the others hash",
            Problem::ChipWeak => "one ASIC chip does far less than the others",
            Problem::HardwareFault => "the firmware reports a hardware fault and stopped mining",
        }
    }
}

/// A chip that lags its board's others, by index from 0 (as `bitaxe_asic_chip_*{chip}`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaggingChip {
    pub index: usize,
    pub chips: usize,
    /// Its hashrate over the board's median chip.
    pub ratio: f64,
    pub dead: bool,
}

impl std::fmt::Display for LaggingChip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chip {} of {} ({}) hashes {:.0} % of the median chip",
            self.index,
            self.chips,
            if self.dead { "dead" } else { "weak" },
            100.0 * self.ratio
        )
    }
}

/// What the tracker knows of a device now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    pub problems: Vec<Problem>,
    /// Time since the accepted-share counter last rose (or since it was first seen).
    pub last_share_age: Option<Duration>,
    /// Mean time between shares at the reported hashrate and the pool's difficulty.
    pub expected_share_interval: Option<Duration>,
    /// The chips behind `chip_dead` / `chip_weak`.
    pub lagging_chips: Vec<LaggingChip>,
    /// The firmware's hardware-fault text behind `hardware_fault`, as sent (escape it).
    pub hardware_fault: Option<String>,
}

impl Verdict {
    /// What a person needs beyond the reason's words: which chip, which fault.
    pub fn detail(&self, problem: Problem) -> Option<String> {
        match problem {
            Problem::ChipDead | Problem::ChipWeak => {
                let dead = problem == Problem::ChipDead;
                let chips: Vec<String> = self
                    .lagging_chips
                    .iter()
                    .filter(|c| c.dead == dead)
                    .map(ToString::to_string)
                    .collect();
                (!chips.is_empty()).then(|| chips.join("; "))
            }
            Problem::HardwareFault => self.hardware_fault.clone(),
            _ => None,
        }
    }
}

impl Verdict {
    pub fn healthy(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One device's history, as far as the verdicts need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthTracker {
    accepted: Option<u64>,
    /// When the accepted counter was last seen to rise (or first seen).
    last_share_at: Option<Instant>,
    last_hashrate: Option<u64>,
    same_hashrate: u32,
    window: Option<ShareWindow>,
    /// The share-rate verdict of the last complete window.
    share_rate_low: bool,
    last_at: Option<Instant>,
    /// The pool's job counter and when it last moved.
    work_received: Option<u64>,
    work_changed_at: Option<Instant>,
    /// Whether the counter has been seen to change once (a gap needs two changes).
    work_seen_changing: bool,
    longest_job_gap: Option<Duration>,
    /// Readings in a row each chip has lagged.
    chip_strikes: Vec<u8>,
    /// Per firmware flag (overheat, power fault, paused, hardware fault): readings since it
    /// was last raised, `None` once cleared.
    flag_quiet: [Option<u8>; 4],
}

/// Shares found against shares expected since a starting point.
#[derive(Debug, Clone, Copy)]
struct ShareWindow {
    accepted_at_start: u64,
    expected: f64,
}

/// What the pool's job counter says about the pool.
#[derive(Debug, Clone, Copy)]
struct PoolQuiet {
    /// Quieter than twice its usual cadence, with no job since the last share.
    silent: bool,
    /// No job for NO_WORK_AFTER, and no share since the last one.
    quiet_long: bool,
}

impl HealthTracker {
    /// Takes a successful reading at `now` and returns the verdict.
    pub(crate) fn observe(&mut self, now: Instant, sample: &Sample) -> Verdict {
        // An impossible hashrate predicts nothing about shares: it is judged on its own.
        let believable = !implausible(sample);
        let hashrate_hs = sample.hashrate_ghs.filter(|h| *h > 0.0 && believable).map(|h| h * 1e9);
        let difficulty = sample.pool_difficulty.filter(|d| *d > 0.0);
        let expected_interval = match (hashrate_hs, difficulty) {
            (Some(h), Some(d)) => Some(d * HASHES_PER_DIFFICULTY / h).filter(|s| s.is_finite()),
            _ => None,
        };
        self.track_shares(now, sample, hashrate_hs, difficulty);
        self.track_hashrate_bits(sample, believable);
        let pool = self.track_work(now, sample);

        let last_share_age = self.last_share_at.map(|t| now.saturating_duration_since(t));
        let mut problems = Vec::new();
        // The most specific reason only: a frozen hashrate (the flatline bug) also stops the
        // shares, and a stall also leaves a window short.
        let frozen = self.same_hashrate + 1 >= FROZEN_READINGS;
        let stalled = matches!(
            (last_share_age, expected_interval),
            (Some(age), Some(interval)) if age.as_secs_f64() > STALL_INTERVALS * interval
        );
        if frozen {
            problems.push(Problem::HashrateFrozen);
        } else if (stalled && pool.silent) || pool.quiet_long {
            problems.push(Problem::NoWorkFromPool);
        } else if stalled {
            problems.push(Problem::SharesStalled);
        } else if self.share_rate_low {
            problems.push(Problem::ShareRateLow);
        }
        if !believable {
            problems.push(Problem::ImplausibleReading);
        }
        self.firmware_flags(sample, &mut problems);
        let lagging_chips = self.lagging_chips(sample);
        if lagging_chips.iter().any(|c| c.dead) {
            problems.push(Problem::ChipDead);
        }
        if lagging_chips.iter().any(|c| !c.dead) {
            problems.push(Problem::ChipWeak);
        }
        Verdict {
            problems,
            last_share_age,
            expected_share_interval: expected_interval.and_then(|s| Duration::try_from_secs_f64(s).ok()),
            lagging_chips,
            hardware_fault: sample.hardware_fault.clone(),
        }
    }

    /// The share counter: a rise is a share; a fall is a reboot (history starts again).
    fn track_shares(&mut self, now: Instant, sample: &Sample, hashrate_hs: Option<f64>, difficulty: Option<f64>) {
        let dt = self.last_at.map(|t| now.saturating_duration_since(t).as_secs_f64());
        match (self.accepted, sample.shares_accepted) {
            (Some(before), Some(now_count)) if now_count > before => {
                self.last_share_at = Some(now);
                self.add_to_window(now_count, hashrate_hs, difficulty, dt);
            }
            (Some(before), Some(now_count)) if now_count < before => {
                self.last_share_at = Some(now);
                self.window = None;
                self.share_rate_low = false;
            }
            (Some(_), Some(now_count)) => self.add_to_window(now_count, hashrate_hs, difficulty, dt),
            (None, Some(_)) => self.last_share_at = Some(now),
            _ => {}
        }
        self.accepted = sample.shares_accepted.or(self.accepted);
        self.last_at = Some(now);
    }

    /// The hashrate to the last bit, over successive readings (the same value again and
    /// again is the flatline bug, not a steady miner).
    fn track_hashrate_bits(&mut self, sample: &Sample, believable: bool) {
        let bits = sample.hashrate_ghs.filter(|h| *h > 0.0 && believable).map(f64::to_bits);
        if bits.is_some() && bits == self.last_hashrate {
            self.same_hashrate += 1;
        } else {
            self.same_hashrate = 0;
        }
        self.last_hashrate = bits;
    }

    /// The pool's job counter: any change (a reconnect restarts it) is new work. Its
    /// cadence (the longest gap seen between two changes) says how long a pool stays
    /// quiet when nothing is wrong.
    fn track_work(&mut self, now: Instant, sample: &Sample) -> PoolQuiet {
        if let Some(work) = sample.work_received {
            match (self.work_received, self.work_changed_at) {
                (Some(before), Some(changed)) if before != work => {
                    if self.work_seen_changing {
                        let gap = now.saturating_duration_since(changed);
                        self.longest_job_gap = Some(self.longest_job_gap.map_or(gap, |g| g.max(gap)));
                    }
                    self.work_seen_changing = true;
                    self.work_changed_at = Some(now);
                }
                (_, None) => self.work_changed_at = Some(now),
                _ => {}
            }
            self.work_received = Some(work);
        }
        let work_quiet_for = self
            .work_changed_at
            .filter(|_| sample.work_received.is_some())
            .map(|t| now.saturating_duration_since(t));
        // Quieter than twice its usual cadence, with no job since the last share: the pool's
        // side. Without a cadence seen yet, only a silence of NO_WORK_AFTER says so.
        let silent = match (
            work_quiet_for,
            self.longest_job_gap,
            self.last_share_at,
            self.work_changed_at,
        ) {
            (Some(quiet), Some(gap), Some(share), Some(changed)) => changed <= share && quiet > gap * 2,
            _ => false,
        };
        // A long silence alone is not enough: a pool that sends jobs only on a new block
        // (or a block that takes 15 minutes) is quiet while the pool accepts the miner's
        // shares on the job it has. Only with no share since its last job is it the pool's.
        let no_share_since_last_job = match (self.last_share_at, self.work_changed_at) {
            (Some(share), Some(changed)) => share <= changed,
            _ => true,
        };
        let quiet_long = no_share_since_last_job && work_quiet_for.is_some_and(|quiet| quiet >= NO_WORK_AFTER);
        PoolQuiet { silent, quiet_long }
    }

    /// The firmware's own flags: raised at once, cleared only after FLAG_CLEAR_READINGS
    /// readings without them, so a flag that flickers between polls is one problem (one
    /// event, one log line), not one per poll.
    fn firmware_flags(&mut self, sample: &Sample, problems: &mut Vec<Problem>) {
        let flags = [
            (Problem::Overheat, sample.overheat == Some(true)),
            (Problem::PowerFault, sample.power_fault.is_some()),
            (Problem::Paused, sample.mining_paused == Some(true)),
            (Problem::HardwareFault, sample.hardware_fault.is_some()),
        ];
        for (index, (problem, raised)) in flags.into_iter().enumerate() {
            let quiet = &mut self.flag_quiet[index];
            *quiet = match (raised, *quiet) {
                (true, _) => Some(0),
                (false, Some(n)) if n + 1 < FLAG_CLEAR_READINGS => Some(n + 1),
                (false, _) => None,
            };
            if quiet.is_some() {
                problems.push(problem);
            }
        }
    }

    /// Chips far below their board's median chip for CHIP_READINGS readings in a row. Not
    /// judged while the median is 0 (v2.14+ zeroes every chip at each new block) or with
    /// fewer than two chips reporting.
    fn lagging_chips(&mut self, sample: &Sample) -> Vec<LaggingChip> {
        let rates: Vec<Option<f64>> = sample.chips.iter().map(|c| c.hashrate_ghs).collect();
        let mut known: Vec<f64> = rates.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let median = match known.len() {
            0 | 1 => None,
            n if n % 2 == 1 => Some(known[n / 2]),
            n => Some((known[n / 2 - 1] + known[n / 2]) / 2.0),
        }
        .filter(|m| *m > 0.0);
        self.chip_strikes.resize(rates.len(), 0);
        let Some(median) = median else {
            self.chip_strikes.iter_mut().for_each(|s| *s = 0);
            return Vec::new();
        };
        let mut lagging = Vec::new();
        for (index, rate) in rates.iter().enumerate() {
            let ratio = rate.map(|r| r / median);
            let strikes = &mut self.chip_strikes[index];
            match ratio {
                Some(ratio) if ratio < CHIP_WEAK_RATIO => {
                    *strikes = strikes.saturating_add(1);
                    if *strikes >= CHIP_READINGS {
                        lagging.push(LaggingChip {
                            index,
                            chips: rates.len(),
                            ratio,
                            dead: ratio < CHIP_DEAD_RATIO,
                        });
                    }
                }
                Some(_) => *strikes = 0,
                None => {}
            }
        }
        lagging
    }

    /// Adds the shares the last interval should have found; judges a full window.
    fn add_to_window(&mut self, accepted: u64, hashrate_hs: Option<f64>, difficulty: Option<f64>, dt: Option<f64>) {
        let (Some(h), Some(d), Some(dt)) = (hashrate_hs, difficulty, dt) else {
            return;
        };
        let window = self.window.get_or_insert(ShareWindow {
            accepted_at_start: accepted,
            expected: 0.0,
        });
        window.expected += h * dt / (d * HASHES_PER_DIFFICULTY);
        if window.expected >= SHARE_WINDOW_EXPECTED {
            let found = accepted.saturating_sub(window.accepted_at_start) as f64;
            let floor = window.expected - SHARE_WINDOW_Z * window.expected.sqrt();
            self.share_rate_low = found < floor;
            self.window = Some(ShareWindow {
                accepted_at_start: accepted,
                expected: 0.0,
            });
        }
    }
}

/// A hashrate far above what the chips can do, a reading the decoder dropped, or a power
/// reading at idle level while hashing is reported.
fn implausible(sample: &Sample) -> bool {
    let dropped = sample
        .implausible
        .iter()
        .any(|f| matches!(*f, "hashrate_ghs" | "power_watts"));
    let too_fast = matches!(
        (sample.hashrate_ghs, sample.expected_hashrate_ghs),
        (Some(h), Some(e)) if e > 0.0 && h > MAX_PLAUSIBLE_RATIO * e
    );
    let idle_power = matches!(
        (sample.power_watts, sample.hashrate_ghs),
        (Some(p), Some(h)) if h > 0.0 && p / (h / 1000.0) < MIN_PLAUSIBLE_JTH
    );
    dropped || too_fast || idle_power
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(hashrate: f64, accepted: u64) -> Sample {
        Sample {
            hashrate_ghs: Some(hashrate),
            expected_hashrate_ghs: Some(1000.0),
            power_watts: Some(18.0),
            shares_accepted: Some(accepted),
            pool_difficulty: Some(1000.0),
            ..Sample::default()
        }
    }

    /// Polls every `step` for `polls`, with `shares(i)` accepted at poll i.
    fn run(polls: u32, step: Duration, hashrate: impl Fn(u32) -> f64, shares: impl Fn(u32) -> u64) -> Verdict {
        let mut tracker = HealthTracker::default();
        let start = Instant::now();
        let mut verdict = Verdict::default();
        for i in 0..polls {
            verdict = tracker.observe(start + step * i, &reading(hashrate(i), shares(i)));
        }
        verdict
    }

    #[test]
    fn a_healthy_miner_has_no_problem() {
        // 1 TH/s at difficulty 1000: a share every 4.3 s; polled every 5 s, one share each.
        let verdict = run(400, Duration::from_secs(5), |i| 1000.0 + f64::from(i % 7), u64::from);
        assert!(verdict.healthy(), "{verdict:?}");
        let interval = verdict.expected_share_interval.unwrap().as_secs_f64();
        assert!((interval - 4.295).abs() < 0.01, "{interval}");
    }

    #[test]
    fn stopped_shares_stall_after_seven_intervals_and_a_frozen_hashrate_is_seen() {
        // Shares stop at poll 10; 4.3 s × 6.9 = 30 s later (6 polls) the stall is called.
        let stalled = |polls| {
            run(
                polls,
                Duration::from_secs(5),
                |i| 1000.0 + f64::from(i % 7),
                |i| u64::from(i.min(10)),
            )
        };
        assert!(!stalled(15).problems.contains(&Problem::SharesStalled));
        assert_eq!(stalled(18).problems, vec![Problem::SharesStalled]);
        assert_eq!(
            stalled(100).problems,
            vec![Problem::SharesStalled],
            "the stall, not also a short window"
        );
        let frozen = run(12, Duration::from_secs(5), |_| 1000.0, u64::from);
        assert_eq!(frozen.problems, vec![Problem::HashrateFrozen]);
    }

    #[test]
    fn half_the_shares_over_a_full_window_is_a_low_share_rate() {
        // A share expected every 4.3 s; found every 8.6 s. 150 expected shares take 645 s.
        let verdict = run(
            160,
            Duration::from_secs(5),
            |i| 1000.0 + f64::from(i % 7),
            |i| u64::from(i / 2),
        );
        assert_eq!(verdict.problems, vec![Problem::ShareRateLow]);
        let fine = run(160, Duration::from_secs(5), |i| 1000.0 + f64::from(i % 7), u64::from);
        assert!(fine.healthy(), "{fine:?}");
    }

    /// A Poisson draw with mean `lambda` (Knuth; the means here are small).
    fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> u64 {
        let limit = (-lambda).exp();
        let (mut count, mut product) = (0, rng.f64());
        while product > limit {
            count += 1;
            product *= rng.f64();
        }
        count
    }

    #[test]
    fn a_healthy_miner_with_random_shares_is_flagged_at_the_documented_rates_and_never_alerted() {
        // Eleven days of 5-s polls of a 1 TH/s miner at difficulty 1000 (a share every
        // 4.3 s), shares arriving at random as they do on a pool.
        let mut rng = fastrand::Rng::with_seed(11);
        let mut tracker = HealthTracker::default();
        let start = Instant::now();
        let step = Duration::from_secs(5);
        let lambda = 5.0 / 4.295;
        let (polls, mut accepted) = (200_000u32, 0u64);
        let (mut stalled_polls, mut low_polls, mut longest_stall) = (0u32, 0u32, 0u32);
        let mut run = 0u32;
        for i in 0..polls {
            accepted += poisson(&mut rng, lambda);
            let hashrate = 1000.0 * (1.0 + 0.02 * (rng.f64() - 0.5));
            let verdict = tracker.observe(start + step * i, &reading(hashrate, accepted));
            let stalled = verdict.problems.contains(&Problem::SharesStalled);
            stalled_polls += u32::from(stalled);
            low_polls += u32::from(verdict.problems.contains(&Problem::ShareRateLow));
            run = if stalled { run + 1 } else { 0 };
            longest_stall = longest_stall.max(run);
            assert!(
                !verdict.problems.contains(&Problem::HashrateFrozen)
                    && !verdict.problems.contains(&Problem::ImplausibleReading),
                "{verdict:?}"
            );
        }
        // A stall verdict at a poll: no share in the last 6 polls (30 s, 7 intervals), by
        // luck e^-7 = 0.09 % of polls; a short window 0.05 % of windows (each ~43 polls).
        let stalled_rate = f64::from(stalled_polls) / f64::from(polls);
        let low_rate = f64::from(low_polls) / f64::from(polls);
        eprintln!("stalled at {stalled_rate:.5} of polls, share rate low at {low_rate:.5}, longest stall {longest_stall} polls");
        assert!(stalled_rate < 0.002, "{stalled_rate}");
        assert!(low_rate < 0.002, "{low_rate}");
        // The alert waits 5 minutes (60 polls): luck never holds that long.
        assert!(longest_stall < 60, "{longest_stall}");
    }

    #[test]
    fn a_pool_that_sees_half_the_work_is_told_from_luck_in_nearly_every_window() {
        // The phantom: reports 1 TH/s while its shares arrive at random at half the rate
        // (difficulty 1000, a share expected every 4.3 s, found every 8.6 s on average).
        let mut rng = fastrand::Rng::with_seed(7);
        let mut tracker = HealthTracker::default();
        let start = Instant::now();
        let step = Duration::from_secs(5);
        let lambda = 5.0 / 4.295 / 2.0;
        let mut accepted = 0u64;
        let (mut judged, mut flagged) = (0u32, 0u32);
        let mut was_low = None;
        for i in 0..40_000u32 {
            accepted += poisson(&mut rng, lambda);
            let hashrate = 1000.0 * (1.0 + 0.02 * (rng.f64() - 0.5));
            let verdict = tracker.observe(start + step * i, &reading(hashrate, accepted));
            // The stall reason replaces the window's while a long gap lasts (the most
            // specific share reason only): either way the miner is shown not mining right.
            let low =
                verdict.problems.contains(&Problem::ShareRateLow) || verdict.problems.contains(&Problem::SharesStalled);
            // Each full window (~129 polls) judges once; count the polls after the first.
            if i > 200 {
                judged += 1;
                flagged += u32::from(low);
            }
            was_low = Some(low);
        }
        let rate = f64::from(flagged) / f64::from(judged);
        eprintln!("half-rate phantom flagged at {rate:.4} of polls");
        assert!(
            rate > 0.99,
            "a half-rate phantom passed as luck at {:.2} % of polls",
            100.0 * (1.0 - rate)
        );
        assert!(was_low.is_some());
    }

    #[test]
    fn a_dead_chip_is_named_after_three_readings_and_a_board_wide_zero_is_not_one() {
        use crate::axeos::sample::ChipReading;
        let chips = |rates: &[f64]| {
            rates
                .iter()
                .map(|r| ChipReading {
                    hashrate_ghs: Some(*r),
                    ..ChipReading::default()
                })
                .collect::<Vec<_>>()
        };
        let mut tracker = HealthTracker::default();
        let start = Instant::now();
        let mut sample = reading(1000.0, 1);
        sample.chips = chips(&[430.0, 0.5, 428.0, 431.0]);
        let verdicts: Vec<Verdict> = (0..3u32)
            .map(|i| {
                sample.shares_accepted = Some(u64::from(i) + 1);
                tracker.observe(start + Duration::from_secs(5) * i, &sample)
            })
            .collect();
        assert!(
            !verdicts[1].problems.contains(&Problem::ChipDead),
            "not on two readings"
        );
        assert_eq!(verdicts[2].problems, vec![Problem::ChipDead]);
        assert_eq!(
            verdicts[2].detail(Problem::ChipDead).as_deref(),
            Some("chip 1 of 4 (dead) hashes 0 % of the median chip")
        );
        // Every chip at 0 (a new block flushes the counters on v2.14+): no chip is blamed.
        sample.chips = chips(&[0.0, 0.0, 0.0, 0.0]);
        sample.shares_accepted = Some(10);
        let verdict = tracker.observe(start + Duration::from_secs(20), &sample);
        assert!(verdict.lagging_chips.is_empty(), "{verdict:?}");
        sample.chips = chips(&[430.0, 150.0, 428.0, 431.0]);
        let mut weak = Verdict::default();
        for i in 0..3u32 {
            sample.shares_accepted = Some(11 + u64::from(i));
            weak = tracker.observe(start + Duration::from_secs(25 + 5 * u64::from(i)), &sample);
        }
        assert_eq!(weak.problems, vec![Problem::ChipWeak]);
    }

    #[test]
    fn shares_that_stop_with_the_pools_jobs_are_the_pools_side() {
        // Shares stop at poll 10; with the job counter also flat since then, the stall is the
        // pool's; with jobs still arriving, it is the miner's.
        let run_with_work = |work_moves: bool| {
            let mut tracker = HealthTracker::default();
            let start = Instant::now();
            let mut verdict = Verdict::default();
            for i in 0..18u32 {
                let mut sample = reading(1000.0 + f64::from(i % 7), u64::from(i.min(10)));
                sample.work_received = Some(u64::from(if work_moves { i } else { i.min(10) }));
                verdict = tracker.observe(start + Duration::from_secs(5) * i, &sample);
            }
            verdict.problems
        };
        assert_eq!(run_with_work(false), vec![Problem::NoWorkFromPool]);
        assert_eq!(run_with_work(true), vec![Problem::SharesStalled]);
    }

    #[test]
    fn a_long_block_with_shares_still_accepted_is_not_a_pool_without_work() {
        // A pool that sends a job only on a new block (or a block that takes 15 minutes):
        // the job counter is flat while the miner keeps finding shares the pool accepts on
        // the job it has. That is mining, not a pool that stopped sending work.
        let run_with = |shares_flow: bool, hashrate_known: bool| {
            let mut tracker = HealthTracker::default();
            let start = Instant::now();
            let mut seen = Vec::new();
            for i in 0..240u32 {
                let jobs = if i < 60 { i / 6 } else { 10 };
                let accepted = if shares_flow { i } else { i.min(60) };
                let mut sample = reading(1000.0 + f64::from(i % 7), u64::from(accepted));
                if !hashrate_known {
                    sample.hashrate_ghs = None;
                }
                sample.work_received = Some(u64::from(jobs));
                let verdict = tracker.observe(start + Duration::from_secs(5) * i, &sample);
                seen.extend(verdict.problems);
            }
            seen.sort();
            seen.dedup();
            seen
        };
        assert_eq!(run_with(true, true), Vec::<Problem>::new());
        assert_eq!(run_with(true, false), Vec::<Problem>::new());
        // Jobs and shares both stopped: the pool's side, even where no stall can be judged.
        assert_eq!(run_with(false, false), vec![Problem::NoWorkFromPool]);
        assert!(run_with(false, true).contains(&Problem::NoWorkFromPool));
    }

    #[test]
    fn a_flickering_firmware_flag_is_one_problem_until_three_readings_without_it() {
        let mut tracker = HealthTracker::default();
        let start = Instant::now();
        let mut seen = Vec::new();
        for (i, fault) in [true, false, true, false, false, false, false].into_iter().enumerate() {
            let mut sample = reading(1000.0, i as u64);
            sample.hardware_fault = fault.then(|| "Fan Control Failed (Auto)".to_string());
            let verdict = tracker.observe(start + Duration::from_secs(5 * i as u64), &sample);
            seen.push(verdict.problems.contains(&Problem::HardwareFault));
        }
        assert_eq!(seen, [true, true, true, true, true, false, false]);
    }

    #[test]
    fn impossible_readings_and_firmware_flags_are_problems() {
        let mut spike = reading(200_000.0, 1);
        assert!(implausible(&spike));
        spike.hashrate_ghs = Some(1000.0);
        spike.power_watts = Some(3.0);
        assert!(implausible(&spike), "3 W for 1 TH/s is idle power");
        let mut tracker = HealthTracker::default();
        let mut flags = reading(1000.0, 1);
        flags.overheat = Some(true);
        flags.mining_paused = Some(true);
        flags.power_fault = Some("VIN_UV".into());
        flags.hardware_fault = Some("ASIC init failed".into());
        let verdict = tracker.observe(Instant::now(), &flags);
        assert_eq!(
            verdict.problems,
            vec![
                Problem::Overheat,
                Problem::PowerFault,
                Problem::Paused,
                Problem::HardwareFault
            ]
        );
        assert_eq!(
            verdict.detail(Problem::HardwareFault).as_deref(),
            Some("ASIC init failed")
        );
    }
}
