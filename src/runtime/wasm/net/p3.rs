//! The WASI 0.3 socket functions ketch shadows, with the same grants, port
//! space and cap as the 0.2 ones.
//!
//! 0.3 hands a listener's connections to the guest as a `stream<tcp-socket>`
//! from `listen`, so the shadowed `listen` pipes wasmtime-wasi's stream
//! through [`Filter`], which decides each connection as the 0.2 `accept`
//! does, into the stream the guest reads ([`ToGuest`]). At most one
//! accepted connection waits between the two: the guest's pace is the
//! listener's.

use super::{Boxed, HasNet, Lookup, Net, Reach, SocketKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use wasmtime::component::{
    Access, Accessor, Destination, Linker, Resource, Source, StreamConsumer, StreamProducer,
    StreamReader, StreamResult,
};
use wasmtime::{AsContextMut, StoreContextMut};
use wasmtime_wasi::p3::bindings::sockets::ip_name_lookup as nl;
use wasmtime_wasi::p3::bindings::sockets::types::{
    ErrorCode, HostTcpSocket, HostTcpSocketWithStore, HostUdpSocket, IpAddressFamily,
    IpSocketAddress,
};
use wasmtime_wasi::sockets::{
    TcpSocket, UdpSocket, WasiSockets, WasiSocketsCtxView, WasiSocketsView,
};

/// Put the grant-aware 0.3 socket functions over wasmtime-wasi's in a
/// linker that has `wasi:sockets@0.3.0`.
pub(in crate::runtime::wasm) fn shadow_p3<T: HasNet + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    super::shadowing(linker, shadow)
}

fn shadow<T: HasNet + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    let mut i = linker.instance("wasi:sockets/ip-name-lookup@0.3.0")?;
    i.func_wrap_concurrent(
        "resolve-addresses",
        |a: &Accessor<T>,
         (name,): (String,)|
         -> Pin<Box<dyn std::future::Future<Output = _> + Send + '_>> {
            Box::pin(async move {
                let net = a.with(|mut s| s.get().net().clone());
                let (grants, local) = if name.parse::<IpAddr>().is_ok() {
                    (Vec::new(), false)
                } else {
                    match net.lookup(&name) {
                        Lookup::Peer(ip) => return Ok((Ok(vec![ip.into()]),)),
                        Lookup::Granted(g, local) => (g, local),
                        Lookup::Denied => return Ok((Err(nl::ErrorCode::AccessDenied),)),
                    }
                };
                let sockets = a.with_getter::<WasiSockets>(<T as WasiSocketsView>::sockets);
                let got = <WasiSockets as nl::HostWithStore<T>>::resolve_addresses(&sockets, name)
                    .await?;
                if let Ok(addrs) = &got {
                    for ip in addrs {
                        net.learn(IpAddr::from(*ip), &grants, local);
                    }
                }
                Ok((got,))
            })
        },
    )?;

    let mut i = linker.instance("wasi:sockets/types@0.3.0")?;
    i.func_wrap(
        "[static]tcp-socket.create",
        |mut s: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            let net = s.data().net().clone();
            let mut v = s.data_mut().sockets();
            let admitted = match net.admit_socket(v.table) {
                Ok(a) => a,
                Err(full) => return Ok((Err(limit(full)),)),
            };
            let made = HostTcpSocket::create(&mut v, family);
            net.record(SocketKind::Tcp3, admitted, made)
        },
    )?;
    i.func_wrap_async(
        "[static]udp-socket.create",
        |mut s: StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let mut v = s.data_mut().sockets();
                let admitted = match net.admit_socket(v.table) {
                    Ok(a) => a,
                    Err(full) => return Ok((Err(limit(full)),)),
                };
                let made = HostUdpSocket::create(&mut v, family).await;
                net.record(SocketKind::Udp3, admitted, made)
            })
        },
    )?;
    i.func_wrap_async(
        "[method]udp-socket.bind",
        |mut s: StoreContextMut<'_, T>,
         (sock, addr): (Resource<UdpSocket>, IpSocketAddress)|
         -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let (host, serving) = net.udp_claim(SocketAddr::from(addr));
                let mut v = s.data_mut().sockets();
                let made = HostUdpSocket::bind(&mut v, sock, host.into()).await;
                net.udp_bound(serving && made.is_ok());
                match made {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => Ok((Err(e.downcast()?),)),
                }
            })
        },
    )?;
    i.func_wrap_async(
        "[method]tcp-socket.bind",
        |mut s: StoreContextMut<'_, T>,
         (sock, addr): (Resource<TcpSocket>, IpSocketAddress)|
         -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let mut v = s.data_mut().sockets();
                Ok((bind(&net, &mut v, sock.rep(), SocketAddr::from(addr)).await?,))
            })
        },
    )?;
    i.func_wrap_async(
        "[method]tcp-socket.listen",
        |mut s: StoreContextMut<'_, T>, (sock,): (Resource<TcpSocket>,)| -> Boxed<'_, _> {
            Box::new(async move {
                let net = s.data().net().clone();
                let rep = sock.rep();
                // An unbound socket is bound as the shadowed bind binds
                // port 0: on a private loopback port, not on every
                // address as wasmtime-wasi's implicit bind would.
                let mut v = s.data_mut().sockets();
                if HostTcpSocket::get_local_address(&mut v, Resource::new_borrow(rep)).is_err() {
                    let any =
                        match HostTcpSocket::get_address_family(&mut v, Resource::new_borrow(rep))?
                        {
                            IpAddressFamily::Ipv4 => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
                            IpAddressFamily::Ipv6 => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
                        };
                    if let Err(e) = bind(&net, &mut v, rep, any).await? {
                        return Ok((Err(e),));
                    }
                }
                let access = Access::<T, WasiSockets>::new(
                    s.as_context_mut(),
                    <T as WasiSocketsView>::sockets,
                );
                let conns = match HostTcpSocketWithStore::listen(access, sock).await {
                    Ok(c) => c,
                    Err(e) => return Ok((Err(e.downcast()?),)),
                };
                let reach = net.state().listeners.get(&rep).copied();
                let handoff = Arc::new(Mutex::new(Handoff::default()));
                conns.pipe(
                    &mut s,
                    Filter {
                        net,
                        reach,
                        handoff: handoff.clone(),
                    },
                )?;
                Ok((Ok(StreamReader::new(&mut s, ToGuest(handoff))?),))
            })
        },
    )?;
    Ok(())
}

