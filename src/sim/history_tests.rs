//! Tests of the simulated miners' own history over HTTP: which dialect serves the
//! statistics ring, its dashboard and the log; `statsFrequency` through PATCH and the info
//! body; the ring's clock, its hour at start and its loss at a reboot; readings that match
//! the info body; the log's lines around faults, overheats and resets; faults and auth.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::sim::dialects::{Dialect, ResetReason};
use crate::sim::physics::Board;
use crate::sim::{Fault, MinerSpec, Quirks, SimAuth, SimFleet};

struct Answer {
    status: u16,
    content_type: String,
    disposition: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let header = |name: reqwest::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, disposition) = (
        header(reqwest::header::CONTENT_TYPE),
        header(reqwest::header::CONTENT_DISPOSITION),
    );
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    Answer {
        status,
        content_type,
        disposition,
        body,
    }
}

async fn get(address: SocketAddr, path: &str) -> Answer {
    send(client().get(format!("http://{address}{path}"))).await
}

async fn patch(address: SocketAddr, body: &str) -> Answer {
    send(
        client()
            .patch(format!("http://{address}/api/system"))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
    .await
}

fn spec(board: Board, dialect: Dialect, stats: u16, time_scale: f64) -> MinerSpec {
    let mut spec = MinerSpec::new(board, dialect, 7);
    spec.stats_frequency_seconds = stats;
    spec.time_scale = time_scale;
    spec
}

fn column(body: &Value, label: &str) -> Vec<f64> {
    let labels = body["labels"].as_array().unwrap();
    let at = labels
        .iter()
        .position(|l| l == label)
        .unwrap_or_else(|| panic!("no {label} in {labels:?}"));
    body["statistics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[at].as_f64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_ring_the_dashboard_and_the_log_exist_where_the_firmware_has_them() {
    let specs: Vec<MinerSpec> = Dialect::ALL
        .iter()
        .map(|&d| spec(d.default_board(), d, 5, 1.0))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    for (i, dialect) in Dialect::ALL.into_iter().enumerate() {
        let address = sims.addresses()[i];
        // What this firmware answers for a path it does not know (302 before v2.9, 404 JSON after).
        let unknown = get(address, "/api/system/no-such-thing").await.status;
        let statistics = get(address, "/api/system/statistics").await;
        let dashboard = get(address, "/api/system/statistics/dashboard").await;
        let logs = get(address, "/api/system/logs").await;
        match dialect {
            Dialect::V2_0 | Dialect::V2_4 | Dialect::NerdQaxe | Dialect::Lucky => {
                for answer in [&statistics, &dashboard, &logs] {
                    assert_eq!(answer.status, unknown, "{dialect:?}");
                }
                assert_eq!(unknown, 302, "{dialect:?}");
            }
            Dialect::V2_9 | Dialect::V2_10 => {
                assert_eq!(statistics.status, 200, "{dialect:?}");
                assert_eq!(statistics.content_type, "application/json");
                let body = statistics.json();
                assert_eq!(body["labels"][0], "hashRate", "{dialect:?}");
                assert_eq!(body["labels"][11], "timestamp");
                assert_eq!(dashboard.status, 200);
                let dashboard = dashboard.json();
                assert!(dashboard.get("labels").is_none());
                assert_eq!(dashboard["statistics"][0].as_array().unwrap().len(), 4);
                assert_eq!((logs.status, unknown), (404, 404), "{dialect:?}");
            }
            Dialect::V2_15 => {
                assert_eq!(statistics.status, 200);
                assert_eq!(statistics.json()["labels"][0], "hashrate");
                assert_eq!((dashboard.status, unknown), (404, 404), "gone in v2.11");
                assert_eq!(logs.status, 200);
                assert_eq!(logs.content_type, "text/plain");
                assert_eq!(logs.disposition, "attachment; filename=\"bitaxe-logs.txt\"");
                assert!(logs.body.starts_with("\u{1b}[0;32mI ("), "{:?}", &logs.body[..40]);
            }
        }
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn stats_frequency_is_set_by_patch_shown_in_the_info_body_and_off_by_default() {
    let specs: Vec<MinerSpec> = [Dialect::V2_9, Dialect::V2_10, Dialect::V2_15, Dialect::V2_4]
        .iter()
        .map(|&d| spec(d.default_board(), d, 0, 100.0))
        .collect();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    for (i, dialect) in [Dialect::V2_9, Dialect::V2_10, Dialect::V2_15].into_iter().enumerate() {
        let address = sims.addresses()[i];
        let info = get(address, "/api/system/info").await.json();
        assert_eq!(info["statsFrequency"], 0, "{dialect:?}: off by default");
        let off = get(address, "/api/system/statistics").await.json();
        assert_eq!(off["statistics"], serde_json::json!([]), "{dialect:?}");
        assert!(off["currentTimestamp"].as_u64().unwrap() >= 3_600_000, "an hour up");
        assert_eq!(off["labels"].as_array().unwrap().last().unwrap(), "timestamp");
        assert_eq!(sims.statistics_rows(i), 0);

        assert_eq!(patch(address, r#"{"statsFrequency": 5}"#).await.status, 200);
        assert_eq!(get(address, "/api/system/info").await.json()["statsFrequency"], 5);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rows = sims.statistics_rows(i);
        assert!(rows >= 2, "{dialect:?}: 30 simulated seconds gave {rows} readings");
        let served = get(address, "/api/system/statistics").await.json()["statistics"]
            .as_array()
            .unwrap()
            .len();
        assert!(
            served >= rows,
            "{dialect:?}: the body serves the ring ({served} of {rows})"
        );
    }
    // v2.11+ validates the range; earlier firmware stores what it gets.
    let v2_15 = sims.addresses()[2];
    assert_eq!(patch(v2_15, r#"{"statsFrequency": 70000}"#).await.status, 400);
    assert_eq!(get(v2_15, "/api/system/info").await.json()["statsFrequency"], 5);
    assert_eq!(get(v2_15, "/api/system/info").await.json()["statsLimit"], 720);
    // No ring before v2.8: no statsFrequency in the body, the setting ignored.
    let v2_4 = sims.addresses()[3];
    assert_eq!(patch(v2_4, r#"{"statsFrequency": 5}"#).await.status, 200);
    assert!(get(v2_4, "/api/system/info")
        .await
        .json()
        .get("statsFrequency")
        .is_none());
    assert_eq!(sims.statistics_rows(3), 0);
    // The test hook does what the PATCH does.
    sims.set_stats_frequency(2, 0);
    assert_eq!(sims.statistics_rows(2), 0, "statistics off empty the v2.15 ring");
    assert_eq!(get(v2_15, "/api/system/info").await.json()["statsFrequency"], 0);
    sims.shutdown().await;
}

#[tokio::test]
async fn the_ring_holds_the_running_hour_in_boot_time_and_a_reboot_empties_it() {
    let specs = [
        spec(Board::Gamma, Dialect::V2_15, 5, 20.0),
        spec(Board::Supra, Dialect::V2_10, 5, 20.0),
    ];
    let sims = SimFleet::start(&specs, None).await.unwrap();
    for i in 0..2 {
        let address = sims.addresses()[i];
        let body = get(address, "/api/system/statistics").await.json();
        let now = body["currentTimestamp"].as_u64().unwrap();
        let times = column(&body, "timestamp");
        // An hour at one reading per 5 s fills the ring; v2.15's spans about 720 × 5 s.
        assert_eq!(times.len(), 720, "miner {i}");
        assert!(times.windows(2).all(|w| w[0] < w[1]), "in time order");
        assert!(times.iter().all(|t| *t >= 0.0 && *t <= now as f64), "within [0, {now}]");
        assert!(now as f64 - times[719] <= 5_000.0 + 1_000.0, "the newest is recent");
        assert!(times[719] - times[0] >= 3_000_000.0, "reaching back most of the hour");
        if i == 1 {
            assert!(times.windows(2).all(|w| w[1] - w[0] == 5_000.0), "v2.10: every 5 s");
        }

        sims.reboot_because(i, Duration::ZERO, ResetReason::Software);
        assert_eq!(sims.statistics_rows(i), 0, "RAM is gone");
        tokio::time::sleep(Duration::from_millis(600)).await;
        let body = get(address, "/api/system/statistics").await.json();
        let now = body["currentTimestamp"].as_u64().unwrap();
        assert!((10_000..60_000).contains(&now), "the boot clock started again: {now}");
        let times = column(&body, "timestamp");
        assert!(!times.is_empty() && times.len() < 20, "{times:?}");
        assert!(
            times.iter().all(|t| *t > 0.0 && *t <= now as f64),
            "{times:?} now {now}"
        );
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn ring_readings_look_like_the_polls_around_them_and_follow_a_fault() {
    let sims = SimFleet::start(&[spec(Board::Gamma, Dialect::V2_15, 1, 10.0)], None)
        .await
        .unwrap();
    let address = sims.addresses()[0];
    let info = get(address, "/api/system/info").await.json();
    let columns = "hashrate,hashrate_1m,asicTemp,vrTemp,asicVoltage,voltage,power,current,fanSpeed,fanRpm";
    let body = get(address, &format!("/api/system/statistics?columns={columns}"))
        .await
        .json();
    let last = |label: &str| *column(&body, label).last().unwrap();
    let near = |label: &str, key: &str, tolerance: f64| {
        let (ring, polled) = (last(label), info[key].as_f64().unwrap());
        assert!(
            (ring - polled).abs() <= tolerance * polled.abs().max(1.0),
            "{label} {ring} against {key} {polled}"
        );
    };
    near("hashrate", "hashRate", 0.08);
    near("hashrate_1m", "hashRate_1m", 0.001);
    near("asicTemp", "temp", 0.03);
    near("vrTemp", "vrTemp", 0.05);
    near("asicVoltage", "coreVoltageActual", 0.01);
    near("voltage", "voltage", 0.02);
    near("power", "power", 0.03);
    near("current", "current", 0.03);
    near("fanSpeed", "fanspeed", 0.02);
    near("fanRpm", "fanrpm", 0.02);

    sims.set_fault(0, Fault::PowerFault);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let body = get(address, "/api/system/statistics?columns=hashrate,power")
        .await
        .json();
    let hashrates = column(&body, "hashrate");
    let powers = column(&body, "power");
    assert_eq!(hashrates[hashrates.len() - 2..], [0.0, 0.0], "the fault's readings");
    assert_eq!(powers[powers.len() - 2..], [2.5, 2.5]);
    assert!(hashrates[0] > 500.0, "before it, hashing");
    sims.shutdown().await;
}

#[tokio::test]
async fn the_log_survives_a_soft_reset_and_a_power_loss_empties_it() {
    let sims = SimFleet::start(&[spec(Board::Gamma, Dialect::V2_15, 0, 1.0)], None)
        .await
        .unwrap();
    let address = sims.addresses()[0];
    let log = sims.log_text(0);
    assert!(log.contains("bitaxe: Welcome to the bitaxe"), "the boot an hour ago");
    assert!(log.contains("Last reset reason: Reset due to power-on event"));
    assert!(log.contains("message result accepted") && log.contains("fan_controller: Temp:"));
    assert!(log.len() <= 16 * 1024);
    let served = get(address, "/api/system/logs").await.body;
    assert!(served.starts_with(&log[..200]));

    sims.set_fault(0, Fault::PowerFault);
    sims.reboot_because(0, Duration::ZERO, ResetReason::TaskWatchdog);
    sims.set_fault(0, Fault::None);
    let log = sims.log_text(0);
    let fault = log.find("E (").unwrap();
    let watchdog = log.find("task_wdt: Task watchdog got triggered").unwrap();
    let restart = log.find("\n--- SYSTEM RESTART ---\n").unwrap();
    let reason = log.find("Last reset reason: Reset due to task watchdog").unwrap();
    assert!(fault < watchdog && watchdog < restart && restart < reason, "{log}");
    assert!(log.contains("\u{1b}[0;31mE (") && log.contains("TPS546: An input undervoltage fault has occurred"));
    assert!(log.contains("Welcome to the bitaxe") && log.contains("message result accepted"));

    let restarted = send(client().post(format!("http://{address}/api/system/restart"))).await;
    assert_eq!(restarted.status, 200);
    let log = sims.log_text(0);
    assert!(log.contains("http_server: Restarting System because of API Request"));
    assert!(
        log.contains("TPS546: An input undervoltage"),
        "still there after two soft resets"
    );
    assert_eq!(log.matches("--- SYSTEM RESTART ---").count(), 2);

    for loss in [ResetReason::PowerOn, ResetReason::Brownout] {
        sims.set_fault(0, Fault::PowerFault);
        sims.reboot_because(0, Duration::ZERO, loss);
        let log = sims.log_text(0);
        assert!(
            !log.contains("undervoltage") && !log.contains("SYSTEM RESTART"),
            "{loss:?}: {log}"
        );
        assert!(log.contains(&format!("Last reset reason: {}", loss.text())));
        sims.set_fault(0, Fault::None);
    }
    sims.shutdown().await;
}

#[tokio::test]
async fn an_overheat_is_logged_with_its_cool_down_and_the_retry_at_lower_settings() {
    let sims = SimFleet::start(&[spec(Board::Gamma, Dialect::V2_15, 5, 200.0)], None)
        .await
        .unwrap();
    sims.set_ambient(0, 62.0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = sims.log_text(0);
    assert!(log.contains("power_management: OVERHEAT! VR: "), "{log}");
    assert!(log.contains("Entering safe mode due to overheat condition"));
    assert!(log.contains("Safe mode active (cycle 1/6)"));
    sims.set_ambient(0, 20.0);
    // Cooling below 55 °C takes about 20 simulated seconds (0.1 s here).
    let mut log = String::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(25)).await;
        log = sims.log_text(0);
        if log.contains("Temperature normalized after ") {
            break;
        }
    }
    assert!(log.contains("Temperature normalized after "), "{log}");
    assert!(log.contains("Restoring at reduced settings: 1050mV (was 1150mV), 425 MHz (was 525 MHz)"));
    // The ring saw the stop: readings with no hashrate during the cool-down.
    let body = get(sims.addresses()[0], "/api/system/statistics?columns=hashrate")
        .await
        .json();
    assert!(column(&body, "hashrate").contains(&0.0));
    sims.shutdown().await;
}

#[tokio::test]
async fn faults_and_auth_guard_the_history_endpoints_as_every_other() {
    let sims = SimFleet::start(&[spec(Board::Gamma, Dialect::V2_15, 5, 1.0)], None)
        .await
        .unwrap();
    let address = sims.addresses()[0];
    sims.set_fault(0, Fault::Http500);
    assert_eq!(get(address, "/api/system/statistics").await.status, 500);
    assert_eq!(get(address, "/api/system/logs").await.status, 500);
    sims.set_fault(0, Fault::Garbage);
    assert!(serde_json::from_str::<Value>(&get(address, "/api/system/statistics").await.body).is_err());
    sims.set_fault(0, Fault::Truncated);
    let cut = get(address, "/api/system/statistics").await.body;
    assert!(serde_json::from_str::<Value>(&cut).is_err() && cut.starts_with('{'));
    sims.set_fault(0, Fault::None);
    let whole = get(address, "/api/system/logs").await.body.len();
    sims.set_fault(0, Fault::Truncated);
    let half = get(address, "/api/system/logs").await.body.len();
    assert!(half < whole * 2 / 3, "{half} of {whole}");
    sims.set_fault(0, Fault::Oversized);
    assert!(get(address, "/api/system/statistics").await.body.len() > 2_000_000);
    sims.set_fault(0, Fault::Offline);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client()
        .get(format!("http://{address}/api/system/statistics"))
        .send()
        .await
        .is_err());
    sims.set_fault(0, Fault::None);
    tokio::time::sleep(Duration::from_millis(300)).await;

    sims.set_quirks(
        0,
        Quirks {
            basic_auth: Some(SimAuth {
                username: "admin".into(),
                password: "pw".into(),
                reads: true,
            }),
            ..Quirks::default()
        },
    );
    for path in ["/api/system/statistics", "/api/system/logs"] {
        assert_eq!(get(address, path).await.status, 401, "{path}");
        let with = send(
            client()
                .get(format!("http://{address}{path}"))
                .basic_auth("admin", Some("pw")),
        )
        .await;
        assert_eq!(with.status, 200, "{path}");
    }
    sims.shutdown().await;
}
