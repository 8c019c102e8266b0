//! Carrying out a protective plan on a miner: the step below its settings (the miner's or
//! the chip's lists, never under the lowest), a pause read back until the miner reports
//! itself paused, a restore of the last good configuration that clears the overheat latch —
//! each through the one apply path, or only described in a dry run. Deciding when to act is
//! [`crate::daemon::protect`]'s.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::axeos::apply::{self, Applied, ApplyError, Write};
use crate::axeos::sample::{format_label_number, Sample};
use crate::axeos::window::{chip_options, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::MinerAddress;

/// What the daemon decided to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    StepDown,
    Pause,
    Restore { frequency_mhz: f64, core_voltage_mv: f64 },
}

/// What an action did, for the log, the ledger and the counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `step_down`, `pause`, `restore_last_good`.
    pub action: &'static str,
    /// `applied`, `dry_run`, `failed`.
    pub result: &'static str,
    pub detail: String,
    /// Failed for a reason that holds until the miner cools (already on the lowest listed
    /// settings, or a firmware family nothing is written to): not retried before then.
    pub at_floor: bool,
}

impl Plan {
    /// The action's name in the log, the ledger and the counter's `action` label.
    fn action(&self) -> &'static str {
        match self {
            Plan::Pause => "pause",
            Plan::StepDown => "step_down",
            Plan::Restore { .. } => "restore_last_good",
        }
    }
}

/// One action under way: its name and the temperature it began at, which every outcome
/// reports.
struct Attempt {
    action: &'static str,
    temperature: String,
}

impl Attempt {
    fn outcome(&self, result: &'static str, detail: String) -> Outcome {
        Outcome {
            action: self.action,
            result,
            detail,
            at_floor: false,
        }
    }

    fn failed(&self, what: &str, why: String) -> Outcome {
        self.outcome("failed", format!("could not {what} at {}: {why}", self.temperature))
    }
}

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
    let attempt = Attempt {
        action: plan.action(),
        temperature: sample
            .asic_temp_celsius
            .map_or_else(|| "?".into(), |t| format!("{t:.1} °C")),
    };
    let current = (
        sample.frequency_mhz.unwrap_or(0.0),
        sample.core_voltage_mv.unwrap_or(0.0),
    );
    if sample.identity.family == crate::axeos::family::FirmwareFamily::Unknown {
        // Its write rules are not known: nothing is sent, said once until it cools.
        return Outcome {
            at_floor: true,
            ..attempt.outcome(
                "failed",
                format!(
                    "at {}: its firmware family is unknown (version {}), so protective actions do not write \
                     to it; not tried again until it cools",
                    attempt.temperature,
                    crate::axeos::printable(sample.identity.firmware.as_deref().unwrap_or("not reported"))
                ),
            )
        };
    }
    let pause_supported = sample.identity.family == crate::axeos::family::FirmwareFamily::EspMiner
        && firmware_at_least(sample.identity.firmware.as_deref(), (2, 14));
    let window = SettingsWindow::for_miner(sample.identity.asic_model.as_deref(), None);
    let target = match plan {
        Plan::Pause if pause_supported => None,
        Plan::StepDown | Plan::Pause => match step_down_target(client, address, sample, current, &window).await {
            Some(next) => Some(next),
            None => {
                let why = format!(
                    "{} MHz / {} mV is already the lowest listed setting; not tried again until it cools",
                    format_label_number(current.0),
                    format_label_number(current.1)
                );
                return Outcome {
                    at_floor: true,
                    ..attempt.failed("step down", why)
                };
            }
        },
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
        let detail = format!(
            "would {what} at {} (protective_action_dry_run: nothing sent)",
            attempt.temperature
        );
        return attempt.outcome("dry_run", detail);
    }
    let Some((f, v)) = target else {
        return pause(client, address, &attempt.temperature, stop).await;
    };
    let patch = SettingsPatch {
        frequency: Some(f),
        core_voltage: Some(v.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    };
    let checked = match window.check(&patch) {
        Ok(checked) => checked,
        Err(e) => return attempt.failed(&what, e.to_string()),
    };
    // Up to v2.10 the protection latches (overheat_mode stays 1, mining halted) until
    // cleared: a restore that did not clear it would leave the miner stopped.
    let latched = matches!(plan, Plan::Restore { .. }) && sample.overheat == Some(true);
    // Before v2.2 the settings are stored, not run, until the miner restarts.
    let write = Write {
        clear_overheat: latched,
        ..Write::for_miner(&checked, &sample.identity)
    };
    let applied = apply::apply(client, address, write, stop).await;
    written(&attempt, &what, latched, applied)
}

