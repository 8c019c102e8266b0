//! The web dashboard and the HTML report in the real headless Chromium, and the JSON API
//! behind them against a ledger with known data: values, ranges, downsampling, escaping.

use std::time::Duration;

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet};
use serde_json::Value;

use crate::ledger::{write_all, S, T0};
use crate::support::browser::Browser;
use crate::support::InProcess;

const HOSTILE: &str = "<script>alert(1)</script>";
const HOSTILE_HOST: &str = "<img src=x onerror=alert(2)>";

/// Screenshots go to a temporary folder (kept when KEEP_SCREENSHOTS names one).
fn screenshot_dir() -> std::path::PathBuf {
    match std::env::var_os("KEEP_SCREENSHOTS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            dir.into()
        }
        None => std::env::temp_dir().join(format!("bitaxe-exporter-screens-{}", std::process::id())),
    }
}

/// Three frozen miners (steady readings, so the page and the API agree to the digit), one
/// with a hostile name and hostname.
async fn fleet() -> (SimFleet, InProcess) {
    let mut specs = Vec::new();
    for (i, board) in [Board::Gamma, Board::Supra, Board::Ultra].into_iter().enumerate() {
        let mut spec = MinerSpec::new(board, Dialect::V2_15, 700 + i as u64);
        spec.frozen = true;
        specs.push(spec);
    }
    specs[0].hostname = HOSTILE_HOST.into();
    let sims = SimFleet::start(&specs, None).await.unwrap();
    let devices = vec![
        (HOSTILE.to_string(), sims.addresses()[0]),
        ("supra-b".to_string(), sims.addresses()[1]),
        ("ultra-c".to_string(), sims.addresses()[2]),
    ];
    let exporter = InProcess::start(&devices, 1.0).await;
    exporter
        .wait_for(Duration::from_secs(15), "all three up", |e| {
            [HOSTILE, "supra-b", "ultra-c"].iter().all(|d| e.up(d) == Some(1.0))
        })
        .await;
    (sims, exporter)
}

