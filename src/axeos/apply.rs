//! The one apply path for clock settings: every frequency / core-voltage write to a miner
//! (`tune`, its restore, `session start --apply`, the protective actions) is a PATCH of a
//! [`CheckedPatch`] (the plausibility window, or an explicit `--force`), a restart only
//! where the firmware runs new settings at boot, and a read-back that trusts no single
//! read: the target must hold for two reads in a row. A PATCH answered with an error is
//! still read back (some miners apply and then answer 500), except an auth refusal (401 /
//! 403), which changed nothing; every wait can be cut short by a stop.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::axeos::address::MinerAddress;
use crate::axeos::sample::{format_label_number, needs_restart, Identity, Sample};
use crate::axeos::window::CheckedPatch;
use crate::axeos::{AxeOsClient, PollError};

/// How long a live-applying miner may take to show the new settings (the ESP32 applies
/// them between two hashing jobs, and some builds report the old ones for a few seconds).
pub const LIVE_PATIENCE: Duration = Duration::from_secs(15);
/// How long a miner restarted to run its new settings may take to answer again.
pub(crate) const RESTART_PATIENCE: Duration = Duration::from_secs(120);
/// How long a miner that refused the PATCH (HTTP 4xx) is read for the settings anyway.
const AFTER_A_REFUSAL: Duration = Duration::from_secs(3);
/// Time between two reads of the read-back.
const READ_SPACING: Duration = Duration::from_millis(500);
/// Consecutive reads that must show the target.
const READS_THAT_MUST_AGREE: u32 = 2;

/// One write.
#[derive(Debug, Clone, Copy)]
pub struct Write<'a> {
    pub patch: &'a CheckedPatch,
    /// Firmware that stores new settings and runs them only after a restart (before v2.2).
    pub restart: bool,
    /// Also clear the overheat latch (`overheat_mode: 0`, firmware up to v2.10) and check
    /// that it reads back cleared.
    pub clear_overheat: bool,
    /// How long the target may take to hold while the miner answers with something else
    /// (plus [`RESTART_PATIENCE`] when restarting).
    pub patience: Duration,
    /// How long a miner that stopped answering after the write is waited for (it may be
    /// rebooting).
    pub silence_patience: Duration,
    /// The firmware takes whole MHz only (a fraction would be cut or ignored).
    pub whole_mhz_only: bool,
}

impl<'a> Write<'a> {
    /// A live write with the usual patience.
    pub fn live(patch: &'a CheckedPatch, restart: bool) -> Write<'a> {
        Write {
            patch,
            restart,
            clear_overheat: false,
            patience: LIVE_PATIENCE,
            silence_patience: RESTART_PATIENCE,
            whole_mhz_only: false,
        }
    }

    /// The write a miner's firmware needs, from its family and then its version: a restart
    /// where the firmware runs settings at boot (upstream before v2.2, Lucky's stock
    /// builds), whole MHz where it cannot take a fraction.
    pub fn for_miner(patch: &'a CheckedPatch, identity: &Identity) -> Write<'a> {
        let fractional = crate::axeos::family::takes_fractional_mhz(identity.family, identity.firmware.as_deref());
        Write {
            whole_mhz_only: fractional == Some(false),
            ..Write::live(patch, needs_restart(identity))
        }
    }
}

/// Why a write did not end on its target.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplyError {
    /// The miner answered the PATCH with an error and still runs what it ran: nothing changed.
    Refused(String),
    /// It answers, but does not run the target (the PATCH was ignored, or reverted).
    Mismatch {
        read: (Option<f64>, Option<f64>),
        message: String,
    },
    /// It did not answer within the patience (after the write, or never).
    Unreachable(String),
    /// A stop came while waiting; `sent` says whether the PATCH (and restart) had gone out.
    Stopped { sent: bool },
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Refused(m) | ApplyError::Unreachable(m) => f.write_str(m),
            ApplyError::Mismatch { message, .. } => f.write_str(message),
            ApplyError::Stopped { sent: true } => f.write_str("sent; stopped before it could be read back"),
            ApplyError::Stopped { sent: false } => f.write_str("stopped before anything was sent"),
        }
    }
}

/// What a successful write left: the last reading (which shows the target) and how it went.
#[derive(Debug, Clone)]
pub struct Applied {
    pub sample: Sample,
    /// The PATCH was answered with an error, yet the miner runs the target.
    pub despite_error: Option<String>,
    pub restarted: bool,
}

impl Applied {
    /// What the log says after "read back …": the settings, and an error answered but
    /// overridden by what the miner runs.
    pub fn read_back_text(&self) -> String {
        let note = self
            .despite_error
            .as_ref()
            .map(|e| format!(" (the miner answered {e} but took them)"))
            .unwrap_or_default();
        format!("{}{note}", pair_text(settings(&self.sample)))
    }
}

