//! The registry client against hostile registries on loopback: limits,
//! credentials kept to their origin, redirects.

use super::token::identity;
use super::transport::{becomes_get, check_redirect};
use super::*;
use reqwest::{Method, StatusCode};

#[test]
fn loopback_and_listed_hosts_are_plain_http() {
    let r = Registry::new(RegistryConfig {
        insecure: vec!["reg.lan:5000".into()],
        mirrors: vec![],
    })
    .unwrap();
    for h in [
        "localhost:5000",
        "127.0.0.1:5000",
        "127.1.2.3",
        "[::1]:5000",
        "reg.lan:5000",
    ] {
        assert!(r.is_insecure(h), "{h}");
    }
    for h in [
        "registry-1.docker.io",
        "reg.lan:5001",
        "10.0.0.1:5000",
        "ghcr.io",
    ] {
        assert!(!r.is_insecure(h), "{h}");
    }
}

#[test]
fn docker_hub_names_go_to_mirrors_first() {
    let r = Registry::new(RegistryConfig {
        insecure: vec![],
        mirrors: vec!["http://127.0.0.1:5001/".into()],
    })
    .unwrap();
    let repos = r.repos(&ImageRef::parse("busybox").unwrap(), None);
    assert_eq!(repos[0].base, "http://127.0.0.1:5001");
    assert_eq!(repos[0].name, "library/busybox");
    assert_eq!(repos[1].base, "https://registry-1.docker.io");
    let repos = r.repos(&ImageRef::parse("127.0.0.1:5000/a/b:1").unwrap(), None);
    assert_eq!(repos.len(), 1);
    assert_eq!(
        (repos[0].base.as_str(), repos[0].name.as_str()),
        ("http://127.0.0.1:5000", "a/b")
    );
}

#[test]
fn cached_auth_is_keyed_by_identity() {
    let c = |u: &str, p: &str| Credentials {
        username: u.into(),
        password: p.into(),
        ..Default::default()
    };
    let (anon, ada, ada2, bo) = (
        identity(None),
        identity(Some(&c("ada", "pw"))),
        identity(Some(&c("ada", "other"))),
        identity(Some(&c("bo", "pw"))),
    );
    assert!(anon != ada && ada != ada2 && ada != bo);
    assert_eq!(ada, identity(Some(&c("ada", "pw"))));
    assert!(!ada.contains("pw"));
}

#[test]
fn server_names_normalise() {
    assert_eq!(normalize_server("https://index.docker.io/v1/"), "docker.io");
    assert_eq!(normalize_server(""), "docker.io");
    assert_eq!(normalize_server("http://127.0.0.1:5000/"), "127.0.0.1:5000");
}

/// A hostile registry on loopback: each connection's request head is
/// recorded and answered by `answer` (path, head) with raw bytes, then
/// a body streamed in 64 KiB chunks up to `stream` bytes (`streamed`
/// counts what the client let it write).
struct Hostile {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    streamed: Arc<std::sync::atomic::AtomicU64>,
}

type Answer = Arc<dyn Fn(&str, &str) -> (Vec<u8>, u64) + Send + Sync>;

