//! What `run` sets up for a Linux container: isolation, options, mounts,
//! limits, pause and signals; and `RUN` in builds.

use super::{daemon, detached, log_lines};
use crate::common::*;
use std::time::Duration;

#[test]
fn run_isolates_pids_hostname_and_network() {
    require!(linux());
    let d = daemon();
    // Exit code, pid namespace, hostname (the short id), loopback only.
    let r = d.ketch(&[
        "run",
        "--name",
        "iso",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo pid=$$; hostname; ip -o link | wc -l; exit 3",
    ]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "iso"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines, ["pid=1", &id.trim()[..12], "1"], "{}", r.stdout);
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Platform}}", "iso"])
            .ok()
            .trim(),
        format!(
            "linux/{}",
            if cfg!(target_arch = "aarch64") {
                "arm64"
            } else {
                "amd64"
            }
        )
    );
}

#[test]
fn run_sets_hostname_env_user_and_workdir() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--hostname",
            "box",
            "-e",
            "GREETING=hi",
            "--user",
            "nobody",
            "-w",
            "/made/here",
            "busybox",
            "sh",
            "-c",
            "hostname; echo $GREETING; id -u; pwd",
        ])
        .ok();
    assert_eq!(out, "box\nhi\n65534\n/made/here\n");
}

#[test]
fn read_only_root_with_a_writable_tmpfs() {
    require!(linux());
    let d = daemon();
    let r = d.ketch(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "touch /scratch/ok && echo tmpfs-ok; touch /x",
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("tmpfs-ok") && r.stderr.contains("Read-only file system"),
        "{}",
        r.stderr
    );
}

#[test]
fn cap_drop_all_empties_the_effective_set() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            "busybox",
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .ok();
    assert!(out.contains("0000000000000000"), "{out}");
}

#[test]
fn the_default_profile_refuses_mount_and_sets_no_new_privs() {
    require!(linux());
    let d = daemon();
    let r = d.ketch(&[
        "run", "--rm", "busybox", "mount", "-t", "tmpfs", "x", "/mnt",
    ]);
    assert_ne!(r.code, 0, "mount must be refused: {}", r.stdout);
    let out = d
        .ketch(&["run", "--rm", "busybox", "cat", "/proc/self/status"])
        .ok();
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn bind_mounts_read_write_and_read_only() {
    require!(linux());
    let d = daemon();
    let host = d.dir.path().join("share");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let rw = format!("{}:/data", host.display());
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "-v",
            &rw,
            "busybox",
            "sh",
            "-c",
            "cat /data/in.txt; echo back > /data/out.txt",
        ])
        .ok();
    assert_eq!(out, "from host\n");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "back\n"
    );
    let ro = format!("{}:/data:ro", host.display());
    let r = d.ketch(&["run", "--rm", "-v", &ro, "busybox", "touch", "/data/nope"]);
    assert_ne!(r.code, 0);
    assert!(!host.join("nope").exists());
}

#[test]
fn a_named_volume_keeps_its_data_between_containers() {
    require!(linux());
    let d = daemon();
    d.ketch(&[
        "run",
        "--rm",
        "-v",
        "shared:/vol",
        "busybox",
        "sh",
        "-c",
        "echo kept > /vol/f",
    ])
    .ok();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "-v",
            "shared:/vol:ro",
            "busybox",
            "cat",
            "/vol/f",
        ])
        .ok();
    assert_eq!(out, "kept\n");
}

#[test]
fn a_missing_command_is_a_clear_error_naming_it() {
    require!(linux());
    let d = daemon();
    let r = d.ketch(&["run", "--rm", "busybox", "no-such-cmd"]);
    assert_eq!(r.code, 127);
    assert!(r.stderr.contains("no-such-cmd"), "{}", r.stderr);
}

#[test]
fn bad_options_are_refused_at_create() {
    require!(linux());
    let d = daemon();
    let r = d.ketch(&["create", "--cap-add", "bogus", "busybox"]);
    assert!(r.code != 0 && r.stderr.contains("bogus"), "{}", r.stderr);
    let r = d.ketch(&["create", "--network", "nosuchnet", "busybox"]);
    assert!(
        r.code != 0 && r.stderr.contains("nosuchnet"),
        "{}",
        r.stderr
    );
}

#[test]
fn over_its_memory_limit_a_container_is_oom_killed() {
    require!(linux());
    let d = daemon();
    // Over --memory: the kernel's OOM killer ends it with 137.
    let r = d.ketch(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "32m",
        "busybox",
        "sh",
        "-c",
        "head -c 256m /dev/zero | tail > /dev/null",
    ]);
    assert_eq!(r.code, 137, "{}", r.stderr);
    assert_eq!(
        d.ketch(&[
            "inspect",
            "-f",
            "{{.State.OOMKilled}} {{.State.ExitCode}}",
            "oom"
        ])
        .ok(),
        "true 137\n"
    );
}

#[test]
fn pids_limit_stops_a_fork_storm() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--pids-limit",
            "10",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done 2>&1 | tail -1; echo survived",
        ])
        .ok();
    assert!(out.contains("survived"), "{out}");
}

/// `busy`: limited, counting every 0.1 s, exiting 0 on SIGTERM; running
/// and logging once this returns.
fn busy(d: &TestDaemon) {
    detached(
        d,
        "busy",
        &["--memory", "64m", "--cpus", "0.5"],
        "trap 'echo bye; exit 0' TERM; i=0; while true; do i=$((i+1)); echo n $i; sleep 0.1; done",
    );
    d.eventually(10, "output", || log_lines(d, "busy") >= 3);
}

