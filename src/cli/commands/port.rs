//! `port CONTAINER [PRIVATE_PORT[/PROTO]]`: the host addresses a
//! container's ports are published on, read from `inspect`.

use crate::api::types::ContainerInspect;
use crate::client::Client;
use crate::model::ports::{parse_port_key, port_key};
use anyhow::bail;

#[derive(clap::Args, Debug)]
pub struct Args {
    pub container: String,
    /// Only this container port (e.g. 80 or 80/tcp)
    pub port: Option<String>,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let info: ContainerInspect = c
        .get_json(&format!("/containers/{}/json", super::enc(&a.container)))
        .await?;
    let only = a
        .port
        .as_deref()
        .map(parse_port_key)
        .transpose()
        .map_err(anyhow::Error::msg)?
        .map(|(p, proto)| port_key(p, proto));
    let mut found = false;
    for (key, bindings) in &info.network_settings.ports {
        if only.as_ref().is_some_and(|o| o != key) {
            continue;
        }
        for b in bindings.iter().flatten() {
            found = true;
            let ip = if b.host_ip.contains(':') {
                format!("[{}]", b.host_ip)
            } else {
                b.host_ip.clone()
            };
            if only.is_some() {
                println!("{ip}:{}", b.host_port);
            } else {
                println!("{key} -> {ip}:{}", b.host_port);
            }
        }
    }
    if let (Some(o), false) = (&only, found) {
        bail!(
            "no public port '{o}' published for {}",
            a.container.trim_start_matches('/')
        );
    }
    Ok(0)
}
