//! Writes that never strand a miner, against simulated miners that misbehave the way real
//! ones do (a temperature held above the threshold, a PATCH refused, answered 500 but
//! applied, a read-back that lags, a pause ignored, a reboot in the middle): protection
//! that retries and falls back, keeps its cool-down across restarts and never goes below
//! the lowest listed setting; a stop during a protective write still recorded; `tune`'s
//! writes verified by two reads and its restore never trusting one.

use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, Quirks, SimFleet};

use crate::support::{Exposition, InProcess};

/// A Gamma on 600 MHz / 1200 mV whose ASIC reads `celsius` whatever is done to it.
async fn held_hot(dialect: Dialect, seed: u64, celsius: f64) -> SimFleet {
    let mut spec = MinerSpec::new(Board::Gamma, dialect, seed);
    spec.frequency_mhz = Some(600.0);
    spec.core_voltage_mv = Some(1200);
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    sims.set_quirks(
        0,
        Quirks {
            hold_asic_celsius: Some(celsius),
            ..Quirks::default()
        },
    );
    sims
}

fn actions(e: &Exposition, device: &str, action: &str, result: &str) -> f64 {
    e.find(
        "bitaxe_protective_actions_total",
        &[("device", device), ("action", action), ("result", result)],
    )
    .iter()
    .map(|s| s.value)
    .sum()
}

/// The protective-action events in a ledger, oldest first.
fn protective_events(database: &std::path::Path) -> Vec<String> {
    let conn = crate::support::sql(database);
    let mut stmt = conn
        .prepare("SELECT detail FROM events WHERE kind = 'protective_action' ORDER BY t")
        .unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_step_down_is_retried_while_the_miner_stays_hot() {
    // 75 °C held (5 °C over the 70 °C shutdown threshold); the first PATCHes are refused.
    let sims = held_hot(Dialect::V2_15, 500, 75.0).await;
    sims.set_fault(0, Fault::RefusePatch);
    let device = vec![("hot".to_string(), sims.addresses()[0])];
    let exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: step_down\n").await;
    exporter
        .wait_for(Duration::from_secs(20), "a failed step down", |e| {
            actions(e, "hot", "step_down", "failed") >= 1.0
        })
        .await;
    assert_eq!(sims.clock_and_temperature(0).unwrap().0, 600.0);
    // The miner takes writes again: the next attempt (a short back-off later, not an hour,
    // not only once it has cooled) steps it down.
    sims.set_fault(0, Fault::None);
    let done = exporter
        .wait_for(Duration::from_secs(30), "the retried step down", |e| {
            actions(e, "hot", "step_down", "applied") == 1.0
        })
        .await;
    assert!(actions(&done, "hot", "step_down", "failed") >= 1.0);
    let (f, v, _) = sims.clock_and_temperature(0).unwrap();
    assert_eq!((f, v), (550.0, 1150.0), "one listed step down");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ignored_pause_falls_back_to_a_step_down() {
    // v2.15 answers the pause and goes on hashing.
    let sims = held_hot(Dialect::V2_15, 501, 75.0).await;
    sims.set_quirks(
        0,
        Quirks {
            hold_asic_celsius: Some(75.0),
            ignore_pause: true,
            ..Quirks::default()
        },
    );
    let device = vec![("stubborn".to_string(), sims.addresses()[0])];
    let exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: pause\n").await;
    let done = exporter
        .wait_for(Duration::from_secs(40), "the step down after the ignored pause", |e| {
            actions(e, "stubborn", "step_down", "applied") == 1.0
        })
        .await;
    assert_eq!(actions(&done, "stubborn", "pause", "failed"), 1.0);
    assert_eq!(actions(&done, "stubborn", "pause", "applied"), 0.0);
    let (f, v, _) = sims.clock_and_temperature(0).unwrap();
    assert_eq!((f, v), (550.0, 1150.0));
    let mut exporter = exporter;
    let database = exporter.database_path();
    exporter.stop().await;
    let events = protective_events(&database);
    assert!(
        events[0].contains("pause (failed)") && events[0].contains("does not report itself paused"),
        "{events:?}"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarts_keep_the_cool_down_and_a_step_down_stops_at_the_lowest_listed_setting() {
    let sims = held_hot(Dialect::V2_15, 502, 75.0).await;
    let device = vec![("restarted".to_string(), sims.addresses()[0])];
    let mut exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: step_down\n").await;
    exporter
        .wait_for(Duration::from_secs(20), "the first step down", |e| {
            actions(e, "restarted", "step_down", "applied") == 1.0
        })
        .await;
    // Four restarts, each polling the still-hot miner several times.
    for _ in 0..4 {
        exporter.restart().await;
        exporter
            .wait_for(Duration::from_secs(10), "polls after the restart", |e| {
                e.value("bitaxe_asic_temperature_celsius", &[("device", "restarted")]) == Some(75.0)
            })
            .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let (f, v, _) = sims.clock_and_temperature(0).unwrap();
    assert_eq!((f, v), (550.0, 1150.0), "one step down in ten minutes, restarts or not");
    let database = exporter.database_path();
    exporter.stop().await;
    assert_eq!(protective_events(&database).len(), 1);

    // At the bottom of the chip's lists (BM1370: 350 MHz, 1000 mV) nothing lower is sent.
    let floor = held_hot(Dialect::V2_15, 503, 75.0).await;
    floor.set_clock(0, 350.0, 1000.0);
    let device = vec![("floor".to_string(), floor.addresses()[0])];
    let exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: step_down\n").await;
    exporter
        .wait_for(Duration::from_secs(20), "the refused step", |e| {
            actions(e, "floor", "step_down", "failed") >= 1.0
        })
        .await;
    assert_eq!(floor.writes(0), 0, "nothing below the lowest listed setting is sent");
    assert_eq!(floor.clock_and_temperature(0).unwrap().1, 1000.0);
    sims.shutdown().await;
    floor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_a_protective_restart_still_records_the_write() {
    // A v2.0 Max runs new settings only after a restart; it stays down for 20 s.
    let mut max = MinerSpec::new(Board::Max, Dialect::V2_0, 504);
    max.time_scale = 60.0;
    let sims = SimFleet::start(&[max], None).await.unwrap();
    sims.set_quirks(
        0,
        Quirks {
            hold_asic_celsius: Some(74.0),
            ..Quirks::default()
        },
    );
    let device = vec![("old".to_string(), sims.addresses()[0])];
    let mut exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: step_down\n").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.restarts(0) == 0 {
        assert!(Instant::now() < deadline, "no protective restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sims.reboot(0, Duration::from_secs(20));
    let database = exporter.database_path();
    let took = exporter.stop().await;
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    let events = protective_events(&database);
    assert_eq!(events.len(), 1, "the write that happened is in the ledger: {events:?}");
    assert!(
        events[0].contains("step_down (applied)") && events[0].contains("stopped before reading it back"),
        "{events:?}"
    );
    sims.shutdown().await;
}
