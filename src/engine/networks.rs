//! Networks: Docker's three predefined ones (`bridge`, `host`, `none`) and
//! user-defined bridge networks, each stored as
//! `<root>/networks/<id>.json` (replaced atomically); address management
//! (IPAM) for the containers on them; and the `/etc/hosts` entries by
//! which containers on one user network find each other by name.
//!
//! A container's endpoints live in its own record (`Record::networks`),
//! and its addresses only while it runs, so the records are the one
//! source of truth: addresses in use are read from them, never kept twice.

// Without the Linux backend, networks are records only.
#![cfg_attr(not(all(feature = "linux", target_os = "linux")), allow(dead_code))]
use super::{Engine, EngineError, Record};
use crate::fsutil;
use crate::model::ContainerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Docker's default network: a bridge, without name resolution.
pub const DEFAULT: &str = "bridge";
/// Docker's option naming a network's bridge device.
pub const BRIDGE_NAME_OPTION: &str = "com.docker.network.bridge.name";
/// `-o io.ketch.network.bridge.adopt=true`: use an existing host bridge
/// named by [`BRIDGE_NAME_OPTION`]. ketch never deletes an adopted bridge,
/// nor makes it again when it is gone.
pub const ADOPT_OPTION: &str = "io.ketch.network.bridge.adopt";

/// `kt-<id12>`: the bridge name ketch gives a network that asks for none.
pub fn default_bridge_name(network_id: &str) -> String {
    format!("kt-{}", network_id.get(..12).unwrap_or(network_id))
}

/// The alias (IFLA_IFALIAS) ketch gives each bridge it makes, so that a
/// bridge of the same name made by someone else (after a reboot, or by a
/// second ketchd) is never taken for its own.
pub fn bridge_mark(network_id: &str) -> String {
    format!("ketch network {network_id}")
}

/// A network as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    /// `a.b.c.d/len` (bridge networks only).
    #[serde(default)]
    pub subnet: String,
    #[serde(default)]
    pub gateway: String,
    /// The host's bridge device.
    #[serde(default)]
    pub bridge: String,
    /// Whether ketch made the bridge (and so may delete it). Records from
    /// before this field: only ketch's own name, `kt-<id12>`, was surely
    /// made (see [`NetworkRecord::owns_bridge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_made: Option<bool>,
    /// On an adopted bridge: ketch added the gateway address (it was not
    /// there), so `network rm` takes it off again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gateway_added: bool,
    /// No default route out of the network.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub created: DateTime<Utc>,
}

impl NetworkRecord {
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), DEFAULT | "host" | "none")
    }

    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }

    /// Did ketch make this network's host bridge? Only then may it delete
    /// it, or make it again after a reboot. A record from before
    /// `bridge_made` says so only for `kt-<its own id12>`: a name the user
    /// gave may have been an existing link, adopted without a word.
    pub fn owns_bridge(&self) -> bool {
        !self.bridge.is_empty()
            && self
                .bridge_made
                .unwrap_or_else(|| self.bridge == default_bridge_name(&self.id))
    }

    /// (network address, prefix length, gateway).
    pub fn ipv4(&self) -> Option<(Ipv4Addr, u8, Ipv4Addr)> {
        let (net, prefix) = parse_cidr(&self.subnet).ok()?;
        Some((net, prefix, self.gateway.parse().ok()?))
    }
}

/// A container's place on one network, kept in its record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub network_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// While running: its address and its interface inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    #[serde(default)]
    pub prefix: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
}

impl Endpoint {
    /// The container stopped: its address goes back to the network.
    pub fn release(&mut self) {
        self.ip = None;
        self.gateway = None;
        self.ifname.clear();
    }
}

/// Parse `a.b.c.d/len`, as the network address (host bits cleared).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), String> {
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| format!("invalid subnet {s:?}: expected a.b.c.d/len"))?;
    let ip: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("invalid subnet {s:?}: {a:?} is not an IPv4 address"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| (8..=30).contains(l))
        .ok_or_else(|| format!("invalid subnet {s:?}: the prefix length must be 8 to 30"))?;
    Ok((Ipv4Addr::from(u32::from(ip) & mask(len)), len))
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let m = mask(a.1.min(b.1));
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// Where new networks' subnets come from, as Docker's default pools:
/// 172.17-31.0.0/16, then 192.168.x.0/20.
fn candidate_subnets() -> impl Iterator<Item = (Ipv4Addr, u8)> {
    (17..=31)
        .map(|b| (Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|i| (Ipv4Addr::new(192, 168, i * 16, 0), 20)))
}

/// The lowest address of `subnet` that is neither the network, its
/// broadcast, the gateway, nor in `used`.
pub fn allocate(
    subnet: (Ipv4Addr, u8),
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let base = u32::from(subnet.0);
    let size = 1u32 << (32 - u32::from(subnet.1));
    (1..size - 1)
        .map(|i| Ipv4Addr::from(base + i))
        .find(|ip| *ip != gateway && !used.contains(ip))
}

pub struct Networks {
    dir: PathBuf,
    table: RwLock<BTreeMap<String, NetworkRecord>>,
    /// Make bridges on the host (a ketchd that runs Linux containers).
    bridges: bool,
}

