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
            .query_row("SELECT count(*) FROM samples", [], |r| r.get(0))
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
    while count("SELECT count(*) FROM samples") <= stored_before {
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
