//! One probe per WASI interface, built for both preview 1 and preview 2
//! from this one source: each argument names a probe, and each probe
//! prints one line, `NAME: ok ...` or `NAME: denied ...` or
//! `NAME: error ...`. The tests run it under different grants and read
//! the lines.
//!
//! Probes: `args`, `env`, `fs=DIR` (write, read back and list a file in a
//! granted directory), `outside=PATH` (read a path no grant covers),
//! `clocks`, `random`, `tcp=HOST:PORT` (connect, send a line, read one).

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    for probe in std::env::args().skip(1) {
        let (name, arg) = probe.split_once('=').unwrap_or((&probe, ""));
        let line = match name {
            "args" => Ok(format!("{:?}", std::env::args().collect::<Vec<_>>())),
            "env" => Ok(std::env::vars()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")),
            "fs" => fs(arg),
            "outside" => std::fs::read(arg).map(|b| format!("read {} bytes", b.len())),
            "clocks" => clocks(),
            "random" => random(),
            "tcp" => tcp(arg),
            _ => Err(std::io::Error::other("no such probe")),
        };
        match line {
            Ok(what) => println!("{name}: ok {what}"),
            Err(e) if matches!(e.kind(), ErrorKind::PermissionDenied | ErrorKind::NotFound) => {
                println!("{name}: denied {:?} ({e})", e.kind())
            }
            Err(e) => println!("{name}: error {:?} ({e})", e.kind()),
        }
    }
}

fn fs(dir: &str) -> std::io::Result<String> {
    let path = format!("{dir}/probe.txt");
    std::fs::write(&path, b"probed\n")?;
    let back = std::fs::read_to_string(&path)?;
    let names: Vec<String> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_file(&path)?;
    if back != "probed\n" || !names.iter().any(|n| n == "probe.txt") {
        return Err(std::io::Error::other(format!("read {back:?}, listed {names:?}")));
    }
    Ok(format!("wrote, read and listed {path}"))
}

fn clocks() -> std::io::Result<String> {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(std::io::Error::other)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let slept = t0.elapsed();
    // 2024-01-01 and later; a sleep takes at least what it asked.
    if wall.as_secs() < 1_704_067_200 || slept < Duration::from_millis(20) {
        return Err(std::io::Error::other(format!("wall {wall:?}, slept {slept:?}")));
    }
    Ok(format!("wall clock past 2024, a 20 ms sleep took {} ms", slept.as_millis()))
}

fn random() -> std::io::Result<String> {
    use std::hash::{BuildHasher, RandomState};
    // Each RandomState is keyed from the host's random source.
    let a = RandomState::new().hash_one(1u8);
    let b = RandomState::new().hash_one(1u8);
    if a == b {
        return Err(std::io::Error::other("two random keys were equal"));
    }
    Ok("two random keys differ".into())
}

fn tcp(dest: &str) -> std::io::Result<String> {
    use std::net::ToSocketAddrs;
    let addr = dest
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(b"probe\n")?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    Ok(format!("{addr} answered {:?}", line.trim_end()))
}
