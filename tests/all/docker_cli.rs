//! The real `docker` CLI (a client only) driving a test ketchd through
//! `DOCKER_HOST`. Every test needs the CLI; the Linux-container one also
//! root and busybox-static, the registry one docker-registry (see
//! `require!`: under CI a missing one fails the test).

use crate::common::*;
use std::process::{Command, Stdio};

struct Docker<'a> {
    d: &'a TestDaemon,
}

impl Docker<'_> {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.d.socket.display()))
            // This test's own client config, and the classic builder.
            .env("DOCKER_CONFIG", self.d.dir.path().join("docker-config"))
            .env("DOCKER_BUILDKIT", "0")
            .stdin(Stdio::null());
        c
    }

    #[track_caller]
    fn run(&self, args: &[&str]) -> Run {
        let o = self.cmd(args).output().expect("run docker");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "docker {args:?}: {} {}", r.stdout, r.stderr);
        r.stdout
    }
}

/// The docker CLI, as a requirement (see `require!`).
fn docker() -> Result<(), String> {
    tool("docker", "the docker CLI; docker-ce-cli or docker.io")
}

#[test]
fn docker_cli_drives_wasm_containers_and_images() {
    require!(docker());
    let d = TestDaemon::start();
    let dk = Docker { d: &d };
    let v = dk.ok(&[
        "version",
        "--format",
        "{{.Server.APIVersion}} {{.Server.Os}}",
    ]);
    assert!(v.starts_with("1."), "{v}");
    assert!(dk.ok(&["info", "--format", "{{.Containers}}"]).trim() == "0");

    // build through the classic builder, tag, images, rmi.
    let ctx = d.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    write_context(
        &ctx,
        "FROM scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
        &[("m.wasm", &wat::parse_str(HELLO_WAT).unwrap())],
    );
    dk.ok(&["build", "-q", "-t", "hello", ctx.to_str().unwrap()]);
    dk.ok(&["tag", "hello", "hello:v2"]);
    let images = dk.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.contains("hello:latest") && images.contains("hello:v2"),
        "{images}"
    );
    dk.ok(&["rmi", "hello:v2"]);

    // run: exit code, --rm, -e, output.
    let r = dk.run(&["run", "--rm", "hello"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stdout, "hello from wat\n");
    // create, start -a, wait, logs, inspect, ps --format, rm.
    let id = dk.ok(&["create", "--name", "h1", "hello"]);
    let r = dk.run(&["start", "-a", "h1"]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hello from wat\n"));
    assert_eq!(dk.ok(&["wait", "h1"]), "3\n");
    assert_eq!(dk.ok(&["logs", "h1"]), "hello from wat\n");
    assert_eq!(
        dk.ok(&["inspect", "-f", "{{.State.ExitCode}} {{.Platform}}", "h1"]),
        "3 wasi/wasm\n"
    );
    let ps = dk.ok(&["ps", "-a", "--format", "{{.ID}} {{.Names}}"]);
    assert!(ps.contains(&format!("{} h1", &id.trim()[..12])), "{ps}");
    // A spinning guest: -d, pause/unpause, stop, restart, rm -f.
    d.wat_image("spin", SPIN_WAT);
    dk.ok(&["run", "-d", "--name", "sp", "spin"]);
    dk.ok(&["pause", "sp"]);
    assert_eq!(
        dk.ok(&["inspect", "-f", "{{.State.Status}}", "sp"]),
        "paused\n"
    );
    dk.ok(&["unpause", "sp"]);
    dk.ok(&["stop", "-t", "0", "sp"]);
    dk.ok(&["start", "sp"]);
    dk.ok(&["restart", "-t", "0", "sp"]);
    assert_eq!(
        dk.ok(&["inspect", "-f", "{{.State.Status}}", "sp"]),
        "running\n"
    );
    dk.ok(&["rm", "-f", "sp"]);
    // Volumes: a named one and a host directory granted with -v.
    dk.ok(&["volume", "create", "vol1"]);
    assert!(dk.ok(&["volume", "ls", "-q"]).contains("vol1"));
    example_image(&d, "volume");
    let out = dk.ok(&["run", "--rm", "-v", "vol1:/data", "volume"]);
    assert!(out.contains("/data/visits.txt has 1 visits"), "{out}");
    let host = d.dir.path().join("granted");
    std::fs::create_dir_all(&host).unwrap();
    let grant = format!("{}:/data", host.display());
    dk.ok(&["run", "--rm", "-v", &grant, "volume"]);
    assert_eq!(
        std::fs::read_to_string(host.join("visits.txt")).unwrap(),
        "visit\n"
    );
    // -it on a Wasm container: raw output, no pty (a Wasm guest has none).
    let (out, code) = in_pty(dk.cmd(&["run", "--rm", "-it", "hello"]), "", b"");
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("hello from wat"), "{out:?}");
    dk.ok(&["volume", "rm", "vol1"]);
    // save / load, events, system df, container prune.
    let tar = d.dir.path().join("hello.tar");
    dk.ok(&["save", "-o", tar.to_str().unwrap(), "hello"]);
    dk.ok(&["rm", "h1"]);
    dk.ok(&["rmi", "hello"]);
    let out = dk.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("hello"), "{out}");
    let until = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let ev = dk.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert!(
        ev.contains("container create") && ev.contains("container destroy"),
        "{ev}"
    );
    assert!(dk.ok(&["system", "df"]).contains("Images"));
    assert_eq!(dk.run(&["run", "--name", "done1", "hello"]).code, 3);
    dk.ok(&["container", "prune", "-f"]);
    assert_eq!(dk.ok(&["ps", "-aq"]), "");
}

