//! TestDaemon: a real ketchd on a temp data root and socket, driven through
//! the ketch binary or HTTP. Killed and cleaned up on drop.
//!
//! Also the suite's shared machinery: what a test needs and how it skips
//! (`require!`), bounded waits (`wait_until`), the one HTTP client
//! (`HttpConn`), streamed child output (`Streamed`) and ptys (`in_pty`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Test tiers: what a test needs, and what happens when it is missing.

/// Whether a missing requirement must fail the test: CI sets `CI`, and a
/// test there must never pass by not running.
pub fn strict() -> bool {
    std::env::var_os("CI").is_some()
}

/// Check one requirement of a test: `Ok` with what was found, or `Err`
/// naming what is missing and where it comes from.
/// Under CI a missing requirement fails the test with that reason;
/// elsewhere it returns None after saying on stderr (uncaptured, so a
/// local run shows it) which test skipped and why.
#[track_caller]
pub fn need<T>(requirement: Result<T, String>) -> Option<T> {
    match requirement {
        Ok(v) => Some(v),
        Err(why) => {
            let thread = std::thread::current();
            let test = thread.name().unwrap_or("this test");
            assert!(
                !strict(),
                "{test} needs {why}; CI is set, so it fails instead of skipping"
            );
            // Straight to the process's stderr: the harness would capture
            // an eprintln! of a passing test and hide the skip.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: needs {why}");
            None
        }
    }
}

/// `require!(req)`: the value of a `Result<T, String>` requirement, or,
/// when it is missing, fail under CI and otherwise skip (return from) the
/// test, saying why. Every test that can skip goes through here.
macro_rules! require {
    ($requirement:expr) => {
        match $crate::common::need($requirement) {
            Some(v) => v,
            None => return,
        }
    };
}
pub(crate) use require;

/// Root and Debian's busybox-static: what Linux containers need here (CI
/// is root; `.ci/setup` installs busybox-static).
pub fn linux() -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("root, to run Linux containers".into());
    }
    if !Path::new(BUSYBOX).exists() {
        return Err(format!(
            "{BUSYBOX}, to build a Linux image (apt install busybox-static)"
        ));
    }
    Ok(())
}

/// A program on the PATH that answers `--version`; `from` says where it
/// comes from.
pub fn tool(name: &str, from: &str) -> Result<(), String> {
    match Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the `{name}` program ({from}): {e}")),
    }
}

// ---------------------------------------------------------------------------
// Bounded waits.

