//! Thin wrappers over the Linux system calls the backend and its monitor
//! use directly: pidfds, mounts, namespaces, the loopback interface.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other)
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A pidfd: a handle on a process that can't be confused with a later
/// process given the same pid.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain syscall with integer arguments.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn pidfd_send_signal(fd: RawFd, sig: i32) -> io::Result<()> {
    // SAFETY: integer arguments; a null siginfo is allowed.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// A pipe (read end, write end), both close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us both descriptors.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The start time of a process (clock ticks since boot), to tell it from a
/// later process with the same pid.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start
    // after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

pub fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = CString::new(source).map_err(io::Error::other)?;
    let tgt = cstr(target)?;
    let fs = CString::new(fstype).map_err(io::Error::other)?;
    let data = data
        .map(|d| CString::new(d).map_err(io::Error::other))
        .transpose()?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fs.as_ptr(),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    check(rc as libc::c_long).map(drop)
}

/// A detached recursive copy of the mount tree at `path` (`open_tree` with
/// `OPEN_TREE_CLONE`), to be attached elsewhere with [`move_mount_to`],
/// even after a `chroot` has made `path` unreachable.
pub fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: a NUL-terminated path that outlives the call; integer flags.
    let fd = check(unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            (libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint)
                as libc::c_uint,
        )
    })?;
    // SAFETY: open_tree returned a new descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attach a tree from [`clone_tree`] at `target`, resolved from the current
/// root (after a `chroot`, inside it).
pub fn move_mount_to(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: a valid descriptor, an empty and a NUL-terminated path.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    })
    .map(drop)
}

/// Leave for a mount namespace of our own that still receives the host's
/// mount events but sends none back: whatever is mounted here goes away
/// with the last process in it.
pub fn private_mount_namespace() -> io::Result<()> {
    unshare(libc::CLONE_NEWNS)?;
    mount(
        "none",
        Path::new("/"),
        "",
        libc::MS_REC | libc::MS_SLAVE,
        None,
    )
}

/// Mount an overlay of `lower` (lowest first), `upper` and `work` at
/// `target`.
pub fn mount_overlay(
    lower: &[std::path::PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    // overlayfs lists the top layer first.
    let lower: Vec<String> = lower
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    mount("overlay", target, "overlay", 0, Some(&opts))
}

pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: integer argument.
    check(unsafe { libc::unshare(flags) } as libc::c_long).map(drop)
}

/// Move the calling thread into the namespace open at `fd`.
pub fn setns(fd: RawFd, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: integer arguments; fd is an open namespace file.
    check(unsafe { libc::setns(fd, kind) } as libc::c_long).map(drop)
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket call.
    let fd = check(
        unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) }
            as libc::c_long,
    )? as RawFd;
    // SAFETY: fd is ours from the call above.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: ifr is a valid ifreq for SIOCGIFFLAGS/SIOCSIFFLAGS.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) as libc::c_long)?;
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) as libc::c_long)?;
    }
    Ok(())
}

/// A unix socket path the kernel accepts whatever its length: `sun_path`
/// holds 108 bytes, and data roots can be deeper than that, so a long path
/// is reached through `/proc/self/fd/N` of its directory, opened `O_PATH`.
/// The returned descriptor must live until the bind or connect is done.
fn short_unix_path(path: &Path) -> io::Result<(std::path::PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() < 100 {
        return Ok((path.to_path_buf(), None));
    }
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("socket path without a directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("socket path without a name"))?;
    let c = cstr(dir)?;
    // SAFETY: c is a valid C string; the flags ask for a path-only handle.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        ) as libc::c_long
    })?;
    // SAFETY: open just gave us this descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    use std::os::fd::AsRawFd;
    let short = Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name);
    Ok((short, Some(fd)))
}

/// Listen on a unix socket at `path` (of any length).
pub fn bind_unix(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    let (p, _dir) = short_unix_path(path)?;
    std::os::unix::net::UnixListener::bind(p)
}

/// Connect to a unix socket at `path` (of any length).
pub fn connect_unix(path: &Path) -> io::Result<std::os::unix::net::UnixStream> {
    let (p, _dir) = short_unix_path(path)?;
    std::os::unix::net::UnixStream::connect(p)
}

/// Receive one descriptor sent with `SCM_RIGHTS` (a pty master from the
/// container's init, through the console socket).
pub fn recv_fd(sock: RawFd) -> io::Result<OwnedFd> {
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one cmsghdr carrying one int, suitably aligned.
    let mut cmsg = [0u64; 8];
    // SAFETY: msghdr is plain data; all-zero is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cmsg) as _;
    // SAFETY: msg points at buffers that outlive the call.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: walking the control messages the kernel wrote into msg.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<RawFd>());
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Err(io::Error::other(
        "no descriptor in the console socket message",
    ))
}

/// Accept one connection on `l`, waiting at most `timeout`.
pub fn accept_within(
    l: &std::os::unix::net::UnixListener,
    timeout: std::time::Duration,
) -> io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    if n <= 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "nothing connected to the console socket",
        ));
    }
    l.accept().map(|(s, _)| s)
}

/// Set a terminal's size (on its pty master).
pub fn set_winsize(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    check(unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } as libc::c_long).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_reads_own_process() {
        assert!(start_time(std::process::id() as i32).is_some());
        assert!(start_time(i32::MAX).is_none());
    }
}
