//! Opt-in protective action (`safety.protective_action`, default `none`): what the daemon
//! does to a miner at `safety.max_temp_shutdown`, with hysteresis, a cool-down and an
//! hourly cap; every write inside the chip's plausibility window, read back, logged, put in
//! the ledger and counted — or, in a dry run, only logged. Nothing here runs unless the
//! configuration asks for it.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::axeos::sample::{format_label_number, needs_restart, Sample};
use crate::axeos::window::{chip_options, SettingsWindow};
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::{MinerAddress, Protection, ProtectiveAction, Thresholds};

/// A miner re-arms once it is this far below the threshold it tripped.
pub const HYSTERESIS_CELSIUS: f64 = 5.0;
/// The least time between two actions on one miner.
pub const COOL_DOWN: Duration = Duration::from_secs(600);
/// The most actions on one miner in an hour.
pub const MAX_PER_HOUR: usize = 3;

/// What the daemon decided to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    StepDown,
    Pause,
    Restore { frequency_mhz: f64, core_voltage_mv: f64 },
}

/// One miner's protective state.
#[derive(Debug, Clone)]
pub struct Protector {
    protection: Protection,
    /// Cleared by an action, set again below the threshold minus the hysteresis.
    armed: bool,
    recent: VecDeque<Instant>,
}

/// What the fleet knows that a decision needs.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub thresholds: Thresholds,
    /// The last configuration that ran healthy (MHz, mV).
    pub last_good: Option<(f64, f64)>,
    /// The miner runs what its overheat protection left behind.
    pub protection_dropped: bool,
}

impl Protector {
    pub fn new(protection: Protection) -> Protector {
        Protector {
            protection,
            armed: true,
            recent: VecDeque::new(),
        }
    }

    pub fn action(&self) -> ProtectiveAction {
        self.protection.action
    }

    pub fn dry_run(&self) -> bool {
        self.protection.dry_run
    }

    /// Decides on a reading taken at `now`; an action taken is counted against the
    /// cool-down and the hourly cap (a dry run too, so it shows what would really happen).
    pub fn consider(&mut self, now: Instant, sample: &Sample, context: &Context) -> Option<Plan> {
        if self.protection.action == ProtectiveAction::None {
            return None;
        }
        let hottest = [sample.asic_temp_celsius, sample.asic_temp2_celsius]
            .into_iter()
            .flatten()
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))))?;
        let shutdown = context.thresholds.shutdown_celsius;
        if hottest < shutdown - HYSTERESIS_CELSIUS {
            self.armed = true;
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
        {
            self.recent.pop_front();
        }
        let allowed =
            self.recent.len() < MAX_PER_HOUR && self.recent.back().is_none_or(|t| now.duration_since(*t) >= COOL_DOWN);
        if !allowed {
            return None;
        }
        let current = (sample.frequency_mhz?, sample.core_voltage_mv?);
        let plan = match self.protection.action {
            ProtectiveAction::None => None,
            ProtectiveAction::StepDown if self.armed && hottest >= shutdown => Some(Plan::StepDown),
            ProtectiveAction::Pause if self.armed && hottest >= shutdown && sample.mining_paused != Some(true) => {
                Some(Plan::Pause)
            }
            // Only once the firmware's protection replaced the configuration and the miner
            // is below the warning threshold again.
            ProtectiveAction::RestoreLastGood => {
                let cooled = hottest < context.thresholds.warning_celsius - HYSTERESIS_CELSIUS;
                match context.last_good {
                    Some(good) if context.protection_dropped && cooled && !same(good, current) => Some(Plan::Restore {
                        frequency_mhz: good.0,
                        core_voltage_mv: good.1,
                    }),
                    _ => None,
                }
            }
            _ => None,
        }?;
        self.armed = false;
        self.recent.push_back(now);
        Some(plan)
    }
}

fn same(a: (f64, f64), b: (f64, f64)) -> bool {
    (a.0 - b.0).abs() < 0.01 && (a.1 - b.1).abs() < 0.5
}

/// The settings one step below `current`: the next lower listed frequency and voltage (the
/// miner's lists, else the chip's), else 25 MHz and 20 mV lower.
pub fn step_below(current: (f64, f64), lists: Option<(&[f64], &[f64])>) -> (f64, f64) {
    let below = |list: Option<&[f64]>, value: f64, step: f64| {
        list.and_then(|l| l.iter().copied().filter(|v| *v < value - 1e-6).reduce(f64::max))
            .unwrap_or(value - step)
    };
    (
        below(lists.map(|l| l.0), current.0, 25.0),
        below(lists.map(|l| l.1), current.1, 20.0),
    )
}

