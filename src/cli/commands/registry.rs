//! `pull`, `push`, `login`, `logout`, `distribution inspect`.

use super::enc;
use crate::cli::config::{self, Config};
use crate::cli::progress;
use crate::client::Client;
use crate::image::registry::{normalize_server, Credentials};
use crate::model::ImageRef;
use anyhow::{bail, Context};
use std::io::{BufRead, IsTerminal, Write};

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// Set platform if server is multi-platform capable (os[/arch[/variant]], e.g. wasi/wasm)
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Push a Wasm image as a CNCF Wasm OCI artifact (config
    /// application/vnd.wasm.config.v0+json, one application/wasm layer)
    #[arg(long)]
    pub wasm_artifact: bool,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
    pub name: String,
}

#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Registry (default: docker.io)
    pub server: Option<String>,
}

#[derive(clap::Subcommand, Debug)]
pub enum DistributionCmd {
    /// Show an image's descriptor and platforms as its registry serves
    /// them, without pulling it
    Inspect {
        /// Image reference (NAME[:TAG|@DIGEST])
        name: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

pub async fn pull(c: &Client, a: PullArgs) -> anyhow::Result<i32> {
    let r = ImageRef::parse(&a.name).map_err(anyhow::Error::msg)?;
    let mut path = format!("/images/create?fromImage={}", enc(&r.repository()));
    match (&r.digest, &r.tag) {
        (Some(d), _) => path.push_str(&format!("&tag={}", enc(d.as_str()))),
        (None, Some(t)) => path.push_str(&format!("&tag={}", enc(t))),
        (None, None) => path.push_str("&tag=latest"),
    }
    if let Some(p) = &a.platform {
        path.push_str(&format!("&platform={}", enc(p)));
    }
    let auth = config::registry_auth(&a.name)?;
    let resp = c.post_with_auth(&path, auth.as_deref()).await?;
    progress::show(resp.into_body(), a.quiet).await?;
    if a.quiet {
        println!("{}", r.familiar());
    }
    Ok(0)
}

/// `distribution inspect`: `GET /distribution/{name}/json`, with the
/// stored credentials for its registry.
pub async fn distribution(c: &Client, cmd: DistributionCmd) -> anyhow::Result<i32> {
    let DistributionCmd::Inspect { name } = cmd;
    let r = ImageRef::parse(&name).map_err(anyhow::Error::msg)?;
    let auth = config::registry_auth(&name)?;
    let path = format!("/distribution/{r}/json");
    let resp = c
        .with_auth(hyper::Method::GET, &path, auth.as_deref())
        .await?;
    let v: serde_json::Value = crate::client::decode(resp).await?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(0)
}

pub async fn push(c: &Client, a: PushArgs) -> anyhow::Result<i32> {
    let r = ImageRef::parse(&a.name).map_err(anyhow::Error::msg)?;
    let mut path = format!("/images/{}/push", r.repository());
    if let Some(t) = &r.tag {
        path.push_str(&format!("?tag={}", enc(t)));
    }
    if a.wasm_artifact {
        path.push_str(if path.contains('?') { "&" } else { "?" });
        path.push_str("wasm-artifact=1");
    }
    let auth = config::registry_auth(&a.name)?;
    let resp = c.post_with_auth(&path, auth.as_deref()).await?;
    progress::show(resp.into_body(), a.quiet).await?;
    Ok(0)
}

pub async fn login(c: &Client, a: LoginArgs) -> anyhow::Result<i32> {
    let server = normalize_server(a.server.as_deref().unwrap_or("docker.io"));
    let username = match a.username {
        Some(u) => u,
        None => {
            print!("Username: ");
            std::io::stdout().flush()?;
            read_line()?
        }
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p
        }
        (None, true) => {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s)?;
            s.trim_end_matches(['\r', '\n']).to_string()
        }
        (None, false) => {
            if std::io::stdin().is_terminal() {
                print!("Password: ");
                std::io::stdout().flush()?;
            }
            read_line()?
        }
    };
    if username.is_empty() || password.is_empty() {
        bail!("username and password are required to log in to {server}");
    }
    let creds = Credentials {
        username,
        password,
        server_address: server.clone(),
        identity_token: String::new(),
    };
    let _: serde_json::Value = c.post_json("/auth", &creds).await?;
    let mut cfg = Config::load()?;
    cfg.set(&server, &creds);
    cfg.save()
        .with_context(|| format!("storing the credentials for {server}"))?;
    println!("Login Succeeded");
    Ok(0)
}

pub async fn logout(a: LogoutArgs) -> anyhow::Result<i32> {
    let server = normalize_server(a.server.as_deref().unwrap_or("docker.io"));
    let mut cfg = Config::load()?;
    if cfg.remove(&server) {
        cfg.save()?;
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

fn read_line() -> anyhow::Result<String> {
    let mut s = String::new();
    std::io::stdin().lock().read_line(&mut s)?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}
