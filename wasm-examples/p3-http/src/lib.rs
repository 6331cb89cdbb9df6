//! A WASI 0.3 function: an async `wasi:http/handler@0.3.0` export that
//! answers every request with its method and path, the body written
//! through a `stream<u8>` by a task that outlives `handle`. The header
//! `x-instance-requests` counts the requests this instance has served.

use std::sync::atomic::{AtomicU64, Ordering};

wit_bindgen::generate!({
    world: "function",
    path: "wit",
    generate_all,
});

use exports::wasi::http::handler::Guest;
use wasi::http::types::{ErrorCode, Fields, Request, Response};

struct Function;

static SERVED: AtomicU64 = AtomicU64::new(0);

impl Guest for Function {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let body = format!("hello from a WASI 0.3 function: {:?} {path}\n", request.get_method());
        let served = SERVED.fetch_add(1, Ordering::Relaxed) + 1;
        let headers = Fields::from_list(&[
            (
                "content-type".to_string(),
                b"text/plain; charset=utf-8".to_vec(),
            ),
            (
                "x-instance-requests".to_string(),
                served.to_string().into_bytes(),
            ),
        ])
        .map_err(|e| ErrorCode::InternalError(Some(format!("{e:?}"))))?;
        let (mut contents, contents_rx) = wit_stream::new();
        let (trailers, trailers_rx) = wit_future::new(|| Ok(None));
        let (response, _sent) = Response::new(headers, Some(contents_rx), trailers_rx);
        wit_bindgen::spawn(async move {
            contents.write_all(body.into_bytes()).await;
            drop(contents);
            let _ = trailers.write(Ok(None)).await;
        });
        Ok(response)
    }
}

export!(Function);
