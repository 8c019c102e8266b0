//! Drawing `top`: the fleet table (with a text sparkline of the last hour and its
//! variation), the device view (charts, the current configuration's steady statistics,
//! recent events) and the help. Colours are the 16 basic ones, none under `NO_COLOR`;
//! every miner string is made printable first (no terminal escape gets through).

use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::axeos::printable;
use crate::tui::app::{App, Link, Screen};
use crate::tui::model::{Device, DeviceDetail, Fleet, Span as Reading};
use crate::web::render::charts::time_label;
use crate::web::render::html::number;

/// Colours, or none.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// No colour when `NO_COLOR` is set to anything (https://no-color.org).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    fn ok(self) -> Style {
        self.fg(Color::Green)
    }

    fn warn(self) -> Style {
        self.fg(Color::Yellow).add_modifier(Modifier::BOLD)
    }

    fn bad(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default().add_modifier(Modifier::DIM)
        }
    }

    fn header(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }
}

/// A string from a miner or the config, safe for a terminal (control characters made
/// visible, zero-width and presentation selectors dropped so every terminal agrees on its
/// width), cut to `width` columns by display width, with an ellipsis when cut.
fn clean(text: &str, width: usize) -> String {
    use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};
    let text: String = printable(text).chars().filter(|c| c.width().unwrap_or(0) > 0).collect();
    if text.width() <= width {
        return text;
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        cut.push(c);
        used += w;
    }
    cut.push('…');
    cut
}

fn uptime(seconds: Option<u64>) -> String {
    match seconds {
        Some(s) if s >= 86_400 => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        Some(s) if s >= 3600 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        Some(s) => format!("{}m", s / 60),
        None => "–".into(),
    }
}

/// The last hour as `width` block characters (each the mean of its share of the minutes).
pub fn sparkline(values: &[Option<f64>], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let columns: Vec<Option<f64>> = (0..width)
        .map(|i| {
            let start = i * values.len() / width;
            let end = ((i + 1) * values.len() / width).max(start + 1).min(values.len());
            let present: Vec<f64> = values[start..end].iter().flatten().copied().collect();
            (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64)
        })
        .collect();
    let present: Vec<f64> = columns.iter().flatten().copied().collect();
    let (low, high) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    columns
        .iter()
        .map(|v| match v {
            None => ' ',
            Some(v) if high > low => BARS[(((v - low) / (high - low)) * 7.0).round().clamp(0.0, 7.0) as usize],
            Some(_) => BARS[3],
        })
        .collect()
}

fn temperature_style(theme: Theme, fleet: &Fleet, celsius: Option<f64>) -> Style {
    match celsius {
        Some(t) if fleet.max_temp_shutdown_c > 0.0 && t >= fleet.max_temp_shutdown_c => theme.bad(),
        Some(t) if fleet.max_temp_warning_c > 0.0 && t >= fleet.max_temp_warning_c => theme.warn(),
        _ => Style::default(),
    }
}

/// "up", "up: flatline", "stale", "DOWN", with its style.
fn base_state(theme: Theme, device: &Device) -> (String, Style) {
    match device.state.as_str() {
        "up" if device.problems.is_empty() => ("up".to_string(), theme.ok()),
        "up" => (
            format!("up: {}", device.problems.join(",").replace('_', " ")),
            theme.warn(),
        ),
        "stale" => ("stale".into(), theme.warn()),
        other => (other.to_uppercase(), theme.bad()),
    }
}

/// The fleet table's state: [`base_state`] and what is being done to the device in one word
/// ("· tuning", "· session"), so the column keeps its room for the verdict and the name.
fn state(theme: Theme, device: &Device) -> (String, Style) {
    let (mut text, style) = base_state(theme, device);
    if let Some(activity) = &device.activity {
        text.push_str(" · ");
        text.push_str(&crate::axeos::printable(activity.split(':').next().unwrap_or(activity)));
    }
    (text, style)
}

