//! The engine's side of networks: a container's endpoints and addresses,
//! its peers' `/etc/hosts`, and the network verbs.

use super::*;
use crate::engine::container::Container;
use crate::engine::lock;
use crate::model::network::{host_ifname, Attachment};

impl Engine {
    /// The endpoints a new container starts with, from its `NetworkMode`
    /// and the request's `NetworkingConfig.EndpointsConfig` (API 1.44 and
    /// later may name more networks than the mode's): the primary
    /// network's name, and the endpoints by network name.
    pub(in crate::engine) fn initial_endpoints(
        &self,
        mode: &str,
        networking: Option<&serde_json::Value>,
    ) -> Result<(String, BTreeMap<String, Endpoint>), EngineError> {
        let given = mode;
        let mode = default_mode(mode);
        if let Some(other) = mode.strip_prefix("container:") {
            return Err(EngineError::InvalidArgument(format!(
                "network mode container:{other} is not supported"
            )));
        }
        let n = self.networks.lookup(mode)?;
        let configs = networking
            .and_then(|v| v.get("EndpointsConfig"))
            .and_then(serde_json::Value::as_object);
        // Keyed as the client names the network: the docker CLI uses the
        // mode as given, `default` too.
        let config = configs.and_then(|e| {
            [given, mode, n.name.as_str(), n.id.as_str()]
                .iter()
                .find_map(|k| e.get(*k))
        });
        let mut out = BTreeMap::new();
        out.insert(n.name.clone(), endpoint(&n, config)?);
        for (key, cfg) in configs.into_iter().flatten() {
            let other = self.networks.lookup(default_mode(key))?;
            if other.id == n.id {
                continue;
            }
            if !n.is_bridge() || !other.is_bridge() || n.name == DEFAULT || other.name == DEFAULT {
                return Err(EngineError::InvalidArgument(format!(
                    "container cannot be connected to networks {} and {} at once: only user-defined bridge networks can be joined together",
                    n.name, other.name
                )));
            }
            out.insert(other.name.clone(), endpoint(&other, Some(cfg))?);
        }
        Ok((n.name, out))
    }

    /// Give a starting container an address on each of its bridge
    /// networks, recorded before it starts. Returns the attachments, the
    /// primary (its `NetworkMode`) first.
    pub async fn allocate_endpoints(&self, c: &Container) -> Result<Vec<Attachment>, EngineError> {
        let _ipam = self.ipam.lock().await;
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
            out.push(Attachment {
                bridge: n.bridge.clone(),
                bridge_mark: n.owns_bridge().then(|| bridge_mark(&n.id)),
                ifname: ifname.clone(),
                host_ifname: host_ifname(rec.id.as_str(), i),
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
        })
        .await?;
        Ok(out)
    }

