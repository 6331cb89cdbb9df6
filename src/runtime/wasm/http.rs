//! Function containers: a wasi-http component (`wasi:http/proxy`) served on
//! the container's published ports, a fresh instance per request.
//!
//! One accept task per listener feeds the container's supervisor task, which
//! runs one hyper HTTP/1.1 connection (with keep-alive) per client. A
//! listener holds at most its cap of connections, within ketchd's
//! descriptor budget ([`crate::accept`]); past either, a new connection is
//! reset at once. Each request:
//! 1. waits while the container is paused;
//! 2. takes a permit of the concurrency cap, or is answered 503;
//! 3. is refused with 413 if its body is over the limit;
//! 4. gets its own `Store` and instance from the `ProxyPre` (the pooling
//!    allocator makes that cheap), with the container's WASI grants and its
//!    own memory cap (`--memory`, or the daemon's default), drawing on the
//!    daemon's memory budget like every guest. With `--http-reuse N` an
//!    instance that answered serves up to N requests in turn (one at a
//!    time); one that trapped or ran out of time is never reused;
//! 5. runs under the request deadline, enforced on the daemon's runtime: the
//!    guest yields at every epoch tick and a timer drops it when its time is
//!    up. No thread per request, so the deadline costs almost nothing.
//!
//! The guest's stdout and stderr go to the container log, and so does a
//! line for every request that ketch had to cut off or that trapped.

use super::control::{configure_store, Ctl, Guest};
use super::limits::{Cap, Limits};
use super::served::NetworkPorts;
use super::WasmBackend;
use crate::accept::{admit_next, Admitted, Backoff, Gate, LogKeys};
use crate::api::stream::StdStream;
use crate::model::units::format_duration;
use crate::runtime::memory::MemoryBudget;
use crate::runtime::stats::HttpCounters;
use crate::runtime::{ExitStatus, PortMapping, Proto, RunSpec, RuntimeError, Started, EXIT_KILLED};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wasmtime::component::Accessor;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// The container port a function answers on when the image exposes none.
pub const DEFAULT_PORT: u16 = 80;
/// A client gets this long to send a request's headers (slowloris guard).
/// In hyper 1.x the same timer runs while a keep-alive connection waits
/// for its next request (`proto/h1/conn.rs`: `State::idle` asks for a new
/// read, and `poll_read_head` starts the timer), so it is also the idle
/// timeout between requests: an idle connection holds a descriptor.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = HyperOutgoingBody;

/// The store data of one request's instance.
pub(crate) struct HttpState {
    ctx: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutgoingGrants,
    limits: Limits,
    ctl: Arc<Ctl>,
    deadline: Option<std::time::Instant>,
}

