//! Segments of a device's history and their statistics, as pure functions: when a new
//! segment starts (clock configuration change, reboot, firmware change, a gap that cannot
//! be bridged), and the running steady-state aggregate a segment keeps so that comparing
//! configurations never rescans years of samples.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Why a segment started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// The first sample of a device.
    First,
    /// Frequency or core voltage changed.
    ConfigChanged,
    /// Uptime went down, or advanced less than the wall clock across a gap.
    Rebooted,
    /// The firmware version changed.
    FirmwareChanged,
    /// A gap in polling after which it is unknown whether the miner kept running.
    Gap,
    /// The exporter's clock stepped back further than a poll or two: rather than drop every
    /// sample until the clock catches up, the history continues in a new segment.
    ClockStep,
}

impl Boundary {
    pub fn as_str(self) -> &'static str {
        match self {
            Boundary::First => "first",
            Boundary::ConfigChanged => "config_changed",
            Boundary::Rebooted => "rebooted",
            Boundary::FirmwareChanged => "firmware_changed",
            Boundary::Gap => "gap",
            Boundary::ClockStep => "clock_step",
        }
    }

    pub fn parse(text: &str) -> Option<Boundary> {
        [
            Boundary::First,
            Boundary::ConfigChanged,
            Boundary::Rebooted,
            Boundary::FirmwareChanged,
            Boundary::Gap,
            Boundary::ClockStep,
        ]
        .into_iter()
        .find(|b| b.as_str() == text)
    }
}

/// What the boundary rules need to know of a segment's last sample, or of a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: f64,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub firmware: Option<String>,
    pub uptime_seconds: Option<u64>,
}

/// Whether `next` starts a new segment after `last`, and why. `max_gap` is the longest
/// silence (seconds) bridged without proof from the uptime that the miner kept running.
pub fn boundary(last: Option<&Point>, next: &Point, max_gap: f64) -> Option<Boundary> {
    let Some(last) = last else {
        return Some(Boundary::First);
    };
    if !same_setting(last.frequency_mhz, next.frequency_mhz)
        || !same_setting(last.core_voltage_mv, next.core_voltage_mv)
    {
        return Some(Boundary::ConfigChanged);
    }
    if let (Some(a), Some(b)) = (&last.firmware, &next.firmware) {
        if a != b {
            return Some(Boundary::FirmwareChanged);
        }
    }
    let elapsed = (next.t - last.t).max(0.0);
    match (last.uptime_seconds, next.uptime_seconds) {
        (Some(before), Some(now)) => {
            // Uptime cannot advance more slowly than the wall clock unless the miner
            // rebooted in between (a little slack for whole-second uptimes and clock skew).
            let slack = 30.0 + 0.01 * elapsed;
            if now < before || (now as f64) + slack < before as f64 + elapsed {
                return Some(Boundary::Rebooted);
            }
            None
        }
        _ if elapsed > max_gap => Some(Boundary::Gap),
        _ => None,
    }
}

fn same_setting(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (None, None) => true,
        _ => false,
    }
}

/// The readings of one stored sample that statistics use.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    /// Seconds this sample stands for (since the previous sample of its segment, capped).
    pub dt: f64,
    pub hashrate_ghs: Option<f64>,
    pub expected_ghs: Option<f64>,
    pub power_watts: Option<f64>,
    pub asic_celsius: Option<f64>,
    pub vr_celsius: Option<f64>,
    pub error_percent: Option<f64>,
    pub shares_accepted: Option<u64>,
    pub shares_rejected: Option<u64>,
}

/// The largest magnitude a reading may have to enter an aggregate. Far above any real
/// miner (a 1 EH/s reading is 1e9 GH/s), and small enough that sums of squares over
/// billions of samples stay finite.
const MAX_AGGREGATED: f64 = 1e12;

fn aggregatable(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && v.abs() <= MAX_AGGREGATED)
}

impl Reading {
    /// The reading with every value an aggregate could not hold (non-finite, absurdly
    /// large) removed, so that one bad sample cannot turn a segment's sums into infinity.
    pub(crate) fn aggregatable(&self) -> Reading {
        Reading {
            dt: if self.dt.is_finite() && self.dt >= 0.0 {
                self.dt.min(MAX_AGGREGATED)
            } else {
                0.0
            },
            hashrate_ghs: aggregatable(self.hashrate_ghs),
            expected_ghs: aggregatable(self.expected_ghs),
            power_watts: aggregatable(self.power_watts),
            asic_celsius: aggregatable(self.asic_celsius),
            vr_celsius: aggregatable(self.vr_celsius),
            error_percent: aggregatable(self.error_percent),
            ..*self
        }
    }
}

