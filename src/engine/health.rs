//! Health checks, as Docker runs them: a container whose config has a
//! `Healthcheck` is probed while it runs. The first probe comes one
//! interval after the start (the start interval while the start period
//! lasts); each is bounded by the timeout and keeps 4096 bytes of output;
//! `State.Health` holds the status, the failures in a row and the last
//! five results. A failure counts toward `Retries` unless the container
//! is still starting within its start period; each change of status is a
//! `health_status: …` event.
//!
//! How a container is probed is its kind's: a Linux container runs the
//! command as an exec (`CMD-SHELL` through `/bin/sh -c`); a Wasm container
//! runs it as a fresh instance of its own module with the same grants
//! (`CMD-SHELL` split into words, as there is no shell), or, when the
//! command is an `http://` URL, gets that URL from its own published port.

use super::container::Container;
use super::{lock, Engine, EngineError, Record};
use crate::api::stream::StdStream;
use crate::api::types::{ExecConfig, Health, HealthConfig, HealthcheckResult};
use crate::model::Status;
use crate::runtime::OutputSink;
use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept of each probe, as Docker's.
pub const MAX_OUTPUT: usize = 4096;
/// Results kept in `State.Health.Log`.
const MAX_LOG: usize = 5;
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;

pub const STARTING: &str = "starting";
pub const HEALTHY: &str = "healthy";
pub const UNHEALTHY: &str = "unhealthy";

/// A probe's output: the first [`MAX_OUTPUT`] bytes, and whether more
/// came.
#[derive(Default)]
pub struct Captured {
    buf: Mutex<Vec<u8>>,
    truncated: AtomicBool,
}

impl Captured {
    pub fn push(&self, data: &[u8]) {
        let mut buf = lock(&self.buf);
        let room = MAX_OUTPUT.saturating_sub(buf.len());
        buf.extend_from_slice(&data[..room.min(data.len())]);
        if data.len() > room {
            self.truncated.store(true, Ordering::Relaxed);
        }
    }

    /// The text, with `...` when some was dropped (as Docker's).
    pub fn text(&self) -> String {
        let mut s = String::from_utf8_lossy(&lock(&self.buf)).into_owned();
        if self.truncated.load(Ordering::Relaxed) {
            s.push_str("...");
        }
        s
    }

    /// Read `r` to its end, keeping what fits.
    async fn drain<R: AsyncRead + Unpin>(&self, mut r: R) {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = r.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            self.push(&chunk[..n]);
        }
    }
}

impl OutputSink for Captured {
    fn write(&self, _stream: StdStream, data: &[u8]) {
        self.push(data);
    }
}

/// A health check's timings, with Docker's defaults for the unset ones.
struct Timing {
    interval: Duration,
    timeout: Duration,
    start_period: Duration,
    start_interval: Duration,
    retries: i64,
}

impl Timing {
    fn of(hc: &HealthConfig) -> Timing {
        let d = |ns: i64, default: Duration| {
            u64::try_from(ns)
                .ok()
                .filter(|n| *n > 0)
                .map_or(default, Duration::from_nanos)
        };
        Timing {
            interval: d(hc.interval, DEFAULT_INTERVAL),
            timeout: d(hc.timeout, DEFAULT_TIMEOUT),
            start_period: d(hc.start_period, Duration::ZERO),
            start_interval: d(hc.start_interval, DEFAULT_START_INTERVAL),
            retries: if hc.retries > 0 {
                hc.retries
            } else {
                DEFAULT_RETRIES
            },
        }
    }
}

/// Is `c` to be probed now: running, and not being stopped?
fn probed(c: &Container) -> bool {
    let rec = c.record();
    rec.state.status() == Status::Running && !rec.state.manually_stopped()
}

/// The check to run, if the container has one (not absent, not `NONE`).
pub(super) fn configured(rec: &Record) -> Option<HealthConfig> {
    rec.config.healthcheck.clone().filter(|h| {
        matches!(
            h.test.first().map(String::as_str),
            Some("CMD" | "CMD-SHELL")
        )
    })
}

