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
    Build(commands::build::Args),
    /// List images
    Images(commands::images::Args),
    /// Remove one or more images
    Rmi(commands::images::RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag(commands::images::TagArgs),
    /// Save images to an OCI archive (streamed to stdout by default)
    Save(commands::archive::SaveArgs),
    /// Load images from an archive
    Load(commands::archive::LoadArgs),
    /// Create and run a new container from an image (or a local .wasm file)
    Run(commands::run::RunArgs),
    /// Create a new container
    Create(commands::run::RunArgs),
    /// Run a command in a running Linux container
    Exec(commands::exec::Args),
    /// Start one or more stopped containers
    Start(commands::start::Args),
    /// Stop one or more running containers
    Stop(commands::lifecycle::StopArgs),
    /// Restart one or more containers
    Restart(commands::lifecycle::StopArgs),
    /// Kill one or more running containers
    Kill(commands::lifecycle::KillArgs),
    /// Pause all processes within one or more containers
    Pause(commands::lifecycle::Names),
    /// Unpause all processes within one or more containers
    Unpause(commands::lifecycle::Names),
    /// Block until containers stop, then print their exit codes
    Wait(commands::lifecycle::Names),
    /// Fetch the logs of a container
    Logs(commands::logs::Args),
    /// List containers
    Ps(commands::ps::Args),
    /// Return low-level information on containers or images
    Inspect(commands::inspect::Args),
    /// Remove one or more containers
    Rm(commands::lifecycle::RmArgs),
    /// List port mappings or a specific mapping for the container
    Port(commands::port::Args),
    /// Attach local standard input, output, and error streams to a running container
    Attach(commands::start::AttachArgs),
    /// Manage networks
    Network {
        #[command(subcommand)]
        cmd: commands::network::Cmd,
    },
    /// Manage volumes
    Volume {
        #[command(subcommand)]
        cmd: commands::volume::Cmd,
    },
    /// Copy files between a running Linux container and the local filesystem
    Cp(commands::cp::Args),
    /// Display the running processes of a container
    Top(commands::top::Args),
    /// Display a live stream of container(s) resource usage statistics
    Stats(commands::stats::Args),
    /// Download an image from a registry
    Pull(commands::registry::PullArgs),
    /// Upload an image to a registry
    Push(commands::registry::PushArgs),
    /// Log in to a registry
    Login(commands::registry::LoginArgs),
    /// Log out from a registry
    Logout(commands::registry::LogoutArgs),
    /// Manage images
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Manage containers
    Container {
        #[command(subcommand)]
        cmd: ContainerCmd,
    },
    /// Manage ketch
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
    /// Get real time events from the daemon
    Events(commands::events::Args),
    /// Show the ketch version information
    Version,
    /// Display system-wide information
    Info,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Remove unused images and unreachable blobs
    Prune(commands::prune::Args),
}

#[derive(Subcommand, Debug)]
pub enum ContainerCmd {
    /// Remove all stopped containers
    Prune {
        /// Do not prompt for confirmation
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Remove stopped containers, unused images and unfinished downloads
    Prune(commands::prune::Args),
}

/// Exit code for failures of ketch itself (Docker's).
pub const EXIT_KETCH_ERROR: i32 = 125;

/// Run a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    // Credentials are the CLI's own business: no daemon needed.
    if let Command::Logout(a) = cli.command {
        return commands::registry::logout(a).await;
    }
    let client = connect::client(cli.host.as_deref()).await?;
    use Command::*;
    match cli.command {
        Build(a) => commands::build::run(&client, a).await,
        Images(a) => commands::images::list(&client, a).await,
        Rmi(a) => commands::images::rmi(&client, a).await,
        Tag(a) => commands::images::tag(&client, a).await,
        Save(a) => commands::archive::save(&client, a).await,
        Load(a) => commands::archive::load(&client, a).await,
        Run(a) => commands::run::run(&client, a, false).await,
        Create(a) => commands::run::run(&client, a, true).await,
        Start(a) => commands::start::run(&client, a).await,
        Exec(a) => commands::exec::run(&client, a).await,
        Stop(a) => commands::lifecycle::stop(&client, a, "stop").await,
        Restart(a) => commands::lifecycle::stop(&client, a, "restart").await,
        Kill(a) => commands::lifecycle::kill(&client, a).await,
        Pause(a) => commands::lifecycle::simple(&client, a, "pause").await,
        Unpause(a) => commands::lifecycle::simple(&client, a, "unpause").await,
        Wait(a) => commands::lifecycle::wait(&client, a).await,
        Logs(a) => commands::logs::run(&client, a).await,
        Ps(a) => commands::ps::run(&client, a).await,
        Inspect(a) => commands::inspect::run(&client, a).await,
        Rm(a) => commands::lifecycle::rm(&client, a).await,
        Port(a) => commands::port::run(&client, a).await,
        Stats(a) => commands::stats::run(&client, a).await,
        Top(a) => commands::top::run(&client, a).await,
        Cp(a) => commands::cp::run(&client, a).await,
        Volume { cmd } => commands::volume::run(&client, cmd).await,
        Attach(a) => commands::start::attach(&client, a).await,
        Network { cmd } => commands::network::run(&client, cmd).await,
        Pull(a) => commands::registry::pull(&client, a).await,
        Push(a) => commands::registry::push(&client, a).await,
        Login(a) => commands::registry::login(&client, a).await,
        Logout(a) => commands::registry::logout(a).await,
        Image {
            cmd: ImageCmd::Prune(a),
        } => commands::prune::image(&client, a).await,
        Container {
            cmd: ContainerCmd::Prune { force },
        } => commands::prune::container(&client, force).await,
        System {
            cmd: SystemCmd::Prune(a),
        } => commands::prune::system(&client, a).await,
        Events(a) => commands::events::run(&client, a).await,
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
