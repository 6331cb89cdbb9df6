//! Linux containers on networks and published ports, across a ketchd
//! restart, and what is left on the host once they are gone.

use super::{daemon, detached, log_lines};
use crate::common::*;
use std::path::Path;

/// The host's network devices.
fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_default_bridge_gives_an_address_and_a_route() {
    require!(linux());
    let d = daemon();
    let ipam: serde_json::Value = serde_json::from_str(
        &d.ketch(&[
            "network",
            "inspect",
            "-f",
            "{{json .IPAM.Config}}",
            "bridge",
        ])
        .ok(),
    )
    .unwrap();
    let subnet = ipam[0]["Subnet"].as_str().unwrap().to_string();
    let prefix = subnet.split('.').take(2).collect::<Vec<_>>().join(".");
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ip -o -4 addr show eth0; ip route",
        ])
        .ok();
    assert!(out.contains(&format!("inet {prefix}.")), "{subnet} {out}");
    assert!(out.contains("default via"), "{out}");
}

/// The network `backend` and `srv` on it (alias `web`) serving
/// "hello-srv" on port 8080, reachable by name once this returns:
/// (network id, container id).
fn backend(d: &TestDaemon) -> (String, String) {
    let net_id = d.ketch(&["network", "create", "backend"]).ok();
    let srv = detached(
        d,
        "srv",
        &["--network", "backend", "--network-alias", "web"],
        "mkdir -p /www && echo hello-srv > /www/index.html && exec httpd -f -p 8080 -h /www",
    );
    d.eventually(10, "srv by name", || {
        fetch_on_backend(d, "srv").stdout == "hello-srv\n"
    });
    (net_id.trim().to_string(), srv)
}

/// wget http://NAME:8080/ from a container on `backend`.
fn fetch_on_backend(d: &TestDaemon, name: &str) -> Run {
    d.ketch(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "busybox",
        "wget",
        "-q",
        "-O-",
        &format!("http://{name}:8080/"),
    ])
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_alias() {
    require!(linux());
    let d = daemon();
    backend(&d);
    let ls = d.ketch(&["network", "ls"]).ok();
    for name in ["bridge", "host", "none", "backend"] {
        assert!(ls.contains(name), "{ls}");
    }
    assert_eq!(fetch_on_backend(&d, "srv").ok(), "hello-srv\n");
    assert_eq!(fetch_on_backend(&d, "web").ok(), "hello-srv\n");
}

