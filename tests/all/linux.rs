//! Linux containers end to end: a busybox image built FROM scratch, run in
//! namespaces with cgroup limits, through the CLI and the API. These need
//! root (CI is root); elsewhere each test says why it is skipped.

use crate::common::*;
use std::path::Path;
use std::time::Duration;

macro_rules! need_linux {
    () => {
        if let Some(why) = linux_unavailable() {
            eprintln!("skipped: Linux containers need {why}");
            return;
        }
    };
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    busybox_image(&d);
    d
}

#[test]
fn linux_run_isolation_and_options() {
    need_linux!();
    let d = daemon();
    // Exit code, pid namespace, hostname (the short id), loopback only.
    let r = d.ketch(&[
        "run",
        "--name",
        "iso",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo pid=$$; hostname; ip -o link | wc -l; exit 3",
    ]);
    assert_eq!(r.code, 3, "{r:?}", r = r.stderr);
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "iso"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["pid=1", &id.trim()[..12], "1"], "{}", r.stdout);
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Platform}}", "iso"])
            .ok()
            .trim(),
        format!(
            "linux/{}",
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            }
        )
    );

    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--hostname",
            "box",
            "-e",
            "GREETING=hi",
            "--user",
            "nobody",
            "-w",
            "/made/here",
            "busybox",
            "sh",
            "-c",
            "hostname; echo $GREETING; id -u; pwd",
        ])
        .ok();
    assert_eq!(out, "box\nhi\n65534\n/made/here\n");

    // Read-only root, tmpfs, capabilities and the seccomp filter.
    let r = d.ketch(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /scratch/ok && echo tmpfs-ok; touch /x",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("tmpfs-ok") && r.stderr.contains("Read-only file system"),
        "{r:?}",
        r = r.stderr
    );
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            "busybox",
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok();
    assert!(out.contains("0000000000000000"), "{out}");
    let r = d.ketch(&[
        "run", "--rm", "busybox", "mount", "-t", "tmpfs", "x", "/mnt",
    ]);
    assert_ne!(r.code, 0, "mount must be refused: {}", r.stdout);
    let out = d
        .ketch(&["run", "--rm", "busybox", "cat", "/proc/self/status"])
        .ok();
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");

    // Bind mounts, read-write and read-only.
    let host = d.dir.path().join("share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "-v",
            &rw,
            "busybox",
            "sh",
            "-c",
            "cat /data/in.txt; echo back > /data/out.txt",
        ])
        .ok();
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/data:ro", host.display());
    let r = d.ketch(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/nope"]);
    assert_ne!(r.code, 0);
    assert!(!host.join("nope").exists());

    // A named volume keeps its data from one container to the next.
    d.ketch(&[
        "run",
        "--rm",
        "-v",
        "shared:/vol",
        "busybox",
        "sh",
        "-c",
        "echo kept > /vol/f",
    ])
    .ok();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "-v",
            "shared:/vol:ro",
            "busybox",
            "cat",
            "/vol/f",
        ])
        .ok();
    assert_eq!(out, "kept\n");

    // A missing command is a clear error naming it.
    let r = d.ketch(&["run", "--rm", "busybox", "no-such-cmd"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("no-such-cmd"), "{}", r.stderr);
    // Bad options are refused at create.
    let r = d.ketch(&["create", "--cap-add", "bogus", "busybox"]);
    assert!(r.code != 0 && r.stderr.contains("bogus"), "{}", r.stderr);
    let r = d.ketch(&["create", "--network", "nosuchnet", "busybox"]);
    assert!(
        r.code != 0 && r.stderr.contains("nosuchnet"),
        "{}",
        r.stderr
    );
}

