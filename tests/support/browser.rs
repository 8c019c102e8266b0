//! The real headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a
//! WebSocket: navigate, evaluate, emulate a phone's width, screenshot, and collect what a
//! user would call a broken page — console errors, uncaught exceptions, failed requests,
//! HTTP errors and dialogs (an `alert` from an injected script).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Where Chromium is: `$CHROMIUM`, else the first of the usual names on `PATH`.
pub fn chromium_path() -> PathBuf {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(path);
    }
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("no Chromium found: install Debian's `chromium` (./test.sh does) or set CHROMIUM");
}

pub struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Every protocol event received, in order.
    pub events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A fresh headless Chromium with one blank page, its events switched on.
    pub fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/…".
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("DevTools listening on ws://") {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not open its DevTools port within 60 s");
        let browser_url = &line[line.find("ws://").unwrap()..];
        let port: u16 = browser_url["ws://127.0.0.1:".len()..]
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let targets: Value = serde_json::from_str(&http_get(port, "/json/list")).unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let (socket, _) = tungstenite::connect(page["webSocketDebuggerUrl"].as_str().unwrap()).unwrap();
        if let MaybeTlsStream::Plain(stream) = socket.get_ref() {
            stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        }
        let mut browser = Browser {
            child,
            socket,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            browser.call(&format!("{domain}.enable"), json!({}));
        }
        browser
    }

    /// Reads one message if one arrives within the socket's read timeout.
    fn receive(&mut self) -> Option<Value> {
        match self.socket.read() {
            Ok(Message::Text(text)) => serde_json::from_str(text.as_str()).ok(),
            Ok(_) => None,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                None
            }
            Err(e) => panic!("DevTools connection failed: {e}"),
        }
    }

    /// Sends a command and returns its result; events that arrive meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(message)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(message) = self.receive() {
                if message["id"] == id {
                    if let Some(error) = message.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return message["result"].clone();
                }
                if message.get("method").is_some() {
                    self.events.push(message);
                }
            }
        }
        panic!("{method}: no answer within 60 s");
    }

    /// Collects events for `duration`.
    pub fn pump(&mut self, duration: Duration) {
        let deadline = Instant::now() + duration;
        while Instant::now() < deadline {
            if let Some(message) = self.receive() {
                if message.get("method").is_some() {
                    self.events.push(message);
                }
            }
        }
    }

    /// Opens `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) {
        let before = self.events.len();
        self.call("Page.navigate", json!({ "url": url }));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.events[before..]
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired")
        {
            assert!(Instant::now() < deadline, "{url} did not finish loading within 30 s");
            self.pump(Duration::from_millis(100));
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(details) = result.get("exceptionDetails") {
            panic!("`{expression}` threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy; returns its value.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(expression);
            if !(value.is_null() || value == false || value == 0 || value == "") {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "`{expression}` still false after {timeout:?}"
            );
            self.pump(Duration::from_millis(150));
        }
    }

    /// Lays the page out at this width (a phone: 375) and height.
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        );
    }

    /// Asks for the dark colour scheme (or the light one).
    pub fn prefer_dark(&mut self, dark: bool) {
        self.call(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": if dark { "dark" } else { "light" }}]}),
        );
    }

    /// A PNG of the page (the whole page when `full_page`).
    pub fn screenshot(&mut self, path: &Path, full_page: bool) {
        let result = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": full_page}),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// What went wrong since the events began: console errors, uncaught exceptions,
    /// failed requests, HTTP errors, dialogs.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for event in &self.events {
            let params = &event["params"];
            match event["method"].as_str().unwrap_or("") {
                "Runtime.exceptionThrown" => problems.push(format!("exception: {}", params["exceptionDetails"])),
                "Runtime.consoleAPICalled" if params["type"] == "error" => {
                    problems.push(format!("console error: {}", params["args"]))
                }
                "Log.entryAdded" if params["entry"]["level"] == "error" => {
                    problems.push(format!("log error: {}", params["entry"]["text"]))
                }
                "Network.loadingFailed" => problems.push(format!("request failed: {params}")),
                "Network.responseReceived" if params["response"]["status"].as_u64().unwrap_or(0) >= 400 => problems
                    .push(format!(
                        "HTTP {} for {}",
                        params["response"]["status"], params["response"]["url"]
                    )),
                "Page.javascriptDialogOpening" => problems.push(format!("dialog: {}", params["message"])),
                _ => {}
            }
        }
        problems
    }

    /// Every URL the page requested.
    pub fn requested_urls(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(String::from))
            .collect()
    }

    /// Forgets the events so far.
    pub fn clear_events(&mut self) {
        self.events.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET to the DevTools port (which keeps the connection open: the body is
/// read by its Content-Length).
fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "DevTools closed the connection");
        received.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&received);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                return body.to_string();
            }
        }
    }
}
