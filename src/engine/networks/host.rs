//! What a network puts on the host: its bridge. ketch deletes only a
//! bridge it made (recorded as made, and marked with its alias), adopts a
//! host's bridge only when asked, and never touches any other link.
//!
//! The host's side is reached through [`HostNet`], which the runtime whose
//! containers have networks provides; without one, networks are records
//! only.

use super::{bridge_mark, default_bridge_name, NetworkRecord, Networks, ADOPT_OPTION};
use crate::engine::EngineError;
use crate::model::network::{Attachment, HostLink};
use std::io;
use std::net::Ipv4Addr;
use std::path::Path;

/// The host network's operations, as the engine needs them. Each blocks
/// (netlink, flock): call them off the async runtime.
pub trait HostNet: Send + Sync {
    /// A host-wide lock held while a subnet is chosen and its bridge made,
    /// so ketchds sharing a host never pick the same subnet.
    fn lock(&self) -> io::Result<std::fs::File>;
    /// What the host has under a link name.
    fn link(&self, name: &str) -> io::Result<Option<HostLink>>;
    /// Make a new bridge, marked as ketch's; fails if the name is taken.
    fn make_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8, mark: &str) -> io::Result<()>;
    /// See that a bridge is up with the gateway address (marking it if a
    /// mark is given); `true` if the address had to be added.
    fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mark: Option<&str>,
    ) -> io::Result<bool>;
    fn mark_link(&self, index: u32, mark: &str) -> io::Result<()>;
    fn remove_link(&self, index: u32) -> io::Result<()>;
    fn remove_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> io::Result<()>;
    /// Put `ip/32` on the bridge `name`, for ketchd to serve a Wasm
    /// container there; already there is not an error.
    fn hold_address(&self, name: &str, ip: Ipv4Addr) -> io::Result<()>;
    /// IPv4 networks the host already routes.
    fn routes(&self) -> Vec<(Ipv4Addr, u8)>;
    /// Add an interface to the running container whose network namespace
    /// is `netns`, or take one away.
    fn connect(&self, netns: &Path, a: &Attachment) -> io::Result<()>;
    fn disconnect(&self, netns: &Path, ifname: &str) -> io::Result<()>;
}

impl Networks {
    pub(super) fn host_lock(&self) -> Result<Option<std::fs::File>, EngineError> {
        match &self.host {
            Some(h) => h
                .lock()
                .map(Some)
                .map_err(EngineError::io("the host's network lock")),
            None => Ok(None),
        }
    }

    pub(super) fn host_routes(&self) -> Vec<(Ipv4Addr, u8)> {
        self.host.as_ref().map(|h| h.routes()).unwrap_or_default()
    }

    /// Give a new network its bridge: make it, marked as ketch's (a link
    /// of that name appearing meanwhile fails this), or, on an adopted
    /// bridge, add the gateway address, noting whether it was there.
    pub(super) fn make_bridge(&self, n: &mut NetworkRecord) -> Result<(), EngineError> {
        let (Some(host), Some((_, prefix, gateway))) = (&self.host, n.ipv4()) else {
            return Ok(());
        };
        let r = if n.owns_bridge() {
            host.make_bridge(&n.bridge, gateway, prefix, &bridge_mark(&n.id))
        } else {
            host.ensure_bridge(&n.bridge, gateway, prefix, None)
                .map(|added| n.gateway_added = added)
        };
        r.map_err(|e| {
            EngineError::Conflict(format!("network {}: bridge {}: {e}", n.name, n.bridge))
        })
    }

    /// At ketchd start: make a network's bridge again if ketch made it and
    /// it is gone (a reboot). An adopted bridge that is gone stays gone:
    /// ketch cannot know how the host had set it up, and a plain bridge
    /// in its place would take the name the host's own tools will want;
    /// the network's containers fail to start, saying why, until it is
    /// back. A link that is not the network's own is never touched.
    pub(super) fn restore_bridge(&self, n: &NetworkRecord) {
        let (Some(host), Some((_, prefix, gateway))) = (&self.host, n.ipv4()) else {
            return;
        };
        let Some((link, who)) = judge_link(host.as_ref(), n) else {
            return;
        };
        let mark = bridge_mark(&n.id);
        let r = match who {
            HostBridge::Missing if n.owns_bridge() => {
                host.make_bridge(&n.bridge, gateway, prefix, &mark)
            }
            HostBridge::Missing => {
                tracing::warn!(
                    "network {}: the bridge {} it adopted is gone; ketch does not make the host's bridges, so its containers cannot start until it is back",
                    n.name,
                    n.bridge
                );
                Ok(())
            }
            HostBridge::Made => link
                .as_ref()
                // A bridge made before ketch marked its bridges gets the
                // mark now.
                .filter(|l| l.alias.is_empty())
                .map_or(Ok(()), |l| host.mark_link(l.index, &mark))
                .and_then(|()| host.ensure_bridge(&n.bridge, gateway, prefix, Some(mark.as_str())))
                .map(drop),
            HostBridge::Adopted => Ok(()),
            HostBridge::Foreign(what) => {
                tracing::warn!(
                    "network {}: the host's {} is {what}; ketch leaves it alone, and the network's containers cannot start",
                    n.name,
                    n.bridge
                );
                Ok(())
            }
        };
        if let Err(e) = r {
            tracing::warn!("network {}: bridge {}: {e}", n.name, n.bridge);
        }
    }

