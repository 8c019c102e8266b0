//! Carrying out a protective plan on a miner: the step below its settings (the miner's or
//! the chip's lists, never under the lowest), a pause read back until the miner reports
//! itself paused, a restore of the last good configuration that clears the overheat latch —
//! each through the one apply path, or only described in a dry run. Deciding when to act is
//! [`crate::daemon::protect`]'s.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::protect::{firmware_at_least, step_below, Outcome, Plan};
use crate::axeos::apply::{self, ApplyError, Write};
use crate::axeos::sample::{format_label_number, Sample};
use crate::axeos::window::{chip_options, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::MinerAddress;

/// Carries out a plan on a miner (or only describes it, in a dry run). A `stop` that comes
/// while it waits for the miner ends the wait; what was sent is still reported.
pub async fn execute(
    client: &AxeOsClient,
    address: &MinerAddress,
    sample: &Sample,
    plan: &Plan,
    dry_run: bool,
    stop: Option<&watch::Receiver<bool>>,
) -> Outcome {
    let temperature = sample
        .asic_temp_celsius
        .map_or_else(|| "?".into(), |t| format!("{t:.1} °C"));
    let current = (
        sample.frequency_mhz.unwrap_or(0.0),
        sample.core_voltage_mv.unwrap_or(0.0),
    );
    if sample.identity.family == crate::axeos::family::FirmwareFamily::Unknown {
        // Its write rules are not known: nothing is sent, said once until it cools.
        return Outcome {
            action: match plan {
                Plan::Pause => "pause",
                Plan::StepDown => "step_down",
                Plan::Restore { .. } => "restore_last_good",
            },
            result: "failed",
            detail: format!(
                "at {temperature}: its firmware family is unknown (version {}), so protective actions do not write \
                 to it; not tried again until it cools",
                crate::axeos::printable(sample.identity.firmware.as_deref().unwrap_or("not reported"))
            ),
            at_floor: true,
        };
    }
    let pause_supported = sample.identity.family == crate::axeos::family::FirmwareFamily::EspMiner
        && firmware_at_least(sample.identity.firmware.as_deref(), (2, 14));
    let window = SettingsWindow::for_miner(sample.identity.asic_model.as_deref(), None);
    let action = match plan {
        Plan::Pause => "pause",
        Plan::StepDown => "step_down",
        Plan::Restore { .. } => "restore_last_good",
    };
    let failed = |what: &str, why: String| Outcome {
        action,
        result: "failed",
        detail: format!("could not {what} at {temperature}: {why}"),
        at_floor: false,
    };
    let target = match plan {
        Plan::Pause if pause_supported => None,
        Plan::StepDown | Plan::Pause => {
            let options = client.asic_options(address).await.ok().flatten();
            let lists = options
                .as_ref()
                .map(|(f, v)| (f.as_slice(), v.as_slice()))
                .or_else(|| sample.identity.asic_model.as_deref().and_then(chip_options));
            let floor = (window.frequency_mhz.0, window.core_voltage_mv.0);
            // Firmware that takes whole MHz only gets a whole step (rounded down: cooler).
            let whole_mhz =
                crate::axeos::family::takes_fractional_mhz(sample.identity.family, sample.identity.firmware.as_deref())
                    == Some(false);
            match step_below(current, lists, floor) {
                Some(next) if whole_mhz => Some((next.0.floor(), next.1)),
                Some(next) => Some(next),
                None => {
                    let mut outcome = failed(
                        "step down",
                        format!(
                            "{} MHz / {} mV is already the lowest listed setting; not tried again until it cools",
                            format_label_number(current.0),
                            format_label_number(current.1)
                        ),
                    );
                    outcome.at_floor = true;
                    return outcome;
                }
            }
        }
        Plan::Restore {
            frequency_mhz,
            core_voltage_mv,
        } => Some((*frequency_mhz, *core_voltage_mv)),
    };
    let what = match target {
        None => "pause mining".to_string(),
        Some((f, v)) => format!(
            "{} MHz / {} mV -> {} MHz / {} mV",
            format_label_number(current.0),
            format_label_number(current.1),
            format_label_number(f),
            format_label_number(v)
        ),
    };
    if dry_run {
        return Outcome {
            action,
            result: "dry_run",
            detail: format!("would {what} at {temperature} (protective_action_dry_run: nothing sent)"),
            at_floor: false,
        };
    }
    let Some((f, v)) = target else {
        return pause(client, address, &temperature, stop).await;
    };
    let patch = SettingsPatch {
        frequency: Some(f),
        core_voltage: Some(v.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    };
    let checked = match window.check(&patch) {
        Ok(checked) => checked,
        Err(e) => return failed(&what, e.to_string()),
    };
    // Up to v2.10 the protection latches (overheat_mode stays 1, mining halted) until
    // cleared: a restore that did not clear it would leave the miner stopped.
    let latched = matches!(plan, Plan::Restore { .. }) && sample.overheat == Some(true);
    // Before v2.2 the settings are stored, not run, until the miner restarts.
    let write = Write {
        clear_overheat: latched,
        ..Write::for_miner(&checked, &sample.identity)
    };
    match apply::apply(client, address, write, stop).await {
        Ok(applied) => {
            let mut notes = Vec::new();
            if latched {
                notes.push("overheat latch cleared".to_string());
            }
            if applied.restarted {
                notes.push("restarted to apply".to_string());
            }
            if let Some(error) = applied.despite_error {
                notes.push(format!("the miner answered {error} but runs them"));
            }
            let notes: String = notes.iter().map(|n| format!(", {n}")).collect();
            Outcome {
                action,
                result: "applied",
                detail: format!("{what} at {temperature} (read back{notes})"),
                at_floor: false,
            }
        }
        Err(ApplyError::Stopped { sent: true }) => Outcome {
            action,
            result: "applied",
            detail: format!("{what} at {temperature} (sent; the exporter stopped before reading it back)"),
            at_floor: false,
        },
        Err(e) => failed(&what, e.to_string()),
    }
}

/// `POST /api/system/pause`, read back until the miner reports itself paused twice.
async fn pause(
    client: &AxeOsClient,
    address: &MinerAddress,
    temperature: &str,
    stop: Option<&watch::Receiver<bool>>,
) -> Outcome {
    let failed = |why: String| Outcome {
        action: "pause",
        result: "failed",
        detail: format!("could not pause mining at {temperature}: {why}"),
        at_floor: false,
    };
    let answered = client.pause(address).await.err().map(|e| e.to_string());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut paused_reads = 0;
    let stopped = Outcome {
        action: "pause",
        result: if answered.is_some() { "failed" } else { "applied" },
        detail: format!("pause sent at {temperature}; the exporter stopped before reading it back"),
        at_floor: false,
    };
    loop {
        let Some(read) = apply::until_stop(client.system_info(address), stop).await else {
            return stopped;
        };
        match read {
            Ok(read) if read.mining_paused == Some(true) => {
                paused_reads += 1;
                if paused_reads >= 2 {
                    return Outcome {
                        action: "pause",
                        result: "applied",
                        detail: format!("paused mining at {temperature} (read back)"),
                        at_floor: false,
                    };
                }
            }
            Ok(_) | Err(_) => paused_reads = 0,
        }
        if Instant::now() >= deadline {
            return failed(match answered {
                Some(e) => e,
                None => "the miner accepted it but does not report itself paused".into(),
            });
        }
        if apply::sleep_or_stop(Duration::from_millis(700), stop).await {
            return stopped;
        }
    }
}