#[test]
fn stats_report_memory_pids_and_cpu() {
    require!(linux());
    let d = daemon();
    busy(&d);
    let (code, body) = d.http("GET", "/containers/busy/stats?stream=false", "");
    assert_eq!(code, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(s["memory_stats"]["usage"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(
        s["memory_stats"]["limit"].as_u64(),
        Some(64 << 20),
        "{body}"
    );
    assert!(s["pids_stats"]["current"].as_u64().unwrap() >= 1, "{body}");
    assert!(
        s["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap() > 0,
        "{body}"
    );
}

#[test]
fn pause_freezes_a_container_and_unpause_resumes_it() {
    require!(linux());
    let d = daemon();
    busy(&d);
    d.ketch(&["pause", "busy"]).ok();
    assert_eq!(d.state("busy"), "paused");
    // Not synchronisation but the behaviour under test: a frozen container
    // prints nothing over a window. The first 300 ms let a line written
    // just before the freeze reach the log; over the next 600 ms (six of
    // its ticks) nothing may come.
    std::thread::sleep(Duration::from_millis(300));
    let before = log_lines(&d, "busy");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(log_lines(&d, "busy"), before);
    d.ketch(&["unpause", "busy"]).ok();
    d.eventually(10, "output after unpause", || {
        log_lines(&d, "busy") > before
    });
}

#[test]
fn stop_delivers_sigterm_first() {
    require!(linux());
    let d = daemon();
    busy(&d);
    // The trap exits 0.
    d.ketch(&["stop", "busy"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "busy"])
            .ok(),
        "0\n"
    );
    assert!(d.ketch(&["logs", "busy"]).stdout.contains("bye"));
}

#[test]
fn kill_delivers_any_signal() {
    require!(linux());
    let d = daemon();
    detached(
        &d,
        "sig",
        &[],
        "trap 'echo got-usr1' USR1; echo ready; while true; do sleep 0.1; done",
    );
    // The trap is set once it says so.
    d.eventually(10, "the trap set", || {
        d.ketch(&["logs", "sig"]).stdout.contains("ready")
    });
    d.ketch(&["kill", "-s", "USR1", "sig"]).ok();
    d.eventually(10, "USR1 handled", || {
        d.ketch(&["logs", "sig"]).stdout.contains("got-usr1")
    });
    assert_eq!(d.state("sig"), "running");
    d.ketch(&["kill", "sig"]).ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "sig"])
            .ok(),
        "137\n"
    );
}

const BUILT: &str = "FROM busybox\n\
    RUN mkdir -p /app /tmp && chmod 1777 /tmp && echo built > /app/file \\\n\
        && rm /etc/group && echo 'ada:x:1234:1234::/:/bin/sh' >> /etc/passwd\n\
    USER ada\n\
    RUN id -u > /tmp/who && echo step-output\n\
    USER root\n\
    CMD [\"cat\", \"/app/file\"]\n";

#[test]
fn run_in_builds_applies_user_and_records_deletions() {
    require!(linux());
    let d = daemon();
    let r = d.build("built", BUILT, &[]);
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    assert!(r.stdout.lines().any(|l| l == "step-output"), "{}", r.stdout);
    assert_eq!(d.ketch(&["run", "--rm", "built"]).ok(), "built\n");
    // The deletion is a whiteout in the layer; USER applied to the RUN.
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "built",
            "sh",
            "-c",
            "cat /tmp/who; ls /etc/group || echo gone",
        ])
        .ok();
    assert!(out.starts_with("1234\n") && out.contains("gone"), "{out}");
}

#[test]
fn an_unchanged_build_comes_from_the_cache() {
    require!(linux());
    let d = daemon();
    d.build("built", BUILT, &[]).ok();
    // Unchanged: every RUN comes from the cache, and the image is the same.
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "built"]).ok();
    let t0 = std::time::Instant::now();
    let r = d.build("built", BUILT, &[]);
    let took = t0.elapsed();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout.matches("Using cache").count(), 2, "{}", r.stdout);
    assert!(
        !r.stdout.lines().any(|l| l == "step-output"),
        "{}",
        r.stdout
    );
    assert_eq!(d.ketch(&["inspect", "-f", "{{.Id}}", "built"]).ok(), id);
    assert!(
        took < Duration::from_secs(2),
        "cached rebuild took {took:?}"
    );
}

#[test]
fn a_failing_run_fails_the_build_with_its_output_line_and_code() {
    require!(linux());
    let d = daemon();
    let r = d.build(
        "bad",
        "FROM busybox\nRUN echo failing-output; exit 3\n",
        &[],
    );
    assert_ne!(r.code, 0);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains("failing-output")
            && all.contains("line 2")
            && all.contains("non-zero code: 3"),
        "{all}"
    );
}

