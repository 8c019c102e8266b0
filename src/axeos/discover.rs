//! Finding miners on the LAN: a gentle scan that asks each address of the given IPv4
//! subnets for `GET /api/system/info` (a short timeout, a bounded number in flight, no
//! retries), recognising every firmware era with the exporter's own decoder; an address
//! that answers it with 401 / 403 is listed as a miner that needs credentials. It only
//! reads: nothing is ever sent to a miner but that GET (and no credentials).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::axeos::address::MinerAddress;
use crate::axeos::printable;
use crate::axeos::{AxeOsClient, PollError};

/// Requests in flight at once.
pub const IN_FLIGHT: usize = 32;

/// The largest subnet scanned (a /16: 65,534 addresses, about half an hour at 32 in flight
/// and the default timeout when nothing answers).
pub(crate) const MAX_PREFIX_HOSTS: u32 = 1 << 16;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DiscoverError {
    #[error("\"{0}\" is not an IPv4 subnet: write it as 192.168.1.0/24")]
    BadSubnet(String),
    #[error(
        "{0} is a public network; AxeOS answers only clients on private networks anyway \
         (10/8, 172.16/12, 192.168/16): pass --allow-public to scan it regardless"
    )]
    Public(Ipv4Net),
    #[error("{0} has {1} addresses; scan at most a /16 at a time")]
    TooLarge(Ipv4Net, u64),
    #[error("\"{0}\" is not a port or a range of ports (80, 80-90)")]
    BadPorts(String),
    #[error("no private IPv4 network found on this host's interfaces; name one with --subnet 192.168.1.0/24")]
    NoNetworks,
}

/// Parses `192.168.1.0/24` (a bare address is a /32).
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, DiscoverError> {
    let text = text.trim();
    let net = match text.parse::<Ipv4Net>() {
        Ok(net) => net,
        Err(_) => text
            .parse::<Ipv4Addr>()
            .map(Ipv4Net::from)
            .map_err(|_| DiscoverError::BadSubnet(text.to_string()))?,
    };
    Ok(net.trunc())
}

/// Parses `80` or `80-90`.
pub fn parse_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>, DiscoverError> {
    let bad = || DiscoverError::BadPorts(text.to_string());
    let (first, last) = match text.split_once('-') {
        Some((a, b)) => (
            a.trim().parse::<u16>().map_err(|_| bad())?,
            b.trim().parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let port = text.trim().parse::<u16>().map_err(|_| bad())?;
            (port, port)
        }
    };
    if first == 0 || last < first || u32::from(last - first) >= 4096 {
        return Err(bad());
    }
    Ok(first..=last)
}

/// Private, loopback and link-local networks: the ones a scan needs no leave for.
pub(crate) fn is_private(net: &Ipv4Net) -> bool {
    let ip = net.network();
    (ip.is_private() || ip.is_loopback() || ip.is_link_local()) && net.prefix_len() >= 8 && {
        // The whole subnet must lie inside one private block (a /8 covering 10/8 is fine,
        // 10.0.0.0/7 is not).
        let last = net.broadcast();
        last.is_private() || last.is_loopback() || last.is_link_local()
    }
}

/// Checks a subnet before it is scanned.
pub fn check_subnet(net: &Ipv4Net, allow_public: bool) -> Result<(), DiscoverError> {
    if !allow_public && !is_private(net) {
        return Err(DiscoverError::Public(*net));
    }
    let hosts = 1u64 << (32 - u32::from(net.prefix_len()));
    if hosts > u64::from(MAX_PREFIX_HOSTS) {
        return Err(DiscoverError::TooLarge(*net, hosts));
    }
    Ok(())
}

/// The addresses of a subnet a host can have (ipnet gives all of a /31 or /32).
fn hosts(net: &Ipv4Net) -> Vec<Ipv4Addr> {
    net.hosts().collect()
}

/// This host's private IPv4 networks, each at most the /24 around the host's address.
pub fn local_networks() -> Result<Vec<Ipv4Net>, DiscoverError> {
    let mut networks = BTreeSet::new();
    for interface in if_addrs::get_if_addrs().unwrap_or_default() {
        if let if_addrs::IfAddr::V4(v4) = interface.addr {
            if v4.ip.is_loopback() || !(v4.ip.is_private() || v4.ip.is_link_local()) {
                continue;
            }
            let prefix = u8::try_from(u32::from(v4.netmask).count_ones()).unwrap_or(24).max(24);
            if let Ok(net) = Ipv4Net::new(v4.ip, prefix) {
                networks.insert(net.trunc());
            }
        }
    }
    if networks.is_empty() {
        return Err(DiscoverError::NoNetworks);
    }
    Ok(networks.into_iter().collect())
}

