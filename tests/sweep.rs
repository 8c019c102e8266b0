//! `tune` against simulated miners, as a user runs it (the real binary): the optimum the
//! physics make best, every limit and every exit path leaving the miner on the settings it
//! should have (read back from the simulator), `--dry-run` sending nothing, parallel
//! devices, a crash undone by `tune restore`, `resume`, and a sweep beside `serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::{expected_ghs, operating_point, Board};
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet};
use serde_json::Value;

use crate::support::{config_yaml, sql, wait_exit, Exporter, BIN};

/// Simulated miners and a config.yaml that sweeps them quickly: a sample every 0.2 s, the
/// interval target ±1 %, and `extra` appended to the `tune:` section.
struct Bench {
    sims: SimFleet,
    dir: tempfile::TempDir,
    names: Vec<String>,
}

impl Bench {
    async fn start(specs: Vec<MinerSpec>, tune_extra: &str) -> Bench {
        let sims = SimFleet::start(&specs, None).await.unwrap();
        let names: Vec<String> = (0..specs.len()).map(|i| format!("miner-{i}")).collect();
        let devices: Vec<(String, SocketAddr)> = names.iter().cloned().zip(sims.addresses().iter().copied()).collect();
        let dir = tempfile::tempdir().unwrap();
        let yaml = config_yaml(&devices, 1.0, "127.0.0.1:0", &dir.path().join("ledger.db"))
            + &format!("tune:\n  sample_interval: 0.2\n  confidence_percent: 1\n{tune_extra}");
        std::fs::write(dir.path().join("config.yaml"), yaml).unwrap();
        Bench { sims, dir, names }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(self.config())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `tune --device miner-N … --format json` with quick steps.
    fn tune_json(&self, devices: &[usize], args: &[&str]) -> (Output, Value) {
        let mut all = vec!["tune"];
        for d in devices {
            all.extend(["--device", self.names[*d].as_str()]);
        }
        all.extend(QUICK);
        all.extend(args);
        all.extend(["--format", "json"]);
        let output = self.run(&all);
        let json = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (output, json)
    }

    fn clock(&self, index: usize) -> (f64, f64) {
        let (f, v, _) = self.sims.clock_and_temperature(index).unwrap();
        (f, v)
    }

    /// `serve` (polling every second) on this bench's folder and ledger, with `tune_yaml`
    /// as its config's `tune:` section and whatever follows it; the miners and their
    /// config entries come along.
    fn serve(self, tune_yaml: &str) -> (SimFleet, Vec<(String, SocketAddr)>, Exporter) {
        let Bench { sims, dir, names } = self;
        let devices: Vec<(String, SocketAddr)> = names.into_iter().zip(sims.addresses().iter().copied()).collect();
        let exporter = Exporter::start_in_with(dir, &devices, 1.0, tune_yaml);
        (sims, devices, exporter)
    }
}

/// The quick sweep pace of these tests, as a `tune:` section.
const QUICK_TUNE: &str = "tune:\n  sample_interval: 0.2\n  confidence_percent: 1\n";

/// Warm-up 1.2 s, at least 1.8 s of steady data, judged by 8 s at the latest.
const QUICK: [&str; 6] = ["--warmup", "0.02", "--dwell", "0.03", "--max-dwell", "0.13"];

fn gamma(seed: u64) -> MinerSpec {
    let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, seed);
    // Temperatures settle in a second or two instead of a minute.
    spec.time_scale = 30.0;
    spec
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn steps(json: &Value, device: usize) -> Vec<Value> {
    json["devices"][device]["steps"].as_array().cloned().unwrap_or_default()
}

fn left_on(json: &Value, device: usize) -> (f64, f64) {
    let d = &json["devices"][device];
    (
        d["final_frequency_mhz"].as_f64().unwrap_or(f64::NAN),
        d["final_core_voltage_mv"].as_f64().unwrap_or(f64::NAN),
    )
}

/// The simulator's physics for a Gamma: (hashrate GH/s, J/TH, healthy by the sweep's own
/// rules: ≥ 94 % of expected and ≤ 3 % ASIC errors).
fn physics(frequency: f64, voltage: f64) -> (f64, f64, bool) {
    let spec = Board::Gamma.spec();
    let op = operating_point(&spec, frequency, voltage);
    let hashrate = expected_ghs(&spec, frequency) * op.hashrate_factor;
    let watts = op.core_watts + spec.overhead_watts;
    let healthy = op.hashrate_factor >= 0.94 && op.error_percent <= 3.0;
    (hashrate, watts / hashrate * 1000.0, healthy)
}

#[tokio::test(flavor = "multi_thread")]
async fn grid_and_climb_find_the_physics_optimum_and_reject_an_error_prone_undervolt() {
    let bench = Bench::start(vec![gamma(1), gamma(2)], "").await;
    let frequencies = [490.0, 525.0, 550.0];
    let voltages = [1100.0, 1150.0, 1200.0];
    let pairs: Vec<(f64, f64)> = frequencies
        .iter()
        .flat_map(|f| voltages.iter().map(move |v| (*f, *v)))
        .collect();
    let healthy: Vec<(f64, f64)> = pairs.iter().copied().filter(|(f, v)| physics(*f, *v).2).collect();
    let by_efficiency = healthy
        .iter()
        .copied()
        .min_by(|a, b| physics(a.0, a.1).1.total_cmp(&physics(b.0, b.1).1))
        .unwrap();
    let most_hashrate = healthy.iter().map(|(f, v)| physics(*f, *v).0).fold(0.0, f64::max);
    // The undervolt the physics make look best on J/TH while throwing errors.
    let (tempting, _) = pairs
        .iter()
        .map(|(f, v)| ((*f, *v), physics(*f, *v)))
        .filter(|(_, (_, _, ok))| !ok)
        .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
        .unwrap();
    assert!(physics(tempting.0, tempting.1).1 < physics(by_efficiency.0, by_efficiency.1).1);

    // Both sweeps at once on two miners of one ledger would need one run; run them one
    // after the other on two miners, the grid first.
    let plot = bench.dir.path().join("grid.svg");
    let plot_arg = plot.to_str().unwrap().to_string();
    let (output, grid) = bench.tune_json(
        &[0],
        &[
            "--plan",
            "grid",
            "--freq",
            "490..550",
            "--voltage",
            "1100..1200",
            "--plot",
            &plot_arg,
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let grid_steps = steps(&grid, 0);
    assert_eq!(grid_steps.len(), 9, "every pair of the grid: {grid:#}");
    assert_eq!(left_on(&grid, 0), by_efficiency, "{}", text(&output));
    assert_eq!(bench.clock(0), by_efficiency, "the miner runs what the sweep reports");
    // v2.15 applies settings live: one PATCH per step and one to leave it on the best (none
    // when the last step was the best), never a restart.
    assert_eq!(bench.sims.restarts(0), 0, "a v2.2+ sweep restarts nothing");
    let last = (550.0, 1200.0);
    assert_eq!(
        bench.sims.writes(0),
        grid_steps.len() as u64 + u64::from(by_efficiency != last),
        "{grid:#}"
    );
    let rejected = grid_steps
        .iter()
        .find(|s| s["frequency_mhz"] == tempting.0 && s["core_voltage_mv"] == tempting.1)
        .unwrap();
    assert_eq!(rejected["outcome"], "unhealthy", "{rejected:#}");
    assert!(
        rejected["reason"].as_str().unwrap().contains("ASIC errors"),
        "{rejected:#}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("miner-0: J/TH by frequency"),
        "{svg}"
    );
    assert!(svg.matches("<rect").count() >= 9, "a cell per pair");
    for step in &grid_steps {
        let result = &step["result"];
        assert!(
            result["hashrate_ci_percent"].as_f64().is_some(),
            "every result has its interval: {step:#}"
        );
        // v2.15 reports the ASIC's own error rate: that, not the share rejects, is judged.
        assert_eq!(result["error_source"], "errorPercentage", "{step:#}");
    }

    let (output, climb) = bench.tune_json(
        &[1],
        &[
            "--plan",
            "climb",
            "--metric",
            "hashrate",
            "--freq",
            "490..550",
            "--voltage",
            "1100..1200",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    let (frequency, voltage) = left_on(&climb, 0);
    let (hashrate, _, ok) = physics(frequency, voltage);
    assert!(
        ok && (hashrate - most_hashrate).abs() < 1e-6,
        "the climb chose {frequency}/{voltage}: {climb:#}"
    );
    let climbed: Vec<(f64, f64)> = steps(&climb, 0)
        .iter()
        .map(|s| {
            (
                s["frequency_mhz"].as_f64().unwrap(),
                s["core_voltage_mv"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(climbed[0], (490.0, 1100.0), "a climb starts low: {climbed:?}");
    assert!(
        climbed.len() < pairs.len(),
        "a climb does not try everything: {climbed:?}"
    );

    // Every step is a session of the run, seen by the ledger commands like any other.
    let sessions = bench.run(&["session", "list", "--format", "json"]);
    let sessions: Vec<Value> = serde_json::from_slice(&sessions.stdout).unwrap();
    assert_eq!(sessions.len(), grid_steps.len() + climbed.len());
    assert!(sessions
        .iter()
        .all(|s| s["tune_run_id"].as_i64().is_some() && s["ended_at"].as_f64().is_some()));
    let first = sessions
        .iter()
        .map(|s| s["id"].as_i64().unwrap())
        .min()
        .unwrap()
        .to_string();
    let compared = bench.run(&["analyze", "compare-configs", "--session", &first, "--format", "json"]);
    assert!(compared.status.success(), "{}", text(&compared));
    let status = bench.run(&["tune", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("finished"),
        "{}",
        text(&status)
    );
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_efficiency_plan_undervolts_at_the_held_frequency_until_the_physics_make_it_unhealthy() {
    let bench = Bench::start(vec![gamma(4)], "").await;
    let (held, _) = bench.clock(0);
    // The voltages the plan walks down (the Gamma's options from 1150 to 1000 mV), and
    // where the physics make it stop: at the first unhealthy one.
    let mut expected = Vec::new();
    for voltage in [1150.0, 1100.0, 1060.0, 1000.0] {
        expected.push(voltage);
        if !physics(held, voltage).2 {
            break;
        }
    }
    let stopped_at = *expected.last().unwrap();
    assert!(!physics(held, stopped_at).2 && expected.len() >= 3, "{expected:?}");
    let chosen = expected
        .iter()
        .copied()
        .filter(|v| physics(held, *v).2)
        .min_by(|a, b| physics(held, *a).1.total_cmp(&physics(held, *b).1))
        .unwrap();

    let (output, json) = bench.tune_json(&[0], &["--plan", "efficiency", "--voltage", "1000..1150"]);
    assert!(output.status.success(), "{}", text(&output));
    let tried = steps(&json, 0);
    let pairs: Vec<(f64, f64)> = tried
        .iter()
        .map(|s| {
            (
                s["frequency_mhz"].as_f64().unwrap(),
                s["core_voltage_mv"].as_f64().unwrap(),
            )
        })
        .collect();
    let wanted: Vec<(f64, f64)> = expected.iter().map(|v| (held, *v)).collect();
    assert_eq!(pairs, wanted, "held {held} MHz, down from 1150 mV: {json:#}");
    for step in &tried[..tried.len() - 1] {
        assert_eq!(step["outcome"], "healthy", "{step:#}");
    }
    // The first unhealthy voltage, rejected for what the physics make of it.
    let last = tried.last().unwrap();
    assert_eq!(last["outcome"], "unhealthy", "{last:#}");
    let reason = last["reason"].as_str().unwrap();
    let spec = Board::Gamma.spec();
    let op = operating_point(&spec, held, stopped_at);
    if op.hashrate_factor < 0.94 {
        assert!(reason.contains("% of expected (< 94 %)"), "{last:#}");
    }
    if op.error_percent > 3.0 {
        assert!(reason.contains("ASIC errors"), "{last:#}");
    }
    assert_eq!(left_on(&json, 0), (held, chosen), "{json:#}");
    assert_eq!(bench.clock(0), (held, chosen), "the miner runs the chosen undervolt");

    // Not a terminal: plain progress lines, each with the step, its configuration, the
    // time on it, the interval so far against the target and the temperatures against
    // their limits.
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (k, voltage) in expected.iter().enumerate() {
        let start = format!("miner-0: step {} of at most 4: {held} MHz / {voltage} mV, ", k + 1);
        let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&start)).collect();
        assert!(
            progress.iter().any(|l| {
                let (_, after) = l.split_once(" elapsed, ±").unwrap_or_default();
                after.starts_with(|c: char| c.is_ascii_digit())
                    && after.contains("% hashrate, ±")
                    && after.contains("% J/TH (target ±1 %) over ")
                    && after.contains("/65 °C, VR ")
                    && after.ends_with("/86 °C")
            }),
            "step {}: {progress:#?}\n{stderr}",
            k + 1
        );
        assert!(
            progress.iter().all(|l| l[start.len()..].starts_with("0:0")),
            "elapsed first: {progress:#?}"
        );
    }
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_sends_nothing_and_a_bad_plan_is_refused_before_any_write() {
    let bench = Bench::start(vec![gamma(3)], "").await;
    let output = bench.run(&["tune", "--device", "miner-0", "--freq", "490..600", "--dry-run"]);
    assert!(output.status.success(), "{}", text(&output));
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(plan.contains("490/1060") && plan.contains("600/1250"), "{plan}");
    assert!(plan.contains("limits: ASIC < 65 °C"), "{plan}");
    assert!(plan.contains("nothing was sent"), "{plan}");
    // Values off the miner's list, steps that cause PLL errors, an unknown device.
    for (args, says) in [
        (vec!["--freq", "500..600:50"], "not one of the miner's options"),
        (vec!["--freq", "500..600:10", "--allow-unlisted"], "PLL errors"),
        (vec!["--voltage", "1150..2500:50", "--allow-unlisted"], "window"),
    ] {
        let mut all = vec!["tune", "--device", "miner-0"];
        all.extend(args);
        let output = bench.run(&all);
        assert_eq!(output.status.code(), Some(2), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(says),
            "{}",
            text(&output)
        );
    }
    // An undervolt plan never starts above the voltage the miner runs (1150 mV).
    let output = bench.run(&["tune", "--device", "miner-0", "--plan", "efficiency", "--dry-run"]);
    let plan = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(plan.contains("525/1150 525/1100 525/1060"), "{plan}");
    assert!(!plan.contains("525/1200"), "{plan}");
    let output = bench.run(&["tune", "--device", "nobody"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(bench.sims.writes(0), 0, "not one PATCH or restart reached the miner");
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_limit_aborts_its_step_with_its_reason_and_the_miner_is_restored() {
    // One miner per limit, each with its own config (limits are config keys), all at once.
    struct Case {
        tune: &'static str,
        ambient: Option<f64>,
        /// Injected once the sweep has written its first configuration.
        fault: Option<Fault>,
        args: &'static [&'static str],
        kind: &'static str,
    }
    let cases = [
        Case {
            tune: "",
            ambient: Some(48.0),
            fault: None,
            args: &["--freq", "600", "--voltage", "1200"],
            kind: "ASIC temperature",
        },
        Case {
            tune: "  max_vr_temp: 40\n",
            ambient: None,
            fault: None,
            args: &["--freq", "550", "--voltage", "1150"],
            kind: "regulator temperature",
        },
        Case {
            tune: "  max_power_watts: 15\n",
            ambient: None,
            fault: None,
            args: &["--freq", "550", "--voltage", "1150"],
            kind: "power",
        },
        Case {
            tune: "  min_input_volts: 4.95\n",
            ambient: None,
            fault: None,
            args: &["--freq", "600", "--voltage", "1200"],
            kind: "input voltage",
        },
        Case {
            // The sweep's limit above the firmware's 75 °C trip (and within the safety
            // thresholds, which check-config makes a ceiling for it).
            tune: "  max_asic_temp: 100\nsafety:\n  max_temp_warning: 95\n  max_temp_shutdown: 100\n",
            ambient: Some(62.0),
            fault: None,
            args: &["--freq", "600", "--voltage", "1200"],
            kind: "overheat protection",
        },
        Case {
            tune: "",
            ambient: None,
            fault: None,
            args: &["--freq", "625", "--voltage", "1060"],
            kind: "no hashrate",
        },
        Case {
            tune: "",
            ambient: None,
            fault: Some(Fault::PowerFault),
            args: &["--freq", "550", "--voltage", "1150"],
            kind: "the regulator reports a fault: VIN_UV_FAULT",
        },
    ];
    let mut running = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let bench = Bench::start(vec![gamma(10 + i as u64)], case.tune).await;
        if let Some(celsius) = case.ambient {
            bench.sims.set_ambient(0, celsius);
        }
        let original = bench.clock(0);
        let mut args = vec!["tune", "--device", "miner-0", "--allow-unlisted"];
        args.extend(QUICK);
        args.extend(case.args);
        args.extend(["--format", "json"]);
        let child = bench
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        running.push((case, bench, original, child));
    }
    // A regulator that faults in the middle of the step.
    for (case, bench, original, _) in &running {
        if let Some(fault) = case.fault {
            wait_for_a_change(bench, 0, *original).await;
            bench.sims.set_fault(0, fault);
        }
    }
    for (case, bench, original, child) in running {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(output.status.success(), "{}: {}", case.kind, text(&output));
        let json: Value = serde_json::from_slice(&output.stdout).unwrap();
        let step = &steps(&json, 0)[0];
        let reason = step["reason"].as_str().unwrap_or("");
        assert!(reason.contains(case.kind), "{}: {step:#}", case.kind);
        assert_ne!(step["outcome"], "healthy", "{}: {step:#}", case.kind);
        // Nothing healthy: back on the original settings, read back from the miner.
        assert_eq!(left_on(&json, 0), original, "{}: {json:#}", case.kind);
        if case.kind != "overheat protection" {
            assert_eq!(bench.clock(0), original, "{}", case.kind);
        }
        bench.sims.shutdown().await;
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until the simulated miner runs something other than `original`.
async fn wait_for_a_change(bench: &Bench, index: usize, original: (f64, f64)) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while bench.clock(index) == original {
        assert!(Instant::now() < deadline, "the sweep never changed the miner");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_sigterm_and_sighup_restore_the_original_settings_before_exit() {
    // SIGHUP is what a sweep gets when its terminal or SSH session closes.
    for name in ["INT", "TERM", "HUP"] {
        let bench = Bench::start(vec![gamma(20)], "").await;
        let original = bench.clock(0);
        let child = bench
            .command(&[
                "tune",
                "--device",
                "miner-0",
                "--freq",
                "550..600",
                "--voltage",
                "1200",
                "--warmup",
                "1",
                "--dwell",
                "1",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_a_change(&bench, 0, original).await;
        signal(&child, name);
        let output = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(20)))
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "SIG{name}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("interrupted"),
            "{}",
            text(&output)
        );
        assert_eq!(
            bench.clock(0),
            original,
            "SIG{name} left the miner on another configuration"
        );
        let status = bench.run(&["tune", "status"]);
        assert!(
            String::from_utf8_lossy(&status.stdout).contains("miner-0: restored"),
            "{}",
            text(&status)
        );
        bench.sims.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_or_ignored_patch_a_miner_that_drops_out_and_one_that_overheats_leave_the_others_finishing() {
    // Five miners swept at once: a refused PATCH, an ignored one, a miner that drops off the
    // network, one in a hot room that breaks the temperature limit, and one that finishes.
    let bench = Bench::start(vec![gamma(30), gamma(31), gamma(32), gamma(33), gamma(34)], "").await;
    let originals: Vec<(f64, f64)> = (0..5).map(|i| bench.clock(i)).collect();
    bench.sims.set_fault(0, Fault::RefusePatch);
    bench.sims.set_fault(1, Fault::IgnorePatch);
    bench.sims.set_ambient(3, 48.0);
    let child = bench
        .command(&[
            "tune",
            "--device",
            "miner-0",
            "--device",
            "miner-1",
            "--device",
            "miner-2",
            "--device",
            "miner-3",
            "--device",
            "miner-4",
            "--max-parallel",
            "5",
            "--freq",
            "550..600",
            "--voltage",
            "1200",
            "--warmup",
            "0.02",
            "--dwell",
            "0.2",
            "--max-dwell",
            "0.3",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The third miner drops off the network in the middle of its first step and comes
    // back a few seconds later: the sweep stops for it and puts it back.
    wait_for_a_change(&bench, 2, originals[2]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    bench.sims.set_fault(2, Fault::Offline);
    tokio::time::sleep(Duration::from_secs(3)).await;
    bench.sims.set_fault(2, Fault::None);
    let output = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(120)))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let by_name = |name: &str| {
        json["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == name)
            .cloned()
            .unwrap()
    };
    let refused = by_name("miner-0");
    assert!(
        refused["steps"][0]["reason"].as_str().unwrap().contains("refused"),
        "{refused:#}"
    );
    let ignored = by_name("miner-1");
    assert!(
        ignored["steps"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the miner reports"),
        "{ignored:#}"
    );
    let dropped = by_name("miner-2");
    assert!(
        dropped["note"].as_str().unwrap().contains("stopped answering"),
        "{dropped:#}"
    );
    assert_eq!(dropped["status"], "restored", "{dropped:#}");
    let hot = by_name("miner-3");
    assert_eq!(hot["steps"][0]["outcome"], "limit", "{hot:#}");
    assert!(
        hot["steps"][0]["reason"].as_str().unwrap().contains("ASIC temperature"),
        "{hot:#}"
    );
    for (i, original) in originals.iter().enumerate().take(4) {
        assert_eq!(bench.clock(i), *original, "miner-{i}: {}", text(&output));
    }
    // The limit and the failures elsewhere did not stop the healthy miner's sweep.
    let finished = by_name("miner-4");
    assert_eq!(finished["status"], "finished", "{finished:#}");
    assert_eq!(finished["steps"].as_array().unwrap().len(), 2, "{finished:#}");
    let best = (
        finished["final_frequency_mhz"].as_f64().unwrap(),
        finished["final_core_voltage_mv"].as_f64().unwrap(),
    );
    assert!(best == (550.0, 1200.0) || best == (600.0, 1200.0), "{finished:#}");
    assert_eq!(bench.clock(4), best);
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miner_that_reboots_by_itself_mid_step_ends_its_sweep_and_is_restored() {
    let bench = Bench::start(vec![gamma(35)], "").await;
    let original = bench.clock(0);
    let child = bench
        .command(&[
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "550..600",
            "--voltage",
            "1200",
            "--warmup",
            "0.02",
            "--dwell",
            "0.2",
            "--max-dwell",
            "0.3",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_a_change(&bench, 0, original).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A brown-out or a watchdog: the miner reboots on its own (through the simulator's
    // control endpoint, as a demo would), is gone for a moment and comes back on the
    // settings it stored, its uptime starting again.
    let address = bench.sims.addresses()[0];
    let answer = reqwest::Client::new()
        .patch(format!("http://{address}/__sim"))
        .body(r#"{"reboot": 0.3}"#)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
    let output = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let tried = steps(&json, 0);
    assert_eq!(
        tried.len(),
        1,
        "the sweep of a miner that rebooted ends there: {json:#}"
    );
    assert_eq!(tried[0]["outcome"], "limit", "{json:#}");
    assert_eq!(tried[0]["reason"], "the miner restarted by itself", "{json:#}");
    let device = &json["devices"][0];
    assert_eq!(device["status"], "restored", "{json:#}");
    assert!(
        device["note"]
            .as_str()
            .unwrap()
            .contains("the miner restarted by itself"),
        "{json:#}"
    );
    assert_eq!(left_on(&json, 0), original, "{json:#}");
    assert_eq!(bench.clock(0), original, "back on the settings it ran before the sweep");
    assert_eq!(bench.sims.restarts(0), 0, "the sweep asked for no restart");
    bench.sims.shutdown().await;
}

/// Starts a sweep of 490, 525 and 550 MHz at 1200 mV and SIGKILLs it during its second step.
async fn kill_during_the_second_step(bench: &Bench) {
    let mut child = bench
        .command(&[
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "490..550",
            "--voltage",
            "1200",
            "--warmup",
            "0.02",
            "--dwell",
            "0.03",
            "--max-dwell",
            "0.13",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bench.clock(0) != (525.0, 1200.0) {
        assert!(Instant::now() < deadline, "the sweep never reached its second step");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_tune_restore_puts_the_miner_back_and_resume_finishes_the_sweep() {
    let bench = Bench::start(vec![gamma(40)], "").await;
    let original = bench.clock(0);
    kill_during_the_second_step(&bench).await;
    assert_ne!(bench.clock(0), original, "the crash left the miner on a sweep setting");
    let status = bench.run(&["tune", "status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(shown.contains("interrupted"), "{shown}");

    // A new sweep would take the crashed sweep's setting for the original: refused.
    let refused = bench.run(&["tune", "--device", "miner-0", "--freq", "490", "--voltage", "1200"]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("tune restore --device miner-0"),
        "{}",
        text(&refused)
    );
    let restored = bench.run(&["tune", "restore", "--device", "miner-0"]);
    assert!(restored.status.success(), "{}", text(&restored));
    assert_eq!(bench.clock(0), original, "{}", text(&restored));
    let again = bench.run(&["tune", "restore", "--device", "miner-0"]);
    assert_eq!(
        again.status.code(),
        Some(2),
        "nothing left to restore: {}",
        text(&again)
    );

    // The same crash again, then `resume` instead: the steps taken are not repeated.
    kill_during_the_second_step(&bench).await;
    let resumed = bench.run(&["tune", "resume", "--format", "json"]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let json: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    let tried: Vec<f64> = steps(&json, 0)
        .iter()
        .map(|s| s["frequency_mhz"].as_f64().unwrap())
        .collect();
    assert_eq!(tried, vec![490.0, 525.0, 550.0], "each pair once: {json:#}");
    assert_eq!(json["devices"][0]["status"], "finished");
    assert_eq!(bench.clock(0), left_on(&json, 0));
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sweep_beside_serve_judges_the_samples_serve_stores_and_stores_none_itself() {
    let mut spec = gamma(50);
    spec.time_scale = 30.0;
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    let devices = vec![("gamma".to_string(), sims.addresses()[0])];
    let exporter = Exporter::start_with(
        &devices,
        1.0,
        "tune:\n  sample_interval: 0.2\n  confidence_percent: 2\n",
    );
    exporter
        .wait_for(Duration::from_secs(10), "gamma up", |e| e.up("gamma") == Some(1.0))
        .await;
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(exporter.config_path())
        .args([
            "tune",
            "--device",
            "gamma",
            "--freq",
            "550",
            "--voltage",
            "1150",
            "--warmup",
            "0.02",
            "--dwell",
            "0.12",
            "--max-dwell",
            "0.3",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("keeps this ledger's samples"), "{stderr}");
    assert!(!stderr.contains("locked"), "{stderr}");
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    let step = &steps(&json, 0)[0];
    assert_eq!(step["outcome"], "healthy", "{json:#}");
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // serve polls once a second; had the sweep stored its own 5-a-second samples too, the
    // ledger would hold several times as many.
    let stored = crate::support::stored_samples(&exporter.database_path())
        .iter()
        .filter(|r| r.t >= started && r.t <= ended)
        .count() as f64;
    let seconds = ended - started;
    assert!(stored <= seconds + 2.0, "{stored} samples in {seconds:.1} s");
    sims.shutdown().await;
    drop(exporter);
}

#[tokio::test(flavor = "multi_thread")]
async fn firmware_before_2_2_restarts_to_apply_and_to_restore() {
    // v2.0 applies clock settings at boot: every step restarts the miner, and so does the
    // restore; the restart the sweep asked for is not taken for an unstable configuration.
    let mut max = MinerSpec::new(Board::Max, Dialect::V2_0, 60);
    max.time_scale = 30.0;
    // Shares often enough that a step of a few seconds has the 20 a reject rate needs.
    max.pool_difficulty = Some(10.0);
    let bench = Bench::start(vec![max], "").await;
    let original = bench.clock(0);
    let (output, json) = bench.tune_json(&[0], &["--freq", "450..475", "--voltage", "1400", "--then", "original"]);
    assert!(output.status.success(), "{}", text(&output));
    for step in steps(&json, 0) {
        assert!(
            step["outcome"] == "healthy" || step["outcome"] == "unhealthy",
            "a step the sweep restarted for was judged, not aborted: {step:#}"
        );
    }
    assert_eq!(json["devices"][0]["status"], "finished", "{json:#}");
    assert_eq!(bench.clock(0), original);
    // Two steps and the restore: a PATCH and a restart each.
    assert_eq!(bench.sims.writes(0), 6, "{json:#}");
    assert_eq!(bench.sims.restarts(0), 3, "{json:#}");
    // v2.0 has no ASIC error counter: the share reject rate stands in for it, and the
    // configurations are judged healthy on it.
    for step in steps(&json, 0) {
        assert_eq!(step["result"]["error_source"], "share reject rate", "{step:#}");
        assert!(step["result"]["error_percent"].as_f64().unwrap() < 3.0, "{step:#}");
        assert_eq!(step["outcome"], "healthy", "{step:#}");
    }
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_reports_a_sweep_a_sigkill_interrupted_and_restores_it_when_asked() {
    let bench = Bench::start(vec![gamma(42)], "").await;
    let original = bench.clock(0);
    kill_during_the_second_step(&bench).await;
    let left = bench.clock(0);
    assert_ne!(left, original, "the crash left the miner on a sweep setting");
    let quick = "tune:\n  sample_interval: 0.2\n";
    // serve, started later, says so: a metric, a warning, an event; it changes nothing.
    let (sims, devices, mut exporter) = bench.serve(quick);
    exporter
        // A killed sweep's heartbeat goes stale within 15 s; serve looks every 10 s.
        .wait_for(Duration::from_secs(45), "bitaxe_tune_interrupted", |e| {
            e.value("bitaxe_tune_interrupted", &[("device", "miner-0")]) == Some(1.0)
        })
        .await;
    // The fleet page's banner and `top`'s come from the same JSON.
    let fleet: Value = serde_json::from_str(&exporter.get("/api/v1/fleet").await.text().await.unwrap()).unwrap();
    let shown = &fleet["devices"][0]["tune_interrupted"];
    assert_eq!(shown["run"], 1, "{fleet:#}");
    assert_eq!(
        (
            shown["original_frequency_mhz"].as_f64(),
            shown["original_core_voltage_mv"].as_f64()
        ),
        (Some(original.0), Some(original.1)),
        "{fleet:#}"
    );
    let page = exporter.get("/").await.text().await.unwrap();
    assert!(
        page.contains("id=\"banners\"") && page.contains("stopped without restoring"),
        "the fleet page draws it"
    );
    let log = exporter.log();
    assert!(
        log.contains("sweep #1 was interrupted")
            && log.contains("525 MHz / 1150 mV")
            && log.contains("tune restore --device miner-0"),
        "{log}"
    );
    assert_eq!(
        sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)),
        Some(left),
        "reporting writes nothing"
    );
    exporter.terminate(Duration::from_secs(10));
    let database = exporter.database_path();
    let events: i64 = sql(&database)
        .query_row("SELECT count(*) FROM events WHERE kind = 'tune_interrupted'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(events, 1);

    // With tune.restore_interrupted, serve puts it back through the apply path; a restart
    // does not report the same sweep twice.
    let dir = exporter.take_dir();
    let restoring = format!("{quick}  restore_interrupted: true\n");
    let exporter = Exporter::start_in_with(dir, &devices, 1.0, &restoring);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)) != Some(original) {
        assert!(
            Instant::now() < deadline,
            "serve did not restore the miner: {}",
            exporter.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    exporter
        .wait_for(Duration::from_secs(10), "the banner gone", |e| {
            e.value("bitaxe_tune_interrupted", &[("device", "miner-0")]).is_none()
        })
        .await;
    let status = crate::support::cli(&exporter.config_path(), &["tune", "status"]);
    let shown = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(shown.contains("miner-0: restored"), "{shown}");
    let mut exporter = exporter;
    exporter.terminate(Duration::from_secs(10));
    let conn = sql(&exporter.database_path());
    let kinds: Vec<String> = conn
        .prepare("SELECT kind FROM events WHERE kind LIKE 'tune_%' ORDER BY t")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(kinds, ["tune_interrupted", "tune_restored"]);
    drop(exporter);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_detached_sweep_outlives_its_terminal_and_stops_on_sigterm_restoring() {
    let bench = Bench::start(vec![gamma(43)], "").await;
    let original = bench.clock(0);
    let log = bench.dir.path().join("sweep.log");
    let log_arg = log.to_string_lossy().to_string();
    let started = bench.run(&[
        "tune",
        "--device",
        "miner-0",
        "--freq",
        "490..550",
        "--voltage",
        "1200",
        "--warmup",
        "1",
        "--dwell",
        "1",
        "--detach",
        "--log-file",
        &log_arg,
    ]);
    assert!(started.status.success(), "{}", text(&started));
    let said = String::from_utf8_lossy(&started.stdout).to_string();
    assert!(
        said.contains("sweep #1 runs detached") && said.contains(&log_arg),
        "{said}"
    );
    let pid: u32 = said
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said}"));
    wait_for_a_change(&bench, 0, original).await;
    // The terminal closes: the detached sweep is not in its process group, and a SIGHUP
    // sent to it anyway is ignored.
    let hup = Command::new("kill").args(["-HUP", &pid.to_string()]).status().unwrap();
    assert!(hup.success());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "SIGHUP ended the detached sweep"
    );
    assert_ne!(bench.clock(0), original, "still sweeping");
    let term = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "the detached sweep did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(bench.clock(0), original, "SIGTERM restored the miner");
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(
        written.contains("SIGHUP ignored") && written.contains("SIGTERM"),
        "{written}"
    );
    let status = bench.run(&["tune", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("miner-0: restored"),
        "{}",
        text(&status)
    );
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_pairs_more_than_400_pairs_and_no_dwell_are_refused_or_merged_before_any_write() {
    let bench = Bench::start(vec![gamma(44)], "").await;
    let plan = |args: &[&str]| {
        let mut all = vec![
            "tune",
            "--device",
            "miner-0",
            "--dry-run",
            "--format",
            "json",
            "--allow-unlisted",
        ];
        all.extend(args);
        bench.run(&all)
    };
    // 1100, 1100.2, … 1100.8 mV are two settings once the firmware's whole millivolts
    // round them: two pairs, not five.
    let merged = plan(&["--freq", "550", "--voltage", "1100..1100.8:0.2"]);
    assert!(merged.status.success(), "{}", text(&merged));
    let json: Value = serde_json::from_slice(&merged.stdout).unwrap();
    let pairs: Vec<(f64, f64)> = json["devices"][0]["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["frequency_mhz"].as_f64().unwrap(),
                p["core_voltage_mv"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [(550.0, 1100.0), (550.0, 1101.0)], "{json:#}");
    // 401 × 26 configurations: refused with the count, not cut to 400 in silence.
    let huge = plan(&[
        "--freq",
        "400..600:0.5",
        "--voltage",
        "1000..1250:10",
        "--allow-small-steps",
    ]);
    assert_eq!(huge.status.code(), Some(2), "{}", text(&huge));
    assert!(
        String::from_utf8_lossy(&huge.stderr).contains("more than the 400"),
        "{}",
        text(&huge)
    );
    // No dwell: nothing would be measured.
    let no_dwell = bench.run(&["tune", "--device", "miner-0", "--dwell", "0"]);
    assert_eq!(no_dwell.status.code(), Some(2), "{}", text(&no_dwell));
    assert!(
        String::from_utf8_lossy(&no_dwell.stderr).contains("--dwell 0"),
        "{}",
        text(&no_dwell)
    );
    assert_eq!(bench.sims.writes(0), 0);
    bench.sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sweeps_of_one_miner_started_together_one_is_refused_before_it_writes() {
    let bench = Bench::start(vec![gamma(45)], "").await;
    let original = bench.clock(0);
    let sweep = || {
        let mut args = vec![
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "550",
            "--voltage",
            "1200",
            "--format",
            "json",
        ];
        args.extend(QUICK);
        bench
            .command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Alone with the ledger: one of them holds it and stores the samples; three started
    // together, twice over, and every time exactly one runs and the others are refused
    // (exit 2, nothing sent) — never a "database is locked" failure half-way.
    for round in 0..2 {
        bench.sims.set_clock(0, original.0, original.1);
        let writes_before = bench.sims.writes(0);
        let children = [sweep(), sweep(), sweep()];
        let outputs = tokio::task::spawn_blocking(move || children.map(|c| wait_exit(c, Duration::from_secs(60))))
            .await
            .unwrap();
        let all: String = outputs.iter().map(text).collect::<Vec<_>>().join("\n");
        let refused: Vec<&Output> = outputs.iter().filter(|o| o.status.code() == Some(2)).collect();
        let ran: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
        assert_eq!((refused.len(), ran.len()), (2, 1), "round {round}: {all}");
        assert!(!all.contains("locked"), "round {round}: {all}");
        let json: Value = serde_json::from_slice(&ran[0].stdout).unwrap();
        assert_eq!(steps(&json, 0)[0]["outcome"], "healthy", "it measured: {json:#}");
        assert_eq!(bench.clock(0), (550.0, 1200.0), "the sweep that ran left its best");
        // One step (a PATCH) and the final one: only the sweep that ran wrote.
        assert_eq!(bench.sims.writes(0) - writes_before, 2, "round {round}: {all}");
    }

    // Beside serve (which stores both sweeps' samples): the ledger's claim refuses one.
    bench.sims.set_clock(0, original.0, original.1);
    let (sims, _, exporter) = bench.serve(QUICK_TUNE);
    let command = |exporter: &Exporter| {
        let mut args = vec![
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "525",
            "--voltage",
            "1200",
            "--format",
            "json",
        ];
        args.extend(QUICK);
        Command::new(BIN)
            .arg("--config")
            .arg(exporter.config_path())
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (command(&exporter), command(&exporter));
    let outputs = tokio::task::spawn_blocking(move || {
        [
            wait_exit(first, Duration::from_secs(60)),
            wait_exit(second, Duration::from_secs(60)),
        ]
    })
    .await
    .unwrap();
    let refused: Vec<&Output> = outputs.iter().filter(|o| o.status.code() == Some(2)).collect();
    assert_eq!(refused.len(), 1, "{}\n{}", text(&outputs[0]), text(&outputs[1]));
    assert!(
        String::from_utf8_lossy(&refused[0].stderr).contains("is tuning it now"),
        "{}",
        text(refused[0])
    );
    let conn = sql(&exporter.database_path());
    let runs: i64 = conn
        .query_row("SELECT count(*) FROM tune_runs WHERE spec LIKE '%525%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(runs, 1, "the refused sweep registered nothing");
    drop(exporter);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_started_during_a_standalone_sweep_takes_the_ledger_over_and_the_sweep_goes_on() {
    let bench = Bench::start(vec![gamma(46)], "").await;
    let original = bench.clock(0);
    let child = bench
        .command(&[
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "550..600",
            "--voltage",
            "1200",
            "--warmup",
            "0.05",
            "--dwell",
            "0.25",
            "--max-dwell",
            "0.4",
            "--format",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_a_change(&bench, 0, original).await;
    // serve on the same ledger, while the sweep holds it: no "another serve", no exit 2.
    let (sims, _, exporter) = bench.serve(QUICK_TUNE);
    let database = exporter.database_path();
    exporter
        .wait_for(Duration::from_secs(20), "serve polling miner-0", |e| {
            e.up("miner-0") == Some(1.0)
        })
        .await;
    let output = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(90)))
        .await
        .unwrap();
    assert!(output.status.success(), "{}\nserve: {}", text(&output), exporter.log());
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["devices"][0]["status"], "finished", "{json:#}");
    let taken = steps(&json, 0);
    let outcomes: Vec<&str> = taken.iter().map(|s| s["outcome"].as_str().unwrap()).collect();
    assert_eq!(
        outcomes,
        ["healthy", "healthy"],
        "both steps measured across the handover: {json:#}"
    );
    assert!(exporter.log().contains("hand it over"), "{}", exporter.log());
    // serve holds the ledger now and goes on storing samples after the sweep ended.
    let count = || -> i64 {
        sql(&database)
            .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
            .unwrap()
    };
    let before = count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(count() > before, "serve stores samples after the sweep");
    drop(exporter);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_protective_step_down_during_a_sweep_ends_it_without_restoring_hotter_settings() {
    // The miner ran 600 MHz / 1200 mV; the sweep tries 550 / 1150; while it does, the
    // chip reads 75 °C and serve's protection steps it down to 525 / 1100.
    let bench = Bench::start(vec![gamma(47)], "").await;
    bench.sims.set_clock(0, 600.0, 1200.0);
    let (sims, _, exporter) = bench.serve(&format!(
        "{QUICK_TUNE}  max_asic_temp: 70\nsafety:\n  protective_action: step_down\n"
    ));
    exporter
        .wait_for(Duration::from_secs(20), "serve polling miner-0", |e| {
            e.up("miner-0") == Some(1.0)
        })
        .await;
    let child = Command::new(BIN)
        .arg("--config")
        .arg(exporter.config_path())
        .args([
            "tune",
            "--device",
            "miner-0",
            "--freq",
            "550",
            "--voltage",
            "1150",
            "--warmup",
            "0.05",
            "--dwell",
            "1",
            "--format",
            "json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)) != Some((550.0, 1150.0)) {
        assert!(Instant::now() < deadline, "the sweep never applied its step");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sims.set_quirks(
        0,
        bitaxe_exporter::sim::Quirks {
            hold_asic_celsius: Some(75.0),
            ..Default::default()
        },
    );
    let output = tokio::task::spawn_blocking(move || wait_exit(child, Duration::from_secs(60)))
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let step = &steps(&json, 0)[0];
    assert!(
        step["reason"].as_str().unwrap_or("").contains("stopped by protection"),
        "{}",
        text(&output)
    );
    assert_eq!(json["devices"][0]["status"], "stopped_by_protection", "{json:#}");
    assert_eq!(
        sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)),
        Some((525.0, 1100.0)),
        "the protection's settings stay; the hotter 600 / 1200 is not put back: {json:#}"
    );
    assert_eq!(left_on(&json, 0), (525.0, 1100.0));
    drop(exporter);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_leaves_a_device_protection_stopped_alone_and_sweeps_only_the_unfinished_one() {
    let bench = Bench::start(vec![gamma(48), gamma(49)], "").await;
    bench.sims.set_clock(0, 600.0, 1200.0);
    let (sims, _, exporter) = bench.serve(&format!(
        "{QUICK_TUNE}  max_asic_temp: 70\nsafety:\n  protective_action: step_down\n"
    ));
    exporter
        .wait_for(Duration::from_secs(20), "both polled", |e| {
            e.up("miner-0") == Some(1.0) && e.up("miner-1") == Some(1.0)
        })
        .await;
    let tune = |extra: &[&str]| {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(exporter.config_path())
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut child = tune(&[
        "tune",
        "--device",
        "miner-0",
        "--device",
        "miner-1",
        "--max-parallel",
        "2",
        "--freq",
        "490..600",
        "--voltage",
        "1150",
        "--warmup",
        "0.02",
        "--dwell",
        "0.08",
        "--max-dwell",
        "0.15",
    ])
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)) == Some((600.0, 1200.0)) {
        assert!(Instant::now() < deadline, "the sweep never wrote miner-0");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stepped = sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)).unwrap();
    // miner-0 overheats; serve's protection steps it down and its sweep ends there.
    sims.set_quirks(
        0,
        bitaxe_exporter::sim::Quirks {
            hold_asic_celsius: Some(75.0),
            ..Default::default()
        },
    );
    let status_json = || -> Value {
        let out = tune(&["tune", "status", "--format", "json"]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    };
    let device_status = |json: &Value, name: &str| -> String {
        json[0]["devices"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["device"] == name))
            .and_then(|d| d["status"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while device_status(&status_json(), "miner-0") != "stopped_by_protection" {
        assert!(
            Instant::now() < deadline,
            "miner-0 never stopped by protection: {:#}",
            status_json()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let protected = sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)).unwrap();
    assert!(protected.0 < stepped.0, "protection stepped it down: {protected:?}");
    // The sweep dies while miner-1 is still being swept; resume finishes miner-1 only.
    child.kill().unwrap();
    child.wait().unwrap();
    let resumed = tune(&["tune", "resume", "--format", "json"]).output().unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    let json: Value = serde_json::from_slice(&resumed.stdout).unwrap();
    let swept: Vec<&str> = json["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(swept, ["miner-1"], "{json:#}");
    assert_eq!(
        sims.clock_and_temperature(0).map(|(f, v, _)| (f, v)),
        Some(protected),
        "the protection's settings stay on miner-0"
    );
    assert_eq!(device_status(&status_json(), "miner-0"), "stopped_by_protection");
    drop(exporter);
    sims.shutdown().await;
}
