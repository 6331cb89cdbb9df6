//! `images`, `rmi`, `tag`.

use super::enc;
use crate::api::types::{DeleteItem, ImageSummary};
use crate::cli::output::{ago, human_size, table};
use crate::client::Client;
use crate::model::ImageRef;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Repository to list (e.g. hello or hello:v1)
    pub reference: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub async fn list(c: &Client, a: Args) -> anyhow::Result<i32> {
    let mut path = "/images/json".to_string();
    if let Some(r) = &a.reference {
        let f = serde_json::json!({ "reference": [r] });
        path.push_str(&format!("?filters={}", enc(&f.to_string())));
    }
    let list: Vec<ImageSummary> = c.get_json(&path).await?;
    let id = |s: &ImageSummary| {
        if a.no_trunc {
            s.id.clone()
        } else {
            s.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect()
        }
    };
    if a.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for s in &list {
            if seen.insert(s.id.clone()) {
                println!("{}", id(s));
            }
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for s in &list {
        let digest = s
            .repo_digests
            .first()
            .and_then(|d| d.split_once('@'))
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| "<none>".into());
        let tags: Vec<(String, String)> = if s.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            s.repo_tags
                .iter()
                .map(|t| {
                    ImageRef::parse(t)
                        .map(|r| (r.familiar_repository(), r.tag.unwrap_or_default()))
                        .unwrap_or((t.clone(), String::new()))
                })
                .collect()
        };
        for (repo, tag) in tags {
            let mut row = vec![repo, tag];
            if a.digests {
                row.push(digest.clone());
            }
            row.extend([
                id(s),
                if s.created == 0 {
                    "N/A".into()
                } else {
                    ago(s.created)
                },
                human_size(s.size),
            ]);
            rows.push(row);
        }
    }
    let header: Vec<&str> = if a.digests {
        vec!["REPOSITORY", "TAG", "DIGEST", "IMAGE ID", "CREATED", "SIZE"]
    } else {
        vec!["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    };
    print!("{}", table(&header, &rows));
    Ok(0)
}

pub async fn rmi(c: &Client, a: RmiArgs) -> anyhow::Result<i32> {
    let mut code = 0;
    for n in &a.images {
        let path = format!("/images/{n}{}", if a.force { "?force=1" } else { "" });
        match c.delete::<Vec<DeleteItem>>(&path).await {
            Ok(items) => {
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    Ok(code)
}

#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short, long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Commit message
    #[arg(short, long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pause: bool,
    pub container: String,
    /// REPOSITORY[:TAG]
    pub repository: Option<String>,
}

/// The query of a `commit` or `import`: the new image's `repo` and `tag`,
/// and each `--change`.
fn new_image_query(repository: Option<&str>, changes: &[String]) -> anyhow::Result<Vec<String>> {
    let mut q = Vec::new();
    if let Some(r) = repository {
        let r = ImageRef::parse(r).map_err(|e| anyhow::anyhow!("invalid reference format: {e}"))?;
        q.push(format!("repo={}", enc(&r.familiar_repository())));
        q.push(format!("tag={}", enc(r.tag.as_deref().unwrap_or("latest"))));
    }
    q.extend(changes.iter().map(|ch| format!("changes={}", enc(ch))));
    Ok(q)
}

pub async fn commit(c: &Client, a: CommitArgs) -> anyhow::Result<i32> {
    let mut q = vec![format!("container={}", enc(&a.container))];
    q.extend(new_image_query(a.repository.as_deref(), &a.change)?);
    if let Some(m) = &a.message {
        q.push(format!("comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push(format!("author={}", enc(au)));
    }
    q.push(format!("pause={}", a.pause));
    let v: serde_json::Value = c
        .post_json(&format!("/commit?{}", q.join("&")), &serde_json::json!({}))
        .await?;
    println!("{}", v["Id"].as_str().unwrap_or_default());
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long = "change")]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// A tar file, an http(s) URL, or - for stdin
    pub source: String,
    /// REPOSITORY[:TAG]
    pub repository: Option<String>,
}

pub async fn import(c: &Client, a: ImportArgs) -> anyhow::Result<i32> {
    use anyhow::Context;
    let remote = a.source.starts_with("http://") || a.source.starts_with("https://");
    let mut q = vec![format!(
        "fromSrc={}",
        enc(if remote { &a.source } else { "-" })
    )];
    q.extend(new_image_query(a.repository.as_deref(), &a.change)?);
    if let Some(m) = &a.message {
        q.push(format!("message={}", enc(m)));
    }
    // The archive is streamed: it may be larger than memory.
    let input: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match (remote, a.source.as_str()) {
        (true, _) => Box::new(tokio::io::empty()),
        (false, "-") => Box::new(tokio::io::stdin()),
        (false, path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {path}"))?,
        ),
    };
    let path = format!("/images/create?{}", q.join("&"));
    let resp = c.upload(&path, input, "application/x-tar").await?;
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    println!("{}", v["status"].as_str().unwrap_or_default());
    Ok(0)
}

#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    pub image: String,
}

pub async fn history(c: &Client, a: HistoryArgs) -> anyhow::Result<i32> {
    let items: Vec<crate::api::types::HistoryItem> =
        c.get_json(&format!("/images/{}/history", a.image)).await?;
    let short = |id: &str| {
        if a.no_trunc || id == "<missing>" {
            id.to_string()
        } else {
            id.trim_start_matches("sha256:").chars().take(12).collect()
        }
    };
    if a.quiet {
        for i in &items {
            println!("{}", short(&i.id));
        }
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            let by = if a.no_trunc || i.created_by.chars().count() <= 45 {
                i.created_by.clone()
            } else {
                format!("{}…", i.created_by.chars().take(44).collect::<String>())
            };
            vec![
                short(&i.id),
                ago(i.created),
                by,
                human_size(i.size),
                i.comment.clone(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &rows
        )
    );
    Ok(0)
}

pub async fn tag(c: &Client, a: TagArgs) -> anyhow::Result<i32> {
    let target = ImageRef::parse(&a.target).map_err(anyhow::Error::msg)?;
    let tag = target.tag.clone().unwrap_or_else(|| "latest".into());
    c.post(&format!(
        "/images/{}/tag?repo={}&tag={}",
        a.source,
        enc(&target.repository()),
        enc(&tag)
    ))
    .await?;
    Ok(0)
}
