//! What `top` holds of a running exporter: the `/api/v1` types it reads (the web's one
//! contract, [`crate::web::api`], named as `top` uses them) and a device's detail.

pub use crate::web::api::{
    ChipJson as Chip, ConfigRow, DeviceJson as Device, FleetJson as Fleet, HistoryJson as History,
    HistoryPoint as Point, Span, Totals, TuneInterruptedJson as TuneInterrupted,
};

/// Lines of an incident's captured log shown under it in the device view.
const TUI_LOG_LINES: usize = 3;

/// Events and session starts and ends of a history, oldest first, as (time, what, detail).
pub fn timeline(history: &History) -> Vec<(f64, String, String)> {
    let (since, until) = (history.since(), history.until());
    let mut lines: Vec<(f64, String, String)> = history
        .history
        .markers
        .iter()
        .flat_map(|m| {
            // An incident's last log lines follow it, indented, newest last.
            let tail = m.log_tail[m.log_tail.len().saturating_sub(TUI_LOG_LINES)..]
                .iter()
                .map(move |line| (m.t, "  miner log".to_string(), line.clone()));
            std::iter::once((m.t, m.kind.replace('_', " "), m.detail.clone())).chain(tail)
        })
        .collect();
    for s in &history.history.sessions {
        if s.started_at >= since {
            lines.push((s.started_at, format!("session #{} began", s.id), s.notes.clone()));
        }
        if let Some(end) = s.ended_at.filter(|e| *e <= until) {
            lines.push((end, format!("session #{} ended", s.id), String::new()));
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    lines
}

/// What the device view shows besides the live row.
#[derive(Debug, Clone, Default)]
pub struct DeviceDetail {
    pub name: String,
    /// The range it covers, seconds before its end.
    pub seconds: u64,
    pub history: History,
    pub configs: Vec<ConfigRow>,
    /// Why the detail could not be fetched, if it could not.
    pub error: Option<String>,
}