/// What a health check runs: `CMD`'s words, or `CMD-SHELL`'s command in
/// the shell, or (`split`, for a runtime without one) split into words
/// with the container's environment.
pub(super) fn command(hc: &HealthConfig, split: Option<&[(String, String)]>) -> Vec<String> {
    let rest = hc.test.get(1..).unwrap_or_default();
    if hc.test.first().map(String::as_str) != Some("CMD-SHELL") {
        return rest.to_vec();
    }
    let line = rest.join(" ");
    match split {
        None => vec!["/bin/sh".into(), "-c".into(), line],
        Some(env) => {
            let lookup = |k: &str| {
                env.iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            crate::image::build::dockerfile::words(&line, &lookup)
                .unwrap_or_else(|_| line.split_whitespace().map(String::from).collect())
        }
    }
}

impl Engine {
    /// Probe this run of `c` for as long as it lasts: it returns at once
    /// when the container has no health check; otherwise never (the
    /// caller drops it when the run ends).
    pub(super) async fn watch_health(self: &Arc<Self>, c: &Arc<Container>, started: DateTime<Utc>) {
        let rec = c.record();
        let Some(hc) = configured(&rec) else {
            return;
        };
        let t = Timing::of(&hc);
        c.update_health(|h| {
            let h = h.get_or_insert_with(Health::default);
            h.status = STARTING.into();
            h.failing_streak = 0;
        });
        loop {
            let starting = c.health().is_some_and(|h| h.status == STARTING)
                && Utc::now() - started
                    < chrono::Duration::from_std(t.start_period).unwrap_or_default();
            tokio::time::sleep(if starting {
                t.start_interval
            } else {
                t.interval
            })
            .await;
            // A paused container is not probed, nor one being stopped.
            if !probed(c) {
                continue;
            }
            let out = Arc::new(Captured::default());
            let begun = Utc::now();
            let code = match tokio::time::timeout(t.timeout, self.probe(c, &rec, &hc, out.clone()))
                .await
            {
                Ok(Ok(code)) => code,
                Ok(Err(e)) => {
                    out.push(e.to_string().as_bytes());
                    -1
                }
                Err(_) => {
                    let out = Arc::new(Captured::default());
                    out.push(
                        format!(
                            "Health check exceeded timeout ({})",
                            crate::model::units::format_duration(t.timeout)
                        )
                        .as_bytes(),
                    );
                    if probed(c) {
                        self.record_probe(c, &t, started, begun, -1, &out);
                    }
                    continue;
                }
            };
            // A probe that ends as the container is told to stop says
            // nothing of its health.
            if probed(c) {
                self.record_probe(c, &t, started, begun, code, &out);
            }
        }
    }

    /// One probe's result into `State.Health`, and an event when the
    /// status changes.
    fn record_probe(
        &self,
        c: &Container,
        t: &Timing,
        started: DateTime<Utc>,
        begun: DateTime<Utc>,
        code: i64,
        out: &Captured,
    ) {
        let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let result = HealthcheckResult {
            start: ts(begun),
            end: ts(Utc::now()),
            exit_code: code,
            output: out.text(),
        };
        let in_start_period =
            begun - started < chrono::Duration::from_std(t.start_period).unwrap_or_default();
        let changed = c.update_health(|h| {
            let h = h.get_or_insert_with(Health::default);
            let before = h.status.clone();
            if h.log.len() >= MAX_LOG {
                h.log.drain(..=h.log.len() - MAX_LOG);
            }
            h.log.push(result);
            if code == 0 {
                h.failing_streak = 0;
                h.status = HEALTHY.into();
            } else if !(h.status == STARTING && in_start_period) {
                h.failing_streak += 1;
                if h.failing_streak >= t.retries {
                    h.status = UNHEALTHY.into();
                }
            }
            (h.status != before).then(|| h.status.clone())
        });
        if let Some(status) = changed {
            self.event(&c.record(), &format!("health_status: {status}"), &[]);
        }
    }

    /// Run the check once; its output goes to `out`. Resolves to its exit
    /// code.
    async fn probe(
        self: &Arc<Self>,
        c: &Arc<Container>,
        rec: &Record,
        hc: &HealthConfig,
        out: Arc<Captured>,
    ) -> Result<i64, EngineError> {
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        if backend.caps().exec {
            return self.probe_exec(c, rec, command(hc, None), &out).await;
        }
        let env = super::config::parse_env(rec.config.env.as_deref().unwrap_or_default());
        let argv = command(hc, Some(&env));
        match argv.first() {
            Some(url) if url.starts_with("http://") => probe_http(rec, url, &out).await,
            _ => backend.probe(self, c, rec, argv, out).await,
        }
    }

    /// A Linux container's probe: an exec of `argv`, not listed among its
    /// execs, ended (its helper told to kill it) if the probe is dropped.
    async fn probe_exec(
        self: &Arc<Self>,
        c: &Arc<Container>,
        rec: &Record,
        argv: Vec<String>,
        out: &Captured,
    ) -> Result<i64, EngineError> {
        let backend = self.backends.for_platform(&rec.platform, &rec.image)?;
        let exec = super::exec::Exec::new(
            rec.id.clone(),
            ExecConfig {
                cmd: Some(argv),
                attach_stdout: true,
                attach_stderr: true,
                ..Default::default()
            },
        );
        let spawned = backend.exec(self, &exec, c, rec).await?;
        let mut helper = EndOnDrop(spawned.pid);
        let drain = async {
            if let Some(r) = spawned.stdout {
                out.drain(r).await;
            }
        };
        let drain_err = async {
            if let Some(r) = spawned.stderr {
                out.drain(r).await;
            }
        };
        let (code, (), ()) = tokio::join!(spawned.exit, drain, drain_err);
        helper.0 = 0;
        Ok(code)
    }
}

/// Tells a probe's exec helper to end its process (the helper kills it
/// and exits) when the probe is dropped before it finished.
struct EndOnDrop(u32);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Ok(pid) = i32::try_from(self.0) {
            if pid > 0 {
                // SAFETY: a plain kill(2) of the helper we spawned; tokio
                // reaps it in the background once it exits.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

/// A Wasm container's HTTP probe: GET `url` from the host port where the
/// container serves the URL's port (80 when it names none). 2xx and 3xx
/// are healthy.
async fn probe_http(rec: &Record, url: &str, out: &Captured) -> Result<i64, EngineError> {
    let bad = |m: String| {
        EngineError::InvalidArgument(format!("container {}: health check {url}: {m}", rec.name))
    };
    let uri: http::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    let port = uri.port_u16().unwrap_or(80);
    let binding = rec
        .state
        .ports()
        .get(&format!("{port}/tcp"))
        .and_then(|b| b.first())
        .ok_or_else(|| bad(format!("the container serves no port {port}")))?;
    let host_port: u16 = binding
        .host_port
        .parse()
        .map_err(|_| bad(format!("port {port} has no host port")))?;
    let ip: std::net::IpAddr = match binding.host_ip.parse() {
        Ok(std::net::IpAddr::V4(v4)) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        Ok(std::net::IpAddr::V6(v6)) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        Ok(ip) => ip,
        Err(_) => std::net::Ipv4Addr::LOCALHOST.into(),
    };
    let stream = tokio::net::TcpStream::connect((ip, host_port))
        .await
        .map_err(|e| bad(format!("connecting to {ip}:{host_port}: {e}")))?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| bad(e.to_string()))?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let req = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map_or("localhost", |a| a.as_str()),
        )
        .header(http::header::USER_AGENT, "ketch-healthcheck")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| bad(e.to_string()))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| bad(e.to_string()))?;
    let status = resp.status();
    out.push(format!("HTTP {status}\n").as_bytes());
    use http_body_util::BodyExt;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Some(d) = frame.data_ref() {
            out.push(d);
        }
        if out.truncated.load(Ordering::Relaxed) {
            break;
        }
    }
    Ok(if status.is_success() || status.is_redirection() {
        0
    } else {
        1
    })
}

