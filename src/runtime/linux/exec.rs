//! `exec` in a running Linux container. Joining a container's namespaces
//! takes a fork, which the multi-threaded daemon must not do, so ketchd
//! spawns `ketch-monitor exec REQUEST-JSON` with the exec's stdio as its
//! own. That helper joins the container with libcontainer's tenant builder (the
//! container's namespaces, including the network namespace its monitor
//! made, its cgroup, capabilities and seccomp filter), waits for the
//! process and exits with its status.

use super::step::{Step, StepError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// Exit status when the process could not be started (as Docker's 126).
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit status when the command was not found (as Docker's 127).
pub const EXIT_NOT_FOUND: i32 = 127;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecRequest {
    pub id: String,
    pub state_root: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `-t`: where the process's pty master is sent (ketchd listens).
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    /// `--privileged`: every capability.
    #[serde(default)]
    pub privileged: bool,
}

/// With a terminal, or privileged, the tenant's whole process is given as
/// a file at `path`: the container's own process (capabilities, rlimits,
/// no_new_privs) with this exec's command, environment, directory, user
/// and `terminal` set, and with `--privileged` every capability (as
/// Docker's privileged exec; the container's seccomp filter stays).
fn process_file(req: &ExecRequest, path: &std::path::Path) -> Result<(), StepError> {
    let c = libcontainer::container::Container::load(req.state_root.join(&req.id))
        .step(format!("loading container {}", req.id))?;
    let spec = oci_spec::runtime::Spec::load(c.bundle().join("config.json"))
        .step("reading the container's spec")?;
    let mut p = spec
        .process()
        .clone()
        .ok_or_else(|| StepError::missing("the container's spec has no process"))?;
    p.set_terminal(Some(req.console_socket.is_some()));
    p.set_args(Some(req.args.clone()));
    // The exec's environment over the container's (which has the PATH
    // the container was given when its image had none).
    let mut env: Vec<String> = p
        .env()
        .iter()
        .flatten()
        .filter(|e| {
            let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            !req.env.iter().any(|(k, _)| k == key)
        })
        .cloned()
        .collect();
    env.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
    p.set_env(Some(env));
    if let Some(cwd) = &req.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    let mut user = p.user().clone();
    if let Some(uid) = req.uid {
        user.set_uid(uid);
    }
    if let Some(gid) = req.gid {
        user.set_gid(gid);
    }
    p.set_user(user);
    if req.privileged {
        let all: oci_spec::runtime::Capabilities = super::spec::all_capabilities()
            .iter()
            .filter_map(|c| serde_json::from_value(serde_json::json!(c)).ok())
            .collect();
        let mut caps = p.capabilities().clone().unwrap_or_default();
        caps.set_bounding(Some(all.clone()));
        caps.set_effective(Some(all.clone()));
        caps.set_permitted(Some(all));
        p.set_capabilities(Some(caps));
    }
    let json = serde_json::to_vec(&p).step("encoding the process")?;
    std::fs::write(path, json).step(format!("writing {}", path.display()))?;
    Ok(())
}

/// Find the exec's command in the running container's root (its init's
/// `/proc/PID/root`) as `execve` will, with the exec's `PATH` and
/// directory over the container's. A container whose root cannot be
/// read here is left to libcontainer to report.
fn check_command(req: &ExecRequest) -> Result<(), (i64, String)> {
    let Some(cmd) = req.args.first() else {
        return Ok(());
    };
    let Ok(c) = libcontainer::container::Container::load(req.state_root.join(&req.id)) else {
        return Ok(());
    };
    let (Some(pid), Ok(spec)) = (
        c.pid(),
        oci_spec::runtime::Spec::load(c.bundle().join("config.json")),
    ) else {
        return Ok(());
    };
    let Ok(root) = crate::confine::Root::open(std::path::Path::new(&format!("/proc/{pid}/root")))
    else {
        return Ok(());
    };
    let process = spec.process().clone().unwrap_or_default();
    let path = match req.env.iter().find(|(k, _)| k == "PATH") {
        Some((_, v)) => Some(v.clone()),
        None => process
            .env()
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("PATH=").map(str::to_string)),
    };
    let cwd = req
        .cwd
        .clone()
        .unwrap_or_else(|| process.cwd().to_string_lossy().into_owned());
    let dir = root.open_in_root(
        cwd.as_bytes(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY,
    );
    if dir.is_err() {
        return Err((
            EXIT_CANNOT_EXEC as i64,
            format!("chdir to cwd ({cwd:?}) set in config.json failed: no such file or directory"),
        ));
    }
    super::monitor::find_command(&root, cmd, &cwd, path.as_deref())
}

/// The exec'd process, for [`on_term`].
static EXECED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_term(_: libc::c_int) {
    let pid = EXECED.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// SIGTERM to this helper (a timed-out health probe) kills the process
/// it waits for, which is in the container's pid namespace and would
/// outlive the helper; the helper then exits with its status.
fn end_on_term(pid: i32) {
    EXECED.store(pid, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: a zeroed sigaction with a handler that only calls kill(2);
    // SA_RESTART keeps waitpid going.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// Entry point of `ketch-monitor exec REQUEST`. Must run before any other thread
/// exists in the process: libcontainer forks.
pub fn main(arg: &str) -> i32 {
    let fail = |code: i32, msg: String| {
        let _ = writeln!(std::io::stderr(), "ketch exec: {msg}");
        code
    };
    let req: ExecRequest = match serde_json::from_str(arg) {
        Ok(r) => r,
        Err(e) => return fail(EXIT_CANNOT_EXEC, format!("bad request: {e}")),
    };
    // SAFETY: a plain prctl; the exec'd process ends up our grandchild.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    use libcontainer::container::builder::ContainerBuilder;
    use libcontainer::syscall::syscall::SyscallType;
    let env: HashMap<String, String> = req.env.iter().cloned().collect();
    let process = match (&req.console_socket, req.privileged) {
        (Some(sock), _) => Some(sock.with_extension("json")),
        (None, true) => Some(
            req.state_root
                .join(&req.id)
                .join(format!("exec-{}.json", std::process::id())),
        ),
        (None, false) => None,
    };
    if let Err((code, why)) = check_command(&req) {
        // Docker's words, which its clients match.
        let _ = writeln!(
            std::io::stderr(),
            "OCI runtime exec failed: exec failed: unable to start container process: {why}: unknown"
        );
        return code as i32;
    }
    if let Some(path) = &process {
        if let Err(e) = process_file(&req, path) {
            return fail(EXIT_CANNOT_EXEC, e.to_string());
        }
    }
    let built = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_root_path(&req.state_root)
        .map(|b| b.with_console_socket(req.console_socket.clone()))
        .and_then(|b| {
            b.as_tenant()
                .with_process(process.clone())
                .with_container_args(req.args.clone())
                .with_env(env)
                .with_cwd(req.cwd.as_ref().map(PathBuf::from))
                .with_user(req.uid)
                .with_group(req.gid)
                .with_detach(true)
                .build()
        });
    if let (None, Some(path)) = (&req.console_socket, &process) {
        let _ = std::fs::remove_file(path);
    }
    let pid = match built {
        Ok(pid) => pid.as_raw(),
        Err(e) => {
            let msg = e.to_string();
            let code = if msg.contains("not found") {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXEC
            };
            let cmd = req.args.first().cloned().unwrap_or_default();
            // Reap what libcontainer started before it failed, so nothing
            // is left as a zombie in the container.
            // SAFETY: status is a valid out pointer; -1 = any child.
            while unsafe { libc::waitpid(-1, &mut 0, 0) } > 0 {}
            return fail(code, format!("cannot run {cmd:?}: {msg}"));
        }
    };
    end_on_term(pid);
    loop {
        let mut status = 0;
        // SAFETY: status is a valid out pointer.
        let reaped = unsafe { libc::waitpid(-1, &mut status, 0) };
        if reaped < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return fail(EXIT_CANNOT_EXEC, "lost the exec'd process".into());
        }
        if reaped == pid {
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    }
}
