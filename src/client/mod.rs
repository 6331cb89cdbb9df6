//! Engine API client over a Unix socket. One connection per request (cheap
//! on a local socket); attach uses an HTTP upgrade to a raw byte stream.

use crate::api::types::ErrorResponse;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to ketchd at {path}: {source}. Is the daemon running?")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("Error response from daemon: {message}")]
    Api { status: StatusCode, message: String },
    #[error("talking to ketchd: {0}")]
    Http(String),
    #[error("unexpected reply from ketchd: {0}")]
    Decode(String),
    #[error("cannot make the request: {0}")]
    Request(String),
}

/// A request body as JSON.
fn encode(body: &impl serde::Serialize) -> Result<Bytes, ClientError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ClientError::Request(e.to_string()))
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    socket: PathBuf,
}

const PREFIX: &str = "/v1.50";

impl Client {
    pub fn new(socket: &Path) -> Self {
        Client {
            socket: socket.to_path_buf(),
        }
    }

    async fn connect<B>(&self) -> Result<hyper::client::conn::http1::SendRequest<B>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| ClientError::Connect {
                path: self.socket.display().to_string(),
                source: e,
            })?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(send)
    }

    /// A request to the API at `path`, as ketch's CLI makes them.
    fn builder(method: Method, path: &str) -> hyper::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("{PREFIX}{path}"))
            .header("host", "api.moby.localhost")
            .header(
                "user-agent",
                concat!("ketch-cli/", env!("CARGO_PKG_VERSION")),
            )
    }

    fn request(
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let mut b = Self::builder(method, path);
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(Full::new(body))
            .map_err(|e| ClientError::Request(format!("{path}: {e}")))
    }

    /// POST with an `X-Registry-Auth` header (pull, push); returns the
    /// response for its progress stream.
    pub async fn post_with_auth(
        &self,
        path: &str,
        registry_auth: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.with_auth(Method::POST, path, registry_auth).await
    }

    /// A request with no body and an `X-Registry-Auth` header.
    pub async fn with_auth(
        &self,
        method: Method,
        path: &str,
        registry_auth: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        let mut req = Self::request(method, path, Bytes::new(), None)?;
        if let Some(a) = registry_auth {
            req.headers_mut().insert(
                "x-registry-auth",
                a.parse()
                    .map_err(|_| ClientError::Http("credentials are not a valid header".into()))?,
            );
        }
        self.exchange(req).await
    }

    /// POST `input` as the body, read and sent a chunk at a time (an
    /// archive may be larger than memory); non-2xx becomes
    /// [`ClientError::Api`].
    pub async fn upload(
        &self,
        path: &str,
        input: impl tokio::io::AsyncRead + Send + Unpin + 'static,
        content_type: &str,
    ) -> Result<Response<Incoming>, ClientError> {
        use hyper::body::Frame;
        const CHUNK: usize = 256 << 10;
        let chunks = futures_util::stream::unfold(input, |mut input| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = bytes::BytesMut::with_capacity(CHUNK);
            match input.read_buf(&mut buf).await {
                Ok(0) => None,
                Ok(_) => Some((Ok(Frame::data(buf.freeze())), input)),
                Err(e) => Some((Err(e), input)),
            }
        });
        let body = http_body_util::StreamBody::new(chunks);
        let req = Self::builder(Method::POST, path)
            .header("content-type", content_type)
            .body(body)
            .map_err(|e| ClientError::Request(format!("{path}: {e}")))?;
        self.exchange(req).await
    }

    /// Send `req` on a connection of its own; non-2xx (except 304) becomes
    /// [`ClientError::Api`].
    async fn exchange<B>(&self, req: Request<B>) -> Result<Response<Incoming>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut s = self.connect().await?;
        let resp = s
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        check(resp).await
    }

    /// Send a request; non-2xx (except 304) becomes [`ClientError::Api`].
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        content_type: Option<&str>,
    ) -> Result<Response<Incoming>, ClientError> {
        self.exchange(Self::request(method, path, body, content_type)?)
            .await
    }

    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let r = self.send(Method::GET, path, Bytes::new(), None).await?;
        decode(r).await
    }

    pub async fn post_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let data = encode(body)?;
        let r = self
            .send(Method::POST, path, data, Some("application/json"))
            .await?;
        decode(r).await
    }

    /// POST with no body, ignoring the reply body.
    pub async fn post(&self, path: &str) -> Result<StatusCode, ClientError> {
        let r = self.send(Method::POST, path, Bytes::new(), None).await?;
        Ok(discard(r).await)
    }

    /// POST a JSON body, ignoring the reply body.
    pub async fn post_body(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<StatusCode, ClientError> {
        let data = encode(body)?;
        let r = self
            .send(Method::POST, path, data, Some("application/json"))
            .await?;
        Ok(discard(r).await)
    }

    pub async fn delete<T: serde::de::DeserializeOwned + Default>(
        &self,
        path: &str,
    ) -> Result<T, ClientError> {
        let r = self.send(Method::DELETE, path, Bytes::new(), None).await?;
        if r.status() == StatusCode::NO_CONTENT {
            return Ok(T::default());
        }
        decode(r).await
    }

    pub async fn ping(&self) -> bool {
        self.send(Method::GET, "/_ping", Bytes::new(), None)
            .await
            .is_ok()
    }

    /// Upgrade `POST path` (with a JSON `body`, or none) to a raw stream
    /// (attach, exec start).
    pub async fn upgrade(
        &self,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<TokioIo<hyper::upgrade::Upgraded>, ClientError> {
        let data = body.map(encode).transpose()?;
        Ok(self.upgrade_with(path, data).await?.1)
    }

    /// Upgrade `POST path` with a JSON body already encoded (or none) to a
    /// raw stream; also gives the headers of the 101.
    pub async fn upgrade_with(
        &self,
        path: &str,
        json_body: Option<Bytes>,
    ) -> Result<(hyper::HeaderMap, TokioIo<hyper::upgrade::Upgraded>), ClientError> {
        let mut s = self.connect().await?;
        let (data, ctype) = match json_body {
            Some(b) => (b, Some("application/json")),
            None => (Bytes::new(), None),
        };
        let mut req = Self::request(Method::POST, path, data, ctype)?;
        req.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("Upgrade"),
        );
        req.headers_mut().insert(
            hyper::header::UPGRADE,
            hyper::header::HeaderValue::from_static("tcp"),
        );
        let resp = s
            .send_request(req)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let mut resp = check(resp).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ClientError::Decode(format!(
                "POST {path} answered {} instead of 101",
                resp.status()
            )));
        }
        let headers = std::mem::take(resp.headers_mut());
        let up = hyper::upgrade::on(resp)
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        Ok((headers, TokioIo::new(up)))
    }
}

