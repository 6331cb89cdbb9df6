//! `build [-t TAG] [-f FILE] [--platform P] [--build-arg K=V] CONTEXT`.
//!
//! The context is sent as a tar (minus what `.dockerignore` excludes) to
//! `POST /build`, which streams JSON progress lines back.

use crate::api::types::JsonMessage;
use crate::client::{next_chunk, Client};
use crate::image::build::ignore::Ignore;
use anyhow::{bail, Context};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Name and optionally a tag (name:tag)
    #[arg(short, long = "tag")]
    pub tag: Vec<String>,
    /// Name of the Dockerfile (default: CONTEXT/Dockerfile)
    #[arg(short, long)]
    pub file: Option<String>,
    /// Set the target platform, e.g. wasi/wasm
    #[arg(long)]
    pub platform: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_arg: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short, long)]
    pub quiet: bool,
    pub context: String,
}

/// Tar `dir`, skipping ignored paths (the Dockerfile and .dockerignore are
/// always sent).
fn context_tar(dir: &Path, dockerfile: &str) -> anyhow::Result<Vec<u8>> {
    let ignore =
        Ignore::parse(&std::fs::read_to_string(dir.join(".dockerignore")).unwrap_or_default());
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    let enter = |r: &str| r == dockerfile || r == ".dockerignore" || !ignore.excluded(r);
    crate::image::build::walk_filtered(dir, "", &enter, &mut |r, p| {
        tar.append_path_with_name(p, r)
    })
    .with_context(|| format!("packing the build context {}", dir.display()))?;
    Ok(tar.into_inner()?)
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let dir = Path::new(&a.context);
    if !dir.is_dir() {
        bail!("unable to prepare context: path {:?} not found", a.context);
    }
    // A -f outside the context is sent inside it under a private name.
    let mut dockerfile = "Dockerfile".to_string();
    let mut extra: Option<Vec<u8>> = None;
    if let Some(f) = &a.file {
        let fp = Path::new(f);
        match fp.canonicalize().ok().and_then(|p| {
            p.strip_prefix(dir.canonicalize().ok()?)
                .ok()
                .map(|r| r.to_string_lossy().into_owned())
        }) {
            Some(rel) => dockerfile = rel,
            None => {
                extra = Some(std::fs::read(fp).with_context(|| format!("reading {f}"))?);
                dockerfile = ".ketch-dockerfile".into();
            }
        }
    }
    let mut data = context_tar(dir, &dockerfile)?;
    if let Some(df) = extra {
        let mut t = tar::Builder::new(Vec::new());
        let mut ar = tar::Archive::new(&data[..]);
        for e in ar.entries()? {
            let mut e = e?;
            let h = e.header().clone();
            let p = e.path()?.into_owned();
            t.append_data(&mut h.clone(), p, &mut e)?;
        }
        let mut h = tar::Header::new_gnu();
        h.set_size(df.len() as u64);
        h.set_mode(0o644);
        t.append_data(&mut h, &dockerfile, &df[..])?;
        data = t.into_inner()?;
    }
    let mut q = format!("dockerfile={}", super::enc(&dockerfile));
    for t in &a.tag {
        q.push_str(&format!("&t={}", super::enc(t)));
    }
    if let Some(p) = &a.platform {
        q.push_str(&format!("&platform={}", super::enc(p)));
    }
    if !a.build_arg.is_empty() {
        let mut m = serde_json::Map::new();
        for kv in &a.build_arg {
            match kv.split_once('=') {
                Some((k, v)) => m.insert(k.to_string(), v.into()),
                None => m.insert(
                    kv.clone(),
                    std::env::var(kv)
                        .map(Into::into)
                        .unwrap_or(serde_json::Value::Null),
                ),
            };
        }
        q.push_str(&format!(
            "&buildargs={}",
            super::enc(&serde_json::Value::Object(m).to_string())
        ));
    }
    let resp = c
        .send(
            hyper::Method::POST,
            &format!("/build?{q}"),
            data.into(),
            Some("application/x-tar"),
        )
        .await?;
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut id = None;
    while let Some(chunk) = next_chunk(&mut body).await {
        buf.extend_from_slice(&chunk?);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let m: JsonMessage = serde_json::from_slice(&line).with_context(|| {
                format!("bad build output line {:?}", String::from_utf8_lossy(&line))
            })?;
            if let Some(e) = m.error {
                eprintln!("ERROR: {e}");
                return Ok(1);
            }
            if let Some(s) = m.stream {
                if !a.quiet {
                    print!("{s}");
                }
            }
            if let Some(aux) = m.aux {
                id = aux.get("ID").and_then(|v| v.as_str()).map(str::to_string);
            }
        }
    }
    match id {
        Some(id) => {
            if a.quiet {
                println!("{id}");
            }
            Ok(0)
        }
        None => bail!("the build ended without an image id"),
    }
}