/// push and pull, against a real registry on loopback.
#[test]
fn docker_cli_pushes_and_pulls_through_a_registry() {
    require!(docker());
    let reg = require!(crate::registry::Registry::start(None));
    let d = TestDaemon::start();
    let dk = Docker { d: &d };
    d.wat_image("hello", HELLO_WAT);
    let reference = format!("{}/cli/hello:1", reg.addr);
    dk.ok(&["tag", "hello", &reference]);
    let out = dk.ok(&["push", &reference]);
    assert!(out.contains("digest: sha256:"), "{out}");
    dk.ok(&["rmi", &reference]);
    let out = dk.ok(&["pull", &reference]);
    assert!(out.contains(&reference), "{out}");
    let r = dk.run(&["run", "--rm", &reference]);
    assert_eq!((r.code, r.stdout.as_str()), (3, "hello from wat\n"));
}

/// A daemon with the busybox image built.
fn linux_daemon() -> TestDaemon {
    let d = TestDaemon::start();
    busybox_image(&d);
    d
}

#[test]
fn docker_cli_runs_linux_containers_with_env_exit_codes_and_stdin() {
    require!(docker());
    require!(linux());
    let d = linux_daemon();
    let dk = Docker { d: &d };
    assert_eq!(
        dk.ok(&["run", "--rm", "-e", "A=1", "busybox", "sh", "-c", "echo $A"]),
        "1\n"
    );
    let r = dk.run(&["run", "--rm", "busybox", "sh", "-c", "exit 7"]);
    assert_eq!(r.code, 7);
    let mut child = dk
        .cmd(&["run", "-i", "--rm", "busybox", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"piped\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    // A command that is not there, or cannot run: the docker CLI reads
    // ketchd's words as it reads dockerd's, and `--rm` returns.
    let r = dk.run(&["run", "--rm", "busybox", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("exec: \"nosuchcmd\": executable file not found in $PATH"),
        "{}",
        r.stderr
    );
    let r = dk.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(r.code, 126, "{}", r.stderr);
    assert_eq!(dk.ok(&["ps", "-aq"]), "");
    // The same for exec.
    dk.ok(&["run", "-d", "--name", "execs", "busybox", "sleep", "100"]);
    let r = dk.run(&["exec", "execs", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \"nosuchcmd\": executable file not found in $PATH"
        ),
        "{}",
        r.stderr
    );
    let r = dk.run(&["exec", "execs", "/etc/passwd"]);
    assert_eq!(r.code, 126, "{}", r.stderr);
    dk.ok(&["rm", "-f", "execs"]);
}

/// `web`: busybox httpd serving "page" on `port` of 127.0.0.1, with a
/// 64m memory limit; answering once this returns.
fn web(d: &TestDaemon, dk: &Docker, port: u16) {
    let publish = format!("127.0.0.1:{port}:80");
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        &publish,
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo page > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    d.eventually(10, "served", || {
        fetch(port, "GET", "/", b"").1.contains("page")
    });
}

#[test]
fn docker_cli_publishes_execs_copies_and_reads_stats() {
    require!(docker());
    require!(linux());
    let d = linux_daemon();
    let dk = Docker { d: &d };
    let port = free_port();
    web(&d, &dk, port);
    assert_eq!(
        dk.ok(&["port", "web"]),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );
    // exec (its exit code), top, cp both ways, stats, pause.
    let r = dk.run(&["exec", "web", "sh", "-c", "echo in; exit 4"]);
    assert_eq!((r.code, r.stdout.as_str()), (4, "in\n"));
    assert!(dk.ok(&["top", "web"]).contains("httpd"));
    let local = d.dir.path().join("page.html");
    dk.ok(&["cp", "web:/www/index.html", local.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&local).unwrap(), "page\n");
    std::fs::write(&local, "changed\n").unwrap();
    dk.ok(&["cp", local.to_str().unwrap(), "web:/www/index.html"]);
    assert_eq!(fetch(port, "GET", "/", b"").1, "changed\n");
    let stats = dk.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.MemUsage}}",
        "web",
    ]);
    assert!(stats.contains("web") && stats.contains("64MiB"), "{stats}");
    dk.ok(&["pause", "web"]);
    dk.ok(&["unpause", "web"]);
    dk.ok(&["rm", "-f", "web"]);
}