/// The device view's state: [`base_state`] and the activity in full
/// ("· tuning: sweep #3, step 2").
fn state_with_activity(theme: Theme, device: &Device) -> (String, Style) {
    let (mut text, style) = base_state(theme, device);
    if let Some(activity) = &device.activity {
        text.push_str(" · ");
        text.push_str(&crate::axeos::printable(activity));
    }
    (text, style)
}

/// The whole screen.
pub fn draw(frame: &mut Frame, app: &App, theme: Theme) {
    let area = frame.area();
    match &app.screen {
        Screen::Fleet => draw_fleet(frame, area, app, theme),
        Screen::Device(name) => draw_device(frame, area, app, name, theme),
    }
    if app.help {
        draw_help(frame, area, theme);
    }
}

/// Below this width the fleet table drops to the compact columns by itself, so names are
/// not cut to make room for the optional ones.
pub(crate) const AUTO_COMPACT_BELOW: u16 = 110;

fn header_lines(app: &App, compact: bool, theme: Theme) -> Vec<Line<'static>> {
    let t = &app.fleet.totals;
    let title = if compact { "top " } else { "bitaxe-exporter top " };
    let mut first = vec![
        Span::styled(title, theme.header()),
        Span::raw(format!(
            "{}/{} up · {:.2} TH/s · {:.0} W · {} J/TH",
            t.up,
            t.devices,
            t.hashrate_ghs / 1000.0,
            t.power_w,
            number(t.joules_per_terahash, 2)
        )),
    ];
    if let (Some(name), Some(celsius)) = (&t.hottest_device, t.hottest_asic_c) {
        first.push(Span::raw(" · hottest "));
        first.push(Span::styled(
            format!("{} {celsius:.1} °C", clean(name, 24)),
            temperature_style(theme, &app.fleet, Some(celsius)),
        ));
    }
    let mut second = vec![Span::styled(
        format!("sort: {} {}", app.sort.label(), if app.descending { "▼" } else { "▲" }),
        theme.dim(),
    )];
    if app.editing_filter || !app.filter.is_empty() {
        second.push(Span::raw(format!(
            " · filter: {}{}",
            printable(&app.filter),
            if app.editing_filter { "_" } else { "" }
        )));
    }
    match &app.link {
        Link::Connected => {}
        Link::Lost(error) => second.push(Span::styled(
            format!(" · exporter not answering ({}); last data shown", clean(error, 60)),
            theme.bad(),
        )),
    }
    // A sweep that left a miner on a test setting: said before anything else it shows.
    let left: Vec<&crate::tui::model::Device> = app
        .fleet
        .devices
        .iter()
        .filter(|d| d.tune_interrupted.is_some())
        .collect();
    if let Some(first_left) = left.first() {
        let run = first_left.tune_interrupted.as_ref().map_or(0, |s| s.run);
        let more = if left.len() > 1 {
            format!(" (+{} more)", left.len() - 1)
        } else {
            String::new()
        };
        second.insert(
            0,
            Span::styled(
                format!(
                    "sweep #{run} left {} unrestored{more}: tune restore --device {} · ",
                    clean(&first_left.name, 24),
                    clean(&first_left.name, 24)
                ),
                theme.bad(),
            ),
        );
    }
    vec![Line::from(first), Line::from(second)]
}

fn footer(app: &App, theme: Theme) -> Line<'static> {
    let keys = match app.screen {
        Screen::Fleet => "q quit  ? help  ↑↓ Enter device  / filter  s/S sort  r reverse  c compact",
        Screen::Device(_) => "q quit  ? help  Esc back  t 1h/24h",
    };
    Line::from(Span::styled(keys, theme.dim()))
}

