//! Lifecycle: stop/kill/pause of spinning guests, illegal moves, logs,
//! wait, restart policies, and state across a daemon restart.

use crate::common::*;
use std::time::{Duration, Instant};

/// A daemon with a spinning guest `ss` running.
fn spinning() -> TestDaemon {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    let id = d.ketch(&["run", "-d", "--name", "ss", "spin"]).ok();
    assert_eq!(id.trim().len(), 64);
    assert_eq!(d.state("ss"), "running");
    d
}

#[test]
fn pause_and_unpause_a_spinning_guest() {
    let d = spinning();
    d.ketch(&["pause", "ss"]).ok();
    assert_eq!(d.state("ss"), "paused");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.Paused}}", "ss"])
            .ok()
            .trim(),
        "true"
    );
    d.ketch(&["unpause", "ss"]).ok();
    assert_eq!(d.state("ss"), "running");
}

#[test]
fn stop_ends_a_guest_that_never_calls_the_host() {
    let d = spinning();
    let t0 = Instant::now();
    d.ketch(&["stop", "-t", "1", "ss"]).ok();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        t0.elapsed()
    );
    assert_eq!(d.state("ss"), "exited");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "ss"])
            .ok()
            .trim(),
        "137"
    );
}

#[test]
fn kill_ends_a_paused_guest_at_once() {
    let d = spinning();
    d.ketch(&["pause", "ss"]).ok();
    d.ketch(&["kill", "ss"]).ok();
    assert_eq!(d.state("ss"), "exited");
}

#[test]
fn start_after_exit_and_restart_while_running() {
    let d = spinning();
    d.ketch(&["kill", "ss"]).ok();
    d.ketch(&["start", "ss"]).ok();
    assert_eq!(d.state("ss"), "running");
    d.ketch(&["restart", "-t", "0", "ss"]).ok();
    assert_eq!(d.state("ss"), "running");
    d.ketch(&["rm", "-f", "ss"]).ok();
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
}

#[test]
fn pause_really_suspends_output() {
    let d = TestDaemon::start();
    example_image(&d, "ticker");
    d.ketch(&["run", "-d", "--name", "tt", "ticker", "20"]).ok();
    d.eventually(10, "ticks", || {
        d.ketch(&["logs", "tt"]).stdout.lines().count() > 2
    });
    d.ketch(&["pause", "tt"]).ok();
    // Not synchronisation but the behaviour under test: a paused guest
    // prints nothing over a window. The first 100 ms let a line written
    // just before the freeze reach the log; over the next 300 ms (15 ticks
    // of this ticker) nothing may come.
    std::thread::sleep(Duration::from_millis(100));
    let a = d.ketch(&["logs", "tt"]).stdout.lines().count();
    std::thread::sleep(Duration::from_millis(300));
    let b = d.ketch(&["logs", "tt"]).stdout.lines().count();
    assert_eq!(a, b, "a paused container printed");
    d.ketch(&["unpause", "tt"]).ok();
    d.eventually(10, "ticks after unpause", || {
        d.ketch(&["logs", "tt"]).stdout.lines().count() > b
    });
    // The counter continued: state survived the pause.
    let logs = d.ketch(&["logs", "tt"]).stdout;
    let nums: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    d.ketch(&["rm", "-f", "tt"]).ok();
}

