//! `ketch-monitor`: the small helper ketchd spawns for Linux containers, in
//! the role of conmon: `monitor DIR` creates a container and stays with it,
//! `exec REQUEST` runs a process inside one, `cp MODE TARGET PATH` copies
//! to or from one. It links none of the daemon (no HTTP server, no
//! wasmtime), so it starts in a fraction of ketchd's time; ketchd falls
//! back to running these itself when this binary is not beside it.

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match ketch::runtime::linux::helper_main(&argv) {
        Some(code) => std::process::exit(code),
        None => {
            eprintln!(
                "ketch-monitor is ketchd's helper for Linux containers and is not run by hand\n\
                 usage: ketch-monitor monitor DIR | exec REQUEST | cp stat|get|put TARGET PATH"
            );
            std::process::exit(2);
        }
    }
}