/// The addresses on the host's links with a /32 prefix: what ketchd holds
/// on bridges for Wasm containers.
fn held_addresses() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("/32 "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Wasm containers join user networks: Linux members reach a function and
/// a TCP server by name and alias on their exposed ports, and Wasm guests
/// resolve and reach the members, with no grant beyond the network.
#[test]
fn wasm_containers_on_a_user_network_are_reached_by_name() {
    require!(linux());
    let d = daemon();
    backend(&d);
    for ex in ["http-hello", "tcp-echo", "net-client", "p3-net"] {
        example_image(&d, ex);
    }
    let port = free_port();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "api",
        "--network",
        "backend",
        "--network-alias",
        "fn",
        "http-hello",
    ])
    .ok();
    // Published on the host too: served at both.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "echo",
        "--network",
        "backend",
        "-p",
        &format!("127.0.0.1:{port}:8000"),
        "tcp-echo",
    ])
    .ok();
    let ip = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.backend.IPAddress}}",
            "api",
        ])
        .ok();
    let ip = ip.trim().to_string();
    assert!(
        held_addresses().contains(&format!("inet {ip}/32")),
        "{ip}: {}",
        held_addresses()
    );
    for name in ["api", "fn"] {
        let r = d.ketch(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "busybox",
            "wget",
            "-q",
            "-O-",
            &format!("http://{name}/from-linux"),
        ]);
        assert_eq!(r.code, 0, "{name}: {}", r.stderr);
        assert!(
            r.stdout.contains("You asked for /from-linux"),
            "{name}: {}",
            r.stdout
        );
    }
    let r = d
        .ketch(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "busybox",
            "sh",
            "-c",
            "echo over-the-bridge | nc echo 8000",
        ])
        .ok();
    assert_eq!(r, "over-the-bridge\n");
    d.eventually(10, "echo on the host's port too", || {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let mut b = [0u8; 4];
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .is_ok()
            && s.write_all(b"host").is_ok()
            && s.read_exact(&mut b).is_ok()
            && &b == b"host"
    });
    // `port` shows the host's bindings, not the network's.
    let ports = d.ketch(&["port", "echo"]).ok();
    assert_eq!(ports.trim(), format!("8000/tcp -> 127.0.0.1:{port}"));

    // Wasm guests resolve the members (Linux and Wasm alike) and reach
    // them, with no --allow-net.
    let r = d
        .ketch(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "net-client",
            "echo:8000",
            "hi",
        ])
        .ok();
    assert!(r.contains("answered: hi"), "{r}");
    let r = d
        .ketch(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "net-client",
            "web:8080",
            // With the blank line that ends the request.
            "GET / HTTP/1.0\n",
        ])
        .ok();
    assert!(r.contains(" 200 OK"), "{r}");
    let r = d
        .ketch(&[
            "run",
            "--rm",
            "--network",
            "backend",
            "p3-net",
            "connect",
            "echo",
            "8000",
        ])
        .ok();
    assert_eq!(r, "echoed: ping from a WASI 0.3 guest\n");
    // A name that is no member is still denied.
    let r = d.ketch(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "net-client",
        "nosuch:80",
        "x",
    ]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("denied name lookup of \"nosuch\""),
        "{}",
        r.stderr
    );

    // A stopped Wasm container joins at its next start.
    d.ketch(&["network", "create", "second"]).ok();
    d.ketch(&["create", "--name", "later", "tcp-echo"]).ok();
    d.ketch(&["network", "connect", "second", "later"]).ok();
    d.ketch(&["start", "later"]).ok();
    let later = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.second.IPAddress}}",
            "later",
        ])
        .ok();
    assert!(
        later.trim().parse::<std::net::Ipv4Addr>().is_ok(),
        "{later}"
    );

    // Stopped or removed, it holds nothing on the bridge.
    let ips: Vec<String> = [("echo", "backend"), ("later", "second")]
        .iter()
        .map(|(c, n)| {
            let f = format!("{{{{.NetworkSettings.Networks.{n}.IPAddress}}}}");
            d.ketch(&["inspect", "-f", &f, c]).ok().trim().to_string()
        })
        .collect();
    d.ketch(&["stop", "-t", "1", "api"]).ok();
    assert!(!held_addresses().contains(&format!("inet {ip}/32")));
    d.ketch(&["rm", "-f", "echo", "api", "later"]).ok();
    let left = held_addresses();
    for ip in ips {
        assert!(!ip.is_empty());
        assert!(!left.contains(&format!("inet {ip}/32")), "{ip}: {left}");
    }
}

/// busybox on `backend` runs `script`.
fn sh_on_backend(d: &TestDaemon, script: &str) -> Run {
    d.ketch(&[
        "run",
        "--rm",
        "--network",
        "backend",
        "busybox",
        "sh",
        "-c",
        script,
    ])
}