    /// Is there a host link named `bridge` already? One ketch did not make
    /// is refused, unless it is a bridge and the request asks to adopt it.
    /// `Ok(true)`: adopt it.
    pub(super) fn existing_bridge(
        &self,
        network: &str,
        bridge: &str,
        adopt: bool,
    ) -> Result<bool, EngineError> {
        let Some(host) = &self.host else {
            return Ok(false);
        };
        let link = host
            .link(bridge)
            .map_err(EngineError::io(format!("network device {bridge}")))?;
        adoption(
            network,
            bridge,
            link.as_ref().map(|l| l.kind.as_str()),
            adopt,
        )
    }

    /// Take back what ketch put on the host for `n` (see
    /// [`release_bridge`]).
    pub(super) fn remove_bridge(&self, n: &NetworkRecord) {
        if let Some(host) = &self.host {
            release_bridge(host.as_ref(), n);
        }
    }
}

/// What to do about a host link named `bridge` of kind `kind` (None: no
/// such link) for a new network: `Ok(true)` adopt it, `Ok(false)` make it.
/// A link ketch did not make is a 409 naming it: a non-bridge always, a
/// bridge unless `adopt`.
pub fn adoption(
    network: &str,
    bridge: &str,
    kind: Option<&str>,
    adopt: bool,
) -> Result<bool, EngineError> {
    match kind {
        None if adopt => Err(EngineError::InvalidArgument(format!(
            "network {network}: there is no bridge named {bridge} to adopt"
        ))),
        None => Ok(false),
        Some("bridge") if adopt => Ok(true),
        Some("bridge") => Err(EngineError::Conflict(format!(
            "network {network}: the host already has a bridge named {bridge}, which ketch did not make; \
             to use it, add -o {ADOPT_OPTION}=true (ketch will never delete it)"
        ))),
        Some(k) => Err(EngineError::Conflict(format!(
            "network {network}: the host already has a network device named {bridge} ({}), which is not a bridge",
            if k.is_empty() { "a device" } else { k }
        ))),
    }
}

/// Whose is the host link a network's record names as its bridge: what
/// ketch may do with it.
#[derive(Debug, PartialEq, Eq)]
pub enum HostBridge {
    /// There is no link of that name.
    Missing,
    /// The bridge ketch made for this network: it may delete it.
    Made,
    /// The host's bridge, adopted: used, never deleted.
    Adopted,
    /// Not the network's to touch: a non-bridge, or a bridge someone else
    /// made under the name (after a reboot, say).
    Foreign(String),
}

/// Judge the host link named `n.bridge`; `link` is its kind (empty for a
/// device without one) and alias, None if there is no such link. ketch's
/// own bridges carry [`bridge_mark`]; one made before the marks counts
/// only under ketch's own name, `kt-<id12>`.
pub fn host_bridge(n: &NetworkRecord, link: Option<(&str, &str)>) -> HostBridge {
    let Some((kind, alias)) = link else {
        return HostBridge::Missing;
    };
    if kind != "bridge" {
        let kind = if kind.is_empty() { "network" } else { kind };
        return HostBridge::Foreign(format!("a {kind} device, not a bridge"));
    }
    if !n.owns_bridge() {
        return HostBridge::Adopted;
    }
    if alias == bridge_mark(&n.id) || (alias.is_empty() && n.bridge == default_bridge_name(&n.id)) {
        HostBridge::Made
    } else if alias.is_empty() {
        HostBridge::Foreign("a bridge ketch did not make".into())
    } else {
        HostBridge::Foreign(format!(
            "a bridge ketch did not make (its alias is {alias:?})"
        ))
    }
}

/// The host link under `n`'s bridge name and whose it is (see
/// [`host_bridge`]); `None`, said in the log, if the host cannot be asked.
fn judge_link(host: &dyn HostNet, n: &NetworkRecord) -> Option<(Option<HostLink>, HostBridge)> {
    let link = match host.link(&n.bridge) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("network {}: bridge {}: {e}", n.name, n.bridge);
            return None;
        }
    };
    let who = host_bridge(
        n,
        link.as_ref().map(|l| (l.kind.as_str(), l.alias.as_str())),
    );
    Some((link, who))
}

/// Take back what ketch put on the host for the stored network `n`, as
/// `network rm` does: the bridge if ketch made it (and it is still the
/// one it made); from an adopted bridge only the gateway address ketch
/// added. Anything else is left alone. For ketchd, and for tests and tools
/// that clean up after one.
pub fn release_bridge(host: &dyn HostNet, n: &NetworkRecord) {
    if n.bridge.is_empty() {
        return;
    }
    let Some((link, who)) = judge_link(host, n) else {
        return;
    };
    let r = match who {
        HostBridge::Missing => Ok(()),
        HostBridge::Made => link.map_or(Ok(()), |l| host.remove_link(l.index)),
        HostBridge::Adopted => match n.ipv4() {
            Some((_, prefix, gateway)) if n.gateway_added => {
                host.remove_address(&n.bridge, gateway, prefix)
            }
            _ => Ok(()),
        },
        HostBridge::Foreign(what) => {
            tracing::warn!(
                "network {}: leaving the host's {} alone: it is {what}",
                n.name,
                n.bridge
            );
            Ok(())
        }
    };
    if let Err(e) = r {
        tracing::warn!("network {}: releasing bridge {}: {e}", n.name, n.bridge);
    }
}
