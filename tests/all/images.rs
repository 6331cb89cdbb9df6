//! Images: build (Dockerfile features, determinism, errors), tag, rmi,
//! save/load, and the on-disk OCI layout.

use crate::common::*;

#[test]
fn build_is_deterministic_and_honours_dockerfile_features() {
    let d = TestDaemon::start();
    let wasm = wat::parse_str(HELLO_WAT).unwrap();
    let df = "# syntax=docker/dockerfile:1\nARG BASE=scratch\nFROM ${BASE} AS base\nARG VERSION=1\nENV APP=/app \\\n    MODE=\"fast mode\"\nWORKDIR $APP\nCOPY *.wasm ./\nCOPY dir/ /data/\nLABEL version=$VERSION team=\"wasm folks\"\nEXPOSE 8080/tcp\nUSER 1000\nENTRYPOINT [\"/app/m.wasm\"]\nCMD --flag\n";
    let files: &[(&str, &[u8])] = &[
        ("m.wasm", &wasm),
        ("dir/a.txt", b"a"),
        ("secret.txt", b"ss"),
        (".dockerignore", b"secret.txt\n"),
    ];
    let ctx = tempfile::tempdir().unwrap();
    write_context(ctx.path(), df, files);
    let p = ctx.path().to_str().unwrap();
    let id1 = d
        .ketch(&["build", "-q", "-t", "app:v1", "--build-arg", "VERSION=2", p])
        .ok();
    let id2 = d
        .ketch(&["build", "-q", "-t", "app:v2", "--build-arg", "VERSION=2", p])
        .ok();
    assert_eq!(id1, id2, "same context, same image id");
    assert!(id1.starts_with("sha256:"));
    let insp: serde_json::Value =
        serde_json::from_str(&d.ketch(&["inspect", "app:v1"]).ok()).unwrap();
    let c = &insp[0]["Config"];
    assert_eq!(c["Env"], serde_json::json!(["APP=/app", "MODE=fast mode"]));
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["Labels"]["version"], "2");
    assert_eq!(c["Labels"]["team"], "wasm folks");
    assert_eq!(c["User"], "1000");
    assert_eq!(c["Cmd"], serde_json::json!(["/bin/sh", "-c", "--flag"]));
    assert!(c["ExposedPorts"]["8080/tcp"].is_object());
    // The image's files: ignored ones are absent.
    let out = d.dir.path().join("app.tar");
    d.ketch(&["save", "-o", out.to_str().unwrap(), "app:v1"])
        .ok();
    let names = layer_paths(&out);
    assert!(names.contains(&"app/m.wasm".to_string()), "{names:?}");
    assert!(names.contains(&"data/a.txt".to_string()), "{names:?}");
    assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");
    // ARG changes change the id.
    let id3 = d
        .ketch(&["build", "-q", "--build-arg", "VERSION=3", p])
        .ok();
    assert_ne!(id1, id3);
}

/// Paths in every layer of a saved archive.
fn layer_paths(archive: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if data.starts_with(&[0x1f, 0x8b]) {
            let mut layer = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
            for le in layer.entries().unwrap() {
                out.push(
                    le.unwrap()
                        .path()
                        .unwrap()
                        .to_string_lossy()
                        .trim_end_matches('/')
                        .to_string(),
                );
            }
        }
    }
    out
}

#[test]
fn dockerfile_errors_name_the_line() {
    let d = TestDaemon::start();
    let r = d.build("xx", "FROM scratch\n\nFROBNICATE it\n", &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("dockerfile line 3: unknown instruction: FROBNICATE"),
        "{}",
        r.stderr
    );
    let r = d.build("xx", "FROM scratch\nCOPY missing.wasm /\n", &[]);
    assert!(
        r.stderr.contains("dockerfile line 2") && r.stderr.contains("missing.wasm"),
        "{}",
        r.stderr
    );
    let r = d.build("xx", "FROM scratch\nRUN echo hi\n", &[]);
    assert!(
        r.stderr.contains("dockerfile line 2") && r.stderr.contains("RUN"),
        "{}",
        r.stderr
    );
    let r = d.build("xx", "FROM nosuchimage\n", &[]);
    assert!(
        r.stderr.contains("No such image: nosuchimage"),
        "{}",
        r.stderr
    );
    let r = d.build("Bad:Tag", "FROM scratch\n", &[]);
    assert!(
        r.stderr.contains("invalid reference format"),
        "{}",
        r.stderr
    );
    assert_eq!(
        d.ketch(&["images", "-q"]).ok(),
        "",
        "failed builds leave no image"
    );
}

