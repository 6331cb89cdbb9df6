//! `logs [-f] [--tail N] [-t] [--since T] [--until T]`.

use super::enc;
use crate::api::stream::{Decoder, StdStream};
use crate::api::types::ContainerInspect;
use crate::client::{next_chunk, Client};
use hyper::Method;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Follow log output
    #[arg(short, long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short, long)]
    pub timestamps: bool,
    /// Show logs since a timestamp (RFC 3339 or unix seconds) or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative time
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

/// `42m`, `10s`, `1h` ago, or an absolute time, as unix seconds.
fn time_arg(s: &str) -> anyhow::Result<String> {
    let units = [("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    for (u, mult) in units {
        if let Some(n) = s.strip_suffix(u) {
            if let Ok(v) = n.parse::<f64>() {
                let t = chrono::Utc::now().timestamp_millis() as f64 / 1000.0 - v * mult;
                return Ok(format!("{t:.3}"));
            }
        }
    }
    if s.parse::<f64>().is_ok() {
        return Ok(s.to_string());
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| {
        anyhow::anyhow!("invalid time {s:?}: use RFC 3339, unix seconds or a duration like 10m")
    })?;
    Ok(format!(
        "{}.{:09}",
        t.timestamp(),
        t.timestamp_subsec_nanos()
    ))
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let info: ContainerInspect = c
        .get_json(&format!("/containers/{}/json", enc(&a.container)))
        .await?;
    let mut q = format!("stdout=1&stderr=1&tail={}", enc(&a.tail));
    if a.follow {
        q.push_str("&follow=1");
    }
    if a.timestamps {
        q.push_str("&timestamps=1");
    }
    if let Some(s) = &a.since {
        q.push_str(&format!("&since={}", time_arg(s)?));
    }
    if let Some(u) = &a.until {
        q.push_str(&format!("&until={}", time_arg(u)?));
    }
    let resp = c
        .send(
            Method::GET,
            &format!("/containers/{}/logs?{q}", info.id),
            bytes::Bytes::new(),
            None,
        )
        .await?;
    let mut body = resp.into_body();
    let mut dec = Decoder::default();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk = chunk?;
        if info.config.tty {
            out.write_all(&chunk)?;
            out.flush()?;
            continue;
        }
        dec.push(&chunk);
        while let Some((s, data)) = dec.next_frame()? {
            match s {
                StdStream::Stderr => err.write_all(&data)?,
                _ => out.write_all(&data)?,
            }
        }
        out.flush()?;
        err.flush()?;
    }
    Ok(0)
}
