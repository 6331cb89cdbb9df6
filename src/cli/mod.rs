//! The `ketch` command line: Docker's verbs and flags, spoken to ketchd
//! over the Engine API only.

pub mod commands;
pub mod config;
pub mod connect;
pub mod output;
pub mod progress;
pub mod terminal;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "ketch",
    version,
    about = "Run WebAssembly and Linux containers, Docker-style"
)]
pub struct Cli {
    /// Daemon socket to connect to (unix:///path).
    #[arg(short = 'H', long, env = "KETCH_HOST", global = true)]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(Lazy<commands::build::Args>),
    /// List images
    Images(Lazy<commands::images::Args>),
    /// Remove one or more images
    Rmi(Lazy<commands::images::RmiArgs>),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(Lazy<commands::images::TagArgs>),
    /// Save images to an OCI archive (streamed to stdout by default)
    Save(Lazy<commands::archive::SaveArgs>),
    /// Load images from an archive
    Load(Lazy<commands::archive::LoadArgs>),
    /// Create and run a new container from an image (or a local .wasm file)
    Run(Lazy<commands::run::RunArgs>),
    /// Create a new container
    Create(Lazy<commands::run::RunArgs>),
    /// Run a command in a running Linux container
    Exec(Lazy<commands::exec::Args>),
    /// Start one or more stopped containers
    Start(Lazy<commands::start::Args>),
    /// Stop one or more running containers
    Stop(Lazy<commands::lifecycle::StopArgs>),
    /// Restart one or more containers
    Restart(Lazy<commands::lifecycle::StopArgs>),
    /// Kill one or more running containers
    Kill(Lazy<commands::lifecycle::KillArgs>),
    /// Pause all processes within one or more containers
    Pause(Lazy<commands::lifecycle::Names>),
    /// Rename a container
    Rename(Lazy<commands::lifecycle::RenameArgs>),
    /// Update configuration of one or more containers
    Update(Lazy<commands::lifecycle::UpdateArgs>),
    /// Inspect changes to files or directories on a container's filesystem
    Diff(Lazy<commands::inspect::DiffArgs>),
    /// Export a container's filesystem as a tar archive
    Export(Lazy<commands::archive::ExportArgs>),
    /// Create a new image from a container's changes
    Commit(Lazy<commands::images::CommitArgs>),
    /// Import the contents from a tarball to create a filesystem image
    Import(Lazy<commands::images::ImportArgs>),
    /// Show the history of an image
    History(Lazy<commands::images::HistoryArgs>),
    /// Unpause all processes within one or more containers
    Unpause(Lazy<commands::lifecycle::Names>),
    /// Block until containers stop, then print their exit codes
    Wait(Lazy<commands::lifecycle::Names>),
    /// Fetch the logs of a container
    Logs(Lazy<commands::logs::Args>),
    /// List containers
    Ps(Lazy<commands::ps::Args>),
    /// Return low-level information on containers or images
    Inspect(Lazy<commands::inspect::Args>),
    /// Remove one or more containers
    Rm(Lazy<commands::lifecycle::RmArgs>),
    /// List port mappings or a specific mapping for the container
    Port(Lazy<commands::port::Args>),
    /// Attach local standard input, output, and error streams to a running container
    Attach(Lazy<commands::start::AttachArgs>),
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: Lazy<commands::network::Cmd>,
    },
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        cmd: Lazy<commands::volume::Cmd>,
    },
    /// Copy files between a running Linux container and the local filesystem
    Cp(Lazy<commands::cp::Args>),
    /// Display the running processes of a container
    Top(Lazy<commands::top::Args>),
    /// Display a live stream of container(s) resource usage statistics
    Stats(Lazy<commands::stats::Args>),
    /// Download an image from a registry
    Pull(Lazy<commands::registry::PullArgs>),
    /// Upload an image to a registry
    Push(Lazy<commands::registry::PushArgs>),
    /// Log in to a registry
    Login(Lazy<commands::registry::LoginArgs>),
    /// Log out from a registry
    Logout(Lazy<commands::registry::LogoutArgs>),
    /// Inspect images in their registries
    Distribution {
        #[command(subcommand)]
        cmd: Lazy<commands::registry::DistributionCmd>,
    },
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: Lazy<ImageCmd>,
    },
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: Lazy<ContainerCmd>,
    },
    /// Manage ketch
    System {
        #[command(subcommand)]
        cmd: Lazy<SystemCmd>,
    },
    /// Get real time events from the daemon
    Events(Lazy<commands::events::Args>),
    /// Show the ketch version information
    Version,
    /// Display system-wide information
    Info,
}

