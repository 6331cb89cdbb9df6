//! What can go wrong loading or calling a plugin. Every error names the
//! plugin, and a call's error names the export too; none is a panic.

use std::time::Duration;

/// An error of the embedding API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The bytes are not WebAssembly, or do not compile or link.
    #[error("plugin {plugin}: {reason}")]
    Invalid { plugin: String, reason: String },
    /// A file could not be read, or the host could not be set up.
    #[error("plugin {plugin}: {what}: {source}")]
    Io {
        plugin: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// Pulling from a registry failed: unreachable, refused, not found, or
    /// a blob whose digest does not match.
    #[error("plugin {plugin}: {reason}")]
    Pull { plugin: String, reason: String },
    /// The plugin has no export of that name (or it is not a function).
    #[error("plugin {plugin}: no exported function {export:?}{hint}")]
    NoExport {
        plugin: String,
        export: String,
        /// What it does export, for the message.
        hint: String,
    },
    /// The arguments do not fit the export's parameters.
    #[error("plugin {plugin}: {export}: {reason}")]
    Arguments {
        plugin: String,
        export: String,
        reason: String,
    },
    /// A grant the host asked for cannot be given.
    #[error("plugin {plugin}: {reason}")]
    Grant { plugin: String, reason: String },
    /// The call ran past its deadline.
    #[error("plugin {plugin}: {export} ran past its deadline of {limit:?}")]
    Timeout {
        plugin: String,
        export: String,
        limit: Duration,
    },
    /// The call used all its fuel.
    #[error("plugin {plugin}: {export} ran out of fuel ({fuel} units)")]
    Fuel {
        plugin: String,
        export: String,
        fuel: u64,
    },
    /// The call was refused memory and died of it.
    #[error("plugin {plugin}: {export} was stopped at its memory limit: {reason}")]
    Memory {
        plugin: String,
        export: String,
        reason: String,
    },
    /// A host function the plugin called refused its arguments or failed.
    #[error("plugin {plugin}: {export}: host function {func} failed: {message}")]
    HostFunction {
        plugin: String,
        export: String,
        func: String,
        message: String,
    },
    /// The guest trapped (a panic, `unreachable`, an out-of-bounds access).
    #[error("plugin {plugin}: {export} trapped: {message}")]
    Trap {
        plugin: String,
        export: String,
        message: String,
    },
}

impl PluginError {
    /// The plugin the error is about.
    pub fn plugin(&self) -> &str {
        match self {
            PluginError::Invalid { plugin, .. }
            | PluginError::Io { plugin, .. }
            | PluginError::Pull { plugin, .. }
            | PluginError::NoExport { plugin, .. }
            | PluginError::Arguments { plugin, .. }
            | PluginError::Grant { plugin, .. }
            | PluginError::Timeout { plugin, .. }
            | PluginError::Fuel { plugin, .. }
            | PluginError::Memory { plugin, .. }
            | PluginError::HostFunction { plugin, .. }
            | PluginError::Trap { plugin, .. } => plugin,
        }
    }

    pub(super) fn invalid(plugin: &str, reason: impl std::fmt::Display) -> Self {
        PluginError::Invalid {
            plugin: plugin.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// What a host function's closure returned as its error: carried through
/// the guest's trap back to the caller, and told apart from the guest's
/// own faults.
#[derive(Debug, thiserror::Error)]
#[error("{func}: {message}")]
pub(super) struct HostFuncError {
    pub(super) func: String,
    pub(super) message: String,
}
