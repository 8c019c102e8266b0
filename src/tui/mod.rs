//! `top`: a live terminal dashboard over a running exporter's JSON API. It never polls a
//! miner itself. The screen runs on its own thread (keys, drawing); the fetches run on the
//! async runtime and hand their results over a channel; the terminal is restored on every
//! exit path (quit, error, panic — ratatui's hook — and SIGTERM, SIGHUP or SIGINT).

pub mod app;
pub mod model;
pub mod view;

use std::io::IsTerminal as _;
use std::sync::mpsc;
use std::time::Duration;

use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::tui::app::{Action, App, Link, Screen, SortKey};
use crate::tui::model::{ConfigRow, DeviceDetail, Fleet, History};
use crate::tui::view::Theme;

/// How `top` was asked to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The exporter, e.g. `http://127.0.0.1:9842`.
    pub url: String,
    pub compact: bool,
    pub sort: SortKey,
}

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(
        "no exporter answers at {url} ({reason}); start one with `bitaxe-exporter serve` (or try \
         `bitaxe-exporter demo`), or point --url at a running one"
    )]
    NotAnswering { url: String, reason: String },
    #[error("{0:?} is not an exporter's address: expected HOST:PORT or http://HOST:PORT")]
    BadUrl(String),
    #[error("top needs a terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// The largest API answer read (a 1,000-device fleet is about 1 MiB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// How long one API call may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

enum Update {
    Fleet(Fleet),
    Lost(String),
    Detail(DeviceDetail),
    Quit,
}

enum Request {
    Device(String, u64),
    NoDevice,
}

/// The body, read chunk by chunk and refused past `limit` (a chunked answer has no
/// length to check up front).
async fn read_capped(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err("answer too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > limit {
            return Err("answer too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let response = client.get(url).send().await.map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = read_capped(response, 64 * 1024).await.unwrap_or_default();
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(|e| crate::axeos::printable(e).into_owned()))
            .unwrap_or_default();
        return Err(format!("HTTP {status} {error}").trim().to_string());
    }
    read_capped(response, MAX_BODY).await
}

/// The innermost cause of a request error (reqwest's own text is "error sending request").
fn describe(error: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = error;
    while let Some(inner) = source.source() {
        source = inner;
    }
    if error.is_timeout() {
        "timed out".into()
    } else {
        source.to_string()
    }
}

async fn fetch_fleet(client: &reqwest::Client, base: &str) -> Result<Fleet, String> {
    let body = get(client, &format!("{base}/api/v1/fleet")).await?;
    serde_json::from_slice(&body).map_err(|e| format!("not the exporter's fleet API: {e}"))
}

/// A URL path segment: everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    crate::web::render::html::url_segment(text)
}

async fn fetch_detail(client: &reqwest::Client, base: &str, name: &str, seconds: u64) -> DeviceDetail {
    let history = get(
        client,
        &format!(
            "{base}/api/v1/devices/{}/history?since={}m",
            segment(name),
            seconds / 60
        ),
    )
    .await
    .and_then(|b| serde_json::from_slice::<History>(&b).map_err(|e| e.to_string()));
    let configs = get(client, &format!("{base}/api/v1/configs?device={}", segment(name)))
        .await
        .and_then(|b| serde_json::from_slice::<Vec<ConfigRow>>(&b).map_err(|e| e.to_string()));
    match (history, configs) {
        (Ok(history), Ok(configs)) => DeviceDetail {
            name: name.to_string(),
            seconds,
            history,
            configs,
            error: None,
        },
        (Err(e), _) | (_, Err(e)) => DeviceDetail {
            name: name.to_string(),
            seconds,
            error: Some(format!("cannot load {}'s history: {e}", crate::axeos::printable(name))),
            ..DeviceDetail::default()
        },
    }
}

async fn fetch_loop(
    client: reqwest::Client,
    base: String,
    interval: Duration,
    updates: mpsc::Sender<Update>,
    mut requests: tokio::sync::mpsc::UnboundedReceiver<Request>,
) {
    let mut device: Option<(String, u64)> = None;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first snapshot is already on screen
    loop {
        let update = tokio::select! {
            _ = ticker.tick() => {
                let fleet = match fetch_fleet(&client, &base).await {
                    Ok(fleet) => Update::Fleet(fleet),
                    Err(e) => Update::Lost(e),
                };
                if updates.send(fleet).is_err() {
                    return;
                }
                match &device {
                    Some((name, seconds)) => Update::Detail(fetch_detail(&client, &base, name, *seconds).await),
                    None => continue,
                }
            }
            request = requests.recv() => match request {
                Some(Request::Device(name, seconds)) => {
                    let detail = fetch_detail(&client, &base, &name, seconds).await;
                    device = Some((name, seconds));
                    Update::Detail(detail)
                }
                Some(Request::NoDevice) => {
                    device = None;
                    continue;
                }
                None => return,
            },
        };
        if updates.send(update).is_err() {
            return;
        }
    }
}

/// The signals `top` answers, registered before the terminal changes (so none arrives
/// while its default action would leave the terminal in raw mode).
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// SIGTERM or SIGINT: the screen is asked to close and given a second to put the
    /// terminal back. SIGHUP (the SSH session went away): there is no terminal to put back,
    /// and reading a vanished one can keep the screen thread from ever looking, so exit now.
    async fn quit_on_signal(mut self, updates: mpsc::Sender<Update>) {
        let code = tokio::select! {
            _ = self.term.recv() => 143,
            _ = self.int.recv() => 130,
            _ = self.hup.recv() => {
                let _ = ratatui::try_restore();
                std::process::exit(129);
            }
        };
        let _ = updates.send(Update::Quit);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = ratatui::try_restore();
        std::process::exit(code);
    }
}