/// The settings one step below the miner's (the miner's own lists, else its chip's, never
/// under the window's floor); `None` when it is already on the lowest.
async fn step_down_target(
    client: &AxeOsClient,
    address: &MinerAddress,
    sample: &Sample,
    current: (f64, f64),
    window: &SettingsWindow,
) -> Option<(f64, f64)> {
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
    let next = step_below(current, lists, floor)?;
    Some(if whole_mhz { (next.0.floor(), next.1) } else { next })
}

/// The outcome of a write of new settings, as the apply path reported it.
fn written(attempt: &Attempt, what: &str, latched: bool, applied: Result<Applied, ApplyError>) -> Outcome {
    let temperature = &attempt.temperature;
    match applied {
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
            attempt.outcome("applied", format!("{what} at {temperature} (read back{notes})"))
        }
        Err(ApplyError::Stopped { sent: true }) => attempt.outcome(
            "applied",
            format!("{what} at {temperature} (sent; the exporter stopped before reading it back)"),
        ),
        Err(e) => attempt.failed(what, e.to_string()),
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

/// The settings one step below `current`: the next lower listed frequency and voltage (the
/// miner's lists, else the chip's), never below the lowest listed value (a value already at
/// or below it stays); without lists, 25 MHz and 20 mV lower, never below `floor`.
/// `None` when neither can go lower.
pub(crate) fn step_below(
    current: (f64, f64),
    lists: Option<(&[f64], &[f64])>,
    floor: (f64, f64),
) -> Option<(f64, f64)> {
    let below = |list: Option<&[f64]>, value: f64, step: f64, floor: f64| match list.filter(|l| !l.is_empty()) {
        Some(list) => list
            .iter()
            .copied()
            .filter(|v| *v < value - 1e-6)
            .reduce(f64::max)
            .unwrap_or(value),
        None if value - step >= floor => value - step,
        None => value.min(floor.max(value - step)),
    };
    let next = (
        below(lists.map(|l| l.0), current.0, 25.0, floor.0),
        below(lists.map(|l| l.1), current.1, 20.0, floor.1),
    );
    (next.0 < current.0 - 1e-6 || next.1 < current.1 - 1e-6).then_some(next)
}

fn firmware_at_least(firmware: Option<&str>, version: (u32, u32)) -> bool {
    firmware
        .and_then(crate::axeos::family::firmware_version)
        .is_some_and(|v| v >= version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_down_takes_the_next_listed_values_and_never_goes_below_the_lowest() {
        let frequencies = [400.0, 490.0, 525.0, 550.0, 600.0, 625.0];
        let voltages = [1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];
        let lists = Some((&frequencies[..], &voltages[..]));
        let floor = (300.0, 900.0);
        assert_eq!(step_below((600.0, 1200.0), lists, floor), Some((550.0, 1150.0)));
        // At the lowest listed voltage the voltage stays; the frequency still steps.
        assert_eq!(step_below((490.0, 1000.0), lists, floor), Some((400.0, 1000.0)));
        // At the bottom of both lists there is nothing lower to go to.
        assert_eq!(step_below((400.0, 1000.0), lists, floor), None);
        assert_eq!(step_below((400.0, 980.0), lists, floor), None);
        // Without lists: 25 MHz and 20 mV lower, bounded by the chip's window.
        assert_eq!(step_below((612.0, 1210.0), None, floor), Some((587.0, 1190.0)));
        assert_eq!(step_below((310.0, 905.0), None, floor), Some((300.0, 900.0)));
        assert_eq!(step_below((300.0, 900.0), None, floor), None);
        assert!(firmware_at_least(Some("v2.14.0"), (2, 14)));
        assert!(!firmware_at_least(Some("v2.9.0"), (2, 14)));
    }
}
