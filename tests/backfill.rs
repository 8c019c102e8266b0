//! Holes in the history filled from the miner's own statistics ring: through the ledger's
//! writer on hand-built polls and rings (exactly which readings land, under which
//! configuration, marked how), and end to end with `serve` stopped and started again beside
//! simulated miners of each era.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use bitaxe_exporter::analysis::export::{export, ExportFormat};
use bitaxe_exporter::axeos::sample::Sample;
use bitaxe_exporter::ledger::writer::{Record, Writer};
use bitaxe_exporter::ledger::Ledger;

use crate::ledger::{at, rules, S, T0};

/// A ring reading at `t` (seconds after T0) with this hashrate and measured core voltage.
fn ring_row(t: f64, hashrate: f64, measured_mv: f64) -> (SystemTime, Sample) {
    (
        at(t),
        Sample {
            hashrate_ghs: Some(hashrate),
            power_watts: Some(17.5),
            asic_temp_celsius: Some(58.0),
            core_voltage_measured_mv: Some(measured_mv),
            ..Sample::default()
        },
    )
}

/// Each exported row: (seconds after T0, source, frequency, segment id).
fn exported(ledger: &Ledger) -> Vec<(f64, String, f64, i64)> {
    let mut json = Vec::new();
    export(ledger, &mut json, ExportFormat::Json, None, f64::MIN, f64::MAX).unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["unix_time_s"].as_f64().unwrap() - T0 as f64,
                r["source"].as_str().unwrap().to_string(),
                r["frequency_mhz"].as_f64().unwrap(),
                r["segment_id"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Polls every 30 s from 0 to 300 s at 500 MHz / 1150 mV, a hole until `resume_at`, then
/// the poll `after` and its ring sent as `serve` sends them: history first.
fn write_hole(path: &std::path::Path, resume_at: f64, after: S, ring: Vec<(SystemTime, Sample)>) -> (u64, u64) {
    let writer = Writer::start(path, rules(0.0)).unwrap();
    for i in 0..=10 {
        let t = i as f64 * 30.0;
        let mut s = S::new(500.0, 1150.0);
        s.uptime = 10_000 + t as u64;
        writer.sender.send(Record::Sample {
            device: "gamma".into(),
            at: at(t),
            sample: s.sample(),
        });
    }
    let current: Arc<Sample> = after.sample();
    writer.sender.send(Record::History {
        device: "gamma".into(),
        at: at(resume_at),
        current: current.clone(),
        ring,
    });
    writer.sender.send(Record::Sample {
        device: "gamma".into(),
        at: at(resume_at),
        sample: current,
    });
    let stats = writer.stats.clone();
    writer.finish();
    (
        stats.samples_written.load(Ordering::Relaxed),
        stats.backfilled.load(Ordering::Relaxed),
    )
}

#[test]
fn a_hole_is_filled_from_the_ring_once_marked_and_not_counted_as_polls() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut after = S::new(500.0, 1150.0);
    after.uptime = 10_000 + 900;
    // The ring covers the polled stretch too (every 10 s from 0 to 900 s).
    let ring = (0..=90).map(|i| ring_row(i as f64 * 10.0, 995.0, 1140.0)).collect();
    let (polls, backfilled) = write_hole(&path, 900.0, after, ring);
    assert_eq!(polls, 12, "11 polls before the hole and the one that ends it");
    let ledger = Ledger::open_existing(&path).unwrap();
    let rows = exported(&ledger);
    let filled: Vec<&(f64, String, f64, i64)> = rows.iter().filter(|r| r.1 == "miner_history").collect();
    // Strictly inside (300, 900): 310 … 890.
    assert_eq!(filled.len(), 59);
    assert_eq!(backfilled, 59);
    assert!(filled.iter().all(|r| r.0 > 300.5 && r.0 < 899.5));
    assert!(rows.iter().filter(|r| r.1 == "poll").count() == 12);
    let mut times: Vec<i64> = rows.iter().map(|r| (r.0 * 1000.0).round() as i64).collect();
    let before = times.len();
    times.dedup();
    assert_eq!(times.len(), before, "no moment stored twice");
    let widest = rows.windows(2).map(|w| w[1].0 - w[0].0).fold(0.0, f64::max);
    assert!(widest <= 30.0, "no hole left: widest step {widest} s");
    // One configuration throughout, so one segment: the filled readings joined it.
    assert!(rows.iter().all(|r| r.3 == rows[0].3 && r.2 == 500.0));
}

#[test]
fn after_a_reboot_in_the_hole_no_reading_is_placed_before_the_boot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    // The miner rebooted at 600 s: its ring starts at the boot.
    let mut after = S::new(500.0, 1150.0);
    after.uptime = 300;
    let ring = (0..=30)
        .map(|i| ring_row(600.0 + i as f64 * 10.0, 1100.0, 1190.0))
        .collect();
    let (_, backfilled) = write_hole(&path, 900.0, after, ring);
    let ledger = Ledger::open_existing(&path).unwrap();
    let rows = exported(&ledger);
    let filled: Vec<_> = rows.iter().filter(|r| r.1 == "miner_history").collect();
    assert_eq!(backfilled as usize, filled.len());
    assert!(!filled.is_empty());
    assert!(filled.iter().all(|r| r.0 >= 600.0), "{filled:?}");
    // The filled readings start the new boot's segment; the resuming poll continues it.
    let last_poll = rows.last().unwrap();
    assert_eq!(filled[0].3, last_poll.3);
    assert_ne!(filled[0].3, rows[0].3);
    let segment_reason: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT reason FROM segments WHERE id = ?1", [filled[0].3], |r| r.get(0))
        .unwrap();
    assert_eq!(segment_reason, "rebooted");
}

