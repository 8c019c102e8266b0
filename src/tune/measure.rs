//! What a step measured, from the ledger's steady samples: hashrate and J/TH with their
//! 95 % confidence intervals (the step ends when both are narrow enough), the health
//! verdict, and the score a configuration is ranked by.

use serde::{Deserialize, Serialize};

use crate::analysis::{Metric, MIN_PERCENT_OF_EXPECTED, MIN_STEADY_SAMPLES};
// Student's t, not the normal 1.96: a step judged on 7 samples needs t = 2.45, or its
// interval is a quarter too narrow and the step ends early.
use crate::ledger::segments::{t_95, Reading};

/// Shares a step needs before its reject rate stands in for an ASIC error rate.
const MIN_SHARES_FOR_REJECT_RATE: u64 = 20;

/// A step's steady-state figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub samples: u64,
    pub steady_seconds: f64,
    pub mean_hashrate_ghs: Option<f64>,
    /// Half-width of the hashrate's 95 % interval, % of the mean.
    pub hashrate_ci_percent: Option<f64>,
    /// Energy over work, J/TH.
    pub joules_per_terahash: Option<f64>,
    /// Half-width of J/TH's 95 % interval (ratio estimator), % of the value.
    pub jth_ci_percent: Option<f64>,
    pub mean_power_watts: Option<f64>,
    pub percent_of_expected: Option<f64>,
    /// The firmware's ASIC error rate (`errorPercentage`), mean; else the share reject rate
    /// once there are enough shares.
    pub error_percent: Option<f64>,
    pub error_source: Option<String>,
    pub asic_temp_max_c: Option<f64>,
    pub vr_temp_max_c: Option<f64>,
}

impl StepResult {
    /// Summarises steady readings (oldest first).
    pub fn from_readings(readings: &[(f64, Reading)]) -> StepResult {
        let mut result = StepResult {
            samples: readings.len() as u64,
            ..StepResult::default()
        };
        if let (Some(first), Some(last)) = (readings.first(), readings.last()) {
            result.steady_seconds = last.0 - first.0;
        }
        let hashrates: Vec<f64> = readings.iter().filter_map(|(_, r)| r.hashrate_ghs).collect();
        if let Some((mean, half)) = mean_and_ci(&hashrates) {
            result.mean_hashrate_ghs = Some(mean);
            result.hashrate_ci_percent = (mean > 0.0).then(|| half / mean * 100.0);
        }
        let pairs: Vec<(f64, f64)> = readings
            .iter()
            .filter_map(|(_, r)| Some((r.power_watts?, r.hashrate_ghs?)))
            .collect();
        if let Some((ratio, relative_half)) = ratio_and_ci(&pairs) {
            // W per GH/s is J/GH; a terahash is 1,000 gigahashes.
            result.joules_per_terahash = Some(ratio * 1000.0);
            result.jth_ci_percent = relative_half.map(|h| h * 100.0);
        }
        let powers: Vec<f64> = readings.iter().filter_map(|(_, r)| r.power_watts).collect();
        result.mean_power_watts = mean(&powers);
        let expected: Vec<f64> = readings.iter().filter_map(|(_, r)| r.expected_ghs).collect();
        if let (Some(h), Some(e)) = (result.mean_hashrate_ghs, mean(&expected).filter(|e| *e > 0.0)) {
            result.percent_of_expected = Some(h / e * 100.0);
        }
        let errors: Vec<f64> = readings.iter().filter_map(|(_, r)| r.error_percent).collect();
        if let Some(e) = mean(&errors) {
            result.error_percent = Some(e);
            result.error_source = Some("errorPercentage".into());
        } else if let Some(reject) = reject_percent(readings) {
            result.error_percent = Some(reject);
            result.error_source = Some("share reject rate".into());
        }
        result.asic_temp_max_c = max(readings.iter().filter_map(|(_, r)| r.asic_celsius));
        result.vr_temp_max_c = max(readings.iter().filter_map(|(_, r)| r.vr_celsius));
        result
    }

