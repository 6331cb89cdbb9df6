//! Published ports: the `-p [ip:][host:]container[/proto]` syntax of the
//! CLI, and the `PortBindings` map of the Engine API (`{"80/tcp":
//! [{"HostIp": "", "HostPort": "8080"}]}`) both come down to
//! [`PortMapping`]s.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port, binding or `-p` flag that does not parse, or bindings that
/// cannot all be bound.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("invalid protocol {proto:?} in port {port:?}")]
    Protocol { proto: String, port: String },
    #[error("invalid container port {0:?}")]
    ContainerPort(String),
    #[error("invalid host port {port:?} for container port {key}: one port number, no ranges")]
    HostPort { port: String, key: String },
    #[error("invalid host address {0:?}")]
    HostIp(String),
    #[error("host port {port}/{} is published twice", .proto.as_str())]
    PublishedTwice { port: u16, proto: Proto },
    /// A `-p` flag, with what is wrong in it.
    #[error("invalid -p {flag:?}: {source}")]
    Publish {
        flag: String,
        #[source]
        source: Box<PortError>,
    },
}

/// One published port: host address and port (0 = pick one) to the
/// container's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: IpAddr,
    pub host_port: u16,
}

impl PortMapping {
    /// `80/tcp`, the key Docker uses for a container port.
    pub fn key(&self) -> String {
        port_key(self.container_port, self.proto)
    }
}

pub fn port_key(port: u16, proto: Proto) -> String {
    format!("{port}/{}", proto.as_str())
}

/// `80`, `80/tcp`, `53/udp`.
pub fn parse_port_key(s: &str) -> Result<(u16, Proto), PortError> {
    let (port, proto) = s.split_once('/').unwrap_or((s, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => {
            return Err(PortError::Protocol {
                proto: proto.to_string(),
                port: s.to_string(),
            })
        }
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| PortError::ContainerPort(s.to_string()))?;
    Ok((port, proto))
}

/// A host port as the API carries it: empty for "any".
fn parse_host_port(s: &str, key: &str) -> Result<u16, PortError> {
    if s.is_empty() {
        return Ok(0);
    }
    s.parse().map_err(|_| PortError::HostPort {
        port: s.to_string(),
        key: key.to_string(),
    })
}

fn parse_host_ip(s: &str) -> Result<IpAddr, PortError> {
    if s.is_empty() {
        return Ok(Ipv4Addr::UNSPECIFIED.into());
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| PortError::HostIp(s.to_string()))
}

/// A `(HostIp, HostPort)` pair of the API's `PortBindings`.
pub type ApiBinding = (String, String);

/// The mappings a create request asks for: its `PortBindings`, plus every
/// exposed port on an ephemeral host port when `PublishAllPorts` is set.
pub fn from_api(
    bindings: &BTreeMap<String, Vec<ApiBinding>>,
    exposed: &[(u16, Proto)],
    publish_all: bool,
) -> Result<Vec<PortMapping>, PortError> {
    let mut out = Vec::new();
    for (key, list) in bindings {
        let (port, proto) = parse_port_key(key)?;
        let list: &[ApiBinding] = if list.is_empty() {
            &[(String::new(), String::new())]
        } else {
            list
        };
        for (ip, hp) in list {
            out.push(PortMapping {
                container_port: port,
                proto,
                host_ip: parse_host_ip(ip)?,
                host_port: parse_host_port(hp, key)?,
            });
        }
    }
    if publish_all {
        for &(port, proto) in exposed {
            if !out
                .iter()
                .any(|m| m.container_port == port && m.proto == proto)
            {
                out.push(PortMapping {
                    container_port: port,
                    proto,
                    host_ip: Ipv4Addr::UNSPECIFIED.into(),
                    host_port: 0,
                });
            }
        }
    }
    // Two containers ports on one host port can never both bind.
    for (i, a) in out.iter().enumerate() {
        if a.host_port != 0
            && out[..i]
                .iter()
                .any(|b| b.host_port == a.host_port && b.proto == a.proto && b.host_ip == a.host_ip)
        {
            return Err(PortError::PublishedTwice {
                port: a.host_port,
                proto: a.proto,
            });
        }
    }
    Ok(out)
}

/// One `-p` flag as Docker reads it: `[ip:][hostPort:]containerPort[/proto]`
/// (`ip` may be `[v6]`). Returns the port key and its API binding.
pub fn parse_publish(s: &str) -> Result<(String, ApiBinding), PortError> {
    let invalid = |e: PortError| PortError::Publish {
        flag: s.to_string(),
        source: Box::new(e),
    };
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, p)) => (r, Some(p)),
        None => (s, None),
    };
    // Split off the container port, then the host port, then the address.
    let (head, container) = match rest.rsplit_once(':') {
        Some((h, c)) => (Some(h), c),
        None => (None, rest),
    };
    let (ip, host_port) = match head {
        None => ("", ""),
        Some(h) => match h.rsplit_once(':') {
            // `[::1]:8080` or `127.0.0.1:8080`
            Some((ip, hp)) if !hp.ends_with(']') => (ip, hp),
            _ if h.starts_with('[') || h.parse::<IpAddr>().is_ok() => (h, ""),
            _ => ("", h),
        },
    };
    let key_src = match proto {
        Some(p) => format!("{container}/{p}"),
        None => container.to_string(),
    };
    let (port, proto) = parse_port_key(&key_src).map_err(invalid)?;
    let key = port_key(port, proto);
    parse_host_ip(ip).map_err(invalid)?;
    parse_host_port(host_port, &key).map_err(invalid)?;
    Ok((key, (ip.to_string(), host_port.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, hp: &str) -> ApiBinding {
        (ip.into(), hp.into())
    }

    #[test]
    fn publish_flags() {
        assert_eq!(parse_publish("80"), Ok(("80/tcp".into(), b("", ""))));
        assert_eq!(
            parse_publish("8080:80"),
            Ok(("80/tcp".into(), b("", "8080")))
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp"),
            Ok(("80/udp".into(), b("127.0.0.1", "8080")))
        );
        assert_eq!(
            parse_publish("127.0.0.1::80"),
            Ok(("80/tcp".into(), b("127.0.0.1", "")))
        );
        assert_eq!(
            parse_publish("[::1]:8080:80"),
            Ok(("80/tcp".into(), b("[::1]", "8080")))
        );
        assert!(parse_publish("8080:80/sctp").is_err());
        assert!(parse_publish("8080-8081:80").is_err());
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("99999:80").is_err());
    }

    #[test]
    fn api_bindings_and_publish_all() {
        let mut m = BTreeMap::new();
        m.insert("80/tcp".to_string(), vec![b("", "8080")]);
        let got = from_api(&m, &[(80, Proto::Tcp), (443, Proto::Tcp)], true).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].host_port, 8080);
        assert_eq!((got[1].container_port, got[1].host_port), (443, 0));
        m.insert("81/tcp".to_string(), vec![b("", "8080")]);
        assert_eq!(
            from_api(&m, &[], false).unwrap_err().to_string(),
            "host port 8080/tcp is published twice"
        );
        let mut bad = BTreeMap::new();
        bad.insert("http".to_string(), vec![]);
        assert!(from_api(&bad, &[], false).is_err());
    }
}
