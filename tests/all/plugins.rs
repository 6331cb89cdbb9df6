//! The embedding API as a host program uses it: plugins from files, bytes
//! and a registry; calls by name, typed and as commands; hostile plugins
//! contained call by call; the `plugin-host` example's command line.

use crate::common::*;
use crate::registry::Registry;
use ketch::plugin::{Grants, Host, Imports, Limits, Output, PluginError, Reuse, Sandbox, Val};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A host with its own cache directory (not the machine's ketchd's).
fn host(dir: &Path) -> Host {
    Host::builder().cache_dir(dir).build().unwrap()
}

fn s(v: &str) -> Val {
    Val::String(v.into())
}

fn upper(sb: &Sandbox, v: &str) -> String {
    match sb.call("upper", &[s(v)]).unwrap().as_slice() {
        [Val::String(r)] => r.clone(),
        other => panic!("upper returned {other:?}"),
    }
}

/// What a `result<string, string>` export returned.
fn result(vals: Vec<Val>) -> Result<String, String> {
    let text = |v: Option<Box<Val>>| match v.map(|b| *b) {
        Some(Val::String(s)) => s,
        other => panic!("not a string: {other:?}"),
    };
    match vals.into_iter().next() {
        Some(Val::Result(Ok(v))) => Ok(text(v)),
        Some(Val::Result(Err(v))) => Err(text(v)),
        other => panic!("not a result: {other:?}"),
    }
}

#[test]
fn exports_are_called_by_name_typed_and_from_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let plugin = h.load_file(example("plugin-upper")).unwrap();
    assert!(plugin.digest().starts_with("sha256:"));
    for reuse in [Reuse::Fresh, Reuse::Keep] {
        let sb = plugin.sandbox().reuse(reuse).build().unwrap();
        assert_eq!(upper(&sb, "hello, wörld"), "HELLO, WÖRLD");
        let typed = sb.typed::<(String,), (String,)>("upper").unwrap();
        assert_eq!(typed.call(("abc".into(),)).unwrap().0, "ABC");
        // One handle shared by eight threads.
        std::thread::scope(|t| {
            for i in 0..8 {
                let (sb, typed) = (sb.clone(), typed.clone());
                t.spawn(move || {
                    for j in 0..25 {
                        let want = format!("T{i}-{j}");
                        assert_eq!(upper(&sb, &want.to_lowercase()), want);
                        assert_eq!(typed.call((want.to_lowercase(),)).unwrap().0, want);
                    }
                });
            }
        });
        let m = sb.metrics();
        assert_eq!((m.calls, m.traps, m.timeouts), (2 + 400, 0, 0), "{m:?}");
        assert!(m.p50 > Duration::ZERO && m.p99 >= m.p50, "{m:?}");
    }
    // Async callers, on their own runtime.
    let sb = plugin.sandbox().build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(sb.call_async("upper", &[s("async")])).unwrap();
    assert_eq!(out, [s("ASYNC")]);
    // A blocking call from inside a runtime does not panic.
    let inside = rt
        .block_on(async { sb.call("upper", &[s("inside")]) })
        .unwrap();
    assert_eq!(inside, [s("INSIDE")]);

    // Bad calls: each names the plugin and the cause; the next works.
    let name = plugin.name().to_string();
    let e = sb.call("lower", &[s("x")]).unwrap_err();
    assert!(matches!(e, PluginError::NoExport { .. }), "{e}");
    assert!(
        e.to_string().contains(&name) && e.to_string().contains("(it exports upper)"),
        "{e}"
    );
    let e = sb.call("upper", &[Val::U32(7)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("plugin {name}: upper: argument 1 (s) must be a string, got a u32")
    );
    let e = sb.call("upper", &[]).unwrap_err();
    assert!(e.to_string().contains("takes 1 argument(s), got 0"), "{e}");
    let e = sb.typed::<(u32,), (String,)>("upper").err().unwrap();
    assert!(matches!(e, PluginError::Arguments { .. }), "{e}");
    assert_eq!(upper(&sb, "still"), "STILL");
    // A core module has no exports to call: it runs.
    let hello = h.load_file(example("hello")).unwrap();
    let e = hello
        .sandbox()
        .build()
        .unwrap()
        .call("upper", &[])
        .unwrap_err();
    assert!(e.to_string().contains("WASI command module"), "{e}");
}

