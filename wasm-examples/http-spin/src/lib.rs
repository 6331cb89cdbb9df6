//! A wasi-http function for exercising limits. `/spin` loops forever in
//! pure computation (no host calls); `/grow?mib=N` allocates N MiB; any
//! other path answers `ok` at once.

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

struct Spin;

fn respond(out: ResponseOutparam, body: &str) {
    let resp = OutgoingResponse::new(Fields::new());
    let out_body = resp.body().expect("response body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = out_body.write().expect("body stream");
    stream.blocking_write_and_flush(body.as_bytes()).expect("write body");
    drop(stream);
    OutgoingBody::finish(out_body, None).expect("finish body");
}

impl Guest for Spin {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        if path == "/spin" {
            eprintln!("spinning");
            let mut x: u64 = 1;
            loop {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        if let Some(n) = path.strip_prefix("/grow?mib=") {
            let mib: usize = n.parse().unwrap_or(0);
            let v = vec![1u8; mib << 20];
            respond(out, &format!("grew {} MiB\n", std::hint::black_box(v).len() >> 20));
            return;
        }
        respond(out, "ok\n");
    }
}

wasi::http::proxy::export!(Spin);
