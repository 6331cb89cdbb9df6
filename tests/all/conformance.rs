//! WASI conformance of what ketch grants, interface by interface
//! (cli, filesystem, clocks, random, sockets; http in `functions.rs`), for
//! preview 1, preview 2 and 0.3 guests: the probes of
//! `wasm-examples/wasi-probe` (one source built for p1 and p2),
//! `p3-hello` and `p3-net`, run under different run options. 0.3
//! listeners and the socket cap are in `wasm_net.rs`.

use crate::common::*;

/// The probe's line for `name`, from its output.
fn probe_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} line in {out:?}"))
}

#[test]
fn each_interface_gives_exactly_what_the_run_options_grant() {
    let d = TestDaemon::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seen.txt"), "from the host\n").unwrap();
    let grant = format!("{}:/data", dir.path().display());
    let ro = format!("{}:/data:ro", dir.path().display());
    let port = host_echo();
    let dest = format!("127.0.0.1:{port}");
    for v in ["p1", "p2"] {
        let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("wasm-examples/wasi-probe")
            .join(format!("wasi-probe-{v}.wasm"));
        assert!(
            wasm.exists(),
            "{} is missing: run wasm-examples/build.sh",
            wasm.display()
        );
        let wasm = wasm.to_str().unwrap();
        let run = |opts: &[&str], probes: &[&str]| {
            let mut args = vec!["run", "--rm"];
            args.extend(opts);
            args.push(wasm);
            args.extend(probes);
            d.ketch(&args).ok()
        };
        // cli: argv and env are exactly the run's; nothing of ketchd's.
        let out = run(&["-e", "A=1"], &["args", "env"]);
        assert!(
            probe_line(&out, "args").contains(r#""args", "env"]"#),
            "{v}: {out}"
        );
        assert_eq!(probe_line(&out, "env"), "env: ok A=1", "{v}");
        // filesystem: a granted directory is read and written; paths
        // outside it, and escapes through `..`, are not there.
        let out = run(
            &["-v", &grant],
            &[
                "fs=/data",
                "outside=/etc/passwd",
                "outside=/data/../../etc/passwd",
                "outside=/data/seen.txt",
            ],
        );
        assert!(probe_line(&out, "fs").starts_with("fs: ok"), "{v}: {out}");
        let outside: Vec<&str> = out.lines().filter(|l| l.starts_with("outside: ")).collect();
        assert!(outside[0].starts_with("outside: denied"), "{v}: {out}");
        assert!(outside[1].starts_with("outside: denied"), "{v}: {out}");
        assert_eq!(outside[2], "outside: ok read 14 bytes", "{v}: {out}");
        // Read-only: the write fails, the file on the host is untouched.
        let out = run(&["-v", &ro], &["fs=/data"]);
        assert!(!probe_line(&out, "fs").starts_with("fs: ok"), "{v}: {out}");
        assert!(!dir.path().join("probe.txt").exists());
        // clocks and random.
        let out = run(&[], &["clocks", "random"]);
        assert!(
            probe_line(&out, "clocks").starts_with("clocks: ok"),
            "{v}: {out}"
        );
        assert!(
            probe_line(&out, "random").starts_with("random: ok"),
            "{v}: {out}"
        );
        // sockets: preview 1 has none; preview 2 only what is granted.
        let probe = format!("tcp={dest}");
        let denied = run(&[], &[&probe]);
        let granted = run(&["--allow-net", &dest], &[&probe]);
        if v == "p1" {
            assert!(
                probe_line(&denied, "tcp").starts_with("tcp: error Unsupported"),
                "{denied}"
            );
            assert!(
                probe_line(&granted, "tcp").starts_with("tcp: error Unsupported"),
                "{granted}"
            );
        } else {
            assert!(
                probe_line(&denied, "tcp").starts_with("tcp: denied PermissionDenied"),
                "{denied}"
            );
            assert_eq!(
                probe_line(&granted, "tcp"),
                format!(r#"tcp: ok {dest} answered "echo: probe""#)
            );
        }
    }
    // WASI 0.3: cli (args, env, stdout as a stream), clocks, random.
    example_image(&d, "p3-hello");
    let out = d.ketch(&["run", "--rm", "-e", "B=2", "p3-hello", "y"]).ok();
    assert!(out.contains(r#"args ["/p3-hello.wasm", "y"]"#), "{out}");
    assert!(out.contains("env: B=2\n"), "{out}");
    assert!(out.contains("random: "), "{out}");
    // WASI 0.3 filesystem: only the granted directory, read-only when
    // asked, and no way out of it.
    let fs = |opts: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(opts);
        args.extend(["p3-hello", "--fs"]);
        d.ketch(&args).ok()
    };
    let _ = std::fs::remove_file(dir.path().join("written.txt"));
    assert_eq!(
        fs(&["-v", &grant]),
        "preopens: [\"/data\"]\nread: from the host\nwrite: ok\nescape: ErrorCode::NotPermitted\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("written.txt")).unwrap(),
        "from a WASI 0.3 guest\n"
    );
    assert_eq!(
        fs(&["-v", &ro]),
        "preopens: [\"/data\"]\nread: from the host\nwrite: ErrorCode::NotPermitted\nescape: ErrorCode::NotPermitted\n"
    );
    assert_eq!(fs(&[]), "preopens: []\n");
    // WASI 0.3 sockets: tcp denied, then granted.
    example_image(&d, "p3-net");
    let port = port.to_string();
    let denied = d.ketch(&["run", "--rm", "p3-net", "connect", "127.0.0.1", &port]);
    assert_eq!(denied.code, 1, "{}", denied.stderr);
    assert_eq!(denied.stdout.trim(), "error: ErrorCode::AccessDenied");
    let granted = d
        .ketch(&[
            "run",
            "--rm",
            "--allow-net",
            &dest,
            "p3-net",
            "connect",
            "127.0.0.1",
            &port,
        ])
        .ok();
    assert_eq!(granted, "echoed: echo: ping from a WASI 0.3 guest\n");
}
