//! Logging drivers as a Docker user sets them: `--log-driver` and
//! `--log-opt`. A chatty container's json-file log stays within
//! `max-size` × `max-file` on the disk while `logs -f` follows it across
//! every rotation; `none` stores nothing but still reaches an attached
//! client; a bad driver or option is a 400 naming it.

use crate::common::*;
use std::io::BufRead;
use std::process::Stdio;

/// The container's log files and their sizes.
fn log_files(d: &TestDaemon, name: &str) -> Vec<(String, u64)> {
    let path = d.ketch(&["inspect", "-f", "{{.LogPath}}", name]).ok();
    let path = std::path::PathBuf::from(path.trim());
    let dir = path.parent().unwrap();
    let stem = path.file_name().unwrap().to_string_lossy().to_string();
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Lines `line 0` … `line N-1`, contiguous and in order, as `logs` gave.
fn contiguous(lines: &[String]) -> Option<(u32, u32)> {
    let n: Vec<u32> = lines
        .iter()
        .map(|l| l.strip_prefix("line ").and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()?;
    let (first, last) = (*n.first()?, *n.last()?);
    n.windows(2)
        .all(|w| w[1] == w[0] + 1)
        .then_some((first, last))
}

#[test]
fn a_rotated_log_stays_bounded_and_logs_follow_across_rotations() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    // 20,000 lines (about 1.3 MB of log) at up to ~10,000 a second, into
    // 100k files, three kept.
    d.ketch(&[
        "create",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=100k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "sleep 1; i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); [ $((i % 100)) = 0 ] && usleep 10000; done; sleep 1",
    ])
    .ok();
    let lc = d
        .ketch(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", "chatty"])
        .ok();
    assert_eq!(
        lc.trim(),
        r#"{"Config":{"max-file":"3","max-size":"100k"},"Type":"json-file"}"#
    );
    d.ketch(&["start", "chatty"]).ok();
    let mut follower = d
        .ketch_cmd(&["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follower.stdout.take().unwrap();
    let lines: Vec<String> = std::io::BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .collect();
    assert!(follower.wait().unwrap().success());
    assert_eq!(lines.len(), 20_000, "followed {} lines", lines.len());
    assert_eq!(contiguous(&lines), Some((0, 19_999)));

    let files = log_files(&d, "chatty");
    assert!(files.len() <= 3, "{files:?}");
    assert!(files.iter().all(|(_, n)| *n <= 100 << 10), "{files:?}");
    assert!(files.len() == 3, "never rotated: {files:?}");
    // `logs` reads what is kept, oldest file first; `--tail` from the end.
    let kept: Vec<String> = d
        .ketch(&["logs", "chatty"])
        .ok()
        .lines()
        .map(String::from)
        .collect();
    let (first, last) = contiguous(&kept).expect("kept lines in order");
    assert_eq!(last, 19_999);
    assert!(first > 0, "nothing was rotated away");
    let tail = d.ketch(&["logs", "--tail", "2", "chatty"]).ok();
    assert_eq!(tail, "line 19998\nline 19999\n");
}

/// `local` rotates as json-file does, under its own options, and its
/// logs read back whole and in order.
#[test]
fn the_local_driver_rotates_within_its_options_and_reads_back() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    d.ketch(&[
        "run",
        "--name",
        "loc",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=20k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done",
    ])
    .ok();
    let files = log_files(&d, "loc");
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|(_, n)| *n <= 20 << 10), "{files:?}");
    let kept: Vec<String> = d
        .ketch(&["logs", "loc"])
        .ok()
        .lines()
        .map(String::from)
        .collect();
    let (first, last) = contiguous(&kept).expect("kept lines in order");
    assert_eq!(last, 2999);
    assert!(first > 0, "nothing was rotated away");
    let r = d.ketch(&[
        "create",
        "--log-driver",
        "local",
        "--log-opt",
        "max-file=0",
        "busybox",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("max-file"), "{}", r.stderr);
}

#[test]
fn the_none_driver_keeps_nothing_but_attached_clients_get_the_output() {
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let r = d.ketch(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "hello",
        "Ada",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Ada"), "{}", r.stdout);
    let logs = d.ketch(&["logs", "quiet"]);
    assert_ne!(logs.code, 0);
    assert!(
        logs.stderr
            .contains("configured logging driver does not support reading"),
        "{}",
        logs.stderr
    );
    let (code, _) = d.http("GET", "/containers/quiet/logs?stdout=1", "");
    assert_eq!(code, 501);
    assert!(log_files(&d, "quiet").iter().all(|(_, n)| *n == 0));
    // `local` keeps 20m × 5 unless told otherwise.
    d.ketch(&[
        "create",
        "--name",
        "local",
        "--log-driver",
        "local",
        "hello",
    ])
    .ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "local"])
            .ok()
            .trim(),
        "local"
    );
    // By default a json-file log is bounded by ketchd's options.
    d.ketch(&["create", "--name", "plain", "hello"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{json .HostConfig.LogConfig}}", "plain"])
            .ok()
            .trim(),
        r#"{"Config":{"max-file":"5","max-size":"20m"},"Type":"json-file"}"#
    );
}

#[test]
fn bad_log_drivers_and_options_are_refused_naming_them() {
    let d = TestDaemon::start();
    d.wat_image("spin", SPIN_WAT);
    for (args, why) in [
        (
            &["--log-driver", "syslog"][..],
            "no log driver named 'syslog' is registered",
        ),
        (
            &["--log-opt", "max-size=big"][..],
            "invalid max-size \"big\"",
        ),
        (
            &["--log-opt", "max-file=0"][..],
            "max-file cannot be less than 1",
        ),
        (
            &["--log-opt", "colour=red"][..],
            "unknown log opt 'colour' for json-file log driver",
        ),
        (
            &["--log-driver", "none", "--log-opt", "max-size=1m"][..],
            "unknown log opt 'max-size' for none",
        ),
    ] {
        let mut a = vec!["create"];
        a.extend_from_slice(args);
        a.push("spin");
        let r = d.ketch(&a);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(why), "{args:?}: {}", r.stderr);
    }
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    // Through the API: a 400 with Docker's words.
    let (code, body) = d.http(
        "POST",
        "/containers/create",
        r#"{"Image": "spin", "HostConfig": {"LogConfig": {"Type": "syslog", "Config": {}}}}"#,
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("logger: no log driver named 'syslog' is registered"),
        "{body}"
    );
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    // ketchd's own --log-opt is checked at start.
    let r = std::process::Command::new(env!("CARGO_BIN_EXE_ketchd"))
        .args(["--log-opt", "max-file=zero", "--data-root"])
        .arg(d.dir.path().join("other"))
        .arg("-H")
        .arg(format!(
            "unix://{}",
            d.dir.path().join("other.sock").display()
        ))
        .output()
        .unwrap();
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("max-file cannot be less than 1"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
}