/// The guest's `bind` of `guest`, made where its port space puts it.
async fn bind(
    net: &Net,
    v: &mut WasiSocketsCtxView<'_>,
    rep: u32,
    guest: SocketAddr,
) -> wasmtime::Result<Result<(), ErrorCode>> {
    let Some((host, reach)) = net.claim(v.table, rep, SocketKind::Tcp3, guest) else {
        return Ok(Err(ErrorCode::AddressInUse));
    };
    let made = HostTcpSocket::bind(v, Resource::new_borrow(rep), host.into()).await;
    let bound = match made {
        Ok(()) => HostTcpSocket::get_local_address(v, Resource::new_borrow(rep))
            .ok()
            .map(SocketAddr::from),
        Err(_) => None,
    };
    net.bound(rep, guest.port(), bound, reach);
    match made {
        Ok(()) => Ok(Ok(())),
        Err(e) => Ok(Err(e.downcast()?)),
    }
}

/// 0.3 has no `new-socket-limit`: the cap is an `other` error that says
/// which.
fn limit(why: String) -> ErrorCode {
    ErrorCode::Other(Some(why))
}

/// Between [`Filter`] and [`ToGuest`].
#[derive(Default)]
struct Handoff {
    /// An accepted connection the guest has not taken yet.
    waiting: Option<Resource<TcpSocket>>,
    /// The guest dropped its stream.
    closed: bool,
    guest: Option<Waker>,
    host: Option<Waker>,
}

fn lock(h: &Mutex<Handoff>) -> std::sync::MutexGuard<'_, Handoff> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes wasmtime-wasi's accepted connections: the ones the guest may have
/// go on to [`ToGuest`]; the others are closed before the guest sees them.
struct Filter {
    net: Arc<Net>,
    reach: Option<Reach>,
    handoff: Arc<Mutex<Handoff>>,
}

impl<T: HasNet + 'static> StreamConsumer<T> for Filter {
    type Item = Resource<TcpSocket>;

    fn poll_consume(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'_, T>,
        mut src: Source<'_, Self::Item>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let mut h = lock(&self.handoff);
        if h.closed {
            let waiting = h.waiting.take();
            drop(h);
            let mut taken = waiting.into_iter().collect::<Vec<_>>();
            if src.remaining(&mut store) > 0 {
                let mut item = None;
                src.read(&mut store, &mut item)?;
                taken.extend(item);
            }
            let table = store.data_mut().sockets().table;
            for sock in taken {
                table.delete(sock)?;
            }
            return Poll::Ready(Ok(StreamResult::Dropped));
        }
        if h.waiting.is_some() {
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            h.host = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if src.remaining(&mut store) == 0 {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        let mut item = None;
        src.read(&mut store, &mut item)?;
        let Some(sock) = item else {
            return Poll::Ready(Ok(StreamResult::Completed));
        };
        let mut v = store.data_mut().sockets();
        let peer = HostTcpSocket::get_remote_address(&mut v, Resource::new_borrow(sock.rep()))
            .ok()
            .map(SocketAddr::from);
        if self
            .net
            .let_in(v.table, sock.rep(), SocketKind::Tcp3, self.reach, peer)
        {
            h.waiting = Some(sock);
            if let Some(w) = h.guest.take() {
                w.wake();
            }
        } else {
            drop(h);
            v.table.delete(sock)?;
        }
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

/// The guest's end of a listener's connections.
struct ToGuest(Arc<Mutex<Handoff>>);

impl<D> StreamProducer<D> for ToGuest {
    type Item = Resource<TcpSocket>;
    type Buffer = Option<Resource<TcpSocket>>;

    fn poll_produce<'a>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut store: StoreContextMut<'a, D>,
        mut dst: Destination<'a, Self::Item, Self::Buffer>,
        finish: bool,
    ) -> Poll<wasmtime::Result<StreamResult>> {
        let mut h = lock(&self.0);
        if h.waiting.is_none() {
            if finish {
                return Poll::Ready(Ok(StreamResult::Cancelled));
            }
            h.guest = Some(cx.waker().clone());
            return Poll::Pending;
        }
        // An empty read asks whether a connection is ready: one is.
        if dst.remaining(&mut store) == Some(0) {
            return Poll::Ready(Ok(StreamResult::Completed));
        }
        dst.set_buffer(h.waiting.take());
        if let Some(w) = h.host.take() {
            w.wake();
        }
        Poll::Ready(Ok(StreamResult::Completed))
    }
}

impl Drop for ToGuest {
    fn drop(&mut self) {
        let mut h = lock(&self.0);
        h.closed = true;
        if let Some(w) = h.host.take() {
            w.wake();
        }
    }
}

/// Is `rep` still a 0.3 socket of this kind in the guest's table?
pub(super) fn live3(table: &wasmtime::component::ResourceTable, rep: u32, udp: bool) -> bool {
    if udp {
        table.get(&Resource::<UdpSocket>::new_borrow(rep)).is_ok()
    } else {
        table.get(&Resource::<TcpSocket>::new_borrow(rep)).is_ok()
    }
}
