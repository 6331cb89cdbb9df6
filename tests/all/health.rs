//! Health checks as a Docker user sets them up: the `--health-*` flags,
//! a Dockerfile `HEALTHCHECK`, the API's `Healthcheck`; and what comes
//! out: `State.Health`, `(healthy)` in `ps`, the `health=` filter and
//! `health_status` events. Linux containers probe with an exec; Wasm
//! commands with a fresh instance of their module; Wasm functions with an
//! HTTP request to themselves.

use crate::common::*;

/// `State.Health` of `name` as JSON (`null` without one).
fn health(d: &TestDaemon, name: &str) -> serde_json::Value {
    let out = d
        .ketch(&["inspect", "-f", "{{json .State.Health}}", name])
        .ok();
    serde_json::from_str(out.trim()).unwrap_or(serde_json::Value::Null)
}

fn status(d: &TestDaemon, name: &str) -> String {
    health(d, name)["Status"].as_str().unwrap_or("").to_string()
}

#[track_caller]
fn becomes(d: &TestDaemon, name: &str, want: &str) {
    d.eventually(30, &format!("{name} to be {want}"), || {
        status(d, name) == want
    });
}

fn listed(d: &TestDaemon, filter: &str) -> String {
    d.ketch(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"])
        .ok()
}

/// A module that, run with no arguments, sleeps for an hour; run with
/// any, exits 0 if it can open `ok` in its first granted directory and 1
/// if not.
const PROBED_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "ok")
  (func (export "_start")
    (drop (call $args (i32.const 0) (i32.const 4)))
    (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 1))
      (then (call $exit (i32.ne (i32.const 0)
        (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 2) (i32.const 0)
          (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 8))))))
    (i32.store (i32.const 216) (i32.const 1))
    (i64.store (i32.const 224) (i64.const 3600000000000))
    (loop $l
      (drop (call $poll (i32.const 200) (i32.const 300) (i32.const 1) (i32.const 400)))
      (br $l))))"#;

#[test]
fn linux_health_checks_turn_healthy_and_unhealthy_as_docker_reports_them() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    let t0 = chrono::Utc::now().timestamp().to_string();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /healthy && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /healthy; exec sleep 300",
    ])
    .ok();
    becomes(&d, "hc", "healthy");
    let h = health(&d, "hc");
    assert_eq!(h["FailingStreak"], 0);
    let log = h["Log"].as_array().unwrap();
    assert_eq!(log.last().unwrap()["ExitCode"], 0);
    assert_eq!(log.last().unwrap()["Output"], "fine\n");
    let ps = d.ketch(&["ps", "--format", "{{.Status}}"]).ok();
    assert!(ps.contains("(healthy)"), "{ps}");
    assert_eq!(listed(&d, "health=healthy").trim(), "hc");
    assert_eq!(listed(&d, "health=unhealthy").trim(), "");

    // The file goes: two failures in a row make it unhealthy.
    d.ketch(&["exec", "hc", "rm", "/healthy"]).ok();
    becomes(&d, "hc", "unhealthy");
    let h = health(&d, "hc");
    assert!(h["FailingStreak"].as_i64().unwrap() >= 2, "{h}");
    assert!(h["Log"].as_array().unwrap().len() <= 5, "{h}");
    assert_eq!(listed(&d, "health=unhealthy").trim(), "hc");
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = d
        .ketch(&[
            "events",
            "--since",
            &t0,
            "--until",
            &until,
            "--filter",
            "event=health_status",
            "--format",
            "{{.Action}}",
        ])
        .ok();
    assert_eq!(
        events.lines().collect::<Vec<_>>(),
        ["health_status: healthy", "health_status: unhealthy"],
        "{events}"
    );
    // Health checks run as execs but are not listed as the container's.
    d.ketch(&["rm", "-f", "hc"]).ok();

    // A probe past its timeout fails with Docker's words, and is ended:
    // timed-out probes do not pile up in the container.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 30",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    becomes(&d, "slow", "unhealthy");
    let log = health(&d, "slow")["Log"].clone();
    assert_eq!(
        log[0]["Output"], "Health check exceeded timeout (300ms)",
        "{log}"
    );
    assert_eq!(log[0]["ExitCode"], -1);
    d.eventually(10, "a few more probes", || {
        health(&d, "slow")["Log"].as_array().unwrap().len() >= 4
    });
    let ps = d.ketch(&["exec", "slow", "ps", "-o", "args"]).ok();
    let probes = ps.lines().filter(|l| l.trim() == "sleep 30").count();
    assert!(probes <= 1, "timed-out probes left running:\n{ps}");
    d.ketch(&["rm", "-f", "slow"]).ok();

    // In its start period, probed every start interval, failures do not
    // count: it stays starting (and says so in ps and the filter) until a
    // probe passes.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "warming",
        "--health-cmd",
        "test -e /ready",
        "--health-interval",
        "100ms",
        "--health-retries",
        "1",
        "--health-start-period",
        "60s",
        "--health-start-interval",
        "100ms",
        "busybox",
        "sleep",
        "300",
    ])
    .ok();
    d.eventually(10, "failed probes in the start period", || {
        health(&d, "warming")["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 3)
    });
    assert_eq!(status(&d, "warming"), "starting");
    assert_eq!(health(&d, "warming")["FailingStreak"], 0);
    let ps = d
        .ketch(&["ps", "--filter", "name=warming", "--format", "{{.Status}}"])
        .ok();
    assert!(ps.contains("(health: starting)"), "{ps}");
    assert_eq!(listed(&d, "health=starting").trim(), "warming");
    d.ketch(&["exec", "warming", "touch", "/ready"]).ok();
    becomes(&d, "warming", "healthy");
    d.ketch(&["rm", "-f", "warming"]).ok();

    // A Dockerfile HEALTHCHECK is the image's, in inspect and in its
    // containers; --no-healthcheck turns it off.
    d.build(
        "checked",
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD [\"true\"]\n",
        &[],
    )
    .ok();
    let img = d
        .ketch(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Healthcheck}}",
            "checked",
        ])
        .ok();
    let img: serde_json::Value = serde_json::from_str(img.trim()).unwrap();
    assert_eq!(img["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(img["Interval"], 200_000_000);
    d.ketch(&["run", "-d", "--name", "inherits", "checked", "sleep", "300"])
        .ok();
    becomes(&d, "inherits", "healthy");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "unchecked",
        "--no-healthcheck",
        "checked",
        "sleep",
        "300",
    ])
    .ok();
    assert_eq!(health(&d, "unchecked"), serde_json::Value::Null);
    assert_eq!(listed(&d, "health=none").trim(), "unchecked");
    // Health is kept after the container stops, as Docker keeps it.
    d.ketch(&["stop", "-t", "1", "inherits"]).ok();
    assert_eq!(status(&d, "inherits"), "healthy");
    d.ketch(&["rm", "-f", "inherits", "unchecked"]).ok();
}

