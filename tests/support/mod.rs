//! Shared test helpers: fixtures, the exporter's `serve` in this process on a listener
//! bound to port 0 (for what is seen through HTTP) or as a real process (for signals, exit
//! codes, logs and resource use), an OpenMetrics parser that unescapes label values, and golden-file comparison
//! (`UPDATE_GOLDEN=1 cargo test` rewrites the goldens).

pub mod browser;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_bitaxe-exporter");

/// The `Accept` header Prometheus scrapes with.
pub const PROMETHEUS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A body from `tests/fixtures/axeos` (constructed payloads of every firmware era; the
/// repository carries its own copies, so the suite needs nothing beside it).
pub fn local_fixture(name: &str) -> Vec<u8> {
    let path = repo_path("tests/fixtures/axeos").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A config.yaml for these devices, written with serde_yaml so any name is quoted right.
pub fn config_yaml(devices: &[(String, SocketAddr)], poll_interval: f64, listen: &str, database: &Path) -> String {
    let devices: Vec<serde_yaml::Value> = devices
        .iter()
        .map(|(name, addr)| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("name".into(), name.clone().into());
            m.insert("ip".into(), addr.to_string().into());
            serde_yaml::Value::Mapping(m)
        })
        .collect();
    let mut logging = serde_yaml::Mapping::new();
    logging.insert("poll_interval".into(), poll_interval.into());
    logging.insert("database_path".into(), database.display().to_string().into());
    let mut server = serde_yaml::Mapping::new();
    server.insert("listen".into(), listen.into());
    let mut root = serde_yaml::Mapping::new();
    root.insert("devices".into(), serde_yaml::Value::Sequence(devices));
    root.insert("logging".into(), serde_yaml::Value::Mapping(logging));
    root.insert("server".into(), serde_yaml::Value::Mapping(server));
    serde_yaml::to_string(&root).unwrap()
}

/// The HTTP side of a running exporter, whichever way it runs.
pub struct Endpoint {
    pub port: u16,
}

/// `bitaxe-exporter serve` as a process, killed on drop: for signals, exit codes, logs and
/// resource use. Its HTTP side is reached through `Deref` ([`Endpoint`]).
pub struct Exporter {
    child: Child,
    endpoint: Endpoint,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Exporter {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// The library's `serve` running in this test process on a listener bound to port 0 (no
/// port to race for), with its config and ledger in a temporary folder; stopped on drop.
pub struct InProcess {
    endpoint: Endpoint,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), bitaxe_exporter::web::ServeError>>>,
}

impl std::ops::Deref for InProcess {
    type Target = Endpoint;
    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl InProcess {
    pub async fn start(devices: &[(String, SocketAddr)], poll_interval: f64) -> InProcess {
        Self::start_with(devices, poll_interval, "").await
    }

    /// With extra top-level YAML appended to the config (e.g. an `analysis:` section).
    pub async fn start_with(devices: &[(String, SocketAddr)], poll_interval: f64, extra_yaml: &str) -> InProcess {
        Self::start_with_server(devices, poll_interval, extra_yaml, "").await
    }

    /// With extra top-level YAML and extra keys in the `server:` section (each line indented
    /// two spaces, e.g. `"  allowed_hosts: [pi.local]\n"`).
    pub async fn start_with_server(
        devices: &[(String, SocketAddr)],
        poll_interval: f64,
        extra_yaml: &str,
        server_yaml: &str,
    ) -> InProcess {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        let yaml = with_server_keys(
            config_yaml(devices, poll_interval, "127.0.0.1:0", &dir.path().join("ledger.db")) + extra_yaml,
            server_yaml,
        );
        std::fs::write(&config_path, yaml).unwrap();
        let config = bitaxe_exporter::config::load(&config_path).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bitaxe_exporter::web::serve(config, listener, async {
            let _ = stopped.await;
        }));
        InProcess {
            endpoint: Endpoint { port },
            dir,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    /// Runs a CLI command with this exporter's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        cli(&self.config_path(), args)
    }

    /// Stops it and starts it again on the same config and ledger (a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let config = bitaxe_exporter::config::load(&self.config_path()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.endpoint.port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.task = Some(tokio::spawn(bitaxe_exporter::web::serve(config, listener, async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    /// Shuts down as SIGTERM would (polls finished, ledger flushed); how long it took.
    pub async fn stop(&mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        started.elapsed()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs a CLI command with this config.
pub fn cli(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

/// `yaml` (from [`config_yaml`]) with `server_yaml` (lines indented two spaces) added to
/// its `server:` section.
pub fn with_server_keys(yaml: String, server_yaml: &str) -> String {
    if server_yaml.is_empty() {
        return yaml;
    }
    assert!(yaml.contains("\nserver:\n"), "{yaml}");
    yaml.replacen("\nserver:\n", &format!("\nserver:\n{server_yaml}"), 1)
}

/// How [`Exporter::launch`] starts the process.
#[derive(Default)]
struct Launch<'a> {
    /// Top-level YAML appended to the config.
    extra_yaml: &'a str,
    /// Keys added to the config's `server:` section (indented two spaces).
    server_yaml: &'a str,
    /// Soft and hard open-file limits.
    nofile: Option<(u64, u64)>,
    /// Keep the exporter's stderr (at this `RUST_LOG`) for [`Exporter::log`]; else it goes
    /// to the test's stderr at `warn`.
    log: Option<&'a str>,
    /// The folder for the config, the ledger and the log; a fresh one when `None`.
    dir: Option<tempfile::TempDir>,
    /// Rewrites the config text before it is written (e.g. keys inside a device entry).
    edit: Option<&'a dyn Fn(String) -> String>,
}

impl Exporter {
    pub fn start(devices: &[(String, SocketAddr)], poll_interval: f64) -> Exporter {
        Self::start_with(devices, poll_interval, "")
    }

    /// With extra top-level YAML appended to the config (e.g. an `analysis:` section).
    pub fn start_with(devices: &[(String, SocketAddr)], poll_interval: f64, extra_yaml: &str) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                extra_yaml,
                ..Launch::default()
            },
        )
    }

    /// With the process's open-file limit (soft and hard, so the exporter cannot raise it)
    /// set to `nofile`, and its log in [`Exporter::log`] instead of the test's stderr.
    pub fn start_with_nofile(devices: &[(String, SocketAddr)], poll_interval: f64, nofile: u64) -> Exporter {
        Self::start_with_nofile_limits(devices, poll_interval, nofile, nofile)
    }

    /// With a soft open-file limit below the hard one, as a service manager may start it.
    pub fn start_with_nofile_limits(
        devices: &[(String, SocketAddr)],
        poll_interval: f64,
        soft: u64,
        hard: u64,
    ) -> Exporter {
        let nofile = Some((soft, hard));
        Self::launch(
            devices,
            poll_interval,
            Launch {
                nofile,
                log: Some("warn"),
                ..Launch::default()
            },
        )
    }

    /// With `RUST_LOG=rust_log` and the exporter's log in [`Exporter::log`].
    pub fn start_logging(devices: &[(String, SocketAddr)], poll_interval: f64, rust_log: &str) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                log: Some(rust_log),
                ..Launch::default()
            },
        )
    }

    /// With keys added to its `server:` section (indented two spaces), its config, ledger
    /// and log in `dir` (where a relative path in the config resolves), the log at `info`.
    pub fn start_with_server(
        dir: tempfile::TempDir,
        devices: &[(String, SocketAddr)],
        poll_interval: f64,
        server_yaml: &str,
    ) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                server_yaml,
                dir: Some(dir),
                log: Some("info"),
                ..Launch::default()
            },
        )
    }

    /// With its config (plus `extra_yaml`), ledger and log in `dir`: a ledger another
    /// command wrote there first is the one it serves.
    pub fn start_in_with(
        dir: tempfile::TempDir,
        devices: &[(String, SocketAddr)],
        poll_interval: f64,
        extra_yaml: &str,
    ) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                dir: Some(dir),
                log: Some("info"),
                extra_yaml,
                ..Launch::default()
            },
        )
    }

    /// With its config (as `edit` rewrites it), ledger and log (at `info`) in `dir`.
    pub fn start_edited(
        dir: tempfile::TempDir,
        devices: &[(String, SocketAddr)],
        poll_interval: f64,
        edit: &dyn Fn(String) -> String,
    ) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                dir: Some(dir),
                log: Some("info"),
                edit: Some(edit),
                ..Launch::default()
            },
        )
    }

    /// With its config, ledger and log in `dir` (a folder on a filesystem a test controls).
    pub fn start_in(dir: tempfile::TempDir, devices: &[(String, SocketAddr)], poll_interval: f64) -> Exporter {
        Self::launch(
            devices,
            poll_interval,
            Launch {
                dir: Some(dir),
                log: Some("warn"),
                ..Launch::default()
            },
        )
    }

    fn launch(devices: &[(String, SocketAddr)], poll_interval: f64, options: Launch) -> Exporter {
        let Launch {
            extra_yaml,
            server_yaml,
            nofile,
            log,
            dir,
            edit,
        } = options;
        let dir = dir.unwrap_or_else(|| tempfile::tempdir().unwrap());
        // A port picked here may be taken by someone else before the exporter binds it: a
        // start that fails is retried on another port.
        for _attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yaml");
            let database = dir.path().join("ledger.db");
            let yaml = with_server_keys(
                config_yaml(devices, poll_interval, &format!("127.0.0.1:{port}"), &database) + extra_yaml,
                server_yaml,
            );
            let yaml = match edit {
                Some(edit) => edit(yaml),
                None => yaml,
            };
            std::fs::write(&config, yaml).unwrap();
            let mut command = match nofile {
                // `exec` keeps the pid, so `pid()` and `rss_kib()` see the exporter itself.
                Some((soft, hard)) => {
                    let mut sh = Command::new("sh");
                    sh.arg("-c")
                        .arg(format!(
                            "ulimit -S -n {soft} && ulimit -H -n {hard} && exec \"$0\" \"$@\""
                        ))
                        .arg(BIN);
                    sh
                }
                None => Command::new(BIN),
            };
            match log {
                Some(_) => command.stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap()),
                None => command.stderr(Stdio::inherit()),
            };
            let mut child = command
                .arg("--config")
                .arg(&config)
                .arg("serve")
                .env("RUST_LOG", log.unwrap_or("warn"))
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            if wait_ready(&mut child, port) {
                return Exporter {
                    child,
                    endpoint: Endpoint { port },
                    dir,
                };
            }
        }
        panic!("the exporter did not start in five attempts");
    }
}

