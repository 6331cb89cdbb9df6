//! Container annotations ketch reads (`HostConfig.Annotations`, Docker's
//! `--annotation`): the serving options of function containers and the
//! network grants of Wasm containers. ketch's own CLI sets them from
//! `--http-*`, `--allow-http`, `--allow-net` and `--net-connections`; any
//! Docker client can send them.

use crate::model::net::{self, NetGrantError, NetOptions};
use crate::model::units::{parse_duration, parse_size, UnitError};
use crate::model::HttpOptions;
use std::collections::BTreeMap;

/// Wall-time limit per request: `30s`, `500ms`; `0` for none.
pub const HTTP_TIMEOUT: &str = "io.ketch.http.timeout";
/// Requests served at once before answering 503.
pub const HTTP_CONCURRENCY: &str = "io.ketch.http.concurrency";
/// Largest request body: `16m`.
pub const HTTP_MAX_BODY: &str = "io.ketch.http.max-body";
/// Comma-separated `host[:port]` (or `*`) the guest may send requests to.
pub const HTTP_ALLOW: &str = "io.ketch.http.allow";
/// Requests one instance serves in turn (1: a fresh one per request).
pub const HTTP_REUSE: &str = "io.ketch.http.reuse";
/// Comma-separated network grants (`[tcp|udp://]host[:ports]`, see
/// [`crate::model::net`]) of a Wasm container's sockets.
pub const NET_ALLOW: &str = "io.ketch.net.allow";
/// Sockets a Wasm container may hold at once.
pub const NET_CONNECTIONS: &str = "io.ketch.net.connections";

/// The most sockets one Wasm container may be allowed.
pub const MAX_CONNECTIONS: usize = 65536;

/// The most requests one function may run at once (the instance pool of
/// the daemon is shared by all of them).
pub const MAX_CONCURRENCY: usize = 1000;

/// The most requests one instance may serve.
pub const MAX_REUSE: usize = 1_000_000;

/// An annotation ketch reads whose value it cannot use; the message names
/// the annotation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("annotation {key}: {source}")]
    Unit {
        key: &'static str,
        #[source]
        source: UnitError,
    },
    #[error("annotation {key}: {value:?} is not a number from 1 to {max}")]
    Count {
        key: &'static str,
        value: String,
        max: usize,
    },
    #[error("annotation {key}: {host:?} is not a host or host:port", key = HTTP_ALLOW)]
    Allow { host: String },
    #[error("annotation {key}: {source}", key = NET_ALLOW)]
    Net {
        #[source]
        source: NetGrantError,
    },
}

/// The annotation `key` as a number from 1 to `max`, if it is there.
fn count(
    a: &BTreeMap<String, String>,
    key: &'static str,
    max: usize,
) -> Result<Option<usize>, AnnotationError> {
    a.get(key)
        .map(|v| {
            v.trim()
                .parse()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| AnnotationError::Count {
                    key,
                    value: v.clone(),
                    max,
                })
        })
        .transpose()
}

/// Read the network options of a Wasm container from annotations.
pub fn net_options(a: &BTreeMap<String, String>) -> Result<NetOptions, AnnotationError> {
    let mut o = NetOptions::default();
    if let Some(v) = a.get(NET_ALLOW) {
        o.allow = net::parse_list(v).map_err(|source| AnnotationError::Net { source })?;
    }
    if let Some(n) = count(a, NET_CONNECTIONS, MAX_CONNECTIONS)? {
        o.max_connections = n;
    }
    Ok(o)
}

/// Read the function options from annotations; other keys are ignored.
pub fn http_options(a: &BTreeMap<String, String>) -> Result<HttpOptions, AnnotationError> {
    let mut o = HttpOptions::default();
    let bad = |key: &'static str| move |source| AnnotationError::Unit { key, source };
    if let Some(v) = a.get(HTTP_TIMEOUT) {
        let d = parse_duration(v).map_err(bad(HTTP_TIMEOUT))?;
        o.timeout = (!d.is_zero()).then_some(d);
    }
    if let Some(n) = count(a, HTTP_CONCURRENCY, MAX_CONCURRENCY)? {
        o.concurrency = n;
    }
    if let Some(n) = count(a, HTTP_REUSE, MAX_REUSE)? {
        o.reuse = n;
    }
    if let Some(v) = a.get(HTTP_MAX_BODY) {
        o.max_body = parse_size(v).map_err(bad(HTTP_MAX_BODY))?;
    }
    if let Some(v) = a.get(HTTP_ALLOW) {
        for h in v.split(',').map(str::trim).filter(|h| !h.is_empty()) {
            if h != "*" && h.parse::<http::uri::Authority>().is_err() {
                return Err(AnnotationError::Allow {
                    host: h.to_string(),
                });
            }
            o.allow_hosts.push(h.to_ascii_lowercase());
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn a(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_function_options() {
        assert_eq!(http_options(&a(&[])), Ok(HttpOptions::default()));
        let o = http_options(&a(&[
            (HTTP_TIMEOUT, "250ms"),
            (HTTP_CONCURRENCY, "4"),
            (HTTP_MAX_BODY, "1k"),
            (HTTP_ALLOW, "Example.com, 127.0.0.1:8080"),
            (HTTP_REUSE, "64"),
        ]))
        .unwrap();
        assert_eq!(o.reuse, 64);
        assert_eq!(o.timeout, Some(Duration::from_millis(250)));
        assert_eq!((o.concurrency, o.max_body), (4, 1024));
        assert_eq!(o.allow_hosts, ["example.com", "127.0.0.1:8080"]);
        assert_eq!(
            http_options(&a(&[(HTTP_TIMEOUT, "0")])).unwrap().timeout,
            None
        );
        assert_eq!(net_options(&a(&[])), Ok(NetOptions::default()));
        let n = net_options(&a(&[
            (NET_ALLOW, "tcp://Example.com:443, 10.0.0.0/8"),
            (NET_CONNECTIONS, "8"),
        ]))
        .unwrap();
        assert_eq!(
            n.allow.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
            ["tcp://Example.com:443", "10.0.0.0/8"]
        );
        assert_eq!(n.max_connections, 8);
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (k, v) in [
            (HTTP_TIMEOUT, "soon"),
            (HTTP_CONCURRENCY, "0"),
            (HTTP_CONCURRENCY, "100000"),
            (HTTP_MAX_BODY, "big"),
            (HTTP_ALLOW, "not a host"),
        ] {
            let e = http_options(&a(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
        for (k, v) in [
            (NET_ALLOW, "example.com,not a host"),
            (NET_ALLOW, "10.0.0.0/40"),
            (NET_CONNECTIONS, "0"),
            (NET_CONNECTIONS, "many"),
        ] {
            let e = net_options(&a(&[(k, v)])).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
        }
    }
}
