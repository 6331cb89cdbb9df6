//! Into and out of a Linux container: exec, cp, terminals and attach.

use super::{daemon, detached};
use crate::common::*;
use std::path::Path;

/// `host`: hostname `inside`, FROM_RUN=1 in its environment, /work/f
/// holding "made"; running, with /work/f there, once this returns.
fn host(d: &TestDaemon) {
    detached(
        d,
        "host",
        &["--hostname", "inside", "-e", "FROM_RUN=1"],
        "mkdir -p /work && echo made > /work/f && sleep 100",
    );
    d.eventually(10, "file", || {
        d.ketch(&["exec", "host", "cat", "/work/f"]).stdout == "made\n"
    });
}

#[test]
fn exec_joins_the_namespaces_and_returns_the_exit_code() {
    require!(linux());
    let d = daemon();
    host(&d);
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
}

/// The effective capability set of a process, from its status line.
fn cap_eff(status: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap_or_else(|| panic!("no CapEff in {status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn exec_privileged_gets_every_capability_and_plain_exec_the_containers() {
    require!(linux());
    let d = daemon();
    host(&d);
    const SYS_ADMIN: u64 = 1 << 21;
    let status = |extra: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["host", "cat", "/proc/self/status"]);
        cap_eff(&d.ketch(&args).ok())
    };
    let plain = status(&[]);
    assert_eq!(plain & SYS_ADMIN, 0, "{plain:x}");
    let privileged = status(&["--privileged"]);
    assert_ne!(privileged & SYS_ADMIN, 0, "{privileged:x}");
    assert_eq!(privileged & plain, plain);
    // With a terminal too; and the container's own process is unchanged.
    let tty = d
        .ketch(&[
            "exec",
            "-t",
            "--privileged",
            "host",
            "cat",
            "/proc/self/status",
        ])
        .ok();
    assert_ne!(cap_eff(&tty) & SYS_ADMIN, 0);
    assert_eq!(
        cap_eff(&d.ketch(&["exec", "host", "cat", "/proc/1/status"]).ok()),
        plain
    );
}

#[test]
fn exec_with_stdin_user_and_workdir() {
    require!(linux());
    let d = daemon();
    host(&d);
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
}

/// An exec whose command is missing is 127, one that cannot run 126, as
/// Docker's, with runc's words as dockerd passes them on.
#[test]
fn exec_of_a_missing_command_is_127_and_of_one_that_cannot_run_126() {
    require!(linux());
    let d = daemon();
    host(&d);
    let oci = "OCI runtime exec failed: exec failed: unable to start container process: ";
    for (argv, code, why) in [
        (
            vec!["no-such-cmd"],
            127,
            "exec: \"no-such-cmd\": executable file not found in $PATH",
        ),
        (
            vec!["/no/such"],
            127,
            "exec: \"/no/such\": stat /no/such: no such file or directory",
        ),
        (
            vec!["/etc/passwd"],
            126,
            "exec: \"/etc/passwd\": permission denied",
        ),
        (vec!["/etc"], 126, "exec: \"/etc\": is a directory"),
        // Relative to the exec's directory, through the exec's PATH.
        (vec!["-w", "/bin", "./no-such"], 127, "stat ./no-such"),
        (
            vec!["-e", "PATH=/nowhere", "ls"],
            127,
            "exec: \"ls\": executable file not found in $PATH",
        ),
    ] {
        let mut args = vec!["exec"];
        let (opts, cmd) = argv.split_at(argv.len() - 1);
        args.extend(opts);
        args.push("host");
        args.extend(cmd);
        let r = d.ketch(&args);
        assert_eq!(r.code, code, "{argv:?}: {}", r.stderr);
        assert!(
            r.stderr.contains(oci) && r.stderr.contains(why),
            "{argv:?}: {}",
            r.stderr
        );
    }
    // What is there runs, found as execve finds it.
    assert_eq!(d.ketch(&["exec", "-w", "/bin", "host", "./true"]).code, 0);
}

