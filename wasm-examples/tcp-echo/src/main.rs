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

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
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