fn draw_fleet(frame: &mut Frame, area: Rect, app: &App, theme: Theme) {
    let compact = app.compact || area.width < AUTO_COMPACT_BELOW;
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(3), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(header_lines(app, compact, theme)), head);
    frame.render_widget(Paragraph::new(footer(app, theme)), foot);

    let columns = fleet_columns(compact);
    let fixed: u16 = columns.iter().map(|(_, w)| w + 1).sum();
    let fleet = &app.fleet;
    // Measured over the whole fleet, not the filtered rows, so the columns hold still
    // while a filter is typed.
    let longest =
        |text: &dyn Fn(&Device) -> String| fleet.devices.iter().map(|d| display_width(&text(d))).max().unwrap_or(0);
    let (name_width, state_width) = name_and_state_widths(
        // The name, a space, the state, a space, then the fixed columns; one column spare.
        area.width.saturating_sub(fixed + 2),
        longest(&|d| d.name.clone()),
        longest(&|d| state(theme, d).0),
    );
    let mut widths = vec![Constraint::Length(name_width), Constraint::Length(state_width)];
    widths.extend(columns.iter().map(|(_, w)| Constraint::Length(*w)));
    let mut titles = vec![Cell::from("device"), Cell::from("state")];
    titles.extend(columns.iter().map(|(title, _)| Cell::from(*title)));
    let rows: Vec<Row> = app
        .rows()
        .into_iter()
        .map(|d| fleet_row(theme, fleet, d, compact, name_width, state_width))
        .collect();
    let empty = rows.is_empty();
    let table = Table::new(rows, widths)
        .header(Row::new(titles).style(theme.header()))
        .column_spacing(1)
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ratatui::widgets::TableState::default().with_selected(app.selected_row());
    frame.render_stateful_widget(table, body, &mut state);
    if empty {
        let text = if app.fleet.devices.is_empty() {
            "waiting for the exporter's first snapshot…"
        } else {
            "no device matches the filter (Esc clears it)"
        };
        let [_, line, _] =
            Layout::vertical([Constraint::Length(1), Constraint::Length(1), Constraint::Min(0)]).areas(body);
        frame.render_widget(Paragraph::new(text).style(theme.dim()), line);
    }
}

/// The name column keeps at least this much (or its longest name, when shorter), so a
/// long verdict cannot squeeze the names out of the table.
const NAME_FLOOR: u16 = 16;

/// A verdict longer than this is cut with an ellipsis (the device view spells it out).
const STATE_CEILING: u16 = 48;

/// The display width of a name or verdict as the table prints it.
fn display_width(text: &str) -> u16 {
    use unicode_width::UnicodeWidthStr;
    u16::try_from(clean(text, usize::MAX).width()).unwrap_or(u16::MAX)
}

/// Splits `room` columns between the name and the state: the state first, as wide as its
/// longest verdict (`up: power fault` is the news, not a name's tail), then the name gets
/// what is left, up to its longest; neither is ever narrower than its title.
fn name_and_state_widths(room: u16, longest_name: u16, longest_state: u16) -> (u16, u16) {
    let name_need = longest_name.max("device".len() as u16);
    let state_need = longest_state.clamp("state".len() as u16, STATE_CEILING);
    let state = state_need
        .min(room.saturating_sub(name_need.min(NAME_FLOOR)))
        .max("state".len() as u16);
    let name = name_need.min(room.saturating_sub(state)).max("device".len() as u16);
    (name, state)
}

/// The fleet table's columns after the name and the state, as (title, width); those two
/// share what is left ([`name_and_state_widths`]).
fn fleet_columns(compact: bool) -> Vec<(&'static str, u16)> {
    if compact {
        vec![("GH/s", 7), ("%", 4), ("W", 5), ("J/TH", 5), ("ASIC", 5), ("MHz/mV", 9)]
    } else {
        vec![
            ("GH/s", 8),
            ("%exp", 5),
            ("last hour", 12),
            ("CV%", 5),
            ("W", 6),
            ("J/TH", 6),
            ("ASIC°C", 6),
            ("VR°C", 5),
            ("MHz/mV", 10),
            ("uptime", 7),
        ]
    }
}

