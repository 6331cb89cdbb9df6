//! `save` and `load`.

use crate::api::types::JsonMessage;
use crate::client::{next_chunk, Client};
use anyhow::{bail, Context};
use http_body_util::BodyExt;
use std::io::{IsTerminal, Write};

#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn save(c: &Client, a: SaveArgs) -> anyhow::Result<i32> {
    let q: Vec<String> = a
        .images
        .iter()
        .map(|n| format!("names={}", super::enc(n)))
        .collect();
    download(
        c,
        &format!("/images/get?{}", q.join("&")),
        a.output.as_deref(),
    )
    .await
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    pub container: String,
}

/// `export`: a container's root filesystem as a tar.
pub async fn export(c: &Client, a: ExportArgs) -> anyhow::Result<i32> {
    let path = format!("/containers/{}/export", super::enc(&a.container));
    download(c, &path, a.output.as_deref()).await
}

/// GET `path` into `output` (written beside it and renamed into place
/// once whole, so a failure leaves no half-written file) or stdout (never
/// a terminal).
async fn download(c: &Client, path: &str, output: Option<&str>) -> anyhow::Result<i32> {
    if output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c
        .send(hyper::Method::GET, path, bytes::Bytes::new(), None)
        .await?;
    let mut body = resp.into_body();
    let Some(p) = output else {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = next_chunk(&mut body).await {
            out.write_all(&chunk?)?;
        }
        out.flush()?;
        return Ok(0);
    };
    let part = format!("{p}.part-{:08x}", rand::random::<u32>());
    let written = async {
        let mut out = std::fs::File::create(&part).with_context(|| format!("creating {part}"))?;
        while let Some(chunk) = next_chunk(&mut body).await {
            out.write_all(&chunk?)?;
        }
        out.sync_all()?;
        std::fs::rename(&part, p).with_context(|| format!("writing {p}"))?;
        anyhow::Ok(())
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&part);
    }
    written.map(|()| 0)
}

pub async fn load(c: &Client, a: LoadArgs) -> anyhow::Result<i32> {
    // The archive is streamed: it may be larger than memory.
    let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match &a.input {
        Some(p) => Box::new(
            tokio::fs::File::open(p)
                .await
                .with_context(|| format!("opening {p}"))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                bail!("requested load from stdin, but stdin is empty");
            }
            Box::new(tokio::io::stdin())
        }
    };
    for line in load_archive(c, input).await? {
        if !a.quiet {
            print!("{line}");
        }
    }
    Ok(0)
}

/// `POST /images/load`; returns the daemon's progress lines, failing on an
/// error line.
pub async fn load_archive(
    c: &Client,
    input: impl tokio::io::AsyncRead + Send + Unpin + 'static,
) -> anyhow::Result<Vec<String>> {
    let resp = c.upload("/images/load", input, "application/x-tar").await?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .to_bytes();
    let mut lines = Vec::new();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let m: JsonMessage = serde_json::from_slice(line)?;
        if let Some(e) = m.error {
            bail!("{e}");
        }
        lines.extend(m.stream);
    }
    Ok(lines)
}
