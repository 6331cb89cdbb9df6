//! `exec [-i] [-t] [-d] [-e] [-w] [-u] CONTAINER CMD...`: run a command in a
//! running Linux container; exits with the command's exit code.

use super::enc;
use crate::api::types::{ExecConfig, ExecInspect, IdResponse};
use crate::client::Client;

#[derive(clap::Args, Debug)]
#[command(trailing_var_arg = true)]
pub struct Args {
    /// Keep STDIN open and send it to the command
    #[arg(short, long)]
    pub interactive: bool,
    /// Raw output (no stream framing); no pseudo-terminal is allocated
    #[arg(short, long)]
    pub tty: bool,
    /// Run the command in the background
    #[arg(short, long)]
    pub detach: bool,
    /// Set environment variables
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// User name or uid, with an optional group (name|uid[:group|gid])
    #[arg(short, long)]
    pub user: Option<String>,
    /// Linux containers: give the command every capability
    #[arg(long)]
    pub privileged: bool,
    /// The keys that detach from a terminal (default ctrl-p,ctrl-q)
    #[arg(long)]
    pub detach_keys: Option<String>,
    /// The container, then the command and its arguments
    #[arg(required = true, num_args = 2.., allow_hyphen_values = true)]
    pub container_and_cmd: Vec<String>,
}

pub async fn run(c: &Client, a: Args) -> anyhow::Result<i32> {
    let container = &a.container_and_cmd[0];
    let cfg = ExecConfig {
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        tty: a.tty,
        env: Some(a.env.clone()),
        cmd: Some(a.container_and_cmd[1..].to_vec()),
        working_dir: a.workdir.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        privileged: a.privileged,
        detach_keys: a.detach_keys.clone().unwrap_or_default(),
    };
    let created: IdResponse = c
        .post_json(&format!("/containers/{}/exec", enc(container)), &cfg)
        .await?;
    let start = serde_json::json!({"Detach": a.detach, "Tty": a.tty});
    if a.detach {
        let r = c
            .send(
                hyper::Method::POST,
                &format!("/exec/{}/start", created.id),
                bytes::Bytes::from(start.to_string()),
                Some("application/json"),
            )
            .await?;
        if !r.status().is_success() {
            anyhow::bail!("exec in {container} failed to start: {}", r.status());
        }
        return Ok(0);
    }
    let io = c
        .upgrade(&format!("/exec/{}/start", created.id), Some(&start))
        .await?;
    let (mut rd, wr) = tokio::io::split(io);
    if a.interactive {
        tokio::spawn(super::start::send_stdin(wr));
    } else {
        drop(wr);
    }
    let (raw, sizer) = if a.tty {
        (
            a.interactive
                .then(crate::cli::terminal::RawMode::enter)
                .flatten(),
            crate::cli::terminal::follow_size(c, format!("/exec/{}/resize", created.id)),
        )
    } else {
        (None, None)
    };
    let copied = super::start::copy_output(&mut rd, a.tty).await;
    if let Some(s) = sizer {
        s.abort();
    }
    drop(raw);
    copied?;
    // Still running once its output ended: detached with the detach keys.
    let info: ExecInspect = c.get_json(&format!("/exec/{}/json", created.id)).await?;
    Ok(info.exit_code.unwrap_or(0) as i32)
}
