//! TestDaemon: a real ketchd on a temp data root and socket, driven through
//! the ketch binary or raw HTTP. Killed and cleaned up on drop.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    child: Option<Child>,
    /// Extra ketchd flags.
    args: Vec<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Assert success and return stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "command failed: stdout={:?} stderr={:?}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

impl TestDaemon {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A daemon with extra `ketchd` flags.
    pub fn start_with(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("ketch.sock");
        let mut d = TestDaemon {
            dir,
            socket,
            child: None,
            args: args.iter().map(|a| a.to_string()).collect(),
        };
        d.spawn();
        d
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("ketchd.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ketchd"))
            .arg("--data-root")
            .arg(self.root())
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()))
            .args(&self.args)
            // A host secret the guests must never see.
            .env("KETCH_TEST_HOST_SECRET", "hunter2")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn ketchd");
        self.child = Some(child);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if self.http("GET", "/_ping", "").0 == 200 {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("ketchd did not start: {}", self.daemon_log());
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("ketchd.log")).unwrap_or_default()
    }

    /// Kill the daemon hard (as a crash would) and start it again.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    pub fn ketch_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ketch"));
        c.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            // Registry credentials of this test only.
            .env("KETCH_CONFIG", self.config_dir())
            .stdin(Stdio::null());
        c
    }

    /// Where this test's CLI keeps its config.json.
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("cli-config")
    }

    pub fn ketch(&self, args: &[&str]) -> Run {
        Run::from(self.ketch_cmd(args).output().expect("run ketch"))
    }

    pub fn ketch_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut child = self
            .ketch_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ketch");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        Run::from(child.wait_with_output().expect("ketch output"))
    }

    /// A raw HTTP/1.1 request; returns (status, headers, body).
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String, String) {
        let Ok(mut s) = UnixStream::connect(&self.socket) else {
            return (0, String::new(), String::new());
        };
        let req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let text = String::from_utf8_lossy(&resp).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    /// Build `files` (name, bytes) plus a Dockerfile into an image.
    pub fn build(&self, tag: &str, dockerfile: &str, files: &[(&str, &[u8])]) -> Run {
        let ctx = tempfile::tempdir().expect("ctx");
        write_context(ctx.path(), dockerfile, files);
        self.ketch(&["build", "-t", tag, ctx.path().to_str().expect("utf8")])
    }

    /// Build a one-module Wasm image from WAT text.
    pub fn wat_image(&self, tag: &str, wat: &str) {
        let wasm = wat::parse_str(wat).expect("valid wat");
        self.build(
            tag,
            "FROM scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
            &[("m.wasm", &wasm)],
        )
        .ok();
    }

    /// Poll `f` until it is true or `secs` pass.
    pub fn eventually(&self, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; daemon log:\n{}",
            self.daemon_log()
        );
    }

    pub fn state(&self, name: &str) -> String {
        self.ketch(&["inspect", "-f", "{{.State.Status}}", name])
            .stdout
            .trim()
            .to_string()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // Linux containers outlive ketchd (their monitors keep them): end
        // them so a test leaves no process, cgroup or mount behind.
        let linux_ran = std::fs::read_dir(self.root().join("runtime"))
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if linux_ran && self.child.is_some() {
            let ids = self.ketch(&["ps", "-aq"]).stdout;
            for id in ids.split_whitespace() {
                self.ketch(&["rm", "-f", id]);
            }
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending SIGTERM to our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // A ketchd keeps its networks' bridges (as dockerd keeps docker0);
        // a test's are removed with it, as `network rm` would: only the
        // ones ketch made (an adopted one is the host's).
        if let Some(host) = ketch::engine::host_network() {
            for n in networks(&self.root()) {
                ketch::engine::networks::release_bridge(host.as_ref(), &n);
            }
        }
    }
}

/// The networks stored in a data root.
pub fn networks(root: &Path) -> Vec<ketch::engine::networks::NetworkRecord> {
    std::fs::read_dir(root.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|d| serde_json::from_slice(&d).ok())
        .collect()
}

pub fn write_context(dir: &Path, dockerfile: &str, files: &[(&str, &[u8])]) {
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write file");
    }
}

/// A built example from wasm-examples/ (built by wasm-examples/build.sh,
/// which the test command runs first).
pub fn example(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wasm-examples")
        .join(name)
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run wasm-examples/build.sh (the README test command does)",
        p.display()
    );
    p
}

