//! The command line as a user runs it: `check-config` on good and bad files (exit codes and
//! messages that name the key and line), `serve` refusing a bad config before it binds.

use std::process::{Command, Output};

use crate::support::BIN;

fn run_with_config(config: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

const DEVICES: &str = "devices:\n  - name: \"a\"\n    ip: \"192.168.1.10\"\n";

#[test]
fn check_config_rejects_bad_files_with_the_key_and_line() {
    // (what, file, fragments the message must contain)
    let cases: &[(&str, String, &[&str])] = &[
        (
            "misspelt top-level key",
            format!("{DEVICES}loging:\n  poll_interval: 30\n"),
            &["config.yaml:4", "unknown key `loging`"],
        ),
        (
            "misspelt device key",
            "devices:\n  - name: a\n    adress: 10.0.0.1\n".into(),
            &[":3", "devices[0]", "unknown key `adress`"],
        ),
        (
            "misspelt nested key",
            format!("{DEVICES}safety:\n  max_temp_warnin: 60\n"),
            &[":5", "safety", "unknown key `max_temp_warnin`"],
        ),
        (
            "duplicate device name",
            "devices:\n  - name: a\n    ip: 10.0.0.1\n  - name: b\n    ip: 10.0.0.2\n  - name: a\n    ip: 10.0.0.3\n"
                .into(),
            &[
                ":6",
                "devices[2].name",
                "duplicate device name \"a\"",
                "first used at line 2",
            ],
        ),
        ("empty device list", "devices: []\n".into(), &[":1", "devices", "empty"]),
        (
            "no device list",
            "logging:\n  poll_interval: 30\n".into(),
            &["devices", "missing"],
        ),
        ("empty file", "\n".into(), &["empty"]),
        (
            "unparsable address",
            "devices:\n  - name: a\n    ip: \"10.0.0.1:99999\"\n".into(),
            &[":3", "devices[0].ip", "not a port number"],
        ),
        (
            "URL instead of an address",
            "devices:\n  - name: a\n    ip: \"http://10.0.0.1/\"\n".into(),
            &[":3", "devices[0].ip", "without http://"],
        ),
        (
            "warning above shutdown",
            format!("{DEVICES}safety:\n  max_temp_warning: 72\n  max_temp_shutdown: 70\n"),
            &[":5", "safety.max_temp_warning", "above the shutdown threshold"],
        ),
        (
            "poll interval below 1 s",
            format!("{DEVICES}logging:\n  poll_interval: 0.5\n"),
            &[":5", "logging.poll_interval", "minimum is 1 s"],
        ),
        (
            "poll interval not a number",
            format!("{DEVICES}logging:\n  poll_interval: fast\n"),
            &[":5", "logging.poll_interval", "is not a duration"],
        ),
        (
            "bad listen address",
            format!("{DEVICES}server:\n  listen: \"localhost\"\n"),
            &[":5", "server.listen", "IP:PORT"],
        ),
        (
            "bad log level",
            format!("{DEVICES}logging:\n  log_level: LOUD\n"),
            &[":5", "logging.log_level", "LOUD"],
        ),
        (
            "YAML syntax error",
            "devices:\n  - name: \"a\n    ip: x\n".into(),
            &["config.yaml:"],
        ),
        (
            "enabled not a bool",
            format!("{DEVICES}    enabled: maybe\n"),
            &[":4", "devices[0].enabled"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, config, fragments) in cases {
        let output = run_with_config(config, &["check-config"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(2) {
            failures.push(format!("{what}: exit {:?}, stderr: {stderr}", output.status.code()));
            continue;
        }
        for fragment in *fragments {
            if !stderr.contains(fragment) {
                failures.push(format!("{what}: {fragment:?} not in: {}", stderr.trim()));
            }
        }
        if stderr.contains("panicked") || stderr.contains("RUST_BACKTRACE") {
            failures.push(format!("{what}: a panic reached the user: {stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn check_config_accepts_the_example_and_a_minimal_file() {
    let example = std::fs::read_to_string(crate::support::repo_path("config.yaml.example")).unwrap();
    for config in [example.as_str(), DEVICES] {
        let output = run_with_config(config, &["check-config"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("OK"));
    }
}

#[test]
fn a_missing_config_file_is_a_usage_error() {
    let output = Command::new(BIN)
        .args(["--config", "/nonexistent/config.yaml", "check-config"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the configuration file"));
}

#[test]
fn serve_refuses_a_bad_config_before_binding() {
    let port = crate::support::free_port();
    let config = format!("{DEVICES}safety:\n  max_temp_warning: 80\n");
    let output = run_with_config(&config, &["serve", "--listen", &format!("127.0.0.1:{port}")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("safety.max_temp_warning"));
    // Nothing was left listening.
    assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
}

#[test]
fn usage_errors_exit_2() {
    let output = Command::new(BIN).args(["serve", "--listen", "nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = Command::new(BIN)
        .args(["simulate", "--fault", "9=hang", "--miners", "2"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("INDEX must be a miner number from 0 to 1"));
}

#[test]
fn listen_flags_and_duration_strings_as_people_write_them() {
    let config = "devices:\n  - name: \"a\"\n    ip: \"192.168.1.10\"\nlogging:\n  poll_interval: \"30s\"\nserver:\n  listen: \"localhost:9842\"\n";
    let output = run_with_config(config, &["check-config"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("poll every 30 s"));
    // `serve --listen :PORT` listens on every interface, as node_exporter does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!("{config}  database_path: \"l.db\"\n").replace("server:\n  listen: \"localhost:9842\"\n", ""),
    )
    .unwrap();
    let port = crate::support::free_port();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["serve", "--listen", &format!(":{port}")])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "serve --listen :{port} did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    // A flag given to a command that does not read the config is refused, not ignored.
    let output = Command::new(BIN).args(["--config", "x.yaml", "demo"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("do not read a configuration file"));
    let output = Command::new(BIN)
        .args(["--config", "x.yaml", "discover", "--subnet", "127.0.0.1/32"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("reads no configuration file"));
    // A config named explicitly must exist, even when it is called config.yaml like the
    // default (whose absence the ledger commands forgive).
    let empty = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["analyze", "compare-configs", "--config", "config.yaml"])
        .current_dir(empty.path())
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("config.yaml"));
    // A named config that is missing is an error for the ledger commands too.
    let output = Command::new(BIN)
        .args(["analyze", "compare-configs", "--config", "/nonexistent.yaml"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn configs_written_by_demo_and_simulate_parse_whatever_the_folder_is_called() {
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("we\"ird \\ folder");
    let mut demo = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&odd)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let written = odd.join("config.yaml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !written.is_file() {
        assert!(std::time::Instant::now() < deadline, "demo wrote no config");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let check = Command::new(BIN)
        .arg("--config")
        .arg(&written)
        .arg("check-config")
        .output()
        .unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("6 device(s)"));

    let sim_config = odd.join("sim \"config\".yaml");
    let mut sim = Command::new(BIN)
        .args(["simulate", "--miners", "2", "--base-port", "0", "--write-config"])
        .arg(&sim_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !sim_config.is_file() {
        assert!(std::time::Instant::now() < deadline, "simulate wrote no config");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let check = Command::new(BIN)
        .arg("--config")
        .arg(&sim_config)
        .arg("check-config")
        .output()
        .unwrap();
    let _ = sim.kill();
    let _ = sim.wait();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn optimize_defaults_to_efficiency() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("ledger.db");
    let records = (0..40)
        .map(|i| ("gamma", i as f64 * 30.0, crate::ledger::S::new(490.0, 1150.0)))
        .collect();
    crate::ledger::write_all(&database, 0.0, records);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "devices:\n  - name: gamma\n    ip: 192.168.1.10\nlogging:\n  database_path: ledger.db\nanalysis:\n  warmup_minutes: 1\n",
    )
    .unwrap();
    let output = crate::support::cli(&config, &["analyze", "optimize"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("best for efficiency"), "{text}");
}
