//! Sockets of Wasm command components: what `--allow-net` grants, each
//! guest's own port space, and its published ports.
//!
//! - **Outgoing.** Every connect, send and receive is checked against the
//!   container's grants by wasmtime-wasi's `socket_addr_check`; a denied
//!   one fails in the guest with `access-denied` (Rust's
//!   `PermissionDenied`) and is written to the container's log. Name
//!   lookup is shadowed in the linker: only names a grant names resolve,
//!   and the addresses a granted name resolved to are then granted with
//!   that grant's ports and protocols.
//! - **Listening.** A guest's `bind` is shadowed too, and never binds what
//!   the guest asked for: each container has its own port space.
//!   - A guest port published once (`-p HOST:GUEST`) is bound at the host
//!     address itself: ketchd reserves it at start (bound, not listening,
//!     so a port in use fails the start), and the guest's socket binds it
//!     beside the reservation. Clients reach the guest's own socket, with
//!     no relay, as under `wasmtime run -S inherit-network`.
//!   - A guest port published more than once is bound on an ephemeral
//!     loopback port; ketchd listens on each host address and relays each
//!     connection to it (the port table maps the guest port to it).
//!   - Any other port is bound on an ephemeral loopback port that takes no
//!     connection: the shadowed `accept` closes whatever arrives on it, so
//!     nothing is reachable that was not published.
//!
//!   So two guests both listening on port 8000 never collide.
//! - **UDP.** A guest's UDP bind of a published port (`-p H:P/udp`,
//!   published once) takes the host address ketchd held for it since the
//!   start; the guest then serves UDP: it hears from anyone, and may
//!   answer the peers it heard from. Any other port is an ephemeral one of
//!   its own, which hears only granted peers.
//! - **Bounds.** The guest's sockets and the connections to its published
//!   ports count together against its `--net-connections` (default 1,024)
//!   and ketchd's descriptor budget; past either, a new socket fails with
//!   `new-socket-limit` and a new connection is reset.

use crate::accept::{self, Admitted, Backoff, Gate, LogKeys};
use crate::api::stream::StdStream;
use crate::lograte::{warn_limited, LogRate};
use crate::model::net::{normal_name, reaches_host, NetGrant, NetOptions, NetProto};
use crate::runtime::{proxy, OutputSink, Peers, PortMapping, Proto, RuntimeError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use wasmtime::component::{Linker, Resource, ResourceTable};
use wasmtime::StoreContextMut;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{self as nl, ResolveAddressStream};
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::{tcp, tcp_create_socket, udp, udp_create_socket};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use wasmtime_wasi::{WasiCtxBuilder, WasiView};

mod p3;
pub(super) use p3::shadow_p3;

/// Addresses learned from a guest's lookups, kept at once; past it, a
/// further lookup still resolves, but its addresses are not granted.
const MAX_LEARNED: usize = 4096;
/// A proxied connection holds the client's socket and one to the guest.
const FDS_PER_CONNECTION: usize = 2;
/// Reaching the guest's socket on loopback never takes long; a guest that
/// does not accept leaves the connection in the kernel's backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a guest's accept waits for the publisher to register a peer
/// it does not know yet, while a connect of the publisher is under way.
const ACCEPT_WAIT: Duration = Duration::from_secs(1);

/// Store data that carries a container's network state.
pub(super) trait HasNet: WasiView {
    fn net(&self) -> &Arc<Net>;
}

/// One Wasm container's network state, shared by its store (the shadowed
/// functions), wasmtime-wasi's address check and its publisher.
pub(super) struct Net {
    name: Arc<str>,
    allow: Vec<NetGrant>,
    /// The members of its user networks: their names resolve, and their
    /// addresses are reached on any port (joining is the grant).
    peers: Peers,
    output: Arc<dyn OutputSink>,
    /// The container's connection cap, in ketchd's descriptor budget.
    gate: Gate,
    /// Guest ports published once → the host address the guest binds.
    direct: HashMap<u16, SocketAddr>,
    /// Guest UDP ports published (once) → the host address the guest binds.
    udp_direct: HashMap<u16, SocketAddr>,
    /// One denial line a second in the container's log.
    denials: LogRate,
    state: Mutex<State>,
    /// Woken when a publisher's connect is registered or given up.
    registered: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Guest ports reached through the relay: published more than once,
    /// or served at a network address.
    relayed: HashSet<u16>,
    /// Address → the grants (by index) whose names resolved to it.
    learned: HashMap<IpAddr, Vec<usize>>,
    /// Open name lookups: the stream's handle → the grants naming it, and
    /// whether the name is the host's own (`localhost`).
    lookups: HashMap<u32, (Vec<usize>, bool)>,
    /// Guest TCP port → the guest's socket and the host address it is
    /// bound to.
    ports: HashMap<u16, (u32, SocketAddr)>,
    /// The guest's bound TCP sockets (handle → how its connections are
    /// let in).
    listeners: HashMap<u32, Reach>,
    /// The address the shadowed `start-bind` is binding now.
    binding: Option<SocketAddr>,
    /// Addresses bound at a published host address.
    direct_bound: HashSet<SocketAddr>,
    /// Stopping: no new connection is let in.
    closing: bool,
    /// Published UDP host addresses held (bound) until the guest binds
    /// them: a UDP socket cannot share its address, so the guest's bind
    /// takes the reservation's place.
    udp_reserved: HashMap<u16, std::net::UdpSocket>,
    /// A guest socket is bound at a published UDP address: the guest
    /// serves UDP, and hears from anyone.
    udp_serving: bool,
    /// Peers the guest heard from as a UDP server, which it may answer
    /// without a grant (at most `MAX_LEARNED`; past it, forgotten).
    heard: HashSet<SocketAddr>,
    /// Live guest sockets (handle → kind), each holding a place under the
    /// cap.
    sockets: HashMap<u32, (SocketKind, Admitted)>,
    /// Local addresses of the publisher's connections to the guest: the
    /// only peers its sockets accept.
    proxied: HashSet<SocketAddr>,
    /// The publisher's connects under way, whose local addresses are not
    /// known yet.
    connecting: usize,
}

/// What a guest's name lookup gets.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// A member of its networks, answered without a query.
    Peer(IpAddr),
    /// Names the grants (by index); `true` if the name is the host's own.
    Granted(Vec<usize>, bool),
    Denied,
}