/// `network connect` and `disconnect` of running Wasm containers: a
/// function, a TCP server published on the host and one not published at
/// all are served at their new addresses, by name and alias, at once;
/// leaving takes the address and the name away; nothing stays held.
#[test]
fn running_wasm_containers_join_and_leave_networks() {
    require!(linux());
    let d = daemon();
    backend(&d);
    for ex in ["http-hello", "tcp-echo", "net-client", "p3-net"] {
        example_image(&d, ex);
    }
    let port = free_port();
    d.ketch(&["run", "-d", "--name", "fn", "http-hello"]).ok();
    let published = format!("127.0.0.1:{port}:8000");
    d.ketch(&["run", "-d", "--name", "echo", "-p", &published, "tcp-echo"])
        .ok();
    d.ketch(&["run", "-d", "--name", "quiet", "tcp-echo"]).ok();
    d.ketch(&["network", "connect", "--alias", "f2", "backend", "fn"])
        .ok();
    for c in ["echo", "quiet"] {
        d.ketch(&["network", "connect", "backend", c]).ok();
    }
    let address = |c: &str| {
        let f = "{{json .NetworkSettings.Networks}}";
        let nets: serde_json::Value = serde_json::from_str(&d.ketch(&["inspect", "-f", f, c]).ok())
            .expect("networks as JSON");
        nets["backend"]["IPAddress"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let ips: Vec<String> = ["fn", "echo", "quiet"].map(address).to_vec();
    for ip in &ips {
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ips:?}");
        assert!(held_addresses().contains(&format!("inet {ip}/32")), "{ip}");
    }
    for name in ["fn", "f2"] {
        let r = sh_on_backend(&d, &format!("wget -q -O- http://{name}/joined"));
        assert!(r.ok().contains("You asked for /joined"), "{name}");
    }
    for name in ["echo", "quiet"] {
        let r = sh_on_backend(&d, &format!("echo hi-{name} | nc {name} 8000"));
        assert_eq!(r.ok(), format!("hi-{name}\n"));
    }
    // The peers that were there already learn the names too.
    let hosts = d.ketch(&["exec", "srv", "cat", "/etc/hosts"]).ok();
    assert!(hosts.contains(&format!("{}\tfn f2", ips[0])), "{hosts}");
    // The host's port is served as before.
    let ports = d.ketch(&["port", "echo"]).ok();
    assert_eq!(ports.trim(), format!("8000/tcp -> 127.0.0.1:{port}"));

    // A Wasm client that joins while running resolves and reaches the
    // members from then on: denied until it joins, it retries.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "client",
        "net-client",
        "--retry",
        "150",
        "echo:8000",
        "from-a-joined-guest",
    ])
    .ok();
    d.eventually(10, "the client denied before it joins", || {
        let r = d.ketch(&["logs", "client"]);
        r.stderr.contains("denied name lookup of \"echo\"")
    });
    d.ketch(&["network", "connect", "backend", "client"]).ok();
    assert_eq!(d.ketch(&["wait", "client"]).ok().trim(), "0");
    let answer = d.ketch(&["logs", "client"]).ok();
    assert!(answer.contains("answered: from-a-joined-guest"), "{answer}");
    d.ketch(&["rm", "client"]).ok();

    // Published at its own number on every host address: that listener
    // takes the network address's connections too (a second one there
    // could not be bound beside it).
    let wild = free_port().to_string();
    let wild_map = format!("{wild}:{wild}");
    d.ketch(&[
        "run", "-d", "--name", "wild", "-p", &wild_map, "p3-net", "serve", &wild,
    ])
    .ok();
    d.ketch(&["network", "connect", "backend", "wild"]).ok();
    d.eventually(10, "wild by name on its published port", || {
        sh_on_backend(&d, &format!("echo hi-wild | nc wild {wild}")).stdout == "hi-wild\n"
    });
    d.ketch(&["rm", "-f", "wild"]).ok();
    // One on `none` joins nothing, as Docker's.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "alone",
        "--network",
        "none",
        "tcp-echo",
    ])
    .ok();
    let r = d.ketch(&["network", "connect", "backend", "alone"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("uses network none"), "{}", r.stderr);
    d.ketch(&["rm", "-f", "alone"]).ok();

    // Leaving: the address, the listeners and the names go at once.
    d.ketch(&["network", "disconnect", "backend", "fn"]).ok();
    assert!(!held_addresses().contains(&format!("inet {}/32", ips[0])));
    assert_eq!(address("fn"), "");
    let r = sh_on_backend(&d, "wget -q -T 3 -O- http://fn/left");
    assert_ne!(r.code, 0, "{}", r.stdout);
    let r = sh_on_backend(&d, &format!("wget -q -T 3 -O- http://{}/left", ips[0]));
    assert_ne!(r.code, 0, "{}", r.stdout);
    // ... and it joins again.
    d.ketch(&["network", "connect", "backend", "fn"]).ok();
    let r = sh_on_backend(&d, "wget -q -O- http://fn/again");
    assert!(r.ok().contains("You asked for /again"));

    // A stopped container holds nothing; a removed one neither.
    let ips: Vec<String> = ["fn", "echo", "quiet"].map(address).to_vec();
    d.ketch(&["stop", "-t", "1", "echo"]).ok();
    assert!(!held_addresses().contains(&format!("inet {}/32", ips[1])));
    d.ketch(&["rm", "-f", "fn", "echo", "quiet"]).ok();
    let left = held_addresses();
    for ip in ips {
        assert!(!left.contains(&format!("inet {ip}/32")), "{ip}: {left}");
    }
}

#[test]
fn the_host_reaches_a_container_on_its_bridge_address() {
    require!(linux());
    let d = daemon();
    backend(&d);
    let ip = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.backend.IPAddress}}",
            "srv",
        ])
        .ok();
    let ip: std::net::Ipv4Addr = ip.trim().parse().expect("an address");
    let (status, body) = fetch_from((ip, 8080), "GET", "/", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "hello-srv\n");
}

