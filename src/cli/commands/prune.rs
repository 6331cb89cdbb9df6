//! `image prune`, `container prune`, `system prune`.

use crate::cli::output::human_size;
use crate::client::Client;
use std::io::{BufRead, Write};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. 'label=<key>=<value>', 'label!=<key>', 'until=24h')
    #[arg(long = "filter", value_name = "FILTER")]
    pub filter: Vec<String>,
}

/// `--filter k=v` flags as the API's `filters`, with `extra` added.
pub(super) fn filters(flags: &[String], extra: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in flags {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid filter {f:?}: expected key=value"))?;
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    for (k, v) in extra {
        m.entry(k.to_string()).or_default().push(v.to_string());
    }
    Ok(super::enc(&serde_json::to_string(&m)?))
}

fn confirm(what: &str) -> anyhow::Result<bool> {
    print!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush()?;
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(matches!(s.trim(), "y" | "Y" | "yes"))
}

async fn images(c: &Client, all: bool, flags: &[String]) -> anyhow::Result<u64> {
    let dangling = if all { "false" } else { "true" };
    let v: serde_json::Value = c
        .post_json(
            &format!(
                "/images/prune?filters={}",
                filters(flags, &[("dangling", dangling)])?
            ),
            &serde_json::json!({}),
        )
        .await?;
    let items = v["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !items.is_empty() {
        println!("Deleted Images:");
        for i in items {
            if let Some(u) = i["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = i["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
    }
    Ok(v["SpaceReclaimed"].as_u64().unwrap_or(0))
}

async fn containers(c: &Client, flags: &[String]) -> anyhow::Result<u64> {
    let v: serde_json::Value = c
        .post_json(
            &format!("/containers/prune?filters={}", filters(flags, &[])?),
            &serde_json::json!({}),
        )
        .await?;
    let ids = v["ContainersDeleted"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !ids.is_empty() {
        println!("Deleted Containers:");
        for id in ids {
            println!("{}", id.as_str().unwrap_or_default());
        }
    }
    Ok(v["SpaceReclaimed"].as_u64().unwrap_or(0))
}

fn reclaimed(n: u64) {
    println!("Total reclaimed space: {}", human_size(n as i64));
}

pub async fn image(c: &Client, a: Args) -> anyhow::Result<i32> {
    let what = if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !a.force && !confirm(what)? {
        return Ok(0);
    }
    reclaimed(images(c, a.all, &a.filter).await?);
    Ok(0)
}

pub async fn container(c: &Client, force: bool, filter: &[String]) -> anyhow::Result<i32> {
    if !force && !confirm("all stopped containers")? {
        return Ok(0);
    }
    reclaimed(containers(c, filter).await?);
    Ok(0)
}

pub async fn system(c: &Client, a: Args) -> anyhow::Result<i32> {
    let images_what = if a.all {
        "all images without at least one container associated to them"
    } else {
        "all dangling images"
    };
    if !a.force
        && !confirm(&format!(
            "all stopped containers, {images_what} and unfinished downloads"
        ))?
    {
        return Ok(0);
    }
    let n = containers(c, &a.filter).await? + images(c, a.all, &a.filter).await?;
    reclaimed(n);
    Ok(0)
}
