//! The Prometheus / Alertmanager / Grafana stack, checked with the real binaries (Debian
//! packages `prometheus`, `prometheus-alertmanager`, `docker-compose`; `./test.sh` installs
//! them): the static checks (promtool, amtool, docker-compose), the dashboards' structure,
//! and a live run in which alerts reach a webhook and every dashboard query returns data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitaxe_exporter::sim::dialects::Dialect;
use bitaxe_exporter::sim::physics::Board;
use bitaxe_exporter::sim::{Fault, MinerSpec, SimFleet};
use serde_json::Value;
use serde_yaml::Value as Yaml;

use crate::support::{free_port, repo_path, InProcess};

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .current_dir(repo_path(""))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); ./test.sh installs it"))
}

fn assert_ok(program: &str, args: &[&str]) {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn files(dir: &str, extension: &str) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(repo_path(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .map(|p| p.strip_prefix(repo_path("")).unwrap().display().to_string())
        .collect();
    found.sort();
    found
}

#[test]
fn promtool_amtool_and_docker_compose_accept_the_files() {
    assert_ok("promtool", &["check", "config", "prometheus/prometheus.yml"]);
    let rules = files("prometheus/rules", "yml");
    assert!(rules.len() >= 2);
    let mut args = vec!["check", "rules"];
    args.extend(rules.iter().map(String::as_str));
    assert_ok("promtool", &args);
    let tests = files("prometheus/tests", "yml");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    assert_ok("promtool", &args);
    assert_ok("amtool", &["check-config", "prometheus/alertmanager.yml"]);
    // The commented receivers (Telegram, Discord, ntfy, e-mail, chat) work once uncommented:
    // every "  # " line that continues a "  # - name:" block, uncommented.
    let example = std::fs::read_to_string(repo_path("prometheus/alertmanager.yml")).unwrap();
    let mut uncommented = String::new();
    let mut in_receiver = false;
    for line in example.lines() {
        if line.starts_with("  # - name:") {
            in_receiver = true;
        } else if !line.starts_with("  #   ") {
            in_receiver = false;
        }
        if in_receiver {
            uncommented.push_str(&line.replacen("  # ", "  ", 1));
        } else {
            uncommented.push_str(line);
        }
        uncommented.push('\n');
    }
    let names = ["telegram", "discord", "ntfy", "email", "chat"];
    for name in names {
        assert!(
            uncommented.contains(&format!("  - name: {name}")),
            "{name}:\n{uncommented}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("alertmanager.yml");
    std::fs::write(&all, &uncommented).unwrap();
    assert_ok("amtool", &["check-config", all.to_str().unwrap()]);
    // The compose file validates with a Grafana password given (as `.env` gives it), and
    // refuses to run without one rather than fall back to admin/admin.
    let compose = |password: Option<&str>| {
        let mut command = Command::new("docker-compose");
        command
            .args(["-f", "docker-compose.yml", "config", "-q"])
            .current_dir(repo_path(""))
            .env_remove("GRAFANA_ADMIN_PASSWORD");
        if let Some(password) = password {
            command.env("GRAFANA_ADMIN_PASSWORD", password);
        }
        command
            .output()
            .expect("docker-compose (Debian package docker-compose)")
    };
    let with = compose(Some("a-real-secret"));
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    let without = compose(None);
    assert!(!without.status.success(), "compose ran without a Grafana password");
    assert!(String::from_utf8_lossy(&without.stderr).contains("GRAFANA_ADMIN_PASSWORD"));
}

/// What the image's build stage copies in: every `COPY` of the build stage (not `--from`),
/// its sources.
fn dockerfile_build_copies() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo_path("Dockerfile")).unwrap();
    let build_stage = dockerfile.split("\nFROM ").next().unwrap_or_default().to_string()
        + dockerfile.split("\nFROM ").nth(1).unwrap_or_default();
    let mut sources = Vec::new();
    for line in build_stage
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        let (_destination, copied) = words.split_last().unwrap();
        sources.extend(copied.iter().map(|s| s.trim_end_matches('/').to_string()));
    }
    sources
}

/// Every file the release build reads, by its top-level entry: the manifest and lock, the
/// build script, the sources, each declared target's file and every `include_str!` /
/// `include_bytes!` target.
fn files_the_build_reads() -> BTreeSet<String> {
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock", "src"].map(String::from).into();
    if repo_path("build.rs").exists() {
        needed.insert("build.rs".into());
    }
    let manifest = std::fs::read_to_string(repo_path("Cargo.toml")).unwrap();
    for line in manifest.lines() {
        if let Some(path) = line.strip_prefix("path = ") {
            let path = path.trim_matches('"');
            needed.insert(path.split('/').next().unwrap().to_string());
        }
    }
    let mut stack = vec![repo_path("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for target in include_targets(&text) {
                let resolved = path.parent().unwrap().join(target);
                let resolved = resolved
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {e}", resolved.display()));
                let relative = resolved.strip_prefix(repo_path("").canonicalize().unwrap()).unwrap();
                needed.insert(
                    relative
                        .components()
                        .next()
                        .unwrap()
                        .as_os_str()
                        .to_string_lossy()
                        .into(),
                );
            }
        }
    }
    needed
}

