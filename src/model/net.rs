//! Network grants of Wasm containers (`--allow-net`): which destinations a
//! guest may open TCP connections and send UDP datagrams to, and which
//! names it may look up.
//!
//! ```text
//! grant := [proto "://"] host [":" ports]      proto := tcp | udp | *  (default: both)
//! host  := "*" | name | "*." suffix | IPv4 | "[" IPv6 "]" | CIDR
//! ports := "*" | N | N "-" M                    (omitted: any port)
//! ```
//!
//! `*` as the host grants every address except the host's own loopback
//! (and the unspecified address, which reaches it): a guest runs inside
//! ketchd, so its loopback is the host's, and must be named to be granted
//! (`127.0.0.1:8080`). Names compare without case; a name grant also
//! grants the addresses the guest's own lookups of it returned.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use ipnet::IpNet;

/// A transport a grant covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetProto {
    Tcp,
    Udp,
}

/// Where a grant lets a guest go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetHost {
    /// Every address but the host's loopback.
    Any,
    /// One name, lower case, without a trailing dot.
    Name(String),
    /// Every name below this one (`*.example.com` holds `example.com`).
    Suffix(String),
    /// An address or a network (an address is a /32 or /128).
    Net(IpNet),
}

/// One `--allow-net` destination, as parsed. Displays as given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetGrant {
    /// `None`: both TCP and UDP.
    pub proto: Option<NetProto>,
    pub host: NetHost,
    pub ports: RangeInclusive<u16>,
    text: String,
}

/// Why a grant does not parse; the message names the grant.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid network grant {grant:?}: {reason}")]
pub struct NetGrantError {
    pub grant: String,
    pub reason: String,
}

impl fmt::Display for NetGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for NetGrant {
    type Err = NetGrantError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| NetGrantError {
            grant: s.to_string(),
            reason: reason.to_string(),
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let (proto, rest) = match text.split_once("://") {
            Some((p, rest)) => (
                match p.to_ascii_lowercase().as_str() {
                    "tcp" => Some(NetProto::Tcp),
                    "udp" => Some(NetProto::Udp),
                    "*" => None,
                    _ => return Err(fail("the protocol must be tcp, udp or *")),
                },
                rest,
            ),
            None => (None, text),
        };
        let (host, ports) = split_host_ports(rest).map_err(|r| fail(&r))?;
        let host = parse_host(host).map_err(|r| fail(&r))?;
        let ports = match ports {
            None | Some("*") => 0..=u16::MAX,
            Some(p) => parse_ports(p).map_err(|r| fail(&r))?,
        };
        Ok(NetGrant {
            proto,
            host,
            ports,
            text: text.to_string(),
        })
    }
}

/// `host[:ports]`, where an IPv6 host is in brackets (a CIDR's prefix may
/// sit inside or after them).
fn split_host_ports(s: &str) -> Result<(&str, Option<&str>), String> {
    if s.starts_with('[') {
        let end = s.find(']').ok_or("an IPv6 address must end with ]")?;
        let after = &s[end + 1..];
        // `[fd00::]/8:443`: the prefix follows the bracket.
        let (prefix_end, ports) = match after.find(':') {
            Some(i) => (end + 1 + i, Some(&after[i + 1..])),
            None => (s.len(), None),
        };
        return Ok((&s[..prefix_end], ports));
    }
    Ok(match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        Some(_) => return Err("an IPv6 address must be in brackets".into()),
        None => (s, None),
    })
}

fn parse_host(h: &str) -> Result<NetHost, String> {
    if h == "*" {
        return Ok(NetHost::Any);
    }
    if let Some(inner) = h.strip_prefix('[') {
        let (addr, prefix) = match inner.split_once(']') {
            Some((a, rest)) => (a, rest),
            None => return Err("an IPv6 address must end with ]".into()),
        };
        let joined = format!("{addr}{prefix}");
        return net(&joined)
            .filter(|n| n.addr().is_ipv6())
            .map(NetHost::Net)
            .ok_or_else(|| format!("{h:?} is not an IPv6 address or network"));
    }
    if h.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && h.bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'/')
    {
        return net(h)
            .filter(|n| n.addr().is_ipv4())
            .map(NetHost::Net)
            .ok_or_else(|| format!("{h:?} is not an IPv4 address or network"));
    }
    let (suffix, name) = match h.strip_prefix("*.") {
        Some(n) => (true, n),
        None => (false, h),
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(format!("{h:?} is not a host name, address or network"));
    }
    Ok(if suffix {
        NetHost::Suffix(name)
    } else {
        NetHost::Name(name)
    })
}