#[test]
fn detached_execs_are_reaped_and_top_lists_the_processes() {
    require!(linux());
    let d = daemon();
    host(&d);
    d.ketch(&["exec", "-d", "host", "sleep", "1"]).ok();
    // The processes are in the container's cgroup, reaped: no zombies.
    let ps = d.ketch(&["exec", "host", "ps", "-o", "pid,stat,comm"]).ok();
    assert!(!ps.lines().any(|l| l.contains(" Z ")), "{ps}");
    let top = d.ketch(&["top", "host"]).ok();
    assert!(top.contains("sleep 100") && top.contains("PID"), "{top}");
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    require!(linux());
    let d = daemon();
    host(&d);
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "host"]).ok();
    let id = id.trim();
    d.ketch(&["pause", "host"]).ok();
    // Docker's words, which clients match on.
    let r = d.ketch(&["exec", "host", "true"]);
    assert!(
        r.code != 0
            && r.stderr.contains(&format!(
                "Container {id} is paused, unpause the container before exec"
            )),
        "{}",
        r.stderr
    );
    d.ketch(&["unpause", "host"]).ok();
    d.ketch(&["stop", "-t", "0", "host"]).ok();
    for verb in [&["exec", "host", "true"][..], &["top", "host"]] {
        let r = d.ketch(verb);
        assert!(
            r.code != 0 && r.stderr.contains(&format!("Container {id} is not running")),
            "{verb:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn cp_out_of_and_into_a_running_container() {
    require!(linux());
    let d = daemon();
    host(&d);
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
}

#[test]
fn cp_resolves_an_absolute_symlink_inside_the_container() {
    require!(linux());
    let d = daemon();
    host(&d);
    let input = d.dir.path().join("in.txt");
    std::fs::write(&input, "from outside\n").unwrap();
    d.ketch(&["exec", "host", "ln", "-s", "/", "/work/root"])
        .ok();
    d.ketch(&["cp", input.to_str().unwrap(), "host:/work/root/etc/"])
        .ok();
    assert!(d
        .ketch(&["exec", "host", "cat", "/etc/in.txt"])
        .ok()
        .contains("from outside"));
    assert!(!Path::new("/etc/in.txt").exists());
}

#[test]
fn cp_from_a_stopped_container() {
    require!(linux());
    let d = daemon();
    host(&d);
    d.ketch(&["stop", "-t", "0", "host"]).ok();
    let back = d.dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    d.ketch(&["cp", "host:/work/f", back.to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read_to_string(back.join("f")).unwrap(), "made\n");
}

#[test]
fn cp_into_a_created_container_reaches_its_volumes_and_binds() {
    require!(linux());
    let d = daemon();
    let local = d.dir.path().join("cp");
    let back = local.join("back");
    std::fs::create_dir_all(&back).unwrap();
    let input = local.join("in.txt");
    std::fs::write(&input, "from outside\n").unwrap();
    // Its volumes and binds are there before it runs, read-only where asked.
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
}

/// Needs no Linux container, only the refusal.
#[test]
fn wasm_containers_have_nothing_to_exec_into() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["run", "-d", "--name", "wasm1", "spin"]).ok();
    let r = d.ketch(&["exec", "wasm1", "true"]);
    assert!(r.code != 0 && r.stderr.contains("Wasm"), "{}", r.stderr);
    d.ketch(&["rm", "-f", "wasm1"]).ok();
}

#[test]
fn run_it_gets_a_pty_sized_as_the_clients_terminal() {
    require!(linux());
    let d = daemon();
    let (out, code) = in_pty(
        d.ketch_cmd(&["run", "--rm", "-it", "busybox", "sh"]),
        "# ",
        b"stty size; tty; exit 3\r",
    );
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("33 101\r\n/dev/pts/0"), "{out:?}");
}

