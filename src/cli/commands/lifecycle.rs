//! stop, restart, kill, pause, unpause, wait, rm.

use super::enc;
use crate::api::types::WaitResponse;
use crate::client::Client;

#[derive(clap::Args, Debug)]
pub struct Names {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<i64>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Force the removal of a running container
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// Apply `f` to each name; print the name on success, the error on stderr
/// otherwise; exit 1 if any failed (Docker's behaviour for these verbs).
async fn each<F, Fut>(names: &[String], mut f: F) -> anyhow::Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::client::ClientError>>,
{
    let mut code = 0;
    for n in names {
        match f(n.clone()).await {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

pub async fn stop(c: &Client, a: StopArgs, verb: &str) -> anyhow::Result<i32> {
    let t = a.time.map(|t| format!("?t={t}")).unwrap_or_default();
    each(&a.containers, |n| {
        let path = format!("/containers/{}/{verb}{t}", enc(&n));
        async move { c.post(&path).await.map(|_| ()) }
    })
    .await
}

pub async fn kill(c: &Client, a: KillArgs) -> anyhow::Result<i32> {
    let s = a
        .signal
        .map(|s| format!("?signal={}", enc(&s)))
        .unwrap_or_default();
    each(&a.containers, |n| {
        let path = format!("/containers/{}/kill{s}", enc(&n));
        async move { c.post(&path).await.map(|_| ()) }
    })
    .await
}

pub async fn simple(c: &Client, a: Names, verb: &str) -> anyhow::Result<i32> {
    each(&a.containers, |n| {
        let path = format!("/containers/{}/{verb}", enc(&n));
        async move { c.post(&path).await.map(|_| ()) }
    })
    .await
}

#[derive(clap::Args, Debug)]
pub struct RenameArgs {
    pub container: String,
    pub new_name: String,
}

pub async fn rename(c: &Client, a: RenameArgs) -> anyhow::Result<i32> {
    let path = format!(
        "/containers/{}/rename?name={}",
        enc(&a.container),
        enc(&a.new_name)
    );
    c.post(&path).await?;
    Ok(0)
}

pub async fn rm(c: &Client, a: RmArgs) -> anyhow::Result<i32> {
    let force = if a.force { "?force=1" } else { "" };
    each(&a.containers, |n| {
        let path = format!("/containers/{}{force}", enc(&n));
        async move { c.delete::<serde_json::Value>(&path).await.map(|_| ()) }
    })
    .await
}

pub async fn wait(c: &Client, a: Names) -> anyhow::Result<i32> {
    let mut code = 0;
    for n in &a.containers {
        match c
            .post_json::<WaitResponse>(
                &format!("/containers/{}/wait", enc(n)),
                &serde_json::json!({}),
            )
            .await
        {
            Ok(w) => println!("{}", w.status_code),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}
