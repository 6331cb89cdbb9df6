//! `network create|ls|inspect|rm|connect|disconnect|prune`.

use super::enc;
use crate::client::Client;
use std::collections::BTreeMap;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create a bridge network
    Create {
        /// Driver to manage the network (bridge)
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// Subnet in CIDR format (a.b.c.d/len)
        #[arg(long)]
        subnet: Option<String>,
        /// Gateway for the subnet
        #[arg(long)]
        gateway: Option<String>,
        /// Restrict external access to the network (no default route)
        #[arg(long)]
        internal: bool,
        /// Set metadata on the network (key=value)
        #[arg(long = "label")]
        label: Vec<String>,
        /// Set driver-specific options (key=value), e.g.
        /// com.docker.network.bridge.name=NAME; an existing host bridge of
        /// that name also needs io.ketch.network.bridge.adopt=true (ketch
        /// never deletes it)
        #[arg(short = 'o', long = "opt")]
        opt: Vec<String>,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only display network IDs
        #[arg(short, long)]
        quiet: bool,
        /// Do not truncate the output
        #[arg(long)]
        no_trunc: bool,
        /// Filter output (name=, id=, driver=, label=, type=custom|builtin)
        #[arg(short, long = "filter")]
        filter: Vec<String>,
        /// Format each network with a Go-style template ({{.ID}}, {{.Name}},
        /// {{.Driver}}, {{.Scope}}, {{.Internal}}, {{.Labels}})
        #[arg(long)]
        format: Option<String>,
    },
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a Go-template subset, e.g. '{{.Name}}'
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a Linux container to a network
    Connect {
        /// Add a network-scoped alias for the container
        #[arg(long = "alias")]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// Force the container to disconnect from the network
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all networks no running container is on
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. 'label=<key>=<value>', 'until=24h')
        #[arg(long = "filter", value_name = "FILTER")]
        filter: Vec<String>,
    },
}

fn labels(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub async fn run(c: &Client, cmd: Cmd) -> anyhow::Result<i32> {
    match cmd {
        Cmd::Create {
            driver,
            subnet,
            gateway,
            internal,
            label,
            opt,
            name,
        } => {
            let config: Vec<serde_json::Value> = subnet
                .map(|s| serde_json::json!({"Subnet": s, "Gateway": gateway.unwrap_or_default()}))
                .into_iter()
                .collect();
            let body = serde_json::json!({
                "Name": name,
                "Driver": driver,
                "Internal": internal,
                "IPAM": {"Driver": "default", "Config": config},
                "Labels": labels(&label),
                "Options": labels(&opt),
            });
            let v: serde_json::Value = c.post_json("/networks/create", &body).await?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            Ok(0)
        }
        Cmd::Ls {
            quiet,
            no_trunc,
            filter,
            format,
        } => {
            let mut filters: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for f in &filter {
                let (k, v) = f.split_once('=').unwrap_or((f, ""));
                filters.entry(k.into()).or_default().push(v.into());
            }
            let q = serde_json::to_string(&filters)?;
            let nets: Vec<serde_json::Value> = c
                .get_json(&format!("/networks?filters={}", enc(&q)))
                .await?;
            if !quiet && format.is_none() {
                println!("{:<14}{:<20}{:<10}SCOPE", "NETWORK ID", "NAME", "DRIVER");
            }
            for n in nets {
                let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
                let id = s("Id");
                let id = if no_trunc {
                    id
                } else {
                    id[..id.len().min(12)].to_string()
                };
                if let (Some(tpl), false) = (&format, quiet) {
                    let labels: Vec<String> = n["Labels"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect();
                    let row = serde_json::json!({
                        "ID": id, "Name": s("Name"), "Driver": s("Driver"), "Scope": s("Scope"),
                        "Internal": n["Internal"].as_bool().unwrap_or(false).to_string(),
                        "Labels": labels.join(","),
                    });
                    println!("{}", crate::cli::output::template(tpl, &row)?);
                } else if quiet {
                    println!("{id}");
                } else {
                    println!("{id:<14}{:<20}{:<10}{}", s("Name"), s("Driver"), s("Scope"));
                }
            }
            Ok(0)
        }
        Cmd::Inspect { format, names } => {
            super::inspect_each(c, "/networks", &names, format.as_deref()).await
        }
        Cmd::Rm { names } => {
            let mut code = 0;
            for n in names {
                match c
                    .delete::<serde_json::Value>(&format!("/networks/{}", enc(&n)))
                    .await
                {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        eprintln!("{e}");
                        code = 1;
                    }
                }
            }
            Ok(code)
        }
        Cmd::Connect {
            alias,
            network,
            container,
        } => {
            let body = serde_json::json!({
                "Container": container,
                "EndpointConfig": {"Aliases": alias},
            });
            c.post_body(&format!("/networks/{}/connect", enc(&network)), &body)
                .await?;
            Ok(0)
        }
        Cmd::Disconnect {
            force,
            network,
            container,
        } => {
            let body = serde_json::json!({"Container": container, "Force": force});
            c.post_body(&format!("/networks/{}/disconnect", enc(&network)), &body)
                .await?;
            Ok(0)
        }
        Cmd::Prune { force: _, filter } => {
            let path = format!(
                "/networks/prune?filters={}",
                super::prune::filters(&filter, &[])?
            );
            let v: serde_json::Value = c.post_json(&path, &serde_json::json!({})).await?;
            let gone = v["NetworksDeleted"].as_array().cloned().unwrap_or_default();
            if !gone.is_empty() {
                println!("Deleted Networks:");
                for g in gone {
                    println!("{}", g.as_str().unwrap_or_default());
                }
            }
            Ok(0)
        }
    }
}