#[test]
fn wasi_commands_run_with_their_output_captured() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let captured = Grants::new()
        .env("GREETING", "hi")
        .stdout(Output::Capture)
        .stderr(Output::Capture);
    // A preview 1 module.
    let hello = h.load_file(example("hello")).unwrap();
    let sb = hello.sandbox().grants(captured.clone()).build().unwrap();
    let out = sb.run(&["Ada"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.code, 0);
    assert!(
        text.contains("Hello, Ada!") && text.contains("env: GREETING=hi"),
        "{text}"
    );
    // Only what was granted: no host environment.
    assert!(!text.contains("PATH="), "{text}");
    let sb = hello
        .sandbox()
        .grants(captured.clone().env("EXIT_CODE", "7"))
        .build();
    // Not declared by a file plugin, so the host may grant it.
    assert_eq!(sb.unwrap().run(&[]).unwrap().code, 7);
    // A preview 2 command component.
    let comp = h.load_file(example("component")).unwrap();
    let out = comp
        .sandbox()
        .grants(captured)
        .build()
        .unwrap()
        .run(&[])
        .unwrap();
    assert_eq!(out.code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Hello from a WASI preview 2 component!"));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "this line goes to stderr\n"
    );
    // Not captured: nothing comes back.
    let out = comp.sandbox().build().unwrap().run(&[]).unwrap();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[test]
fn bad_plugins_are_errors_that_name_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let e = h.load_bytes("notes.txt", b"hello".to_vec()).err().unwrap();
    assert_eq!(
        e.to_string(),
        "plugin notes.txt: is not WebAssembly (no Wasm magic number)"
    );
    let mut broken = b"\0asm\x01\0\0\0".to_vec();
    broken.extend_from_slice(&[0x01, 0xff, 0xff]);
    let e = h.load_bytes("broken.wasm", broken).err().unwrap();
    assert!(
        e.to_string()
            .starts_with("plugin broken.wasm: does not compile"),
        "{e}"
    );
    let e = h.load_file(dir.path().join("missing.wasm")).err().unwrap();
    assert!(
        e.to_string().contains("missing.wasm: cannot read it"),
        "{e}"
    );
    // Imports nobody provides are refused when the sandbox is built.
    let hostile = h.load_file(example("plugin-hostile")).unwrap();
    let e = hostile.sandbox().build().err().unwrap();
    assert!(
        e.to_string().contains("ketch:hostile/host") && e.to_string().contains("Imports::func"),
        "{e}"
    );
    // A component that is not a command does not run; it is called.
    let upper_plugin = h.load_file(example("plugin-upper")).unwrap();
    let e = upper_plugin
        .sandbox()
        .build()
        .unwrap()
        .run(&[])
        .unwrap_err();
    assert!(matches!(e, PluginError::NoExport { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("not a WASI command: call its exports"),
        "{e}"
    );
    // A directory that is not there is refused at build time too.
    let e = hostile
        .sandbox()
        .grants(Grants::new().dir(dir.path().join("nowhere"), "/data", true))
        .trap_unknown_imports()
        .build()
        .err()
        .unwrap();
    assert!(matches!(e, PluginError::Grant { .. }), "{e}");
    // With unknown imports as traps, the plugin loads; calling one fails.
    let sb = hostile.sandbox().trap_unknown_imports().build().unwrap();
    let e = sb.call("shout", &[Val::U32(1), s("x")]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("host function ketch:hostile/host#log failed: not provided by this host"),
        "{e}"
    );
    assert_eq!(upper(&sb, "ok"), "OK");
}

/// Answers one HTTP request per connection with `hello`, for `count`
/// connections at most.
fn http_server(count: usize) -> (u16, std::thread::JoinHandle<usize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        let mut served = 0;
        for c in l.incoming().take(count) {
            let mut c = c.unwrap();
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
            );
            served += 1;
        }
        served
    });
    (port, t)
}