/// How a guest's bound socket is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// At its published host address, by anyone.
    Direct,
    /// Through ketchd's relay only.
    Relayed,
    /// Not at all: the port is not published.
    Private,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketKind {
    Tcp,
    Udp,
    /// WASI 0.3 sockets, which are other resources than 0.2's.
    Tcp3,
    Udp3,
}

impl Net {
    pub(super) fn new(
        name: &str,
        opts: &NetOptions,
        output: Arc<dyn OutputSink>,
        published: &Published,
        peers: Peers,
    ) -> Arc<Net> {
        Arc::new(Net {
            name: name.into(),
            allow: opts.allow.clone(),
            peers,
            output,
            gate: Gate::new(opts.max_connections),
            direct: published
                .direct
                .iter()
                .map(|(m, _)| (m.container_port, SocketAddr::new(m.host_ip, m.host_port)))
                .collect(),
            udp_direct: published
                .udp
                .iter()
                .map(|(m, _)| (m.container_port, SocketAddr::new(m.host_ip, m.host_port)))
                .collect(),
            denials: LogRate::new(Duration::from_secs(1)),
            state: Mutex::new(State {
                relayed: published
                    .relayed
                    .iter()
                    .map(|(m, _)| m.container_port)
                    .collect(),
                ..State::default()
            }),
            registered: tokio::sync::Notify::new(),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Let the guest's sockets be made, each use checked by [`Net::check`].
    pub(super) fn configure(self: &Arc<Self>, b: &mut WasiCtxBuilder) {
        let net = self.clone();
        b.allow_tcp(true)
            .allow_udp(true)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, what| {
                if let SocketAddrUse::TcpAccept = what {
                    // Which listener it came to decides (`let_in`); a
                    // relay's connection is registered by then: with
                    // none under way, at once.
                    if net.state().connecting == 0 {
                        return Box::pin(std::future::ready(true));
                    }
                    let net = net.clone();
                    return Box::pin(async move {
                        net.accepts(addr).await;
                        true
                    });
                }
                let ok = net.check(addr, what);
                Box::pin(std::future::ready(ok))
            });
    }

    /// Stop letting connections in (the container is stopping).
    pub(super) fn close(&self) {
        self.state().closing = true;
    }

    /// May the guest accept a connection from `peer` on a relayed port?
    /// Only the relay's connections are let in. The kernel completes a connection before
    /// the publisher learns its local address, so while a connect of the
    /// publisher is under way an unknown peer waits (a moment) for it.
    async fn accepts(&self, peer: SocketAddr) -> bool {
        let deadline = tokio::time::Instant::now() + ACCEPT_WAIT;
        loop {
            let registered = self.registered.notified();
            tokio::pin!(registered);
            registered.as_mut().enable();
            {
                let st = self.state();
                if st.proxied.contains(&peer) {
                    return true;
                }
                if st.connecting == 0 {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, registered).await.is_err() {
                return false;
            }
        }
    }

    /// May the guest use `addr` this way?
    fn check(&self, addr: SocketAddr, what: SocketAddrUse) -> bool {
        let ip = addr.ip().to_canonical();
        let ok = match what {
            // Explicit binds are made on loopback port 0 by the shadowed
            // `start-bind`; implicit ones (a connect, a send) ask for the
            // unspecified address.
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                (addr.port() == 0 && (ip.is_loopback() || ip.is_unspecified()))
                    || self.state().binding == Some(addr)
            }
            SocketAddrUse::TcpListen => {
                ip.is_loopback() || self.state().direct_bound.contains(&addr)
            }
            // Decided by the shadowed `accept`, which knows the listener.
            SocketAddrUse::TcpAccept => true,
            SocketAddrUse::TcpConnect => self.granted(NetProto::Tcp, addr),
            SocketAddrUse::UdpSend => {
                self.granted(NetProto::Udp, addr) || self.state().heard.contains(&addr)
            }
            SocketAddrUse::UdpReceive => self.granted(NetProto::Udp, addr) || self.hear(addr),
        };
        if !ok && !matches!(what, SocketAddrUse::TcpAccept | SocketAddrUse::UdpReceive) {
            let what = match what {
                SocketAddrUse::TcpBind => "tcp bind",
                SocketAddrUse::TcpListen => "tcp listen",
                SocketAddrUse::TcpConnect => "tcp connect",
                SocketAddrUse::UdpBind => "udp bind",
                _ => "udp send",
            };
            self.deny(&format!("{what} to {addr}"));
        }
        ok
    }

    fn granted(&self, proto: NetProto, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        if self.allow.iter().any(|g| g.covers(proto, addr)) || self.peers.contains(ip) {
            return true;
        }
        self.state().learned.get(&ip).is_some_and(|grants| {
            grants
                .iter()
                .any(|&i| self.allow[i].covers_learned(proto, addr))
        })
    }

    /// Write a denial to the container's log (once a second at most) and
    /// to ketchd's.
    fn deny(&self, what: &str) {
        self.report(&format!("denied {what}"), "no --allow-net grant covers it");
    }

    /// Write `what` and `why` to the container's log (one line a second
    /// at most, with the rest counted) and `what` to ketchd's.
    fn report(&self, what: &str, why: &str) {
        if let Some(n) = self.denials.admit("deny") {
            let more = if n > 0 {
                format!(" ({n} more refused)")
            } else {
                String::new()
            };
            let line = format!("ketch: {what}: {why}{more}\n");
            self.output.write(StdStream::Stderr, line.as_bytes());
        }
        warn_limited!("wasm net denied", "wasm container {}: {what}", self.name);
    }

    /// Where a guest's bind of `guest` really binds, and how that socket is
    /// reached.
    fn bind_target(&self, guest: SocketAddr) -> (SocketAddr, Reach) {
        let port = guest.port();
        let loopback = if guest.is_ipv4() {
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        } else {
            SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
        };
        if port == 0 {
            return (loopback, Reach::Private);
        }
        if let Some(h) = self.direct.get(&port).and_then(|h| at_host(guest, *h)) {
            return (h, Reach::Direct);
        }
        if self.state().relayed.contains(&port) {
            return (loopback, Reach::Relayed);
        }
        (loopback, Reach::Private)
    }

    /// A guest's UDP bind of `guest`: where it really binds, and whether
    /// that is a published address (whose reservation is given up for
    /// it). An unpublished port is an ephemeral one: the guest's own port
    /// space, reached by granted peers only.
    fn udp_claim(&self, guest: SocketAddr) -> (SocketAddr, bool) {
        let port = guest.port();
        if port == 0 {
            return (guest, false);
        }
        let mut st = self.state();
        if let Some(h) = self.udp_direct.get(&port).and_then(|h| at_host(guest, *h)) {
            st.udp_reserved.remove(&port);
            st.binding = Some(h);
            return (h, true);
        }
        let any = if guest.is_ipv4() {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        };
        (any, false)
    }

    /// After that bind.
    fn udp_bound(&self, serving: bool) {
        let mut st = self.state();
        st.binding = None;
        st.udp_serving |= serving;
    }

    /// A datagram from `peer` that no grant covers: a UDP server hears
    /// it, and may answer.
    fn hear(&self, peer: SocketAddr) -> bool {
        let mut st = self.state();
        if !st.udp_serving {
            return false;
        }
        if st.heard.len() >= MAX_LEARNED && !st.heard.contains(&peer) {
            st.heard.clear();
        }
        st.heard.insert(peer);
        true
    }

    /// A lookup of `name`: a network peer's address, the grants that name
    /// it, or `Denied` if neither.
    fn lookup(&self, name: &str) -> Lookup {
        if let Some(ip) = self.peers.lookup(name) {
            return Lookup::Peer(ip);
        }
        match self.granted_name(name) {
            Some((grants, local)) => Lookup::Granted(grants, local),
            None => Lookup::Denied,
        }
    }

    /// The grants that name `name`, or `None` if none does.
    fn granted_name(&self, name: &str) -> Option<(Vec<usize>, bool)> {
        let grants: Vec<usize> = (0..self.allow.len())
            .filter(|&i| self.allow[i].names(name))
            .collect();
        if grants.is_empty() {
            self.deny(&format!("name lookup of {name:?}"));
            return None;
        }
        let n = normal_name(name);
        let local = n == "localhost" || n.ends_with(".localhost");
        Some((grants, local))
    }

    /// Grant `ip` as the grants of a lookup name it. An address that
    /// reaches the host is learned only for `localhost`: a granted name
    /// whose DNS answers 127.0.0.1 does not open the host to the guest.
    fn learn(&self, ip: IpAddr, grants: &[usize], local: bool) {
        let ip = ip.to_canonical();
        if reaches_host(ip) && !local {
            self.deny(&format!(
                "an answer for a granted name that reaches the host ({ip})"
            ));
            return;
        }
        let mut st = self.state();
        if st.learned.len() >= MAX_LEARNED && !st.learned.contains_key(&ip) {
            return;
        }
        let known = st.learned.entry(ip).or_default();
        for g in grants {
            if !known.contains(g) {
                known.push(*g);
            }
        }
    }

    /// Take a place for a new guest socket, after forgetting the ones the
    /// guest has dropped since.
    /// Past the cap, the error says which limit was reached.
    fn admit_socket(&self, table: &ResourceTable) -> Result<Admitted, String> {
        let mut st = self.state();
        st.sockets.retain(|rep, (kind, _)| live(table, *rep, *kind));
        drop(st);
        self.gate.admit(1).map_err(|why| {
            let why = why.to_string();
            self.report("refused a new socket or connection", &why);
            format!("socket limit: {why}")
        })
    }

    fn add_socket(&self, rep: u32, kind: SocketKind, admitted: Admitted) {
        self.state().sockets.insert(rep, (kind, admitted));
    }

    /// The answer to a guest's socket creation: the socket wasmtime-wasi
    /// made, kept under the place `admitted` took for it, or its error.
    fn record<S: 'static, E: std::error::Error + Send + Sync + 'static>(
        &self,
        kind: SocketKind,
        admitted: Admitted,
        made: Result<Resource<S>, wasmtime_wasi::TrappableError<E>>,
    ) -> wasmtime::Result<(Result<Resource<S>, E>,)> {
        match made {
            Ok(sock) => {
                self.add_socket(sock.rep(), kind, admitted);
                Ok((Ok(sock),))
            }
            Err(e) => Ok((Err(e.downcast()?),)),
        }
    }

    /// Before the guest's socket `rep` binds `guest`: where it really
    /// binds, and how it is reached; `None` if another live socket of the
    /// guest has that port.
    fn claim(
        &self,
        table: &ResourceTable,
        rep: u32,
        kind: SocketKind,
        guest: SocketAddr,
    ) -> Option<(SocketAddr, Reach)> {
        if guest.port() != 0 {
            if let Some((other, _)) = self.state().ports.get(&guest.port()) {
                if *other != rep && live(table, *other, kind) {
                    return None;
                }
            }
        }
        let (host, reach) = self.bind_target(guest);
        self.state().binding = Some(host);
        Some((host, reach))
    }

    /// After that bind: where the socket is bound (`None`: it failed).
    fn bound(&self, rep: u32, guest_port: u16, bound: Option<SocketAddr>, reach: Reach) {
        let mut st = self.state();
        st.binding = None;
        let Some(bound) = bound else {
            return;
        };
        // Port 0: the guest's port is the one the host chose.
        let port = if guest_port == 0 {
            bound.port()
        } else {
            guest_port
        };
        st.ports.insert(port, (rep, bound));
        st.listeners.insert(rep, reach);
        if reach == Reach::Direct {
            st.direct_bound.insert(bound);
        }
    }

    /// Does a connection `rep` from `peer`, accepted on a listener reached
    /// `reach`, go to the guest? A direct one takes a place under the
    /// cap; a relay's holds one already.
    fn let_in(
        &self,
        table: &ResourceTable,
        rep: u32,
        kind: SocketKind,
        reach: Option<Reach>,
        peer: Option<SocketAddr>,
    ) -> bool {
        if self.state().closing {
            return false;
        }
        match (reach, peer) {
            // The relay's connection holds its place under the cap already.
            (Some(Reach::Direct), Some(peer)) if self.state().proxied.contains(&peer) => true,
            (Some(Reach::Direct), _) => match self.admit_socket(table) {
                Ok(admitted) => {
                    self.add_socket(rep, kind, admitted);
                    true
                }
                Err(_) => false,
            },
            (Some(Reach::Relayed), Some(peer)) => self.state().proxied.contains(&peer),
            _ => false,
        }
    }

    /// Reach guest port `port` through the relay from now on (it is served
    /// at a network address the guest joined): a socket the guest bound
    /// there privately is let in from the relay too.
    pub(super) fn relay(&self, port: u16) {
        let mut st = self.state();
        st.relayed.insert(port);
        if let Some((rep, _)) = st.ports.get(&port).copied() {
            if let Some(reach @ Reach::Private) = st.listeners.get_mut(&rep) {
                *reach = Reach::Relayed;
            }
        }
    }

    /// The host address the guest's socket for `port` listens on, if it
    /// still has one.
    fn guest_port(&self, port: u16) -> Option<SocketAddr> {
        self.state().ports.get(&port).map(|(_, a)| *a)
    }
}

/// The address a guest socket bound to `guest` takes for the published
/// host address `host`, in the socket's family; `None` if it cannot (an
/// IPv4 socket and an IPv6 address).
fn at_host(guest: SocketAddr, host: SocketAddr) -> Option<SocketAddr> {
    match (guest.is_ipv4(), host.ip()) {
        (true, IpAddr::V4(_)) | (false, IpAddr::V6(_)) => Some(host),
        (false, IpAddr::V4(v4)) if v4.is_unspecified() => {
            Some(SocketAddr::from((Ipv6Addr::UNSPECIFIED, host.port())))
        }
        (false, IpAddr::V4(v4)) => Some(SocketAddr::from((v4.to_ipv6_mapped(), host.port()))),
        (true, IpAddr::V6(_)) => None,
    }
}

/// Is `rep` still a socket of this kind in the guest's table?
fn live(table: &ResourceTable, rep: u32, kind: SocketKind) -> bool {
    match kind {
        SocketKind::Tcp => table.get(&Resource::<TcpSocket>::new_borrow(rep)).is_ok(),
        SocketKind::Udp => table.get(&Resource::<UdpSocket>::new_borrow(rep)).is_ok(),
        SocketKind::Tcp3 => p3::live3(table, rep, false),
        SocketKind::Udp3 => p3::live3(table, rep, true),
    }
}

type Boxed<'a, R> = Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>;

/// Put the grant-aware socket functions over wasmtime-wasi's in a linker
/// that has all of wasi p2.
pub(super) fn shadow_p2<T: HasNet + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    shadowing(linker, shadow_p2_functions)
}

/// Run `define` with shadowing allowed: its functions replace the ones of
/// the same names already in the linker.
fn shadowing<T: 'static>(
    linker: &mut Linker<T>,
    define: fn(&mut Linker<T>) -> wasmtime::Result<()>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = define(linker);
    linker.allow_shadowing(false);
    r
}

