//! Writes that never strand a miner, against simulated miners that misbehave the way real
//! ones do (a temperature held above the threshold, a PATCH refused, answered 500 but
//! applied, a read-back that lags, a pause ignored, a reboot in the middle): protection
//! that retries and falls back, keeps its cool-down across restarts and never goes below
//! the lowest listed setting; a stop during a protective write still recorded; `tune`'s
//! writes verified by two reads and its restore never trusting one. And every write path
//! (`session start --apply`, a `tune` step and its restore, `tune restore`, a protective
//! step down) on each firmware family's rules: a restart per write where the firmware runs
//! settings only from boot (upstream before v2.2, Lucky), none where it applies them live
//! (NerdQAxe, upstream from v2.2), the frequency always a JSON integer, and the chips
//! really running the target afterwards.

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

/// A Gamma for quick sweeps (simulated time 30× faster), a config with a 0.2-s sample
/// interval, and the `tune` command on it.
struct QuickSweep {
    sims: SimFleet,
    dir: tempfile::TempDir,
}

impl QuickSweep {
    async fn start(seed: u64) -> QuickSweep {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, seed);
        spec.time_scale = 30.0;
        Self::start_with(spec).await
    }

    async fn start_with(spec: MinerSpec) -> QuickSweep {
        let sims = SimFleet::start(&[spec], None).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let devices = vec![("miner".to_string(), sims.addresses()[0])];
        let yaml = crate::support::config_yaml(&devices, 1.0, "127.0.0.1:0", &dir.path().join("ledger.db"))
            + "tune:\n  sample_interval: 0.2\n  confidence_percent: 1\n";
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        QuickSweep { sims, dir }
    }

    fn tune(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(crate::support::BIN)
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .args(["tune", "--device", "miner", "--format", "json"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn clock(&self) -> (f64, f64) {
        let (f, v, _) = self.sims.clock_and_temperature(0).unwrap();
        (f, v)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_never_trusts_one_read_of_a_miner_whose_reads_lag() {
    // Reads show the settings from before a PATCH for 4 s after it. Stopped just after the
    // step's write, the sweep must write the original back, not believe a lagging read
    // that already shows it.
    let bench = QuickSweep::start(510).await;
    bench.sims.set_quirks(
        0,
        Quirks {
            readback_lag: Some(Duration::from_secs(4)),
            ..Quirks::default()
        },
    );
    let original = bench.clock();
    let child = bench.tune(&["--freq", "600", "--voltage", "1200", "--warmup", "1", "--dwell", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bench.clock() == original {
        assert!(Instant::now() < deadline, "the sweep never wrote");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = tokio::task::spawn_blocking(move || crate::support::wait_exit(child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(bench.clock(), original, "the miner runs its original settings again");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_answered_with_an_error_but_applied_is_read_back_and_counts() {
    // Every PATCH answers 500 and is applied: the steps run, the best is left on, exit 0.
    let bench = QuickSweep::start(511).await;
    bench.sims.set_quirks(
        0,
        Quirks {
            patch_error_applies: true,
            ..Quirks::default()
        },
    );
    let child = bench.tune(&[
        "--freq",
        "550..600",
        "--voltage",
        "1200",
        "--warmup",
        "0.02",
        "--dwell",
        "0.03",
        "--max-dwell",
        "0.13",
    ]);
    let output = tokio::task::spawn_blocking(move || crate::support::wait_exit(child, Duration::from_secs(60)))
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let outcomes: Vec<String> = json["devices"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["outcome"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(outcomes, ["healthy", "healthy"], "{json:#}");
    assert_eq!(json["devices"][0]["status"], "finished", "{json:#}");
    let left = (
        json["devices"][0]["final_frequency_mhz"].as_f64().unwrap(),
        json["devices"][0]["final_core_voltage_mv"].as_f64().unwrap(),
    );
    assert_eq!(bench.clock(), left, "what the report says is what the miner runs");
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stop_while_a_step_waits_for_a_rebooting_miner_ends_within_the_stop_timeout() {
    // A v2.0 Max restarts to run each step's settings; this one stays down. SIGTERM while
    // the step waits for it: the wait ends at once, the restore tries for its 70 s, and
    // `tune` exits inside systemd's 90 s saying what to run — not after 120 s of waiting
    // for the step plus the restore.
    let mut max = MinerSpec::new(Board::Max, Dialect::V2_0, 512);
    max.time_scale = 30.0;
    let bench = QuickSweep::start_with(max).await;
    let original = bench.clock();
    let child = bench.tune(&["--freq", "450", "--voltage", "1400", "--warmup", "1", "--dwell", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while bench.sims.restarts(0) == 0 {
        assert!(Instant::now() < deadline, "the sweep never restarted the miner");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its restart never ends (as far as the sweep can tell).
    bench.sims.set_fault(0, Fault::Offline);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let signalled_at = Instant::now();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let output = tokio::task::spawn_blocking(move || crate::support::wait_exit(child, Duration::from_secs(90)))
        .await
        .unwrap();
    let took = signalled_at.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(90), "tune took {took:?} to stop");
    assert!(stderr.contains("tune restore --device miner"), "{stderr}");
    // Back on the network: `tune restore` puts it right.
    bench.sims.set_fault(0, Fault::None);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restored = std::process::Command::new(crate::support::BIN)
        .arg("--config")
        .arg(bench.dir.path().join("config.yaml"))
        .args(["tune", "restore", "--device", "miner"])
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(bench.clock(), original);
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miner_of_an_unknown_firmware_family_is_monitored_but_never_written_to() {
    // An Ultra whose build calls itself "esp-miner-dev" and sends no axeOSVersion (as
    // before v2.9): nothing says whose write rules apply.
    let mut spec = MinerSpec::new(Board::Ultra, Dialect::V2_4, 530);
    spec.firmware_version = Some("esp-miner-dev".into());
    spec.frequency_mhz = Some(525.0);
    spec.core_voltage_mv = Some(1200);
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    let device = vec![("odd".to_string(), sims.addresses()[0])];
    let exporter = InProcess::start_with(&device, 1.0, "safety:\n  protective_action: step_down\n").await;
    let seen = exporter
        .wait_for(Duration::from_secs(10), "the miner polled", |e| {
            e.up("odd") == Some(1.0)
        })
        .await;
    let family = seen.find("bitaxe_info", &[("device", "odd")]);
    assert_eq!(family.first().and_then(|s| s.label("firmware_family")), Some("unknown"));
    let refused = |output: &std::process::Output| {
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("firmware family is unknown") && stderr.contains("--assume-family"),
            "{stderr}"
        );
    };
    refused(&exporter.cli(&["tune", "--device", "odd", "--freq", "500", "--voltage", "1150"]));
    refused(&exporter.cli(&["session", "start", "--device", "odd", "--freq", "500", "--apply"]));
    // Said in so many words, the sweep can be planned.
    let planned = exporter.cli(&[
        "tune",
        "--device",
        "odd",
        "--freq",
        "550",
        "--voltage",
        "1150",
        "--dry-run",
        "--assume-family",
        "esp-miner",
    ]);
    assert!(planned.status.success(), "{}", String::from_utf8_lossy(&planned.stderr));
    // Vouched for as a NerdQAxe, its rules are the NerdQAxe's: whole MHz only, refused when
    // planned (its version names no release to read a rule from), not at the first step.
    let fraction = exporter.cli(&[
        "tune",
        "--device",
        "odd",
        "--freq",
        "512.5",
        "--voltage",
        "1150",
        "--dry-run",
        "--assume-family",
        "nerdqaxe",
    ]);
    let stderr = String::from_utf8_lossy(&fraction.stderr);
    assert_eq!(fraction.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("whole MHz"), "{stderr}");
    // Hot, and protection configured: it says so once and sends nothing.
    sims.set_quirks(
        0,
        Quirks {
            hold_asic_celsius: Some(75.0),
            ..Quirks::default()
        },
    );
    let failed = exporter
        .wait_for(Duration::from_secs(20), "the refused protective action", |e| {
            actions(e, "odd", "step_down", "failed") >= 1.0
        })
        .await;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let later = exporter.metrics().await;
    assert_eq!(
        actions(&later, "odd", "step_down", "failed"),
        actions(&failed, "odd", "step_down", "failed"),
        "not retried while it stays hot"
    );
    assert_eq!(sims.writes(0), 0, "nothing was written to the miner");
    assert_eq!(
        sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)),
        Some((525.0, 1200.0))
    );
    sims.shutdown().await;
}

/// The PATCH bodies a miner received after the first `skip`, as JSON.
fn patches_since(sims: &SimFleet, skip: usize) -> Vec<serde_json::Value> {
    sims.patch_bodies(0)
        .iter()
        .skip(skip)
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

/// Each PATCH that set a frequency sent it as a JSON integer (the NerdQAxe fork ignores
/// `600.0` without a word).
fn assert_integer_frequencies(patches: &[serde_json::Value]) {
    assert!(!patches.is_empty(), "no PATCH was sent");
    for patch in patches {
        if let Some(frequency) = patch.get("frequency") {
            assert!(frequency.is_u64(), "frequency sent as {frequency}: {patch}");
        }
        if let Some(voltage) = patch.get("coreVoltage") {
            assert!(voltage.is_u64(), "coreVoltage sent as {voltage}: {patch}");
        }
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// One simulated miner ("miner"), a ledger `serve` made for it, and `serve` itself only
/// while protection is wanted (a sweep run beside it would take its samples from it).
struct FamilyBench {
    sims: SimFleet,
    exporter: InProcess,
}

impl FamilyBench {
    /// `tune_yaml`: extra keys of the `tune:` section (each indented two spaces).
    async fn start(spec: MinerSpec, tune_yaml: &str) -> FamilyBench {
        let sims = SimFleet::start(&[spec], None).await.unwrap();
        let device = vec![("miner".to_string(), sims.addresses()[0])];
        let mut exporter = InProcess::start_with(
            &device,
            1.0,
            &format!(
                "safety:\n  protective_action: step_down\ntune:\n  sample_interval: 0.2\n  confidence_percent: 1\n{tune_yaml}"
            ),
        )
        .await;
        exporter
            .wait_for(Duration::from_secs(15), "the miner polled", |e| {
                e.up("miner") == Some(1.0)
            })
            .await;
        exporter.stop().await;
        FamilyBench { sims, exporter }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.exporter.cli(args)
    }

    /// `tune --device miner --format json …`, running.
    fn tune(&self, args: &[&str]) -> std::process::Child {
        std::process::Command::new(crate::support::BIN)
            .arg("--config")
            .arg(self.exporter.config_path())
            .args(["tune", "--device", "miner", "--format", "json"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn clock(&self) -> (f64, f64) {
        let (f, v, _) = self.sims.clock_and_temperature(0).unwrap();
        (f, v)
    }
}

/// What one family's test writes: `session start --apply` to `session`, then a one-pair
/// `tune` of `step` (restored to `session`), the same step interrupted by SIGKILL and put
/// right by `tune restore`, and a protective step down from `session` while held hot.
struct FamilyWrites {
    spec: MinerSpec,
    session: (f64, f64),
    step: (f64, f64),
    /// Restarts each write takes: 1 where the firmware runs settings only from boot.
    restarts_per_write: u64,
    /// Extra keys for the config's `tune:` section.
    tune_yaml: &'static str,
}

async fn every_write_path_follows_the_family_rules(case: FamilyWrites) {
    let FamilyWrites {
        spec,
        session,
        step,
        restarts_per_write,
        tune_yaml,
    } = case;
    let board = spec.board.spec();
    let (listed_frequencies, _) = spec.board.options();
    let bench = FamilyBench::start(spec, tune_yaml).await;
    let sims = &bench.sims;
    let text = |(f, v): (f64, f64)| (f.to_string(), v.to_string());

    // 1. session start --apply.
    let (f, v) = text(session);
    let started = bench.run(&[
        "session",
        "start",
        "--device",
        "miner",
        "--freq",
        &f,
        "--voltage",
        &v,
        "--apply",
    ]);
    assert!(started.status.success(), "{}", stderr_of(&started));
    assert!(
        String::from_utf8_lossy(&started.stdout).contains("(applied to the miner)"),
        "{}",
        stderr_of(&started)
    );
    assert_eq!(bench.clock(), session, "the chips run what the session says");
    assert_eq!(sims.restarts(0), restarts_per_write, "session start");
    assert_eq!(sims.stored_clock(0), None, "nothing left waiting for a boot");
    assert_integer_frequencies(&patches_since(sims, 0));
    let ended = bench.run(&["session", "end", "--device", "miner"]);
    assert!(ended.status.success(), "{}", stderr_of(&ended));

    // 2. A one-pair tune, then back to the session's settings: two writes.
    let (patched, restarted) = (sims.patch_bodies(0).len(), sims.restarts(0));
    let (f, v) = text(step);
    let child = bench.tune(&[
        "--freq",
        &f,
        "--voltage",
        &v,
        "--warmup",
        "0.02",
        "--dwell",
        "0.03",
        "--max-dwell",
        "0.13",
        "--then",
        "original",
    ]);
    let output = tokio::task::spawn_blocking(move || crate::support::wait_exit(child, Duration::from_secs(120)))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["devices"][0]["status"], "finished", "{json:#}");
    let steps = json["devices"][0]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{json:#}");
    // The step was measured on the step's clock, not on the one the miner had before.
    let measured = steps[0]["result"]["mean_hashrate_ghs"].as_f64().unwrap();
    let theory = step.0 * f64::from(board.small_cores) * f64::from(board.chips) / 1000.0;
    assert!(
        (measured / theory - 1.0).abs() < 0.05,
        "measured {measured} GH/s, {theory} GH/s at {} MHz: {json:#}",
        step.0
    );
    assert_eq!(bench.clock(), session, "restored");
    let tune_patches = patches_since(sims, patched);
    assert_eq!(tune_patches.len(), 2, "the step and the restore: {tune_patches:?}");
    assert_integer_frequencies(&tune_patches);
    assert_eq!(sims.restarts(0) - restarted, 2 * restarts_per_write, "tune");

    // 3. The same step, the sweep killed on it; `tune restore` puts the session's settings back.
    let child = bench.tune(&["--freq", &f, "--voltage", &v, "--warmup", "1", "--dwell", "1"]);
    let _guard = crate::support::KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while bench.clock() != step {
        assert!(Instant::now() < deadline, "the sweep never ran its step");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(_guard);
    let (patched, restarted) = (sims.patch_bodies(0).len(), sims.restarts(0));
    let restored = bench.run(&["tune", "restore", "--device", "miner"]);
    assert!(restored.status.success(), "{}", stderr_of(&restored));
    assert_eq!(bench.clock(), session, "tune restore");
    assert_eq!(sims.restarts(0) - restarted, restarts_per_write, "tune restore");
    assert_integer_frequencies(&patches_since(sims, patched));

    // 4. A protective step down while the miner reads hot.
    let (patched, restarted) = (sims.patch_bodies(0).len(), sims.restarts(0));
    sims.set_quirks(
        0,
        Quirks {
            hold_asic_celsius: Some(75.0),
            ..Quirks::default()
        },
    );
    let FamilyBench { sims, mut exporter } = bench;
    let sims = &sims;
    exporter.restart().await;
    exporter
        .wait_for(Duration::from_secs(40), "the protective step down", |e| {
            actions(e, "miner", "step_down", "applied") == 1.0
        })
        .await;
    let (stepped_f, stepped_v, _) = sims.clock_and_temperature(0).unwrap();
    assert!(
        stepped_f < session.0 && stepped_v <= session.1,
        "one step below {session:?}: {stepped_f} MHz / {stepped_v} mV"
    );
    assert!(
        listed_frequencies.contains(&stepped_f),
        "a listed frequency: {stepped_f}"
    );
    assert_eq!(sims.restarts(0) - restarted, restarts_per_write, "protective step down");
    assert_eq!(sims.stored_clock(0), None);
    assert_integer_frequencies(&patches_since(sims, patched));
    exporter.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nerdqaxe_takes_every_write_live_and_only_as_integers() {
    // Its v1.0.37 is no upstream "before v2.2": no write restarts it, and its PATCH handler
    // ignores a frequency that is not a JSON integer (so a write of `590.0` would never hold).
    let mut spec = MinerSpec::new(Board::NerdQAxePlusPlus, Dialect::NerdQaxe, 540);
    spec.time_scale = 30.0;
    every_write_path_follows_the_family_rules(FamilyWrites {
        spec,
        session: (575.0, 1140.0),
        step: (590.0, 1150.0),
        restarts_per_write: 0,
        // Its body names the PSU rating (maxPower) but not the supply voltage, and no
        // board table knows it: a sweep needs the power limit said.
        tune_yaml: "  max_power_watts: 100\n",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn firmware_before_2_2_is_restarted_once_for_every_write_and_runs_it() {
    // v2.0 stores a setting, reads it back at once, and runs it only from the next boot:
    // a write that skipped the restart would read back fine and leave the old clock on.
    let mut spec = MinerSpec::new(Board::Max, Dialect::V2_0, 541);
    spec.time_scale = 30.0;
    every_write_path_follows_the_family_rules(FamilyWrites {
        spec,
        session: (450.0, 1400.0),
        step: (475.0, 1400.0),
        restarts_per_write: 1,
        tune_yaml: "",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lucky_miner_is_restarted_once_and_then_runs_the_setting() {
    let mut spec = MinerSpec::new(Board::LuckyLV07, Dialect::Lucky, 542);
    spec.time_scale = 30.0;
    let bench = FamilyBench::start(spec, "").await;
    let started = bench.run(&[
        "session",
        "start",
        "--device",
        "miner",
        "--freq",
        "525",
        "--voltage",
        "1250",
        "--apply",
    ]);
    assert!(started.status.success(), "{}", stderr_of(&started));
    assert_eq!(bench.clock(), (525.0, 1250.0), "the chips run it after the restart");
    assert_eq!(bench.sims.restarts(0), 1);
    assert_eq!(bench.sims.stored_clock(0), None);
    assert_integer_frequencies(&patches_since(&bench.sims, 0));
    bench.sims.shutdown().await;
}
