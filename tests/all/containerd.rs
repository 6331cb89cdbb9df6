//! ketch's Wasm runtime under a real containerd (Debian's 1.6, started here
//! on a private root, state and socket, without the CRI plugin), driven with
//! `ctr` as a user would: images built and pushed by ketch to a local
//! registry, pulled with `--platform wasi/wasm`, run with
//! `--runtime io.containerd.ketch.v1`.

use crate::common::*;
use crate::registry::Registry;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const RUNTIME: &str = "io.containerd.ketch.v1";
/// Copies stdin to stdout until end of file.
const CAT_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 1024))
      (i32.store (i32.const 8) (i32.const 0))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.eqz (i32.load (i32.const 8))) (then (return)))
      (i32.store (i32.const 16) (i32.const 64))
      (i32.store (i32.const 20) (i32.load (i32.const 8)))
      (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
      (br $l))))"#;
const NS: &str = "kt";
/// The namespace of containerd's CRI plugin.
const K8S: &str = "k8s.io";

struct Containerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// The namespace `ctr` works in.
    ns: &'static str,
}

impl Containerd {
    /// CRI off; `ctr` in the test namespace.
    fn start() -> Result<Self, String> {
        Self::start_with(None)
    }

    /// With `Some(sandbox image)`, containerd's CRI plugin is on, with a
    /// runtime `ketch` (its default) and no CNI (pods use the host's
    /// network), and `ctr` works in its namespace.
    fn start_with(cri: Option<&str>) -> Result<Self, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("root, to run containerd".into());
        }
        tool("containerd", "Debian's containerd, installed by .ci/setup")?;
        tool("ctr", "Debian's containerd, installed by .ci/setup")?;
        let dir = tempfile::Builder::new()
            .prefix("kctd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path().display();
        let mut config = format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\
             [grpc]\n  address = \"{d}/c.sock\"\n[ttrpc]\n  address = \"{d}/c.sock.ttrpc\"\n"
        );
        match cri {
            None => config.insert_str(0, "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"),
            Some(sandbox) => config.push_str(&format!(
                "[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"{sandbox}\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"overlayfs\"\n  \
                 default_runtime_name = \"ketch\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.ketch]\n  \
                 runtime_type = \"{RUNTIME}\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  bin_dir = \"{d}/cni/bin\"\n  conf_dir = \"{d}/cni/conf\"\n"
            )),
        }
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let shim = Path::new(env!("CARGO_BIN_EXE_containerd-shim-ketch-v1"));
        let path = format!(
            "{}:{}",
            shim.parent().unwrap().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(dir.path().join("config.toml"))
            .env("PATH", path)
            .env("KETCH_SHIM_CACHE", dir.path().join("cache"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("containerd: {e}"))?;
        let c = Containerd {
            child: Some(child),
            dir,
            ns: if cri.is_some() { K8S } else { NS },
        };
        wait_until(Duration::from_secs(30), "containerd to answer", || {
            c.ctr(&["version"]).status.success()
        });
        Ok(c)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", self.ns])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr")
    }

    /// `ctr …` with `input` on its stdin; its output.
    fn ctr_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write;
        let mut child = Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(["-n", self.ns])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ctr");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    /// `ctr …`, which must succeed; its stdout.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ctr …`, which must fail; its stderr.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(!out.status.success(), "ctr {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `ctr run -d` on the ketch runtime, the task's output going to
    /// `<dir>/<id>.log` (ctr leaves the FIFOs of a detached task behind in
    /// /run/containerd/fifo; a file:// log it does not).
    #[track_caller]
    fn run_d(&self, image: &str, id: &str) {
        let log = format!("file://{}", self.task_log(id).display());
        self.ok(&[
            "run",
            "-d",
            "--log-uri",
            &log,
            "--runtime",
            RUNTIME,
            image,
            id,
        ]);
    }

    fn task_log(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The task table as `ctr task ls` shows it: (id, pid, status).
    fn tasks(&self) -> Vec<(String, String, String)> {
        self.ok(&["task", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3).then(|| (f[0].into(), f[1].into(), f[2].into()))
            })
            .collect()
    }

    fn status(&self, id: &str) -> Option<String> {
        self.tasks().into_iter().find(|t| t.0 == id).map(|t| t.2)
    }

    /// Pids of the shim processes serving this containerd.
    fn shims(&self) -> Vec<u32> {
        let socket = self.socket().display().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd);
                cmd.contains("containerd-shim-ketch-v1") && cmd.contains(&socket)
            })
            .collect()
    }

    /// The socket the namespace's shim serves on.
    fn shim_socket(&self) -> PathBuf {
        let a = containerd_shim::socket_address(
            &self.socket().display().to_string(),
            self.ns,
            "io.containerd.ketch.v1/ketch",
        );
        PathBuf::from(a.trim_start_matches("unix://"))
    }

    fn bundles(&self) -> Vec<String> {
        let dir = self
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(self.ns);
        std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills and removes every task and container, waiting for each.
    fn clear(&self) {
        for (id, _, status) in self.tasks() {
            if status != "STOPPED" {
                let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
            }
            wait_until(Duration::from_secs(10), "a killed task to stop", || {
                self.status(&id).is_none_or(|s| s == "STOPPED")
            });
            let _ = self.ctr(&["task", "delete", &id]);
        }
        for line in self.ok(&["containers", "ls", "-q"]).lines() {
            let _ = self.ctr(&["containers", "delete", line.trim()]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling a child we own.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if !poll(Duration::from_secs(10), || {
                child.try_wait().ok().flatten().is_some()
            }) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for pid in self.shims() {
            // SAFETY: a shim this test's containerd started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::fs::remove_file(self.shim_socket());
    }
}

/// ketchd builds the images and pushes them to a local registry;
/// containerd pulls them from there.
fn push(d: &TestDaemon, reg: &Registry, c: &Containerd, image: &str, platform: &str) -> String {
    let r = format!("{}/{image}:latest", reg.addr);
    d.ketch(&["tag", image, &r]).ok();
    d.ketch(&["push", &r]).ok();
    c.ok(&["images", "pull", "--plain-http", "--platform", platform, &r]);
    r
}

#[test]
fn containerd_runs_wasm_images_through_one_ketch_shim() {
    let reg = require!(Registry::start(None));
    let c = require!(Containerd::start());
    let d = TestDaemon::start();
    example_image(&d, "hello");
    example_image(&d, "ticker");
    example_image(&d, "volume");
    d.wat_image("spin", SPIN_WAT);
    d.wat_image("grow", GROW_WAT);
    d.wat_image("cat", CAT_WAT);
    let hello = push(&d, &reg, &c, "hello", "wasi/wasm");
    let ticker = push(&d, &reg, &c, "ticker", "wasi/wasm");
    let volume = push(&d, &reg, &c, "volume", "wasi/wasm");
    let spin = push(&d, &reg, &c, "spin", "wasi/wasm");
    let grow = push(&d, &reg, &c, "grow", "wasi/wasm");
    let cat = push(&d, &reg, &c, "cat", "wasi/wasm");
    // ketch build marked them Wasm, so containerd sees Wasm images.
    let images = c.ok(&["images", "ls"]);
    assert!(
        images.lines().filter(|l| l.contains("wasi/wasm")).count() >= 5,
        "{images}"
    );

    // run --rm: the guest's output, then its exit code.
    let out = c.ok(&["run", "--rm", "--runtime", RUNTIME, &hello, "h1"]);
    assert!(
        out.contains("Hello, world! (from a ketch Wasm container)"),
        "{out}"
    );
    assert!(out.contains("args: [\"/hello.wasm\"]"), "{out}");
    let r = c.ctr(&[
        "run",
        "--rm",
        "--env",
        "EXIT_CODE=3",
        "--runtime",
        RUNTIME,
        &hello,
        "h2",
    ]);
    assert_eq!(r.status.code(), Some(3));

    // stdin reaches the guest, and the client closing it is the guest's end of file.
    let r = c.ctr_stdin(
        &["run", "--rm", "--runtime", RUNTIME, &cat, "c1"],
        b"through the shim\n",
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(String::from_utf8_lossy(&r.stdout), "through the shim\n");

    // A bind mount is the guest's only directory, read-only if asked.
    let data = tempfile::tempdir().unwrap();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        data.path().display()
    );
    let out = c.ok(&[
        "run",
        "--rm",
        "--mount",
        &mount,
        "--runtime",
        RUNTIME,
        &volume,
        "v1",
    ]);
    assert!(out.contains("/data/visits.txt has 1 visits"), "{out}");
    assert!(out.contains("/etc is not visible"), "{out}");
    assert!(data.path().join("visits.txt").exists());
    let ro = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        data.path().display()
    );
    let r = c.ctr(&[
        "run",
        "--rm",
        "--mount",
        &ro,
        "--runtime",
        RUNTIME,
        &volume,
        "v2",
    ]);
    assert_eq!(
        r.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&r.stdout)
    );

    // The memory limit is the guest's cap.
    let r = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "8388608",
        "--runtime",
        RUNTIME,
        &grow,
        "g1",
    ]);
    assert_eq!(r.status.code(), Some(134));
    // The trap goes to the task's stderr.
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("memory refused: over the container's --memory of 8MiB"),
        "{err}"
    );

    // Detached tasks: one shim process serves them all.
    for id in ["t1", "t2", "t3"] {
        c.run_d(&ticker, id);
    }
    let tasks = c.tasks();
    assert_eq!(tasks.len(), 3, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.2 == "RUNNING"), "{tasks:?}");
    let shims = c.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    assert!(
        tasks.iter().all(|t| t.1 == shims[0].to_string()),
        "{tasks:?}"
    );

    c.ok(&["task", "pause", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("PAUSED"));
    assert!(c.fails(&["task", "pause", "t1"]).contains("already paused"));
    c.ok(&["task", "resume", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("RUNNING"));
    // SIGSTOP and SIGCONT are pause and resume.
    c.ok(&["task", "kill", "-s", "SIGSTOP", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("PAUSED"));
    c.ok(&["task", "kill", "-s", "SIGCONT", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("RUNNING"));
    // SIGSTOP and SIGCONT are pause and resume.
    c.ok(&["task", "kill", "-s", "SIGSTOP", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("PAUSED"));
    c.ok(&["task", "kill", "-s", "SIGCONT", "t1"]);
    assert_eq!(c.status("t1").as_deref(), Some("RUNNING"));
    let metrics = c.ok(&["task", "metrics", "t1"]);
    assert!(metrics.contains("memory.usage_in_bytes"), "{metrics}");
    assert!(
        metrics.contains("memory.limit_in_bytes    268435456"),
        "{metrics}"
    );
    let e = c.fails(&["task", "exec", "--exec-id", "x", "t1", "/x.wasm"]);
    assert!(e.contains("exec is not supported"), "{e}");
    let e = c.fails(&["task", "delete", "t2"]);
    assert!(e.contains("running"), "{e}");
    c.ok(&["task", "kill", "-s", "SIGKILL", "t2"]);
    c.ok(&["task", "kill", "t3"]);
    wait_until(Duration::from_secs(5), "killed tasks to stop", || {
        c.status("t2").as_deref() == Some("STOPPED") && c.status("t3").as_deref() == Some("STOPPED")
    });
    let e = c.fails(&["task", "kill", "t2"]);
    assert!(e.contains("process already finished"), "{e}");
    c.ok(&["task", "delete", "t2"]);
    c.ok(&["task", "delete", "t3"]);
    c.ok(&["containers", "delete", "t2", "t3"]);
    assert_eq!(c.tasks().len(), 1);

    // A guest spinning in pure computation dies within a second of a kill.
    c.run_d(&spin, "s1");
    assert_eq!(c.status("s1").as_deref(), Some("RUNNING"));
    let t0 = Instant::now();
    c.ok(&["task", "kill", "-s", "SIGKILL", "s1"]);
    wait_until(Duration::from_secs(5), "the spinning guest to stop", || {
        c.status("s1").as_deref() == Some("STOPPED")
    });
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "the kill took {took:?}");
    assert_eq!(c.shims().len(), 1);
    c.clear();

    // With its last task gone the shim ends, and takes its socket along.
    wait_until(Duration::from_secs(10), "the shim to end", || {
        c.shims().is_empty()
    });
    assert!(!c.shim_socket().exists());
    assert!(c.bundles().is_empty(), "{:?}", c.bundles());
}

#[test]
fn containerd_shows_ketch_shim_errors_and_survives_a_shim_crash() {
    let reg = require!(Registry::start(None));
    require!(linux());
    let c = require!(Containerd::start());
    let d = TestDaemon::start();
    example_image(&d, "hello");
    example_image(&d, "ticker");
    busybox_image(&d);
    let hello = push(&d, &reg, &c, "hello", "wasi/wasm");
    let ticker = push(&d, &reg, &c, "ticker", "wasi/wasm");
    let busybox = push(&d, &reg, &c, "busybox", "linux/amd64");

    // A Linux image, and an entrypoint the image does not have: ctr says
    // why, and nothing is left.
    let e = c.fails(&["run", "--rm", "--runtime", RUNTIME, &busybox, "b1"]);
    assert!(
        e.contains("task b1 has no Wasm entrypoint: /bin/sh is a Linux executable (ELF)"),
        "{e}"
    );
    assert!(e.contains("io.containerd.runc.v2"), "{e}");
    let e = c.fails(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        &hello,
        "b2",
        "/nope.wasm",
    ]);
    assert!(
        e.contains("task b2 has no Wasm entrypoint: /nope.wasm is not in the image"),
        "{e}"
    );
    // A network grant, which the shim cannot give: refused by name.
    let e = c.fails(&[
        "run",
        "--rm",
        "--runtime",
        RUNTIME,
        "--annotation",
        "io.ketch.net.allow=127.0.0.1:80",
        &hello,
        "b3",
    ]);
    assert!(
        e.contains(
            "task b3: annotation io.ketch.net.allow: the ketch shim gives guests no sockets"
        ),
        "{e}"
    );
    assert!(c.tasks().is_empty());
    assert!(c.ok(&["containers", "ls", "-q"]).trim().is_empty());

    // The shim dies: containerd reports its tasks exited (killed), and a
    // new shim serves the next run.
    c.run_d(&ticker, "k1");
    c.run_d(&ticker, "k2");
    let shims = c.shims();
    assert_eq!(shims.len(), 1, "{shims:?}");
    // SAFETY: the shim this test's containerd started.
    unsafe { libc::kill(shims[0] as i32, libc::SIGKILL) };
    wait_until(
        Duration::from_secs(10),
        "containerd to see the tasks end",
        || c.tasks().is_empty(),
    );
    wait_until(
        Duration::from_secs(10),
        "the dead shim's socket to be removed",
        || !c.shim_socket().exists(),
    );
    let out = c.ok(&["run", "--rm", "--runtime", RUNTIME, &hello, "k3"]);
    assert!(out.contains("Hello, world!"), "{out}");
    c.clear();
    wait_until(Duration::from_secs(10), "the shim to end", || {
        c.shims().is_empty()
    });
    assert!(c.bundles().is_empty(), "{:?}", c.bundles());
}

/// The Python that runs tests/cri/cri.py (grpcio from .ci/setup).
fn cri_python() -> Result<PathBuf, String> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/cri-venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools.protoc"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(python)
    } else {
        Err(format!(
            "grpcio in {} (made by .ci/setup)",
            python.display()
        ))
    }
}