#[test]
fn illegal_state_changes_are_conflicts() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    d.wat_image("spin", SPIN_WAT);
    let cc = d.ketch(&["create", "--name", "cc", "hello"]).ok();
    let cc = cc.trim();
    assert_eq!(d.state("cc"), "created");
    // Docker's own words, which clients match on.
    for (verb, words) in [
        ("pause", format!("Container {cc} is not running")),
        ("unpause", format!("Container {cc} is not paused")),
        ("kill", format!("Container {cc} is not running")),
    ] {
        let r = d.ketch(&[verb, "cc"]);
        assert_eq!(r.code, 1, "{verb}");
        assert!(r.stderr.contains(&words), "{verb}: {}", r.stderr);
    }
    let ss = d.ketch(&["run", "-d", "--name", "ss", "spin"]).ok();
    let ss = ss.trim();
    let r = d.ketch(&["rm", "ss"]);
    assert_eq!(r.code, 1);
    let words = format!("You cannot remove a running container {ss}. Stop the container before attempting removal or force remove");
    assert!(r.stderr.contains(&words), "{}", r.stderr);
    let r = d.ketch(&["pause", "ss"]);
    assert_eq!(r.code, 0);
    let r = d.ketch(&["pause", "ss"]);
    let words = format!("Container {ss} is already paused");
    assert!(r.stderr.contains(&words), "{}", r.stderr);
    let r = d.ketch(&["start", "ss"]);
    assert!(
        r.stderr
            .contains("cannot start a paused container, try unpause instead"),
        "{}",
        r.stderr
    );
    // Duplicate names.
    let r = d.ketch(&["create", "--name", "cc", "hello"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains("The container name \"/cc\" is already in use"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["create", "--name", "bad/name", "hello"]);
    assert!(r.stderr.contains("Invalid container name"), "{}", r.stderr);
    let r = d.ketch(&["rm", "nope"]);
    assert!(r.stderr.contains("No such container: nope"), "{}", r.stderr);
    let r = d.ketch(&["run", "--rm", "--restart", "always", "hello"]);
    assert!(r.stderr.contains("conflicting options"), "{}", r.stderr);
    d.ketch(&["rm", "-f", "ss"]).ok();
}

#[test]
fn lookup_by_prefix_and_name_and_ps_output() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let id = d
        .ketch(&["create", "--name", "web", "--label", "tier=front", "hello"])
        .ok()
        .trim()
        .to_string();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Name}}", &id[..8]])
            .ok()
            .trim(),
        "/web"
    );
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Id}}", "web"]).ok().trim(),
        id
    );
    assert_eq!(d.ketch(&["ps", "-q"]).ok(), "", "created is not running");
    assert_eq!(d.ketch(&["ps", "-aq"]).ok().trim(), &id[..12]);
    let f = d
        .ketch(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}|{{.State}}|{{.Image}}|{{.Labels}}",
        ])
        .ok();
    assert_eq!(f.trim(), "web|created|hello|tier=front");
    let table = d.ketch(&["ps", "-a"]).ok();
    assert!(
        table.starts_with("CONTAINER ID   IMAGE   COMMAND"),
        "{table}"
    );
    let insp: serde_json::Value = serde_json::from_str(&d.ketch(&["inspect", "web"]).ok()).unwrap();
    assert_eq!(insp[0]["Platform"], "wasi/wasm");
    assert_eq!(insp[0]["Config"]["Labels"]["tier"], "front");
    assert!(insp[0]["Mounts"].is_array());
}

#[test]
fn start_attach_and_wait() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    d.ketch(&["create", "--name", "cc", "hello"]).ok();
    let r = d.ketch(&["start", "-a", "cc"]);
    assert_eq!(r.code, 3);
    assert_eq!(r.stdout, "hello from wat\n");
    d.ketch(&["run", "-d", "--name", "ww", "hello"]).ok();
    assert_eq!(d.ketch(&["wait", "ww"]).ok().trim(), "3");
}

/// A daemon running the ticker (a line every `ms`) as `tt`, with at
/// least `lines` lines logged.
fn ticking(ms: &str, lines: usize) -> TestDaemon {
    let d = TestDaemon::start();
    example_image(&d, "ticker");
    d.ketch(&["run", "-d", "--name", "tt", "ticker", ms]).ok();
    d.eventually(10, "ticks", || {
        d.ketch(&["logs", "tt"]).stdout.lines().count() >= lines
    });
    d
}

#[test]
fn logs_tail_gives_the_last_lines() {
    let d = ticking("10", 5);
    d.ketch(&["stop", "-t", "0", "tt"]).ok();
    let all = d.ketch(&["logs", "tt"]).ok();
    let lines: Vec<&str> = all.lines().collect();
    let tail = d.ketch(&["logs", "--tail", "2", "tt"]).ok();
    assert_eq!(tail.lines().collect::<Vec<_>>(), lines[lines.len() - 2..]);
}

#[test]
fn logs_timestamps_prefix_each_line() {
    let d = ticking("10", 5);
    let ts = d.ketch(&["logs", "-t", "--tail", "1", "tt"]).ok();
    let (stamp, line) = ts.trim_end().split_once(' ').expect("stamp and line");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
        "{ts:?}"
    );
    assert!(line.starts_with("tick "), "{ts:?}");
}

