//! Ledger benchmark: ingest 10 devices × 1 year of 30-second samples (about 10.5 million
//! rows) through the real writer thread, then time `analyze compare-configs` over all of
//! it, the device page's history query over each range (a year against an hour), export
//! throughput, and the bytes each sample takes on disk. Ingest and export are
//! each set against a bare baseline measured in the same run: the same rows inserted with
//! one prepared statement in batched transactions into a table of the same shape, and the
//! same samples read back with one SELECT and decoded, nothing done with them.
//!
//! Run with `cargo bench --bench ledger` (BENCH_DEVICES and BENCH_DAYS shorten it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bitaxe_exporter::analysis::export::{export, ExportFormat};
use bitaxe_exporter::analysis::history::{default_step, Range};
use bitaxe_exporter::analysis::{compare_configs, Query};
use bitaxe_exporter::axeos::sample::{Identity, Sample};
use bitaxe_exporter::ledger::writer::{Record, SegmentRules, Writer};
use bitaxe_exporter::ledger::Ledger;
use bitaxe_exporter::sim::physics::{expected_ghs, operating_point, Board};

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The configurations each simulated device cycles through, one per week.
const CONFIGS: [(f64, f64); 6] = [
    (490.0, 1100.0),
    (525.0, 1150.0),
    (550.0, 1150.0),
    (575.0, 1175.0),
    (600.0, 1200.0),
    (625.0, 1200.0),
];

