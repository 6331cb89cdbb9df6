//! The adversarial tier: one test per class of attack in docs/security.md,
//! written as an attacker would (the hostile tar, image, context, guest or
//! client is made here), with the assertions on the host side: files
//! intact, ketchd alive, other containers untouched.
//!
//! The descriptor-exhaustion class is in `limits.rs`; the hostile registry
//! in `image::registry`'s unit tests (a hostile server on loopback).

use crate::common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tar entry with a raw name, as a hostile tool writes it.
fn entry(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o755
    } else {
        0o644
    });
    h.set_mtime(0);
    let raw = &mut h.as_old_mut().name;
    raw.fill(0);
    raw[..name.len()].copy_from_slice(name.as_bytes());
    if !link.is_empty() {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// A gzipped tar holding one file of `size` zeros: a decompression bomb
/// (300 MiB compress to about 300 KiB).
fn zero_bomb(size: u64) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut b = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_path("zeros").unwrap();
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(size)).unwrap();
        b.finish().unwrap();
    }
    gz.finish().unwrap()
}

/// An OCI image archive (for `ketch load`) of a Linux image whose only
/// layer is `layer` (an uncompressed tar), tagged `tag`.
fn oci_archive(tag: &str, layer: &[u8]) -> Vec<u8> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let blob = gzip(layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256_hex(layer))]},
    }))
    .unwrap();
    let desc = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", sha256_hex(data)), "size": data.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", &blob)],
    }))
    .unwrap();
    let mut m = desc("application/vnd.oci.image.manifest.v1+json", &manifest);
    m["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
    let index =
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [m]})).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".into(), index),
        (
            format!("blobs/sha256/{}", sha256_hex(&config)),
            config.clone(),
        ),
        (
            format!("blobs/sha256/{}", sha256_hex(&manifest)),
            manifest.clone(),
        ),
        (format!("blobs/sha256/{}", sha256_hex(&blob)), blob.clone()),
    ];
    for (name, data) in files {
        entry(&mut b, tar::EntryType::Regular, &name, "", &data);
    }
    b.into_inner().unwrap()
}

fn load(d: &TestDaemon, archive: &[u8]) {
    let f = d.dir.path().join("load.tar");
    std::fs::write(&f, archive).unwrap();
    d.ketch(&["load", "-i", f.to_str().unwrap()]).ok();
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn has_opaque(p: &Path) -> bool {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut v = [0u8; 4];
    // SAFETY: NUL-terminated strings and a buffer of the given size.
    unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            v.as_mut_ptr().cast(),
            v.len(),
        ) >= 0
    }
}

/// POST a binary body to the API: the status and the body. ketchd may
/// answer (and close) before taking the whole upload, so a failed send is
/// not an error: the answer is what counts.
fn post(d: &TestDaemon, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut c = d.api().expect("connect to the API");
    let _ = c.send("POST", path, &[("Content-Type", content_type)], body, false);
    let r = c.read_response().expect("an answer to the upload");
    (r.status, r.text())
}

fn alive(d: &TestDaemon) {
    assert_eq!(d.http("GET", "/_ping", "").0, 200, "ketchd died");
}

/// Class 1 and 2: a layer's whiteouts and opaque markers stay inside it.
#[test]
fn hostile_layers_cannot_reach_the_snapshot_store_or_the_host() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    d.ketch(&["run", "--rm", "busybox", "true"]).ok();
    let snaps = d.root().join("snapshots");
    let before = names(&snaps);
    assert!(!before.is_empty());

    // `.wh.` + `..` once removed the layer's parent: the snapshot store.
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, tar::EntryType::Regular, "bin/x", "", b"x");
    entry(&mut b, tar::EntryType::Regular, ".wh...", "", b"");
    load(
        &d,
        &oci_archive("evil-whiteout:1", &b.into_inner().unwrap()),
    );
    let r = d.ketch(&["run", "--rm", "evil-whiteout:1", "/bin/x"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("names nothing inside the layer"),
        "{}",
        r.stderr
    );
    assert_eq!(names(&snaps), before, "the snapshot store is untouched");
    d.ketch(&["run", "--rm", "busybox", "true"]).ok();

    // An opaque marker whose directory is then replaced by a symlink to
    // a host directory: the xattr must not land there.
    let victim = d.dir.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), b"precious").unwrap();
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, tar::EntryType::Directory, "d/", "", b"");
    entry(&mut b, tar::EntryType::Regular, "d/.wh..wh..opq", "", b"");
    entry(
        &mut b,
        tar::EntryType::Symlink,
        "d",
        victim.to_str().unwrap(),
        b"",
    );
    entry(&mut b, tar::EntryType::Directory, "e/", "", b"");
    entry(&mut b, tar::EntryType::Regular, "e/.wh..wh..opq", "", b"");
    load(&d, &oci_archive("evil-opaque:1", &b.into_inner().unwrap()));
    let _ = d.ketch(&["run", "--rm", "evil-opaque:1", "/nothing"]);
    assert!(
        !has_opaque(&victim),
        "opaque xattr landed on a host directory"
    );
    assert!(!has_opaque(d.dir.path()));
    assert_eq!(std::fs::read(victim.join("keep")).unwrap(), b"precious");
    alive(&d);
}

