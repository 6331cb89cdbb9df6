//! A host program for untrusted plugins, on ketch's embedding API.
//!
//! ```text
//! plugin-host [--dir HOST:GUEST[:ro]]... [--env K=V]... [--allow-http HOST[:PORT]]...
//!             [--memory SIZE] [--timeout DURATION] [--cache-dir DIR] PLUGIN FUNCTION [ARG...]
//! ```
//!
//! PLUGIN is a `.wasm` file or an OCI reference (registries on loopback
//! speak plain HTTP). FUNCTION is a component export taking strings (or
//! numbers, booleans, chars) and returning strings (or `result<string,
//! string>`), or `run` for a WASI command,
//! whose output passes through. Prints the result and exits 0; on a
//! denial, a trap, the deadline or the memory cap it exits 1 with a
//! message naming the plugin and the cause.

use clap::Parser;
use ketch::model::units::{parse_duration, parse_size};
use ketch::plugin::{Grants, Host, Limits, Output, Plugin, PluginError, Type, Val};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "plugin-host",
    about = "Run a function of an untrusted Wasm plugin"
)]
struct Args {
    /// Grant a host directory: HOST:GUEST, or HOST:GUEST:ro for read-only.
    #[arg(long = "dir", value_name = "HOST:GUEST[:ro]")]
    dirs: Vec<String>,
    /// Set an environment variable in the plugin.
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Allow outgoing HTTP requests to this host (any port) or host:port.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    /// Memory one instance may hold (64MiB unless set).
    #[arg(long, value_parser = parse_size)]
    memory: Option<u64>,
    /// Where compiled and pulled plugins are kept (ketchd's data root
    /// unless set, sharing its compile cache).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<std::path::PathBuf>,
    /// How long the call may run (10s unless set).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
    /// A .wasm file or an OCI reference.
    plugin: String,
    /// A component export, or `run` for a WASI command.
    function: String,
    /// Arguments: strings.
    args: Vec<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match host(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("plugin-host: {e}");
            ExitCode::FAILURE
        }
    }
}

fn host(args: &Args) -> Result<ExitCode, String> {
    let mut grants = Grants::new()
        .stdout(Output::Inherit)
        .stderr(Output::Inherit);
    for d in &args.dirs {
        let (spec, ro) = match d.strip_suffix(":ro") {
            Some(s) => (s, true),
            None => (d.as_str(), false),
        };
        let (h, g) = spec
            .split_once(':')
            .ok_or_else(|| format!("--dir {d}: expected HOST:GUEST[:ro]"))?;
        grants = grants.dir(h, g, ro);
    }
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| format!("--env {e}: expected K=V"))?;
        grants = grants.env(k, v);
    }
    for h in &args.allow_http {
        grants = grants.allow_http(h);
    }
    let mut limits = Limits::new();
    if let Some(m) = args.memory {
        limits = limits.memory(m);
    }
    if let Some(t) = args.timeout {
        limits = limits.timeout(t);
    }
    let mut host = Host::builder();
    if let Some(dir) = &args.cache_dir {
        host = host.cache_dir(dir);
    }
    let host = host.build().map_err(|e| e.to_string())?;
    let plugin = load(&host, &args.plugin).map_err(|e| e.to_string())?;
    let sandbox = plugin
        .sandbox()
        .grants(grants)
        .limits(limits)
        // This host offers no functions of its own: a plugin that imports
        // some loads, and fails when it calls one.
        .trap_unknown_imports()
        .build()
        .map_err(|e| e.to_string())?;
    if args.function == "run" && !sandbox.exports().iter().any(|e| e == "run") {
        let argv: Vec<&str> = args.args.iter().map(String::as_str).collect();
        let out = sandbox.run(&argv).map_err(|e| e.to_string())?;
        return Ok(ExitCode::from(u8::try_from(out.code).unwrap_or(1)));
    }
    let ty = sandbox
        .func_type(&args.function)
        .map_err(|e| e.to_string())?;
    let vals = ty
        .params()
        .zip(&args.args)
        .map(|((name, t), a)| arg(name, &t, a))
        .collect::<Result<Vec<Val>, String>>()?;
    // Extra or missing arguments: the sandbox says how many it takes.
    let mut vals = vals;
    vals.extend(
        args.args
            .iter()
            .skip(ty.params().len())
            .map(|a| Val::String(a.clone())),
    );
    let results = sandbox
        .call(&args.function, &vals)
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Val::String(s) => println!("{s}"),
            Val::Result(Ok(v)) => println!("{}", v.map_or_else(String::new, |v| show(&v))),
            Val::Result(Err(v)) => {
                return Err(format!(
                    "plugin {}: {} returned an error: {}",
                    plugin.name(),
                    args.function,
                    v.map_or_else(String::new, |v| show(&v))
                ))
            }
            other => println!("{}", show(&other)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A file if there is one by that name, else a reference to pull.
fn load(host: &Host, plugin: &str) -> Result<Plugin, PluginError> {
    if ketch::plugin::is_file_name(plugin) {
        host.load_file(plugin)
    } else {
        host.pull_blocking(plugin)
    }
}

/// A command-line word as a value of the parameter's type: strings, and
/// the scalars a word can spell.
fn arg(name: &str, t: &Type, a: &str) -> Result<Val, String> {
    let bad = || format!("argument {name}: {a:?} is not a {t:?}");
    Ok(match t {
        Type::String => Val::String(a.to_string()),
        Type::Bool => Val::Bool(a.parse().map_err(|_| bad())?),
        Type::U8 => Val::U8(a.parse().map_err(|_| bad())?),
        Type::U16 => Val::U16(a.parse().map_err(|_| bad())?),
        Type::U32 => Val::U32(a.parse().map_err(|_| bad())?),
        Type::U64 => Val::U64(a.parse().map_err(|_| bad())?),
        Type::S8 => Val::S8(a.parse().map_err(|_| bad())?),
        Type::S16 => Val::S16(a.parse().map_err(|_| bad())?),
        Type::S32 => Val::S32(a.parse().map_err(|_| bad())?),
        Type::S64 => Val::S64(a.parse().map_err(|_| bad())?),
        Type::Float32 => Val::Float32(a.parse().map_err(|_| bad())?),
        Type::Float64 => Val::Float64(a.parse().map_err(|_| bad())?),
        Type::Char => Val::Char(a.parse().map_err(|_| bad())?),
        _ => {
            return Err(format!(
                "argument {name}: a {t:?} cannot be given on the command line"
            ))
        }
    })
}

fn show(v: &Val) -> String {
    match v {
        Val::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}
