//! The ports a running Wasm guest serves at its addresses on user
//! networks, by address. The addresses it starts with are bound before it
//! starts; `network connect` adds one while it runs and `network
//! disconnect` takes one away; a stop closes them all.

use crate::runtime::{bind_ports, PortMapping, Proto, RuntimeError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A listener bound at a network address, with the mapping it serves.
pub(super) type Bound = Vec<(PortMapping, TcpListener)>;

/// Starts serving one listener: a function's accept loop, or a command's
/// relay to its guest's socket.
type Serve = Box<dyn Fn(PortMapping, TcpListener) -> JoinHandle<()> + Send + Sync>;

pub(crate) struct NetworkPorts {
    name: String,
    /// The guest ports served at each address, at the same port number.
    ports: Vec<u16>,
    state: Mutex<State>,
}

struct State {
    /// `None` once closed: the guest is stopping or gone.
    serve: Option<Serve>,
    by_address: HashMap<IpAddr, Vec<JoinHandle<()>>>,
}

impl NetworkPorts {
    /// Serve `ports` at the addresses bound before the start (`initial`,
    /// from [`bind`](Self::bind)), each listener by `serve`.
    pub(super) fn new(
        name: &str,
        ports: Vec<u16>,
        initial: Vec<(IpAddr, Bound)>,
        serve: impl Fn(PortMapping, TcpListener) -> JoinHandle<()> + Send + Sync + 'static,
    ) -> Self {
        let by_address = initial
            .into_iter()
            .map(|(ip, bound)| (ip, bound.into_iter().map(|(m, l)| serve(m, l)).collect()))
            .collect();
        NetworkPorts {
            name: name.to_string(),
            ports,
            state: Mutex::new(State {
                serve: Some(Box::new(serve)),
                by_address,
            }),
        }
    }

    /// Bind `ports` at each of `addresses`, before the start.
    pub(super) fn bind_all(
        name: &str,
        ports: &[u16],
        addresses: &[IpAddr],
    ) -> Result<Vec<(IpAddr, Bound)>, RuntimeError> {
        addresses
            .iter()
            .map(|ip| Ok((*ip, Self::bind(name, ports, *ip)?)))
            .collect()
    }

    /// Listen on each of `ports` at `ip`. Nothing is served yet: a port in
    /// use fails here, with nothing to undo.
    fn bind(name: &str, ports: &[u16], ip: IpAddr) -> Result<Bound, RuntimeError> {
        let wanted = ports
            .iter()
            .map(|&p| PortMapping {
                container_port: p,
                proto: Proto::Tcp,
                host_ip: ip,
                host_port: p,
            })
            .collect();
        bind_ports(
            name,
            wanted,
            "a Wasm guest is served on its networks over TCP only",
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serve the guest's ports at `ip` too (it joined a network).
    pub(crate) fn join(&self, ip: IpAddr) -> Result<(), String> {
        if self.state().by_address.contains_key(&ip) {
            return Ok(());
        }
        let bound = Self::bind(&self.name, &self.ports, ip).map_err(|e| e.to_string())?;
        let mut st = self.state();
        let Some(serve) = &st.serve else {
            return Err(format!("container {} is stopping", self.name));
        };
        let tasks: Vec<JoinHandle<()>> = bound.into_iter().map(|(m, l)| serve(m, l)).collect();
        st.by_address.entry(ip).or_default().extend(tasks);
        Ok(())
    }

    /// Stop serving at `ip` (it left that network). Resolves once its
    /// listeners are closed, so the address can be joined again at once.
    pub(crate) fn leave(
        &self,
        ip: IpAddr,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tasks = self.state().by_address.remove(&ip).unwrap_or_default();
        tasks.iter().for_each(JoinHandle::abort);
        async move {
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    /// Serve no more (the guest is stopping): every listener is closed
    /// when this resolves, so a restart can bind the same addresses.
    pub(super) fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let tasks = self.stop();
        async move {
            for t in tasks {
                let _ = t.await;
            }
        }
    }

    /// Take the serving away and abort every listener's task.
    fn stop(&self) -> Vec<JoinHandle<()>> {
        let (serve, tasks) = {
            let mut st = self.state();
            (st.serve.take(), std::mem::take(&mut st.by_address))
        };
        drop(serve);
        let tasks: Vec<JoinHandle<()>> = tasks.into_values().flatten().collect();
        tasks.iter().for_each(JoinHandle::abort);
        tasks
    }
}

impl Drop for NetworkPorts {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Accepts and drops connections, like a server that answers nothing.
    fn ports(ports: Vec<u16>) -> NetworkPorts {
        NetworkPorts::new("t", ports, Vec::new(), |_, l| {
            tokio::spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    drop(s);
                }
            })
        })
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.2:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port")
    }

    async fn reachable(ip: Ipv4Addr, port: u16) -> bool {
        tokio::net::TcpStream::connect((ip, port)).await.is_ok()
    }

    #[tokio::test]
    async fn join_leave_and_close_open_and_close_the_listeners() {
        let (a, b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
        let port = free_port();
        let p = ports(vec![port]);
        p.join(a.into()).expect("join a");
        p.join(a.into()).expect("joining twice is one join");
        p.join(b.into()).expect("join b");
        assert!(reachable(a, port).await && reachable(b, port).await);
        p.leave(a.into()).await;
        assert!(!reachable(a, port).await, "left: closed");
        assert!(reachable(b, port).await, "the other stays");
        // Rejoining binds again.
        p.join(a.into()).expect("rejoin");
        assert!(reachable(a, port).await);
        p.close().await;
        assert!(!reachable(a, port).await && !reachable(b, port).await);
        let e = p.join(a.into()).expect_err("closed");
        assert!(e.contains("container t is stopping"), "{e}");
    }

    #[tokio::test]
    async fn a_port_in_use_fails_the_join_and_names_it() {
        let held = std::net::TcpListener::bind("127.0.0.4:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let p = ports(vec![port]);
        let e = p
            .join(Ipv4Addr::new(127, 0, 0, 4).into())
            .expect_err("in use");
        assert!(
            e.contains(&format!(
                "Bind for 127.0.0.4:{port} failed: port is already allocated"
            )),
            "{e}"
        );
        assert!(p.state().by_address.is_empty());
    }
}
