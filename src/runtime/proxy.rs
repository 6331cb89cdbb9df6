//! The TCP relay of published ports, shared by Linux containers and Wasm
//! commands: bytes are copied both ways until both sides are done, or
//! until the connection has been idle too long.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// A proxied TCP connection on which no byte moved either way for this
/// long is closed: idle connections a client leaves open hold two of
/// ketchd's descriptors each.
pub const PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Copy both ways until both sides are done, or until no byte has moved
/// either way for `idle`.
pub async fn relay(client: tokio::net::TcpStream, inner: tokio::net::TcpStream, idle: Duration) {
    let activity = Arc::new(Activity::new());
    let mut client = Metered {
        io: client,
        activity: activity.clone(),
    };
    let mut inner = Metered {
        io: inner,
        activity: activity.clone(),
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut inner) => {}
        () = activity.idle_for(idle) => {}
    }
}

/// When a byte last moved through a connection's streams.
struct Activity {
    start: Instant,
    /// Milliseconds since `start`.
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet).await;
        }
    }
}

/// A stream that records in its [`Activity`] every byte read or written.
struct Metered {
    io: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_when_no_byte_moves() {
        let a = Activity::new();
        let idle = Duration::from_secs(1);
        // Traffic every 50 ms keeps it alive (with room for a slow runner).
        let busy = async {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                a.touch();
            }
        };
        tokio::select! {
            () = busy => {}
            () = a.idle_for(idle) => panic!("idle while bytes moved"),
        }
        // Then silence: idle a second after the last byte.
        let t0 = Instant::now();
        tokio::time::timeout(Duration::from_secs(10), a.idle_for(idle))
            .await
            .expect("idle after a quiet spell");
        assert!(
            t0.elapsed() >= Duration::from_millis(900),
            "{:?}",
            t0.elapsed()
        );
    }
}