fn main() {
    let devices: u64 = env_or("BENCH_DEVICES", 10);
    let days: u64 = env_or("BENCH_DAYS", 365);
    let interval = 30u64;
    let per_device = days * 86_400 / interval;
    let total = devices * per_device;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let spec = Board::Gamma.spec();
    let start = UNIX_EPOCH + Duration::from_secs(1_760_000_000);
    println!("ledger benchmark: {devices} devices × {days} days of {interval}-s samples = {total} samples");

    let writer = Writer::start(
        &path,
        SegmentRules::for_poll_interval(Duration::from_secs(interval), Duration::from_secs(600)),
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let began = Instant::now();
    for i in 0..per_device {
        let t = i * interval;
        let week = t / (7 * 86_400);
        for d in 0..devices {
            let (mhz, mv) = CONFIGS[((week + d) % CONFIGS.len() as u64) as usize];
            let op = operating_point(&spec, mhz, mv);
            let expected = expected_ghs(&spec, mhz);
            // A reboot every 30 days resets the uptime.
            let uptime = t % (30 * 86_400) + 600;
            let sample = Sample {
                hashrate_ghs: Some(expected * op.hashrate_factor * (0.98 + 0.04 * rng.f64())),
                expected_hashrate_ghs: Some(expected),
                power_watts: Some((op.core_watts + spec.overhead_watts) * (0.995 + 0.01 * rng.f64())),
                asic_temp_celsius: Some(58.0 + 4.0 * rng.f64()),
                vr_temp_celsius: Some(50.0 + 3.0 * rng.f64()),
                frequency_mhz: Some(mhz),
                core_voltage_mv: Some(mv),
                core_voltage_measured_mv: Some(mv - 3.0),
                input_voltage_volts: Some(5.1),
                input_current_amperes: Some(3.5),
                fan_duty_percent: Some(70.0),
                fan_rpm: Some(4900.0),
                shares_accepted: Some(uptime / 4),
                shares_rejected: Some(uptime / 4000),
                error_percent: Some(op.error_percent),
                uptime_seconds: Some(uptime),
                best_difficulty: Some(4.2e9),
                identity: Identity {
                    mac: Some(format!("F4:12:FA:00:00:{d:02X}")),
                    firmware: Some("v2.15.0".into()),
                    asic_model: Some("BM1370".into()),
                    ..Identity::default()
                },
                ..Sample::default()
            };
            writer.sender.send_wait(Record::Sample {
                device: format!("gamma-{d:02}"),
                at: start + Duration::from_secs(t),
                sample: Arc::new(sample),
            });
        }
    }
    let stats = writer.stats.clone();
    writer.finish();
    let ingest = began.elapsed().as_secs_f64();
    let written = stats.samples_written.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(written, total, "every sample written");
    println!(
        "  ingest (batched, one writer):  {:.0} samples/s ({total} in {ingest:.1} s)",
        total as f64 / ingest
    );

    let bare_ingest = bare_ingest(&dir.path().join("bare.db"), devices, per_device, interval);
    println!(
        "  bare baseline (one INSERT, batched transactions): {:.0} rows/s; the writer takes {:.2}× its time",
        total as f64 / bare_ingest,
        ingest / bare_ingest
    );

    let ledger = Ledger::open_existing(&path).unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    let bytes = std::fs::metadata(&path).unwrap().len();
    let segments: i64 = raw
        .query_row("SELECT count(*) FROM segments", [], |r| r.get(0))
        .unwrap();
    println!(
        "  on disk:                       {:.1} bytes/sample ({:.2} GiB, {segments} segments)",
        bytes as f64 / total as f64,
        bytes as f64 / 1_073_741_824.0
    );
    yearly_size(&ledger, devices, days);

    let mut timings = Vec::new();
    let mut rows = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let result = compare_configs(
            &ledger,
            &Query {
                warmup_seconds: 600.0,
                ..Query::default()
            },
        )
        .unwrap();
        timings.push(t.elapsed().as_secs_f64() * 1000.0);
        rows = result.len();
    }
    timings.sort_by(f64::total_cmp);
    let median = timings[timings.len() / 2];
    println!(
        "  analyze compare-configs:       {median:.1} ms median over all data ({rows} rows; target < 200 ms: {})",
        if median < 200.0 { "target met" } else { "OVER TARGET" }
    );

    let one = ledger.find_device("gamma-00").unwrap().unwrap();
    history_timings(&ledger, &one);
    let t = Instant::now();
    let exported = export(
        &ledger,
        &mut std::io::sink(),
        ExportFormat::Csv,
        Some(one.id),
        f64::MIN,
        f64::MAX,
    )
    .unwrap();
    let seconds = t.elapsed().as_secs_f64();
    println!(
        "  analyze export (CSV):          {:.0} rows/s ({exported} rows in {seconds:.1} s)",
        exported as f64 / seconds
    );
    let t = Instant::now();
    // The same samples read bare: the device's blocks, selected and decoded, nothing
    // written (what any reader of this ledger must do at least).
    let mut statement = raw
        .prepare("SELECT t_first, samples, data FROM sample_blocks WHERE device_id = ?1 ORDER BY t_first")
        .unwrap();
    let mut read = 0u64;
    let mut rows = statement.query([one.id]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let data: Vec<u8> = row.get(2).unwrap();
        let count = row.get::<_, i64>(1).unwrap() as usize;
        let samples = bitaxe_exporter::ledger::blocks::decode(row.get(0).unwrap(), count, &data).unwrap();
        read += std::hint::black_box(samples).len() as u64;
    }
    let bare_seconds = t.elapsed().as_secs_f64();
    assert_eq!(read, exported as u64);
    println!(
        "  bare baseline (one SELECT, blocks decoded, nothing written): {:.0} rows/s; export takes {:.2}× its time",
        read as f64 / bare_seconds,
        seconds / bare_seconds
    );
    daily_writes(env_or("BENCH_WRITE_SECONDS", 60));
}