#[test]
fn a_clean_shutdown_stops_containers_unless_live_restore_keeps_linux_ones() {
    require!(linux());
    let mut d = daemon();
    d.wat_image("spin", SPIN_WAT);
    let pid = |d: &TestDaemon, name: &str| -> String {
        d.ketch(&["inspect", "-f", "{{.State.Pid}}", name])
            .ok()
            .trim()
            .to_string()
    };
    // sleep as pid 1 ignores SIGTERM: it is killed at its stop timeout,
    // its own, not the default 10 s.
    detached(&d, "sleeper", &["--stop-timeout", "3"], "exec sleep 300");
    detached(
        &d,
        "always",
        &["--restart", "always", "--stop-timeout", "1"],
        "exec sleep 300",
    );
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "guest",
        "--stop-timeout",
        "1",
        "spin",
    ])
    .ok();
    let sleeper = pid(&d, "sleeper");
    let took = d.stop_and_restart(&[]);
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(9),
        "shutdown took {took:?}: not the sleeper's 3 s stop timeout"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{sleeper}")).exists(),
        "the container's process outlived ketchd"
    );
    assert_eq!(d.state("sleeper"), "exited");
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"])
            .ok()
            .trim(),
        "137"
    );
    assert_eq!(d.state("guest"), "exited");
    // The daemon, not the user, stopped it: its policy brings it back.
    d.eventually(20, "the --restart always container to run again", || {
        d.state("always") == "running"
    });

    // With --live-restore a Linux container runs on and is adopted again;
    // a Wasm guest, which lives in ketchd, still stops.
    d.stop_and_restart(&["--live-restore"]);
    d.ketch(&["start", "sleeper"]).ok();
    d.ketch(&["start", "guest"]).ok();
    let sleeper = pid(&d, "sleeper");
    d.stop_and_restart(&["--live-restore"]);
    assert!(std::path::Path::new(&format!("/proc/{sleeper}")).exists());
    assert_eq!(d.state("sleeper"), "running");
    assert_eq!(pid(&d, "sleeper"), sleeper);
    assert_eq!(d.state("guest"), "exited");
    d.ketch(&["stop", "-t", "1", "sleeper"]).ok();
    assert_eq!(d.state("sleeper"), "exited");
}

#[test]
fn a_command_that_cannot_run_exits_126_or_127_with_runcs_words() {
    require!(linux());
    let d = daemon();
    for (cmd, code, words) in [
        (
            "nosuchcmd",
            127,
            "exec: \"nosuchcmd\": executable file not found in $PATH",
        ),
        (
            "/nope",
            127,
            "exec: \"/nope\": stat /nope: no such file or directory",
        ),
        (
            "/etc/passwd",
            126,
            "exec: \"/etc/passwd\": permission denied",
        ),
        ("/etc", 126, "exec: \"/etc\": is a directory"),
    ] {
        let r = d.ketch(&["run", "--rm", "busybox", cmd]);
        assert_eq!(r.code, code, "{cmd}: {}", r.stderr);
        assert!(r.stderr.contains(words), "{cmd}: {}", r.stderr);
    }
    // --rm removed each; without it, the container stays created with the
    // code and the reason, as Docker keeps them.
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), "");
    let r = d.ketch(&["run", "--name", "kept", "busybox", "nosuchcmd"]);
    assert_eq!(r.code, 127);
    let state = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}} {{.State.Error}}",
            "kept",
        ])
        .ok();
    assert!(
        state.starts_with("created 127 ") && state.contains("executable file not found"),
        "{state}"
    );
    // `start` fails as Docker's does: 1, with the same words.
    let r = d.ketch(&["start", "kept"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("executable file not found"),
        "{}",
        r.stderr
    );
    // A command found through PATH, or by a symlink inside the root, runs.
    assert_eq!(d.ketch(&["run", "--rm", "busybox", "true"]).code, 0);
    assert_eq!(d.ketch(&["run", "--rm", "busybox", "/bin/true"]).code, 0);
}

#[test]
fn diff_and_export_show_what_the_container_changed() {
    require!(linux());
    let d = daemon();
    let r = d.ketch(&[
        "run",
        "--name",
        "changer",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /new/deep && echo x > /new/deep/f && echo y >> /etc/passwd && rm /etc/group",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = d.ketch(&["diff", "changer"]).ok();
    let lines: Vec<&str> = out.lines().collect();
    for want in [
        "A /new",
        "A /new/deep",
        "A /new/deep/f",
        "C /etc",
        "C /etc/passwd",
        "D /etc/group",
    ] {
        assert!(lines.contains(&want), "{want} missing from:\n{out}");
    }
    // Through the API, as Docker's shape.
    let (code, body) = d.http("GET", "/containers/changer/changes", "");
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .contains(&serde_json::json!({"Path": "/etc/group", "Kind": 2})),
        "{body}"
    );
    // export: the image's files and the container's changes, nothing
    // mounted on the root; stopped or running.
    let tar = d.dir.path().join("changer.tar");
    d.ketch(&["export", "-o", tar.to_str().unwrap(), "changer"])
        .ok();
    let names = |tar: &std::path::Path| -> Vec<String> {
        let mut a = ::tar::Archive::new(std::fs::File::open(tar).unwrap());
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    };
    let n = names(&tar);
    for want in ["new/deep/f", "bin/busybox", "etc/passwd"] {
        assert!(n.iter().any(|p| p == want), "{want} not in {n:?}");
    }
    assert!(!n.iter().any(|p| p == "etc/group"), "{n:?}");
    detached(&d, "live", &[], "echo hi > /live; exec sleep 300");
    d.eventually(10, "the file", || {
        d.ketch(&["exec", "live", "cat", "/live"]).stdout == "hi\n"
    });
    let tar = d.dir.path().join("live.tar");
    d.ketch(&["export", "-o", tar.to_str().unwrap(), "live"])
        .ok();
    let n = names(&tar);
    assert!(n.iter().any(|p| p == "live"), "{n:?}");
    assert!(
        !n.iter()
            .any(|p| p.starts_with("proc/") || p.starts_with("sys/")),
        "{n:?}"
    );
    assert!(!std::fs::read_dir(d.dir.path()).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".part-")));

    // A container that changed nothing has no changes; a Wasm one says why.
    d.ketch(&["create", "--name", "fresh", "busybox", "true"])
        .ok();
    assert_eq!(d.ketch(&["diff", "fresh"]).ok(), "");
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["create", "--name", "guest", "spin"]).ok();
    let r = d.ketch(&["diff", "guest"]);
    assert!(
        r.stderr.contains("no root filesystem of its own"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["export", "-o", tar.to_str().unwrap(), "guest"]);
    assert!(
        r.stderr
            .contains("export is not supported for Wasm containers"),
        "{}",
        r.stderr
    );
}

