//! A plugin component that misbehaves on request, for testing how a host
//! contains a plugin: each export tries one thing a host may forbid (files,
//! sockets, outgoing HTTP, endless CPU, endless memory, a refused host call,
//! output), and `upper` is a well-behaved call to show the host still works.

use std::hint::black_box;
use std::io::Write;

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, IncomingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

wit_bindgen::generate!({
    path: "wit",
    world: "hostile",
    // `connect` is exported by hand (see `connect_export`): the generated
    // export would define the C symbol `connect`, and the linker would then
    // bind libc's connect(2), which std::net calls, to it.
    skip: ["connect"],
});

use ketch::hostile::host;

struct Hostile;

impl Guest for Hostile {
    fn upper(s: String) -> String {
        s.to_uppercase()
    }

    fn read_file(path: String) -> Result<String, String> {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    }

    fn write_file(path: String, data: String) -> Result<String, String> {
        std::fs::write(&path, data.as_bytes()).map_err(|e| e.to_string())?;
        Ok(format!("wrote {} bytes", data.len()))
    }

    fn fetch(url: String) -> Result<String, String> {
        get(&url)
    }

    fn spin() -> u64 {
        let mut n: u64 = 0;
        loop {
            n = black_box(n.wrapping_add(1));
        }
    }

    fn hog() -> u64 {
        const MIB: usize = 1 << 20;
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut n: u64 = 0;
        loop {
            let mut v = vec![0u8; MIB];
            for i in (0..MIB).step_by(4096) {
                v[i] = 1;
            }
            kept.push(black_box(v));
            n = black_box(n + 1);
        }
    }

    fn shout(level: u32, msg: String) -> String {
        host::log(level, &msg)
    }

    fn say(msg: String) -> u32 {
        let reversed: String = msg.chars().rev().collect();
        println!("{msg}");
        eprintln!("{reversed}");
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        msg.len() as u32
    }
}

impl Hostile {
    fn connect(addr: String) -> Result<String, String> {
        std::net::TcpStream::connect(addr.as_str()).map_err(|e| e.to_string())?;
        Ok("connected".to_string())
    }
}

/// The `connect` export, `func(addr: string) -> result<string, string>`,
/// lifted by hand under the component model's standard name mangling
/// (`cm32p2||connect`), so that its core symbol is not libc's `connect`.
mod connect_export {
    use super::Hostile;

    /// The flat result: a discriminant byte, then the string's pointer and
    /// length at offsets 4 and 8 (wasm32).
    #[repr(C, align(4))]
    struct RetArea([u8; 12]);

    static mut RET_AREA: RetArea = RetArea([0; 12]);

    #[unsafe(export_name = "cm32p2||connect")]
    unsafe extern "C" fn export_connect(ptr: *mut u8, len: usize) -> *mut u8 {
        wit_bindgen::rt::run_ctors_once();
        // SAFETY: the host passes a UTF-8 string it allocated in this
        // instance with `cabi_realloc` (align 1), which we now own.
        let addr = unsafe { String::from_utf8_unchecked(Vec::from_raw_parts(ptr, len, len)) };
        let (tag, s) = match Hostile::connect(addr) {
            Ok(s) => (0u8, s),
            Err(s) => (1u8, s),
        };
        let len = s.len();
        let s = Box::into_raw(s.into_boxed_str()).cast::<u8>();
        let ret = core::ptr::addr_of_mut!(RET_AREA).cast::<u8>();
        // SAFETY: `ret` is a static 12-byte area aligned to 4; the host
        // reads it before the next call and then calls `connect_post`.
        unsafe {
            ret.write(tag);
            ret.add(4).cast::<*mut u8>().write(s);
            ret.add(8).cast::<usize>().write(len);
        }
        ret
    }

    #[unsafe(export_name = "cm32p2||connect_post")]
    unsafe extern "C" fn post_return_connect(ret: *mut u8) {
        // SAFETY: `ret` is what `export_connect` returned; the string it
        // points at was leaked there from a `Box<str>`.
        unsafe {
            let ptr = ret.add(4).cast::<*mut u8>().read();
            let len = ret.add(8).cast::<usize>().read();
            drop(Box::from_raw(
                core::ptr::slice_from_raw_parts_mut(ptr, len) as *mut str
            ));
        }
    }
}

/// GET `url` through wasi:http's outgoing handler; "STATUS BODY" on success.
fn get(url: &str) -> Result<String, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        Some((other, rest)) => (Scheme::Other(other.to_string()), rest),
        None => (Scheme::Http, url),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };

    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&scheme))
        .map_err(|()| format!("bad scheme in {url}"))?;
    req.set_authority(Some(authority))
        .map_err(|()| format!("bad authority {authority}"))?;
    req.set_path_with_query(Some(&path))
        .map_err(|()| format!("bad path {path}"))?;

    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let resp = match future.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => return Err(format!("{e:?}")),
        Some(Err(())) => return Err("response already taken".to_string()),
        None => return Err("response not ready".to_string()),
    };
    let status = resp.status();

    let body = resp
        .consume()
        .map_err(|()| "response body already taken".to_string())?;
    let stream = body
        .stream()
        .map_err(|()| "body stream already taken".to_string())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => return Err(e.to_debug_string()),
        }
    }
    drop(stream);
    let _ = IncomingBody::finish(body);
    Ok(format!("{status} {}", String::from_utf8_lossy(&bytes)))
}

export!(Hostile);
