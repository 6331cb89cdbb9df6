//! Reads and writes a mounted volume: `volume DIR` appends a line to
//! DIR/visits.txt and prints the file. Shows that only granted dirs exist.
use std::io::Write;

fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "/data".into());
    let path = format!("{dir}/visits.txt");
    match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(mut f) => {
            writeln!(f, "visit").expect("write");
        }
        Err(e) => {
            eprintln!("cannot open {path}: {e}");
            std::process::exit(2);
        }
    }
    let text = std::fs::read_to_string(&path).expect("read back");
    println!("{path} has {} visits", text.lines().count());
    match std::fs::read_dir("/etc") {
        Ok(_) => println!("/etc is visible (unexpected)"),
        Err(_) => println!("/etc is not visible"),
    }
}
