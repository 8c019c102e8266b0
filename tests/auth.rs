//! Miners that ask for HTTP Basic auth (the upstream AxeOS pull request, the NerdQAxe
//! fork), simulated: reads locked or only writes. The real binary polls them with the
//! credentials config.yaml gives (`password_file`, `password_env`), names the fault clearly
//! without them or with wrong ones (`kind="auth"`), refuses a write at once, lists a locked
//! miner in `discover`, and never shows, stores or logs the password.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitaxe_exporter::axeos::window::{CheckedPatch, SettingsWindow};
use bitaxe_exporter::axeos::{AxeOsClient, PollError, PollErrorKind, SettingsPatch};
use bitaxe_exporter::config::{Credentials, Secret};
use bitaxe_exporter::ledger::Ledger;
use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{MinerSpec, Quirks, SimAuth, SimFleet};
use serde_json::Value;

use crate::support::{cli, raw_server, Exporter, BIN};

const USER: &str = "admin";
/// A password no output of the exporter may ever contain.
const PASSWORD: &str = "Tr0ub4dor&3-never-shown";
const WRONG_PASSWORD: &str = "c0rrect-horse-wrong-one";

const ASKS: &str =
    "the miner asks for credentials (HTTP 401): set username and password_file for this device in config.yaml";

fn refused(device: &str) -> String {
    format!("the miner refused the configured credentials (HTTP 401): check username and password for {device}")
}

/// `reads`: every request needs the credentials; otherwise only writes.
fn locked(reads: bool) -> Quirks {
    Quirks {
        basic_auth: Some(SimAuth {
            username: USER.into(),
            password: PASSWORD.into(),
            reads,
        }),
        ..Quirks::default()
    }
}

async fn gammas(count: u64, base_port: Option<u16>) -> SimFleet {
    let specs: Vec<MinerSpec> = (0..count)
        .map(|i| {
            let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 700 + i);
            spec.frequency_mhz = Some(525.0);
            spec.core_voltage_mv = Some(1150);
            spec
        })
        .collect();
    SimFleet::start(&specs, base_port).await.unwrap()
}

