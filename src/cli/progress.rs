//! Rendering the JSON progress lines of pull and push: indicatif bars on a
//! terminal, plain lines otherwise.

use crate::api::types::JsonMessage;
use crate::client::JsonLines;
use hyper::body::Incoming;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;

/// Show a progress stream; fails with the stream's error, if it ends in one.
pub async fn show(body: Incoming, quiet: bool) -> anyhow::Result<Vec<JsonMessage>> {
    let tty = !quiet && std::io::stdout().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stdout()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style =
        ProgressStyle::with_template("{prefix}: {msg:<12} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut seen = Vec::new();
    let mut lines = JsonLines::new(body);
    while let Some(m) = lines.next::<JsonMessage>().await {
        let m = m?;
        if let Some(e) = &m.error {
            multi.clear().ok();
            anyhow::bail!("{e}");
        }
        let status = m.status.clone().unwrap_or_default();
        match (&m.id, &m.progress_detail, tty) {
            (Some(id), Some(p), true) => {
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let b = multi.add(ProgressBar::new(p.total));
                    b.set_style(style.clone());
                    b.set_prefix(id.clone());
                    b
                });
                bar.set_length(p.total);
                bar.set_position(p.current);
                bar.set_message(status);
            }
            (Some(id), None, true) => match bars.get(id) {
                Some(b) => b.finish_with_message(status),
                None => {
                    multi.println(format!("{id}: {status}")).ok();
                }
            },
            (Some(_), Some(_), false) => {}
            (Some(id), None, false) if !quiet => println!("{id}: {status}"),
            (None, _, _) if !quiet && !status.is_empty() => {
                if tty {
                    multi.println(&status).ok();
                } else {
                    println!("{status}");
                }
            }
            _ => {}
        }
        seen.push(m);
    }
    Ok(seen)
}