impl Guest for HttpState {
    fn limits(&mut self) -> &mut Limits {
        &mut self.limits
    }
    fn ctl(&self) -> &Ctl {
        &self.ctl
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing requests go only to the hosts the run options grant.
pub(crate) struct OutgoingGrants {
    pub(crate) allow: Arc<[String]>,
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for OutgoingGrants {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let allowed = host_allowed(&self.allow, request.uri());
        Box::new(async move {
            if !allowed {
                return Err(HttpError::HttpRequestDenied);
            }
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Does a grant list allow a request to `uri`? A grant is `*`, a host (any
/// port) or `host:port`; hosts compare without case.
pub(crate) fn host_allowed(allow: &[String], uri: &http::Uri) -> bool {
    let Some(host) = uri.host() else {
        return false;
    };
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    allow.iter().any(|grant| {
        if grant == "*" {
            return true;
        }
        match grant.parse::<http::uri::Authority>() {
            Ok(a) => a.host().eq_ignore_ascii_case(host) && a.port_u16().is_none_or(|p| p == port),
            Err(_) => false,
        }
    })
}

/// How one request's instance ended.
enum Outcome {
    Done,
    Trap(String),
    Deadline,
    Killed,
}

/// A function's prepared component: preview 2
/// (`wasi:http/incoming-handler`) or WASI 0.3 (`wasi:http/handler`).
#[derive(Clone)]
pub(crate) enum Handler {
    P2(ProxyPre<HttpState>),
    P3(ServicePre<HttpState>),
}

/// An instance that may serve further requests (`--http-reuse`).
enum Live {
    P2(Proxy),
    P3(Service),
}

/// An idle instance, with its store and how many requests it served.
struct Kept {
    store: Store<HttpState>,
    live: Live,
    served: usize,
}

/// Idle instances a function keeps at most: each holds a slot of the
/// daemon's instance pool and its memory.
const MAX_IDLE: usize = 16;

/// Requests a reused WASI 0.3 instance runs at once (its `handle` is
/// async, so one instance can serve several), and queues at most besides.
const PER_INSTANCE: usize = 16;

/// A shared WASI 0.3 instance with no request for this long ends, giving
/// back its memory and its slot of the instance pool.
const WORKER_IDLE: Duration = Duration::from_secs(10);

/// A request handed to a shared WASI 0.3 instance.
struct Job {
    req: Box<Request<ReqBody>>,
    tx: oneshot::Sender<Answer>,
    responded: Arc<AtomicBool>,
    deadline: Option<Instant>,
    what: String,
    _in_flight: InFlight,
}

/// A WASI 0.3 instance serving requests of its function (`--http-reuse`).
struct Worker {
    tx: mpsc::Sender<Job>,
    /// Requests given to it so far, at most the reuse count.
    taken: usize,
}

/// A request made ready for its instance, as its WASI version takes it.
enum Call {
    P2 {
        req: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostIncomingRequest>,
        out: wasmtime::component::Resource<wasmtime_wasi_http::p2::types::HostResponseOutparam>,
    },
    P3 {
        req: Box<Request<ReqBody>>,
        tx: oneshot::Sender<Answer>,
        responded: Arc<AtomicBool>,
    },
}

/// A request body, cut off at the function's limit.
type ReqBody = UnsyncBoxBody<Bytes, HttpError>;
/// What a guest answered: a response, or the error code it gave instead.
type Answer = Result<Response<Body>, String>;
/// How reading a WASI 0.3 request's body ended.
type RequestIo = std::pin::Pin<Box<dyn Future<Output = Result<(), HttpError>> + Send>>;

struct Function {
    name: Arc<str>,
    engine: Engine,
    pre: Handler,
    /// The container's spec; stdin is not used.
    spec: RunSpec,
    allow: Arc<[String]>,
    permits: Arc<Semaphore>,
    ctl: Arc<Ctl>,
    counters: Arc<HttpCounters>,
    /// Each request's instance gets this cap of its own.
    cap: Cap,
    budget: Arc<MemoryBudget>,
    /// Instances kept for further requests (`--http-reuse` over 1).
    idle: std::sync::Mutex<Vec<Kept>>,
    /// WASI 0.3 instances that take requests (`--http-reuse` over 1).
    workers: std::sync::Mutex<Vec<Worker>>,
}

/// Bind the container's ports and start serving.
pub(super) fn serve(
    engine: Engine,
    pre: Handler,
    mut spec: RunSpec,
    cap: Cap,
    budget: Arc<MemoryBudget>,
) -> Result<Started, RuntimeError> {
    spec.stdin = None;
    // Before anything is made: a port in use fails the start alone.
    let listeners = bind(&spec)?;
    let network_ports = spec.network_ports(Some(DEFAULT_PORT));
    let on_networks = NetworkPorts::bind_all(&spec.name, &network_ports, &spec.addresses)?;
    // What `port` and inspect show: the host's, not the networks'.
    let ports = listeners.iter().map(|(m, _)| *m).collect();
    let counters = Arc::new(HttpCounters::default());
    let ctl = Ctl::new(Some(counters.clone()));
    let (conn_tx, conn_rx) = mpsc::channel::<(TcpStream, Admitted)>(64);
    let served = {
        let (name, tx) = (Arc::<str>::from(spec.name.as_str()), conn_tx.clone());
        NetworkPorts::new(&spec.name, network_ports, on_networks, move |m, l| {
            tokio::spawn(accept(name.clone(), m, l, tx.clone()))
        })
    };
    let _ = ctl.served.set(Arc::new(served));
    let f = Arc::new(Function {
        name: spec.name.as_str().into(),
        engine,
        pre,
        allow: spec.http.allow_hosts.clone().into(),
        permits: Arc::new(Semaphore::new(spec.http.concurrency)),
        spec,
        ctl: ctl.clone(),
        counters,
        cap,
        budget,
        idle: std::sync::Mutex::new(Vec::new()),
        workers: std::sync::Mutex::new(Vec::new()),
    });
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let status = f.clone().supervise(listeners, conn_tx, conn_rx).await;
        tracing::debug!("function {} exited with {}", f.name, status.code);
        let _ = tx.send(status);
    });
    Ok(Started {
        control: ctl,
        exit: rx,
        ports,
    })
}

/// Listen on every published port; with none, on an ephemeral loopback
/// port for each exposed TCP port (or [`DEFAULT_PORT`]).
fn bind(spec: &RunSpec) -> Result<Vec<(PortMapping, TcpListener)>, RuntimeError> {
    let wanted: Vec<PortMapping> = if spec.ports.is_empty() {
        let mut exposed: Vec<u16> = spec
            .exposed
            .iter()
            .filter(|(_, proto)| *proto == Proto::Tcp)
            .map(|(p, _)| *p)
            .collect();
        if exposed.is_empty() {
            exposed.push(DEFAULT_PORT);
        }
        exposed
            .into_iter()
            .map(|p| PortMapping {
                container_port: p,
                proto: Proto::Tcp,
                host_ip: Ipv4Addr::LOCALHOST.into(),
                host_port: 0,
            })
            .collect()
    } else {
        spec.ports.clone()
    };
    crate::runtime::bind_ports(&spec.name, wanted, "a function serves HTTP over TCP only")
}

/// Accept connections on one of a function's listeners, under its cap,
/// and hand them to its supervisor.
async fn accept(
    name: Arc<str>,
    m: PortMapping,
    listener: TcpListener,
    tx: mpsc::Sender<(TcpStream, Admitted)>,
) {
    let what = format!(
        "function {name} on {}",
        std::net::SocketAddr::new(m.host_ip, m.host_port)
    );
    let gate = Gate::new(crate::accept::config().limits.max_port_connections);
    let mut backoff = Backoff::new();
    let keys = LogKeys {
        accept: "function accept",
        refused: "function refused",
    };
    loop {
        let (stream, admitted) = admit_next(&listener, &gate, 1, &mut backoff, &keys, &what).await;
        let _ = stream.set_nodelay(true);
        if tx.send((stream, admitted)).await.is_err() {
            return;
        }
    }
}

fn plain(status: StatusCode, msg: String) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg))
            .map_err(|never: Infallible| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Run `f` until `deadline`, if there is one. `None` when time ran out.
async fn within<F: Future>(deadline: Option<Instant>, f: F) -> Option<F::Output> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// A permit of the concurrency cap, counted as in flight while held.
struct InFlight {
    counters: Arc<HttpCounters>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Function {
    /// Accept until told to stop; then drain (terminate) or drop (kill)
    /// the connections. Returns the container's exit status.
    async fn supervise(
        self: Arc<Self>,
        listeners: Vec<(PortMapping, TcpListener)>,
        conn_tx: mpsc::Sender<(TcpStream, Admitted)>,
        mut conn_rx: mpsc::Receiver<(TcpStream, Admitted)>,
    ) -> ExitStatus {
        let mut accept = JoinSet::new();
        for (m, listener) in listeners {
            accept.spawn(self::accept(
                self.name.clone(),
                m,
                listener,
                conn_tx.clone(),
            ));
        }
        drop(conn_tx);
        let (drain_tx, drain_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let mut terminating = self.ctl.terminating.subscribe();
        let killed = self.ctl.killed();
        tokio::pin!(killed);
        let killed_status = ExitStatus {
            code: EXIT_KILLED,
            error: None,
            oom_killed: false,
        };
        loop {
            tokio::select! {
                Some((stream, admitted)) = conn_rx.recv() => {
                    conns.spawn(self.clone().connection(stream, admitted, drain_rx.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                () = async { let _ = terminating.wait_for(|t| *t).await; } => break,
                () = &mut killed => {
                    self.ctl.close_served().await;
                    accept.shutdown().await;
                    conns.shutdown().await;
                    return killed_status;
                }
            }
        }
        // Stop: close the listeners at once, let requests in flight finish.
        self.ctl.close_served().await;
        accept.shutdown().await;
        drop(conn_rx);
        drain_tx.send_replace(true);
        tokio::select! {
            () = async { while conns.join_next().await.is_some() {} } => ExitStatus::default(),
            () = &mut killed => {
                conns.shutdown().await;
                killed_status
            }
        }
    }

    /// Serve one client connection until it closes, stays idle past
    /// [`HEADER_READ_TIMEOUT`], or the container drains. `_admitted` keeps
    /// it counted on its listener's cap until then.
    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        _admitted: Admitted,
        mut drain: watch::Receiver<bool>,
    ) {
        let f = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let f = f.clone();
            async move { Ok::<_, Infallible>(f.handle(req).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            () = async { let _ = drain.wait_for(|d| *d).await; } => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let t0 = Instant::now();
        let resp = self.respond(req, t0).await;
        self.counters.finish(resp.status().as_u16(), t0.elapsed());
        resp
    }

    async fn respond(self: &Arc<Self>, req: Request<Incoming>, t0: Instant) -> Response<Body> {
        // Paused: hold the request until unpaused.
        if *self.ctl.paused.borrow() {
            let mut rx = self.ctl.paused.subscribe();
            let _ = rx.wait_for(|p| !*p).await;
        }
        if self.ctl.is_killed() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {} is stopping\n", self.name),
            );
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "function {} is already serving its limit of {} requests at once\n",
                    self.name, self.spec.http.concurrency
                ),
            );
        };
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = InFlight {
            counters: self.counters.clone(),
            _permit: permit,
        };
        let max = self.spec.http.max_body;
        let declared = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared.filter(|l| *l > max) {
            return too_large(&self.name, Some(len), max);
        }
        // A body without a length is cut off at the limit as it streams.
        let over = Arc::new(AtomicBool::new(false));
        let what = format!("{} {}", req.method(), req.uri());
        let req: Request<ReqBody> = {
            let over = over.clone();
            req.map(move |body| {
                Limited::new(body, max as usize)
                    .map_err(move |e| {
                        if e.is::<http_body_util::LengthLimitError>() {
                            over.store(true, Ordering::Relaxed);
                            HttpError::HttpRequestBodySize(Some(max))
                        } else {
                            match e.downcast::<hyper::Error>() {
                                Ok(h) => HttpError::from(*h),
                                Err(_) => HttpError::ConnectionTerminated,
                            }
                        }
                    })
                    .boxed_unsync()
            })
        };
        if matches!(self.pre, Handler::P3(_)) && self.spec.http.reuse > 1 {
            return self.respond_shared(req, t0, in_flight, &over, what).await;
        }
        let deadline = self.spec.http.timeout.map(|d| (t0 + d).into_std());
        let (mut store, kept) = match self.take_idle() {
            Some(k) => {
                let mut store = k.store;
                store.data_mut().deadline = deadline;
                (store, Some((k.live, k.served)))
            }
            None => (self.new_store(deadline), None),
        };
        let (tx, rx) = oneshot::channel::<Answer>();
        let responded = Arc::new(AtomicBool::new(false));
        let call = match &self.pre {
            Handler::P2(_) => {
                let prepared = (|| {
                    let mut http = store.data_mut().http();
                    let req = http.new_incoming_request(Scheme::Http, req)?;
                    let responded = responded.clone();
                    let out = http.new_response_outparam_from_callback(move |r| {
                        responded.store(true, Ordering::Relaxed);
                        let _ = tx.send(r.map_err(|code| format!("{code:?}")));
                    })?;
                    wasmtime::Result::<_>::Ok(Call::P2 { req, out })
                })();
                match prepared {
                    Ok(call) => call,
                    Err(e) => {
                        return plain(StatusCode::BAD_REQUEST, format!("bad request: {e:#}\n"));
                    }
                }
            }
            Handler::P3(_) => Call::P3 {
                req: Box::new(req),
                tx,
                responded: responded.clone(),
            },
        };
        let task = tokio::spawn(
            self.clone()
                .run_guest(store, kept, call, in_flight, t0, responded, what),
        );
        match rx.await {
            Ok(_) if over.load(Ordering::Relaxed) => too_large(&self.name, None, max),
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("function {} failed the request: {code}\n", self.name),
            ),
            Err(_) => match task.await {
                Ok(Outcome::Deadline) => plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "function {} did not answer within its deadline of {}\n",
                        self.name,
                        format_duration(self.spec.http.timeout.unwrap_or_default())
                    ),
                ),
                Ok(Outcome::Killed) => plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("function {} is stopping\n", self.name),
                ),
                Ok(Outcome::Trap(_)) | Err(_) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("function {} failed; its log has the details\n", self.name),
                ),
                Ok(Outcome::Done) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("function {} returned without a response\n", self.name),
                ),
            },
        }
    }

