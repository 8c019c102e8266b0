//! The ledger through its writer, on hand-built samples at chosen times: segments and their
//! reasons, warm-up exclusion and statistics checked against values computed by hand,
//! device identity across renames, schema migration from an older file, and export.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitaxe_exporter::analysis::export::{export, ExportFormat};
use bitaxe_exporter::analysis::{compare_configs, ConfigRow, Query};
use bitaxe_exporter::axeos::sample::{Identity, Sample};
use bitaxe_exporter::ledger::writer::{Record, SegmentRules, Writer};
use bitaxe_exporter::ledger::{Ledger, SCHEMA_VERSION};

pub const T0: u64 = 1_790_000_000;

pub fn at(seconds: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_secs_f64(seconds)
}

pub fn rules(warmup_minutes: f64) -> SegmentRules {
    SegmentRules::for_poll_interval(Duration::from_secs(30), Duration::from_secs_f64(warmup_minutes * 60.0))
}

#[derive(Clone)]
pub struct S {
    pub freq: f64,
    pub mv: f64,
    pub hashrate: f64,
    pub power: f64,
    pub temp: f64,
    pub uptime: u64,
    pub firmware: &'static str,
    pub mac: Option<&'static str>,
}

impl S {
    pub fn new(freq: f64, mv: f64) -> S {
        S {
            freq,
            mv,
            hashrate: 1000.0,
            power: 18.0,
            temp: 60.0,
            uptime: 10_000,
            firmware: "v2.15.0",
            mac: Some("AA:BB:CC:00:00:01"),
        }
    }

    pub fn sample(&self) -> Arc<Sample> {
        Arc::new(Sample {
            hashrate_ghs: Some(self.hashrate),
            expected_hashrate_ghs: Some(self.freq * 2040.0 / 1000.0),
            power_watts: Some(self.power),
            asic_temp_celsius: Some(self.temp),
            frequency_mhz: Some(self.freq),
            core_voltage_mv: Some(self.mv),
            uptime_seconds: Some(self.uptime),
            shares_accepted: Some(self.uptime / 10),
            shares_rejected: Some(0),
            identity: Identity {
                mac: self.mac.map(Into::into),
                firmware: Some(self.firmware.into()),
                asic_model: Some("BM1370".into()),
                ..Identity::default()
            },
            ..Sample::default()
        })
    }
}

pub fn write_all(path: &Path, warmup_minutes: f64, records: Vec<(&str, f64, S)>) {
    let writer = Writer::start(path, rules(warmup_minutes)).unwrap();
    for (device, t, s) in records {
        writer.sender.send(Record::Sample {
            device: device.into(),
            at: at(t),
            sample: s.sample(),
        });
    }
    writer.finish();
}

pub fn query(path: &Path, warmup_minutes: f64, since: Option<f64>, until: Option<f64>) -> Vec<ConfigRow> {
    let ledger = Ledger::open_existing(path).unwrap();
    compare_configs(
        &ledger,
        &Query {
            device_id: None,
            since: since.map(|s| T0 as f64 + s),
            until: until.map(|u| T0 as f64 + u),
            warmup_seconds: warmup_minutes * 60.0,
        },
    )
    .unwrap()
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9 * b.abs().max(1.0))
}

/// 20 minutes at 525/1150 (warm-up hashrate 500 GH/s at 20 W, then 1000 GH/s at 18 W),
/// then 5 minutes at 600/1200.
fn warmup_history() -> Vec<(&'static str, f64, S)> {
    let mut records = Vec::new();
    for i in 0..=40 {
        let t = i as f64 * 30.0;
        let mut s = S::new(525.0, 1150.0);
        s.uptime = 10_000 + t as u64;
        if t < 600.0 {
            s.hashrate = 500.0;
            s.power = 20.0;
        }
        records.push(("gamma", t, s));
    }
    for i in 1..=10 {
        let t = 1200.0 + i as f64 * 30.0;
        let mut s = S::new(600.0, 1200.0);
        s.uptime = 10_000 + t as u64;
        records.push(("gamma", t, s));
    }
    records
}