#[test]
fn a_retune_inside_the_hole_splits_the_filled_readings_where_the_voltage_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut after = S::new(550.0, 1200.0);
    after.uptime = 10_000 + 900;
    // Retuned live at 600 s: the measured core voltage follows.
    let ring = (31..=89)
        .map(|i| {
            let t = i as f64 * 10.0;
            if t < 600.0 {
                ring_row(t, 1000.0, 1141.0)
            } else {
                ring_row(t, 1100.0, 1189.0)
            }
        })
        .collect();
    write_hole(&path, 900.0, after, ring);
    let rows = exported(&Ledger::open_existing(&path).unwrap());
    for (t, source, frequency, _) in rows.iter().filter(|r| r.1 == "miner_history") {
        assert_eq!(*frequency, if *t < 600.0 { 500.0 } else { 550.0 }, "{source} at {t}");
    }
    let segments: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.3).collect();
    assert_eq!(segments.len(), 2, "the retune is the one boundary");
}

/// Raw samples of a device in the ledger, and its rolled-up hours.
fn counts(path: &std::path::Path) -> (i64, i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let samples = conn
        .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
        .unwrap();
    let hours = conn
        .query_row("SELECT count(*) FROM sample_hours", [], |r| r.get(0))
        .unwrap();
    (samples, hours)
}

#[test]
fn retention_keeps_rollups_segments_and_answers_while_raw_samples_stay_bounded() {
    use bitaxe_exporter::analysis::{compare_configs, Query};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    // Two days of 30-s polls (a retune after the first day), written without retention.
    let day = 86_400.0;
    let writer = Writer::start(&path, rules(0.0)).unwrap();
    for i in 0..(2 * 2880) {
        let t = i as f64 * 30.0;
        let mut s = if t < day {
            S::new(500.0, 1150.0)
        } else {
            S::new(550.0, 1200.0)
        };
        s.uptime = 10_000 + t as u64;
        writer.sender.send_wait(Record::Sample {
            device: "gamma".into(),
            at: at(t),
            sample: s.sample(),
        });
    }
    writer.finish();
    let query = Query {
        device_id: None,
        since: None,
        until: None,
        warmup_seconds: 0.0,
    };
    let before = compare_configs(&Ledger::open_existing(&path).unwrap(), &query).unwrap();
    // A range inside the first day (one configuration), whose raw samples will be deleted.
    let part = Query {
        since: Some(T0 as f64 + 2.0 * 3600.0),
        until: Some(T0 as f64 + 20.0 * 3600.0),
        ..query.clone()
    };
    let part_before = compare_configs(&Ledger::open_existing(&path).unwrap(), &part).unwrap();
    assert_eq!(part_before.len(), 1);
    assert_eq!(part_before[0].hourly_samples, 0);
    let (raw_before, hours_before) = counts(&path);
    assert_eq!(raw_before, 5760);
    assert!((48..=49).contains(&hours_before));
    let bytes_before = std::fs::metadata(&path).unwrap().len();

    // Now with a retention of seconds: every sample is older than that, so all but the
    // latest two rolled-up hours go, a batch at a time, while polls go on.
    let mut with_retention = rules(0.0);
    with_retention.raw_retention = Some(std::time::Duration::from_secs(5));
    let writer = Writer::start(&path, with_retention).unwrap();
    for i in 0..12 {
        let t = 2.0 * day + i as f64 * 30.0;
        let mut s = S::new(550.0, 1200.0);
        s.uptime = 10_000 + t as u64;
        writer.sender.send(Record::Sample {
            device: "gamma".into(),
            at: at(t),
            sample: s.sample(),
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
    }
    let pruned = writer.stats.pruned.load(Ordering::Relaxed);
    writer.finish();
    let (raw_after, hours_after) = counts(&path);
    assert!(
        raw_after <= 3 * 120 + 12,
        "raw samples bounded to the latest hours: {raw_after}"
    );
    assert_eq!(pruned as i64, raw_before + 12 - raw_after);
    assert!(hours_after >= hours_before, "every rolled-up hour kept");
    let ledger = Ledger::open_existing(&path).unwrap();
    let after = compare_configs(&ledger, &query).unwrap();
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (a.frequency_mhz, a.core_voltage_mv),
            (b.frequency_mhz, b.core_voltage_mv)
        );
        assert!(a.samples >= b.samples, "whole segments answer from their aggregates");
        assert!((a.joules_per_terahash.unwrap() - b.joules_per_terahash.unwrap()).abs() < 1e-6);
    }
    // The range inside the pruned day is answered from its whole hours, and says so.
    let part_after = compare_configs(&ledger, &part).unwrap();
    assert_eq!(part_after.len(), 1);
    let (b, a) = (&part_before[0], &part_after[0]);
    assert!(a.hourly_samples >= 16 * 120, "{a:?}");
    assert!(
        (a.mean_hashrate_ghs.unwrap() - b.mean_hashrate_ghs.unwrap()).abs() < 1e-6,
        "{a:?}"
    );
    assert!(
        (a.joules_per_terahash.unwrap() - b.joules_per_terahash.unwrap()).abs() < 1e-6,
        "{a:?}"
    );
    assert_eq!(a.hashrate_ci95_ghs, None, "no interval from hourly sums");
    // The first day's chart comes from the rollups now.
    let device = ledger.find_device("gamma").unwrap().unwrap();
    let history = ledger
        .history(device.id, T0 as f64, T0 as f64 + 6.0 * 3600.0, 60.0)
        .unwrap();
    assert!(
        history.points.len() >= 6,
        "the pruned hours are still drawn: {}",
        history.points.len()
    );
    drop(ledger);
    let bytes_after = std::fs::metadata(&path).unwrap().len();
    assert!(
        bytes_after < bytes_before,
        "the file shrank back: {bytes_before} → {bytes_after} bytes"
    );
}