#[test]
fn hostile_plugins_are_contained_and_the_next_call_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("in.txt"), "granted").unwrap();
    let h = Host::builder()
        .cache_dir(dir.path().join("cache"))
        .memory_budget(1 << 30)
        .build()
        .unwrap();
    let plugin = h.load_file(example("plugin-hostile")).unwrap();
    let log = Imports::new().func("ketch:hostile/host", "log", |args: &[Val]| match args {
        [Val::U32(level), Val::String(msg)] if *level <= 3 => {
            Ok(vec![Val::String(format!("logged at {level}: {msg}"))])
        }
        [Val::U32(level), _] => Err(format!("level {level} is above 3")),
        _ => Err("bad arguments".into()),
    });
    let (port, server) = http_server(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let sock = listener.local_addr().unwrap().to_string();
    let sb = plugin
        .sandbox()
        .grants(
            Grants::new()
                .dir(&data, "/data", true)
                .allow_http(format!("127.0.0.1:{port}"))
                .stdout(Output::Capture)
                .stderr(Output::Capture),
        )
        .limits(
            Limits::new()
                .memory(32 << 20)
                .timeout(Duration::from_millis(500)),
        )
        .imports(log)
        .build()
        .unwrap();
    let name = plugin.name().to_string();
    let after = |what: &str| assert_eq!(upper(&sb, what), what.to_uppercase(), "after {what}");

    // Files: the grant is readable; nothing else is, and it is read-only.
    assert_eq!(
        result(sb.call("read-file", &[s("/data/in.txt")]).unwrap()),
        Ok("granted".into())
    );
    let e = result(sb.call("read-file", &[s("/etc/passwd")]).unwrap()).unwrap_err();
    assert!(!e.is_empty() && !e.contains("root:"), "{e}");
    let e = result(
        sb.call("read-file", &[s("/data/../../../etc/passwd")])
            .unwrap(),
    )
    .unwrap_err();
    assert!(!e.contains("root:"), "{e}");
    after("files");
    let e = result(
        sb.call("write-file", &[s("/data/out.txt"), s("x")])
            .unwrap(),
    )
    .unwrap_err();
    assert!(!e.is_empty(), "{e}");
    assert!(!data.join("out.txt").exists());
    assert_eq!(
        std::fs::read_to_string(data.join("in.txt")).unwrap(),
        "granted"
    );
    after("read-only");

    // Sockets: refused by the call; nothing reaches the listener.
    let e = result(sb.call("connect", &[s(&sock)]).unwrap()).unwrap_err();
    assert!(
        e.to_lowercase().contains("denied") || e.to_lowercase().contains("not permitted"),
        "{e}"
    );
    assert_eq!(
        listener.accept().err().map(|e| e.kind()),
        Some(std::io::ErrorKind::WouldBlock)
    );
    // HTTP: the granted host answers; any other is denied.
    let ok = result(
        sb.call("fetch", &[s(&format!("http://127.0.0.1:{port}/x"))])
            .unwrap(),
    );
    assert_eq!(ok, Ok("200 hello".into()));
    assert_eq!(server.join().unwrap(), 1);
    let e = result(sb.call("fetch", &[s(&format!("http://{sock}/"))]).unwrap()).unwrap_err();
    assert!(e.contains("HttpRequestDenied"), "{e}");
    assert_eq!(
        listener.accept().err().map(|e| e.kind()),
        Some(std::io::ErrorKind::WouldBlock)
    );
    after("network");

    // Spinning: stopped at the deadline, in pure computation.
    let t0 = Instant::now();
    let e = sb.call("spin", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("plugin {name}: spin ran past its deadline of 500ms")
    );
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    after("spin");

    // Allocating without bound: stopped at the cap, the host lives.
    let e = sb.call("hog", &[]).unwrap_err();
    assert!(matches!(e, PluginError::Memory { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("over the plugin's memory limit of 32MiB"),
        "{e}"
    );
    after("hog");

    // A host function given arguments it refuses.
    let e = sb.call("shout", &[Val::U32(9), s("boom")]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "plugin {name}: shout: host function ketch:hostile/host#log failed: level 9 is above 3"
        )
    );
    assert_eq!(
        sb.call("shout", &[Val::U32(2), s("fine")]).unwrap(),
        [s("logged at 2: fine")]
    );
    after("host function");

    // Output, captured per call.
    let out = sb.invoke("say", &[s("abc")]).unwrap();
    assert_eq!(out.results, [Val::U32(3)]);
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice()),
        (&b"abc\n"[..], &b"cba\n"[..])
    );

    let m = sb.metrics();
    assert_eq!((m.traps, m.timeouts), (3, 1), "{m:?}");
    // Fresh instances: nothing is held between calls.
    assert_eq!(h.memory_in_use(), 0);

    // Fuel, where asked for: the spinner stops when it runs out.
    let fueled = plugin
        .sandbox()
        .imports(Imports::new().func("ketch:hostile/host", "log", |_: &[Val]| Ok(vec![s("")])))
        .limits(Limits::new().fuel(5_000_000))
        .build()
        .unwrap();
    let e = fueled.call("spin", &[]).unwrap_err();
    assert!(
        matches!(
            e,
            PluginError::Fuel {
                fuel: 5_000_000,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(upper(&fueled, "fuel"), "FUEL");

    // A host function that panics fails the call, not the host.
    let panicky = plugin
        .sandbox()
        .imports(Imports::new().func(
            "ketch:hostile/host",
            "log",
            |_: &[Val]| -> Result<Vec<Val>, String> { panic!("a bug in the host function") },
        ))
        .build()
        .unwrap();
    let e = panicky.call("shout", &[Val::U32(1), s("x")]).unwrap_err();
    assert!(
        e.to_string().ends_with(
            "host function ketch:hostile/host#log failed: panicked: a bug in the host function"
        ),
        "{e}"
    );
    // One returning the wrong type of value is named as such.
    let wrong = plugin
        .sandbox()
        .imports(
            Imports::new().func("ketch:hostile/host", "log", |_: &[Val]| {
                Ok(vec![Val::U32(1)])
            }),
        )
        .build()
        .unwrap();
    let e = wrong.call("shout", &[Val::U32(1), s("x")]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("log failed: returned a u32 as result 1 where the interface has a string"),
        "{e}"
    );
    // Asking for no practical deadline is not a panic.
    let unbounded = plugin
        .sandbox()
        .trap_unknown_imports()
        .limits(Limits::new().timeout(Duration::MAX))
        .build()
        .unwrap();
    assert_eq!(upper(&unbounded, "forever"), "FOREVER");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt
        .block_on(unbounded.call_async("upper", &[s("async")]))
        .unwrap();
    assert_eq!(out, [s("ASYNC")]);
    assert_eq!(upper(&panicky, "after a panic"), "AFTER A PANIC");

    // A kept instance that traps is dropped; the next call gets a new one.
    let kept = plugin
        .sandbox()
        .reuse(Reuse::Keep)
        .trap_unknown_imports()
        .limits(Limits::new().timeout(Duration::from_millis(200)))
        .build()
        .unwrap();
    assert_eq!(upper(&kept, "a"), "A");
    assert!(matches!(
        kept.call("spin", &[]),
        Err(PluginError::Timeout { .. })
    ));
    assert_eq!(upper(&kept, "b"), "B");
}

#[test]
fn plugins_pulled_from_a_registry_by_tag_and_pinned_digest() {
    let reg = require!(Registry::start(None));
    let d = TestDaemon::start();
    let wasm = std::fs::read(example("plugin-upper")).unwrap();
    d.build(
        "upper",
        "FROM scratch\nLABEL io.ketch.plugin.grants='{\"env\":[\"LANG\"],\"dirs\":[{\"guest\":\"/data\",\"read_only\":true}]}'\nCOPY plugin-upper.wasm /plugin-upper.wasm\nENTRYPOINT [\"/plugin-upper.wasm\"]\n",
        &[("plugin-upper.wasm", &wasm)],
    )
    .ok();
    let tagged = format!("{}/plugins/upper:v1", reg.addr);
    d.ketch(&["tag", "upper", &tagged]).ok();
    let out = d.ketch(&["push", &tagged]).ok();
    let digest = crate::registry::pushed_digest(&out);

    let dir = tempfile::tempdir().unwrap();
    let h = host(dir.path());
    let plugin = h.pull_blocking(&tagged).unwrap();
    let declared = plugin.declared().expect("the image declares grants");
    assert_eq!(declared.env, ["LANG"]);
    let sb = plugin
        .sandbox()
        .grants(
            Grants::new()
                .env("LANG", "C")
                .dir(dir.path(), "/data", true),
        )
        .build()
        .unwrap();
    assert_eq!(upper(&sb, "pulled"), "PULLED");
    // More than declared is refused, by name.
    let e = plugin
        .sandbox()
        .grants(Grants::new().env("HOME", "/"))
        .build()
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .contains("environment variable HOME is not among the grants"),
        "{e}"
    );
    let e = plugin
        .sandbox()
        .grants(Grants::new().dir(dir.path(), "/data", false))
        .build()
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("directory /data (read-write)"),
        "{e}"
    );

    // Pinned by digest, from a fresh cache.
    let pinned = format!("{}/plugins/upper@{digest}", reg.addr);
    let dir2 = tempfile::tempdir().unwrap();
    let p2 = host(dir2.path()).pull_blocking(&pinned).unwrap();
    assert_eq!(p2.digest(), plugin.digest());
    // A digest the registry does not have, or that does not match.
    let wrong = format!("{}/plugins/upper@sha256:{}", reg.addr, "0".repeat(64));
    let e = host(dir2.path()).pull_blocking(&wrong).err().unwrap();
    assert!(
        matches!(e, PluginError::Pull { .. }) && e.to_string().contains(&wrong),
        "{e}"
    );
    // Unreachable, and malformed.
    let e = h
        .pull_blocking("127.0.0.1:1/plugins/upper:v1")
        .err()
        .unwrap();
    assert!(
        e.to_string()
            .starts_with("plugin 127.0.0.1:1/plugins/upper:v1: "),
        "{e}"
    );
    let e = h.pull_blocking("Bad//Ref").err().unwrap();
    assert!(e.to_string().starts_with("plugin Bad//Ref: "), "{e}");
    // Not Wasm: an image whose entrypoint is a text file.
    d.build(
        "notwasm",
        "FROM scratch\nCOPY a.txt /a.txt\nENTRYPOINT [\"/a.txt\"]\n",
        &[("a.txt", b"text")],
    )
    .ok();
    let nw = format!("{}/plugins/notwasm:v1", reg.addr);
    d.ketch(&["tag", "notwasm", &nw]).ok();
    d.ketch(&["push", &nw]).ok();
    let e = h.pull_blocking(&nw).err().unwrap();
    assert!(e.to_string().contains("is not WebAssembly"), "{e}");

    // The example host takes references too.
    let out = plugin_host(
        dir.path(),
        &["--env", "LANG=C", &tagged, "upper", "from a registry"],
    );
    assert_eq!(out.0, Some(0), "{out:?}");
    assert_eq!(out.1, "FROM A REGISTRY\n");
}