#[test]
fn warm_up_is_excluded_from_steady_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    write_all(&path, 10.0, warmup_history());

    let rows = query(&path, 10.0, None, None);
    assert_eq!(rows.len(), 2, "{rows:#?}");
    let tuned = &rows[0];
    assert_eq!(
        (tuned.frequency_mhz, tuned.core_voltage_mv),
        (Some(525.0), Some(1150.0))
    );
    assert_eq!(tuned.samples, 41);
    // Samples at 600 s … 1200 s are steady: 21 of them, each standing for 30 s.
    assert_eq!(tuned.steady_samples, 21);
    assert!(close(Some(tuned.steady_seconds), 630.0), "{}", tuned.steady_seconds);
    assert!(close(tuned.mean_hashrate_ghs, 1000.0));
    assert!(close(tuned.joules_per_terahash, 18.0));
    assert!(close(tuned.percent_of_expected, 1000.0 / 1071.0 * 100.0));
    assert!(tuned.enough_data);
    // The retune's 5 minutes are all warm-up.
    let retuned = &rows[1];
    assert_eq!((retuned.samples, retuned.steady_samples), (10, 0));
    assert!(!retuned.enough_data);

    // With no warm-up (a rescan, since the stored aggregate used 10 minutes) every sample
    // counts: 20 at 500 GH/s (the first stands for 0 s) and 21 at 1000 GH/s.
    let rows = query(&path, 0.0, None, None);
    assert_eq!(rows[0].steady_samples, 41);
    assert!(close(rows[0].mean_hashrate_ghs, (20.0 * 500.0 + 21.0 * 1000.0) / 41.0));
    // Energy over work, by hand: warm-up 19 samples × 30 s (the first has Δt 0).
    let energy = 19.0 * 30.0 * 20.0 + 21.0 * 30.0 * 18.0;
    let work_th = (19.0 * 30.0 * 500.0 + 21.0 * 30.0 * 1000.0) / 1000.0;
    assert!(
        close(rows[0].joules_per_terahash, energy / work_th),
        "{:?}",
        rows[0].joules_per_terahash
    );

    // A range that cuts the segment: only 900 s … 1200 s (11 samples), all steady.
    let rows = query(&path, 10.0, Some(900.0), Some(1200.0));
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].samples, rows[0].steady_samples), (11, 11));
}

#[test]
fn energy_weighted_efficiency_differs_from_the_mean_of_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let records = (0..=20)
        .map(|i| {
            let mut s = S::new(525.0, 1150.0);
            s.uptime = 10_000 + i * 30;
            // Alternating 1000 GH/s at 20 W (20 J/TH) and 500 GH/s at 15 W (30 J/TH).
            (s.hashrate, s.power) = if i % 2 == 0 { (1000.0, 20.0) } else { (500.0, 15.0) };
            ("gamma", i as f64 * 30.0, s)
        })
        .collect();
    write_all(&path, 0.0, records);
    let row = &query(&path, 0.0, None, None)[0];
    // Δt is 30 s for all but the first: 10 samples of each kind count.
    let energy_weighted = (10.0 * 20.0 + 10.0 * 15.0) / ((10.0 * 1000.0 + 10.0 * 500.0) / 1000.0);
    let mean_of_ratios = (11.0 * 20.0 + 10.0 * 30.0) / 21.0;
    assert!(
        close(row.joules_per_terahash, energy_weighted),
        "{:?}",
        row.joules_per_terahash
    );
    assert!(
        (energy_weighted - mean_of_ratios).abs() > 1.0,
        "the two definitions must differ here"
    );
}