/// A subcommand's arguments or subcommands, whose parser is built only when
/// that subcommand is the one given: the CLI builds the flags of one verb,
/// not of all forty (`run` and `create` alone have a hundred), before every
/// call.
#[derive(Debug)]
pub struct Lazy<T>(pub T);

impl<T: clap::Subcommand> clap::Subcommand for Lazy<T> {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_subcommands_for_update)
    }

    fn has_subcommand(name: &str) -> bool {
        T::has_subcommand(name)
    }
}

impl<T: clap::Args> clap::Args for Lazy<T> {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        cmd.defer(T::augment_args_for_update)
    }

    fn group_id() -> Option<clap::Id> {
        T::group_id()
    }
}

impl<T: clap::FromArgMatches> clap::FromArgMatches for Lazy<T> {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches(m).map(Lazy)
    }

    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        T::from_arg_matches_mut(m).map(Lazy)
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(m)
    }

    fn update_from_arg_matches_mut(&mut self, m: &mut clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches_mut(m)
    }
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Remove unused images and unreachable blobs
    Prune(commands::prune::Args),
    /// Display detailed information on one or more images
    Inspect(commands::inspect::Args),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
        /// Provide filter values (e.g. 'label=<key>=<value>', 'until=24h')
        #[arg(long = "filter", value_name = "FILTER")]
        filter: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Remove stopped containers, unused images and unfinished downloads
    Prune(commands::prune::Args),
    /// Show disk usage
    Df,
}

/// Parse the process's arguments, exiting as clap does on an error or a
/// request for help. The parser lives as long as the process: it is left
/// to the exit, not freed piece by piece after one use.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = Box::leak(Box::new(Cli::command()));
    let mut m = cmd.get_matches_mut();
    Cli::from_arg_matches_mut(&mut m).unwrap_or_else(|e| e.format(cmd).exit())
}

/// Exit code for failures of ketch itself (Docker's).
pub const EXIT_KETCH_ERROR: i32 = 125;