/// An address (a single-host network) or a CIDR network, in canonical
/// form (host bits cleared).
fn net(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

fn parse_ports(p: &str) -> Result<RangeInclusive<u16>, String> {
    let num = |n: &str| {
        n.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n:?} is not a port from 1 to 65535"))
    };
    let range = match p.split_once('-') {
        Some((a, b)) => num(a)?..=num(b)?,
        None => {
            let n = num(p)?;
            n..=n
        }
    };
    if range.is_empty() {
        return Err(format!("the port range {p:?} is empty"));
    }
    Ok(range)
}

impl NetGrant {
    /// The grant as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn covers_proto(&self, proto: NetProto) -> bool {
        self.proto.is_none_or(|p| p == proto)
    }

    /// Does this grant name `name` (or hold it, for `*` and `*.suffix`)?
    pub fn names(&self, name: &str) -> bool {
        let name = normal_name(name);
        match &self.host {
            NetHost::Any => true,
            NetHost::Name(n) => *n == name,
            NetHost::Suffix(s) => {
                name.len() > s.len() + 1
                    && name.ends_with(s.as_str())
                    && name.as_bytes()[name.len() - s.len() - 1] == b'.'
            }
            NetHost::Net(_) => false,
        }
    }

    /// Does this grant cover `addr` over `proto` by address alone (not
    /// through a lookup)?
    pub fn covers(&self, proto: NetProto, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.covers_proto(proto)
            && self.ports.contains(&addr.port())
            && match &self.host {
                NetHost::Any => !reaches_host(ip),
                NetHost::Net(n) => n.contains(&ip),
                NetHost::Name(_) | NetHost::Suffix(_) => false,
            }
    }

    /// Would this grant cover `addr` had a lookup of one of its names
    /// returned its address?
    pub fn covers_learned(&self, proto: NetProto, addr: SocketAddr) -> bool {
        self.covers_proto(proto)
            && self.ports.contains(&addr.port())
            && matches!(self.host, NetHost::Name(_) | NetHost::Suffix(_))
    }
}