#[test]
fn segments_start_at_config_changes_reboots_firmware_changes_and_unbridgeable_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut records = Vec::new();
    let mut push = |t: f64, s: S| records.push(("gamma", t, s));
    let base = S::new(525.0, 1150.0);
    push(
        0.0,
        S {
            uptime: 1000,
            ..base.clone()
        },
    );
    push(
        30.0,
        S {
            uptime: 1030,
            ..base.clone()
        },
    );
    // Retune.
    push(
        60.0,
        S {
            uptime: 1060,
            ..S::new(600.0, 1200.0)
        },
    );
    // Reboot: uptime falls.
    push(
        90.0,
        S {
            uptime: 5,
            ..S::new(600.0, 1200.0)
        },
    );
    // Firmware update.
    push(
        120.0,
        S {
            uptime: 35,
            firmware: "v2.15.1",
            ..S::new(600.0, 1200.0)
        },
    );
    // An hour offline but the miner kept running (uptime advanced with the clock): same segment.
    push(
        3720.0,
        S {
            uptime: 3635,
            firmware: "v2.15.1",
            ..S::new(600.0, 1200.0)
        },
    );
    write_all(&path, 0.0, records);

    let ledger = crate::support::sql(&path);
    let mut stmt = ledger
        .prepare("SELECT reason, samples FROM segments ORDER BY started_at")
        .unwrap();
    let segments: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        segments,
        [
            ("first".to_string(), 2),
            ("config_changed".to_string(), 1),
            ("rebooted".to_string(), 1),
            ("firmware_changed".to_string(), 2),
        ]
    );
    // The hour offline is not counted as steady time (Δt is capped).
    let device = Ledger::open_existing(&path)
        .unwrap()
        .find_device("gamma")
        .unwrap()
        .unwrap();
    let dt = Ledger::open_existing(&path)
        .unwrap()
        .device_readings(device.id, f64::MIN, f64::MAX)
        .unwrap()
        .iter()
        .map(|(_, r)| r.dt)
        .fold(0.0, f64::max);
    assert!(dt <= 95.0, "{dt}");
}

#[test]
fn a_renamed_device_keeps_its_history_and_a_restarted_writer_continues_the_segment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s = |uptime| S {
        uptime,
        ..S::new(525.0, 1150.0)
    };
    write_all(&path, 0.0, vec![("old-name", 0.0, s(100)), ("old-name", 30.0, s(130))]);
    // The daemon restarts with the device renamed in config.yaml (same MAC).
    write_all(&path, 0.0, vec![("new-name", 60.0, s(160)), ("new-name", 90.0, s(190))]);

    let ledger = Ledger::open_existing(&path).unwrap();
    let devices = ledger.devices().unwrap();
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].name, "new-name");
    assert_eq!(ledger.find_device("old-name").unwrap().unwrap().id, devices[0].id);
    let segments: i64 = crate::support::sql(&path)
        .query_row("SELECT count(*) FROM segments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(segments, 1, "the restart continued the segment");
    let rows = query(&path, 0.0, None, None);
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].device.as_str(), rows[0].samples), ("new-name", 4));
    assert!(close(Some(rows[0].steady_seconds), 90.0));
}

#[test]
fn opens_and_upgrades_a_file_made_by_an_older_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    write_all(&path, 0.0, warmup_history());
    // Make it a schema-1 file, as an older release wrote it: no device names, no sweeps.
    Ledger::open_existing(&path)
        .unwrap()
        .rewrite_samples_as_rows_for_tests()
        .unwrap();
    crate::support::sql(&path)
        .execute_batch(
            "DROP TABLE device_names; DROP TABLE tune_steps; DROP TABLE tune_devices; DROP TABLE tune_runs;
             ALTER TABLE sessions DROP COLUMN tune_run_id; DROP TABLE sample_hours;
             ALTER TABLE samples DROP COLUMN source; ALTER TABLE events DROP COLUMN log_tail; PRAGMA user_version = 1;",
        )
        .unwrap();
    let ledger = Ledger::open_existing(&path).unwrap();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
    drop(ledger);
    let raw = crate::support::sql(&path);
    let names: i64 = raw
        .query_row("SELECT count(*) FROM device_names", [], |r| r.get(0))
        .unwrap();
    assert_eq!(names, 1, "the migration back-filled the names");
    let hours: (i64, i64) = raw
        .query_row("SELECT count(*), total(samples) FROM sample_hours", [], |r| {
            Ok((r.get(0)?, r.get::<_, f64>(1)? as i64))
        })
        .unwrap();
    let samples: i64 = raw
        .query_row("SELECT sum(samples) FROM sample_blocks", [], |r| r.get(0))
        .unwrap();
    assert!(
        hours.0 >= 1 && hours.1 == samples,
        "the migration back-filled the hourly rollups: {hours:?}"
    );
    assert_eq!(
        query(&path, 10.0, None, None)[0].steady_samples,
        21,
        "the data survived"
    );
    let check: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");

    // A file from a newer release is refused, not damaged.
    raw.execute_batch("PRAGMA user_version = 99;").unwrap();
    drop(raw);
    let error = Ledger::open_existing(&path).unwrap_err().to_string();
    assert!(error.contains("newer bitaxe-exporter"), "{error}");
}