mod end_to_end {
    use std::time::Duration;

    use bitaxe_exporter::sim::dialects::{Dialect, ResetReason};
    use bitaxe_exporter::sim::physics::Board;
    use bitaxe_exporter::sim::{MinerSpec, SimFleet};

    use crate::support::InProcess;

    /// (seconds, source) of each exported sample of the one device, in time order.
    fn exported(exporter: &InProcess) -> Vec<(f64, String)> {
        let output = exporter.cli(&["analyze", "export", "--format", "json"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["unix_time_s"].as_f64().unwrap(),
                    r["source"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    async fn serve_stop_wait_serve(
        spec: MinerSpec,
        stopped_for: Duration,
        during: impl Fn(&SimFleet),
    ) -> Vec<(f64, String)> {
        let sims = SimFleet::start(&[spec], None).await.unwrap();
        let devices = vec![("gamma".to_string(), sims.addresses()[0])];
        let mut exporter = InProcess::start(&devices, 1.0).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        exporter.stop().await;
        tokio::time::sleep(stopped_for / 2).await;
        during(&sims);
        tokio::time::sleep(stopped_for / 2).await;
        exporter.restart().await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        exporter.stop().await;
        let rows = exported(&exporter);
        sims.shutdown().await;
        rows
    }

    fn widest_step(rows: &[(f64, String)]) -> f64 {
        rows.windows(2).map(|w| w[1].0 - w[0].0).fold(0.0, f64::max)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_exporter_stopped_for_two_minutes_has_no_hole_on_a_v2_15_miner() {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 31);
        spec.stats_frequency_seconds = 1;
        let rows = serve_stop_wait_serve(spec, Duration::from_secs(120), |_| {}).await;
        let filled = rows.iter().filter(|r| r.1 == "miner_history").count();
        assert!(
            filled >= 60,
            "the 2-minute hole filled from the miner's ring: {filled} readings\n{rows:?}"
        );
        assert!(widest_step(&rows) < 4.0, "no hole left: {rows:?}");
        let mut times: Vec<i64> = rows.iter().map(|r| (r.0 * 1000.0) as i64).collect();
        times.dedup();
        assert_eq!(times.len(), rows.len(), "no sample twice");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_reboot_inside_the_hole_places_no_reading_before_the_boot() {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 32);
        spec.stats_frequency_seconds = 1;
        let booted = std::sync::Mutex::new(0.0);
        let rows = serve_stop_wait_serve(spec, Duration::from_secs(10), |sims| {
            sims.reboot_because(0, Duration::ZERO, ResetReason::TaskWatchdog);
            *booted.lock().unwrap() = bitaxe_exporter::time::now_unix();
        })
        .await;
        let boot = *booted.lock().unwrap();
        let filled: Vec<&(f64, String)> = rows.iter().filter(|r| r.1 == "miner_history").collect();
        assert!(
            !filled.is_empty(),
            "the part of the hole after the boot filled: {rows:?}"
        );
        assert!(
            filled.iter().all(|r| r.0 >= boot - 1.0),
            "nothing before the boot at {boot}: {filled:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_v2_8_to_v2_10_ring_without_column_choice_fills_the_hole_too() {
        let mut spec = MinerSpec::new(Board::Supra, Dialect::V2_10, 35);
        spec.stats_frequency_seconds = 1;
        // These eras' statistics task wakes every 5 s: a reading at most every 5 s.
        let rows = serve_stop_wait_serve(spec, Duration::from_secs(15), |_| {}).await;
        let filled = rows.iter().filter(|r| r.1 == "miner_history").count();
        assert!(filled >= 2, "{filled} readings filled\n{rows:?}");
        assert!(widest_step(&rows) < 7.0, "no hole left: {rows:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_overheat_trip_keeps_the_lines_the_miner_logged_about_it() {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 36);
        spec.frequency_mhz = Some(600.0);
        spec.core_voltage_mv = Some(1200);
        spec.time_scale = 60.0;
        let sims = SimFleet::start(&[spec], None).await.unwrap();
        let devices = vec![("gamma".to_string(), sims.addresses()[0])];
        let mut exporter = InProcess::start(&devices, 1.0).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        sims.set_ambient(0, 80.0);
        let mut tail = Vec::new();
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let output = exporter.cli(&[
                "analyze",
                "events",
                "--device",
                "gamma",
                "--incidents",
                "--format",
                "json",
            ]);
            let events: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
            if let Some(lines) = events
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["log_tail"].as_array())
                .find(|lines| !lines.is_empty())
            {
                tail = lines.iter().filter_map(|l| l.as_str().map(str::to_string)).collect();
                break;
            }
        }
        exporter.stop().await;
        assert!(tail.iter().any(|l| l.contains("OVERHEAT")), "{tail:?}");
        sims.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn firmware_before_v2_8_keeps_its_hole_and_nothing_breaks() {
        let mut spec = MinerSpec::new(Board::Ultra, Dialect::V2_4, 33);
        spec.firmware_version = Some("v2.7.0".into());
        let rows = serve_stop_wait_serve(spec, Duration::from_secs(6), |_| {}).await;
        assert!(rows.iter().all(|r| r.1 == "poll"), "{rows:?}");
        assert!(widest_step(&rows) >= 5.0, "the hole is still there: {rows:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_reboot_stores_its_reason_and_the_miners_log_tail() {
        let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 34)], None)
            .await
            .unwrap();
        let devices = vec![("gamma".to_string(), sims.addresses()[0])];
        let mut exporter = InProcess::start(&devices, 1.0).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        sims.set_fault(0, bitaxe_exporter::sim::Fault::PowerFault);
        tokio::time::sleep(Duration::from_secs(3)).await;
        sims.reboot_because(0, Duration::ZERO, ResetReason::TaskWatchdog);
        sims.set_fault(0, bitaxe_exporter::sim::Fault::None);
        tokio::time::sleep(Duration::from_secs(4)).await;
        let page = reqwest::get(exporter.url("/device/gamma"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        exporter.stop().await;
        let output = exporter.cli(&["analyze", "events", "--device", "gamma", "--format", "json"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let events: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let reboot = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "rebooted")
            .unwrap_or_else(|| panic!("a reboot event: {events:#}"));
        assert!(
            reboot["detail"]
                .as_str()
                .unwrap()
                .contains("Reset due to task watchdog"),
            "{reboot:#}"
        );
        let tail: Vec<&str> = reboot["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(
            tail.iter().any(|l| l.contains("TPS546: An input undervoltage fault")),
            "the lines before the reboot: {tail:?}"
        );
        assert!(tail.iter().all(|l| !l.contains('\u{1b}')), "colour escapes stripped");
        let fault = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == "mining_problem");
        assert!(
            fault.is_some_and(|f| !f["log_tail"].as_array().unwrap().is_empty()),
            "{events:#}"
        );
        let table = exporter.cli(&["analyze", "events", "--device", "gamma", "--incidents"]);
        let text = String::from_utf8_lossy(&table.stdout);
        assert!(
            text.contains("miner log, last") && text.contains("TPS546: An input undervoltage fault"),
            "{text}"
        );
        assert!(
            page.contains("miner log (") && page.contains("Reset due to task watchdog"),
            "device page"
        );
        sims.shutdown().await;
    }
}
