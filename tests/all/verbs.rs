//! Docker's smaller verbs as a user runs them: `rename` and `history`,
//! through the ketch CLI, the API and (when installed) the docker CLI.

use crate::common::*;

#[test]
fn rename_takes_a_free_valid_name_and_keeps_it_across_a_restart() {
    let mut d = TestDaemon::start();
    example_image(&d, "hello");
    d.ketch(&["create", "--name", "first", "hello"]).ok();
    d.ketch(&["create", "--name", "taken", "hello"]).ok();
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "first"]).ok();
    d.ketch(&["rename", "first", "second"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Name}}", id.trim()]).ok(),
        "/second\n"
    );
    let r = d.ketch(&["inspect", "first"]);
    assert!(
        r.stderr.contains("No such container: first") || r.stderr.contains("No such object: first"),
        "{}",
        r.stderr
    );
    // Docker's words for the refusals, and nothing changes.
    let r = d.ketch(&["rename", "second", "taken"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("The container name \"/taken\" is already in use"),
        "{}",
        r.stderr
    );
    let (code, body) = d.http("POST", "/containers/second/rename?name=bad%20name", "");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("Invalid container name (bad name)"), "{body}");
    let (code, _) = d.http("POST", "/containers/second/rename?name=second", "");
    assert_eq!(code, 400);
    let (code, _) = d.http("POST", "/containers/nobody/rename?name=x1", "");
    assert_eq!(code, 404);
    // The old name is free again; the event names both.
    d.ketch(&["create", "--name", "first", "hello"]).ok();
    let until = chrono::Utc::now().timestamp() + 1;
    let (_, events) = d.http(
        "GET",
        &format!("/events?since=0&until={until}&filters=%7B%22event%22%3A%5B%22rename%22%5D%7D"),
        "",
    );
    let e: serde_json::Value = serde_json::from_str(events.lines().next().unwrap_or("{}")).unwrap();
    assert_eq!(e["Actor"]["Attributes"]["name"], "second", "{events}");
    assert_eq!(e["Actor"]["Attributes"]["oldName"], "/first", "{events}");
    // The record holds it.
    d.crash_and_restart();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Name}}", id.trim()]).ok(),
        "/second\n"
    );
    let out = d.ketch(&["start", "-a", "second"]).ok();
    assert!(out.contains("Hello"), "{out}");
}

#[test]
fn history_lists_the_build_steps_newest_first() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let (code, body) = d.http("GET", "/images/hello/history", "");
    assert_eq!(code, 200, "{body}");
    let h: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let id = d
        .ketch(&["image", "inspect", "-f", "{{.Id}}", "hello"])
        .ok();
    assert_eq!(h[0]["Id"], id.trim());
    assert_eq!(h[0]["Tags"], serde_json::json!(["hello:latest"]));
    let by: Vec<&str> = h.iter().map(|e| e["CreatedBy"].as_str().unwrap()).collect();
    assert_eq!(
        by,
        [
            "ENTRYPOINT [\"/hello.wasm\"]",
            "COPY hello.wasm /hello.wasm"
        ],
        "{body}"
    );
    assert_eq!(h[0]["Size"], 0);
    assert!(h[1]["Size"].as_i64().unwrap() > 1000);
    assert_eq!(h[1]["Id"], "<missing>");
    let out = d.ketch(&["history", "hello"]).ok();
    assert!(
        out.starts_with("IMAGE") && out.contains("COPY hello.wasm"),
        "{out}"
    );
    let (code, _) = d.http("GET", "/images/nosuch/history", "");
    assert_eq!(code, 404);
}
