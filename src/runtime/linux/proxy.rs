//! Published ports of a Linux container: a userland proxy, with no
//! dependency on iptables or nftables. ketchd listens on the host address;
//! each accepted connection is joined to the container's port: on its
//! bridge address when it has one, else on its own loopback, through a
//! socket made inside the container's network namespace by a short-lived
//! thread (a network namespace is per thread, so `setns` there leaves the
//! rest of ketchd where it was).
//!
//! Each TCP port holds at most its cap of connections (two descriptors
//! each), within ketchd's descriptor budget ([`crate::accept`]); past
//! either, a new connection is reset at once. A connection on which no
//! byte moves either way for [`PROXY_IDLE_TIMEOUT`] is closed.

use crate::accept::{self, Backoff, Gate, LogKeys};
use crate::lograte::warn_limited;
use crate::model::Proto;
use crate::runtime::proxy::{relay, PROXY_IDLE_TIMEOUT};
use crate::runtime::{PortMapping, RuntimeError};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A published port's host socket.
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Udp(tokio::net::UdpSocket),
}

pub type Bound = Vec<(PortMapping, Listener)>;

/// UDP "connections" (one per client address) kept at once per port;
/// datagrams from further clients are dropped until one goes idle.
const MAX_UDP_FLOWS: usize = 1024;
/// A UDP flow with no traffic for this long is forgotten.
const UDP_IDLE: Duration = Duration::from_secs(60);
/// Reaching the container may take this long: one that drops SYNs (paused,
/// firewalled) must not hold the client's descriptor through the kernel's
/// two minutes of retries.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// A proxied connection holds the client's socket and one to the container.
const FDS_PER_CONNECTION: usize = 2;

/// Listen on `ports` (before the container starts, so a port in use fails
/// the start with nothing to undo).
pub fn bind(name: &str, ports: Vec<PortMapping>) -> Result<Bound, RuntimeError> {
    let (udp, tcp): (Vec<_>, Vec<_>) = ports.into_iter().partition(|m| m.proto == Proto::Udp);
    let mut out: Bound = crate::runtime::bind_ports(name, tcp, "")?
        .into_iter()
        .map(|(m, l)| (m, Listener::Tcp(l)))
        .collect();
    for m in udp {
        let addr = std::net::SocketAddr::new(m.host_ip, m.host_port);
        let fail = |e: std::io::Error| crate::runtime::publish_failed(name, &m, &e);
        let sock = std::net::UdpSocket::bind(addr)
            .and_then(|s| {
                s.set_nonblocking(true)?;
                tokio::net::UdpSocket::from_std(s)
            })
            .map_err(fail)?;
        let port = sock.local_addr().map_err(fail)?.port();
        out.push((
            PortMapping {
                host_port: port,
                ..m
            },
            Listener::Udp(sock),
        ));
    }
    Ok(out)
}

/// Where a container's ports are reached from the host.
#[derive(Clone, Debug)]
pub enum Target {
    /// Its address on a bridge, reachable from the host's namespace.
    Addr(Ipv4Addr),
    /// Only inside its network namespace (at this path), on loopback.
    Netns(PathBuf),
}

/// Forward connections on the bound ports to the container, at most
/// `max_conns` at once per port. Abort the accept loops when the container
/// ends.
pub fn serve(bound: Bound, target: Target, max_conns: usize) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(bound.len());
    for (m, listener) in bound {
        let target = target.clone();
        let listener = match listener {
            Listener::Tcp(l) => l,
            Listener::Udp(sock) => {
                tasks.push(tokio::spawn(serve_udp(sock, target, m.container_port)));
                continue;
            }
        };
        tasks.push(tokio::spawn(serve_tcp(listener, m, target, max_conns)));
    }
    tasks
}

async fn serve_tcp(
    listener: tokio::net::TcpListener,
    m: PortMapping,
    target: Target,
    max_conns: usize,
) {
    let what = format!("published port {}", SocketAddr::new(m.host_ip, m.host_port));
    let port = m.container_port;
    let gate = Gate::new(max_conns);
    let mut backoff = Backoff::new();
    let keys = LogKeys {
        accept: "proxy accept",
        refused: "proxy refused",
    };
    loop {
        let (client, admitted) = accept::admit_next(
            &listener,
            &gate,
            FDS_PER_CONNECTION,
            &mut backoff,
            &keys,
            &what,
        )
        .await;
        let target = target.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            // Nothing listens there (or it does not answer): the client
            // sees a close.
            let Ok(Ok(inner)) = tokio::time::timeout(CONNECT_TIMEOUT, connect(target, port)).await
            else {
                return;
            };
            relay(client, inner, PROXY_IDLE_TIMEOUT).await;
        });
    }
}

/// A connection to the container's TCP `port`.
async fn connect(target: Target, port: u16) -> io::Result<tokio::net::TcpStream> {
    match target {
        Target::Addr(ip) => tokio::net::TcpStream::connect((ip, port)).await,
        Target::Netns(netns) => {
            match tokio::task::spawn_blocking(move || connect_inside(&netns, port)).await {
                Ok(Ok(s)) => s
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(s)),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(io::Error::other(e)),
            }
        }
    }
}

