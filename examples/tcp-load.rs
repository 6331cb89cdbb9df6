//! A TCP connection-rate load client: `CLIENTS` threads each open a
//! connection to `127.0.0.1:PORT`, send `BYTES` bytes, read them back and
//! close, over and over, until `SECS` have passed or `MAX` round trips are
//! done. Prints round trips per second, latency percentiles and failures
//! as JSON. Used by `bench/tcp-echo.sh`.
//!
//! Usage: tcp-load PORT CLIENTS SECS BYTES MAX

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |i: usize, what: &str| -> u64 {
        args.get(i).and_then(|a| a.parse().ok()).unwrap_or_else(|| {
            eprintln!("usage: tcp-load PORT CLIENTS SECS BYTES MAX ({what})");
            std::process::exit(2)
        })
    };
    let port = num(1, "port") as u16;
    let clients = num(2, "clients") as usize;
    let secs = num(3, "secs");
    let bytes = num(4, "bytes") as usize;
    let max = num(5, "max") as usize;
    let started = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let t0 = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (started, failed) = (started.clone(), failed.clone());
            std::thread::spawn(move || {
                let msg = vec![b'x'; bytes];
                let mut back = vec![0u8; bytes];
                let mut lat = Vec::new();
                while Instant::now() < deadline && started.fetch_add(1, Ordering::Relaxed) < max {
                    let t = Instant::now();
                    match round_trip(port, &msg, &mut back) {
                        Ok(()) => lat.push(t.elapsed()),
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"done\": {}, \"failed\": {}, \"secs\": {wall:.2}, \"per_sec\": {:.0}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}",
        lat.len(),
        failed.load(Ordering::Relaxed),
        lat.len() as f64 / wall,
        pct(0.5),
        pct(0.99)
    );
}

fn round_trip(port: u16, msg: &[u8], back: &mut [u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg)?;
    s.read_exact(back)?;
    s.shutdown(Shutdown::Write)?;
    // Wait for the server's close, so each round trip is a whole
    // connection's life.
    let mut end = [0u8; 1];
    match s.read(&mut end)? {
        0 => Ok(()),
        _ => Err(std::io::Error::other("more bytes than were sent")),
    }
}