#[test]
fn group_add_gives_supplementary_groups_by_name_or_number() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--group-add",
            "nogroup",
            "--group-add",
            "1234",
            "busybox",
            "id",
            "-G",
        ])
        .ok();
    let mut ids: Vec<&str> = out.split_whitespace().collect();
    ids.sort();
    assert_eq!(ids, ["0", "1234", "65534"], "{out}");
    let r = d.ketch(&[
        "run",
        "--rm",
        "--group-add",
        "nosuchgroup",
        "busybox",
        "true",
    ]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("unable to find group nosuchgroup"),
        "{}",
        r.stderr
    );
    let gid = d
        .ketch(&["create", "--group-add", "nogroup", "busybox", "true"])
        .ok();
    let shown = d
        .ketch(&["inspect", "-f", "{{json .HostConfig.GroupAdd}}", gid.trim()])
        .ok();
    assert_eq!(shown.trim(), r#"["nogroup"]"#);
}

#[test]
fn device_nodes_in_layers_are_made_but_grant_nothing() {
    require!(linux());
    let d = daemon();
    // A RUN step's device nodes and FIFOs are kept in its layer, as
    // Docker keeps them; the layer unpacks them again.
    d.build(
        "devices",
        "FROM busybox\nRUN mkdir -p /mnt /dev && mknod /mnt/sda b 8 0 && mknod /mnt/mem c 1 1 && mknod /mnt/null c 1 3 && mkfifo /mnt/pipe && mknod /dev/console c 5 1\n",
        &[],
    )
    .ok();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "devices",
            "sh",
            "-c",
            "ls /mnt; head -c1 /mnt/sda; echo sda=$?; head -c1 /mnt/mem; echo mem=$?; echo x > /mnt/null; echo null=$?; ls /dev/console; echo console=$?",
        ])
        .ok();
    for want in [
        "mem\nnull\npipe\nsda\n",
        "sda=1\n",
        "mem=1\n",
        "null=0\n",
        "console=1\n",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }
}

#[test]
fn update_changes_a_running_containers_cgroup() {
    require!(linux());
    let d = daemon();
    detached(&d, "capped", &["--memory", "64m"], "exec sleep 300");
    let limit = |d: &TestDaemon| -> i64 {
        let (_, body) = d.http("GET", "/containers/capped/stats?stream=0&one-shot=1", "");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["memory_stats"]["limit"].as_i64().unwrap_or(-1)
    };
    assert_eq!(limit(&d), 64 << 20);
    d.ketch(&[
        "update",
        "--memory",
        "96m",
        "--memory-swap",
        "200m",
        "--pids-limit",
        "50",
        "--cpus",
        "0.5",
        "capped",
    ])
    .ok();
    assert_eq!(limit(&d), 96 << 20);
    let hc = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}}",
            "capped",
        ])
        .ok();
    assert_eq!(hc.trim(), format!("{} 50 500000000", 96 << 20));
    // In the container's cgroup, v1 or v2.
    let id = d.ketch(&["inspect", "-f", "{{.Id}}", "capped"]).ok();
    let cgroup = |v1: &str, v2: &str| -> Option<String> {
        let id = id.trim();
        [
            format!("/sys/fs/cgroup/{v1}").replace("{}", &format!("ketch/{id}")),
            format!("/sys/fs/cgroup/ketch/{id}/{v2}"),
        ]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
    };
    assert_eq!(
        cgroup("pids/{}/pids.max", "pids.max").as_deref(),
        Some("50")
    );
    let cpu = cgroup("cpu/{}/cpu.cfs_quota_us", "cpu.max");
    assert!(
        matches!(cpu.as_deref(), Some("50000") | Some("50000 100000")),
        "{cpu:?}"
    );
    // Swap is there only with the kernel's swap accounting.
    if let Some(swap) = cgroup("memory/{}/memory.memsw.limit_in_bytes", "memory.swap.max") {
        let want = [(200 << 20).to_string(), ((200 - 96) << 20).to_string()];
        assert!(want.contains(&swap), "{swap}");
    }
    // The new limits hold at the next start too.
    d.ketch(&["restart", "-t", "1", "capped"]).ok();
    assert_eq!(limit(&d), 96 << 20);
}