/// Histogram resolution: bins of 0.1 °C, and of 0.1 % of the expected hashrate.
const BINS_PER_CELSIUS: f64 = 10.0;
const BINS_PER_RATIO: f64 = 1000.0;

/// One hour of a device's samples as the rollups keep it (sums, counts, maxima).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HourSums {
    pub samples: u64,
    pub hashrate_n: u64,
    pub hashrate_sum: f64,
    pub expected_n: u64,
    pub expected_sum: f64,
    pub asic_n: u64,
    pub asic_sum: f64,
    pub asic_max: Option<f64>,
    pub vr_max: Option<f64>,
    pub eff_power_sum: f64,
    pub eff_hashrate_sum: f64,
}

/// Running statistics over a segment's steady-state samples. Mergeable, so that one
/// configuration's segments combine into one row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyStats {
    pub samples: u64,
    /// Of `samples`, those counted from hourly rollups (their raw samples were deleted by
    /// retention): they enter the means, J/TH and maxima, not the spread, median or p95.
    #[serde(default)]
    pub hourly_samples: u64,
    pub seconds: f64,
    /// Σ power·Δt over samples with both power and hashrate, joules.
    pub energy_joules: f64,
    /// Σ hashrate·Δt over the same samples, GH.
    pub work_gigahashes: f64,
    pub hashrate_n: u64,
    pub hashrate_sum: f64,
    pub hashrate_sq_sum: f64,
    pub expected_n: u64,
    pub expected_sum: f64,
    pub temp_n: u64,
    pub temp_sum: f64,
    pub temp_max: Option<f64>,
    pub vr_max: Option<f64>,
    pub error_n: u64,
    pub error_sum: f64,
    pub accepted: u64,
    pub rejected: u64,
    /// Last cumulative counters seen, to turn them into deltas.
    pub last_accepted: Option<u64>,
    pub last_rejected: Option<u64>,
    /// Hashrate as a fraction of expected, in bins of 0.1 %.
    pub ratio_bins: BTreeMap<u32, u64>,
    /// ASIC temperature in bins of 0.1 °C.
    pub temp_bins: BTreeMap<u32, u64>,
}

impl SteadyStats {
    pub fn add(&mut self, reading: &Reading) {
        let r = &reading.aggregatable();
        self.samples += 1;
        self.seconds += r.dt;
        if let (Some(p), Some(h)) = (r.power_watts, r.hashrate_ghs) {
            self.energy_joules += p * r.dt;
            self.work_gigahashes += h * r.dt;
        }
        if let Some(h) = r.hashrate_ghs {
            self.hashrate_n += 1;
            self.hashrate_sum += h;
            self.hashrate_sq_sum += h * h;
            if let Some(e) = r.expected_ghs.filter(|e| *e > 0.0) {
                let bin = (h / e * BINS_PER_RATIO).round().clamp(0.0, u32::MAX as f64) as u32;
                *self.ratio_bins.entry(bin).or_default() += 1;
            }
        }
        if let Some(e) = r.expected_ghs {
            self.expected_n += 1;
            self.expected_sum += e;
        }
        if let Some(t) = r.asic_celsius {
            self.temp_n += 1;
            self.temp_sum += t;
            self.temp_max = Some(self.temp_max.map_or(t, |m| m.max(t)));
            let bin = (t * BINS_PER_CELSIUS).round().clamp(0.0, u32::MAX as f64) as u32;
            *self.temp_bins.entry(bin).or_default() += 1;
        }
        if let Some(v) = r.vr_celsius {
            self.vr_max = Some(self.vr_max.map_or(v, |m| m.max(v)));
        }
        if let Some(e) = r.error_percent {
            self.error_n += 1;
            self.error_sum += e;
        }
        // Counters are cumulative since boot; a segment never spans a reboot.
        if let (Some(before), Some(now)) = (self.last_accepted, r.shares_accepted) {
            self.accepted += now.saturating_sub(before);
        }
        if let (Some(before), Some(now)) = (self.last_rejected, r.shares_rejected) {
            self.rejected += now.saturating_sub(before);
        }
        self.last_accepted = r.shares_accepted.or(self.last_accepted);
        self.last_rejected = r.shares_rejected.or(self.last_rejected);
    }

