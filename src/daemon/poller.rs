//! One task per enabled device polling `/api/system/info` on the configured interval: a
//! random start phase so a fleet does not poll in lockstep, one request in flight per
//! miner, capped exponential backoff while a miner fails. A hung or dead miner only ever
//! delays its own task.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::axeos::address::MinerAddress;
use crate::axeos::family::FirmwareFamily;
use crate::axeos::{AxeOsClient, Sample};
use crate::config::ProtectiveAction;
use crate::daemon::events::DeviceEvent;
use crate::daemon::fleet::Fleet;
use crate::daemon::protect::Protector;
use crate::daemon::protect_write;
use crate::ledger::writer::{LedgerSender, Record};

/// The longest a failing miner waits between attempts (unless the poll interval is longer).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Starts a poller per device. They stop after their in-flight request when `shutdown`
/// becomes true.
pub(crate) fn spawn_pollers(
    fleet: Arc<Fleet>,
    client: AxeOsClient,
    shutdown: watch::Receiver<bool>,
    ledger: Option<LedgerSender>,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for index in 0..fleet.len() {
        tasks.spawn(poll_loop(
            index,
            fleet.clone(),
            client.clone(),
            shutdown.clone(),
            ledger.clone(),
        ));
    }
    tasks
}

async fn poll_loop(
    index: usize,
    fleet: Arc<Fleet>,
    client: AxeOsClient,
    mut shutdown: watch::Receiver<bool>,
    ledger: Option<LedgerSender>,
) {
    let Some(mut address) = fleet.current_address(index) else {
        return;
    };
    let mut url = match AxeOsClient::info_url(&address) {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(device = fleet.device_name(index), "not polled: {e}");
            return;
        }
    };
    let interval = fleet.poll_interval();
    let mut rng = fastrand::Rng::new();
    // Opt-in: with `safety.protective_action: none` (the default) it never acts. The
    // cool-down and the hourly cap go on from what an earlier run did (the ledger's events).
    let mut protector = Protector::new(fleet.protection(), interval);
    protector.remember(Instant::now(), &fleet.past_protective_actions(index));
    // Spread the first polls uniformly over the start window, so a fleet's first requests
    // do not arrive together.
    let mut next = Instant::now() + start_phase(interval, rng.f64());
    // A chip count asked of /api/system/asic, by firmware version: asked once per firmware,
    // and only of a miner whose info says none (upstream v2.9+ on an ambiguous board).
    let mut asked_chips: Option<(Option<String>, Option<u32>)> = None;
    // The history before this poller's first answer is a hole (the exporter was not
    // running), as is the time a miner did not answer: the poll that ends one asks the
    // miner's own ring for what it missed.
    let mut after_hole = true;

    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        // Discovery may have found the miner at another address since the last poll.
        if let Some(now_at) = fleet.current_address(index).filter(|a| *a != address) {
            if let Ok(moved) = AxeOsClient::info_url(&now_at) {
                url = moved;
                address = now_at;
            }
        }
        let started = Instant::now();
        let result = client.system_info_at(&url, address.credentials.as_deref()).await;
        let duration = started.elapsed();
        let at = SystemTime::now();
        let device = fleet.device_name(index);
        let events = match result {
            Ok(mut sample) => {
                fill_chip_count(&client, &address, &mut sample, &mut asked_chips).await;
                let sample = Arc::new(sample);
                if let Some(ledger) = &ledger {
                    if std::mem::take(&mut after_hole) && fleet.backfill() {
                        if let Some(history) = miner_history(&client, &address, device, &sample, at).await {
                            ledger.send(history);
                        }
                    }
                    ledger.send(Record::Sample {
                        device: device.to_string(),
                        at,
                        sample: sample.clone(),
                    });
                }
                let mut events = fleet.record_success(index, sample.clone(), duration);
                let miner = Miner {
                    fleet: &fleet,
                    index,
                    client: &client,
                    address: &address,
                };
                events.extend(protect_if_needed(miner, &sample, &mut protector, &shutdown).await);
                events
            }
            Err(error) => {
                after_hole = true;
                tracing::debug!(device, kind = error.kind().as_label(), %error, "poll failed");
                fleet.record_failure(index, error, duration)
            }
        };
        // An incident gets the miner's last log lines, read once for all of this poll's.
        let latest = fleet
            .latest_sample(index)
            .filter(|_| events.iter().any(DeviceEvent::is_incident));
        let log_tail = match latest {
            Some(sample) => incident_log_tail(&client, &address, device, &sample.identity).await,
            None => None,
        };
        log_events(device, &events, log_tail.as_deref());
        if let Some(ledger) = &ledger {
            for event in events {
                let tail = log_tail.as_deref().filter(|_| event.is_incident());
                ledger.send(event.record_with_log(device, at, tail));
            }
        }

        let delay = backoff(interval, fleet.consecutive_failures(index));
        // Keep the cadence of the schedule; after a slow poll, do not fire a burst.
        next += delay.mul_f64(0.95 + 0.1 * rng.f64());
        let now = Instant::now();
        if next < now {
            next = now + interval.mul_f64(0.1 * rng.f64());
        }
    }
}

