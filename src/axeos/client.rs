//! The HTTP side of talking to a miner: fetch `/api/system/info` (and write settings with
//! `PATCH /api/system`) with a timeout, a response size cap, no redirects and no `Origin`
//! header, and HTTP Basic auth on every request to a miner configured with credentials.
//! Failures carry a bounded [`PollErrorKind`] so they can become a metric label.

use std::time::Duration;

use crate::axeos::address::{Credentials, MinerAddress};
use crate::axeos::history::{self, MinerHistory};
use crate::axeos::sample::{decode_system_info, DecodeError, Identity, Sample};
use crate::axeos::window::{CheckedPatch, SettingsPatch};

/// Larger bodies are refused: a v2.15 info body is about 6 KiB.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Upper bound on one request, whatever the poll interval.
pub(crate) const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The bounded set of reasons a poll fails, used as the `kind` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PollErrorKind {
    Timeout,
    Connect,
    /// The miner answered, but not in HTTP: a bad status line, oversized headers, a
    /// negative Content-Length.
    Protocol,
    HttpStatus,
    Decode,
    /// The miner asks for credentials, or refused the configured ones (HTTP 401 or 403).
    Auth,
}

impl PollErrorKind {
    /// Every kind, in declaration order (so `kind as usize` indexes it).
    pub const ALL: [PollErrorKind; 6] = [
        Self::Timeout,
        Self::Connect,
        Self::Protocol,
        Self::HttpStatus,
        Self::Decode,
        Self::Auth,
    ];

    pub fn as_label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Protocol => "protocol",
            Self::HttpStatus => "http_status",
            Self::Decode => "decode",
            Self::Auth => "auth",
        }
    }
}

/// Failed polls counted by kind; adding a kind is one edit (to [`PollErrorKind`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; PollErrorKind::ALL.len()]);

impl ErrorCounts {
    pub fn add(&mut self, kind: PollErrorKind) {
        self.0[kind as usize] += 1;
    }

    pub fn get(&self, kind: PollErrorKind) -> u64 {
        self.0[kind as usize]
    }
}

/// A failed request to a miner.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PollError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("not a valid HTTP answer: {0}")]
    Protocol(String),
    #[error("HTTP status {status}{hint}")]
    HttpStatus { status: u16, hint: &'static str },
    #[error("response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the response was cut off: {0}")]
    Truncated(String),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("the miner did not accept the settings: {0}")]
    Rejected(String),
    /// HTTP 401 or 403: the firmware's auth gate answered before any handler ran, so
    /// nothing was read or changed.
    #[error("{}", unauthorized_text(*status, refused.as_deref(), *basic_challenge))]
    Unauthorized {
        status: u16,
        /// The device whose configured credentials were sent and refused; `None` when the
        /// request carried none.
        refused: Option<String>,
        /// The answer asked for Basic auth (`WWW-Authenticate: Basic …`).
        basic_challenge: bool,
    },
}

/// What a person reads about a 401 / 403, with what to do.
fn unauthorized_text(status: u16, refused: Option<&str>, basic_challenge: bool) -> String {
    match refused {
        Some(device) => format!(
            "the miner refused the configured credentials (HTTP {status}): check username and password for {device}"
        ),
        None => {
            // AxeOS v2.5+ answers a plain 401 (no challenge) to clients outside RFC 1918.
            let also = if status == 401 && !basic_challenge {
                " (if it has no password: AxeOS v2.5+ also answers 401 to a client whose address is not a \
                 private RFC 1918 one, e.g. through a VPN or CGNAT)"
            } else {
                ""
            };
            format!(
                "the miner asks for credentials (HTTP {status}): set username and password_file for this device in \
                 config.yaml{also}"
            )
        }
    }
}

impl PollError {
    pub fn kind(&self) -> PollErrorKind {
        match self {
            Self::Timeout(_) => PollErrorKind::Timeout,
            Self::Connect(_) => PollErrorKind::Connect,
            Self::Protocol(_) => PollErrorKind::Protocol,
            Self::HttpStatus { .. } | Self::Rejected(_) => PollErrorKind::HttpStatus,
            Self::TooLarge | Self::Truncated(_) | Self::Decode(_) => PollErrorKind::Decode,
            Self::Unauthorized { .. } => PollErrorKind::Auth,
        }
    }
}

/// A 401 / 403 answer as a [`PollError::Unauthorized`]; `None` for any other status.
fn unauthorized(response: &reqwest::Response, credentials: Option<&Credentials>) -> Option<PollError> {
    let status = response.status().as_u16();
    if !matches!(status, 401 | 403) {
        return None;
    }
    let basic_challenge = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.trim_start().get(..5).is_some_and(|s| s.eq_ignore_ascii_case("basic")));
    Some(PollError::Unauthorized {
        status,
        refused: credentials.map(|c| c.device.clone()),
        basic_challenge,
    })
}

