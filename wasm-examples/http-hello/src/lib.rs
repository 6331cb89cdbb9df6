//! A wasi-http function: answers every request with a greeting.
//! `GREETING` (from the image or `-e`) changes the word used. The header
//! `x-instance-requests` counts the requests this instance has served (1
//! unless the host reuses instances).

use std::sync::atomic::{AtomicU64, Ordering};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Hello;

static SERVED: AtomicU64 = AtomicU64::new(0);

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".into());
        let path = request.path_with_query().unwrap_or_default();
        let body = format!("{greeting} from a ketch function! You asked for {path}\n");
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
        .expect("valid header");
        let resp = OutgoingResponse::new(headers);
        let out_body = resp.body().expect("response body");
        ResponseOutparam::set(out, Ok(resp));
        let stream = out_body.write().expect("body stream");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("write body");
        drop(stream);
        OutgoingBody::finish(out_body, None).expect("finish body");
    }
}

wasi::http::proxy::export!(Hello);
