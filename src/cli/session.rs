//! `session start | end | list | show`: test sessions on a device, optionally applied to
//! the miner through the plausibility window.

use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;

use super::output::{emit, print_json, status_line, ListFormat};
use super::settings::{known_device, ledger_failure, session_failure, LedgerSettings};
use super::Failure;
use crate::analysis::{self, Query};
use crate::axeos::apply::{self, ApplyError, Write};
use crate::axeos::printable;
use crate::axeos::window::{CheckedPatch, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::ledger::sessions::{self, NewSession, SessionError, SessionRow};
use crate::time;

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Open a session on a device (one open session per device).
    Start(StartArgs),
    /// Close the device's open session.
    End(EndArgs),
    /// List sessions.
    List(ListArgs),
    /// A session with the steady-state statistics of its time range.
    Show(ShowArgs),
}

/// `session start`'s arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    #[arg(long)]
    pub device: String,
    /// Target frequency, MHz.
    #[arg(long)]
    pub freq: Option<f64>,
    /// Target core voltage, mV.
    #[arg(long)]
    pub voltage: Option<u32>,
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Send the targets to the miner (PATCH /api/system) and read them back.
    #[arg(long)]
    pub apply: bool,
    /// With --apply: send targets outside the chip's plausibility window too.
    #[arg(long, requires = "apply")]
    pub force: bool,
    /// With --apply: write to a miner of an unknown firmware family by this family's rules.
    #[arg(long, requires = "apply", value_parser = crate::axeos::family::parse_known)]
    pub assume_family: Option<crate::axeos::family::FirmwareFamily>,
}

/// `session end`'s arguments.
#[derive(Debug, clap::Args)]
pub struct EndArgs {
    #[arg(long)]
    pub device: String,
    #[arg(long, default_value = "")]
    pub notes: String,
}

/// `session list`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

/// `session show`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    pub id: i64,
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub format: ListFormat,
}

impl SessionCommand {
    pub async fn run(self, settings: &LedgerSettings) -> Result<(), Failure> {
        match self {
            SessionCommand::Start(args) => args.run(settings).await,
            SessionCommand::End(args) => session_end(settings, &args.device, &args.notes),
            SessionCommand::List(args) => session_list(settings, args.device.as_deref(), args.format),
            SessionCommand::Show(args) => session_show(settings, args.id, args.format),
        }
    }
}

impl StartArgs {
    pub async fn run(self, settings: &LedgerSettings) -> Result<(), Failure> {
        let targets = Targets {
            freq: self.freq,
            voltage: self.voltage,
            apply: self.apply,
            force: self.force,
            assume_family: self.assume_family,
        };
        session_start(settings, &self.device, targets, &self.notes).await
    }
}

/// What `session start` asks of the miner.
#[derive(Debug, Clone, Copy)]
struct Targets {
    freq: Option<f64>,
    voltage: Option<u32>,
    apply: bool,
    force: bool,
    assume_family: Option<crate::axeos::family::FirmwareFamily>,
}

async fn session_start(settings: &LedgerSettings, device: &str, targets: Targets, notes: &str) -> Result<(), Failure> {
    check_targets(&targets)?;
    let Targets {
        freq, voltage, apply, ..
    } = targets;
    let mut ledger = settings.open_for_writing()?;
    let row = sessions::resolve_device(&mut ledger, device, &settings.configured_names()).map_err(session_failure)?;
    sessions::check_none_open(&ledger, &row).map_err(session_failure)?;

    let mut mismatch = None;
    // A session that applies its targets starts when they are sent: the change and its
    // read-back fall inside it.
    let mut started_at = time::now_unix();
    if apply {
        (started_at, mismatch) = apply_targets(settings, device, &row.name, &targets).await?;
    }

    let started = sessions::start(
        &mut ledger,
        &NewSession {
            device: &row,
            at: started_at,
            target_frequency_mhz: freq,
            target_core_voltage_mv: voltage.map(f64::from),
            notes,
            applied: apply,
            tune_run_id: None,
        },
    )
    .map_err(session_failure)?;
    emit(&format!(
        "session #{} started on {} at {}; target {}{}\n",
        started.id,
        started.device,
        time::format(started.started_at),
        started.target(),
        if apply { " (applied to the miner)" } else { "" }
    ))?;
    match mismatch {
        Some(m) => Err(Failure::Runtime(anyhow::anyhow!(
            "session #{} is recorded, but {} reports {m}",
            started.id,
            started.device
        ))),
        None => Ok(()),
    }
}

