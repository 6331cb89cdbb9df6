//! `version` and `info`.

use crate::api::types::VersionResponse;
use crate::client::Client;

pub async fn version(c: &Client) -> anyhow::Result<i32> {
    println!(
        "Client:\n Version:     {}\n API version: {}\n OS/Arch:     {}/{}",
        env!("CARGO_PKG_VERSION"),
        crate::api::API_VERSION,
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    let v: VersionResponse = c.get_json("/version").await?;
    println!("\nServer: Ketch Engine\n Engine:\n  Version:     {}\n  API version: {} (minimum version {})\n  OS/Arch:     {}/{}\n  Kernel:      {}", v.version, v.api_version, v.min_api_version, v.os, v.arch, v.kernel_version);
    Ok(0)
}

pub async fn info(c: &Client) -> anyhow::Result<i32> {
    let v: serde_json::Value = c.get_json("/info").await?;
    let g = |k: &str| {
        v.get(k)
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .unwrap_or_default()
    };
    println!("Server:\n Containers: {}\n  Running: {}\n  Paused: {}\n  Stopped: {}\n Images: {}\n Server Version: {}\n Storage Driver: {}\n Logging Driver: {}\n Default Runtime: {}\n Kernel Version: {}\n Operating System: {}\n Architecture: {}\n CPUs: {}\n Total Memory: {}\n Name: {}\n Ketch Root Dir: {}",
        g("Containers"), g("ContainersRunning"), g("ContainersPaused"), g("ContainersStopped"), g("Images"), g("ServerVersion"), g("Driver"), g("LoggingDriver"), g("DefaultRuntime"), g("KernelVersion"), g("OperatingSystem"), g("Architecture"), g("NCPU"), crate::cli::output::human_size(v.get("MemTotal").and_then(|m| m.as_i64()).unwrap_or(0)), g("Name"), g("DockerRootDir"));
    Ok(0)
}
