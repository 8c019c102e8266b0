//! Issue 7's defects, each shown as a user would meet it: an export pointed at the ledger,
//! a ledger deleted under the daemon, two daemons on one file, an absurd sample, a clock
//! that steps back, a slow shutdown, SIGHUP, a closed or full stdout, offsets in times, a
//! mistyped `database_path`, and a ledger the user cannot write.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bitaxe_exporter::ledger::writer::{Record, Writer};
use bitaxe_exporter::ledger::{Ledger, SCHEMA_VERSION};
use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{MinerSpec, SimFleet};

use crate::ledger::{at, query, rules, write_all, S, T0};
use crate::support::{Exporter, InProcess, BIN};

/// A ledger with one device and 40 samples (30-s polls, 10 min of warm-up), plus a
/// config.yaml that points at it.
fn ledger_with_config() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    let records = (0..40)
        .map(|i| ("gamma", f64::from(i) * 30.0, S::new(525.0, 1150.0)))
        .collect();
    write_all(&database, 10.0, records);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"gamma\"\n    ip: \"192.168.1.10\"\nlogging:\n  database_path: \"metrics.db\"\n",
    )
    .unwrap();
    (dir, database, config)
}

fn cli(config: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn sample_count(database: &Path) -> i64 {
    crate::support::sql(database)
        .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn export_refuses_the_ledger_its_companions_and_the_config_and_writes_atomically() {
    let (dir, database, config) = ledger_with_config();
    let before = std::fs::read(&database).unwrap();
    // The same file under other names: a symlink and a hard link.
    let symlink = dir.path().join("metrics.csv");
    std::os::unix::fs::symlink(&database, &symlink).unwrap();
    let hard_link = dir.path().join("backup.csv");
    std::fs::hard_link(&database, &hard_link).unwrap();
    // A -wal file as a reader of a live ledger sees it.
    let wal = dir.path().join("metrics.db-wal");
    std::fs::write(&wal, b"").unwrap();
    // The journal and the shared-memory file SQLite would take for its own, though they
    // do not exist yet.
    let journal = dir.path().join("metrics.db-journal");
    let shm = dir.path().join("metrics.db-shm");
    for target in [&database, &symlink, &hard_link, &wal, &config, &journal, &shm] {
        let output = cli(
            &config,
            &[
                "analyze",
                "export",
                "--format",
                "csv",
                "--output",
                target.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(2), "{target:?}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("refusing to write the export"),
            "{}",
            stderr(&output)
        );
    }
    std::fs::remove_file(&wal).unwrap();
    assert_eq!(std::fs::read(&database).unwrap(), before, "the ledger changed");
    assert!(std::fs::read_to_string(&config).unwrap().contains("database_path"));
    assert_eq!(sample_count(&database), 40);

    // A real export lands in place, and replaces an older one whole.
    let out = dir.path().join("samples.csv");
    std::fs::write(&out, "old export\n").unwrap();
    let output = cli(
        &config,
        &[
            "analyze",
            "export",
            "--format",
            "csv",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("time,unix_time_s,device"), "{text}");
    assert_eq!(text.lines().count(), 41);
    // No temporary file is left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".bitaxe-export"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn one_absurd_sample_does_not_wipe_a_segments_statistics_and_a_broken_aggregate_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    let mut absurd = S::new(525.0, 1150.0);
    absurd.hashrate = 1e200;
    absurd.power = 1e300;
    let records = (0..50)
        .map(|i| {
            let s = if i == 35 { absurd.clone() } else { S::new(525.0, 1150.0) };
            ("gamma", f64::from(i) * 30.0, s)
        })
        .collect();
    write_all(&database, 10.0, records);
    let rows = query(&database, 10.0, None, None);
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    // Samples at 600 s and later are steady: 30 of them, one without a usable hashrate.
    assert_eq!(row.steady_samples, 30, "{row:?}");
    let mean = row.mean_hashrate_ghs.unwrap();
    assert!((mean - 1000.0).abs() < 1e-6, "mean hashrate {mean}");
    let jth = row.joules_per_terahash.unwrap();
    assert!((jth - 18.0).abs() < 1e-6, "J/TH {jth}");

    // A file written by a build that stored `null` sums: the aggregate is rebuilt from the
    // samples, not read as empty.
    let good = query(&database, 10.0, None, None);
    {
        crate::support::sql(&database)
            .execute("UPDATE segments SET steady = '{\"samples\":30,\"seconds\":null}'", [])
            .unwrap();
    }
    let rebuilt = query(&database, 10.0, None, None);
    assert_eq!(rebuilt[0].steady_samples, good[0].steady_samples);
    assert_eq!(rebuilt[0].mean_hashrate_ghs, good[0].mean_hashrate_ghs);
    assert_eq!(rebuilt[0].joules_per_terahash, good[0].joules_per_terahash);
}

#[test]
fn a_clock_that_steps_back_starts_a_new_segment_and_small_steps_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    let writer = Writer::start(&database, rules(1.0)).unwrap();
    let send = |t: f64| {
        writer.sender.send_wait(Record::Sample {
            device: "gamma".into(),
            at: at(t),
            sample: S::new(525.0, 1150.0).sample(),
        })
    };
    for i in 0..20 {
        send(3600.0 + f64::from(i) * 30.0);
    }
    // The clock steps back one hour: every following sample is older than the last one.
    for i in 0..20 {
        send(f64::from(i) * 30.0);
    }
    // Then a small step back (10 s): that one sample is dropped, counted, not silent.
    send(19.0 * 30.0 - 10.0);
    send(20.0 * 30.0);
    let stats = writer.stats.clone();
    writer.finish();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.samples_written.load(Relaxed), 41);
    assert_eq!(stats.clock_behind.load(Relaxed), 1);
    assert_eq!(stats.backlog(), 0, "the backlog must not keep the dropped sample");
    assert_eq!(sample_count(&database), 41);
    let ledger = crate::support::sql(&database);
    let reasons: Vec<String> = ledger
        .prepare("SELECT reason FROM segments ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(reasons, ["first", "clock_step"]);
    // A restarted writer continues the segment written last, not the one that starts last.
    drop(ledger);
    write_all(&database, 1.0, vec![("gamma", 21.0 * 30.0, S::new(525.0, 1150.0))]);
    assert_eq!(sample_count(&database), 42);
    let _ = T0;
}

async fn simulated_gamma() -> SimFleet {
    SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 7)], None)
        .await
        .unwrap()
}

