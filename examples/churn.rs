//! A load client for the Engine API: `CLIENTS` threads, each on one
//! keep-alive connection, run containers to exit as `docker run --rm` does
//! through the API (create, start, wait, delete) until `TASKS` are done
//! or `SECS` have passed, and print tasks per second with latency
//! percentiles as JSON. Used by `bench/churn.sh`.
//!
//! Usage: churn SOCKET IMAGE CLIENTS TASKS SECS

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Conn {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Conn {
    fn open(path: &str) -> std::io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// One request; the status and body of its answer.
    fn call(&mut self, method: &str, path: &str, body: &str) -> std::io::Result<(u16, Vec<u8>)> {
        write!(
            self.w,
            "{method} {path} HTTP/1.1\r\nHost: ketch\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut line = String::new();
        self.r.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut len, mut chunked) = (0usize, false);
        loop {
            line.clear();
            self.r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            }
        }
        let mut out = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else {
            out.resize(len, 0);
            self.r.read_exact(&mut out)?;
        }
        Ok((status, out))
    }
}

/// The `"Id"` of a create answer.
fn id_of(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let rest = &s[s.find("\"Id\"")? + 4..];
    let rest = &rest[rest.find('"')? + 1..];
    Some(rest[..rest.find('"')?].to_string())
}

fn task(c: &mut Conn, image: &str) -> Result<(), String> {
    let expect = |what: &str, got: std::io::Result<(u16, Vec<u8>)>, ok: u16| match got {
        Ok((s, b)) if s == ok => Ok(b),
        Ok((s, b)) => Err(format!("{what}: {s} {}", String::from_utf8_lossy(&b))),
        Err(e) => Err(format!("{what}: {e}")),
    };
    let body = format!("{{\"Image\":\"{image}\"}}");
    let created = expect("create", c.call("POST", "/containers/create", &body), 201)?;
    let id = id_of(&created).ok_or("create: no Id")?;
    expect(
        "start",
        c.call("POST", &format!("/containers/{id}/start"), ""),
        204,
    )?;
    expect(
        "wait",
        c.call("POST", &format!("/containers/{id}/wait"), ""),
        200,
    )?;
    expect(
        "delete",
        c.call("DELETE", &format!("/containers/{id}"), ""),
        204,
    )?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: churn SOCKET IMAGE CLIENTS TASKS SECS");
        std::process::exit(2);
    }
    let (sock, image) = (args[1].clone(), args[2].clone());
    let num = |i: usize| -> usize {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("churn: {:?} is not a number", args[i]);
            std::process::exit(2)
        })
    };
    let (clients, tasks, secs) = (num(3), num(4), num(5));
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs as u64);
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let (sock, image, next) = (sock.clone(), image.clone(), next.clone());
            std::thread::spawn(move || -> Result<Vec<Duration>, String> {
                let mut c = Conn::open(&sock).map_err(|e| format!("connect {sock}: {e}"))?;
                let mut lat = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < tasks && Instant::now() < deadline {
                    let t = Instant::now();
                    task(&mut c, &image)?;
                    lat.push(t.elapsed());
                }
                Ok(lat)
            })
        })
        .collect();
    let mut lat = Vec::new();
    for w in workers {
        match w.join() {
            Ok(Ok(l)) => lat.extend(l),
            Ok(Err(e)) => {
                eprintln!("churn: {e}");
                std::process::exit(1);
            }
            Err(_) => std::process::exit(1),
        }
    }
    let took = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{{\"tasks\":{},\"clients\":{clients},\"secs\":{took:.3},\"per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        lat.len(),
        lat.len() as f64 / took,
        pct(0.5),
        pct(0.99)
    );
}
