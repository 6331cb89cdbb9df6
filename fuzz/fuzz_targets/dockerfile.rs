//! The Dockerfile parser and word expansion never panic.
#![no_main]

use ketch::image::build::dockerfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(steps) = dockerfile::parse(s) {
        for step in steps {
            let _ = step.text.len();
        }
    }
    let lookup = |k: &str| (k == "A").then(|| "x y".to_string());
    let _ = dockerfile::words(s, &lookup);
    let _ = dockerfile::key_values(s, &lookup, true);
    let _ = ketch::image::build::ignore::Ignore::parse(s).excluded(s);
});
