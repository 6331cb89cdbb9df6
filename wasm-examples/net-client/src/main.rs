//! A TCP client: connects to `HOST:PORT` (a name or an address), sends its
//! remaining arguments as one line, and prints the line it gets back.
//! A Wasm container reaches only what `--allow-net` grants it:
//!
//! ```text
//! ketch run --rm --allow-net 127.0.0.1:8000 net-client 127.0.0.1:8000 hello
//! ```
//!
//! It exits 0 when answered. On a failure it names the step and the error
//! kind (`PermissionDenied` when no grant covers the destination) and exits
//! 1: a preview 2 command reports only success or failure. With `--retry
//! N` it tries up to N times, 200 ms apart, before it fails: a worker
//! waiting for its service to come up, or for a network to be joined.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1).peekable();
    let mut tries = 1u32;
    if args.peek().map(String::as_str) == Some("--retry") {
        args.next();
        tries = match args.next().and_then(|n| n.parse().ok()) {
            Some(n) if n > 0 => n,
            _ => usage(),
        };
    }
    let Some(dest) = args.next() else { usage() };
    let msg = args.collect::<Vec<_>>().join(" ");
    for attempt in 1..=tries {
        match once(&dest, &msg) {
            Ok(answer) => {
                print!("net-client: {answer}");
                return;
            }
            Err(e) if attempt == tries => {
                eprintln!("net-client: {e}");
                std::process::exit(1);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: net-client [--retry N] HOST:PORT [MESSAGE...]");
    std::process::exit(1);
}

/// Look `dest` up, connect, send `msg` as a line and read one back:
/// `ADDR answered: LINE`, or the failed step and its error.
fn once(dest: &str, msg: &str) -> Result<String, String> {
    let failed = |what: String| move |e: std::io::Error| format!("{what}: {e} ({:?})", e.kind());
    let addrs: Vec<_> = dest
        .to_socket_addrs()
        .map_err(failed(format!("lookup of {dest}")))?
        .collect();
    let addr = addrs.first().ok_or(format!("{dest} has no address"))?;
    let mut stream = TcpStream::connect(addr).map_err(failed(format!("connect to {addr}")))?;
    stream
        .write_all(format!("{msg}\n").as_bytes())
        .and_then(|()| {
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line)?;
            Ok(line)
        })
        .map(|line| format!("{addr} answered: {line}"))
        .map_err(failed(format!("talking to {addr}")))
}
