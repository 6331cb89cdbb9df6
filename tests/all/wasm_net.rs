//! Sockets of Wasm containers: `--allow-net` grants for outgoing
//! connections and name lookups, and guest servers published with `-p`,
//! each in its own port space.

use crate::common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// Send `msg` on a fresh connection to a published port and read it back.
fn echo_through(port: u16, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(msg)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Ports ketchd (`pid`) listens on at 127.0.0.1, from /proc.
fn loopback_listeners(pid: u32) -> Vec<u16> {
    sockets_of(pid, "/proc/net/tcp", |ip, state| {
        state == "0A" && ip == "0100007F"
    })
}

/// UDP ports ketchd (`pid`) has bound, on any address, from /proc.
fn udp_ports(pid: u32) -> Vec<u16> {
    sockets_of(pid, "/proc/net/udp", |_, _| true)
}

/// Local ports of ketchd's (`pid`) sockets in a /proc/net table whose
/// (hex address, state) pass `keep`.
fn sockets_of(pid: u32, table: &str, keep: impl Fn(&str, &str) -> bool) -> Vec<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|i| i.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(table).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local address, state (TCP: 0A = LISTEN), inode.
            let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
            let (ip, port) = local.split_once(':')?;
            (keep(ip, state) && inodes.iter().any(|i| i == inode))
                .then(|| u16::from_str_radix(port, 16).ok())
                .flatten()
        })
        .collect()
}

#[test]
fn a_guest_reaches_only_what_its_grants_name() {
    let d = TestDaemon::start();
    example_image(&d, "net-client");
    let port = host_echo();
    let dest = format!("127.0.0.1:{port}");
    let client = |name: &str, grants: &[&str], dest: &str| {
        let mut args = vec!["run", "--name", name];
        for g in grants {
            args.extend(["--allow-net", g]);
        }
        args.extend(["net-client", dest, "hi"]);
        d.ketch(&args)
    };

    // Granted by address and port: the connection is made.
    let r = client("by-addr", &[&dest], &dest);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("answered: echo: hi"), "{}", r.stdout);

    // No grant, another port, or `*` (which leaves out the host's own
    // loopback): the guest sees a permission error, and the container's
    // log says what was denied.
    let other = format!("127.0.0.1:{}", port.wrapping_add(1).max(1));
    for (name, grants) in [
        ("none", vec![]),
        ("other-port", vec![other.as_str()]),
        ("star", vec!["*"]),
        ("udp-only", vec![&*format!("udp://{dest}")]),
    ] {
        let r = client(name, &grants, &dest);
        assert_eq!(r.code, 1, "{name}: {} {}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("PermissionDenied"),
            "{name}: {}",
            r.stderr
        );
        let logs = d.ketch(&["logs", name]);
        assert!(
            logs.stderr
                .contains(&format!("denied tcp connect to {dest}")),
            "{name}: {}",
            logs.stderr
        );
    }

    // A name resolves only when a grant names it, and then its addresses
    // are granted with the grant's ports.
    let named = format!("localhost:{port}");
    let r = client("by-name", &[&named], &named);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("answered: echo: hi"), "{}", r.stdout);
    let r = client("unnamed", &["example.com"], &named);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("lookup of localhost"), "{}", r.stderr);
    assert!(r.stderr.contains("PermissionDenied"), "{}", r.stderr);
    let logs = d.ketch(&["logs", "unnamed"]).stderr;
    assert!(
        logs.contains("denied name lookup of \"localhost\""),
        "{logs}"
    );

    // inspect shows the grants.
    let out = d
        .ketch(&[
            "inspect",
            "-f",
            "{{json .HostConfig.Annotations}}",
            "by-addr",
        ])
        .ok();
    assert!(
        out.contains(&format!("\"io.ketch.net.allow\":\"{dest}\"")),
        "{out}"
    );
    // ketchd's log has the denials too.
    assert!(
        d.daemon_log().contains("denied tcp connect"),
        "{}",
        d.daemon_log()
    );
}

