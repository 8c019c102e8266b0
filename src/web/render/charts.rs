//! Charts drawn server-side as SVG with plotters, for the web pages, the HTML report and
//! `tune --plot`: history lines with their min–max band, markers and threshold lines; the
//! J/TH heat map over frequency × core voltage; hashrate against J/TH with the Pareto
//! front. Plotters escapes the text it writes; device strings are made printable first.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
pub use plotters::style::RGBColor;

use crate::analysis::history::Marker;
use crate::axeos::printable;
use crate::axeos::sample::format_label_number;
use crate::ledger::rollup::{HistoryPoint, Span};

type Failure = Box<dyn std::error::Error>;

pub const WIDTH: u32 = 760;
pub(crate) const HEIGHT: u32 = 240;

pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(230, 120, 20);
pub const GREEN: RGBColor = RGBColor(40, 160, 70);
pub const RED: RGBColor = RGBColor(200, 40, 40);
pub const GREY: RGBColor = RGBColor(150, 150, 150);
pub const PURPLE: RGBColor = RGBColor(130, 80, 180);

/// Draws into an SVG string of `size`; a drawing failure becomes a short SVG saying so.
fn svg(size: (u32, u32), draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<(), Failure>) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Box::new(e) as Failure)
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| Box::new(e) as Failure))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"40\"><text x=\"4\" y=\"20\">chart failed: {}</text></svg>",
            size.0,
            crate::web::render::text::escape(&e.to_string())
        ),
    }
}

/// One series of a history chart: a mean line over a shaded min–max band.
pub struct Series<'a> {
    pub name: &'a str,
    pub colour: RGBColor,
    pub value: fn(&HistoryPoint) -> Option<Span>,
    /// Draw the min–max band (off for a reference like the expected hashrate).
    pub band: bool,
}

/// A history chart over [since, until].
pub struct HistoryChart<'a> {
    pub title: &'a str,
    pub unit: &'a str,
    pub since: f64,
    pub until: f64,
    pub step: f64,
    pub points: &'a [HistoryPoint],
    pub series: Vec<Series<'a>>,
    /// Horizontal lines: (label, colour, value).
    pub thresholds: Vec<(&'a str, RGBColor, f64)>,
    pub markers: &'a [Marker],
    /// Shaded spans (sessions): (start, end).
    pub spans: &'a [(f64, f64)],
}

/// Unix seconds as an axis label: the time of day with seconds for a range short enough
/// that minute labels would repeat (under 15 minutes), to the minute up to two days, the
/// date beyond (UTC, as the ledger's tables show times).
pub fn time_label(t: f64, range_seconds: f64) -> String {
    let full = crate::time::format(t);
    let part = if range_seconds < 15.0 * 60.0 {
        full.get(11..19)
    } else if range_seconds <= 2.0 * 86_400.0 {
        full.get(11..16)
    } else {
        full.get(5..10)
    };
    part.unwrap_or(&full).to_string()
}

/// A value axis label with only the decimals the axis's span needs (`1200`, not `1200.0`).
fn value_label(value: f64, span: f64) -> String {
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}")
}

/// The runs of consecutive buckets. A gap breaks the line when it is longer than 1.5 steps
/// and three times the usual spacing of the points: with steps shorter than the poll
/// interval most buckets are empty, and that is not a gap in the data.
fn runs(points: &[(f64, Span)], step: f64) -> Vec<&[(f64, Span)]> {
    let mut spacings: Vec<f64> = points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    spacings.sort_by(f64::total_cmp);
    let usual = spacings.get(spacings.len() / 2).copied().unwrap_or(step);
    let gap = (1.5 * step).max(3.0 * usual);
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=points.len() {
        if i == points.len() || points[i].0 - points[i - 1].0 > gap {
            runs.push(&points[start..i]);
            start = i;
        }
    }
    runs
}

fn marker_colour(kind: &str) -> RGBColor {
    match kind {
        "config_changed" => BLUE,
        "rebooted" | "firmware_changed" => PURPLE,
        "offline" => GREY,
        _ => RED,
    }
}

pub fn history_chart(chart: &HistoryChart) -> String {
    svg((WIDTH, HEIGHT), |root| draw_history(root, chart))
}

