//! `top [--url URL] [--compact] [--sort COLUMN]`: the terminal dashboard over a running
//! exporter (by default the one `server.listen` of the config names).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::Failure;
use crate::config;
use crate::tui::app::SortKey;
use crate::tui::{self, Options, TopError};

/// `top`'s arguments.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The exporter to show, as HOST:PORT or http://HOST:PORT (default: the config's
    /// server.listen, else http://127.0.0.1:9842).
    #[arg(long)]
    pub url: Option<String>,
    /// Fewer columns: fits 80 × 24.
    #[arg(long)]
    pub compact: bool,
    /// The column to sort by (s / S change it, r reverses).
    #[arg(long, value_enum, default_value_t = SortKey::Name)]
    pub sort: SortKey,
}

/// Where a listener on `listen` is reached from this host: an unspecified address
/// (`0.0.0.0`, `::`) means loopback.
fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

impl TopArgs {
    pub async fn run(self, config_path: &Path, named: bool) -> Result<(), Failure> {
        let url = match self.url {
            Some(url) => url,
            None if named || config_path.exists() => local_url(config::load(config_path)?.listen),
            None => {
                local_url(config::parse_listen(config::DEFAULT_LISTEN).map_err(|e| Failure::Usage(anyhow::anyhow!(e)))?)
            }
        };
        let options = Options {
            url,
            compact: self.compact,
            sort: self.sort,
        };
        tui::run(options).await.map_err(|e| match e {
            TopError::NotAnswering { .. } | TopError::BadUrl(_) => Failure::Usage(e.into()),
            TopError::Terminal(_) => Failure::Runtime(e.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exporter_listening_everywhere_is_reached_on_loopback() {
        assert_eq!(local_url("0.0.0.0:9842".parse().unwrap()), "http://127.0.0.1:9842");
        assert_eq!(local_url("[::]:9842".parse().unwrap()), "http://[::1]:9842");
        assert_eq!(local_url("192.168.1.5:80".parse().unwrap()), "http://192.168.1.5:80");
    }
}
