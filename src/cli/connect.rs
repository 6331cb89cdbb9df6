//! Finding the daemon, and starting one when none answers on the default
//! socket, so a newcomer never starts ketchd by hand.

use crate::client::Client;
use crate::paths;
use anyhow::{bail, Context};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long to wait for a freshly started daemon to answer.
const DAEMON_START_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn client(host: Option<&str>) -> anyhow::Result<Client> {
    if let Some(h) = host {
        let path = paths::parse_host(h)?;
        return Ok(Client::new(&path));
    }
    let socket = paths::default_socket();
    let c = Client::new(&socket);
    // A daemon that accepts a connection is there: the command's own
    // requests follow, with no ping's round trip before them.
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return Ok(c);
    }
    start_daemon(&socket).await?;
    Ok(c)
}

fn ketchd_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("ketchd")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("ketchd"))
}

async fn start_daemon(socket: &std::path::Path) -> anyhow::Result<()> {
    let root = paths::default_data_root();
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let log_path = root.join("ketchd.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(ketchd_binary());
    cmd.arg("--data-root")
        .arg(&root)
        .arg("--host")
        .arg(format!("unix://{}", socket.display()));
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from the
    // CLI's session so it outlives this process and its terminal.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .context("starting ketchd (is it installed beside ketch?)")?;
    let c = Client::new(socket);
    let t0 = Instant::now();
    while t0.elapsed() < DAEMON_START_TIMEOUT {
        if c.ping().await {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            bail!(
                "ketchd exited with {st} while starting; see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!(
        "ketchd did not answer on {} within {:?}; see {}",
        socket.display(),
        DAEMON_START_TIMEOUT,
        log_path.display()
    )
}
