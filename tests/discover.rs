//! `discover` against simulated miners on loopback: five miners of three firmware eras, a
//! miner answering garbage and a web server that is not AxeOS; the found ones printed and
//! added to a commented config without touching what was there.

use std::net::TcpListener;

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet};
use serde_json::Value;
use std::time::Duration;

use crate::support::cli;

/// Seven consecutive free ports on 127.0.0.1 (checked by binding them).
fn free_range(count: u16) -> u16 {
    for _ in 0..200 {
        let base = 20_000 + fastrand::u16(0..40_000);
        let all_free = (0..count).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if all_free {
            return base;
        }
    }
    panic!("no {count} consecutive free ports");
}

/// Five miners (v2.0, v2.10, v2.15), a garbage answer, and a plain web server.
async fn lan() -> (SimFleet, u16, tokio::task::JoinHandle<()>) {
    let base = free_range(7);
    let mut specs = vec![
        MinerSpec::new(Board::Max, Dialect::V2_0, 1),
        MinerSpec::new(Board::Supra, Dialect::V2_10, 2),
        MinerSpec::new(Board::Gamma, Dialect::V2_15, 3),
        MinerSpec::new(Board::Gamma, Dialect::V2_15, 4),
        MinerSpec::new(Board::Hex, Dialect::V2_15, 5),
        MinerSpec::new(Board::Gamma, Dialect::V2_15, 6),
    ];
    specs[2].hostname = "bitaxe-gamma".into();
    specs[3].hostname = "bitaxe-gamma".into();
    specs[5].fault = Fault::Garbage;
    let sims = SimFleet::start(&specs, Some(base)).await.unwrap();
    // A router's web page on the seventh port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", base + 6)).await.unwrap();
    let web = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf).await;
            let body = "<html><body>router login</body></html>";
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
    });
    (sims, base, web)
}