/// Poll `cond` until it holds or `within` passes; whether it held.
pub fn poll(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Wait for `cond` (a readiness probe) instead of sleeping: panic naming
/// `what` if it does not hold within `within`.
#[track_caller]
pub fn wait_until(within: Duration, what: &str, cond: impl FnMut() -> bool) {
    assert!(
        poll(within, cond),
        "timed out after {within:?} waiting for {what}"
    );
}

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
        if !poll(Duration::from_secs(30), || {
            self.http("GET", "/_ping", "").0 == 200
        }) {
            panic!("ketchd did not start: {}", self.daemon_log());
        }
    }

    /// The running ketchd's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("ketchd runs").id()
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

    /// Stop the daemon as a user would (SIGTERM, waiting for it to exit),
    /// then start it again with these flags. Returns how long it took to
    /// exit.
    pub fn stop_and_restart(&mut self, args: &[&str]) -> Duration {
        let t = std::time::Instant::now();
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending SIGTERM to our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        let took = t.elapsed();
        self.args = args.iter().map(|a| a.to_string()).collect();
        self.spawn();
        took
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

    /// A connection to the API socket.
    pub fn api(&self) -> std::io::Result<HttpConn> {
        HttpConn::unix(&self.socket)
    }

    /// One API request with a JSON body on a fresh connection: the whole
    /// response. An error when nothing answers.
    pub fn request(&self, method: &str, path: &str, body: &str) -> std::io::Result<Response> {
        self.api()?.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            false,
        )
    }

    /// One API request: (status, body), or status 0 (and the error) when
    /// nothing answers.
    pub fn http(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        match self.request(method, path, body) {
            Ok(r) => (r.status, r.text()),
            Err(e) => (0, e.to_string()),
        }
    }

    /// Start the CLI with `args` (`logs -f`, say), its stdout collected as
    /// it comes.
    pub fn stream(&self, args: &[&str]) -> Streamed {
        Streamed::spawn(self.ketch_cmd(args))
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

    /// `wait_until` with the daemon's log in the panic message.
    #[track_caller]
    pub fn eventually(&self, secs: u64, what: &str, f: impl FnMut() -> bool) {
        if !poll(Duration::from_secs(secs), f) {
            panic!(
                "timed out after {secs} s waiting for {what}; daemon log:\n{}",
                self.daemon_log()
            );
        }
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
        } else if self.child.is_some() {
            // ketchd stops its containers as it shuts down, each with its
            // stop timeout: a test has no need to wait that out.
            let ids = self.ketch(&["ps", "-q"]).stdout;
            let mut args = vec!["kill"];
            args.extend(ids.split_whitespace());
            if args.len() > 1 {
                self.ketch(&args);
            }
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: sending SIGTERM to our own child process.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            poll(Duration::from_secs(5), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
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
/// A line-echo server on the host's loopback, answering each line with
/// `echo: LINE`, for as long as the test runs (bounded: 64 connections).
pub fn host_echo() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(64).flatten() {
            std::thread::spawn(move || {
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut r = std::io::BufReader::new(&c);
                let mut line = String::new();
                if std::io::BufRead::read_line(&mut r, &mut line).is_ok() {
                    let _ = std::io::Write::write_all(&mut &c, format!("echo: {line}").as_bytes());
                }
            });
        }
    });
    port
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

// ---------------------------------------------------------------------------
// The tests' one HTTP/1.1 client, over the API socket or TCP.

/// The transport under an [`HttpConn`].
enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// A response: status, headers (in order, names as sent) and the body,
/// decoded from its Content-Length or chunked framing.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How a response body ends.
enum Framing {
    Length(u64),
    /// `left` bytes of the current chunk; `crlf` when the CRLF after a
    /// chunk's data is still to be read.
    Chunked {
        left: u64,
        crlf: bool,
        done: bool,
    },
    /// Until the server closes the connection.
    Close,
}

/// One HTTP/1.1 connection (keep-alive), to the API socket or a TCP port.
pub struct HttpConn {
    r: BufReader<Stream>,
    host: String,
    /// The method of the request in flight (a HEAD answer has no body).
    method: String,
}

impl HttpConn {
    /// The API socket; reads give up after 120 s (a build can be slow).
    pub fn unix(path: &Path) -> std::io::Result<Self> {
        let s = UnixStream::connect(path)?;
        s.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Self::over(Stream::Unix(s), "localhost".into()))
    }

    /// A TCP address; reads give up after 20 s.
    pub fn tcp(addr: impl ToSocketAddrs) -> std::io::Result<Self> {
        let s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        let host = s.peer_addr()?.to_string();
        Ok(Self::over(Stream::Tcp(s), host))
    }

    /// A port on 127.0.0.1.
    pub fn connect(port: u16) -> std::io::Result<Self> {
        Self::tcp(("127.0.0.1", port))
    }

    fn over(s: Stream, host: String) -> Self {
        HttpConn {
            r: BufReader::new(s),
            host,
            method: String::new(),
        }
    }

    /// How long a read may wait before it fails.
    pub fn set_read_timeout(&self, t: Duration) -> std::io::Result<()> {
        match self.r.get_ref() {
            Stream::Unix(s) => s.set_read_timeout(Some(t)),
            Stream::Tcp(s) => s.set_read_timeout(Some(t)),
        }
    }

    /// Send a request; `chunked` sends the body with chunked encoding,
    /// otherwise with a Content-Length.
    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> std::io::Result<()> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
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
        self.method = method.to_string();
        self.r.get_mut().write_all(&data)?;
        self.r.get_mut().flush()
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection closed mid-response",
            ));
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_string())
    }

    /// The status line and headers of the next response (its body, empty,
    /// is left to `read_body` or `body`). Interim 1xx answers are skipped.
    pub fn read_head(&mut self) -> std::io::Result<Response> {
        loop {
            let status_line = self.line()?;
            let status: u16 = status_line
                .strip_prefix("HTTP/1.")
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
            let mut headers = Vec::new();
            loop {
                let l = self.line()?;
                if l.is_empty() {
                    break;
                }
                let (k, v) = l
                    .split_once(':')
                    .ok_or_else(|| std::io::Error::other(format!("bad header line {l:?}")))?;
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            return Ok(Response {
                status,
                headers,
                body: Vec::new(),
            });
        }
    }

    /// A reader of the body that follows `head`, as the server sends it:
    /// for a stream (`/events`, `logs -f`) read it a piece at a time.
    pub fn body(&mut self, head: &Response) -> Body<'_> {
        let framing = if self.method == "HEAD" || matches!(head.status, 204 | 304) {
            Framing::Length(0)
        } else if head
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            Framing::Chunked {
                left: 0,
                crlf: false,
                done: false,
            }
        } else if let Some(n) = head.header("content-length") {
            Framing::Length(n.parse().unwrap_or(0))
        } else {
            Framing::Close
        };
        Body {
            conn: self,
            framing,
        }
    }

    /// The next response, whole.
    pub fn read_response(&mut self) -> std::io::Result<Response> {
        let mut r = self.read_head()?;
        let mut body = Vec::new();
        self.body(&r).read_to_end(&mut body)?;
        r.body = body;
        Ok(r)
    }

    /// Send a request and read its whole response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunked: bool,
    ) -> std::io::Result<Response> {
        self.send(method, path, headers, body, chunked)?;
        self.read_response()
    }
}