/// Relay datagrams between clients of `front` and the container's UDP
/// `port`: one socket towards the container per client address, so its
/// replies find their way back.
async fn serve_udp(front: tokio::net::UdpSocket, target: Target, port: u16) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let front = Arc::new(front);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>> = Arc::default();
    // Owned by this task: aborting it (the container ended) ends every
    // flow, and with them the last hold on the host port.
    let mut replies = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut backoff = Backoff::new();
    loop {
        while replies.try_join_next().is_some() {}
        let (n, client) = match front.recv_from(&mut buf).await {
            Ok(r) => {
                backoff.succeeded();
                r
            }
            Err(e) => {
                warn_limited!("proxy udp recv", "published port {port}/udp: receive: {e}");
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        let known = flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&client)
            .cloned();
        let upstream = match known {
            Some(u) => u,
            None => {
                if flows.lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_UDP_FLOWS {
                    continue;
                }
                // The flow's socket towards the container counts against
                // ketchd's descriptor budget, as a TCP connection does.
                let Some(held) = accept::tenant_descriptors(1) else {
                    warn_limited!(
                        "proxy udp refused",
                        "published port {port}/udp: dropping a new client's datagram: {}",
                        accept::Refused::OutOfDescriptors
                    );
                    continue;
                };
                let t = target.clone();
                let made = tokio::task::spawn_blocking(move || udp_upstream(&t, port)).await;
                let Ok(Ok(u)) = made else { continue };
                let u = Arc::new(u);
                flows
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(client, u.clone());
                let (front, flows, up) = (front.clone(), flows.clone(), u.clone());
                replies.spawn(async move {
                    let _held = held;
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, up.recv(&mut buf)).await {
                        if front.send_to(&buf[..n], client).await.is_err() {
                            break;
                        }
                    }
                    flows
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&client);
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}

/// A UDP socket connected to the container's `port`.
fn udp_upstream(target: &Target, port: u16) -> std::io::Result<tokio::net::UdpSocket> {
    let make = |ip: Ipv4Addr| {
        let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        s.connect((ip, port))?;
        s.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(s)
    };
    let s = match target {
        Target::Addr(ip) => make(*ip)?,
        Target::Netns(netns) => super::net::in_netns(netns, || make(Ipv4Addr::LOCALHOST))?,
    };
    tokio::net::UdpSocket::from_std(s)
}

/// Connect to `127.0.0.1:port` inside the network namespace at `netns`.
fn connect_inside(netns: &Path, port: u16) -> std::io::Result<TcpStream> {
    super::net::in_netns(netns, || TcpStream::connect((Ipv4Addr::LOCALHOST, port)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn udp_datagrams_go_both_ways_and_the_port_is_freed() {
        // A UDP echo server stands in for the container.
        let echo = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let mut reply = b"echo:".to_vec();
                reply.extend_from_slice(&buf[..n]);
                let _ = echo.send_to(&reply, from).await;
            }
        });
        let wanted = PortMapping {
            host_ip: Ipv4Addr::LOCALHOST.into(),
            host_port: 0,
            container_port: echo_port,
            proto: Proto::Udp,
        };
        let bound = bind("t", vec![wanted]).unwrap();
        let port = bound[0].0.host_port;
        let tasks = serve(
            bound,
            Target::Addr(Ipv4Addr::LOCALHOST),
            accept::DEFAULT_MAX_PORT_CONNECTIONS,
        );
        for who in ["a", "b"] {
            let client = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .unwrap();
            client
                .send_to(who.as_bytes(), (Ipv4Addr::LOCALHOST, port))
                .await
                .unwrap();
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("a reply")
                .unwrap();
            assert_eq!(&buf[..n], format!("echo:{who}").as_bytes());
        }
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        // The container ended: its host port can be taken again at once.
        std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).expect("port freed");
    }

    /// Send `msg` and read the echo back; errors on a reset or a close.
    async fn echo_roundtrip(s: &mut tokio::net::TcpStream, msg: &[u8]) -> io::Result<Vec<u8>> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(msg).await?;
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        Ok(buf)
    }

    #[tokio::test]
    async fn a_port_at_its_cap_resets_new_connections_until_one_closes() {
        // A TCP echo server stands in for the container.
        let echo = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let wanted = PortMapping {
            host_ip: Ipv4Addr::LOCALHOST.into(),
            host_port: 0,
            container_port: echo_port,
            proto: Proto::Tcp,
        };
        let bound = bind("t", vec![wanted]).unwrap();
        let port = bound[0].0.host_port;
        let tasks = serve(bound, Target::Addr(Ipv4Addr::LOCALHOST), 4);
        let connect = || tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port));
        let mut open = Vec::new();
        for i in 0..4u8 {
            let mut s = connect().await.unwrap();
            // The echo proves the proxy admitted it before the next one.
            assert_eq!(echo_roundtrip(&mut s, &[i]).await.unwrap(), [i]);
            open.push(s);
        }
        // The fifth is accepted by the kernel, then reset at once: no
        // queueing, no descriptor held.
        let mut fifth = connect().await.unwrap();
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut fifth, &mut buf),
        )
        .await
        .expect("refused at once, not left hanging");
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "the fifth connection must be reset"
        );
        // The four admitted ones still work.
        for (i, s) in open.iter_mut().enumerate() {
            assert_eq!(echo_roundtrip(s, b"x").await.unwrap(), b"x", "conn {i}");
        }
        // Closing one makes room (once the proxy has seen it close).
        drop(open.pop());
        let t0 = Instant::now();
        loop {
            let mut s = connect().await.unwrap();
            if echo_roundtrip(&mut s, b"again").await.ok().as_deref() == Some(&b"again"[..]) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "a closed connection's slot was never given back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