#[test]
fn logs_follow_streams_every_line_until_the_container_stops() {
    let d = ticking("10", 5);
    let follower = d.stream(&["logs", "-f", "tt"]);
    // Attached once the past lines arrive (they come first).
    follower.wait_for(10, "the followed past lines", |o| o.contains("tick 4\n"));
    d.ketch(&["stop", "-t", "0", "tt"]).ok();
    let text = follower.finish();
    let all = d.ketch(&["logs", "tt"]).ok();
    assert_eq!(text, all, "follow saw every line exactly once");
}

#[test]
fn logs_since_gives_exactly_the_lines_from_that_time_on() {
    // Lines 300 ms apart, so a time between two of them is unambiguous.
    let d = ticking("300", 6);
    d.ketch(&["stop", "-t", "0", "tt"]).ok();
    let stamped: Vec<(chrono::DateTime<chrono::FixedOffset>, String)> = d
        .ketch(&["logs", "-t", "tt"])
        .ok()
        .lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').expect("a stamped line");
            (
                chrono::DateTime::parse_from_rfc3339(t).unwrap(),
                rest.to_string(),
            )
        })
        .collect();
    assert!(stamped.len() >= 6, "{stamped:?}");
    // Half way between the third and the fourth line.
    let (before, after) = (stamped[2].0, stamped[3].0);
    assert!(
        after - before > chrono::Duration::milliseconds(100),
        "{stamped:?}"
    );
    let since = before + (after - before) / 2;
    let want: String = stamped[3..].iter().map(|(_, l)| format!("{l}\n")).collect();
    let rfc = since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    assert_eq!(d.ketch(&["logs", "--since", &rfc, "tt"]).ok(), want);
    // The same time as unix seconds.
    let unix = format!(
        "{}.{:09}",
        since.timestamp(),
        since.timestamp_subsec_nanos()
    );
    assert_eq!(d.ketch(&["logs", "--since", &unix, "tt"]).ok(), want);
    // After the last line: nothing.
    let later = (stamped.last().unwrap().0 + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    assert_eq!(d.ketch(&["logs", "--since", &later, "tt"]).ok(), "");
}

#[test]
fn restart_policy_on_failure_counts_retries() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "ff",
        "--restart",
        "on-failure:2",
        "-e",
        "EXIT_CODE=1",
        "hello",
    ])
    .ok();
    d.eventually(20, "two restarts", || {
        d.ketch(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "ff"])
            .stdout
            .trim()
            == "2 exited"
    });
    let logs = d.ketch(&["logs", "ff"]).ok();
    assert_eq!(logs.matches("Hello, world!").count(), 3, "{logs}");
}

#[test]
fn state_survives_a_daemon_crash() {
    let mut d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    d.wat_image("hello", HELLO_WAT);
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "spin",
    ])
    .ok();
    d.ketch(&["run", "-d", "--name", "plain", "spin"]).ok();
    d.ketch(&["run", "--name", "done", "hello"]);
    d.ketch(&["create", "--name", "fresh", "hello"]).ok();
    d.ketch(&["run", "-d", "--rm", "--name", "gone", "spin"])
        .ok();
    let cache = d.root().join("wasm-cache");
    let stamps = |dir: &std::path::Path| -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = stamps(&cache);
    assert_eq!(
        before.len(),
        2,
        "one compiled artifact per module digest: {before:?}"
    );
    d.crash_and_restart();
    assert_eq!(
        d.ketch(&["inspect", "gone"]).code,
        1,
        "an --rm container is removed at restart"
    );
    assert_eq!(d.state("always"), "running", "restarted per policy");
    assert_eq!(d.state("plain"), "exited");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "plain"])
            .ok()
            .trim(),
        "255"
    );
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "done"])
            .ok()
            .trim(),
        "3"
    );
    assert_eq!(d.state("fresh"), "created");
    // Names are still taken; the logs are still there.
    assert_eq!(d.ketch(&["create", "--name", "done", "hello"]).code, 125);
    assert_eq!(d.ketch(&["logs", "done"]).ok(), "hello from wat\n");
    // A stopped container can be started after the restart (module recompiled or cached).
    assert_eq!(
        stamps(&cache),
        before,
        "the restart reused the compiled modules instead of recompiling"
    );
    d.ketch(&["start", "-a", "done"])
        .stdout
        .contains("hello from wat")
        .then_some(())
        .expect("re-run after restart");
    d.ketch(&["rm", "-f", "always", "plain", "done", "fresh"])
        .ok();
}
