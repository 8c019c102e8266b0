//! What a sweep was asked to do — devices, plan, spans, dwell, what to leave each miner
//! on — as `tune` builds it and as the ledger stores it with the run for `tune resume`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analysis::Metric;
use crate::tune::plan::{PlanKind, Span};

/// What to leave a miner on when a sweep ends normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Then {
    /// The best healthy configuration found (the starting one if none was).
    Best,
    /// The settings it had before the sweep.
    Original,
}

/// A sweep's arguments: stored with the run so that `tune resume` continues it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    pub devices: Vec<String>,
    pub plan: PlanKind,
    pub freq: Option<Span>,
    pub voltage: Option<Span>,
    pub metric: Metric,
    pub dwell_minutes: f64,
    pub max_dwell_minutes: f64,
    pub warmup_minutes: f64,
    pub then: Then,
    pub allow_unlisted: bool,
    pub allow_small_steps: bool,
    pub force: bool,
    pub max_parallel: usize,
    /// `--assume-family`: write to a miner of an unknown family by this family's rules.
    #[serde(default)]
    pub assume_family: Option<crate::axeos::family::FirmwareFamily>,
}

impl SweepSpec {
    pub(crate) fn warmup(&self) -> Duration {
        minutes(self.warmup_minutes)
    }
    pub(crate) fn dwell(&self) -> Duration {
        minutes(self.dwell_minutes)
    }
    pub(crate) fn max_dwell(&self) -> Duration {
        minutes(self.max_dwell_minutes)
    }

    /// The shortest a measured step takes: warm-up plus the minimum dwell.
    pub(crate) fn min_step_duration(&self) -> Duration {
        self.warmup() + self.dwell()
    }

    /// The longest one step can take: warm-up plus the most time it measures.
    pub(crate) fn max_step_duration(&self) -> Duration {
        self.warmup() + self.max_dwell().max(self.dwell())
    }
}

fn minutes(m: f64) -> Duration {
    Duration::try_from_secs_f64(m * 60.0).unwrap_or(Duration::ZERO)
}

/// A one-device sweep with the usual settings, for unit tests.
#[cfg(test)]
impl SweepSpec {
    pub(crate) fn for_test(device: &str, plan: PlanKind) -> SweepSpec {
        SweepSpec {
            devices: vec![device.into()],
            plan,
            freq: None,
            voltage: None,
            metric: Metric::Efficiency,
            dwell_minutes: 5.0,
            max_dwell_minutes: 20.0,
            warmup_minutes: 10.0,
            then: Then::Best,
            allow_unlisted: false,
            allow_small_steps: false,
            force: false,
            max_parallel: 1,
            assume_family: None,
        }
    }
}
