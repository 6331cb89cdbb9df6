//! A wasi-http function that echoes the request: its method, path and
//! headers, a blank line, then its body. Prints one line per request to
//! stdout (the container log).
//!
//! `GET /fetch?url=URL` instead makes an outgoing request to URL and answers
//! with what came back, or 502 and the error: a way to see the container's
//! outgoing-HTTP grants at work.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};

struct Echo;

fn method_name(m: &Method) -> String {
    match m {
        Method::Get => "GET".into(),
        Method::Head => "HEAD".into(),
        Method::Post => "POST".into(),
        Method::Put => "PUT".into(),
        Method::Delete => "DELETE".into(),
        Method::Connect => "CONNECT".into(),
        Method::Options => "OPTIONS".into(),
        Method::Trace => "TRACE".into(),
        Method::Patch => "PATCH".into(),
        Method::Other(s) => s.clone(),
    }
}

/// Read a whole incoming body.
fn read_body(body: IncomingBody) -> Result<Vec<u8>, String> {
    let stream = body.stream().map_err(|()| "body stream taken".to_string())?;
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(wasi::io::streams::StreamError::LastOperationFailed(e)) => {
                return Err(e.to_debug_string())
            }
        }
    }
    drop(stream);
    IncomingBody::finish(body);
    Ok(data)
}

fn respond(out: ResponseOutparam, status: u16, body: &[u8]) {
    let headers = Fields::from_list(&[(
        "content-type".to_string(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("valid header");
    let resp = OutgoingResponse::new(headers);
    resp.set_status_code(status).expect("valid status");
    let out_body = resp.body().expect("response body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = out_body.write().expect("body stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write body");
    }
    drop(stream);
    OutgoingBody::finish(out_body, None).expect("finish body");
}

/// Fetch `url` (http or https, `host[:port]/path`) through wasi:http.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("unsupported url {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    req.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    req.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    pending.subscribe().block();
    let resp = match pending.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => return Err(format!("{e:?}")),
        Some(Err(())) | None => return Err("response already taken".into()),
    };
    let status = resp.status();
    let body = resp.consume().map_err(|()| "response body taken")?;
    Ok((status, read_body(body)?))
}

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = method_name(&request.method());
        let path = request.path_with_query().unwrap_or_default();
        println!("{method} {path}");
        if let Some(url) = path.strip_prefix("/fetch?url=") {
            match fetch(url) {
                Ok((status, body)) => respond(out, status, &body),
                Err(e) => respond(out, 502, format!("fetch {url} failed: {e}\n").as_bytes()),
            }
            return;
        }
        let mut text = format!("{method} {path}\n");
        for (name, value) in request.headers().entries() {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
        }
        text.push('\n');
        let body = match request.consume() {
            Ok(b) => read_body(b),
            Err(()) => Err("request body taken".into()),
        };
        match body {
            Ok(b) => {
                let mut all = text.into_bytes();
                all.extend_from_slice(&b);
                respond(out, 200, &all);
            }
            Err(e) => {
                eprintln!("cannot read request body: {e}");
                respond(out, 400, format!("cannot read request body: {e}\n").as_bytes());
            }
        }
    }
}

wasi::http::proxy::export!(Echo);