#[test]
fn linux_limits_pause_and_stats() {
    need_linux!();
    let d = daemon();
    // Over --memory: the kernel's OOM killer ends it with 137.
    let r = d.ketch(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "head -c 256m /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    assert_eq!(
        d.ketch(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ])
        .ok(),
        "true 137\n"
    );
    // --pids-limit stops a fork storm.
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--pids-limit",
            "10",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done 2>&1 | tail -1; echo survived",
        ])
        .ok();
    assert!(out.contains("survived"), "{out}");

    d.ketch(&[
        "run",
        "-d",
        "--name",
        "busy",
        "--memory",
        "64m",
        "--cpus",
        "0.5",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do i=$((i+1)); echo n $i; sleep 0.1; done",
    ])
    .ok();
    d.eventually(10, "output", || {
        d.ketch(&["logs", "busy"]).stdout.lines().count() >= 3
    });
    let (code, _, body) = d.http("GET", "/containers/busy/stats?stream=false", "");
    assert_eq!(code, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(s["memory_stats"]["usage"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(
        s["memory_stats"]["limit"].as_u64(),
        Some(64 << 20),
        "{body}"
    );
    assert!(s["pids_stats"]["current"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0,
        "{body}"
    );

    // Paused: the freezer holds it, so its output stops.
    d.ketch(&["pause", "busy"]).ok();
    assert_eq!(d.state("busy"), "paused");
    std::thread::sleep(Duration::from_millis(300));
    let before = d.ketch(&["logs", "busy"]).stdout.lines().count();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(d.ketch(&["logs", "busy"]).stdout.lines().count(), before);
    d.ketch(&["unpause", "busy"]).ok();
    d.eventually(10, "output after unpause", || {
        d.ketch(&["logs", "busy"]).stdout.lines().count() > before
    });
    // stop delivers SIGTERM; the trap exits 0.
    d.ketch(&["stop", "busy"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "busy"])
            .ok(),
        "0\n"
    );
    assert!(d.ketch(&["logs", "busy"]).stdout.contains("bye"));
    // kill -s delivers any signal.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "sig",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got-usr1' USR1; while true; do sleep 0.1; done",
    ])
    .ok();
    std::thread::sleep(Duration::from_millis(300));
    d.ketch(&["kill", "-s", "USR1", "sig"]).ok();
    d.eventually(10, "USR1 handled", || {
        d.ketch(&["logs", "sig"]).stdout.contains("got-usr1")
    });
    assert_eq!(d.state("sig"), "running");
    d.ketch(&["kill", "sig"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "sig"])
            .ok(),
        "137\n"
    );
}