/// How a found miner answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundStatus {
    /// It answered `/api/system/info`.
    Ok,
    /// It answered `/api/system/info` with 401 / 403: firmware with HTTP Basic auth that
    /// locks reads (nothing else about it is known until credentials are configured).
    NeedsCredentials,
}

/// A miner that answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Found {
    /// The name to configure it under: its hostname, made unique.
    pub name: String,
    /// `host` or `host:port`, as `devices[].ip` takes it.
    pub address: String,
    pub status: FoundStatus,
    pub hostname: Option<String>,
    pub board: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    /// `esp-miner`, `nerdqaxe`, `lucky` or `unknown` (`None` when it could not be read).
    pub firmware_family: Option<&'static str>,
    pub mac: Option<String>,
    pub frequency_mhz: Option<f64>,
    pub core_voltage_mv: Option<f64>,
    pub hashrate_ghs: Option<f64>,
}

impl Found {
    /// An address that asks for credentials before it says anything about itself.
    fn needing_credentials(address: String) -> Found {
        Found {
            name: suggested_name(None, &address),
            address,
            status: FoundStatus::NeedsCredentials,
            hostname: None,
            board: None,
            model: None,
            firmware_family: None,
            firmware: None,
            mac: None,
            frequency_mhz: None,
            core_voltage_mv: None,
            hashrate_ghs: None,
        }
    }

    pub fn needs_credentials(&self) -> bool {
        self.status == FoundStatus::NeedsCredentials
    }
}

/// A name made of the hostname's letters, digits, `-`, `_` and `.` (anything else from a
/// miner becomes `-`), or `miner-ADDRESS` without one.
fn suggested_name(hostname: Option<&str>, address: &str) -> String {
    let base: String = hostname
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(48)
        .collect();
    let base = base.trim_matches('-').to_string();
    if base.is_empty() {
        format!("miner-{}", address.replace([':', '.'], "-"))
    } else {
        base
    }
}

/// Makes every name unique against `taken` (the config's) and each other: `-2`, `-3`, ….
pub fn unique_names(found: &mut [Found], taken: &BTreeSet<String>) {
    let mut used = taken.clone();
    for miner in found.iter_mut() {
        let base = miner.name.clone();
        let mut n = 1;
        while used.contains(&miner.name) {
            n += 1;
            miner.name = format!("{base}-{n}");
        }
        used.insert(miner.name.clone());
    }
}

/// The service AxeOS v2.15+ announces over mDNS (a subtype of `_http._tcp`).
pub const MDNS_SERVICE: &str = "_axeos._sub._http._tcp.local.";

