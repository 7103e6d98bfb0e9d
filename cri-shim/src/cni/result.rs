//! The result of a CNI ADD (spec 0.3.0 to 1.0.0: `ips`, `interfaces`, `routes`, `dns`).

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// One address of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The gateway, when the plugin gave one.
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`, when given.
    pub interface: Option<usize>,
}

/// What ADD produced: the addresses, and the raw result kept for DEL's `prevResult`.
#[derive(Clone, Debug, PartialEq)]
pub struct CniResult {
    /// Every address, in the plugin's order.
    pub ips: Vec<IpConfig>,
    /// The final plugin's result, unchanged.
    pub raw: Value,
}

impl CniResult {
    /// The pod IP: the first IPv4 address, else the first address (loopback skipped).
    pub fn pod_ip(&self) -> Option<IpAddr> {
        let usable = || {
            self.ips
                .iter()
                .map(|i| i.address)
                .filter(|a| !a.is_loopback())
        };
        usable().find(IpAddr::is_ipv4).or_else(|| usable().next())
    }

    /// Every usable address other than [`Self::pod_ip`] (CRI's `additional_ips`).
    pub fn additional_ips(&self) -> Vec<IpAddr> {
        let first = self.pod_ip();
        self.ips
            .iter()
            .map(|i| i.address)
            .filter(|a| !a.is_loopback() && Some(*a) != first)
            .collect()
    }
}

#[derive(Deserialize)]
struct RawIp {
    address: String,
    gateway: Option<String>,
    interface: Option<usize>,
}

#[derive(Deserialize)]
struct RawResult {
    #[serde(default)]
    ips: Vec<RawIp>,
}

/// Why a result is refused.
#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// Not the JSON shape of a result.
    #[error("malformed result")]
    Json(#[source] serde_json::Error),
    /// An address is not `ip/prefix` or a gateway not an IP.
    #[error("malformed address {0:?}")]
    Address(String),
}

fn parse_cidr(s: &str) -> Result<(IpAddr, u8), ResultError> {
    let bad = || ResultError::Address(s.to_owned());
    let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let prefix: u8 = prefix.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok((ip, prefix))
}

/// Parses a result (`ips[].address` as `ip/prefix`).
pub fn parse(raw: Value) -> Result<CniResult, ResultError> {
    let r = RawResult::deserialize(&raw).map_err(ResultError::Json)?;
    let ips = r
        .ips
        .into_iter()
        .map(|ip| {
            let (address, prefix_len) = parse_cidr(&ip.address)?;
            let gateway = match ip.gateway {
                Some(g) => Some(g.parse().map_err(|_| ResultError::Address(g))?),
                None => None,
            };
            Ok(IpConfig {
                address,
                prefix_len,
                gateway,
                interface: ip.interface,
            })
        })
        .collect::<Result<_, ResultError>>()?;
    Ok(CniResult { ips, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_first_loopback_skipped() {
        let raw = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/x"}],
            "ips": [
                {"address": "127.0.0.1/8", "interface": 0},
                {"address": "fd00::5/64", "interface": 0},
                {"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0, "version": "4"}
            ]
        });
        let r = parse(raw).unwrap();
        assert_eq!(r.ips.len(), 3);
        assert_eq!(r.pod_ip(), Some("10.88.0.5".parse().unwrap()));
        assert_eq!(
            r.additional_ips(),
            vec!["fd00::5".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.ips[2].gateway, Some("10.88.0.1".parse().unwrap()));
        assert_eq!(r.ips[2].prefix_len, 16);
    }

    #[test]
    fn no_ips_and_bad_addresses() {
        let r = parse(serde_json::json!({"cniVersion": "1.0.0"})).unwrap();
        assert_eq!(r.pod_ip(), None);
        for bad in ["10.0.0.1", "10.0.0.1/33", "x/8", "fd00::1/129"] {
            let raw = serde_json::json!({"ips": [{"address": bad}]});
            assert!(matches!(parse(raw), Err(ResultError::Address(_))), "{bad}");
        }
        assert!(matches!(
            parse(serde_json::json!({"ips": 3})),
            Err(ResultError::Json(_))
        ));
    }
}