    /// Adds an hour of samples known only by its rollup sums; each sample stood for `dt`
    /// seconds (the segment's mean).
    pub fn add_hour(&mut self, hour: &HourSums, dt: f64) {
        self.samples += hour.samples;
        self.hourly_samples += hour.samples;
        self.seconds += hour.samples as f64 * dt;
        self.energy_joules += hour.eff_power_sum * dt;
        self.work_gigahashes += hour.eff_hashrate_sum * dt;
        self.hashrate_n += hour.hashrate_n;
        self.hashrate_sum += hour.hashrate_sum;
        self.expected_n += hour.expected_n;
        self.expected_sum += hour.expected_sum;
        self.temp_n += hour.asic_n;
        self.temp_sum += hour.asic_sum;
        self.temp_max = max_opt(self.temp_max, hour.asic_max);
        self.vr_max = max_opt(self.vr_max, hour.vr_max);
    }

    /// Adds another (disjoint) set of samples.
    pub fn merge(&mut self, other: &SteadyStats) {
        self.samples += other.samples;
        self.hourly_samples += other.hourly_samples;
        self.seconds += other.seconds;
        self.energy_joules += other.energy_joules;
        self.work_gigahashes += other.work_gigahashes;
        self.hashrate_n += other.hashrate_n;
        self.hashrate_sum += other.hashrate_sum;
        self.hashrate_sq_sum += other.hashrate_sq_sum;
        self.expected_n += other.expected_n;
        self.expected_sum += other.expected_sum;
        self.temp_n += other.temp_n;
        self.temp_sum += other.temp_sum;
        self.temp_max = max_opt(self.temp_max, other.temp_max);
        self.vr_max = max_opt(self.vr_max, other.vr_max);
        self.error_n += other.error_n;
        self.error_sum += other.error_sum;
        self.accepted += other.accepted;
        self.rejected += other.rejected;
        for (bin, n) in &other.ratio_bins {
            *self.ratio_bins.entry(*bin).or_default() += n;
        }
        for (bin, n) in &other.temp_bins {
            *self.temp_bins.entry(*bin).or_default() += n;
        }
    }

    /// True when every sum is a finite number (what can be stored and read back).
    pub fn is_finite(&self) -> bool {
        [
            self.seconds,
            self.energy_joules,
            self.work_gigahashes,
            self.hashrate_sum,
            self.hashrate_sq_sum,
            self.expected_sum,
            self.temp_sum,
            self.error_sum,
            self.temp_max.unwrap_or(0.0),
            self.vr_max.unwrap_or(0.0),
        ]
        .iter()
        .all(|v| v.is_finite())
    }

    pub fn mean_hashrate(&self) -> Option<f64> {
        (self.hashrate_n > 0).then(|| self.hashrate_sum / self.hashrate_n as f64)
    }

    pub(crate) fn mean_expected(&self) -> Option<f64> {
        (self.expected_n > 0).then(|| self.expected_sum / self.expected_n as f64)
    }

    /// Half-width of the 95 % confidence interval of the mean hashrate (Student's t).
    pub fn hashrate_ci95(&self) -> Option<f64> {
        let n = self.hashrate_n;
        // Hourly sums carry no spread: an interval over part of the data would mislead.
        if n < 2 || self.hourly_samples > 0 {
            return None;
        }
        let nf = n as f64;
        let mean = self.hashrate_sum / nf;
        let variance = ((self.hashrate_sq_sum - nf * mean * mean) / (nf - 1.0)).max(0.0);
        Some(t_95(n - 1) * (variance / nf).sqrt())
    }

    /// Median hashrate, GH/s (to 0.1 % of the expected hashrate).
    pub fn median_hashrate(&self) -> Option<f64> {
        Some(quantile(&self.ratio_bins, 0.5)? / BINS_PER_RATIO * self.mean_expected()?)
    }

    pub fn temp_mean(&self) -> Option<f64> {
        (self.temp_n > 0).then(|| self.temp_sum / self.temp_n as f64)
    }

    /// 95th percentile of the ASIC temperature (to 0.1 °C).
    pub fn temp_p95(&self) -> Option<f64> {
        Some(quantile(&self.temp_bins, 0.95)? / BINS_PER_CELSIUS)
    }

    /// Energy over work: Σ(power·Δt) / Σ(hashrate·Δt), in J/TH.
    pub fn joules_per_terahash(&self) -> Option<f64> {
        (self.work_gigahashes > 0.0).then(|| self.energy_joules / (self.work_gigahashes / 1000.0))
    }

    pub fn gigahashes_per_watt(&self) -> Option<f64> {
        (self.energy_joules > 0.0).then(|| self.work_gigahashes / self.energy_joules)
    }

