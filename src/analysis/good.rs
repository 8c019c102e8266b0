//! The one rule for a good configuration: what a clock configuration must show over its
//! steady running (past the warm-up) to be called good. `optimize` ranks only good ones;
//! the daemon keeps the newest good one per device, live and after a restart (from the
//! ledger's segments), and a protective `restore_last_good` goes back to it; `tune` judges
//! its steps by the same thresholds.
//!
//! Good means: enough steady data ([`MIN_STEADY_SAMPLES`], covering the warm-up), a
//! hashrate of at least [`MIN_PERCENT_OF_EXPECTED`] % of what the chips should do, the
//! ASIC temperature below the warning threshold, ASIC errors at most
//! [`MAX_ERROR_PERCENT`] % where the firmware counts them, and power and hashrate both known
//! (a J/TH to rank by).

/// A configuration needs at least this many steady samples to be judged.
pub const MIN_STEADY_SAMPLES: u64 = 7;
/// The hashrate floor, % of expected.
pub const MIN_PERCENT_OF_EXPECTED: f64 = 94.0;
/// The ASIC error ceiling, % (`tune.max_error_percent` overrides it for sweeps).
pub(crate) const MAX_ERROR_PERCENT: f64 = 3.0;

/// A configuration's steady running, as one of its judges knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Steady {
    pub samples: u64,
    /// The steady running lasted at least the warm-up.
    pub covers_warmup: bool,
    /// Steady duration, s (for the reason given when there is too little).
    pub seconds: f64,
    pub percent_of_expected: Option<f64>,
    /// The ASIC temperature it is judged by, and what it is (`p95`, `max`).
    pub asic_temp_c: Option<f64>,
    pub asic_temp_is: &'static str,
    pub error_percent: Option<f64>,
    pub joules_per_terahash: Option<f64>,
}

/// The thresholds of one judgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    /// Usually `safety.max_temp_warning`.
    pub max_asic_temp_c: f64,
    pub max_error_percent: f64,
}

impl Rule {
    pub fn new(max_asic_temp_c: f64) -> Rule {
        Rule {
            max_asic_temp_c,
            max_error_percent: MAX_ERROR_PERCENT,
        }
    }

    /// Why a configuration is not good; empty when it is.
    pub fn shortfalls(&self, s: &Steady) -> Vec<String> {
        let mut reasons = Vec::new();
        if s.samples < MIN_STEADY_SAMPLES || !s.covers_warmup {
            reasons.push(format!(
                "not enough steady data ({} steady samples over {:.0} s; needs {MIN_STEADY_SAMPLES} covering the warm-up)",
                s.samples, s.seconds
            ));
        }
        match s.percent_of_expected {
            Some(p) if p >= MIN_PERCENT_OF_EXPECTED => {}
            Some(p) => reasons.push(format!(
                "hashrate {p:.1}% of expected (below {MIN_PERCENT_OF_EXPECTED}%)"
            )),
            None if s.samples > 0 => reasons.push("no expected hashrate to compare with".into()),
            None => {}
        }
        match s.asic_temp_c {
            Some(t) if t < self.max_asic_temp_c => {}
            Some(t) => reasons.push(format!(
                "ASIC temperature {} {t:.1} °C (limit {} °C)",
                s.asic_temp_is, self.max_asic_temp_c
            )),
            None if s.samples > 0 => reasons.push("no ASIC temperature readings".into()),
            None => {}
        }
        if let Some(e) = s.error_percent.filter(|e| *e > self.max_error_percent) {
            reasons.push(format!("ASIC errors {e:.2}% (above {}%)", self.max_error_percent));
        }
        if s.joules_per_terahash.is_none() && s.samples > 0 {
            reasons.push("no power and hashrate to compute J/TH".into());
        }
        reasons
    }

    pub fn is_good(&self, s: &Steady) -> bool {
        self.shortfalls(s).is_empty()
    }
}

