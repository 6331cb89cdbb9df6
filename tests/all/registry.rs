//! Pull and push against a real registry (Debian's `docker-registry`,
//! distribution 2.8) on 127.0.0.1, and against a scripted fake one for the
//! cases a real registry will not produce (Bearer tokens, lying or
//! breaking servers).

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A `docker-registry serve` on a free loopback port with its own storage.
pub(crate) struct Registry {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// A requirement (see `require!`): Err when docker-registry (or, for
    /// `htpasswd`, apache2-utils) is not installed.
    pub(crate) fn start(htpasswd: Option<(&str, &str)>) -> Result<Self, String> {
        tool("docker-registry", "installed by .ci/setup")?;
        if htpasswd.is_some() {
            tool("htpasswd", "apache2-utils, installed by .ci/setup")?;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let mut auth = String::new();
        if let Some((user, pass)) = htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apache2-utils) is needed for the auth tests");
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: basic-realm\n    path: {}\n",
                dir.path().join("htpasswd").display()
            );
        }
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n{auth}",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        wait_until(Duration::from_secs(20), "the registry to listen", || {
            TcpStream::connect(&addr).is_ok()
        });
        Ok(Registry {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run skopeo; it must succeed. Returns its stdout.
fn skopeo(args: &[&str]) -> String {
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The digest in push output's last line (`tag: digest: sha256:.. size: N`).
pub(crate) fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split("digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .expect("a digest line")
        .to_string()
}

#[test]
fn push_and_pull_wasm_images_by_tag_and_digest_with_mounts() {
    let reg = require!(Registry::start(None));
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let a = format!("{}/team/hello:v1", reg.addr);
    let b = format!("{}/other/hello:v1", reg.addr);
    d.ketch(&["tag", "hello", &a]).ok();
    let out = d.ketch(&["push", &a]).ok();
    assert!(out.contains("Pushed"), "{out}");
    let digest = pushed_digest(&out);
    // Pushed again: every blob is already there.
    let again = d.ketch(&["push", &a]).ok();
    assert!(
        again.contains("Layer already exists") && !again.contains("Pushed"),
        "{again}"
    );
    // Another repository of the same registry mounts instead of uploading.
    d.ketch(&["tag", "hello", &b]).ok();
    let mounted = d.ketch(&["push", &b]).ok();
    assert!(mounted.contains("Mounted from team/hello"), "{mounted}");

    // A fresh daemon pulls it by tag and by digest, and runs it.
    let fresh = TestDaemon::start();
    let out = fresh.ketch(&["pull", &a]).ok();
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    let run = fresh.ketch(&["run", "--rm", &a, "Ada"]);
    assert!(run.stdout.contains("Hello, Ada!"), "{}", run.stderr);
    let up = fresh.ketch(&["pull", &a]).ok();
    assert!(up.contains("Image is up to date"), "{up}");
    let by_digest = format!("{}/team/hello@{digest}", reg.addr);
    fresh.ketch(&["rmi", &a]).ok();
    fresh.ketch(&["pull", &by_digest]).ok();
    let run = fresh.ketch(&["run", "--rm", &by_digest, "Bo"]);
    assert!(run.stdout.contains("Hello, Bo!"), "{}", run.stderr);
}

#[test]
fn umoci_reads_the_store_after_a_pull() {
    let reg = require!(Registry::start(None));
    require!(tool("umoci", "installed by .ci/setup"));
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let name = format!("{}/team/hello:v1", reg.addr);
    d.ketch(&["tag", "hello", &name]).ok();
    d.ketch(&["push", &name]).ok();
    let fresh = TestDaemon::start();
    fresh.ketch(&["pull", &name]).ok();
    let o = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(fresh.root().join("image"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tags = String::from_utf8_lossy(&o.stdout);
    assert!(tags.contains(&name), "{tags}");
}

/// PUT a manifest (or index) into the registry.
fn put_manifest(addr: &str, repo: &str, tag: &str, media: &str, body: &[u8]) {
    let r = HttpConn::tcp(addr)
        .and_then(|mut c| {
            c.request(
                "PUT",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Content-Type", media)],
                body,
                false,
            )
        })
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
}

fn get_manifest(addr: &str, repo: &str, tag: &str) -> Vec<u8> {
    let r = HttpConn::tcp(addr)
        .and_then(|mut c| {
            c.request(
                "GET",
                &format!("/v2/{repo}/manifests/{tag}"),
                &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
                b"",
                false,
            )
        })
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

#[test]
fn an_index_is_resolved_to_the_platform_asked_for() {
    let reg = require!(Registry::start(None));
    let d = TestDaemon::start();
    example_image(&d, "hello");
    // A plain "Linux" image: an ordinary OCI image with a file in a layer.
    d.build(
        "linuxish",
        "FROM scratch\nCOPY motd /etc/motd\nCMD [\"/bin/sh\"]\n",
        &[("motd", b"hi\n")],
    )
    .ok();
    let wasm_ref = format!("{}/multi/app:wasm", reg.addr);
    let linux_ref = format!("{}/multi/app:linux", reg.addr);
    d.ketch(&["tag", "hello", &wasm_ref]).ok();
    d.ketch(&["tag", "linuxish", &linux_ref]).ok();
    d.ketch(&["push", &wasm_ref]).ok();
    d.ketch(&["push", &linux_ref]).ok();
    let entry = |tag: &str, os: &str, arch: &str| {
        let m = get_manifest(&reg.addr, "multi/app", tag);
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha256_hex(&m)),
            "size": m.len(),
            "platform": {"os": os, "architecture": arch},
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry("linux", "linux", "amd64"), entry("wasm", "wasip1", "wasm")],
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    put_manifest(
        &reg.addr,
        "multi/app",
        "both",
        "application/vnd.oci.image.index.v1+json",
        &index_bytes,
    );
    let both = format!("{}/multi/app:both", reg.addr);
    let fresh = TestDaemon::start();
    fresh
        .ketch(&["pull", "--platform", "wasi/wasm", &both])
        .ok();
    let run = fresh.ketch(&["run", "--rm", &both, "Ida"]);
    assert!(run.stdout.contains("Hello, Ida!"), "{}", run.stderr);
    // By the index's digest: found again under that name.
    let by_digest = format!("{}/multi/app@sha256:{}", reg.addr, sha256_hex(&index_bytes));
    fresh
        .ketch(&["pull", "--platform", "wasi/wasm", &by_digest])
        .ok();
    let run = fresh.ketch(&["run", "--rm", &by_digest, "Ivo"]);
    assert!(run.stdout.contains("Hello, Ivo!"), "{}", run.stderr);
    // Default: linux/amd64.
    let other = TestDaemon::start();
    other.ketch(&["pull", &both]).ok();
    assert_eq!(
        other
            .ketch(&["inspect", "-f", "{{.Os}}", &both])
            .ok()
            .trim(),
        "linux"
    );
    let r = other.ketch(&["pull", "--platform", "windows/amd64", &both]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("no matching manifest for windows/amd64"),
        "{}",
        r.stderr
    );
    // `/distribution/{name}/json`: the registry's descriptor and
    // platforms, nothing pulled.
    let fresh = TestDaemon::start();
    let (code, body) = fresh.http("GET", &format!("/distribution/{both}/json"), "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["Descriptor"]["digest"],
        format!("sha256:{}", sha256_hex(&index_bytes))
    );
    assert_eq!(v["Descriptor"]["size"], index_bytes.len());
    assert_eq!(
        v["Platforms"],
        serde_json::json!([{"architecture": "amd64", "os": "linux"}, {"architecture": "wasm", "os": "wasip1"}])
    );
    let (_, body) = fresh.http("GET", &format!("/distribution/{wasm_ref}/json"), "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Platforms"][0]["architecture"], "wasm", "{body}");
    let (code, body) = fresh.http(
        "GET",
        &format!("/distribution/{}/multi/app:nosuch/json", reg.addr),
        "",
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not found"), "{body}");
    // The same through the CLI.
    let cli: serde_json::Value =
        serde_json::from_str(&fresh.ketch(&["distribution", "inspect", &both]).ok()).unwrap();
    assert_eq!(
        cli["Descriptor"]["digest"],
        format!("sha256:{}", sha256_hex(&index_bytes))
    );
    assert_eq!(cli["Platforms"].as_array().map(Vec::len), Some(2), "{cli}");
    let missing = format!("{}/multi/app:nosuch", reg.addr);
    let r = fresh.ketch(&["distribution", "inspect", &missing]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
    assert_eq!(fresh.ketch(&["images", "-q"]).ok(), "");
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn interop_with_skopeo_both_ways_and_wasm_artifacts() {
    let reg = require!(Registry::start(None));
    require!(tool("skopeo", "installed by .ci/setup"));
    let d = TestDaemon::start();
    example_image(&d, "http-hello");
    // ketch's store -> registry, by skopeo; then ketch pulls it.
    let dest = format!("docker://{}/by-skopeo/hello:v1", reg.addr);
    let layout = format!(
        "oci:{}:docker.io/library/http-hello:latest",
        d.root().join("image").display()
    );
    skopeo(&["copy", "--dest-tls-verify=false", &layout, &dest]);
    let fresh = TestDaemon::start();
    let name = format!("{}/by-skopeo/hello:v1", reg.addr);
    fresh.ketch(&["pull", &name]).ok();
    assert!(fresh.ketch(&["images"]).ok().contains("by-skopeo/hello"));

    // ketch pushes a Wasm artifact; skopeo reads it back as one.
    let art = format!("{}/art/hello:v1", reg.addr);
    d.ketch(&["tag", "http-hello", &art]).ok();
    d.ketch(&["push", "--wasm-artifact", &art]).ok();
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{art}"),
    ]);
    assert!(raw.contains("application/vnd.wasm.config.v0+json"), "{raw}");
    assert!(raw.contains("\"application/wasm\""), "{raw}");

    // A Wasm artifact written by another tool (an OCI layout, copied in by
    // skopeo) pulls and runs.
    let dir = tempfile::tempdir().unwrap();
    write_wasm_artifact_layout(dir.path(), &std::fs::read(example("hello")).unwrap());
    let src = format!("oci:{}:v1", dir.path().display());
    let dest = format!("docker://{}/foreign/hello:v1", reg.addr);
    skopeo(&["copy", "--dest-tls-verify=false", &src, &dest]);
    let foreign = format!("{}/foreign/hello:v1", reg.addr);
    fresh.ketch(&["pull", &foreign]).ok();
    let run = fresh.ketch(&["run", "--rm", &foreign, "Eve"]);
    assert!(
        run.stdout.contains("Hello, Eve!"),
        "{} {}",
        run.stdout,
        run.stderr
    );

    // Docker schema 2 manifests (skopeo --format v2s2) pull and run too.
    let v2 = format!("{}/v2s2/hello:v1", reg.addr);
    skopeo(&[
        "copy",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        &format!(
            "oci:{}:docker.io/library/http-hello:latest",
            d.root().join("image").display()
        ),
        &format!("docker://{v2}"),
    ]);
    let fresh2 = TestDaemon::start();
    fresh2.ketch(&["pull", &v2]).ok();
    let index = std::fs::read_to_string(fresh2.root().join("image/index.json")).unwrap();
    assert!(
        index.contains("application/vnd.docker.distribution.manifest.v2+json"),
        "{index}"
    );
    fresh2.ketch(&["run", "-d", "--name", "v2", &v2]).ok();

    // And skopeo copies what ketch pushed out to an OCI directory.
    let out = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{art}"),
        &format!("oci:{}:v1", out.path().display()),
    ]);
}

/// An OCI layout holding `module` as a CNCF Wasm artifact, tagged `v1`.
fn write_wasm_artifact_layout(dir: &Path, module: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |b: &[u8]| {
        let h = sha256_hex(b);
        std::fs::write(blobs.join(&h), b).unwrap();
        format!("sha256:{h}")
    };
    let layer = put(module);
    let config = serde_json::to_vec(&serde_json::json!({
        "created": "2024-01-01T00:00:00Z", "author": "another tool",
        "architecture": "wasm", "os": "wasip1", "layerDigests": [layer],
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/wasm", "digest": layer, "size": module.len(),
                    "annotations": {"org.opencontainers.image.title": "hello.wasm"}}],
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": manifest_digest, "size": manifest.len(),
                           "annotations": {"org.opencontainers.image.ref.name": "v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
}

#[test]
fn login_push_pull_with_basic_auth_and_clear_failures() {
    let reg = require!(Registry::start(Some(("ada", "s3cret"))));
    let d = TestDaemon::start();
    example_image(&d, "hello");
    let name = format!("{}/private/hello:v1", reg.addr);
    d.ketch(&["tag", "hello", &name]).ok();
    let r = d.ketch(&["push", &name]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);

    let r = d.ketch_stdin(
        &["login", "-u", "ada", "--password-stdin", &reg.addr],
        b"wrong\n",
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
    assert!(
        !d.config_dir().join("config.json").exists(),
        "a failed login stored credentials"
    );

    let r = d.ketch_stdin(
        &["login", "-u", "ada", "--password-stdin", &reg.addr],
        b"s3cret\n",
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("Login Succeeded"));
    let cfg = d.config_dir().join("config.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        text.contains(&reg.addr) && !text.contains("s3cret"),
        "{text}"
    );

    d.ketch(&["push", &name]).ok();
    d.ketch(&["rmi", &name]).ok();
    d.ketch(&["pull", &name]).ok();
    assert!(d.ketch(&["run", "--rm", &name]).stdout.contains("Hello"));

    assert!(d
        .ketch(&["logout", &reg.addr])
        .ok()
        .contains("Removing login credentials"));
    d.ketch(&["rmi", &name]).ok();
    let r = d.ketch(&["pull", &name]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unauthorized"), "{}", r.stderr);
}

#[test]
fn bad_references_and_missing_repositories_name_the_object() {
    let reg = require!(Registry::start(None));
    let d = TestDaemon::start();
    let r = d.ketch(&["pull", "Not/Valid:ref"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("invalid reference format"),
        "{}",
        r.stderr
    );
    let missing = format!("{}/nobody/here:v9", reg.addr);
    let r = d.ketch(&["pull", &missing]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains(&format!("manifest for {missing} not found")),
        "{}",
        r.stderr
    );
    let (status, body) = d.http(
        "POST",
        &format!("/images/create?fromImage={}/nobody/here&tag=v9", reg.addr),
        "",
    );
    assert_eq!(status, 404, "{body}");
    let r = d.ketch(&["push", &format!("{}/never/built:v1", reg.addr)]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr
            .contains("An image does not exist locally with the tag"),
        "{}",
        r.stderr
    );
}

/// A scripted registry: Bearer auth with a token endpoint, one image, and
/// a blob it can corrupt, truncate or cut off mid-transfer.
#[derive(Clone, Copy, PartialEq)]
enum Blob {
    Honest,
    /// Wrong bytes of the right length.
    Lying,
    /// Every answer stops half way (Content-Length says so).
    Truncated,
    /// The first answer breaks off half way; Range requests are honoured.
    BreaksOnce,
}

struct Fake {
    port: u16,
    ranges: Arc<Mutex<Vec<String>>>,
}

fn fake_registry(module: Vec<u8>, mode: Blob) -> Fake {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let layer = {
        // One tar layer holding /hello.wasm.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(module.len() as u64);
        h.set_mode(0o755);
        h.set_cksum();
        b.append_data(&mut h, "hello.wasm", &module[..]).unwrap();
        b.into_inner().unwrap()
    };
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "wasm", "os": "wasip1",
        "config": {"Entrypoint": ["/hello.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(&layer))]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{}", sha256_hex(&config)), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", sha256_hex(&layer)), "size": layer.len()}],
    }))
    .unwrap();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        let mut broke = false;
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let (mut auth, mut range) = (String::new(), None);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap_or((&h, ""));
                match k.to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_string(),
                    "range" => range = Some(v.trim().to_string()),
                    _ => {}
                }
            }
            let reply = |s: &mut TcpStream,
                         status: &str,
                         headers: &str,
                         body: &[u8],
                         len: usize| {
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n{headers}\r\n");
                let _ = s.write_all(body);
            };
            if path.starts_with("/token") {
                // Basic user:pw from the CLI config is not set up here: an
                // anonymous token, as public registries hand out.
                let body = br#"{"token":"t0k3n"}"#;
                reply(
                    &mut s,
                    "200 OK",
                    "Content-Type: application/json\r\n",
                    body,
                    body.len(),
                );
                continue;
            }
            if auth != "Bearer t0k3n" {
                let h = format!("WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"fake\",scope=\"repository:app:pull\"\r\n");
                reply(&mut s, "401 Unauthorized", &h, b"", 0);
                continue;
            }
            if path == "/v2/app/manifests/v1" {
                reply(
                    &mut s,
                    "200 OK",
                    "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                    &manifest,
                    manifest.len(),
                );
            } else if path.ends_with(&sha256_hex(&config)) {
                reply(&mut s, "200 OK", "", &config, config.len());
            } else if path.ends_with(&sha256_hex(&layer)) {
                let half = layer.len() / 2;
                match mode {
                    Blob::Honest => reply(&mut s, "200 OK", "", &layer, layer.len()),
                    Blob::Lying => {
                        let mut bad = layer.clone();
                        bad[half] ^= 0xff;
                        reply(&mut s, "200 OK", "", &bad, bad.len())
                    }
                    Blob::Truncated => reply(&mut s, "200 OK", "", &layer[..half], half),
                    Blob::BreaksOnce => match range {
                        Some(rg) => {
                            seen.lock().unwrap().push(rg.clone());
                            let from: usize = rg
                                .trim_start_matches("bytes=")
                                .trim_end_matches('-')
                                .parse()
                                .unwrap();
                            let h = format!(
                                "Content-Range: bytes {from}-{}/{}\r\n",
                                layer.len() - 1,
                                layer.len()
                            );
                            reply(
                                &mut s,
                                "206 Partial Content",
                                &h,
                                &layer[from..],
                                layer.len() - from,
                            )
                        }
                        None if !broke => {
                            broke = true;
                            // Promise everything, send half, hang up.
                            reply(&mut s, "200 OK", "", &layer[..half], layer.len());
                        }
                        None => reply(&mut s, "200 OK", "", &layer, layer.len()),
                    },
                }
            } else {
                reply(&mut s, "404 Not Found", "", b"", 0);
            }
        }
    });
    Fake { port, ranges }
}

#[test]
fn a_pull_behind_a_bearer_token_service() {
    let module = std::fs::read(example("hello")).unwrap();
    let f = fake_registry(module, Blob::Honest);
    let d = TestDaemon::start();
    let name = format!("127.0.0.1:{}/app:v1", f.port);
    d.ketch(&["pull", &name]).ok();
    assert!(d
        .ketch(&["run", "--rm", &name, "Tok"])
        .stdout
        .contains("Hello, Tok!"));
}

#[test]
fn a_download_broken_off_resumes_with_a_range_request() {
    let module = std::fs::read(example("hello")).unwrap();
    let f = fake_registry(module, Blob::BreaksOnce);
    let name = format!("127.0.0.1:{}/app:v1", f.port);
    let d = TestDaemon::start();
    d.ketch(&["pull", &name]).ok();
    assert_eq!(f.ranges.lock().unwrap().len(), 1, "no resumed request");
    assert!(d.ketch(&["run", "--rm", &name]).stdout.contains("Hello"));
}

/// A pull from a server whose layer blob is bad fails with `expect` in
/// its error, and stores nothing.
fn refused_and_nothing_stored(mode: Blob, expect: &str) {
    let module = std::fs::read(example("hello")).unwrap();
    let f = fake_registry(module, mode);
    let d = TestDaemon::start();
    let name = format!("127.0.0.1:{}/app:v1", f.port);
    let r = d.ketch(&["pull", &name]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains(expect), "{}", r.stderr);
    assert_eq!(d.ketch(&["images", "-q"]).ok(), "");
    let ingest: Vec<_> = std::fs::read_dir(d.root().join("image/ingest"))
        .unwrap()
        .collect();
    assert!(ingest.is_empty(), "partial blobs left: {ingest:?}");
    // The config blob alone may have arrived; prune clears it.
    d.ketch(&["image", "prune", "-f"]).ok();
    let blobs: Vec<_> = std::fs::read_dir(d.root().join("image/blobs/sha256"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "blobs left: {blobs:?}");
}

#[test]
fn a_blob_with_the_wrong_bytes_fails_verification() {
    refused_and_nothing_stored(Blob::Lying, "failed verification");
}

#[test]
fn a_truncated_blob_is_refused() {
    refused_and_nothing_stored(Blob::Truncated, "sent only");
}

#[test]
fn docker_hub_names_are_served_by_a_registry_mirror() {
    let reg = require!(Registry::start(None));
    let d = TestDaemon::start();
    example_image(&d, "hello");
    // The mirror holds docker.io/library/mirrored:v1 as library/mirrored:v1.
    let on_mirror = format!("{}/library/mirrored:v1", reg.addr);
    d.ketch(&["tag", "hello", &on_mirror]).ok();
    d.ketch(&["push", &on_mirror]).ok();
    let mirror = format!("http://{}", reg.addr);
    let m = TestDaemon::start_with(&["--registry-mirror", &mirror]);
    let out = m.ketch(&["pull", "mirrored:v1"]).ok();
    assert!(
        out.contains("Status: Downloaded newer image for mirrored:v1"),
        "{out}"
    );
    assert!(m
        .ketch(&["run", "--rm", "mirrored:v1", "Mo"])
        .stdout
        .contains("Hello, Mo!"));
}
