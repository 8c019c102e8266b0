//! `tune --plot FILE.svg`: a heat map of J/TH over frequency × core voltage, one panel per
//! device, drawn with plotters. Unhealthy configurations are hatched grey with their
//! verdict; the best one is outlined.

use std::path::Path;

use plotters::prelude::*;

use crate::axeos::printable;
use crate::axeos::sample::format_label_number;
use crate::tune::sweep::DeviceReport;

const PANEL_WIDTH: u32 = 640;
const PANEL_HEIGHT: u32 = 420;

/// Writes the heat map; an error names what failed.
pub fn write_heat_map(path: &Path, reports: &[DeviceReport]) -> anyhow::Result<()> {
    let panels = reports.len().max(1) as u32;
    let root = SVGBackend::new(path, (PANEL_WIDTH, PANEL_HEIGHT * panels)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = root.split_evenly((reports.len().max(1), 1));
    for (report, area) in reports.iter().zip(areas) {
        draw_panel(&area, report).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}

type Panel<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_panel(area: &Panel<'_>, report: &DeviceReport) -> Result<(), Box<dyn std::error::Error>> {
    let mut frequencies: Vec<f64> = report.steps.iter().map(|s| s.frequency_mhz).collect();
    let mut voltages: Vec<f64> = report.steps.iter().map(|s| s.core_voltage_mv).collect();
    for values in [&mut frequencies, &mut voltages] {
        values.sort_by(f64::total_cmp);
        values.dedup();
    }
    let jth: Vec<f64> = report
        .steps
        .iter()
        .filter(|s| s.outcome == "healthy")
        .filter_map(|s| s.result.as_ref()?.joules_per_terahash)
        .collect();
    let (low, high) = jth
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    let title = format!(
        "{}: J/TH by frequency × core voltage (lower is better)",
        printable(&report.device)
    );
    // Cell i spans i − 0.5 … i + 0.5, so ticks and labels sit at cell centres.
    let span = |n: usize| -0.5..(n.max(1) as f64 - 0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(span(frequencies.len()), span(voltages.len()))?;
    let at = |values: &[f64], position: f64| -> String {
        let index = position.round();
        if (position - index).abs() > 1e-6 || index < 0.0 {
            return String::new();
        }
        values
            .get(index as usize)
            .map_or(String::new(), |v| format_label_number(*v))
    };
    let frequency_label = |x: &f64| at(&frequencies, *x);
    let voltage_label = |y: &f64| at(&voltages, *y);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("frequency, MHz")
        .y_desc("core voltage, mV")
        .x_labels(frequencies.len().max(1) * 2 + 1)
        .y_labels(voltages.len().max(1) * 2 + 1)
        .x_label_formatter(&frequency_label)
        .y_label_formatter(&voltage_label)
        .draw()?;
    let index = |values: &[f64], v: f64| values.iter().position(|x| (*x - v).abs() < 1e-9).unwrap_or(0) as f64;
    let centred = ("sans-serif", 13)
        .into_font()
        .into_text_style(area)
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    for step in &report.steps {
        let (x, y) = (
            index(&frequencies, step.frequency_mhz),
            index(&voltages, step.core_voltage_mv),
        );
        let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
        let value = step.result.as_ref().and_then(|r| r.joules_per_terahash);
        let healthy = step.outcome == "healthy";
        let colour = match value {
            Some(v) if healthy => {
                let t = if high > low { (v - low) / (high - low) } else { 0.0 };
                // Green (efficient) to red (costly).
                RGBColor((40.0 + 200.0 * t) as u8, (180.0 - 120.0 * t) as u8, 70)
            }
            _ => RGBColor(200, 200, 200),
        };
        chart.draw_series(std::iter::once(Rectangle::new(cell, colour.filled())))?;
        if report.best_step == Some(step.step) {
            chart.draw_series(std::iter::once(Rectangle::new(cell, BLACK.stroke_width(3))))?;
        }
        let label = match value {
            Some(v) if healthy => format!("{v:.2}"),
            _ => step.outcome.clone(),
        };
        chart.draw_series(std::iter::once(Text::new(label, (x, y), centred.clone())))?;
    }
    Ok(())
}
