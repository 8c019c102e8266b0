//! The command line as a user runs it: `check-config` on good and bad files (exit codes and
//! messages that name the key and line), `serve` refusing a bad config before it binds, a
//! table through a pipe unbounded.

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
            "an IPv4 address with an octet above 255",
            "devices:\n  - name: a\n    ip: \"192.168.1.300\"\n".into(),
            &[":3", "devices[0].ip", "192.168.1.300", "not an IPv4 address"],
        ),
        (
            "port 0",
            "devices:\n  - name: a\n    ip: \"10.0.0.1:0\"\n".into(),
            &[":3", "devices[0].ip", "not a port number"],
        ),
        (
            "empty address",
            "devices:\n  - name: a\n    ip: \"\"\n".into(),
            &[":3", "devices[0].ip", "empty"],
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
fn check_config_reports_every_error_in_the_file_with_its_key_and_line() {
    let config = "devices:\n  - name: a\n    ip: \"192.168.1.300\"\n  - name: b\n    ip: \"10.0.0.2:70000\"\n  - name: a\n    ip: bitaxe.local\nlogging:\n  poll_interval: 0.5\nsafety:\n  max_temp_warning: 80\n";
    let output = run_with_config(config, &["check-config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    // One line per error, in the order of the file.
    let expected = [
        ("config.yaml:3:", "devices[0].ip", "192.168.1.300"),
        ("config.yaml:5:", "devices[1].ip", "not a port number"),
        ("config.yaml:6:", "devices[2].name", "duplicate device name"),
        ("config.yaml:9:", "logging.poll_interval", "minimum is 1 s"),
        (
            "config.yaml:11:",
            "safety.max_temp_warning",
            "above the shutdown threshold",
        ),
    ];
    for (i, (line, key, what)) in expected.iter().enumerate() {
        let found = lines.get(i).copied().unwrap_or_default();
        assert!(
            found.starts_with("error: ") && found.contains(line) && found.contains(key) && found.contains(what),
            "line {i} should name {line} {key} ({what}): {stderr}"
        );
    }
    assert!(stderr.contains("5 errors"), "{stderr}");
    // A hostname stays an address.
    assert!(!stderr.contains("bitaxe.local"), "{stderr}");
}

#[test]
fn the_example_polls_nothing_until_miners_are_added_and_its_keys_are_valid() {
    let example = std::fs::read_to_string(crate::support::repo_path("config.yaml.example")).unwrap();
    // A copy as it is lists no miner (no placeholder to show as down): it says what to run.
    let output = run_with_config(&example, &["check-config"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("devices") && stderr.contains("discover --add-to"),
        "{stderr}"
    );
    // With a miner in place of its `[]`, every other documented key is valid.
    let with_miner = example.replacen("devices: []", "devices:\n  - name: \"a\"\n    ip: \"192.168.1.10\"", 1);
    assert_ne!(with_miner, example);
    for config in [with_miner.as_str(), DEVICES] {
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
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read the configuration file"));
    // What to run instead.
    assert!(stderr.contains("config.yaml.example"), "{stderr}");
    assert!(
        stderr.contains("discover --add-to /nonexistent/config.yaml"),
        "{stderr}"
    );
}

#[test]
fn serve_prints_the_dashboard_and_metrics_urls_on_the_hosts_addresses() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, DEVICES).unwrap();
    let port = crate::support::free_port();
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut dashboard, mut metrics) = (String::new(), String::new());
    stdout.read_line(&mut dashboard).unwrap();
    stdout.read_line(&mut metrics).unwrap();
    let url = dashboard
        .strip_prefix("dashboard http://")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no dashboard URL: {dashboard:?}"))
        .to_string();
    // Every interface is not an address to type: the host's own ones are printed.
    assert!(!url.starts_with("0.0.0.0"), "{dashboard}");
    let host_port = url.trim_end_matches('/');
    assert!(host_port.ends_with(&format!(":{port}")), "{dashboard}");
    assert_eq!(metrics.trim(), format!("metrics   http://{host_port}/metrics"));
    // The printed address reaches the dashboard.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let answer = loop {
        let mut response = String::new();
        let answered = std::net::TcpStream::connect(host_port).is_ok_and(|mut stream| {
            let request = format!("GET /healthz HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).is_ok() && stream.read_to_string(&mut response).is_ok()
        });
        if answered && !response.is_empty() {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "{host_port} never answered");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
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

#[test]
fn the_demo_prints_commands_that_run_as_shown() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    // A folder name a shell would split: the printed command must still be one word each.
    let data = dir.path().join("demo data");
    let mut demo = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(demo.stdout.take().unwrap());
    let mut banner = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let done = line.contains("Ctrl-C");
        banner.push(line);
        if done {
            break;
        }
    }
    let analyse = banner
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("analyse it"))
        .unwrap_or_else(|| panic!("no `analyse it` line: {banner:#?}"))
        .trim()
        .to_string();
    // The test binary is not on PATH: the command names it by its path.
    assert!(!analyse.starts_with("bitaxe-exporter "), "{analyse}");
    // Pasted into a shell (with check-config in place of the analysis), it runs.
    let (invocation, _) = analyse.split_once(" analyze").unwrap();
    let pasted = Command::new("sh")
        .arg("-c")
        .arg(format!("{invocation} check-config"))
        .output()
        .unwrap();
    let _ = demo.kill();
    let _ = demo.wait();
    assert!(
        pasted.status.success(),
        "{invocation}: {}",
        String::from_utf8_lossy(&pasted.stderr)
    );
    assert!(String::from_utf8_lossy(&pasted.stdout).contains("OK"));
}

#[test]
fn a_table_through_a_pipe_keeps_every_row_on_one_line_with_the_name_whole() {
    let name = "gamma-living-room-shelf-number-1";
    assert_eq!(name.len(), 32);
    let note = "trying a lower voltage to see whether the error rate stays under the limit tonight";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("devices:\n  - name: \"{name}\"\n    ip: \"192.0.2.1\"\nlogging:\n  database_path: \"ledger.db\"\n"),
    )
    .unwrap();
    // An empty ledger, as `serve` leaves it before the first poll.
    drop(bitaxe_exporter::ledger::Ledger::open(&dir.path().join("ledger.db")).unwrap());
    let started = crate::support::cli(&config, &["session", "start", "--device", name, "--notes", note]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    // Standard output is a pipe here: no width to keep to, so nothing wraps (a fixed
    // 80-column table wrapped both the name and the note).
    let listed = crate::support::cli(&config, &["session", "list"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(stdout.lines().count(), 2, "a header and one row:\n{stdout}");
    let row = stdout.lines().nth(1).unwrap();
    assert!(row.contains(&format!(" {name} ")) && row.ends_with(note), "{stdout}");
    assert!(stdout.lines().all(|l| l == l.trim_end()), "trailing spaces:\n{stdout}");
}
