//! Following a miner whose address changed (`discovery:`, off by default): when a
//! configured miner has stopped answering, one gentle scan of the configured networks looks
//! for its MAC, and where it answers now is where it is polled from then on. The config
//! file is not rewritten; the log says what to change in it. Read-only towards the miners,
//! at most one scan per `rescan` interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::axeos::discover;
use crate::config::{Discovery, MinerAddress};
use crate::daemon::fleet::Fleet;

/// Failed polls in a row before a miner counts as gone from its address.
pub(crate) const LOST_AFTER_FAILURES: u32 = 3;

/// How long each address of a discovery scan is given.
const SCAN_TIMEOUT: Duration = Duration::from_millis(1500);

pub async fn follow_moved_miners(fleet: Arc<Fleet>, settings: Discovery, mut stop: watch::Receiver<bool>) {
    let networks = if settings.subnets.is_empty() {
        match discover::local_networks() {
            Ok(networks) => networks,
            Err(e) => {
                tracing::warn!("discovery: {e}; miners that change address are not followed");
                return;
            }
        }
    } else {
        settings.subnets.clone()
    };
    let mut last_scan: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(fleet.poll_interval()) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        let lost: Vec<(usize, String)> = (0..fleet.len())
            .filter(|&i| fleet.consecutive_failures(i) >= LOST_AFTER_FAILURES)
            .filter_map(|i| Some((i, fleet.last_mac(i)?)))
            .collect();
        if lost.is_empty() || last_scan.is_some_and(|at| at.elapsed() < settings.rescan) {
            continue;
        }
        last_scan = Some(Instant::now());
        let found = match discover::scan(&networks, settings.ports.clone(), SCAN_TIMEOUT).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!("discovery: cannot scan: {e}");
                continue;
            }
        };
        for (index, mac) in lost {
            let Some(miner) = found.iter().find(|f| f.mac.as_deref() == Some(mac.as_str())) else {
                continue;
            };
            let Ok(now_at) = MinerAddress::parse(&miner.address) else {
                continue;
            };
            let before = fleet.current_address(index);
            if before.as_ref().is_some_and(|b| b.same_place(&now_at)) {
                continue;
            }
            tracing::warn!(
                device = fleet.device_name(index),
                "its MAC {mac} answers at {} now (it was polled at {}); polling the new address \
                 (config.yaml still names the old one: update it, or run `discover --add-to`)",
                miner.address,
                before.map_or_else(|| "?".into(), |a| a.to_string()),
            );
            fleet.move_device(index, now_at);
        }
    }
}