#[test]
fn export_rows_match_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut records = warmup_history();
    records.extend((0..=5).map(|i| {
        (
            "ultra",
            i as f64 * 30.0,
            S {
                mac: Some("AA:BB:CC:00:00:02"),
                ..S::new(485.0, 1200.0)
            },
        )
    }));
    write_all(&path, 10.0, records);
    let ledger = Ledger::open_existing(&path).unwrap();
    let t = |s: f64| T0 as f64 + s;

    let mut csv = Vec::new();
    let n = export(&ledger, &mut csv, ExportFormat::Csv, None, f64::MIN, f64::MAX).unwrap();
    assert_eq!(n, 51 + 6);
    let text = String::from_utf8(csv).unwrap();
    assert_eq!(text.lines().count() as u64, n + 1, "a header and one line per sample");
    assert!(text.starts_with("time,unix_time_s,device,segment_id,frequency_mhz,core_voltage_mv,hashrate_ghs,"));
    let header_fields = text.lines().next().unwrap().split(',').count();
    assert!(text.lines().all(|l| l.split(',').count() == header_fields));

    // 300 s … 600 s inclusive: 11 gamma samples and none of ultra (0 … 150 s).
    let gamma = ledger.find_device("gamma").unwrap().unwrap();
    let mut csv = Vec::new();
    assert_eq!(
        export(&ledger, &mut csv, ExportFormat::Csv, None, t(300.0), t(600.0)).unwrap(),
        11
    );
    let mut json = Vec::new();
    assert_eq!(
        export(&ledger, &mut json, ExportFormat::Json, Some(gamma.id), t(0.0), t(90.0)).unwrap(),
        4
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 4);
    assert_eq!(parsed[0]["device"], "gamma");
    assert_eq!(parsed[0]["frequency_mhz"], 525.0);
    // An empty range is still valid JSON.
    let mut empty = Vec::new();
    export(&ledger, &mut empty, ExportFormat::Json, None, t(1e7), t(2e7)).unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
        serde_json::json!([])
    );
}

/// Three hours of 30-s samples: hashrate 1000 GH/s but 1500 at one sample (a spike that a
/// mean-only downsampling would hide), power 18 W, temperature rising 0.01 °C per sample.
fn three_hours() -> Vec<(&'static str, f64, S)> {
    (0..360)
        .map(|i| {
            let mut s = S::new(525.0, 1150.0);
            s.uptime = 10_000 + i * 30;
            s.temp = 55.0 + 0.01 * i as f64;
            if i == 100 {
                s.hashrate = 1500.0;
            }
            ("rig", i as f64 * 30.0, s)
        })
        .collect()
}

#[test]
fn history_downsamples_keeping_min_and_max_and_filters_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut records = three_hours();
    // The same sample delivered twice (a restarted writer) is stored and counted once.
    records.push(records[5].clone());
    write_all(&path, 0.0, records);
    let ledger = Ledger::open_existing(&path).unwrap();
    let device = ledger.find_device("rig").unwrap().unwrap();
    let t0 = T0 as f64;
    let (first, last) = ledger.sample_span(device.id).unwrap().unwrap();
    assert_eq!((first, last), (t0, t0 + 359.0 * 30.0));

    // 10-minute buckets from the samples: 20 samples each.
    let history = ledger.history(device.id, t0, t0 + 3.0 * 3600.0, 600.0).unwrap();
    assert_eq!(history.source, bitaxe_exporter::ledger::rollup::HistorySource::Samples);
    assert_eq!(history.points.len(), 18);
    assert!(
        history.points.iter().all(|p| p.samples == 20),
        "{:?}",
        history.points[0]
    );
    let spiked = &history.points[(100 * 30) / 600];
    let hashrate = spiked.hashrate_ghs.unwrap();
    assert_eq!(
        (hashrate.min, hashrate.max),
        (1000.0, 1500.0),
        "the spike survives as the bucket's max"
    );
    assert!((hashrate.mean - (19.0 * 1000.0 + 1500.0) / 20.0).abs() < 1e-9);
    let quiet = history.points[0].hashrate_ghs.unwrap();
    assert_eq!((quiet.min, quiet.max), (1000.0, 1000.0));
    assert!((history.points[0].joules_per_terahash.unwrap() - 18.0).abs() < 1e-9);
    let temp = history.points[1].asic_temp_c.unwrap();
    assert!(
        (temp.min - 55.2).abs() < 1e-9 && (temp.max - 55.39).abs() < 1e-9,
        "{temp:?}"
    );

    // A range cut inside: only its samples.
    let cut = ledger.history(device.id, t0 + 3600.0, t0 + 5400.0, 600.0).unwrap();
    assert_eq!(
        cut.points.len(),
        4,
        "{:?}",
        cut.points.iter().map(|p| p.samples).collect::<Vec<_>>()
    );
    assert_eq!(cut.points.iter().map(|p| p.samples).sum::<u64>(), 61);
    assert_eq!(cut.points[0].t, t0 + 3600.0);

    // Hour steps come from the rollups, with the same counts and extremes.
    let hourly = ledger.history(device.id, t0, t0 + 3.0 * 3600.0, 3600.0).unwrap();
    assert_eq!(
        hourly.source,
        bitaxe_exporter::ledger::rollup::HistorySource::HourlyRollups
    );
    let raw_hourly: Vec<u64> = hourly.points.iter().map(|p| p.samples).collect();
    assert_eq!(raw_hourly.iter().sum::<u64>(), 360, "{raw_hourly:?}");
    let max = hourly
        .points
        .iter()
        .filter_map(|p| p.hashrate_ghs.map(|h| h.max))
        .fold(0.0, f64::max);
    assert_eq!(max, 1500.0);
    let all_min_temp = hourly
        .points
        .iter()
        .filter_map(|p| p.asic_temp_c.map(|h| h.min))
        .fold(f64::INFINITY, f64::min);
    assert!((all_min_temp - 55.0).abs() < 1e-9);
}