#[test]
fn network_connect_and_disconnect_a_running_container() {
    require!(linux());
    let d = daemon();
    backend(&d);
    d.ketch(&["run", "-d", "--name", "cli", "busybox", "sleep", "100"])
        .ok();
    d.ketch(&["network", "connect", "backend", "cli"]).ok();
    assert_eq!(
        d.ketch(&["exec", "cli", "wget", "-q", "-O-", "http://srv:8080/"])
            .ok(),
        "hello-srv\n"
    );
    let nets: serde_json::Value = serde_json::from_str(
        &d.ketch(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "cli"])
            .ok(),
    )
    .unwrap();
    let names: Vec<&String> = nets.as_object().unwrap().keys().collect();
    assert_eq!(names, ["backend", "bridge"]);
    assert!(nets["backend"]["IPAddress"]
        .as_str()
        .unwrap()
        .starts_with(&nets["backend"]["Gateway"].as_str().unwrap()[..4]));
    // srv's /etc/hosts learnt cli's name.
    assert!(d
        .ketch(&["exec", "srv", "cat", "/etc/hosts"])
        .ok()
        .contains("\tcli "));
    d.ketch(&["network", "disconnect", "backend", "cli"]).ok();
    assert_eq!(
        d.ketch(&["exec", "cli", "sh", "-c", "ip -o link | wc -l"])
            .ok(),
        "2\n"
    );
    assert!(!d
        .ketch(&["exec", "srv", "cat", "/etc/hosts"])
        .ok()
        .contains("\tcli "));
}