/// The string literals given to `include_str!(…)` and `include_bytes!(…)` in a source file.
fn include_targets(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for macro_name in ["include_str!(\"", "include_bytes!(\""] {
        let mut rest = text;
        while let Some(start) = rest.find(macro_name) {
            rest = &rest[start + macro_name.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].to_string());
            }
        }
    }
    found
}

/// No Docker engine runs here, so the image is not built in the tests; this checks what
/// broke it before: a file the build reads (the build script, the inlined web assets) that
/// the Dockerfile does not copy into the build stage.
#[test]
fn the_dockerfile_copies_every_file_the_build_reads() {
    let copies = dockerfile_build_copies();
    let needed = files_the_build_reads();
    assert!(needed.contains("assets") && needed.contains("build.rs"), "{needed:?}");
    let missing: Vec<&String> = needed
        .iter()
        .filter(|entry| {
            !copies
                .iter()
                .any(|c| c == *entry || entry.starts_with(&format!("{c}/")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build stage does not copy {missing:?} (copies {copies:?})"
    );
}

#[test]
fn every_alert_links_an_absolute_runbook_that_exists() {
    let base = format!("{}/blob/main/docs/alerts.md#", env!("CARGO_PKG_REPOSITORY"));
    assert!(base.starts_with("https://"), "{base}");
    // GitHub's heading anchors: lower case, spaces to hyphens, punctuation dropped.
    let anchors: BTreeSet<String> = std::fs::read_to_string(repo_path("docs/alerts.md"))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let rules: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("prometheus/rules/bitaxe-alerts.yml")).unwrap())
            .unwrap();
    let mut alerts = 0;
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let Some(alert) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let url = rule["annotations"]["runbook_url"].as_str().unwrap_or("");
            let anchor = url
                .strip_prefix(&base)
                .unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} does not start with {base}"));
            assert!(
                anchors.contains(anchor),
                "{alert}: no heading for #{anchor} in docs/alerts.md"
            );
            assert_eq!(anchor, alert.to_lowercase(), "{alert} links another alert's runbook");
        }
    }
    assert!(alerts >= 10, "{alerts} alerts");
}

fn dashboards() -> Vec<(String, Value)> {
    files("grafana/dashboards", "json")
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(repo_path(&f)).unwrap();
            (f, serde_json::from_str(&text).unwrap())
        })
        .collect()
}

#[test]
fn dashboards_are_built_for_provisioning() {
    let datasources: Yaml = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("grafana/provisioning/datasources/prometheus.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(datasources["datasources"][0]["uid"], Yaml::from("prometheus"));
    let boards = dashboards();
    assert_eq!(boards.len(), 3);
    let mut uids = BTreeSet::new();
    for (file, board) in &boards {
        assert!(board.get("__inputs").is_none(), "{file}: import-only __inputs");
        assert!(
            !board.to_string().contains("DS_PROMETHEUS"),
            "{file}: import-only datasource reference"
        );
        assert!(
            uids.insert(board["uid"].as_str().unwrap().to_string()),
            "{file}: duplicate uid"
        );
        let variables = board["templating"]["list"].as_array().unwrap();
        let variable = |name: &str| {
            variables
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{file}: no ${name}"))
        };
        assert_eq!(variable("datasource")["type"], "datasource");
        assert_eq!(variable("datasource")["query"], "prometheus");
        assert_eq!(variable("device")["multi"], true);
        assert_eq!(variable("device")["datasource"]["uid"], "${datasource}");
        for panel in board["panels"].as_array().unwrap() {
            let title = panel["title"].as_str().unwrap();
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "{file}: {title}");
            let unit = panel["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{file}: {title} has no unit");
            // Stat, gauge and bar-gauge panels colour by thresholds: without explicit ones
            // Grafana paints anything above 80 red (a hashrate, a power in watts). Each
            // has its own, or a single step that means "no threshold".
            if ["stat", "gauge", "bargauge"].contains(&panel["type"].as_str().unwrap_or("")) {
                let steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{file}: {title} has no explicit thresholds"));
                assert!(!steps.is_empty(), "{file}: {title}");
                assert!(
                    !steps.iter().any(|s| s["color"] == "red" && s["value"] == 80),
                    "{file}: {title} keeps Grafana's default red at 80"
                );
                if title.contains("temperature") || title.contains("ASIC") {
                    let values: Vec<f64> = steps.iter().filter_map(|s| s["value"].as_f64()).collect();
                    assert_eq!(
                        values,
                        [65.0, 70.0],
                        "{file}: {title}: the default warning and shutdown thresholds"
                    );
                }
            }
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{file}: {title}");
            }
        }
    }
}

/// (where, PromQL) pairs.
type Queries = Vec<(String, String)>;