/// Waits until the exporter answers `/healthz` on `port`; false if it exited first (its
/// port was taken).
fn wait_ready(child: &mut Child, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if healthz_answers(port) && child.try_wait().unwrap().is_none() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the exporter did not start listening on port {port}");
}

fn healthz_answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let mut response = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_to_string(&mut response).is_ok()
        && response.starts_with("HTTP/1.1 200")
}

impl Exporter {
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn database_path(&self) -> PathBuf {
        self.dir.path().join("ledger.db")
    }

    /// What the exporter logged, when started with a log kept.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Its folder (config, ledger, log), for another exporter on the same ledger; call
    /// once it has stopped.
    pub fn take_dir(mut self) -> tempfile::TempDir {
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    /// SIGKILL, no chance to flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Endpoint {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path)).await.unwrap()
    }

    /// `/metrics` as Prometheus asks for it (OpenMetrics).
    pub async fn metrics_text(&self) -> String {
        let response = reqwest::Client::new()
            .get(self.url("/metrics"))
            .header("accept", PROMETHEUS_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    pub async fn metrics(&self) -> Exposition {
        Exposition::parse(&self.metrics_text().await)
    }

    /// Scrapes until `ready` holds, or fails after `timeout` showing the last scrape.
    pub async fn wait_for(&self, timeout: Duration, what: &str, ready: impl Fn(&Exposition) -> bool) -> Exposition {
        let deadline = Instant::now() + timeout;
        loop {
            let exposition = self.metrics().await;
            if ready(&exposition) {
                return exposition;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; last scrape:\n{}", exposition.text);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Exporter {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Sends SIGTERM and waits (up to `limit`) for the exit.
    pub fn terminate(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        self.signal("TERM", limit)
    }

    /// Sends a signal (`TERM`, `HUP`, …) and waits (up to `limit`) for the exit.
    pub fn signal(&mut self, signal: &str, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            if started.elapsed() > limit {
                panic!("the exporter did not exit within {limit:?} of SIG{signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One parsed sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Series {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A parsed OpenMetrics text exposition.
#[derive(Debug, Clone)]
pub struct Exposition {
    pub text: String,
    pub series: Vec<Series>,
}

impl Exposition {
    pub fn parse(text: &str) -> Exposition {
        let mut series = Vec::new();
        assert!(text.ends_with("# EOF\n"), "an OpenMetrics body ends with # EOF");
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            series.push(parse_line(line).unwrap_or_else(|| panic!("unparsable exposition line: {line:?}")));
        }
        Exposition {
            text: text.to_string(),
            series,
        }
    }

    /// Series of a metric whose labels include all of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
            .collect()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found = self.find(name, labels);
        assert!(found.len() <= 1, "{name}{labels:?} matches {} series", found.len());
        found.first().map(|s| s.value)
    }

    pub fn device_series(&self, device: &str) -> Vec<&Series> {
        self.series
            .iter()
            .filter(|s| s.label("device") == Some(device))
            .collect()
    }

    /// Failed polls of every device and kind, summed.
    pub fn poll_errors(&self) -> f64 {
        self.series
            .iter()
            .filter(|s| s.name == "bitaxe_poll_errors_total")
            .map(|s| s.value)
            .sum()
    }

    pub fn up(&self, device: &str) -> Option<f64> {
        self.value("bitaxe_up", &[("device", device)])
    }
}

fn parse_line(line: &str) -> Option<Series> {
    let (name_end, has_labels) = match line.find(['{', ' ']) {
        Some(i) => (i, line.as_bytes()[i] == b'{'),
        None => return None,
    };
    let name = line[..name_end].to_string();
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if has_labels {
        let mut chars = rest[1..].char_indices().peekable();
        let body = &rest[1..];
        let end;
        loop {
            // key
            let (key_start, c) = chars.next()?;
            if c == '}' {
                end = Some(key_start + 1);
                break;
            }
            let mut key_end = key_start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    key_end = i;
                    break;
                }
            }
            let key = body[key_start..key_end].to_string();
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        _ => return None,
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            match chars.next()? {
                (_, ',') => continue,
                (i, '}') => {
                    end = Some(i + 1);
                    break;
                }
                _ => return None,
            }
        }
        rest = &body[end?..];
    }
    let value_text = rest.trim().split(' ').next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Series { name, labels, value })
}

/// Compares `actual` with `tests/golden/<name>`; `UPDATE_GOLDEN=1` rewrites the file.
pub fn assert_golden(name: &str, actual: &str) {
    let path = repo_path("tests/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    if expected != actual {
        let mut report = String::new();
        for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
            if e != a {
                report.push_str(&format!("line {}:\n  expected: {e}\n  actual:   {a}\n", i + 1));
            }
        }
        let (el, al) = (expected.lines().count(), actual.lines().count());
        if el != al {
            report.push_str(&format!("expected {el} lines, got {al}\n"));
        }
        panic!(
            "{} differs from the exporter's output (UPDATE_GOLDEN=1 rewrites it):\n{report}\n--- actual ---\n{actual}",
            path.display()
        );
    }
}

/// A server that answers every request with `response` (raw bytes, so any malformed
/// answer can be sent) and reports each request head it received.
pub async fn raw_server(
    response: Vec<u8>,
) -> (
    bitaxe_exporter::config::MinerAddress,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let response = response.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).to_string());
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (bitaxe_exporter::config::MinerAddress::new("127.0.0.1", port), rx)
}

/// A plain SQLite connection to a ledger file, for tests that look at (or damage) what is
/// stored; the library's own connection is private to its ledger module.
pub fn sql(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

/// A child process killed when the test ends, however it ends (a failed assertion would
/// otherwise leave a `demo` running).
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a command the test started to exit (up to `limit`) and collects its output;
/// one still running then is killed — never left writing to a miner — and the test fails.
pub fn wait_exit(mut child: Child, limit: Duration) -> std::process::Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the command did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A stored sample as a test looks at it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRow {
    pub device: String,
    pub t: f64,
    pub segment_id: i64,
    pub hashrate_ghs: Option<f64>,
}

/// Every stored sample of a ledger, oldest first, read through the ledger's own export (on
/// disk they are packed in blocks).
pub fn stored_samples(database: &Path) -> Vec<StoredRow> {
    use bitaxe_exporter::ledger::{ExportValue, Ledger, LedgerError, EXPORT_COLUMNS};
    let at = |name: &str| EXPORT_COLUMNS.iter().position(|c| c.name == name).unwrap();
    let (t, device, segment, hashrate) = (at("unix_time_s"), at("device"), at("segment_id"), at("hashrate_ghs"));
    let ledger = Ledger::open_read_only(database).unwrap();
    let mut rows = Vec::new();
    ledger
        .export_rows(None, f64::MIN, f64::MAX, |values| {
            let real = |v: &ExportValue| match v {
                ExportValue::Real(x) => Some(*x),
                _ => None,
            };
            rows.push(StoredRow {
                device: match &values[device] {
                    ExportValue::Text(name) => name.clone(),
                    _ => String::new(),
                },
                t: real(&values[t]).unwrap_or_default(),
                segment_id: match values[segment] {
                    ExportValue::Integer(id) => id,
                    _ => 0,
                },
                hashrate_ghs: real(&values[hashrate]),
            });
            Ok::<(), LedgerError>(())
        })
        .unwrap();
    rows
}
