//! `start [-a] [-i]`, and the attach/wait/start sequence `run` shares.

use super::enc;
use crate::api::stream::{Decoder, StdStream, EXIT_STREAM};
use crate::api::types::{ContainerInspect, WaitResponse};
use crate::client::{Client, ClientError};
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
    /// The keys that detach from a terminal (default ctrl-p,ctrl-q)
    #[arg(long)]
    pub detach_keys: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Do not attach STDIN
    #[arg(long)]
    pub no_stdin: bool,
    /// The keys that detach from a terminal (default ctrl-p,ctrl-q)
    #[arg(long)]
    pub detach_keys: Option<String>,
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
    let attach = Attach {
        stdin,
        tty: info.config.tty,
        detach_keys: a.detach_keys,
    };
    attach_and_start(c, &info.id, attach, false, "next-exit").await
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            anyhow::bail!("you cannot start and attach multiple containers at once");
        }
        let info: ContainerInspect = c
            .get_json(&format!("/containers/{}/json", enc(&a.containers[0])))
            .await?;
        let attach = Attach {
            stdin: a.interactive,
            tty: info.config.tty,
            detach_keys: a.detach_keys,
        };
        return attach_and_start(c, &info.id, attach, true, "next-exit").await;
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

/// What an attach takes of a container.
pub struct Attach {
    pub stdin: bool,
    pub tty: bool,
    /// `--detach-keys` (ketchd's default, Docker's, if `None`).
    pub detach_keys: Option<String>,
}

/// Attach, register a wait, start (optionally), stream output until the
/// container's run ends (or the detach keys end the attach), and return
/// its exit code (0 when detached).
pub async fn attach_and_start(
    c: &Client,
    id: &str,
    attach: Attach,
    start: bool,
    condition: &str,
) -> anyhow::Result<i32> {
    let Attach {
        stdin,
        tty,
        detach_keys,
    } = attach;
    let mut q = format!(
        "/containers/{id}/attach?stream=1&stdout=1&stderr=1{}",
        if stdin { "&stdin=1" } else { "" }
    );
    if let Some(k) = &detach_keys {
        q.push_str(&format!("&detachKeys={}", enc(k)));
    }
    // The attach and the wait are both registered (their headers received)
    // before start is sent; they are asked for together.
    let wait_path = format!("/containers/{id}/wait?condition={condition}");
    let (io, wait_resp) = tokio::try_join!(
        c.upgrade(&q, None),
        c.send(hyper::Method::POST, &wait_path, bytes::Bytes::new(), None)
    )?;
    let (mut rd, wr) = tokio::io::split(io);
    let mut waiter = tokio::spawn(crate::client::decode::<WaitResponse>(wait_resp));
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
    if tty && stdin {
        // The output ended but no exit follows: the detach keys ended
        // the attach, and the container runs on.
        tokio::select! {
            w = &mut waiter => return Ok(w.context("wait task")??.status_code as i32),
            _ = tokio::time::sleep(std::time::Duration::from_millis(300)) => {}
        }
        let info: ContainerInspect = c.get_json(&format!("/containers/{id}/json")).await?;
        if info.state.running {
            waiter.abort();
            return Ok(0);
        }
    }
    // A trap's message reached stderr through the log stream already.
    let w = waiter.await.context("wait task")??;
    Ok(w.status_code as i32)
}

/// `ketch run` of a container with neither a terminal nor stdin, in one
/// request to ketchd (`POST /containers/run` with a create `body`): its
/// output, then its exit code. `None` when the daemon has no such endpoint
/// (another engine, an older ketchd), which has then made nothing: the
/// caller takes Docker's sequence of create, attach, wait and start.
pub async fn run_in_one_request(
    c: &Client,
    query: &str,
    body: bytes::Bytes,
) -> anyhow::Result<Option<i32>> {
    let path = format!("/containers/run{query}");
    let mut io = match c.upgrade_with(&path, Some(body)).await {
        Ok((_, io)) => io,
        Err(e) if no_such_route(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let exit = copy_frames(&mut io, false)
        .await?
        .context("ketchd ended the container's stream before its exit")?;
    let w: WaitResponse = serde_json::from_slice(&exit)
        .with_context(|| format!("the container's exit {:?}", String::from_utf8_lossy(&exit)))?;
    Ok(Some(w.status_code as i32))
}

/// Is `e` a daemon saying it has no such endpoint (dockerd and ketchd say
/// "page not found"), rather than an answer of the endpoint?
fn no_such_route(e: &ClientError) -> bool {
    match e {
        ClientError::Api { status, message } => {
            *status == hyper::StatusCode::METHOD_NOT_ALLOWED
                || (*status == hyper::StatusCode::NOT_FOUND && message.contains("page not found"))
        }
        _ => false,
    }
}

/// Copy an attached stream to stdout and stderr until it ends: raw with a
/// TTY, else demultiplexed from its 8-byte frames. The CLI's own stdout
/// and stderr are written directly: tokio's hand each write to a blocking
/// thread, made on the first one, which a short run waits for.
pub async fn copy_output(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    tty: bool,
) -> anyhow::Result<()> {
    copy_frames(rd, tty).await.map(drop)
}

/// [`copy_output`], giving the payload of the [`EXIT_STREAM`] frame that
/// ends a stream of `POST /containers/run`, if one came.
async fn copy_frames(
    rd: &mut (impl tokio::io::AsyncRead + Unpin),
    tty: bool,
) -> anyhow::Result<Option<bytes::Bytes>> {
    use std::io::Write as _;
    let (out, err) = (std::io::stdout(), std::io::stderr());
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut exit = None;
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
        while let Some((s, data)) = dec.next_raw()? {
            match s {
                EXIT_STREAM => exit = Some(data),
                s if s == StdStream::Stderr as u8 => {
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
    Ok(exit)
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::StatusCode;

    fn api(status: StatusCode, message: &str) -> ClientError {
        ClientError::Api {
            status,
            message: message.into(),
        }
    }

    /// `run` falls back to Docker's sequence only on a daemon without the
    /// endpoint, never on an answer of the endpoint, which may have made a
    /// container.
    #[test]
    fn only_a_missing_endpoint_sends_run_the_docker_way() {
        assert!(no_such_route(&api(StatusCode::NOT_FOUND, "page not found")));
        assert!(no_such_route(&api(
            StatusCode::NOT_FOUND,
            "page not found: POST /containers/run"
        )));
        assert!(no_such_route(&api(
            StatusCode::NOT_FOUND,
            "404 page not found"
        )));
        assert!(no_such_route(&api(StatusCode::METHOD_NOT_ALLOWED, "")));
        assert!(!no_such_route(&api(
            StatusCode::NOT_FOUND,
            "No such image: x"
        )));
        assert!(!no_such_route(&api(
            StatusCode::NOT_FOUND,
            "network n not found"
        )));
        assert!(!no_such_route(&api(
            StatusCode::BAD_REQUEST,
            "page not found"
        )));
        assert!(!no_such_route(&ClientError::Http("reset".into())));
    }
}
