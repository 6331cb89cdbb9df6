//! `cp CONTAINER:SRC DEST` and `cp SRC CONTAINER:DEST`: copy files out of
//! and into a running Linux container, as tar archives through
//! `/containers/{id}/archive`. `-` as the local side is a tar on
//! stdout/stdin.

use super::enc;
use crate::client::Client;
use crate::confine::archive::Target;
use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// CONTAINER:PATH or a local path (- for a tar on stdin)
    pub src: String,
    /// CONTAINER:PATH or a local path (- for a tar on stdout)
    pub dest: String,
}

/// `name:/path` -> (name, path). A local path with a colon must start
/// with `/` or `.`, as with Docker.
fn remote(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    s.split_once(':').filter(|(c, _)| !c.is_empty())
}

fn base_name(p: &str) -> String {
    Path::new(p.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parent(p: &str) -> String {
    let p = p.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((d, _)) => d.to_string(),
    }
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    match (remote(&a.src), remote(&a.dest)) {
        (Some((name, path)), None) => copy_out(c, name, path, &a.dest).await,
        (None, Some((name, path))) => copy_in(c, &a.src, name, path).await,
        (Some(_), Some(_)) => bail!("copying between containers is not supported"),
        (None, None) => bail!("must specify at least one container source"),
    }
}

async fn copy_out(c: &Client, name: &str, path: &str, dest: &str) -> anyhow::Result<i32> {
    let r = c
        .send(
            Method::GET,
            &format!("/containers/{}/archive?path={}", enc(name), enc(path)),
            Bytes::new(),
            None,
        )
        .await?;
    let tar = r.into_body().collect().await?.to_bytes();
    if dest == "-" {
        std::io::stdout().write_all(&tar)?;
        return Ok(0);
    }
    let dest = PathBuf::from(dest);
    if dest.is_dir() {
        return unpack(&tar, &dest, Target::Existing).map(|()| 0);
    }
    // Not an existing directory: the copied entry takes the name `dest`.
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!("{}: no such directory", parent.display());
    }
    let tmp = parent.join(format!(".ketch-cp-{}", rand::random::<u32>()));
    std::fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = unpack(&tar, &tmp, Target::Fresh).and_then(|()| {
        let top = tmp.join(base_name(path));
        std::fs::rename(&top, &dest).with_context(|| format!("writing {}", dest.display()))
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| 0)
}

/// Extract what a container sent under the `cp` policy: whiteouts are
/// plain names, nothing is written through a symlink, and an archive
/// refused for an existing directory writes nothing into it.
#[cfg(target_os = "linux")]
fn unpack(tar: &[u8], into: &Path, target: Target) -> anyhow::Result<()> {
    use crate::confine::archive::{self, Kind, Limits, Policy};
    use crate::confine::Root;
    let root = Root::open(into)?;
    let policy = Policy {
        kind: Kind::Copy,
        limits: Limits::daemon(),
    };
    archive::extract(
        &root,
        &mut || Ok(Box::new(tar) as Box<dyn std::io::Read>),
        &policy,
        target,
    )
    .map(|_| ())
    .with_context(|| format!("extracting into {}", into.display()))
}

/// Where there is no [`crate::confine::Root`] to extract beneath, a copy
/// out of a container goes to stdout only.
#[cfg(not(target_os = "linux"))]
fn unpack(_tar: &[u8], into: &Path, _target: Target) -> anyhow::Result<()> {
    bail!(
        "extracting into {} needs a Linux host: use - for a tar on stdout",
        into.display()
    )
}

async fn copy_in(c: &Client, src: &str, name: &str, path: &str) -> anyhow::Result<i32> {
    // Into an existing directory keeps the source's name; otherwise the
    // copy is named by the destination.
    let head = c
        .send(
            Method::HEAD,
            &format!("/containers/{}/archive?path={}", enc(name), enc(path)),
            Bytes::new(),
            None,
        )
        .await;
    let is_dir = head.as_ref().ok().and_then(|r| {
        let h = r.headers().get("x-docker-container-path-stat")?;
        use base64::Engine as _;
        let json = base64::engine::general_purpose::STANDARD
            .decode(h.as_bytes())
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&json).ok()?;
        Some(v["mode"].as_u64()? & (1 << 31) != 0)
    });
    let (target_dir, entry_name) = match is_dir {
        Some(true) => (path.to_string(), None),
        _ => (parent(path), Some(base_name(path))),
    };
    let data = if src == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
        v
    } else {
        let p = Path::new(src);
        let meta = std::fs::symlink_metadata(p).with_context(|| src.to_string())?;
        let name = entry_name.unwrap_or_else(|| base_name(src));
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        if meta.is_dir() {
            b.append_dir_all(&name, p)?;
        } else {
            b.append_path_with_name(p, &name)?;
        }
        b.into_inner()?
    };
    c.send(
        Method::PUT,
        &format!(
            "/containers/{}/archive?path={}",
            enc(name),
            enc(&target_dir)
        ),
        Bytes::from(data),
        Some("application/x-tar"),
    )
    .await?;
    Ok(0)
}