fn gamma(sims: &SimFleet) -> Vec<(String, std::net::SocketAddr)> {
    vec![("gamma".to_string(), sims.addresses()[0])]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_deleted_under_serve_is_noticed_counted_and_recreated() {
    let sims = simulated_gamma().await;
    let exporter = InProcess::start(&gamma(&sims), 1.0).await;
    exporter
        .wait_for(Duration::from_secs(15), "samples in the ledger", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= 2.0
        })
        .await;
    let database = exporter.database_path();
    for file in bitaxe_exporter::ledger::ledger_files(&database) {
        let _ = std::fs::remove_file(file);
    }
    exporter
        .wait_for(Duration::from_secs(15), "the ledger reopened", |e| {
            e.value("bitaxe_ledger_reopened_total", &[]) == Some(1.0)
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    // The recreated file may be read between its creation and its schema: no table yet is
    // no samples yet.
    let samples_now = |path: &Path| {
        crate::support::sql(path)
            .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap_or(0)
    };
    while !(database.is_file() && samples_now(&database) >= 2) {
        assert!(Instant::now() < deadline, "no samples in the recreated ledger");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The new file is locked too: a second daemon is still refused.
    let output = Command::new(BIN)
        .arg("--config")
        .arg(exporter.config_path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));

    // Replaced rather than deleted (a restore from backup moved over it): noticed too, and
    // the daemon writes on into the file now at the path.
    let backup = database.with_extension("restored");
    crate::support::sql(&database)
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    let in_backup = sample_count(&backup);
    std::fs::rename(&backup, &database).unwrap();
    exporter
        .wait_for(Duration::from_secs(15), "the replaced ledger reopened", |e| {
            e.value("bitaxe_ledger_reopened_total", &[]) == Some(2.0)
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while sample_count(&database) < in_backup + 2 {
        assert!(Instant::now() < deadline, "no new samples in the replacing ledger");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_ledger_exits_2_naming_the_first() {
    let sims = simulated_gamma().await;
    let exporter = Exporter::start(&gamma(&sims), 1.0);
    exporter
        .wait_for(Duration::from_secs(15), "the ledger", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= 1.0
        })
        .await;
    // The same config: refused before it binds the (same) port, naming the holder.
    let output = Command::new(BIN)
        .arg("--config")
        .arg(exporter.config_path())
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains(&format!("pid {}", exporter.pid())), "{message}");
    assert!(message.contains("one daemon per ledger"), "{message}");
    // Other names for the same file (a symlink, a hard link), even with the pid file
    // deleted: the lock is on the file itself.
    let _ = std::fs::remove_file(bitaxe_exporter::ledger::DaemonLock::lock_path(
        &exporter.database_path(),
    ));
    let other = tempfile::tempdir().unwrap();
    let symlink = other.path().join("alias.db");
    std::os::unix::fs::symlink(exporter.database_path(), &symlink).unwrap();
    let hard_link = exporter.dir.path().join("hard.db");
    std::fs::hard_link(exporter.database_path(), &hard_link).unwrap();
    for alias in [&symlink, &hard_link] {
        let config = other.path().join("config.yaml");
        let yaml = crate::support::config_yaml(&gamma(&sims), 1.0, "127.0.0.1:0", alias);
        std::fs::write(&config, yaml).unwrap();
        let output = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{alias:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("one daemon per ledger"), "{}", stderr(&output));
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_takes_under_5_s_with_a_locked_ledger_and_sighup_stops_gracefully() {
    let sims = simulated_gamma().await;
    let mut exporter = Exporter::start(&gamma(&sims), 1.0);
    exporter
        .wait_for(Duration::from_secs(15), "samples in the ledger", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= 1.0
        })
        .await;
    // Another process holds the write lock: the writer fails, backs off, retries.
    let holder = rusqlite::Connection::open(exporter.database_path()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    exporter
        .wait_for(Duration::from_secs(15), "a failed commit", |e| {
            e.value("bitaxe_ledger_write_errors_total", &[]).unwrap_or(0.0) >= 2.0
        })
        .await;
    let (status, took) = exporter.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(5),
        "shutdown took {took:?} with a locked ledger"
    );
    drop(holder);

    // SIGHUP (the ssh session that started it ended) stops it as gracefully: exit 0, and
    // the batch in memory reaches the file.
    let mut exporter = Exporter::start(&gamma(&sims), 1.0);
    exporter
        .wait_for(Duration::from_secs(15), "a poll", |e| e.up("gamma") == Some(1.0))
        .await;
    let counted = exporter
        .wait_for(Duration::from_secs(15), "two polls", |e| {
            e.value("bitaxe_exporter_polls_total", &[]).unwrap_or(0.0) >= 2.0
        })
        .await;
    let polled = successful_polls(&counted);
    let (status, took) = exporter.signal("HUP", Duration::from_secs(20));
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // Every poll that succeeded before the signal is a stored sample.
    let stored = sample_count(&exporter.database_path());
    assert!(stored as f64 >= polled, "{stored} samples stored of {polled} polls");
    sims.shutdown().await;
}

/// Polls that produced a sample: every poll counted less the failed ones (a timeout on a
/// loaded machine stores nothing, rightly).
fn successful_polls(exposition: &crate::support::Exposition) -> f64 {
    exposition.value("bitaxe_exporter_polls_total", &[]).unwrap_or(0.0) - exposition.poll_errors()
}

/// A pipe whose reader is already gone, as `… | head` leaves it.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

fn dev_full() -> Stdio {
    Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap())
}

fn run_with_stdout(config: &Path, args: &[&str], stdout: Stdio) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    let (_dir, database, config) = ledger_with_config();
    for args in [
        &["check-config"][..],
        &["session", "start", "--device", "gamma", "--notes", "x"],
        &["session", "end", "--device", "gamma"],
        &["session", "list"],
        &["analyze", "compare-configs"],
        &["analyze", "export", "--format", "json"],
    ] {
        let output = run_with_stdout(&config, args, closed_pipe());
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?} into a closed pipe: {}",
            stderr(&output)
        );
    }
    let output = run_with_stdout(&config, &["session", "start", "--device", "gamma"], dev_full());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cannot write to standard output"),
        "{}",
        stderr(&output)
    );
    // The session was committed before the output failed, and is there.
    let output = cli(&config, &["session", "list", "--format", "json"]);
    let sessions: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 2);
    let output = run_with_stdout(&config, &["check-config"], dev_full());
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let _ = database;
}

#[test]
fn times_with_numeric_offsets_are_accepted() {
    let (_dir, _database, config) = ledger_with_config();
    // T0 + 600 s, written in +05:00.
    let since = bitaxe_exporter::time::format(T0 as f64 + 600.0);
    let local = since.replace('Z', "");
    let shifted = humantime_shift(&local, 5);
    let output = cli(
        &config,
        &[
            "analyze",
            "export",
            "--format",
            "csv",
            "--since",
            &format!("{shifted}+05:00"),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1 + 20);
}

/// `2026-…T10:00:00` → the same wall time `hours` later (to write a time in a +hours zone).
fn humantime_shift(local: &str, hours: u64) -> String {
    let t = bitaxe_exporter::time::parse(local, std::time::SystemTime::now()).unwrap();
    bitaxe_exporter::time::format(t + hours as f64 * 3600.0).replace('Z', "")
}

#[test]
fn only_serve_creates_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"gamma\"\n    ip: \"192.168.1.10\"\nlogging:\n  database_path: \"typo/metrics.db\"\n",
    )
    .unwrap();
    for args in [
        &["session", "start", "--device", "gamma"][..],
        &["session", "end", "--device", "gamma"],
        &["session", "list"],
        &["analyze", "compare-configs"],
    ] {
        let output = cli(&config, args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("no ledger at"), "{}", stderr(&output));
    }
    assert!(!dir.path().join("typo").exists(), "a folder was created");
}