/// Bytes per table and per raw sample (as `analyze ledger-stats` prints them), and what a
/// year of 100 miners polled every 30 s takes with the default retention (90 days of raw
/// samples; hourly rollups, segments and events for the whole year), scaled from this run.
fn yearly_size(ledger: &Ledger, devices: u64, days: u64) {
    let stats = ledger.stats().unwrap();
    for t in &stats.tables {
        println!(
            "    {:<14} {:>10} rows {:>13} bytes {:>8} bytes/sample",
            t.table,
            t.rows,
            t.bytes,
            t.bytes_per_sample.map_or("-".into(), |b| format!("{b:.1}"))
        );
    }
    let bytes_of = |name: &str| stats.tables.iter().find(|t| t.table == name).map_or(0, |t| t.bytes) as f64;
    let rows_of = |name: &str| stats.tables.iter().find(|t| t.table == name).map_or(0, |t| t.rows) as f64;
    let raw_per_sample = bytes_of("sample_blocks") / stats.samples.max(1) as f64;
    let per_rollup_row = bytes_of("sample_hours") / rows_of("sample_hours").max(1.0);
    let rest =
        stats.tables.iter().map(|t| t.bytes as f64).sum::<f64>() - bytes_of("sample_blocks") - bytes_of("sample_hours");
    let (miners, year_days, retention_days) = (100.0, 365.0, 90.0);
    let raw = raw_per_sample * miners * retention_days * 86_400.0 / 30.0;
    let rollups = per_rollup_row * miners * year_days * 24.0;
    let others = rest / devices as f64 * miners * year_days / days as f64;
    let gib = |b: f64| b / 1_073_741_824.0;
    println!(
        "  raw samples: {raw_per_sample:.1} bytes each (target ≤ 48); a year of 100 miners at 30 s with raw_retention 90d: \
         {:.2} GiB (90 days raw {:.2}, hourly rollups {:.2}, segments and the rest {:.2}; target < 1.5 GiB)",
        gib(raw + rollups + others),
        gib(raw),
        gib(rollups),
        gib(others)
    );
}