fn shadow_p2_functions<T: HasNet + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut i = linker.instance("wasi:sockets/ip-name-lookup@0.2.12")?;
    i.func_wrap(
        "resolve-addresses",
        |mut s: StoreContextMut<'_, T>, (network, name): (Resource<Network>, String)| {
            let net = s.data().net().clone();
            // An address is returned as it is, with no lookup: the
            // connect is what its grants decide.
            let (name, grants) = if name.parse::<IpAddr>().is_ok() {
                (name, (Vec::new(), false))
            } else {
                match net.lookup(&name) {
                    // Resolved as its address is: with no query.
                    Lookup::Peer(ip) => (ip.to_string(), (Vec::new(), false)),
                    Lookup::Granted(g, local) => (name, (g, local)),
                    Lookup::Denied => return Ok((Err(ErrorCode::AccessDenied),)),
                }
            };
            let mut v = s.data_mut().sockets();
            match nl::Host::resolve_addresses(&mut v, network, name) {
                Ok(stream) => {
                    let mut st = net.state();
                    if st.lookups.len() >= MAX_LEARNED {
                        st.lookups.retain(|rep, _| {
                            v.table
                                .get(&Resource::<ResolveAddressStream>::new_borrow(*rep))
                                .is_ok()
                        });
                    }
                    st.lookups.insert(stream.rep(), grants);
                    Ok((Ok(stream),))
                }
                Err(e) => Ok((Err(e.downcast()?),)),
            }
        },
    )?;
    i.func_wrap(
        "[method]resolve-address-stream.resolve-next-address",
        |mut s: StoreContextMut<'_, T>, (stream,): (Resource<ResolveAddressStream>,)| {
            let net = s.data().net().clone();
            let rep = stream.rep();
            let mut v = s.data_mut().sockets();
            match nl::HostResolveAddressStream::resolve_next_address(&mut v, stream) {
                Ok(Some(ip)) => {
                    let grants = net.state().lookups.get(&rep).cloned();
                    if let Some((grants, local)) = grants {
                        net.learn(ip_addr(ip), &grants, local);
                    }
                    Ok((Ok(Some(ip)),))
                }
                Ok(None) => {
                    net.state().lookups.remove(&rep);
                    Ok((Ok(None),))
                }
                Err(e) => Ok((Err(e.downcast()?),)),
            }
        },
    )?;

    let mut i = linker.instance("wasi:sockets/tcp-create-socket@0.2.12")?;
    i.func_wrap(
        "create-tcp-socket",
        |mut s: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            let net = s.data().net().clone();
            let mut v = s.data_mut().sockets();
            let admitted = match net.admit_socket(v.table) {
                Ok(a) => a,
                Err(_) => return Ok((Err(ErrorCode::NewSocketLimit),)),
            };
            let made = tcp_create_socket::Host::create_tcp_socket(&mut v, family);
            net.record(SocketKind::Tcp, admitted, made)
        },
    )?;
    let mut i = linker.instance("wasi:sockets/udp-create-socket@0.2.12")?;
    i.func_wrap_async(
        "create-udp-socket",
        |mut s: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let mut v = s.data_mut().sockets();
                let admitted = match net.admit_socket(v.table) {
                    Ok(a) => a,
                    Err(_) => return Ok((Err(ErrorCode::NewSocketLimit),)),
                };
                let made = udp_create_socket::Host::create_udp_socket(&mut v, family).await;
                net.record(SocketKind::Udp, admitted, made)
            })
        },
    )?;

    let mut i = linker.instance("wasi:sockets/udp@0.2.12")?;
    i.func_wrap_async(
        "[method]udp-socket.start-bind",
        |mut s: StoreContextMut<'_, T>,
         (sock, network, addr): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress)|
         -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let (host, serving) = net.udp_claim(SocketAddr::from(addr));
                let mut v = s.data_mut().sockets();
                let made = udp::HostUdpSocket::start_bind(&mut v, sock, network, host.into()).await;
                net.udp_bound(serving && made.is_ok());
                match made {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;

    let mut i = linker.instance("wasi:sockets/tcp@0.2.12")?;
    i.func_wrap_async(
        "[method]tcp-socket.start-bind",
        |mut s: StoreContextMut<'_, T>,
         (sock, network, addr): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)|
         -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let guest = SocketAddr::from(addr);
                let rep = sock.rep();
                let mut v = s.data_mut().sockets();
                let Some((host, reach)) = net.claim(v.table, rep, SocketKind::Tcp, guest) else {
                    return Ok((Err(ErrorCode::AddressInUse),));
                };
                let made = tcp::HostTcpSocket::start_bind(&mut v, sock, network, host.into()).await;
                let bound = match made {
                    Ok(()) => tcp::HostTcpSocket::local_address(&mut v, Resource::new_borrow(rep))
                        .ok()
                        .map(SocketAddr::from),
                    Err(_) => None,
                };
                net.bound(rep, guest.port(), bound, reach);
                if let Err(e) = made {
                    return Ok((Err(e.downcast()?),));
                }
                Ok((Ok(()),))
            })
        },
    )?;

    i.func_wrap_async(
        "[method]tcp-socket.accept",
        |mut s: StoreContextMut<'_, T>, (listener,): (Resource<TcpSocket>,)| -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let reach = net.state().listeners.get(&listener.rep()).copied();
                let mut v = s.data_mut().sockets();
                let (sock, input, output) = match tcp::HostTcpSocket::accept(&mut v, listener) {
                    Ok(accepted) => accepted,
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                let peer =
                    tcp::HostTcpSocket::remote_address(&mut v, Resource::new_borrow(sock.rep()))
                        .map(SocketAddr::from)
                        .ok();
                let let_in = net.let_in(v.table, sock.rep(), SocketKind::Tcp, reach, peer);
                if let_in {
                    return Ok((Ok((sock, input, output)),));
                }
                // Closed before the guest sees it: its streams first.
                v.table.delete(input)?;
                v.table.delete(output)?;
                v.table.delete(sock)?;
                Ok((Err(ErrorCode::WouldBlock),))
            })
        },
    )?;
    Ok(())
}