pub fn example_image(d: &TestDaemon, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("wasm-examples")
        .join(name);
    example(name);
    d.ketch(&["build", "-t", name, dir.to_str().expect("utf8")])
        .ok();
}

/// Why Linux containers can't be tested here, if they can't: they need
/// root (CI is root) and Debian's busybox-static (`.ci/setup` installs it).
pub fn linux_unavailable() -> Option<&'static str> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root");
    }
    if !Path::new(BUSYBOX).exists() {
        return Some("no /bin/busybox (apt install busybox-static)");
    }
    None
}

const BUSYBOX: &str = "/bin/busybox";

/// Build `busybox`: FROM scratch, the static busybox and its applet
/// links in /bin, and a minimal /etc/passwd and /etc/group.
pub fn busybox_image(d: &TestDaemon) {
    let ctx = d.dir.path().join("busybox-ctx");
    let bin = ctx.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    let list = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox");
    for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
    }
    write_context(
        &ctx,
        "FROM scratch\nCOPY bin /bin\nCOPY etc /etc\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"sh\"]\n",
        &[
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            ),
            ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ],
    );
    d.ketch(&["build", "-q", "-t", "busybox", ctx.to_str().expect("utf8")])
        .ok();
}

/// Prints "hello from wat" and exits 3.
pub const HELLO_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hello from wat\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 15))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 3))))"#;

/// Spins forever without calling the host.
pub const SPIN_WAT: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#;

/// Traps immediately.
pub const TRAP_WAT: &str =
    r#"(module (memory (export "memory") 1) (func (export "_start") unreachable))"#;

/// Grows memory 1 MiB at a time until refused, then aborts (as an
/// allocator failure would).
pub const GROW_WAT: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"#;

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A minimal HTTP/1.1 client over one loopback connection (keep-alive).
pub struct HttpConn {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl HttpConn {
    pub fn connect(port: u16) -> std::io::Result<Self> {
        let s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(HttpConn {
            stream: std::io::BufReader::new(s),
        })
    }

    /// Send a request; `chunked` sends the body with chunked encoding.
    /// Returns (status, body).
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> std::io::Result<(u16, String)> {
        use std::io::BufRead;
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        let mut data = Vec::new();
        if chunked {
            req.push_str("Transfer-Encoding: chunked\r\n\r\n");
            data.extend_from_slice(req.as_bytes());
            for c in body.chunks(512) {
                data.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                data.extend_from_slice(c);
                data.extend_from_slice(b"\r\n");
            }
            data.extend_from_slice(b"0\r\n\r\n");
        } else {
            req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
            data.extend_from_slice(req.as_bytes());
            data.extend_from_slice(body);
        }
        self.stream.get_mut().write_all(&data)?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut len, mut is_chunked) = (None, false);
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            match k.to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse::<usize>().ok(),
                "transfer-encoding" => is_chunked = v.trim().eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let mut out = Vec::new();
        if is_chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; n + 2];
                self.stream.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = len {
            out.resize(n, 0);
            self.stream.read_exact(&mut out)?;
        } else {
            self.stream.read_to_end(&mut out)?;
        }
        Ok((status, String::from_utf8_lossy(&out).into_owned()))
    }
}

/// One request on a fresh connection: (status, body), or status 0 when
/// nothing answers.
pub fn fetch(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    match HttpConn::connect(port).and_then(|mut c| c.request(method, path, &[], body, false)) {
        Ok(r) => r,
        Err(e) => (0, e.to_string()),
    }
}

/// Run `cmd` on a new pty sized 33x101, type `input` once it has had time
/// to start, and collect what it prints until it exits: (output, code).
pub fn in_pty(mut cmd: Command, input: &[u8]) -> (String, i32) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (0, 0);
    let ws = libc::winsize {
        ws_row: 33,
        ws_col: 101,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: out pointers are valid; name and termios may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &ws,
        )
    };
    assert_eq!(rc, 0, "openpty");
    // SAFETY: openpty just gave us both descriptors.
    let (master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().expect("spawn on the pty");
    // Drop our copies of the slave (moved into cmd), so reads end at exit.
    drop(cmd);
    let reader = {
        let mut m = master.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
            out
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    (&master).write_all(input).unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(master);
    let out = reader.join().unwrap_or_default();
    (
        String::from_utf8_lossy(&out).into_owned(),
        status.code().unwrap_or(-1),
    )
}