/// `discover` reads no config file (it refuses `--config`): the command alone.
fn run(args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::support::BIN)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_finds_exactly_the_miners_with_their_models_and_firmware() {
    let (sims, base, web) = lan().await;
    let ports = format!("{base}-{}", base + 6);
    let output = run(&[
        "discover",
        "--no-mdns",
        "--subnet",
        "127.0.0.1/32",
        "--port",
        &ports,
        "--timeout",
        "2",
        "--format",
        "json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(found.len(), 5, "{found:#?}");
    let by_port = |port: u16| {
        found
            .iter()
            .find(|f| f["address"] == format!("127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("nothing at {port}: {found:#?}"))
    };
    assert_eq!(by_port(base)["model"], "BM1397");
    assert!(by_port(base)["firmware"].as_str().unwrap().starts_with("v2.0"));
    assert_eq!(by_port(base + 1)["model"], "BM1368");
    assert!(by_port(base + 1)["firmware"].as_str().unwrap().starts_with("v2.10"));
    assert_eq!(by_port(base + 4)["model"], "BM1366");
    assert!(by_port(base + 4)["firmware"].as_str().unwrap().starts_with("v2.15"));
    // Two miners with one hostname get two names; sorted by name.
    let names: Vec<&str> = found.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"bitaxe-gamma") && names.contains(&"bitaxe-gamma-2"),
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
    // Nothing was written to any miner.
    for i in 0..6 {
        assert_eq!(sims.writes(i), 0);
    }
    // The table names them too; a public subnet is refused with the reason.
    let table = run(&[
        "discover",
        "--no-mdns",
        "--subnet",
        "127.0.0.1",
        "--port",
        &ports,
        "--timeout",
        "2",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("5 miner(s) found"), "{text}");
    assert_eq!(text.matches("127.0.0.1:").count(), 5, "{text}");
    let public = run(&["discover", "--subnet", "8.8.8.0/24"]);
    assert_eq!(public.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&public.stderr).contains("--allow-public"));
    web.abort();
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_keeps_the_config_as_it_was_adds_the_new_miners_once_and_checks_the_result() {
    let (sims, base, web) = lan().await;
    let ports = format!("{base}-{}", base + 6);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = format!(
        "# The shelf in the garage.\ndevices:\n  - name: \"max-old\"   # bought 2023\n    ip: \"127.0.0.1:{base}\"\n\n# Poll gently.\nlogging:\n  poll_interval: 30\n  database_path: \"./metrics.db\"\n"
    );
    std::fs::write(&config, &original).unwrap();
    let args = [
        "discover",
        "--no-mdns",
        "--subnet",
        "127.0.0.1/32",
        "--port",
        &ports,
        "--timeout",
        "2",
        "--add-to",
    ];
    let mut with_config: Vec<&str> = args.to_vec();
    let config_arg = config.to_str().unwrap().to_string();
    with_config.push(&config_arg);
    let first = run(&with_config);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let edited = std::fs::read_to_string(&config).unwrap();
    // What was there is there, in order, comments included; the four new miners follow.
    assert!(
        edited.starts_with("# The shelf in the garage.\ndevices:\n  - name: \"max-old\"   # bought 2023\n"),
        "{edited}"
    );
    assert!(
        edited.contains("\n# Poll gently.\nlogging:\n  poll_interval: 30\n"),
        "{edited}"
    );
    assert_eq!(edited.matches("- name:").count(), 5, "{edited}");
    assert!(!edited.contains(&format!("\"127.0.0.1:{base}\"\n    ip")), "{edited}");
    assert_eq!(
        edited.matches(&format!("127.0.0.1:{base}\"")).count(),
        1,
        "the known miner twice:\n{edited}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.yaml.bak")).unwrap(),
        original
    );
    let check = cli(&config, &["check-config"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(String::from_utf8_lossy(&check.stdout).contains("5 device(s)"));

    // A second run adds nothing.
    let second = run(&with_config);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("nothing to add"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
    web.abort();
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_follows_a_miner_to_its_new_address_and_keeps_one_history() {
    let new_port = free_range(1);
    let spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 42);
    let before = SimFleet::start(std::slice::from_ref(&spec), None).await.unwrap();
    let discovery = format!(
        "discovery:\n  enabled: true\n  subnets: [\"127.0.0.1/32\"]\n  ports: \"{new_port}\"\n  rescan_minutes: 0.02\n"
    );
    let exporter =
        crate::support::InProcess::start_with(&[("rig".to_string(), before.addresses()[0])], 1.0, &discovery).await;
    exporter
        .wait_for(Duration::from_secs(10), "rig up", |e| e.up("rig") == Some(1.0))
        .await;
    // Stored before the move.
    let database = exporter.database_path();
    let stored = || -> i64 {
        crate::support::sql(&database)
            .query_row("SELECT coalesce(sum(samples), 0) FROM sample_blocks", [], |r| r.get(0))
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while stored() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing stored before the move");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The miner comes back on another address (DHCP gave it a new lease): same MAC.
    let old_address = before.addresses()[0].to_string();
    before.shutdown().await;
    // What the writer still held from before the move is committed within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stored_before = stored();
    let after = SimFleet::start(&[spec], Some(new_port)).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while after.requests(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "serve never polled the new address"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    exporter
        .wait_for(Duration::from_secs(10), "rig polled at its new address", |e| {
            e.value("bitaxe_last_poll_success", &[("device", "rig")]) == Some(1.0) && e.up("rig") == Some(1.0)
        })
        .await;
    // One device in the ledger, with samples from after the move too (the writer commits
    // every second).
    let count = |sql: &str| -> i64 {
        crate::support::sql(&exporter.database_path())
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while count("SELECT coalesce(sum(samples), 0) FROM sample_blocks") <= stored_before {
        assert!(std::time::Instant::now() < deadline, "no sample stored after the move");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count("SELECT count(*) FROM devices"), 1);
    // The config file is left as it was: it still names the old address.
    let config = std::fs::read_to_string(exporter.config_path()).unwrap();
    assert!(config.contains(&old_address), "{config}");
    after.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_miner_announced_over_mdns_is_found_without_a_subnet_scan() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 77)], None)
        .await
        .unwrap();
    let port = sims.addresses()[0].port();
    // An in-process responder announcing the miner as firmware v2.15 does, on loopback.
    let responder = mdns_sd::ServiceDaemon::new().unwrap();
    let service = mdns_sd::ServiceInfo::new(
        "_axeos._sub._http._tcp.local.",
        "bitaxe-mdns",
        "bitaxe-mdns.local.",
        "127.0.0.1",
        port,
        None::<std::collections::HashMap<String, String>>,
    )
    .unwrap();
    responder.register(service).unwrap();
    let mut last = None;
    for _ in 0..3 {
        let output = run(&["discover", "--mdns-only", "--mdns-wait", "4", "--format", "json"]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let found: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
        if found
            .iter()
            .any(|f| f["address"] == format!("127.0.0.1:{port}") && f["model"] == "BM1370")
        {
            let _ = responder.shutdown();
            sims.shutdown().await;
            return;
        }
        last = Some((found, String::from_utf8_lossy(&output.stderr).to_string()));
    }
    // Multicast on loopback is the platform's to allow; where it does not carry even an
    // in-process browse, the test says so instead of failing.
    let seen = tokio::task::spawn_blocking(|| bitaxe_exporter::axeos::discover::mdns_browse(Duration::from_secs(4)))
        .await
        .unwrap()
        .unwrap_or_default();
    let _ = responder.shutdown();
    if !seen.iter().any(|(_, p)| *p == port) {
        eprintln!("multicast on loopback is not available here: the mDNS path is not exercised");
        sims.shutdown().await;
        return;
    }
    panic!("an mDNS browse sees the miner, but `discover --mdns-only` did not: {last:#?}");
}

/// `discover --add-to CONFIG` over the miners on `ports` of 127.0.0.1.
fn add_to(config: &std::path::Path, ports: &str, timeout: &str) -> std::process::Output {
    run(&[
        "discover",
        "--no-mdns",
        "--subnet",
        "127.0.0.1/32",
        "--port",
        ports,
        "--timeout",
        timeout,
        "--add-to",
        config.to_str().unwrap(),
    ])
}

/// One simulated miner and its port.
async fn one_miner(seed: u64) -> (SimFleet, u16) {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, seed)], None)
        .await
        .unwrap();
    let port = sims.addresses()[0].port();
    (sims, port)
}

/// The (name, ip) of each device the config file lists, as `check-config`'s loader reads it.
fn configured(config: &std::path::Path) -> Vec<(String, String)> {
    bitaxe_exporter::config::load(config)
        .unwrap_or_else(|e| panic!("{e}"))
        .devices
        .iter()
        .map(|d| (d.name.clone(), d.address.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_a_flow_list_keeps_its_devices() {
    let (sims, port) = one_miner(11).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = "devices: [{name: a, ip: \"10.0.0.9\"}, {name: b, ip: \"10.0.0.8:8080\"}]   # the shelf\nlogging:\n  poll_interval: 30\n";
    std::fs::write(&config, original).unwrap();
    let output = add_to(&config, &port.to_string(), "2");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let devices = configured(&config);
    let edited = std::fs::read_to_string(&config).unwrap();
    assert_eq!(devices.len(), 3, "{edited}");
    assert_eq!(devices[0], ("a".to_string(), "10.0.0.9:80".to_string()), "{edited}");
    assert_eq!(devices[1], ("b".to_string(), "10.0.0.8:8080".to_string()), "{edited}");
    assert_eq!(devices[2].1, format!("127.0.0.1:{port}"), "{edited}");
    assert!(
        edited.contains("# the shelf\nlogging:\n  poll_interval: 30\n"),
        "{edited}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("config.yaml.bak")).unwrap(),
        original
    );

    // A list behind an anchor is not rewritten: refused, exit 2, the file as it was, and
    // the entries printed to add by hand.
    let anchored = "devices: &shelf\n  - name: a\n    ip: \"10.0.0.9\"\n";
    std::fs::write(&config, anchored).unwrap();
    let refused = add_to(&config, &port.to_string(), "2");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unchanged"));
    assert!(String::from_utf8_lossy(&refused.stdout).contains(&format!("ip: \"127.0.0.1:{port}\"")));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), anchored);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_edits_the_file_a_symlink_names_and_keeps_its_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let (sims, port) = one_miner(12).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("shared")).unwrap();
    let target = dir.path().join("shared/bitaxe.yaml");
    let original = "devices:\n  - name: a\n    ip: \"10.0.0.9\"\n";
    std::fs::write(&target, original).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = dir.path().join("config.yaml");
    std::os::unix::fs::symlink("shared/bitaxe.yaml", &link).unwrap();
    let output = add_to(&link, &port.to_string(), "2");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the symlink was replaced by a file"
    );
    assert_eq!(configured(&target).len(), 2, "the file the link names was not edited");
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
        0o640,
        "the edited file lost its mode"
    );
    let backup = dir.path().join("config.yaml.bak");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o7777, 0o640);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_refuses_a_read_only_config() {
    use std::os::unix::fs::PermissionsExt as _;
    let (sims, port) = one_miner(13).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = "devices:\n  - name: a\n    ip: \"10.0.0.9\"\n";
    std::fs::write(&config, original).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Root could write it anyway; the mode still says no.
    let output = add_to(&config, &port.to_string(), "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("read-only"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777, 0o444);
    assert!(!dir.path().join("config.yaml.bak").exists());
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_keeps_crlf_line_endings() {
    let (sims, port) = one_miner(14).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = "# written on Windows\r\ndevices:\r\n  - name: a\r\n    ip: \"10.0.0.9\"\r\n\r\nlogging:\r\n  poll_interval: 30\r\n";
    std::fs::write(&config, original).unwrap();
    let output = add_to(&config, &port.to_string(), "2");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let edited = std::fs::read_to_string(&config).unwrap();
    assert_eq!(configured(&config).len(), 2, "{edited:?}");
    assert_eq!(
        edited.matches('\n').count(),
        edited.matches("\r\n").count(),
        "a line lost its CRLF: {edited:?}"
    );
    assert!(
        edited.starts_with("# written on Windows\r\ndevices:\r\n  - name: a\r\n"),
        "{edited:?}"
    );
    assert!(
        edited.ends_with("\r\n\r\nlogging:\r\n  poll_interval: 30\r\n"),
        "{edited:?}"
    );
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_accepts_and_keeps_a_byte_order_mark() {
    let (sims, port) = one_miner(15).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let original = "\u{feff}devices:\n  - name: a\n    ip: \"10.0.0.9\"\n";
    std::fs::write(&config, original).unwrap();
    let output = add_to(&config, &port.to_string(), "2");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let edited = std::fs::read_to_string(&config).unwrap();
    assert!(edited.starts_with("\u{feff}devices:\n  - name: a\n"), "{edited:?}");
    assert_eq!(edited.matches('\u{feff}').count(), 1, "{edited:?}");
    assert_eq!(edited.matches("devices:").count(), 1, "{edited:?}");
    assert_eq!(configured(&config).len(), 2, "{edited:?}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_concurrent_add_to_runs_both_end_up_in_the_file() {
    // Miner 0 and the hanging miner 1 are scanned by the first run, which so spends its
    // whole timeout scanning after it read the config; miner 2 is added by a second run
    // meanwhile.
    let base = free_range(3);
    let mut specs = vec![
        MinerSpec::new(Board::Gamma, Dialect::V2_15, 21),
        MinerSpec::new(Board::Gamma, Dialect::V2_15, 22),
        MinerSpec::new(Board::Supra, Dialect::V2_10, 23),
    ];
    specs[1].fault = Fault::Hang;
    let sims = SimFleet::start(&specs, Some(base)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "devices:\n  - name: a\n    ip: \"10.0.0.9\"\n").unwrap();
    let slow = std::process::Command::new(crate::support::BIN)
        .args([
            "discover",
            "--no-mdns",
            "--subnet",
            "127.0.0.1/32",
            "--port",
            &format!("{base}-{}", base + 1),
            "--timeout",
            "6",
            "--add-to",
            config.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The first run reads the config before it scans; once the hanging miner is asked, it
    // has.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while sims.requests(1) == 0 {
        assert!(std::time::Instant::now() < deadline, "the first run never scanned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let quick = add_to(&config, &(base + 2).to_string(), "2");
    assert!(quick.status.success(), "{}", String::from_utf8_lossy(&quick.stderr));
    let slow = slow.wait_with_output().unwrap();
    assert!(slow.status.success(), "{}", String::from_utf8_lossy(&slow.stderr));
    let addresses: Vec<String> = configured(&config).into_iter().map(|(_, ip)| ip).collect();
    for port in [base, base + 2] {
        assert!(
            addresses.contains(&format!("127.0.0.1:{port}")),
            "127.0.0.1:{port} was lost: {addresses:?}\n{}",
            std::fs::read_to_string(&config).unwrap()
        );
    }
    assert_eq!(addresses.len(), 3, "{addresses:?}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_an_empty_file_or_device_list_starts_it() {
    let (sims, port) = one_miner(16).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    for original in ["", "devices: []   # none yet\nlogging:\n  poll_interval: 30\n"] {
        std::fs::write(&config, original).unwrap();
        let output = add_to(&config, &port.to_string(), "2");
        assert!(
            output.status.success(),
            "{original:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let devices = configured(&config);
        assert_eq!(devices.len(), 1, "{original:?}");
        assert_eq!(devices[0].1, format!("127.0.0.1:{port}"));
        let check = cli(&config, &["check-config"]);
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    }
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("devices:   # none yet\n"));
    // A config with another fault is still refused before the scan, as check-config would.
    std::fs::write(&config, "devices: []\nlogging:\n  poll_interval: 0\n").unwrap();
    let refused = add_to(&config, &port.to_string(), "2");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("poll_interval"));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scan_names_each_miners_board_and_firmware_family() {
    let base = free_range(3);
    let specs = [
        MinerSpec::new(Board::NerdQAxePlusPlus, Dialect::NerdQaxe, 11),
        MinerSpec::new(Board::LuckyLV07, Dialect::Lucky, 12),
        MinerSpec::new(Board::GammaHex, Dialect::V2_15, 13),
    ];
    let sims = SimFleet::start(&specs, Some(base)).await.unwrap();
    let ports = format!("{base}-{}", base + 2);
    let scan = |format: &str| {
        run(&[
            "discover",
            "--no-mdns",
            "--subnet",
            "127.0.0.1/32",
            "--port",
            &ports,
            "--timeout",
            "2",
            "--format",
            format,
        ])
    };
    let output = scan("json");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let at = |port: u16| {
        let f = found
            .iter()
            .find(|f| f["address"] == format!("127.0.0.1:{port}"))
            .unwrap_or_else(|| panic!("nothing at {port}: {found:#?}"));
        (
            f["board"].as_str().unwrap_or("").to_string(),
            f["firmware_family"].as_str().unwrap_or("").to_string(),
        )
    };
    assert_eq!(at(base), ("NerdQAxe++".to_string(), "nerdqaxe".to_string()));
    assert_eq!(at(base + 1), ("LV07".to_string(), "lucky".to_string()));
    assert_eq!(at(base + 2), ("Gamma Hex".to_string(), "esp-miner".to_string()));
    let table = String::from_utf8_lossy(&scan("table").stdout).into_owned();
    assert!(table.contains("(nerdqaxe)") && table.contains("(lucky)"), "{table}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_to_a_missing_file_or_the_copied_example_creates_a_config_of_the_found_miners() {
    let (sims, port) = one_miner(17).await;
    let dir = tempfile::tempdir().unwrap();

    // First run: no config.yaml at all.
    let config = dir.path().join("config.yaml");
    let output = add_to(&config, &port.to_string(), "2");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("created with 1 miner(s)"), "{stderr}");
    assert_eq!(
        configured(&config),
        [(configured(&config)[0].0.clone(), format!("127.0.0.1:{port}"))]
    );
    let check = cli(&config, &["check-config"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // A created file has no previous version to keep.
    assert!(!dir.path().join("config.yaml.bak").exists());

    // config.yaml.example copied as the README says: only the miner found is polled (no
    // placeholder miner survives), and every documented key is still there.
    let copied = dir.path().join("copied.yaml");
    std::fs::copy(crate::support::repo_path("config.yaml.example"), &copied).unwrap();
    let output = add_to(&copied, &port.to_string(), "2");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let devices = configured(&copied);
    assert_eq!(devices.len(), 1, "{devices:?}");
    assert_eq!(devices[0].1, format!("127.0.0.1:{port}"));
    assert!(std::fs::read_to_string(&copied)
        .unwrap()
        .contains("protective_action_dry_run"));

    // No miner found: no file is left behind (an empty one would not load).
    let nothing = dir.path().join("nothing.yaml");
    let closed = free_range(1);
    let output = add_to(&nothing, &closed.to_string(), "0.3");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!nothing.exists());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not created"));

    // A folder that does not exist is refused before the scan.
    let output = add_to(&dir.path().join("no/such/config.yaml"), &port.to_string(), "2");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    sims.shutdown().await;
}
