//! A WASI 0.3 command: an async `wasi:cli/run@0.3.0` export that writes
//! its arguments, its environment and a random number to stdout through a
//! `stream<u8>`, after an async sleep (a minute with `--wait`).
//!
//! With `--fs` it probes the filesystem instead: it lists its preopened
//! directories and, in the first, reads `seen.txt`, writes `written.txt`
//! and tries to open `../etc/passwd`, printing each result.

wit_bindgen::generate!({
    world: "hello",
    path: "wit",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::cli::{environment, stdout};
use wasi::filesystem::preopens;
use wasi::filesystem::types::{Descriptor, DescriptorFlags, OpenFlags, PathFlags};
use wasi::clocks::monotonic_clock;
use wasi::random::random;

struct Hello;

impl Guest for Hello {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        if args.iter().any(|a| a == "--fs") {
            return say(fs_probe().await).await;
        }
        let wait = if args.iter().any(|a| a == "--wait") {
            60_000_000_000
        } else {
            1_000_000
        };
        monotonic_clock::wait_for(wait).await;
        let env: Vec<String> = environment::get_environment()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let msg = format!(
            "hello from WASI 0.3: args {args:?}\nenv: {}\nrandom: {}\n",
            env.join(" "),
            random::get_random_u64()
        );
        say(msg).await
    }
}

async fn say(msg: String) -> Result<(), ()> {
    let (mut tx, rx) = wit_stream::new();
    let done = stdout::write_via_stream(rx);
    let left = tx.write_all(msg.into_bytes()).await;
    drop(tx);
    if !left.is_empty() {
        return Err(());
    }
    done.await.map_err(|_| ())
}

async fn fs_probe() -> String {
    let dirs = preopens::get_directories();
    let names: Vec<&str> = dirs.iter().map(|(_, n)| n.as_str()).collect();
    let mut out = format!("preopens: {names:?}\n");
    let Some((dir, _)) = dirs.first() else {
        return out;
    };
    out += &format!("read: {}\n", read(dir, "seen.txt").await.unwrap_or_else(|e| e));
    let written = write(dir, "written.txt", b"from a WASI 0.3 guest\n").await;
    out += &format!("write: {}\n", written.map_or_else(|e| e, |()| "ok".into()));
    let escape = dir
        .open_at(
            PathFlags::empty(),
            "../etc/passwd".into(),
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .await;
    out += &format!(
        "escape: {}\n",
        escape.map_or_else(|e| format!("{e:?}"), |_| "opened".into())
    );
    out
}

async fn read(dir: &Descriptor, path: &str) -> Result<String, String> {
    let f = dir
        .open_at(
            PathFlags::empty(),
            path.into(),
            OpenFlags::empty(),
            DescriptorFlags::READ,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (rx, done) = f.read_via_stream(0);
    let bytes = rx.collect().await;
    done.await.map_err(|e| format!("{e:?}"))?;
    Ok(String::from_utf8_lossy(&bytes).trim_end().to_string())
}

async fn write(dir: &Descriptor, path: &str, data: &[u8]) -> Result<(), String> {
    let f = dir
        .open_at(
            PathFlags::empty(),
            path.into(),
            OpenFlags::CREATE | OpenFlags::TRUNCATE,
            DescriptorFlags::WRITE,
        )
        .await
        .map_err(|e| format!("{e:?}"))?;
    let (mut tx, rx) = wit_stream::new();
    let done = f.write_via_stream(rx, 0);
    let left = tx.write_all(data.to_vec()).await;
    drop(tx);
    if !left.is_empty() {
        return Err("short write".into());
    }
    done.await.map_err(|e| format!("{e:?}"))
}

export!(Hello);
