//! The latest known state of every polled device: written by the pollers, read at scrape
//! time by `/metrics` and the web dashboard. Reading it never contacts a miner.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::axeos::sample::{ClockConfig, Sample};
use crate::axeos::{ErrorCounts, PollError};
use crate::config::{Config, MinerAddress, Protection, Thresholds};
use crate::daemon::events::{observe_failure, observe_success, DeviceEvent, Tracked};
use crate::daemon::health::{HealthTracker, Verdict};
use crate::daemon::sparkline::{HourOfHashrate, Sparkline};

#[derive(Debug)]
pub struct Fleet {
    devices: Vec<DeviceSlot>,
    poll_interval: Duration,
    /// How long the last good reading stays exposed.
    stale_after: Duration,
    thresholds: Thresholds,
    /// The analysis warm-up, exported so PromQL leaves out the same samples the ledger does.
    warmup: Duration,
    protection: Protection,
    /// `backfill.enabled`: holes are filled from the miners' own history.
    backfill: bool,
    polls_total: AtomicU64,
}

#[derive(Debug)]
struct DeviceSlot {
    name: String,
    address: MinerAddress,
    state: Mutex<DeviceState>,
    /// Kept apart from `state`, which every scrape copies.
    sparkline: Mutex<Sparkline>,
    /// Where the miner answers now, when discovery found it away from its configured
    /// address.
    moved_to: Mutex<Option<MinerAddress>>,
    /// How long ago an earlier run of the daemon acted on this miner (the last hour, from
    /// the ledger), for the protector's cool-down and cap.
    past_protective: Mutex<Vec<Duration>>,
    /// A protective action is being carried out (shutdown waits for it to be recorded).
    protecting: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone, Default)]
struct DeviceState {
    sample: Option<Arc<Sample>>,
    last_success: Option<(Instant, SystemTime)>,
    last_attempt: Option<(Instant, SystemTime)>,
    last_error: Option<PollError>,
    last_duration: Option<Duration>,
    errors_by_kind: ErrorCounts,
    /// When the current configuration segment began, as far as this process saw it: the
    /// first poll, or the last retune, reboot or firmware change.
    config_since: Option<Instant>,
    /// Readings dropped as implausible, by field.
    implausible: BTreeMap<&'static str, u64>,
    consecutive_failures: u32,
    tracked: Tracked,
    /// "Is it really mining?": the history the verdicts need, and the latest verdict.
    health: HealthTracker,
    verdict: Option<Verdict>,
    /// The firmware's overheat protection replaced this configuration (from, to); cleared
    /// by the next configuration change.
    protection_drop: Option<(ClockConfig, ClockConfig)>,
    /// The current configuration's steady readings (after the warm-up), and when the last
    /// one was taken: what the rule for a good configuration judges live.
    steady: crate::analysis::good::SteadyTally,
    steady_at: Option<Instant>,
    /// The newest configuration that ran good ([`crate::analysis::good`]).
    last_good: Option<ClockConfig>,
    /// Protective actions by (action, result).
    protective: BTreeMap<(&'static str, &'static str), u64>,
    /// A sweep that stopped without putting this miner back.
    tune_interrupted: Option<InterruptedSweep>,
}

/// A `tune` run that left a miner on a step's settings (killed, crashed, or its restore
/// failed): what the ledger's restore plan says.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptedSweep {
    pub run_id: i64,
    /// The settings from before the sweep (MHz, mV).
    pub original: (Option<f64>, Option<f64>),
}