/// Every PromQL expression of the dashboards (panels, then annotations), with the panel title.
fn dashboard_queries() -> (Queries, Queries) {
    let (mut panels, mut annotations) = (Vec::new(), Vec::new());
    for (file, board) in dashboards() {
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                panels.push((
                    format!("{file}: {}", panel["title"]),
                    target["expr"].as_str().unwrap().to_string(),
                ));
            }
        }
        for annotation in board["annotations"]["list"].as_array().unwrap() {
            annotations.push((
                format!("{file}: {}", annotation["name"]),
                annotation["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    (panels, annotations)
}

/// The template variables Grafana would substitute.
fn substitute(expr: &str) -> String {
    expr.replace("$device", ".*")
        .replace("$__rate_interval", "15s")
        .replace("$__range", "5m")
        .replace("$__interval", "5s")
}

/// Metric names (`bitaxe_…`) used by the rules and dashboards.
fn used_metric_names() -> BTreeSet<String> {
    let mut text = String::new();
    for file in files("prometheus/rules", "yml") {
        let rules: Yaml = serde_yaml::from_str(&std::fs::read_to_string(repo_path(&file)).unwrap()).unwrap();
        for group in rules["groups"].as_sequence().unwrap() {
            for rule in group["rules"].as_sequence().unwrap() {
                text.push_str(rule["expr"].as_str().unwrap());
                text.push('\n');
            }
        }
    }
    for (_, expr) in dashboard_queries().0.into_iter().chain(dashboard_queries().1) {
        text.push_str(&expr);
        text.push('\n');
    }
    let mut names = BTreeSet::new();
    let mut token = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            token.push(c);
        } else {
            if token.starts_with("bitaxe_") {
                names.insert(token.clone());
            }
            token.clear();
        }
    }
    names
}

/// Sample names the exporter can expose, from the `# TYPE` lines of a scrape.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("#") || parts.next() != Some("TYPE") {
            continue;
        }
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(match kind {
            "counter" => format!("{name}_total"),
            "info" => format!("{name}_info"),
            _ => name.to_string(),
        });
    }
    names
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}");
        }
        assert!(Instant::now() < deadline, "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// prometheus.yml with short intervals (scrapes and rule evaluations every `interval`) and
/// local targets; the rules with `for:` shortened.
fn test_prometheus_config(
    dir: &Path,
    interval: &str,
    exporter: u16,
    alertmanager: u16,
    prometheus: u16,
) -> std::path::PathBuf {
    let mut config: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("prometheus/prometheus.yml")).unwrap()).unwrap();
    config["global"]["scrape_interval"] = interval.into();
    config["global"]["evaluation_interval"] = interval.into();
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] =
        Yaml::Sequence(vec![format!("127.0.0.1:{alertmanager}").into()]);
    for job in config["scrape_configs"].as_sequence_mut().unwrap() {
        let target = if job["job_name"] == "bitaxe" {
            exporter
        } else {
            prometheus
        };
        job["scrape_interval"] = interval.into();
        job["scrape_timeout"] = interval.into();
        job["static_configs"][0]["targets"] = Yaml::Sequence(vec![format!("127.0.0.1:{target}").into()]);
    }
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    for file in files("prometheus/rules", "yml") {
        let mut rules: Yaml = serde_yaml::from_str(&std::fs::read_to_string(repo_path(&file)).unwrap()).unwrap();
        for group in rules["groups"].as_sequence_mut().unwrap() {
            assert!(
                group.get("interval").is_none(),
                "{file}: rule groups follow the global evaluation_interval"
            );
            for rule in group["rules"].as_sequence_mut().unwrap() {
                if rule.get("for").is_some() {
                    rule["for"] = "3s".into();
                }
            }
        }
        let name = Path::new(&file).file_name().unwrap();
        std::fs::write(dir.join("rules").join(name), serde_yaml::to_string(&rules).unwrap()).unwrap();
    }
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// alertmanager.yml with short waits and the webhook pointed at the test's receiver (at
/// `http://ADDRESS/PATH`), its token read from `alerts-token` in `dir` (written here) instead
/// of the compose secret.
fn test_alertmanager_config(dir: &Path, webhook: SocketAddr, path: &str) -> std::path::PathBuf {
    let mut config: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("prometheus/alertmanager.yml")).unwrap()).unwrap();
    config["route"]["group_wait"] = "1s".into();
    config["route"]["group_interval"] = "1s".into();
    let webhook_config = &mut config["receivers"][0]["webhook_configs"][0];
    webhook_config["url"] = format!("http://{webhook}{path}").into();
    let token = dir.join("alerts-token");
    std::fs::write(&token, format!("{ALERTS_TOKEN}\n")).unwrap();
    webhook_config["http_config"]["authorization"]["credentials_file"] = token.display().to_string().into();
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// A webhook receiver: collects every alert Alertmanager posts.
async fn webhook_receiver() -> (SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/bitaxe",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                if let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&body) {
                    if let Some(Value::Array(alerts)) = payload.get("alerts") {
                        store.lock().unwrap().extend(alerts.iter().cloned());
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, received)
}

/// The real Prometheus on `port` with this config and its storage in `dir`, killed on drop.
fn start_prometheus(dir: &Path, config: &Path, port: u16) -> Killed {
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus)");
    wait_listening(port, "prometheus", &mut prometheus);
    Killed(prometheus)
}

