//! A long-running module: prints a numbered tick every interval (ms, from
//! argv[1], default 500). With `spin`, it loops in pure computation instead,
//! never calling the host: the case `stop -t` and `kill` must still end.
fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "500".into());
    if arg == "spin" {
        println!("spinning");
        let mut x: u64 = 1;
        loop {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            if x == 42 {
                println!("unreachable {x}");
            }
        }
    }
    let ms: u64 = arg.parse().unwrap_or(500);
    let mut i = 0u64;
    loop {
        println!("tick {i}");
        i += 1;
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
