//! `top`'s state and what each key does: sorting, filtering, selection, the device view,
//! the range, help. Pure (no terminal, no network), so the key handling is tested directly.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::tui::model::{Device, DeviceDetail, Fleet};

/// The columns `top` sorts by (`--sort`, `s` / `S`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    Name,
    State,
    Hashrate,
    Percent,
    Variation,
    Power,
    Efficiency,
    Asic,
    Vr,
    Frequency,
    Uptime,
}

impl SortKey {
    pub const ALL: [SortKey; 11] = [
        SortKey::Name,
        SortKey::State,
        SortKey::Hashrate,
        SortKey::Percent,
        SortKey::Variation,
        SortKey::Power,
        SortKey::Efficiency,
        SortKey::Asic,
        SortKey::Vr,
        SortKey::Frequency,
        SortKey::Uptime,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::State => "state",
            SortKey::Hashrate => "hashrate",
            SortKey::Percent => "% of expected",
            SortKey::Variation => "variation",
            SortKey::Power => "power",
            SortKey::Efficiency => "J/TH",
            SortKey::Asic => "ASIC °C",
            SortKey::Vr => "VR °C",
            SortKey::Frequency => "frequency",
            SortKey::Uptime => "uptime",
        }
    }

    /// Text columns sort A→Z first; numbers largest first.
    fn ascending_first(self) -> bool {
        matches!(self, SortKey::Name | SortKey::State | SortKey::Efficiency)
    }

    fn value(self, d: &Device) -> Option<f64> {
        match self {
            SortKey::Name => None,
            SortKey::State => Some(match d.state.as_str() {
                "up" if d.mining_healthy != Some(false) => 0.0,
                "up" => 1.0,
                "stale" => 2.0,
                _ => 3.0,
            }),
            SortKey::Hashrate => d.hashrate_ghs,
            SortKey::Percent => d.percent_of_expected,
            SortKey::Variation => d.hashrate_cv_1h_percent,
            SortKey::Power => d.power_w,
            SortKey::Efficiency => d.joules_per_terahash,
            SortKey::Asic => d.asic_temp_c,
            SortKey::Vr => d.vr_temp_c,
            SortKey::Frequency => d.frequency_mhz,
            SortKey::Uptime => d.uptime_s.map(|u| u as f64),
        }
    }
}

/// The device view's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Hour,
    Day,
}

impl Range {
    pub fn seconds(self) -> f64 {
        match self {
            Range::Hour => 3600.0,
            Range::Day => 86_400.0,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::Hour => "last hour",
            Range::Day => "last 24 hours",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Screen {
    Fleet,
    /// The device view of this device.
    Device(String),
}

/// Whether the exporter answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    Connected,
    /// The latest fetch failed (the last data stays on screen).
    Lost(String),
}

/// What a key asked for beyond the state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Fetch this device's history and configurations (the device view opened or its range changed).
    LoadDevice(String, u64),
}

#[derive(Debug, Clone)]
pub struct App {
    pub fleet: Fleet,
    pub link: Link,
    pub sort: SortKey,
    pub descending: bool,
    pub filter: String,
    /// Typing into the filter.
    pub editing_filter: bool,
    /// The selected device, by name (stays on it when the order changes).
    pub selected: Option<String>,
    pub screen: Screen,
    pub range: Range,
    pub help: bool,
    pub compact: bool,
    pub detail: Option<DeviceDetail>,
    /// Unix seconds of the last successful fetch.
    pub fetched_at: Option<f64>,
}

impl App {
    pub fn new(sort: SortKey, compact: bool) -> App {
        App {
            fleet: Fleet::default(),
            link: Link::Connected,
            sort,
            descending: !sort.ascending_first(),
            filter: String::new(),
            editing_filter: false,
            selected: None,
            screen: Screen::Fleet,
            range: Range::Hour,
            help: false,
            compact,
            detail: None,
            fetched_at: None,
        }
    }

    /// A new snapshot arrived.
    pub fn set_fleet(&mut self, fleet: Fleet, now: f64) {
        self.fleet = fleet;
        self.link = Link::Connected;
        self.fetched_at = Some(now);
        // A device that left the snapshot gives the selection to the first row.
        if self.selected_row().is_none() {
            if let Some(first) = self.rows().first() {
                self.selected = Some(first.name.clone());
            }
        }
    }

