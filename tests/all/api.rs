//! The Engine API seen from outside: status codes, error bodies, versions,
//! headers, socket permissions.

use crate::common::*;

#[test]
fn errors_are_json_with_docker_status_codes() {
    let d = TestDaemon::start();
    let (st, body) = d.http("GET", "/v1.50/containers/nope/json", "");
    assert_eq!(st, 404);
    assert_eq!(body, r#"{"message":"No such container: nope"}"#);
    let (st, body) = d.http("POST", "/containers/create", "{not json");
    assert_eq!(st, 400);
    assert!(body.contains("invalid JSON in request body"), "{body}");
    let (st, body) = d.http("POST", "/containers/create", r#"{"Image":"nosuch"}"#);
    assert_eq!(st, 404);
    assert!(body.contains("No such image: nosuch"), "{body}");
    let (st, _) = d.http("GET", "/v1.50/nonexistent", "");
    assert_eq!(st, 404);
    let (st, body) = d.http("GET", "/containers/json?filters=notjson", "");
    assert_eq!(st, 400, "{body}");
    d.wat_image("spin", SPIN_WAT);
    let (st, body) = d.http("POST", "/containers/create?name=xx", r#"{"Image":"spin"}"#);
    assert_eq!(st, 201, "{body}");
    assert_eq!(d.http("POST", "/containers/xx/start", "").0, 204);
    assert_eq!(d.http("POST", "/containers/xx/start", "").0, 304);
    let (st, body) = d.http("DELETE", "/containers/xx", "");
    assert_eq!(st, 409, "{body}");
    assert_eq!(d.http("DELETE", "/containers/xx?force=1", "").0, 204);
    let (st, body) = d.http(
        "POST",
        "/containers/create",
        r#"{"Image":"spin","HostConfig":{"Binds":["../escape:/x"]}}"#,
    );
    assert_eq!(st, 400, "{body}");
}

#[test]
fn ping_version_info_and_socket_mode() {
    let d = TestDaemon::start();
    let r = d.request("GET", "/_ping", "").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(r.header("api-version"), Some("1.50"), "{r:?}");
    assert_eq!(r.header("ostype"), Some("linux"), "{r:?}");
    let (st, body) = d.http("GET", "/v1.44/version", "");
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ApiVersion"], "1.50");
    assert_eq!(v["Components"][0]["Name"], "Engine");
    let (_, body) = d.http("GET", "/info", "");
    let info: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["Containers"], 0);
    assert!(info["Warnings"].is_array());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket must not be world-writable");
    // Arrays are arrays, never null.
    let (_, body) = d.http("GET", "/containers/json?all=1", "");
    assert_eq!(body, "[]");
    let (_, body) = d.http("GET", "/images/json", "");
    assert_eq!(body, "[]");
    let out = d.ketch(&["version"]).ok();
    assert!(out.contains("API version: 1.50"), "{out}");
}

#[test]
fn a_second_daemon_on_the_same_root_is_refused() {
    let d = TestDaemon::start();
    let other = d.dir.path().join("other.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ketchd"))
        .arg("--data-root")
        .arg(d.root())
        .arg("--host")
        .arg(format!("unix://{}", other.display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another ketchd is using data root"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn events_report_the_lifecycle_and_system_df_counts() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    d.ketch(&["run", "--name", "ev", "hello"]);
    d.ketch(&["tag", "hello", "hello:v2"]).ok();
    d.ketch(&["rm", "ev"]).ok();
    let now = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 1
    );
    // A finished window: the past events, then the stream ends.
    let (status, body) = d.http("GET", &format!("/events?since=0&until={now}"), "");
    assert_eq!(status, 200);
    let events: Vec<serde_json::Value> = body
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<String> = events
        .iter()
        .filter(|e| e["Type"] == "container" && e["Actor"]["Attributes"]["name"] == "ev")
        .map(|e| e["Action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["create", "start", "die", "destroy"], "{body}");
    let die = events.iter().find(|e| e["Action"] == "die").unwrap();
    assert_eq!(die["Actor"]["Attributes"]["exitCode"], "3");
    assert_eq!(die["from"], "hello");
    // Filters, through the CLI.
    let out = d
        .ketch(&[
            "events",
            "--since",
            "0",
            "--until",
            &now,
            "--filter",
            "type=image",
        ])
        .ok();
    assert!(
        out.contains(" image tag ") && out.contains("name=hello:v2"),
        "{out}"
    );
    assert!(!out.contains(" container "), "{out}");

    let (status, body) = d.http("GET", "/system/df", "");
    assert_eq!(status, 200, "{body}");
    let df: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(df["Images"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(df["Containers"], serde_json::json!([]));
    assert!(df["LayersSize"].as_u64().unwrap() > 0);
}

#[test]
fn label_filters_must_all_match_and_other_keys_are_alternatives() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let only_ab = d.ketch(&["create", "-l", "a=b", "hello"]).ok();
    let both = d.ketch(&["create", "-l", "a=b", "-l", "zz", "hello"]).ok();
    let ps = |args: &[&str]| {
        let mut all = vec!["ps", "-a", "-q", "--no-trunc"];
        all.extend_from_slice(args);
        let mut ids: Vec<String> = d.ketch(&all).ok().lines().map(str::to_string).collect();
        ids.sort();
        ids
    };
    // docker-compose asks for its project label and its service label.
    assert_eq!(
        ps(&["--filter", "label=a=b", "--filter", "label=zz"]),
        vec![both.trim().to_string()]
    );
    let mut two = vec![only_ab.trim().to_string(), both.trim().to_string()];
    two.sort();
    assert_eq!(ps(&["--filter", "label=a=b"]), two);
    // Two ids are two alternatives.
    assert_eq!(
        ps(&[
            "--filter",
            &format!("id={}", only_ab.trim()),
            "--filter",
            &format!("id={}", both.trim())
        ]),
        two
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_cli_quietly() {
    use std::io::Read;
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    // An inspect of a few hundred KiB: more than a pipe holds.
    let env: Vec<String> = (0..200)
        .map(|i| format!("V{i}={}", "x".repeat(1024)))
        .collect();
    let body = serde_json::json!({"Image": "hello", "Env": env}).to_string();
    let (code, out) = d.http("POST", "/containers/create?name=big", &body);
    assert_eq!(code, 201, "{out}");
    // `ketch inspect big | head -c 1`
    let mut child = d
        .ketch_cmd(&["inspect", "big"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"[");
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `POST /containers/run` upgraded as `ketch run` sends it: the 101's head
/// and the raw stream after it, split into (stream byte, payload) frames;
/// or another answer's head and body.
fn run_in_one_request(d: &TestDaemon, query: &str, body: &str) -> (Response, Vec<(u8, Vec<u8>)>) {
    use std::io::Read;
    let mut c = d.api().unwrap();
    let headers = [
        ("Connection", "Upgrade"),
        ("Upgrade", "tcp"),
        ("Content-Type", "application/json"),
    ];
    let path = format!("/containers/run{query}");
    c.send("POST", &path, &headers, body.as_bytes(), false)
        .unwrap();
    let mut head = c.read_head().unwrap();
    let mut raw = Vec::new();
    c.body(&head).read_to_end(&mut raw).unwrap();
    if head.status != 101 {
        head.body = raw;
        return (head, vec![]);
    }
    let mut frames = Vec::new();
    let mut rest = &raw[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 8, "a torn frame header: {rest:?}");
        assert_eq!(&rest[1..4], &[0, 0, 0], "{raw:?}");
        let len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        frames.push((rest[0], rest[8..8 + len].to_vec()));
        rest = &rest[8 + len..];
    }
    (head, frames)
}

/// What `ketch run` asks of ketchd in one request: create, output, start
/// and the exit, which comes last, after the removal of an `--rm`
/// container. What it refuses, it refuses having made nothing.
#[test]
fn one_request_runs_a_container_to_its_exit() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let count = || {
        let (_, body) = d.http("GET", "/containers/json?all=1", "");
        serde_json::from_str::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .len()
    };

    let (head, frames) = run_in_one_request(
        &d,
        "",
        r#"{"Image":"hello","HostConfig":{"AutoRemove":true}}"#,
    );
    assert_eq!(head.status, 101, "{}", head.text());
    assert!(head
        .header("ketch-container-id")
        .is_some_and(|id| id.len() == 64));
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(frames[0], (1, b"hello from wat\n".to_vec()));
    assert_eq!(frames[1].0, 4);
    let exit: serde_json::Value = serde_json::from_slice(&frames[1].1).unwrap();
    assert_eq!(exit["StatusCode"], 3, "{exit}");
    assert_eq!(count(), 0, "the --rm container outlived its exit frame");

    let (head, frames) = run_in_one_request(&d, "?name=kept", r#"{"Image":"hello"}"#);
    assert_eq!(head.status, 101, "{}", head.text());
    let id = head.header("ketch-container-id").unwrap();
    assert_eq!(frames.last().map(|f| f.0), Some(4), "{frames:?}");
    let (st, body) = d.http("GET", "/containers/kept/json", "");
    assert_eq!(st, 200, "{body}");
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["Id"], id);
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["ExitCode"], 3);

    for (query, body, status, says) in [
        ("", r#"{"Image":"nosuch"}"#, 404, "No such image: nosuch"),
        ("", r#"{"Image":"hello","Tty":true}"#, 400, "no terminal"),
        ("", r#"{"Image":"hello","OpenStdin":true}"#, 400, "no stdin"),
        ("", "{not json", 400, "invalid JSON"),
        ("?name=kept", r#"{"Image":"hello"}"#, 409, "kept"),
    ] {
        let (head, _) = run_in_one_request(&d, query, body);
        assert_eq!(head.status, status, "{body}: {}", head.text());
        assert!(head.text().contains(says), "{body}: {}", head.text());
    }
    let (st, msg) = d.http("POST", "/containers/run", r#"{"Image":"hello"}"#);
    assert_eq!(st, 400, "{msg}");
    assert!(msg.contains("Upgrade: tcp"), "{msg}");
    assert_eq!(count(), 1, "a refused run made a container");
}

/// `filters=` as a query value.
fn filters_query(json: &str) -> String {
    json.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Docker's filter semantics on every list: keys must all hold, the
/// values of one key are alternatives except `label`'s, which must all
/// hold; a key a list does not take, or a value a key cannot have, is a
/// 400 that names it.
#[test]
fn list_filters_combine_as_docker_does_and_name_what_is_wrong() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    d.ketch(&[
        "create", "--name", "both", "--label", "a=b", "--label", "zz=1", "hello",
    ])
    .ok();
    d.ketch(&["create", "--name", "one", "--label", "a=b", "hello"])
        .ok();
    let containers = |filters: &str| -> Vec<String> {
        let (status, body) = d.http(
            "GET",
            &format!("/containers/json?all=1&filters={}", filters_query(filters)),
            "",
        );
        assert_eq!(status, 200, "{filters}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut names: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["Names"][0].as_str().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(containers(r#"{"label":["a=b","zz"]}"#), ["/both"]);
    assert_eq!(containers(r#"{"label":["a=b"]}"#), ["/both", "/one"]);
    assert_eq!(
        containers(r#"{"name":["one","both"],"status":["created"]}"#),
        ["/both", "/one"]
    );
    assert_eq!(
        containers(r#"{"name":["one"],"label":["zz"]}"#),
        Vec::<String>::new()
    );
    assert_eq!(containers(r#"{"since":["both"]}"#), ["/one"]);
    assert_eq!(containers(r#"{"before":["one"]}"#), ["/both"]);
    assert_eq!(
        containers(r#"{"health":["none"],"is-task":["false"]}"#).len(),
        2
    );
    for (filters, status, says) in [
        (r#"{"colour":["red"]}"#, 400, "invalid filter 'colour'"),
        (
            r#"{"status":["sleeping"]}"#,
            400,
            "invalid filter 'status=sleeping'",
        ),
        (r#"{"before":["nosuch"]}"#, 404, "nosuch"),
    ] {
        let (s, body) = d.http(
            "GET",
            &format!("/containers/json?filters={}", filters_query(filters)),
            "",
        );
        assert_eq!(s, status, "{filters}: {body}");
        assert!(body.contains(says), "{filters}: {body}");
    }

    // Networks: labels all hold.
    d.ketch(&[
        "network", "create", "--label", "a=b", "--label", "zz=1", "n-both",
    ])
    .ok();
    d.ketch(&["network", "create", "--label", "a=b", "n-one"])
        .ok();
    let (s, body) = d.http(
        "GET",
        &format!(
            "/networks?filters={}",
            filters_query(r#"{"label":["a=b","zz"]}"#)
        ),
        "",
    );
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("n-both") && !body.contains("n-one"), "{body}");
    let (s, body) = d.http(
        "GET",
        &format!("/networks?filters={}", filters_query(r#"{"status":["x"]}"#)),
        "",
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid filter 'status'"), "{body}");

    // Volumes: name, label and dangling (used by no container).
    d.ketch(&["volume", "create", "--label", "a=b", "v-free"])
        .ok();
    d.ketch(&["volume", "create", "v-used"]).ok();
    d.ketch(&["create", "--name", "user", "-v", "v-used:/data", "hello"])
        .ok();
    let volumes = |filters: &str| -> Vec<String> {
        let (s, body) = d.http(
            "GET",
            &format!("/volumes?filters={}", filters_query(filters)),
            "",
        );
        assert_eq!(s, 200, "{filters}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["Volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["Name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(volumes(r#"{"dangling":["true"]}"#), ["v-free"]);
    assert_eq!(volumes(r#"{"dangling":["false"]}"#), ["v-used"]);
    assert_eq!(volumes(r#"{"label":["a=b"]}"#), ["v-free"]);
    assert_eq!(volumes(r#"{"name":["used"]}"#), ["v-used"]);
    let (s, body) = d.http(
        "GET",
        &format!(
            "/volumes?filters={}",
            filters_query(r#"{"label":["a"],"dangling":["maybe"]}"#)
        ),
        "",
    );
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("invalid filter 'dangling=maybe'"), "{body}");

    // Images: an unknown key is refused; until works (a built image,
    // dated 1970 for a reproducible id, counts from when it was built).
    let (s, body) = d.http(
        "GET",
        &format!(
            "/images/json?filters={}",
            filters_query(r#"{"colour":["x"]}"#)
        ),
        "",
    );
    assert_eq!(s, 400, "{body}");
    let images = |filters: &str| {
        let (s, body) = d.http(
            "GET",
            &format!("/images/json?filters={}", filters_query(filters)),
            "",
        );
        assert_eq!(s, 200, "{body}");
        body
    };
    assert!(images(r#"{"until":["2999-01-01T00:00:00Z"]}"#).contains("hello:latest"));
    assert_eq!(images(r#"{"until":["2000-01-01T00:00:00Z"]}"#).trim(), "[]");
    assert_eq!(images(r#"{"label":["nosuch"]}"#).trim(), "[]");
}

/// The rest of each list's filters select as dockerd's do: containers by
/// ancestor (the image or one built on it), exit code, volume, network,
/// published and exposed port; images by dangling, reference pattern,
/// before and since; networks by name, id, driver, scope, type and
/// dangling; volumes by driver, name and dangling.
#[test]
fn every_list_filter_selects_as_docker_does() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    example_image(&d, "http-hello");
    d.build(
        "hello-plus",
        "FROM hello\nCOPY extra /extra\n",
        &[("extra", b"x")],
    )
    .ok();
    let list = |path: &str, filters: &str, key: &str| -> Vec<String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (status, body) = d.http(
            "GET",
            &format!("{path}{sep}filters={}", filters_query(filters)),
            "",
        );
        assert_eq!(status, 200, "{path} {filters}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let items = if key == "Volumes" { &v["Volumes"] } else { &v };
        let mut names: Vec<String> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| match key {
                "Names" => i["Names"][0]
                    .as_str()
                    .unwrap()
                    .trim_start_matches('/')
                    .to_string(),
                "RepoTags" => i["RepoTags"][0].as_str().unwrap_or("<none>").to_string(),
                _ => i["Name"].as_str().unwrap().to_string(),
            })
            .collect();
        names.sort();
        names
    };
    let containers = |f: &str| list("/containers/json?all=1", f, "Names");

    d.ketch(&["network", "create", "f-net"]).ok();
    d.ketch(&["run", "--name", "base", "-v", "f-vol:/data", "hello"])
        .ok();
    d.ketch(&[
        "create",
        "--name",
        "plus",
        "--network",
        "f-net",
        "hello-plus",
    ])
    .ok();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1::80",
        "http-hello",
    ])
    .ok();
    assert_eq!(containers(r#"{"ancestor":["hello"]}"#), ["base", "plus"]);
    assert_eq!(
        containers(r#"{"ancestor":["hello:latest"]}"#),
        ["base", "plus"]
    );
    assert_eq!(containers(r#"{"ancestor":["hello-plus"]}"#), ["plus"]);
    assert!(containers(r#"{"ancestor":["nosuch"]}"#).is_empty());
    assert_eq!(containers(r#"{"exited":["0"]}"#), ["base"]);
    assert!(containers(r#"{"exited":["1"]}"#).is_empty());
    assert_eq!(containers(r#"{"volume":["f-vol"]}"#), ["base"]);
    assert_eq!(containers(r#"{"volume":["/data"]}"#), ["base"]);
    assert_eq!(containers(r#"{"network":["f-net"]}"#), ["plus"]);
    assert_eq!(containers(r#"{"publish":["80"]}"#), ["web"]);
    assert_eq!(containers(r#"{"publish":["80/tcp"]}"#), ["web"]);
    assert!(containers(r#"{"publish":["80/udp"]}"#).is_empty());
    assert_eq!(containers(r#"{"expose":["80"]}"#), ["web"]);
    assert!(containers(r#"{"expose":["81"]}"#).is_empty());
    // Keys hold together; one key's values are alternatives.
    assert_eq!(
        containers(r#"{"ancestor":["hello"],"status":["created","running"]}"#),
        ["plus"]
    );
    assert_eq!(containers(r#"{"name":["base","web"]}"#), ["base", "web"]);

    // Images. Building hello-plus again under its tag leaves the first
    // one dangling.
    let images = |f: &str| list("/images/json", f, "RepoTags");
    d.build(
        "hello-plus",
        "FROM hello\nCOPY extra /extra2\n",
        &[("extra", b"y")],
    )
    .ok();
    assert_eq!(images(r#"{"dangling":["true"]}"#), ["<none>"]);
    assert!(!images(r#"{"dangling":["false"]}"#).contains(&"<none>".to_string()));
    assert_eq!(
        images(r#"{"reference":["hello*"]}"#),
        ["hello-plus:latest", "hello:latest"]
    );
    assert_eq!(
        images(r#"{"reference":["http-hello:latest"]}"#),
        ["http-hello:latest"]
    );
    let hello_then = images(r#"{"since":["hello"]}"#);
    assert!(
        hello_then.contains(&"hello-plus:latest".to_string())
            && !hello_then.contains(&"hello:latest".to_string()),
        "{hello_then:?}"
    );
    let before_plus = images(r#"{"before":["hello-plus"]}"#);
    assert!(
        before_plus.contains(&"hello:latest".to_string())
            && !before_plus.contains(&"hello-plus:latest".to_string()),
        "{before_plus:?}"
    );
    let (s, body) = d.http(
        "GET",
        &format!(
            "/images/json?filters={}",
            filters_query(r#"{"dangling":["maybe"]}"#)
        ),
        "",
    );
    assert_eq!(s, 400, "{body}");

    // Networks.
    let networks = |f: &str| list("/networks", f, "Name");
    d.ketch(&["network", "create", "f-unused"]).ok();
    let id = d
        .ketch(&["network", "inspect", "-f", "{{.Id}}", "f-net"])
        .ok();
    assert_eq!(networks(r#"{"name":["f-"]}"#), ["f-net", "f-unused"]);
    assert_eq!(
        networks(&format!(r#"{{"id":["{}"]}}"#, &id.trim()[..12])),
        ["f-net"]
    );
    assert_eq!(
        networks(r#"{"type":["custom"],"name":["f-"]}"#),
        ["f-net", "f-unused"]
    );
    assert_eq!(
        networks(r#"{"type":["builtin"]}"#),
        ["bridge", "host", "none"]
    );
    assert_eq!(networks(r#"{"driver":["null"]}"#), ["none"]);
    assert_eq!(
        networks(r#"{"driver":["bridge"],"name":["f-"]}"#),
        ["f-net", "f-unused"]
    );
    assert_eq!(
        networks(r#"{"scope":["local"],"name":["f-"]}"#),
        ["f-net", "f-unused"]
    );
    assert!(networks(r#"{"scope":["swarm"]}"#).is_empty());
    // As Docker's: only a running member holds a network (a created one
    // has no endpoint yet).
    assert_eq!(
        networks(r#"{"dangling":["true"],"name":["f-"]}"#),
        ["f-net", "f-unused"]
    );
    assert!(networks(r#"{"dangling":["false"],"name":["f-"]}"#).is_empty());

    // Volumes.
    let volumes = |f: &str| list("/volumes", f, "Volumes");
    d.ketch(&["volume", "create", "f-lone"]).ok();
    assert_eq!(
        volumes(r#"{"driver":["local"],"name":["f-"]}"#),
        ["f-lone", "f-vol"]
    );
    assert!(volumes(r#"{"driver":["nfs"]}"#).is_empty());
    assert_eq!(
        volumes(r#"{"dangling":["true"],"name":["f-"]}"#),
        ["f-lone"]
    );
    assert_eq!(
        volumes(r#"{"dangling":["false"],"name":["f-"]}"#),
        ["f-vol"]
    );
    d.ketch(&["rm", "-f", "base", "plus", "web"]).ok();
}

/// Unnamed creates from many clients at once each get a generated name
/// of their own: none is refused as taken.
#[test]
fn parallel_unnamed_creates_never_collide() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    let names = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..60 {
                    let (code, body) = d.http("POST", "/containers/create", r#"{"Image": "spin"}"#);
                    assert_eq!(code, 201, "{body}");
                    let id: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let id = id["Id"].as_str().unwrap().to_string();
                    names.lock().unwrap().push(id);
                }
            });
        }
    });
    let ids = names.into_inner().unwrap();
    assert_eq!(ids.len(), 480);
    let listed = d.ketch(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    let mut unique: Vec<&str> = listed.lines().collect();
    assert_eq!(unique.len(), 480);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 480, "a generated name repeats");
}

/// `events` filters as Docker's: each key must hold, a key's values are
/// alternatives; by type, container, image, label, network, volume and
/// event, for containers, images, networks and volumes alike.
#[test]
fn event_filters_select_by_object_and_kind() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    example_image(&d, "hello");
    d.ketch(&["run", "-d", "--name", "e1", "--label", "team=a", "spin"])
        .ok();
    d.ketch(&["run", "--name", "e2", "hello"]).ok();
    d.ketch(&["kill", "e1"]).ok();
    d.ketch(&["volume", "create", "e-vol"]).ok();
    d.ketch(&["network", "create", "e-net"]).ok();
    d.ketch(&["tag", "hello", "hello:again"]).ok();
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = |filters: &[&str]| -> Vec<String> {
        let mut args = vec!["events", "--since", "0", "--until", &until];
        for f in filters {
            args.extend(["--filter", f]);
        }
        // A volume's event names it by its id, as Docker's does; the
        // others by their name attribute.
        let tpl = if filters.iter().any(|f| f.contains("vol")) {
            "{{.Type}} {{.Action}} {{.Actor.ID}}"
        } else {
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"
        };
        args.extend(["--format", tpl]);
        d.ketch(&args).ok().lines().map(String::from).collect()
    };
    assert_eq!(
        events(&["container=e1", "event=start", "event=kill"]),
        ["container start e1", "container kill e1"]
    );
    assert_eq!(
        events(&["label=team=a", "event=create"]),
        ["container create e1"]
    );
    let by_image = events(&["image=hello", "type=container", "event=start"]);
    assert_eq!(by_image, ["container start e2"]);
    assert_eq!(events(&["type=volume"]), ["volume create e-vol"]);
    assert_eq!(events(&["volume=e-vol"]), ["volume create e-vol"]);
    assert_eq!(events(&["network=e-net"]), ["network create e-net"]);
    let images = events(&["type=image", "event=tag"]);
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(events(&["container=nosuch"]).is_empty());
    let r = d.ketch(&[
        "events",
        "--since",
        "0",
        "--until",
        &until,
        "--filter",
        "colour=red",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("colour"), "{}", r.stderr);
}
