//! Function containers: wasi-http components served on published ports.
//! All traffic goes to 127.0.0.1.

use crate::common::*;
use std::time::{Duration, Instant};

/// The loopback port a container's port 80 is published on.
fn published(d: &TestDaemon, name: &str) -> u16 {
    let out = d.ketch(&["port", name, "80"]).ok();
    let (ip, port) = out.trim().rsplit_once(':').expect("ip:port");
    assert_eq!(ip, "127.0.0.1", "{out}");
    port.parse().expect("port number")
}

/// The `function_stats` of a container's one-shot stats sample.
fn function_stats(d: &TestDaemon, name: &str) -> serde_json::Value {
    let body = d
        .http(
            "GET",
            &format!("/containers/{name}/stats?stream=0&one-shot=1"),
            "",
        )
        .1;
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["function_stats"].take()
}

#[test]
fn function_serves_a_published_port_through_its_lifecycle() {
    let d = TestDaemon::start();
    example_image(&d, "http-hello");
    let port = free_port();
    let publish = format!("127.0.0.1:{port}:80");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "fn",
        "-p",
        &publish,
        "-e",
        "GREETING=Hi",
        "http-hello",
    ])
    .ok();
    let (status, body) = fetch(port, "GET", "/there", b"");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "Hi from a ketch function! You asked for /there\n");
    // Keep-alive: several requests, one connection, a fresh instance each.
    let mut conn = HttpConn::connect(port).unwrap();
    for i in 0..3 {
        let r = conn
            .request("GET", &format!("/{i}"), &[], b"", false)
            .unwrap();
        let b = r.text();
        assert_eq!(
            (r.status, b.ends_with(&format!("/{i}\n"))),
            (200, true),
            "{b}"
        );
    }
    let ps = d.ketch(&["ps"]).ok();
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    assert_eq!(
        d.ketch(&["port", "fn"]).ok(),
        format!("80/tcp -> 127.0.0.1:{port}\n")
    );

    // A second container cannot take the same host port.
    d.ketch(&["create", "--name", "other", "-p", &publish, "http-hello"])
        .ok();
    let r = d.ketch(&["start", "other"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains(&format!(
            "Bind for 127.0.0.1:{port} failed: port is already allocated"
        )),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("other"), "{}", r.stderr);

    // stop closes the port; start and restart serve it again.
    d.ketch(&["stop", "fn"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "fn"])
            .ok()
            .trim(),
        "0"
    );
    assert_eq!(
        fetch(port, "GET", "/", b"").0,
        0,
        "stopped function still answers"
    );
    assert_eq!(d.ketch(&["port", "fn"]).ok(), "");
    d.ketch(&["start", "fn"]).ok();
    assert_eq!(fetch(port, "GET", "/", b"").0, 200);
    d.ketch(&["restart", "fn"]).ok();
    assert_eq!(fetch(port, "GET", "/", b"").0, 200);
    d.ketch(&["rm", "-f", "fn", "other"]).ok();
    // Nothing holds the port any more.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("port released after rm");
}

#[test]
fn function_without_publish_gets_a_loopback_port_and_logs_and_stats() {
    let d = TestDaemon::start();
    example_image(&d, "http-echo");
    d.ketch(&["run", "-d", "--name", "echo", "http-echo"]).ok();
    let port = published(&d, "echo");
    let ports = d
        .ketch(&["inspect", "-f", "{{json .NetworkSettings.Ports}}", "echo"])
        .ok();
    assert!(
        ports.contains(&format!("\"HostPort\":\"{port}\"")),
        "{ports}"
    );

    let mut conn = HttpConn::connect(port).unwrap();
    let r = conn
        .request(
            "POST",
            "/path?q=1",
            &[("X-Test", "yes")],
            b"some body",
            false,
        )
        .unwrap();
    let body = r.text();
    assert_eq!(r.status, 200, "{body}");
    assert!(body.starts_with("POST /path?q=1\n"), "{body}");
    assert!(body.contains("x-test: yes\n"), "{body}");
    assert!(body.ends_with("\n\nsome body"), "{body}");
    // A chunked body streams to the guest the same way.
    let r = conn.request("PUT", "/c", &[], &[b'x'; 3000], true).unwrap();
    let body = r.text();
    assert_eq!(r.status, 200);
    assert!(body.ends_with(&"x".repeat(3000)), "{}", body.len());

    // The guest's stdout is the container log, a line per request.
    d.eventually(5, "request lines in the log", || {
        let logs = d.ketch(&["logs", "echo"]).stdout;
        logs.contains("POST /path?q=1\n") && logs.contains("PUT /c\n")
    });
    let stats = d.ketch(&["stats", "--no-stream", "echo"]).ok();
    let row = stats.lines().nth(1).expect("a stats row");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "echo", "{stats}");
    // REQUESTS and ERRORS columns.
    assert!(cols.contains(&"2"), "{stats}");
    let f = function_stats(&d, "echo");
    assert_eq!(f["requests"], 2, "{f}");
    assert_eq!(f["errors"], 0, "{f}");
    assert!(f["latency_p99_us"].as_u64().unwrap() > 0, "{f}");
}

