//! The `ketch` CLI: parse, dispatch, print the error chain, exit.

#[cfg(unix)]
use clap::Parser;

#[cfg(unix)]
fn main() {
    let cli = ketch::cli::Cli::parse();
    let fail = ketch::cli::failure_code(&cli.command);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ketch: cannot start runtime: {e}");
            std::process::exit(ketch::cli::EXIT_KETCH_ERROR);
        }
    };
    let code = match rt.block_on(ketch::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            fail
        }
    };
    // Don't wait for background stdin readers.
    std::process::exit(code);
}

/// The CLI reaches ketchd over a Unix socket.
#[cfg(not(unix))]
fn main() {
    eprintln!("ketch: this platform has no Unix sockets to reach ketchd through");
    // The code of ketch's own errors (`cli::EXIT_KETCH_ERROR`).
    std::process::exit(125);
}
