//! `containerd-shim-ketch-v1`: ketch's Wasm runtime behind containerd's
//! shim v2 task API (`io.containerd.ketch.v1`).

#[cfg(target_os = "linux")]
fn main() {
    ketch::shim::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("containerd-shim-ketch-v1 runs on Linux only");
    std::process::exit(1);
}