#[test]
fn linux_exec_joins_the_container() {
    need_linux!();
    let d = daemon();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "host",
        "--hostname",
        "inside",
        "-e",
        "FROM_RUN=1",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /work && echo made > /work/f && sleep 100",
    ])
    .ok();
    d.eventually(10, "file", || {
        d.ketch(&["exec", "host", "cat", "/work/f"]).stdout == "made\n"
    });
    // Its namespaces, filesystem, env; the exit code comes back.
    let r = d.ketch(&[
        "exec",
        "-e",
        "X=y",
        "host",
        "sh",
        "-c",
        "echo pid=$$; hostname; ip -o link | cut -d' ' -f2 | cut -d@ -f1; echo $FROM_RUN$X; echo err >&2; exit 5",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0] != "pid=1" && lines[0].starts_with("pid="),
        "{}",
        r.stdout
    );
    // The container's own network: loopback and its bridge interface.
    assert_eq!(&lines[1..], ["inside", "lo:", "eth0", "1y"], "{}", r.stdout);
    assert_eq!(r.stderr, "err\n");
    // stdin, user and working directory.
    let r = d.ketch_stdin(
        &[
            "exec",
            "-i",
            "-u",
            "nobody",
            "-w",
            "/work",
            "host",
            "sh",
            "-c",
            "read x; echo $x $(id -u) $(pwd)",
        ],
        b"hello\n",
    );
    assert_eq!(r.stdout, "hello 65534 /work\n", "{}", r.stderr);
    // A missing command is 127 with its name; a stopped container is refused.
    let r = d.ketch(&["exec", "host", "no-such-cmd"]);
    assert_eq!(r.code, 127);
    assert!(r.stderr.contains("no-such-cmd"), "{}", r.stderr);
    d.ketch(&["exec", "-d", "host", "sleep", "1"]).ok();
    // The processes are in the container's cgroup, reaped: no zombies.
    let ps = d.ketch(&["exec", "host", "ps", "-o", "pid,stat,comm"]).ok();
    assert!(!ps.lines().any(|l| l.contains(" Z ")), "{ps}");
    let top = d.ketch(&["top", "host"]).ok();
    assert!(top.contains("sleep 100") && top.contains("PID"), "{top}");
    // cp out of and into the container, through its own mounts and root.
    let local = d.dir.path().join("cp");
    std::fs::create_dir_all(&local).unwrap();
    let out = local.join("work-copy");
    d.ketch(&["cp", "host:/work", out.to_str().unwrap()]).ok();
    assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "made\n");
    std::fs::write(local.join("in.txt"), "from outside\n").unwrap();
    d.ketch(&["cp", local.join("in.txt").to_str().unwrap(), "host:/work/"])
        .ok();
    d.ketch(&[
        "cp",
        local.join("in.txt").to_str().unwrap(),
        "host:/work/renamed.txt",
    ])
    .ok();
    assert_eq!(
        d.ketch(&["exec", "host", "cat", "/work/in.txt", "/work/renamed.txt"])
            .ok(),
        "from outside\nfrom outside\n"
    );
    let r = d.ketch(&["cp", "host:/no/such", local.to_str().unwrap()]);
    assert!(r.code != 0 && r.stderr.contains("/no/such"), "{}", r.stderr);
    // An absolute symlink is resolved inside the container, never on the host.
    d.ketch(&["exec", "host", "ln", "-s", "/", "/work/root"])
        .ok();
    d.ketch(&[
        "cp",
        local.join("in.txt").to_str().unwrap(),
        "host:/work/root/etc/",
    ])
    .ok();
    assert!(d
        .ketch(&["exec", "host", "cat", "/etc/in.txt"])
        .ok()
        .contains("from outside"));
    assert!(!std::path::Path::new("/etc/in.txt").exists());
    d.ketch(&["stop", "-t", "0", "host"]).ok();
    let r = d.ketch(&["exec", "host", "true"]);
    assert!(
        r.code != 0 && r.stderr.contains("not running"),
        "{}",
        r.stderr
    );
    // cp from a stopped container, and into a created one before it runs.
    let back = local.join("back");
    std::fs::create_dir_all(&back).unwrap();
    d.ketch(&["cp", "host:/work/f", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(back.join("f")).unwrap(), "made\n");
    // Its volumes and binds are there too, read-only where asked.
    let ro = local.join("ro");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::write(ro.join("r.txt"), "bound\n").unwrap();
    let ro_bind = format!("{}:/ro:ro", ro.display());
    d.ketch(&[
        "create",
        "--name",
        "fresh",
        "-v",
        "cpvol:/vol",
        "-v",
        &ro_bind,
        "busybox",
        "cat",
        "/in.txt",
        "/vol/in.txt",
    ])
    .ok();
    let input = local.join("in.txt");
    d.ketch(&["cp", input.to_str().unwrap(), "fresh:/"]).ok();
    d.ketch(&["cp", input.to_str().unwrap(), "fresh:/vol/"])
        .ok();
    let r = d.ketch(&["cp", input.to_str().unwrap(), "fresh:/ro/"]);
    assert!(
        r.code != 0 && r.stderr.to_lowercase().contains("read-only"),
        "{}",
        r.stderr
    );
    d.ketch(&["cp", "fresh:/ro/r.txt", back.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(back.join("r.txt")).unwrap(),
        "bound\n"
    );
    let out = d.ketch(&["start", "-a", "fresh"]).ok();
    assert_eq!(out.matches("from outside").count(), 2, "{out}");
    assert!(!ro.join("in.txt").exists());
    // Its private mount is gone with the helper.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&d.root().display().to_string()),
        "{mounts}"
    );
    // Wasm containers have nothing to exec into.
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["run", "-d", "--name", "wasm1", "spin"]).ok();
    let r = d.ketch(&["exec", "wasm1", "true"]);
    assert!(r.code != 0 && r.stderr.contains("Wasm"), "{}", r.stderr);
    d.ketch(&["rm", "-f", "wasm1"]).ok();
}

