//! A device's history as the device page, the report and `/api/v1/devices/NAME/history`
//! show it: the downsampled readings, the events inside the range as markers, and the
//! sessions that overlap it.

use serde::Serialize;

use crate::ledger::rollup::History;
use crate::ledger::sessions::SessionRow;
use crate::ledger::{self, DeviceRow, Ledger};

/// Points a chart is drawn from: about one per two pixels of a wide chart.
pub(crate) const CHART_POINTS: f64 = 600.0;

/// The most markers returned for one range (the newest kept): a flapping miner's years of
/// events must not make a page megabytes long.
pub(crate) const MAX_MARKERS: usize = 500;

/// The ranges the device page offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Range {
    Hour,
    Day,
    Week,
    Month,
    All,
}

impl Range {
    pub const ALL: [Range; 5] = [Range::Hour, Range::Day, Range::Week, Range::Month, Range::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Hour => "1h",
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// The range's length in seconds; `None` for everything.
    pub fn seconds(self) -> Option<f64> {
        match self {
            Range::Hour => Some(3600.0),
            Range::Day => Some(86_400.0),
            Range::Week => Some(7.0 * 86_400.0),
            Range::Month => Some(30.0 * 86_400.0),
            Range::All => None,
        }
    }
}

/// The step that draws [since, until] in about [`CHART_POINTS`] points (at least a second).
pub fn default_step(since: f64, until: f64) -> f64 {
    ((until - since) / CHART_POINTS).max(1.0)
}

/// Something that happened, drawn as a vertical line.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct Marker {
    pub t: f64,
    /// The ledger's event kind: `config_changed`, `rebooted`, `firmware_changed`,
    /// `temperature_warning`, `overheat_protection`, `mining_problem`, `offline`, ….
    pub kind: String,
    pub detail: String,
    /// The miner's last log lines, captured with an incident (firmware v2.14+).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl Marker {
    /// The markers drawn on the charts (the event list shows them all).
    pub fn is_charted(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "config_changed"
                | "rebooted"
                | "firmware_changed"
                | "temperature_warning"
                | "temperature_shutdown"
                | "overheat_protection"
                | "protective_action"
                | "mining_problem"
                | "offline"
        )
    }
}

/// A device's history over a range.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default)]
#[serde(default)]
pub struct DeviceHistory {
    pub device: String,
    #[serde(flatten)]
    pub history: History,
    pub markers: Vec<Marker>,
    /// Markers left out (older than the newest [`MAX_MARKERS`]).
    pub markers_omitted: usize,
    pub sessions: Vec<SessionRow>,
}

/// The history of `device` over [since, until] in buckets of about `step` seconds.
pub fn device_history(
    ledger: &Ledger,
    device: &DeviceRow,
    since: f64,
    until: f64,
    step: f64,
) -> ledger::Result<DeviceHistory> {
    let history = ledger.history(device.id, since, until, step)?;
    let (events, total) = ledger.latest_events(device.id, since, until, MAX_MARKERS)?;
    let markers: Vec<Marker> = events
        .into_iter()
        .map(|e| Marker {
            t: e.t,
            kind: e.kind,
            detail: e.detail,
            log_tail: e.log_tail,
        })
        .collect();
    let markers_omitted = total.saturating_sub(markers.len());
    let sessions = ledger
        .sessions(Some(device.id))?
        .into_iter()
        .filter(|s| s.started_at <= until && s.ended_at.is_none_or(|end| end >= since))
        .collect();
    Ok(DeviceHistory {
        device: device.name.clone(),
        history,
        markers,
        markers_omitted,
        sessions,
    })
}

/// The bounds of `range` for a device, ending now (at its last sample for everything), and
/// starting no earlier than its first sample: a device polled for ten minutes fills the
/// chart rather than its last sixth.
pub fn range_bounds(ledger: &Ledger, device: &DeviceRow, range: Range, now: f64) -> ledger::Result<(f64, f64)> {
    let span = ledger.sample_span(device.id)?;
    Ok(match (range.seconds(), span) {
        (Some(seconds), Some((first, _))) => ((now - seconds).max(first.min(now - 60.0)), now),
        (Some(seconds), None) => (now - seconds, now),
        (None, Some((first, last))) => (first, last.max(first + 60.0)),
        (None, None) => (now - 3600.0, now),
    })
}
