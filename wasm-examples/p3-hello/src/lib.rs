//! A WASI 0.3 command: an async `wasi:cli/run@0.3.0` export that writes
//! its arguments, its environment and a random number to stdout through a
//! `stream<u8>`, after an async sleep (a minute with `--wait`).

wit_bindgen::generate!({
    world: "hello",
    path: "wit",
    generate_all,
});

use exports::wasi::cli::run::Guest;
use wasi::cli::{environment, stdout};
use wasi::clocks::monotonic_clock;
use wasi::random::random;

struct Hello;

impl Guest for Hello {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
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
        let (mut tx, rx) = wit_stream::new();
        let done = stdout::write_via_stream(rx);
        let left = tx.write_all(msg.into_bytes()).await;
        drop(tx);
        if !left.is_empty() {
            return Err(());
        }
        done.await.map_err(|_| ())
    }
}

export!(Hello);
