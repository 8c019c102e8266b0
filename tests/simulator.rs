//! The simulator as an AxeOS client sees it: endpoints per firmware era, settings that
//! change the physics, and the thermal lag.

use std::time::Duration;

use bitaxe_exporter::axeos::sample::decode_system_info;
use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{MinerSpec, SimFleet};

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
