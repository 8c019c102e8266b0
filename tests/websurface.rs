//! The HTTP surface against a hostile web page and a large fleet: `POST /alerts` only with
//! the configured token and JSON, the `Host` check against DNS rebinding, the security
//! headers on every response, and `/configs` bounded in size and in concurrent renders over
//! a ledger of 1,000 devices.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{MinerSpec, SimFleet};
use sha2::Digest as _;

use crate::ledger::{write_all, S};
use crate::support::{proc_status_kib, Exporter, InProcess};

const TOKEN: &str = "tXq1c9Zr3vLmP0aK8sWd2YhE";

/// An Alertmanager notification with one firing critical alert named `name`.
fn notification(name: &str) -> String {
    serde_json::json!({
        "version": "4",
        "status": "firing",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": name, "severity": "critical", "device": "rig"},
            "annotations": {"summary": format!("{name} summary")},
        }],
    })
    .to_string()
}

async fn post_alert(port: u16, name: &str, content_type: Option<&str>, authorization: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/alerts"))
        .body(notification(name));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    request.send().await.unwrap().status().as_u16()
}

/// A miner address nothing answers on (the exporter polls it and finds it down).
fn nobody() -> Vec<(String, SocketAddr)> {
    vec![("rig".to_string(), "127.0.0.1:9".parse().unwrap())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_alerts_is_off_without_a_token_and_takes_only_json_with_the_token() {
    // Without server.alerts_token_file the endpoint is off, whatever is sent.
    let off = Exporter::start_with_server(tempfile::tempdir().unwrap(), &nobody(), 30.0, "");
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        post_alert(off.port, "ForgedWhileOff", Some("application/json"), Some(&bearer)).await,
        404
    );
    let refusal = reqwest::Client::new()
        .post(off.url("/alerts"))
        .header("content-type", "application/json")
        .body(notification("ForgedWhileOff"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refusal.contains("server.alerts_token_file"), "{refusal}");

    // With a token (a path relative to the config's folder), only JSON carrying it is read.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.token"), format!("{TOKEN}\n")).unwrap();
    let on = Exporter::start_with_server(dir, &nobody(), 30.0, "  alerts_token_file: alerts.token\n");
    let json = Some("application/json");
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    let refused = [
        ("ForgedNoToken", json, None, 401),
        ("ForgedWrongToken", json, Some(wrong.as_str()), 401),
        ("ForgedBasic", json, Some("Basic dXNlcjpwYXNz"), 401),
        // What a web page can send across origins without a preflight.
        ("ForgedTextPlain", Some("text/plain"), Some(bearer.as_str()), 415),
        (
            "ForgedForm",
            Some("application/x-www-form-urlencoded"),
            Some(bearer.as_str()),
            415,
        ),
        ("ForgedNoType", None, Some(bearer.as_str()), 415),
    ];
    for (name, content_type, authorization, status) in refused {
        assert_eq!(
            post_alert(on.port, name, content_type, authorization).await,
            status,
            "{name}"
        );
    }
    assert_eq!(
        post_alert(
            on.port,
            "GenuineAlert",
            Some("application/json; charset=utf-8"),
            Some(&bearer)
        )
        .await,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !on.log().contains("GenuineAlert") {
        assert!(
            Instant::now() < deadline,
            "the accepted alert was not logged:\n{}",
            on.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = on.log() + &off.log();
    for (name, ..) in refused {
        assert!(!log.contains(name), "{name} was logged:\n{log}");
    }
    assert!(!log.contains("ForgedWhileOff"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_that_cannot_be_used_stops_serve_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let yaml = crate::support::with_server_keys(
        crate::support::config_yaml(&nobody(), 30.0, "127.0.0.1:0", &dir.path().join("ledger.db")),
        "  alerts_token_file: missing.token\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let output = crate::support::cli(&config, &["serve"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("server.alerts_token_file") && stderr.contains("missing.token"),
        "{stderr}"
    );
    std::fs::write(dir.path().join("missing.token"), "short\n").unwrap();
    let output = crate::support::cli(&config, &["serve"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 16"));
}

/// `path` asked for with this `Host`: (status, body).
async fn get_as(exporter: &InProcess, host: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(exporter.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// One simulated Gamma polled every second, with its samples in the ledger.
async fn polled(server_yaml: &str) -> (SimFleet, InProcess) {
    let sims = SimFleet::start(&[MinerSpec::new(Board::Gamma, Dialect::V2_15, 21)], None)
        .await
        .unwrap();
    let exporter =
        InProcess::start_with_server(&[("rig".to_string(), sims.addresses()[0])], 1.0, "", server_yaml).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while exporter.get("/api/v1/devices/rig/history?since=1h").await.status() != 200 {
        assert!(Instant::now() < deadline, "rig never reached the ledger");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (sims, exporter)
}

const GUARDED: [&str; 8] = [
    "/",
    "/api/v1/fleet",
    "/device/rig",
    "/configs",
    "/sessions",
    "/api/v1/configs",
    "/api/v1/sessions",
    "/api/v1/devices/rig/history",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_name_is_refused_on_the_dashboard_and_its_api_but_not_on_metrics() {
    let (sims, exporter) = polled("  allowed_hosts: [\"miners.example\"]\n").await;
    let port = exporter.port;
    for path in GUARDED {
        // The attacker's name, pointed at this exporter by a rebinding DNS server.
        let (status, body) = get_as(&exporter, &format!("attacker.example:{port}"), path).await;
        assert_eq!(status, 421, "{path}: {body}");
        assert!(body.contains("server.allowed_hosts"), "{path}: {body}");
        for host in [
            format!("miners.example:{port}"),
            format!("MINERS.example.:{port}"),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            "192.0.2.7:9842".to_string(),
        ] {
            let (status, body) = get_as(&exporter, &host, path).await;
            assert_eq!(status, 200, "{path} as {host}: {body}");
        }
    }
    // Prometheus scrapes by whatever name its service discovery gives (compose: the service
    // name); the liveness check is used by Docker with any name.
    for path in ["/metrics", "/healthz"] {
        let (status, _) = get_as(&exporter, &format!("bitaxe-exporter:{port}"), path).await;
        assert_eq!(status, 200, "{path}");
    }
    sims.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers_and_the_pages_policy_admits_only_our_inline_code() {
    let (sims, exporter) = polled("").await;
    let mut paths: Vec<&str> = GUARDED.to_vec();
    paths.extend(["/metrics", "/healthz", "/no-such-page", "/device/nobody", "/alerts"]);
    let client = reqwest::Client::new();
    let mut checked = Vec::new();
    for path in paths {
        let mut responses = vec![client.get(exporter.url(path)).send().await.unwrap()];
        if path == "/alerts" {
            responses.push(client.post(exporter.url(path)).send().await.unwrap());
        }
        if path == "/" {
            responses.push(
                client
                    .get(exporter.url(path))
                    .header("host", "attacker.example")
                    .send()
                    .await
                    .unwrap(),
            );
        }
        for response in responses {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_else(|| panic!("{path} ({status}) has no {name}: {headers:?}"))
                    .to_string()
            };
            assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header("x-frame-options"), "DENY", "{path}");
            assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
            let policy = header("content-security-policy");
            assert!(policy.contains("frame-ancestors 'none'"), "{path}: {policy}");
            assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
            let html = headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
            if html {
                // The page's inline script and stylesheet are the ones the policy admits.
                let body = response.text().await.unwrap();
                let inline = |open: &str, close: &str| -> Vec<String> {
                    body.split(open)
                        .skip(1)
                        .filter_map(|rest| rest.split_once(close).map(|(code, _)| code.to_string()))
                        .collect()
                };
                let hash = |code: &str| {
                    format!(
                        "'sha256-{}'",
                        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(code.as_bytes()))
                    )
                };
                for style in inline("<style>", "</style>") {
                    assert!(policy.contains(&format!("style-src {}", hash(&style))), "{path}");
                }
                for script in inline("<script>", "</script>") {
                    assert!(policy.contains(&format!("script-src {}", hash(&script))), "{path}");
                }
                assert!(policy.starts_with("default-src 'none'"), "{path}: {policy}");
            } else {
                assert_eq!(policy, "default-src 'none'; frame-ancestors 'none'", "{path}");
            }
            checked.push(format!("{path} {status}{}", if html { " html" } else { "" }));
        }
    }
    println!("security headers on: {checked:?}");
    assert!(checked.iter().any(|c| c.starts_with("/ 200 html")));
    assert!(checked.iter().any(|c| c.starts_with("/ 421")));
    sims.shutdown().await;
}

/// The most one `/configs` page may weigh, whatever the fleet.
const PAGE_BOUND: usize = 4 * 1024 * 1024;

/// A ledger of `devices` miners, three configurations each, ten samples per configuration.
fn big_ledger(path: &std::path::Path, devices: usize) {
    let names: Vec<String> = (0..devices).map(|i| format!("miner-{i:04}")).collect();
    let mut records = Vec::new();
    for name in &names {
        for (c, (freq, mv)) in [(490.0, 1150.0), (525.0, 1200.0), (575.0, 1250.0)]
            .into_iter()
            .enumerate()
        {
            for i in 0..10u64 {
                let mut s = S::new(freq, mv);
                s.mac = None;
                s.uptime = 10_000 + (c as u64 * 10 + i) * 30;
                s.hashrate = 1000.0 + freq - 500.0 + i as f64;
                records.push((name.as_str(), (c as f64 * 10.0 + i as f64) * 30.0, s));
            }
        }
    }
    write_all(path, 0.0, records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn configs_of_a_thousand_devices_come_in_pages_and_a_burst_of_renders_waits_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    big_ledger(&dir.path().join("ledger.db"), 1000);
    let exporter = Exporter::start_with_server(dir, &nobody(), 30.0, "");
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(exporter.url(path)).send();

    // The first page: whole devices, a bounded body, a link to the next.
    let first = get("/configs").await.unwrap();
    assert_eq!(first.status(), 200);
    let first = first.text().await.unwrap();
    assert!(first.len() < PAGE_BOUND, "/configs weighs {} bytes", first.len());
    assert!(first.contains("page 1 of 40"), "no pager on /configs");
    assert!(first.contains("/configs?metric=efficiency&amp;page=2"));
    assert!(first.contains("miner-0000") && first.contains("miner-0024") && !first.contains("miner-0025"));
    let last = get("/configs?page=40").await.unwrap().text().await.unwrap();
    assert!(last.len() < PAGE_BOUND);
    assert!(last.contains("miner-0999") && !last.contains("miner-0974"));
    println!("/configs of 1,000 devices: {} bytes a page", first.len());

    // The API: whole devices too, the next page in the Link header.
    let api = get("/api/v1/configs").await.unwrap();
    let link = api.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(link, "</api/v1/configs?page=2>; rel=\"next\"");
    let body = api.bytes().await.unwrap();
    assert!(body.len() < PAGE_BOUND);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.len(), 600, "200 devices of 3 configurations");
    let api_last = get("/api/v1/configs?page=5").await.unwrap();
    assert_eq!(
        api_last.headers()["link"].to_str().unwrap(),
        "</api/v1/configs?page=4>; rel=\"prev\""
    );

    // 40 requests at once: each is drawn (2 at a time, 8 more waiting) or refused with
    // Retry-After, and the process does not hold 40 pages in memory at once.
    let before = exporter.rss_kib();
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let (client, url) = (client.clone(), exporter.url("/configs"));
            tokio::spawn(async move {
                let response = client.get(url).send().await.unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let length = response.bytes().await.unwrap().len();
                (status, retry_after, length)
            })
        })
        .collect();
    let (mut drawn, mut refused) = (0, 0);
    for request in requests {
        let (status, retry_after, length) = request.await.unwrap();
        match status {
            200 => {
                assert!(length < PAGE_BOUND);
                drawn += 1;
            }
            503 => {
                assert_eq!(retry_after.unwrap(), "5");
                refused += 1;
            }
            other => panic!("/configs answered {other} in a burst"),
        }
    }
    let peak = proc_status_kib(exporter.pid(), "VmHWM:");
    println!(
        "40 concurrent /configs: {drawn} drawn, {refused} refused; RSS {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(drawn >= 2, "{drawn} drawn");
    assert!(
        peak < before + 256 * 1024,
        "peak RSS {} MiB against {} MiB before the burst",
        peak / 1024,
        before / 1024
    );
}
