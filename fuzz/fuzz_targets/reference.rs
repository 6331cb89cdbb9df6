//! Image references: parsing never panics, and what parses prints back to
//! something that parses to the same reference.
#![no_main]

use ketch::model::ImageRef;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    type Parse = fn(&str) -> Result<ImageRef, ketch::model::RefError>;
    for parse in [ImageRef::parse as Parse, ImageRef::parse_any] {
        if let Ok(r) = parse(s) {
            let again = parse(&r.to_string()).expect("a printed reference parses");
            assert_eq!(again.to_string(), r.to_string());
            let _ = r.familiar();
        }
    }
    let _ = ketch::model::Digest::parse(s);
});