#[test]
fn deadline_cuts_off_a_spinning_handler_while_others_succeed_and_stop_drains() {
    let d = TestDaemon::start();
    example_image(&d, "http-spin");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "spin",
        "--http-timeout",
        "400ms",
        "http-spin",
    ])
    .ok();
    let port = published(&d, "spin");
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let t0 = Instant::now();
                (fetch(port, "GET", "/spin", b""), t0.elapsed())
            })
        })
        .collect();
    // Meanwhile (both in flight) the function keeps answering others.
    d.eventually(5, "both spinners in flight", || {
        function_stats(&d, "spin")["in_flight"] == 2
    });
    for _ in 0..5 {
        assert_eq!(fetch(port, "GET", "/", b""), (200, "ok\n".to_string()));
    }
    for s in spinners {
        let ((status, body), took) = s.join().unwrap();
        assert_eq!(status, 504, "{body}");
        assert!(body.contains("deadline of 400ms"), "{body}");
        assert!(took < Duration::from_secs(5), "cut off only after {took:?}");
    }
    assert!(d
        .ketch(&["logs", "spin"])
        .stderr
        .contains("cut off at its deadline of 400ms"));
    let f = function_stats(&d, "spin");
    assert_eq!(f["errors"], 2, "{f}");
    assert_eq!(f["requests"], 7, "{f}");

    // stop drains a request in flight (it ends at its deadline), then exits 0.
    let inflight = std::thread::spawn(move || fetch(port, "GET", "/spin", b"").0);
    d.eventually(5, "the request in flight", || {
        function_stats(&d, "spin")["in_flight"] == 1
    });
    d.ketch(&["stop", "-t", "10", "spin"]).ok();
    assert_eq!(inflight.join().unwrap(), 504);
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "spin"])
            .ok()
            .trim(),
        "0"
    );
}

#[test]
fn concurrency_cap_answers_503_and_pause_holds_requests() {
    let d = TestDaemon::start();
    example_image(&d, "http-spin");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "capped",
        "--http-concurrency",
        "1",
        "--http-timeout",
        "1s",
        "http-spin",
    ])
    .ok();
    let port = published(&d, "capped");
    let spinner = std::thread::spawn(move || fetch(port, "GET", "/spin", b"").0);
    d.eventually(5, "the spinner in flight", || {
        function_stats(&d, "capped")["in_flight"] == 1
    });
    let (status, body) = fetch(port, "GET", "/", b"");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("limit of 1 requests"), "{body}");
    assert_eq!(spinner.join().unwrap(), 504);
    assert_eq!(fetch(port, "GET", "/", b"").0, 200);

    // Paused: requests wait; unpaused: they are answered.
    d.ketch(&["pause", "capped"]).ok();
    let held = std::thread::spawn(move || fetch(port, "GET", "/", b"").0);
    // Not synchronisation but the behaviour under test: a paused function
    // holds the request, so over a 400 ms window no answer comes.
    std::thread::sleep(Duration::from_millis(400));
    assert!(!held.is_finished(), "a paused function answered");
    d.ketch(&["unpause", "capped"]).ok();
    assert_eq!(held.join().unwrap(), 200);
}