#[test]
fn docker_cli_follows_logs_and_mounts_host_directories_read_only() {
    require!(docker());
    require!(linux());
    let d = linux_daemon();
    let dk = Docker { d: &d };
    // The pause between the lines is the point: logs -f must follow a
    // container still running, not just read a finished log.
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "talk",
        "busybox",
        "sh",
        "-c",
        "echo one; sleep 1; echo two",
    ]);
    let out = dk.ok(&["logs", "-f", "talk"]);
    assert_eq!(out, "one\ntwo\n");
    // -v: a host directory, read-only.
    let host = d.dir.path().join("ro");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "from host\n").unwrap();
    let grant = format!("{}:/data:ro", host.display());
    assert_eq!(
        dk.ok(&["run", "--rm", "-v", &grant, "busybox", "cat", "/data/f"]),
        "from host\n"
    );
    let r = dk.run(&["run", "--rm", "-v", &grant, "busybox", "touch", "/data/g"]);
    assert!(r.code != 0, "{}", r.stdout);
}

#[test]
fn docker_cli_run_and_exec_it_get_a_pty_sized_as_the_client() {
    require!(docker());
    require!(linux());
    let d = linux_daemon();
    let dk = Docker { d: &d };
    let (out, code) = in_pty(
        dk.cmd(&["run", "--rm", "-it", "busybox", "sh"]),
        "# ",
        b"stty size; exit 5\r",
    );
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("33 101"), "{out:?}");
    dk.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "100"]);
    let (out, code) = in_pty(
        dk.cmd(&["exec", "-it", "box", "sh"]),
        "# ",
        b"stty size; exit 6\r",
    );
    assert_eq!(code, 6, "{out}");
    assert!(out.contains("33 101"), "{out:?}");
    dk.ok(&["rm", "-f", "box"]);
}

#[test]
fn docker_cli_networks_resolve_container_names() {
    require!(docker());
    require!(linux());
    let d = linux_daemon();
    let dk = Docker { d: &d };
    // Networks: create, ls, a container on it found by name, rm.
    dk.ok(&["network", "create", "appnet"]);
    assert!(dk
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .contains("appnet"));
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "appnet",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /w && echo db-here > /w/index.html && exec httpd -f -p 80 -h /w",
    ]);
    d.eventually(10, "db by name", || {
        dk.run(&[
            "run",
            "--rm",
            "--network",
            "appnet",
            "busybox",
            "wget",
            "-q",
            "-O-",
            "http://db/",
        ])
        .stdout
            == "db-here\n"
    });
    let ip = dk.ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.appnet.IPAddress}}",
        "db",
    ]);
    assert!(ip.trim().parse::<std::net::Ipv4Addr>().is_ok(), "{ip}");
    dk.ok(&["rm", "-f", "db"]);
    dk.ok(&["network", "rm", "appnet"]);
}