#[test]
fn commit_makes_an_image_of_a_containers_changes_and_config() {
    require!(linux());
    let d = daemon();
    detached(
        &d,
        "source",
        &["-e", "FROM_RUN=1"],
        "echo made > /made; exec sleep 300",
    );
    d.eventually(10, "the file", || {
        d.ketch(&["exec", "source", "cat", "/made"]).stdout == "made\n"
    });
    let id = d
        .ketch(&[
            "commit",
            "-a",
            "Ada <ada@example.com>",
            "-m",
            "a snapshot",
            "-c",
            "CMD [\"cat\", \"/made\"]",
            "-c",
            "ENV GREETING=hi",
            "-c",
            "LABEL tier=snap",
            "source",
            "snap:v1",
        ])
        .ok();
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // Paused while its changes were read, running again after; with
    // --pause=false, not paused at all.
    assert_eq!(d.state("source"), "running");
    d.ketch(&["commit", "--pause=false", "source", "snap:unpaused"])
        .ok();
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let events = d
        .ketch(&[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--filter",
            "container=source",
            "--format",
            "{{.Action}}",
        ])
        .ok();
    let events: Vec<&str> = events
        .lines()
        .filter(|e| ["pause", "unpause", "commit"].contains(e))
        .collect();
    assert_eq!(events, ["pause", "unpause", "commit", "commit"]);
    assert_eq!(d.ketch(&["run", "--rm", "snap:v1"]).ok(), "made\n");
    let env = d
        .ketch(&[
            "run",
            "--rm",
            "snap:v1",
            "sh",
            "-c",
            "echo $GREETING $FROM_RUN",
        ])
        .ok();
    assert_eq!(env, "hi 1\n");
    let info = d
        .ketch(&[
            "image",
            "inspect",
            "-f",
            "{{.Author}} {{json .Config.Labels}}",
            "snap:v1",
        ])
        .ok();
    assert_eq!(info.trim(), r#"Ada <ada@example.com> {"tier":"snap"}"#);
    let (_, body) = d.http("GET", "/images/snap:v1/history", "");
    let h: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(h[0]["Comment"], "a snapshot", "{body}");
    assert!(h[0]["Size"].as_i64().unwrap() > 0);
    // Bad input: a change commit does not take, a missing container, a
    // Wasm container.
    let r = d.ketch(&["commit", "-c", "RUN rm -rf /", "source", "bad"]);
    assert!(
        r.stderr.contains("RUN is not a valid change command"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["commit", "nosuch", "bad"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["create", "--name", "guest", "spin"]).ok();
    let r = d.ketch(&["commit", "guest", "bad"]);
    assert!(
        r.stderr.contains("no root filesystem of its own to commit"),
        "{}",
        r.stderr
    );
    assert!(!d.ketch(&["images"]).ok().contains("bad"));
}

#[test]
fn export_then_import_makes_a_runnable_image_and_hostile_tars_are_refused() {
    require!(linux());
    let d = daemon();
    detached(&d, "orig", &[], "echo kept > /kept; exec sleep 300");
    d.eventually(10, "the file", || {
        d.ketch(&["exec", "orig", "cat", "/kept"]).stdout == "kept\n"
    });
    let tar = d.dir.path().join("orig.tar");
    d.ketch(&["export", "-o", tar.to_str().unwrap(), "orig"])
        .ok();
    // From a file, with changes and a message.
    let id = d
        .ketch(&[
            "import",
            "-c",
            "CMD [\"cat\", \"/kept\"]",
            "-m",
            "from a file",
            tar.to_str().unwrap(),
            "flat:v1",
        ])
        .ok();
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(d.ketch(&["run", "--rm", "flat:v1"]).ok(), "kept\n");
    let (_, body) = d.http("GET", "/images/flat:v1/history", "");
    let h: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    assert_eq!(h.len(), 1, "{body}");
    assert_eq!(h[0]["Comment"], "from a file");
    // From a URL on loopback.
    let data = std::fs::read(&tar).unwrap();
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = server.accept().unwrap();
        let mut req = [0u8; 4096];
        let _ = s.read(&mut req);
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            data.len()
        );
        let _ = s.write_all(&data);
    });
    let url = format!("http://127.0.0.1:{port}/rootfs.tar");
    d.ketch(&["import", "-c", "ENTRYPOINT [\"cat\"]", &url, "flat:v2"])
        .ok();
    serve.join().unwrap();
    assert_eq!(d.ketch(&["run", "--rm", "flat:v2", "/kept"]).ok(), "kept\n");
    // A hostile tar (a path out of the root) is refused, and makes nothing.
    let mut b = ::tar::Builder::new(Vec::new());
    let mut h = ::tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(::tar::EntryType::Regular);
    h.as_gnu_mut().unwrap().name[..10].copy_from_slice(b"../escaped");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let evil = d.dir.path().join("evil.tar");
    std::fs::write(&evil, b.into_inner().unwrap()).unwrap();
    let before = d.ketch(&["images", "-q"]).ok();
    let r = d.ketch(&["import", evil.to_str().unwrap(), "evil"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("escaped"), "{}", r.stderr);
    assert_eq!(d.ketch(&["images", "-q"]).ok(), before);
    let r = d.ketch(&["import", "file:///etc/passwd", "evil"]);
    assert_ne!(r.code, 0);
}

#[test]
fn pid_ipc_and_uts_namespaces_can_be_the_hosts_or_another_containers() {
    require!(linux());
    let d = daemon();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = d
        .ketch(&["run", "--rm", "--uts", "host", "busybox", "hostname"])
        .ok();
    assert_eq!(out.trim(), host_name.trim());
    let host_init = std::fs::read("/proc/1/cmdline").unwrap();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--pid",
            "host",
            "busybox",
            "cat",
            "/proc/1/cmdline",
        ])
        .ok();
    assert_eq!(out.as_bytes(), &host_init[..]);
    // Another container's: its processes are seen, its name is shared.
    detached(
        &d,
        "anchor",
        &["--hostname", "anchor-box"],
        "exec sleep 300",
    );
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--pid",
            "container:anchor",
            "--uts",
            "container:anchor",
            "--ipc",
            "container:anchor",
            "busybox",
            "sh",
            "-c",
            "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/ipc",
        ])
        .ok();
    let anchor_ipc = d
        .ketch(&["exec", "anchor", "readlink", "/proc/self/ns/ipc"])
        .ok();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["anchor-box", "sleep 300 ", anchor_ipc.trim()],
        "{out}"
    );
    // --ipc host is the host's; by default, one of its own.
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    let ipc = |args: &[&str]| {
        let mut argv = vec!["run", "--rm"];
        argv.extend(args);
        argv.extend(["busybox", "readlink", "/proc/self/ns/ipc"]);
        d.ketch(&argv).ok().trim().to_string()
    };
    assert_eq!(ipc(&["--ipc", "host"]), host_ipc.to_string_lossy());
    let own = ipc(&[]);
    assert!(
        own != host_ipc.to_string_lossy() && own != anchor_ipc.trim(),
        "{own}"
    );
    // Bad values and a container that is not running are refused, naming them.
    let r = d.ketch(&["create", "--pid", "sideways", "busybox"]);
    assert!(
        r.stderr.contains("invalid PidMode (--pid) \"sideways\""),
        "{}",
        r.stderr
    );
    d.ketch(&["create", "--name", "idle", "busybox", "true"])
        .ok();
    let r = d.ketch(&["run", "--rm", "--pid", "container:idle", "busybox", "true"]);
    assert!(
        r.stderr.contains("not a running Linux container"),
        "{}",
        r.stderr
    );
    d.wat_image("spin", SPIN_WAT);
    let r = d.ketch(&["create", "--uts", "host", "spin"]);
    assert!(
        r.stderr
            .contains("UTSMode (--uts) applies to Linux containers"),
        "{}",
        r.stderr
    );
}