#[test]
fn a_ledger_the_user_cannot_write_can_still_be_analysed() {
    let (dir, database, config) = ledger_with_config();
    let as_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    mode(&database, 0o444);
    mode(&config, 0o444);
    mode(dir.path(), 0o555);
    let run = |args: &[&str]| -> Output {
        let mut command = if as_root {
            // Root ignores permissions: run as `nobody`, for whom the files are read-only.
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
            c
        } else {
            Command::new(BIN)
        };
        command.arg("--config").arg(&config).args(args).output().unwrap()
    };
    for args in [
        &["analyze", "compare-configs"][..],
        &["analyze", "optimize", "--metric", "efficiency"],
        &["analyze", "export", "--format", "csv"],
        &["session", "list"],
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let output = run(&["analyze", "compare-configs", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(rows[0]["samples"], 40, "{rows}");
    mode(dir.path(), 0o755);
    let ledger = Ledger::open_read_only(&database).unwrap();
    assert_eq!(ledger.schema_version().unwrap(), SCHEMA_VERSION);
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_refuses_targets_outside_the_chips_window_unless_forced() {
    // A v2.15 Gamma lists its options in /api/system/asic; a v2.4 Ultra has no such endpoint.
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Gamma, Dialect::V2_15, 1),
            MinerSpec::new(Board::Ultra, Dialect::V2_4, 2),
        ],
        None,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    drop(Ledger::open(&database).unwrap());
    let config = dir.path().join("config.yaml");
    let devices = vec![
        ("gamma".to_string(), sims.addresses()[0]),
        ("ultra".to_string(), sims.addresses()[1]),
    ];
    std::fs::write(
        &config,
        crate::support::config_yaml(&devices, 5.0, "127.0.0.1:0", &database),
    )
    .unwrap();
    let voltage_of = |address: std::net::SocketAddr| async move {
        let body = reqwest::get(format!("http://{address}/api/system/info"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
        (
            info["frequency"].as_f64().unwrap(),
            info["coreVoltage"].as_f64().unwrap(),
        )
    };
    let gamma_before = voltage_of(sims.addresses()[0]).await;
    let ultra_before = voltage_of(sims.addresses()[1]).await;

    // A 12000 mV typo for 1200: refused before anything is sent, with the window and why.
    let output = cli(
        &config,
        &["session", "start", "--device", "gamma", "--voltage", "12000", "--apply"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("core voltage 12000 mV is outside 900–1350 mV"),
        "{message}"
    );
    assert!(
        message.contains("option lists") && message.contains("--force"),
        "{message}"
    );
    // An older firmware without option lists: the chip's documented window.
    let output = cli(
        &config,
        &["session", "start", "--device", "ultra", "--freq", "5000", "--apply"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("BM1366"), "{}", stderr(&output));
    // A fraction of a MHz to firmware that stores whole MHz (before v2.10): it would cut it
    // and run something else than the session records, so nothing is sent.
    let output = cli(
        &config,
        &["session", "start", "--device", "ultra", "--freq", "487.5", "--apply"],
    );
    assert!(!output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("takes whole MHz only") && stderr(&output).contains("487 or 488 MHz"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sims.writes(1), 0, "a PATCH went out to the Ultra");
    assert_eq!(
        voltage_of(sims.addresses()[0]).await,
        gamma_before,
        "the Gamma was changed"
    );
    assert_eq!(
        voltage_of(sims.addresses()[1]).await,
        ultra_before,
        "the Ultra was changed"
    );
    let listed = cli(&config, &["session", "list", "--format", "json"]);
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout).trim(),
        "[]",
        "a refused apply recorded a session"
    );

    // An overclock inside the window is applied and read back.
    let output = cli(
        &config,
        &[
            "session",
            "start",
            "--device",
            "gamma",
            "--freq",
            "700",
            "--voltage",
            "1300",
            "--apply",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(voltage_of(sims.addresses()[0]).await, (700.0, 1300.0));
    assert!(cli(&config, &["session", "end", "--device", "gamma"]).status.success());
    // Past the window, --force sends it (and says so in the log).
    let output = cli(
        &config,
        &[
            "session",
            "start",
            "--device",
            "gamma",
            "--voltage",
            "1400",
            "--apply",
            "--force",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("--force"), "{}", stderr(&output));
    assert_eq!(voltage_of(sims.addresses()[0]).await.1, 1400.0);
    sims.shutdown().await;
}

/// An `/api/system/info` body no real miner sends: absurd values and control characters.
const HOSTILE_BODY: &str = r#"{"hashRate": 1e200, "power": 1e300, "temp": 1e9, "vrTemp": 55,
 "voltage": 1e12, "current": 1000, "errorPercentage": 10000, "wifiRSSI": -1e300,
 "frequency": 0, "coreVoltage": 1200, "expectedHashrate": 1100, "uptimeSeconds": 100,
 "sharesAccepted": 5, "sharesRejected": 0, "bestDiff": 1e300,
 "ASICModel": "BM1370\u001b[2J\u001b]0;owned\u0007", "hostname": "evil\r\nhost",
 "version": "v2.15.0\nFAKE 2026-01-01T00:00:00Z ERROR forged line", "boardVersion": "601",
 "macAddr": "AA:BB:CC:DD:EE:FF"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn implausible_values_are_absent_counted_and_control_characters_escaped() {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{HOSTILE_BODY}",
        HOSTILE_BODY.len()
    );
    let (address, _requests) = crate::support::raw_server(response.into_bytes()).await;
    let miner: std::net::SocketAddr = format!("{}:{}", address.host, address.port).parse().unwrap();
    let exporter = Exporter::start_logging(&[("evil".to_string(), miner)], 1.0, "info");
    let exposition = exporter
        .wait_for(Duration::from_secs(15), "a poll", |e| e.up("evil") == Some(1.0))
        .await;
    let text = &exposition.text;
    for absent in [
        "bitaxe_hashrate_hashes_per_second",
        "bitaxe_power_watts",
        "bitaxe_asic_temperature_celsius",
        "bitaxe_input_voltage_volts",
        "bitaxe_asic_error_ratio",
        "bitaxe_wifi_rssi",
        "bitaxe_efficiency_joules_per_terahash",
    ] {
        assert!(
            !text.lines().any(|l| l.starts_with(absent)),
            "{absent} exported from an implausible reading:\n{text}"
        );
    }
    for field in [
        "hashrate_ghs",
        "power_watts",
        "asic_temperature_celsius",
        "input_voltage_volts",
        "error_percent",
    ] {
        let counted = exposition.value(
            "bitaxe_implausible_readings_total",
            &[("device", "evil"), ("field", field)],
        );
        assert!(counted.is_some_and(|n| n >= 1.0), "{field} not counted:\n{text}");
    }
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(value.is_finite(), "{line}");
    }
    assert!(
        !text.contains("frequency_mhz=\"\""),
        "an empty frequency label:\n{text}"
    );
    assert!(text.contains("frequency_mhz=\"unknown\""), "{text}");
    // The VR temperature was plausible and stays.
    assert_eq!(
        exposition.value("bitaxe_vr_temperature_celsius", &[("device", "evil")]),
        Some(55.0)
    );
    // No raw control character anywhere in the exposition (they are escaped at decode).
    assert!(
        !text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'),
        "{text:?}"
    );
    assert!(text.contains("FAKE"), "the firmware string is shown, escaped:\n{text}");
    // …and none in the log: the forged line never starts a line of its own. The fleet
    // summary (logged a few seconds after start) is in it.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !exporter.log().contains("fleet: ") {
        assert!(
            Instant::now() < deadline,
            "no fleet summary logged:\n{}",
            exporter.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = exporter.log();
    assert!(!log.lines().any(|l| l.starts_with("FAKE")), "a forged log line:\n{log}");
    assert!(
        !log.contains('\u{1b}') && !log.contains('\r'),
        "control characters in the log: {log:?}"
    );
    // The fleet summary does not print a 300-digit number.
    assert!(!log.lines().any(|l| l.len() > 400), "{log}");
    let database = exporter.database_path();
    let hashrate = crate::support::stored_samples(&database)[0].hashrate_ghs;
    let firmware: String = crate::support::sql(&database)
        .query_row("SELECT firmware FROM devices LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(hashrate, None, "an implausible hashrate was stored");
    assert!(!firmware.contains('\n') && firmware.contains("\\n"), "{firmware:?}");
}

#[test]
fn two_miners_claiming_one_mac_stay_apart_and_a_flapping_mac_makes_no_devices() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    let mut records = Vec::new();
    let mut flapping = S::new(525.0, 1150.0);
    for i in 0..20 {
        let t = f64::from(i) * 30.0;
        // Two configured miners answer with the same MAC.
        records.push(("shelf-a", t, S::new(525.0, 1150.0)));
        records.push(("shelf-b", t + 1.0, S::new(490.0, 1100.0)));
        // A third reports a different MAC at every poll.
        flapping.mac = Some(["AA:00:00:00:00:01", "AA:00:00:00:00:02", "AA:00:00:00:00:03"][i as usize % 3]);
        records.push(("flappy", t + 2.0, flapping.clone()));
    }
    let writer = Writer::start(&database, rules(1.0)).unwrap();
    let stats = writer.stats.clone();
    for (device, t, s) in records {
        writer.sender.send(Record::Sample {
            device: device.into(),
            at: at(t),
            sample: s.sample(),
        });
    }
    writer.finish();
    // Counted (bitaxe_ledger_mac_conflicts_total): shelf-b at every poll, flappy at most of its.
    let conflicts = stats.mac_conflicts.load(std::sync::atomic::Ordering::Relaxed);
    assert!(conflicts >= 20, "{conflicts} MAC conflicts counted");
    let ledger = crate::support::sql(&database);
    let per_device: Vec<(String, i64)> = ledger
        .prepare("SELECT d.name, coalesce((SELECT sum(b.samples) FROM sample_blocks b WHERE b.device_id = d.id), 0) FROM devices d ORDER BY d.name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        per_device,
        [
            ("flappy".to_string(), 20),
            ("shelf-a".to_string(), 20),
            ("shelf-b".to_string(), 20)
        ],
        "devices merged or multiplied"
    );
    // shelf-b's segments do not flap with shelf-a's configuration.
    let segments: i64 = ledger
        .query_row("SELECT count(*) FROM segments", [], |r| r.get(0))
        .unwrap();
    assert_eq!(segments, 3);
}

#[test]
fn configs_that_are_not_regular_files_or_are_huge_or_deeply_nested_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let zero = dir.path().join("zero.yaml");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let huge = dir.path().join("huge.yaml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let nested = dir.path().join("nested.yaml");
    std::fs::write(
        &nested,
        format!("devices: {}{}\n", "[".repeat(64 * 1024), "]".repeat(64 * 1024)),
    )
    .unwrap();
    for (path, expected) in [
        (&fifo, "not a regular file"),
        (&zero, "not a regular file"),
        (&huge, "larger than 1024 KiB"),
        (&nested, "nested more than 32 levels"),
    ] {
        let started = Instant::now();
        let output = cli(path, &["check-config"]);
        assert_eq!(output.status.code(), Some(2), "{path:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(expected), "{path:?}: {}", stderr(&output));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path:?} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn errors_say_their_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    std::fs::write(&database, vec![b'x'; 8192]).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"a\"\n    ip: \"192.168.1.10\"\nlogging:\n  database_path: \"metrics.db\"\n",
    )
    .unwrap();
    let output = cli(&config, &["analyze", "compare-configs"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert_eq!(message.matches("not a database").count(), 1, "{message}");
}

#[test]
fn simulate_with_base_port_0_uses_ephemeral_ports() {
    let mut child = Command::new(BIN)
        .args(["simulate", "--miners", "3", "--base-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first_line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // "simulating 3 miner(s) on 127.0.0.1:PORT .. port LAST"
    let last: u16 = first_line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(last > 1024, "{first_line}");
}

/// Samples for `records` through a writer that knows the configured names.
fn write_configured(database: &Path, configured: &[&str], records: Vec<(&str, f64, S)>) {
    let names = configured.iter().map(|n| n.to_string()).collect();
    let writer = Writer::start_for(database, rules(1.0), names).unwrap();
    for (device, t, s) in records {
        writer.sender.send_wait(Record::Sample {
            device: device.into(),
            at: at(t),
            sample: s.sample(),
        });
    }
    writer.finish();
}

fn devices_and_samples(database: &Path) -> Vec<(String, Option<String>, i64)> {
    crate::support::sql(database)
        .prepare("SELECT d.name, d.mac, coalesce((SELECT sum(b.samples) FROM sample_blocks b WHERE b.device_id = d.id), 0) FROM devices d ORDER BY d.name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_mac_bound_to_a_configured_name_is_not_taken_by_another_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    let mac = "AA:BB:CC:00:00:01";
    let history = (0..10)
        .map(|i| ("unit-a", f64::from(i) * 30.0, S::new(525.0, 1150.0)))
        .collect();
    write_configured(&database, &["unit-a"], history);
    // A restart with a second miner that claims the same MAC, while unit-a is silent.
    let mut b = S::new(490.0, 1100.0);
    b.mac = Some(mac);
    let later = (0..5)
        .map(|i| ("unit-b", 600.0 + f64::from(i) * 30.0, b.clone()))
        .collect();
    write_configured(&database, &["unit-a", "unit-b"], later);
    assert_eq!(
        devices_and_samples(&database),
        [
            ("unit-a".to_string(), Some(mac.to_string()), 10),
            ("unit-b".to_string(), None, 5),
        ],
        "unit-a's history moved"
    );
}

#[test]
fn a_flapping_mac_makes_no_devices_across_restarts_and_a_swapped_unit_is_believed_after_three_polls() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    write_configured(&database, &["flappy"], vec![("flappy", 0.0, S::new(525.0, 1150.0))]);
    // Four restarts, each first poll with a MAC never seen before.
    for (run, mac) in [
        "AA:00:00:00:00:11",
        "AA:00:00:00:00:12",
        "AA:00:00:00:00:13",
        "AA:00:00:00:00:14",
    ]
    .into_iter()
    .enumerate()
    {
        let mut s = S::new(525.0, 1150.0);
        s.mac = Some(mac);
        write_configured(&database, &["flappy"], vec![("flappy", 30.0 * (run as f64 + 1.0), s)]);
    }
    let devices = devices_and_samples(&database);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].2, 5);

    // A unit swapped for another: the new MAC, seen three polls in a row, is a new device;
    // the old history keeps a name that says which miner it was.
    let mut swapped = S::new(525.0, 1150.0);
    swapped.mac = Some("AA:00:00:00:00:99");
    let polls = (0..6)
        .map(|i| ("flappy", 300.0 + f64::from(i) * 30.0, swapped.clone()))
        .collect();
    write_configured(&database, &["flappy"], polls);
    let devices = devices_and_samples(&database);
    assert_eq!(devices.len(), 2, "{devices:?}");
    let new = devices.iter().find(|d| d.0 == "flappy").unwrap();
    assert_eq!(new.1.as_deref(), Some("AA:00:00:00:00:99"));
    assert!(devices.iter().any(|d| d.0.starts_with("flappy (")), "{devices:?}");
}

/// Any raw control character a terminal would act on.
fn has_control(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n' && c != '\t')
}

#[test]
fn miner_strings_in_the_ledger_reach_no_terminal_raw() {
    // Strings written by an older version, or by hand, before the decoder escaped them.
    let (_dir, database, config) = ledger_with_config();
    let started = cli(
        &config,
        &["session", "start", "--device", "gamma", "--notes", "a\u{1b}[2Jb"],
    );
    assert!(started.status.success(), "{}", stderr(&started));
    let db = crate::support::sql(&database);
    db.execute_batch(
        "UPDATE devices SET asic_model = 'BM1370\u{1b}]0;owned\u{7}', firmware = 'v2.15\rFAKE', hostname = 'x\u{1b}[31m';
         INSERT INTO events (device_id, t, kind, detail)
             SELECT device_id, started_at, 'firmware_changed', 'v2.14 -> v2.15'||char(13)||'FAKE'||char(27)||'[2J'
             FROM sessions WHERE id = 1;",
    )
    .unwrap();
    drop(db);
    for args in [
        &["session", "show", "1"][..],
        &["session", "list"][..],
        &["session", "show", "1", "--format", "json"][..],
        &["analyze", "compare-configs"][..],
        &["analyze", "optimize", "--metric", "efficiency"][..],
    ] {
        let output = cli(&config, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(!has_control(&shown), "{args:?} printed a control character: {shown:?}");
        assert!(!has_control(&stderr(&output)), "{args:?}: {:?}", stderr(&output));
    }
    let shown = String::from_utf8_lossy(&cli(&config, &["session", "show", "1"]).stdout).into_owned();
    assert!(shown.contains("FAKE"), "the event is shown, escaped: {shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miners_refusal_is_shown_without_its_control_characters() {
    let body = "bad value\u{1b}[2J\r\nFAKE 2026-01-01 ERROR forged\u{7}";
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (address, _requests) = crate::support::raw_server(response.into_bytes()).await;
    let (_dir, _database, config) = ledger_with_config();
    std::fs::write(
        &config,
        format!(
            "devices:\n  - name: \"gamma\"\n    ip: \"{}:{}\"\nlogging:\n  database_path: \"metrics.db\"\n",
            address.host, address.port
        ),
    )
    .unwrap();
    let output = tokio::task::spawn_blocking(move || {
        cli(
            &config,
            // The miner answers nothing but its refusal, so its family cannot be read: the
            // user vouches for it.
            &[
                "session",
                "start",
                "--device",
                "gamma",
                "--freq",
                "500",
                "--apply",
                "--force",
                "--assume-family",
                "esp-miner",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(
        message.contains("bad value"),
        "the miner's answer is quoted: {message:?}"
    );
    assert!(!has_control(&message), "{message:?}");
    assert!(
        !message.lines().any(|l| l.starts_with("FAKE")),
        "a forged line: {message:?}"
    );
}

#[test]
fn a_ledger_that_cannot_open_stops_serve_before_it_claims_to_poll() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-folder"), "x").unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"a\"\n    ip: \"192.0.2.1\"\nserver:\n  listen: \"127.0.0.1:0\"\nlogging:\n  database_path: \"not-a-folder/metrics.db\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let output = cli(&config, &["serve"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(
        message.contains("not-a-folder"),
        "the ledger's path is named: {message}"
    );
    assert!(
        !message.contains("polling"),
        "claimed to poll before failing: {message}"
    );
    assert!(!message.contains("HTTP"), "blamed on HTTP: {message}");
}

/// A small tmpfs mounted for one test (root only: CI and this project's machines run the
/// suite as root), unmounted when dropped.
struct SmallFilesystem {
    mountpoint: tempfile::TempDir,
}

impl SmallFilesystem {
    /// `None` (the test says it is skipped) where this user may not mount: the suite as
    /// CI runs it (root) always mounts.
    fn mount(size: &str) -> Option<SmallFilesystem> {
        let mountpoint = tempfile::tempdir().unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mountpoint.path())
            .output()
            .unwrap();
        if !output.status.success() {
            let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
            assert!(
                !root,
                "root cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            eprintln!("SKIPPED: mounting a small filesystem needs root (./test.sh as root runs this test)");
            return None;
        }
        Some(SmallFilesystem { mountpoint })
    }

    fn path(&self) -> &Path {
        self.mountpoint.path()
    }

    fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(self.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_loses_no_sample_and_the_ledger_catches_up_when_space_returns() {
    let Some(disk) = SmallFilesystem::mount("8m") else {
        return;
    };
    let sims = SimFleet::start(
        &(0..4)
            .map(|i| MinerSpec::new(Board::Gamma, Dialect::V2_15, 40 + i))
            .collect::<Vec<_>>(),
        None,
    )
    .await
    .unwrap();
    let devices: Vec<(String, std::net::SocketAddr)> = sims
        .addresses()
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("g{i}"), *a))
        .collect();
    let mut exporter = Exporter::start_in(tempfile::tempdir_in(disk.path()).unwrap(), &devices, 1.0);
    let counter = |e: &crate::support::Exposition, name: &str| e.value(name, &[]).unwrap_or(0.0);
    exporter
        .wait_for(Duration::from_secs(15), "samples in the ledger", |e| {
            counter(e, "bitaxe_ledger_samples_written_total") >= 8.0
        })
        .await;
    // Fill the filesystem to the last byte.
    let filler = disk.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let full = exporter
        .wait_for(Duration::from_secs(30), "commits failing on the full disk", |e| {
            counter(e, "bitaxe_ledger_write_errors_total") >= 2.0
        })
        .await;
    assert!(
        counter(&full, "bitaxe_ledger_backlog_records") >= 1.0,
        "no records waiting:\n{}",
        full.text
    );
    // Space returns: everything kept in memory is written, nothing was dropped.
    std::fs::remove_file(&filler).unwrap();
    let caught_up = exporter
        .wait_for(Duration::from_secs(45), "the backlog written", |e| {
            counter(e, "bitaxe_ledger_backlog_records") == 0.0
                && counter(e, "bitaxe_ledger_samples_written_total")
                    > counter(&full, "bitaxe_ledger_samples_written_total")
        })
        .await;
    assert_eq!(counter(&caught_up, "bitaxe_ledger_dropped_records_total"), 0.0);
    let polled = successful_polls(&caught_up);
    let (status, _) = exporter.terminate(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    let stored = sample_count(&exporter.database_path());
    assert!(stored as f64 >= polled, "{stored} samples stored of {polled} polls");
    sims.shutdown().await;
    drop(exporter);
    drop(disk);
}

#[test]
fn a_ledger_on_a_read_only_filesystem_can_be_analysed() {
    let Some(disk) = SmallFilesystem::mount("16m") else {
        return;
    };
    let (_source, database, _config) = ledger_with_config();
    let copy = disk.path().join("metrics.db");
    std::fs::copy(&database, &copy).unwrap();
    let config = disk.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: \"gamma\"\n    ip: \"192.168.1.10\"\nlogging:\n  database_path: \"metrics.db\"\n",
    )
    .unwrap();
    let session = cli(&config, &["session", "start", "--device", "gamma", "--notes", "before"]);
    assert!(session.status.success(), "{}", stderr(&session));
    disk.remount("ro");
    for args in [
        &["analyze", "compare-configs"][..],
        &["analyze", "optimize", "--metric", "efficiency"][..],
        &["analyze", "export", "--format", "csv"][..],
        &["session", "list"][..],
        &["session", "show", "1"][..],
    ] {
        let output = cli(&config, args);
        assert!(
            output.status.success(),
            "{args:?} on a read-only filesystem: {}",
            stderr(&output)
        );
        assert!(!output.stdout.is_empty(), "{args:?} printed nothing");
    }
    let table = String::from_utf8_lossy(&cli(&config, &["analyze", "compare-configs"]).stdout).into_owned();
    assert!(table.contains("525"), "{table}");
    // Writing is refused with a clear error, and nothing is lost.
    let output = cli(&config, &["session", "end", "--device", "gamma"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot be written"), "{}", stderr(&output));
    disk.remount("rw");
    let listed = String::from_utf8_lossy(&cli(&config, &["session", "list"]).stdout).into_owned();
    assert!(
        listed.contains("open") && listed.contains("before"),
        "the session was lost: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_refused_by_the_daemon_lock_leaves_the_hourly_rollups_alone() {
    let sims = simulated_gamma().await;
    let mut exporter = InProcess::start(&gamma(&sims), 1.0).await;
    exporter
        .wait_for(Duration::from_secs(15), "samples in the ledger", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= 3.0
        })
        .await;
    // A second writer (a `tune` beside `serve`) is refused: it must not have rebuilt the
    // rollups from the samples while the daemon still holds their sums in memory.
    let database = exporter.database_path();
    let refused = Writer::start(
        &database,
        bitaxe_exporter::ledger::writer::SegmentRules::for_poll_interval(Duration::from_secs(1), Duration::ZERO),
    );
    assert!(refused.is_err(), "a second writer on a served ledger");
    exporter.stop().await;
    let (samples, rolled): (i64, f64) = crate::support::sql(&database)
        .query_row(
            "SELECT (SELECT coalesce(sum(samples), 0) FROM sample_blocks), (SELECT total(samples) FROM sample_hours)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rolled, samples as f64, "rollups count {rolled} samples of {samples}");
    sims.shutdown().await;
}

/// Two simulated miners for the damaged-ledger tests.
async fn two_simulated_miners() -> (SimFleet, Vec<(String, std::net::SocketAddr)>) {
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Gamma, Dialect::V2_15, 71),
            MinerSpec::new(Board::Supra, Dialect::V2_10, 72),
        ],
        None,
    )
    .await
    .unwrap();
    let devices = vec![
        ("gamma".to_string(), sims.addresses()[0]),
        ("supra".to_string(), sims.addresses()[1]),
    ];
    (sims, devices)
}

/// The `<ledger>.damaged-*` copies beside a ledger (not their `-wal` / `-shm`).
fn damaged_copies(database: &Path) -> Vec<PathBuf> {
    let name = database.file_name().unwrap().to_str().unwrap().to_string();
    let mut copies: Vec<PathBuf> = std::fs::read_dir(database.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let file = p.file_name().unwrap().to_str().unwrap();
            file.starts_with(&format!("{name}.damaged-")) && !file.ends_with("-wal") && !file.ends_with("-shm")
        })
        .collect();
    copies.sort();
    copies
}

/// `serve` started on a damaged ledger (`damaged` its exact bytes at `ledger.db` in `dir`):
/// it monitors every miner, reports the ledger unhealthy, keeps the damaged file under its
/// new name, says in its log how to recover it, and writes the samples to a fresh ledger;
/// once the copy is gone, the ledger reads healthy again.
async fn serve_survives_a_damaged_ledger(dir: tempfile::TempDir, damaged: Vec<u8>) {
    let (sims, devices) = two_simulated_miners().await;
    let database = dir.path().join("ledger.db");
    let exporter = Exporter::start_in(dir, &devices, 1.0);
    assert_eq!(exporter.database_path(), database);
    let seen = exporter
        .wait_for(Duration::from_secs(20), "both miners up", |e| {
            e.up("gamma") == Some(1.0) && e.up("supra") == Some(1.0)
        })
        .await;
    assert_eq!(
        seen.value("bitaxe_ledger_healthy", &[]),
        Some(0.0),
        "a damaged ledger was moved aside:\n{}",
        seen.text
    );
    let copies = damaged_copies(&database);
    assert_eq!(copies.len(), 1, "one damaged copy kept: {copies:?}");
    assert_eq!(
        std::fs::read(&copies[0]).unwrap(),
        damaged,
        "the damaged file is kept as it was"
    );
    let log = exporter.log();
    let copy_name = copies[0].display().to_string();
    assert!(
        log.contains("ERROR") && log.contains(&format!("moved it aside to {copy_name}")),
        "the log names the moved-aside file at ERROR:\n{log}"
    );
    assert!(
        log.contains(&format!("sqlite3 '{copy_name}' .recover | sqlite3 recovered.db")),
        "the log says how to recover it:\n{log}"
    );
    // The fresh ledger receives the samples.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(database.is_file() && sample_count(&database) >= 4) {
        assert!(Instant::now() < deadline, "no samples in the fresh ledger");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let check: String = crate::support::sql(&database)
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    // The operator has recovered it and moves it out of the way: healthy again.
    std::fs::rename(&copies[0], copies[0].with_extension("recovered-by-operator")).unwrap();
    exporter
        .wait_for(Duration::from_secs(10), "the ledger healthy again", |e| {
            e.value("bitaxe_ledger_healthy", &[]) == Some(1.0)
        })
        .await;
    drop(exporter);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_a_ledger_of_garbage_moves_it_aside_and_monitors() {
    let dir = tempfile::tempdir().unwrap();
    // Not a database at all: what a botched copy or a disk error leaves.
    let garbage: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("ledger.db"), &garbage).unwrap();
    serve_survives_a_damaged_ledger(dir, garbage).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_on_a_ledger_with_a_corrupt_page_moves_it_aside_and_monitors() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.db");
    // A real ledger of some pages (the writer closes it: no -wal left).
    let records = (0..3000)
        .map(|i| ("gamma", f64::from(i) * 30.0, S::new(525.0 + f64::from(i / 500), 1150.0)))
        .collect();
    write_all(&database, 10.0, records);
    let mut bytes = std::fs::read(&database).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages >= 20, "{pages} pages");
    // Garbage over a page in the middle, as a bad sector or a stray write leaves it.
    let middle = pages / 2 * page;
    for (i, byte) in bytes[middle..middle + page].iter_mut().enumerate() {
        *byte = (i as u32).wrapping_mul(2_654_435_761).rotate_right(7) as u8;
    }
    std::fs::write(&database, &bytes).unwrap();
    let check: String = rusqlite::Connection::open_with_flags(&database, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap()
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .unwrap();
    assert_ne!(check, "ok", "the damage is real");
    serve_survives_a_damaged_ledger(dir, bytes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_found_damaged_while_serving_is_moved_aside_and_polling_goes_on() {
    let (sims, devices) = two_simulated_miners().await;
    let exporter = Exporter::start_logging(&devices, 1.0, "warn");
    let database = exporter.database_path();
    exporter
        .wait_for(Duration::from_secs(20), "samples in the ledger", |e| {
            e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= 4.0
                && e.value("bitaxe_ledger_healthy", &[]) == Some(1.0)
        })
        .await;
    // Garbage put at the path while serve runs (a botched restore): the writer opens it,
    // SQLite says "file is not a database".
    let garbage: Vec<u8> = (0..32 * 1024u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    let staged = database.with_extension("incoming");
    std::fs::write(&staged, &garbage).unwrap();
    std::fs::rename(&staged, &database).unwrap();
    let unhealthy = exporter
        .wait_for(Duration::from_secs(20), "the damage reported", |e| {
            e.value("bitaxe_ledger_healthy", &[]) == Some(0.0)
        })
        .await;
    let written = unhealthy
        .value("bitaxe_ledger_samples_written_total", &[])
        .unwrap_or(0.0);
    let copies = damaged_copies(&database);
    assert_eq!(copies.len(), 1, "{copies:?}");
    assert_eq!(std::fs::read(&copies[0]).unwrap(), garbage);
    // Polling, /metrics and the ledger go on, in a fresh file.
    exporter
        .wait_for(Duration::from_secs(20), "samples written again", |e| {
            e.up("gamma") == Some(1.0)
                && e.up("supra") == Some(1.0)
                && e.value("bitaxe_ledger_samples_written_total", &[]).unwrap_or(0.0) >= written + 4.0
        })
        .await;
    assert!(sample_count(&database) >= 4, "the fresh ledger holds the new samples");
    let log = exporter.log();
    assert!(
        log.contains("ERROR") && log.contains(&format!("moved it aside to {}", copies[0].display())),
        "{log}"
    );
    drop(exporter);
    sims.shutdown().await;
}

/// Root, who alone can plant a link owned by another user here.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn export_and_report_refuse_a_symlink_another_user_planted_at_the_output() {
    use std::os::unix::fs::MetadataExt as _;
    let (dir, _database, config) = ledger_with_config();
    let victim = dir.path().join("notes.txt");
    std::fs::write(&victim, "precious\n").unwrap();
    for (name, command) in [("samples.csv", "export"), ("report.html", "report")] {
        let planted = dir.path().join(name);
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        if std::os::unix::fs::lchown(&planted, Some(65534), Some(65534)).is_err() {
            assert!(!running_as_root(), "root could not give the link away");
            eprintln!("SKIPPED: not root, cannot plant a link owned by another user");
            return;
        }
        let mut args = vec!["analyze", command, "--output", planted.to_str().unwrap()];
        if command == "export" {
            args.extend(["--format", "csv"]);
        }
        let output = cli(&config, &args);
        assert_eq!(output.status.code(), Some(2), "{command}: {}", stderr(&output));
        assert!(
            stderr(&output).contains("symbolic link owned by another user"),
            "{command}: {}",
            stderr(&output)
        );
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "precious\n",
            "{command} replaced the link's target"
        );
        let link = std::fs::symlink_metadata(&planted).unwrap();
        assert!(
            link.file_type().is_symlink() && link.uid() == 65534,
            "{command} replaced the link"
        );
    }
    // A link this user made is still followed: the export lands in the file it names.
    let own = dir.path().join("latest.csv");
    let target = dir.path().join("export-1.csv");
    std::fs::write(&target, "old export\n").unwrap();
    std::os::unix::fs::symlink(&target, &own).unwrap();
    let output = cli(
        &config,
        &[
            "analyze",
            "export",
            "--format",
            "csv",
            "--output",
            own.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(std::fs::symlink_metadata(&own).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&target)
        .unwrap()
        .starts_with("time,unix_time_s,device"));
}

/// A miner reporting a subnormal hashrate (and expected hashrate, and temperature) with a
/// normal power draw: J/TH = power / hashrate would be infinite.
const SUBNORMAL_BODY: &str = r#"{"hashRate": 1e-320, "expectedHashrate": 1e-320, "power": 15.5,
 "temp": 1e-320, "vrTemp": 50, "voltage": 5000, "current": 3000, "frequency": 525,
 "coreVoltage": 1150, "uptimeSeconds": 100, "sharesAccepted": 5, "sharesRejected": 0,
 "bestDiff": "1e-320", "ASICModel": "BM1370", "version": "v2.15.0", "boardVersion": "601",
 "macAddr": "AA:BB:CC:DD:EE:01"}"#;

/// The words of `text` that are an infinity, a NaN, or a number longer than 30 characters.
fn absurd_numbers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-')))
        .filter(|word| {
            let bare = word.trim_start_matches(['+', '-']).to_ascii_lowercase();
            let numeric = word.chars().any(|c| c.is_ascii_digit())
                && word
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '+' | '-' | 'e' | 'E'));
            matches!(bare.as_str(), "inf" | "infinity" | "nan") || (numeric && word.len() > 30)
        })
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subnormal_hashrate_gives_no_infinite_or_endless_number_in_any_output() {
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{SUBNORMAL_BODY}",
        SUBNORMAL_BODY.len()
    );
    let (address, _requests) = crate::support::raw_server(response.into_bytes()).await;
    let miner: std::net::SocketAddr = format!("{}:{}", address.host, address.port).parse().unwrap();
    // No warm-up, so every sample counts in compare-configs.
    let mut exporter = Exporter::start_with(&[("tiny".to_string(), miner)], 1.0, "analysis:\n  warmup_minutes: 0\n");
    let database = exporter.database_path();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !database.exists() || sample_count(&database) < 4 {
        assert!(Instant::now() < deadline, "four samples were never stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exporter.terminate(Duration::from_secs(10));
    let config = exporter.config_path();
    let report = config.with_file_name("report.html");
    let runs: Vec<Vec<&str>> = vec![
        vec!["analyze", "export", "--format", "csv"],
        vec!["analyze", "export", "--format", "json"],
        vec!["analyze", "compare-configs", "--format", "csv"],
        vec!["analyze", "compare-configs", "--format", "json"],
        vec!["analyze", "compare-configs"],
        vec!["analyze", "optimize", "--metric", "efficiency"],
    ];
    for args in runs {
        let output = cli(&config, &args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("tiny"), "{args:?} shows no sample:\n{text}");
        let absurd = absurd_numbers(&text);
        assert!(absurd.is_empty(), "{args:?}: {absurd:?}\n{text}");
    }
    let output = cli(&config, &["analyze", "report", "--output", report.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let html = std::fs::read_to_string(&report).unwrap();
    let absurd = absurd_numbers(&html);
    assert!(absurd.is_empty(), "report: {absurd:?}");
    // The hashrate reads as 0 (not hashing), so there is no J/TH to show at all.
    let csv = String::from_utf8_lossy(&cli(&config, &["analyze", "export", "--format", "csv"]).stdout).into_owned();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(row[column("hashrate_ghs")], "0", "{csv}");
    assert_eq!(row[column("efficiency_j_per_th")], "", "{csv}");
}

#[test]
fn a_subnormal_hashrate_already_in_a_ledger_is_written_bounded_and_never_as_inf() {
    // Stored before readings this close to 0 were read as 0 (or by another writer): the
    // outputs bound what they print themselves.
    let (dir, database, config) = ledger_with_config();
    std::fs::remove_file(&database).unwrap();
    let mut tiny = S::new(525.0, 1150.0);
    tiny.hashrate = 1e-320;
    let records = (0..40).map(|i| ("gamma", f64::from(i) * 30.0, tiny.clone())).collect();
    write_all(&database, 0.0, records);
    std::fs::write(
        &config,
        "devices:\n  - name: \"gamma\"\n    ip: \"192.168.1.10\"\nlogging:\n  database_path: \"metrics.db\"\nanalysis:\n  warmup_minutes: 0\n",
    )
    .unwrap();
    for args in [
        vec!["analyze", "export", "--format", "csv"],
        vec!["analyze", "export", "--format", "json"],
        vec!["analyze", "compare-configs", "--format", "csv"],
        vec!["analyze", "compare-configs", "--format", "json"],
        vec!["analyze", "compare-configs"],
        vec!["analyze", "optimize", "--metric", "efficiency"],
    ] {
        let output = cli(&config, &args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("gamma"), "{args:?} shows no sample:\n{text}");
        let absurd = absurd_numbers(&text);
        assert!(absurd.is_empty(), "{args:?}: {absurd:?}\n{text}");
    }
    let report = dir.path().join("report.html");
    let output = cli(&config, &["analyze", "report", "--output", report.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let absurd = absurd_numbers(&std::fs::read_to_string(&report).unwrap());
    assert!(absurd.is_empty(), "report: {absurd:?}");
    // The ledger keeps readings at 0.01 GH/s: a subnormal one is stored, and exported, as 0.
    let csv = String::from_utf8_lossy(&cli(&config, &["analyze", "export", "--format", "csv"]).stdout).into_owned();
    assert_eq!(csv.lines().nth(1).unwrap().split(',').nth(6), Some("0"), "{csv}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_whose_ledger_fills_up_says_so_and_exits_non_zero_with_the_miner_restored() {
    let Some(disk) = SmallFilesystem::mount("8m") else {
        return;
    };
    let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 520);
    spec.time_scale = 30.0;
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    let original = sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)).unwrap();
    let dir = tempfile::tempdir_in(disk.path()).unwrap();
    let devices = vec![("gamma".to_string(), sims.addresses()[0])];
    let yaml = crate::support::config_yaml(&devices, 1.0, "127.0.0.1:0", &dir.path().join("ledger.db"))
        + "tune:\n  sample_interval: 0.2\n  confidence_percent: 1\n";
    std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
    // The sweep creates and holds the ledger (no serve): it stores its own samples.
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("config.yaml"))
        .args([
            "tune",
            "--device",
            "gamma",
            "--freq",
            "550",
            "--voltage",
            "1200",
            "--warmup",
            "0.05",
            "--dwell",
            "0.1",
            "--max-dwell",
            "0.2",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)) == Some(original) {
        assert!(Instant::now() < deadline, "the sweep never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The disk fills during the step's warm-up: nothing the step measures can be stored.
    let filler = disk.path().join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()))
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("tune did not finish");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(
        sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)),
        Some(original),
        "{said}"
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "a sweep that measured nothing failed: {said}"
    );
    // The step says why it measured nothing: the ledger, not too few samples.
    assert!(
        said.contains("the ledger cannot be written"),
        "the step names the ledger: {said}"
    );
    assert!(
        !said.contains("steady samples by --max-dwell"),
        "blamed on the samples: {said}"
    );
    assert!(!said.contains("does not poll it"), "blamed on serve: {said}");
    sims.shutdown().await;
}
