//! What the HTTP surface lets through: the `Host` check that keeps a DNS-rebinding web page
//! from reading the dashboard and its API, the bearer token of `POST /alerts`, and the
//! security headers on every response (a Content-Security-Policy that allows only the
//! exporter's own inline script and stylesheet, no framing, no sniffing, no referrer).
//!
//! The rule for `Host` (dashboard pages and `/api/v1/…`; `/metrics`, `/healthz` and
//! `/alerts` are exempt): a DNS-rebinding attack needs the victim's browser to load the
//! attacker's page from a DNS name the attacker controls and then point that name at the
//! exporter, so the requests it makes carry the attacker's name in `Host`. A request whose
//! `Host` is an IP address, `localhost`, this machine's own name or a name listed in
//! `server.allowed_hosts` cannot come from such a page; any other name is refused with 421.
//! A request without `Host` (HTTP/1.0 tools; browsers always send it) is let through.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::config::WebAccess;

/// The largest token file read; a token is a line, not a document.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;
/// The shortest token accepted: 16 random characters are beyond guessing over HTTP.
pub(crate) const MIN_TOKEN_CHARS: usize = 16;

/// Why `serve` cannot start with this `server:` section.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("server.alerts_token_file {}: {message}", path.display())]
    Token { path: PathBuf, message: String },
}

/// The bearer token `POST /alerts` requires, read once at start.
#[derive(Clone)]
pub struct AlertsToken(Arc<[u8]>);

impl std::fmt::Debug for AlertsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlertsToken(…)")
    }
}

impl AlertsToken {
    /// Reads a token file as Alertmanager's `credentials_file` is read: its content with
    /// surrounding white space removed.
    pub fn read(path: &Path) -> Result<AlertsToken, GuardError> {
        let fail = |message: String| GuardError::Token {
            path: path.to_path_buf(),
            message,
        };
        let metadata = std::fs::metadata(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        if !metadata.is_file() {
            return Err(fail("is not a regular file".into()));
        }
        if metadata.len() > MAX_TOKEN_FILE_BYTES {
            return Err(fail(format!(
                "is larger than {MAX_TOKEN_FILE_BYTES} bytes; it should hold one token"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let token = text.trim();
        if token.chars().count() < MIN_TOKEN_CHARS {
            return Err(fail(format!(
                "holds {} characters; a token needs at least {MIN_TOKEN_CHARS} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
                token.chars().count()
            )));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(
                "must be one word of printable ASCII (it travels in an HTTP header)".into(),
            ));
        }
        Ok(AlertsToken(Arc::from(token.as_bytes())))
    }

    /// Whether `Authorization` carries this token as `Bearer TOKEN`, compared in constant
    /// time (the time taken says nothing about how much of a guess was right).
    pub fn admits(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(given) = authorization.and_then(|v| bearer(v.as_bytes())) else {
            return false;
        };
        constant_time_eq(given, &self.0)
    }
}

/// The credentials of a `Bearer` authorization (the scheme in any case).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let scheme = value.get(..7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| value[7..].trim_ascii())
}

/// Equality whose time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// The `server:` section as the routes apply it.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Lower-case names the dashboard answers to besides IP addresses.
    names: Arc<HashSet<String>>,
    /// `server.allowed_hosts: ["*"]`: every name.
    any_name: bool,
    /// `None`: `POST /alerts` is off.
    pub alerts_token: Option<AlertsToken>,
}

impl Guard {
    /// From the config; reads the token file (a missing or unreadable one stops `serve`).
    pub fn new(access: &WebAccess) -> Result<Guard, GuardError> {
        let alerts_token = access.alerts_token_file.as_deref().map(AlertsToken::read).transpose()?;
        let mut names: HashSet<String> = access.allowed_hosts.iter().cloned().collect();
        let any_name = names.remove("*");
        names.insert("localhost".into());
        if let Some(own) = own_hostname() {
            names.insert(format!("{own}.local"));
            names.insert(own);
        }
        Ok(Guard {
            names: Arc::new(names),
            any_name,
            alerts_token,
        })
    }

    /// Everything open, no token: for tests and tools that build a router by hand.
    pub fn open() -> Guard {
        Guard {
            names: Arc::default(),
            any_name: true,
            alerts_token: None,
        }
    }

    /// Whether a request with this `Host` (header value or URI authority) may see the
    /// dashboard; see the module documentation for the rule.
    pub(crate) fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        if self.any_name {
            return true;
        }
        match host_name(host) {
            Some(HostName::Ip) => true,
            Some(HostName::Name(name)) => self.names.contains(&name),
            None => false,
        }
    }
}

/// A `Host` value without its port.
#[derive(Debug, PartialEq)]
enum HostName {
    Ip,
    Name(String),
}

fn host_name(host: &str) -> Option<HostName> {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok());
        return (port_ok && literal.parse::<Ipv6Addr>().is_ok()).then_some(HostName::Ip);
    }
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        Some(_) => return None,
        None => host,
    };
    if name.parse::<IpAddr>().is_ok() {
        return Some(HostName::Ip);
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(HostName::Name(name))
}

