//! Running Wasm containers: output, exit codes, isolation, limits, stdin.

use crate::common::*;

#[test]
fn run_prints_output_and_returns_exit_code() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let r = d.ketch(&["run", "--rm", "hello"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stdout, "hello from wat\n");
    // --rm removed it.
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    // A flag `run` does not know, where the image goes: Docker's error and
    // code, and nothing made.
    for verb in ["run", "create"] {
        let r = d.ketch(&[verb, "--rm", "--bogus", "hello"]);
        assert_eq!(r.code, 125, "{}", r.stderr);
        assert!(r.stderr.contains("unknown flag: --bogus"), "{}", r.stderr);
    }
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    // After the image, flags are the command's.
    let r = d.ketch(&["run", "--rm", "hello", "--bogus"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
}

#[test]
fn run_local_wasm_file_without_build() {
    let d = TestDaemon::start();
    let hello = example("hello");
    let r = d.ketch(&[
        "run",
        "--rm",
        "-e",
        "GREETING=hi",
        hello.to_str().unwrap(),
        "Ada",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Hello, Ada!"), "{}", r.stdout);
    assert!(r.stdout.contains("env: GREETING=hi"), "{}", r.stdout);
    // A second run reuses the loaded image.
    let n = d.ketch(&["images", "-q"]).ok();
    d.ketch(&["run", "--rm", hello.to_str().unwrap()]).ok();
    assert_eq!(d.ketch(&["images", "-q"]).ok(), n);
}

#[test]
fn guest_sees_only_granted_args_env_and_dirs() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let out = d
        .ketch(&["run", "--rm", "-e", "A=1", "hello", "xx", "y z"])
        .ok();
    assert!(
        out.contains(r#"args: ["/hello.wasm", "xx", "y z"]"#),
        "{out}"
    );
    assert!(out.contains("env: A=1"), "{out}");
    assert!(
        !out.contains("KETCH_TEST_HOST_SECRET"),
        "host env leaked: {out}"
    );
    assert!(!out.contains("PATH="), "host env leaked: {out}");

    example_image(&d, "volume");
    let vol = tempfile::tempdir().unwrap();
    let spec = format!("{}:/data", vol.path().display());
    let out = d.ketch(&["run", "--rm", "-v", &spec, "volume"]).ok();
    assert!(out.contains("/data/visits.txt has 1 visits"), "{out}");
    assert!(out.contains("/etc is not visible"), "{out}");
    assert_eq!(
        std::fs::read_to_string(vol.path().join("visits.txt")).unwrap(),
        "visit\n"
    );
    // Read-only grant: writing fails inside the guest, the host file is untouched.
    let ro = format!("{}:/data:ro", vol.path().display());
    let r = d.ketch(&["run", "--rm", "-v", &ro, "volume"]);
    assert_eq!(r.code, 2, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        std::fs::read_to_string(vol.path().join("visits.txt")).unwrap(),
        "visit\n"
    );
    // No grant: the directory does not exist for the guest.
    let r = d.ketch(&["run", "--rm", "volume"]);
    assert_eq!(r.code, 2);
}

#[test]
fn preview2_component_stdout_stderr_and_stdin() {
    let d = TestDaemon::start();
    example_image(&d, "component");
    let r = d.ketch_stdin(&["run", "--rm", "-i", "component", "--echo"], b"ping\n");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "Hello from a WASI preview 2 component!\necho: ping\n"
    );
    assert_eq!(r.stderr, "this line goes to stderr\n");
    // The log keeps the streams apart too.
    d.ketch(&["run", "--name", "cc", "component"]).ok();
    let out = d.ketch_cmd(&["logs", "cc"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Hello from a WASI preview 2 component!\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "this line goes to stderr\n"
    );
}

#[test]
fn trap_gives_nonzero_exit_and_message_in_log() {
    let d = TestDaemon::start();
    d.wat_image("trap", TRAP_WAT);
    let r = d.ketch(&["run", "--name", "tt", "trap"]);
    assert_eq!(r.code, 134);
    let logs = d.ketch(&["logs", "tt"]);
    assert!(logs.stderr.contains("unreachable"), "{}", logs.stderr);
    assert!(d
        .ketch(&["inspect", "-f", "{{.State.Error}}", "tt"])
        .ok()
        .contains("unreachable"));
}

#[test]
fn memory_limit_fails_the_guest_not_the_daemon() {
    let d = TestDaemon::start();
    d.wat_image("grow", GROW_WAT);
    let r = d.ketch(&["run", "--name", "gg", "--memory", "1m", "grow"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.OOMKilled}}", "gg"])
            .ok()
            .trim(),
        "true"
    );
    assert_eq!(d.http("GET", "/_ping", "").0, 200, "daemon must survive");
    // Below one Wasm page is refused up front.
    let r = d.ketch(&["run", "--memory", "1k", "grow"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("memory"), "{}", r.stderr);
}

#[test]
fn invalid_wasm_is_refused_at_create() {
    let d = TestDaemon::start();
    d.build(
        "notwasm",
        "FROM scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
        &[("m.wasm", b"\0asm\x01\0\0\0garbage")],
    )
    .ok();
    let r = d.ketch(&["run", "--name", "xx", "notwasm"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains("/m.wasm in image notwasm:latest is not a valid WebAssembly module"),
        "{}",
        r.stderr
    );
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "", "nothing half-created");
    // A Linux-looking image names the problem.
    d.build(
        "textonly",
        "FROM scratch\nCOPY run.sh /run.sh\nENTRYPOINT [\"/run.sh\"]\n",
        &[("run.sh", b"#!/bin/sh\necho hi\n")],
    )
    .ok();
    let r = d.ketch(&["run", "textonly"]);
    if crate::common::linux().is_ok() {
        // The Linux backend takes it, and cannot run the script (COPY left
        // it without an execute bit): 126, as Docker.
        assert_eq!(r.code, 126, "{}", r.stderr);
        assert!(
            r.stderr.contains("\"/run.sh\": permission denied"),
            "{}",
            r.stderr
        );
    } else {
        assert_eq!(r.code, 125);
        assert!(r.stderr.contains("textonly"), "{}", r.stderr);
    }
}

#[test]
fn entrypoint_workdir_and_env_file_flags() {
    let d = TestDaemon::start();
    let hello = std::fs::read(example("hello")).unwrap();
    let wat = wat::parse_str(HELLO_WAT).unwrap();
    d.build("two", "FROM scratch\nENV FROM_IMAGE=yes\nCOPY a.wasm /bin/a.wasm\nCOPY b.wasm /bin/b.wasm\nENTRYPOINT [\"/bin/a.wasm\"]\n", &[("a.wasm", &wat), ("b.wasm", &hello)]).ok();
    assert_eq!(d.ketch(&["run", "--rm", "two"]).code, 3);
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--entrypoint",
            "b.wasm",
            "-w",
            "/bin",
            "two",
            "X",
        ])
        .ok();
    assert!(out.contains("Hello, X!"), "{out}");
    assert!(out.contains("env: FROM_IMAGE=yes"), "{out}");
    let env_file = d.dir.path().join("env.list");
    std::fs::write(&env_file, "# comment\nA=1\n\nB=two words\n").unwrap();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--env-file",
            env_file.to_str().unwrap(),
            "-e",
            "FROM_IMAGE=overridden",
            "--entrypoint",
            "/bin/b.wasm",
            "two",
        ])
        .ok();
    assert!(
        out.contains("env: A=1") && out.contains("env: B=two words"),
        "{out}"
    );
    assert!(
        out.contains("env: FROM_IMAGE=overridden") && !out.contains("FROM_IMAGE=yes"),
        "{out}"
    );
    let r = d.ketch(&["run", "--rm", "--entrypoint", "/nope.wasm", "two"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("/nope.wasm"), "{}", r.stderr);
}

#[test]
fn named_volumes_outlive_their_containers() {
    let d = TestDaemon::start();
    example_image(&d, "volume");
    assert_eq!(
        d.ketch(&["volume", "create", "--label", "team=a", "visits"])
            .ok(),
        "visits\n"
    );
    // A volume used by name keeps its data across containers.
    for n in 1..=2 {
        let out = d
            .ketch(&["run", "--rm", "-v", "visits:/data", "volume"])
            .ok();
        assert!(out.contains(&format!("has {n} visits")), "{out}");
    }
    // Named on first use, as Docker does; and an anonymous one for -v /path.
    d.ketch(&[
        "run",
        "--name",
        "user",
        "-v",
        "auto:/data",
        "-v",
        "/scratch",
        "volume",
    ])
    .ok();
    let ls = d.ketch(&["volume", "ls", "-q"]).ok();
    assert!(ls.contains("visits\n") && ls.contains("auto\n"), "{ls}");
    assert_eq!(ls.lines().count(), 3, "{ls}");
    let info: serde_json::Value =
        serde_json::from_str(&d.ketch(&["volume", "inspect", "visits"]).ok()).unwrap();
    assert_eq!(info[0]["Labels"]["team"], "a");
    assert_eq!(info[0]["Driver"], "local");
    let data = std::path::Path::new(info[0]["Mountpoint"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(data.join("visits.txt")).unwrap(),
        "visit\nvisit\n"
    );
    // In use: refused, naming the container; prune leaves it alone.
    let r = d.ketch(&["volume", "rm", "auto"]);
    assert!(r.code != 0 && r.stderr.contains("in use"), "{}", r.stderr);
    d.ketch(&["volume", "prune", "-a", "-f"]).ok();
    let ls = d.ketch(&["volume", "ls", "-q"]).ok();
    assert!(!ls.contains("visits") && ls.contains("auto\n"), "{ls}");
    assert_eq!(
        ls.lines().count(),
        2,
        "the anonymous one is in use too: {ls}"
    );
    // Once unused, a plain prune removes anonymous volumes only.
    d.ketch(&["rm", "user"]).ok();
    d.ketch(&["volume", "prune", "-f"]).ok();
    assert_eq!(d.ketch(&["volume", "ls", "-q"]).ok(), "auto\n");
    d.ketch(&["volume", "rm", "auto"]).ok();
    assert_eq!(d.ketch(&["volume", "ls", "-q"]).ok(), "");
    // A create that fails on its image makes none of its volumes.
    let r = d.ketch(&[
        "create",
        "-v",
        "/scratch",
        "-v",
        "left:/data",
        "nosuchimage",
    ]);
    assert!(
        r.code != 0 && r.stderr.contains("nosuchimage"),
        "{}",
        r.stderr
    );
    assert_eq!(d.ketch(&["volume", "ls", "-q"]).ok(), "");
    let r = d.ketch(&["volume", "rm", "nosuch"]);
    assert!(
        r.code != 0 && r.stderr.contains("no such volume"),
        "{}",
        r.stderr
    );
    d.ketch(&["volume", "rm", "-f", "nosuch"]).ok();
    let r = d.ketch(&["volume", "create", "../evil"]);
    assert!(
        r.code != 0 && r.stderr.contains("invalid characters"),
        "{}",
        r.stderr
    );
}

/// Spins forever with 64 MiB of memory from its instantiation on.
const HOG_WAT: &str = r#"(module (memory 1024) (func (export "_start") (loop $l (br $l))))"#;

#[test]
fn guests_get_a_default_cap_and_share_the_daemon_budget() {
    let d = TestDaemon::start_with(&[
        "--wasm-memory-default",
        "2m",
        "--wasm-memory-budget",
        "100m",
    ]);
    d.wat_image("grow", GROW_WAT);
    d.wat_image("hog", HOG_WAT);
    let usage = |name: &str| {
        let (_, body) = d.http("GET", &format!("/containers/{name}/stats?stream=false"), "");
        let s: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        s["memory_stats"]["usage"].as_u64().unwrap_or(0)
    };
    d.ketch(&["run", "-d", "--name", "hog", "--memory", "80m", "hog"])
        .ok();
    d.eventually(10, "hog to hold 64 MiB", || usage("hog") == 64 << 20);
    // Without --memory, a guest stops at the daemon's default cap, alone.
    let r = d.ketch(&["run", "--name", "gg", "grow"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    let oom = |name: &str| {
        d.ketch(&["inspect", "-f", "{{.State.OOMKilled}}", name])
            .ok()
            .trim()
            .to_string()
    };
    assert_eq!(oom("gg"), "true");
    let logs = d.ketch(&["logs", "gg"]);
    assert!(
        logs.stderr.contains("--wasm-memory-default"),
        "{}",
        logs.stderr
    );
    // The first hog holds 64 of the 100 MiB: a second one does not fit,
    // and its start is refused (503) naming the budget.
    let r = d.ketch(&["run", "--name", "hog2", "--memory", "80m", "hog"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("--wasm-memory-budget"), "{}", r.stderr);
    assert_eq!(d.state("hog2"), "created");
    // One that starts within it and then grows fails alone, OOM-killed.
    let r = d.ketch(&["run", "--name", "grow2", "--memory", "80m", "grow"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert_eq!(oom("grow2"), "true");
    let logs = d.ketch(&["logs", "grow2"]);
    assert!(
        logs.stderr.contains("--wasm-memory-budget"),
        "{}",
        logs.stderr
    );
    assert!(d.daemon_log().contains("--wasm-memory-budget"));
    assert_eq!(d.state("hog"), "running");
    // Removing the first gives its share back.
    d.ketch(&["rm", "-f", "hog"]).ok();
    d.ketch(&["start", "hog2"]).ok();
    d.eventually(10, "hog2 to hold 64 MiB", || usage("hog2") == 64 << 20);
    assert_eq!(d.state("hog2"), "running");
    d.ketch(&["rm", "-f", "hog2"]).ok();
    // A size below one Wasm page is refused at startup.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketchd"))
        .args(["--wasm-memory-budget", "1k"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Wasm page"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn starts_past_capacity_are_refused_by_name_and_the_rest_run_on() {
    let d = TestDaemon::start_with(&["--wasm-max-guests", "3"]);
    example_image(&d, "ticker");
    for i in 0..3 {
        d.ketch(&["run", "-d", "--name", &format!("t{i}"), "ticker", "60000"])
            .ok();
    }
    // A flood of creates and starts past the cap, each a 503 that names
    // the container and the limit.
    for i in 0..20 {
        let (code, body) = d.http(
            "POST",
            &format!("/containers/create?name=f{i}"),
            r#"{"Image":"ticker","Cmd":["60000"]}"#,
        );
        assert_eq!(code, 201, "{body}");
        let (code, body) = d.http("POST", &format!("/containers/f{i}/start"), "");
        assert_eq!(code, 503, "{body}");
        assert!(
            body.contains(&format!("f{i}")) && body.contains("--wasm-max-guests"),
            "{body}"
        );
    }
    let r = d.ketch(&["run", "--name", "late", "ticker", "60000"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("--wasm-max-guests"), "{}", r.stderr);
    // A client that goes away in the middle of a create body makes nothing.
    {
        let mut s = std::os::unix::net::UnixStream::connect(&d.socket).expect("connect");
        use std::io::Write;
        s.write_all(
            b"POST /containers/create?name=cut HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"Image\":\"tick",
        )
        .unwrap();
    }
    for i in 0..3 {
        assert_eq!(d.state(&format!("t{i}")), "running", "t{i}");
    }
    assert_eq!(d.state("f0"), "created");
    let (code, _) = d.http("GET", "/containers/cut/json", "");
    assert_eq!(code, 404, "a cut create leaves no container");
    // A place given back lets the next one in.
    d.ketch(&["rm", "-f", "t0"]).ok();
    d.ketch(&["start", "f0"]).ok();
    assert_eq!(d.state("f0"), "running");
    assert_eq!(d.http("GET", "/_ping", "").0, 200);
    let ids = d.ketch(&["ps", "-aq"]).ok();
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.split_whitespace());
    d.ketch(&rm).ok();
}

#[test]
fn wasi_0_3_commands_run_with_the_same_grants_and_controls() {
    let d = TestDaemon::start();
    example_image(&d, "p3-hello");
    // Detected by its `wasi:cli/run@0.3` export: args, env, random and an
    // async sleep, written through a stream.
    let r = d.ketch(&["run", "--rm", "-e", "A=1", "p3-hello", "x"]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(r#"hello from WASI 0.3: args ["/p3-hello.wasm", "x"]"#),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("env: A=1"), "{}", r.stdout);
    assert!(!r.stdout.contains("KETCH_TEST_HOST_SECRET"), "{}", r.stdout);
    assert!(r.stdout.contains("random: "), "{}", r.stdout);
    // A guest parked in an async host call is paused, stopped and killed
    // as any other.
    d.ketch(&["run", "-d", "--name", "waiting", "p3-hello", "--wait"])
        .ok();
    assert_eq!(d.state("waiting"), "running");
    d.ketch(&["pause", "waiting"]).ok();
    assert_eq!(d.state("waiting"), "paused");
    d.ketch(&["unpause", "waiting"]).ok();
    let t0 = std::time::Instant::now();
    d.ketch(&["stop", "-t", "1", "waiting"]).ok();
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let code = d
        .ketch(&["inspect", "-f", "{{.State.ExitCode}}", "waiting"])
        .ok();
    assert_eq!(code.trim(), "137");
    // A memory cap holds as for preview 2.
    let r = d.ketch(&["run", "--rm", "--memory", "64k", "p3-hello"]);
    assert_ne!(r.code, 0, "{} {}", r.stdout, r.stderr);
}
