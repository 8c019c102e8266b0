//! Where a miner answers and what every request to it carries: its address (`host` or
//! `host:port`, as config.yaml writes it) and, for firmware with HTTP Basic auth, its
//! credentials, the password a [`Secret`] that never prints.

use std::fmt;
use std::sync::Arc;

/// AxeOS serves plain HTTP on port 80.
pub const DEFAULT_MINER_PORT: u16 = 80;

/// A password. `Debug` and `Display` print `***`; only [`Secret::expose`] gives the text,
/// and only the HTTP client calls it. It is never serialised (no `Serialize`).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The password itself: for the `Authorization` header, nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What every request to one miner carries as `Authorization: Basic …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
    /// The configured device they belong to, named when the miner refuses them.
    pub device: String,
}

/// Where a miner's HTTP API answers: `host` or `host:port` from config.yaml, and the
/// credentials every request to it carries when its firmware asks for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinerAddress {
    pub host: String,
    pub port: u16,
    /// `username` and the password of the device in config.yaml (HTTP Basic auth).
    pub credentials: Option<Arc<Credentials>>,
}

impl MinerAddress {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`. No scheme, no path.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the address is empty".into());
        }
        // `user:password@host` is how a URL carries credentials: say where they go instead,
        // and never echo the address, which then holds a password.
        if text.contains('@') {
            return Err(
                "the address holds a user name or password (`…@host`): write the host alone and give \
                 the credentials as username and password_file / password_env / password"
                    .into(),
            );
        }
        if text.contains("://") || text.contains('/') {
            return Err(format!(
                "\"{text}\" is not a host or host:port (write it without http:// and without a path)"
            ));
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (v6, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("\"{text}\" has an unclosed '['"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("\"{text}\": expected ':port' after ']'"))?,
                ),
            };
            (format!("[{v6}]"), port)
        } else {
            match text.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!(
                        "\"{text}\": write an IPv6 address in brackets, e.g. [fe80::1]:80"
                    ))
                }
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (text.to_string(), None),
            }
        };
        let valid_host = !host.is_empty()
            && (host.starts_with('[')
                || host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        if !valid_host {
            return Err(format!("\"{host}\" is not a valid host name or IP address"));
        }
        // `192.168.1.300` would otherwise pass as a host name that never resolves: digits
        // and dots alone are meant as an IPv4 address, so they must be one.
        if host.chars().all(|c| c.is_ascii_digit() || c == '.') && host.parse::<std::net::Ipv4Addr>().is_err() {
            return Err(format!(
                "\"{host}\" is not an IPv4 address (four numbers from 0 to 255, e.g. 192.168.1.30)"
            ));
        }
        let port = match port {
            None => DEFAULT_MINER_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(format!("\"{p}\" is not a port number (1-65535)")),
                Ok(p) => p,
            },
        };
        Ok(Self {
            host,
            port,
            credentials: None,
        })
    }

    /// An address without credentials.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            credentials: None,
        }
    }

    /// The same host and port, whatever the credentials.
    pub fn same_place(&self, other: &MinerAddress) -> bool {
        self.host == other.host && self.port == other.port
    }

    /// The URL of an API path on this miner, e.g. `/api/system/info`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}:{}{}", self.host, self.port, path)
    }
}

impl fmt::Display for MinerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