#[test]
fn build_from_local_image_and_multi_stage() {
    let d = TestDaemon::start();
    d.wat_image("base", HELLO_WAT);
    let r = d.build("derived", "FROM base\nENV X=1\n", &[]);
    r.ok();
    assert_eq!(
        d.ketch(&["run", "--rm", "derived"]).stdout,
        "hello from wat\n"
    );
    let wasm = wat::parse_str(HELLO_WAT).unwrap();
    d.build("ms", "FROM scratch AS build\nCOPY m.wasm /out/app.wasm\nFROM scratch\nCOPY --from=build /out/app.wasm /app.wasm\nENTRYPOINT [\"/app.wasm\"]\n", &[("m.wasm", &wasm)]).ok();
    assert_eq!(d.ketch(&["run", "--rm", "ms"]).code, 3);
    // With no platform asked for, a Wasm entrypoint makes the image
    // wasi/wasm (and the build says so); a Linux program leaves it alone,
    // and --platform always wins.
    let r = d.build(
        "plat",
        "FROM scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
        &[("m.wasm", &wasm)],
    );
    let out = r.ok();
    assert!(
        out.contains("Wasm entrypoint /m.wasm: the image's platform is wasi/wasm"),
        "{out}"
    );
    let platform = |image: &str| {
        d.ketch(&["inspect", "-f", "{{.Os}}/{{.Architecture}}", image])
            .ok()
            .trim()
            .to_string()
    };
    assert_eq!(platform("plat"), "wasi/wasm");
    d.build(
        "elf",
        "FROM scratch\nCOPY sh /sh\nCMD [\"/sh\"]\n",
        &[("sh", b"\x7fELF\x02\x01\x01")],
    )
    .ok();
    assert!(platform("elf").starts_with("linux/"), "{}", platform("elf"));
    let out = d
        .build(
            "pinned",
            "FROM --platform=linux/arm64 scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
            &[("m.wasm", &wasm)],
        )
        .ok();
    assert!(!out.contains("Wasm entrypoint"), "{out}");
    assert_eq!(platform("pinned"), "linux/arm64");
    let ctx = tempfile::tempdir().unwrap();
    write_context(
        ctx.path(),
        "FROM scratch\nCOPY m.wasm /m.wasm\nENTRYPOINT [\"/m.wasm\"]\n",
        &[("m.wasm", &wasm)],
    );
    d.ketch(&[
        "build",
        "--platform",
        "wasi/wasm",
        "-t",
        "ww",
        ctx.path().to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.Os}}/{{.Architecture}}", "ww"])
            .ok()
            .trim(),
        "wasi/wasm"
    );
}

#[test]
fn tag_rmi_and_references() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    d.ketch(&["tag", "hello", "localhost:5000/team/hello:v1"])
        .ok();
    let images = d.ketch(&["images"]).ok();
    assert!(
        images.contains("localhost:5000/team/hello   v1"),
        "{images}"
    );
    assert!(
        images.contains("hello                       latest"),
        "{images}"
    );
    assert_eq!(
        d.ketch(&["images", "-q"]).ok().lines().count(),
        1,
        "one image, two names"
    );
    let r = d.ketch(&["run", "--rm", "Hello"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr
            .contains("invalid reference format: repository name (Hello) must be lowercase"),
        "{}",
        r.stderr
    );
    let r = d.ketch(&["run", "--rm", "nosuch:tag"]);
    assert_eq!(r.code, 125);
    assert!(
        r.stderr.contains("No such image: nosuch:tag"),
        "{}",
        r.stderr
    );
    // In use by a container: refused without -f.
    d.ketch(&["create", "--name", "cc", "hello"]).ok();
    let out = d.ketch(&["rmi", "localhost:5000/team/hello:v1"]).ok();
    assert_eq!(out.trim(), "Untagged: localhost:5000/team/hello:v1");
    let r = d.ketch(&["rmi", "hello"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("conflict: unable to remove repository reference"),
        "{}",
        r.stderr
    );
    d.ketch(&["rm", "cc"]).ok();
    let out = d.ketch(&["rmi", "hello"]).ok();
    assert!(
        out.contains("Untagged: hello:latest") && out.contains("Deleted: sha256:"),
        "{out}"
    );
    assert_eq!(d.ketch(&["images", "-q"]).ok(), "");
    // Only the empty layout is left behind.
    let blobs = std::fs::read_dir(d.root().join("image/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "rmi garbage-collected every blob");
}

#[test]
fn save_load_roundtrip_and_oci_layout() {
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let root = d.root().join("image");
    assert!(root.join("oci-layout").exists() && root.join("index.json").exists());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "docker.io/library/hello:latest"
    );
    let archive = d.dir.path().join("hello.tar");
    d.ketch(&["save", "-o", archive.to_str().unwrap(), "hello"])
        .ok();
    let id = d.ketch(&["images", "-q"]).ok();
    d.ketch(&["rmi", "hello"]).ok();
    let out = d.ketch(&["load", "-i", archive.to_str().unwrap()]).ok();
    assert_eq!(out.trim(), "Loaded image: hello:latest");
    assert_eq!(d.ketch(&["images", "-q"]).ok(), id);
    assert_eq!(d.ketch(&["run", "--rm", "hello"]).code, 3);
    // A corrupt archive is refused and leaves no blob half-written.
    let bad = d.dir.path().join("bad.tar");
    let mut data = std::fs::read(&archive).unwrap();
    // Flip a byte inside the (gzip) layer blob.
    let pos = data
        .windows(3)
        .position(|w| w == [0x1f, 0x8b, 0x08])
        .expect("a gzip layer in the archive");
    data[pos + 40] ^= 0xff;
    std::fs::write(&bad, &data).unwrap();
    d.ketch(&["rmi", "hello"]).ok();
    let r = d.ketch(&["load", "-i", bad.to_str().unwrap()]);
    // The module lives in a gzip layer, so corruption shows as a digest mismatch
    // of that layer (or as a decompression error); either way a clear error.
    if r.code == 0 {
        panic!("corrupt archive loaded: {}", r.stdout);
    }
    assert!(
        r.stderr.contains("sha256:") || r.stderr.contains("invalid archive"),
        "{}",
        r.stderr
    );
    assert_eq!(std::fs::read_dir(root.join("ingest")).unwrap().count(), 0);
}

#[test]
fn skopeo_reads_the_store_as_an_oci_layout() {
    require!(tool("skopeo", "installed by .ci/setup"));
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let o = std::process::Command::new("skopeo")
        .arg("inspect")
        .arg(format!(
            "oci:{}:docker.io/library/hello:latest",
            d.root().join("image").display()
        ))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // It finds the very manifest the store's index names, and its layer.
    let seen: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.root().join("image/index.json")).unwrap()).unwrap();
    assert_eq!(seen["Digest"], index["manifests"][0]["digest"], "{seen}");
    assert_eq!(seen["Layers"].as_array().map(Vec::len), Some(1), "{seen}");
}