/// A copy of one device's state at one instant, for rendering.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub name: String,
    pub address: MinerAddress,
    /// The last successful poll is younger than `stale_after` (the latest attempt may have
    /// failed: one failed poll does not take a device down).
    pub up: bool,
    /// The latest attempt succeeded.
    pub last_poll_ok: bool,
    /// The latest good sample; `Some` only when `up`.
    pub sample: Option<Arc<Sample>>,
    pub last_success_unix: Option<f64>,
    pub last_attempt_age: Option<Duration>,
    pub last_error: Option<String>,
    pub last_duration: Option<Duration>,
    pub errors_by_kind: ErrorCounts,
    pub implausible: BTreeMap<&'static str, u64>,
    /// Time since the current configuration segment began; `Some` only when `up`.
    pub config_age: Option<Duration>,
    /// Whether it is really mining, as of the latest good sample; `Some` only when `up`
    /// (the time since the last share counted to `now`).
    pub verdict: Option<Verdict>,
    /// (from, to) while the device runs what its overheat protection left behind.
    pub protection_drop: Option<(ClockConfig, ClockConfig)>,
    pub last_good: Option<ClockConfig>,
    /// Protective actions taken (or dry-run) by (action, result).
    pub protective: BTreeMap<(&'static str, &'static str), u64>,
    /// A sweep that stopped without putting this miner back.
    pub tune_interrupted: Option<InterruptedSweep>,
}

