//! `volume create|ls|inspect|rm|prune`.

use super::enc;
use crate::client::Client;
use std::collections::BTreeMap;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create a volume (a random name if none is given)
    Create {
        /// Set metadata on the volume (key=value)
        #[arg(short, long = "label")]
        label: Vec<String>,
        name: Option<String>,
    },
    /// List volumes
    #[command(alias = "list")]
    Ls {
        /// Only display volume names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a Go-template subset, e.g. '{{.Name}}'
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Do not fail when a volume does not exist
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused volumes (anonymous ones, or all with -a)
    Prune {
        /// Remove all unused volumes, not just anonymous ones
        #[arg(short, long)]
        all: bool,
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. 'label=<key>=<value>', 'label!=<key>')
        #[arg(long = "filter", value_name = "FILTER")]
        filter: Vec<String>,
    },
}

pub async fn run(c: &Client, cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Create { label, name } => {
            let labels: BTreeMap<String, String> = label
                .iter()
                .map(|l| {
                    let (k, v) = l.split_once('=').unwrap_or((l, ""));
                    (k.to_string(), v.to_string())
                })
                .collect();
            let body = serde_json::json!({"Name": name.unwrap_or_default(), "Labels": labels});
            let v: serde_json::Value = c.post_json("/volumes/create", &body).await?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(0)
        }
        Cmd::Ls { quiet } => {
            let v: serde_json::Value = c.get_json("/volumes").await?;
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            if !quiet {
                println!("{:<10}VOLUME NAME", "DRIVER");
            }
            for vol in vols {
                let name = vol["Name"].as_str().unwrap_or_default();
                if quiet {
                    println!("{name}");
                } else {
                    println!("{:<10}{name}", vol["Driver"].as_str().unwrap_or_default());
                }
            }
            Ok(0)
        }
        Cmd::Inspect { format, names } => {
            super::inspect_each(c, "/volumes", &names, format.as_deref()).await
        }
        Cmd::Rm { force, names } => {
            let mut code = 0;
            for n in names {
                let q = format!(
                    "/volumes/{}{}",
                    enc(&n),
                    if force { "?force=1" } else { "" }
                );
                match c.delete::<serde_json::Value>(&q).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Prune {
            all,
            force: _,
            filter,
        } => {
            let all: &[(&str, &str)] = if all { &[("all", "true")] } else { &[] };
            let filters = super::prune::filters(&filter, all)?;
            let v: serde_json::Value = c
                .post_json(
                    &format!("/volumes/prune?filters={filters}"),
                    &serde_json::json!({}),
                )
                .await?;
            let gone = v["VolumesDeleted"].as_array().cloned().unwrap_or_default();
            if !gone.is_empty() {
                println!("Deleted Volumes:");
                for g in gone {
                    println!("{}", g.as_str().unwrap_or_default());
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                crate::cli::output::human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0))
            );
            Ok(0)
        }
    }
}