/// A frequency or voltage no miner could be set to is the user's to fix, before anything
/// is opened.
fn check_targets(targets: &Targets) -> Result<(), Failure> {
    if targets
        .freq
        .is_some_and(|f| !(f.is_finite() && f > 0.0 && f <= 65_535.0))
    {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--freq must be a frequency in MHz between 1 and 65535"
        )));
    }
    if targets.voltage.is_some_and(|v| v == 0 || v > 65_535) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--voltage must be a core voltage in mV between 1 and 65535"
        )));
    }
    Ok(())
}

/// `session start --apply`: sends the targets to the miner (checked against its window
/// unless `--force`) and returns when they were sent, with what the miner reports instead
/// when its read-back differs.
async fn apply_targets(
    settings: &LedgerSettings,
    device: &str,
    ledger_name: &str,
    targets: &Targets,
) -> Result<(f64, Option<String>), Failure> {
    if targets.freq.is_none() && targets.voltage.is_none() {
        return Err(Failure::Usage(anyhow::anyhow!("--apply needs --freq and/or --voltage")));
    }
    let address = settings
        .devices
        .iter()
        .find(|d| d.name == device || d.name == ledger_name)
        .map(|d| d.address.clone())
        .ok_or_else(|| {
            Failure::Usage(anyhow::anyhow!(
                "--apply needs \"{device}\" in config.yaml to know its address"
            ))
        })?;
    let client = AxeOsClient::new(Duration::from_secs(5), Duration::ZERO)?;
    let patch = SettingsPatch {
        frequency: targets.freq,
        core_voltage: targets.voltage,
    };
    let current = client.system_info(&address).await;
    let checked = if targets.force {
        status_line(&format!(
            "{device}: --force: sending {} without checking the plausibility window",
            patch_text(&patch)
        ));
        CheckedPatch::forced(patch)
    } else {
        let current = current
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("cannot read {device} at {address} to check the targets; nothing sent"))?;
        let options = client.asic_options(&address).await.unwrap_or(None);
        let window = SettingsWindow::for_miner(
            current.identity.asic_model.as_deref(),
            options.as_ref().map(|(f, v)| (f.as_slice(), v.as_slice())),
        );
        window
            .check(&patch)
            .map_err(|e| Failure::Usage(anyhow::anyhow!("{device}: {e}")))?
    };
    let identity = write_identity(device, current.ok().map(|c| c.identity), targets.assume_family)?;
    let started_at = time::now_unix();
    match apply::apply(&client, &address, Write::for_miner(&checked, &identity), None).await {
        Ok(_) => Ok((started_at, None)),
        Err(ApplyError::Mismatch { message, .. }) => Ok((started_at, Some(message))),
        Err(e) => Err(Failure::Runtime(anyhow::anyhow!(
            "cannot apply the settings to {device} at {address}: {e}; no session started"
        ))),
    }
}

/// The identity whose family's write rules (a restart to apply, or not) the write follows:
/// never guessed for an unknown family, nor for a miner that cannot be read, unless
/// `--assume-family` says.
fn write_identity(
    device: &str,
    read: Option<crate::axeos::Identity>,
    assume_family: Option<crate::axeos::family::FirmwareFamily>,
) -> Result<crate::axeos::Identity, Failure> {
    let mut identity = read.unwrap_or_default();
    if identity.family == crate::axeos::family::FirmwareFamily::Unknown {
        match assume_family {
            Some(assumed) => identity.family = assumed,
            None => {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "{}; no session started",
                    crate::axeos::family::unknown_refusal(device, identity.firmware.as_deref())
                )))
            }
        }
    }
    Ok(identity)
}

/// `frequency 700 MHz, core voltage 1300 mV`: what a patch sets.
fn patch_text(patch: &SettingsPatch) -> String {
    let mut parts = Vec::new();
    if let Some(f) = patch.frequency {
        parts.push(format!("frequency {f} MHz"));
    }
    if let Some(v) = patch.core_voltage {
        parts.push(format!("core voltage {v} mV"));
    }
    parts.join(", ")
}

