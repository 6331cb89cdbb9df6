//! The `ketch` CLI: parse, dispatch, print the error chain, exit.

#[cfg(unix)]
fn main() {
    quiet_on_closed_stdout();
    let cli = ketch::cli::parse();
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
            let text = format!("{e:#}");
            eprintln!("{text}");
            ketch::cli::failure_code_of(fail, &text)
        }
    };
    // Don't wait for background stdin readers.
    std::process::exit(code);
}

/// `ketch ps | head`: when the reader of stdout goes away, `print!` fails
/// with EPIPE (Rust ignores SIGPIPE, so writes to ketchd's socket fail
/// with an error instead of killing the CLI). End then as a program killed
/// by SIGPIPE ends, quietly with 141, as the docker CLI does, instead of
/// printing a panic.
#[cfg(unix)]
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
}

/// The CLI reaches ketchd over a Unix socket.
#[cfg(not(unix))]
fn main() {
    eprintln!("ketch: this platform has no Unix sockets to reach ketchd through");
    // The code of ketch's own errors (`cli::EXIT_KETCH_ERROR`).
    std::process::exit(125);
}