/// This machine's host name, lower case, as `hostname` prints it (Linux).
fn own_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()?;
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name != "localhost"
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    plausible.then_some(name)
}

/// Middleware for the dashboard and its API: 421 for a `Host` this exporter does not
/// answer to by name, saying which key to set.
pub async fn check_host(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{FFFD}").to_string())
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_string()));
    if guard.host_allowed(host.as_deref()) {
        return next.run(request).await;
    }
    let shown = crate::axeos::printable(host.as_deref().unwrap_or("")).into_owned();
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this exporter does not answer to the host name \"{shown}\" (a guard against DNS rebinding). \
             If that is how you reach it, add the name to server.allowed_hosts in the config and restart; \
             IP addresses, localhost and this machine's own name always work.\n"
        ),
    )
        .into_response()
}

/// The policy of every HTML page: the stylesheet and the fleet page's script, both ours and
/// inline, by their hashes; the fleet page's requests to its own origin; nothing else.
fn page_policy() -> String {
    let hash = |text: &str| base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{}'; style-src 'sha256-{}'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(crate::web::pages::FLEET_SCRIPT),
        hash(crate::web::render::html::STYLE),
    )
}

/// Everything else (JSON, text, metrics) runs nothing and embeds nothing.
const NON_PAGE_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

static PAGE_POLICY: LazyLock<HeaderValue> =
    LazyLock::new(|| HeaderValue::from_str(&page_policy()).unwrap_or(HeaderValue::from_static(NON_PAGE_POLICY)));

/// Middleware for every response: Content-Security-Policy, `X-Content-Type-Options:
/// nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    set_security_headers(response.headers_mut());
    response
}

fn set_security_headers(headers: &mut HeaderMap) {
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let policy = if html {
        PAGE_POLICY.clone()
    } else {
        HeaderValue::from_static(NON_PAGE_POLICY)
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(names: &[&str]) -> Guard {
        Guard::new(&WebAccess {
            allowed_hosts: names.iter().map(|n| n.to_string()).collect(),
            alerts_token_file: None,
        })
        .unwrap()
    }

    #[test]
    fn ip_literals_localhost_and_listed_names_pass_other_names_do_not() {
        let listed = guard(&["miners.example"]);
        for host in [
            "127.0.0.1:9842",
            "192.168.1.5",
            "[::1]:9842",
            "[fe80::1]",
            "localhost:9842",
            "LOCALHOST.",
            "miners.example:9842",
            "Miners.Example.",
        ] {
            assert!(listed.host_allowed(Some(host)), "{host}");
        }
        for host in [
            "attacker.example:9842",
            "127.0.0.1.nip.io",
            "miners.example.attacker.example",
            "[::1",
            "[::1]x",
            "host:port",
            "",
        ] {
            assert!(!listed.host_allowed(Some(host)), "{host}");
        }
        assert!(listed.host_allowed(None), "no Host: no browser");
        assert!(guard(&["*"]).host_allowed(Some("anything.example")));
    }

    #[test]
    fn the_token_is_a_bearer_credential_compared_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  s3cret-s3cret-s3cret-1\n").unwrap();
        let token = AlertsToken::read(&path).unwrap();
        let header = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(token.admits(Some(&header("Bearer s3cret-s3cret-s3cret-1"))));
        assert!(token.admits(Some(&header("bearer s3cret-s3cret-s3cret-1"))));
        for wrong in [
            "Bearer s3cret-s3cret-s3cret-2",
            "Bearer s3cret-s3cret-s3cret-",
            "Bearer s3cret-s3cret-s3cret-11",
            "Basic s3cret-s3cret-s3cret-1",
            "s3cret-s3cret-s3cret-1",
            "Bearer ",
        ] {
            assert!(!token.admits(Some(&header(wrong))), "{wrong}");
        }
        assert!(!token.admits(None));
        std::fs::write(&path, "short\n").unwrap();
        assert!(AlertsToken::read(&path)
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        let missing = AlertsToken::read(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("server.alerts_token_file") && missing.contains("nope"),
            "{missing}"
        );
    }

    #[test]
    fn pages_get_their_hashes_and_everything_else_the_strict_policy() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        set_security_headers(&mut headers);
        let policy = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            policy.contains("script-src 'sha256-") && !policy.contains("unsafe-inline"),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"));
        let mut json = HeaderMap::new();
        set_security_headers(&mut json);
        assert_eq!(json[header::CONTENT_SECURITY_POLICY], NON_PAGE_POLICY);
        assert_eq!(json[header::X_FRAME_OPTIONS], "DENY");
    }
}
