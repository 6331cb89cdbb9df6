//! Linux containers end to end: a busybox image built FROM scratch, run in
//! namespaces with cgroup limits, through the CLI and the API. These need
//! root and busybox-static (`require!(linux())`: CI has both, so there a
//! missing one fails the test; elsewhere it skips, saying why).
//!
//! `run`: what `run` sets up (isolation, options, limits) and `RUN` in
//! builds; `exec`: exec, cp, terminals and attach; `net`: networks,
//! published ports, a ketchd restart, and cleanup.

mod exec;
mod net;
mod run;

use crate::common::*;

/// A daemon with the busybox image built.
fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    busybox_image(&d);
    d
}

/// `busybox sh -c script` started detached as `name` (with `opts` before
/// the image).
fn detached(d: &TestDaemon, name: &str, opts: &[&str], script: &str) -> String {
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["busybox", "sh", "-c", script]);
    d.ketch(&args).ok().trim().to_string()
}

/// The number of lines in a container's log.
fn log_lines(d: &TestDaemon, name: &str) -> usize {
    d.ketch(&["logs", name]).stdout.lines().count()
}