/// Lower case, without a trailing dot.
pub fn normal_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Addresses that reach the host itself from inside ketchd: loopback, and
/// the unspecified address (a connect to 0.0.0.0 goes to loopback).
pub fn reaches_host(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

/// Connections (and sockets) a Wasm container may hold at once when its
/// run options do not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The network options of a Wasm container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetOptions {
    /// Destinations its sockets may reach, and names it may look up.
    pub allow: Vec<NetGrant>,
    /// Sockets it may hold at once, its own and those accepted on its
    /// published ports together; past it, new ones are refused.
    pub max_connections: usize,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            allow: Vec::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Parse a comma-separated list of grants (an annotation's value).
pub fn parse_list(s: &str) -> Result<Vec<NetGrant>, NetGrantError> {
    s.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(s: &str) -> NetGrant {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn grants_parse_into_their_parts() {
        let a = g("example.com");
        assert_eq!(
            (a.proto, a.host.clone(), a.ports.clone()),
            (None, NetHost::Name("example.com".into()), 0..=65535)
        );
        assert_eq!(
            g("TCP://Example.COM.:443").host,
            NetHost::Name("example.com".into())
        );
        assert_eq!(g("tcp://example.com:443").proto, Some(NetProto::Tcp));
        assert_eq!(g("udp://10.0.0.0/8:53").ports, 53..=53);
        assert_eq!(g("*.svc.local:8000-8100").ports, 8000..=8100);
        assert_eq!(g("*.svc.local").host, NetHost::Suffix("svc.local".into()));
        assert_eq!(g("*").host, NetHost::Any);
        assert_eq!(g("*://*:*").host, NetHost::Any);
        assert_eq!(
            g("10.1.2.3/8").host,
            NetHost::Net("10.0.0.0/8".parse().unwrap())
        );
        assert_eq!(g("[::1]:80").host, NetHost::Net("::1/128".parse().unwrap()));
        assert_eq!(
            g("[fd00::]/8:443").host,
            NetHost::Net("fd00::/8".parse().unwrap())
        );
        assert_eq!(
            g("[fd00::/8]").host,
            NetHost::Net("fd00::/8".parse().unwrap())
        );
        assert_eq!(g(" 127.0.0.1:8080 ").to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn malformed_grants_are_refused_by_name() {
        for bad in [
            "",
            "http://example.com",
            "exa mple.com",
            "example.com:0",
            "example.com:70000",
            "example.com:90-80",
            "example.com:x",
            "::1",
            "[::1",
            "[1.2.3.4]",
            "300.1.1.1",
            "10.0.0.0/33",
            "-bad.com",
            "a.*.com",
        ] {
            let e = bad.parse::<NetGrant>().unwrap_err();
            assert_eq!(e.grant, bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_grant_covers_its_protocols_hosts_and_ports() {
        assert!(g("10.0.0.0/8:53").covers(NetProto::Udp, at("10.9.9.9:53")));
        assert!(g("10.0.0.0/8:53").covers(NetProto::Tcp, at("10.9.9.9:53")));
        assert!(!g("udp://10.0.0.0/8").covers(NetProto::Tcp, at("10.9.9.9:53")));
        assert!(!g("10.0.0.0/8:53").covers(NetProto::Udp, at("11.0.0.1:53")));
        assert!(!g("10.0.0.0/8:53").covers(NetProto::Udp, at("10.0.0.1:54")));
        assert!(g("127.0.0.1:8000-8001").covers(NetProto::Tcp, at("127.0.0.1:8001")));
        // An IPv4-mapped IPv6 address is its IPv4 address.
        assert!(g("127.0.0.1").covers(NetProto::Tcp, at("[::ffff:127.0.0.1]:1")));
        // `*` does not reach the host: loopback and 0.0.0.0 must be named.
        let any = g("*");
        assert!(any.covers(NetProto::Tcp, at("192.0.2.1:443")));
        for host in [
            "127.0.0.1:80",
            "127.8.0.1:80",
            "[::1]:80",
            "0.0.0.0:80",
            "[::]:80",
            "[::ffff:127.0.0.1]:80",
        ] {
            assert!(!any.covers(NetProto::Tcp, at(host)), "{host}");
        }
        // Names cover no address by themselves.
        assert!(!g("localhost").covers(NetProto::Tcp, at("127.0.0.1:80")));
        assert!(g("localhost:80").covers_learned(NetProto::Tcp, at("127.0.0.1:80")));
        assert!(!g("localhost:80").covers_learned(NetProto::Tcp, at("127.0.0.1:81")));
    }

    #[test]
    fn names_match_exactly_or_below_a_suffix() {
        assert!(g("Example.com").names("EXAMPLE.com."));
        assert!(!g("example.com").names("www.example.com"));
        assert!(g("*.example.com").names("www.example.com"));
        assert!(g("*.example.com").names("a.b.example.com"));
        assert!(!g("*.example.com").names("example.com"));
        assert!(!g("*.example.com").names("badexample.com"));
        assert!(g("*").names("anything.at.all"));
        assert!(!g("10.0.0.1").names("10.0.0.1.example"));
    }

    #[test]
    fn a_list_is_comma_separated() {
        let l = parse_list("a.com, tcp://b.com:1 ,,").unwrap();
        assert_eq!(
            l.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
            ["a.com", "tcp://b.com:1"]
        );
        assert_eq!(parse_list("a.com,bad host").unwrap_err().grant, "bad host");
    }
}