/// The settings a write asks for (either may be left alone).
pub(crate) fn target_of(patch: &CheckedPatch) -> (Option<f64>, Option<f64>) {
    let patch = patch.patch();
    (patch.frequency, patch.core_voltage.map(f64::from))
}

/// Sends `write` and reads it back until the target holds for two reads in a row, the
/// patience ends, or `stop` turns true.
pub async fn apply(
    client: &AxeOsClient,
    address: &MinerAddress,
    write: Write<'_>,
    stop: Option<&watch::Receiver<bool>>,
) -> Result<Applied, ApplyError> {
    if stopped(stop) {
        return Err(ApplyError::Stopped { sent: false });
    }
    let target = target_of(write.patch);
    if let Some(mhz) = target.0.filter(|f| write.whole_mhz_only && f.fract() != 0.0) {
        return Err(ApplyError::Refused(format!(
            "{} MHz has a fraction and this firmware takes whole MHz only (it would cut or ignore it): \
             nothing was sent; ask for {} or {} MHz",
            format_label_number(mhz),
            mhz.floor(),
            mhz.ceil()
        )));
    }
    let sent = if write.clear_overheat {
        client.patch_settings_clearing_overheat(address, write.patch).await
    } else {
        client.patch_settings(address, write.patch).await
    };
    // A 401 / 403 comes from the firmware's auth gate before any handler runs: nothing
    // changed, and no read-back (nor the patience of a reboot) would change that.
    if let Err(refusal @ PollError::Unauthorized { .. }) = &sent {
        return Err(ApplyError::Refused(refusal.to_string()));
    }
    // A 4xx is the firmware saying no (it validated and refused); anything else — a 5xx,
    // a timeout, a dropped connection — may have applied, and is read back in full.
    let refused_outright = sent
        .as_ref()
        .err()
        .is_some_and(|e| matches!(e, PollError::Rejected(m) if m.starts_with("HTTP 4")));
    let patch_error = sent.err().map(|e| e.to_string());
    let mut restarted = false;
    if write.restart {
        // Old firmware reads back what it stored: after an error, restart only if the
        // settings were stored anyway.
        let stored = match &patch_error {
            None => true,
            Some(_) => client
                .system_info(address)
                .await
                .is_ok_and(|s| holds(&s, target, write.clear_overheat)),
        };
        if !stored {
            return Err(ApplyError::Refused(refused_text(target, patch_error.as_deref())));
        }
        client
            .restart(address)
            .await
            .map_err(|e| ApplyError::Unreachable(format!("cannot restart it to apply the settings: {e}")))?;
        tracing::info!("{address}: restarted to run the new settings (firmware before v2.2)");
        restarted = true;
        // The old firmware takes a moment to go down; a read now would see the old boot.
        if sleep_or_stop(Duration::from_secs(2), stop).await {
            return Err(ApplyError::Stopped { sent: true });
        }
    }
    let mut patience = write.patience + if restarted { RESTART_PATIENCE } else { Duration::ZERO };
    if refused_outright && !restarted {
        // Refused in so many words: a few reads confirm that nothing changed.
        patience = patience.min(AFTER_A_REFUSAL);
    }
    // A miner that refused is not waited for as if it were rebooting.
    let silence = if refused_outright && !restarted {
        patience
    } else {
        write.silence_patience.max(patience)
    };
    match confirm(client, address, target, write.clear_overheat, (patience, silence), stop).await {
        Ok(sample) => Ok(Applied {
            sample,
            despite_error: patch_error,
            restarted,
        }),
        Err(Unconfirmed::Stopped) => Err(ApplyError::Stopped { sent: true }),
        Err(Unconfirmed::Read(read, overheat)) => Err(match &patch_error {
            Some(_) => ApplyError::Refused(refused_text(target, patch_error.as_deref())),
            None if overheat && write.clear_overheat => ApplyError::Mismatch {
                read,
                message: "the miner still reports overheat_mode 1".into(),
            },
            None => ApplyError::Mismatch {
                read,
                message: format!("asked for {}, the miner reports {}", pair_text(target), pair_text(read)),
            },
        }),
        Err(Unconfirmed::NoAnswer(e)) => Err(ApplyError::Unreachable(match &patch_error {
            Some(p) => format!("the PATCH failed ({p}) and the miner does not answer: {e}"),
            None => format!("cannot read the settings back: {e}"),
        })),
    }
}