fn ip_addr(ip: wasmtime_wasi::p2::bindings::sockets::network::IpAddress) -> IpAddr {
    use wasmtime_wasi::p2::bindings::sockets::network::IpAddress;
    match ip {
        IpAddress::Ipv4((a, b, c, d)) => IpAddr::from([a, b, c, d]),
        IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => IpAddr::from([a, b, c, d, e, f, g, h]),
    }
}

/// A Wasm command's published ports, bound before it starts (so a port in
/// use fails the start with nothing to undo).
#[derive(Default)]
pub(super) struct Published {
    /// Guest ports published once: their host addresses, reserved (bound,
    /// not listening) for the guest's socket to bind beside.
    direct: Vec<(PortMapping, tokio::net::TcpSocket)>,
    /// Guest ports published more than once: ketchd's listeners, relayed.
    relayed: Vec<(PortMapping, tokio::net::TcpListener)>,
    /// Guest UDP ports: their host addresses, held until the guest binds.
    udp: Vec<(PortMapping, std::net::UdpSocket)>,
}

impl Published {
    /// The ports as bound (host port 0 resolved).
    pub(super) fn mappings(&self) -> Vec<PortMapping> {
        let direct = self.direct.iter().map(|(m, _)| *m);
        let udp = self.udp.iter().map(|(m, _)| *m);
        direct
            .chain(self.relayed.iter().map(|(m, _)| *m))
            .chain(udp)
            .collect()
    }
}

