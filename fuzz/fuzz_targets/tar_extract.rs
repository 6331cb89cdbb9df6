//! The tar extraction policy: whatever the archive, extraction into a
//! root never writes, removes or marks anything outside it.
#![no_main]

use ketch::confine::archive::{extract, Kind, Limits, Policy, Target};
use ketch::confine::Root;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

/// Every name below `dir` (depth first), with its kind and size.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let m = std::fs::symlink_metadata(&p).expect("lstat");
            out.push((p.display().to_string(), format!("{:?} {}", m.file_type(), m.len())));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let top = tempfile::tempdir().expect("tempdir");
    let outside = top.path().join("outside");
    std::fs::create_dir_all(outside.join("dir")).expect("mkdir");
    std::fs::write(outside.join("file"), b"keep").expect("write");
    std::fs::create_dir_all(top.path().join("root")).expect("mkdir");
    // An existing link in the root that leads out, as a container may have.
    std::os::unix::fs::symlink(&outside, top.path().join("root/out")).expect("symlink");
    let before = snapshot(&outside);
    let limits = Limits {
        max_bytes: 1 << 20,
        max_entries: 256,
        max_entry_bytes: 1 << 20,
        max_ratio: 200,
        ratio_floor: 1 << 20,
    };
    let root = Root::open(&top.path().join("root")).expect("root");
    for kind in [Kind::Layer, Kind::Copy, Kind::Context] {
        for target in [Target::Fresh, Target::Existing] {
            let _ = extract(
                &root,
                &mut || Ok(Box::new(data) as Box<dyn std::io::Read>),
                &Policy { kind, limits },
                target,
            );
            assert_eq!(snapshot(&outside), before, "{kind:?} {target:?} wrote outside");
            let names: Vec<_> = std::fs::read_dir(top.path())
                .expect("top")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(names.len(), 2, "something appeared beside the root: {names:?}");
        }
    }
});