/// The miner's own statistics ring, for the ledger to fill the hole this poll (`sample`,
/// taken at `at`) ends. `None` for firmware without one; a failure is logged and leaves
/// the hole (the poll itself counts as usual).
async fn miner_history(
    client: &AxeOsClient,
    address: &MinerAddress,
    device: &str,
    sample: &Arc<Sample>,
    at: SystemTime,
) -> Option<Record> {
    match client.statistics(address, &sample.identity).await {
        Ok(Some(history)) => {
            // The miner's "now" is when its body was made: just now.
            let ring = history.on_wall_clock(SystemTime::now());
            Some(Record::History {
                device: device.to_string(),
                at,
                current: sample.clone(),
                ring,
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::info!(
                device,
                "cannot read the miner's own history to fill the hole in polls: {e}"
            );
            None
        }
    }
}

/// A miner whose info says no chip count (upstream v2.9+ on an ambiguous board) gets the
/// one `/api/system/asic` gives: asked once per firmware version (`asked`), never of the
/// NerdQAxe family.
async fn fill_chip_count(
    client: &AxeOsClient,
    address: &MinerAddress,
    sample: &mut Sample,
    asked: &mut Option<(Option<String>, Option<u32>)>,
) {
    if sample.asic_count.is_some() || sample.identity.family == FirmwareFamily::NerdQaxe {
        return;
    }
    let firmware = sample.identity.firmware.clone();
    if asked.as_ref().is_none_or(|(asked, _)| *asked != firmware) {
        let count = client.asic_count(address).await.unwrap_or(None);
        *asked = Some((firmware, count));
    }
    if let Some((_, Some(chips))) = asked {
        sample.fill_chip_count(*chips);
    }
}

/// The miner one poller task polls: its place in the fleet and where to reach it.
#[derive(Clone, Copy)]
struct Miner<'a> {
    fleet: &'a Fleet,
    index: usize,
    client: &'a AxeOsClient,
    address: &'a MinerAddress,
}

/// The protective action this reading calls for, if any, carried out (or described, in a
/// dry run) and recorded: the event it gives.
async fn protect_if_needed(
    miner: Miner<'_>,
    sample: &Sample,
    protector: &mut Protector,
    shutdown: &watch::Receiver<bool>,
) -> Option<DeviceEvent> {
    if protector.action() == ProtectiveAction::None {
        return None;
    }
    let Miner {
        fleet,
        index,
        client,
        address,
    } = miner;
    let context = fleet.protector_context(index);
    let plan = protector.consider(Instant::now(), sample, &context)?;
    fleet.set_protecting(index, true);
    let outcome = protect_write::execute(client, address, sample, &plan, protector.dry_run(), Some(shutdown)).await;
    let from = sample.frequency_mhz.zip(sample.core_voltage_mv);
    protector.record_from(Instant::now(), &plan, &outcome, from);
    fleet.record_protective(index, outcome.action, outcome.result);
    fleet.set_protecting(index, false);
    Some(DeviceEvent::ProtectiveAction {
        action: outcome.action,
        result: outcome.result,
        detail: outcome.detail,
    })
}

/// When a device's first poll happens, for a uniform draw `u` in [0, 1): spread over a
/// quarter of the interval (at least 2 s), so polls of a fleet do not arrive together
/// but a restarted daemon shows data soon.
pub(crate) fn start_phase(interval: Duration, u: f64) -> Duration {
    let window = (interval / 4).max(Duration::from_secs(2)).min(interval);
    window.mul_f64(u.clamp(0.0, 1.0))
}

/// The delay before the next attempt after `failures` consecutive failures: the poll
/// interval for the first failure (a quick reboot is seen at once), then doubling, capped.
pub(crate) fn backoff(interval: Duration, failures: u32) -> Duration {
    if failures <= 1 {
        return interval;
    }
    let factor = 1u32 << (failures - 1).min(10);
    interval.saturating_mul(factor).min(MAX_BACKOFF.max(interval))
}

/// Lines of the miner's log shown in the daemon's own log line of an incident, and the
/// characters shown of each (the whole lines are in the ledger).
const LOG_LINES_IN_LOG: usize = 2;
const LOG_LINE_CHARS: usize = 50;

fn shortened(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

fn log_events(device: &str, events: &[DeviceEvent], log_tail: Option<&[String]>) {
    for event in events {
        // The captured lines are printable already (no newline can forge a log line).
        let tail = match log_tail.filter(|lines| !lines.is_empty() && event.is_incident()) {
            Some(lines) => {
                let last: Vec<String> = lines[lines.len().saturating_sub(LOG_LINES_IN_LOG)..]
                    .iter()
                    .map(|line| shortened(line, LOG_LINE_CHARS))
                    .collect();
                format!("; the miner's log ends: {}", last.join(" | "))
            }
            None => String::new(),
        };
        if event.is_warning() {
            tracing::warn!(device, "{event}{tail}");
        } else {
            tracing::info!(device, "{event}{tail}");
        }
    }
}

/// The miner's last log lines for an incident, where its firmware keeps a log (v2.14+); a
/// failure to read it is said and leaves the event without.
async fn incident_log_tail(
    client: &AxeOsClient,
    address: &MinerAddress,
    device: &str,
    identity: &crate::axeos::Identity,
) -> Option<Vec<String>> {
    match client.log_tail(address, identity).await {
        Ok(tail) => tail,
        Err(e) => {
            tracing::info!(device, "cannot read the miner's log for this incident: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let i = Duration::from_secs(30);
        let delays: Vec<u64> = (0..8).map(|f| backoff(i, f).as_secs()).collect();
        assert_eq!(delays, [30, 30, 60, 120, 240, 300, 300, 300]);
        assert_eq!(backoff(Duration::from_secs(600), 5), Duration::from_secs(600));
    }

    #[test]
    fn start_phases_spread_a_fleet_over_the_window() {
        let interval = Duration::from_secs(30);
        let mut rng = fastrand::Rng::with_seed(1);
        let phases: Vec<Duration> = (0..1000).map(|_| start_phase(interval, rng.f64())).collect();
        let window = Duration::from_millis(7500);
        assert!(phases.iter().all(|p| *p < window));
        // Each of ten slices of the window gets some of the fleet: no lockstep.
        for slice in 0..10u32 {
            let (low, high) = (window * slice / 10, window * (slice + 1) / 10);
            let n = phases.iter().filter(|p| **p >= low && **p < high).count();
            assert!((50..150).contains(&n), "slice {slice}: {n} of 1000");
        }
        assert_eq!(start_phase(Duration::from_secs(1), 0.99), Duration::from_millis(990));
    }
}
