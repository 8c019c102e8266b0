//! `analyze events`: what happened to the miners, from the ledger — reboots with the
//! firmware's reset reason, faults, overheat trips and mining problems, each with the
//! miner's log tail where one was captured.

use super::output::{emit, print_json, ListFormat};
use super::settings::{known_device, ledger_failure, parse_time_arg};
use super::Failure;
use crate::axeos::printable;
use crate::ledger::Ledger;
use crate::time;

/// `analyze events`'s arguments.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only this device's events.
    #[arg(long)]
    pub device: Option<String>,
    /// Start of the range: RFC 3339 or a duration ago (24h, 7d); default all history.
    #[arg(long)]
    pub since: Option<String>,
    /// End of the range: RFC 3339 or a duration ago.
    #[arg(long)]
    pub until: Option<String>,
    /// Only incidents: reboots, faults, overheat trips and mining problems.
    #[arg(long)]
    pub incidents: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// Kinds of event that are incidents (what the miner's log tail is captured for).
const INCIDENT_KINDS: [&str; 3] = ["rebooted", "overheat_protection", "mining_problem"];

pub(super) fn list_events(ledger: &Ledger, args: EventsArgs) -> Result<(), Failure> {
    let device_id = match args.device.as_deref() {
        Some(name) => Some(known_device(ledger, name)?.id),
        None => None,
    };
    let since = parse_time_arg("--since", args.since.as_deref())?.unwrap_or(f64::MIN);
    let until = parse_time_arg("--until", args.until.as_deref())?.unwrap_or(f64::MAX);
    let events: Vec<_> = ledger
        .fleet_events(device_id, since, until)
        .map_err(ledger_failure)?
        .into_iter()
        .filter(|(_, e)| !args.incidents || INCIDENT_KINDS.contains(&e.kind.as_str()))
        .collect();
    match args.format {
        ListFormat::Json => print_json(
            &events
                .iter()
                .map(|(device, e)| {
                    serde_json::json!({
                        "time": time::format(e.t), "device": device, "kind": e.kind,
                        "detail": e.detail, "log_tail": e.log_tail,
                    })
                })
                .collect::<Vec<_>>(),
        ),
        ListFormat::Table => {
            use std::fmt::Write as _;
            let mut text = String::new();
            if events.is_empty() {
                text.push_str("(no events in this range)\n");
            }
            for (device, e) in &events {
                let _ = writeln!(
                    text,
                    "{}  {}  {}: {}",
                    time::format(e.t),
                    printable(device),
                    e.kind.replace('_', " "),
                    printable(&e.detail)
                );
                text.push_str(&log_tail_text(&e.log_tail, "    "));
            }
            emit(&text)
        }
    }
}

/// A captured log tail as indented lines under its event, introduced once; stored lines
/// are escaped again on the way out (a ledger may predate the cleaning).
pub(super) fn log_tail_text(lines: &[String], indent: &str) -> String {
    use std::fmt::Write as _;
    if lines.is_empty() {
        return String::new();
    }
    let mut text = format!("{indent}miner log, last {} lines:\n", lines.len());
    for line in lines {
        let _ = writeln!(text, "{indent}  {}", printable(line));
    }
    text
}
