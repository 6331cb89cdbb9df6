//! `ketchd`: the daemon. Serves the Engine API on a Unix socket.

use clap::Parser;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ketchd", version, about = "The ketch container daemon")]
#[cfg_attr(not(unix), allow(dead_code))]
struct Args {
    /// Root directory of persistent state
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Socket to listen on (unix:///path)
    #[arg(short = 'H', long)]
    host: Option<String>,
    /// Enable debug logging
    #[arg(short = 'D', long)]
    debug: bool,
    /// Speak plain HTTP to this registry (host[:port]); repeatable.
    /// Loopback registries always are.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// Pull docker.io images through this mirror first (a base URL); repeatable
    #[arg(long = "registry-mirror", value_name = "URL")]
    registry_mirror: Vec<String>,
    /// Memory cap of a Wasm guest (a command, or one request of a function)
    /// run without --memory [default: 256m]
    #[arg(long, value_name = "SIZE", value_parser = ketch::runtime::memory::parse_limit)]
    wasm_memory_default: Option<u64>,
    /// Memory all Wasm guests may hold together; a guest refused by it fails
    /// alone, as OOM-killed [default: half of the host's memory, or of
    /// ketchd's cgroup limit]
    #[arg(long, value_name = "SIZE", value_parser = ketch::runtime::memory::parse_limit)]
    wasm_memory_budget: Option<u64>,
    /// Wasm commands that may run at once; past it, a start is refused
    /// [default: as many as the host's vm.max_map_count and ketchd's
    /// descriptor limit allow]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    wasm_max_guests: Option<u64>,
    /// Most bytes one archive (a layer, a build context, ADD, cp, load) may
    /// unpack to [default: 64g]
    #[arg(long, value_name = "SIZE", value_parser = ketch::model::units::parse_size)]
    max_unpack_bytes: Option<u64>,
    /// Most bytes one archive entry may hold [default: 32g]
    #[arg(long, value_name = "SIZE", value_parser = ketch::model::units::parse_size)]
    max_unpack_entry: Option<u64>,
    /// Most entries one archive may have [default: 4000000]
    #[arg(long, value_name = "N")]
    max_unpack_entries: Option<u64>,
    /// Archives inflating to more than this many times their compressed
    /// size (beyond 256 MiB) are refused as decompression bombs [default: 200]
    #[arg(long, value_name = "RATIO")]
    max_unpack_ratio: Option<u64>,
    /// Connections each published port (or function port) holds at once;
    /// further ones are reset
    #[arg(
        long,
        value_name = "N",
        default_value_t = ketch::accept::DEFAULT_MAX_PORT_CONNECTIONS as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_port_connections: u64,
    /// Concurrent API connections; when all are taken, the one idle longest
    /// is closed to make room
    #[arg(
        long,
        value_name = "N",
        default_value_t = ketch::accept::DEFAULT_MAX_API_CONNECTIONS as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    max_api_connections: u64,
    /// Default options of json-file logs, under each container's own
    /// (max-size=SIZE or -1, max-file=N) [default: max-size=20m, max-file=5]
    #[arg(long = "log-opt", value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// Keep Linux containers running while ketchd is down, and adopt them
    /// at its next start. Off: a clean shutdown stops every container,
    /// each with its stop timeout (Wasm containers always stop with ketchd)
    #[arg(long)]
    live_restore: bool,
    /// The statically linked init that `run --init` runs as pid 1 in Linux
    /// containers [default: docker-init or tini-static, where packages
    /// install them]
    #[cfg(all(feature = "linux", target_os = "linux"))]
    #[arg(long, value_name = "PATH")]
    init_path: Option<PathBuf>,
}

fn main() {
    // The helper commands (`ketchd monitor DIR`, `exec`, `cp`) fork before
    // any thread exists, so they are dispatched before anything. ketchd
    // spawns the lean `ketch-monitor` for them when it is installed beside
    // it, and itself otherwise.
    #[cfg(all(feature = "linux", target_os = "linux"))]
    {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        if let Some(code) = ketch::runtime::linux::helper_main(&argv) {
            std::process::exit(code);
        }
    }
    let args = Args::parse();
    let filter = if args.debug {
        "ketch=debug,info"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ketchd")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ketchd: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("ketchd: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(unix)]
async fn run(args: Args) -> anyhow::Result<()> {
    use anyhow::Context;
    // First, before anything opens files: raise the descriptor limit and
    // size the reserve that keeps the API answering (see `accept`).
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let fds = ketch::accept::configure(ketch::accept::Limits {
        max_port_connections: to_usize(args.max_port_connections),
        max_api_connections: to_usize(args.max_api_connections),
    });
    let root = args
        .data_root
        .unwrap_or_else(ketch::paths::default_data_root);
    let socket = match &args.host {
        Some(h) => ketch::paths::parse_host(h).map_err(anyhow::Error::msg)?,
        None => ketch::paths::default_socket(),
    };
    ketch::fsutil::create_dir_mode(&root, 0o711)
        .with_context(|| format!("creating data root {}", root.display()))?;
    // One daemon per data root: a second would corrupt the state files.
    let lock_path = root.join("ketchd.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid fd we own; the lock lives as long as `lock`.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        anyhow::bail!("another ketchd is using data root {}", root.display());
    }
    for m in &args.registry_mirror {
        url::Url::parse(m).with_context(|| format!("invalid --registry-mirror {m:?}"))?;
    }
    let registry = ketch::image::registry::RegistryConfig {
        insecure: args.insecure_registry.clone(),
        mirrors: args.registry_mirror.clone(),
    };
    let d = ketch::confine::archive::Limits::default();
    ketch::confine::archive::Limits::set_daemon(ketch::confine::archive::Limits {
        max_bytes: args.max_unpack_bytes.unwrap_or(d.max_bytes),
        max_entry_bytes: args.max_unpack_entry.unwrap_or(d.max_entry_bytes),
        max_entries: args.max_unpack_entries.unwrap_or(d.max_entries),
        max_ratio: args.max_unpack_ratio.unwrap_or(d.max_ratio),
        ratio_floor: d.ratio_floor,
    });
    #[cfg(feature = "wasm")]
    if let Some(n) = args.wasm_max_guests {
        ketch::runtime::wasm::admission::set_max_guests(usize::try_from(n).unwrap_or(usize::MAX));
    }
    let log_opts = args
        .log_opt
        .iter()
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("invalid --log-opt {o:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    ketch::engine::config::set_log_defaults(&log_opts).context("invalid --log-opt")?;
    #[cfg(all(feature = "linux", target_os = "linux"))]
    if let Some(p) = &args.init_path {
        ketch::runtime::linux::devices::set_init_path(p)
            .map_err(anyhow::Error::msg)
            .context("invalid --init-path")?;
    }
    let defaults = ketch::runtime::memory::WasmMemory::default();
    let wasm_memory = ketch::runtime::memory::WasmMemory {
        guest_default: args.wasm_memory_default.unwrap_or(defaults.guest_default),
        budget: args.wasm_memory_budget.unwrap_or(defaults.budget),
    };
    let engine = ketch::engine::Engine::open(&root, registry, wasm_memory)
        .await
        .with_context(|| format!("opening data root {}", root.display()))?;
    let listener = ketch::daemon::bind(&socket)
        .with_context(|| format!("listening on {}", socket.display()))?;
    tracing::info!(
        "ketchd {} serving the Engine API on unix://{} (data root {})",
        env!("CARGO_PKG_VERSION"),
        socket.display(),
        root.display()
    );
    tracing::info!(
        "descriptor limit {}, {} kept for the API and ketchd's own files; \
         {} connections per published port, {} API connections",
        fds.fd_limit,
        fds.fd_reserve,
        fds.limits.max_port_connections,
        fds.limits.max_api_connections
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let shutdown = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    ketch::daemon::serve(engine.clone(), listener, shutdown).await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!(
        "shutting down: stopping containers{}",
        if args.live_restore {
            " (Linux containers keep running: --live-restore)"
        } else {
            ""
        }
    );
    engine.shutdown(args.live_restore).await;
    tracing::info!("ketchd stopped");
    drop(lock);
    Ok(())
}

/// ketchd serves the Engine API on a Unix socket.
#[cfg(not(unix))]
async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("this platform has no Unix sockets to serve the Engine API on")
}
