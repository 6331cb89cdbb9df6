//! `start [-a] [-i]`, and the attach/wait/start sequence `run` shares.

use super::enc;
use crate::api::stream::{Decoder, StdStream};
use crate::api::types::{ContainerInspect, WaitResponse};
use crate::client::Client;
use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short, long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short, long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    pub container: String,
}

/// `attach`: follow a running container's output (and feed its stdin)
/// until it exits; its exit code becomes ours.
pub async fn attach(c: &Client, a: AttachArgs) -> anyhow::Result<i32> {
    let info: ContainerInspect = c
        .get_json(&format!("/containers/{}/json", enc(&a.container)))
        .await?;
    if !info.state.running {
        anyhow::bail!("You cannot attach to a stopped container, start it first");
    }
    if info.state.paused {
        anyhow::bail!("You cannot attach to a paused container, unpause it first");
    }
    let stdin = !a.no_stdin && info.config.open_stdin;
    attach_and_start(c, &info.id, stdin, info.config.tty, false, "next-exit").await
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            anyhow::bail!("you cannot start and attach multiple containers at once");
        }
        let info: ContainerInspect = c
            .get_json(&format!("/containers/{}/json", enc(&a.containers[0])))
            .await?;
        return attach_and_start(
            c,
            &info.id,
            a.interactive,
            info.config.tty,
            true,
            "next-exit",
        )
        .await;
    }
    let mut code = 0;
    for n in &a.containers {
        match c.post(&format!("/containers/{}/start", enc(n))).await {
            Ok(_) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

/// Attach, register a wait, start (optionally), stream output until the
/// container's run ends, and return its exit code.
pub async fn attach_and_start(
    c: &Client,
    id: &str,
    stdin: bool,
    tty: bool,
    start: bool,
    condition: &str,
) -> anyhow::Result<i32> {
    let q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
        if stdin { "&stdin=1" } else { "" }
    );
    // The attach and the wait are both registered (their headers received)
    // before start is sent; they are asked for together.
    let wait_path = format!("/containers/{id}/wait?condition={condition}");
    let (io, wait_resp) = tokio::try_join!(
        c.upgrade(&q, None),
        c.send(hyper::Method::POST, &wait_path, bytes::Bytes::new(), None)
    )?;
    let (mut rd, wr) = tokio::io::split(io);
    let waiter = tokio::spawn(crate::client::decode::<WaitResponse>(wait_resp));
    if stdin {
        tokio::spawn(send_stdin(wr));
    } else {
        drop(wr);
    }
    if start {
        c.post(&format!("/containers/{id}/start")).await?;
    }
    let (raw, sizer) = if tty {
        (
            stdin.then(crate::cli::terminal::RawMode::enter).flatten(),
            crate::cli::terminal::follow_size(c, format!("/containers/{id}/resize")),
        )
    } else {
        (None, None)
    };
    let copied = copy_output(&mut rd, tty).await;
    if let Some(s) = sizer {
        s.abort();
    }
    drop(raw);
    copied?;
    // A trap's message reached stderr through the log stream already.
    let w = waiter.await.context("wait task")??;
    Ok(w.status_code as i32)
}

/// Copy an attached stream to stdout and stderr until it ends: raw with a
/// TTY, else demultiplexed from its 8-byte frames. The CLI's own stdout
/// and stderr are written directly: tokio's hand each write to a blocking
/// thread, made on the first one, which a short run waits for.
pub async fn copy_output(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    tty: bool,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = rd.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        if tty {
            let mut o = out.lock();
            o.write_all(&buf[..n])?;
            o.flush()?;
            continue;
        }
        dec.push(&buf[..n]);
        while let Some((s, data)) = dec.next_frame()? {
            match s {
                StdStream::Stderr => {
                    let mut e = err.lock();
                    e.write_all(&data)?;
                    e.flush()?;
                }
                _ => {
                    let mut o = out.lock();
                    o.write_all(&data)?;
                    o.flush()?;
                }
            }
        }
    }
    Ok(())
}

/// Copy the CLI's stdin to an attached stream, then close its write side
/// (kept alive, closed, until the reader is done).
pub async fn send_stdin(mut wr: impl tokio::io::AsyncWrite + Unpin) {
    let mut input = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if wr.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
    std::future::pending::<()>().await;
}
