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
//! 1: a preview 2 command reports only success or failure.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dest) = args.next() else {
        eprintln!("usage: net-client HOST:PORT [MESSAGE...]");
        std::process::exit(1);
    };
    let msg = args.collect::<Vec<_>>().join(" ");
    let addrs: Vec<_> = match dest.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => fail(&format!("lookup of {dest}"), &e),
    };
    let Some(addr) = addrs.first() else {
        eprintln!("net-client: {dest} has no address");
        std::process::exit(1);
    };
    let mut stream = match TcpStream::connect(addr) {
        Ok(s) => s,
        Err(e) => fail(&format!("connect to {addr}"), &e),
    };
    let sent = stream
        .write_all(format!("{msg}\n").as_bytes())
        .and_then(|()| {
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line)?;
            Ok(line)
        });
    match sent {
        Ok(line) => print!("net-client: {addr} answered: {line}"),
        Err(e) => fail(&format!("talking to {addr}"), &e),
    }
}

fn fail(what: &str, e: &std::io::Error) -> ! {
    eprintln!("net-client: {what}: {e} ({:?})", e.kind());
    std::process::exit(1);
}
