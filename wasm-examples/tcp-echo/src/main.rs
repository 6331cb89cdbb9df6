//! A plain `std::net` TCP echo server: it listens on `PORT` (default 8000)
//! and sends back every byte each client sends, one client at a time.
//! Built for wasm32-wasip2, it needs nothing but a published port:
//!
//! ```text
//! ketch run -d -p 8000:8000 tcp-echo
//! ```
//!
//! With `--hold` it echoes nothing: it keeps every connection open and
//! sends each its number (`held 3`), to show a container's connection cap.
//! With `--udp` it echoes UDP datagrams on `PORT` instead
//! (`-p 5300:8000/udp`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    if std::env::args().any(|a| a == "--udp") {
        udp_echo(port);
    }
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcp-echo: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("tcp-echo: listening on port {port}");
    if std::env::args().any(|a| a == "--hold") {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            match conn {
                Ok(mut stream) => {
                    let _ = writeln!(stream, "held {}", held.len() + 1);
                    held.push(stream);
                }
                Err(e) => eprintln!("tcp-echo: accept: {e}"),
            }
        }
    }
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if let Err(e) = echo(stream) {
                    eprintln!("tcp-echo: {e}");
                }
            }
            Err(e) => eprintln!("tcp-echo: accept: {e}"),
        }
    }
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        stream.write_all(&buf[..n])?;
    }
}

fn udp_echo(port: u16) -> ! {
    let sock = match UdpSocket::bind(("0.0.0.0", port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tcp-echo: cannot bind udp port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("tcp-echo: echoing udp on port {port}");
    let mut buf = [0u8; 64 * 1024];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = sock.send_to(&buf[..n], from) {
                    eprintln!("tcp-echo: udp reply to {from}: {e}");
                }
            }
            Err(e) => eprintln!("tcp-echo: udp receive: {e}"),
        }
    }
}