/// Class 1 (cp into a container) and 3 (cp out to the host): whiteout
/// names are plain names outside image layers.
#[test]
fn cp_never_interprets_whiteouts_in_either_direction() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    d.ketch(&["volume", "create", "vol"]).ok();
    d.ketch(&[
        "run", "-d", "--name", "cpc", "-v", "vol:/data", "busybox", "sh", "-c",
        "echo keep > /data/keep; mkdir -p /out/sub; touch /out/.wh... /out/sub/.wh..wh..opq; sleep 100",
    ])
    .ok();
    d.eventually(10, "the container's files", || {
        d.ketch(&["exec", "cpc", "ls", "/out/.wh..."]).code == 0
    });

    // Into the volume: `.wh...` once emptied it.
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, tar::EntryType::Regular, ".wh...", "", b"plain");
    d.ketch_stdin(&["cp", "-", "cpc:/data"], &b.into_inner().unwrap())
        .ok();
    assert_eq!(
        d.ketch(&["exec", "cpc", "cat", "/data/keep"]).ok(),
        "keep\n"
    );
    assert_eq!(
        d.ketch(&["exec", "cpc", "cat", "/data/.wh..."]).ok(),
        "plain"
    );

    // Out to the host: `.wh...` in the container once wiped the
    // destination directory (or its parent).
    let host = d.dir.path().join("host");
    std::fs::create_dir_all(host.join("dest")).unwrap();
    std::fs::write(host.join("dest/precious"), b"mine").unwrap();
    std::fs::write(host.join("beside"), b"mine too").unwrap();
    d.ketch(&["cp", "cpc:/out", host.join("dest").to_str().unwrap()])
        .ok();
    assert_eq!(std::fs::read(host.join("dest/precious")).unwrap(), b"mine");
    assert_eq!(std::fs::read(host.join("beside")).unwrap(), b"mine too");
    assert!(host.join("dest/out/.wh...").is_file());
    assert!(host.join("dest/out/sub/.wh..wh..opq").is_file());
    assert!(!has_opaque(&host.join("dest/out/sub")));
    d.ketch(&["rm", "-f", "cpc"]).ok();
}