#[test]
fn umoci_lists_the_stores_tags() {
    require!(tool("umoci", "installed by .ci/setup"));
    let d = TestDaemon::start();
    d.wat_image("hello", HELLO_WAT);
    let o = std::process::Command::new("umoci")
        .arg("ls")
        .arg("--layout")
        .arg(d.root().join("image"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "docker.io/library/hello:latest"
    );
}

/// The peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kb << 10
}

/// An import is written again as a layer through files, not memory: a
/// root filesystem far larger than the growth allowed here raises
/// ketchd's peak memory by little.
#[test]
fn an_import_larger_than_memory_allows_is_streamed() {
    require!(linux());
    let d = TestDaemon::start();
    const BIG: u64 = 384 << 20;
    let tar_path = d.dir.path().join("big.tar");
    {
        let mut b = tar::Builder::new(std::io::BufWriter::new(
            std::fs::File::create(&tar_path).unwrap(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(BIG);
        h.set_mode(0o644);
        b.append_data(&mut h, "big", std::io::Read::take(std::io::repeat(7), BIG))
            .unwrap();
        b.into_inner().unwrap();
    }
    let before = peak_rss(d.pid());
    // The CLI streams it too, from a file and from stdin: its own peak
    // memory (python's getrusage of its child) stays small.
    let cli_peak = |source: &str, tag: &str| -> u64 {
        let script = "import resource, subprocess, sys\n\
            cmd, src = sys.argv[1:-1], sys.argv[-1]\n\
            stdin = open(src, 'rb') if src != '-' else subprocess.DEVNULL\n\
            subprocess.run(cmd, stdin=stdin, check=True, stdout=subprocess.DEVNULL)\n\
            print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
        let cmd = d.ketch_cmd(&["import", source, tag]);
        let mut py = std::process::Command::new("python3");
        py.arg("-c").arg(script).arg(cmd.get_program());
        py.args(cmd.get_args());
        py.arg(if source == "-" {
            tar_path.to_str().unwrap()
        } else {
            "-"
        });
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                py.env(k, v);
            }
        }
        let out = py.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .unwrap()
            << 10
    };
    for (source, tag) in [(tar_path.to_str().unwrap(), "big:1"), ("-", "big:stdin")] {
        let peak = cli_peak(source, tag);
        assert!(
            peak < 96 << 20,
            "ketch import {source}: the CLI's peak memory was {} MiB for a {} MiB layer",
            peak >> 20,
            BIG >> 20
        );
    }
    let grew = peak_rss(d.pid()).saturating_sub(before);
    assert!(
        grew < 128 << 20,
        "ketchd's peak memory grew by {} MiB importing a {} MiB layer",
        grew >> 20,
        BIG >> 20
    );
    let ids = d.ketch(&["images", "-q", "big"]).ok();
    assert_eq!(ids.lines().count(), 2, "one image per import: {ids}");
    let size = d
        .ketch(&["image", "inspect", "-f", "{{.Size}}", "big:1"])
        .ok();
    assert!(size.trim().parse::<u64>().unwrap() > 0, "{size}");
    std::fs::remove_file(&tar_path).unwrap();
    d.ketch(&["rmi", "big:1", "big:stdin"]).ok();
}
