//! Control of running instances: kill, pause and resume through watch
//! channels, the epoch ticker and deadline callback that let them act, and
//! the CPU time a guest spends being polled.

use super::limits::Limits;
use super::served::NetworkPorts;
use crate::runtime::stats::{HttpCounters, MemoryGauge};
use crate::runtime::{Control, RuntimeStats};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};

/// How often the epoch advances: the longest a guest runs between checks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// The same for functions, shorter: a spinning handler holds a runtime
/// worker for up to one tick, delaying other requests' I/O, and tokio
/// polls I/O only every few dozen task polls while its workers are busy.
pub const FN_EPOCH_TICK: Duration = Duration::from_millis(1);

/// Shared between a container's instances and its [`Control`] handle.
pub(crate) struct Ctl {
    pub(super) killed: watch::Sender<bool>,
    pub(super) paused: watch::Sender<bool>,
    pub(super) terminating: watch::Sender<bool>,
    pub(crate) memory: Arc<MemoryGauge>,
    /// Nanoseconds spent polling guest code.
    cpu_ns: Arc<AtomicU64>,
    http: Option<Arc<HttpCounters>>,
    /// What it serves at its network addresses (a guest with sockets).
    pub(super) served: std::sync::OnceLock<Arc<NetworkPorts>>,
}

impl Ctl {
    /// `http`: the request counters of a function, none for a command.
    pub(crate) fn new(http: Option<Arc<HttpCounters>>) -> Arc<Self> {
        Arc::new(Ctl {
            killed: watch::channel(false).0,
            paused: watch::channel(false).0,
            terminating: watch::channel(false).0,
            memory: Arc::default(),
            cpu_ns: Arc::default(),
            http,
            served: std::sync::OnceLock::new(),
        })
    }

    pub(super) fn is_killed(&self) -> bool {
        *self.killed.borrow()
    }

    /// Asked to stop, or killed.
    pub(super) fn is_stopping(&self) -> bool {
        *self.terminating.borrow() || self.is_killed()
    }

    /// Resolves once the container is killed.
    pub(super) fn killed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.killed.subscribe();
        async move {
            let _ = rx.wait_for(|k| *k).await;
        }
    }

    /// Stop serving the guest's ports on its networks (it is stopping);
    /// resolves once their listeners are closed.
    pub(super) async fn close_served(&self) {
        if let Some(s) = self.served.get() {
            s.close().await;
        }
    }

    /// Wraps `f` so it is polled only while the container is not paused.
    pub(super) fn pausable<F: Future + Unpin>(&self, f: F) -> Pausable<F> {
        Pausable {
            inner: f,
            paused: self.paused.subscribe(),
            waiting: None,
            cpu_ns: self.cpu_ns.clone(),
        }
    }
}

impl Control for Ctl {
    fn kill(&self) {
        self.killed.send_replace(true);
        // A paused instance must wake up to die.
        self.paused.send_replace(false);
    }
    fn terminate(&self) {
        self.terminating.send_replace(true);
    }
    fn pause(&self) {
        self.paused.send_replace(true);
    }
    fn resume(&self) {
        self.paused.send_replace(false);
    }
    fn set_memory_limit(&self, bytes: u64) -> Result<(), String> {
        let held = self.memory.current();
        if bytes < held {
            return Err(format!(
                "a memory limit of {} is below the {} the guest already holds",
                crate::model::units::format_size(bytes),
                crate::model::units::format_size(held)
            ));
        }
        self.memory.set_limit(bytes);
        Ok(())
    }
    fn stats(&self) -> RuntimeStats {
        RuntimeStats {
            cpu_ns: self.cpu_ns.load(Ordering::Relaxed),
            memory_bytes: self.memory.current(),
            memory_peak: self.memory.peak(),
            http: self.http.as_ref().map(|h| h.snapshot()),
            ..Default::default()
        }
    }
    /// A guest without sockets (a preview 1 module) has nothing to serve.
    fn join_network(&self, ip: std::net::IpAddr) -> Result<(), String> {
        if self.is_stopping() {
            return Err("it is stopping".into());
        }
        self.served.get().map_or(Ok(()), |s| s.join(ip))
    }
    fn leave_network(&self, ip: std::net::IpAddr) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        match self.served.get() {
            Some(s) => Box::pin(s.leave(ip)),
            None => Box::pin(std::future::ready(())),
        }
    }
}

/// What every store's data gives the limiter and the epoch callback.
pub(crate) trait Guest: Send + 'static {
    fn limits(&mut self) -> &mut Limits;
    fn ctl(&self) -> &Ctl;
    /// When this instance must stop, if ever (a function's request deadline).
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }
}

pub(crate) fn configure_store<T: Guest>(store: &mut Store<T>) {
    store.limiter(|s| s.limits() as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|cx| {
        let s = cx.data();
        // Checked here, in the guest, rather than by a timer alone: a
        // runtime busy with spinning guests polls its timers late.
        if s.ctl().is_killed() || s.deadline().is_some_and(|d| std::time::Instant::now() >= d) {
            return Ok(UpdateDeadline::Interrupt);
        }
        // Yield at every tick: lets pause/kill act and keeps the runtime fair.
        Ok(UpdateDeadline::Yield(1))
    });
}

/// How many stores exist (each has one [`Limits`]), so the epoch tickers
/// sleep while there is no guest to interrupt: an idle ketchd does not
/// wake a thousand times a second.
static LIVE_STORES: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

pub(super) fn store_born() {
    let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
    *n += 1;
    if *n == 1 {
        LIVE_STORES.1.notify_all();
    }
}

pub(super) fn store_gone() {
    let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
    *n = n.saturating_sub(1);
}

pub(crate) fn spawn_epoch_ticker(engine: &Engine, tick: Duration) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("ketch-epoch".into())
        .spawn(move || loop {
            {
                let mut n = LIVE_STORES.0.lock().unwrap_or_else(|e| e.into_inner());
                while *n == 0 {
                    // Woken by the first store; the timeout notices a
                    // dropped engine.
                    n = LIVE_STORES
                        .1
                        .wait_timeout(n, Duration::from_secs(1))
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    if weak.upgrade().is_none() {
                        return;
                    }
                }
            }
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(e) => e.increment_epoch(),
                None => return,
            }
        })
        .map(drop)
}

/// Polls the instance only while it is not paused. The instance yields at
/// every epoch tick, so a pause takes hold within one tick, and a guest
/// blocked in a host call (a sleep, a read) is not resumed until unpaused.
/// Time spent in its polls is the container's CPU time.
pub(super) struct Pausable<F> {
    inner: F,
    paused: watch::Receiver<bool>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    cpu_ns: Arc<AtomicU64>,
}

impl<F: Future + Unpin> Future for Pausable<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        loop {
            if let Some(w) = self.waiting.as_mut() {
                match w.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.waiting = None,
                }
            }
            if *self.paused.borrow() {
                let mut rx = self.paused.clone();
                self.waiting = Some(Box::pin(async move {
                    let _ = rx.wait_for(|p| !*p).await;
                }));
                continue;
            }
            let t0 = std::time::Instant::now();
            let r = Pin::new(&mut self.inner).poll(cx);
            self.cpu_ns
                .fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            return r;
        }
    }
}