/// Class 4: symlinks in a build context (and a symlinked Dockerfile)
/// resolve inside the context only; host files never reach an image or
/// an error message.
#[test]
fn build_contexts_cannot_read_the_host() {
    let d = TestDaemon::start();
    let host = d.dir.path().join("host-secrets");
    std::fs::create_dir_all(&host).unwrap();
    let secret = "TOPSECRET-7f3a";
    std::fs::write(host.join("secret.txt"), secret).unwrap();
    std::fs::write(
        host.join("Dockerfile"),
        format!("FROM scratch\nLABEL s={secret}\nBAD {secret}\n"),
    )
    .unwrap();

    let try_build = |dockerfile: Option<&str>, links: &[(&str, &Path)]| {
        let ctx = tempfile::tempdir().unwrap();
        if let Some(df) = dockerfile {
            std::fs::write(ctx.path().join("Dockerfile"), df).unwrap();
        }
        std::fs::write(ctx.path().join("inside.txt"), b"inside").unwrap();
        for (name, target) in links {
            std::os::unix::fs::symlink(target, ctx.path().join(name)).unwrap();
        }
        d.ketch(&["build", "-t", "ctx-test", ctx.path().to_str().unwrap()])
    };
    for (df, link, target) in [
        (
            "FROM scratch\nCOPY link/secret.txt /s\n",
            "link",
            host.as_path(),
        ),
        (
            "FROM scratch\nCOPY secretlink /s\n",
            "secretlink",
            &host.join("secret.txt"),
        ),
    ] {
        let r = try_build(Some(df), &[(link, target)]);
        assert_ne!(r.code, 0, "a host file was copied into an image");
        assert!(
            r.stderr.contains("not found in build context"),
            "{}",
            r.stderr
        );
        assert!(!r.stdout.contains(secret) && !r.stderr.contains(secret));
    }
    // The Dockerfile itself a symlink to a host file.
    let r = try_build(None, &[("Dockerfile", &host.join("Dockerfile"))]);
    assert_ne!(r.code, 0);
    assert!(
        !r.stdout.contains(secret) && !r.stderr.contains(secret),
        "{}",
        r.stderr
    );
    // A link inside the context is followed, inside it.
    let r = try_build(
        Some("FROM scratch\nCOPY inlink /s\n"),
        &[("inlink", Path::new("/inside.txt"))],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    alive(&d);
}

/// Class 5: `USER` and `--user` read the image's own passwd and group,
/// bounded, never a host file (and never endlessly from `/dev/zero`).
#[test]
fn user_lookups_read_only_the_image() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    let host_group = d.dir.path().join("group");
    std::fs::write(&host_group, "staff:x:4242:\n").unwrap();
    let ctx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ctx.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", ctx.path().join("etc/passwd")).unwrap();
    std::os::unix::fs::symlink(&host_group, ctx.path().join("etc/group")).unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox\nCOPY etc /etc\n",
    )
    .unwrap();
    d.ketch(&["build", "-t", "evil-users", ctx.path().to_str().unwrap()])
        .ok();

    let t0 = Instant::now();
    let r = d.build("evil-run", "FROM evil-users\nUSER ada\nRUN true\n", &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("unable to find user ada"), "{}", r.stderr);
    let r = d.ketch(&["run", "--rm", "--user", "0:staff", "evil-users", "true"]);
    assert_ne!(r.code, 0, "a group was found in a host file");
    assert!(
        r.stderr.contains("unable to find group staff"),
        "{}",
        r.stderr
    );
    assert!(t0.elapsed() < Duration::from_secs(60));
    alive(&d);
}

