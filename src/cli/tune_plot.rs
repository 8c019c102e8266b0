//! `tune --plot FILE.svg`: a heat map of J/TH over frequency × core voltage, one panel per
//! device (drawn by [`crate::web::render::charts::heat_map`]). Unhealthy configurations are
//! grey with their verdict; the best one is outlined.

use std::path::Path;

use anyhow::Context as _;

use crate::tune::plan::Outcome;
use crate::tune::report::DeviceReport;
use crate::web::render::charts::{heat_map, HeatCell};

/// Writes the heat map; an error names what failed.
pub fn write_heat_map(path: &Path, reports: &[DeviceReport]) -> anyhow::Result<()> {
    let panels: Vec<(String, Vec<HeatCell>)> = reports
        .iter()
        .map(|report| {
            let cells = report
                .steps
                .iter()
                .map(|step| HeatCell {
                    frequency_mhz: step.frequency_mhz,
                    core_voltage_mv: step.core_voltage_mv,
                    joules_per_terahash: step
                        .result
                        .as_ref()
                        .and_then(|r| r.joules_per_terahash)
                        .filter(|_| step.outcome == Outcome::Healthy),
                    label: step.outcome.to_string(),
                    best: report.best_step == Some(step.step),
                })
                .collect();
            (
                format!("{}: J/TH by frequency × core voltage (lower is better)", report.device),
                cells,
            )
        })
        .collect();
    std::fs::write(path, heat_map(&panels)).with_context(|| format!("cannot write {}", path.display()))
}