/// One device's row of the fleet table.
fn fleet_row(
    theme: Theme,
    fleet: &Fleet,
    d: &Device,
    compact: bool,
    name_width: u16,
    state_width: u16,
) -> Row<'static> {
    let (state_text, state_style) = state(theme, d);
    let down = d.state == "down";
    let mut cells = vec![
        Cell::from(clean(&d.name, name_width as usize)),
        Cell::from(clean(&state_text, state_width as usize)).style(state_style),
        Cell::from(number(d.hashrate_ghs, 1)),
        Cell::from(number(d.percent_of_expected, 0)).style(match d.percent_of_expected {
            Some(p) if p < 90.0 => theme.warn(),
            _ => Style::default(),
        }),
    ];
    if !compact {
        cells.push(Cell::from(sparkline(&d.hashrate_1h_ghs, 12)).style(theme.fg(Color::Cyan)));
        cells.push(Cell::from(number(d.hashrate_cv_1h_percent, 1)));
    }
    cells.push(Cell::from(number(d.power_w, 1)));
    cells.push(Cell::from(number(d.joules_per_terahash, 2)));
    cells.push(
        Cell::from(number(d.asic_temp_c, if compact { 0 } else { 1 })).style(temperature_style(
            theme,
            fleet,
            d.asic_temp_c,
        )),
    );
    if !compact {
        cells.push(Cell::from(number(d.vr_temp_c, 0)).style(temperature_style(theme, fleet, d.vr_temp_c)));
    }
    cells.push(Cell::from(format!(
        "{}/{}",
        number(d.frequency_mhz, 0),
        number(d.core_voltage_mv, 0)
    )));
    if !compact {
        cells.push(Cell::from(uptime(d.uptime_s)));
    }
    let row = Row::new(cells);
    if down {
        row.style(theme.dim())
    } else {
        row
    }
}

/// One line of a chart: its name, colour and (t, value) points.
type Plot<'a> = (&'a str, Color, Vec<(f64, f64)>);

/// Chart data: (t, value) of one reading's means.
fn series(
    points: &[crate::tui::model::Point],
    pick: fn(&crate::tui::model::Point) -> Option<Reading>,
) -> Vec<(f64, f64)> {
    points
        .iter()
        .filter_map(|p| pick(p).map(|s| (p.t, s.mean)))
        .filter(|(t, v)| t.is_finite() && v.is_finite())
        .collect()
}

fn bounds(sets: &[&[(f64, f64)]], lines: &[f64]) -> [f64; 2] {
    let values = sets
        .iter()
        .flat_map(|s| s.iter().map(|p| p.1))
        .chain(lines.iter().copied());
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !low.is_finite() {
        return [0.0, 1.0];
    }
    let pad = ((high - low) * 0.1).max(high.abs() * 0.01).max(0.5);
    let bounds = [low - pad, high + pad];
    if bounds.iter().all(|b| b.is_finite()) {
        bounds
    } else {
        [low, high]
    }
}