#[test]
fn outgoing_http_is_denied_unless_granted() {
    let d = TestDaemon::start();
    example_image(&d, "http-echo");
    example_image(&d, "http-hello");
    d.ketch(&["run", "-d", "--name", "target", "http-hello"])
        .ok();
    let target = published(&d, "target");
    let url = format!("/fetch?url=http://127.0.0.1:{target}/from-guest");

    d.ketch(&["run", "-d", "--name", "closed", "http-echo"])
        .ok();
    let (status, body) = fetch(published(&d, "closed"), "GET", &url, b"");
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");

    // A grant for another port of the same host does not open this one.
    let wrong = format!("127.0.0.1:{}", target.wrapping_add(1).max(1));
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "wrong",
        "--allow-http",
        &wrong,
        "http-echo",
    ])
    .ok();
    assert_eq!(fetch(published(&d, "wrong"), "GET", &url, b"").0, 502);

    let grant = format!("127.0.0.1:{target}");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "open",
        "--allow-http",
        &grant,
        "http-echo",
    ])
    .ok();
    let (status, body) = fetch(published(&d, "open"), "GET", &url, b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("You asked for /from-guest"), "{body}");
}

#[test]
fn bodies_over_the_limit_and_memory_over_the_limit_are_refused_cleanly() {
    let d = TestDaemon::start();
    example_image(&d, "http-echo");
    example_image(&d, "http-spin");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "small",
        "--http-max-body",
        "1k",
        "http-echo",
    ])
    .ok();
    let port = published(&d, "small");
    let mut conn = HttpConn::connect(port).unwrap();
    let r = conn
        .request("POST", "/", &[], &[b'a'; 2000], false)
        .unwrap();
    let body = r.text();
    assert_eq!(r.status, 413, "{body}");
    assert!(
        body.contains("2000 bytes") && body.contains("1024"),
        "{body}"
    );
    // Without a length, the body is cut off at the limit as it streams.
    let r = HttpConn::connect(port)
        .unwrap()
        .request("POST", "/", &[], &[b'a'; 4000], true)
        .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
    // Under the limit is fine, and the server lives on.
    assert_eq!(fetch(port, "POST", "/", &[b'a'; 1000]).0, 200);

    // --memory applies to each instance: one that grows past it fails
    // alone, and the next request is served.
    d.ketch(&["run", "-d", "--name", "lean", "--memory", "8m", "http-spin"])
        .ok();
    let port = published(&d, "lean");
    assert_eq!(
        fetch(port, "GET", "/grow?mib=1", b""),
        (200, "grew 1 MiB\n".into())
    );
    assert_eq!(fetch(port, "GET", "/grow?mib=64", b"").0, 500);
    assert!(d
        .ketch(&["logs", "lean"])
        .stderr
        .contains("over the container's --memory of 8MiB"));
    assert_eq!(fetch(port, "GET", "/", b"").0, 200);
}

#[test]
fn function_instances_without_memory_flag_get_the_default_cap() {
    let d = TestDaemon::start_with(&["--wasm-memory-default", "8m"]);
    example_image(&d, "http-spin");
    d.ketch(&["run", "-d", "--name", "fn", "http-spin"]).ok();
    let port = published(&d, "fn");
    assert_eq!(
        fetch(port, "GET", "/grow?mib=1", b""),
        (200, "grew 1 MiB\n".into())
    );
    // Over the cap, that request fails alone; the function serves on.
    assert_eq!(fetch(port, "GET", "/grow?mib=64", b"").0, 500);
    let logs = d.ketch(&["logs", "fn"]).stderr;
    assert!(logs.contains("--wasm-memory-default"), "{logs}");
    assert_eq!(fetch(port, "GET", "/", b"").0, 200);
    assert_eq!(d.state("fn"), "running");
}

#[test]
fn bad_function_options_are_clear_errors() {
    let d = TestDaemon::start();
    example_image(&d, "http-hello");
    example_image(&d, "hello");
    // A Wasm command has no sockets to publish.
    let r = d.ketch(&["create", "-p", "8080:80", "hello"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("image hello: cannot publish ports"),
        "{}",
        r.stderr
    );
    // Annotations from any client are checked by the daemon.
    let body =
        r#"{"Image":"http-hello","HostConfig":{"Annotations":{"io.ketch.http.timeout":"soon"}}}"#;
    let (status, text) = d.http("POST", "/containers/create", body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("annotation io.ketch.http.timeout"), "{text}");
    let body =
        r#"{"Image":"http-hello","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"1-2"}]}}}"#;
    let (status, text) = d.http("POST", "/containers/create", body);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("invalid host port"), "{text}");
    let r = d.ketch(&["run", "-d", "-p", "80/sctp", "http-hello"]);
    assert_eq!(r.code, 125);
    assert!(r.stderr.contains("invalid -p"), "{}", r.stderr);
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
}