/// Bytes the ledger writes (WAL, checkpoints, the file) while the real writer stores what
/// 10 miners polled every 30 s send, for `seconds` of wall time: scaled to a day. Read from
/// the kernel's count of this process's writes (`/proc/self/io`).
fn daily_writes(seconds: u64) {
    fn written() -> Option<u64> {
        let io = std::fs::read_to_string("/proc/self/io").ok()?;
        io.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .and_then(|n| n.trim().parse().ok())
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    // As `serve` runs it: a commit every 15 s at 30-s polls.
    let writer = Writer::start(
        &path,
        SegmentRules::for_serve(Duration::from_secs(30), Duration::from_secs(600), None),
    )
    .unwrap();
    // 10 miners at 30 s: a sample every 3 s, in turn; the first round (devices, segments and
    // blocks created) is not counted.
    let mut sent = 0u64;
    let mut measuring: Option<(u64, Instant, u64)> = None;
    loop {
        if sent == 10 {
            std::thread::sleep(Duration::from_secs(2));
            let Some(before) = written() else {
                println!("  writes per day: /proc/self/io is not readable here");
                return;
            };
            measuring = Some((before, Instant::now(), sent));
        }
        if measuring.is_some_and(|(_, began, _)| began.elapsed() >= Duration::from_secs(seconds)) {
            break;
        }
        let d = sent % 10;
        let sample = Sample {
            hashrate_ghs: Some(1050.0 + (sent % 7) as f64),
            expected_hashrate_ghs: Some(1071.0),
            power_watts: Some(18.2),
            asic_temp_celsius: Some(60.0),
            frequency_mhz: Some(525.0),
            core_voltage_mv: Some(1150.0),
            uptime_seconds: Some(3600 + sent),
            shares_accepted: Some(sent),
            identity: Identity {
                mac: Some(format!("F4:12:FA:00:01:{d:02X}")),
                firmware: Some("v2.15.0".into()),
                ..Identity::default()
            },
            ..Sample::default()
        };
        writer.sender.send(Record::Sample {
            device: format!("gamma-{d:02}"),
            at: std::time::SystemTime::now(),
            sample: Arc::new(sample),
        });
        sent += 1;
        std::thread::sleep(Duration::from_secs(3));
    }
    let Some((before, began, first)) = measuring else {
        return;
    };
    let elapsed = began.elapsed().as_secs_f64();
    let bytes = written().unwrap_or(before).saturating_sub(before) as f64;
    writer.finish();
    let counted = sent - first;
    let per_day = bytes / elapsed * 86_400.0;
    println!(
        "  writes per day, 10 miners at 30 s (measured over {seconds} s, {counted} samples): {:.0} MiB \
         ({:.0} bytes per sample stored)",
        per_day / 1_048_576.0,
        bytes / counted.max(1) as f64
    );
}

/// The device page's history query over each range it offers, ending at the device's last
/// sample (the median of 7 runs): a year must load about as fast as an hour, because long
/// ranges read the hourly rollups. The baseline is the hour.
fn history_timings(ledger: &Ledger, device: &bitaxe_exporter::ledger::DeviceRow) {
    let (first, last) = ledger.sample_span(device.id).unwrap().unwrap();
    let mut hour_ms = None;
    for range in Range::ALL {
        let since = range.seconds().map_or(first, |span| (last - span).max(first));
        let mut timings = Vec::new();
        let mut shown = None;
        for _ in 0..7 {
            let t = Instant::now();
            let history = ledger
                .history(device.id, since, last, default_step(since, last))
                .unwrap();
            timings.push(t.elapsed().as_secs_f64() * 1000.0);
            shown = Some(history);
        }
        timings.sort_by(f64::total_cmp);
        let median = timings[timings.len() / 2];
        let history = shown.unwrap();
        let samples: u64 = history.points.iter().map(|p| p.samples).sum();
        let baseline = *hour_ms.get_or_insert(median);
        println!(
            "  history {:>4}: {median:7.1} ms median, {:.1}× the hour ({} points from {samples} samples, {:?}){}",
            range.as_str(),
            median / baseline,
            history.points.len(),
            history.source,
            if range == Range::All {
                if median < 200.0 {
                    "; target < 200 ms: target met"
                } else {
                    "; target < 200 ms: OVER TARGET"
                }
            } else {
                ""
            }
        );
    }
}

/// The same number of rows through one prepared INSERT into a table shaped like the
/// ledger's samples, 1,000 rows per transaction, WAL; returns the seconds it took.
fn bare_ingest(path: &std::path::Path, devices: u64, per_device: u64, interval: u64) -> f64 {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE samples (device_id INTEGER NOT NULL, t REAL NOT NULL, segment_id INTEGER NOT NULL,
           dt REAL NOT NULL, hashrate_ghs REAL, expected_ghs REAL, power_w REAL, asic_temp_c REAL,
           vr_temp_c REAL, frequency_mhz REAL, core_voltage_mv REAL, core_voltage_measured_mv REAL,
           input_voltage_v REAL, input_current_a REAL, fan_percent REAL, fan_rpm REAL,
           shares_accepted INTEGER, shares_rejected INTEGER, error_percent REAL, uptime_s INTEGER,
           best_difficulty REAL, PRIMARY KEY (device_id, t)) WITHOUT ROWID;",
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let began = Instant::now();
    let mut pending = 0;
    let mut tx = conn.transaction().unwrap();
    for i in 0..per_device {
        let t = (1_760_000_000 + i * interval) as f64;
        for d in 0..devices {
            tx.prepare_cached(
                "INSERT INTO samples VALUES (?1, ?2, 1, 30, ?3, 1071, ?4, ?5, ?6, 525, 1150, 1147, 5.1, 3.5, 70, 4900,
                 ?7, 0, 0.2, ?7, 4.2e9)",
            )
            .unwrap()
            .execute(rusqlite::params![
                d as i64,
                t,
                1050.0 + 40.0 * rng.f64(),
                18.0 + 0.2 * rng.f64(),
                58.0 + 4.0 * rng.f64(),
                50.0 + 3.0 * rng.f64(),
                i as i64
            ])
            .unwrap();
            pending += 1;
            if pending == 1000 {
                tx.commit().unwrap();
                tx = conn.transaction().unwrap();
                pending = 0;
            }
        }
    }
    tx.commit().unwrap();
    began.elapsed().as_secs_f64()
}