/// Debian's docker-compose (1.29.2, docker-py) as a requirement.
fn compose() -> Result<(), String> {
    tool(
        "docker-compose",
        "docker-compose; apt-get install docker-compose",
    )
}

/// A compose project that mixes a Wasm function with Linux services, on
/// the project's network, with a named volume and a bind mount: the Linux
/// services reach the function by its service name, and every compose
/// verb works.
#[test]
fn docker_compose_runs_a_project_mixing_wasm_and_linux_services() {
    require!(linux());
    require!(compose());
    let d = TestDaemon::start();
    busybox_image(&d);
    example_image(&d, "http-hello");
    let proj = d.dir.path().join("mix");
    std::fs::create_dir_all(proj.join("site")).unwrap();
    std::fs::write(proj.join("site/index.html"), "hello-web\n").unwrap();
    std::fs::write(
        proj.join("docker-compose.yml"),
        r#"version: "2.4"
services:
  api:
    image: http-hello
    healthcheck:
      test: ["CMD", "http://localhost/health"]
      interval: 1s
  web:
    image: busybox
    command: httpd -f -p 8080 -h /www
    volumes: ["./site:/www:ro"]
    stop_grace_period: 1s
    healthcheck:
      test: wget -qO- http://127.0.0.1:8080/ >/dev/null
      interval: 1s
  client:
    image: busybox
    command: sh -c 'while true; do wget -qO- http://api/from-compose > /data/api; wget -qO- http://web:8080/ > /data/web; echo round; sleep 1; done'
    volumes: ["data:/data"]
    depends_on:
      api: {condition: service_healthy}
      web: {condition: service_healthy}
    stop_grace_period: 1s
volumes:
  data:
"#,
    )
    .unwrap();
    let compose = |args: &[&str]| -> Run {
        let o = Command::new("docker-compose")
            .args(["-p", "mix"])
            .args(args)
            .current_dir(&proj)
            .env("DOCKER_HOST", format!("unix://{}", d.socket.display()))
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .stdin(Stdio::null())
            .output()
            .expect("run docker-compose");
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    };
    let ok = |args: &[&str]| {
        let r = compose(args);
        assert_eq!(
            r.code, 0,
            "docker-compose {args:?}: {} {}",
            r.stdout, r.stderr
        );
        r.stdout
    };
    let answers = || {
        compose(&["exec", "-T", "client", "cat", "/data/api", "/data/web"]).stdout
            == "Hello from a ketch function! You asked for /from-compose\nhello-web\n"
    };
    // The client starts once api and web report healthy.
    ok(&["up", "-d"]);
    let ps = ok(&["ps"]);
    for svc in ["mix_api_1", "mix_web_1", "mix_client_1"] {
        let line = ps.lines().find(|l| l.starts_with(svc)).unwrap_or("");
        assert!(line.contains(" Up"), "{svc}: {ps}");
    }
    for svc in ["mix_api_1", "mix_web_1"] {
        let line = ps.lines().find(|l| l.starts_with(svc)).unwrap_or("");
        assert!(line.contains("(healthy)"), "{svc}: {ps}");
    }
    d.eventually(60, "the client reaches api and web by name", answers);
    assert!(ok(&["logs", "client"]).contains("round"));

    // restart, stop and start: after each the names resolve again.
    ok(&["restart"]);
    ok(&["exec", "-T", "client", "rm", "/data/api", "/data/web"]);
    d.eventually(60, "the names after a restart", answers);
    let api_ip = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.mix_default.IPAddress}}",
            "mix_api_1",
        ])
        .ok();
    ok(&["stop"]);
    assert!(ok(&["ps"]).lines().skip(2).all(|l| !l.contains(" Up")));
    let addrs = Command::new("ip")
        .args(["-o", "-4", "addr"])
        .output()
        .unwrap();
    let held = format!("inet {}/32", api_ip.trim());
    assert!(!String::from_utf8_lossy(&addrs.stdout).contains(&held));
    ok(&["start"]);
    ok(&["exec", "-T", "client", "rm", "-f", "/data/api", "/data/web"]);
    d.eventually(60, "the names after stop and start", answers);

    ok(&["down", "-v"]);
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    assert!(!d.ketch(&["volume", "ls"]).ok().contains("mix_data"));
    assert!(!d.ketch(&["network", "ls"]).ok().contains("mix_default"));
}