/// `--volumes-from` gives a Linux container the other's bind mounts and
/// volumes, read-write or (`:ro`) read-only.
#[test]
fn volumes_from_gives_a_linux_container_the_others_binds_and_volumes() {
    require!(linux());
    let d = daemon();
    let host = d.dir.path().join("shared-dir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("from-host"), "on the host\n").unwrap();
    let bind = format!("{}:/hostdir", host.display());
    d.ketch(&[
        "run",
        "--name",
        "owner",
        "-v",
        &bind,
        "-v",
        "vf-vol:/vol",
        "busybox",
        "sh",
        "-c",
        "echo in the volume > /vol/f",
    ])
    .ok();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--volumes-from",
            "owner",
            "busybox",
            "sh",
            "-c",
            "cat /hostdir/from-host /vol/f; echo more >> /vol/f",
        ])
        .ok();
    assert_eq!(out, "on the host\nin the volume\n");
    let r = d.ketch(&[
        "run",
        "--rm",
        "--volumes-from",
        "owner:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /vol/f",
    ]);
    assert_ne!(r.code, 0, "a read-only volume was written");
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    d.ketch(&["rm", "owner"]).ok();
    d.ketch(&["volume", "rm", "vf-vol"]).ok();
}

#[test]
fn link_adds_a_hosts_line_and_rm_link_forgets_it() {
    require!(linux());
    let d = daemon();
    detached(&d, "dbserver", &[], "exec sleep 300");
    let ip = d
        .ketch(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            "dbserver",
        ])
        .ok();
    let ip = ip.trim().to_string();
    assert!(!ip.is_empty());
    d.ketch(&[
        "create",
        "--name",
        "app",
        "--link",
        "dbserver:db",
        "busybox",
        "cat",
        "/etc/hosts",
    ])
    .ok();
    let hosts = d.ketch(&["start", "-a", "app"]).ok();
    let line = hosts.lines().find(|l| l.starts_with(&ip)).unwrap_or("");
    assert!(line.split_whitespace().any(|n| n == "db"), "{hosts}");
    assert!(line.split_whitespace().any(|n| n == "dbserver"), "{hosts}");
    // docker rm --link: DELETE /containers//app/db?link=1.
    let (code, body) = d.http("DELETE", "/containers/%2Fapp%2Fdb?link=1", "");
    assert_eq!(code, 204, "{body}");
    let hosts = d.ketch(&["start", "-a", "app"]).ok();
    assert!(!hosts.contains(" db"), "{hosts}");
    let (code, _) = d.http("DELETE", "/containers/%2Fapp%2Fdb?link=1", "");
    assert_eq!(code, 404);
    let r = d.ketch(&["create", "--link", "nosuch:x", "busybox"]);
    assert!(
        r.stderr.contains("No such container: nosuch"),
        "{}",
        r.stderr
    );
}

#[test]
fn cpuset_and_swappiness_reach_the_cgroup() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--cpuset-cpus",
            "0",
            "--memory-swappiness",
            "10",
            "busybox",
            "grep",
            "Cpus_allowed_list",
            "/proc/self/status",
        ])
        .ok();
    assert_eq!(out.split_whitespace().last(), Some("0"), "{out}");
    for (flag, value, why) in [
        ("--cpuset-cpus", "3-1", "invalid CpusetCpus (--cpuset-cpus)"),
        ("--cpuset-mems", "x", "invalid CpusetMems (--cpuset-mems)"),
        (
            "--memory-swappiness",
            "101",
            "valid memory swappiness range is 0-100",
        ),
    ] {
        let r = d.ketch(&["create", flag, value, "busybox"]);
        assert!(r.stderr.contains(why), "{flag} {value}: {}", r.stderr);
    }
}