/// The hourly rollups as stored, one row per (device, hour), every column.
fn rollup_rows(path: &Path) -> Vec<Vec<Option<f64>>> {
    let conn = crate::support::sql(path);
    let mut stmt = conn
        .prepare("SELECT * FROM sample_hours ORDER BY device_id, hour")
        .unwrap();
    let columns = stmt.column_count();
    let rows = stmt
        .query_map([], |r| (0..columns).map(|i| r.get::<_, Option<f64>>(i)).collect())
        .unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

/// The same rows, every sum equal to rounding.
fn assert_same_rollups(found: &[Vec<Option<f64>>], expected: &[Vec<Option<f64>>]) {
    assert_eq!(found.len(), expected.len());
    for (a, b) in found.iter().zip(expected) {
        for (x, y) in a.iter().zip(b) {
            match (x, y) {
                (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * y.abs().max(1.0), "{a:?} vs {b:?}"),
                (x, y) => assert_eq!(x, y, "{a:?} vs {b:?}"),
            }
        }
    }
}

#[test]
fn the_upgrade_fills_the_rollups_as_the_writer_keeps_them_and_waits_for_an_older_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut records = three_hours();
    // Readings the miner did not give, and a second device.
    for (i, (_, _, s)) in records.iter_mut().enumerate() {
        if i % 7 == 0 {
            s.temp = f64::NAN;
        }
    }
    records.extend((0..50).map(|i| ("other", 100.0 + i as f64 * 30.0, S::new(490.0, 1100.0))));
    write_all(&path, 0.0, records);
    let kept_by_writer = rollup_rows(&path);
    assert!(kept_by_writer.len() >= 5);

    // The same ledger as the previous release left it: no rollups, schema 3.
    Ledger::open_existing(&path)
        .unwrap()
        .rewrite_samples_as_rows_for_tests()
        .unwrap();
    crate::support::sql(&path)
        .execute_batch("DROP TABLE sample_hours; ALTER TABLE samples DROP COLUMN source; ALTER TABLE events DROP COLUMN log_tail; PRAGMA user_version = 3;")
        .unwrap();
    // An older `serve` still holds it: the upgrade waits, and nothing changes.
    let daemon = bitaxe_exporter::ledger::DaemonLock::acquire(&path).unwrap();
    let refused = Ledger::open_existing(&path).unwrap_err().to_string();
    assert!(refused.contains("restart the service"), "{refused}");
    let version: i64 = crate::support::sql(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    drop(daemon);

    let ledger = Ledger::open_existing(&path).unwrap();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
    drop(ledger);
    let backfilled = rollup_rows(&path);
    assert_same_rollups(&backfilled, &kept_by_writer);
}

#[test]
fn rollup_sums_a_crash_kept_in_memory_are_rebuilt_from_the_samples_when_the_ledger_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let mut records = three_hours();
    records.extend((0..50).map(|i| ("other", 100.0 + i as f64 * 30.0, S::new(490.0, 1100.0))));
    write_all(&path, 0.0, records);
    let complete = rollup_rows(&path);
    assert!(complete.len() >= 5);
    // What a SIGKILL leaves when the writer held the latest sums in memory: the last hour
    // of each device missing, the one before it short of samples.
    crate::support::sql(&path)
        .execute_batch(
            "DELETE FROM sample_hours WHERE (device_id, hour) IN
                 (SELECT device_id, max(hour) FROM sample_hours GROUP BY device_id);
             UPDATE sample_hours SET samples = samples - 3, hashrate_sum = hashrate_sum / 2
                 WHERE (device_id, hour) IN (SELECT device_id, max(hour) FROM sample_hours GROUP BY device_id);",
        )
        .unwrap();
    assert_ne!(rollup_rows(&path), complete);
    // The next writer to open it (serve or tune) puts them right before it writes.
    Writer::start(&path, rules(0.0)).unwrap().finish();
    assert_same_rollups(&rollup_rows(&path), &complete);
}