/// What an action did, for the log, the ledger and the counter.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `step_down`, `pause`, `restore_last_good`.
    pub action: &'static str,
    /// `applied`, `dry_run`, `failed`.
    pub result: &'static str,
    pub detail: String,
}

/// Carries out a plan on a miner (or only describes it, in a dry run).
pub async fn execute(
    client: &AxeOsClient,
    address: &MinerAddress,
    sample: &Sample,
    plan: &Plan,
    dry_run: bool,
) -> Outcome {
    let temperature = sample
        .asic_temp_celsius
        .map_or_else(|| "?".into(), |t| format!("{t:.1} °C"));
    let current = (
        sample.frequency_mhz.unwrap_or(0.0),
        sample.core_voltage_mv.unwrap_or(0.0),
    );
    let pause_supported = firmware_at_least(sample.identity.firmware.as_deref(), (2, 14));
    let (action, target) = match plan {
        Plan::Pause if pause_supported => ("pause", None),
        Plan::StepDown | Plan::Pause => {
            let options = client.asic_options(address).await.ok().flatten();
            let lists = options
                .as_ref()
                .map(|(f, v)| (f.as_slice(), v.as_slice()))
                .or_else(|| sample.identity.asic_model.as_deref().and_then(chip_options));
            let action = if matches!(plan, Plan::Pause) {
                "pause"
            } else {
                "step_down"
            };
            (action, Some(step_below(current, lists)))
        }
        Plan::Restore {
            frequency_mhz,
            core_voltage_mv,
        } => ("restore_last_good", Some((*frequency_mhz, *core_voltage_mv))),
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
        };
    }
    let failed = |why: String| Outcome {
        action,
        result: "failed",
        detail: format!("could not {what} at {temperature}: {why}"),
    };
    match target {
        None => {
            if let Err(e) = client.pause(address).await {
                return failed(e.to_string());
            }
            match client.system_info(address).await {
                Ok(read) if read.mining_paused == Some(true) => Outcome {
                    action,
                    result: "applied",
                    detail: format!("paused mining at {temperature} (read back)"),
                },
                Ok(_) => failed("the miner does not report itself paused".into()),
                Err(e) => failed(format!("cannot read it back: {e}")),
            }
        }
        Some((f, v)) => {
            let window = SettingsWindow::for_miner(sample.identity.asic_model.as_deref(), None);
            let patch = SettingsPatch {
                frequency: Some(f),
                core_voltage: Some(v.round().clamp(0.0, f64::from(u32::MAX)) as u32),
            };
            let checked = match window.check(&patch) {
                Ok(checked) => checked,
                Err(e) => return failed(e.to_string()),
            };
            // Up to v2.10 the protection latches (overheat_mode stays 1, mining halted) until
            // cleared: a restore that did not clear it would leave the miner stopped.
            let latched = matches!(plan, Plan::Restore { .. }) && sample.overheat == Some(true);
            let sent = if latched {
                client.patch_settings_clearing_overheat(address, &checked).await
            } else {
                client.patch_settings(address, &checked).await
            };
            if let Err(e) = sent {
                return failed(e.to_string());
            }
            // Before v2.2 the settings are stored, not run, until the miner restarts: what it
            // would read back now is not what it runs.
            let restarted = needs_restart(sample.identity.firmware.as_deref());
            if restarted {
                if let Err(e) = client.restart(address).await {
                    return failed(format!("cannot restart it to apply them: {e}"));
                }
            }
            let answer = if restarted {
                back_after_restart(client, address).await
            } else {
                client.system_info(address).await
            };
            match answer {
                Ok(read) if latched && read.overheat == Some(true) => {
                    failed("the miner still reports overheat_mode 1".into())
                }
                Ok(read)
                    if read.frequency_mhz.is_some_and(|x| (x - f).abs() < 0.01)
                        && read.core_voltage_mv.is_some_and(|x| (x - v).abs() < 0.5) =>
                {
                    let cleared = match (latched, restarted) {
                        (true, true) => ", overheat latch cleared, restarted to apply",
                        (true, false) => ", overheat latch cleared",
                        (false, true) => ", restarted to apply",
                        (false, false) => "",
                    };
                    Outcome {
                        action,
                        result: "applied",
                        detail: format!("{what} at {temperature} (read back{cleared})"),
                    }
                }
                Ok(read) => failed(format!(
                    "the miner reports {} MHz / {} mV",
                    read.frequency_mhz.map_or("?".into(), format_label_number),
                    read.core_voltage_mv.map_or("?".into(), format_label_number)
                )),
                Err(e) => failed(format!("cannot read it back: {e}")),
            }
        }
    }
}