async fn prometheus_query(client: &reqwest::Client, port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("http://127.0.0.1:{port}/api/v1/query"), &[("query", expr)])
        .map_err(|e| e.to_string())?;
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    let body: Value =
        serde_json::from_str(&response.text().await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    Ok(body["data"]["result"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_reach_the_webhook_and_every_dashboard_query_returns_data() {
    // Two healthy miners, one overclocked far above the temperature thresholds, one offline.
    let ok_gamma = MinerSpec::new(Board::Gamma, Dialect::V2_15, 1);
    let ok_supra = MinerSpec::new(Board::Supra, Dialect::V2_10, 2);
    let mut hot = MinerSpec::new(Board::Gamma, Dialect::V2_15, 3);
    hot.frequency_mhz = Some(800.0);
    hot.core_voltage_mv = Some(1300);
    let mut offline = MinerSpec::new(Board::Ultra, Dialect::V2_4, 4);
    offline.fault = Fault::Offline;
    // Answers and reports a hashrate, finds no shares (difficulty 10: a share expected
    // every 0.04 s, so the stall shows at once).
    // And one miner per other "is it really mining?" fault.
    let faulty = |seed, fault| {
        let mut spec = MinerSpec::new(Board::Gamma, Dialect::V2_15, seed);
        spec.fault = fault;
        spec.pool_difficulty = Some(10.0);
        spec
    };
    let starved = faulty(5, Fault::Starvation);
    // Tuned to 600 MHz / 1200 mV in a cool room, heated later until the firmware's own
    // protection trips (v2.15: mining stops, then 100 MHz / 100 mV lower).
    let mut cooked = MinerSpec::new(Board::Gamma, Dialect::V2_15, 11);
    cooked.frequency_mhz = Some(600.0);
    cooked.core_voltage_mv = Some(1200);
    cooked.time_scale = 60.0;
    cooked.ambient_celsius = 25.0;
    let sims = SimFleet::start(
        &[
            ok_gamma,
            ok_supra,
            hot,
            offline,
            starved,
            faulty(6, Fault::Flatline),
            faulty(7, Fault::Phantom),
            faulty(8, Fault::Spike),
            faulty(9, Fault::PowerFault),
            faulty(10, Fault::Paused),
            cooked,
        ],
        None,
    )
    .await
    .unwrap();
    let names = [
        "ok-gamma",
        "ok-supra",
        "hot",
        "offline",
        "starved",
        "flatline",
        "phantom",
        "spike",
        "power-fault",
        "paused",
        "cooked",
    ];
    let faulty_names = [
        "starved",
        "flatline",
        "phantom",
        "spike",
        "power-fault",
        "paused",
        "cooked",
    ];
    let devices: Vec<(String, SocketAddr)> = names
        .iter()
        .map(|n| n.to_string())
        .zip(sims.addresses().iter().copied())
        .collect();
    // A short warm-up, so that the steady series the comparison dashboard reads exist.
    let exporter = InProcess::start_with(&devices, 1.0, "analysis:\n  warmup_minutes: 0.05\n").await;

    let dir = tempfile::tempdir().unwrap();
    let (webhook, received) = webhook_receiver().await;
    let (am_port, prom_port) = (free_port(), free_port());
    let am_config = test_alertmanager_config(dir.path(), webhook, "/bitaxe");
    let mut alertmanager = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", am_config.display()))
        .arg(format!("--storage.path={}", dir.path().join("am").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (Debian package prometheus-alertmanager)");
    wait_listening(am_port, "alertmanager", &mut alertmanager);
    let _alertmanager = Killed(alertmanager);
    let prom_config = test_prometheus_config(dir.path(), "1s", exporter.port, am_port, prom_port);
    let _prometheus = start_prometheus(dir.path(), &prom_config, prom_port);

    // The alerts for the hot and the offline miner arrive at the webhook, with the device.
    let deadline = Instant::now() + Duration::from_secs(90);
    let arrived =
        |alert: &str, device: &str| {
            received.lock().unwrap().iter().any(|a| {
                a["labels"]["alertname"] == alert && a["labels"]["device"] == device && a["status"] == "firing"
            })
        };
    while !(arrived("BitaxeMinerDown", "offline")
        && arrived("BitaxeAsicTemperatureCritical", "hot")
        && arrived("BitaxeSharesStalled", "starved"))
    {
        assert!(
            Instant::now() < deadline,
            "alerts did not arrive; received: {:#?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Each verdict is its own alert, for its miner only (through the real Prometheus and
    // the repository's rules; `for:` shortened to 3 s).
    let client = reqwest::Client::new();
    let verdicts = [
        ("BitaxeSharesStalled", "starved"),
        ("BitaxeHashrateFrozen", "flatline"),
        ("BitaxeShareRateLow", "phantom"),
        ("BitaxeImplausibleReading", "spike"),
        ("BitaxePowerFault", "power-fault"),
        ("BitaxeMiningPaused", "paused"),
    ];
    let verdict_deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let firing = prometheus_query(&client, prom_port, "ALERTS{alertstate=\"firing\"}")
            .await
            .unwrap();
        let pairs: Vec<(String, String)> = firing
            .iter()
            .map(|a| {
                (
                    a["metric"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["metric"]["device"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        for (alert, device) in &pairs {
            if alert.starts_with("BitaxeShares")
                || alert.starts_with("BitaxeHashrateFrozen")
                || alert.starts_with("BitaxeShareRate")
                || alert == "BitaxeImplausibleReading"
                || alert == "BitaxePowerFault"
                || alert == "BitaxeMiningPaused"
            {
                // A flatline stops the shares at once: the stall may fire before ten
                // readings name the frozen hashrate.
                let on_the_way = alert == "BitaxeSharesStalled" && device == "flatline";
                assert!(
                    on_the_way || verdicts.contains(&(alert.as_str(), device.as_str())),
                    "{alert} fires for {device}: {pairs:?}"
                );
            }
        }
        if verdicts
            .iter()
            .all(|(a, d)| pairs.iter().any(|(pa, pd)| pa == a && pd == d))
        {
            break;
        }
        assert!(Instant::now() < verdict_deadline, "verdict alerts missing: {pairs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The firmware's overheat protection: the trip and the configuration it left behind
    // are alerts of their own, the second naming both configurations.
    sims.set_ambient(10, 80.0);
    let overheat_deadline = Instant::now() + Duration::from_secs(60);
    let mut tripped = false;
    loop {
        let firing = prometheus_query(&client, prom_port, "ALERTS{alertstate=\"firing\", device=\"cooked\"}")
            .await
            .unwrap();
        let named = |alert: &str| firing.iter().find(|a| a["metric"]["alertname"] == alert).cloned();
        // Tripped: let the room cool, so the firmware restarts on its lowered settings.
        if !tripped && named("BitaxeOverheatMode").is_some() {
            tripped = true;
            sims.set_ambient(10, 20.0);
        }
        if let Some(changed) = named("BitaxeOverheatProtectionChangedConfig") {
            assert_eq!(changed["metric"]["from"], "600/1200", "{changed}");
            assert_eq!(changed["metric"]["to"], "500/1100", "{changed}");
            assert!(tripped, "the configuration changed before BitaxeOverheatMode fired");
            break;
        }
        assert!(
            Instant::now() < overheat_deadline,
            "overheat alerts missing for cooked: {firing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let hot_alert = received
        .lock()
        .unwrap()
        .iter()
        .find(|a| a["labels"]["alertname"] == "BitaxeAsicTemperatureCritical")
        .cloned()
        .unwrap();
    assert_eq!(hot_alert["labels"]["severity"], "critical");
    let summary = hot_alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("Miner hot ASIC at 7"),
        "the summary names the device and the value: {summary}"
    );
    assert_eq!(
        hot_alert["annotations"]["runbook_url"],
        format!(
            "{}/blob/main/docs/alerts.md#bitaxeasictemperaturecritical",
            env!("CARGO_PKG_REPOSITORY")
        )
    );

    // Nothing fires for the healthy miners, in Prometheus or at the webhook.
    let client = reqwest::Client::new();
    let alerts: Value = serde_json::from_str(
        &client
            .get(format!("http://127.0.0.1:{prom_port}/api/v1/alerts"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    let firing: Vec<(String, String)> = alerts["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                a["labels"]["device"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        firing.contains(&("BitaxeAsicTemperatureWarning".into(), "hot".into())),
        "{firing:?}"
    );
    for (alert, device) in &firing {
        assert!(
            device == "hot" || device == "offline" || faulty_names.contains(&device.as_str()),
            "{alert} fires for {device:?}: {firing:?}"
        );
    }
    for alert in received.lock().unwrap().iter() {
        let device = alert["labels"]["device"].as_str().unwrap_or("");
        assert!(
            device == "hot" || device == "offline" || faulty_names.contains(&device),
            "notified about {device:?}: {alert}"
        );
    }

    // Every dashboard query evaluates and returns data; annotation queries evaluate.
    // The panels that read `device:bitaxe_share_hashrate_hashes_per_second:rate15m` need no
    // exception: rate() over the 15-minute window answers once it holds two samples, which
    // the 1 s scrapes and rule evaluations give within seconds (the value is then a short
    // rate, not yet a 15-minute one; its arithmetic is checked by promtool in
    // prometheus/tests/bitaxe-recording.test.yml). The "Really mining?" problem rows
    // (`bitaxe_mining_problem == 1`) return data because the faulty miners have problems; on
    // a healthy fleet that query is rightly empty.
    let (panels, annotations) = dashboard_queries();
    let mut failures = Vec::new();
    for (panel, expr) in &panels {
        match prometheus_query(&client, prom_port, &substitute(expr)).await {
            Ok(result) if result.is_empty() => failures.push(format!("{panel}: no data for {expr}")),
            Ok(_) => {}
            Err(e) => failures.push(format!("{panel}: {e} for {expr}")),
        }
    }
    for (annotation, expr) in &annotations {
        if let Err(e) = prometheus_query(&client, prom_port, &substitute(expr)).await {
            failures.push(format!("{annotation}: {e}"));
        }
    }
    let devices = prometheus_query(&client, prom_port, "count by (device) (bitaxe_up)")
        .await
        .unwrap();
    assert_eq!(
        devices.len(),
        names.len(),
        "the device variable's label_values finds every device"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(panels.len() > 25, "{} panel queries checked", panels.len());

    // Every metric the rules and dashboards use is one the exporter exposes.
    let exposed = exposed_names(&exporter.metrics_text().await);
    let unknown: Vec<String> = used_metric_names().difference(&exposed).cloned().collect();
    assert!(unknown.is_empty(), "used but not exposed: {unknown:?}");

    // One failed poll (an HTTP 500 on flaky Wi-Fi) does not reset the firing temperature
    // alert: the last good reading stays exposed until it is 3 poll intervals old…
    let firing_critical = "ALERTS{alertname=\"BitaxeAsicTemperatureCritical\",device=\"hot\",alertstate=\"firing\"}";
    assert!(!prometheus_query(&client, prom_port, firing_critical)
        .await
        .unwrap()
        .is_empty());
    sims.set_fault(2, Fault::Http500);
    let hiccup = Instant::now();
    while exporter
        .metrics()
        .await
        .value("bitaxe_last_poll_success", &[("device", "hot")])
        != Some(0.0)
    {
        assert!(
            hiccup.elapsed() < Duration::from_secs(5),
            "the injected failure was never polled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sims.set_fault(2, Fault::None);
    while hiccup.elapsed() < Duration::from_secs(5) {
        let still = prometheus_query(&client, prom_port, firing_critical).await.unwrap();
        assert!(
            !still.is_empty(),
            "the alert reset {:?} after one failed poll",
            hiccup.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and a miner that stays dead still goes down.
    sims.set_fault(2, Fault::Offline);
    let dead = Instant::now();
    while prometheus_query(&client, prom_port, "bitaxe_up{device=\"hot\"} == 0")
        .await
        .unwrap()
        .is_empty()
    {
        assert!(dead.elapsed() < Duration::from_secs(15), "a dead miner never went down");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A down miner silences its other alerts, critical ones too (alertmanager.yml's inhibit
    // rule): its temperature alert keeps firing from the last reading (keep_firing_for), but
    // Alertmanager marks it inhibited by the down alert and sends it no more; the down alert
    // itself is delivered.
    while !arrived("BitaxeMinerDown", "hot") {
        assert!(
            dead.elapsed() < Duration::from_secs(30),
            "BitaxeMinerDown for hot did not arrive: {:#?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    loop {
        let alerts = alertmanager_alerts(&client, am_port).await;
        let hot = |name: &str| {
            alerts
                .iter()
                .find(|a| a["labels"]["alertname"] == name && a["labels"]["device"] == "hot")
                .cloned()
        };
        let (down, critical) = (hot("BitaxeMinerDown"), hot("BitaxeAsicTemperatureCritical"));
        let down = down.unwrap_or_else(|| panic!("no BitaxeMinerDown for hot in Alertmanager: {alerts:#?}"));
        assert_eq!(
            down["status"]["state"], "active",
            "the down alert is not silenced: {down}"
        );
        let critical =
            critical.unwrap_or_else(|| panic!("the temperature alert left Alertmanager too soon: {alerts:#?}"));
        let inhibited_by = critical["status"]["inhibitedBy"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if critical["status"]["state"] == "suppressed" && inhibited_by.contains(&down["fingerprint"]) {
            break;
        }
        assert!(
            dead.elapsed() < Duration::from_secs(40),
            "the down miner's critical temperature alert is not inhibited: {critical}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let inhibited_since = received.lock().unwrap().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for alert in &received.lock().unwrap()[inhibited_since..] {
        assert!(
            !(alert["labels"]["device"] == "hot"
                && alert["labels"]["alertname"] != "BitaxeMinerDown"
                && alert["status"] == "firing"),
            "an inhibited alert of the down miner was delivered: {alert}"
        );
    }
    sims.shutdown().await;
}

/// The token the stack tests give Alertmanager and the exporter.
const ALERTS_TOKEN: &str = "stack-test-token-0123456789";

/// Alertmanager started with this config on a free port, killed on drop; its port.
fn start_alertmanager(dir: &Path, config: &Path) -> (Killed, u16) {
    let port = free_port();
    let mut alertmanager = Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (Debian package prometheus-alertmanager)");
    wait_listening(port, "alertmanager", &mut alertmanager);
    (Killed(alertmanager), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_alertmanager_config_delivers_to_the_exporters_alerts_endpoint_with_its_token() {
    // The compose file gives both containers the same secret, and each reads it where the
    // other's config says.
    let compose: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("docker-compose.yml")).unwrap()).unwrap();
    let shipped: Yaml =
        serde_yaml::from_str(&std::fs::read_to_string(repo_path("prometheus/alertmanager.yml")).unwrap()).unwrap();
    let secret_path = "/run/secrets/alerts_token";
    assert_eq!(
        shipped["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"]["credentials_file"],
        secret_path
    );
    assert_eq!(
        compose["services"]["bitaxe-exporter"]["environment"]["BITAXE_EXPORTER_ALERTS_TOKEN_FILE"],
        secret_path
    );
    for service in ["bitaxe-exporter", "alertmanager"] {
        let secrets = compose["services"][service]["secrets"].as_sequence().unwrap();
        assert!(secrets.iter().any(|s| s == "alerts_token"), "{service}: {secrets:?}");
    }
    assert!(compose["secrets"]["alerts_token"]["file"].is_string());

    // The exporter with the token, and Alertmanager with the shipped config, only the exporter's address and the token file's
    // path changed: an alert posted to Alertmanager ends up in the exporter's log.
    let dir = tempfile::tempdir().unwrap();
    let exporter_dir = tempfile::tempdir().unwrap();
    std::fs::write(exporter_dir.path().join("alerts.token"), format!("{ALERTS_TOKEN}\n")).unwrap();
    let exporter = crate::support::Exporter::start_with_server(
        exporter_dir,
        &[("rig".to_string(), "127.0.0.1:9".parse().unwrap())],
        30.0,
        "  alerts_token_file: alerts.token\n",
    );
    let exporter_address: SocketAddr = format!("127.0.0.1:{}", exporter.port).parse().unwrap();
    let am_config = test_alertmanager_config(dir.path(), exporter_address, "/alerts");
    assert_ok("amtool", &["check-config", am_config.to_str().unwrap()]);
    let (_alertmanager, am_port) = start_alertmanager(dir.path(), &am_config);
    let alert = serde_json::json!([{
        "labels": {"alertname": "StackDeliveryCheck", "severity": "critical", "device": "rig"},
        "annotations": {"summary": "delivered through the shipped webhook"},
    }]);
    let posted = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{am_port}/api/v2/alerts"))
        .header("content-type", "application/json")
        .body(alert.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200, "{}", posted.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = exporter.log();
        if let Some(line) = log.lines().find(|l| l.contains("StackDeliveryCheck")) {
            assert!(line.contains("ERROR") && line.contains("rig"), "{line}");
            assert!(line.contains("delivered through the shipped webhook"), "{line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the alert did not reach the exporter's log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The alerts Alertmanager holds, with their status (`active`, or `suppressed` and by what).
async fn alertmanager_alerts(client: &reqwest::Client, port: u16) -> Vec<Value> {
    let body = client
        .get(format!("http://127.0.0.1:{port}/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `promtool check metrics` on a body: (exit code, its findings).
fn promtool_check_metrics(body: &[u8]) -> (Option<i32>, String) {
    use std::io::Write as _;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let output = child.wait_with_output().unwrap();
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), findings)
}

#[tokio::test(flavor = "multi_thread")]
async fn promtool_checks_metrics_in_both_formats() {
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Gamma, Dialect::V2_15, 1),
            MinerSpec::new(Board::Max, Dialect::V2_0, 2),
            MinerSpec::new(Board::Supra, Dialect::V2_10, 3),
        ],
        None,
    )
    .await
    .unwrap();
    let devices: Vec<(String, SocketAddr)> = ["gamma", "max", "supra"]
        .iter()
        .map(|n| n.to_string())
        .zip(sims.addresses().iter().copied())
        .collect();
    let exporter = InProcess::start(&devices, 1.0).await;
    exporter
        .wait_for(Duration::from_secs(15), "every miner up", |e| {
            ["gamma", "max", "supra"].iter().all(|d| e.up(d) == Some(1.0))
        })
        .await;
    let client = reqwest::Client::new();
    // What curl gets: the Prometheus text format, which promtool lints clean.
    let plain = client.get(exporter.url("/metrics")).send().await.unwrap();
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let (code, findings) = promtool_check_metrics(&plain.bytes().await.unwrap());
    assert_eq!(code, Some(0), "promtool on the text format:\n{findings}");
    // What Prometheus asks for: OpenMetrics. This promtool reads it with the text parser,
    // which parses it (no error) and only misses the HELP of counters' `_total` samples
    // (OpenMetrics puts it on the family name): nothing else may be found.
    let openmetrics = client
        .get(exporter.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert!(openmetrics.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let body = openmetrics.bytes().await.unwrap();
    assert!(body.ends_with(b"# EOF\n"));
    let (code, findings) = promtool_check_metrics(&body);
    assert_ne!(code, Some(1), "promtool cannot parse the OpenMetrics body:\n{findings}");
    for finding in findings.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            finding.contains("_total no help text"),
            "promtool on OpenMetrics: {finding}\n{findings}"
        );
    }
    sims.shutdown().await;
}

/// The configuration-comparison table's query for one column, as Grafana sends it for a
/// time range of `range` and every device.
fn comparison_column(column: &str, range: &str) -> String {
    let (_, board) = dashboards()
        .into_iter()
        .find(|(file, _)| file.ends_with("configuration-comparison.json"))
        .unwrap();
    let table = board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "table")
        .unwrap();
    let renames = &table["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "organize")
        .unwrap()["options"]["renameByName"];
    let ref_id = renames
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, name)| *name == column)
        .map(|(field, _)| field.trim_start_matches("Value #").to_string())
        .unwrap_or_else(|| panic!("no column {column:?} in {renames}"));
    let target = table["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["refId"] == ref_id.as_str())
        .unwrap();
    target["expr"]
        .as_str()
        .unwrap()
        .replace("$device", ".*")
        .replace("$__range", range)
}

/// (device, MHz, mV) → value, from an instant query's result.
async fn by_configuration(client: &reqwest::Client, port: u16, expr: &str) -> BTreeMap<(String, String, String), f64> {
    let result = prometheus_query(client, port, expr).await.unwrap();
    result
        .iter()
        .map(|series| {
            let label = |key: &str| series["metric"][key].as_str().unwrap_or("").to_string();
            let value: f64 = series["value"][1].as_str().unwrap().parse().unwrap();
            (
                (label("device"), label("frequency_mhz"), label("core_voltage_mv")),
                value,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_comparison_dashboard_agrees_with_compare_configs() {
    // Two miners, each run in two clock configurations; a 4-s warm-up to leave out.
    let sims = SimFleet::start(
        &[
            MinerSpec::new(Board::Gamma, Dialect::V2_15, 11),
            MinerSpec::new(Board::Supra, Dialect::V2_10, 12),
        ],
        None,
    )
    .await
    .unwrap();
    let devices: Vec<(String, SocketAddr)> = ["gamma", "supra"]
        .iter()
        .map(|n| n.to_string())
        .zip(sims.addresses().iter().copied())
        .collect();
    let mut exporter = InProcess::start_with(&devices, 1.0, "analysis:\n  warmup_minutes: 0.0667\n").await;
    let dir = tempfile::tempdir().unwrap();
    let prom_port = free_port();
    // Scrapes and rule evaluations twice per poll, so each reading is recorded about twice.
    let prom_config = test_prometheus_config(dir.path(), "500ms", exporter.port, free_port(), prom_port);
    let _prometheus = start_prometheus(dir.path(), &prom_config, prom_port);
    let client = reqwest::Client::new();

    let retunes = [
        r#"{"frequency": 600, "coreVoltage": 1200}"#,
        r#"{"frequency": 525, "coreVoltage": 1150}"#,
    ];
    let phase = Duration::from_secs(16);
    tokio::time::sleep(phase).await;
    for (address, body) in sims.addresses().iter().zip(retunes) {
        let response = client
            .patch(format!("http://{address}/api/system"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{body}: {}", response.status());
    }
    tokio::time::sleep(phase).await;
    // Stopping the exporter flushes the ledger; Prometheus has everything it scraped.
    exporter.stop().await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    let range = "5m";
    let dashboard_jth = by_configuration(&client, prom_port, &comparison_column("J/TH", range)).await;
    let dashboard_hashrate = by_configuration(&client, prom_port, &comparison_column("Hashrate", range)).await;
    let dashboard_samples = by_configuration(&client, prom_port, &comparison_column("Steady samples", range)).await;

    let output = exporter.cli(&["analyze", "compare-configs", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let ledger: BTreeMap<(String, String, String), (f64, f64, f64)> = rows
        .iter()
        .filter_map(|row| {
            let number = |key: &str| {
                row[key]
                    .as_f64()
                    .map(bitaxe_exporter::axeos::sample::format_label_number)
                    .unwrap_or_default()
            };
            Some((
                (
                    row["device"].as_str()?.to_string(),
                    number("frequency_mhz"),
                    number("core_voltage_mv"),
                ),
                (
                    row["joules_per_terahash"].as_f64()?,
                    row["mean_hashrate_ghs"].as_f64()? * 1e9,
                    row["steady_samples"].as_f64()?,
                ),
            ))
        })
        .collect();

    assert_eq!(
        ledger.keys().collect::<Vec<_>>(),
        dashboard_jth.keys().collect::<Vec<_>>(),
        "the same device × configuration rows (ledger: {rows:#?})"
    );
    assert_eq!(ledger.len(), 4, "two configurations per miner: {rows:#?}");
    for (key, (ledger_jth, ledger_hashrate, ledger_steady)) in &ledger {
        let jth = dashboard_jth[key];
        let hashrate = dashboard_hashrate[key];
        let recorded = dashboard_samples[key];
        eprintln!(
            "{key:?}: J/TH dashboard {jth:.3} ledger {ledger_jth:.3}; hashrate dashboard {:.1} ledger {:.1} GH/s; \
             {recorded} steady evaluations, {ledger_steady} steady polls",
            hashrate / 1e9,
            ledger_hashrate / 1e9,
        );
        // Two evaluations per poll: the same warm-up boundary on both sides.
        assert!(
            (recorded - 2.0 * ledger_steady).abs() <= 4.0,
            "{key:?}: {recorded} steady evaluations for {ledger_steady} steady polls: the warm-up is not left out alike"
        );
        assert!(
            (jth / ledger_jth - 1.0).abs() <= 0.02,
            "{key:?}: the dashboard's J/TH {jth} is not within 2 % of compare-configs' {ledger_jth}"
        );
        assert!(
            (hashrate / ledger_hashrate - 1.0).abs() <= 0.02,
            "{key:?}: the dashboard's hashrate {hashrate} is not within 2 % of compare-configs' {ledger_hashrate}"
        );
    }
    sims.shutdown().await;
}