/// `plugin-host ARGS` with its cache under `dir`: (exit code, stdout,
/// stderr).
fn plugin_host(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let exe = std::env::current_exe().unwrap();
    let bin: PathBuf = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("examples/plugin-host");
    assert!(bin.exists(), "{} is built by cargo test", bin.display());
    let out = Command::new(bin)
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_plugin_host_example_runs_plugins_and_names_each_failure() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let upper = example("plugin-upper");
    let hostile = example("plugin-hostile");
    let (up, hos) = (upper.to_str().unwrap(), hostile.to_str().unwrap());
    let hello = example("hello");

    assert_eq!(
        plugin_host(dir.path(), &[up, "upper", "hello"]),
        (Some(0), "HELLO\n".into(), String::new())
    );
    // A WASI command: its output passes through, its exit code comes back.
    let (code, out, _) = plugin_host(
        dir.path(),
        &[
            "--env",
            "EXIT_CODE=3",
            hello.to_str().unwrap(),
            "run",
            "Ada",
        ],
    );
    assert_eq!(code, Some(3));
    assert!(out.contains("Hello, Ada!"), "{out}");
    // Grants from the command line.
    let ro = format!("{}:/data:ro", data.display());
    let rw = format!("{}:/data", data.display());
    let (code, out, err) = plugin_host(
        dir.path(),
        &["--dir", &rw, hos, "write-file", "/data/x", "hi"],
    );
    assert_eq!((code, out.as_str()), (Some(0), "wrote 2 bytes\n"), "{err}");
    let (code, _, err) = plugin_host(
        dir.path(),
        &["--dir", &ro, hos, "write-file", "/data/y", "hi"],
    );
    assert_eq!(code, Some(1));
    assert!(
        err.starts_with(&format!(
            "plugin-host: plugin {hos}: write-file returned an error: "
        )),
        "{err}"
    );
    assert!(!data.join("y").exists());
    // The deadline, the memory cap, a trap.
    let (code, _, err) = plugin_host(dir.path(), &["--timeout", "300ms", hos, "spin"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        format!("plugin-host: plugin {hos}: spin ran past its deadline of 300ms\n")
    );
    let (code, _, err) = plugin_host(dir.path(), &["--memory", "16MiB", hos, "hog"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("was stopped at its memory limit: memory refused: over the plugin's memory limit of 16MiB"), "{err}");
    let (code, _, err) = plugin_host(dir.path(), &[hos, "shout", "1", "x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "shout: host function ketch:hostile/host#log failed: not provided by this host"
        ),
        "{err}"
    );
    // Denied HTTP: the plugin's own error, as the host prints it.
    let (code, _, err) = plugin_host(dir.path(), &[hos, "fetch", "http://127.0.0.1:9/"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("HttpRequestDenied"), "{err}");
    // Usage errors.
    let (code, _, err) = plugin_host(dir.path(), &["--dir", "nocolon", up, "upper", "x"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--dir nocolon: expected HOST:GUEST[:ro]"),
        "{err}"
    );
    let (code, _, err) = plugin_host(dir.path(), &[up, "upper"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("takes 1 argument(s), got 0"), "{err}");
}

/// libketch, as `cargo test --workspace` (the README's test command)
/// builds it.
fn libketch() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    if dir.join("libketch.so").exists() {
        Ok(dir)
    } else {
        Err(format!(
            "{}/libketch.so is missing: build it with cargo build -p ketch-capi (cargo test --workspace does)",
            dir.display()
        ))
    }
}

#[test]
fn a_c_host_links_libketch_and_contains_a_hostile_plugin() {
    let lib = require!(libketch());
    require!(tool("cc", "gcc, installed by .ci/setup"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("host");
    let cc = Command::new("cc")
        .args(["-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&host)
        .arg(root.join("tests/c/host.c"))
        .arg(format!("-I{}", root.join("capi/include").display()))
        .arg(format!("-L{}", lib.display()))
        .arg("-lketch")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&host)
        .arg(example("plugin-upper"))
        .arg(example("plugin-hostile"))
        .arg(example("hello"))
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("upper: HELLO FROM C") && text.ends_with("ALL OK\n"),
        "{text}"
    );
}

/// The compiled file of `wasm` in a data root's compile cache; `variant`
/// is "" for ketchd's, ".plugin" for a host's.
fn cached(root: &Path, wasm: &Path, variant: &str, kind: &str) -> PathBuf {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(std::fs::read(wasm).unwrap()));
    root.join("wasm-cache")
        .join(format!("{hex}{variant}.{kind}.cwasm"))
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn ketchd_and_hosts_share_a_cache_and_each_compiles_once() {
    let mut d = TestDaemon::start();
    example_image(&d, "hello");
    d.ketch(&["run", "--rm", "hello"]).ok();
    let by_daemon = cached(&d.root(), &example("hello"), "", "module");
    let daemon_compiled = mtime(&by_daemon);
    // A host compiles for its instance pool (memories behind guard pages),
    // ketchd for dense commands (bounds-checked memories): the same module
    // is two files side by side, each written once.
    let run = |h: &Host| {
        let out = h
            .load_file(example("hello"))
            .unwrap()
            .sandbox()
            .build()
            .unwrap()
            .run(&[])
            .unwrap();
        assert_eq!(out.code, 0);
    };
    run(&host(&d.root()));
    let by_host = cached(&d.root(), &example("hello"), ".plugin", "module");
    let host_compiled = mtime(&by_host);
    run(&host(&d.root()));
    assert_eq!(
        mtime(&by_host),
        host_compiled,
        "a second host compiled again"
    );
    // A restarted ketchd loads its own file, untouched by the hosts.
    d.crash_and_restart();
    d.ketch(&["run", "--rm", "hello"]).ok();
    assert_eq!(mtime(&by_daemon), daemon_compiled, "ketchd compiled again");
}
