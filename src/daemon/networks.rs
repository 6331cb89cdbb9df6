//! Network endpoints: `GET /networks`, `POST /networks/create`,
//! `GET|DELETE /networks/{id}`, `POST /networks/{id}/connect|disconnect`
//! and `POST /networks/prune`.

use super::filters::{self, Filters};
use super::http::{checked_body, empty, error, json, read_json, Query, Resp};
use super::MAX_JSON_BODY;
use crate::engine::networks::CreateNetwork;
use crate::engine::{Engine, EngineError};
use hyper::body::Incoming;
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: String,
    config: Option<Vec<IpamConfig>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: String,
    gateway: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateRequest {
    name: String,
    driver: String,
    internal: bool,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

fn create_request(req: CreateRequest) -> Result<CreateNetwork, EngineError> {
    let bad = |m: String| EngineError::InvalidArgument(format!("network {}: {m}", req.name));
    if req.enable_ipv6 == Some(true) {
        return Err(bad("IPv6 networks are not supported".into()));
    }
    let ipam = req.ipam.unwrap_or_default();
    if !ipam.driver.is_empty() && ipam.driver != "default" {
        return Err(bad(format!(
            "IPAM driver {:?} is not supported: only default",
            ipam.driver
        )));
    }
    let configs = ipam.config.unwrap_or_default();
    if configs.len() > 1 {
        return Err(bad(
            "only one IPAM config (one IPv4 subnet) is supported".into()
        ));
    }
    let cfg = configs.into_iter().next().unwrap_or_default();
    if !cfg.ip_range.is_empty() {
        return Err(bad("IPAM ip ranges are not supported".into()));
    }
    if cfg.subnet.is_empty() && !cfg.gateway.is_empty() {
        return Err(bad("a gateway needs a subnet".into()));
    }
    let opt = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(CreateNetwork {
        name: req.name.clone(),
        driver: req.driver,
        subnet: opt(cfg.subnet),
        gateway: opt(cfg.gateway),
        internal: req.internal,
        labels: req.labels.unwrap_or_default(),
        options: req.options.unwrap_or_default(),
    })
}

pub async fn create(engine: &Arc<Engine>, body: Incoming) -> Resp {
    let req: CreateRequest = match read_json(body, MAX_JSON_BODY).await {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let req = match create_request(req) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    match engine.network_create(req).await {
        Ok(n) => json(
            StatusCode::CREATED,
            &serde_json::json!({"Id": n.id, "Warning": ""}),
        ),
        Err(e) => error(&e),
    }
}

/// Does a network (as viewed) pass Docker's list filters?
fn matches(n: &serde_json::Value, filters: &Filters) -> bool {
    let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
    filters.pass(|k, w| match k {
        "name" => s("Name").contains(w),
        "id" => s("Id").starts_with(w),
        "driver" => s("Driver") == w,
        "scope" => w == "local",
        "type" => {
            let builtin = matches!(s("Name").as_str(), "bridge" | "host" | "none");
            (w == "builtin") == builtin
        }
        "dangling" => {
            let empty = n["Containers"].as_object().is_none_or(|c| c.is_empty());
            (w == "true" || w == "1") == empty
        }
        "label" => filters::label(|k| n["Labels"][k].as_str(), w),
        _ => false,
    })
}

pub fn list(engine: &Engine, q: &Query) -> Resp {
    let filters = match Filters::parse(q.get("filters"), filters::NETWORKS).and_then(|f| {
        f.only("type", &["custom", "builtin"])?;
        f.only("dangling", &["true", "false", "1", "0"])?;
        Ok(f)
    }) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let all: Vec<serde_json::Value> = engine
        .network_list()
        .into_iter()
        .filter(|n| matches(n, &filters))
        .collect();
    json(StatusCode::OK, &all)
}

pub fn inspect(engine: &Engine, id: &str) -> Resp {
    match engine.network_inspect(id) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

pub async fn remove(engine: &Arc<Engine>, id: &str) -> Resp {
    match engine.network_remove(id).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error(&e),
    }
}

pub async fn prune(engine: &Arc<Engine>, q: &Query) -> Resp {
    let keep = match super::filters::prune(q.get("filters"), super::filters::PRUNE_NETWORKS) {
        Ok((_, keep)) => keep,
        Err(e) => return error(&e),
    };
    match engine.network_prune(keep).await {
        Ok(gone) => json(
            StatusCode::OK,
            &serde_json::json!({"NetworksDeleted": gone}),
        ),
        Err(e) => error(&e),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectRequest {
    container: String,
    /// `EndpointSettings`, checked by `fields::check_connect`.
    endpoint_config: Option<serde_json::Value>,
    force: bool,
}

pub async fn connect(engine: &Arc<Engine>, id: &str, body: Incoming) -> Resp {
    let req: ConnectRequest = match checked_body(body, super::fields::check_connect).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    match engine
        .network_connect(id, &req.container, req.endpoint_config.as_ref())
        .await
    {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => error(&e),
    }
}

pub async fn disconnect(engine: &Arc<Engine>, id: &str, body: Incoming) -> Resp {
    let req: ConnectRequest = match read_json(body, MAX_JSON_BODY).await {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    match engine
        .network_disconnect(id, &req.container, req.force)
        .await
    {
        Ok(()) => empty(StatusCode::OK),
        Err(e) => error(&e),
    }
}