/// Reserve or listen on a Wasm command's published ports.
pub(super) fn bind(name: &str, ports: Vec<PortMapping>) -> Result<Published, RuntimeError> {
    let mut out = Published::default();
    let mut relayed = Vec::new();
    for m in &ports {
        let times = ports
            .iter()
            .filter(|o| o.container_port == m.container_port && o.proto == m.proto)
            .count();
        match (m.proto, times) {
            (Proto::Tcp, 1) => out.direct.push(reserve(name, *m)?),
            (Proto::Tcp, _) => relayed.push(*m),
            (Proto::Udp, 1) => out.udp.push(reserve_udp(name, *m)?),
            (Proto::Udp, _) => {
                return Err(RuntimeError::Publish {
                    name: name.to_string(),
                    port: m.key(),
                    reason: "a Wasm container's UDP port is published at one host address only"
                        .into(),
                })
            }
        }
    }
    out.relayed =
        crate::runtime::bind_ports(name, relayed, "a Wasm container publishes TCP ports only")?;
    Ok(out)
}

/// Bind `m`'s host address without listening, with `SO_REUSEADDR` as the
/// guest's socket will have: the port is held for the guest, and a port
/// another socket listens on fails here.
fn reserve(
    name: &str,
    m: PortMapping,
) -> Result<(PortMapping, tokio::net::TcpSocket), RuntimeError> {
    let addr = SocketAddr::new(m.host_ip, m.host_port);
    let fail = bind_failed(name, m);
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(fail)?;
    sock.set_reuseaddr(true).map_err(fail)?;
    sock.bind(addr).map_err(fail)?;
    let port = sock.local_addr().map_err(fail)?.port();
    Ok((
        PortMapping {
            host_port: port,
            ..m
        },
        sock,
    ))
}

