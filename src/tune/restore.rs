//! Putting a miner back: the settings a sweep ends on (the best, or the original), and
//! `tune restore` after a crash — written, restarted where the firmware needs it, read
//! back, retried while the miner does not answer.

use std::time::Duration;

use crate::axeos::sample::{format_label_number, Sample};
use crate::axeos::window::CheckedPatch;
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::MinerAddress;
use crate::tune::sweep::Observer;

/// How long a restore keeps trying a miner that does not answer.
pub const RESTORE_PATIENCE: Duration = Duration::from_secs(90);
/// How long a restart (firmware before v2.2) may take before the step is given up.
pub(crate) const RESTART_PATIENCE: Duration = Duration::from_secs(120);

/// What a restore puts back.
pub struct Restore<'a> {
    pub target: (Option<f64>, Option<f64>),
    /// "the original settings", "the best configuration": for messages.
    pub what: &'a str,
    /// Firmware before v2.2: the settings take effect only after a restart.
    pub restart: bool,
}

/// Puts `target` on a miner and reads it back, retrying one that does not answer for
/// [`RESTORE_PATIENCE`]: the sweep's last word on every exit path, and `tune restore`.
pub async fn restore_settings(
    client: &AxeOsClient,
    name: &str,
    address: &MinerAddress,
    restore: Restore<'_>,
    observer: &dyn Observer,
) -> Result<(Option<f64>, Option<f64>), String> {
    let Restore { target, what, restart } = restore;
    let patch = SettingsPatch {
        frequency: target.0,
        core_voltage: target.1.map(|v| v.round().clamp(0.0, f64::from(u32::MAX)) as u32),
    };
    // The settings the miner ran before (or the best it ran healthy): no window to check.
    let checked = CheckedPatch::forced(patch);
    let deadline = tokio::time::Instant::now() + RESTORE_PATIENCE;
    let mut last_error = String::new();
    let settings = |sample: &Sample| (sample.frequency_mhz, sample.core_voltage_mv);
    let left_on = |read: (Option<f64>, Option<f64>), how: &str| {
        observer.note(
            name,
            &format!(
                "left on {what}: {} MHz / {} mV ({how})",
                fmt_setting(read.0),
                fmt_setting(read.1)
            ),
        );
    };
    // A miner already on the target (a refused or ignored PATCH) needs no write, unless
    // its firmware only takes settings at boot: then what it reports is not what it runs.
    if !restart {
        if let Ok(sample) = read_back(client, address, Duration::ZERO).await {
            if matches_target(settings(&sample), target) {
                left_on(settings(&sample), "read back; already there");
                return Ok(settings(&sample));
            }
        }
    }
    while tokio::time::Instant::now() < deadline {
        let written = match client.patch_settings(address, &checked).await {
            Ok(()) if restart => match client.restart(address).await {
                Ok(()) => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    Ok(RESTART_PATIENCE)
                }
                Err(e) => Err(format!("cannot restart it to apply them: {e}")),
            },
            Ok(()) => Ok(Duration::from_secs(10)),
            Err(e) => Err(e.to_string()),
        };
        match written {
            Ok(patience) => match read_back(client, address, patience).await {
                Ok(sample) if matches_target(settings(&sample), target) => {
                    let read = settings(&sample);
                    tracing::info!(
                        device = %name,
                        "restored {what}: {} MHz / {} mV, read back",
                        fmt_setting(read.0),
                        fmt_setting(read.1)
                    );
                    left_on(read, "read back");
                    return Ok(read);
                }
                Ok(sample) => {
                    let read = settings(&sample);
                    last_error = format!(
                        "the miner reports {} MHz / {} mV",
                        fmt_setting(read.0),
                        fmt_setting(read.1)
                    );
                }
                Err(e) => last_error = e,
            },
            Err(e) => last_error = e,
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let message = format!(
        "could not restore {what} ({} MHz / {} mV): {last_error}; run `tune restore --device {name}` when it answers",
        fmt_setting(target.0),
        fmt_setting(target.1)
    );
    tracing::error!(device = %name, "{message}");
    observer.note(name, &message);
    Err(message)
}

/// What the miner reports now, trying until `patience` runs out.
pub(crate) async fn read_back(
    client: &AxeOsClient,
    address: &MinerAddress,
    patience: Duration,
) -> Result<Sample, String> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match client.system_info(address).await {
            Ok(sample) => return Ok(sample),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot read the settings back: {e}"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub(crate) fn matches_target(read: (Option<f64>, Option<f64>), target: (Option<f64>, Option<f64>)) -> bool {
    let same = |got: Option<f64>, want: Option<f64>, tolerance: f64| match want {
        None => true,
        Some(want) => got.is_some_and(|got| (got - want).abs() <= tolerance),
    };
    same(read.0, target.0, 0.01) && same(read.1, target.1, 0.5)
}

pub(crate) fn fmt_setting(value: Option<f64>) -> String {
    value.map_or_else(|| "?".into(), format_label_number)
}