/// A probe instance that ends when dropped before it finished: the Wasm
/// backend's guard over the instance it started.
pub(crate) struct KillOnDrop(pub Option<Arc<dyn crate::runtime::Control>>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.kill();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_kept_to_its_cap_and_marked() {
        let c = Captured::default();
        c.push(b"ok\n");
        assert_eq!(c.text(), "ok\n");
        c.push(&[b'x'; MAX_OUTPUT]);
        let t = c.text();
        assert_eq!(t.len(), MAX_OUTPUT + 3);
        assert!(t.ends_with("xxx..."));
    }

    #[test]
    fn commands_by_form() {
        let hc = |t: &[&str]| HealthConfig {
            test: t.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(command(&hc(&["CMD", "a", "b c"]), None), ["a", "b c"]);
        assert_eq!(
            command(&hc(&["CMD-SHELL", "curl -f x || exit 1"]), None),
            ["/bin/sh", "-c", "curl -f x || exit 1"]
        );
        let env = vec![("PORT".to_string(), "8080".to_string())];
        assert_eq!(
            command(&hc(&["CMD-SHELL", "probe --port $PORT 'a b'"]), Some(&env)),
            ["probe", "--port", "8080", "a b"]
        );
        let t = Timing::of(&hc(&["CMD", "x"]));
        assert_eq!(
            (t.interval, t.timeout, t.retries),
            (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, 3)
        );
    }
}
