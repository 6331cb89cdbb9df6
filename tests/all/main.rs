#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test
//! ketch's integration tests: one binary; every test starts a real ketchd
//! on a temp data root and drives it through the ketch CLI or the API.

mod adversarial;
mod api;
mod common;
mod conformance;
mod containerd;
mod docker_cli;
mod functions;
mod health;
mod images;
mod lifecycle;
mod limits;
mod linux;
mod logging;
mod plugins;
mod registry;
mod sdk;
mod verbs;
mod wasm;
mod wasm_net;