#[allow(clippy::too_many_arguments)]
fn chart(
    frame: &mut Frame,
    area: Rect,
    theme: Theme,
    title: &str,
    x: [f64; 2],
    data: Vec<Plot<'_>>,
    limits: Vec<(&str, Color, f64)>,
) {
    let limit_lines: Vec<Plot<'_>> = limits
        .iter()
        .filter(|(_, _, v)| v.is_finite() && *v > 0.0)
        .map(|(name, color, v)| (*name, *color, vec![(x[0], *v), (x[1], *v)]))
        .collect();
    let all: Vec<&[(f64, f64)]> = data.iter().map(|(_, _, d)| d.as_slice()).collect();
    let y = bounds(
        &all,
        &limits.iter().map(|l| l.2).filter(|v| *v > 0.0).collect::<Vec<_>>(),
    );
    let datasets: Vec<Dataset> = data
        .iter()
        .chain(limit_lines.iter())
        .map(|(name, color, points)| {
            Dataset::default()
                .name(*name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(theme.fg(*color))
                .data(points)
        })
        .collect();
    let span = x[1] - x[0];
    // Enough decimals that the three labels differ.
    let decimals = if y[1] - y[0] < 10.0 { 1 } else { 0 };
    let widget = Chart::new(datasets)
        .block(Block::default().borders(Borders::ALL).title(title.to_string()))
        .x_axis(Axis::default().bounds(x).labels([
            time_label(x[0], span),
            time_label((x[0] + x[1]) / 2.0, span),
            time_label(x[1], span),
        ]))
        .y_axis(
            Axis::default()
                .bounds(y)
                .labels([y[0], (y[0] + y[1]) / 2.0, y[1]].map(|v| format!("{v:.decimals$}"))),
        );
    frame.render_widget(widget, area);
}

fn draw_device(frame: &mut Frame, area: Rect, app: &App, name: &str, theme: Theme) {
    let [head, body, foot] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(6), Constraint::Length(1)]).areas(area);
    frame.render_widget(Paragraph::new(footer(app, theme)), foot);
    let live = app.fleet.devices.iter().find(|d| d.name == name);
    frame.render_widget(Paragraph::new(device_header(app, name, live, theme)), head);

    let detail = app.detail.as_ref().filter(|d| d.name == name);
    let Some(detail) = detail else {
        frame.render_widget(
            Paragraph::new(format!("loading the {}…", app.range.label())).style(theme.dim()),
            body,
        );
        return;
    };
    if let Some(error) = &detail.error {
        frame.render_widget(
            Paragraph::new(clean(error, 200))
                .style(theme.bad())
                .wrap(Wrap { trim: true }),
            body,
        );
        return;
    }
    let [charts, bottom] = Layout::vertical([Constraint::Percentage(70), Constraint::Percentage(30)]).areas(body);
    draw_history_charts(frame, charts, app, detail, theme);
    let [left, right] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(bottom);
    frame.render_widget(
        Paragraph::new(configuration_lines(detail, live)).block(
            Block::default()
                .borders(Borders::ALL)
                .title("current configuration, steady state"),
        ),
        left,
    );
    let events = event_lines(detail, left.height.saturating_sub(2) as usize, theme);
    frame.render_widget(
        Paragraph::new(events).block(Block::default().borders(Borders::ALL).title("recent events")),
        right,
    );
}

/// The device screen's two header lines: its state, board, firmware and problems, then its
/// readings.
fn device_header(app: &App, name: &str, live: Option<&Device>, theme: Theme) -> Vec<Line<'static>> {
    let mut first = vec![Span::styled(clean(name, 40), theme.header())];
    let mut second = Vec::new();
    match live {
        Some(d) => {
            let (text, style) = state_with_activity(theme, d);
            first.push(Span::raw("  "));
            first.push(Span::styled(clean(&text, 40), style));
            let what: Vec<String> = [
                d.board.as_deref().map(|b| clean(b, 16)),
                Some(clean(d.model.as_deref().unwrap_or("–"), 16)),
                Some(clean(d.firmware.as_deref().unwrap_or("–"), 24)),
            ]
            .into_iter()
            .flatten()
            .collect();
            let family = d
                .firmware_family
                .as_deref()
                .map(|f| format!(" ({})", clean(f, 10)))
                .unwrap_or_default();
            first.push(Span::raw(format!("  {}{family}", what.join(" · "))));
            for (reason, detail) in &d.problem_details {
                first.push(Span::styled(
                    format!("  {}: {}", clean(&reason.replace('_', " "), 24), clean(detail, 60)),
                    theme.bad(),
                ));
            }
            if let Some(reason) = &d.reset_reason {
                first.push(Span::raw(format!("  last reset: {}", clean(reason, 40))));
            }
            second.push(Span::raw(format!(
                "{} GH/s ({} % of expected) · {} W · {} J/TH · {} MHz / {} mV · ASIC ",
                number(d.hashrate_ghs, 1),
                number(d.percent_of_expected, 0),
                number(d.power_w, 1),
                number(d.joules_per_terahash, 2),
                number(d.frequency_mhz, 0),
                number(d.core_voltage_mv, 0),
            )));
            second.push(Span::styled(
                format!("{} °C", number(d.asic_temp_c, 1)),
                temperature_style(theme, &app.fleet, d.asic_temp_c),
            ));
            second.push(Span::raw(" · VR "));
            second.push(Span::styled(
                format!("{} °C", number(d.vr_temp_c, 1)),
                temperature_style(theme, &app.fleet, d.vr_temp_c),
            ));
        }
        None => second.push(Span::styled("no longer in the exporter's snapshot", theme.bad())),
    }
    vec![Line::from(first), Line::from(second)]
}

