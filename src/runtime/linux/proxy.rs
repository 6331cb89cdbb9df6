//! Published ports of a Linux container: a userland proxy, with no
//! dependency on iptables or nftables. ketchd listens on the host address;
//! each accepted connection is joined to the container's port: on its
//! bridge address when it has one, else on its own loopback, through a
//! socket made inside the container's network namespace by a short-lived
//! thread (a network namespace is per thread, so `setns` there leaves the
//! rest of ketchd where it was).

use super::sys;
use crate::runtime::{PortMapping, RuntimeError};
use std::net::{Ipv4Addr, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use tokio::task::JoinHandle;

pub type Bound = Vec<(PortMapping, tokio::net::TcpListener)>;

/// Listen on `ports` (before the container starts, so a port in use fails
/// the start with nothing to undo).
pub fn bind(name: &str, ports: Vec<PortMapping>) -> Result<Bound, RuntimeError> {
    crate::runtime::bind_ports(
        name,
        ports,
        "publishing UDP ports of a Linux container is not supported yet",
    )
}

/// Where a container's ports are reached from the host.
#[derive(Clone, Debug)]
pub enum Target {
    /// Its address on a bridge, reachable from the host's namespace.
    Addr(Ipv4Addr),
    /// Only inside its network namespace (at this path), on loopback.
    Netns(PathBuf),
}

/// Forward connections on the bound ports to the container. Abort the
/// accept loops when the container ends.
pub fn serve(bound: Bound, target: Target) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::with_capacity(bound.len());
    for (m, listener) in bound {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                let port = m.container_port;
                tokio::spawn(async move {
                    let inner = match target {
                        Target::Addr(ip) => tokio::net::TcpStream::connect((ip, port)).await,
                        Target::Netns(netns) => {
                            match tokio::task::spawn_blocking(move || connect_inside(&netns, port))
                                .await
                            {
                                Ok(Ok(s)) => s
                                    .set_nonblocking(true)
                                    .and_then(|()| tokio::net::TcpStream::from_std(s)),
                                Ok(Err(e)) => Err(e),
                                Err(e) => Err(std::io::Error::other(e)),
                            }
                        }
                    };
                    // Nothing listens there: the client sees a close.
                    let Ok(mut inner) = inner else {
                        return;
                    };
                    let mut client = client;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut inner).await;
                });
            }
        }));
    }
    tasks
}

/// Connect to `127.0.0.1:port` inside the network namespace at `netns`.
fn connect_inside(netns: &Path, port: u16) -> std::io::Result<TcpStream> {
    let ns = std::fs::File::open(netns)?;
    std::thread::scope(|s| {
        s.spawn(|| {
            sys::setns(ns.as_raw_fd(), libc::CLONE_NEWNET)?;
            TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("proxy thread panicked")))
    })
}