/// The request with `Authorization: Basic …` when the miner has credentials (reqwest marks
/// the header sensitive, so it is never shown in its debug output).
fn authorized(request: reqwest::RequestBuilder, credentials: Option<&Credentials>) -> reqwest::RequestBuilder {
    match credentials {
        Some(c) => request.basic_auth(&c.username, Some(c.password.expose())),
        None => request,
    }
}

/// The HTTP client could not be built (the TLS-free reqwest client fails only when the
/// platform's resolver or socket setup does): a start-up failure, not a failed poll.
#[derive(Debug, thiserror::Error)]
#[error("cannot create the HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// One HTTP client for the whole fleet (one connection pool; at most one idle connection
/// per miner, so the ESP32's handful of sockets is not hoarded).
#[derive(Debug, Clone)]
pub struct AxeOsClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl AxeOsClient {
    /// `timeout` bounds a whole request; `idle_keepalive` is how long a connection may stay
    /// open between polls (zero closes it after each request).
    pub fn new(timeout: Duration, idle_keepalive: Duration) -> Result<Self, ClientBuildError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .pool_max_idle_per_host(if idle_keepalive.is_zero() { 0 } else { 1 })
            .user_agent(concat!("bitaxe-exporter/", env!("CARGO_PKG_VERSION")))
            .http1_only()
            .tcp_nodelay(true);
        if !idle_keepalive.is_zero() {
            builder = builder.pool_idle_timeout(idle_keepalive);
        }
        let http = builder.build().map_err(ClientBuildError)?;
        Ok(Self { http, timeout })
    }

    /// The request timeout that suits a poll interval: below the interval, at most 5 s.
    pub fn timeout_for(poll_interval: Duration) -> Duration {
        poll_interval.mul_f64(0.8).min(MAX_REQUEST_TIMEOUT)
    }

    /// Keep the connection between polls only when polls are close together; an idle
    /// socket held for 30 s is one the miner's web UI cannot use.
    pub fn keepalive_for(poll_interval: Duration) -> Duration {
        if poll_interval <= Duration::from_secs(15) {
            poll_interval * 2
        } else {
            Duration::ZERO
        }
    }

    /// The URL of a miner's `/api/system/info`, parsed once for a poller to reuse.
    pub fn info_url(address: &MinerAddress) -> Result<reqwest::Url, PollError> {
        reqwest::Url::parse(&address.url("/api/system/info"))
            .map_err(|e| PollError::Connect(format!("{address} does not make a valid URL: {e}")))
    }

    /// `GET /api/system/info`, decoded and normalised.
    pub async fn system_info(&self, address: &MinerAddress) -> Result<Sample, PollError> {
        self.system_info_at(&Self::info_url(address)?, address.credentials.as_deref())
            .await
    }

    /// `GET` of a pre-parsed `/api/system/info` URL (with the miner's credentials, if it
    /// has them), decoded and normalised.
    pub async fn system_info_at(
        &self,
        url: &reqwest::Url,
        credentials: Option<&Credentials>,
    ) -> Result<Sample, PollError> {
        let body = self.get(url.clone(), credentials).await?;
        Ok(decode_system_info(&body)?)
    }

    /// The frequency and voltage option lists of `GET /api/system/asic` (firmware v2.7+);
    /// `None` where the firmware has no such endpoint or lists.
    pub async fn asic_options(&self, address: &MinerAddress) -> Result<Option<(Vec<f64>, Vec<f64>)>, PollError> {
        #[derive(serde::Deserialize)]
        struct AsicBody {
            #[serde(rename = "frequencyOptions", default)]
            frequency_options: Vec<serde_json::Value>,
            #[serde(rename = "voltageOptions", default)]
            voltage_options: Vec<serde_json::Value>,
        }
        let url = reqwest::Url::parse(&address.url("/api/system/asic"))
            .map_err(|e| PollError::Connect(format!("{address} does not make a valid URL: {e}")))?;
        let body = match self.get(url, address.credentials.as_deref()).await {
            Ok(body) => body,
            // Before v2.7 the path does not exist (404, or a redirect to the web UI).
            Err(PollError::HttpStatus { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(asic) = serde_json::from_slice::<AsicBody>(&body) else {
            return Ok(None);
        };
        let numbers = |values: Vec<serde_json::Value>| -> Vec<f64> {
            values.iter().filter_map(serde_json::Value::as_f64).take(64).collect()
        };
        let (frequencies, voltages) = (numbers(asic.frequency_options), numbers(asic.voltage_options));
        Ok((!frequencies.is_empty() && !voltages.is_empty()).then_some((frequencies, voltages)))
    }

    /// The chip count of `GET /api/system/asic` (`asicCount`, firmware v2.7+), for firmware
    /// that no longer sends it in its info (v2.9+) on a board whose number does not say it.
    pub async fn asic_count(&self, address: &MinerAddress) -> Result<Option<u32>, PollError> {
        let url = reqwest::Url::parse(&address.url("/api/system/asic"))
            .map_err(|e| PollError::Connect(format!("{address} does not make a valid URL: {e}")))?;
        let body = match self.get(url, address.credentials.as_deref()).await {
            Ok(body) => body,
            Err(PollError::HttpStatus { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let count = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|asic| asic.get("asicCount")?.as_u64())
            .filter(|n| (1..=256).contains(n))
            .map(|n| n as u32);
        Ok(count)
    }

    /// The miner's statistics ring (`GET /api/system/statistics`, upstream v2.8+), asking
    /// only for the columns the ledger keeps where the firmware lets a client choose
    /// (v2.11+; sent with literal commas, which every version reads). `None` for firmware
    /// without the ring, or a path it does not know (nothing is asked of those).
    pub async fn statistics(
        &self,
        address: &MinerAddress,
        identity: &Identity,
    ) -> Result<Option<MinerHistory>, PollError> {
        let firmware = identity.firmware.as_deref();
        if !history::has_statistics(identity.family, firmware) {
            return Ok(None);
        }
        let path = if history::selects_columns(firmware) {
            format!("/api/system/statistics?columns={}", history::STATISTICS_COLUMNS)
        } else {
            "/api/system/statistics".to_string()
        };
        let url = reqwest::Url::parse(&address.url(&path))
            .map_err(|e| PollError::Connect(format!("{address} does not make a valid URL: {e}")))?;
        let body = match self.get(url, address.credentials.as_deref()).await {
            Ok(body) => body,
            Err(PollError::HttpStatus { status: 404, .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(history::decode_statistics(&body)?))
    }

    /// The last lines of the miner's log (`GET /api/system/logs`, upstream v2.14+), cleaned
    /// for keeping ([`history::log_tail`]); only the end of a long body is kept in memory.
    /// `None` for firmware without it.
    pub async fn log_tail(
        &self,
        address: &MinerAddress,
        identity: &Identity,
    ) -> Result<Option<Vec<String>>, PollError> {
        if !history::has_logs(identity.family, identity.firmware.as_deref()) {
            return Ok(None);
        }
        let url = reqwest::Url::parse(&address.url("/api/system/logs"))
            .map_err(|e| PollError::Connect(format!("{address} does not make a valid URL: {e}")))?;
        let credentials = address.credentials.as_deref();
        let fetch = async {
            let response = self.answer(url, "text/plain", credentials).await?;
            read_tail(response, history::MAX_LOG_BODY_BYTES).await
        };
        let body = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| PollError::Timeout(self.timeout))??;
        Ok(Some(history::log_tail(&body)))
    }

    /// `PATCH /api/system` with settings that passed the plausibility window. Nothing is
    /// sent for an empty patch.
    pub async fn patch_settings(&self, address: &MinerAddress, checked: &CheckedPatch) -> Result<(), PollError> {
        self.send_patch(address, checked, false).await
    }

    /// The same, with `overheat_mode: 0` in the same request: firmware up to v2.10 stays
    /// halted at 50 MHz / 1000 mV after its overheat protection trips until that is sent.
    pub async fn patch_settings_clearing_overheat(
        &self,
        address: &MinerAddress,
        checked: &CheckedPatch,
    ) -> Result<(), PollError> {
        self.send_patch(address, checked, true).await
    }

    async fn send_patch(
        &self,
        address: &MinerAddress,
        checked: &CheckedPatch,
        clear_overheat: bool,
    ) -> Result<(), PollError> {
        let patch = checked.patch();
        if patch == &SettingsPatch::default() && !clear_overheat {
            return Ok(());
        }
        let mut body = serde_json::to_value(patch).map_err(|e| PollError::Rejected(e.to_string()))?;
        if let (true, Some(fields)) = (clear_overheat, body.as_object_mut()) {
            fields.insert("overheat_mode".into(), 0.into());
        }
        let body = serde_json::to_vec(&body).map_err(|e| PollError::Rejected(e.to_string()))?;
        let credentials = address.credentials.as_deref();
        let request = self
            .http
            .patch(address.url("/api/system"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let request = authorized(request, credentials);
        let exchange = async {
            let response = request.send().await.map_err(|e| send_error(&e))?;
            if let Some(refusal) = unauthorized(&response, credentials) {
                return Err(refusal);
            }
            let status = response.status();
            let text = read_capped(response).await.unwrap_or_default();
            if !status.is_success() {
                let body: String = String::from_utf8_lossy(&text).chars().take(120).collect();
                return Err(PollError::Rejected(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    crate::axeos::printable(&body)
                )));
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PollError::Timeout(self.timeout))?
    }

    /// `POST /api/system/restart`: what firmware before v2.2 needs to take new clock
    /// settings (later firmware applies them live).
    pub async fn restart(&self, address: &MinerAddress) -> Result<(), PollError> {
        self.post_command(address, "/api/system/restart", "a restart").await
    }

    /// `POST /api/system/pause` (v2.14+): the ASIC is held in reset until resumed.
    pub async fn pause(&self, address: &MinerAddress) -> Result<(), PollError> {
        self.post_command(address, "/api/system/pause", "a pause").await
    }

    /// A bodiless `POST` the firmware answers with a status; `what` names it in errors.
    async fn post_command(&self, address: &MinerAddress, path: &str, what: &str) -> Result<(), PollError> {
        let credentials = address.credentials.as_deref();
        let request = authorized(self.http.post(address.url(path)), credentials);
        let exchange = async {
            let response = request.send().await.map_err(|e| send_error(&e))?;
            if let Some(refusal) = unauthorized(&response, credentials) {
                return Err(refusal);
            }
            let status = response.status();
            if !status.is_success() {
                return Err(PollError::Rejected(format!("HTTP {} to {what}", status.as_u16())));
            }
            Ok(())
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| PollError::Timeout(self.timeout))?
    }

    /// One timer bounds the whole exchange: connect, headers and body.
    async fn get(&self, url: reqwest::Url, credentials: Option<&Credentials>) -> Result<Vec<u8>, PollError> {
        tokio::time::timeout(self.timeout, self.get_unbounded(url, credentials))
            .await
            .map_err(|_| PollError::Timeout(self.timeout))?
    }

    async fn get_unbounded(&self, url: reqwest::Url, credentials: Option<&Credentials>) -> Result<Vec<u8>, PollError> {
        read_capped(self.answer(url, "application/json", credentials).await?).await
    }

    /// A GET's answer when it is a success: sent with the miner's credentials; a refusal,
    /// a redirect or another failing status is an error.
    async fn answer(
        &self,
        url: reqwest::Url,
        accept: &'static str,
        credentials: Option<&Credentials>,
    ) -> Result<reqwest::Response, PollError> {
        let request = self.http.get(url).header(reqwest::header::ACCEPT, accept);
        let response = authorized(request, credentials)
            .send()
            .await
            .map_err(|e| send_error(&e))?;
        if let Some(refusal) = unauthorized(&response, credentials) {
            return Err(refusal);
        }
        let status = response.status();
        if !status.is_success() {
            let hint = if status.is_redirection() {
                " (a redirect: firmware older than v2.9 answers unknown paths this way; is this an AxeOS miner?)"
            } else {
                ""
            };
            return Err(PollError::HttpStatus {
                status: status.as_u16(),
                hint,
            });
        }
        Ok(response)
    }
}

/// Reads a body, refusing to buffer more than [`MAX_RESPONSE_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, PollError> {
    if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(PollError::TooLarge);
    }
    let mut body = Vec::with_capacity(response.content_length().map_or(8192, |n| n as usize));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(PollError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) if e.is_timeout() => return Err(PollError::Timeout(Duration::ZERO)),
            Err(e) => return Err(PollError::Truncated(root_cause(&e))),
        }
    }
}

/// Reads a body keeping only its last `keep` bytes (a log's end is what matters), and
/// stops reading after sixteen times that much: a miner that streams for ever is cut off.
async fn read_tail(mut response: reqwest::Response, keep: usize) -> Result<Vec<u8>, PollError> {
    let mut tail: std::collections::VecDeque<u8> = std::collections::VecDeque::with_capacity(keep.min(64 * 1024));
    let mut read = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                tail.extend(chunk.iter());
                let excess = tail.len().saturating_sub(keep);
                tail.drain(..excess);
                if read > keep.saturating_mul(16) {
                    return Ok(tail.into());
                }
            }
            Ok(None) => return Ok(tail.into()),
            Err(e) if e.is_timeout() => return Err(PollError::Timeout(Duration::ZERO)),
            Err(e) => return Err(PollError::Truncated(root_cause(&e))),
        }
    }
}

/// A request that got no usable answer: no connection, or an answer that is not HTTP.
fn send_error(error: &reqwest::Error) -> PollError {
    if error.is_connect() {
        PollError::Connect(root_cause(error))
    } else if error.is_timeout() {
        PollError::Timeout(Duration::ZERO)
    } else {
        PollError::Protocol(root_cause(error))
    }
}

/// reqwest's messages wrap the cause in generic text; the innermost cause (e.g.
/// "Connection refused (os error 111)") is what a person needs.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    crate::axeos::printable(&cause.to_string()).into_owned()
}