/// ctrl-p ctrl-q (or `--detach-keys`) on an attached terminal ends the
/// attach, or the exec's, and leaves the container and the exec running.
#[test]
fn detach_keys_leave_the_container_and_its_exec_running() {
    require!(linux());
    let d = daemon();
    let (out, code) = in_pty(
        d.ketch_cmd(&["run", "-it", "--name", "dk", "busybox", "sh"]),
        "# ",
        b"touch /marker\r\x10\x11",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(d.state("dk"), "running");
    d.eventually(10, "the command typed before the keys", || {
        d.ketch(&["exec", "dk", "ls", "/marker"]).code == 0
    });
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = d
        .ketch(&[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "event=detach",
            "--format",
            "{{.Action}} {{.Actor.Attributes.name}}",
        ])
        .ok();
    assert_eq!(events, "detach dk\n");
    // Other keys, on a second attach; a near miss goes through.
    let (out, code) = in_pty(
        d.ketch_cmd(&["attach", "--detach-keys", "X,Y", "dk"]),
        "",
        b"echo nearXmiss > /near\rXY",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(d.state("dk"), "running");
    d.eventually(10, "the near miss", || {
        d.ketch(&["exec", "dk", "cat", "/near"]).stdout == "nearXmiss\n"
    });
    // An exec detached from runs on.
    let (out, code) = in_pty(
        d.ketch_cmd(&["exec", "-it", "dk", "sh", "-c", "echo started; exec cat"]),
        "started",
        b"\x10\x11",
    );
    assert_eq!(code, 0, "{out}");
    let ps = d.ketch(&["exec", "dk", "ps", "-o", "args"]).ok();
    assert!(ps.lines().any(|l| l.trim() == "cat"), "{ps}");
    let r = d.ketch(&["attach", "--detach-keys", "ctrl-1", "dk"]);
    assert!(
        r.code != 0 && r.stderr.contains("Invalid detach keys (ctrl-1) provided"),
        "{}",
        r.stderr
    );
    d.ketch(&["rm", "-f", "dk"]).ok();
}

#[test]
fn exec_it_in_a_tty_container_whose_log_is_its_terminal() {
    require!(linux());
    let d = daemon();
    detached(&d, "term", &["-t"], "echo ready; sleep 100");
    let (out, code) = in_pty(
        d.ketch_cmd(&["exec", "-it", "term", "sh"]),
        "# ",
        b"stty size; exit 4\r",
    );
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("33 101"), "{out:?}");
    // A -t container's log is its terminal's output.
    assert_eq!(d.ketch(&["logs", "term"]).ok(), "ready\r\n");
}

#[test]
fn attach_follows_a_running_container_to_its_exit() {
    require!(linux());
    let d = daemon();
    // The second's wait is the point: attach must join a container still
    // running and stay until it exits.
    detached(&d, "att", &[], "sleep 1; echo bye; exit 9");
    let r = d.ketch(&["attach", "att"]);
    assert_eq!((r.code, r.stdout.as_str()), (9, "bye\n"), "{}", r.stderr);
    let r = d.ketch(&["attach", "att"]);
    assert!(
        r.code != 0 && r.stderr.contains("stopped container"),
        "{}",
        r.stderr
    );
}

/// A multiplexed stream's frames: (stream id, payload).
fn demux(mut b: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while b.len() >= 8 {
        let n = u32::from_be_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert!(
            b[1..4] == [0, 0, 0] && b.len() >= 8 + n,
            "not a frame: {b:?}"
        );
        out.push((b[0], String::from_utf8_lossy(&b[8..8 + n]).into_owned()));
        b = &b[8 + n..];
    }
    assert!(b.is_empty(), "a torn frame: {b:?}");
    out
}

/// `attach` with `logs`, `stream`, `stdout` and `stderr` in each
/// combination answers as dockerd does: the streams asked for, in order,
/// framed with their ids (`multiplexed-stream`) without a terminal, raw
/// (`raw-stream`) with one; `stream=0` ends after the logs.
#[test]
fn attach_gives_the_streams_asked_for_framed_as_docker_frames_them() {
    require!(linux());
    let d = daemon();
    // Apart in time: the two pipes are read apart, so only time orders
    // them (in dockerd as here).
    let script = "echo out1; sleep 0.2; echo err1 >&2; sleep 0.2; echo out2";
    d.ketch(&["run", "--name", "plain", "busybox", "sh", "-c", script])
        .ok();
    let attach = |c: &str, q: &str| {
        let r = d
            .request("POST", &format!("/v1.50/containers/{c}/attach?{q}"), "")
            .expect("attach");
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r
    };
    let multiplexed = "application/vnd.docker.multiplexed-stream";
    for (q, want) in [
        (
            "logs=1&stream=0&stdout=1&stderr=1",
            vec![(1, "out1\n"), (2, "err1\n"), (1, "out2\n")],
        ),
        (
            "logs=1&stream=0&stdout=1",
            vec![(1, "out1\n"), (1, "out2\n")],
        ),
        ("logs=1&stream=0&stderr=1", vec![(2, "err1\n")]),
        ("logs=1&stream=0", vec![]),
        ("logs=0&stream=0&stdout=1&stderr=1", vec![]),
    ] {
        let r = attach("plain", q);
        assert_eq!(r.header("content-type"), Some(multiplexed), "{q}");
        let got = demux(&r.body);
        let want: Vec<(u8, String)> = want.into_iter().map(|(s, t)| (s, t.to_string())).collect();
        assert_eq!(got, want, "{q}");
    }
    // With a terminal: one raw stream, the terminal's.
    d.ketch(&["run", "-t", "--name", "term", "busybox", "sh", "-c", script])
        .ok();
    let r = attach("term", "logs=1&stream=0&stdout=1&stderr=1");
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.docker.raw-stream")
    );
    assert_eq!(r.text(), "out1\r\nerr1\r\nout2\r\n");
    // A running container: stream=1 follows until it exits.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo late; sleep 0.2; echo lerr >&2",
    ])
    .ok();
    let r = attach("live", "stream=1&stdout=1&stderr=1");
    assert_eq!(
        demux(&r.body),
        vec![(1, "late\n".to_string()), (2, "lerr\n".to_string())]
    );
    d.ketch(&["rm", "plain", "term", "live"]).ok();
}
