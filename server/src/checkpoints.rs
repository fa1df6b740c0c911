//! Where jobs checkpoint, and what a job restores from on start.
//!
//! The store is an `object_store`: a folder (by default
//! `<data dir>/checkpoints`) or a bucket URL. Each job has its own prefix,
//! named after it; creating a job anew clears the prefix, so a dropped and
//! recreated view never sees its namesake's state. A job with its own
//! `checkpoint_interval` gets a store over the same objects with that
//! interval ([`Checkpoints::with_interval`]).

use std::sync::Arc;

use datafusion::object_store::ObjectStore;
use datafusion::object_store::local::LocalFileSystem;
use datafusion::object_store::path::Path as ObjectPath;
use tracing::{info, warn};
use weir_runtime::checkpoint::{CheckpointConfig, CheckpointStore, ManifestPlan};
use weir_runtime::job::Checkpointing;

use crate::config::Config;
use crate::error::{Result, ServerError};

/// The checkpoint store, and what it is made of, so that a job can have
/// one with its own interval.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    store: CheckpointStore,
    objects: Arc<dyn ObjectStore>,
    root: ObjectPath,
}

impl Checkpoints {
    fn new(objects: Arc<dyn ObjectStore>, root: ObjectPath, config: CheckpointConfig) -> Self {
        Self {
            store: CheckpointStore::new(objects.clone(), root.clone(), config),
            objects,
            root,
        }
    }

    /// The store with the server's interval.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// The store over the same objects with `interval` between a job's
    /// checkpoints (`None`: only when asked, at FLUSH barriers).
    pub fn with_interval(&self, interval: Option<std::time::Duration>) -> CheckpointStore {
        let config = CheckpointConfig {
            interval,
            retain: self.store.config().retain,
        };
        CheckpointStore::new(self.objects.clone(), self.root.clone(), config)
    }
}

/// Open the configured checkpoint store (`None` when checkpoints are off).
pub fn open(config: &Config) -> Result<Option<Checkpoints>> {
    let Some(interval) = config.checkpoint_interval else {
        return Ok(None);
    };
    let checkpoint_config = CheckpointConfig {
        interval: Some(interval),
        retain: config.checkpoint_retain,
    };
    let location = config.checkpoint_url.clone().unwrap_or_else(|| {
        config
            .data_dir
            .join("checkpoints")
            .to_string_lossy()
            .into_owned()
    });
    if let Some(bucket_and_prefix) = location.strip_prefix("s3://") {
        // Credentials, region and endpoint come from the usual AWS_*
        // variables (AWS_ENDPOINT and AWS_ALLOW_HTTP for S3-compatible
        // servers such as MinIO).
        // s3://bucket/prefix: the store is the bucket, jobs go under prefix.
        let prefix = bucket_and_prefix
            .split_once('/')
            .map_or("", |(_, p)| p.trim_matches('/'))
            .to_string();
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_url(location.as_str())
            .build()
            .map_err(|e| ServerError::Config {
                message: format!("checkpoint_url \"{location}\": {e}"),
            })?;
        info!(%location, ?interval, "checkpoints on");
        return Ok(Some(Checkpoints::new(
            Arc::new(store),
            ObjectPath::from(prefix.as_str()),
            checkpoint_config,
        )));
    }
    let folder = match location.strip_prefix("file://") {
        Some(path) => path.to_string(),
        None if location.contains("://") => {
            return Err(ServerError::Config {
                message: format!(
                    "checkpoint_url \"{location}\": expected a folder, file://... or s3://bucket/prefix"
                ),
            });
        }
        None => location,
    };
    std::fs::create_dir_all(&folder).map_err(|e| ServerError::Config {
        message: format!("could not create the checkpoint folder {folder}: {e}"),
    })?;
    let store = LocalFileSystem::new_with_prefix(&folder).map_err(|e| ServerError::Config {
        message: format!("could not open the checkpoint folder {folder}: {e}"),
    })?;
    info!(%folder, ?interval, "checkpoints on");
    Ok(Some(Checkpoints::new(
        Arc::new(store),
        ObjectPath::from(""),
        checkpoint_config,
    )))
}

/// How the job of view `name` (running `query`) checkpoints: a new job
/// starts clean; a restored one starts from its latest checkpoint if that
/// checkpoint is of the same plan (its signature: see
/// `ManifestPlan::restores_into`) over the same source partitions.
/// `checkpoints` is the store with the job's interval.
pub async fn for_job(
    checkpoints: Option<&CheckpointStore>,
    runtime_metrics: &weir_runtime::metrics::RuntimeMetrics,
    name: &str,
    query: &str,
    plan: &weir_runtime::plan::StreamPlan,
    restore: bool,
) -> Result<Checkpointing> {
    let sources = plan.partitions();
    let partitions = sources.len();
    let metrics = runtime_metrics.checkpoints.clone();
    let recorded = ManifestPlan::of(query, plan);
    let Some(checkpoints) = checkpoints else {
        return Ok(Checkpointing {
            plan: recorded,
            metrics,
            ..Default::default()
        });
    };
    let store = checkpoints.job(name);
    let io = |e: datafusion::error::DataFusionError| ServerError::Io {
        message: format!("the checkpoints of \"{name}\": {e}"),
    };
    let mut restored = None;
    if restore {
        if let Some(manifest) = store.latest().await.map_err(io)? {
            if !manifest.plan.restores_into(&recorded) {
                warn!(
                    job = name,
                    "the latest checkpoint is of another plan; starting fresh"
                );
            } else if manifest.sources.len() != partitions {
                warn!(
                    job = name,
                    was = manifest.sources.len(),
                    now = partitions,
                    "the source's partitions changed; starting fresh"
                );
            } else if let Some(p) =
                manifest
                    .sources
                    .iter()
                    .zip(&sources)
                    .position(|(state, (source, p))| {
                        !source.resumable(*p, weir_runtime::source::SourcePosition(state.position))
                    })
            {
                warn!(
                    job = name,
                    partition = p,
                    "the source can no longer resume from the latest checkpoint (its history was compacted); starting fresh"
                );
            } else {
                let epoch = manifest.epoch;
                restored = Some(store.load(manifest).await.map_err(io)?);
                info!(job = name, epoch, "restoring from checkpoint");
            }
        }
    } else {
        store.delete_all().await.map_err(io)?;
    }
    Ok(Checkpointing {
        store: Some(store),
        restored,
        plan: recorded,
        metrics,
    })
}

/// The latest complete checkpoint of job `name`: (epoch, written at, ms
/// since the Unix epoch); `None` without checkpoints or before the first.
pub async fn latest(checkpoints: Option<&CheckpointStore>, name: &str) -> Option<(u64, u64)> {
    let store = checkpoints?.job(name);
    match store.latest().await {
        Ok(manifest) => manifest.map(|m| (m.epoch, m.written_at_ms)),
        Err(err) => {
            warn!(job = name, %err, "could not read the latest checkpoint");
            None
        }
    }
}

/// Remove a dropped job's checkpoints.
pub async fn drop_job(checkpoints: Option<&CheckpointStore>, name: &str) {
    if let Some(checkpoints) = checkpoints
        && let Err(err) = checkpoints.job(name).delete_all().await
    {
        warn!(job = name, %err, "could not remove the checkpoints of a dropped job");
    }
}