/// The exporter's base URL from `--url`: `http://HOST:PORT` as given, or `HOST:PORT` (as
/// `serve` prints its listen address) read as `http://HOST:PORT`; no trailing slash. Plain
/// HTTP only, as the exporter serves it (no TLS in this build): `https://` and anything
/// without a host are refused.
pub fn base_url(given: &str) -> Result<String, TopError> {
    let bad = || TopError::BadUrl(given.to_string());
    let given_trimmed = given.trim();
    let with_scheme = if given_trimmed.contains("://") {
        given_trimmed.to_string()
    } else {
        format!("http://{given_trimmed}")
    };
    let with_scheme = with_scheme.trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&with_scheme).map_err(|_| bad())?;
    let plain = parsed.scheme() == "http"
        && parsed.host_str().is_some_and(|h| !h.is_empty())
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    if !plain {
        return Err(bad());
    }
    Ok(with_scheme)
}

/// Runs `top` until `q`, a signal or an error.
pub async fn run(options: Options) -> Result<(), TopError> {
    let base = base_url(&options.url)?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TopError::NotAnswering {
            url: base.clone(),
            reason: e.to_string(),
        })?;
    // Asked once before the screen changes, so "no exporter here" is a plain message.
    let first = fetch_fleet(&client, &base)
        .await
        .map_err(|reason| TopError::NotAnswering {
            url: base.clone(),
            reason,
        })?;
    if !std::io::stdout().is_terminal() {
        return Err(TopError::Terminal(std::io::Error::other(
            "standard output is not a terminal (the same data as JSON: /api/v1/fleet)",
        )));
    }
    let interval = Duration::from_secs_f64(first.poll_interval_seconds.clamp(1.0, 60.0));
    let mut app = App::new(options.sort, options.compact);
    app.set_fleet(first, crate::time::now_unix());

    let signals = Signals::register().map_err(TopError::Terminal)?;
    let (updates_tx, updates_rx) = mpsc::channel();
    let (requests_tx, requests_rx) = tokio::sync::mpsc::unbounded_channel();
    let fetcher = tokio::spawn(fetch_loop(client, base, interval, updates_tx.clone(), requests_rx));
    let signals = tokio::spawn(signals.quit_on_signal(updates_tx));
    // The screen on a thread of its own (not the runtime's blocking pool, which the
    // runtime waits for at exit), its result handed back when it ends.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("top-screen".into()).spawn(move || {
        let _ = done_tx.send(screen_loop(app, updates_rx, requests_tx, Theme::from_env()));
    });
    let result = match spawned {
        Ok(_) => done_rx
            .await
            .unwrap_or_else(|_| Err(TopError::Terminal(std::io::Error::other("the screen thread failed")))),
        Err(e) => Err(TopError::Terminal(e)),
    };
    fetcher.abort();
    signals.abort();
    result
}

/// The screen: keys in, snapshots in, a redraw when anything changed.
fn screen_loop(
    mut app: App,
    updates: mpsc::Receiver<Update>,
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    theme: Theme,
) -> Result<(), TopError> {
    // Raw mode and the alternate screen, with a panic hook that puts the terminal back.
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(e) => {
            // Raw mode may be on already.
            let _ = ratatui::try_restore();
            return Err(TopError::Terminal(e));
        }
    };
    let result = (|| -> std::io::Result<()> {
        let mut dirty = true;
        loop {
            while let Ok(update) = updates.try_recv() {
                match update {
                    Update::Fleet(fleet) => app.set_fleet(fleet, crate::time::now_unix()),
                    Update::Lost(error) => app.link = Link::Lost(error),
                    // A detail fetched for the device or range shown before is dropped.
                    Update::Detail(detail) => {
                        let wanted = match &app.screen {
                            Screen::Device(name) => {
                                *name == detail.name && detail.seconds == app.range.seconds() as u64
                            }
                            Screen::Fleet => false,
                        };
                        if wanted {
                            app.detail = Some(detail);
                        }
                    }
                    Update::Quit => return Ok(()),
                }
                dirty = true;
            }
            if dirty {
                terminal.draw(|frame| view::draw(frame, &app, theme))?;
                dirty = false;
            }
            if !event::poll(Duration::from_millis(100))? {
                continue;
            }
            match event::read()? {
                Event::Key(key) if key.kind == KeyEventKind::Press => {
                    let was_device = matches!(app.screen, Screen::Device(_));
                    match app.key(key) {
                        Action::Quit => return Ok(()),
                        Action::LoadDevice(name, seconds) => {
                            let _ = requests.send(Request::Device(name, seconds));
                        }
                        Action::None => {}
                    }
                    if was_device && app.screen == Screen::Fleet {
                        let _ = requests.send(Request::NoDevice);
                    }
                    dirty = true;
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
    })();
    drop(terminal);
    let _ = ratatui::try_restore();
    result.map_err(TopError::Terminal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_without_a_scheme_is_read_as_plain_http() {
        assert_eq!(base_url("127.0.0.1:9842").unwrap(), "http://127.0.0.1:9842");
        assert_eq!(base_url("miner-host:9842/").unwrap(), "http://miner-host:9842");
        assert_eq!(base_url("[::1]:9842").unwrap(), "http://[::1]:9842");
        assert_eq!(base_url("http://127.0.0.1:9842/").unwrap(), "http://127.0.0.1:9842");
    }

    #[test]
    fn a_url_top_cannot_use_says_what_it_expects() {
        for bad in [
            "https://127.0.0.1:9842",
            "ftp://host",
            "http://",
            "",
            "127.0.0.1:99999",
            "host:port",
        ] {
            let error = base_url(bad).expect_err(bad).to_string();
            assert!(error.contains("HOST:PORT"), "{bad}: {error}");
        }
    }
}
