//! The simulator as an AxeOS client sees it: endpoints per firmware era and family,
//! settings that change the physics (at once, or only after a restart where the firmware
//! does that), the NerdQAxe fork's integer-only PATCH, mining faults and reboots as the
//! body reports them, and the thermal lag.

use std::time::Duration;

use bitaxe_exporter::axeos::sample::decode_system_info;
use bitaxe_exporter::sim::dialects::{Dialect, ResetReason};
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet, RESTART_DOWNTIME};
use serde_json::Value;

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn endpoints_follow_the_firmware_era() {
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Ultra, Dialect::V2_4, 1),
            MinerSpec::new(Board::Hex, Dialect::V2_15, 2),
        ],
        None,
    )
    .await
    .unwrap();
    let (old, new) = (sims.addresses()[0], sims.addresses()[1]);
    let client = no_redirects();

    // v2.4: no /api/system/asic; unknown API paths redirect to the web UI.
    let response = client
        .get(format!("http://{old}/api/system/asic"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/");

    // v2.15: the ASIC endpoint, and a JSON 404 for unknown API paths.
    let body = client
        .get(format!("http://{new}/api/system/asic"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let asic: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(asic["asicCount"], 6);
    assert_eq!(asic["ASICModel"], "BM1366");
    let response = client.get(format!("http://{new}/api/nope")).send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), r#"{"error":"unknown route"}"#);

    // The info bodies decode as their era: v2.15 omits asicCount, numeric diffs.
    let body = client
        .get(format!("http://{new}/api/system/info"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(raw.get("asicCount").is_none());
    assert!(raw["bestDiff"].is_u64());
    let sample = decode_system_info(&body).unwrap();
    assert_eq!(sample.asic_count, Some(6));
    let body = client
        .get(format!("http://{old}/api/system/info"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(raw["bestDiff"].is_string());
    assert_eq!(raw["asicCount"], 1);
    sims.shutdown().await;
}

#[tokio::test]
async fn v2_15_rejects_out_of_range_settings_and_older_firmware_truncates_frequency() {
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Gamma, Dialect::V2_15, 3),
            MinerSpec::new(Board::Ultra, Dialect::V2_4, 4),
        ],
        None,
    )
    .await
    .unwrap();
    let client = no_redirects();
    let patch = |i: usize, body: &'static str| {
        client
            .patch(format!("http://{}/api/system", sims.addresses()[i]))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = patch(0, r#"{"frequency": 0, "coreVoltage": 1200}"#).await.unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.text().await.unwrap(), "Wrong API input");
    assert_eq!(
        sims.clock_and_temperature(0).unwrap().1,
        1150.0,
        "nothing written after a 400"
    );

    assert_eq!(patch(1, r#"{"frequency": 512.5}"#).await.unwrap().status(), 200);
    assert_eq!(
        sims.clock_and_temperature(1).unwrap().0,
        512.0,
        "integer frequency before v2.10"
    );
    sims.shutdown().await;
}

#[tokio::test]
async fn temperature_follows_a_retune_with_a_lag() {
    let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, 5);
    spec.time_scale = 100.0;
    let sims = SimFleet::start(&[spec], None).await.unwrap();
    let (_, _, before) = sims.clock_and_temperature(0).unwrap();
    let response = no_redirects()
        .patch(format!("http://{}/api/system", sims.addresses()[0]))
        .body(r#"{"frequency": 800, "coreVoltage": 1300}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    tokio::time::sleep(Duration::from_millis(100)).await; // 10 simulated seconds
    let (_, _, early) = sims.clock_and_temperature(0).unwrap();
    tokio::time::sleep(Duration::from_millis(3000)).await; // 300 simulated seconds
    let (freq, mv, settled) = sims.clock_and_temperature(0).unwrap();
    assert_eq!((freq, mv), (800.0, 1300.0));
    assert!(before < early && early < settled, "{before} -> {early} -> {settled}");
    assert!(
        settled > 65.0,
        "an 800 MHz / 1300 mV Gamma runs above the warning threshold: {settled}"
    );
    sims.shutdown().await;
}

async fn info(address: std::net::SocketAddr) -> Value {
    let body = no_redirects()
        .get(format!("http://{address}/api/system/info"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn send(address: std::net::SocketAddr, method: reqwest::Method, path: &str, body: &str) -> (u16, String) {
    let response = no_redirects()
        .request(method, format!("http://{address}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits until the miner answers again after a restart.
async fn back_up(address: std::net::SocketAddr) {
    tokio::time::sleep(RESTART_DOWNTIME).await;
    for _ in 0..50 {
        if no_redirects()
            .get(format!("http://{address}/api/system/info"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{address} did not come back");
}

#[tokio::test(flavor = "multi_thread")]
async fn firmware_before_2_2_and_lucky_store_a_setting_at_once_and_run_it_only_after_a_restart() {
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Max, Dialect::V2_0, 20),
            MinerSpec::new(Board::LuckyLV07, Dialect::Lucky, 21),
            MinerSpec::new(Board::Ultra, Dialect::V2_4, 22),
        ],
        None,
    )
    .await
    .unwrap();
    for (i, (target_f, target_v)) in [(450.0, 1350.0), (525.0, 1250.0), (525.0, 1250.0)]
        .into_iter()
        .enumerate()
    {
        let address = sims.addresses()[i];
        let before = sims.clock_and_temperature(i).unwrap();
        let hashrate_before = info(address).await["hashRate"].as_f64().unwrap();
        let body = format!(r#"{{"frequency": {target_f}, "coreVoltage": {target_v}}}"#);
        assert_eq!(send(address, reqwest::Method::PATCH, "/api/system", &body).await.0, 200);
        // Every firmware reads the new settings back at once …
        let read = info(address).await;
        assert_eq!(
            (read["frequency"].as_f64(), read["coreVoltage"].as_f64()),
            (Some(target_f), Some(target_v)),
            "miner {i}: {read:#}"
        );
        let running = sims.clock_and_temperature(i).unwrap();
        if i == 2 {
            // … v2.4 runs them too.
            assert_eq!((running.0, running.1), (target_f, target_v));
            assert_eq!(sims.stored_clock(i), None);
            continue;
        }
        // … v2.0 and Lucky's stock build still run the old clock, and hash at it.
        assert_eq!((running.0, running.1), (before.0, before.1), "miner {i}");
        assert_eq!(sims.stored_clock(i), Some((target_f, target_v)));
        let hashrate_now = read["hashRate"].as_f64().unwrap();
        assert!(
            (hashrate_now / hashrate_before - 1.0).abs() < 0.1,
            "miner {i}: {hashrate_before} -> {hashrate_now} GH/s before the restart"
        );
        let (status, text) = send(address, reqwest::Method::POST, "/api/system/restart", "").await;
        assert_eq!((status, text.as_str()), (200, "System will restart shortly."));
        back_up(address).await;
        let after = sims.clock_and_temperature(i).unwrap();
        assert_eq!((after.0, after.1), (target_f, target_v), "miner {i} after the restart");
        assert_eq!(sims.stored_clock(i), None);
        let read = info(address).await;
        assert!(
            read["hashRate"].as_f64().unwrap() > hashrate_before * target_f / before.0 * 0.9,
            "miner {i} hashes at the new clock: {read:#}"
        );
        assert_eq!(sims.restarts(i), 1);
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nerdqaxe_applies_integer_settings_live_and_ignores_any_other_number() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::NerdQAxePlusPlus, Dialect::NerdQaxe, 30)], None)
        .await
        .unwrap();
    let address = sims.addresses()[0];
    for ignored in [
        r#"{"frequency": 575.0, "coreVoltage": 1140.0}"#,
        r#"{"frequency": "575", "coreVoltage": "1140"}"#,
        r#"{"frequency": 0}"#,
        r#"{"frequency": 70000}"#,
    ] {
        let (status, _) = send(address, reqwest::Method::PATCH, "/api/system", ignored).await;
        assert_eq!(status, 200, "answered like any PATCH: {ignored}");
        let (f, v, _) = sims.clock_and_temperature(0).unwrap();
        assert_eq!((f, v), (600.0, 1150.0), "{ignored} changed nothing");
        assert_eq!(info(address).await["frequency"], 600);
    }
    let (status, _) = send(
        address,
        reqwest::Method::PATCH,
        "/api/system",
        r#"{"frequency": 575, "coreVoltage": 1140}"#,
    )
    .await;
    assert_eq!(status, 200);
    let (f, v, _) = sims.clock_and_temperature(0).unwrap();
    assert_eq!((f, v), (575.0, 1140.0), "integers apply at once, no restart");
    assert_eq!(sims.restarts(0), 0);
    assert_eq!(sims.patch_bodies(0).len(), 5);
    // Its own /api/system/asic option lists.
    let asic: Value =
        serde_json::from_str(&send(address, reqwest::Method::GET, "/api/system/asic", "").await.1).unwrap();
    assert_eq!(asic["deviceModel"], "NerdQAxe++");
    assert_eq!(asic["frequencyOptions"][0], 500);
    assert!(asic["voltageOptions"].as_array().unwrap().iter().all(Value::is_u64));
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mining_faults_and_reboots_show_in_the_body() {
    let mut hex = MinerSpec::new(Board::GammaHex, Dialect::V2_15, 40);
    hex.time_scale = 30.0;
    let mut nerd = MinerSpec::new(Board::NerdQAxePlusPlus, Dialect::NerdQaxe, 41);
    nerd.time_scale = 30.0;
    let sims = SimFleet::start(&[hex, nerd], None).await.unwrap();
    let (address, nerd_address) = (sims.addresses()[0], sims.addresses()[1]);
    let healthy = info(address).await;
    let monitor = |body: &Value| -> Vec<(f64, u64)> {
        body["hashrateMonitor"]["asics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["total"].as_f64().unwrap(), a["errorCount"].as_u64().unwrap()))
            .collect()
    };
    assert!(
        monitor(&healthy).iter().all(|(total, _)| *total > 1_000.0),
        "{healthy:#}"
    );
    assert_eq!(healthy["resetReason"], "Reset due to power-on event");

    // A dead chip: its total 0, its error counter climbing, the board a sixth down.
    let control = |address, body: &'static str| async move {
        assert_eq!(
            send(address, reqwest::Method::PATCH, "/__sim", body).await.0,
            200,
            "{body}"
        );
    };
    control(address, r#"{"fault": "dead_chip"}"#).await;
    let first = info(address).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = info(address).await;
    let (chips, later) = (monitor(&first), monitor(&second));
    assert_eq!(chips[5].0, 0.0, "{first:#}");
    assert!(later[5].1 > chips[5].1, "errorCount climbs: {chips:?} -> {later:?}");
    let board = first["hashRate"].as_f64().unwrap();
    let sum: f64 = chips.iter().map(|(t, _)| t).sum();
    assert!((sum - board).abs() < 0.1, "{sum} vs {board}");
    // The averages carry no read noise: one chip of six (they differ by a few percent).
    let lost = 1.0 - first["hashRate_1m"].as_f64().unwrap() / healthy["hashRate_1m"].as_f64().unwrap();
    assert!((0.155..0.178).contains(&lost), "one chip of six: {lost}");

    // A hardware fault: the string upstream prints, and no hashing.
    control(address, r#"{"fault": "hardware_fault"}"#).await;
    let faulted = info(address).await;
    assert_eq!(faulted["hardware_fault"], "Fan Control Failed (Auto)");
    assert_eq!(faulted["hashRate"], 0);

    // No work from the pool: workReceived and the shares stand still; the ASIC hashes on.
    control(address, r#"{"fault": "none"}"#).await;
    let a = info(address).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let b = info(address).await;
    assert!(b["workReceived"].as_u64() > a["workReceived"].as_u64(), "{a:#} {b:#}");
    assert!(b["totalHashes"].as_f64() > a["totalHashes"].as_f64());
    assert!(b.get("hardware_fault").is_none());
    control(address, r#"{"fault": "no_work"}"#).await;
    let c = info(address).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d = info(address).await;
    assert_eq!(c["workReceived"], d["workReceived"]);
    assert_eq!(c["sharesAccepted"], d["sharesAccepted"]);
    assert!(d["hashRate"].as_f64().unwrap() > 1_000.0);

    // A brownout reboot: the reason, counters since boot from zero, the lifetime total kept.
    control(
        address,
        r#"{"fault": "none", "reboot": 0.5, "reset_reason": "brownout"}"#,
    )
    .await;
    back_up(address).await;
    let rebooted = info(address).await;
    assert_eq!(rebooted["resetReason"], "Brownout reset (software or hardware)");
    assert!(rebooted["uptimeSeconds"].as_u64() < d["uptimeSeconds"].as_u64());
    assert!(rebooted["totalHashes"].as_f64() >= d["totalHashes"].as_f64());
    assert!(rebooted["workReceived"].as_u64() < d["workReceived"].as_u64());
    // An ordinary restart says so.
    send(address, reqwest::Method::POST, "/api/system/restart", "").await;
    back_up(address).await;
    assert_eq!(info(address).await["resetReason"], "Software reset via esp_restart");
    // The fork names it `lastResetReason`; a watchdog set in-process.
    sims.reboot_because(1, Duration::from_millis(300), ResetReason::TaskWatchdog);
    back_up(nerd_address).await;
    let nerd_body = info(nerd_address).await;
    assert_eq!(nerd_body["lastResetReason"], "Reset due to task watchdog");
    assert!(nerd_body.get("hashrateMonitor").is_none() && nerd_body.get("resetReason").is_none());
    // An unknown reason is refused with the list.
    let (status, text) = send(
        address,
        reqwest::Method::PATCH,
        "/__sim",
        r#"{"reboot": true, "reset_reason": "x"}"#,
    )
    .await;
    assert_eq!(status, 400);
    assert!(text.contains("brownout"), "{text}");
    sims.set_fault(0, Fault::None);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulator_speaks_like_the_fixtures_of_each_family_and_board() {
    // (fixture, board, dialect, whether the simulator sends every key the fixture has)
    let cases = [
        (
            "nerdqaxe-v1.0.37-nerdqaxe++.json",
            Board::NerdQAxePlusPlus,
            Dialect::NerdQaxe,
            true,
        ),
        ("lucky-1.1.0-lv07.json", Board::LuckyLV07, Dialect::Lucky, true),
        ("lucky-1.1.0-lv08.json", Board::LuckyLV08, Dialect::Lucky, true),
        ("v2.15.3-najaduo-1201.json", Board::NajaDuo, Dialect::V2_15, false),
        ("v2.15.3-gammahex-1300.json", Board::GammaHex, Dialect::V2_15, false),
    ];
    let specs: Vec<MinerSpec> = cases
        .iter()
        .enumerate()
        .map(|(i, (_, board, dialect, _))| MinerSpec::new(*board, *dialect, 60 + i as u64))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    for (i, (fixture, board, _, every_key)) in cases.iter().enumerate() {
        let recorded: Value = serde_json::from_slice(&crate::support::local_fixture(fixture)).unwrap();
        let simulated = info(sims.addresses()[i]).await;
        let keys =
            |v: &Value| -> std::collections::BTreeSet<String> { v.as_object().unwrap().keys().cloned().collect() };
        let invented: Vec<_> = keys(&simulated).difference(&keys(&recorded)).cloned().collect();
        assert!(invented.is_empty(), "{fixture}: the simulator invents {invented:?}");
        if *every_key {
            let missing: Vec<_> = keys(&recorded).difference(&keys(&simulated)).cloned().collect();
            assert!(missing.is_empty(), "{fixture}: the simulator lacks {missing:?}");
        }
        // Both read the same way today: family, chip, board, chip count.
        let from_fixture = decode_system_info(&crate::support::local_fixture(fixture)).unwrap();
        let from_sim = decode_system_info(simulated.to_string().as_bytes()).unwrap();
        assert_eq!(from_sim.identity.family, from_fixture.identity.family, "{fixture}");
        assert_eq!(
            from_sim.identity.asic_model, from_fixture.identity.asic_model,
            "{fixture}"
        );
        assert_eq!(
            from_sim.identity.board_version, from_fixture.identity.board_version,
            "{fixture}"
        );
        assert_eq!(from_sim.asic_count, from_fixture.asic_count, "{fixture}");
        assert_eq!(
            from_sim.rated_power_watts, from_fixture.rated_power_watts,
            "{fixture}: {board:?}"
        );
    }
    sims.shutdown().await;
}
