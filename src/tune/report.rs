//! What a sweep reports: each configuration tried ([`StepReport`]), how each device's sweep
//! ended ([`DeviceReport`]), the best step among them, and the [`Observer`] that hears it
//! all as it happens.

use serde::Serialize;

use crate::analysis::Metric;
use crate::axeos::sample::Sample;
use crate::ledger::tune::{TuneStatus, TuneStep};
use crate::tune::limits::Limits;
use crate::tune::measure::StepResult;
use crate::tune::plan::Outcome;

/// What a sweep reports as it goes (a live line per device on a terminal, log lines
/// elsewhere).
pub trait Observer: Send + Sync {
    fn step_started(&self, device: &str, step: u32, max_steps: usize, pair: (f64, f64));
    /// A reading during a step, with the interval so far (`None` during warm-up).
    fn sampled(&self, device: &str, sample: &Sample, limits: &Limits, result: Option<&StepResult>);
    fn step_finished(&self, device: &str, step: &StepReport);
    /// A message worth a line of its own (a restore, a write).
    fn note(&self, device: &str, message: &str);
    /// A message about the whole run rather than one device (who keeps the samples, a
    /// device's sweep that stopped unexpectedly).
    fn run_note(&self, message: &str);
}

/// One configuration tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: u32,
    pub frequency_mhz: f64,
    pub core_voltage_mv: f64,
    /// Serialised as `healthy`, `unhealthy`, `limit`, `aborted`.
    pub outcome: Outcome,
    /// Why it is not healthy, or what stopped it.
    pub reason: String,
    /// The interval was narrow enough before `--max-dwell`.
    pub converged: bool,
    pub result: Option<StepResult>,
    pub session_id: Option<i64>,
}

impl StepReport {
    pub(crate) fn from_ledger(step: &TuneStep) -> StepReport {
        StepReport {
            step: step.step,
            frequency_mhz: step.frequency_mhz,
            core_voltage_mv: step.core_voltage_mv,
            outcome: Outcome::from_ledger(&step.outcome),
            reason: step.reason.clone(),
            converged: false,
            result: step.result.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            session_id: step.session_id,
        }
    }
}

/// How one device's sweep ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceReport {
    pub device: String,
    pub original_frequency_mhz: Option<f64>,
    pub original_core_voltage_mv: Option<f64>,
    pub steps: Vec<StepReport>,
    pub status: TuneStatus,
    /// What the miner was left on, read back.
    pub final_frequency_mhz: Option<f64>,
    pub final_core_voltage_mv: Option<f64>,
    /// The step chosen as best, if one was healthy.
    pub best_step: Option<u32>,
    /// Why the sweep stopped early, or what the restore could not do.
    pub note: String,
}

/// The healthy step ranked first by `metric`.
pub(crate) fn best_step(steps: &[StepReport], metric: Metric) -> Option<&StepReport> {
    let healthy: Vec<(&StepReport, &StepResult)> = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Healthy)
        .filter_map(|s| Some((s, s.result.as_ref()?)))
        .collect();
    let best_hashrate = healthy
        .iter()
        .filter_map(|(_, r)| r.mean_hashrate_ghs)
        .fold(0.0, f64::max);
    let best_jth = healthy
        .iter()
        .filter_map(|(_, r)| r.joules_per_terahash)
        .fold(f64::INFINITY, f64::min);
    healthy
        .into_iter()
        .max_by(|a, b| {
            a.1.score(metric, (best_hashrate, best_jth))
                .total_cmp(&b.1.score(metric, (best_hashrate, best_jth)))
        })
        .map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(number: u32, outcome: Outcome, hashrate: f64, jth: f64) -> StepReport {
        StepReport {
            step: number,
            frequency_mhz: 500.0 + f64::from(number),
            core_voltage_mv: 1100.0,
            outcome,
            reason: String::new(),
            converged: true,
            result: Some(StepResult {
                mean_hashrate_ghs: Some(hashrate),
                joules_per_terahash: Some(jth),
                ..StepResult::default()
            }),
            session_id: None,
        }
    }

    #[test]
    fn the_best_step_is_the_healthy_one_the_metric_prefers() {
        let steps = [
            step(1, Outcome::Healthy, 1000.0, 15.0),
            step(2, Outcome::Healthy, 1200.0, 17.0),
            step(3, Outcome::Unhealthy, 1300.0, 12.0),
        ];
        assert_eq!(best_step(&steps, Metric::Efficiency).unwrap().step, 1);
        assert_eq!(best_step(&steps, Metric::Hashrate).unwrap().step, 2);
        assert!(best_step(&steps[2..], Metric::Hashrate).is_none());
    }
}
