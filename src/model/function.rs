//! Run options of function containers (wasi-http components served on
//! published ports).

use std::time::Duration;

/// Serving options for a wasi-http function container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Wall-time budget of one request, from arrival to the end of its
    /// handler. `None` = unlimited.
    pub timeout: Option<Duration>,
    /// Requests served at once; beyond it, 503.
    pub concurrency: usize,
    /// Largest request body accepted, bytes; beyond it, 413.
    pub max_body: u64,
    /// Hosts (`name` or `name:port`) the guest may send requests to.
    pub allow_hosts: Vec<String>,
    /// Requests one instance serves, one after another, before it is
    /// dropped; 1 (the default) is a fresh instance per request. A reused
    /// instance keeps what earlier requests left in its memory.
    pub reuse: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: Some(Duration::from_secs(30)),
            concurrency: 100,
            max_body: 16 << 20,
            allow_hosts: Vec::new(),
            reuse: 1,
        }
    }
}
