//! The ledger end to end: a tuning sweep run with `session start --apply` against a
//! simulated miner while `serve` writes a fleet's samples, then `analyze` from the CLI;
//! and a SIGKILL of the daemon in the middle of writing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::{expected_ghs, operating_point, Board, MinerPhysics};
use bitaxe_exporter::sim::{MinerSpec, SimFleet};
use rusqlite::Connection;

use crate::support::{Exporter, InProcess};

/// A tuned Gamma plus `background` miners that keep the writer busy.
async fn fleet(background: usize) -> (SimFleet, Vec<(String, SocketAddr)>) {
    let mut gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 42);
    // Thermal lag and warm-up in seconds instead of minutes.
    gamma.time_scale = 60.0;
    let mut specs = vec![gamma];
    specs.extend((0..background).map(|i| MinerSpec::new(Board::Supra, Dialect::V2_10, 100 + i as u64)));
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let mut devices = vec![("gamma".to_string(), sims.addresses()[0])];
    devices.extend(
        sims.addresses()[1..]
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("bg-{i:03}"), *a)),
    );
    (sims, devices)
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The configuration the simulator's physics make most efficient among those that pass the
/// health gate (≥ 94 % of expected hashrate, ASIC temperature below 65 °C).
fn physics_best(configs: &[(f64, u32)]) -> (f64, u32) {
    let spec = Board::Gamma.spec();
    let mut best = None;
    for &(mhz, mv) in configs {
        let op = operating_point(&spec, mhz, f64::from(mv));
        let mut physics = MinerPhysics::new(spec, 1, false);
        physics.frequency_mhz = mhz;
        physics.core_voltage_mv = f64::from(mv);
        physics.settle();
        if op.hashrate_factor < 0.94 || physics.asic_celsius >= 65.0 {
            continue;
        }
        let jth = (op.core_watts + spec.overhead_watts) / (expected_ghs(&spec, mhz) * op.hashrate_factor / 1000.0);
        if best.is_none_or(|(_, j)| jth < j) {
            best = Some(((mhz, mv), jth));
        }
    }
    best.unwrap().0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tuning_sweep_with_sessions_while_the_daemon_writes() {
    let (sims, devices) = fleet(100).await;
    // Warm-up of 2.4 s; 101 miners polled every second.
    let exporter = InProcess::start_with(&devices, 1.0, "analysis:\n  warmup_minutes: 0.04\n").await;
    exporter
        .wait_for(Duration::from_secs(10), "gamma up", |e| e.up("gamma") == Some(1.0))
        .await;

    let sweep: [(f64, u32); 5] = [
        (490.0, 1100),
        (525.0, 1150),
        (600.0, 1200),
        (600.0, 1100),
        (800.0, 1300),
    ];
    let cli_runs = std::cell::Cell::new(0);
    let check = |output: std::process::Output, what: &str| {
        cli_runs.set(cli_runs.get() + 1);
        let err = stderr(&output);
        assert!(
            output.status.success(),
            "{what}: exit {:?}: {err}",
            output.status.code()
        );
        assert!(!err.to_lowercase().contains("locked"), "{what}: {err}");
        output
    };
    for (i, (mhz, mv)) in sweep.iter().enumerate() {
        let (freq, volt) = (mhz.to_string(), mv.to_string());
        let notes = format!("step {i}");
        let started = check(
            exporter.cli(&[
                "session",
                "start",
                "--device",
                "gamma",
                "--freq",
                &freq,
                "--voltage",
                &volt,
                "--apply",
                "--notes",
                &notes,
            ]),
            "session start",
        );
        assert!(
            stdout(&started).contains("(applied to the miner)"),
            "{}",
            stdout(&started)
        );
        // Hold the configuration for 13 s, reading the ledger all the while.
        let until = Instant::now() + Duration::from_secs(13);
        while Instant::now() < until {
            check(
                exporter.cli(&["analyze", "compare-configs", "--format", "json"]),
                "compare-configs",
            );
            check(exporter.cli(&["session", "list"]), "session list");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        check(
            exporter.cli(&["session", "end", "--device", "gamma", "--notes", "done"]),
            "session end",
        );
    }
    assert!(
        cli_runs.get() > 40,
        "the CLI ran {} times against the live ledger",
        cli_runs.get()
    );

    // The optimizer's choice is the physics' choice; the hot and the starved configurations
    // are rejected for the right reasons.
    let output = check(
        exporter.cli(&[
            "analyze",
            "optimize",
            "--metric",
            "efficiency",
            "--device",
            "gamma",
            "--format",
            "json",
        ]),
        "optimize",
    );
    let answer: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let gamma = &answer[0];
    let best = &gamma["ranked"][0];
    let (mhz, mv) = physics_best(&sweep);
    assert_eq!(
        (best["frequency_mhz"].as_f64(), best["core_voltage_mv"].as_f64()),
        (Some(mhz), Some(f64::from(mv))),
        "{gamma:#}"
    );
    let rejected = gamma["rejected"].as_array().unwrap();
    let reason = |f: f64, v: f64| -> String {
        rejected
            .iter()
            .find(|r| r["frequency_mhz"].as_f64() == Some(f) && r["core_voltage_mv"].as_f64() == Some(v))
            .map(|r| r["reasons"].to_string())
            .unwrap_or_else(|| panic!("{f}/{v} not rejected: {gamma:#}"))
    };
    assert!(
        reason(800.0, 1300.0).contains("ASIC temperature p95"),
        "{}",
        reason(800.0, 1300.0)
    );
    assert!(
        reason(600.0, 1100.0).contains("of expected"),
        "{}",
        reason(600.0, 1100.0)
    );

    // The human-readable forms.
    let text = stdout(&check(
        exporter.cli(&["analyze", "optimize", "--metric", "efficiency", "--device", "gamma"]),
        "optimize",
    ));
    assert!(
        text.contains(&format!("best for efficiency: {mhz} MHz / {mv} mV"))
            && text.starts_with(&format!("gamma: {mhz} MHz / {mv} mV, ")),
        "{text}"
    );
    let table = stdout(&check(
        exporter.cli(&["analyze", "compare-configs", "--device", "gamma"]),
        "compare",
    ));
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    // The starting configuration (525/1150) is one of the sweep's: five rows.
    assert_eq!(table.lines().count(), 1 + 5, "{table}");
    let csv = stdout(&check(
        exporter.cli(&["analyze", "compare-configs", "--session", "3", "--format", "csv"]),
        "csv",
    ));
    assert_eq!(csv.lines().count(), 2, "one configuration in session 3: {csv}");
    assert!(csv.lines().nth(1).unwrap().starts_with("gamma,600,1200,"), "{csv}");
    let shown = stdout(&check(exporter.cli(&["session", "show", "3"]), "show"));
    assert!(
        shown.contains("target 600/1200 (applied)") && shown.contains("notes: step 2"),
        "{shown}"
    );
    assert!(
        shown.contains("configuration changed: 525 MHz / 1150 mV -> 600 MHz / 1200 mV"),
        "{shown}"
    );

    // What users get wrong, with exit code 2 and a message that helps.
    check(
        exporter.cli(&["session", "start", "--device", "gamma", "--notes", "open"]),
        "start",
    );
    let again = exporter.cli(&["session", "start", "--device", "gamma"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("gamma already has an open session: #6"),
        "{}",
        stderr(&again)
    );
    check(exporter.cli(&["session", "end", "--device", "gamma"]), "end");
    let none = exporter.cli(&["session", "end", "--device", "gamma"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(
        stderr(&none).contains("gamma has no open session (the last one ended"),
        "{}",
        stderr(&none)
    );
    let unknown = exporter.cli(&["session", "start", "--device", "gamma-typo"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("unknown device \"gamma-typo\"; known devices: bg-000, bg-001"),
        "{}",
        stderr(&unknown)
    );
    let bad_time = exporter.cli(&["analyze", "export", "--format", "csv", "--since", "last tuesday"]);
    assert_eq!(bad_time.status.code(), Some(2));
    assert!(stderr(&bad_time).contains("--since"), "{}", stderr(&bad_time));

    // Export while the daemon writes: the rows of one device over the last 20 s.
    let export = check(
        exporter.cli(&[
            "analyze", "export", "--format", "csv", "--device", "gamma", "--since", "20s",
        ]),
        "export",
    );
    let rows = stdout(&export).lines().count() - 1;
    assert!((15..=25).contains(&rows), "{rows} rows for 20 s at 1 poll/s");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_writing_loses_at_most_the_unflushed_batch_and_never_corrupts() {
    let (sims, devices) = fleet(150).await;
    let mut exporter = Exporter::start(&devices, 1.0);
    let committed = loop {
        let e = exporter.metrics().await;
        let written = e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0);
        if written > 500.0 {
            break written;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    exporter.kill();

    let conn = Connection::open(exporter.database_path()).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
    let rows: f64 = conn
        .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
        .unwrap();
    assert!(
        rows >= committed,
        "{rows} samples on disk, {committed} reported committed before the kill"
    );
    // Batches are whole: every segment's sample count matches its rows.
    let mut per_segment = std::collections::HashMap::<i64, i64>::new();
    for row in crate::support::stored_samples(&exporter.database_path()) {
        *per_segment.entry(row.segment_id).or_default() += 1;
    }
    let mut stmt = conn.prepare("SELECT id, samples FROM segments").unwrap();
    let mismatched: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .filter(|(id, samples)| per_segment.get(id).copied().unwrap_or(0) != *samples)
        .collect();
    assert!(mismatched.is_empty(), "{mismatched:?}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_delays_writes_but_loses_nothing() {
    let (sims, devices) = fleet(20).await;
    let exporter = Exporter::start(&devices, 1.0);
    exporter
        .wait_for(Duration::from_secs(10), "first samples committed", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]) > Some(20.0)
        })
        .await;
    // Another program holds the write lock for longer than the writer's busy timeout.
    let blocker = Connection::open(exporter.database_path()).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let locked_at = std::time::SystemTime::now();
    tokio::time::sleep(Duration::from_secs(13)).await;
    let during = exporter.metrics().await;
    assert!(
        during.value("bitaxe_ledger_write_errors_total", &[]) >= Some(1.0),
        "the failed commit is counted"
    );
    assert!(
        during.value("bitaxe_ledger_backlog_records", &[]) > Some(100.0),
        "samples wait in memory"
    );
    assert_eq!(during.up("gamma"), Some(1.0), "polling and /metrics go on");
    blocker.execute_batch("COMMIT;").unwrap();
    drop(blocker);

    let after = exporter
        .wait_for(Duration::from_secs(40), "the backlog written", |e| {
            e.value("bitaxe_ledger_backlog_records", &[]) == Some(0.0)
        })
        .await;
    assert_eq!(after.value("bitaxe_ledger_dropped_records_total", &[]), Some(0.0));
    let conn = Connection::open(exporter.database_path()).unwrap();
    let written: f64 = conn
        .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
        .unwrap();
    assert!(written >= after.value("bitaxe_ledger_samples_written_total", &[]).unwrap());
    // Every device has its samples from the locked period.
    let locked_from = bitaxe_exporter::time::unix_seconds(locked_at) + 1.0;
    let mut counted = std::collections::BTreeMap::<String, i64>::new();
    for row in crate::support::stored_samples(&exporter.database_path()) {
        if row.t >= locked_from && row.t <= locked_from + 10.0 {
            *counted.entry(row.device).or_default() += 1;
        }
    }
    let per_device: Vec<i64> = counted.into_values().collect();
    assert_eq!(per_device.len(), 21, "{per_device:?}");
    assert!(
        per_device.iter().all(|n| *n >= 8),
        "about 10 samples each in 10 locked seconds: {per_device:?}"
    );
    sims.shutdown().await;
}