/// The start error for a published address that cannot be held.
fn bind_failed(name: &str, m: PortMapping) -> impl Fn(std::io::Error) -> RuntimeError + Copy + '_ {
    move |e| crate::runtime::publish_failed(name, &m, &e)
}

/// Bind `m`'s host address for the guest's UDP socket to take over.
fn reserve_udp(
    name: &str,
    m: PortMapping,
) -> Result<(PortMapping, std::net::UdpSocket), RuntimeError> {
    let addr = SocketAddr::new(m.host_ip, m.host_port);
    let fail = bind_failed(name, m);
    let sock = std::net::UdpSocket::bind(addr).map_err(fail)?;
    let port = sock.local_addr().map_err(fail)?.port();
    Ok((
        PortMapping {
            host_port: port,
            ..m
        },
        sock,
    ))
}

/// Start relaying the ports published more than once; keep the
/// reservations of the others. Both end when the result is dropped.
pub(super) fn publish(net: &Arc<Net>, published: Published) -> Publishers {
    net.state().udp_reserved = published
        .udp
        .into_iter()
        .map(|(m, s)| (m.container_port, s))
        .collect();
    let relays = published
        .relayed
        .into_iter()
        .map(|(m, l)| tokio::spawn(serve(net.clone(), m, l)))
        .collect();
    Publishers {
        relays,
        _reserved: published.direct.into_iter().map(|(_, s)| s).collect(),
    }
}

