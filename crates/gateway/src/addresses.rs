//! Sets of IP addresses named in the configuration (`[api]
//! trusted_proxies`, `[observability] metrics_allow`): exact addresses or
//! CIDR ranges, so that a proxy whose address changes within a network
//! (an ingress controller's pods, a load balancer's pool) can be trusted
//! by its network.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// Addresses and ranges; an address matches whether it arrives as IPv4 or
/// as an IPv4-mapped IPv6 address (a dual-stack listener's view of it).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AddressSet(Vec<IpNet>);

impl AddressSet {
    /// No address.
    pub fn none() -> Self {
        AddressSet(Vec::new())
    }

    /// `127.0.0.1` and `::1`.
    pub fn loopback() -> Self {
        [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(Ipv6Addr::LOCALHOST),
        ]
        .into_iter()
        .collect()
    }

    /// Parses entries such as `"10.0.0.5"`, `"10.244.0.0/16"`, `"::1"` or
    /// `"fd00::/8"`. A range with bits set after its prefix
    /// (`"10.0.0.5/8"`) is refused: it reads as one address or another
    /// range, and which was meant is not for the server to guess.
    pub fn parse<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, String> {
        entries
            .into_iter()
            .map(|entry| parse_entry(entry.as_ref().trim()))
            .collect::<Result<_, _>>()
            .map(AddressSet)
    }

    /// Whether `ip` is in the set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn parse_entry(entry: &str) -> Result<IpNet, String> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net: IpNet = entry.parse().map_err(|_| {
        format!("{entry:?} is neither an IP address nor a range such as \"10.0.0.0/8\"")
    })?;
    if net.trunc() != net {
        return Err(format!(
            "{entry:?} has bits set after its /{}: write the range as \"{}\" or the address as \"{}\"",
            net.prefix_len(),
            net.trunc(),
            net.addr()
        ));
    }
    Ok(net)
}

impl FromIterator<IpAddr> for AddressSet {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(addresses: I) -> Self {
        AddressSet(
            addresses
                .into_iter()
                .map(|ip| IpNet::from(ip.to_canonical()))
                .collect(),
        )
    }
}

impl fmt::Debug for AddressSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(ToString::to_string))
            .finish()
    }
}

impl<'de> Deserialize<'de> for AddressSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        AddressSet::parse(&entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_ranges_match() {
        let set = AddressSet::parse(["10.244.0.0/16", "192.0.2.7", "fd00::/8", " ::1 "]).unwrap();
        assert!(set.contains(ip("10.244.3.9")));
        assert!(set.contains(ip("10.244.255.255")));
        assert!(!set.contains(ip("10.245.0.1")));
        assert!(set.contains(ip("192.0.2.7")));
        assert!(!set.contains(ip("192.0.2.8")));
        assert!(set.contains(ip("fd12:3456::1")));
        assert!(!set.contains(ip("fe80::1")));
        assert!(set.contains(ip("::1")));
        // As a dual-stack listener sees an IPv4 peer.
        assert!(set.contains(ip("::ffff:10.244.1.2")));
        assert!(set.contains(ip("::ffff:192.0.2.7")));
        assert!(!set.contains(ip("::ffff:192.0.2.8")));
        let mapped = AddressSet::parse(["::ffff:192.0.2.9"]).unwrap();
        assert!(mapped.contains(ip("192.0.2.9")));
        assert!(AddressSet::none().is_empty() && !AddressSet::none().contains(ip("127.0.0.1")));
        let loopback = AddressSet::loopback();
        assert!(loopback.contains(ip("127.0.0.1")) && loopback.contains(ip("::1")));
        assert!(!loopback.contains(ip("127.0.0.2")));
    }

    #[test]
    fn bad_entries_are_refused_with_what_to_write() {
        let e = AddressSet::parse(["10.0.0.5/8"]).unwrap_err();
        assert!(
            e.contains("\"10.0.0.0/8\"") && e.contains("\"10.0.0.5\""),
            "{e}"
        );
        for bad in ["10.0.0", "10.0.0.0/33", "example.com", "", "10.0.0.0/"] {
            let e = AddressSet::parse([bad]).unwrap_err();
            assert!(e.contains("neither"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_configuration_reads_them_and_reports_the_bad_one() {
        #[derive(Deserialize, Debug)]
        struct Section {
            proxies: AddressSet,
        }
        let s: Section = serde_json::from_str(r#"{"proxies": ["10.0.0.0/8"]}"#).unwrap();
        assert!(s.proxies.contains(ip("10.1.2.3")));
        assert_eq!(format!("{:?}", s.proxies), r#"["10.0.0.0/8"]"#);
        let e = serde_json::from_str::<Section>(r#"{"proxies": ["10.0.0.1/8"]}"#).unwrap_err();
        assert!(e.to_string().contains("bits set"), "{e}");
    }
}
