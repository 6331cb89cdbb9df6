//! The Docker SDK for Python (PyPI `docker`, installed by .ci/setup)
//! driving a test ketchd: tests/sdk/docker_sdk_check.py. It needs a
//! Python with the SDK, root and busybox (Linux containers) and
//! docker-registry (a pull); see `require!`.

use crate::common::*;
use std::process::Command;

/// A Python that can `import docker`: the venv .ci/setup makes, else the
/// system's. A requirement (see `require!`).
fn python_with_sdk() -> Result<String, String> {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/sdk-venv/bin/python3");
    [venv, "python3"]
        .into_iter()
        .map(String::from)
        .find(|py| {
            Command::new(py)
                .args(["-c", "import docker"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .ok_or_else(|| format!("a python3 with the Docker SDK ({venv}, made by .ci/setup)"))
}

#[test]
fn python_sdk_drives_both_kinds_of_container() {
    let python = require!(python_with_sdk());
    require!(linux());
    // A pull from a real registry is one of the checks.
    let registry = require!(crate::registry::Registry::start(None));
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
    let reference = format!("{}/sdk/hello:1", registry.addr);
    d.ketch(&["tag", "hello", &reference]).ok();
    d.ketch(&["push", &reference]).ok();
    d.ketch(&["rmi", &reference]).ok();
    args.push(reference);
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