/// A guest's published ports: the relays' accept loops and the
/// reservations, ended and released when dropped.
#[derive(Default)]
pub(super) struct Publishers {
    relays: Vec<JoinHandle<()>>,
    _reserved: Vec<tokio::net::TcpSocket>,
}

impl Drop for Publishers {
    fn drop(&mut self) {
        for t in &self.relays {
            t.abort();
        }
    }
}

/// Relay connections to `m`'s host address on to the guest's socket for
/// its port.
pub(super) async fn serve(net: Arc<Net>, m: PortMapping, listener: tokio::net::TcpListener) {
    let what = format!(
        "wasm container {} on {}",
        net.name,
        SocketAddr::new(m.host_ip, m.host_port)
    );
    let mut backoff = Backoff::new();
    let keys = LogKeys {
        accept: "wasm publish accept",
        refused: "wasm publish refused",
    };
    loop {
        let (client, admitted) = accept::admit_next(
            &listener,
            &net.gate,
            FDS_PER_CONNECTION,
            &mut backoff,
            &keys,
            &what,
        )
        .await;
        // The guest does not listen on that port (yet): reset.
        let Some(target) = net.guest_port(m.container_port) else {
            accept::refuse(client);
            continue;
        };
        let net = net.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            let Ok(Ok((inner, _proxied))) =
                tokio::time::timeout(CONNECT_TIMEOUT, connect(net, target)).await
            else {
                return;
            };
            proxy::relay(client, inner, proxy::PROXY_IDLE_TIMEOUT).await;
        });
    }
}

/// A local address of the publisher that the guest's sockets accept, for
/// as long as this is held.
struct Proxied(Arc<Net>, SocketAddr);

impl Drop for Proxied {
    fn drop(&mut self) {
        self.0.state().proxied.remove(&self.1);
    }
}

/// A connect of the publisher under way.
struct Connecting(Arc<Net>);

impl Drop for Connecting {
    fn drop(&mut self) {
        self.0.state().connecting -= 1;
        self.0.registered.notify_waiters();
    }
}

