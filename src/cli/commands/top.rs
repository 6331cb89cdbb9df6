//! `top CONTAINER`: the running processes of a Linux container.

use super::enc;
use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub container: String,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Top {
    titles: Vec<String>,
    processes: Vec<Vec<String>>,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let t: Top = c
        .get_json(&format!("/containers/{}/top", enc(&a.container)))
        .await?;
    let mut rows = vec![t.titles];
    rows.extend(t.processes);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
    Ok(0)
}
