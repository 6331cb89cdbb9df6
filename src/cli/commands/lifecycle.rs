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

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Memory limit (e.g. 64m)
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Linux containers: memory plus swap limit (-1 for unlimited swap)
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Linux containers: number of CPUs (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Linux containers: CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Linux containers: most processes at once (-1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub async fn update(c: &Client, a: UpdateArgs) -> anyhow::Result<i32> {
    use crate::model::units::parse_size;
    let size = |s: &Option<String>| -> anyhow::Result<i64> {
        Ok(match s.as_deref() {
            None => 0,
            Some("-1") => -1,
            Some(v) => parse_size(v)
                .map_err(anyhow::Error::msg)?
                .min(i64::MAX as u64) as i64,
        })
    };
    let restart = match &a.restart {
        Some(r) => {
            let p: crate::model::RestartPolicy = r.parse().map_err(anyhow::Error::msg)?;
            Some(crate::api::types::RestartPolicyApi {
                name: p.name().into(),
                maximum_retry_count: p.max_retries() as i64,
            })
        }
        None => None,
    };
    let body = crate::api::types::UpdateConfig {
        memory: size(&a.memory)?,
        memory_swap: size(&a.memory_swap)?,
        nano_cpus: a.cpus.map_or(0, |n| (n * 1e9) as i64),
        cpu_shares: a.cpu_shares.unwrap_or(0),
        pids_limit: a.pids_limit,
        restart_policy: restart,
    };
    each(&a.containers, |n| {
        let path = format!("/containers/{}/update", enc(&n));
        let body = body.clone();
        async move {
            c.post_json::<serde_json::Value>(&path, &body)
                .await
                .map(|_| ())
        }
    })
    .await
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
