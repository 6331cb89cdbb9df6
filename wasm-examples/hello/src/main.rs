//! A WASI preview 1 module: greets, then prints its args and environment.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let who = args.get(1).cloned().unwrap_or_else(|| "world".into());
    println!("Hello, {who}! (from a ketch Wasm container)");
    println!("args: {:?}", args);
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in env {
        println!("env: {k}={v}");
    }
    if let Ok(code) = std::env::var("EXIT_CODE") {
        std::process::exit(code.parse().unwrap_or(1));
    }
}