fn draw_history(root: &DrawingArea<SVGBackend, Shift>, spec: &HistoryChart) -> Result<(), Failure> {
    let series = charted_series(spec);
    let (low, high) = value_range(&series, &spec.thresholds);
    let (since, until) = (spec.since, spec.until.max(spec.since + 1.0));
    let mut chart = ChartBuilder::on(root)
        .caption(format!("{} ({})", spec.title, spec.unit), ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(since..until, low..high)?;
    let range = until - since;
    let x_label = |t: &f64| time_label(*t, range);
    let y_label = |v: &f64| value_label(*v, high - low);
    chart
        .configure_mesh()
        .x_labels(7)
        .y_labels(5)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .light_line_style(RGBColor(248, 248, 248))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    for (start, end) in spec.spans {
        let (a, b) = (start.max(since), end.min(until));
        if b > a {
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, low), (b, high)],
                RGBColor(255, 200, 60).mix(0.15).filled(),
            )))?;
        }
    }
    for marker in spec
        .markers
        .iter()
        .filter(|m| m.is_charted() && m.t >= since && m.t <= until)
    {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(marker.t, low), (marker.t, high)],
            marker_colour(&marker.kind).mix(0.6).stroke_width(1),
        )))?;
    }
    for (label, colour, value) in &spec.thresholds {
        if value.is_finite() {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(since, *value), (until, *value)],
                    colour.stroke_width(1),
                )))?
                .label(*label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(1)));
        }
    }
    for (s, values) in &series {
        draw_band_and_mean(&mut chart, s, values, spec.step)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

/// Each series' buckets that have a finite reading, at the middle of their step.
fn charted_series<'a>(spec: &'a HistoryChart) -> Vec<(&'a Series<'a>, Vec<(f64, Span)>)> {
    spec.series
        .iter()
        .map(|s| {
            let values = spec
                .points
                .iter()
                .filter_map(|p| (s.value)(p).map(|v| (p.t + spec.step / 2.0, v)))
                .filter(|(_, v)| v.min.is_finite() && v.max.is_finite() && v.mean.is_finite())
                .collect();
            (s, values)
        })
        .collect()
}

/// The value axis: every band (or mean) and threshold, padded; 0–1 when there is nothing.
fn value_range(series: &[(&Series, Vec<(f64, Span)>)], thresholds: &[(&str, RGBColor, f64)]) -> (f64, f64) {
    let mut low = f64::INFINITY;
    let mut high = f64::NEG_INFINITY;
    for (s, values) in series {
        for (_, v) in values {
            let (a, b) = if s.band { (v.min, v.max) } else { (v.mean, v.mean) };
            low = low.min(a);
            high = high.max(b);
        }
    }
    for (_, _, value) in thresholds {
        if value.is_finite() && low.is_finite() {
            low = low.min(*value);
            high = high.max(*value);
        }
    }
    if !low.is_finite() {
        (low, high) = (0.0, 1.0);
    }
    let pad = ((high - low) * 0.08).max(high.abs() * 0.01).max(0.5);
    (low - pad, high + pad)
}

/// One series: its shaded min–max band where it has one, then its mean line (a dot for a
/// lone bucket), broken at gaps, named once in the legend.
fn draw_band_and_mean(
    chart: &mut ChartContext<SVGBackend, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    s: &Series,
    values: &[(f64, Span)],
    step: f64,
) -> Result<(), Failure> {
    let colour = s.colour;
    for run in runs(values, step) {
        if s.band && run.len() > 1 {
            let mut outline: Vec<(f64, f64)> = run.iter().map(|(t, v)| (*t, v.max)).collect();
            outline.extend(run.iter().rev().map(|(t, v)| (*t, v.min)));
            chart.draw_series(std::iter::once(Polygon::new(outline, colour.mix(0.18).filled())))?;
        }
    }
    let mut first = true;
    for run in runs(values, step) {
        let line = run.iter().map(|(t, v)| (*t, v.mean));
        let drawn = if run.len() == 1 {
            chart.draw_series(line.map(|p| Circle::new(p, 2, colour.filled())))?
        } else {
            chart.draw_series(LineSeries::new(line, colour.stroke_width(2)))?
        };
        if std::mem::take(&mut first) {
            drawn
                .label(s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
        }
    }
    Ok(())
}

/// One cell of a J/TH heat map.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatCell {
    pub frequency_mhz: f64,
    pub core_voltage_mv: f64,
    /// J/TH where the configuration passed; `None` shows `label` on grey.
    pub joules_per_terahash: Option<f64>,
    pub label: String,
    /// Outlined: the configuration picked.
    pub best: bool,
}

pub(crate) const HEAT_WIDTH: u32 = 640;
/// The heat map's colours span at least this fraction of the best J/TH.
const MIN_HEAT_SCALE: f64 = 0.25;
pub(crate) const HEAT_HEIGHT: u32 = 420;

/// J/TH over frequency × core voltage, green (efficient) to red; one panel per
/// (title, cells).
pub fn heat_map(panels: &[(String, Vec<HeatCell>)]) -> String {
    let count = panels.len().max(1);
    svg((HEAT_WIDTH, HEAT_HEIGHT * count as u32), |root| {
        for ((title, cells), area) in panels.iter().zip(root.split_evenly((count, 1))) {
            draw_heat_panel(&area, title, cells)?;
        }
        Ok(())
    })
}

