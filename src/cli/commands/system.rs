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

/// `system df`: images, containers, volumes and the build cache, as
/// Docker's table shows them.
pub async fn df(c: &Client) -> anyhow::Result<i32> {
    let v: serde_json::Value = c.get_json("/system/df").await?;
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let size = |n: i64| crate::cli::output::human_size(n);
    let (images, containers, volumes) = (list("Images"), list("Containers"), list("Volumes"));
    let used_images = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) > 0)
        .count();
    let unused_image_bytes: i64 = images
        .iter()
        .filter(|i| i["Containers"].as_i64().unwrap_or(0) == 0)
        .map(|i| i["Size"].as_i64().unwrap_or(0))
        .sum();
    let running = containers
        .iter()
        .filter(|c| c["State"] == "running" || c["State"] == "paused")
        .count();
    let used_volumes = volumes
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0)
        .count();
    let volume_bytes: i64 = volumes
        .iter()
        .map(|v| v["UsageData"]["Size"].as_i64().unwrap_or(0))
        .sum();
    let unused_volume_bytes: i64 = volumes
        .iter()
        .filter(|v| v["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0)
        .map(|v| v["UsageData"]["Size"].as_i64().unwrap_or(0))
        .sum();
    let rows = vec![
        vec![
            "Images".to_string(),
            images.len().to_string(),
            used_images.to_string(),
            size(v["LayersSize"].as_i64().unwrap_or(0)),
            size(unused_image_bytes),
        ],
        vec![
            "Containers".into(),
            containers.len().to_string(),
            running.to_string(),
            size(0),
            size(0),
        ],
        vec![
            "Local Volumes".into(),
            volumes.len().to_string(),
            used_volumes.to_string(),
            size(volume_bytes),
            size(unused_volume_bytes),
        ],
        vec![
            "Build Cache".into(),
            "0".into(),
            "0".into(),
            size(0),
            size(0),
        ],
    ];
    print!(
        "{}",
        crate::cli::output::table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows)
    );
    Ok(0)
}
