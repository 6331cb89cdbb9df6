//! `inspect [--type] [-f FORMAT] NAME...`: containers first, then images.

use super::enc;
use crate::cli::output::template;
use crate::client::Client;
use hyper::StatusCode;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Format output using a Go-template subset, e.g. '{{.State.Status}}'
    #[arg(short, long)]
    pub format: Option<String>,
    /// Only inspect objects of this type (container or image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in &a.names {
        let mut found = None;
        if a.kind.as_deref() != Some("image") {
            match c
                .get_json::<serde_json::Value>(&format!("/containers/{}/json", enc(n)))
                .await
            {
                Ok(v) => found = Some(v),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if found.is_none() && a.kind.as_deref() != Some("container") {
            match c
                .get_json::<serde_json::Value>(&format!("/images/{n}/json"))
                .await
            {
                Ok(v) => found = Some(v),
                Err(e)
                    if e.status() == Some(StatusCode::NOT_FOUND)
                        || e.status() == Some(StatusCode::BAD_REQUEST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    match &a.format {
        Some(f) => {
            for v in &out {
                println!("{}", template(f, v)?);
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            serde::Serialize::serialize(&out, &mut ser)?;
            println!("{}", String::from_utf8_lossy(&buf));
        }
    }
    Ok(code)
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    pub container: String,
}

/// `diff`: `A`dded, `C`hanged and `D`eleted paths, as Docker prints them.
pub async fn diff(c: &Client, a: DiffArgs) -> anyhow::Result<i32> {
    let changes: Vec<crate::api::types::ContainerChange> = c
        .get_json(&format!("/containers/{}/changes", enc(&a.container)))
        .await?;
    for ch in changes {
        let k = match ch.kind {
            0 => 'C',
            1 => 'A',
            _ => 'D',
        };
        println!("{k} {}", ch.path);
    }
    Ok(0)
}
