//! Putting a miner back: the settings a sweep ends on (the best, or the original), and
//! `tune restore` after a crash — written, restarted where the firmware needs it, read
//! back, retried while the miner does not answer.

use std::time::Duration;

use crate::axeos::apply::{self, Write};
use crate::axeos::sample::format_label_number;
use crate::axeos::window::CheckedPatch;
use crate::axeos::{AxeOsClient, SettingsPatch};
use crate::config::MinerAddress;
use crate::tune::report::Observer;

/// How long a restore keeps trying a miner that does not answer (or does not take the
/// settings): with the last attempt's own waits, a stopped sweep exits within 90 s,
/// systemd's default stop timeout.
pub const RESTORE_PATIENCE: Duration = Duration::from_secs(70);

/// What a restore puts back.
pub struct Restore<'a> {
    pub target: (Option<f64>, Option<f64>),
    /// "the original settings", "the best configuration": for messages.
    pub what: &'a str,
    /// Firmware before v2.2: the settings take effect only after a restart.
    pub restart: bool,
}

/// Puts `target` on a miner through the one apply path and reads it back (two reads in a
/// row must show it), retrying one that does not answer or take it for
/// [`RESTORE_PATIENCE`]: the sweep's last word on every exit path, `tune restore`, and
/// `serve`'s restore of an interrupted sweep. Nothing stops it early.
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
    let started = tokio::time::Instant::now();
    let mut last_error = String::new();
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
    // Always written, even when a read shows the target already: a read can lag behind
    // what the miner runs (a PATCH of the settings it has is harmless).
    loop {
        let remaining = RESTORE_PATIENCE.saturating_sub(started.elapsed());
        let write = Write {
            patience: apply::LIVE_PATIENCE.min(remaining),
            silence_patience: remaining,
            ..Write::live(&checked, restart)
        };
        // The whole attempt within what is left, whatever a restart's own patience is.
        let attempt = tokio::time::timeout(
            remaining.max(Duration::from_secs(1)),
            apply::apply(client, address, write, None),
        );
        let outcome = attempt.await.unwrap_or_else(|_| {
            // Out of time: the last real reason says more than the timeout.
            Err(apply::ApplyError::Unreachable(if last_error.is_empty() {
                "no answer within the restore's patience".into()
            } else {
                last_error.clone()
            }))
        });
        match outcome {
            Ok(applied) => {
                let read = apply::settings(&applied.sample);
                tracing::info!(device = %name, "restored {what}: read back {}", applied.read_back_text());
                left_on(read, "read back");
                return Ok(read);
            }
            Err(e) => last_error = e.to_string(),
        }
        if started.elapsed() + Duration::from_secs(2) >= RESTORE_PATIENCE {
            break;
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

pub(crate) fn fmt_setting(value: Option<f64>) -> String {
    value.map_or_else(|| "?".into(), format_label_number)
}
