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
//! - **Listening.** A guest's `bind` is shadowed too: whatever it asks for,
//!   its socket is bound to an ephemeral port on the host's loopback, and
//!   the guest port it asked for is kept in the container's port table. So
//!   two guests both listening on port 8000 never collide, and a socket
//!   accepts only connections from the container's own publisher: any
//!   other peer (a local process, another guest) is reset by the
//!   `TcpAccept` check.
//! - **Published ports.** `-p HOST:GUEST` listens on the host as a Linux
//!   container's ports do; each connection is joined, through the port
//!   table, to the socket the guest bound to `GUEST`.
//! - **Bounds.** The guest's sockets and the connections to its published
//!   ports count together against its `--net-connections` (default 1,024)
//!   and ketchd's descriptor budget; past either, a new socket fails with
//!   `new-socket-limit` and a new connection is reset.

use crate::accept::{self, Admitted, Backoff, Gate};
use crate::api::stream::StdStream;
use crate::lograte::{warn_limited, LogRate};
use crate::model::net::{normal_name, reaches_host, NetGrant, NetOptions, NetProto};
use crate::runtime::{proxy, OutputSink, PortMapping, RuntimeError};
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
use wasmtime_wasi::p2::bindings::sockets::{tcp, tcp_create_socket, udp_create_socket};
use wasmtime_wasi::p2::{TcpSocket, UdpSocket};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsView};
use wasmtime_wasi::{WasiCtxBuilder, WasiView};

/// Addresses learned from a guest's lookups, kept at once; past it, a
/// further lookup still resolves, but its addresses are not granted.
const MAX_LEARNED: usize = 4096;
/// A proxied connection holds the client's socket and one to the guest.
const FDS_PER_CONNECTION: usize = 2;
/// Reaching the guest's socket on loopback never takes long; a guest that
/// does not accept leaves the connection in the kernel's backlog.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Store data that carries a container's network state.
pub(super) trait HasNet: WasiView {
    fn net(&self) -> &Arc<Net>;
}

/// One Wasm container's network state, shared by its store (the shadowed
/// functions), wasmtime-wasi's address check and its publisher.
pub(super) struct Net {
    name: Arc<str>,
    allow: Vec<NetGrant>,
    output: Arc<dyn OutputSink>,
    /// The container's connection cap, in ketchd's descriptor budget.
    gate: Gate,
    /// One denial line a second in the container's log.
    denials: LogRate,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Address → the grants (by index) whose names resolved to it.
    learned: HashMap<IpAddr, Vec<usize>>,
    /// Open name lookups: the stream's handle → the grants naming it, and
    /// whether the name is the host's own (`localhost`).
    lookups: HashMap<u32, (Vec<usize>, bool)>,
    /// Guest TCP port → the guest's socket and the host address it is
    /// bound to.
    ports: HashMap<u16, (u32, SocketAddr)>,
    /// Live guest sockets (handle → kind), each holding a place under the
    /// cap.
    sockets: HashMap<u32, (SocketKind, Admitted)>,
    /// Local addresses of the publisher's connections to the guest: the
    /// only peers its sockets accept.
    proxied: HashSet<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketKind {
    Tcp,
    Udp,
}

impl Net {
    pub(super) fn new(name: &str, opts: &NetOptions, output: Arc<dyn OutputSink>) -> Arc<Net> {
        Arc::new(Net {
            name: name.into(),
            allow: opts.allow.clone(),
            output,
            gate: Gate::new(opts.max_connections),
            denials: LogRate::new(Duration::from_secs(1)),
            state: Mutex::default(),
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
                let ok = net.check(addr, what);
                Box::pin(async move { ok })
            });
    }