#[test]
fn linux_containers_survive_a_ketchd_restart() {
    need_linux!();
    let mut d = daemon();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "tick",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done",
    ])
    .ok();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "short",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ])
    .ok();
    // A web server on a published port (a userland proxy into its
    // network namespace).
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www",
    ])
    .ok();
    let served = || {
        let (code, body) = fetch(port, "GET", "/index.html", b"");
        code == 200 && body.contains("hello-web")
    };
    d.eventually(10, "web server", served);
    assert_eq!(
        d.ketch(&["port", "web"]).ok(),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    // A second container can't take the same port.
    let r = d.ketch(&[
        "run", "-d", "--name", "web2", "-p", &publish, "busybox", "sleep", "5",
    ]);
    assert!(
        r.code != 0 && r.stderr.contains("already in use"),
        "{}",
        r.stderr
    );
    d.eventually(10, "ticks", || {
        d.ketch(&["logs", "tick"]).stdout.contains("tick 2")
    });
    d.crash_and_restart();
    // The port is served again by the new ketchd.
    d.eventually(10, "web server after the restart", served);
    // Still running, and its log still grows.
    assert_eq!(d.state("tick"), "running");
    let n = d.ketch(&["logs", "tick"]).stdout.lines().count();
    d.eventually(10, "more ticks", || {
        d.ketch(&["logs", "tick"]).stdout.lines().count() > n + 3
    });
    // logs -f follows the container after the restart.
    let follow = d
        .ketch_cmd(&["logs", "-f", "--tail", "0", "tick"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    // The exit while ketchd was down (or after) is reported as it was.
    d.eventually(10, "short exited", || d.state("short") == "exited");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "short"])
            .ok(),
        "7\n"
    );
    d.ketch(&["stop", "-t", "1", "tick"]).ok();
    let out = follow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "{text}"
    );
    assert_eq!(d.state("tick"), "exited");
    // And it can start again.
    d.ketch(&["start", "tick"]).ok();
    assert_eq!(d.state("tick"), "running");
}

#[test]
fn linux_terminals_and_attach() {
    need_linux!();
    let d = daemon();
    // run -it: a real pty, sized as the client's terminal.
    let (out, code) = in_pty(
        d.ketch_cmd(&["run", "--rm", "-it", "busybox", "sh"]),
        b"stty size; tty; exit 3\r",
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("33 101\r\n/dev/pts/0"), "{out:?}");
    // exec -it in a running -t container.
    d.ketch(&[
        "run",
        "-d",
        "-t",
        "--name",
        "term",
        "busybox",
        "sh",
        "-c",
        "echo ready; sleep 100",
    ])
    .ok();
    let (out, code) = in_pty(
        d.ketch_cmd(&["exec", "-it", "term", "sh"]),
        b"stty size; exit 4\r",
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("33 101"), "{out:?}");
    // A -t container's log is its terminal's output.
    assert_eq!(d.ketch(&["logs", "term"]).ok(), "ready\r\n");
    // attach follows a running container to its exit.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "att",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo bye; exit 9",
    ])
    .ok();
    let r = d.ketch(&["attach", "att"]);
    assert_eq!((r.code, r.stdout.as_str()), (9, "bye\n"), "{}", r.stderr);
    let r = d.ketch(&["attach", "att"]);
    assert!(
        r.code != 0 && r.stderr.contains("stopped container"),
        "{}",
        r.stderr
    );
}