/// Reads the miner until the target holds for two reads in a row. `patience` is (how long it may answer
/// with something else, how long it may not answer at all).
pub async fn confirm(
    client: &AxeOsClient,
    address: &MinerAddress,
    target: (Option<f64>, Option<f64>),
    clear_overheat: bool,
    patience: (Duration, Duration),
    stop: Option<&watch::Receiver<bool>>,
) -> Result<Sample, Unconfirmed> {
    let started = Instant::now();
    let mut agreeing = 0;
    let mut last: Option<Sample> = None;
    let mut last_error = String::new();
    loop {
        let Some(read) = until_stop(client.system_info(address), stop).await else {
            return Err(Unconfirmed::Stopped);
        };
        match read {
            Ok(sample) if holds(&sample, target, clear_overheat) => {
                agreeing += 1;
                if agreeing >= READS_THAT_MUST_AGREE {
                    return Ok(sample);
                }
                last = Some(sample);
            }
            Ok(sample) => {
                agreeing = 0;
                last = Some(sample);
            }
            Err(e) => {
                agreeing = 0;
                last_error = e.to_string();
            }
        }
        let waited = started.elapsed();
        if waited >= patience.1 || (last.is_some() && waited >= patience.0) {
            return Err(match last {
                Some(s) => Unconfirmed::Read(settings(&s), s.overheat == Some(true)),
                None => Unconfirmed::NoAnswer(last_error),
            });
        }
        if sleep_or_stop(READ_SPACING, stop).await {
            return Err(Unconfirmed::Stopped);
        }
    }
}

/// Why [`confirm`] gave up.
#[derive(Debug, Clone, PartialEq)]
pub enum Unconfirmed {
    /// The last reading: (MHz, mV), and whether the overheat latch was set.
    Read((Option<f64>, Option<f64>), bool),
    /// No answer at all; the last error.
    NoAnswer(String),
    Stopped,
}

fn holds(sample: &Sample, target: (Option<f64>, Option<f64>), clear_overheat: bool) -> bool {
    matches_target(settings(sample), target) && !(clear_overheat && sample.overheat == Some(true))
}

/// (MHz, mV) as a miner reports them.
pub fn settings(sample: &Sample) -> (Option<f64>, Option<f64>) {
    (sample.frequency_mhz, sample.core_voltage_mv)
}

/// Whether a reading shows a target (a value left out of the target matches anything).
pub fn matches_target(read: (Option<f64>, Option<f64>), target: (Option<f64>, Option<f64>)) -> bool {
    let same = |got: Option<f64>, want: Option<f64>, tolerance: f64| match want {
        None => true,
        Some(want) => got.is_some_and(|got| (got - want).abs() <= tolerance),
    };
    same(read.0, target.0, 0.01) && same(read.1, target.1, 0.5)
}

/// `600 MHz / 1200 mV`, with `?` for what is unknown.
pub fn pair_text(pair: (Option<f64>, Option<f64>)) -> String {
    let show = |v: Option<f64>| v.map_or_else(|| "?".into(), format_label_number);
    format!("{} MHz / {} mV", show(pair.0), show(pair.1))
}

fn refused_text(target: (Option<f64>, Option<f64>), error: Option<&str>) -> String {
    format!(
        "the miner refused {}: {}",
        pair_text(target),
        error.unwrap_or("it kept its settings")
    )
}

fn stopped(stop: Option<&watch::Receiver<bool>>) -> bool {
    stop.is_some_and(|s| *s.borrow())
}

/// Sleeps, or returns `true` at once when `stop` turns true.
pub(crate) async fn sleep_or_stop(duration: Duration, stop: Option<&watch::Receiver<bool>>) -> bool {
    until_stop(tokio::time::sleep(duration), stop).await.is_none()
}

/// Runs `work` to its end, or gives `None` as soon as `stop` turns true.
pub(crate) async fn until_stop<T>(
    work: impl std::future::Future<Output = T>,
    stop: Option<&watch::Receiver<bool>>,
) -> Option<T> {
    let Some(stop) = stop else {
        return Some(work.await);
    };
    let mut stop = stop.clone();
    if *stop.borrow() {
        return None;
    }
    tokio::select! {
        done = work => Some(done),
        _ = stop.wait_for(|s| *s) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_matches_within_the_firmwares_rounding() {
        assert!(matches_target((Some(600.0), Some(1200.0)), (Some(600.0), Some(1200.0))));
        assert!(matches_target((Some(600.0), Some(1200.4)), (Some(600.0), None)));
        assert!(!matches_target(
            (Some(600.0), Some(1150.0)),
            (Some(600.0), Some(1200.0))
        ));
        assert!(!matches_target((None, Some(1200.0)), (Some(600.0), Some(1200.0))));
        assert_eq!(pair_text((Some(562.5), None)), "562.5 MHz / ? mV");
    }
}
