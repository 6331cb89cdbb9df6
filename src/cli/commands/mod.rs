//! One module per verb (the lifecycle verbs that share a shape share one).

pub mod archive;
pub mod build;
pub mod cp;
pub mod events;
pub mod exec;
pub mod images;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod port;
pub mod prune;
pub mod ps;
pub mod registry;
pub mod run;
pub mod start;
pub mod stats;
pub mod system;
pub mod top;
pub mod volume;

/// `inspect` of named objects under `prefix` (`/volumes`, `/networks`):
/// a JSON array of those found; the others are reported, exit 1.
pub async fn inspect_each(
    c: &crate::client::Client,
    prefix: &str,
    names: &[String],
    format: Option<&str>,
) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    let mut code = 0;
    for n in names {
        match c
            .get_json::<serde_json::Value>(&format!("{prefix}/{}", enc(n)))
            .await
        {
            Ok(v) => out.push(v),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    match format {
        Some(f) => {
            for v in &out {
                println!("{}", crate::cli::output::template(f, v)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    Ok(code)
}

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
