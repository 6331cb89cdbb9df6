//! `stats [--no-stream] [-a] [CONTAINER...]`: CPU, memory and, for function
//! containers, requests served, errors and latency.

use crate::api::types::{ContainerSummary, StatsResponse};
use crate::cli::output::{human_size, table};
use crate::client::{Client, JsonLines};
use anyhow::bail;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    pub containers: Vec<String>,
}

const HEADER: [&str; 9] = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "REQUESTS",
    "ERRORS",
    "P50",
    "P99",
];

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let names = if a.containers.is_empty() {
        let list: Vec<ContainerSummary> = c
            .get_json(&format!("/containers/json?all={}", a.all as u8))
            .await?;
        list.into_iter().map(|s| s.id).collect()
    } else {
        a.containers.clone()
    };
    if a.no_stream {
        // Each answer takes a sampling interval: ask for all at once.
        let paths: Vec<String> = names
            .iter()
            .map(|n| format!("/containers/{}/stats?stream=0", super::enc(n)))
            .collect();
        let all =
            futures_util::future::join_all(paths.iter().map(|p| c.get_json::<StatsResponse>(p)))
                .await;
        let mut rows = Vec::new();
        for s in all {
            rows.push(row(&s?));
        }
        print!("{}", table(&HEADER, &rows));
        return Ok(0);
    }
    if names.is_empty() {
        bail!("no running containers to show stats of");
    }
    // Stream: one reader per container, the table redrawn each second.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(usize, StatsResponse)>(16);
    for (i, n) in names.iter().enumerate() {
        let body = c
            .send(
                hyper::Method::GET,
                &format!("/containers/{}/stats?stream=1", super::enc(n)),
                bytes::Bytes::new(),
                None,
            )
            .await?
            .into_body();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = JsonLines::new(body);
            while let Some(Ok(s)) = lines.next::<StatsResponse>().await {
                if tx.send((i, s)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut rows: Vec<Vec<String>> = names.iter().map(|_| Vec::new()).collect();
    while let Some((i, s)) = rx.recv().await {
        rows[i] = row(&s);
        let shown: Vec<Vec<String>> = rows.iter().filter(|r| !r.is_empty()).cloned().collect();
        let mut out = std::io::stdout().lock();
        // Clear the screen and home the cursor, as `docker stats` does.
        write!(out, "\x1b[2J\x1b[H{}", table(&HEADER, &shown))?;
        out.flush()?;
    }
    Ok(0)
}

fn row(s: &StatsResponse) -> Vec<String> {
    let cpu_delta = s
        .cpu_stats
        .cpu_usage
        .total_usage
        .saturating_sub(s.precpu_stats.cpu_usage.total_usage);
    let sys_delta = s
        .cpu_stats
        .system_cpu_usage
        .unwrap_or(0)
        .saturating_sub(s.precpu_stats.system_cpu_usage.unwrap_or(0));
    let cpus = s.cpu_stats.online_cpus.unwrap_or(1) as f64;
    let cpu = if sys_delta > 0 {
        cpu_delta as f64 / sys_delta as f64 * cpus * 100.0
    } else {
        0.0
    };
    let used = s.memory_stats.usage.unwrap_or(0);
    let limit = s.memory_stats.limit.unwrap_or(0);
    let mem_pct = if limit > 0 {
        used as f64 / limit as f64 * 100.0
    } else {
        0.0
    };
    let f = s.function_stats.as_ref();
    let ms = |us: u64| format!("{:.1}ms", us as f64 / 1000.0);
    vec![
        s.id.chars().take(12).collect(),
        s.name.trim_start_matches('/').to_string(),
        format!("{cpu:.2}%"),
        format!("{} / {}", human_size(used as i64), human_size(limit as i64)),
        format!("{mem_pct:.2}%"),
        f.map_or("--".into(), |f| f.requests.to_string()),
        f.map_or("--".into(), |f| f.errors.to_string()),
        f.map_or("--".into(), |f| ms(f.latency_p50_us)),
        f.map_or("--".into(), |f| ms(f.latency_p99_us)),
    ]
}