/// The (address, port) of every `_axeos._sub._http._tcp` instance that resolves within
/// `wait`, IPv4 only (the scan and the config speak IPv4). Blocking: run it off the runtime.
pub fn mdns_browse(wait: Duration) -> Result<Vec<(Ipv4Addr, u16)>, String> {
    let daemon = mdns_sd::ServiceDaemon::new().map_err(|e| format!("cannot start mDNS: {e}"))?;
    let events = daemon
        .browse(MDNS_SERVICE)
        .map_err(|e| format!("cannot browse {MDNS_SERVICE}: {e}"))?;
    let deadline = std::time::Instant::now() + wait;
    let mut found = BTreeSet::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match events.recv_timeout(left) {
            Ok(mdns_sd::ServiceEvent::ServiceResolved(service)) => {
                for address in &service.addresses {
                    if let std::net::IpAddr::V4(ip) = address.to_ip_addr() {
                        found.insert((ip, service.port));
                    }
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let _ = daemon.shutdown();
    Ok(found.into_iter().collect())
}

/// Every (address, port) of the subnets × ports.
pub fn subnet_targets(networks: &[Ipv4Net], ports: std::ops::RangeInclusive<u16>) -> Vec<(Ipv4Addr, u16)> {
    let addresses: BTreeSet<Ipv4Addr> = networks.iter().flat_map(hosts).collect();
    addresses
        .into_iter()
        .flat_map(|ip| ports.clone().map(move |port| (ip, port)))
        .collect()
}

/// Scans the subnets' addresses on the ports; returns the miners found, by name.
pub async fn scan(
    networks: &[Ipv4Net],
    ports: std::ops::RangeInclusive<u16>,
    timeout: Duration,
) -> Result<Vec<Found>, crate::axeos::ClientBuildError> {
    probe(subnet_targets(networks, ports), timeout).await
}

/// Asks each (address, port) once; returns the miners that answered, one per MAC, by name.
pub async fn probe(
    targets: Vec<(Ipv4Addr, u16)>,
    timeout: Duration,
) -> Result<Vec<Found>, crate::axeos::ClientBuildError> {
    let client = Arc::new(AxeOsClient::new(timeout, Duration::from_secs(1))?);
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let targets: BTreeSet<(Ipv4Addr, u16)> = targets.into_iter().collect();
    for (ip, port) in targets {
        {
            let (client, permits) = (client.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.ok()?;
                let address = MinerAddress::new(ip.to_string(), port);
                let read = client.system_info(&address).await;
                let shown = if port == 80 {
                    ip.to_string()
                } else {
                    format!("{ip}:{port}")
                };
                let sample = match read {
                    Ok(sample) => sample,
                    Err(PollError::Unauthorized { .. }) => return Some(Found::needing_credentials(shown)),
                    Err(_) => return None,
                };
                let identity = &sample.identity;
                Some(Found {
                    name: suggested_name(identity.hostname.as_deref(), &shown),
                    address: shown,
                    status: FoundStatus::Ok,
                    hostname: identity.hostname.as_deref().map(|h| printable(h).into_owned()),
                    // The board's name where its family's table (or its own model) says it.
                    board: identity
                        .board
                        .as_deref()
                        .or(identity.board_version.as_deref())
                        .map(|b| printable(b).into_owned()),
                    model: identity.asic_model.as_deref().map(|m| printable(m).into_owned()),
                    firmware: identity.firmware.as_deref().map(|f| printable(f).into_owned()),
                    firmware_family: Some(identity.family.as_label()),
                    mac: identity.mac.clone(),
                    frequency_mhz: sample.frequency_mhz,
                    core_voltage_mv: sample.core_voltage_mv,
                    hashrate_ghs: sample.hashrate_ghs,
                })
            });
        }
    }
    // One miner answering on several of the scanned ports (or addresses) is one miner.
    let mut by_identity: BTreeMap<String, Found> = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some(found)) = result {
            let key = found.mac.clone().unwrap_or_else(|| found.address.clone());
            by_identity.entry(key).or_insert(found);
        }
    }
    let mut found: Vec<Found> = by_identity.into_values().collect();
    found.sort_by(|a, b| a.name.cmp(&b.name).then(a.address.cmp(&b.address)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_ports_and_the_private_rule() {
        assert_eq!(parse_subnet("192.168.1.77/24").unwrap().to_string(), "192.168.1.0/24");
        assert_eq!(parse_subnet("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        assert!(parse_subnet("192.168.1.0/33").is_err() && parse_subnet("bitaxe.local").is_err());
        assert_eq!(parse_ports("80").unwrap(), 80..=80);
        assert_eq!(parse_ports("8080-8090").unwrap(), 8080..=8090);
        for bad in ["0", "90-80", "1-65535", "x"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
        for private in [
            "10.0.0.0/16",
            "172.16.4.0/24",
            "192.168.0.0/16",
            "127.0.0.1/32",
            "169.254.1.0/24",
        ] {
            assert!(
                check_subnet(&parse_subnet(private).unwrap(), false).is_ok(),
                "{private}"
            );
        }
        let public = parse_subnet("8.8.8.0/24").unwrap();
        assert_eq!(check_subnet(&public, false), Err(DiscoverError::Public(public)));
        assert!(check_subnet(&public, true).is_ok());
        assert!(matches!(
            check_subnet(&parse_subnet("10.0.0.0/8").unwrap(), false),
            Err(DiscoverError::TooLarge(..))
        ));
        assert!(check_subnet(&parse_subnet("10.0.0.0/7").unwrap(), false).is_err());
    }

    #[test]
    fn names_come_from_hostnames_made_safe_and_unique() {
        assert_eq!(suggested_name(Some("bitaxe-601"), "10.0.0.5"), "bitaxe-601");
        assert_eq!(suggested_name(Some("<b>evil</b>\n"), "10.0.0.5"), "b-evil--b");
        assert_eq!(suggested_name(None, "10.0.0.5:8080"), "miner-10-0-0-5-8080");
        let miner = |name: &str| Found {
            name: name.into(),
            address: String::new(),
            status: FoundStatus::Ok,
            hostname: None,
            board: None,
            model: None,
            firmware: None,
            firmware_family: None,
            mac: None,
            frequency_mhz: None,
            core_voltage_mv: None,
            hashrate_ghs: None,
        };
        let mut found = vec![miner("bitaxe"), miner("bitaxe"), miner("gamma")];
        unique_names(&mut found, &BTreeSet::from(["gamma".to_string()]));
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["bitaxe", "bitaxe-2", "gamma-2"]);
    }
}
