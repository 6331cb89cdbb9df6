//! Volume endpoints.

use super::filters::{self, Filters};
use super::http::{empty, error, json, read_json, Query, Resp};
use super::MAX_JSON_BODY;
use crate::engine::{Engine, EngineError};
use hyper::body::Incoming;
use hyper::StatusCode;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateRequest {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

pub async fn create(engine: &Arc<Engine>, body: Incoming) -> Resp {
    let req: CreateRequest = match read_json(body, MAX_JSON_BODY).await {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    if !req.driver.is_empty() && req.driver != "local" {
        return error(&EngineError::InvalidArgument(format!(
            "volume driver {:?} is not supported: only local",
            req.driver
        )));
    }
    if req.driver_opts.as_ref().is_some_and(|o| !o.is_empty()) {
        return error(&EngineError::InvalidArgument(
            "volume driver options are not supported".into(),
        ));
    }
    let name = Some(req.name.as_str()).filter(|n| !n.is_empty());
    match engine
        .volume_create(name, req.labels.unwrap_or_default(), false)
        .await
    {
        Ok(v) => json(StatusCode::CREATED, &v),
        Err(e) => error(&e),
    }
}

/// `GET /volumes?filters=`: `name` (a part of it), `driver`, `label` and
/// `dangling` (used by no container).
pub fn list(engine: &Engine, q: &Query) -> Resp {
    let f = match Filters::parse(q.get("filters"), filters::VOLUMES).and_then(|f| {
        f.only("dangling", &["true", "false", "1", "0"])?;
        Ok(f)
    }) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    let volumes: Vec<_> = engine
        .volumes()
        .list()
        .into_iter()
        .filter(|v| {
            f.pass(|k, w| match k {
                "name" => v.name.contains(w),
                "driver" => v.driver == w,
                "label" => filters::label(|k| v.labels.get(k).map(String::as_str), w),
                "dangling" => (w == "true" || w == "1") != engine.volume_in_use(&v.name),
                _ => false,
            })
        })
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({"Volumes": volumes, "Warnings": []}),
    )
}

pub fn inspect(engine: &Engine, name: &str) -> Resp {
    match engine.volumes().get(name) {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

pub async fn remove(engine: &Arc<Engine>, name: &str, q: &Query) -> Resp {
    match engine.volume_remove(name, q.flag("force")).await {
        Ok(()) => empty(StatusCode::NO_CONTENT),
        Err(e) => error(&e),
    }
}

/// `POST /volumes/prune?filters={"all":["true"]}`.
pub async fn prune(engine: &Arc<Engine>, q: &Query) -> Resp {
    let (f, keep) = match filters::prune(q.get("filters"), filters::PRUNE_VOLUMES) {
        Ok(f) => f,
        Err(e) => return error(&e),
    };
    if let Err(e) = f.only("all", &["true", "false", "1", "0"]) {
        return error(&e);
    }
    let all = f
        .get("all")
        .is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
    match engine.volume_prune(all, keep).await {
        Ok((gone, freed)) => json(
            StatusCode::OK,
            &serde_json::json!({"VolumesDeleted": gone, "SpaceReclaimed": freed}),
        ),
        Err(e) => error(&e),
    }
}