/// `--init`: Docker's init layout (`/sbin/docker-init -- CMD` as pid 1),
/// which passes `stop`'s SIGTERM to a command that, as pid 1, would
/// ignore it.
#[test]
fn init_runs_as_pid_1_and_forwards_signals() {
    require!(linux());
    require!(tool("tini-static", "tini, installed by .ci/setup"));
    let d = daemon();
    let ps = d
        .ketch(&["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"])
        .ok();
    let pid1 = ps.lines().find(|l| l.trim_start().starts_with("1 "));
    assert_eq!(
        pid1.map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")),
        Some("/sbin/docker-init -- ps -o pid,args".into()),
        "{ps}"
    );
    d.ketch(&[
        "run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "100",
    ])
    .ok();
    // The init has set up its signal handling once its child runs (a
    // SIGTERM before that finds pid 1 without a handler, and is dropped).
    d.eventually(10, "the init's child", || {
        d.ketch(&["exec", "sleeper", "ps", "-o", "pid,args"])
            .stdout
            .lines()
            .any(|l| l.trim_start().starts_with("2 sleep 100") || l.ends_with(" sleep 100"))
    });
    let t = std::time::Instant::now();
    d.ketch(&["stop", "-t", "20", "sleeper"]).ok();
    assert!(
        t.elapsed() < std::time::Duration::from_secs(15),
        "the init did not pass SIGTERM on: stop waited {:?}",
        t.elapsed()
    );
    assert_eq!(
        d.ketch(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            "sleeper"
        ])
        .ok()
        .trim(),
        "exited 143"
    );
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{json .HostConfig.Init}}", "sleeper"])
            .ok()
            .trim(),
        "true"
    );
    // It reaps: the orphans a command leaves behind do not stay zombies,
    // as they do under a pid 1 that never waits (the control).
    let orphans = "(sleep 0.1 &); (sleep 0.1 &); exec sleep 100";
    for (init, zombies) in [(true, 0), (false, 2)] {
        let name = format!("orphans-{init}");
        let mut args = vec!["run", "-d", "--name", &name];
        if init {
            args.push("--init");
        }
        args.extend(["busybox", "sh", "-c", orphans]);
        d.ketch(&args).ok();
        let count = || {
            let ps = d.ketch(&["exec", &name, "ps", "-o", "stat,args"]).ok();
            ps.lines()
                .filter(|l| l.trim_start().starts_with('Z'))
                .count()
        };
        d.eventually(10, "the orphans exited", || count() == zombies);
        std::thread::sleep(std::time::Duration::from_millis(300));
        assert_eq!(count(), zombies, "--init {init}");
        d.ketch(&["rm", "-f", &name]).ok();
    }
    // A missing command is still 127, named.
    let r = d.ketch(&["run", "--rm", "--init", "busybox", "nosuchcmd"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    assert!(r.stderr.contains("\"nosuchcmd\""), "{}", r.stderr);
}

/// A container's `HostConfig` as inspect shows it.
fn host_config(d: &TestDaemon, name: &str) -> serde_json::Value {
    let json = d
        .ketch(&["inspect", "-f", "{{json .HostConfig}}", name])
        .ok();
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// `--device` makes the host's node in the container and allows it; a
/// node made inside is refused by the device cgroup unless a
/// `--device-cgroup-rule` allows it. Bad devices and rules are 400s that
/// name them.
#[test]
fn devices_and_device_cgroup_rules() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--device",
            "/dev/null:/dev/mynull:rw",
            "busybox",
            "sh",
            "-c",
            "echo hi > /dev/mynull && stat -c %t:%T /dev/mynull",
        ])
        .ok();
    assert_eq!(out, "1:3\n");
    // /dev/kmsg (c 1:11) opened for writing, and nothing written.
    let open_kmsg = "mkdir -p /tmp && mknod /tmp/k c 1 11 && exec 3>/tmp/k && echo opened";
    let r = d.ketch(&["run", "--rm", "busybox", "sh", "-c", open_kmsg]);
    assert!(
        r.code != 0 && r.stderr.contains("Operation not permitted"),
        "{} {}",
        r.stdout,
        r.stderr
    );
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--device-cgroup-rule",
            "c 1:11 w",
            "busybox",
            "sh",
            "-c",
            open_kmsg,
        ])
        .ok();
    assert_eq!(out, "opened\n");
    d.ketch(&[
        "create",
        "--name",
        "dev",
        "--device",
        "/dev/null",
        "--device-cgroup-rule",
        "b 7:* r",
        "busybox",
    ])
    .ok();
    let shown = host_config(&d, "dev");
    assert_eq!(
        shown["Devices"],
        serde_json::json!([{"PathOnHost": "/dev/null", "PathInContainer": "/dev/null",
            "CgroupPermissions": "rwm"}])
    );
    assert_eq!(shown["DeviceCgroupRules"], serde_json::json!(["b 7:* r"]));
    let before = d.ketch(&["ps", "-aq"]).ok();
    for (flag, value, why) in [
        ("--device", "/dev/nosuchdev", "\"/dev/nosuchdev\""),
        ("--device", "/etc/hostname", "not a device node"),
        (
            "--device",
            "/dev/null:/dev/n:rwx",
            "invalid device mode: rwx",
        ),
        ("--device-cgroup-rule", "x 1:3 rwm", "\"x 1:3 rwm\""),
    ] {
        let r = d.ketch(&["create", flag, value, "busybox"]);
        assert!(
            r.code != 0 && r.stderr.contains(why),
            "{flag} {value}: {}",
            r.stderr
        );
    }
    assert_eq!(d.ketch(&["ps", "-aq"]).ok(), before);
}