/// Waits until the ledger has samples of every device (the writer commits every second).
async fn wait_for_ledger(exporter: &InProcess, devices: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for device in devices {
        let path = format!(
            "/api/v1/devices/{}/history?since=1h",
            bitaxe_exporter::web::render::html::url_segment(device)
        );
        loop {
            let response = exporter.get(&path).await;
            if response.status() == 200 {
                let body: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
                if body["points"].as_array().is_some_and(|p| p.len() >= 2) {
                    break;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{device} has no samples in the ledger after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn api(exporter: &InProcess, path: &str) -> Value {
    let response = exporter.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

/// The fleet table's rows as the page shows them: device → cells' text.
fn rows(browser: &mut Browser) -> Vec<Vec<String>> {
    let value = browser.eval(
        "Array.from(document.querySelectorAll('#fleet tbody tr')).map(tr => Array.from(tr.cells).map(td => (td.querySelector('a.name') || td).textContent))",
    );
    serde_json::from_value(value).unwrap()
}

fn column(browser: &mut Browser, key: &str) -> usize {
    let index = browser.eval(&format!(
        "Array.from(document.querySelectorAll('#fleet thead th')).findIndex(th => th.dataset.key === '{key}')"
    ));
    index.as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_page_shows_every_device_sorts_filters_updates_in_place_and_fits_a_phone() {
    let (sims, mut exporter) = fleet().await;
    let shots = screenshot_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = Browser::launch();
    browser.navigate(&exporter.url("/"));
    browser.wait_for(
        "document.querySelectorAll('#fleet tbody tr').length === 3",
        Duration::from_secs(10),
    );

    // Every device, with the API's numbers.
    let fleet = api(&exporter, "/api/v1/fleet").await;
    let shown = rows(&mut browser);
    let (name, hashrate, power, jth) = (
        column(&mut browser, "name"),
        column(&mut browser, "hashrate"),
        column(&mut browser, "power"),
        column(&mut browser, "jth"),
    );
    for device in fleet["devices"].as_array().unwrap() {
        let row = shown
            .iter()
            .find(|r| r[name] == device["name"].as_str().unwrap())
            .unwrap_or_else(|| panic!("{} not on the page: {shown:?}", device["name"]));
        let expected = format!("{:.1}", device["hashrate_ghs"].as_f64().unwrap());
        assert!(row[hashrate].starts_with(&expected), "{row:?} vs {expected}");
        assert_eq!(row[power], format!("{:.1}", device["power_w"].as_f64().unwrap()));
        assert_eq!(
            row[jth],
            format!("{:.2}", device["joules_per_terahash"].as_f64().unwrap())
        );
    }
    // The hostile name is text, its hostname only an attribute: no element, no dialog.
    assert_eq!(browser.eval("document.querySelectorAll('script').length"), 2);
    assert_eq!(browser.eval("document.querySelectorAll('#fleet img').length"), 0);
    assert_eq!(
        browser.eval("document.querySelector('#fleet tbody a[href*=\"script\"]').textContent"),
        HOSTILE
    );

    // Sorting by hashrate (descending on the first click, ascending on the second), kept in the URL.
    let order = |browser: &mut Browser| -> Vec<f64> {
        rows(browser)
            .iter()
            .map(|r| r[hashrate].split(' ').next().unwrap().parse().unwrap())
            .collect()
    };
    browser.eval("document.querySelector('th[data-key=hashrate]').click()");
    let descending = order(&mut browser);
    assert!(descending.windows(2).all(|w| w[0] >= w[1]), "{descending:?}");
    assert!(browser
        .eval("location.search")
        .as_str()
        .unwrap()
        .contains("sort=hashrate&dir=desc"));
    browser.eval("document.querySelector('th[data-key=hashrate]').click()");
    let ascending = order(&mut browser);
    assert!(ascending.windows(2).all(|w| w[0] <= w[1]), "{ascending:?}");
    assert_ne!(descending, ascending);
    // The sort survives a reload (it is in the URL).
    let here = browser.eval("location.href").as_str().unwrap().to_string();
    browser.navigate(&here);
    browser.wait_for(
        "document.querySelectorAll('#fleet tbody tr').length === 3",
        Duration::from_secs(10),
    );
    assert_eq!(order(&mut browser), ascending);

    // Filtering by name.
    browser.eval("const f = document.getElementById('filter'); f.value = 'SUPRA'; f.dispatchEvent(new Event('input'))");
    let filtered = rows(&mut browser);
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0][name], "supra-b");
    browser.eval("const g = document.getElementById('filter'); g.value = ''; g.dispatchEvent(new Event('input'))");

    // Updates in place: a retune and an outage show up without a reload.
    browser.eval("window.stillTheSamePage = true");
    sims.set_clock(1, 600.0, 1200.0);
    sims.set_fault(2, Fault::Offline);
    let clock = column(&mut browser, "clock");
    let state = column(&mut browser, "state");
    browser.wait_for(
        &format!(
            "Array.from(document.querySelectorAll('#fleet tbody tr')).some(tr => tr.dataset.device === 'supra-b' && tr.cells[{clock}].textContent.startsWith('600 /'))"
        ),
        Duration::from_secs(15),
    );
    browser.wait_for(
        &format!(
            "Array.from(document.querySelectorAll('#fleet tbody tr')).some(tr => tr.dataset.device === 'ultra-c' && tr.cells[{state}].textContent.startsWith('down: '))"
        ),
        Duration::from_secs(20),
    );
    // Down says why and since when, the address links to the miner's own web UI, and the
    // totals count mining, problems and down apart.
    let down = browser.eval(&format!(
        "(() => {{ const tr = Array.from(document.querySelectorAll('#fleet tbody tr')).find(tr => tr.dataset.device === 'ultra-c');
                   return [tr.cells[{state}].textContent, tr.querySelector('a.address').href, document.getElementById('totals').textContent]; }})()"
    ));
    let (text, link, totals) = (
        down[0].as_str().unwrap(),
        down[1].as_str().unwrap(),
        down[2].as_str().unwrap(),
    );
    assert!(text.contains(" since "), "{text}");
    assert_eq!(link, format!("http://{}/", sims.addresses()[2]));
    assert!(totals.contains("mining2 / 3") && totals.contains("down1"), "{totals}");
    // A miner that answers but does not mine gets its reason beside its state.
    sims.set_fault(1, Fault::Paused);
    browser.wait_for(
        &format!(
            "Array.from(document.querySelectorAll('#fleet tbody tr')).some(tr => tr.dataset.device === 'supra-b' && tr.cells[{state}].querySelector('.badge.problem') && tr.cells[{state}].textContent.startsWith('NOT mining: paused'))"
        ),
        Duration::from_secs(15),
    );
    assert_eq!(browser.eval("window.stillTheSamePage"), true, "the page was reloaded");
    browser.screenshot(&shots.join("fleet.png"), false);

    // A phone: nothing wider than the screen.
    browser.set_viewport(375, 800, true);
    browser.navigate(&exporter.url("/"));
    browser.wait_for(
        "document.querySelectorAll('#fleet tbody tr').length === 3",
        Duration::from_secs(10),
    );
    let width = browser.eval("document.documentElement.scrollWidth").as_u64().unwrap();
    assert!(width <= 375, "the page is {width} px wide at 375 px");
    browser.screenshot(&shots.join("fleet-375.png"), false);
    browser.prefer_dark(true);
    browser.screenshot(&shots.join("fleet-375-dark.png"), false);
    let background = browser.eval("getComputedStyle(document.body).backgroundColor");
    assert_ne!(background, "rgb(255, 255, 255)", "dark mode keeps a white page");

    let problems = browser.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    let weight = exporter.get("/").await.text().await.unwrap().len();
    assert!(weight < 150 * 1024, "the fleet page weighs {weight} bytes");
    println!("fleet page: {weight} bytes; screenshots in {}", shots.display());

    // The exporter goes away: the page says so and keeps the last data.
    exporter.stop().await;
    browser.wait_for(
        "document.getElementById('status').textContent.includes('not answering')",
        Duration::from_secs(20),
    );
    assert_eq!(browser.eval("document.querySelectorAll('#fleet tbody tr').length"), 3);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_loads_without_errors_and_shows_a_hostile_name_as_text() {
    let (sims, exporter) = fleet().await;
    let output = exporter.cli(&["session", "start", "--device", "supra-b", "--notes", "<b>bold?</b>"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    wait_for_ledger(&exporter, &[HOSTILE, "supra-b", "ultra-c"]).await;
    let mut browser = Browser::launch();
    let encoded = "%3Cscript%3Ealert%281%29%3C%2Fscript%3E";
    let mut pages = vec![
        "/configs".to_string(),
        "/configs?device=supra-b&metric=hashrate".into(),
        "/sessions".into(),
    ];
    for range in ["1h", "24h", "7d", "30d", "all"] {
        pages.push(format!("/device/supra-b?range={range}"));
    }
    pages.push(format!("/device/{encoded}"));
    for page in &pages {
        browser.clear_events();
        browser.navigate(&exporter.url(page));
        browser.pump(Duration::from_millis(300));
        let problems = browser.problems();
        assert!(problems.is_empty(), "{page}: {problems:#?}");
        assert_eq!(
            browser.eval("document.querySelectorAll('script').length"),
            0,
            "{page} has a script"
        );
        assert_eq!(browser.eval("document.querySelectorAll('main b').length"), 0, "{page}");
    }
    // The device page of the hostile name: the name as its heading, its charts drawn.
    assert_eq!(browser.eval("document.querySelector('h1').textContent"), HOSTILE);
    let charts = browser
        .eval("document.querySelectorAll('.chart svg').length")
        .as_u64()
        .unwrap();
    assert!(charts >= 5, "{charts} charts");
    browser.navigate(&exporter.url("/sessions"));
    let notes = browser.eval("document.querySelector('main table tbody').textContent");
    assert!(notes.as_str().unwrap().contains("<b>bold?</b>"), "{notes}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_serves_history_configs_and_sessions_from_the_ledger() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 7)], None)
        .await
        .unwrap();
    let mut exporter = InProcess::start(&[("live".to_string(), sims.addresses()[0])], 1.0).await;
    exporter.stop().await;
    // Three hours of 30-s samples on "rig", one with a spike.
    let history: Vec<(&str, f64, S)> = (0..360)
        .map(|i| {
            let mut s = S::new(525.0, 1150.0);
            s.uptime = 10_000 + i * 30;
            if i == 100 {
                s.hashrate = 1500.0;
            }
            ("rig", i as f64 * 30.0, s)
        })
        .collect();
    write_all(&exporter.database_path(), 1.0, history);
    exporter.restart().await;
    let output = exporter.cli(&["session", "start", "--device", "rig", "--notes", "api test"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let t0 = T0 as f64;
    let body = api(
        &exporter,
        &format!(
            "/api/v1/devices/rig/history?since={t0}&until={}&step=600",
            t0 + 3.0 * 3600.0
        ),
    )
    .await;
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 18);
    assert_eq!(body["source"], "samples");
    assert!(points.iter().all(|p| p["samples"] == 20));
    let spiked = &points[5];
    assert_eq!(spiked["hashrate_ghs"]["max"], 1500.0, "downsampling keeps the max");
    assert_eq!(spiked["hashrate_ghs"]["min"], 1000.0);
    assert!(body["max_temp_warning_c"].as_f64().is_some());
    // A range filters; an hour step reads the rollups with the same extremes.
    let cut = api(
        &exporter,
        &format!(
            "/api/v1/devices/rig/history?since={}&until={}&step=600",
            t0 + 3600.0,
            t0 + 5400.0
        ),
    )
    .await;
    let samples: u64 = cut["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["samples"].as_u64().unwrap())
        .sum();
    assert_eq!(samples, 61);
    let hourly = api(
        &exporter,
        &format!(
            "/api/v1/devices/rig/history?since={t0}&until={}&step=3600",
            t0 + 3.0 * 3600.0
        ),
    )
    .await;
    assert_eq!(hourly["source"], "hourly_rollups");
    let max = hourly["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["hashrate_ghs"]["max"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(max, 1500.0);

    // The same JSON as the CLI's.
    let cli_json = |args: &[&str]| -> Value {
        let output = exporter.cli(args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    };
    assert_eq!(
        api(&exporter, "/api/v1/configs?device=rig").await,
        cli_json(&["analyze", "compare-configs", "--device", "rig", "--format", "json"])
    );
    let sessions = api(&exporter, "/api/v1/sessions").await;
    assert_eq!(sessions, cli_json(&["session", "list", "--format", "json"]));
    assert_eq!(sessions[0]["notes"], "api test");

    // Clear errors for bad requests.
    let unknown = exporter.get("/api/v1/devices/nobody/history").await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.text().await.unwrap().contains("unknown device"));
    let backwards = exporter
        .get(&format!("/api/v1/devices/rig/history?since={}&until={t0}", t0 + 10.0))
        .await;
    assert_eq!(backwards.status(), 400);
    for bad in [
        "since=yesterday-ish",
        "since=-1e308",
        "since=0&until=1e308",
        "step=0",
        "step=abc",
        "step=NaN",
        "step=",
    ] {
        let response = exporter.get(&format!("/api/v1/devices/rig/history?{bad}")).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        if bad == "step=" {
            assert_eq!(status, 200, "an empty step means the default: {body}");
            continue;
        }
        assert_eq!(status, 400, "{bad}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{bad}: not JSON: {body}"));
        assert!(error["error"].is_string(), "{bad}: {body}");
    }
    // A tiny step over a long range is held to 10,000 points.
    let fine = api(
        &exporter,
        &format!(
            "/api/v1/devices/rig/history?since={t0}&until={}&step=1",
            t0 + 3.0 * 3600.0
        ),
    )
    .await;
    assert!(fine["points"].as_array().unwrap().len() <= 10_000);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_report_opens_offline_with_every_devices_charts() {
    let (sims, exporter) = fleet().await;
    wait_for_ledger(&exporter, &[HOSTILE, "supra-b", "ultra-c"]).await;
    let report = exporter.dir.path().join("report.html");
    let output = exporter.cli(&["analyze", "report", "--output", report.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("<script"), "the report carries a script");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let mut browser = Browser::launch();
    browser.navigate(&format!("file://{}", report.display()));
    browser.pump(Duration::from_millis(300));
    let problems = browser.problems();
    assert!(problems.is_empty(), "{problems:#?}");
    let outside: Vec<String> = browser
        .requested_urls()
        .into_iter()
        .filter(|u| !u.starts_with("file:") && !u.starts_with("data:"))
        .collect();
    assert!(outside.is_empty(), "the report asked the network for {outside:?}");
    for device in [HOSTILE, "supra-b", "ultra-c"] {
        let charts = browser.eval(&format!(
            "(() => {{ const h = Array.from(document.querySelectorAll('h1')).find(h => h.textContent === {name}); \
             let n = 0; for (let e = h.nextElementSibling; e && e.tagName !== 'H1'; e = e.nextElementSibling) \
             n += e.querySelectorAll('svg').length; return n; }})()",
            name = serde_json::to_string(device).unwrap()
        ));
        assert!(charts.as_u64().unwrap() >= 5, "{device}: {charts} charts");
    }
    // A report aimed at the ledger is refused and the ledger kept.
    let db = exporter.database_path();
    let refused = exporter.cli(&["analyze", "report", "--output", db.to_str().unwrap()]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(std::fs::metadata(&db).unwrap().len() > 0);
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_page_answers_at_once_while_another_process_holds_the_ledgers_write_lock() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 9)], None)
        .await
        .unwrap();
    let exporter = InProcess::start(&[("rig".to_string(), sims.addresses()[0])], 1.0).await;
    exporter
        .wait_for(Duration::from_secs(10), "rig polled", |e| e.up("rig") == Some(1.0))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Another process writes for a long time: the ledger's writer waits behind it, and the
    // pages, which read from their own connections, must not.
    let holder = crate::support::sql(&exporter.database_path());
    holder.busy_timeout(Duration::from_secs(10)).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for path in [
        "/",
        "/api/v1/fleet",
        "/metrics",
        "/api/v1/devices/rig/history?since=1h",
        "/device/rig",
        "/configs",
        "/sessions",
    ] {
        let started = std::time::Instant::now();
        let response = exporter.get(path).await;
        let took = started.elapsed();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            took < Duration::from_secs(2),
            "{path} took {took:?} while the ledger was locked"
        );
        println!("{path}: {took:?} while another process holds the write lock");
    }
    holder.execute_batch("ROLLBACK;").unwrap();
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sparklines_survive_a_restart() {
    use bitaxe_exporter::ledger::writer::{Record, Writer};
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 11)], None)
        .await
        .unwrap();
    let mut exporter = InProcess::start(&[("rig".to_string(), sims.addresses()[0])], 1.0).await;
    exporter.stop().await;
    // The last 50 minutes, a sample every 30 s, as the previous run stored them.
    let writer = Writer::start(&exporter.database_path(), crate::ledger::rules(1.0)).unwrap();
    let now = std::time::SystemTime::now();
    for i in 0..100u64 {
        let mut s = S::new(525.0, 1150.0);
        s.uptime = 10_000 + i * 30;
        s.hashrate = 1000.0 + i as f64;
        writer.sender.send(Record::Sample {
            device: "rig".into(),
            at: now - Duration::from_secs(3000 - i * 30),
            sample: s.sample(),
        });
    }
    writer.finish();
    exporter.restart().await;
    let fleet = api(&exporter, "/api/v1/fleet").await;
    let rig = &fleet["devices"][0];
    let minutes: Vec<f64> = rig["hashrate_1h_ghs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(minutes.len() >= 45, "{rig:#}");
    // Rising as stored (the last minutes may hold the live miner's first readings too).
    let stored = &minutes[..minutes.len() - 2];
    assert!(stored.windows(2).all(|w| w[0] <= w[1] + 1e-9), "{minutes:?}");
    sims.shutdown().await;
}

#[test]
fn the_readme_shows_each_page_in_screenshots_under_300_kb() {
    let readme = std::fs::read_to_string(crate::support::repo_path("README.md")).unwrap();
    let mut total = 0;
    for page in ["fleet", "device", "configs", "sessions"] {
        let path = format!("docs/screenshots/{page}.webp");
        assert!(
            readme.contains(&format!("]({path})")),
            "the README does not show {path}"
        );
        total += std::fs::metadata(crate::support::repo_path(&path)).unwrap().len();
    }
    assert!(total < 300 * 1024, "screenshots weigh {total} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configs_and_device_pages_say_the_best_configuration_in_one_sentence() {
    use bitaxe_exporter::ledger::writer::{Record, Writer};
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 12)], None)
        .await
        .unwrap();
    let mut exporter = InProcess::start(&[("tuned".to_string(), sims.addresses()[0])], 1.0).await;
    exporter.stop().await;
    // Yesterday: "tuned" ran two configurations 20 minutes each, "untuned" one.
    let writer = Writer::start(&exporter.database_path(), crate::ledger::rules(10.0)).unwrap();
    let start = std::time::SystemTime::now() - Duration::from_secs(86_400);
    let send = |device: &str, mac: &'static str, freq: f64, from: u64| {
        for i in 0..40u64 {
            let mut s = S::new(freq, 1150.0);
            s.mac = Some(mac);
            s.hashrate = freq * 2.04;
            s.uptime = 10_000 + from + i * 30;
            writer.sender.send(Record::Sample {
                device: device.into(),
                at: start + Duration::from_secs(from + i * 30),
                sample: s.sample(),
            });
        }
    };
    send("tuned", "AA:BB:CC:00:00:01", 490.0, 0);
    send("tuned", "AA:BB:CC:00:00:01", 525.0, 1200);
    send("untuned", "AA:BB:CC:00:00:02", 490.0, 0);
    writer.finish();
    exporter.restart().await;
    let configs = exporter.get("/configs").await.text().await.unwrap();
    assert!(
        configs.contains("tuned: 525 MHz / 1150 mV, ") && configs.contains("more efficient than 490 MHz / 1150 mV"),
        "{configs}"
    );
    assert!(configs.contains("untuned: one configuration measured"), "{configs}");
    assert!(
        configs.contains("the only one measured: run tune to compare"),
        "{configs}"
    );
    let page = exporter.get("/device/untuned").await.text().await.unwrap();
    assert!(page.contains("untuned: one configuration measured"), "{page}");
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_miner_that_never_answered_has_a_page_saying_where_it_is_looked_for_and_why() {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 13)], None)
        .await
        .unwrap();
    // Port 1 on loopback: nothing listens there.
    let ghost: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let exporter = InProcess::start(
        &[
            ("rig".to_string(), sims.addresses()[0]),
            ("ghost-with-a-long-name".to_string(), ghost),
        ],
        1.0,
    )
    .await;
    exporter
        .wait_for(Duration::from_secs(10), "rig polled", |e| e.up("rig") == Some(1.0))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let response = exporter.get("/device/ghost-with-a-long-name").await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("127.0.0.1:1") && page.contains("http://127.0.0.1:1/"),
        "{page}"
    );
    assert!(page.contains("never answered") && page.contains("discover"), "{page}");
    assert!(
        page.contains("refused") || page.contains("connect"),
        "the reason: {page}"
    );
    // A name nobody configured is still unknown.
    assert_eq!(exporter.get("/device/nobody").await.status(), 404);
    // A device under test wears a badge; shares, reject %, fan and RSSI are on the row.
    let started = exporter.cli(&["session", "start", "--device", "rig", "--notes", "trying 600 MHz"]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let fleet = api(&exporter, "/api/v1/fleet").await;
    let rig = fleet["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "rig")
        .unwrap()
        .clone();
    assert_eq!(rig["activity"], "session: trying 600 MHz", "{rig:#}");
    assert!(
        rig["fan_percent"].is_number() && rig["wifi_rssi_dbm"].is_number(),
        "{rig:#}"
    );
    assert!(
        rig["reject_percent"].is_number() || rig["shares_accepted"] == 0,
        "{rig:#}"
    );
    let ghost = fleet["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] != "rig")
        .unwrap()
        .clone();
    assert!(
        ghost["activity"].is_null() && ghost["down_since"].is_null(),
        "{ghost:#}"
    );
    sims.shutdown().await;
}