/// The config text from `support::config_yaml` with `keys` (lines such as
/// `username: admin`) added to the entry of `device`.
fn with_device_keys(yaml: &str, device: &str, keys: &[&str]) -> String {
    let entry = format!("- name: {device}\n");
    let start = yaml
        .find(&entry)
        .unwrap_or_else(|| panic!("no entry {entry:?} in\n{yaml}"))
        + entry.len();
    let ip_end = start + yaml[start..].find('\n').unwrap() + 1;
    let indent: String = yaml[start..].chars().take_while(|c| *c == ' ').collect();
    let added: String = keys.iter().map(|k| format!("{indent}{k}\n")).collect();
    format!("{}{added}{}", &yaml[..ip_end], &yaml[ip_end..])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every spelling of a password that could leak: as written, and inside the Basic header.
fn leaks(text: &[u8], password: &str) -> bool {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    [password.as_bytes(), encoded.as_bytes()]
        .iter()
        .any(|needle| text.windows(needle.len()).any(|w| w == *needle))
}

/// The fleet API's entry of a device.
async fn fleet_entry(exporter: &Exporter, device: &str) -> Value {
    let body = exporter.get("/api/v1/fleet").await.bytes().await.unwrap();
    let fleet: Value = serde_json::from_slice(&body).unwrap();
    let devices = fleet["devices"].as_array().cloned().unwrap_or_default();
    devices
        .into_iter()
        .find(|d| d["name"] == device)
        .unwrap_or_else(|| panic!("no {device} in {fleet:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn locked_reads_are_polled_with_the_configured_password_and_refusals_say_what_to_do() {
    // Three miners that lock reads: one with no credentials configured, one with the
    // right password (in a file beside the config), one with a wrong one.
    let sims = gammas(3, None).await;
    for i in 0..3 {
        sims.set_quirks(i, locked(true));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keyed.pass"), format!("{PASSWORD}\n")).unwrap();
    std::fs::write(dir.path().join("wrong.pass"), format!("{WRONG_PASSWORD}\n")).unwrap();
    let devices = vec![
        ("nokey".to_string(), sims.addresses()[0]),
        ("keyed".to_string(), sims.addresses()[1]),
        ("wrongkey".to_string(), sims.addresses()[2]),
    ];
    let edit = |yaml: String| {
        let yaml = with_device_keys(&yaml, "keyed", &["username: admin", "password_file: keyed.pass"]);
        with_device_keys(&yaml, "wrongkey", &["username: admin", "password_file: wrong.pass"])
    };
    let mut exporter = Exporter::start_edited(dir, &devices, 1.0, &edit);

    let metrics = exporter
        .wait_for(
            Duration::from_secs(30),
            "keyed up and both others failing on auth",
            |e| {
                e.up("keyed") == Some(1.0)
                    && ["nokey", "wrongkey"].iter().all(|d| {
                        e.value("bitaxe_poll_errors_total", &[("device", d), ("kind", "auth")])
                            .is_some_and(|n| n >= 1.0)
                    })
                    && e.value("bitaxe_hashrate_hashes_per_second", &[("device", "keyed")])
                        .is_some()
            },
        )
        .await;
    // (a) no credentials, (c) wrong ones: down, counted as `auth`, nothing else.
    for device in ["nokey", "wrongkey"] {
        assert_eq!(metrics.up(device), Some(0.0), "{}", metrics.text);
        for other in ["timeout", "connect", "protocol", "http_status", "decode"] {
            assert_eq!(
                metrics.value("bitaxe_poll_errors_total", &[("device", device), ("kind", other)]),
                Some(0.0),
                "{device} {other}"
            );
        }
    }
    assert_eq!(
        metrics.value("bitaxe_poll_errors_total", &[("device", "keyed"), ("kind", "auth")]),
        Some(0.0)
    );
    // The API, the page and the log say what to do.
    assert_eq!(fleet_entry(&exporter, "nokey").await["last_error"], ASKS);
    assert_eq!(
        fleet_entry(&exporter, "wrongkey").await["last_error"],
        refused("wrongkey")
    );
    let page = exporter.get("/").await.text().await.unwrap();
    assert!(page.contains(ASKS), "{page}");
    assert!(page.contains(&refused("wrongkey")), "{page}");

    // A few samples of the keyed miner in the ledger, a session, then every surface.
    let started = Instant::now();
    while crate::support::sql(&exporter.database_path())
        .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0)
        < 2
    {
        assert!(started.elapsed() < Duration::from_secs(20), "no samples stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen: Vec<(String, Vec<u8>)> = Vec::new();
    for path in [
        "/metrics",
        "/api/v1/fleet",
        "/api/v1/configs",
        "/api/v1/sessions",
        "/api/v1/devices/keyed/history",
        "/api/v1/devices/wrongkey/history",
        "/",
        "/device/keyed",
        "/device/wrongkey",
        "/configs",
        "/sessions",
    ] {
        let body = exporter.get(path).await.bytes().await.unwrap().to_vec();
        seen.push((path.to_string(), body));
    }
    seen.push((
        "/metrics (OpenMetrics)".into(),
        exporter.metrics_text().await.into_bytes(),
    ));
    let config = exporter.config_path();
    for args in [
        &["check-config"][..],
        &["analyze", "export", "--format", "json"],
        &["analyze", "export", "--format", "csv"],
        &["analyze", "compare-configs"],
    ] {
        let output = cli(&config, args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        seen.push((format!("{args:?}"), [output.stdout, output.stderr].concat()));
    }
    exporter.terminate(Duration::from_secs(20));
    let log = exporter.log();
    assert!(log.contains(ASKS), "{log}");
    assert!(log.contains(&refused("wrongkey")), "{log}");
    seen.push(("the log".into(), log.into_bytes()));
    for entry in std::fs::read_dir(exporter.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("ledger.db") {
            seen.push((name, std::fs::read(&path).unwrap()));
        }
    }
    assert!(seen.iter().any(|(name, _)| name == "ledger.db"));
    // (b) the password, and the header that carries it, appear nowhere.
    for (name, bytes) in &seen {
        for password in [PASSWORD, WRONG_PASSWORD] {
            assert!(!leaks(bytes, password), "{name} shows a password");
        }
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_to_a_miner_that_locks_writes_needs_its_credentials_and_is_refused_at_once_without() {
    let sims = gammas(1, None).await;
    sims.set_quirks(0, locked(false));
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("metrics.db");
    drop(Ledger::open(&database).unwrap());
    let config = dir.path().join("config.yaml");
    let devices = vec![("guarded".to_string(), sims.addresses()[0])];
    let plain = crate::support::config_yaml(&devices, 5.0, "127.0.0.1:0", &database);
    std::fs::write(&config, &plain).unwrap();
    let apply = ["session", "start", "--device", "guarded", "--freq", "600", "--apply"];

    // Reads are open, so the targets are checked (info, asic); the PATCH is refused, and
    // that is the end: no read-back waiting for a change that cannot come.
    let output = cli(&config, &apply);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains(ASKS), "{}", stderr(&output));
    assert_eq!((sims.writes(0), sims.restarts(0)), (1, 0), "one PATCH, nothing more");
    assert_eq!(
        sims.requests(0),
        3,
        "the refused write was read back as if it could still apply"
    );
    assert_eq!(sims.clock_and_temperature(0).unwrap().0, 525.0);
    let listed = cli(&config, &["session", "list", "--format", "json"]);
    assert_eq!(stdout(&listed).trim(), "[]", "a refused apply recorded a session");

    // With the password from the environment, it is applied and read back.
    std::fs::write(
        &config,
        with_device_keys(
            &plain,
            "guarded",
            &["username: admin", "password_env: GUARDED_PASSWORD"],
        ),
    )
    .unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(apply)
        .env("GUARDED_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(!leaks(&[output.stdout, output.stderr].concat(), PASSWORD));
    assert_eq!(sims.clock_and_temperature(0).unwrap().0, 600.0);
    sims.shutdown().await;
}

#[tokio::test]
async fn every_request_carries_the_credentials_and_a_refusal_is_its_own_kind() {
    let response = b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"AxeOS\"\r\nContent-Type: text/html\r\nContent-Length: 12\r\nConnection: close\r\n\r\nUnauthorized".to_vec();
    let (mut address, mut heads) = raw_server(response).await;
    address.credentials = Some(std::sync::Arc::new(Credentials {
        username: USER.into(),
        password: Secret::new(PASSWORD),
        device: "rig".into(),
    }));
    let client = AxeOsClient::new(Duration::from_secs(2), Duration::ZERO).unwrap();
    let patch = SettingsPatch {
        frequency: Some(600.0),
        core_voltage: None,
    };
    let checked: CheckedPatch = SettingsWindow::for_miner(Some("BM1370"), None).check(&patch).unwrap();
    let errors = [
        client.system_info(&address).await.unwrap_err(),
        client.asic_options(&address).await.unwrap_err(),
        client.patch_settings(&address, &checked).await.unwrap_err(),
        client.restart(&address).await.unwrap_err(),
        client.pause(&address).await.unwrap_err(),
    ];
    let expected = format!(
        "authorization: basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
    .to_ascii_lowercase();
    for error in &errors {
        assert_eq!(error.kind(), PollErrorKind::Auth, "{error}");
        assert_eq!(error.to_string(), refused("rig"));
        assert!(!format!("{error:?} {address:?}").contains(PASSWORD));
        let head = heads.recv().await.unwrap().to_ascii_lowercase();
        assert!(head.contains(&expected), "{head}");
    }
    // Without credentials nothing is sent, and the message says what to configure.
    address.credentials = None;
    let error = client.system_info(&address).await.unwrap_err();
    assert!(
        matches!(error, PollError::Unauthorized { refused: None, .. }),
        "{error}"
    );
    assert_eq!(error.to_string(), ASKS);
    assert!(!heads
        .recv()
        .await
        .unwrap()
        .to_ascii_lowercase()
        .contains("authorization"));
}

/// `count` consecutive free ports on 127.0.0.1.
fn free_range(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + fastrand::u16(0..40_000);
        if (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

fn discover(ports: &str, extra: &[&str]) -> Output {
    Command::new(BIN)
        .args([
            "discover",
            "--no-mdns",
            "--subnet",
            "127.0.0.1/32",
            "--port",
            ports,
            "--timeout",
            "2",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn discover_lists_a_miner_that_locks_reads_as_needing_credentials() {
    // An open miner, one that locks reads, one that locks only writes.
    let base = free_range(3);
    let sims = gammas(3, Some(base)).await;
    sims.set_quirks(1, locked(true));
    sims.set_quirks(2, locked(false));
    let ports = format!("{base}-{}", base + 2);
    let locked_at = format!("127.0.0.1:{}", base + 1);

    let output = discover(&ports, &["--format", "json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let found: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found.len(), 3, "{found:#?}");
    for miner in &found {
        let needs = miner["address"] == locked_at.as_str();
        let status = if needs { "needs_credentials" } else { "ok" };
        assert_eq!(miner["status"], status, "{miner:#}");
        assert_eq!(miner["model"].is_null(), needs, "{miner:#}");
    }

    let table = stdout(&discover(&ports, &[]));
    let row = table
        .lines()
        .find(|l| l.contains(&locked_at))
        .unwrap_or_else(|| panic!("{table}"));
    // The 80-column table wraps the cell: "needs" on the row's first line.
    assert!(row.contains("needs"), "{table}");
    assert!(table.contains("1 of them need(s) credentials"), "{table}");

    // Added to a config with a note of what it needs; the config still loads.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "devices: []\n").unwrap();
    let output = discover(&ports, &["--add-to", config.to_str().unwrap()]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = std::fs::read_to_string(&config).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(&locked_at))
        .unwrap_or_else(|| panic!("{text}"));
    let entry = text.lines().skip(line.saturating_sub(1)).take(2).collect::<String>();
    assert!(entry.contains("needs credentials"), "{text}");
    assert!(cli(&config, &["check-config"]).status.success());
    sims.shutdown().await;
}

/// `check-config` on a config whose one device has `keys`; (exit code, stderr).
fn check_device_keys(dir: &Path, keys: &[&str]) -> (Option<i32>, String) {
    let devices = vec![("rig".to_string(), SocketAddr::from(([192, 0, 2, 1], 80)))];
    let yaml = crate::support::config_yaml(&devices, 30.0, "127.0.0.1:0", &dir.join("ledger.db"));
    let config = dir.join("config.yaml");
    std::fs::write(&config, with_device_keys(&yaml, "rig", keys)).unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("check-config")
        .env_remove("RIG_PASSWORD_UNSET")
        .output()
        .unwrap();
    (output.status.code(), format!("{}{}", stderr(&output), stdout(&output)))
}

#[test]
fn credential_mistakes_in_the_config_name_the_key_the_line_and_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // The device entry starts on line 2 (`devices:` is line 1): name 2, ip 3, then the keys.
    for (keys, key, line, also) in [
        (
            &["username: admin", "password_file: missing.pass"][..],
            "devices[0].password_file",
            5,
            "missing.pass",
        ),
        (
            &["password_file: rig.pass"][..],
            "devices[0].password_file",
            4,
            "no username",
        ),
        (
            &["username: admin", "password: \"inline\"", "password_file: rig.pass"][..],
            "devices[0].password_file",
            6,
            "both password and password_file",
        ),
        (
            &["username: admin", "password_env: RIG_PASSWORD_UNSET"][..],
            "devices[0].password_env",
            5,
            "RIG_PASSWORD_UNSET is not set",
        ),
        (&["username: admin"][..], "devices[0].username", 4, "no password"),
        (
            &["username: admin", "password: 918273645"][..],
            "devices[0].password",
            5,
            "quoted string",
        ),
    ] {
        let (code, message) = check_device_keys(dir, keys);
        assert_eq!(code, Some(2), "{keys:?}: {message}");
        assert!(
            message.contains(&format!("config.yaml:{line}: {key}: ")),
            "{keys:?}: {message}"
        );
        assert!(message.contains(also), "{keys:?}: {message}");
        assert!(
            message.contains("\"rig\"") || key == "devices[0].password",
            "{keys:?}: {message}"
        );
        assert!(
            !message.contains("918273645") && !message.contains("inline"),
            "{message}"
        );
    }
    // Right: the file is read (its trailing newline dropped) and nothing of it is shown.
    std::fs::write(dir.join("rig.pass"), format!("{PASSWORD}\n")).unwrap();
    let (code, message) = check_device_keys(dir, &["username: admin", "password_file: rig.pass"]);
    assert_eq!(code, Some(0), "{message}");
    assert!(message.contains("1 with credentials"), "{message}");
    assert!(!leaks(message.as_bytes(), PASSWORD));
}

#[test]
fn credentials_written_into_the_address_are_pointed_to_their_keys_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    for ip in [
        "admin:hunter2hunter2@10.0.0.5",
        "admin:hunter2hunter2@10.0.0.5:80",
        "hunter2hunter2@10.0.0.5",
    ] {
        std::fs::write(&config, format!("devices:\n  - name: rig\n    ip: \"{ip}\"\n")).unwrap();
        let output = cli(&config, &["check-config"]);
        let message = format!("{}{}", stderr(&output), stdout(&output));
        assert_eq!(output.status.code(), Some(2), "{ip}: {message}");
        assert!(message.contains("devices[0].ip"), "{ip}: {message}");
        assert!(message.contains("password_file"), "{ip}: {message}");
        assert!(!message.contains("hunter2hunter2"), "{ip}: {message}");
    }
}