/// `--shm-size` sizes `/dev/shm`; inspect shows it (Docker's 64 MiB when
/// not given) and the paths runc masks and makes read-only, as they are.
#[test]
fn shm_size_and_the_hidden_paths_show_in_inspect() {
    require!(linux());
    let d = daemon();
    let out = d
        .ketch(&[
            "run",
            "--rm",
            "--shm-size",
            "16m",
            "busybox",
            "df",
            "-k",
            "/dev/shm",
        ])
        .ok();
    let total = out.lines().nth(1).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(total, Some("16384"), "{out}");
    d.ketch(&[
        "create",
        "--name",
        "plain",
        "busybox",
        "ls",
        "-A",
        "/sys/firmware",
    ])
    .ok();
    let hc = host_config(&d, "plain");
    assert_eq!(hc["ShmSize"], 64 << 20);
    // Docker's defaults for the namespaces left unset.
    assert_eq!(hc["IpcMode"], "private", "{hc}");
    let cgroupns = if std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" /sys/fs/cgroup ") && l.contains(" - cgroup2 "))
    {
        "private"
    } else {
        "host"
    };
    assert_eq!(hc["CgroupnsMode"], cgroupns, "{hc}");
    assert!(
        hc["MaskedPaths"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("/sys/firmware")),
        "{hc}"
    );
    assert!(
        hc["ReadonlyPaths"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("/proc/sys")),
        "{hc}"
    );
    // What inspect says is masked is: the host's /sys/firmware is not
    // there.
    assert_eq!(d.ketch(&["start", "-a", "plain"]).ok(), "");
    let r = d.ketch(&["create", "--shm-size", "-1", "busybox"]);
    assert!(r.code != 0, "{}", r.stderr);
}

/// `GraphDriver.Data` names the overlay's directories as Docker's overlay2
/// does, and they are the container's: a file it writes is in `UpperDir`
/// and, while it runs, `MergedDir` (its root as the host reaches it); the
/// image's files are in `LowerDir`.
#[test]
fn graph_driver_data_names_the_containers_overlay() {
    require!(linux());
    let d = daemon();
    d.ketch(&[
        "run",
        "-d",
        "--name",
        "layered",
        "busybox",
        "sh",
        "-c",
        "echo mine > /written && exec sleep 100",
    ])
    .ok();
    let graph = || -> serde_json::Value {
        serde_json::from_str(
            &d.ketch(&["inspect", "-f", "{{json .GraphDriver}}", "layered"])
                .ok(),
        )
        .expect("GraphDriver as JSON")
    };
    let dir =
        |g: &serde_json::Value, k: &str| std::path::PathBuf::from(g["Data"][k].as_str().unwrap());
    let g = graph();
    assert_eq!(g["Name"], "overlay2", "{g}");
    let driver = d.ketch(&["inspect", "-f", "{{.Driver}}", "layered"]).ok();
    assert_eq!(driver.trim(), "overlay2");
    d.eventually(10, "the file in the upper dir", || {
        std::fs::read_to_string(dir(&g, "UpperDir").join("written")).is_ok_and(|s| s == "mine\n")
    });
    assert_eq!(
        std::fs::read_to_string(dir(&g, "MergedDir").join("written")).unwrap(),
        "mine\n"
    );
    assert!(dir(&g, "WorkDir").is_dir(), "{g}");
    let lower = g["Data"]["LowerDir"].as_str().unwrap();
    assert!(
        lower
            .split(':')
            .any(|l| std::path::Path::new(l).join("bin/busybox").is_file()),
        "{lower}"
    );
    // The image's own: its top layer as UpperDir, the rest below.
    let img: serde_json::Value = serde_json::from_str(
        &d.ketch(&["image", "inspect", "-f", "{{json .GraphDriver}}", "busybox"])
            .ok(),
    )
    .expect("the image's GraphDriver as JSON");
    assert_eq!(img["Name"], "overlay2", "{img}");
    let dirs = format!(
        "{}:{}",
        img["Data"]["UpperDir"].as_str().unwrap(),
        img["Data"]["LowerDir"].as_str().unwrap_or_default()
    );
    assert_eq!(
        dirs.trim_end_matches(':'),
        lower,
        "the image's layers are the container's lower dirs"
    );
    // Stopped, the upper dir keeps the change.
    d.ketch(&["stop", "-t", "0", "layered"]).ok();
    let g = graph();
    assert!(dir(&g, "UpperDir").join("written").is_file());
    d.ketch(&["rm", "-f", "layered"]).ok();
    // Deleted just after the answer.
    d.eventually(10, "the upper dir removed with the container", || {
        !dir(&g, "UpperDir").exists()
    });
}

/// `--cgroupns private` gives the container its own cgroup as its root;
/// by default (`host`, as Docker on cgroup v1) it sees its place in the
/// host's hierarchy.
#[test]
fn cgroupns_private_hides_the_hosts_cgroup_paths() {
    require!(linux());
    let d = daemon();
    let private = d
        .ketch(&[
            "run",
            "--rm",
            "--cgroupns",
            "private",
            "busybox",
            "cat",
            "/proc/self/cgroup",
        ])
        .ok();
    assert!(
        !private.is_empty() && private.lines().all(|l| l.ends_with(":/")),
        "{private}"
    );
    let host = d
        .ketch(&["run", "--rm", "busybox", "cat", "/proc/self/cgroup"])
        .ok();
    assert!(host.contains("/ketch/"), "{host}");
    d.ketch(&[
        "create",
        "--name",
        "cgp",
        "--cgroupns",
        "private",
        "busybox",
    ])
    .ok();
    d.ketch(&["create", "--name", "cgh", "busybox"]).ok();
    for (name, mode) in [("cgp", "private"), ("cgh", "host")] {
        assert_eq!(
            d.ketch(&["inspect", "-f", "{{.HostConfig.CgroupnsMode}}", name])
                .ok()
                .trim(),
            mode
        );
    }
    let r = d.ketch(&["create", "--cgroupns", "sideways", "busybox"]);
    assert!(
        r.code != 0
            && r.stderr
                .contains("invalid CgroupnsMode (--cgroupns) \"sideways\""),
        "{}",
        r.stderr
    );
}
