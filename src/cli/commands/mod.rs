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

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}