impl Fleet {
    pub fn new(config: &Config) -> Self {
        let devices = config
            .enabled_devices()
            .map(|d| DeviceSlot {
                name: d.name.clone(),
                address: d.address.clone(),
                state: Mutex::new(DeviceState {
                    protective: zero_protective_counts(config.protection),
                    ..DeviceState::default()
                }),
                sparkline: Mutex::new(Sparkline::default()),
                moved_to: Mutex::new(None),
                past_protective: Mutex::new(Vec::new()),
                protecting: std::sync::atomic::AtomicBool::new(false),
            })
            .collect();
        Self {
            devices,
            poll_interval: config.poll_interval,
            stale_after: config.poll_interval * config.stale_after_polls.max(1),
            thresholds: config.thresholds,
            warmup: config.warmup,
            protection: config.protection,
            backfill: config.backfill,
            polls_total: AtomicU64::new(0),
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Whether a poll that ends a hole asks the miner for its own history.
    pub fn backfill(&self) -> bool {
        self.backfill
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    pub fn warmup(&self) -> Duration {
        self.warmup
    }

    pub fn protection(&self) -> Protection {
        self.protection
    }

    /// What a protective decision for a device needs from its state.
    pub fn protector_context(&self, index: usize) -> crate::daemon::protect::Context {
        let state = self
            .devices
            .get(index)
            .map(|d| lock(&d.state).clone())
            .unwrap_or_default();
        let number = |s: &str| s.parse::<f64>().ok();
        crate::daemon::protect::Context {
            thresholds: self.thresholds,
            last_good: state
                .last_good
                .as_ref()
                .and_then(|c| Some((number(&c.frequency_mhz)?, number(&c.core_voltage_mv)?))),
            protection_dropped: state.protection_drop.is_some(),
        }
    }

    /// Sets each device's last good configuration as the ledger remembers it (at start:
    /// the verdicts of this run have not seen any yet).
    pub fn seed_last_good(&self, lookup: impl Fn(&str) -> Option<ClockConfig>) {
        for slot in &self.devices {
            if let Some(good) = lookup(&slot.name) {
                lock(&slot.state).last_good = Some(good);
            }
        }
    }

    /// Fills each device's last hour of hashrate from `lookup` ((Unix seconds, GH/s)
    /// oldest first, from the ledger), so a restart does not blank the sparklines.
    pub fn seed_sparklines(&self, lookup: impl Fn(&str) -> Vec<(f64, f64)>) {
        for slot in &self.devices {
            let mut line = lock(&slot.sparkline);
            for (t, hashrate) in lookup(&slot.name) {
                line.record(t, hashrate);
            }
        }
    }

    /// Marks a device as left behind by an interrupted sweep (or clears the mark).
    pub fn set_tune_interrupted(&self, index: usize, sweep: Option<InterruptedSweep>) {
        if let Some(slot) = self.devices.get(index) {
            lock(&slot.state).tune_interrupted = sweep;
        }
    }

    pub fn tune_interrupted(&self, index: usize) -> Option<InterruptedSweep> {
        self.devices
            .get(index)
            .and_then(|slot| lock(&slot.state).tune_interrupted.clone())
    }

    /// The latest successful reading of a device (whatever its age).
    pub fn latest_sample(&self, index: usize) -> Option<Arc<Sample>> {
        self.devices
            .get(index)
            .and_then(|slot| lock(&slot.state).sample.clone())
    }

    /// Sets when earlier runs acted on each device (how long ago), from `lookup`.
    pub fn seed_protective_actions(&self, lookup: impl Fn(&str) -> Vec<Duration>) {
        for slot in &self.devices {
            *lock(&slot.past_protective) = lookup(&slot.name);
        }
    }

    /// How long ago earlier runs acted on a device (taken once, by its poller).
    pub fn past_protective_actions(&self, index: usize) -> Vec<Duration> {
        self.devices
            .get(index)
            .map(|slot| std::mem::take(&mut *lock(&slot.past_protective)))
            .unwrap_or_default()
    }

    pub fn set_protecting(&self, index: usize, busy: bool) {
        if let Some(slot) = self.devices.get(index) {
            slot.protecting.store(busy, Ordering::SeqCst);
        }
    }

    /// Whether a protective action is being carried out on any device now.
    pub fn protecting(&self) -> bool {
        self.devices.iter().any(|slot| slot.protecting.load(Ordering::SeqCst))
    }

    /// Counts a protective action's outcome.
    pub fn record_protective(&self, index: usize, action: &'static str, result: &'static str) {
        if let Some(slot) = self.devices.get(index) {
            *lock(&slot.state).protective.entry((action, result)).or_default() += 1;
        }
    }

    pub fn polls_total(&self) -> u64 {
        self.polls_total.load(Ordering::Relaxed)
    }

    pub fn device_name(&self, index: usize) -> &str {
        self.devices.get(index).map_or("", |d| d.name.as_str())
    }

    /// Where a device is polled now: where discovery last found it, else its configured
    /// address.
    pub fn current_address(&self, index: usize) -> Option<MinerAddress> {
        let slot = self.devices.get(index)?;
        Some(lock(&slot.moved_to).clone().unwrap_or_else(|| slot.address.clone()))
    }

    /// Polls a device at `address` from now on (discovery found its MAC there), with the
    /// credentials configured for it.
    pub fn move_device(&self, index: usize, mut address: MinerAddress) {
        if let Some(slot) = self.devices.get(index) {
            address.credentials = slot.address.credentials.clone();
            *lock(&slot.moved_to) = Some(address);
        }
    }

    /// The MAC of a device's last good reading.
    pub fn last_mac(&self, index: usize) -> Option<String> {
        let slot = self.devices.get(index)?;
        let state = lock(&slot.state);
        state.sample.as_ref()?.identity.mac.clone()
    }

    /// Consecutive failed polls of a device (0 after a success).
    /// Whether a device's latest successful poll is fresh and its latest attempt succeeded.
    pub fn is_up(&self, index: usize) -> bool {
        self.devices.get(index).is_some_and(|slot| {
            let state = lock(&slot.state);
            state.last_error.is_none()
                && state
                    .last_success
                    .is_some_and(|(at, _)| at.elapsed() < self.stale_after)
        })
    }

    pub fn consecutive_failures(&self, index: usize) -> u32 {
        self.devices
            .get(index)
            .map_or(0, |d| lock(&d.state).consecutive_failures)
    }

    /// Stores a successful poll; returns what changed.
    pub fn record_success(&self, index: usize, sample: Arc<Sample>, duration: Duration) -> Vec<DeviceEvent> {
        self.polls_total.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = self.devices.get(index) else {
            return Vec::new();
        };
        let now = (Instant::now(), SystemTime::now());
        if let Some(hashrate) = sample.hashrate_ghs {
            lock(&slot.sparkline).record(crate::time::unix_seconds(now.1), hashrate);
        }
        let mut state = lock(&slot.state);
        for field in &sample.implausible {
            *state.implausible.entry(field).or_default() += 1;
        }
        let (tracked, mut events) = observe_success(&state.tracked, &sample, &self.thresholds);
        let verdict = state.health.observe(now.0, &sample);
        let before = state.verdict.as_ref().map(|v| v.problems.clone()).unwrap_or_default();
        events.extend(
            verdict
                .problems
                .iter()
                .filter(|p| !before.contains(p))
                .map(|p| DeviceEvent::MiningProblem {
                    problem: *p,
                    detail: verdict.detail(*p),
                }),
        );
        events.extend(
            before
                .iter()
                .filter(|p| !verdict.problems.contains(p))
                .map(|p| DeviceEvent::MiningRecovered { problem: *p }),
        );
        state.verdict = Some(verdict);
        let new_segment = events.iter().any(|e| {
            matches!(
                e,
                DeviceEvent::ConfigChanged { .. } | DeviceEvent::Rebooted { .. } | DeviceEvent::FirmwareChanged { .. }
            )
        });
        if new_segment || state.config_since.is_none() {
            state.config_since = Some(now.0);
            state.steady = crate::analysis::good::SteadyTally::default();
            state.steady_at = None;
        }
        for event in &events {
            match event {
                DeviceEvent::ConfigChanged { .. } => state.protection_drop = None,
                DeviceEvent::ProtectionChangedConfig { from, to } => {
                    state.protection_drop = Some((from.clone(), to.clone()));
                }
                _ => {}
            }
        }
        // The newest configuration that ran good — the one rule of analysis::good over its
        // steady readings (past the warm-up), while the miner is really mining: what a
        // protective restore goes back to.
        let settled = state
            .config_since
            .is_some_and(|since| now.0.saturating_duration_since(since) >= self.warmup);
        if settled {
            let gap = state
                .steady_at
                .map_or(0.0, |at| now.0.saturating_duration_since(at).as_secs_f64());
            state.steady.add(&sample, gap);
            state.steady_at = Some(now.0);
        }
        let rule = crate::analysis::good::Rule::new(self.thresholds.warning_celsius);
        // Never what the firmware's protection left behind: a restore goes back to the
        // configuration the user chose.
        if settled
            && state.protection_drop.is_none()
            && state.verdict.as_ref().is_some_and(Verdict::healthy)
            && tracked.temp_level == crate::daemon::events::TempLevel::Normal
            && rule.is_good(&state.steady.steady(true))
        {
            // The tracked clock is this sample's: copied only when it changed (no two
            // label strings built per poll).
            if state.last_good.as_ref() != tracked.clock.as_ref() {
                state.last_good = tracked.clock.clone();
            }
        }
        state.tracked = tracked;
        state.sample = Some(sample);
        state.last_success = Some(now);
        state.last_attempt = Some(now);
        state.last_error = None;
        state.last_duration = Some(duration);
        state.consecutive_failures = 0;
        events
    }

    /// Stores a failed poll; returns what changed.
    pub fn record_failure(&self, index: usize, error: PollError, duration: Duration) -> Vec<DeviceEvent> {
        self.polls_total.fetch_add(1, Ordering::Relaxed);
        let Some(slot) = self.devices.get(index) else {
            return Vec::new();
        };
        let mut state = lock(&slot.state);
        let (tracked, events) = observe_failure(&state.tracked, &error.to_string());
        state.tracked = tracked;
        state.errors_by_kind.add(error.kind());
        state.last_attempt = Some((Instant::now(), SystemTime::now()));
        state.last_error = Some(error);
        state.last_duration = Some(duration);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        events
    }

    /// Every device's last hour of hashrate, in the order of [`Fleet::views`].
    pub fn hours_of_hashrate(&self, now_unix: f64) -> Vec<HourOfHashrate> {
        self.devices
            .iter()
            .map(|slot| lock(&slot.sparkline).hour(now_unix))
            .collect()
    }

    /// Every device's state now. Each lock is held only to clone a few fields.
    pub fn views(&self) -> Vec<DeviceView> {
        self.views_at(Instant::now())
    }

    /// Every device's state as it will look at `now` (freshness is judged against it).
    pub(crate) fn views_at(&self, now: Instant) -> Vec<DeviceView> {
        let fresh_for = self.stale_after;
        self.devices
            .iter()
            .map(|slot| {
                let state = lock(&slot.state).clone();
                let fresh = state
                    .last_success
                    .is_some_and(|(at, _)| now.saturating_duration_since(at) < fresh_for);
                let up = fresh && state.sample.is_some();
                DeviceView {
                    name: slot.name.clone(),
                    address: slot.address.clone(),
                    up,
                    last_poll_ok: state.last_attempt.is_some() && state.last_error.is_none(),
                    sample: if up { state.sample } else { None },
                    last_success_unix: state.last_success.map(|(_, wall)| crate::time::unix_seconds(wall)),
                    last_attempt_age: state.last_attempt.map(|(at, _)| now.saturating_duration_since(at)),
                    last_error: state.last_error.map(|e| e.to_string()),
                    last_duration: state.last_duration,
                    errors_by_kind: state.errors_by_kind,
                    implausible: state.implausible,
                    config_age: state
                        .config_since
                        .filter(|_| up)
                        .map(|since| now.saturating_duration_since(since)),
                    protection_drop: state.protection_drop.clone(),
                    protective: state.protective.clone(),
                    tune_interrupted: state.tune_interrupted.clone(),
                    last_good: state.last_good.clone(),
                    verdict: state.verdict.filter(|_| up).map(|mut verdict| {
                        let since_poll = state
                            .last_success
                            .map_or(Duration::ZERO, |(at, _)| now.saturating_duration_since(at));
                        verdict.last_share_age = verdict.last_share_age.map(|age| age + since_poll);
                        verdict
                    }),
                }
            })
            .collect()
    }

    pub fn summary(&self) -> FleetSummary {
        FleetSummary::of(&self.views())
    }
}

/// The protective-action counters a configured action can raise, at 0 from the start, so
/// an alert sees its first increase (a counter born at 1 has no increase to see).
fn zero_protective_counts(protection: crate::config::Protection) -> BTreeMap<(&'static str, &'static str), u64> {
    if protection.action == crate::config::ProtectiveAction::None {
        return BTreeMap::new();
    }
    let results: &[&'static str] = if protection.dry_run {
        &["dry_run"]
    } else {
        &["applied", "failed"]
    };
    results
        .iter()
        .map(|result| ((protection.action.as_str(), *result), 0))
        .collect()
}

/// A poisoned lock only means a panic elsewhere while holding it; the state is plain data
/// and still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fleet in one line: devices up, total hashrate and power, fleet J/TH, hottest device.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSummary {
    pub devices: usize,
    pub up: usize,
    pub hashrate_ghs: f64,
    pub power_watts: f64,
    pub hottest: Option<(String, f64)>,
}

impl FleetSummary {
    pub fn of(views: &[DeviceView]) -> Self {
        let mut summary = FleetSummary {
            devices: views.len(),
            up: 0,
            hashrate_ghs: 0.0,
            power_watts: 0.0,
            hottest: None,
        };
        for view in views {
            let Some(sample) = &view.sample else { continue };
            summary.up += 1;
            summary.hashrate_ghs += sample.hashrate_ghs.unwrap_or(0.0);
            summary.power_watts += sample.power_watts.unwrap_or(0.0);
            if let Some(t) = sample.asic_temp_celsius {
                if summary.hottest.as_ref().is_none_or(|(_, hottest)| t > *hottest) {
                    summary.hottest = Some((view.name.clone(), t));
                }
            }
        }
        summary
    }

    /// Fleet J/TH: total power over total work rate.
    pub fn joules_per_terahash(&self) -> Option<f64> {
        (self.hashrate_ghs > 0.0).then(|| self.power_watts / (self.hashrate_ghs / 1000.0))
    }
}

impl fmt::Display for FleetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fleet: {}/{} up, {:.2} TH/s, {:.1} W",
            self.up,
            self.devices,
            self.hashrate_ghs / 1000.0,
            self.power_watts
        )?;
        if let Some(jth) = self.joules_per_terahash() {
            write!(f, ", {jth:.1} J/TH")?;
        }
        if let Some((name, t)) = &self.hottest {
            write!(f, ", hottest {name} at {t:.1} °C")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    #[test]
    fn summary_counts_up_devices_and_fleet_efficiency() {
        let config =
            parse("devices:\n  - {name: a, ip: 10.0.0.1}\n  - {name: b, ip: 10.0.0.2}\n  - {name: c, ip: 10.0.0.3}\n")
                .unwrap();
        let fleet = Fleet::new(&config);
        let sample = |ghs: f64, watts: f64, celsius: f64| Sample {
            hashrate_ghs: Some(ghs),
            power_watts: Some(watts),
            asic_temp_celsius: Some(celsius),
            ..Sample::default()
        };
        fleet.record_success(0, Arc::new(sample(1000.0, 18.0, 60.0)), Duration::from_millis(5));
        fleet.record_success(1, Arc::new(sample(500.0, 12.0, 66.5)), Duration::from_millis(5));
        fleet.record_failure(2, PollError::Timeout(Duration::from_secs(1)), Duration::from_secs(1));
        let summary = fleet.summary();
        assert_eq!(summary.up, 2);
        assert_eq!(
            summary.to_string(),
            "fleet: 2/3 up, 1.50 TH/s, 30.0 W, 20.0 J/TH, hottest b at 66.5 °C"
        );
        let views = fleet.views();
        assert!(views[0].up && views[1].up && !views[2].up);
        assert!(views[2].sample.is_none());
        assert_eq!(views[2].errors_by_kind.get(crate::axeos::PollErrorKind::Timeout), 1);
    }

    #[test]
    fn a_success_older_than_three_intervals_is_down() {
        let config = parse("devices:\n  - {name: a, ip: 10.0.0.1}\nlogging:\n  poll_interval: 10\n").unwrap();
        let fleet = Fleet::new(&config);
        assert!(!fleet.views()[0].up, "down before the first poll");
        fleet.record_success(0, Arc::new(Sample::default()), Duration::from_millis(5));
        let now = Instant::now();
        assert!(fleet.views_at(now + Duration::from_secs(29)).first().unwrap().up);
        let stale = fleet.views_at(now + Duration::from_secs(31));
        assert!(!stale[0].up);
        assert!(stale[0].sample.is_none(), "no device series from a stale sample");
    }

    #[test]
    fn one_failed_poll_keeps_the_last_good_reading_until_it_is_stale() {
        let config =
            parse("devices:\n  - {name: a, ip: 10.0.0.1}\nlogging:\n  poll_interval: 10\n  stale_after_polls: 2\n")
                .unwrap();
        let fleet = Fleet::new(&config);
        let reading = Sample {
            asic_temp_celsius: Some(68.0),
            ..Sample::default()
        };
        fleet.record_success(0, Arc::new(reading), Duration::from_millis(5));
        fleet.record_failure(0, PollError::Timeout(Duration::from_secs(1)), Duration::from_secs(1));
        let now = Instant::now();
        let view = &fleet.views_at(now + Duration::from_secs(10))[0];
        assert!(view.up, "one failed poll took the device down");
        assert!(!view.last_poll_ok);
        assert_eq!(view.sample.as_ref().and_then(|s| s.asic_temp_celsius), Some(68.0));
        assert!(!fleet.views_at(now + Duration::from_secs(21))[0].up);
    }
}