    /// Both intervals within ± `percent` on at least the minimum number of samples.
    pub fn converged(&self, percent: f64) -> bool {
        self.samples >= MIN_STEADY_SAMPLES
            && self.hashrate_ci_percent.is_some_and(|c| c <= percent)
            && self.jth_ci_percent.is_some_and(|c| c <= percent)
    }

    /// Enough steady samples to judge at all.
    pub fn enough_samples(&self) -> bool {
        self.samples >= MIN_STEADY_SAMPLES
    }

    /// Why the configuration is not healthy (empty when it is).
    pub fn health_problems(&self, max_error_percent: f64) -> Vec<String> {
        let mut problems = Vec::new();
        if self.samples < MIN_STEADY_SAMPLES {
            problems.push(format!(
                "only {} steady samples (needs {MIN_STEADY_SAMPLES})",
                self.samples
            ));
        }
        match self.percent_of_expected {
            Some(p) if p >= MIN_PERCENT_OF_EXPECTED => {}
            Some(p) => problems.push(format!("hashrate {p:.1} % of expected (< {MIN_PERCENT_OF_EXPECTED} %)")),
            None => problems.push("no hashrate against expected".into()),
        }
        if self.error_percent.is_none() {
            problems.push(format!(
                "no error rate to judge (no errorPercentage, fewer than {MIN_SHARES_FOR_REJECT_RATE} shares)"
            ));
        }
        if let Some(e) = self.error_percent.filter(|e| *e > max_error_percent) {
            let what = match self.error_source.as_deref() {
                Some("share reject rate") => "share rejects",
                _ => "ASIC errors",
            };
            problems.push(format!("{what} {e:.2} % (> {max_error_percent} %)"));
        }
        if self.joules_per_terahash.is_none() {
            problems.push("no power and hashrate to compute J/TH".into());
        }
        problems
    }