    /// May the guest use `addr` this way?
    fn check(&self, addr: SocketAddr, what: SocketAddrUse) -> bool {
        let ip = addr.ip().to_canonical();
        let ok = match what {
            // Explicit binds are made on loopback port 0 by the shadowed
            // `start-bind`; implicit ones (a connect, a send) ask for the
            // unspecified address.
            SocketAddrUse::TcpBind | SocketAddrUse::UdpBind => {
                addr.port() == 0 && (ip.is_loopback() || ip.is_unspecified())
            }
            SocketAddrUse::TcpListen => ip.is_loopback(),
            SocketAddrUse::TcpAccept => self.state().proxied.contains(&addr),
            SocketAddrUse::TcpConnect => self.granted(NetProto::Tcp, addr),
            SocketAddrUse::UdpSend | SocketAddrUse::UdpReceive => self.granted(NetProto::Udp, addr),
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
        if self.allow.iter().any(|g| g.covers(proto, addr)) {
            return true;
        }
        let ip = addr.ip().to_canonical();
        self.state().learned.get(&ip).is_some_and(|grants| {
            grants
                .iter()
                .any(|&i| self.allow[i].covers_learned(proto, addr))
        })
    }

    /// Write a denial to the container's log (once a second at most) and
    /// to ketchd's.
    fn deny(&self, what: &str) {
        if let Some(n) = self.denials.admit("deny") {
            let more = if n > 0 {
                format!(" ({n} more denied)")
            } else {
                String::new()
            };
            let line = format!("ketch: denied {what}: no --allow-net grant covers it{more}\n");
            self.output.write(StdStream::Stderr, line.as_bytes());
        }
        warn_limited!(
            "wasm net denied",
            "wasm container {}: denied {what}",
            self.name
        );
    }

    /// A lookup of `name`: the grants that name it, or `None` if none does.
    fn lookup(&self, name: &str) -> Option<(Vec<usize>, bool)> {
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
    fn admit_socket(&self, table: &ResourceTable) -> Result<Admitted, ErrorCode> {
        let mut st = self.state();
        st.sockets.retain(|rep, (kind, _)| live(table, *rep, *kind));
        drop(st);
        self.gate.admit(1).map_err(|why| {
            self.deny(&format!("a new socket ({why})"));
            ErrorCode::NewSocketLimit
        })
    }

    fn add_socket(&self, rep: u32, kind: SocketKind, admitted: Admitted) {
        self.state().sockets.insert(rep, (kind, admitted));
    }

    /// The host address the guest's socket for `port` listens on, if it
    /// still has one.
    fn guest_port(&self, port: u16) -> Option<SocketAddr> {
        self.state().ports.get(&port).map(|(_, a)| *a)
    }
}

/// Is `rep` still a socket of this kind in the guest's table?
fn live(table: &ResourceTable, rep: u32, kind: SocketKind) -> bool {
    match kind {
        SocketKind::Tcp => table.get(&Resource::<TcpSocket>::new_borrow(rep)).is_ok(),
        SocketKind::Udp => table.get(&Resource::<UdpSocket>::new_borrow(rep)).is_ok(),
    }
}

type Boxed<'a, R> = Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>;

/// Put the grant-aware socket functions over wasmtime-wasi's in a linker
/// that has all of wasi p2.
pub(super) fn shadow_p2<T: HasNet + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let r = shadow_p2_functions(linker);
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
            let grants = if name.parse::<IpAddr>().is_ok() {
                (Vec::new(), false)
            } else {
                match net.lookup(&name) {
                    Some(g) => g,
                    None => return Ok((Err(ErrorCode::AccessDenied),)),
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
                Err(e) => return Ok((Err(e),)),
            };
            match tcp_create_socket::Host::create_tcp_socket(&mut v, family) {
                Ok(sock) => {
                    net.add_socket(sock.rep(), SocketKind::Tcp, admitted);
                    Ok((Ok(sock),))
                }
                Err(e) => Ok((Err(e.downcast()?),)),
            }
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
                    Err(e) => return Ok((Err(e),)),
                };
                match udp_create_socket::Host::create_udp_socket(&mut v, family).await {
                    Ok(sock) => {
                        net.add_socket(sock.rep(), SocketKind::Udp, admitted);
                        Ok((Ok(sock),))
                    }
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
                if guest.port() != 0 {
                    let st = net.state();
                    if let Some((other, _)) = st.ports.get(&guest.port()) {
                        if *other != rep && live(v.table, *other, SocketKind::Tcp) {
                            return Ok((Err(ErrorCode::AddressInUse),));
                        }
                    }
                }
                let host = if guest.is_ipv4() {
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
                } else {
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 0))
                };
                if let Err(e) =
                    tcp::HostTcpSocket::start_bind(&mut v, sock, network, host.into()).await
                {
                    return Ok((Err(e.downcast()?),));
                }
                let bound = tcp::HostTcpSocket::local_address(&mut v, Resource::new_borrow(rep))
                    .map(SocketAddr::from);
                if let Ok(bound) = bound {
                    // Port 0: the guest's port is the one the host chose.
                    let port = if guest.port() == 0 {
                        bound.port()
                    } else {
                        guest.port()
                    };
                    net.state().ports.insert(port, (rep, bound));
                }
                Ok((Ok(()),))
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

/// Listen on a Wasm command's published ports (before it starts, so a port
/// in use fails the start with nothing to undo).
pub(super) fn bind(
    name: &str,
    ports: Vec<PortMapping>,
) -> Result<Vec<(PortMapping, tokio::net::TcpListener)>, RuntimeError> {
    crate::runtime::bind_ports(name, ports, "a Wasm container publishes TCP ports only")
}

/// Join each connection on a published port to the guest's socket for its
/// guest port. The tasks end when aborted (the container stops).
pub(super) fn publish(
    net: &Arc<Net>,
    listeners: Vec<(PortMapping, tokio::net::TcpListener)>,
) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|(m, l)| tokio::spawn(serve(net.clone(), m, l)))
        .collect()
}