/// A response body being read off its connection (see [`HttpConn::body`]).
pub struct Body<'a> {
    conn: &'a mut HttpConn,
    framing: Framing,
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let short = || {
            std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the body ended before its framing said",
            )
        };
        match &mut self.framing {
            Framing::Close => self.conn.r.read(buf),
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                let n = self.conn.r.read(&mut buf[..want])?;
                if n == 0 && want > 0 {
                    return Err(short());
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Chunked { left, crlf, done } => loop {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left > 0 {
                    let want = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let n = self.conn.r.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(short());
                    }
                    *left -= n as u64;
                    *crlf = *left == 0;
                    return Ok(n);
                }
                if *crlf {
                    if !self.conn.line()?.is_empty() {
                        return Err(std::io::Error::other("no CRLF after a chunk"));
                    }
                    *crlf = false;
                }
                let size_line = self.conn.line()?;
                let size = size_line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| {
                    std::io::Error::other(format!("bad chunk size line {size_line:?}"))
                })?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.conn.line()?.is_empty() {}
                    *done = true;
                } else {
                    *left = size;
                }
            },
        }
    }
}

/// One request to `addr` on a fresh connection: (status, body), or status
/// 0 (and the error) when nothing answers.
pub fn fetch_from(
    addr: impl ToSocketAddrs,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    match HttpConn::tcp(addr).and_then(|mut c| c.request(method, path, &[], body, false)) {
        Ok(r) => (r.status, r.text()),
        Err(e) => (0, e.to_string()),
    }
}

/// `fetch_from` a port on 127.0.0.1.
pub fn fetch(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    fetch_from(("127.0.0.1", port), method, path, body)
}

// ---------------------------------------------------------------------------
// Child processes whose output a test watches as it comes.

/// A child whose stdout (and the pty's output, for `in_pty`) is collected
/// by a thread as it comes, so a test can wait for what it printed.
pub struct Collected {
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Collected {
    fn start(mut from: impl Read + Send + 'static) -> Self {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Collected {
            out,
            reader: Some(reader),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// Wait until what has come so far satisfies `cond`.
    #[track_caller]
    pub fn wait_for(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) {
        if !poll(Duration::from_secs(secs), || cond(&self.text())) {
            panic!(
                "timed out after {secs} s waiting for {what}; output so far: {:?}",
                self.text()
            );
        }
    }

    /// Everything, once the writer's end is closed.
    fn finish(&mut self) -> String {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.text()
    }
}

/// Wait for `child` to exit within `secs`, killing it (and failing) if not.
#[track_caller]
fn exit_within(child: &mut Child, secs: u64, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    poll(Duration::from_secs(secs), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not exit within {secs} s");
        }
    }
}

/// A running command (`ketch logs -f`, say) with its stdout collected.
pub struct Streamed {
    child: Child,
    out: Collected,
}

impl Streamed {
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a streaming command");
        let out = Collected::start(child.stdout.take().expect("stdout"));
        Streamed { child, out }
    }

    /// Wait until its output so far satisfies `cond`.
    #[track_caller]
    pub fn wait_for(&self, secs: u64, what: &str, cond: impl Fn(&str) -> bool) {
        self.out.wait_for(secs, what, cond)
    }

    /// Wait (at most 30 s) for it to exit: everything it printed.
    #[track_caller]
    pub fn finish(mut self) -> String {
        exit_within(&mut self.child, 30, "the streaming command");
        self.out.finish()
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Run `cmd` on a new pty sized 33x101; once its output shows `prompt`
/// (a shell ready to read), type `input`; collect what it prints until it
/// exits: (output, code). An empty `input` types nothing, waiting for no
/// prompt.
pub fn in_pty(mut cmd: Command, prompt: &str, input: &[u8]) -> (String, i32) {
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
    let mut out = Collected::start(master.try_clone().unwrap());
    if !input.is_empty() {
        out.wait_for(20, &format!("the prompt {prompt:?}"), |o| {
            o.contains(prompt)
        });
        (&master).write_all(input).unwrap();
    }
    let status = exit_within(&mut child, 20, "the command on the pty");
    drop(master);
    (out.finish(), status.code().unwrap_or(-1))
}