    /// The devices shown, filtered and sorted.
    pub fn rows(&self) -> Vec<&Device> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&Device> = self
            .fleet
            .devices
            .iter()
            .filter(|d| d.name.to_lowercase().contains(&needle))
            .collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            let order = match (key.value(a), key.value(b)) {
                _ if key == SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                (Some(x), Some(y)) => x.total_cmp(&y),
                // Missing values last, whichever the direction.
                (Some(_), None) => return std::cmp::Ordering::Less,
                (None, Some(_)) => return std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            };
            let order = if self.descending { order.reverse() } else { order };
            order.then_with(|| a.name.cmp(&b.name))
        });
        rows
    }

    fn selected_index(&self, rows: &[&Device]) -> Option<usize> {
        let name = self.selected.as_deref()?;
        rows.iter().position(|d| d.name == name)
    }

    fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let current = self.selected_index(&rows).unwrap_or(0) as isize;
        let next = (current + by).clamp(0, rows.len() as isize - 1) as usize;
        self.selected = Some(rows[next].name.clone());
    }

    /// The selected row's index among the rows shown.
    pub fn selected_row(&self) -> Option<usize> {
        self.selected_index(&self.rows())
    }

    fn set_sort(&mut self, key: SortKey) {
        self.sort = key;
        self.descending = !key.ascending_first();
    }

    fn cycle_sort(&mut self, forward: bool) {
        let index = SortKey::ALL.iter().position(|k| *k == self.sort).unwrap_or(0);
        let count = SortKey::ALL.len();
        let next = if forward {
            (index + 1) % count
        } else {
            (index + count - 1) % count
        };
        self.set_sort(SortKey::ALL[next]);
    }

    fn device_action(&self) -> Action {
        match &self.screen {
            Screen::Device(name) => Action::LoadDevice(name.clone(), self.range.seconds() as u64),
            Screen::Fleet => Action::None,
        }
    }

    /// Applies a key.
    pub fn key(&mut self, key: KeyEvent) -> Action {
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if control => return Action::Quit,
            // The usual line-editing keys in the filter.
            KeyCode::Char('u') if control && self.editing_filter => {
                self.filter.clear();
                return Action::None;
            }
            KeyCode::Char('h') if control && self.editing_filter => {
                self.filter.pop();
                return Action::None;
            }
            // Anything else with Ctrl or Alt is not one of ours: it neither types into the
            // filter nor quits (an Esc followed at once by a key arrives as Alt+key).
            _ if control || key.modifiers.contains(KeyModifiers::ALT) => return Action::None,
            _ => {}
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) if !c.is_control() && self.filter.chars().count() < 64 => self.filter.push(c),
                _ => {}
            }
            // The selection moves to the first match only when it is filtered out, and
            // stays put while nothing matches (so clearing the filter gives it back).
            if self.selected_row().is_none() {
                if let Some(first) = self.rows().first() {
                    self.selected = Some(first.name.clone());
                }
            }
            return Action::None;
        }
        if self.help {
            self.help = false;
            return if key.code == KeyCode::Char('q') {
                Action::Quit
            } else {
                Action::None
            };
        }
        match key.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::F(1) => self.help = true,
            KeyCode::Char('c') => self.compact = !self.compact,
            KeyCode::Esc | KeyCode::Backspace | KeyCode::Left if self.screen != Screen::Fleet => {
                self.screen = Screen::Fleet;
                self.detail = None;
            }
            KeyCode::Esc if !self.filter.is_empty() => self.filter.clear(),
            KeyCode::Char('/') if self.screen == Screen::Fleet => self.editing_filter = true,
            KeyCode::Char('s') => self.cycle_sort(true),
            KeyCode::Char('S') => self.cycle_sort(false),
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Char('t') => {
                self.range = match self.range {
                    Range::Hour => Range::Day,
                    Range::Day => Range::Hour,
                };
                return self.device_action();
            }
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX / 2),
            KeyCode::Enter | KeyCode::Right if self.screen == Screen::Fleet => {
                if let Some(name) = self.selected.clone().filter(|_| self.selected_row().is_some()) {
                    self.screen = Screen::Device(name);
                    self.detail = None;
                    return self.device_action();
                }
            }
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, state: &str, hashrate: Option<f64>) -> Device {
        Device {
            name: name.into(),
            state: state.into(),
            hashrate_ghs: hashrate,
            ..Device::default()
        }
    }

    fn app() -> App {
        let mut app = App::new(SortKey::Name, false);
        app.set_fleet(
            Fleet {
                devices: vec![
                    device("charlie", "up", Some(1200.0)),
                    device("alpha", "up", Some(400.0)),
                    device("bravo", "down", None),
                ],
                ..Fleet::default()
            },
            0.0,
        );
        app
    }

    fn press(app: &mut App, code: KeyCode) -> Action {
        app.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn names(app: &App) -> Vec<&str> {
        app.rows().iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn sorting_cycles_through_the_columns_reverses_and_keeps_missing_values_last() {
        let mut app = app();
        assert_eq!(names(&app), ["alpha", "bravo", "charlie"]);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, SortKey::State);
        press(&mut app, KeyCode::Char('s'));
        assert_eq!(app.sort, SortKey::Hashrate);
        assert_eq!(names(&app), ["charlie", "alpha", "bravo"], "largest first, down last");
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(names(&app), ["alpha", "charlie", "bravo"], "down still last");
        press(&mut app, KeyCode::Char('S'));
        press(&mut app, KeyCode::Char('S'));
        assert_eq!(app.sort, SortKey::Name);
    }

    #[test]
    fn filtering_selecting_and_the_device_view() {
        let mut app = app();
        assert_eq!(app.selected.as_deref(), Some("alpha"));
        press(&mut app, KeyCode::Down);
        assert_eq!(app.selected.as_deref(), Some("bravo"));
        for key in [
            KeyCode::Char('/'),
            KeyCode::Char('C'),
            KeyCode::Char('h'),
            KeyCode::Enter,
        ] {
            press(&mut app, key);
        }
        assert_eq!(names(&app), ["charlie"]);
        assert_eq!(
            app.selected.as_deref(),
            Some("charlie"),
            "the selection follows the filter"
        );
        // `q` while typing is a letter, not quit.
        press(&mut app, KeyCode::Char('/'));
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::None);
        press(&mut app, KeyCode::Esc);
        assert_eq!(names(&app).len(), 3);
        assert_eq!(
            press(&mut app, KeyCode::Enter),
            Action::LoadDevice("charlie".into(), 3600)
        );
        assert_eq!(app.screen, Screen::Device("charlie".into()));
        assert_eq!(
            press(&mut app, KeyCode::Char('t')),
            Action::LoadDevice("charlie".into(), 86_400)
        );
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.screen, Screen::Fleet);
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        press(&mut app, KeyCode::Char('x'));
        assert!(!app.help);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Action::Quit);
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)),
            Action::None,
            "Ctrl-Q is not q"
        );
        assert_eq!(
            app.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Action::Quit
        );
    }
}
