//! How ketchd accepts connections without letting any client run it out of
//! file descriptors: a process-wide budget of descriptors that tenant-driven
//! connections (published ports, functions) may hold, with a reserve kept
//! for the API socket and ketchd's own files; a cap per listener; refusal by
//! reset; and exponential backoff when `accept` itself fails.
//!
//! An adversarial review held 10,200 connections to one published port:
//! 20,400 descriptors, all of ketchd's 20,000, and the API answered nothing
//! for minutes after the client had gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Connections one published port (or function listener) holds at once by
/// default. A proxied connection costs two descriptors.
pub const DEFAULT_MAX_PORT_CONNECTIONS: usize = 4096;
/// Concurrent API connections by default.
pub const DEFAULT_MAX_API_CONNECTIONS: usize = 1024;
/// Descriptors kept back from tenants for ketchd's own files (image store,
/// logs, pidfds, pipes to monitors), on top of the API's whole cap; at
/// least [`FD_RESERVE_PERCENT`] of the limit.
const FD_RESERVE_OWN: usize = 256;
const FD_RESERVE_PERCENT: usize = 5;

/// The caps ketchd was started with.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_port_connections: usize,
    pub max_api_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_port_connections: DEFAULT_MAX_PORT_CONNECTIONS,
            max_api_connections: DEFAULT_MAX_API_CONNECTIONS,
        }
    }
}

/// The caps, and the descriptor limit they were computed from.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub limits: Limits,
    /// RLIMIT_NOFILE (soft) of the process.
    pub fd_limit: usize,
    /// Descriptors tenants can never take.
    pub fd_reserve: usize,
}

impl Config {
    fn new(fd_limit: usize, limits: Limits) -> Self {
        let reserve = (fd_limit / 100 * FD_RESERVE_PERCENT)
            .max(FD_RESERVE_OWN.saturating_add(limits.max_api_connections))
            // A tiny limit still leaves tenants half of it.
            .min(fd_limit / 2);
        Config {
            limits,
            fd_limit,
            fd_reserve: reserve,
        }
    }

    /// Descriptors tenant connections (and API ones, which count too) may
    /// hold before tenants are refused.
    pub fn tenant_ceiling(&self) -> usize {
        self.fd_limit - self.fd_reserve
    }
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// Set the caps at daemon start: raise RLIMIT_NOFILE's soft limit to the
/// hard one and size the reserve from it. The first call wins; without
/// one (unit tests, the library used elsewhere), the defaults and the
/// current soft limit apply.
pub fn configure(limits: Limits) -> &'static Config {
    let fd_limit = raise_nofile_limit();
    CONFIG.get_or_init(|| Config::new(fd_limit, limits))
}

/// The caps in force.
pub fn config() -> &'static Config {
    CONFIG.get_or_init(|| Config::new(nofile_limit().0, Limits::default()))
}

/// RLIMIT_NOFILE as (soft, hard), saturated to `usize`.
#[cfg(unix)]
fn nofile_limit() -> (usize, usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        // Unknown: assume the usual default rather than no limit.
        return (1024, 1024);
    }
    let sat = |v: libc::rlim_t| usize::try_from(v).unwrap_or(usize::MAX);
    (sat(lim.rlim_cur), sat(lim.rlim_max))
}

/// Raise the soft descriptor limit to the hard one (as Go programs and
/// dockerd do); returns the soft limit in force afterwards. Containers do
/// not inherit it: their spec sets RLIMIT_NOFILE itself.
#[cfg(unix)]
fn raise_nofile_limit() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 && lim.rlim_cur < lim.rlim_max
    {
        let wanted = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: wanted is a valid rlimit; lowering or raising the soft
        // limit up to the hard one needs no privilege. On failure (a hard
        // limit the kernel would not grant, e.g. above nr_open) the old
        // limit stays.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) };
    }
    nofile_limit().0
}

/// A host without RLIMIT_NOFILE: the usual Unix default, rather than no
/// limit at all.
#[cfg(not(unix))]
fn nofile_limit() -> (usize, usize) {
    (1024, 1024)
}

#[cfg(not(unix))]
fn raise_nofile_limit() -> usize {
    nofile_limit().0
}

/// A count of descriptors held by connections.
pub struct Budget {
    held: AtomicUsize,
}

/// The process's one budget: tenant and API connections.
static BUDGET: Budget = Budget::new();

impl Budget {
    pub const fn new() -> Self {
        Budget {
            held: AtomicUsize::new(0),
        }
    }

    /// Take `n` descriptors if the count stays within `ceiling`.
    fn take(&'static self, n: usize, ceiling: usize) -> Option<Held> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(n).filter(|t| *t <= ceiling)
            })
            .ok()
            .map(|_| Held { budget: self, n })
    }

    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new()
    }
}

/// Descriptors counted against the budget until dropped.
#[must_use]
pub struct Held {
    budget: &'static Budget,
    n: usize,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.n, Ordering::AcqRel);
    }
}

/// Descriptors held by connections now.
pub fn held() -> usize {
    BUDGET.held()
}

/// Count one API connection. Never refused by the budget (the reserve is
/// there for it); the API's own cap bounds it.
pub fn api_descriptor() -> Held {
    BUDGET.held.fetch_add(1, Ordering::AcqRel);
    Held {
        budget: &BUDGET,
        n: 1,
    }
}

/// Why a connection was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds its cap of connections.
    PortFull(usize),
    /// Only the descriptors kept for the API and ketchd itself are left.
    OutOfDescriptors,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::PortFull(max) => write!(f, "it already holds {max} connections"),
            Refused::OutOfDescriptors => {
                f.write_str("ketchd's descriptors left are kept for its API")
            }
        }
    }
}