/// How long a miner restarted to apply settings may take to answer again.
const RESTART_PATIENCE: Duration = Duration::from_secs(120);

/// The miner's reading once it answers again after a restart (the old firmware takes a
/// few seconds to boot).
async fn back_after_restart(client: &AxeOsClient, address: &MinerAddress) -> Result<Sample, crate::axeos::PollError> {
    let deadline = Instant::now() + RESTART_PATIENCE;
    tokio::time::sleep(Duration::from_secs(2)).await;
    loop {
        match client.system_info(address).await {
            Ok(sample) => return Ok(sample),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

fn firmware_at_least(firmware: Option<&str>, version: (u32, u32)) -> bool {
    firmware
        .and_then(crate::axeos::sample::firmware_version)
        .is_some_and(|v| v >= version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(celsius: f64) -> Sample {
        Sample {
            asic_temp_celsius: Some(celsius),
            frequency_mhz: Some(600.0),
            core_voltage_mv: Some(1200.0),
            ..Sample::default()
        }
    }

    fn context(dropped: bool) -> Context {
        Context {
            thresholds: Thresholds::default(),
            last_good: Some((550.0, 1150.0)),
            protection_dropped: dropped,
        }
    }

    #[test]
    fn none_never_acts_and_step_down_acts_once_per_crossing_within_the_caps() {
        let start = Instant::now();
        let mut none = Protector::new(Protection::default());
        assert_eq!(none.consider(start, &hot(90.0), &context(true)), None);

        let mut protector = Protector::new(Protection {
            action: ProtectiveAction::StepDown,
            dry_run: false,
        });
        assert_eq!(protector.consider(start, &hot(69.9), &context(false)), None);
        assert_eq!(
            protector.consider(start, &hot(70.0), &context(false)),
            Some(Plan::StepDown)
        );
        // Still hot: no second action until it has cooled below 65 °C and the cool-down passed.
        assert_eq!(
            protector.consider(start + COOL_DOWN * 2, &hot(71.0), &context(false)),
            None
        );
        assert_eq!(
            protector.consider(start + COOL_DOWN * 2, &hot(64.0), &context(false)),
            None
        );
        assert_eq!(
            protector.consider(start + COOL_DOWN * 2, &hot(70.5), &context(false)),
            Some(Plan::StepDown)
        );
        // Re-armed and hot again within the cool-down: nothing.
        let _ = protector.consider(start + COOL_DOWN * 2, &hot(60.0), &context(false));
        assert_eq!(
            protector.consider(
                start + COOL_DOWN * 3 - Duration::from_secs(1),
                &hot(72.0),
                &context(false)
            ),
            None
        );
        // The hourly cap: three actions in an hour at most.
        assert_eq!(
            protector.consider(start + COOL_DOWN * 4, &hot(72.0), &context(false)),
            Some(Plan::StepDown)
        );
        let _ = protector.consider(start + COOL_DOWN * 4, &hot(60.0), &context(false));
        assert_eq!(
            protector.consider(
                start + COOL_DOWN * 5 + Duration::from_secs(1),
                &hot(72.0),
                &context(false)
            ),
            None
        );
    }

    #[test]
    fn restore_last_good_waits_for_the_protections_drop_and_the_cooling() {
        let start = Instant::now();
        let mut protector = Protector::new(Protection {
            action: ProtectiveAction::RestoreLastGood,
            dry_run: false,
        });
        let mut dropped = hot(72.0);
        dropped.frequency_mhz = Some(500.0);
        dropped.core_voltage_mv = Some(1100.0);
        assert_eq!(protector.consider(start, &dropped, &context(true)), None, "still hot");
        dropped.asic_temp_celsius = Some(58.0);
        assert_eq!(
            protector.consider(start, &dropped, &context(false)),
            None,
            "no drop by the firmware"
        );
        assert_eq!(
            protector.consider(start, &dropped, &context(true)),
            Some(Plan::Restore {
                frequency_mhz: 550.0,
                core_voltage_mv: 1150.0
            })
        );
    }

    #[test]
    fn a_step_down_takes_the_next_listed_values() {
        let frequencies = [400.0, 490.0, 525.0, 550.0, 600.0, 625.0];
        let voltages = [1000.0, 1060.0, 1100.0, 1150.0, 1200.0, 1250.0];
        assert_eq!(
            step_below((600.0, 1200.0), Some((&frequencies, &voltages))),
            (550.0, 1150.0)
        );
        assert_eq!(step_below((612.0, 1210.0), None), (587.0, 1190.0));
        assert!(firmware_at_least(Some("v2.14.0"), (2, 14)));
        assert!(!firmware_at_least(Some("v2.9.0"), (2, 14)));
    }
}
