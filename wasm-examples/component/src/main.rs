//! A WASI preview 2 component (wasi:cli/run): prints, echoes stdin if asked.
use std::io::Read;

fn main() {
    println!("Hello from a WASI preview 2 component!");
    if std::env::args().any(|a| a == "--echo") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).expect("read stdin");
        print!("echo: {s}");
    }
    eprintln!("this line goes to stderr");
}