fn session_end(settings: &LedgerSettings, device: &str, notes: &str) -> Result<(), Failure> {
    let mut ledger = settings.open_for_writing()?;
    let row = sessions::resolve_device(&mut ledger, device, &settings.configured_names()).map_err(session_failure)?;
    let ended = sessions::end(&mut ledger, &row, time::now_unix(), notes).map_err(session_failure)?;
    emit(&format!(
        "session #{} on {} ended at {} after {}\n",
        ended.id,
        ended.device,
        time::format(ended.ended_at.unwrap_or(ended.started_at)),
        analysis::duration_text(ended.ended_at.unwrap_or(ended.started_at) - ended.started_at)
    ))
}

fn session_list(settings: &LedgerSettings, device: Option<&str>, format: ListFormat) -> Result<(), Failure> {
    let ledger = settings.open()?;
    let device_id = match device {
        Some(name) => Some(known_device(&ledger, name)?.id),
        None => None,
    };
    let sessions = ledger.sessions(device_id).map_err(ledger_failure)?;
    match format {
        ListFormat::Table => emit(&sessions_table(&sessions))?,
        ListFormat::Json => print_json(&sessions)?,
    }
    Ok(())
}

fn session_show(settings: &LedgerSettings, id: i64, format: ListFormat) -> Result<(), Failure> {
    let ledger = settings.open()?;
    let found = ledger.session(id).map_err(ledger_failure)?;
    let shown = found.ok_or_else(|| session_failure(SessionError::NotFound(id)))?;
    let device = known_device(&ledger, &shown.device)?;
    let until = shown.ended_at.unwrap_or_else(time::now_unix);
    let rows = analysis::compare_configs(
        &ledger,
        &Query {
            device_id: Some(device.id),
            since: Some(shown.started_at),
            until: Some(until),
            warmup_seconds: settings.warmup_seconds,
        },
    )
    .map_err(ledger_failure)?;
    let events = ledger
        .events_between(device.id, shown.started_at, until)
        .map_err(ledger_failure)?;
    match format {
        ListFormat::Json => print_json(&serde_json::json!({
            "session": shown,
            "configurations": rows,
            "events": events.iter().map(|e| serde_json::json!({
                "time": time::format(e.t), "kind": e.kind, "detail": e.detail, "log_tail": e.log_tail
            })).collect::<Vec<_>>(),
        }))?,
        ListFormat::Table => {
            use std::fmt::Write as _;
            let mut text = String::new();
            let _ = writeln!(text, "session #{} on {}", shown.id, shown.device);
            let _ = writeln!(
                text,
                "  from {} to {} ({})",
                time::format(shown.started_at),
                shown.ended_at.map_or("now (open)".into(), time::format),
                analysis::duration_text(until - shown.started_at)
            );
            let applied = if shown.applied { " (applied)" } else { "" };
            let _ = writeln!(text, "  target {}{applied}", shown.target());
            // Stored text may predate the decoder's escaping: escape again on the way out.
            if !shown.notes.is_empty() {
                let _ = writeln!(text, "  notes: {}", printable(&shown.notes));
            }
            if !shown.end_notes.is_empty() {
                let _ = writeln!(text, "  end notes: {}", printable(&shown.end_notes));
            }
            text.push('\n');
            text.push_str(&super::analyze::configs_table(&rows));
            if !events.is_empty() {
                text.push_str("\nevents:\n");
                for event in &events {
                    let _ = writeln!(text, "  {}  {}", time::format(event.t), printable(&event.detail));
                    text.push_str(&super::events::log_tail_text(&event.log_tail, "      "));
                }
            }
            emit(&text)?;
        }
    }
    Ok(())
}

/// Sessions as a table sized to the terminal.
fn sessions_table(sessions: &[SessionRow]) -> String {
    use super::table::{key, label, number, text};
    if sessions.is_empty() {
        return "(no sessions)\n".into();
    }
    let columns = [
        number("ID"),
        key("DEVICE"),
        label("STARTED (UTC)"),
        label("ENDED"),
        label("TARGET"),
        text("NOTES"),
    ];
    let rows: Vec<Vec<String>> = sessions
        .iter()
        .map(|s| {
            let notes = match (s.notes.as_str(), s.end_notes.as_str()) {
                (a, "") => a.to_string(),
                ("", b) => b.to_string(),
                (a, b) => format!("{a} / {b}"),
            };
            vec![
                s.id.to_string(),
                s.device.clone(),
                time::format_short(s.started_at),
                s.ended_at.map_or("open".into(), time::format_short),
                s.target(),
                crate::axeos::printable(&notes).into_owned(),
            ]
        })
        .collect();
    super::table::render(&columns, &rows)
}
