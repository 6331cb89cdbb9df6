//! `ps [-a] [-q] [--format] [--filter]`.

use crate::api::types::{ContainerSummary, Port};
use crate::cli::output::{ago, table, template};
use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show all containers (default shows just running)
    #[arg(short, long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a Go-template subset, e.g. '{{.Names}}'
    #[arg(long)]
    pub format: Option<String>,
    /// Filter output based on conditions provided (key=value)
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid filter {f:?}: expected key=value"))?;
        filters
            .entry(k.to_string())
            .or_default()
            .push(v.to_string());
    }
    let mut path = format!("/containers/json?all={}", a.all as u8);
    if !filters.is_empty() {
        path.push_str(&format!(
            "&filters={}",
            super::enc(&serde_json::to_string(&filters)?)
        ));
    }
    let list: Vec<ContainerSummary> = c.get_json(&path).await?;
    let id = |s: &ContainerSummary| {
        if a.no_trunc {
            s.id.clone()
        } else {
            s.id[..12.min(s.id.len())].to_string()
        }
    };
    if a.quiet {
        for s in &list {
            println!("{}", id(s));
        }
        return Ok(0);
    }
    if let Some(f) = &a.format {
        let (tpl, header) = match f.strip_prefix("table ") {
            Some(t) => (t, true),
            None => (f.as_str(), false),
        };
        if header {
            let h = serde_json::json!({"ID":"CONTAINER ID","Image":"IMAGE","Command":"COMMAND","CreatedAt":"CREATED AT","RunningFor":"CREATED","Status":"STATUS","Ports":"PORTS","Names":"NAMES","State":"STATE","Labels":"LABELS","Mounts":"MOUNTS"});
            println!("{}", template(tpl, &h)?);
        }
        for s in &list {
            let v = serde_json::json!({
                "ID": id(s),
                "Image": s.image,
                "Command": format!("\"{}\"", s.command),
                "CreatedAt": chrono::DateTime::from_timestamp(s.created, 0).unwrap_or_default().format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
                "RunningFor": ago(s.created),
                "Status": s.status,
                "State": s.state,
                "Ports": ports_text(&s.ports),
                "Names": s.names.iter().map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(","),
                "Labels": s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "Mounts": s.mounts.iter().map(|m| m.destination.clone()).collect::<Vec<_>>().join(","),
            });
            println!("{}", template(tpl, &v)?);
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let mut cmd = format!("\"{}\"", s.command);
            if !a.no_trunc && cmd.chars().count() > 22 {
                cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
            }
            vec![
                id(s),
                s.image.clone(),
                cmd,
                ago(s.created),
                s.status.clone(),
                ports_text(&s.ports),
                s.names
                    .iter()
                    .map(|n| n.trim_start_matches('/'))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES"
            ],
            &rows
        )
    );
    Ok(0)
}

/// Docker's PORTS column: `0.0.0.0:8080->80/tcp, 443/tcp`.
fn ports_text(ports: &[Port]) -> String {
    ports
        .iter()
        .map(|p| match (&p.ip, p.public_port) {
            (Some(ip), Some(public)) => {
                let ip = if ip.contains(':') {
                    format!("[{ip}]")
                } else {
                    ip.clone()
                };
                format!("{ip}:{public}->{}/{}", p.private_port, p.kind)
            }
            _ => format!("{}/{}", p.private_port, p.kind),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
