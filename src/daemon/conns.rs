//! The API socket's connections: at most `max` at once. When all are
//! taken, the one idle longest (no request in flight) is asked to close to
//! make room, so a client that opens connections and sends nothing cannot
//! lock `ketch ps` out; a connection with a response still streaming
//! (`logs -f`, `events`, `wait`, a pull) is never picked. Only when every
//! connection is busy is a new one refused.

use super::http::Resp;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::Notify;

pub(super) struct Conns {
    max: usize,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    live: HashMap<u64, Arc<Conn>>,
}

/// One API connection's state, shared by its task and the table.
pub(super) struct Conn {
    epoch: Instant,
    /// Requests whose response has not been sent yet.
    busy: AtomicUsize,
    /// When `busy` last fell to zero, in ms since `epoch`.
    idle_since: AtomicU64,
    close: Notify,
}

/// A connection's place in the table, given back on drop.
pub(super) struct Slot {
    conns: Arc<Conns>,
    id: u64,
    pub conn: Arc<Conn>,
    _fd: crate::accept::Held,
}

/// Marks its connection busy until dropped.
pub(super) struct Busy(Arc<Conn>);

fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Conns {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Conns {
            max,
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// A place for a new connection; when the table is full, the
    /// longest-idle connection is asked to close and gives up its place.
    /// `None` when every connection has a request in flight.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if t.live.len() >= self.max {
            let victim = t
                .live
                .iter()
                .filter(|(_, c)| c.busy.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, c)| c.idle_since.load(Ordering::Relaxed))
                .map(|(id, _)| *id)?;
            if let Some(c) = t.live.remove(&victim) {
                tracing::debug!("closing an idle API connection to make room for a new one");
                c.close.notify_one();
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        let conn = Arc::new(Conn {
            epoch: self.epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(ms_since(self.epoch)),
            close: Notify::new(),
        });
        t.live.insert(id, conn.clone());
        Some(Slot {
            conns: self.clone(),
            id,
            conn,
            _fd: crate::accept::api_descriptor(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.conns
            .table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .remove(&self.id);
    }
}

impl Conn {
    /// A request started: busy until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Resolves when the table wants this connection closed.
    pub async fn asked_to_close(&self) {
        self.close.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let c = &self.0;
        c.idle_since.store(ms_since(c.epoch), Ordering::Relaxed);
        c.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `resp`, keeping its connection busy until its body has been sent (or
/// dropped: the client went away). A streamed body (`logs -f`, `events`,
/// `wait`) keeps it busy for as long as it streams.
pub(super) fn until_sent(resp: Resp, busy: Busy) -> Resp {
    resp.map(|body| http_body_util::BodyExt::boxed_unsync(UntilSent { body, _busy: busy }))
}

struct UntilSent {
    body: super::http::Body,
    _busy: Busy,
}

impl Body for UntilSent {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_evicts_the_longest_idle_and_never_a_busy_one() {
        let conns = Conns::new(2);
        let a = conns.admit().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = conns.admit().unwrap();
        // `a` is idle longest: the third takes its place.
        let c = conns.admit().unwrap();
        let closes =
            |s: &Slot| futures_util::FutureExt::now_or_never(s.conn.asked_to_close()).is_some();
        assert!(closes(&a), "the longest-idle connection is asked to close");
        assert!(!closes(&b));
        // With both left busy, a new connection is refused.
        let _rb = b.conn.start_request();
        let rc = c.conn.start_request();
        assert!(conns.admit().is_none());
        // A request done makes its connection idle, hence evictable.
        drop(rc);
        let d = conns.admit().unwrap();
        assert!(closes(&c));
        drop((a, b, c, d));
        assert!(conns.table.lock().unwrap().live.is_empty());
    }
}