#[derive(Debug, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

impl Networks {
    pub fn open(dir: &Path, bridges: bool) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(EngineError::io(dir))?;
        let mut table = BTreeMap::new();
        for e in std::fs::read_dir(dir)
            .map_err(EngineError::io(dir))?
            .flatten()
        {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p).map_err(|e| e.to_string()).and_then(|d| {
                serde_json::from_slice::<NetworkRecord>(&d).map_err(|e| e.to_string())
            }) {
                Ok(n) => {
                    table.insert(n.id.clone(), n);
                }
                Err(err) => tracing::warn!("ignoring unreadable network {}: {err}", p.display()),
            }
        }
        let nets = Networks {
            dir: dir.to_path_buf(),
            table: RwLock::new(table),
            bridges,
        };
        // After a reboot the bridges are gone: make again the ones ketch
        // made, so other ketchds on this host see their subnets as taken.
        {
            let _lock = nets.host_lock().unwrap_or_else(|e| {
                tracing::warn!("{e}");
                None
            });
            for n in nets.list().iter().filter(|n| !n.bridge.is_empty()) {
                nets.restore_bridge(n);
            }
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if nets.lookup(name).is_err() {
                nets.insert(NetworkRecord {
                    id: ContainerId::random().to_string(),
                    name: name.into(),
                    driver: driver.into(),
                    subnet: String::new(),
                    gateway: String::new(),
                    bridge: String::new(),
                    bridge_made: None,
                    gateway_added: false,
                    internal: false,
                    labels: BTreeMap::new(),
                    options: BTreeMap::new(),
                    created: Utc::now(),
                })?;
            }
        }
        if nets.lookup(DEFAULT).is_err() {
            nets.create(CreateNetwork {
                name: DEFAULT.into(),
                driver: "bridge".into(),
                ..Default::default()
            })?;
        }
        Ok(nets)
    }

    fn insert(&self, n: NetworkRecord) -> Result<(), EngineError> {
        let path = self.dir.join(format!("{}.json", n.id));
        fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&n).expect("serialises"))
            .map_err(EngineError::io(&path))?;
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n.id.clone(), n);
        Ok(())
    }

    /// By exact name, full id, or unique id prefix, as Docker finds them.
    pub fn lookup(&self, key: &str) -> Result<NetworkRecord, EngineError> {
        let t = self.table.read().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = t.values().find(|n| n.name == key) {
            return Ok(n.clone());
        }
        let by_prefix: Vec<&NetworkRecord> = if key.is_empty() {
            Vec::new()
        } else {
            t.values().filter(|n| n.id.starts_with(key)).collect()
        };
        match by_prefix.as_slice() {
            [n] => Ok((*n).clone()),
            [] => Err(EngineError::NotFound(format!("network {key} not found"))),
            _ => Err(EngineError::InvalidArgument(format!(
                "network {key} is ambiguous ({} matches found based on ID prefix)",
                by_prefix.len()
            ))),
        }
    }

    pub fn list(&self) -> Vec<NetworkRecord> {
        let mut v: Vec<NetworkRecord> = self
            .table
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    pub fn create(&self, req: CreateNetwork) -> Result<NetworkRecord, EngineError> {
        if !crate::model::ids::valid_container_name(&req.name) {
            return Err(EngineError::InvalidArgument(format!(
                "invalid network name {:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            other => {
                return Err(EngineError::InvalidArgument(format!(
                    "network {}: driver {other:?} is not supported: only bridge",
                    req.name
                )))
            }
        }
        // Across ketchds on this host: see the subnets' bridges they made.
        let _lock = self.host_lock()?;
        let existing = self.list();
        if existing.iter().any(|n| n.name == req.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let taken: Vec<(Ipv4Addr, u8)> = existing
            .iter()
            .filter_map(|n| parse_cidr(&n.subnet).ok())
            .collect();
        let bad = |m: String| EngineError::InvalidArgument(format!("network {}: {m}", req.name));
        let subnet = match &req.subnet {
            Some(s) => {
                let sn = parse_cidr(s).map_err(bad)?;
                if let Some(n) = existing
                    .iter()
                    .find(|n| parse_cidr(&n.subnet).is_ok_and(|o| overlaps(o, sn)))
                {
                    return Err(EngineError::Conflict(format!(
                        "network {}: subnet {s} overlaps with network {} ({})",
                        req.name, n.name, n.subnet
                    )));
                }
                sn
            }
            None => {
                let host = host_routes();
                candidate_subnets()
                    .find(|c| !taken.iter().chain(host.iter()).any(|t| overlaps(*t, *c)))
                    .ok_or_else(|| {
                        EngineError::Conflict(format!(
                            "network {}: all predefined address pools have been fully subnetted",
                            req.name
                        ))
                    })?
            }
        };
        let gateway = match &req.gateway {
            Some(g) => {
                let g: Ipv4Addr = g
                    .parse()
                    .map_err(|_| bad(format!("invalid gateway {g:?}")))?;
                if !overlaps((g, 32), subnet) {
                    return Err(bad(format!(
                        "gateway {g} is not in subnet {}/{}",
                        subnet.0, subnet.1
                    )));
                }
                g
            }
            None => Ipv4Addr::from(u32::from(subnet.0) + 1),
        };
        let id = ContainerId::random().to_string();
        let mut options = req.options;
        let adopt = match options.get(ADOPT_OPTION).map(String::as_str) {
            None | Some("false") => false,
            Some("true") if options.contains_key(BRIDGE_NAME_OPTION) => true,
            Some("true") => {
                return Err(bad(format!(
                    "{ADOPT_OPTION} needs {BRIDGE_NAME_OPTION} to name the bridge"
                )))
            }
            Some(v) => {
                return Err(bad(format!(
                    "{ADOPT_OPTION} must be true or false, not {v:?}"
                )))
            }
        };
        let bridge = match options.get(BRIDGE_NAME_OPTION) {
            Some(b) if b.is_empty() || b.len() > 15 || b.contains(['/', ' ', ':']) => {
                return Err(bad(format!("invalid bridge name {b:?}")))
            }
            Some(b) => b.clone(),
            None => default_bridge_name(&id),
        };
        options.insert(BRIDGE_NAME_OPTION.into(), bridge.clone());
        let adopted = self.existing_bridge(&req.name, &bridge, adopt)?;
        let mut n = NetworkRecord {
            id,
            name: req.name,
            driver: "bridge".into(),
            subnet: format!("{}/{}", subnet.0, subnet.1),
            gateway: gateway.to_string(),
            bridge,
            bridge_made: Some(!adopted),
            gateway_added: false,
            internal: req.internal,
            labels: req.labels,
            options,
            created: Utc::now(),
        };
        self.make_bridge(&mut n)?;
        if let Err(e) = self.insert(n.clone()) {
            self.remove_bridge(&n);
            return Err(e);
        }
        Ok(n)
    }

    fn host_lock(&self) -> Result<Option<std::fs::File>, EngineError> {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self.bridges {
            return crate::runtime::linux::net::host_lock()
                .map(Some)
                .map_err(EngineError::io("/run/lock/ketch-networks.lock"));
        }
        Ok(None)
    }

    /// Give a new network its bridge: make it, marked as ketch's (a link
    /// of that name appearing meanwhile fails this), or, on an adopted
    /// bridge, add the gateway address, noting whether it was there.
    fn make_bridge(&self, n: &mut NetworkRecord) -> Result<(), EngineError> {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self.bridges {
            if let Some((_, prefix, gateway)) = n.ipv4() {
                use crate::runtime::linux::net;
                let r = if n.owns_bridge() {
                    net::make_bridge(&n.bridge, gateway, prefix, &bridge_mark(&n.id))
                } else {
                    net::ensure_bridge(&n.bridge, gateway, prefix, None)
                        .map(|added| n.gateway_added = added)
                };
                r.map_err(|e| {
                    EngineError::Conflict(format!("network {}: bridge {}: {e}", n.name, n.bridge))
                })?;
            }
        }
        let _ = n;
        Ok(())
    }

    /// At ketchd start: make a network's bridge again if ketch made it and
    /// it is gone (a reboot). An adopted bridge that is gone stays gone:
    /// ketch cannot know how the host had set it up, and a plain bridge
    /// in its place would take the name the host's own tools will want;
    /// the network's containers fail to start, saying why, until it is
    /// back. A link that is not the network's own is never touched.
    fn restore_bridge(&self, n: &NetworkRecord) {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self.bridges {
            use crate::runtime::linux::net;
            let Some((_, prefix, gateway)) = n.ipv4() else {
                return;
            };
            let link = match net::host_link(&n.bridge) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("network {}: bridge {}: {e}", n.name, n.bridge);
                    return;
                }
            };
            let mark = bridge_mark(&n.id);
            let who = host_bridge(
                n,
                link.as_ref().map(|l| (l.kind.as_str(), l.alias.as_str())),
            );
            let r = match who {
                HostBridge::Missing if n.owns_bridge() => {
                    net::make_bridge(&n.bridge, gateway, prefix, &mark)
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
                    // A bridge made before ketch marked its bridges gets
                    // the mark now.
                    .filter(|l| l.alias.is_empty())
                    .map_or(Ok(()), |l| net::mark_link(l.index, &mark))
                    .and_then(|()| {
                        net::ensure_bridge(&n.bridge, gateway, prefix, Some(mark.as_str()))
                    })
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
        let _ = n;
    }

    /// Is there a host link named `bridge` already? One ketch did not make
    /// is refused, unless it is a bridge and the request asks to adopt it.
    /// `Ok(true)`: adopt it.
    fn existing_bridge(
        &self,
        network: &str,
        bridge: &str,
        adopt: bool,
    ) -> Result<bool, EngineError> {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if self.bridges {
            let link = crate::runtime::linux::net::host_link(bridge)
                .map_err(|e| EngineError::io(format!("network device {bridge}"))(e))?;
            return adoption(
                network,
                bridge,
                link.as_ref().map(|l| l.kind.as_str()),
                adopt,
            );
        }
        let _ = (network, bridge, adopt);
        Ok(false)
    }

    /// Take back what ketch put on the host for `n` (see
    /// [`release_bridge`]).
    fn remove_bridge(&self, n: &NetworkRecord) {
        if self.bridges {
            release_bridge(n);
        }
    }

    fn delete(&self, n: &NetworkRecord) -> Result<(), EngineError> {
        let path = self.dir.join(format!("{}.json", n.id));
        std::fs::remove_file(&path).map_err(EngineError::io(&path))?;
        self.table
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n.id);
        self.remove_bridge(n);
        Ok(())
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

/// Take back what ketch put on the host for the stored network `n`, as
/// `network rm` does: the bridge if ketch made it (and it is still the
/// one it made); from an adopted bridge only the gateway address ketch
/// added. Anything else is left alone. For ketchd, and for tests and tools
/// that clean up after one.
pub fn release_bridge(n: &NetworkRecord) {
    #[cfg(all(feature = "linux", target_os = "linux"))]
    if !n.bridge.is_empty() {
        use crate::runtime::linux::net;
        let link = match net::host_link(&n.bridge) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("network {}: bridge {}: {e}", n.name, n.bridge);
                return;
            }
        };
        let who = host_bridge(
            n,
            link.as_ref().map(|l| (l.kind.as_str(), l.alias.as_str())),
        );
        let r = match who {
            HostBridge::Missing => Ok(()),
            HostBridge::Made => link.map_or(Ok(()), |l| net::remove_link(l.index)),
            HostBridge::Adopted => match n.ipv4() {
                Some((_, prefix, gateway)) if n.gateway_added => {
                    net::remove_address(&n.bridge, gateway, prefix)
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
    let _ = n;
}

fn host_routes() -> Vec<(Ipv4Addr, u8)> {
    #[cfg(all(feature = "linux", target_os = "linux"))]
    return crate::runtime::linux::net::host_routes();
    #[cfg(not(all(feature = "linux", target_os = "linux")))]
    Vec::new()
}

/// A network as `GET /networks/{id}` shows it.
pub fn view(n: &NetworkRecord, members: &[Record]) -> serde_json::Value {
    let config: Vec<serde_json::Value> = if n.subnet.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::json!({"Subnet": n.subnet, "Gateway": n.gateway})]
    };
    let prefix = parse_cidr(&n.subnet).map(|s| s.1).unwrap_or(0);
    let mut containers = serde_json::Map::new();
    for r in members {
        let Some(ep) = r.networks.values().find(|e| e.network_id == n.id) else {
            continue;
        };
        let ip = ep.ip.map(|ip| format!("{ip}/{prefix}")).unwrap_or_default();
        let mac = ep.ip.map(mac_for).unwrap_or_default();
        containers.insert(
            r.id.to_string(),
            serde_json::json!({
                "Name": r.name,
                "EndpointID": endpoint_id(&r.id, &n.id),
                "MacAddress": mac,
                "IPv4Address": ip,
                "IPv6Address": "",
            }),
        );
    }
    serde_json::json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": n.is_bridge(),
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.options,
        "Labels": n.labels,
    })
}

/// Docker's MAC scheme: `02:42` then the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// A stable endpoint id: a hash of the container and network ids.
pub fn endpoint_id(container: &ContainerId, network: &str) -> String {
    crate::model::Digest::of(format!("{container}/{network}").as_bytes())
        .hex()
        .to_string()
}

/// The `NetworkMode` a create request gets when it names none: Docker's
/// bridge for Linux containers.
pub fn default_mode(mode: &str) -> &str {
    match mode {
        "" | "default" => DEFAULT,
        m => m,
    }
}

impl Engine {
    /// The endpoints a new Linux container starts with, from its
    /// `NetworkMode` and the request's `NetworkingConfig.EndpointsConfig`.
    pub(super) fn initial_endpoints(
        &self,
        mode: &str,
        networking: Option<&serde_json::Value>,
    ) -> Result<BTreeMap<String, Endpoint>, EngineError> {
        let mode = default_mode(mode);
        if let Some(other) = mode.strip_prefix("container:") {
            return Err(EngineError::InvalidArgument(format!(
                "network mode container:{other} is not supported"
            )));
        }
        let n = self.networks.lookup(mode)?;
        let aliases = networking
            .and_then(|v| v.get("EndpointsConfig"))
            .and_then(|e| e.get(mode).or_else(|| e.get(&n.name)))
            .and_then(|e| e.get("Aliases"))
            .and_then(|a| serde_json::from_value::<Vec<String>>(a.clone()).ok())
            .unwrap_or_default();
        if !aliases.is_empty() && (!n.is_bridge() || n.name == DEFAULT) {
            return Err(EngineError::InvalidArgument(
                "network-scoped aliases are only supported for user-defined networks".into(),
            ));
        }
        Ok(BTreeMap::from([(
            n.name.clone(),
            Endpoint {
                network_id: n.id,
                aliases,
                ..Default::default()
            },
        )]))
    }

    /// Give a starting container an address on each of its bridge
    /// networks, recorded before it starts. Returns the attachments, the
    /// primary (its `NetworkMode`) first.
    #[cfg(all(feature = "linux", target_os = "linux"))]
    pub(super) fn allocate_endpoints(
        &self,
        c: &super::Container,
    ) -> Result<Vec<crate::runtime::linux::net::Attachment>, EngineError> {
        let _ipam = self.ipam.lock().unwrap_or_else(|e| e.into_inner());
        let rec = c.record();
        let primary = default_mode(&rec.host_config.network_mode).to_string();
        let mut names: Vec<&String> = rec.networks.keys().collect();
        names.sort_by_key(|n| (**n != primary, (*n).clone()));
        let mut out = Vec::new();
        let mut assigned = BTreeMap::new();
        for name in names {
            let ep = &rec.networks[name];
            let n = self.networks.lookup(&ep.network_id).map_err(|_| {
                EngineError::NotFound(format!(
                    "cannot start container {}: network {name} not found",
                    rec.name
                ))
            })?;
            let Some((net, prefix, gateway)) = n.ipv4() else {
                continue;
            };
            let used = self.addresses_in_use(&n.id, &rec.id);
            let ip = allocate((net, prefix), gateway, &used).ok_or_else(|| {
                EngineError::Conflict(format!(
                    "cannot start container {}: no address left in network {}",
                    rec.name, n.name
                ))
            })?;
            let i = out.len();
            let ifname = format!("eth{i}");
            out.push(crate::runtime::linux::net::Attachment {
                bridge: n.bridge.clone(),
                bridge_mark: n.owns_bridge().then(|| bridge_mark(&n.id)),
                ifname: ifname.clone(),
                host_ifname: crate::runtime::linux::net::host_ifname(rec.id.as_str(), i),
                ip,
                prefix,
                gateway,
                default_route: i == 0 && !n.internal,
            });
            assigned.insert(name.clone(), (ip, ifname, prefix, gateway));
        }
        c.update(|r| {
            for (name, (ip, ifname, prefix, gateway)) in assigned {
                if let Some(ep) = r.networks.get_mut(&name) {
                    ep.ip = Some(ip);
                    ep.ifname = ifname;
                    ep.prefix = prefix;
                    ep.gateway = Some(gateway);
                }
            }
        })?;
        Ok(out)
    }

    /// Addresses other containers hold on network `id`.
    fn addresses_in_use(&self, id: &str, except: &ContainerId) -> BTreeSet<Ipv4Addr> {
        self.list()
            .into_iter()
            .filter(|c| c.id != *except)
            .filter_map(|c| {
                c.record()
                    .networks
                    .values()
                    .find(|e| e.network_id == id)
                    .and_then(|e| e.ip)
            })
            .collect()
    }

    /// The `/etc/hosts` lines by which a container reaches its peers: for
    /// each user network it is on, every other running member's address
    /// with its name and aliases (the default bridge resolves no names,
    /// as Docker's does not).
    pub(super) fn peer_hosts(&self, rec: &Record) -> Vec<(Ipv4Addr, Vec<String>)> {
        let mine: BTreeSet<&str> = rec
            .networks
            .iter()
            .filter(|(name, _)| name.as_str() != DEFAULT)
            .map(|(_, e)| e.network_id.as_str())
            .collect();
        if mine.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for c in self.list() {
            if c.id == rec.id {
                continue;
            }
            let other = c.record();
            for e in other.networks.values() {
                let (Some(ip), true) = (e.ip, mine.contains(e.network_id.as_str())) else {
                    continue;
                };
                let mut names = vec![other.name.clone()];
                names.extend(e.aliases.iter().cloned());
                names.push(other.id.as_str()[..12].to_string());
                out.push((ip, names));
            }
        }
        out.sort();
        out
    }

    /// Rewrite `/etc/hosts` of every running container that shares a user
    /// network with `rec` (after it started, stopped, joined or left).
    pub(super) fn refresh_peers(&self, rec: &Record) {
        #[cfg(all(feature = "linux", target_os = "linux"))]
        {
            let nets: BTreeSet<&str> = rec
                .networks
                .iter()
                .filter(|(name, _)| name.as_str() != DEFAULT)
                .map(|(_, e)| e.network_id.as_str())
                .collect();
            if nets.is_empty() {
                return;
            }
            for c in self.list() {
                let other = c.record();
                if other.id == rec.id || !other.state.status.is_alive() {
                    continue;
                }
                if !other
                    .networks
                    .values()
                    .any(|e| nets.contains(e.network_id.as_str()))
                {
                    continue;
                }
                self.write_hosts(&c, &other);
            }
        }
        #[cfg(not(all(feature = "linux", target_os = "linux")))]
        let _ = rec;
    }

    /// Containers that are on network `id`; `alive_only` for the ones
    /// holding an address there.
    fn network_members(&self, id: &str, alive_only: bool) -> Vec<Record> {
        self.list()
            .into_iter()
            .map(|c| c.record())
            .filter(|r| {
                r.networks
                    .values()
                    .any(|e| e.network_id == id && (!alive_only || e.ip.is_some()))
            })
            .collect()
    }

    pub fn network_inspect(&self, key: &str) -> Result<serde_json::Value, EngineError> {
        let n = self.networks.lookup(key)?;
        Ok(view(&n, &self.network_members(&n.id, true)))
    }

    pub fn network_list(&self) -> Vec<serde_json::Value> {
        self.networks
            .list()
            .iter()
            .map(|n| view(n, &self.network_members(&n.id, true)))
            .collect()
    }

    /// A `network` event, with Docker's attributes (and the container's id
    /// for `connect` and `disconnect`).
    fn network_event(&self, action: &str, n: &NetworkRecord, container: Option<&str>) {
        let mut attrs = vec![("name", n.name.as_str()), ("type", n.driver.as_str())];
        if let Some(id) = container {
            attrs.insert(0, ("container", id));
        }
        self.events.emit("network", action, &n.id, &attrs);
    }

    pub fn network_create(&self, req: CreateNetwork) -> Result<NetworkRecord, EngineError> {
        let n = self.networks.create(req)?;
        self.network_event("create", &n, None);
        Ok(n)
    }

    /// `DELETE /networks/{id}`: refused for the predefined networks and
    /// for one that running containers are on.
    pub fn network_remove(&self, key: &str) -> Result<(), EngineError> {
        let n = self.networks.lookup(key)?;
        if n.predefined() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let active = self.network_members(&n.id, true);
        if !active.is_empty() {
            let names: Vec<String> = active.iter().map(|r| r.name.clone()).collect();
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints ({})",
                n.name,
                n.id,
                names.join(", ")
            )));
        }
        self.networks.delete(&n)?;
        self.network_event("destroy", &n, None);
        Ok(())
    }

    /// `POST /networks/prune`: user networks no running container is on.
    pub fn network_prune(&self) -> Vec<String> {
        let mut gone = Vec::new();
        for n in self.networks.list() {
            if !n.predefined()
                && self.network_members(&n.id, true).is_empty()
                && self.network_remove(&n.id).is_ok()
            {
                gone.push(n.name);
            }
        }
        gone
    }

    /// `POST /networks/{id}/connect`. A running Linux container gets a new
    /// interface at once; a stopped one gets it at its next start.
    pub async fn network_connect(
        self: &Arc<Self>,
        key: &str,
        container: &str,
        aliases: Vec<String>,
    ) -> Result<(), EngineError> {
        let n = self.networks.lookup(key)?;
        let c = self.lookup(container)?;
        let _op = c.op.lock().await;
        let rec = c.record();
        if !super::is_linux_record(&rec) {
            return Err(EngineError::InvalidArgument(format!(
                "container {} is a Wasm container: it has no network interfaces to connect",
                rec.name
            )));
        }
        if !n.is_bridge() {
            return Err(EngineError::Forbidden(format!(
                "container {} cannot be connected to network {}: only bridge networks can be joined",
                rec.name, n.name
            )));
        }
        if rec.networks.values().any(|e| e.network_id == n.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                rec.name, n.name
            )));
        }
        let host_mode = rec.networks.keys().any(|k| k == "host" || k == "none");
        if host_mode {
            return Err(EngineError::InvalidArgument(format!(
                "container {} uses network {}: it cannot join others",
                rec.name,
                default_mode(&rec.host_config.network_mode)
            )));
        }
        let rec = c.update(|r| {
            r.networks.insert(
                n.name.clone(),
                Endpoint {
                    network_id: n.id.clone(),
                    aliases,
                    ..Default::default()
                },
            );
        })?;
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if rec.state.status.is_alive() {
            if let Err(e) = self.connect_running(&c, &n).await {
                let _ = c.update(|r| {
                    r.networks.remove(&n.name);
                });
                return Err(e);
            }
        }
        self.network_event("connect", &n, Some(rec.id.as_str()));
        Ok(())
    }

    #[cfg(all(feature = "linux", target_os = "linux"))]
    async fn connect_running(
        self: &Arc<Self>,
        c: &Arc<super::Container>,
        n: &NetworkRecord,
    ) -> Result<(), EngineError> {
        let rec = c.record();
        let netns = self.netns_of(c).ok_or_else(|| {
            EngineError::Conflict(format!("container {} is not running", rec.name))
        })?;
        let (net, prefix, gateway) = n
            .ipv4()
            .ok_or_else(|| EngineError::Conflict(format!("network {} has no subnet", n.name)))?;
        let (ip, ifname, index) = {
            let _ipam = self.ipam.lock().unwrap_or_else(|e| e.into_inner());
            let used = self.addresses_in_use(&n.id, &rec.id);
            let ip = allocate((net, prefix), gateway, &used).ok_or_else(|| {
                EngineError::Conflict(format!("no address left in network {}", n.name))
            })?;
            let taken: BTreeSet<&str> = rec.networks.values().map(|e| e.ifname.as_str()).collect();
            let index = (0..)
                .find(|i| !taken.contains(format!("eth{i}").as_str()))
                .expect("a free index");
            let ifname = format!("eth{index}");
            c.update(|r| {
                if let Some(ep) = r.networks.get_mut(&n.name) {
                    ep.ip = Some(ip);
                    ep.ifname = ifname.clone();
                    ep.prefix = prefix;
                    ep.gateway = Some(gateway);
                }
            })?;
            (ip, ifname, index)
        };
        let a = crate::runtime::linux::net::Attachment {
            bridge: n.bridge.clone(),
            bridge_mark: n.owns_bridge().then(|| bridge_mark(&n.id)),
            ifname,
            host_ifname: crate::runtime::linux::net::host_ifname(rec.id.as_str(), index),
            ip,
            prefix,
            gateway,
            default_route: false,
        };
        tokio::task::spawn_blocking(move || crate::runtime::linux::net::connect(&netns, &a))
            .await
            .expect("connect task")
            .map_err(|e| {
                EngineError::Conflict(format!(
                    "connecting container {} to network {}: {e}",
                    rec.name, n.name
                ))
            })?;
        let rec = c.record();
        self.write_hosts(c, &rec);
        self.refresh_peers(&rec);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(
        self: &Arc<Self>,
        key: &str,
        container: &str,
        force: bool,
    ) -> Result<(), EngineError> {
        let n = self.networks.lookup(key)?;
        let c = match self.lookup(container) {
            Ok(c) => c,
            Err(_) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let _op = c.op.lock().await;
        let rec = c.record();
        let Some((name, ep)) = rec
            .networks
            .iter()
            .find(|(_, e)| e.network_id == n.id)
            .map(|(k, e)| (k.clone(), e.clone()))
        else {
            return Err(EngineError::Forbidden(format!(
                "container {} is not connected to network {}",
                rec.name, n.name
            )));
        };
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if ep.ip.is_some() {
            if let Some(netns) = self.netns_of(&c) {
                let ifname = ep.ifname.clone();
                let r = tokio::task::spawn_blocking(move || {
                    crate::runtime::linux::net::disconnect(&netns, &ifname)
                })
                .await
                .expect("disconnect task");
                if let Err(e) = r {
                    return Err(EngineError::Conflict(format!(
                        "disconnecting container {} from network {}: {e}",
                        rec.name, n.name
                    )));
                }
            }
        }
        let _ = ep;
        let after = c.update(|r| {
            r.networks.remove(&name);
        })?;
        // Its old peers forget it.
        self.refresh_peers(&rec);
        #[cfg(all(feature = "linux", target_os = "linux"))]
        if after.state.status.is_alive() {
            self.write_hosts(&c, &after);
        }
        let _ = after;
        self.network_event("disconnect", &n, Some(rec.id.as_str()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bridges_are_adopted_and_only_when_asked() {
        assert!(!adoption("n", "kt-x", None, false).unwrap());
        assert!(adoption("n", "br0", Some("bridge"), true).unwrap());
        let e = adoption("n", "br0", Some("bridge"), false).unwrap_err();
        assert!(matches!(e, EngineError::Conflict(_)));
        let e = e.to_string();
        assert!(e.contains(ADOPT_OPTION) && e.contains("br0"), "{e}");
        for kind in ["veth", "dummy", ""] {
            for adopt in [false, true] {
                let e = adoption("n", "eth0", Some(kind), adopt).unwrap_err();
                assert!(matches!(e, EngineError::Conflict(_)));
                let e = e.to_string();
                assert!(e.contains("not a bridge") && e.contains("eth0"), "{e}");
            }
        }
        // Adopting what is not there is a mistake, not a new bridge.
        assert!(matches!(
            adoption("n", "br9", None, true),
            Err(EngineError::InvalidArgument(_))
        ));
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn record(bridge: &str, made: Option<bool>) -> NetworkRecord {
        let mut v = serde_json::json!({
            "id": ID, "name": "n", "driver": "bridge", "bridge": bridge,
            "subnet": "172.30.0.0/16", "gateway": "172.30.0.1",
            "created": "2026-01-01T00:00:00Z"
        });
        if let Some(m) = made {
            v["bridge_made"] = m.into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn old_records_own_only_ketchs_own_bridge_names() {
        // Before `bridge_made`: only `kt-<its own id12>`.
        assert!(record("kt-0123456789ab", None).owns_bridge());
        assert!(!record("kt-lab", None).owns_bridge());
        assert!(!record("kt-fedcba987654", None).owns_bridge());
        assert!(!record("br-user", None).owns_bridge());
        assert!(record("br-user", Some(true)).owns_bridge());
        assert!(!record("kt-0123456789ab", Some(false)).owns_bridge());
        assert!(!record("", Some(true)).owns_bridge());
        // What is written says so, and reads back the same.
        let n = record("br-user", Some(false));
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["bridge_made"], false);
        assert!(v.get("gateway_added").is_none());
        let back: NetworkRecord = serde_json::from_value(v).unwrap();
        assert_eq!(back.bridge_made, Some(false));
        assert!(!back.gateway_added);
    }

    #[test]
    fn only_the_bridge_ketch_made_may_be_deleted() {
        let mark = bridge_mark(ID);
        let made = record("br-made", Some(true));
        let adopted = record("br-host", Some(false));
        assert_eq!(host_bridge(&made, None), HostBridge::Missing);
        assert_eq!(
            host_bridge(&made, Some(("bridge", mark.as_str()))),
            HostBridge::Made
        );
        // Same name, but someone else's (made after a reboot, say).
        for alias in ["", "lab", "ketch network 99"] {
            assert!(matches!(
                host_bridge(&made, Some(("bridge", alias))),
                HostBridge::Foreign(_)
            ));
        }
        // Never a non-bridge, whatever the record or the alias says.
        for kind in ["", "veth", "dummy"] {
            for n in [&made, &adopted] {
                let HostBridge::Foreign(why) = host_bridge(n, Some((kind, mark.as_str()))) else {
                    panic!("{kind:?} judged usable");
                };
                assert!(why.contains("not a bridge"), "{why}");
            }
        }
        // Adopted: a bridge, used but never deleted.
        assert_eq!(
            host_bridge(&adopted, Some(("bridge", ""))),
            HostBridge::Adopted
        );
        // Made before the marks: only under ketch's own name.
        let old = record("kt-0123456789ab", None);
        assert_eq!(host_bridge(&old, Some(("bridge", ""))), HostBridge::Made);
        let old = record("br-user", None);
        assert_eq!(host_bridge(&old, Some(("bridge", ""))), HostBridge::Adopted);
    }

    #[test]
    fn the_adopt_option_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path(), false).unwrap();
        let opts = |o: &[(&str, &str)]| {
            o.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        for o in [
            opts(&[(ADOPT_OPTION, "true")]),
            opts(&[(ADOPT_OPTION, "yes"), (BRIDGE_NAME_OPTION, "br0")]),
        ] {
            let e = nets
                .create(CreateNetwork {
                    name: "net-a".into(),
                    options: o,
                    ..Default::default()
                })
                .unwrap_err();
            assert!(matches!(e, EngineError::InvalidArgument(_)));
            assert!(e.to_string().contains(ADOPT_OPTION), "{e}");
        }
        // Without a host to ask (no bridges), a new bridge is ketch's.
        let n = nets
            .create(CreateNetwork {
                name: "net-b".into(),
                options: opts(&[(ADOPT_OPTION, "false"), (BRIDGE_NAME_OPTION, "br0")]),
                ..Default::default()
            })
            .unwrap();
        assert!(n.owns_bridge() && n.bridge == "br0");
        let n = nets
            .create(CreateNetwork {
                name: "net-c".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(n.bridge, default_bridge_name(&n.id));
        assert!(n.owns_bridge());
    }

    #[test]
    fn cidrs_parse_and_overlap() {
        assert_eq!(
            parse_cidr("10.1.2.3/16").unwrap(),
            (Ipv4Addr::new(10, 1, 0, 0), 16)
        );
        assert!(parse_cidr("10.1.2.3").is_err());
        assert!(parse_cidr("10.1.2.3/31").is_err());
        assert!(parse_cidr("300.1.2.3/16").is_err());
        let a = parse_cidr("172.17.0.0/16").unwrap();
        assert!(overlaps(a, parse_cidr("172.17.5.0/24").unwrap()));
        assert!(!overlaps(a, parse_cidr("172.18.0.0/16").unwrap()));
    }

    #[test]
    fn allocation_skips_gateway_and_used() {
        let sn = parse_cidr("10.0.0.0/29").unwrap();
        let gw = Ipv4Addr::new(10, 0, 0, 1);
        let mut used = BTreeSet::new();
        assert_eq!(allocate(sn, gw, &used), Some(Ipv4Addr::new(10, 0, 0, 2)));
        used.insert(Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(allocate(sn, gw, &used), Some(Ipv4Addr::new(10, 0, 0, 3)));
        for i in 3..=6 {
            used.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        // .7 is the broadcast address.
        assert_eq!(allocate(sn, gw, &used), None);
    }

    #[test]
    fn store_makes_predefined_networks_and_refuses_overlaps() {
        let dir = tempfile::tempdir().unwrap();
        let nets = Networks::open(dir.path(), false).unwrap();
        for name in ["bridge", "host", "none"] {
            assert!(nets.lookup(name).unwrap().predefined());
        }
        let default = nets.lookup("bridge").unwrap();
        let user = nets
            .create(CreateNetwork {
                name: "backend".into(),
                ..Default::default()
            })
            .unwrap();
        assert_ne!(default.subnet, user.subnet);
        assert!(user.bridge.len() <= 15);
        assert!(matches!(
            nets.create(CreateNetwork {
                name: "backend".into(),
                ..Default::default()
            }),
            Err(EngineError::Conflict(_))
        ));
        assert!(matches!(
            nets.create(CreateNetwork {
                name: "clash".into(),
                subnet: Some(user.subnet.clone()),
                ..Default::default()
            }),
            Err(EngineError::Conflict(_))
        ));
        assert!(nets
            .create(CreateNetwork {
                name: "bad gw".into(),
                ..Default::default()
            })
            .is_err());
        // Reopened, the same networks come back.
        let again = Networks::open(dir.path(), false).unwrap();
        assert_eq!(again.lookup("backend").unwrap().subnet, user.subnet);
        assert_eq!(again.lookup(&user.id[..8]).unwrap().name, "backend");
        assert!(matches!(
            again.lookup("nope"),
            Err(EngineError::NotFound(_))
        ));
    }
}