#[test]
fn a_wasi_0_3_function_is_served_as_a_preview_2_one() {
    let d = TestDaemon::start();
    example_image(&d, "p3-http");
    // Detected by its `wasi:http/handler@0.3` export.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "fn3",
        "-p",
        "127.0.0.1::80",
        "p3-http",
    ])
    .ok();
    let port = published(&d, "fn3");
    // The body is written by a guest task after `handle` returned.
    assert_eq!(
        fetch(port, "GET", "/hi?x=1", b""),
        (
            200,
            "hello from a WASI 0.3 function: Method::Get /hi?x=1\n".into()
        )
    );
    assert_eq!(
        fetch(port, "POST", "/p", b"data"),
        (
            200,
            "hello from a WASI 0.3 function: Method::Post /p\n".into()
        )
    );
    for _ in 0..20 {
        assert_eq!(fetch(port, "GET", "/", b"").0, 200);
    }
    let stats = function_stats(&d, "fn3");
    assert_eq!(stats["requests"], 22, "{stats}");
    assert_eq!(stats["errors"], 0, "{stats}");
    // Paused, a request waits; unpaused, it is answered.
    d.ketch(&["pause", "fn3"]).ok();
    let waiting = std::thread::spawn(move || fetch(port, "GET", "/late", b""));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished());
    d.ketch(&["unpause", "fn3"]).ok();
    assert_eq!(waiting.join().unwrap().0, 200);
    d.ketch(&["stop", "fn3"]).ok();
    assert_eq!(d.state("fn3"), "exited");
    d.ketch(&["rm", "fn3"]).ok();
}

/// `--http-reuse N`: an instance serves up to N requests in turn, then a
/// fresh one takes over; without it every request has a fresh instance.
/// The examples count, in their own memory, the requests their instance
/// served (`x-instance-requests`).
#[test]
fn an_instance_serves_up_to_its_reuse_count() {
    let d = TestDaemon::start();
    for ex in ["http-hello", "p3-http"] {
        example_image(&d, ex);
    }
    let counts = |name: &str, n: usize| -> Vec<String> {
        let port = published(&d, name);
        let mut c = HttpConn::connect(port).unwrap();
        (0..n)
            .map(|_| {
                let r = c.request("GET", "/", &[], b"", false).unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                // The instance goes back to the idle ones just after the
                // client has its answer.
                std::thread::sleep(Duration::from_millis(100));
                r.header("x-instance-requests").unwrap_or("").to_string()
            })
            .collect()
    };
    for (name, image, reuse) in [
        ("fresh", "http-hello", None),
        ("reused", "http-hello", Some("3")),
        ("reused3", "p3-http", Some("2")),
    ] {
        let mut args = vec!["run", "-d", "--name", name, "-p", "127.0.0.1::80"];
        if let Some(n) = reuse {
            args.extend(["--http-reuse", n]);
        }
        args.push(image);
        d.ketch(&args).ok();
    }
    assert_eq!(counts("fresh", 4), ["1", "1", "1", "1"]);
    assert_eq!(counts("reused", 7), ["1", "2", "3", "1", "2", "3", "1"]);
    assert_eq!(counts("reused3", 5), ["1", "2", "1", "2", "1"]);
    // A WASI 0.3 instance serves several requests at once: eight sent
    // together are all answered by one instance.
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "shared3",
        "-p",
        "127.0.0.1::80",
        "--http-reuse",
        "100",
        "p3-http",
    ])
    .ok();
    let port = published(&d, "shared3");
    let together: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = HttpConn::connect(port).unwrap();
                let r = c.request("GET", "/", &[], b"", false).unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
                r.header("x-instance-requests")
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
            })
        })
        .collect();
    let mut seen: Vec<u32> = together.into_iter().map(|t| t.join().unwrap()).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    // inspect shows the option; a bad one is refused by name.
    let ann = d
        .ketch(&[
            "inspect",
            "-f",
            "{{json .HostConfig.Annotations}}",
            "reused",
        ])
        .ok();
    assert!(ann.contains(r#""io.ketch.http.reuse":"3""#), "{ann}");
    let r = d.ketch(&["run", "--rm", "--http-reuse", "0", "http-hello"]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(r.stderr.contains("io.ketch.http.reuse"), "{}", r.stderr);
    d.ketch(&["rm", "-f", "fresh", "reused", "reused3", "shared3"])
        .ok();
}