async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    let st = resp.status();
    if st.is_success() || st == StatusCode::NOT_MODIFIED || st == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(resp);
    }
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let message = serde_json::from_slice::<ErrorResponse>(&body)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&body).trim().to_string());
    Err(ClientError::Api {
        status: st,
        message,
    })
}

/// Read a whole JSON response body.
/// The status of a reply whose body is not wanted (read to the end, so the
/// connection can be reused).
async fn discard(r: Response<Incoming>) -> StatusCode {
    let st = r.status();
    let _ = r.into_body().collect().await;
    st
}

pub async fn decode<T: serde::de::DeserializeOwned>(
    r: Response<Incoming>,
) -> Result<T, ClientError> {
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| {
        ClientError::Decode(format!(
            "{e}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}

/// Read a streamed body chunk by chunk.
/// Newline-delimited JSON from a streamed response body (progress, stats,
/// events).
pub struct JsonLines {
    body: Incoming,
    buf: Vec<u8>,
}

impl JsonLines {
    pub fn new(body: Incoming) -> Self {
        JsonLines {
            body,
            buf: Vec::new(),
        }
    }

    /// The next line that decodes as `T` (others are skipped), or `None`
    /// at the end of the stream.
    pub async fn next<T: serde::de::DeserializeOwned>(&mut self) -> Option<Result<T, ClientError>> {
        loop {
            while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if let Ok(v) = serde_json::from_slice(&line) {
                    return Some(Ok(v));
                }
            }
            match next_chunk(&mut self.body).await? {
                Ok(c) => self.buf.extend_from_slice(&c),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

pub async fn next_chunk(body: &mut Incoming) -> Option<Result<Bytes, ClientError>> {
    loop {
        match body.frame().await? {
            Ok(f) => {
                if let Ok(d) = f.into_data() {
                    return Some(Ok(d));
                }
            }
            Err(e) => return Some(Err(ClientError::Http(e.to_string()))),
        }
    }
}