/// Hashrate, power and temperature over the selected range, one above the other.
fn draw_history_charts(frame: &mut Frame, area: Rect, app: &App, detail: &DeviceDetail, theme: Theme) {
    let rows = Layout::vertical([Constraint::Ratio(1, 3); 3]).split(area);
    let points = detail.history.points();
    // The exporter's clock, not this one: the points carry its times.
    let end = if detail.history.until() > 0.0 {
        detail.history.until()
    } else {
        app.fleet.generated_at
    };
    let x = [end - app.range.seconds(), end];
    chart(
        frame,
        rows[0],
        theme,
        &format!("hashrate GH/s, {}", app.range.label()),
        x,
        vec![
            ("hashrate", Color::Cyan, series(points, |p| p.hashrate_ghs)),
            ("expected", Color::Gray, series(points, |p| p.expected_ghs)),
        ],
        vec![],
    );
    chart(
        frame,
        rows[1],
        theme,
        "power W",
        x,
        vec![("power", Color::Yellow, series(points, |p| p.power_w))],
        vec![],
    );
    chart(
        frame,
        rows[2],
        theme,
        "temperature °C",
        x,
        vec![
            ("ASIC", Color::Red, series(points, |p| p.asic_temp_c)),
            ("VR", Color::Magenta, series(points, |p| p.vr_temp_c)),
        ],
        vec![
            ("warning", Color::Yellow, app.fleet.max_temp_warning_c),
            ("shutdown", Color::Red, app.fleet.max_temp_shutdown_c),
        ],
    );
}

/// The latest events of the range, newest first, as many as `height` lines hold.
fn event_lines(detail: &DeviceDetail, height: usize, theme: Theme) -> Vec<Line<'static>> {
    let events: Vec<Line<'static>> = crate::tui::model::timeline(&detail.history)
        .iter()
        .rev()
        .take(height)
        .map(|(t, what, detail)| {
            Line::from(format!(
                "{} {} {}",
                crate::time::format_short(*t).get(11..).unwrap_or(""),
                clean(what, 22),
                clean(detail, 80)
            ))
        })
        .collect();
    if events.is_empty() {
        vec![Line::from(Span::styled("no events in this range", theme.dim()))]
    } else {
        events
    }
}

