//! Response helpers and query parsing for the handlers.

use super::error::{request_status, status_of, RequestError};
use crate::api::types::ErrorResponse;
use crate::engine::EngineError;
use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::convert::Infallible;
use tokio::sync::mpsc;

pub type Body = UnsyncBoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into()).boxed_unsync()
}

pub fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    match serde_json::to_vec(v) {
        Ok(body) => raw_json(status, body),
        Err(e) => {
            tracing::error!("internal error: cannot encode a response: {e}");
            let mut r = Response::new(full(Bytes::new()));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

/// A response whose body is JSON already.
pub fn raw_json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn error_msg(status: StatusCode, message: impl Into<String>) -> Resp {
    json(
        status,
        &ErrorResponse {
            message: message.into(),
        },
    )
}

pub fn error(e: &EngineError) -> Resp {
    reply(status_of(e), e)
}

/// The answer to a request the daemon refuses itself.
pub fn refuse(e: &RequestError) -> Resp {
    match e {
        RequestError::Engine(e) => error(e),
        e => reply(request_status(e), e),
    }
}

fn reply(status: StatusCode, e: &dyn std::fmt::Display) -> Resp {
    if status == StatusCode::NOT_MODIFIED {
        return empty(status);
    }
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!("internal error: {e}");
    }
    error_msg(status, e.to_string())
}

/// A streamed response fed by the returned sender.
pub fn stream(content_type: &'static str) -> (mpsc::Sender<Bytes>, Resp) {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(s).boxed_unsync());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    (tx, r)
}

/// How long an upgraded stream waits before its first bytes. The Docker
/// SDK for Python (and docker-compose, built on it) reads a `101` answer through a buffered reader and the
/// stream after it from the socket beneath, so bytes that arrive with the
/// answer's headers are lost to it (an exec that fails at once loses its
/// message); for that client the stream begins a moment after the
/// headers. Others get it at once.
pub(super) fn upgrade_pause(headers: &hyper::HeaderMap) -> std::time::Duration {
    // The SDK names itself, or, inside docker-compose, is named after it.
    let python = headers
        .get(hyper::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("docker-sdk-python") || ua.contains(" docker-py/"));
    if python {
        std::time::Duration::from_millis(50)
    } else {
        std::time::Duration::ZERO
    }
}

/// `101 Switching Protocols` to a raw stream (`Upgrade: tcp`), as attach
/// and exec start answer.
pub fn switching_protocols(content_type: &'static str) -> Resp {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// Parsed query string.
pub struct Query(pub HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut m: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(q.unwrap_or("").as_bytes()) {
            m.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Query(m)
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(|v| v.last()).map(String::as_str)
    }

    pub fn all(&self, k: &str) -> Vec<String> {
        self.0.get(k).cloned().unwrap_or_default()
    }

    /// Docker's boolean query values: 1/true/True/yes are true.
    pub fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some(v) if !matches!(v, "" | "0" | "false" | "False" | "FALSE" | "no"))
    }

    pub fn int(&self, k: &str) -> Result<Option<i64>, EngineError> {
        match self.get(k).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| EngineError::InvalidArgument(format!("invalid value for {k}: {v:?}"))),
        }
    }
}

/// Read a JSON request body, answering 400 with the parse error.
pub async fn read_json<T: serde::de::DeserializeOwned + Default>(
    body: hyper::body::Incoming,
    limit: usize,
) -> Result<T, EngineError> {
    let bytes = read_body(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| EngineError::InvalidArgument(format!("invalid JSON in request body: {e}")))
}

pub async fn read_body(body: hyper::body::Incoming, limit: usize) -> Result<Bytes, EngineError> {
    let limited = http_body_util::Limited::new(body, limit);
    limited
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| EngineError::InvalidArgument(format!("cannot read request body: {e}")))
}

/// One JSON document and a newline, as Docker streams them.
pub fn json_line<T: serde::Serialize>(v: &T) -> Bytes {
    match serde_json::to_vec(v) {
        Ok(mut b) => {
            b.push(b'\n');
            Bytes::from(b)
        }
        Err(e) => {
            tracing::error!("internal error: cannot encode a stream line: {e}");
            Bytes::from(format!(
                "{}\n",
                serde_json::json!({ "error": e.to_string() })
            ))
        }
    }
}

/// A JSON body read, `check`ed as it came, then typed (an empty one is
/// the type's default).
pub(super) async fn checked_body<T: serde::de::DeserializeOwned + Default>(
    body: hyper::body::Incoming,
    check: fn(&serde_json::Value) -> Result<(), EngineError>,
) -> Result<T, Resp> {
    let raw: serde_json::Value = read_json(body, super::MAX_JSON_BODY)
        .await
        .map_err(|e| error(&e))?;
    if raw.is_null() {
        return Ok(T::default());
    }
    check(&raw).map_err(|e| error(&e))?;
    serde_json::from_value(raw).map_err(|e| {
        error(&EngineError::InvalidArgument(format!(
            "invalid JSON in request body: {e}"
        )))
    })
}
