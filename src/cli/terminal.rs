//! The local terminal for `-t`: raw mode while attached, and the size
//! sent to the container (at start and on every SIGWINCH).

use crate::client::Client;
use std::os::fd::RawFd;

/// Puts a terminal in raw mode; restores it when dropped.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    /// Raw mode on stdin, if stdin is a terminal.
    pub fn enter() -> Option<RawMode> {
        let fd = libc::STDIN_FILENO;
        // SAFETY: isatty and tcgetattr only read; saved is a valid out pointer.
        unsafe {
            if libc::isatty(fd) != 1 {
                return None;
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut saved) != 0 {
                return None;
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(fd, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            Some(RawMode { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in `enter`.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

/// The local terminal's size (rows, columns), if stdout is one.
pub fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ writes one winsize into a valid pointer.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        (libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0)
            .then_some((ws.ws_row, ws.ws_col))
    }
}

/// Send the terminal's size to `resize_path` (`/containers/ID/resize` or
/// `/exec/ID/resize`) now and whenever the window changes, until aborted.
pub fn follow_size(c: &Client, resize_path: String) -> Option<tokio::task::JoinHandle<()>> {
    size()?;
    let c = c.clone();
    Some(tokio::spawn(async move {
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
        loop {
            if let Some((h, w)) = size() {
                let _ = c.post(&format!("{resize_path}?h={h}&w={w}")).await;
            }
            match winch.as_mut() {
                Some(s) => {
                    if s.recv().await.is_none() {
                        return;
                    }
                }
                None => return,
            }
        }
    }))
}
