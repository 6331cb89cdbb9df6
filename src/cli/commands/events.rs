//! `events [--since] [--until] [--filter k=v]`: the daemon's event stream,
//! one line per event, as Docker prints it.

use super::enc;
use crate::api::types::EventMessage;
use crate::client::{Client, JsonLines};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show events since this time (Unix seconds or RFC 3339)
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this time
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (type=, event=, container=, image=, label=)
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format each event with a Go template (e.g. '{{.Action}}', '{{json .}}')
    #[arg(long)]
    pub format: Option<String>,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let mut q = Vec::new();
    if let Some(s) = &a.since {
        q.push(format!("since={}", enc(s)));
    }
    if let Some(u) = &a.until {
        q.push(format!("until={}", enc(u)));
    }
    let mut filters: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("invalid filter {f:?}: expected key=value"))?;
        filters.entry(k.into()).or_default().push(v.into());
    }
    if !filters.is_empty() {
        q.push(format!(
            "filters={}",
            enc(&serde_json::to_string(&filters)?)
        ));
    }
    let path = format!("/events?{}", q.join("&"));
    let body = c
        .send(hyper::Method::GET, &path, bytes::Bytes::new(), None)
        .await?
        .into_body();
    let mut lines = JsonLines::new(body);
    while let Some(e) = lines.next::<EventMessage>().await {
        let e = e?;
        match &a.format {
            Some(tpl) => println!(
                "{}",
                crate::cli::output::template(tpl, &serde_json::to_value(&e)?)?
            ),
            None => println!("{}", format_event(&e)),
        }
    }
    Ok(0)
}

fn format_event(e: &EventMessage) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(e.time_nano)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let attrs: Vec<String> = e
        .actor
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "{t} {} {} {} ({})",
        e.kind,
        e.action,
        e.actor.id,
        attrs.join(", ")
    )
}
