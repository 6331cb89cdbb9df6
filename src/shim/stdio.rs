//! A task's stdio: the FIFOs (or `file://` URIs) containerd hands over.
//!
//! The guest writes into a bounded buffer per stream and never blocks; a
//! writer task drains it into the FIFO. While nobody reads, up to
//! [`MAX_BUFFERED`] bytes wait and the rest is dropped, so a client that
//! stops reading costs the shim that much memory, not more. When the guest
//! exits, the buffers are drained and the FIFOs closed before its exit is
//! reported, so `ctr` sees all of its output and then end of file.

use super::error::ShimError;
use crate::api::stream::StdStream;
use crate::runtime::{OutputSink, Stdin};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Output waiting for a reader, per stream.
const MAX_BUFFERED: usize = 1 << 20;
/// How long an exited guest's output may take to drain into its FIFOs.
const DRAIN: Duration = Duration::from_secs(5);

/// One stream's buffer, shared by the sink and its writer task.
#[derive(Default)]
struct Buffer {
    bytes: Mutex<VecDeque<u8>>,
    ready: Notify,
    closed: AtomicBool,
    dropped: AtomicU64,
}

impl Buffer {
    fn push(&self, data: &[u8]) {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_BUFFERED.saturating_sub(b.len());
        b.extend(&data[..data.len().min(room)]);
        drop(b);
        if data.len() > room {
            self.dropped
                .fetch_add((data.len() - room) as u64, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    fn take(&self) -> Vec<u8> {
        let mut b = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        b.drain(..).collect()
    }
}

/// Writes one buffer into its destination until closed and drained.
async fn drain_into(buf: Arc<Buffer>, mut out: Box<dyn AsyncWrite + Send + Unpin>) {
    loop {
        let chunk = buf.take();
        if chunk.is_empty() {
            if buf.closed.load(Ordering::Acquire) {
                break;
            }
            buf.ready.notified().await;
            continue;
        }
        if out.write_all(&chunk).await.is_err() {
            // The reader is gone for good: the rest goes nowhere.
            break;
        }
    }
    let _ = out.flush().await;
    let dropped = buf.dropped.load(Ordering::Relaxed);
    if dropped > 0 {
        log::warn!("{dropped} bytes of output were dropped: nobody read them");
    }
}

/// A task's stdout and stderr (one stream with a terminal).
pub(super) struct Output {
    stdout: Option<Arc<Buffer>>,
    stderr: Option<Arc<Buffer>>,
    writers: Mutex<Vec<JoinHandle<()>>>,
}

impl Output {
    /// Opens the destinations containerd named; an empty path discards.
    pub(super) fn open(
        id: &str,
        stdout: &str,
        stderr: &str,
        terminal: bool,
    ) -> Result<Arc<Self>, ShimError> {
        let mut writers = Vec::new();
        let mut open = |path: &str, what: &str| -> Result<Option<Arc<Buffer>>, ShimError> {
            if path.is_empty() {
                return Ok(None);
            }
            let out = destination(path).map_err(|e| {
                ShimError::Invalid(format!("task {id}: cannot open its {what} {path}: {e}"))
            })?;
            let buf = Arc::new(Buffer::default());
            writers.push(tokio::spawn(drain_into(buf.clone(), out)));
            Ok(Some(buf))
        };
        let out = open(stdout, "stdout")?;
        // With a terminal both streams are the one the terminal shows.
        let err = if terminal {
            out.clone()
        } else {
            open(stderr, "stderr")?
        };
        Ok(Arc::new(Output {
            stdout: out,
            stderr: err,
            writers: Mutex::new(writers),
        }))
    }

    /// Drains what is buffered and closes the destinations.
    pub(super) async fn finish(&self) {
        for b in self.stdout.iter().chain(self.stderr.iter()) {
            b.closed.store(true, Ordering::Release);
            b.ready.notify_one();
        }
        let writers = std::mem::take(&mut *self.writers.lock().unwrap_or_else(|e| e.into_inner()));
        // Both streams drain at once, within one deadline.
        let aborts: Vec<_> = writers.iter().map(|w| w.abort_handle()).collect();
        let all = futures_util::future::join_all(writers);
        if tokio::time::timeout(DRAIN, all).await.is_err() {
            for a in aborts {
                a.abort();
            }
        }
    }

    /// Closes at once, dropping what is buffered (the task is deleted).
    pub(super) fn abort(&self) {
        for w in self
            .writers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            w.abort();
        }
    }
}

impl OutputSink for Output {
    fn write(&self, stream: StdStream, data: &[u8]) {
        let b = match stream {
            StdStream::Stderr => &self.stderr,
            _ => &self.stdout,
        };
        if let Some(b) = b {
            b.push(data);
        }
    }
}

/// A FIFO, opened read-write so that opening never waits for a reader and
/// writing never fails for the lack of one; or a `file://` URI, appended to.
fn destination(path: &str) -> std::io::Result<Box<dyn AsyncWrite + Send + Unpin>> {
    if let Some(file) = path.strip_prefix("file://") {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)?;
        return Ok(Box::new(tokio::fs::File::from_std(f)));
    }
    if let Some((scheme, _)) = path.split_once("://") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{scheme}:// output is not supported (FIFOs and file:// are)"),
        ));
    }
    Ok(Box::new(
        tokio::net::unix::pipe::OpenOptions::new()
            .read_write(true)
            .open_sender(path)?,
    ))
}

