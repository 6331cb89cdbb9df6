//! WASI 0.3 sockets, as a guest sees them.
//!
//! - `serve PORT...`: a TCP echo server on each port (0: any), through
//!   `tcp-socket.listen`'s `stream<tcp-socket>`. It prints each listener's
//!   guest port and the address its socket has.
//! - `connect HOST PORT`: looks HOST up (unless it is an address),
//!   connects, sends a line and prints what comes back, or the error.

wit_bindgen::generate!({
    world: "net",
    path: "wit",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::cli::{environment, stdout};
use wasi::sockets::ip_name_lookup::resolve_addresses;
use wasi::sockets::types::{
    ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, Ipv6SocketAddress,
    TcpSocket,
};
use wit_bindgen::StreamResult;

struct Net;

impl Guest for Net {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        let args: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
        match args.as_slice() {
            ["serve", ports @ ..] if !ports.is_empty() => serve(ports).await,
            ["connect", host, port] => {
                let port = port.parse().map_err(|_| ())?;
                match connect(host, port).await {
                    Ok(echo) => say(format!("echoed: {echo}")).await,
                    Err(e) => {
                        let _ = say(format!("error: {e:?}\n")).await;
                        Err(())
                    }
                }
            }
            _ => {
                let _ = say("usage: p3-net serve PORT... | connect HOST PORT\n".into()).await;
                Err(())
            }
        }
    }
}

async fn say(msg: String) -> Result<(), ()> {
    let (mut tx, rx) = wit_stream::new();
    let done = stdout::write_via_stream(rx);
    let left = tx.write_all(msg.into_bytes()).await;
    drop(tx);
    if !left.is_empty() {
        return Err(());
    }
    done.await.map_err(|_| ())
}

async fn serve(ports: &[&str]) -> Result<(), ()> {
    let mut listeners = Vec::new();
    for p in ports {
        let port: u16 = p.parse().map_err(|_| ())?;
        let sock = match TcpSocket::create(IpAddressFamily::Ipv4) {
            Ok(s) => s,
            Err(e) => {
                say(format!("error: socket: {e:?}\n")).await?;
                return Err(());
            }
        };
        let any = IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port,
            address: (0, 0, 0, 0),
        });
        if let Err(e) = sock.bind(any) {
            say(format!("error: bind {port}: {e:?}\n")).await?;
            return Err(());
        }
        let conns = match sock.listen() {
            Ok(c) => c,
            Err(e) => {
                say(format!("error: listen {port}: {e:?}\n")).await?;
                return Err(());
            }
        };
        let at = sock.get_local_address().map(show).unwrap_or_default();
        say(format!("listening on {port} at {at}\n")).await?;
        listeners.push((sock, conns));
    }
    for (sock, mut conns) in listeners {
        wit_bindgen::spawn(async move {
            let _keep = sock;
            while let Some(conn) = conns.next().await {
                wit_bindgen::spawn(echo(conn));
                // A spawned task is first polled when this one is next:
                // yield so that is now.
                wit_bindgen::yield_async().await;
            }
        });
    }
    // Serve until stopped.
    std::future::pending::<()>().await;
    Ok(())
}

async fn echo(conn: TcpSocket) {
    let (mut rx, received) = conn.receive();
    let (mut tx, to_send) = wit_stream::new();
    let sent = conn.send(to_send);
    loop {
        let (res, buf) = rx.read(Vec::with_capacity(16 * 1024)).await;
        if !buf.is_empty() && !tx.write_all(buf).await.is_empty() {
            break;
        }
        if matches!(res, StreamResult::Dropped | StreamResult::Cancelled) {
            break;
        }
    }
    drop(tx);
    let _ = sent.await;
    drop(rx);
    let _ = received.await;
}

async fn connect(host: &str, port: u16) -> Result<String, ErrorCode> {
    let ip = match parse_ip(host) {
        Some(ip) => ip,
        None => *resolve_addresses(host.to_string())
            .await
            .map_err(|e| ErrorCode::Other(Some(format!("lookup: {e:?}"))))?
            .first()
            .ok_or(ErrorCode::Other(Some("no address".into())))?,
    };
    let (family, addr) = match ip {
        IpAddress::Ipv4(address) => (
            IpAddressFamily::Ipv4,
            IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }),
        ),
        IpAddress::Ipv6(address) => (
            IpAddressFamily::Ipv6,
            IpSocketAddress::Ipv6(Ipv6SocketAddress {
                port,
                address,
                flow_info: 0,
                scope_id: 0,
            }),
        ),
    };
    let sock = TcpSocket::create(family)?;
    sock.connect(addr).await?;
    let (mut tx, to_send) = wit_stream::new();
    let sent = sock.send(to_send);
    tx.write_all(b"ping from a WASI 0.3 guest\n".to_vec()).await;
    let (mut rx, _received) = sock.receive();
    let mut got = Vec::new();
    while !got.ends_with(b"\n") {
        let (res, buf) = rx.read(Vec::with_capacity(1024)).await;
        got.extend(buf);
        if matches!(res, StreamResult::Dropped | StreamResult::Cancelled) {
            break;
        }
    }
    drop(tx);
    let _ = sent.await;
    Ok(String::from_utf8_lossy(&got).into_owned())
}

fn parse_ip(host: &str) -> Option<IpAddress> {
    match host.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            Some(IpAddress::Ipv4((a, b, c, d)))
        }
        std::net::IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            Some(IpAddress::Ipv6((a, b, c, d, e, f, g, h)))
        }
    }
}

fn show(a: IpSocketAddress) -> String {
    match a {
        IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port,
            address: (a, b, c, d),
        }) => format!("{a}.{b}.{c}.{d}:{port}"),
        IpSocketAddress::Ipv6(v6) => format!("[{:?}]:{}", v6.address, v6.port),
    }
}

export!(Net);