/// The cap of one tenant listener (a published port or a function's port).
pub struct Gate {
    open: Arc<AtomicUsize>,
    max: usize,
    budget: &'static Budget,
    ceiling: usize,
}

/// A connection let in: counted on its listener and in the budget until
/// dropped.
pub struct Admitted {
    _open: Open,
    _fds: Held,
}

struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gate {
    /// At most `max` connections at once, within the process's budget.
    pub fn new(max: usize) -> Self {
        Gate::with_budget(max, &BUDGET, config().tenant_ceiling())
    }

    fn with_budget(max: usize, budget: &'static Budget, ceiling: usize) -> Self {
        Gate {
            open: Arc::default(),
            max,
            budget,
            ceiling,
        }
    }

    /// Let in a connection that holds `fds` descriptors, or say why not.
    pub fn admit(&self, fds: usize) -> Result<Admitted, Refused> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                (o < self.max).then_some(o + 1)
            })
            .map_err(|_| Refused::PortFull(self.max))?;
        let open = Open(self.open.clone());
        let fds = self
            .budget
            .take(fds, self.ceiling)
            .ok_or(Refused::OutOfDescriptors)?;
        Ok(Admitted {
            _open: open,
            _fds: fds,
        })
    }

    /// Connections held now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// Take `n` descriptors of the tenant budget for something that is not a
/// connection of a [`Gate`] (a UDP flow's socket), or `None` when only the
/// reserve is left.
pub fn tenant_descriptors(n: usize) -> Option<Held> {
    BUDGET.take(n, config().tenant_ceiling())
}

/// Turn an accepted TCP connection away at once with a reset (SO_LINGER
/// 0): its descriptor is freed now, no FIN_WAIT or TIME_WAIT is left, the
/// backlog keeps draining, and the client knows straight away. No queueing.
pub fn refuse(stream: tokio::net::TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// The rate-limit keys of one kind of tenant listener's log lines.
pub struct LogKeys {
    /// A failed accept.
    pub accept: &'static str,
    /// A connection refused past the cap.
    pub refused: &'static str,
}

/// The next connection on a tenant listener that `gate` lets in, with its
/// place (`fds` descriptors). One past the cap is refused (reset) at once;
/// after a failed accept (out of descriptors, a connection reset before
/// accept) the listener stays readable, so it waits out `backoff` rather
/// than spin. `what` names the listener in log lines.
pub async fn admit_next(
    listener: &tokio::net::TcpListener,
    gate: &Gate,
    fds: usize,
    backoff: &mut Backoff,
    keys: &LogKeys,
    what: &str,
) -> (tokio::net::TcpStream, Admitted) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff.succeeded();
                s
            }
            Err(e) => {
                crate::lograte::warn_limited!(keys.accept, "{what}: accept: {e}");
                tokio::time::sleep(backoff.failed()).await;
                continue;
            }
        };
        match gate.admit(fds) {
            Ok(admitted) => return (stream, admitted),
            Err(why) => {
                crate::lograte::warn_limited!(keys.refused, "{what}: refusing a connection: {why}");
                refuse(stream);
            }
        }
    }
}

/// The pause after a failed `accept` (EMFILE, ENFILE, ENOBUFS,
/// ECONNABORTED...): a listener whose accept fails stays readable, so
/// retrying at once spins a core and floods the log.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(5);
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// An accept succeeded: the next failure waits [`Backoff::FIRST`] again.
    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }

    /// An accept failed: how long to wait before the next one (5 ms,
    /// doubling up to 1 s).
    pub fn failed(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * 2).min(Self::MAX);
        now
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_resets_on_success() {
        let mut b = Backoff::new();
        let ms: Vec<u128> = (0..10).map(|_| b.failed().as_millis()).collect();
        assert_eq!(ms, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Duration::from_millis(5));
        assert_eq!(b.failed(), Duration::from_millis(10));
    }

    #[test]
    fn the_reserve_covers_the_api_cap_and_never_more_than_half() {
        let l = Limits::default();
        // The review's daemon: 20,000 descriptors.
        let c = Config::new(20_000, l);
        assert_eq!(c.fd_reserve, 256 + 1024);
        assert_eq!(c.tenant_ceiling(), 20_000 - 1280);
        // A big limit keeps 5%.
        let c = Config::new(1 << 20, l);
        assert_eq!(c.fd_reserve, (1 << 20) / 100 * 5);
        // A tiny one still lets tenants have half.
        let c = Config::new(1024, l);
        assert_eq!(c.tenant_ceiling(), 512);
    }

    #[test]
    fn a_gate_holds_its_cap_and_the_budget_its_ceiling() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new()));
        let port = Gate::with_budget(2, budget, 5);
        let a = port.admit(2).unwrap();
        let b = port.admit(2).unwrap();
        assert_eq!(port.admit(2).err(), Some(Refused::PortFull(2)));
        assert_eq!((port.open(), budget.held()), (2, 4));
        drop(a);
        assert_eq!((port.open(), budget.held()), (1, 2));
        // Another port shares the budget: 2 + 2 fits in 5, 2 + 2 + 2 not.
        let other = Gate::with_budget(10, budget, 5);
        let c = other.admit(2).unwrap();
        assert_eq!(other.admit(2).err(), Some(Refused::OutOfDescriptors));
        // A refusal by the budget gives the port's slot back.
        assert_eq!(other.open(), 1);
        drop((b, c));
        assert_eq!((port.open(), other.open(), budget.held()), (0, 0, 0));
    }
}