#[test]
fn malformed_grants_are_refused_by_name_and_nothing_is_made() {
    let d = TestDaemon::start();
    example_image(&d, "net-client");
    let r = d.ketch(&[
        "run",
        "--rm",
        "--allow-net",
        "exa mple.com",
        "net-client",
        "x",
    ]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("\"exa mple.com\""), "{}", r.stderr);
    for (ann, named) in [
        (r#""io.ketch.net.allow":"10.0.0.0/40""#, "10.0.0.0/40"),
        (r#""io.ketch.net.allow":"tcp://[::1""#, "[::1"),
        (
            r#""io.ketch.net.connections":"0""#,
            "io.ketch.net.connections",
        ),
    ] {
        let body = format!(r#"{{"Image":"net-client","HostConfig":{{"Annotations":{{{ann}}}}}}}"#);
        let (status, text) = d.http("POST", "/containers/create", &body);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(named), "{text}");
    }
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
}

#[test]
fn guest_servers_are_reached_only_through_their_published_ports() {
    let d = TestDaemon::start();
    example_image(&d, "tcp-echo");
    let (p1, p2, p3, p4) = (free_port(), free_port(), free_port(), free_port());
    // Two guests listen on the same guest port: no collision.
    for (name, port) in [("echo1", p1), ("echo2", p2)] {
        d.ketch(&[
            "run",
            "-d",
            "--name",
            name,
            "-p",
            &format!("127.0.0.1:{port}:8000"),
            "tcp-echo",
        ])
        .ok();
    }
    // One guest port published twice: both reach it (through the relay).
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "twice",
        "-p",
        &format!("127.0.0.1:{p3}:8000"),
        "-p",
        &format!("127.0.0.1:{p4}:8000"),
        "tcp-echo",
    ])
    .ok();
    for port in [p1, p2, p3, p4] {
        d.eventually(10, "the guest echoes", || {
            echo_through(port, b"ping").is_ok_and(|b| b == b"ping")
        });
    }
    let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
    assert_eq!(echo_through(p1, &big).unwrap(), big);
    assert_eq!(echo_through(p4, &big).unwrap(), big);
    let ports = d.ketch(&["port", "echo1"]).ok();
    assert!(
        ports.contains(&format!("8000/tcp -> 127.0.0.1:{p1}")),
        "{ports}"
    );

    // A guest listening on a port that is not published: its socket is
    // on the host's loopback, and takes no connection. The relayed
    // guest's socket takes only the relay's.
    let p5 = free_port();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "private",
        "-p",
        &format!("127.0.0.1:{p5}:9999"),
        "tcp-echo",
    ])
    .ok();
    d.eventually(10, "the private guest listens", || {
        d.ketch(&["logs", "private"])
            .stdout
            .contains("listening on port 8000")
    });
    let hidden: Vec<u16> = loopback_listeners(d.pid())
        .into_iter()
        .filter(|p| ![p1, p2, p3, p4, p5].contains(p))
        .collect();
    assert_eq!(
        hidden.len(),
        2,
        "the private and the relayed sockets: {hidden:?}"
    );
    for p in hidden {
        let got = echo_through(p, b"sneak");
        assert!(
            !got.as_ref().is_ok_and(|b| b == b"sneak"),
            "port {p} answered directly"
        );
    }
    // Published, but the guest does not listen there: refused.
    assert!(echo_through(p5, b"x").map_or(true, |b| b.is_empty()));
    assert_eq!(echo_through(p1, b"still").unwrap(), b"still");

    // stop lets no new connection in, at once, before the kill at the
    // stop timeout.
    let stopping = d.ketch_cmd(&["stop", "-t", "5", "echo1"]).spawn().unwrap();
    let t0 = Instant::now();
    d.eventually(3, "echo1 takes no new connection", || {
        echo_through(p1, b"late").map_or(true, |b| b.is_empty())
    });
    assert!(t0.elapsed() < Duration::from_secs(4));
    assert!(stopping.wait_with_output().unwrap().status.success());
    assert_eq!(echo_through(p2, b"other").unwrap(), b"other");
    d.ketch(&["rm", "-f", "echo1", "echo2", "twice", "private"])
        .ok();
}