#[test]
fn kubernetes_cri_runs_a_wasm_pod_with_the_ketch_handler() {
    let reg = require!(Registry::start(None));
    require!(linux());
    let python = require!(cri_python());
    let d = TestDaemon::start();
    example_image(&d, "hello");
    // The pod's own (pause) container is a placeholder in the ketch shim:
    // any image will do; this one is Linux, as a node's is.
    busybox_image(&d);
    let pause = format!("{}/busybox:latest", reg.addr);
    let c = require!(Containerd::start_with(Some(&pause)));
    let hello = push(&d, &reg, &c, "hello", "wasi/wasm");
    push(&d, &reg, &c, "busybox", "linux/amd64");
    let logs = tempfile::tempdir().unwrap();
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cri/cri.py"))
        .arg("--socket")
        .arg(c.socket())
        .args([
            "--handler",
            "ketch",
            "--image",
            &hello,
            "--sandbox-image",
            &pause,
        ])
        .arg("--log-dir")
        .arg(logs.path())
        .args(["--timeout", "30"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cri.py: {stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["exit_code"], 0, "{v}");
    assert_eq!(v["container_state"], "CONTAINER_EXITED", "{v}");
    let log = v["log"].as_str().unwrap();
    assert!(
        log.contains("stdout F Hello, world! (from a ketch Wasm container)"),
        "{log}"
    );
    // The pod is gone: so are its shim and bundles.
    wait_until(Duration::from_secs(10), "the pod's shim to end", || {
        c.shims().is_empty()
    });
    assert!(c.bundles().is_empty(), "{:?}", c.bundles());
}
