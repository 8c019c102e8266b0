//! End to end over HTTP on 127.0.0.1: simulated miners (in this process) polled by a real
//! `bitaxe-exporter serve` process, checked through its `/metrics`.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet, DEFAULT_MIX};
use hyper::body::Bytes;

use crate::support::{assert_golden, local_fixture, Exporter, Exposition, InProcess, BIN};

fn named(names: &[&str], sims: &SimFleet) -> Vec<(String, SocketAddr)> {
    names
        .iter()
        .map(|n| n.to_string())
        .zip(sims.addresses().iter().copied())
        .collect()
}

/// Lines that change from poll to poll (or build to build) even when the miner does not.
fn is_timing_line(line: &str) -> bool {
    [
        "bitaxe_poll_duration_seconds{",
        "bitaxe_last_success_timestamp_seconds{",
        "bitaxe_config_age_seconds{",
        "bitaxe_last_share_age_seconds{",
        "bitaxe_exporter_polls_total",
        "bitaxe_exporter_build_info",
        "process_",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

#[tokio::test(flavor = "multi_thread")]
async fn golden_metrics_per_firmware_dialect() {
    // One frozen simulated miner per dialect (no noise, no passing time), plus the shared
    // and local fixture bodies replayed verbatim.
    let mut devices: Vec<(String, MinerSpec)> = Dialect::ALL
        .into_iter()
        .map(|dialect| {
            let board = DEFAULT_MIX
                .iter()
                .find(|(_, d)| *d == dialect)
                .map(|(b, _)| *b)
                .unwrap();
            let mut spec = MinerSpec::new(board, dialect, 7);
            spec.frozen = true;
            if dialect == Dialect::V2_10 {
                spec.frequency_mhz = Some(512.5);
            }
            (format!("sim-{}", dialect.version()), spec)
        })
        .collect();
    let replays = [
        ("fixture-v2.4.0-ultra-204", local_fixture("v2.4.0-ultra-204.json")),
        ("fixture-v2.10.1-supra-401", local_fixture("v2.10.1-supra-401.json")),
        ("fixture-v2.15.0-gamma-601", local_fixture("v2.15.0-gamma-601.json")),
        ("fixture-v2.0.4-max", local_fixture("v2.0.4-max.json")),
        ("fixture-v2.1.4-ultra-0.11", local_fixture("v2.1.4-ultra-0.11.json")),
        (
            "fixture-v2.9.0-gammaturbo-800",
            local_fixture("v2.9.0-gammaturbo-800.json"),
        ),
        ("fixture-v2.12.0-hex-302", local_fixture("v2.12.0-hex-302.json")),
    ];
    for (name, body) in replays {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 1);
        spec.replay_info = Some(Bytes::from(body));
        devices.push((name.to_string(), spec));
    }
    let specs: Vec<MinerSpec> = devices.iter().map(|(_, s)| s.clone()).collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let names: Vec<&str> = devices.iter().map(|(n, _)| n.as_str()).collect();
    let exporter = InProcess::start(&named(&names, &sims), 1.0).await;
    let exposition = exporter
        .wait_for(Duration::from_secs(10), "every device up", |e| {
            names.iter().all(|n| e.up(n) == Some(1.0))
        })
        .await;

    // The metadata (HELP, TYPE, UNIT) once, then each device's series in its own file.
    let metadata: String = exposition
        .text
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_golden("metadata.txt", &metadata);
    for name in &names {
        let needle = format!("device=\"{name}\"");
        let lines: String = exposition
            .text
            .lines()
            .filter(|l| l.contains(&needle) && !is_timing_line(l))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_golden(&format!("{name}.txt"), &lines);
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn retune_through_patch_replaces_the_label_set() {
    let mut gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 3);
    gamma.frozen = true;
    let mut supra = MinerSpec::new(Board::Supra, Dialect::V2_10, 4);
    supra.frozen = true;
    let sims = SimFleet::start(&[gamma, supra], None).await.unwrap();
    let exporter = InProcess::start(&named(&["gamma", "supra"], &sims), 1.0).await;
    exporter
        .wait_for(Duration::from_secs(10), "both up", |e| {
            e.up("gamma") == Some(1.0) && e.up("supra") == Some(1.0)
        })
        .await;
    // The configuration's age grows while it runs…
    let aged = exporter
        .wait_for(Duration::from_secs(10), "a configuration 2 s old", |e| {
            e.value("bitaxe_config_age_seconds", &[("device", "gamma")])
                .unwrap_or(0.0)
                >= 2.0
        })
        .await;
    let age_before = aged.value("bitaxe_config_age_seconds", &[("device", "gamma")]).unwrap();

    let client = reqwest::Client::new();
    for (address, body) in [
        (
            sims.addresses()[0],
            r#"{"frequency": 600, "coreVoltage": 1200, "autofanspeed": 0, "manualFanSpeed": 40}"#,
        ),
        (sims.addresses()[1], r#"{"frequency": 562.5, "coreVoltage": 1250}"#),
    ] {
        let response = client
            .patch(format!("http://{address}/api/system"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let after = exporter
        .wait_for(Duration::from_secs(10), "the new configurations", |e| {
            !e.find("bitaxe_config_info", &[("device", "gamma"), ("frequency_mhz", "600")])
                .is_empty()
                && !e
                    .find("bitaxe_config_info", &[("device", "supra"), ("frequency_mhz", "562.5")])
                    .is_empty()
        })
        .await;
    // …and starts again at the retune.
    let age_after = after
        .value("bitaxe_config_age_seconds", &[("device", "gamma")])
        .unwrap();
    assert!(
        age_after < age_before,
        "config age {age_before} s before the retune, {age_after} s after"
    );
    for (device, old_freq, new_freq, new_mv) in [("gamma", "525", "600", "1200"), ("supra", "490", "562.5", "1250")] {
        let labelled: Vec<_> = after
            .device_series(device)
            .into_iter()
            .filter(|s| s.label("frequency_mhz").is_some())
            .collect();
        assert!(labelled.len() >= 7, "{device}: comparison gauges present");
        for series in labelled {
            assert_ne!(
                series.label("frequency_mhz"),
                Some(old_freq),
                "{device}: old series left behind: {series:?}"
            );
            assert_eq!(series.label("frequency_mhz"), Some(new_freq));
            assert_eq!(series.label("core_voltage_mv"), Some(new_mv));
        }
        // Only the comparison gauges carry the clock labels; counters survive a retune.
        assert!(after.find("bitaxe_shares_accepted_total", &[("device", device)])[0]
            .label("frequency_mhz")
            .is_none());
    }
    // Physics follow the retune: more frequency, more expected hashrate.
    let expected = after
        .value("bitaxe_expected_hashrate_hashes_per_second", &[("device", "gamma")])
        .unwrap();
    assert!((expected - 600.0 * 2040.0 * 1e6).abs() < 1e6, "{expected}");
    assert_eq!(after.value("bitaxe_fan_speed_ratio", &[("device", "gamma")]), Some(0.4));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_fault_mode_marks_its_miner_down_with_the_right_error_kind() {
    let faults = [
        ("healthy", Fault::None, None),
        // Slow but inside the 0.8 s timeout: still up.
        ("slow", Fault::Slow(Duration::from_millis(300)), None),
        ("hang", Fault::Hang, Some("timeout")),
        ("http500", Fault::Http500, Some("http_status")),
        ("garbage", Fault::Garbage, Some("decode")),
        ("truncated", Fault::Truncated, Some("decode")),
        ("oversized", Fault::Oversized, Some("decode")),
        ("offline", Fault::Offline, Some("connect")),
    ];
    let specs: Vec<MinerSpec> = faults
        .iter()
        .enumerate()
        .map(|(i, (_, fault, _))| {
            let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, i as u64);
            spec.fault = *fault;
            spec
        })
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let names: Vec<&str> = faults.iter().map(|(n, _, _)| *n).collect();
    let exporter = Exporter::start(&named(&names, &sims), 1.0);

    let exposition = exporter
        .wait_for(Duration::from_secs(15), "two failures of every faulty miner", |e| {
            faults.iter().all(|(name, _, kind)| match kind {
                Some(kind) => e.value("bitaxe_poll_errors_total", &[("device", name), ("kind", kind)]) >= Some(2.0),
                None => e.up(name) == Some(1.0),
            })
        })
        .await;
    let rss_early = exporter.rss_kib();
    assert!(
        exposition
            .value("bitaxe_poll_duration_seconds", &[("device", "slow")])
            .unwrap()
            >= 0.3
    );
    for (name, _, kind) in faults {
        let Some(kind) = kind else { continue };
        assert_eq!(exposition.up(name), Some(0.0), "{name}");
        for other in ["timeout", "connect", "protocol", "http_status", "decode"]
            .into_iter()
            .filter(|k| *k != kind)
        {
            assert_eq!(
                exposition.value("bitaxe_poll_errors_total", &[("device", name), ("kind", other)]),
                Some(0.0),
                "{name}: unexpected {other} errors"
            );
        }
        // Down means no device series but the exporter's own poll metrics.
        for series in exposition.device_series(name) {
            assert!(
                [
                    "bitaxe_up",
                    "bitaxe_last_poll_success",
                    "bitaxe_poll_errors_total",
                    "bitaxe_poll_duration_seconds"
                ]
                .contains(&series.name.as_str()),
                "{name}: unexpected series while down: {series:?}"
            );
        }
    }

    // Keep polling through more failures: the healthy miner stays fresh, memory stays flat.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let later = exporter.metrics().await;
    assert_eq!(later.up("healthy"), Some(1.0));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let last = later
        .value("bitaxe_last_success_timestamp_seconds", &[("device", "healthy")])
        .unwrap();
    assert!(
        now - last < 2.5,
        "the healthy miner is polled on time despite the others ({:.1} s ago)",
        now - last
    );
    assert!(
        later
            .value("bitaxe_hashrate_hashes_per_second", &[("device", "healthy")])
            .unwrap()
            > 1e12
    );
    let rss_late = exporter.rss_kib();
    assert!(
        rss_late < rss_early + 16 * 1024,
        "memory grew from {rss_early} KiB to {rss_late} KiB while refusing oversized bodies"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_miner_down_still_answers_200() {
    let mut spec = MinerSpec::new(Board::Ultra, Dialect::V2_4, 1);
    spec.fault = Fault::Offline;
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    let exporter = InProcess::start(&named(&["only"], &sims), 1.0).await;
    let exposition = exporter
        .wait_for(Duration::from_secs(10), "a connect error", |e| {
            e.value("bitaxe_poll_errors_total", &[("device", "only"), ("kind", "connect")]) >= Some(1.0)
        })
        .await;
    assert_eq!(exposition.up("only"), Some(0.0));
    // Coming back: the port opens again and the device is up.
    sims.set_fault(0, Fault::None);
    exporter
        .wait_for(Duration::from_secs(15), "recovery", |e| e.up("only") == Some(1.0))
        .await;
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn device_names_are_escaped_in_metrics_and_html() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 5)], None)
        .await
        .unwrap();
    let address = sims.addresses()[0];
    let names = ["quote\"d", "back\\slash", "new\nline", "Žluťoučký kůň", "<b>&amp;</b>"];
    let devices: Vec<(String, SocketAddr)> = names.iter().map(|n| (n.to_string(), address)).collect();
    let exporter = InProcess::start(&devices, 1.0).await;
    let exposition = exporter
        .wait_for(Duration::from_secs(10), "all names up", |e| {
            names.iter().all(|n| e.up(n) == Some(1.0))
        })
        .await;
    for name in names {
        // Parsed back, each label value is exactly the configured name.
        assert!(
            exposition.value("bitaxe_power_watts", &[("device", name)]).is_some(),
            "{name:?}"
        );
    }
    assert!(exposition.text.contains(r#"device="quote\"d""#));
    assert!(exposition.text.contains(r#"device="back\\slash""#));
    assert!(exposition.text.contains(r#"device="new\nline""#));
    // The fleet page carries the names in JSON its script reads (the browser tests in
    // tests/web.rs check what it shows): inert inside the page, exact once parsed.
    let page = exporter.get("/").await.text().await.unwrap();
    assert!(!page.contains("<b>&amp;</b>"));
    let data = page
        .split_once("<script id=\"fleet-data\" type=\"application/json\">")
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .unwrap()
        .0;
    let fleet: serde_json::Value = serde_json::from_str(data).unwrap();
    let shown: Vec<&str> = fleet["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for name in names {
        assert!(shown.contains(&name), "{name:?} not in {shown:?}");
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scrapes_never_reach_the_miners() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 6)], None)
        .await
        .unwrap();
    let exporter = InProcess::start(&named(&["gamma"], &sims), 30.0).await;
    exporter
        .wait_for(Duration::from_secs(10), "first poll", |e| e.up("gamma") == Some(1.0))
        .await;
    let before = sims.requests(0);
    for _ in 0..50 {
        exporter.metrics_text().await;
        exporter.get("/").await;
    }
    assert_eq!(
        sims.requests(0),
        before,
        "50 scrapes and page views made requests to the miner"
    );
    // Other endpoints.
    assert_eq!(exporter.get("/healthz").await.status(), 200);
    assert_eq!(exporter.get("/nope").await.status(), 404);
    // Content negotiation: the text format for a plain client, OpenMetrics for Prometheus.
    let response = exporter.get("/metrics").await;
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let response = reqwest::Client::new()
        .get(exporter.url("/metrics"))
        .header("accept", crate::support::PROMETHEUS_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_is_seen_as_down_then_up_with_uptime_reset() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Supra, Dialect::V2_10, 8)], None)
        .await
        .unwrap();
    let exporter = InProcess::start(&named(&["supra"], &sims), 1.0).await;
    let before = exporter
        .wait_for(Duration::from_secs(10), "up", |e| e.up("supra") == Some(1.0))
        .await;
    let uptime_before = before.value("bitaxe_uptime_seconds", &[("device", "supra")]).unwrap();
    assert!(uptime_before >= 3600.0);
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/system/restart", sims.addresses()[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "System will restart shortly.");
    exporter
        .wait_for(Duration::from_secs(10), "down while restarting", |e| {
            e.up("supra") == Some(0.0)
        })
        .await;
    let after = exporter
        .wait_for(Duration::from_secs(20), "up again", |e| e.up("supra") == Some(1.0))
        .await;
    assert!(after.value("bitaxe_uptime_seconds", &[("device", "supra")]).unwrap() < 60.0);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_within_a_few_seconds_even_with_a_poll_in_flight() {
    let mut hang = MinerSpec::new(Board::Gamma, Dialect::V2_15, 9);
    hang.fault = Fault::Hang;
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 10), hang], None)
        .await
        .unwrap();
    let mut exporter = Exporter::start(&named(&["ok", "hang"], &sims), 5.0);
    exporter
        .wait_for(Duration::from_secs(10), "first poll", |e| e.up("ok") == Some(1.0))
        .await;
    // And an HTTP request in progress (half its header sent): the poll grace and the HTTP
    // grace run together, so neither waits for the other; Docker kills at 10 s.
    let mut half_request = std::net::TcpStream::connect(("127.0.0.1", exporter.port)).unwrap();
    std::io::Write::write_all(&mut half_request, b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    let (status, took) = exporter.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    drop(half_request);
    sims.shutdown().await;
}

/// `demo` on a port the system picks, in `dir`, killed when the test ends.
fn demo_in(dir: &std::path::Path, stdout: std::process::Stdio) -> crate::support::KillOnDrop {
    crate::support::KillOnDrop(
        std::process::Command::new(BIN)
            .args(["demo", "--listen", "127.0.0.1:0"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(stdout)
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_runs_a_mixed_fleet_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    // Port 0: the demo prints the port the system gave it.
    let mut child = demo_in(dir.path(), std::process::Stdio::piped());
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    let port: u16 = loop {
        let mut line = String::new();
        assert!(
            std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0,
            "no metrics URL: {out}"
        );
        out.push_str(&line);
        if let Some(url) = line.trim().strip_prefix("metrics") {
            let port = url
                .trim()
                .trim_start_matches("http://127.0.0.1:")
                .trim_end_matches("/metrics");
            break port.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    };
    assert_ne!(port, 0, "{out}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let exposition = loop {
        let scrape = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .header("accept", crate::support::PROMETHEUS_ACCEPT)
            .send()
            .await;
        if let Ok(response) = scrape {
            let e = Exposition::parse(&response.text().await.unwrap());
            if e.find("bitaxe_up", &[]).iter().filter(|s| s.value == 1.0).count() == 6 {
                break e;
            }
        }
        assert!(Instant::now() < deadline, "demo did not bring six miners up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let models: Vec<&str> = exposition
        .find("bitaxe_info", &[])
        .iter()
        .filter_map(|s| s.label("asic_model"))
        .collect();
    for model in ["BM1366", "BM1368", "BM1370", "BM1397"] {
        assert!(models.contains(&model), "{model} in {models:?}");
    }
    assert_eq!(exposition.value("bitaxe_asic_chips", &[("device", "hex")]), Some(6.0));
    // The demo tunes one miner: its sweep is running, and on Ctrl-C it is put back.
    let demo_config = dir.path().join("bitaxe-demo/config.yaml");
    let tune_status = || {
        let output = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&demo_config)
            .args(["tune", "status"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !tune_status().contains("#1 running") {
        assert!(
            Instant::now() < deadline,
            "the demo's sweep did not start: {}",
            tune_status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A second demo on the same folder refuses before it writes anything.
    let config_before = std::fs::read(&demo_config).unwrap();
    let second = std::process::Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        second.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another demo"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(
        std::fs::read(&demo_config).unwrap(),
        config_before,
        "the running demo's config was rewritten"
    );
    std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(out.contains(&format!("http://127.0.0.1:{port}/")), "{out}");
    let written = std::fs::read_to_string(&demo_config).unwrap();
    assert!(written.contains(&format!("127.0.0.1:{port}")), "{written}");
    let after = tune_status();
    assert!(after.contains("gamma: restored"), "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn log_level_comes_from_the_config_and_rust_log_overrides_it() {
    let mut offline = MinerSpec::new(Board::Gamma, Dialect::V2_15, 12);
    offline.fault = Fault::Offline;
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 11), offline], None)
        .await
        .unwrap();
    let devices = named(&["ok", "gone"], &sims);
    let run = |rust_log: Option<&str>, flags: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let yaml = crate::support::config_yaml(&devices, 1.0, "127.0.0.1:0", &dir.path().join("l.db"));
        std::fs::write(&path, yaml.replace("logging:\n", "logging:\n  log_level: WARNING\n")).unwrap();
        let mut command = std::process::Command::new(BIN);
        command
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .args(flags)
            .stderr(std::process::Stdio::piped());
        command.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let warnings_only = run(None, &[]);
    assert!(warnings_only.contains("down: cannot connect"), "{warnings_only}");
    assert!(
        !warnings_only.contains("up: BM1370"),
        "INFO lines at log_level WARNING:\n{warnings_only}"
    );
    let verbose = run(Some("info"), &[]);
    assert!(verbose.contains("up: BM1370"), "{verbose}");
    assert!(verbose.contains("shutting down"), "{verbose}");
    // --log-level over the config (global flags go before or after the subcommand), and
    // JSON lines for journald / docker / Loki; no colour codes when stderr is a pipe.
    let json = run(None, &["--log-level", "info", "--log-format", "json"]);
    assert!(!json.contains('\u{1b}'), "{json}");
    let events: Vec<serde_json::Value> = json.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        events.iter().any(|e| e["level"] == "INFO"
            && e["message"].as_str().unwrap_or("").starts_with("up: BM1370")
            && e["device"] == "ok"),
        "{json}"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleets_first_polls_spread_over_the_start_window() {
    // 60 miners at an 8-s interval: the start window is 2 s.
    let specs: Vec<MinerSpec> = (0..60)
        .map(|i| MinerSpec::new(Board::Gamma, Dialect::V2_15, i))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let devices: Vec<(String, SocketAddr)> = (0..60).map(|i| (format!("m{i:02}"), sims.addresses()[i])).collect();
    let _exporter = InProcess::start(&devices, 8.0).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let firsts = loop {
        let firsts: Vec<_> = (0..60).filter_map(|i| sims.first_request_at(i)).collect();
        if firsts.len() == 60 {
            break firsts;
        }
        assert!(Instant::now() < deadline, "only {} of 60 miners polled", firsts.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let earliest = *firsts.iter().min().unwrap();
    let offsets: Vec<f64> = firsts
        .iter()
        .map(|t| t.duration_since(earliest).as_secs_f64())
        .collect();
    let span = offsets.iter().cloned().fold(0.0, f64::max);
    assert!(
        span > 1.2 && span < 3.0,
        "first polls span {span:.2} s, not the 2-s window"
    );
    // No 200-ms slice holds a third of the fleet (the clamp this replaces put 3/4 at 2.0 s).
    for slice in 0..15 {
        let (low, high) = (f64::from(slice) * 0.2, f64::from(slice + 1) * 0.2);
        let n = offsets.iter().filter(|o| **o >= low && **o < high).count();
        assert!(n < 20, "{n} of 60 first polls within {low:.1}–{high:.1} s: {offsets:?}");
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn alertmanager_notifications_are_written_to_the_log_escaped() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 31)], None)
        .await
        .unwrap();
    // The endpoint takes notifications with the token of server.alerts_token_file.
    let dir = tempfile::tempdir().unwrap();
    let token = "escape-test-token-0123456789";
    std::fs::write(dir.path().join("alerts.token"), token).unwrap();
    let exporter = crate::support::Exporter::start_with_server(
        dir,
        &named(&["gamma"], &sims),
        1.0,
        "  alerts_token_file: alerts.token\n",
    );
    let bearer = format!("Bearer {token}");
    let notification = serde_json::json!({
        "version": "4",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "BitaxeAsicTemperatureCritical", "severity": "critical", "device": "gamma"},
            "annotations": {"summary": "Miner gamma ASIC at 72.8 °C\nFAKE forged line"}
        }]
    });
    let client = reqwest::Client::new();
    let response = client
        .post(exporter.url("/alerts"))
        .header("content-type", "application/json")
        .header("authorization", &bearer)
        .body(notification.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let oversized = client
        .post(exporter.url("/alerts"))
        .header("content-type", "application/json")
        .header("authorization", &bearer)
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = exporter.log();
    assert!(
        log.lines().any(
            |l| l.contains("alert firing: Miner gamma ASIC at 72.8 °C\\nFAKE forged line")
                && l.contains("BitaxeAsicTemperatureCritical")
        ),
        "{log}"
    );
    assert!(!log.lines().any(|l| l.starts_with("FAKE")), "{log}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_api_serves_the_snapshot_with_the_same_numbers_and_names_intact() {
    let mut gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 90);
    gamma.frozen = true;
    let mut offline = MinerSpec::new(Board::Supra, Dialect::V2_10, 91);
    offline.fault = Fault::Offline;
    let sims = SimFleet::start(&[gamma, offline], None).await.unwrap();
    let hostile = "<script>alert(1)</script>";
    let devices = vec![
        (hostile.to_string(), sims.addresses()[0]),
        ("gone".to_string(), sims.addresses()[1]),
    ];
    let exporter = InProcess::start(&devices, 1.0).await;
    exporter
        .wait_for(Duration::from_secs(10), "both polled", |e| {
            e.up(hostile) == Some(1.0) && e.value("bitaxe_last_poll_success", &[("device", "gone")]) == Some(0.0)
        })
        .await;
    // `bitaxe_last_poll_success` reads 0 before the first attempt too, so wait
    // until the API has the failed poll's error; and compare only a snapshot
    // that no poll changed between the two scrapes around it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (fleet, exposition) = loop {
        let before = exporter.metrics().await;
        let response = exporter.get("/api/v1/fleet").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let fleet: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
        let after = exporter.metrics().await;
        let gone_failed = fleet["devices"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["name"] == "gone" && d["last_error"].is_string()));
        let reading = |e: &Exposition| {
            (
                e.value("bitaxe_hashrate_hashes_per_second", &[("device", hostile)]),
                e.value("bitaxe_efficiency_joules_per_terahash", &[("device", hostile)]),
            )
        };
        if (gone_failed && reading(&before) == reading(&after)) || Instant::now() > deadline {
            break (fleet, after);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(fleet["totals"]["devices"], 2);
    assert_eq!(fleet["totals"]["up"], 1);
    let devices = fleet["devices"].as_array().unwrap();
    let up = devices
        .iter()
        .find(|d| d["name"] == hostile)
        .expect("the name exactly as configured");
    assert_eq!(up["state"], "up");
    assert_eq!(up["model"], "BM1370");
    assert_eq!(up["mining_healthy"], true);
    let hashrate = exposition
        .value("bitaxe_hashrate_hashes_per_second", &[("device", hostile)])
        .unwrap();
    assert!(
        (up["hashrate_ghs"].as_f64().unwrap() * 1e9 - hashrate).abs() < 1.0,
        "{up:#}"
    );
    let jth = exposition
        .value("bitaxe_efficiency_joules_per_terahash", &[("device", hostile)])
        .unwrap();
    assert!(
        (up["joules_per_terahash"].as_f64().unwrap() - jth).abs() < 1e-9,
        "{up:#}"
    );
    let gone = devices.iter().find(|d| d["name"] == "gone").unwrap();
    assert_eq!(gone["state"], "down");
    assert!(
        gone["hashrate_ghs"].is_null() && gone["mining_healthy"].is_null(),
        "{gone:#}"
    );
    assert!(gone["last_error"].as_str().unwrap().contains("connect"), "{gone:#}");
    sims.shutdown().await;
}

/// The demo's promise: within minutes `analyze optimize` compares real configurations of
/// the swept miner (its sweep judges a step a minute; this waits for three).
#[tokio::test(flavor = "multi_thread")]
async fn the_demos_sweep_gives_analyze_several_configurations_to_compare() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = demo_in(dir.path(), std::process::Stdio::null());
    let demo_config = dir.path().join("bitaxe-demo/config.yaml");
    let optimize = || {
        let output = std::process::Command::new(BIN)
            .arg("--config")
            .arg(&demo_config)
            .args([
                "analyze",
                "optimize",
                "--metric",
                "efficiency",
                "--device",
                "gamma",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap_or_default()
    };
    let started = Instant::now();
    let ranked = loop {
        let found = optimize();
        let ranked: Vec<(f64, f64)> = found[0]["ranked"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| Some((r["frequency_mhz"].as_f64()?, r["joules_per_terahash"].as_f64()?)))
                    .collect()
            })
            .unwrap_or_default();
        if ranked.len() >= 3 {
            break ranked;
        }
        assert!(
            started.elapsed() < Duration::from_secs(420),
            "after {:?} optimize ranks {} configurations of gamma: {found:#}",
            started.elapsed(),
            ranked.len()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    };
    eprintln!(
        "demo: {} configurations ranked after {:?}: {ranked:?}",
        ranked.len(),
        started.elapsed()
    );
    let frequencies: std::collections::BTreeSet<u64> = ranked.iter().map(|(f, _)| *f as u64).collect();
    assert!(frequencies.len() >= 3, "{ranked:?}");
    assert!(
        ranked.windows(2).all(|w| w[0].1 <= w[1].1),
        "best J/TH first: {ranked:?}"
    );
    std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_board_302_without_a_chip_count_in_its_info_is_counted_from_its_asic_endpoint() {
    // v2.9 moved asicCount to /api/system/asic, and board 302 is a six-chip Hex upstream but
    // also what upstream builds for Lucky hardware report: the miner's own count decides.
    let sims = SimFleet::start(&[MinerSpec::new(Board::Hex, Dialect::V2_9, 3)], None)
        .await
        .unwrap();
    let exporter = InProcess::start(&named(&["hex"], &sims), 1.0).await;
    let metrics = exporter
        .wait_for(Duration::from_secs(10), "up with its chips", |e| {
            e.value("bitaxe_asic_chips", &[("device", "hex")]).is_some()
        })
        .await;
    assert_eq!(metrics.value("bitaxe_asic_chips", &[("device", "hex")]), Some(6.0));
    let expected = metrics
        .value("bitaxe_expected_hashrate_hashes_per_second", &[("device", "hex")])
        .unwrap();
    let body = reqwest::get(format!("http://{}/api/system/info", sims.addresses()[0]))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(info.get("asicCount").is_none(), "the info body must not say it: {info}");
    // expectedHashrate of the body is the firmware's own; both say six chips' worth.
    let firmware_expected = info["expectedHashrate"].as_f64().unwrap() * 1e9;
    assert!(
        (expected - firmware_expected).abs() / firmware_expected < 0.01,
        "{expected} vs {firmware_expected}"
    );
    sims.shutdown().await;
}
