//! Wasm containers on user networks. A Wasm guest has no interface of its
//! own: ketchd holds its address (`ip/32`) on each network's bridge and
//! serves the guest's published and exposed ports there, so the other
//! members reach it by name (their `/etc/hosts`) as they reach any peer.

use super::*;
use crate::engine::container::Container;
use crate::runtime::Control;
use std::net::IpAddr;

/// Addresses held on bridges for one running Wasm container.
pub(crate) type Held = Vec<(String, Ipv4Addr)>;

/// Does a Wasm container with this `NetworkMode` join a network at
/// create? Only one it names: by default (Docker's `bridge`) it has none,
/// and `host` and `none` are what it has anyway.
pub(crate) fn joins(mode: &str) -> bool {
    !matches!(mode, "" | "default" | DEFAULT | "host" | "none") && !mode.starts_with("container:")
}

impl Engine {
    /// Give a starting Wasm container its addresses on its networks and
    /// hold them on their bridges. On failure nothing stays held or
    /// recorded.
    pub(in crate::engine) async fn hold_guest_addresses(
        &self,
        c: &Container,
    ) -> Result<(Vec<IpAddr>, Held), EngineError> {
        let rec = c.record();
        if rec.networks.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let Some(host) = self.networks.host.clone() else {
            return Err(EngineError::Conflict(format!(
                "cannot start container {}: its networks have no bridges here (ketchd runs without the Linux runtime, or not as root)",
                rec.name
            )));
        };
        let attachments = self.allocate_endpoints(c).await?;
        let wanted: Held = attachments
            .iter()
            .map(|a| (a.bridge.clone(), a.ip))
            .collect();
        let name = rec.name.clone();
        let held = tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for (bridge, ip) in wanted {
                if let Err(e) = host.hold_address(&bridge, ip) {
                    release_held(&*host, &held);
                    return Err(EngineError::Conflict(format!(
                        "cannot start container {name}: address {ip} on bridge {bridge}: {e}"
                    )));
                }
                held.push((bridge, ip));
            }
            Ok(held)
        })
        .await
        .map_err(EngineError::task("holding a Wasm container's addresses"));
        match held {
            Ok(Ok(held)) => Ok((held.iter().map(|(_, ip)| IpAddr::V4(*ip)).collect(), held)),
            Ok(Err(e)) | Err(e) => {
                self.release_endpoints(c).await;
                Err(e)
            }
        }
    }

    /// A running Wasm container joins network `n` (its record lists the
    /// endpoint already): an address there, held on the network's bridge
    /// and served by the guest through `ctl`. On failure nothing stays
    /// held.
    pub(in crate::engine) async fn join_guest(
        &self,
        c: &Container,
        n: &NetworkRecord,
        ctl: &dyn Control,
    ) -> Result<(String, Ipv4Addr), EngineError> {
        let rec = c.record();
        let failed = |e: String| {
            EngineError::Conflict(format!(
                "connecting container {} to network {}: {e}",
                rec.name, n.name
            ))
        };
        let Some(host) = self.networks.host.clone() else {
            return Err(failed(
                "networks have no bridges here (ketchd runs without the Linux runtime, or not as root)".into(),
            ));
        };
        let a = self.allocate_endpoint(c, n).await?;
        let (bridge, ip) = (a.bridge, a.ip);
        let hold = {
            let (host, bridge) = (host.clone(), bridge.clone());
            tokio::task::spawn_blocking(move || host.hold_address(&bridge, ip))
        };
        hold.await
            .map_err(EngineError::task("holding a Wasm container's address"))?
            .map_err(|e| failed(format!("address {ip} on bridge {bridge}: {e}")))?;
        if let Err(e) = ctl.join_network(ip.into()) {
            self.release_guest_addresses(vec![(bridge, ip)]);
            return Err(failed(e));
        }
        Ok((bridge, ip))
    }

    /// Give up the addresses a Wasm container held (it exited, or its
    /// start failed after they were held). A netlink request each, made
    /// in place: the exit is reported (and a stop answered) only once the
    /// addresses are gone.
    pub(in crate::engine) fn release_guest_addresses(&self, held: Held) {
        if let (Some(host), false) = (self.networks.host.clone(), held.is_empty()) {
            release_held(&*host, &held);
        }
    }

    /// The addresses a Wasm container's record says it held when ketchd
    /// last stopped: it did not survive, so nobody serves them now.
    pub(in crate::engine) fn held_by_record(&self, rec: &Record) -> Held {
        rec.networks
            .values()
            .filter_map(|e| {
                let ip = e.ip?;
                let n = self.networks.lookup(&e.network_id).ok()?;
                Some((n.bridge, ip))
            })
            .collect()
    }
}

fn release_held(host: &dyn HostNet, held: &[(String, Ipv4Addr)]) {
    for (bridge, ip) in held {
        if let Err(e) = host.remove_address(bridge, *ip, 32) {
            tracing::warn!("cannot take {ip}/32 off bridge {bridge}: {e}");
        }
    }
}