    /// Forget a container's addresses (it stopped, or failed to start).
    pub(in crate::engine) async fn release_endpoints(&self, c: &Container) -> Option<Record> {
        let had = c.record().networks.values().any(|e| e.ip.is_some());
        if !had {
            return None;
        }
        let rec = c
            .update(|r| {
                r.networks
                    .values_mut()
                    .for_each(crate::engine::networks::Endpoint::release);
            })
            .await
            .ok()?;
        self.refresh_peers(&rec);
        Some(rec)
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
    pub fn peer_hosts(&self, rec: &Record) -> Vec<(Ipv4Addr, Vec<String>)> {
        let mut out = self.linked_hosts(rec);
        let mine = user_networks(rec);
        if mine.is_empty() {
            out.sort();
            return out;
        }
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

    /// `--link NAME[:ALIAS]`, Docker's legacy links: the linked
    /// container's address on a network both are on (for a link an
    /// endpoint gives, that endpoint's network), under its alias, its name
    /// and its short id. A linked container that is not running (or
    /// shares no network) has no line.
    fn linked_hosts(&self, rec: &Record) -> Vec<(Ipv4Addr, Vec<String>)> {
        let mut out = Vec::new();
        let links = rec.host_config.links.iter().flatten().map(|l| (l, None));
        let on_endpoints = rec
            .networks
            .values()
            .flat_map(|e| e.links.iter().map(|l| (l, Some(e.network_id.as_str()))));
        for (link, network) in links.chain(on_endpoints) {
            let alias = link.split_once(':').map_or(link.as_str(), |(_, a)| a);
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            let Ok(c) = self.lookup(link_target(link)) else {
                continue;
            };
            let other = c.record();
            let shared = other.networks.values().find(|e| {
                e.ip.is_some()
                    && network.is_none_or(|id| id == e.network_id)
                    && rec
                        .networks
                        .values()
                        .any(|mine| mine.network_id == e.network_id)
            });
            if let Some(ip) = shared.and_then(|e| e.ip) {
                let mut names = vec![alias.to_string(), other.name.clone()];
                names.push(other.id.as_str()[..12].to_string());
                names.dedup();
                out.push((ip, names));
            }
        }
        out
    }

    /// Rewrite `/etc/hosts` of every running container that shares a user
    /// network with `rec` (after it started, stopped, joined or left).
    pub(in crate::engine) fn refresh_peers(&self, rec: &Record) {
        self.refresh_hosts(rec, None);
    }

    /// [`refresh_peers`](Self::refresh_peers), and `own`'s file too, from
    /// its latest record, when it is running. Called once a container is
    /// recorded running: a peer starting at the same time either saw it
    /// running and wrote its file, or had its address by the time it
    /// writes its own.
    pub(in crate::engine) fn refresh_hosts(&self, rec: &Record, own: Option<&Container>) {
        let _order = lock(&self.hosts);
        if let Some(c) = own {
            let now = c.record();
            if now.state.status().is_alive() {
                self.write_hosts(c, &now);
            }
        }
        let nets = user_networks(rec);
        if nets.is_empty() {
            return;
        }
        for c in self.list() {
            let other = c.record();
            if other.id == rec.id || !other.state.status().is_alive() {
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

    /// Rewrite a running container's `/etc/hosts`, if its runtime has one
    /// (under the `hosts` lock).
    fn write_hosts(&self, c: &Container, rec: &Record) {
        if let Some(b) = rec.kind().and_then(|k| self.backends.get(k)) {
            b.write_hosts(self, c, rec);
        }
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

    /// `POST /networks/create` (its bridge is made under the host's
    /// network lock).
    pub async fn network_create(
        self: &Arc<Self>,
        req: CreateNetwork,
    ) -> Result<NetworkRecord, EngineError> {
        let n = self
            .off_runtime("creating a network", move |e| e.networks.create(req))
            .await?;
        self.network_event("create", &n, None);
        Ok(n)
    }

    /// `DELETE /networks/{id}`: refused for the predefined networks and
    /// for one that running containers are on.
    pub async fn network_remove(self: &Arc<Self>, key: &str) -> Result<(), EngineError> {
        let key = key.to_string();
        self.off_runtime("removing a network", move |e| e.network_remove_now(&key))
            .await
    }

    fn network_remove_now(&self, key: &str) -> Result<(), EngineError> {
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
    pub async fn network_prune(
        self: &Arc<Self>,
        keep: crate::engine::PruneFilter,
    ) -> Result<Vec<String>, EngineError> {
        self.off_runtime("pruning networks", move |e| {
            let mut gone = Vec::new();
            for n in e.networks.list() {
                if !n.predefined()
                    && keep(&n.labels, Some(n.created))
                    && e.network_members(&n.id, true).is_empty()
                    && e.network_remove_now(&n.id).is_ok()
                {
                    gone.push(n.name);
                }
            }
            Ok(gone)
        })
        .await
    }

    /// `POST /networks/{id}/connect`. A running Linux container gets a new
    /// interface at once; a stopped one gets it at its next start.
    pub async fn network_connect(
        self: &Arc<Self>,
        key: &str,
        container: &str,
        settings: Option<&serde_json::Value>,
    ) -> Result<(), EngineError> {
        let n = self.networks.lookup(key)?;
        let c = self.lookup(container)?;
        let ep = endpoint(&n, settings)?;
        for link in &ep.links {
            self.lookup(link_target(link))?;
        }
        let _op = c.op.lock().await;
        let rec = c.record();
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
        // A Wasm container records no endpoint for these modes.
        let host_mode = rec.networks.keys().any(|k| k == "host" || k == "none")
            || matches!(default_mode(&rec.host_config.network_mode), "host" | "none");
        if host_mode {
            return Err(EngineError::InvalidArgument(format!(
                "container {} uses network {}: it cannot join others",
                rec.name,
                default_mode(&rec.host_config.network_mode)
            )));
        }
        let rec = c
            .update(|r| {
                r.networks.insert(n.name.clone(), ep);
            })
            .await?;
        if rec.state.status().is_alive() {
            let joined = match rec.kind().and_then(|k| self.backends.get(k)) {
                Some(b) => b.join_network(self, &c, &n).await,
                None => Err(EngineError::not_running("connect", &rec.id)),
            };
            if let Err(e) = joined {
                let _ = c
                    .update(|r| {
                        r.networks.remove(&n.name);
                    })
                    .await;
                return Err(e);
            }
        }
        self.network_event("connect", &n, Some(rec.id.as_str()));
        Ok(())
    }

    /// Give a running container an interface on network `n`, whose
    /// endpoint its record lists already.
    pub(in crate::engine) async fn connect_running(
        self: &Arc<Self>,
        c: &Arc<Container>,
        n: &NetworkRecord,
    ) -> Result<(), EngineError> {
        let rec = c.record();
        let not_running = || EngineError::not_running("connect", &rec.id);
        let host = self.networks.host.clone().ok_or_else(not_running)?;
        let netns = self.sandbox_key(c).ok_or_else(not_running)?;
        let a = self.allocate_endpoint(c, n).await?;
        tokio::task::spawn_blocking(move || host.connect(&netns, &a))
            .await
            .map_err(EngineError::task("connecting to a network"))?
            .map_err(|e| {
                EngineError::Conflict(format!(
                    "connecting container {} to network {}: {e}",
                    rec.name, n.name
                ))
            })?;
        self.refresh_hosts(&c.record(), Some(c));
        Ok(())
    }

    /// An address on network `n` for a running container that joins it,
    /// recorded in its endpoint there, and the interface to give it.
    pub(in crate::engine) async fn allocate_endpoint(
        &self,
        c: &Container,
        n: &NetworkRecord,
    ) -> Result<Attachment, EngineError> {
        let rec = c.record();
        let (net, prefix, gateway) = n
            .ipv4()
            .ok_or_else(|| EngineError::Conflict(format!("network {} has no subnet", n.name)))?;
        let _ipam = self.ipam.lock().await;
        let used = self.addresses_in_use(&n.id, &rec.id);
        let ip = allocate((net, prefix), gateway, &used).ok_or_else(|| {
            EngineError::Conflict(format!("no address left in network {}", n.name))
        })?;
        let taken: BTreeSet<&str> = rec.networks.values().map(|e| e.ifname.as_str()).collect();
        // More interfaces than names is impossible: each takes one.
        let index = (0..=taken.len())
            .find(|i| !taken.contains(format!("eth{i}").as_str()))
            .unwrap_or(taken.len());
        let ifname = format!("eth{index}");
        c.update(|r| {
            if let Some(ep) = r.networks.get_mut(&n.name) {
                ep.ip = Some(ip);
                ep.ifname = ifname.clone();
                ep.prefix = prefix;
                ep.gateway = Some(gateway);
            }
        })
        .await?;
        Ok(Attachment {
            bridge: n.bridge.clone(),
            bridge_mark: n.owns_bridge().then(|| bridge_mark(&n.id)),
            ifname,
            host_ifname: host_ifname(rec.id.as_str(), index),
            ip,
            prefix,
            gateway,
            default_route: false,
        })
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
        if let (true, Some(b)) = (
            rec.state.status().is_alive() && ep.ip.is_some(),
            rec.kind().and_then(|k| self.backends.get(k)),
        ) {
            b.leave_network(self, &c, &n, &ep).await?;
        }
        c.update(|r| {
            r.networks.remove(&name);
        })
        .await?;
        // Its old peers forget it.
        self.refresh_hosts(&rec, Some(&c));
        self.network_event("disconnect", &n, Some(rec.id.as_str()));
        Ok(())
    }
}

impl Engine {
    /// Take a running container's interface on network `n` (endpoint
    /// `ep`) away.
    pub(in crate::engine) async fn disconnect_running(
        &self,
        c: &Container,
        n: &NetworkRecord,
        ep: &Endpoint,
    ) -> Result<(), EngineError> {
        let (Some(host), Some(netns)) = (self.networks.host.clone(), self.sandbox_key(c)) else {
            return Ok(());
        };
        let ifname = ep.ifname.clone();
        tokio::task::spawn_blocking(move || host.disconnect(&netns, &ifname))
            .await
            .map_err(EngineError::task("disconnecting from a network"))?
            .map_err(|e| {
                EngineError::Conflict(format!(
                    "disconnecting container {} from network {}: {e}",
                    c.record().name,
                    n.name
                ))
            })
    }
}

/// The container a link (`NAME[:ALIAS]`) names.
pub(crate) fn link_target(link: &str) -> &str {
    let name = link.split_once(':').map_or(link, |(n, _)| n);
    name.trim_start_matches('/')
}

/// A container's endpoint on `n` from its `EndpointSettings`: its aliases
/// and legacy links, both for user-defined networks only (the rest of the
/// settings are refused when set, by `daemon::fields`).
fn endpoint(n: &NetworkRecord, cfg: Option<&serde_json::Value>) -> Result<Endpoint, EngineError> {
    let strings = |key: &str| -> Result<Vec<String>, EngineError> {
        match cfg.and_then(|c| c.get(key)) {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                EngineError::InvalidArgument(format!(
                    "EndpointsConfig.{}.{key}: a list of strings: {e}",
                    n.name
                ))
            }),
        }
    };
    let (aliases, links) = (strings("Aliases")?, strings("Links")?);
    let user_defined = n.is_bridge() && n.name != DEFAULT;
    if !aliases.is_empty() && !user_defined {
        return Err(EngineError::InvalidArgument(
            "network-scoped aliases are only supported for user-defined networks".into(),
        ));
    }
    if !links.is_empty() && !user_defined {
        return Err(EngineError::InvalidArgument(format!(
            "links in EndpointsConfig.{} are only supported for user-defined networks: use HostConfig.Links (--link) on the default bridge",
            n.name
        )));
    }
    Ok(Endpoint {
        network_id: n.id.clone(),
        aliases,
        links,
        ..Default::default()
    })
}

/// The ids of the user networks a container is on: those whose members
/// resolve one another's names (the default bridge resolves none).
fn user_networks(rec: &Record) -> BTreeSet<&str> {
    rec.networks
        .iter()
        .filter(|(name, _)| name.as_str() != DEFAULT)
        .map(|(_, e)| e.network_id.as_str())
        .collect()
}