/// A running tally of a configuration's steady readings (the daemon's, per device, reset
/// when a segment starts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SteadyTally {
    samples: u64,
    seconds: f64,
    hashrate_sum: f64,
    expected_sum: f64,
    power_sum: f64,
    work_sum: f64,
    temp_max: Option<f64>,
    error_percent: Option<f64>,
}

impl SteadyTally {
    /// Adds one steady reading, `seconds` after the previous one.
    pub fn add(&mut self, sample: &crate::axeos::Sample, seconds: f64) {
        self.samples += 1;
        self.seconds += seconds.max(0.0);
        if let (Some(h), Some(e)) = (sample.hashrate_ghs, sample.expected_hashrate_ghs) {
            self.hashrate_sum += h;
            self.expected_sum += e;
        }
        if let (Some(p), Some(h)) = (sample.power_watts, sample.hashrate_ghs) {
            self.power_sum += p;
            self.work_sum += h;
        }
        if let Some(t) = sample.asic_temp_celsius {
            self.temp_max = Some(self.temp_max.map_or(t, |m| m.max(t)));
        }
        if sample.error_percent.is_some() {
            self.error_percent = sample.error_percent;
        }
    }

    /// What the rule judges, given whether the running has lasted the warm-up.
    pub fn steady(&self, covers_warmup: bool) -> Steady {
        Steady {
            samples: self.samples,
            covers_warmup,
            seconds: self.seconds,
            percent_of_expected: (self.expected_sum > 0.0).then(|| self.hashrate_sum / self.expected_sum * 100.0),
            asic_temp_c: self.temp_max,
            asic_temp_is: "max",
            error_percent: self.error_percent,
            joules_per_terahash: (self.work_sum > 0.0).then(|| self.power_sum / self.work_sum * 1000.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady() -> Steady {
        Steady {
            samples: 20,
            covers_warmup: true,
            seconds: 600.0,
            percent_of_expected: Some(98.0),
            asic_temp_c: Some(60.0),
            asic_temp_is: "p95",
            error_percent: Some(0.5),
            joules_per_terahash: Some(17.0),
        }
    }

    #[test]
    fn each_threshold_is_its_own_reason() {
        let rule = Rule::new(65.0);
        assert!(rule.is_good(&steady()));
        let short = Steady { samples: 3, ..steady() };
        assert!(rule.shortfalls(&short)[0].starts_with("not enough steady data"));
        let slow = Steady {
            percent_of_expected: Some(90.0),
            ..steady()
        };
        assert_eq!(rule.shortfalls(&slow), ["hashrate 90.0% of expected (below 94%)"]);
        let hot = Steady {
            asic_temp_c: Some(66.0),
            ..steady()
        };
        assert_eq!(rule.shortfalls(&hot), ["ASIC temperature p95 66.0 °C (limit 65 °C)"]);
        let erring = Steady {
            error_percent: Some(4.0),
            ..steady()
        };
        assert_eq!(rule.shortfalls(&erring), ["ASIC errors 4.00% (above 3%)"]);
        // Firmware that counts no errors is not held to a ceiling it cannot show.
        let uncounted = Steady {
            error_percent: None,
            ..steady()
        };
        assert!(rule.is_good(&uncounted));
    }

    #[test]
    fn a_tally_judges_energy_over_work_and_the_hottest_reading() {
        let mut tally = SteadyTally::default();
        for (h, e, p, t) in [(1000.0, 1020.0, 18.0, 58.0), (980.0, 1020.0, 18.0, 61.0)] {
            let sample = crate::axeos::Sample {
                hashrate_ghs: Some(h),
                expected_hashrate_ghs: Some(e),
                power_watts: Some(p),
                asic_temp_celsius: Some(t),
                ..crate::axeos::Sample::default()
            };
            tally.add(&sample, 5.0);
        }
        let s = tally.steady(true);
        assert_eq!(s.samples, 2);
        assert!((s.percent_of_expected.unwrap() - 1980.0 / 2040.0 * 100.0).abs() < 1e-9);
        assert_eq!(s.asic_temp_c, Some(61.0));
        assert!((s.joules_per_terahash.unwrap() - 36.0 / 1980.0 * 1000.0).abs() < 1e-9);
    }
}