fn draw_heat_panel(area: &DrawingArea<SVGBackend, Shift>, title: &str, cells: &[HeatCell]) -> Result<(), Failure> {
    let mut frequencies: Vec<f64> = cells.iter().map(|c| c.frequency_mhz).collect();
    let mut voltages: Vec<f64> = cells.iter().map(|c| c.core_voltage_mv).collect();
    for values in [&mut frequencies, &mut voltages] {
        values.retain(|v| v.is_finite());
        values.sort_by(f64::total_cmp);
        values.dedup();
    }
    let (low, high) = cells
        .iter()
        .filter_map(|c| c.joules_per_terahash)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    // The colours span at least a quarter of the best J/TH: a 6 % spread stays green to
    // yellow, not painted red-to-green as if it were large. The caption says how large.
    let scale = if high > low {
        (high - low).max(low * MIN_HEAT_SCALE)
    } else {
        0.0
    };
    let caption = if high > low && low > 0.0 {
        format!(
            "{} (spread {:.1} %; colours {:.2}–{:.2} J/TH)",
            printable(title),
            (high - low) / low * 100.0,
            low,
            low + scale
        )
    } else {
        printable(title).into_owned()
    };
    // Cell i spans i − 0.5 … i + 0.5, so ticks and labels sit at cell centres.
    let span = |n: usize| -0.5..(n.max(1) as f64 - 0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
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
        .pos(Pos::new(HPos::Center, VPos::Center));
    for cell in cells
        .iter()
        .filter(|c| c.frequency_mhz.is_finite() && c.core_voltage_mv.is_finite())
    {
        let (x, y) = (
            index(&frequencies, cell.frequency_mhz),
            index(&voltages, cell.core_voltage_mv),
        );
        let rect = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
        let colour = match cell.joules_per_terahash {
            Some(v) => {
                let t = if scale > 0.0 {
                    ((v - low) / scale).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                RGBColor((40.0 + 200.0 * t) as u8, (180.0 - 120.0 * t) as u8, 70)
            }
            None => RGBColor(200, 200, 200),
        };
        chart.draw_series(std::iter::once(Rectangle::new(rect, colour.filled())))?;
        if cell.best {
            chart.draw_series(std::iter::once(Rectangle::new(rect, BLACK.stroke_width(3))))?;
        }
        let label = match cell.joules_per_terahash {
            Some(v) => format!("{v:.2}"),
            None => printable(&cell.label).into_owned(),
        };
        chart.draw_series(std::iter::once(Text::new(label, (x, y), centred.clone())))?;
    }
    Ok(())
}

/// One configuration on the hashrate × J/TH scatter.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterPoint {
    pub label: String,
    pub joules_per_terahash: f64,
    pub hashrate_ghs: f64,
    /// Passed the health gate.
    pub passed: bool,
    /// `optimize`'s pick.
    pub picked: bool,
}

/// The passing points no other passing point beats on both hashrate (higher) and J/TH
/// (lower), by increasing J/TH.
pub(crate) fn pareto_front(points: &[ScatterPoint]) -> Vec<&ScatterPoint> {
    let mut passing: Vec<&ScatterPoint> = points.iter().filter(|p| p.passed).collect();
    passing.sort_by(|a, b| {
        a.joules_per_terahash
            .total_cmp(&b.joules_per_terahash)
            .then(b.hashrate_ghs.total_cmp(&a.hashrate_ghs))
    });
    let mut front: Vec<&ScatterPoint> = Vec::new();
    for point in passing {
        if front.last().is_none_or(|last| point.hashrate_ghs > last.hashrate_ghs) {
            front.push(point);
        }
    }
    front
}

pub(crate) const SCATTER_WIDTH: u32 = 640;
pub(crate) const SCATTER_HEIGHT: u32 = 380;

/// Hashrate against J/TH: passing configurations in blue, rejected ones in grey, the
/// Pareto front joined, the pick ringed.
pub fn scatter(title: &str, points: &[ScatterPoint]) -> String {
    svg((SCATTER_WIDTH, SCATTER_HEIGHT), |root| {
        draw_scatter(root, title, points)
    })
}

fn draw_scatter(root: &DrawingArea<SVGBackend, Shift>, title: &str, points: &[ScatterPoint]) -> Result<(), Failure> {
    let finite: Vec<&ScatterPoint> = points
        .iter()
        .filter(|p| p.joules_per_terahash.is_finite() && p.hashrate_ghs.is_finite())
        .collect();
    let bounds = |values: Vec<f64>| {
        let (l, h) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
        if l.is_finite() {
            let pad = ((h - l) * 0.1).max(h.abs() * 0.02).max(0.1);
            (l - pad, h + pad)
        } else {
            (0.0, 1.0)
        }
    };
    let (x_low, x_high) = bounds(finite.iter().map(|p| p.joules_per_terahash).collect());
    let (y_low, y_high) = bounds(finite.iter().map(|p| p.hashrate_ghs).collect());
    let mut chart = ChartBuilder::on(root)
        .caption(printable(title), ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x_low..x_high, y_low..y_high)?;
    chart
        .configure_mesh()
        .x_desc("J/TH (lower is better)")
        .y_desc("hashrate, GH/s")
        .light_line_style(RGBColor(248, 248, 248))
        .draw()?;
    let front = pareto_front(points);
    if front.len() > 1 {
        chart
            .draw_series(LineSeries::new(
                front.iter().map(|p| (p.joules_per_terahash, p.hashrate_ghs)),
                GREEN.stroke_width(2),
            ))?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], GREEN.stroke_width(2)));
    }
    let label_style = ("sans-serif", 11).into_font().into_text_style(root);
    for point in &finite {
        let at = (point.joules_per_terahash, point.hashrate_ghs);
        let colour = if point.passed { BLUE } else { GREY };
        chart.draw_series(std::iter::once(Circle::new(at, 4, colour.filled())))?;
        if point.picked {
            chart.draw_series(std::iter::once(Circle::new(at, 9, RED.stroke_width(2))))?;
        }
        chart.draw_series(std::iter::once(Text::new(
            printable(&point.label).into_owned(),
            at,
            label_style.clone(),
        )))?;
    }
    if front.len() <= 1 {
        return Ok(());
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(RGBColor(200, 200, 200))
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn axis_labels_do_not_repeat_or_carry_spurious_decimals() {
        let t0 = 1_790_000_000.0;
        // Seven ticks over five minutes: to the second, all distinct.
        let labels: Vec<String> = (0..7).map(|i| time_label(t0 + f64::from(i) * 50.0, 300.0)).collect();
        let mut distinct = labels.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), labels.len(), "{labels:?}");
        assert_eq!(time_label(t0, 3600.0).len(), 5, "to the minute over an hour");
        assert_eq!(value_label(1200.0, 400.0), "1200");
        assert_eq!(value_label(17.25, 5.0), "17.2");
        assert_eq!(value_label(0.25, 0.5), "0.25");
    }

    #[test]
    fn a_small_spread_is_not_painted_as_a_large_one() {
        let cell = |f: f64, jth: f64| HeatCell {
            frequency_mhz: f,
            core_voltage_mv: 1150.0,
            joules_per_terahash: Some(jth),
            label: String::new(),
            best: false,
        };
        let svg = heat_map(&[("gamma".into(), vec![cell(490.0, 16.0), cell(525.0, 16.96)])]);
        assert!(svg.contains("spread 6.0 %"), "{svg}");
        // Full red (the top of the scale) would be #F03C46.
        assert!(!svg.to_uppercase().contains("#F03C46"), "a 6 % spread painted red");
        let wide = heat_map(&[("gamma".into(), vec![cell(490.0, 16.0), cell(525.0, 24.0)])]);
        assert!(wide.to_uppercase().contains("#F03C46"), "a 50 % spread reaches red");
    }

    use super::*;

    fn point(label: &str, jth: f64, ghs: f64, passed: bool) -> ScatterPoint {
        ScatterPoint {
            label: label.into(),
            joules_per_terahash: jth,
            hashrate_ghs: ghs,
            passed,
            picked: false,
        }
    }

    #[test]
    fn the_pareto_front_keeps_only_configurations_nothing_beats_on_both_axes() {
        let points = [
            point("a", 15.0, 1000.0, true),
            point("b", 16.0, 1100.0, true),
            point("dominated", 16.5, 1050.0, true),
            point("c", 18.0, 1200.0, true),
            point("rejected", 14.0, 1300.0, false),
        ];
        let front: Vec<&str> = pareto_front(&points).iter().map(|p| p.label.as_str()).collect();
        assert_eq!(front, ["a", "b", "c"]);
    }

    #[test]
    fn a_line_breaks_at_a_gap_in_the_data_not_at_empty_buckets_between_polls() {
        let span = Span {
            min: 1.0,
            mean: 1.0,
            max: 1.0,
        };
        // Buckets of 1 s, a sample every 5 s, and one outage of a minute.
        let mut points: Vec<(f64, Span)> = (0..20).map(|i| (f64::from(i) * 5.0, span)).collect();
        points.extend((0..20).map(|i| (160.0 + f64::from(i) * 5.0, span)));
        let lengths: Vec<usize> = runs(&points, 1.0).iter().map(|r| r.len()).collect();
        assert_eq!(lengths, [20, 20]);
    }

    #[test]
    fn device_text_in_a_chart_is_escaped() {
        let points = [point("<script>alert(1)</script>", 15.0, 1000.0, true)];
        let svg = scatter("<b>rig</b>", &points);
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }
}