/// `EndpointSettings` as the API takes them: a create may name several
/// networks (API 1.44 and later) and each endpoint's aliases and legacy
/// links; settings ketch would not honour (a fixed address, a MAC) are a
/// 400 naming them, at create and at connect, and nothing is made.
#[test]
fn endpoint_settings_take_effect_or_are_refused_by_name() {
    require!(linux());
    let d = daemon();
    backend(&d);
    d.ketch(&["network", "create", "second"]).ok();
    let image = d.ketch(&["inspect", "-f", "{{.Image}}", "srv"]).ok();
    let create = |name: &str, endpoints: serde_json::Value| {
        let body = serde_json::json!({
            "Image": image.trim(),
            "Cmd": ["sleep", "100"],
            "HostConfig": {"NetworkMode": "backend"},
            "NetworkingConfig": {"EndpointsConfig": endpoints},
        });
        d.http(
            "POST",
            &format!("/v1.50/containers/create?name={name}"),
            &body.to_string(),
        )
    };
    let (code, body) = create(
        "both",
        serde_json::json!({
            "backend": {"Aliases": ["b-alias"], "Links": ["srv:db"]},
            "second": {"Aliases": ["s-alias"]},
        }),
    );
    assert_eq!(code, 201, "{body}");
    d.ketch(&["start", "both"]).ok();
    let nets: serde_json::Value = serde_json::from_str(
        &d.ketch(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            "both",
        ])
        .ok(),
    )
    .unwrap();
    assert_eq!(nets["backend"]["Aliases"], serde_json::json!(["b-alias"]));
    assert_eq!(nets["backend"]["Links"], serde_json::json!(["srv:db"]));
    assert_eq!(nets["second"]["Aliases"], serde_json::json!(["s-alias"]));
    let mode = d
        .ketch(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", "both"])
        .ok();
    assert_eq!(mode.trim(), "backend");
    // Two interfaces, the default route on the primary network's; the
    // link's alias reaches srv.
    let links = d
        .ketch(&["exec", "both", "sh", "-c", "ip -o -4 addr | grep -c eth"])
        .ok();
    assert_eq!(links.trim(), "2");
    assert_eq!(
        d.ketch(&["exec", "both", "wget", "-q", "-O-", "http://db:8080/"])
            .ok(),
        "hello-srv\n"
    );
    // A peer on the second network reaches it by its alias there.
    let r = d.ketch(&[
        "run",
        "--rm",
        "--network",
        "second",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        "s-alias",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);

    // Refused, by name, and nothing is created.
    for (endpoints, field) in [
        (
            serde_json::json!({"backend": {"IPAMConfig": {"IPv4Address": "172.31.9.9"}}}),
            "NetworkingConfig.EndpointsConfig.backend.IPAMConfig",
        ),
        (
            serde_json::json!({"second": {"MacAddress": "02:42:ac:11:00:09"}}),
            "NetworkingConfig.EndpointsConfig.second.MacAddress",
        ),
        (
            serde_json::json!({"backend": {"Links": ["nosuch:db"]}}),
            "nosuch",
        ),
        (
            serde_json::json!({"nosuchnet": {}}),
            "network nosuchnet not found",
        ),
        (
            serde_json::json!({"bridge": {}}),
            "only user-defined bridge networks",
        ),
    ] {
        let (code, body) = create("refused", endpoints);
        assert!(code == 400 || code == 404, "{code} {body}");
        assert!(body.contains(field), "{field}: {body}");
        let r = d.ketch(&["inspect", "refused"]);
        assert_ne!(r.code, 0, "created anyway");
    }
    let (code, body) = d.http(
        "POST",
        "/v1.50/networks/second/connect",
        r#"{"Container": "srv", "EndpointConfig": {"IPAMConfig": {"IPv4Address": "172.31.9.9"}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("EndpointConfig.IPAMConfig"), "{body}");
    let nets = d
        .ketch(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "srv"])
        .ok();
    assert!(!nets.contains("second"), "{nets}");
    // Links at connect: the alias is in srv's hosts.
    let (code, body) = d.http(
        "POST",
        "/v1.50/networks/second/connect",
        r#"{"Container": "srv", "EndpointConfig": {"Links": ["both:peer"]}}"#,
    );
    assert_eq!(code, 200, "{body}");
    d.eventually(10, "the link's alias in srv's hosts", || {
        d.ketch(&["exec", "srv", "cat", "/etc/hosts"])
            .stdout
            .contains("\tpeer both ")
    });
    d.ketch(&["rm", "-f", "both"]).ok();
}

/// Containers on a user network started (and restarted) all at once, as
/// `docker-compose up` and `restart` start them: each one's `/etc/hosts`
/// names every other, however their starts interleave.
#[test]
fn containers_started_together_all_learn_each_others_names() {
    require!(linux());
    let d = daemon();
    d.ketch(&["network", "create", "together"]).ok();
    let names = ["t1", "t2", "t3", "t4"];
    for n in names {
        d.ketch(&[
            "create",
            "--name",
            n,
            "--network",
            "together",
            "busybox",
            "sleep",
            "100",
        ])
        .ok();
    }
    let all_at_once = |verb: &str| {
        std::thread::scope(|s| {
            for n in names {
                let d = &d;
                s.spawn(move || {
                    let (status, body) = d.http("POST", &format!("/containers/{n}/{verb}?t=0"), "");
                    assert_eq!(status, 204, "{verb} {n}: {body}");
                });
            }
        });
    };
    all_at_once("start");
    for round in 0..6 {
        for n in names {
            let hosts = d.ketch(&["exec", n, "cat", "/etc/hosts"]).ok();
            for other in names.iter().filter(|o| **o != n) {
                assert!(
                    hosts.contains(&format!("\t{other} ")),
                    "round {round}: {n} does not know {other}:\n{hosts}"
                );
            }
        }
        all_at_once("restart");
    }
    d.ketch(&["rm", "-f", "t1", "t2", "t3", "t4"]).ok();
}

#[test]
fn network_errors_name_what_is_wrong() {
    require!(linux());
    let d = daemon();
    backend(&d);
    let r = d.ketch(&["network", "rm", "backend"]);
    assert!(
        r.code != 0 && r.stderr.contains("active endpoints"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["network", "rm", "bridge"]);
    assert!(
        r.code != 0 && r.stderr.contains("pre-defined"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["network", "create", "backend"]);
    assert!(
        r.code != 0 && r.stderr.contains("already exists"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["run", "--rm", "--network", "nowhere", "busybox", "true"]);
    assert!(
        r.code != 0 && r.stderr.contains("network nowhere not found"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_removed_network_leaves_no_link_on_the_host() {
    require!(linux());
    let d = daemon();
    let (net_id, srv) = backend(&d);
    let bridge = format!("kt-{}", &net_id[..12]);
    assert!(host_links().contains(&bridge));
    d.ketch(&["rm", "-f", "srv"]).ok();
    d.ketch(&["network", "rm", "backend"]).ok();
    let veths = [ketch::runtime::linux::net::host_ifname(&srv, 0), bridge];
    d.eventually(10, "veths and bridge gone", || {
        let links = host_links();
        !veths.iter().any(|v| links.contains(v))
    });
}

/// `web`: busybox httpd serving "hello-web" on `port` of 127.0.0.1 (a
/// userland proxy into its network namespace), answering once this
/// returns.
fn web(d: &TestDaemon, port: u16) {
    let publish = format!("127.0.0.1:{port}:80");
    detached(
        d,
        "web",
        &["-p", &publish],
        "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www",
    );
    d.eventually(10, "web server", || serves(port));
}

fn serves(port: u16) -> bool {
    let (code, body) = fetch(port, "GET", "/index.html", b"");
    code == 200 && body.contains("hello-web")
}

#[test]
fn a_published_port_is_served_and_taken_once() {
    require!(linux());
    let d = daemon();
    let port = free_port();
    web(&d, port);
    assert_eq!(
        d.ketch(&["port", "web"]).ok(),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    // A second container can't take the same port.
    let publish = format!("127.0.0.1:{port}:80");
    let r = d.ketch(&[
        "run", "-d", "--name", "web2", "-p", &publish, "busybox", "sleep", "5",
    ]);
    assert!(
        r.code != 0 && r.stderr.contains("port is already allocated"),
        "{}",
        r.stderr
    );
}

#[test]
fn linux_containers_survive_a_ketchd_restart() {
    require!(linux());
    let mut d = daemon();
    detached(
        &d,
        "tick",
        &[],
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done",
    );
    // Its exit falls while ketchd is down or just after: the second's
    // wait is part of the scenario.
    detached(&d, "short", &[], "sleep 1; exit 7");
    let port = free_port();
    web(&d, port);
    d.eventually(10, "ticks", || {
        d.ketch(&["logs", "tick"]).stdout.contains("tick 2")
    });
    d.crash_and_restart();
    // The port is served again by the new ketchd.
    d.eventually(10, "web server after the restart", || serves(port));
    // Still running, and its log still grows.
    assert_eq!(d.state("tick"), "running");
    let n = log_lines(&d, "tick");
    d.eventually(10, "more ticks", || log_lines(&d, "tick") > n + 3);
    // logs -f follows the container after the restart.
    let follow = d.stream(&["logs", "-f", "--tail", "0", "tick"]);
    follow.wait_for(10, "a followed tick", |o| o.contains("tick "));
    // The exit while ketchd was down (or after) is reported as it was.
    d.eventually(10, "short exited", || d.state("short") == "exited");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "short"])
            .ok(),
        "7\n"
    );
    d.ketch(&["stop", "-t", "1", "tick"]).ok();
    let text = follow.finish();
    assert!(
        text.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "{text}"
    );
    assert_eq!(d.state("tick"), "exited");
    // And it can start again.
    d.ketch(&["start", "tick"]).ok();
    assert_eq!(d.state("tick"), "running");
}

/// Processes of this daemon's containers, cgroups, mounts and runtime state.
fn leftovers(d: &TestDaemon, ids: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let root = d.root().display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("monitor") && cmd.contains(&root) {
                found.push(format!(
                    "monitor process {}",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    for id in ids {
        for ctl in ["memory", "pids", "freezer", "cpu"] {
            let v1 = format!("/sys/fs/cgroup/{ctl}/ketch/{id}");
            if Path::new(&v1).exists() {
                found.push(v1);
            }
        }
        let v2 = format!("/sys/fs/cgroup/ketch/{id}");
        if Path::new(&v2).exists() {
            found.push(v2);
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    found.extend(
        mounts
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from),
    );
    if let Ok(rd) = std::fs::read_dir(d.root().join("runtime")) {
        found.extend(rd.flatten().map(|e| e.path().display().to_string()));
    }
    found
}

#[test]
fn linux_containers_leave_nothing_behind() {
    require!(linux());
    let d = daemon();
    let mut ids = Vec::new();
    d.ketch(&["run", "--rm", "busybox", "true"]).ok();
    for name in ["la", "lb"] {
        let id = d
            .ketch(&[
                "run", "-d", "--name", name, "--memory", "32m", "busybox", "sleep", "100",
            ])
            .ok();
        ids.push(id.trim().to_string());
    }
    d.ketch(&["run", "--name", "lc", "busybox", "sh", "-c", "exit 2"]);
    ids.push(
        d.ketch(&["inspect", "-f", "{{.Id}}", "lc"])
            .ok()
            .trim()
            .to_string(),
    );
    d.ketch(&["stop", "-t", "0", "la"]).ok();
    d.ketch(&["rm", "-f", "la", "lb", "lc"]).ok();
    let mut left = Vec::new();
    d.eventually(10, "cleanup", || {
        left = leftovers(&d, &ids);
        left.is_empty()
    });
    assert!(left.is_empty(), "{left:?}");
    assert!(d.ketch(&["ps", "-aq"]).ok().is_empty());
}