#[test]
fn read_only_commands_read_an_older_schema_without_upgrading_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    write_all(&path, 0.0, warmup_history());
    // A schema-1 file, as an older release wrote it (with a session of that era).
    Ledger::open_existing(&path)
        .unwrap()
        .rewrite_samples_as_rows_for_tests()
        .unwrap();
    crate::support::sql(&path)
        .execute_batch(&format!(
            "INSERT INTO sessions (device_id, started_at, ended_at, target_frequency_mhz, notes)
                 VALUES (1, {T0}, {T0} + 600, 525, 'trying 525');
             DROP TABLE device_names; DROP TABLE tune_steps; DROP TABLE tune_devices; DROP TABLE tune_runs;
             ALTER TABLE sessions DROP COLUMN tune_run_id; DROP TABLE sample_hours;
             ALTER TABLE samples DROP COLUMN source; ALTER TABLE events DROP COLUMN log_tail; PRAGMA user_version = 1;"
        ))
        .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"gamma\"\n    ip: \"192.0.2.1\"\nlogging:\n  database_path: \"ledger.db\"\n",
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();
    let report = dir.path().join("report.html");
    let report_arg = report.display().to_string();
    let commands: [&[&str]; 7] = [
        &["analyze", "compare-configs"],
        &["analyze", "optimize", "--metric", "efficiency"],
        &["analyze", "export", "--format", "csv"],
        &["analyze", "report", "--output", &report_arg],
        &["session", "list"],
        &["session", "show", "1"],
        &["tune", "status"],
    ];
    for args in commands {
        let output = crate::support::cli(&config, args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        assert!(output.status.success(), "{args:?} failed:\n{stdout}\n{stderr}");
        let version: i64 = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1, "{args:?} upgraded the schema");
        assert!(
            std::fs::read(&path).unwrap() == before,
            "{args:?} changed the ledger's bytes"
        );
        if args[0] == "analyze" && args[1] != "report" {
            assert!(stdout.contains("gamma"), "{args:?} read the ledger:\n{stdout}");
        }
        if args[0] == "session" {
            assert!(stdout.contains("trying 525"), "{args:?} read the session:\n{stdout}");
        }
    }
    assert!(std::fs::read_to_string(&report).unwrap().contains("gamma"));
    // A command that records upgrades it, as `serve` does.
    let started = crate::support::cli(&config, &["session", "start", "--device", "gamma", "--notes", "now"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let ledger = Ledger::open_read_only(&path).unwrap();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn last_seen_is_the_newest_sample_not_the_first_poll() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let records = (0..=20)
        .map(|i| ("gamma", i as f64 * 30.0, S::new(525.0, 1150.0)))
        .collect();
    write_all(&path, 0.0, records);
    let ledger = Ledger::open_existing(&path).unwrap();
    let device = ledger.find_device("gamma").unwrap().unwrap();
    assert_eq!(device.first_seen, T0 as f64);
    assert_eq!(device.last_seen, T0 as f64 + 600.0, "{device:?}");
    assert_eq!(ledger.devices().unwrap()[0].last_seen, T0 as f64 + 600.0);
}