    fn new_store(&self, deadline: Option<std::time::Instant>) -> Store<HttpState> {
        let wasi = WasmBackend::wasi_ctx(&self.spec);
        // Grants were checked when the container started; a volume gone
        // since then leaves the request without it rather than failing.
        let ctx = match wasi {
            Ok(mut b) => b.build(),
            Err(e) => {
                self.log(&format!("ketch: {e}\n"));
                wasmtime_wasi::WasiCtxBuilder::new().build()
            }
        };
        let state = HttpState {
            ctx,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutgoingGrants {
                allow: self.allow.clone(),
            },
            limits: Limits::new(self.cap, &self.budget, &self.ctl.memory, &self.name),
            ctl: self.ctl.clone(),
            deadline,
        };
        let mut store = Store::new(&self.engine, state);
        configure_store(&mut store);
        store
    }

    /// Serve a request in a shared WASI 0.3 instance: one with room, or a
    /// new one. Requests sharing an instance share its fate: one that
    /// traps or runs out of time ends the instance, and the others with it.
    async fn respond_shared(
        self: &Arc<Self>,
        req: Request<ReqBody>,
        t0: Instant,
        in_flight: InFlight,
        over: &AtomicBool,
        what: String,
    ) -> Response<Body> {
        let max = self.spec.http.max_body;
        let (tx, rx) = oneshot::channel::<Answer>();
        let deadline = self.spec.http.timeout.map(|d| t0 + d);
        self.dispatch(Job {
            req: Box::new(req),
            tx,
            responded: Arc::new(AtomicBool::new(false)),
            deadline,
            what,
            _in_flight: in_flight,
        });
        match rx.await {
            Ok(_) if over.load(Ordering::Relaxed) => too_large(&self.name, None, max),
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("function {} failed the request: {code}\n", self.name),
            ),
            Err(_) if self.ctl.is_killed() => plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {} is stopping\n", self.name),
            ),
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "function {} did not answer within its deadline of {}\n",
                    self.name,
                    format_duration(self.spec.http.timeout.unwrap_or_default())
                ),
            ),
            Err(_) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("function {} failed; its log has the details\n", self.name),
            ),
        }
    }

    /// Hand `job` to an instance that has room, or to a new one.
    fn dispatch(self: &Arc<Self>, mut job: Job) {
        let reuse = self.spec.http.reuse;
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|w| !w.tx.is_closed() && w.taken < reuse);
        for w in workers.iter_mut() {
            match w.tx.try_send(job) {
                Ok(()) => {
                    w.taken += 1;
                    return;
                }
                Err(mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j)) => {
                    job = j;
                }
            }
        }
        let (tx, rx) = mpsc::channel(PER_INSTANCE);
        if tx.try_send(job).is_ok() {
            workers.push(Worker { tx, taken: 1 });
            tokio::spawn(self.clone().run_worker(rx));
        }
    }

    /// One shared WASI 0.3 instance: it runs up to [`PER_INSTANCE`]
    /// requests at once inside one `run_concurrent`, until it has taken
    /// its reuse count and answered them all, or has been idle for
    /// [`WORKER_IDLE`].
    async fn run_worker(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        let Handler::P3(pre) = self.pre.clone() else {
            return;
        };
        let reuse = self.spec.http.reuse;
        let mut store = self.new_store(None);
        let mut stopping = self.ctl.terminating.subscribe();
        let run = Box::pin(async move {
            let service = pre.instantiate_async(&mut store).await?;
            let svc = &service;
            store
                .run_concurrent(async move |a| -> wasmtime::Result<()> {
                    let mut running = futures_util::stream::FuturesUnordered::new();
                    let (mut taken, mut open, mut closing) = (0, true, false);
                    loop {
                        if running.is_empty() && (taken >= reuse || !open) {
                            return Ok(());
                        }
                        tokio::select! {
                            job = rx.recv(), if open && taken < reuse && running.len() < PER_INSTANCE => {
                                match job {
                                    Some(job) => {
                                        taken += 1;
                                        running.push(serve_job(a, svc, job));
                                    }
                                    None => open = false,
                                }
                            }
                            Some(done) = futures_util::StreamExt::next(&mut running) => done?,
                            // Idle: take no more (what was already sent
                            // is still served), then end.
                            () = tokio::time::sleep(WORKER_IDLE), if running.is_empty() && !closing => {
                                closing = true;
                                rx.close();
                            }
                            // The container stops: the same.
                            _ = stopping.wait_for(|s| *s), if !closing => {
                                closing = true;
                                rx.close();
                            }
                        }
                    }
                })
                .await?
        });
        let ended = tokio::select! {
            r = self.ctl.pausable(run) => r,
            () = self.ctl.killed() => Ok(()),
        };
        if let Err(e) = ended {
            self.log(&format!(
                "ketch: {e:#}; the requests sharing its instance were cut off with it\n"
            ));
        }
    }

    /// An idle instance, if this function reuses them and has one.
    fn take_idle(&self) -> Option<Kept> {
        if self.spec.http.reuse <= 1 {
            return None;
        }
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keep an instance that answered for the next request, unless it
    /// served its share, the container is stopping or enough are idle.
    fn keep(&self, k: Kept) {
        if k.served >= self.spec.http.reuse || self.ctl.is_stopping() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(k);
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_guest(
        self: Arc<Self>,
        mut store: Store<HttpState>,
        kept: Option<(Live, usize)>,
        call: Call,
        in_flight: InFlight,
        t0: Instant,
        responded: Arc<AtomicBool>,
        what: String,
    ) -> Outcome {
        let pre = self.pre.clone();
        let (live, served) = match kept {
            Some((live, served)) => (Some(live), served),
            None => (None, 0),
        };
        let run = Box::pin(async move {
            let result = async {
                match (pre, call) {
                    (Handler::P2(pre), Call::P2 { req, out }) => {
                        let proxy = match live {
                            Some(Live::P2(p)) => p,
                            _ => pre.instantiate_async(&mut store).await?,
                        };
                        proxy
                            .wasi_http_incoming_handler()
                            .call_handle(&mut store, req, out)
                            .await?;
                        Ok(Live::P2(proxy))
                    }
                    (Handler::P3(pre), Call::P3 { req, tx, responded }) => {
                        let service = match live {
                            Some(Live::P3(s)) => s,
                            _ => pre.instantiate_async(&mut store).await?,
                        };
                        let (req, io) = wasmtime_wasi_http::p3::Request::from_http(
                            &mut store.data_mut().hooks,
                            *req,
                        );
                        let io: RequestIo = Box::pin(io);
                        let svc = &service;
                        store
                            .run_concurrent(async move |a| {
                                serve_p3(a, svc, req, io, tx, responded).await
                            })
                            .await??;
                        Ok(Live::P3(service))
                    }
                    _ => Err(wasmtime::Error::msg(
                        "a request prepared for another WASI version",
                    )),
                }
            }
            .await;
            let refused = store.data().limits.refused;
            (
                result.map(|live| Kept {
                    store,
                    live,
                    served: served + 1,
                }),
                refused,
            )
        });
        let deadline = self.spec.http.timeout.map(|d| t0 + d);
        let outcome = tokio::select! {
            r = within(deadline, self.ctl.pausable(run)) => match r {
                Some((Ok(kept), _)) => {
                    self.keep(kept);
                    Outcome::Done
                }
                Some((Err(_), _)) if deadline.is_some_and(|d| Instant::now() >= d) => Outcome::Deadline,
                Some((Err(e), refused)) => {
                    let mut msg = format!("{e:#}");
                    if let Some(why) = refused {
                        msg.push_str(&format!(" ({why})"));
                    }
                    Outcome::Trap(msg)
                }
                None => Outcome::Deadline,
            },
            () = self.ctl.killed() => Outcome::Killed,
        };
        drop(in_flight);
        let failure = match &outcome {
            Outcome::Trap(msg) => Some(format!("ketch: request {what} failed: {msg}\n")),
            Outcome::Deadline => Some(format!(
                "ketch: request {what} cut off at its deadline of {}\n",
                format_duration(self.spec.http.timeout.unwrap_or_default())
            )),
            Outcome::Done | Outcome::Killed => None,
        };
        if let Some(line) = failure {
            self.log(&line);
            // A failure after the response head went out is not seen by
            // `handle`'s status count.
            if responded.load(Ordering::Relaxed) {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }

    fn log(&self, line: &str) {
        self.spec.output.write(StdStream::Stderr, line.as_bytes());
    }
}

/// Serve one request with a WASI 0.3 `handle`, inside the store's event
/// loop. The guest may write the body after `handle` returns (from a task
/// of its own), so the loop runs until hyper is done with the body.
async fn serve_p3(
    a: &Accessor<HttpState>,
    service: &Service,
    req: wasmtime_wasi_http::p3::Request,
    io: RequestIo,
    tx: oneshot::Sender<Answer>,
    responded: Arc<AtomicBool>,
) -> wasmtime::Result<()> {
    match service.handle(a, req).await? {
        Ok(resp) => {
            let resp = a.with(|mut s| resp.into_http(&mut s, io))?;
            let (done, body_dropped) = oneshot::channel::<()>();
            let resp = resp.map(|body| Watched { body, _done: done }.boxed_unsync());
            responded.store(true, Ordering::Relaxed);
            if tx.send(Ok(resp)).is_ok() {
                let _ = body_dropped.await;
            }
        }
        Err(code) => {
            let _ = tx.send(Err(format!("{code:?}")));
        }
    }
    Ok(())
}

/// One request in a shared WASI 0.3 instance, under its deadline.
async fn serve_job(a: &Accessor<HttpState>, svc: &Service, job: Job) -> wasmtime::Result<()> {
    let Job {
        req,
        tx,
        responded,
        deadline,
        what,
        _in_flight,
    } = job;
    let (req, io) = a.with(|mut s| {
        let (req, io) = wasmtime_wasi_http::p3::Request::from_http(&mut s.get().hooks, *req);
        (req, Box::pin(io) as RequestIo)
    });
    match within(deadline, serve_p3(a, svc, req, io, tx, responded)).await {
        Some(r) => r.map_err(|e| e.context(format!("request {what} failed"))),
        None => Err(wasmtime::Error::msg(format!(
            "request {what} cut off at its deadline"
        ))),
    }
}

/// A response body that tells, by being dropped, that hyper is done with
/// it (sent, or the client went away).
struct Watched {
    body: Body,
    _done: oneshot::Sender<()>,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, HttpError>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn too_large(name: &str, len: Option<u64>, max: u64) -> Response<Body> {
    let size = len.map(|l| format!(" of {l} bytes")).unwrap_or_default();
    plain(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body{size} is over the limit of {max} bytes of function {name}\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn outgoing_grants_match_host_and_port() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        assert!(!host_allowed(&[], &uri("http://example.com/")));
        let g = allow(&["Example.com", "127.0.0.1:8080"]);
        assert!(host_allowed(&g, &uri("https://example.com/x")));
        assert!(host_allowed(&g, &uri("http://EXAMPLE.com:81/")));
        assert!(host_allowed(&g, &uri("http://127.0.0.1:8080/")));
        assert!(!host_allowed(&g, &uri("http://127.0.0.1:8081/")));
        assert!(!host_allowed(&g, &uri("http://127.0.0.1/")));
        assert!(!host_allowed(&g, &uri("http://example.org/")));
        assert!(host_allowed(
            &allow(&["127.0.0.1:80"]),
            &uri("http://127.0.0.1/")
        ));
        assert!(host_allowed(&allow(&["*"]), &uri("http://anything:1/")));
    }
}
