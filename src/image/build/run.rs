//! RUN: the command in a container of the stage (through the engine's
//! [`StepRunner`]); its changes become a layer. Results are remembered
//! in the build cache.

use super::dockerfile::CommandForm;
use super::stage::Stage;
use super::{BuildOptions, RunStep, StepError, StepRunner};
use crate::image::store::{digest_of, oci_digest};
use crate::image::ImageStore;
use crate::model::Digest;
use oci_spec::image::{Descriptor, MediaType};
use std::fs;
use std::path::Path;

/// A remembered RUN result: the layer it made.
#[derive(serde::Serialize, serde::Deserialize)]
struct CachedLayer {
    digest: Digest,
    diff_id: Digest,
    size: u64,
}

/// Run the command and add its layer to the stage. A result is reused
/// when the stage's layers, the command and its environment are the same
/// as before.
pub(super) fn run_command(
    store: &ImageStore,
    opts: &BuildOptions,
    runner: Option<&dyn StepRunner>,
    stage: &mut Stage,
    form: &CommandForm,
    out: &mut dyn FnMut(&str),
) -> Result<(), StepError> {
    let argv = form.clone().into_argv();
    let Some(runner) = runner else {
        return Err(StepError::RunUnsupported(argv.join(" ")));
    };
    let mut env = stage.env.clone();
    for (k, v) in &stage.args {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    let layers = stage
        .layers
        .iter()
        .map(|d| digest_of(d.digest()))
        .collect::<Result<Vec<_>, _>>()?;
    let run = RunStep {
        layers,
        argv,
        env,
        workdir: stage.workdir.clone(),
        user: stage.user.clone(),
    };
    let key =
        Digest::of(&serde_json::to_vec(&(&run, &stage.diff_ids, &stage.os)).unwrap_or_default());
    let cache_file = opts
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.json", key.hex())));
    let cached = cache_file
        .as_ref()
        .and_then(|f| fs::read(f).ok())
        .and_then(|d| serde_json::from_slice::<CachedLayer>(&d).ok())
        .filter(|c| store.has_blob(&c.digest));
    let layer = match cached {
        Some(c) => {
            out(" ---> Using cache\n");
            c
        }
        None => {
            let tar = runner.run(&run, out).map_err(StepError::Run)?;
            let built = crate::image::layer::write_tar(store, tar)?;
            let c = CachedLayer {
                digest: built.digest,
                diff_id: built.diff_id,
                size: built.size,
            };
            if let Some(f) = &cache_file {
                // The cache only saves time: a build that cannot record
                // its result still succeeds.
                let _ = fs::create_dir_all(f.parent().unwrap_or(Path::new(".")));
                let _ = crate::fsutil::write_atomic(f, &serde_json::to_vec(&c).unwrap_or_default());
            }
            c
        }
    };
    stage.layers.push(Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.size,
        oci_digest(&layer.digest)?,
    ));
    stage.diff_ids.push(layer.diff_id.to_string());
    Ok(())
}