#[test]
fn a_connection_flood_is_capped_per_container() {
    let d = TestDaemon::start();
    example_image(&d, "tcp-echo");
    let (p1, p2) = (free_port(), free_port());
    // Four sockets: the guest's listener and three connections, which it
    // holds open.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "small",
        "--net-connections",
        "4",
        "-p",
        &format!("127.0.0.1:{p1}:8000"),
        "tcp-echo",
        "--hold",
    ])
    .ok();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "other",
        "-p",
        &format!("127.0.0.1:{p2}:8000"),
        "tcp-echo",
    ])
    .ok();
    d.eventually(10, "the other guest echoes", || {
        echo_through(p2, b"ping").is_ok_and(|b| b == b"ping")
    });
    let mut answers = Vec::new();
    let mut held = Vec::new();
    for _ in 0..6 {
        let s = TcpStream::connect(("127.0.0.1", p1)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(&s).read_line(&mut line);
        answers.push(line.trim().to_string());
        held.push(s);
    }
    assert_eq!(answers, ["held 1", "held 2", "held 3", "", "", ""]);
    let logs = d.ketch(&["logs", "small"]).stderr;
    assert!(
        logs.contains("ketch: refused a new socket or connection: it already holds"),
        "{logs}"
    );
    // The other container is untouched.
    assert_eq!(echo_through(p2, b"fine").unwrap(), b"fine");
    d.ketch(&["rm", "-f", "small", "other"]).ok();
}

/// A WASI 0.3 guest's sockets (`wasi:sockets@0.3.0`, whose listeners
/// hand out connections as a `stream<tcp-socket>`) get the same grants,
/// port space and cap as a 0.2 guest's.
#[test]
fn wasi_0_3_sockets_have_the_same_grants_port_space_and_cap() {
    let d = TestDaemon::start();
    example_image(&d, "p3-net");
    let (p1, p2, p3, p4) = (free_port(), free_port(), free_port(), free_port());
    // Guest port 8000 published once (direct) and 8001 twice (relayed);
    // 9000 is not published.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-p",
        &format!("127.0.0.1:{p1}:8000"),
        "-p",
        &format!("127.0.0.1:{p2}:8001"),
        "-p",
        &format!("127.0.0.1:{p3}:8001"),
        "p3-net",
        "serve",
        "8000",
        "8001",
        "9000",
    ])
    .ok();
    // A second guest on port 8000 does not collide.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "srv2",
        "-p",
        &format!("127.0.0.1:{p4}:8000"),
        "p3-net",
        "serve",
        "8000",
    ])
    .ok();
    for port in [p1, p2, p3, p4] {
        d.eventually(10, "the 0.3 guest echoes", || {
            echo_through(port, b"ping").is_ok_and(|b| b == b"ping")
        });
    }
    let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    assert_eq!(echo_through(p1, &big).unwrap(), big);
    assert_eq!(echo_through(p3, &big).unwrap(), big);
    let logs = d.ketch(&["logs", "srv"]).stdout;
    assert!(
        logs.contains(&format!("listening on 8000 at 127.0.0.1:{p1}")),
        "{logs}"
    );
    // The unpublished and the relayed listeners sit on loopback and take
    // nothing directly.
    let hidden: Vec<u16> = loopback_listeners(d.pid())
        .into_iter()
        .filter(|p| ![p1, p2, p3, p4].contains(p))
        .collect();
    assert_eq!(hidden.len(), 2, "9000 and 8001: {hidden:?}");
    for p in hidden {
        let got = echo_through(p, b"sneak");
        assert!(
            !got.as_ref().is_ok_and(|b| b == b"sneak"),
            "port {p} answered directly"
        );
    }

    // Outgoing: denied without a grant, by address and by name.
    let port = host_echo();
    let dest = port.to_string();
    let r = d.ketch(&["run", "--rm", "p3-net", "connect", "127.0.0.1", &dest]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.contains("AccessDenied"), "{}", r.stdout);
    assert!(
        r.stderr
            .contains(&format!("denied tcp connect to 127.0.0.1:{port}")),
        "{}",
        r.stderr
    );
    let r = d.ketch(&[
        "run",
        "--rm",
        "--allow-net",
        &format!("127.0.0.1:{port}"),
        "p3-net",
        "connect",
        "localhost",
        &dest,
    ]);
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert!(r.stderr.contains("denied name lookup of \"localhost\""));
    // Granted by address, and by name (its answer is then granted).
    for (grant, host) in [
        (format!("127.0.0.1:{port}"), "127.0.0.1"),
        (format!("localhost:{port}"), "localhost"),
    ] {
        let r = d.ketch(&[
            "run",
            "--rm",
            "--allow-net",
            &grant,
            "p3-net",
            "connect",
            host,
            &dest,
        ]);
        assert_eq!(r.code, 0, "{grant}: {} {}", r.stdout, r.stderr);
        assert!(
            r.stdout
                .contains("echoed: echo: ping from a WASI 0.3 guest"),
            "{}",
            r.stdout
        );
    }

    // The cap counts the listener and its connections: with 2, one
    // connection is let in and the next is closed.
    let p5 = free_port();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "small",
        "--net-connections",
        "2",
        "-p",
        &format!("127.0.0.1:{p5}:8000"),
        "p3-net",
        "serve",
        "8000",
    ])
    .ok();
    let mut held = TcpStream::connect(("127.0.0.1", p5)).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    d.eventually(10, "the first connection is let in", || {
        let mut b = [0u8; 2];
        held.write_all(b"ok").is_ok() && held.read_exact(&mut b).is_ok() && &b == b"ok"
    });
    assert!(echo_through(p5, b"more").map_or(true, |b| b.is_empty()));
    let logs = d.ketch(&["logs", "small"]).stderr;
    assert!(
        logs.contains("refused a new socket or connection: it already holds 2"),
        "{logs}"
    );
    drop(held);

    // stop lets no new connection in, at once.
    let stopping = d.ketch_cmd(&["stop", "-t", "5", "srv"]).spawn().unwrap();
    d.eventually(3, "srv takes no new connection", || {
        echo_through(p1, b"late").map_or(true, |b| b.is_empty())
    });
    assert!(stopping.wait_with_output().unwrap().status.success());
    assert_eq!(echo_through(p4, b"other").unwrap(), b"other");
    d.ketch(&["rm", "-f", "srv", "srv2", "small"]).ok();
}