fn configuration_lines(detail: &DeviceDetail, live: Option<&Device>) -> Vec<Line<'static>> {
    let current = live.and_then(|d| {
        detail.configs.iter().find(|c| {
            let same = |a: Option<f64>, b: Option<f64>| matches!((a, b), (Some(a), Some(b)) if (a - b).abs() < 1e-6);
            same(c.frequency_mhz, d.frequency_mhz) && same(c.core_voltage_mv, d.core_voltage_mv)
        })
    });
    match current {
        Some(c) => vec![
            Line::from(format!(
                "{} MHz / {} mV · {} steady samples over {}",
                number(c.frequency_mhz, 0),
                number(c.core_voltage_mv, 0),
                c.steady_samples,
                crate::analysis::duration_text(c.steady_seconds)
            )),
            Line::from(format!(
                "{} ± {} GH/s · {} % of expected",
                number(c.mean_hashrate_ghs, 1),
                number(c.hashrate_ci95_ghs, 1),
                number(c.percent_of_expected, 1)
            )),
            Line::from(format!(
                "{} J/TH · ASIC p95 {} °C · errors {} %",
                number(c.joules_per_terahash, 2),
                number(c.asic_temp_p95_c, 1),
                number(c.error_percent, 2)
            )),
        ],
        None => vec![Line::from("no steady data for this configuration yet")],
    }
}

fn draw_help(frame: &mut Frame, area: Rect, theme: Theme) {
    let text = vec![
        Line::from(Span::styled("keys", theme.header())),
        Line::from("↑ ↓ j k PgUp PgDn  select a device"),
        Line::from("Enter →            device view (charts, events)"),
        Line::from("Esc ← Backspace    back to the fleet"),
        Line::from("/                  filter by name (Enter keeps, Esc clears)"),
        Line::from("s S                next / previous sort column"),
        Line::from("r                  reverse the order"),
        Line::from("t                  device view: last hour / 24 hours"),
        Line::from("c                  compact columns"),
        Line::from("q Ctrl-C           quit"),
        Line::from(""),
        Line::from(Span::styled("any key closes this help", theme.dim())),
    ];
    let width = 58.min(area.width);
    let height = (text.len() as u16 + 2).min(area.height);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .alignment(Alignment::Left)
            .block(Block::default().borders(Borders::ALL).title("help")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_gets_its_room_before_the_name() {
        // 80 columns, compact: 37 left for the two. "up: power fault, hashrate frozen" (32)
        // keeps the name at its floor; a short verdict leaves the name whole.
        assert_eq!(name_and_state_widths(37, 32, 32), (NAME_FLOOR, 21));
        assert_eq!(name_and_state_widths(37, 32, 15), (22, 15));
        assert_eq!(name_and_state_widths(37, 10, 2), (10, 5));
        // 160 columns: both whole.
        assert_eq!(name_and_state_widths(78, 32, 32), (32, 32));
        // A short name is not padded to the floor; a tiny screen keeps the titles.
        assert_eq!(name_and_state_widths(37, 5, 60), (6, 31));
        assert_eq!(name_and_state_widths(3, 20, 20), (6, 5));
    }

    #[test]
    fn a_sparkline_scales_to_its_range_and_leaves_gaps_blank() {
        let mut values: Vec<Option<f64>> = (0..60).map(|i| Some(1000.0 + i as f64)).collect();
        values[0] = None;
        values[1] = None;
        let line = sparkline(&values, 30);
        assert_eq!(line.chars().count(), 30);
        assert!(line.starts_with(' '));
        assert!(line.ends_with('█'));
        assert_eq!(sparkline(&[Some(5.0); 60], 4), "▄▄▄▄", "flat is mid-height");
        assert_eq!(sparkline(&[], 4), "");
    }

    #[test]
    fn terminal_text_is_printable_and_cut_with_an_ellipsis() {
        assert!(!clean("evil\u{1b}[2Jname", 40).contains('\u{1b}'));
        assert_eq!(clean("a-very-long-device-name", 10), "a-very-lo…");
        // Wide characters count two columns; zero-width ones none.
        assert_eq!(clean("矿机矿机矿机", 7), "矿机矿…");
        let zero_width = clean("rig\u{200b}\u{fe0f}1", 10);
        assert!(
            !zero_width.contains('\u{200b}') && !zero_width.contains('\u{fe0f}'),
            "{zero_width:?}"
        );
    }
}