async fn hostile(answer: Answer) -> Hostile {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let streamed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (seen, count) = (heads.clone(), streamed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let (answer, seen, count) = (answer.clone(), seen.clone(), count.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                seen.lock().unwrap().push(head.clone());
                let (bytes, stream) = answer(&path, &head);
                let _ = s.write_all(&bytes).await;
                let chunk = vec![b'a'; 64 << 10];
                let mut sent = 0;
                while sent < stream {
                    if s.write_all(&chunk).await.is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                    count.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
    });
    Hostile {
        port,
        heads,
        streamed,
    }
}

fn no_authorization(heads: &[String]) {
    for h in heads {
        assert!(
            !h.to_ascii_lowercase().contains("authorization"),
            "leaked: {h}"
        );
    }
}

fn reply(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn repo_at(port: u16) -> Repo {
    Repo {
        base: format!("http://127.0.0.1:{port}"),
        name: "app".into(),
        creds: Some(Credentials {
            username: "ada".into(),
            password: "secret".into(),
            ..Default::default()
        }),
        registry: format!("127.0.0.1:{port}"),
    }
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_off_at_its_limit() {
    // No Content-Length: the body ends only when the server stops, here
    // after 64 MiB.
    let tokens = hostile(Arc::new(|_: &str, _: &str| {
        let head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"token\":\"";
        (head.to_vec(), 64 << 20)
    }))
    .await;
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let reg_srv = hostile(Arc::new(move |_: &str, _: &str| {
        let h = format!("WWW-Authenticate: Bearer realm=\"{realm}\",service=\"x\"\r\n");
        (reply("401 Unauthorized", &h, ""), 0)
    }))
    .await;
    let reg = Registry::new(RegistryConfig::default()).unwrap();
    let repo = repo_at(reg_srv.port);
    let url = format!("{}/v2/app/manifests/1", repo.base);
    let t0 = std::time::Instant::now();
    let err = reg
        .send(&repo, "repository:app:pull", |c| c.get(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("over {MAX_TOKEN_BODY} bytes")),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20));
    // Reading stopped at the limit: what the server got to write is
    // the limit plus the sockets' buffers, far from its 64 MiB.
    let streamed = tokens.streamed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(streamed < 32 << 20, "{streamed} bytes streamed");
    assert_eq!(tokens.heads.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn credentials_never_reach_another_origin() {
    // Another port of the same host: a blob redirected there goes one
    // more hop inside it (reqwest's own following put Authorization
    // back on that second hop).
    let other = hostile(Arc::new(|path: &str, _: &str| match path {
        "/hop" => (
            reply("307 Temporary Redirect", "Location: /stolen\r\n", ""),
            0,
        ),
        _ => (reply("200 OK", "", "blob"), 0),
    }))
    .await;
    let to = other.port;
    let reg_srv = hostile(Arc::new(move |path: &str, head: &str| {
        if !head.to_ascii_lowercase().contains("authorization: basic") {
            let h = "WWW-Authenticate: Basic realm=\"r\"\r\n";
            return (reply("401 Unauthorized", h, ""), 0);
        }
        if path.ends_with("/blobs/sha256:00") {
            let h = format!("Location: http://127.0.0.1:{to}/hop\r\n");
            return (reply("307 Temporary Redirect", &h, ""), 0);
        }
        if path.ends_with("/blobs/sha256:11") {
            // A redirect within the registry keeps the credentials.
            let h = "Location: /v2/app/blobs/own\r\n";
            return (reply("302 Found", h, ""), 0);
        }
        let body = if path.ends_with("/own") { "own" } else { "{}" };
        (reply("200 OK", "", body), 0)
    }))
    .await;
    let reg = Registry::new(RegistryConfig::default()).unwrap();
    let repo = repo_at(reg_srv.port);
    // A login caches the Basic credentials for the registry.
    let v2 = format!("{}/v2/", repo.base);
    let r = reg.send(&repo, "", |c| c.get(&v2)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let scope = "repository:app:pull";
    let blob = format!("{}/v2/app/blobs/sha256:00", repo.base);
    let r = reg.send(&repo, scope, |c| c.get(&blob)).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "blob");
    let own = format!("{}/v2/app/blobs/sha256:11", repo.base);
    let r = reg.send(&repo, scope, |c| c.get(&own)).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "own");
    // An upload Location on another origin (a push follows it itself).
    let loc = format!("http://127.0.0.1:{to}/upload");
    let _ = reg
        .send(&repo, "repository:app:pull,push", |c| c.put(&loc))
        .await;
    let heads = other.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    no_authorization(&heads);
    assert!(reg_srv
        .heads
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.contains("/own") && h.contains("Basic")));
}

#[tokio::test]
async fn basic_credentials_go_to_the_token_realm_and_no_further() {
    let moved = hostile(Arc::new(|_: &str, _: &str| {
        (reply("200 OK", "", r#"{"token":"t0k"}"#), 0)
    }))
    .await;
    let to = moved.port;
    let realm = hostile(Arc::new(move |_: &str, _: &str| {
        let h = format!("Location: http://127.0.0.1:{to}/token2\r\n");
        (reply("307 Temporary Redirect", &h, ""), 0)
    }))
    .await;
    let challenge = format!(
        "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:{}/token\"\r\n",
        realm.port
    );
    let reg_srv = hostile(Arc::new(move |_: &str, head: &str| {
        if head.contains("Bearer t0k") {
            (reply("200 OK", "", "{}"), 0)
        } else {
            (reply("401 Unauthorized", &challenge, ""), 0)
        }
    }))
    .await;
    let reg = Registry::new(RegistryConfig::default()).unwrap();
    let repo = repo_at(reg_srv.port);
    let url = format!("{}/v2/app/manifests/1", repo.base);
    let r = reg
        .send(&repo, "repository:app:pull", |c| c.get(&url))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(realm.heads.lock().unwrap()[0].contains("Basic"));
    no_authorization(&moved.heads.lock().unwrap());
}

#[tokio::test]
async fn redirects_go_only_to_http_and_https() {
    let reg_srv = hostile(Arc::new(|_: &str, _: &str| {
        (
            reply("302 Found", "Location: file:///etc/passwd\r\n", ""),
            0,
        )
    }))
    .await;
    let reg = Registry::new(RegistryConfig::default()).unwrap();
    let mut repo = repo_at(reg_srv.port);
    repo.creds = None;
    let url = format!("{}/v2/app/blobs/sha256:00", repo.base);
    let err = reg
        .send(&repo, "", |c| c.get(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("refusing a redirect to a file: URL") && err.contains("file:///etc/passwd"),
        "{err}"
    );
    assert_eq!(reg_srv.heads.lock().unwrap().len(), 1, "not retried");
}

#[tokio::test]
async fn a_redirect_loop_ends_after_the_limit() {
    let reg_srv = hostile(Arc::new(|_: &str, _: &str| {
        (reply("302 Found", "Location: /again\r\n", ""), 0)
    }))
    .await;
    let reg = Registry::new(RegistryConfig::default()).unwrap();
    let mut repo = repo_at(reg_srv.port);
    repo.creds = None;
    let url = format!("{}/v2/", repo.base);
    let err = reg
        .send(&repo, "", |c| c.get(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("more than {MAX_REDIRECTS} redirects")),
        "{err}"
    );
    assert_eq!(reg_srv.heads.lock().unwrap().len(), MAX_REDIRECTS + 1);
}

#[test]
fn redirects_are_checked_hop_by_hop() {
    let u = |s: &str| url::Url::parse(s).unwrap();
    let (http, https) = (u("http://reg:5000/v2/"), u("https://reg/v2/"));
    assert!(check_redirect(&https, &u("https://cdn/b"), 1).is_ok());
    assert!(check_redirect(&http, &u("http://cdn/b"), 1).is_ok());
    assert!(check_redirect(&http, &u("https://cdn/b"), MAX_REDIRECTS).is_ok());
    let down = check_redirect(&https, &u("http://reg/v2/"), 1)
        .unwrap_err()
        .to_string();
    assert!(down.contains("down to plain http"), "{down}");
    let file = check_redirect(&http, &u("file:///etc/passwd"), 1)
        .unwrap_err()
        .to_string();
    assert!(file.contains("file:///etc/passwd"), "{file}");
    assert!(check_redirect(&https, &u("data:,x"), 1).is_err());
    let many = check_redirect(&https, &u("https://cdn/b"), MAX_REDIRECTS + 1)
        .unwrap_err()
        .to_string();
    assert!(many.contains("more than"), "{many}");
    // A 303 (or a 301/302 after a POST) goes on as a GET without a body.
    assert!(becomes_get(StatusCode::SEE_OTHER, &Method::PUT));
    assert!(!becomes_get(StatusCode::SEE_OTHER, &Method::HEAD));
    assert!(becomes_get(StatusCode::FOUND, &Method::POST));
    assert!(!becomes_get(StatusCode::FOUND, &Method::GET));
    assert!(!becomes_get(StatusCode::TEMPORARY_REDIRECT, &Method::POST));
}

#[test]
fn origins_are_scheme_host_and_port() {
    let o = |s: &str| url::Url::parse(s).unwrap().origin();
    let base = o("http://127.0.0.1:5000/v2/");
    assert!(base == o("http://127.0.0.1:5000/x"));
    assert!(base != o("http://127.0.0.1:5001/v2/"));
    assert!(base != o("https://127.0.0.1:5000/v2/"));
    assert!(base != o("http://localhost:5000/v2/"));
    assert!(o("file:///etc/passwd") != o("file:///etc/passwd"));
}