    pub fn percent_of_expected(&self) -> Option<f64> {
        let expected = self.mean_expected().filter(|e| *e > 0.0)?;
        Some(self.mean_hashrate()? / expected * 100.0)
    }

    pub fn reject_percent(&self) -> Option<f64> {
        let total = self.accepted + self.rejected;
        (total > 0).then(|| self.rejected as f64 / total as f64 * 100.0)
    }

    pub fn error_percent(&self) -> Option<f64> {
        (self.error_n > 0).then(|| self.error_sum / self.error_n as f64)
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// The bin holding quantile `q` (nearest rank).
fn quantile(bins: &BTreeMap<u32, u64>, q: f64) -> Option<f64> {
    let total: u64 = bins.values().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (bin, n) in bins {
        seen += n;
        if seen >= rank {
            return Some(f64::from(*bin));
        }
    }
    None
}

/// Two-sided 95 % quantile of Student's t distribution.
pub fn t_95(degrees_of_freedom: u64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    match degrees_of_freedom {
        0 => f64::INFINITY,
        d @ 1..=30 => TABLE[d as usize - 1],
        d if d <= 60 => 2.000 + (2.042 - 2.000) * (60 - d) as f64 / 30.0,
        d if d <= 120 => 1.980 + (2.000 - 1.980) * (120 - d) as f64 / 60.0,
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t: f64, freq: f64, mv: f64, firmware: &str, uptime: Option<u64>) -> Point {
        Point {
            t,
            frequency_mhz: Some(freq),
            core_voltage_mv: Some(mv),
            firmware: Some(firmware.into()),
            uptime_seconds: uptime,
        }
    }

    #[test]
    fn first_sample_starts_a_segment() {
        assert_eq!(
            boundary(None, &point(0.0, 525.0, 1150.0, "v2.15.0", Some(10)), 90.0),
            Some(Boundary::First)
        );
    }

    #[test]
    fn config_change_starts_a_segment() {
        let a = point(0.0, 525.0, 1150.0, "v2.15.0", Some(100));
        assert_eq!(
            boundary(Some(&a), &point(30.0, 525.0, 1150.0, "v2.15.0", Some(130)), 90.0),
            None
        );
        assert_eq!(
            boundary(Some(&a), &point(30.0, 600.0, 1150.0, "v2.15.0", Some(130)), 90.0),
            Some(Boundary::ConfigChanged)
        );
        assert_eq!(
            boundary(Some(&a), &point(30.0, 525.0, 1200.0, "v2.15.0", Some(130)), 90.0),
            Some(Boundary::ConfigChanged)
        );
    }

    #[test]
    fn reboot_starts_a_segment() {
        let a = point(0.0, 525.0, 1150.0, "v2.15.0", Some(5000));
        assert_eq!(
            boundary(Some(&a), &point(30.0, 525.0, 1150.0, "v2.15.0", Some(20)), 90.0),
            Some(Boundary::Rebooted)
        );
    }

    #[test]
    fn firmware_change_starts_a_segment() {
        let a = point(0.0, 525.0, 1150.0, "v2.14.2", Some(5000));
        assert_eq!(
            boundary(Some(&a), &point(30.0, 525.0, 1150.0, "v2.15.0", Some(5030)), 90.0),
            Some(Boundary::FirmwareChanged)
        );
    }

    #[test]
    fn a_gap_while_offline() {
        let a = point(0.0, 525.0, 1150.0, "v2.15.0", Some(5000));
        // The miner kept running through an hour the exporter could not reach it: same
        // segment (the silence itself is not counted, see the writer's capped Δt).
        assert_eq!(
            boundary(Some(&a), &point(3600.0, 525.0, 1150.0, "v2.15.0", Some(8600)), 90.0),
            None
        );
        // Uptime advanced less than the wall clock: it rebooted during the gap.
        assert_eq!(
            boundary(Some(&a), &point(3600.0, 525.0, 1150.0, "v2.15.0", Some(5200)), 90.0),
            Some(Boundary::Rebooted)
        );
        // Without uptime there is no proof it kept running.
        let no_uptime = point(0.0, 525.0, 1150.0, "v2.15.0", None);
        assert_eq!(
            boundary(Some(&no_uptime), &point(3600.0, 525.0, 1150.0, "v2.15.0", None), 90.0),
            Some(Boundary::Gap)
        );
        assert_eq!(
            boundary(Some(&no_uptime), &point(60.0, 525.0, 1150.0, "v2.15.0", None), 90.0),
            None
        );
    }

    fn reading(dt: f64, hashrate: f64, power: f64) -> Reading {
        Reading {
            dt,
            hashrate_ghs: Some(hashrate),
            expected_ghs: Some(1000.0),
            power_watts: Some(power),
            ..Reading::default()
        }
    }

    #[test]
    fn efficiency_is_energy_over_work_not_the_mean_of_ratios() {
        // Two equal-length periods: 1000 GH/s at 20 W, then 500 GH/s at 15 W.
        let mut stats = SteadyStats::default();
        stats.add(&reading(30.0, 1000.0, 20.0));
        stats.add(&reading(30.0, 500.0, 15.0));
        // Per-sample J/TH are 20 and 30, whose mean is 25; energy over work is
        // (20+15)·30 J / ((1000+500)·30 GH) = 35/1.5 = 23.33 J/TH.
        let energy_weighted = stats.joules_per_terahash().unwrap();
        assert!((energy_weighted - 35.0 / 1.5).abs() < 1e-9, "{energy_weighted}");
        assert!((stats.gigahashes_per_watt().unwrap() - 1500.0 / 35.0).abs() < 1e-9);
        // A sample that stands for a longer time weighs more.
        let mut weighted = SteadyStats::default();
        weighted.add(&reading(10.0, 1000.0, 20.0));
        weighted.add(&reading(50.0, 500.0, 15.0));
        let expected = (20.0 * 10.0 + 15.0 * 50.0) / ((1000.0 * 10.0 + 500.0 * 50.0) / 1000.0);
        assert!((weighted.joules_per_terahash().unwrap() - expected).abs() < 1e-9);
    }

    #[test]
    fn confidence_interval_and_quantiles_by_hand() {
        let mut stats = SteadyStats::default();
        for h in [990.0, 1000.0, 1010.0, 1020.0, 980.0] {
            stats.add(&Reading {
                asic_celsius: Some(h / 20.0),
                ..reading(30.0, h, 18.0)
            });
        }
        // mean 1000, sample sd = sqrt((100+0+100+400+400)/4) = sqrt(250) = 15.811;
        // t(4) = 2.776; half-width = 2.776 · 15.811 / sqrt(5) = 19.629.
        assert_eq!(stats.mean_hashrate(), Some(1000.0));
        let ci = stats.hashrate_ci95().unwrap();
        assert!((ci - 2.776 * 250f64.sqrt() / 5f64.sqrt()).abs() < 1e-9, "{ci}");
        assert!((stats.median_hashrate().unwrap() - 1000.0).abs() < 1e-9);
        // Temperatures 49, 49.5, 50, 50.5, 51: p95 by nearest rank is the 5th, 51.
        assert!((stats.temp_p95().unwrap() - 51.0).abs() < 1e-9);
        assert_eq!(stats.temp_max, Some(51.0));
        assert!((stats.temp_mean().unwrap() - 50.0).abs() < 1e-9);
        assert_eq!(stats.percent_of_expected(), Some(100.0));
    }

    #[test]
    fn merging_equals_adding_everything_to_one() {
        let readings: Vec<Reading> = (0..20)
            .map(|i| Reading {
                shares_accepted: Some(100 + i * 3),
                shares_rejected: Some(i / 5),
                asic_celsius: Some(55.0 + i as f64 / 4.0),
                error_percent: Some(0.5),
                ..reading(30.0, 1000.0 + i as f64, 18.0 + i as f64 / 10.0)
            })
            .collect();
        let mut whole = SteadyStats::default();
        readings.iter().for_each(|r| whole.add(r));
        let (mut a, mut b) = (SteadyStats::default(), SteadyStats::default());
        readings[..8].iter().for_each(|r| a.add(r));
        readings[8..].iter().for_each(|r| b.add(r));
        a.merge(&b);
        // Share deltas across the split are lost in the parts (they are separate segments
        // in practice); everything else matches.
        assert_eq!(a.samples, whole.samples);
        assert!((a.joules_per_terahash().unwrap() - whole.joules_per_terahash().unwrap()).abs() < 1e-9);
        assert_eq!(a.temp_p95(), whole.temp_p95());
        assert_eq!(a.median_hashrate(), whole.median_hashrate());
        assert_eq!(whole.accepted, 57);
        assert_eq!(whole.rejected, 3);
        assert!((whole.reject_percent().unwrap() - 3.0 / 60.0 * 100.0).abs() < 1e-9);
    }
}