/// A task's stdin: copied from its FIFO into the guest until the client
/// closes its end; `CloseIO` (the client's word that it is done) ends it
/// once what was written is read.
pub(super) struct Input {
    copy: JoinHandle<()>,
    close: Arc<Notify>,
}

impl Input {
    pub(super) fn open(id: &str, path: &str) -> Result<(Input, Stdin), ShimError> {
        // Read-only, so the client closing its end is the guest's end of
        // file (Linux reports no hang-up before a first writer came).
        let fifo = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(path)
            .map_err(|e| {
                ShimError::Invalid(format!("task {id}: cannot open its stdin {path}: {e}"))
            })?;
        // A duplex end ends the other's reads when dropped (a simplex's
        // halves do not), so the copy ending is the end of file.
        let (reader, writer) = tokio::io::duplex(64 << 10);
        let close = Arc::new(Notify::new());
        let copy = tokio::spawn(copy_stdin(fifo, writer, close.clone()));
        Ok((Input { copy, close }, Box::pin(reader)))
    }

    pub(super) fn close(&self) {
        self.close.notify_one();
    }

    /// Ends it now, unread input and all (the task is deleted).
    pub(super) fn abort(&self) {
        self.copy.abort();
    }
}

async fn copy_stdin(
    fifo: tokio::net::unix::pipe::Receiver,
    mut to: tokio::io::DuplexStream,
    close: Arc<Notify>,
) {
    use tokio::io::AsyncReadExt;
    let mut fifo = fifo;
    let mut buf = vec![0u8; 32 << 10];
    let mut closing = false;
    loop {
        let n = if closing {
            // Done once nothing more is waiting in the FIFO.
            fifo.try_read(&mut buf).unwrap_or_default()
        } else {
            tokio::select! {
                r = fifo.read(&mut buf) => r.unwrap_or(0),
                () = close.notified() => {
                    closing = true;
                    continue;
                }
            }
        };
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.copy.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn mkfifo(path: &std::path::Path) {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }

    #[tokio::test]
    async fn output_reaches_the_fifo_and_then_end_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        mkfifo(&out);
        mkfifo(&err);
        let mut reader = tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(&out)
            .unwrap();
        let o = Output::open("t", out.to_str().unwrap(), err.to_str().unwrap(), true).unwrap();
        o.write(StdStream::Stdout, b"hello ");
        o.write(StdStream::Stderr, b"world");
        o.finish().await;
        let mut got = String::new();
        tokio::time::timeout(Duration::from_secs(5), reader.read_to_string(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, "hello world");
    }

    #[tokio::test]
    async fn a_missing_fifo_is_named_and_an_unread_one_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("gone");
        let e = Output::open("t", missing.to_str().unwrap(), "", false)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("task t: cannot open its stdout") && e.contains("gone"),
            "{e}"
        );
        let e = Input::open("t", missing.to_str().unwrap())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot open its stdin"), "{e}");
        let e = Output::open("t", "binary:///bin/logger", "", false)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("binary:// output is not supported"), "{e}");
        let fifo = dir.path().join("unread");
        mkfifo(&fifo);
        let o = Output::open("t", fifo.to_str().unwrap(), "", false).unwrap();
        for _ in 0..64 {
            o.write(StdStream::Stdout, &[b'x'; 64 << 10]);
        }
        let held = o.stdout.as_ref().unwrap().bytes.lock().unwrap().len();
        assert!(held <= MAX_BUFFERED, "{held}");
        o.abort();
    }

    #[tokio::test]
    async fn stdin_ends_at_close_io() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("in");
        mkfifo(&fifo);
        let (input, mut stdin) = Input::open("t", fifo.to_str().unwrap()).unwrap();
        let mut w = tokio::net::unix::pipe::OpenOptions::new()
            .open_sender(&fifo)
            .unwrap();
        w.write_all(b"abc").await.unwrap();
        let mut buf = [0u8; 3];
        stdin.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        input.close();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stdin.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        assert!(rest.is_empty());
    }
}
