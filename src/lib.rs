//! ketch: a Docker-style container engine for WebAssembly (and Linux)
//! containers.
//!
//! ```text
//! bin/ketch  -> cli -> client --(unix socket, Engine API)--> daemon -> engine -> image   (store, build, archives)
//!                                                                          -> runtime::wasm (wasmtime, WASI)
//! ```
//!
//! Arrows point one way. [`model`] (ids, references, status), [`fsutil`],
//! [`lograte`] (rate-limited log lines) and [`accept`] (the descriptor
//! budget and connection caps) depend on nothing else in the crate; [`api`]
//! is the wire contract both the client and the daemon use. The CLI never
//! reaches into the engine: it speaks the Engine API, like any Docker
//! client.

#![recursion_limit = "256"]
// A build with no runtime compiled in is a client and an image tool: the
// engine's helpers for backends have nobody to call them there.
#![cfg_attr(not(any(feature = "wasm", feature = "linux")), allow(dead_code))]

pub mod accept;
pub mod api;
// The Engine API travels over a Unix socket: the daemon, the client and
// the CLI need one; the engine, the runtimes and the image store do not.
#[cfg(unix)]
pub mod cli;
#[cfg(unix)]
pub mod client;
pub mod confine;
#[cfg(unix)]
pub mod daemon;
pub mod engine;
pub mod fsutil;
pub mod image;
pub mod lograte;
pub mod model;
pub mod paths;
#[cfg(feature = "wasm")]
pub mod plugin;
pub mod runtime;
#[cfg(all(feature = "shim", target_os = "linux"))]
pub mod shim;