#[test]
fn wasm_health_checks_run_a_fresh_instance_or_ask_the_function() {
    let d = TestDaemon::start();
    d.wat_image("probed", PROBED_WAT);
    let dir = d.dir.path().join("grant");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ok"), "").unwrap();
    let grant = format!("{}:/data", dir.display());
    // The probe is the same module with the health command as its
    // arguments, and the container's grants: it sees the file.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "cmd",
        "-v",
        &grant,
        "--health-cmd",
        "probe ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "probed",
    ])
    .ok();
    becomes(&d, "cmd", "healthy");
    std::fs::remove_file(dir.join("ok")).unwrap();
    becomes(&d, "cmd", "unhealthy");
    assert_eq!(d.state("cmd"), "running");
    let ps = d.ketch(&["ps", "--format", "{{.Names}} {{.Status}}"]).ok();
    assert!(ps.contains("cmd Up") && ps.contains("(unhealthy)"), "{ps}");

    // A function is asked over HTTP, on its own port.
    example_image(&d, "http-echo");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "fn",
        "--health-cmd",
        "http://localhost/healthz",
        "--health-interval",
        "200ms",
        "http-echo",
    ])
    .ok();
    becomes(&d, "fn", "healthy");
    let out = health(&d, "fn")["Log"][0]["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.starts_with("HTTP 200 OK\nGET /healthz"), "{out}");
    // 502 (an outgoing request it may not make) is a failure.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "fn-bad",
        "--health-cmd",
        "http://localhost/fetch?url=http://127.0.0.1:9/",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "http-echo",
    ])
    .ok();
    becomes(&d, "fn-bad", "unhealthy");
    let out = health(&d, "fn-bad")["Log"][0]["Output"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(out.starts_with("HTTP 502"), "{out}");
    // A command cannot probe a function: the result says why.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "fn-cmd",
        "--health-cmd",
        "check",
        "--health-interval",
        "200ms",
        "--health-retries",
        "1",
        "http-echo",
    ])
    .ok();
    becomes(&d, "fn-cmd", "unhealthy");
    let h = health(&d, "fn-cmd");
    assert_eq!(h["Log"][0]["ExitCode"], -1);
    assert!(
        h["Log"][0]["Output"]
            .as_str()
            .unwrap()
            .contains("is a function"),
        "{h}"
    );
    d.ketch(&["rm", "-f", "cmd", "fn", "fn-bad", "fn-cmd"]).ok();
}

#[test]
fn bad_health_checks_are_refused_naming_the_field_and_nothing_is_made() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    for (hc, why) in [
        (r#"{"Test":["BOGUS","x"]}"#, "unknown type \\\"BOGUS\\\""),
        (r#"{"Test":["CMD"]}"#, "no command to run"),
        (
            r#"{"Test":["CMD","x"],"Interval":5}"#,
            "Interval in Healthcheck cannot be less than 1ms",
        ),
        (
            r#"{"Test":["CMD","x"],"Retries":-1}"#,
            "Retries in Healthcheck cannot be negative",
        ),
    ] {
        let body = format!(r#"{{"Image":"spin","Healthcheck":{hc}}}"#);
        let (code, text) = d.http("POST", "/containers/create?name=bad", &body);
        assert_eq!(code, 400, "{hc}: {text}");
        assert!(text.contains(why), "{hc}: {text}");
    }
    let r = d.ketch(&[
        "create",
        "--health-interval",
        "1us",
        "--health-cmd",
        "x",
        "spin",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("cannot be less than 1ms"), "{}", r.stderr);
    let r = d.ketch(&["create", "--no-healthcheck", "--health-cmd", "x", "spin"]);
    assert!(
        r.stderr.contains("--no-healthcheck conflicts"),
        "{}",
        r.stderr
    );
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
}