/// Connect to the guest's socket at `target`, and register the local
/// address so the guest's accept check lets it in. The kernel picks the
/// local port at connect, not at a bind before it: a port bound first
/// could not be one in TIME_WAIT, and the publisher, which passes on the
/// client's close first, leaves one per connection.
async fn connect(
    net: Arc<Net>,
    target: SocketAddr,
) -> std::io::Result<(tokio::net::TcpStream, Proxied)> {
    net.state().connecting += 1;
    let connecting = Connecting(net.clone());
    let s = tokio::net::TcpStream::connect(target).await?;
    let local = s.local_addr()?;
    net.state().proxied.insert(local);
    let proxied = Proxied(net, local);
    drop(connecting);
    let _ = s.set_nodelay(true);
    Ok((s, proxied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::net::parse_list;

    #[derive(Default)]
    struct Log(Mutex<String>);

    impl OutputSink for Log {
        fn write(&self, _: StdStream, data: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(data));
        }
    }

    fn net(grants: &str) -> (Arc<Net>, Arc<Log>) {
        let log = Arc::new(Log::default());
        let opts = NetOptions {
            allow: parse_list(grants).unwrap(),
            max_connections: 8,
        };
        (
            Net::new(
                "t",
                &opts,
                log.clone(),
                &Published::default(),
                Peers::default(),
            ),
            log,
        )
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn binds_listens_and_accepts_are_the_publishers_only() {
        let (n, _) = net("*");
        assert!(n.check(at("127.0.0.1:0"), SocketAddrUse::TcpBind));
        assert!(n.check(at("[::1]:0"), SocketAddrUse::TcpBind));
        assert!(n.check(at("0.0.0.0:0"), SocketAddrUse::UdpBind));
        assert!(!n.check(at("0.0.0.0:8000"), SocketAddrUse::TcpBind));
        assert!(!n.check(at("10.0.0.1:0"), SocketAddrUse::TcpBind));
        assert!(n.check(at("127.0.0.1:4000"), SocketAddrUse::TcpListen));
        assert!(!n.check(at("0.0.0.0:0"), SocketAddrUse::TcpListen));
    }

    #[tokio::test]
    async fn an_accept_waits_for_the_publishers_connect_and_no_other() {
        let (n, _) = net("*");
        let peer = at("127.0.0.1:5555");
        // No connect under way: an unknown peer is refused at once.
        let t0 = std::time::Instant::now();
        assert!(!n.accepts(peer).await);
        assert!(t0.elapsed() < Duration::from_millis(500));
        // One under way: the peer it registers is let in.
        n.state().connecting += 1;
        let n2 = n.clone();
        let waiting = tokio::spawn(async move { n2.accepts(peer).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        n.state().proxied.insert(peer);
        drop(Connecting(n.clone()));
        assert!(waiting.await.unwrap());
        // Another peer waits out a connect that never registers it.
        n.state().connecting += 1;
        let t0 = std::time::Instant::now();
        assert!(!n.accepts(at("127.0.0.1:6666")).await);
        assert!(t0.elapsed() >= ACCEPT_WAIT);
    }

    #[test]
    fn a_granted_name_grants_what_it_resolved_to_but_not_the_host() {
        let (n, log) = net("localhost:80, tcp://example.com:443");
        let conn = |a: &str| n.check(at(a), SocketAddrUse::TcpConnect);
        assert!(!conn("127.0.0.1:80"), "nothing learned yet");
        // `localhost` may resolve to loopback: it names the host.
        let Lookup::Granted(grants, local) = n.lookup("LocalHost.") else {
            panic!("localhost is granted");
        };
        assert!(local);
        n.learn(IpAddr::from([127, 0, 0, 1]), &grants, local);
        assert!(conn("127.0.0.1:80"));
        assert!(!conn("127.0.0.1:81"));
        // A public name whose answer is the host's loopback (rebinding)
        // learns nothing; a public answer is learned with its grant's
        // protocol and ports.
        let Lookup::Granted(grants, local) = n.lookup("example.com") else {
            panic!("example.com is granted");
        };
        assert!(!local);
        n.learn(IpAddr::from([0, 0, 0, 0]), &grants, local);
        n.learn(IpAddr::from([192, 0, 2, 7]), &grants, local);
        assert!(!conn("0.0.0.0:443"));
        assert!(conn("192.0.2.7:443"));
        assert!(!n.check(at("192.0.2.7:443"), SocketAddrUse::UdpSend));
        assert_eq!(n.lookup("example.org"), Lookup::Denied);
        // A network peer resolves by name, without a grant, and is
        // reached on any port.
        n.peers.set(vec![(
            IpAddr::from([172, 18, 0, 3]),
            vec!["db".into(), "postgres".into()],
        )]);
        assert_eq!(
            n.lookup("Postgres."),
            Lookup::Peer(IpAddr::from([172, 18, 0, 3]))
        );
        assert!(conn("172.18.0.3:5432"));
        assert!(!conn("172.18.0.4:5432"));
        let log = log.0.lock().unwrap().clone();
        assert!(
            log.starts_with("ketch: denied tcp connect to 127.0.0.1:80"),
            "{log}"
        );
        // One line a second at most, however many denials.
        assert_eq!(log.lines().count(), 1, "{log}");
    }

    #[test]
    fn sockets_past_the_cap_are_refused() {
        let (n, _) = net("");
        let table = ResourceTable::new();
        let held: Vec<Admitted> = (0..8).map(|_| n.admit_socket(&table).unwrap()).collect();
        let Err(why) = n.admit_socket(&table) else {
            panic!("a socket past the cap");
        };
        assert!(why.starts_with("socket limit: "), "{why}");
        drop(held);
        assert!(n.admit_socket(&table).is_ok());
    }
}
