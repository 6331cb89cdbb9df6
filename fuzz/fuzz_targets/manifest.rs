//! Manifests and indexes from a registry or an archive: decoding, platform
//! selection and layer titles never panic, and a chosen entry is one of
//! the index's own.
#![no_main]

use ketch::image::registry::{select_platform, Platform};
use libfuzzer_sys::fuzz_target;
use oci_spec::image::{ImageIndex, ImageManifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = serde_json::from_slice::<ImageIndex>(data) {
        for p in [None, Some("linux/amd64"), Some("wasi/wasm"), Some("linux/arm64/v8")] {
            let want = p.map(|p| Platform::parse(p).expect("valid platform"));
            if let Some(d) = select_platform(&index, want.as_ref()) {
                assert!(index.manifests().contains(&d));
            }
        }
        for d in index.manifests() {
            let _ = ketch::image::store::digest_of(d.digest());
            let _ = ketch::image::store::ref_of(d);
        }
    }
    if let Ok(m) = serde_json::from_slice::<ImageManifest>(data) {
        for l in m.layers() {
            let p = ketch::image::layer::wasm_layer_path(l);
            assert!(p.starts_with('/') && !p[1..].contains('/') && p != "/.." && p != "/.");
            let _ = ketch::image::store::digest_of(l.digest());
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Platform::parse(s);
    }
});
