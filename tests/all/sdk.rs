//! The Docker SDK for Python (PyPI `docker`, installed by .ci/setup)
//! driving a test ketchd: tests/sdk/docker_sdk_check.py. Skipped, saying
//! why, when no Python with the SDK is found.

use crate::common::*;
use std::process::Command;

/// A Python that can `import docker`: the venv .ci/setup makes, else the
/// system's.
fn python_with_sdk() -> Option<String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/sdk-venv/bin/python3");
    [venv, "python3"].into_iter().map(String::from).find(|py| {
        Command::new(py)
            .args(["-c", "import docker"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn python_sdk_drives_both_kinds_of_container() {
    let Some(python) = python_with_sdk() else {
        eprintln!("skipped: no python3 with the docker SDK (.ci/setup installs it)");
        return;
    };
    if let Some(why) = linux_unavailable() {
        eprintln!("skipped: the SDK tier runs Linux containers too, which need {why}");
        return;
    }
    let d = TestDaemon::start();
    busybox_image(&d);
    // The SDK's run raises on a non-zero exit: this one exits 0.
    let ok_wat = HELLO_WAT.replace("(call $exit (i32.const 3))", "(call $exit (i32.const 0))");
    assert_ne!(ok_wat, HELLO_WAT);
    d.wat_image("hello", &ok_wat);
    let mut args = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/docker_sdk_check.py").to_string(),
        d.socket.display().to_string(),
        "hello".to_string(),
        "busybox".to_string(),
    ];
    // A pull from a real registry, when one can run here.
    let registry = crate::registry::Registry::start(None);
    if let Some(r) = &registry {
        let reference = format!("{}/sdk/hello:1", r.addr);
        d.ketch(&["tag", "hello", &reference]).ok();
        d.ketch(&["push", &reference]).ok();
        d.ketch(&["rmi", &reference]).ok();
        args.push(reference);
    }
    let out = Command::new(&python).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.daemon_log()
    );
    assert!(stdout.contains("all SDK checks passed"), "{stdout}");
}
