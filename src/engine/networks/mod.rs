//! Networks: Docker's three predefined ones (`bridge`, `host`, `none`) and
//! user-defined bridge networks, each stored as
//! `<root>/networks/<id>.json` (replaced atomically); address management
//! (IPAM) for the containers on them; and the `/etc/hosts` entries by
//! which containers on one user network find each other by name.
//!
//! A container's endpoints live in its own record (`Record::networks`),
//! and its addresses only while it runs, so the records are the one
//! source of truth: addresses in use are read from them, never kept twice.
//!
//! `ipam` picks subnets and addresses; `host` owns what a network puts on
//! the host (its bridge), through the runtime's [`host::HostNet`];
//! `members` is the engine's side: endpoints, peers' `/etc/hosts`, and
//! the network verbs.

#[cfg(feature = "wasm")]
mod guests;
mod host;
mod ipam;
mod members;

#[cfg(feature = "wasm")]
pub(crate) use guests::{joins, Held};
pub use host::{adoption, host_bridge, release_bridge, HostBridge, HostNet};
pub use ipam::{allocate, parse_cidr, CidrError};
use ipam::{candidate_subnets, overlaps};
pub(crate) use members::link_target;

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
    /// Legacy links on this network (`NAME[:ALIAS]`): the linked
    /// container's address under the alias, as `HostConfig.Links` gives.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
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

pub struct Networks {
    dir: PathBuf,
    table: RwLock<BTreeMap<String, NetworkRecord>>,
    /// The host's network, where bridges are made (a ketchd that runs
    /// Linux containers); without it, networks are records only.
    host: Option<Arc<dyn HostNet>>,
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
    pub fn open(dir: &Path, host: Option<Arc<dyn HostNet>>) -> Result<Self, EngineError> {
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
            host,
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
        fsutil::write_atomic(
            &path,
            &serde_json::to_vec_pretty(&n)
                .map_err(|e| EngineError::io(&path)(std::io::Error::other(e)))?,
        )
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
                let sn = parse_cidr(s).map_err(|e| bad(e.to_string()))?;
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
                let host = self.host_routes();
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
        // The record first: a ketchd killed before the bridge is made
        // makes it at its next start, as after a reboot, while a bridge
        // made before its record would be left to no one.
        self.insert(n.clone())?;
        let made = self.make_bridge(&mut n).and_then(|()| {
            if n.gateway_added {
                // An adopted bridge that got the gateway address keeps a
                // note of it, to take it away with the network.
                self.insert(n.clone())?;
            }
            Ok(())
        });
        if let Err(e) = made {
            let path = self.dir.join(format!("{}.json", n.id));
            let _ = std::fs::remove_file(&path);
            self.table
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&n.id);
            return Err(e);
        }
        Ok(n)
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

#[cfg(test)]
mod tests;