    /// Higher is better. `best` holds the best hashrate and J/TH among the candidates, for
    /// the balanced score (relative hashrate × relative efficiency, as `optimize` ranks).
    pub fn score(&self, metric: Metric, best: (f64, f64)) -> f64 {
        let h = self.mean_hashrate_ghs.unwrap_or(0.0);
        let j = self.joules_per_terahash.unwrap_or(f64::INFINITY);
        match metric {
            Metric::Efficiency => -j,
            Metric::Hashrate => h,
            Metric::Balanced => (h / best.0.max(f64::MIN_POSITIVE)) * (best.1 / j),
        }
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
}

/// Mean and the half-width of its 95 % interval (needs two values).
fn mean_and_ci(values: &[f64]) -> Option<(f64, f64)> {
    let m = mean(values)?;
    let n = values.len() as f64;
    if values.len() < 2 {
        return Some((m, f64::INFINITY));
    }
    let variance = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    Some((m, t_95(values.len() as u64 - 1) * (variance / n).sqrt()))
}

/// Σpower / Σhashrate and the relative half-width of its 95 % interval, by the delta
/// method for a ratio of means: var(R) ≈ var(p − R·h) / (n · h̄²).
fn ratio_and_ci(pairs: &[(f64, f64)]) -> Option<(f64, Option<f64>)> {
    let n = pairs.len() as f64;
    let power: f64 = pairs.iter().map(|p| p.0).sum();
    let work: f64 = pairs.iter().map(|p| p.1).sum();
    if pairs.is_empty() || work <= 0.0 {
        return None;
    }
    let ratio = power / work;
    if pairs.len() < 2 {
        return Some((ratio, None));
    }
    let mean_work = work / n;
    let residual_variance = pairs.iter().map(|(p, h)| (p - ratio * h).powi(2)).sum::<f64>() / (n - 1.0);
    let half = t_95(pairs.len() as u64 - 1) * (residual_variance / n).sqrt() / mean_work;
    Some((ratio, Some(half / ratio)))
}

/// Rejected shares as % of all shares over the readings, once there are enough of them.
fn reject_percent(readings: &[(f64, Reading)]) -> Option<f64> {
    let counts = |r: &Reading| Some((r.shares_accepted?, r.shares_rejected?));
    let first = readings.iter().find_map(|(_, r)| counts(r))?;
    let last = readings.iter().rev().find_map(|(_, r)| counts(r))?;
    let accepted = last.0.checked_sub(first.0)?;
    let rejected = last.1.checked_sub(first.1)?;
    let total = accepted + rejected;
    (total >= MIN_SHARES_FOR_REJECT_RATE).then(|| rejected as f64 / total as f64 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(hashrate: f64, power: f64, error: Option<f64>) -> Reading {
        Reading {
            dt: 1.0,
            hashrate_ghs: Some(hashrate),
            expected_ghs: Some(1000.0),
            power_watts: Some(power),
            asic_celsius: Some(60.0),
            vr_celsius: Some(50.0),
            error_percent: error,
            shares_accepted: None,
            shares_rejected: None,
        }
    }

    #[test]
    fn the_interval_narrows_with_samples_and_decides_the_step() {
        let noisy: Vec<(f64, Reading)> = (0..40)
            .map(|i| {
                let wobble = if i % 2 == 0 { 1.02 } else { 0.98 };
                (f64::from(i), reading(1000.0 * wobble, 15.0, Some(0.5)))
            })
            .collect();
        let early = StepResult::from_readings(&noisy[..8]);
        let late = StepResult::from_readings(&noisy);
        assert!(early.hashrate_ci_percent.unwrap() > late.hashrate_ci_percent.unwrap());
        assert!(!early.converged(1.0), "{early:?}");
        assert!(late.converged(1.0), "{late:?}");
        // 15 W over 1 TH/s.
        assert!((late.joules_per_terahash.unwrap() - 15.0).abs() < 0.01);
        assert!(late.health_problems(3.0).is_empty());
    }

    #[test]
    fn an_undervolt_with_errors_or_missing_hashrate_is_unhealthy() {
        let errors: Vec<(f64, Reading)> = (0..10)
            .map(|i| (f64::from(i), reading(990.0, 12.0, Some(8.0))))
            .collect();
        let problems = StepResult::from_readings(&errors).health_problems(3.0);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0], "ASIC errors 8.00 % (> 3 %)");
        let short: Vec<(f64, Reading)> = (0..10)
            .map(|i| (f64::from(i), reading(900.0, 12.0, Some(0.2))))
            .collect();
        let problems = StepResult::from_readings(&short).health_problems(3.0);
        assert!(problems[0].starts_with("hashrate 90.0 % of expected"), "{problems:?}");
        let unjudged: Vec<(f64, Reading)> = (0..10).map(|i| (f64::from(i), reading(1000.0, 12.0, None))).collect();
        let problems = StepResult::from_readings(&unjudged).health_problems(3.0);
        assert!(problems[0].starts_with("no error rate to judge"), "{problems:?}");
    }

    #[test]
    fn without_an_asic_error_rate_the_share_reject_rate_is_judged() {
        // Firmware before v2.15 (no errorPercentage): 100 shares, 5 of them rejected.
        let shares = |i: u64, error: Option<f64>| {
            let mut r = reading(1000.0, 15.0, error);
            r.shares_accepted = Some(1000 + i * 19);
            r.shares_rejected = Some(10 + i);
            r
        };
        let old: Vec<(f64, Reading)> = (0..6).map(|i| (i as f64, shares(i, None))).collect();
        let old = StepResult::from_readings(&old);
        assert_eq!(old.error_source.as_deref(), Some("share reject rate"));
        assert!((old.error_percent.unwrap() - 5.0).abs() < 1e-9, "{old:?}");
        assert_eq!(
            old.health_problems(3.0).last().map(String::as_str),
            Some("share rejects 5.00 % (> 3 %)")
        );
        // Where the firmware counts ASIC errors, that is what is judged.
        let new: Vec<(f64, Reading)> = (0..6).map(|i| (i as f64, shares(i, Some(0.5)))).collect();
        let new = StepResult::from_readings(&new);
        assert_eq!(new.error_source.as_deref(), Some("errorPercentage"));
        assert_eq!(new.error_percent, Some(0.5));
    }
}