/// The verbs and flags Docker users' scripts rely on, through the docker
/// CLI as a user types them: commit with changes, diff, rename, update,
/// export and import, history, system df, --init, health checks with
/// `(healthy)` in ps and the health filter, rotated json-file logs, a
/// bad option refused by name, and a running Wasm function joining a
/// network.
#[test]
fn docker_cli_runs_the_verbs_scripts_rely_on() {
    require!(docker());
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    example_image(&d, "http-hello");
    let dk = Docker { d: &d };
    dk.ok(&[
        "run",
        "-d",
        "--name",
        "app",
        "--init",
        "--health-cmd",
        "true",
        "--health-interval",
        "200ms",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "echo made > /made; exec sleep 100",
    ]);
    d.eventually(20, "healthy in ps", || {
        dk.ok(&[
            "ps",
            "--filter",
            "health=healthy",
            "--format",
            "{{.Names}} {{.Status}}",
        ])
        .contains("app Up")
    });
    let status = dk.ok(&["ps", "--format", "{{.Status}}", "--filter", "name=app"]);
    assert!(status.contains("(healthy)"), "{status}");
    let pid1 = dk.ok(&["exec", "app", "cat", "/proc/1/cmdline"]);
    assert!(pid1.starts_with("/sbin/docker-init"), "{pid1:?}");
    let log = dk.ok(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", "app"]);
    assert!(log.contains(r#""max-size":"1k""#), "{log}");
    assert!(dk.ok(&["diff", "app"]).contains("A /made"));
    dk.ok(&["rename", "app", "site"]);
    dk.ok(&[
        "update",
        "--memory",
        "64m",
        "--restart",
        "on-failure:2",
        "site",
    ]);
    let hc = dk.ok(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.RestartPolicy.Name}}",
        "site",
    ]);
    assert_eq!(hc.trim(), format!("{} on-failure", 64 << 20));
    dk.ok(&[
        "commit",
        "-a",
        "cli",
        "-m",
        "by the docker cli",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        "site",
        "committed:v1",
    ]);
    assert_eq!(dk.ok(&["run", "--rm", "committed:v1"]), "made\n");
    let history = dk.ok(&["history", "--format", "{{.Comment}}", "committed:v1"]);
    assert_eq!(history.lines().next(), Some("by the docker cli"));
    let tar = d.dir.path().join("site.tar");
    dk.ok(&["export", "-o", tar.to_str().unwrap(), "site"]);
    dk.ok(&[
        "import",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        tar.to_str().unwrap(),
        "imported:v1",
    ]);
    assert_eq!(dk.ok(&["run", "--rm", "imported:v1"]), "made\n");
    let df = dk.ok(&["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]);
    assert!(df.contains("Images") && df.contains("Containers 1"), "{df}");

    // A bad option: a 400 naming it, and nothing is made.
    let r = dk.run(&["create", "--name", "bad", "--dns", "1.1.1.1", "busybox"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("HostConfig.Dns"), "{}", r.stderr);
    assert!(!dk
        .ok(&["ps", "-a", "--format", "{{.Names}}"])
        .contains("bad"));

    // A running function joins a network and is reached there by name.
    dk.ok(&["network", "create", "apps"]);
    dk.ok(&["run", "-d", "--name", "fn", "http-hello"]);
    dk.ok(&["network", "connect", "--alias", "api", "apps", "fn"]);
    let got = dk.ok(&[
        "run",
        "--rm",
        "--network",
        "apps",
        "busybox",
        "wget",
        "-q",
        "-O-",
        "http://api/cli",
    ]);
    assert!(got.contains("You asked for /cli"), "{got}");
    dk.ok(&["network", "disconnect", "apps", "fn"]);
    dk.ok(&["rm", "-f", "site", "fn"]);
    dk.ok(&["network", "rm", "apps"]);
}