/// Run a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // Credentials are the CLI's own business: no daemon needed.
    if let Command::Logout(a) = cli.command {
        return commands::registry::logout(a.0).await;
    }
    let client = connect::client(cli.host.as_deref()).await?;
    use Command::*;
    match cli.command {
        Build(a) => commands::build::run(&client, a.0).await,
        Images(a) => commands::images::list(&client, a.0).await,
        Rmi(a) => commands::images::rmi(&client, a.0).await,
        Tag(a) => commands::images::tag(&client, a.0).await,
        Save(a) => commands::archive::save(&client, a.0).await,
        Load(a) => commands::archive::load(&client, a.0).await,
        Run(a) => commands::run::run(&client, a.0, false).await,
        Create(a) => commands::run::run(&client, a.0, true).await,
        Start(a) => commands::start::run(&client, a.0).await,
        Exec(a) => commands::exec::run(&client, a.0).await,
        Stop(a) => commands::lifecycle::stop(&client, a.0, "stop").await,
        Restart(a) => commands::lifecycle::stop(&client, a.0, "restart").await,
        Kill(a) => commands::lifecycle::kill(&client, a.0).await,
        Pause(a) => commands::lifecycle::simple(&client, a.0, "pause").await,
        Rename(a) => commands::lifecycle::rename(&client, a.0).await,
        Update(a) => commands::lifecycle::update(&client, a.0).await,
        Diff(a) => commands::inspect::diff(&client, a.0).await,
        Export(a) => commands::archive::export(&client, a.0).await,
        History(a) => commands::images::history(&client, a.0).await,
        Commit(a) => commands::images::commit(&client, a.0).await,
        Import(a) => commands::images::import(&client, a.0).await,
        Unpause(a) => commands::lifecycle::simple(&client, a.0, "unpause").await,
        Wait(a) => commands::lifecycle::wait(&client, a.0).await,
        Logs(a) => commands::logs::run(&client, a.0).await,
        Ps(a) => commands::ps::run(&client, a.0).await,
        Inspect(a) => commands::inspect::run(&client, a.0).await,
        Rm(a) => commands::lifecycle::rm(&client, a.0).await,
        Port(a) => commands::port::run(&client, a.0).await,
        Stats(a) => commands::stats::run(&client, a.0).await,
        Top(a) => commands::top::run(&client, a.0).await,
        Cp(a) => commands::cp::run(&client, a.0).await,
        Volume { cmd } => commands::volume::run(&client, cmd.0).await,
        Attach(a) => commands::start::attach(&client, a.0).await,
        Network { cmd } => commands::network::run(&client, cmd.0).await,
        Pull(a) => commands::registry::pull(&client, a.0).await,
        Push(a) => commands::registry::push(&client, a.0).await,
        Login(a) => commands::registry::login(&client, a.0).await,
        Logout(a) => commands::registry::logout(a.0).await,
        Distribution { cmd } => commands::registry::distribution(&client, cmd.0).await,
        Image {
            cmd: Lazy(ImageCmd::Prune(a)),
        } => commands::prune::image(&client, a).await,
        Image {
            cmd: Lazy(ImageCmd::Inspect(mut a)),
        } => {
            a.kind = Some("image".into());
            commands::inspect::run(&client, a).await
        }
        Container {
            cmd: Lazy(ContainerCmd::Prune { force, filter }),
        } => commands::prune::container(&client, force, &filter).await,
        System {
            cmd: Lazy(SystemCmd::Prune(a)),
        } => commands::prune::system(&client, a).await,
        System {
            cmd: Lazy(SystemCmd::Df),
        } => commands::system::df(&client).await,
        Events(a) => commands::events::run(&client, a.0).await,
        Version => commands::system::version(&client).await,
        Info => commands::system::info(&client).await,
    }
}

/// Which exit code a failed command gets: 125 for the container verbs, as
/// Docker's `run`/`create`/`start`; 1 otherwise.
pub fn failure_code(cmd: &Command) -> i32 {
    match cmd {
        Command::Run(_) | Command::Create(_) | Command::Start(_) => EXIT_KETCH_ERROR,
        _ => 1,
    }
}

/// A container verb's failure whose command could not run gets the code
/// the command would have had, as the docker CLI gives it (read from the
/// words of the error): 127 when it is not there, 126 when it cannot run.
pub fn failure_code_of(code: i32, error: &str) -> i32 {
    if code != EXIT_KETCH_ERROR {
        return code;
    }
    if error.contains("executable file not found") || error.contains("no such file or directory") {
        127
    } else if error.contains("permission denied") || error.contains("is a directory") {
        126
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let mut cmd = Cli::command();
        let mut m = cmd.try_get_matches_from_mut(args)?;
        Cli::from_arg_matches_mut(&mut m)
    }

    /// Every verb's parser, built in full as `--help` of each would build
    /// it, is well formed (clap's own checks, which deferred parts pass
    /// only when built).
    #[test]
    fn every_verb_parses_as_declared() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_deferred_verb_still_takes_its_flags_and_the_global_ones() {
        let cli = parse(&[
            "ketch",
            "run",
            "--rm",
            "-H",
            "unix:///s",
            "--name",
            "n",
            "img",
            "a",
        ])
        .unwrap();
        assert_eq!(cli.host.as_deref(), Some("unix:///s"));
        let Command::Run(Lazy(a)) = cli.command else {
            panic!("not run: {:?}", cli.command)
        };
        assert!(a.rm);
        let cli = parse(&["ketch", "network", "ls"]).unwrap();
        assert!(matches!(cli.command, Command::Network { .. }));
        let e = parse(&["ketch", "network"]).unwrap_err();
        assert_eq!(
            e.kind(),
            clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        );
        let e = parse(&["ketch", "logs", "--no-such-flag", "c"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
