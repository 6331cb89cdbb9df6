//! Descriptor exhaustion (the adversarial tier's class 8): floods of idle
//! API connections and of connections to a published port. ketchd keeps
//! answering. Every loop is bounded in count and time.

use crate::common::*;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// The API connection cap the daemon under test gets.
const API_CAP: usize = 64;
/// Idle connections the "client" opens (fewer if this process's descriptor
/// limit does not allow them).
const FLOOD: usize = 2000;

/// Raise this test process's soft descriptor limit to its hard one (as
/// ketchd does) and return the soft limit in force.
fn raise_nofile() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out pointer; raising a soft limit up to the
    // hard one needs no privilege.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let up = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        libc::setrlimit(libc::RLIMIT_NOFILE, &up);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
    }
    usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
}

/// GET /_ping on a fresh connection, giving up after `within`: the status,
/// or 0 when nothing answered in time.
fn ping_within(d: &TestDaemon, within: Duration) -> u16 {
    d.api()
        .and_then(|mut c| {
            c.set_read_timeout(within)?;
            c.request("GET", "/_ping", &[], b"", false)
        })
        .map_or(0, |r| r.status)
}

/// Run the CLI, killing it if it has not finished within `secs`.
fn ketch_within(d: &TestDaemon, args: &[&str], secs: u64) -> Option<i32> {
    let mut child = d
        .ketch_cmd(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ketch");
    let mut code = None;
    if poll(Duration::from_secs(secs), || match child.try_wait() {
        Ok(Some(st)) => {
            code = st.code();
            true
        }
        _ => false,
    }) {
        return code;
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The pid of the ketchd serving `d` (its command line names the socket).
fn ketchd_pid(d: &TestDaemon) -> Option<u32> {
    let sock = d.socket.to_str()?.to_string();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("ketchd") && c.contains(&sock)
                })
                .unwrap_or(false)
        })
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn idle_api_connections_cannot_lock_the_api_out() {
    let cap = API_CAP.to_string();
    let d = TestDaemon::start_with(&["--max-api-connections", &cap]);
    // A stream in flight (events) must survive the flood.
    let mut events = d.api().unwrap();
    events.set_read_timeout(Duration::from_secs(10)).unwrap();
    events.send("GET", "/events", &[], b"", false).unwrap();
    let head = events.read_head().expect("events answers");
    assert_eq!(head.status, 200, "{head:?}");

    let want = FLOOD.min(raise_nofile().saturating_sub(256));
    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(want);
    while idle.len() < want && t0.elapsed() < Duration::from_secs(30) {
        idle.push(UnixStream::connect(&d.socket).expect("connect to the API"));
    }
    assert_eq!(
        idle.len(),
        want,
        "opening {want} connections took over 30 s"
    );

    // The API answers at once, raw and through the CLI.
    let t1 = Instant::now();
    assert_eq!(ping_within(&d, Duration::from_secs(5)), 200);
    assert!(t1.elapsed() < Duration::from_secs(5), "{:?}", t1.elapsed());
    assert_eq!(
        ketch_within(&d, &["ps"], 10),
        Some(0),
        "ketch ps under the flood"
    );

    // The connections pushed out were closed by ketchd: the oldest one
    // reads EOF.
    idle[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(
        matches!(idle[0].read(&mut [0u8; 1]), Ok(0)),
        "the longest-idle connection was closed"
    );
    // ketchd holds about its cap of API connections, not the flood.
    if let Some(pid) = ketchd_pid(&d) {
        let n = open_descriptors(pid);
        assert!(n < API_CAP + 200, "ketchd holds {n} descriptors");
    }

    // The events stream was never cut: it still reports.
    d.wat_image("hello", HELLO_WAT);
    d.ketch(&["create", "--name", "after-flood", "hello"]).ok();
    let mut seen = Vec::new();
    let mut stream = events.body(&head);
    let t2 = Instant::now();
    while t2.elapsed() < Duration::from_secs(10) {
        let mut buf = [0u8; 4096];
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        if String::from_utf8_lossy(&seen).contains("after-flood") {
            break;
        }
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("after-flood"),
        "the events stream was cut: {}",
        String::from_utf8_lossy(&seen)
    );

    drop(idle);
    d.eventually(10, "the API after the flood", || {
        ping_within(&d, Duration::from_secs(2)) == 200
    });
    // Evictions are debug lines; nothing here may flood the log.
    let lines = d.daemon_log().lines().count();
    assert!(lines < 100, "{lines} log lines:\n{}", d.daemon_log());
}

/// A function port past `--max-port-connections` resets new connections
/// at once; closing one makes room. (The same gate guards the Linux
/// proxy; `proxy.rs` has the unit test with an echo server.)
#[test]
fn a_function_port_resets_connections_past_its_cap() {
    let d = TestDaemon::start_with(&["--max-port-connections", "4"]);
    example_image(&d, "http-hello");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    d.ketch(&["run", "-d", "--name", "fn", "-p", &publish, "http-hello"])
        .ok();
    let mut open = Vec::new();
    for i in 0..4 {
        let mut c = HttpConn::connect(port).unwrap();
        let r = c.request("GET", &format!("/{i}"), &[], b"", false).unwrap();
        assert_eq!(r.status, 200);
        open.push(c);
    }
    let mut fifth = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = fifth.read(&mut [0u8; 1]);
    assert_eq!(
        r.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "the fifth connection is reset at once"
    );
    drop(open.pop());
    d.eventually(5, "a slot after a close", || {
        fetch(port, "GET", "/again", b"").0 == 200
    });
    d.ketch(&["rm", "-f", "fn"]).ok();
}