async fn serve(net: Arc<Net>, m: PortMapping, listener: tokio::net::TcpListener) {
    let addr = SocketAddr::new(m.host_ip, m.host_port);
    let mut backoff = Backoff::new();
    loop {
        let client = match listener.accept().await {
            Ok((c, _)) => {
                backoff.succeeded();
                c
            }
            Err(e) => {
                warn_limited!("wasm publish accept", "published port {addr}: accept: {e}");
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        let admitted = match net.gate.admit(FDS_PER_CONNECTION) {
            Ok(a) => a,
            Err(why) => {
                warn_limited!(
                    "wasm publish refused",
                    "wasm container {} on {addr}: refusing a connection: {why}",
                    net.name
                );
                accept::refuse(client);
                continue;
            }
        };
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

/// Connect to the guest's socket at `target`, from a local address the
/// guest's accept check lets in.
async fn connect(
    net: Arc<Net>,
    target: SocketAddr,
) -> std::io::Result<(tokio::net::TcpStream, Proxied)> {
    let sock = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.bind(SocketAddr::new(target.ip(), 0))?;
    let local = sock.local_addr()?;
    net.state().proxied.insert(local);
    let proxied = Proxied(net, local);
    let s = sock.connect(target).await?;
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
        (Net::new("t", &opts, log.clone()), log)
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
        let peer = at("127.0.0.1:5555");
        assert!(!n.check(peer, SocketAddrUse::TcpAccept));
        n.state().proxied.insert(peer);
        assert!(n.check(peer, SocketAddrUse::TcpAccept));
    }

    #[test]
    fn a_granted_name_grants_what_it_resolved_to_but_not_the_host() {
        let (n, log) = net("localhost:80, tcp://example.com:443");
        let conn = |a: &str| n.check(at(a), SocketAddrUse::TcpConnect);
        assert!(!conn("127.0.0.1:80"), "nothing learned yet");
        // `localhost` may resolve to loopback: it names the host.
        let (grants, local) = n.lookup("LocalHost.").unwrap();
        assert!(local);
        n.learn(IpAddr::from([127, 0, 0, 1]), &grants, local);
        assert!(conn("127.0.0.1:80"));
        assert!(!conn("127.0.0.1:81"));
        // A public name whose answer is the host's loopback (rebinding)
        // learns nothing; a public answer is learned with its grant's
        // protocol and ports.
        let (grants, local) = n.lookup("example.com").unwrap();
        assert!(!local);
        n.learn(IpAddr::from([0, 0, 0, 0]), &grants, local);
        n.learn(IpAddr::from([192, 0, 2, 7]), &grants, local);
        assert!(!conn("0.0.0.0:443"));
        assert!(conn("192.0.2.7:443"));
        assert!(!n.check(at("192.0.2.7:443"), SocketAddrUse::UdpSend));
        assert!(n.lookup("example.org").is_none());
        let log = log.0.lock().unwrap().clone();
        assert!(log.starts_with("ketch: denied tcp connect to 127.0.0.1:80"), "{log}");
        // One line a second at most, however many denials.
        assert_eq!(log.lines().count(), 1, "{log}");
    }

    #[test]
    fn sockets_past_the_cap_are_refused() {
        let (n, _) = net("");
        let table = ResourceTable::new();
        let held: Vec<Admitted> = (0..8).map(|_| n.admit_socket(&table).unwrap()).collect();
        assert!(matches!(n.admit_socket(&table), Err(ErrorCode::NewSocketLimit)));
        drop(held);
        assert!(n.admit_socket(&table).is_ok());
    }
}