/// A guest's UDP socket bound to a published port is bound at the host
/// address itself and answers anyone; any other UDP port is the guest's
/// own, and hears only granted peers.
#[test]
fn guest_udp_servers_are_published_and_others_hear_nothing() {
    let d = TestDaemon::start();
    example_image(&d, "tcp-echo");
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "udp-pub",
        "-p",
        &format!("127.0.0.1:{port}:8000/udp"),
        "tcp-echo",
        "--udp",
    ])
    .ok();
    assert_eq!(
        d.ketch(&["port", "udp-pub"]).ok().trim(),
        format!("8000/udp -> 127.0.0.1:{port}")
    );
    let ask = |to: u16, msg: &[u8]| -> Option<Vec<u8>> {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        s.send_to(msg, ("127.0.0.1", to)).unwrap();
        let mut b = [0u8; 2048];
        s.recv_from(&mut b).ok().map(|(n, _)| b[..n].to_vec())
    };
    d.eventually(10, "the guest answers on its published port", || {
        ask(port, b"dgram") == Some(b"dgram".to_vec())
    });
    // Another client is answered too: a server hears anyone.
    assert_eq!(ask(port, b"other").as_deref(), Some(&b"other"[..]));

    // Published once only, and a port in use fails the start by name.
    let r = d.ketch(&[
        "run",
        "-d",
        "--name",
        "udp-twice",
        "-p",
        "127.0.0.1:0:8000/udp",
        "-p",
        "127.0.0.2:0:8000/udp",
        "tcp-echo",
        "--udp",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("one host address only"), "{}", r.stderr);
    let r = d.ketch(&[
        "run",
        "-d",
        "--name",
        "udp-taken",
        "-p",
        &format!("127.0.0.1:{port}:8000/udp"),
        "tcp-echo",
        "--udp",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("port is already allocated"),
        "{}",
        r.stderr
    );

    // Unpublished, the guest's port 8000 is an ephemeral one of its own,
    // and hears nothing it was not granted.
    d.ketch(&["run", "-d", "--name", "udp-private", "tcp-echo", "--udp"])
        .ok();
    d.eventually(10, "the private guest binds", || {
        d.ketch(&["logs", "udp-private"])
            .stdout
            .contains("echoing udp on port 8000")
    });
    let hidden: Vec<u16> = udp_ports(d.pid())
        .into_iter()
        .filter(|p| *p != port)
        .collect();
    assert_eq!(hidden.len(), 1, "{hidden:?}");
    assert_eq!(ask(hidden[0], b"sneak"), None);
    assert_eq!(ask(port, b"still").as_deref(), Some(&b"still"[..]));
    d.ketch(&[
        "rm",
        "-f",
        "udp-pub",
        "udp-private",
        "udp-twice",
        "udp-taken",
    ])
    .ok();
}