/// The host's network devices.
fn host_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn linux_networks_and_name_resolution() {
    need_linux!();
    let d = daemon();
    // The default bridge: an address from its subnet, a default route.
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

    // A user network: containers reach each other by name and alias.
    let net_id = d.ketch(&["network", "create", "backend"]).ok();
    let ls = d.ketch(&["network", "ls"]).ok();
    for name in ["bridge", "host", "none", "backend"] {
        assert!(ls.contains(name), "{ls}");
    }
    let srv = d
        .ketch(&[
            "run",
            "-d",
            "--name",
            "srv",
            "--network",
            "backend",
            "--network-alias",
            "web",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-srv > /www/index.html && exec httpd -f -p 8080 -h /www",
        ])
        .ok();
    let fetch_by = |name: &str| {
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
    };
    d.eventually(10, "srv by name", || {
        fetch_by("srv").stdout
            == "hello-srv
"
    });
    assert_eq!(
        fetch_by("web").ok(),
        "hello-srv
"
    );
    // The host reaches it on its bridge address too.
    let ip = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.backend.IPAddress}}",
            "srv",
        ])
        .ok();
    let ip: std::net::Ipv4Addr = ip.trim().parse().expect("an address");
    let mut s = std::net::TcpStream::connect((ip, 8080)).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.contains("hello-srv"), "{body}");

    // connect and disconnect a running container.
    d.ketch(&["run", "-d", "--name", "cli", "busybox", "sleep", "100"])
        .ok();
    d.ketch(&["network", "connect", "backend", "cli"]).ok();
    assert_eq!(
        d.ketch(&["exec", "cli", "wget", "-q", "-O-", "http://srv:8080/"])
            .ok(),
        "hello-srv
"
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

    // Errors name what is wrong.
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

    // Nothing is left on the host once they are gone.
    let bridge = format!("kt-{}", &net_id.trim()[..12]);
    assert!(host_links().contains(&bridge));
    d.ketch(&["rm", "-f", "srv", "cli"]).ok();
    d.ketch(&["network", "rm", "backend"]).ok();
    let veths = [
        ketch::runtime::linux::net::host_ifname(srv.trim(), 0),
        bridge,
    ];
    d.eventually(10, "veths and bridge gone", || {
        let links = host_links();
        !veths.iter().any(|v| links.contains(v))
    });
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
    need_linux!();
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

#[test]
fn linux_run_in_builds() {
    need_linux!();
    let d = daemon();
    let dockerfile = "FROM busybox\n\
        RUN mkdir -p /app /tmp && chmod 1777 /tmp && echo built > /app/file \\\n\
            && rm /etc/group && echo 'ada:x:1234:1234::/:/bin/sh' >> /etc/passwd\n\
        USER ada\n\
        RUN id -u > /tmp/who && echo step-output\n\
        USER root\n\
        CMD [\"cat\", \"/app/file\"]\n";
    let r = d.build("built", dockerfile, &[]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.lines().any(|l| l == "step-output"), "{}", r.stdout);
    assert_eq!(d.ketch(&["run", "--rm", "built"]).ok(), "built\n");
    // The deletion is a whiteout in the layer; USER applied to the RUN.
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "built",
            "sh",
            "-c",
            "cat /tmp/who; ls /etc/group || echo gone",
        ])
        .ok();
    assert!(out.starts_with("1234\n") && out.contains("gone"), "{out}");
    // Unchanged: every RUN comes from the cache, and the image is the same.
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "built"]).ok();
    let t0 = std::time::Instant::now();
    let r = d.build("built", dockerfile, &[]);
    let took = t0.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("Using cache").count(), 2, "{}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l == "step-output"),
        "{}",
        r.stdout
    );
    assert_eq!(d.ketch(&["inspect", "-f", "{{.Id}}", "built"]).ok(), id);
    assert!(
        took < Duration::from_secs(2),
        "cached rebuild took {took:?}"
    );
    // A failing RUN fails the build with its output, line and exit code.
    let r = d.build(
        "bad",
        "FROM busybox\nRUN echo failing-output; exit 3\n",
        &[],
    );
    assert_ne!(r.code, 0);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("failing-output")
            && all.contains("line 2")
            && all.contains("non-zero code: 3"),
        "{all}"
    );
}