/// Class 6: `ADD` of a bomb and a gzip bomb as a build context are
/// refused, and nothing is left under the data root.
#[test]
fn decompression_bombs_are_refused_in_builds() {
    let d = TestDaemon::start();
    let bomb = zero_bomb(300 << 20);
    let r = d.build(
        "bomb",
        "FROM scratch\nADD bomb.tar.gz /x/\n",
        &[("bomb.tar.gz", &bomb)],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("decompression bomb"), "{}", r.stderr);

    // A context whose upload is itself the bomb (through the API, as a
    // hostile client sends it).
    let (code, text) = post(&d, "/build?t=ctxbomb", "application/x-tar", &bomb);
    assert!(
        code >= 400 || text.contains("decompression bomb"),
        "{code}: {text}"
    );
    assert!(text.contains("decompression bomb"), "{text}");
    let du = Command::new("du")
        .args(["-sb", d.root().to_str().unwrap()])
        .output()
        .unwrap();
    let used: u64 = String::from_utf8_lossy(&du.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(used < 100 << 20, "the data root grew to {used} bytes");
    alive(&d);
}

/// Class 7: a Wasm guest without `--memory` cannot take ketchd (and the
/// other guests) down: it stops at the default cap, alone, OOM-killed.
#[test]
fn a_greedy_wasm_guest_fails_alone() {
    let d = TestDaemon::start_with(&["--wasm-memory-default", "64m"]);
    d.wat_image("grow", GROW_WAT);
    d.wat_image("spin", SPIN_WAT);
    d.ketch(&["run", "-d", "--name", "bystander", "spin"]).ok();
    let r = d.ketch(&["run", "--name", "greedy", "grow"]);
    assert_eq!(r.code, 134, "{}", r.stderr);
    assert_eq!(
        d.ketch(&["inspect", "-f", "{{.State.OOMKilled}}", "greedy"])
            .ok()
            .trim(),
        "true"
    );
    assert_eq!(d.state("bystander"), "running");
    alive(&d);
    d.ketch(&["rm", "-f", "bystander", "greedy"]).ok();
}

/// Class 9: a default Linux container cannot make namespaces with
/// `clone` (EPERM) and gets ENOSYS from `clone3`, as with Docker's
/// profile; CAP_SYS_ADMIN allows both.
#[test]
fn linux_containers_cannot_make_user_namespaces() {
    require!(linux());
    let d = TestDaemon::start();
    busybox_image(&d);
    let ctx = tempfile::tempdir().unwrap();
    let src = ctx.path().join("ns.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void report(const char *what, long r) {
    if (r == 0) _exit(0);
    if (r > 0) { waitpid((pid_t)r, 0, 0); printf("%s:ok\n", what); }
    else printf("%s:%d\n", what, errno);
}
int main(void) {
    report("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0));
    report("clone-newns", syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0));
    report("clone", syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
    unsigned long long args[11];
    memset(args, 0, sizeof args);
    args[4] = SIGCHLD;
    report("clone3", syscall(SYS_clone3, args, 88));
    return 0;
}
"#,
    )
    .unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(ctx.path().join("ns"))
        .arg(&src)
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        other => panic!("gcc -static (gcc and libc6-dev, in .ci/setup) failed: {other:?}"),
    }
    std::fs::write(ctx.path().join("Dockerfile"), "FROM busybox\nCOPY ns /ns\n").unwrap();
    d.ketch(&["build", "-t", "nstest", ctx.path().to_str().unwrap()])
        .ok();
    let out = d.ketch(&["run", "--rm", "nstest", "/ns"]).ok();
    assert!(out.contains("clone-newuser:1\n"), "{out}");
    assert!(out.contains("clone-newns:1\n"), "{out}");
    assert!(out.contains("clone:ok\n"), "{out}");
    assert!(out.contains("clone3:38\n"), "{out}");
    let out = d
        .ketch(&["run", "--rm", "--cap-add", "SYS_ADMIN", "nstest", "/ns"])
        .ok();
    assert!(out.contains("clone-newns:ok\n"), "{out}");
}

/// Host links made by a test, deleted when it ends.
struct HostLinks(Vec<String>);

impl Drop for HostLinks {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).status();
        }
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Class 10: a network may name an existing host link as its bridge, but
/// only a bridge, only when asked to adopt it, and `network rm` deletes
/// only the bridges ketch made.
#[test]
fn networks_delete_only_the_links_they_made() {
    require!(linux());
    let d = TestDaemon::start();
    let tag = std::process::id() % 100_000;
    // One end of someone's veth pair, and someone's bridge.
    let (dummy, peer, bridge) = (
        format!("ktadv{tag}"),
        format!("ktadp{tag}"),
        format!("ktadb{tag}"),
    );
    let _links = HostLinks(vec![dummy.clone(), bridge.clone()]);
    for args in [
        vec!["link", "add", &dummy, "type", "veth", "peer", "name", &peer],
        vec!["link", "add", &bridge, "type", "bridge"],
    ] {
        let ok = Command::new("ip")
            .args(&args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip {args:?}");
    }
    let opt = |b: &str| format!("com.docker.network.bridge.name={b}");
    let r = d.ketch(&["network", "create", "-o", &opt(&dummy), "on-dummy"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("not a bridge"), "{}", r.stderr);
    let r = d.ketch(&["network", "create", "-o", &opt(&bridge), "on-bridge"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("io.ketch.network.bridge.adopt"),
        "{}",
        r.stderr
    );
    d.ketch(&[
        "network",
        "create",
        "-o",
        &opt(&bridge),
        "-o",
        "io.ketch.network.bridge.adopt=true",
        "adopted",
    ])
    .ok();
    d.ketch(&["network", "rm", "adopted"]).ok();
    assert!(link_exists(&bridge), "network rm deleted an adopted bridge");
    assert!(link_exists(&dummy));
    // A bridge ketch made is deleted with its network.
    d.ketch(&["network", "create", "own"]).ok();
    let v: serde_json::Value =
        serde_json::from_str(&d.ketch(&["network", "inspect", "own"]).ok()).unwrap();
    let own = v[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(own.starts_with("kt-") && link_exists(&own), "{own}");
    d.ketch(&["network", "rm", "own"]).ok();
    assert!(!link_exists(&own));
}
