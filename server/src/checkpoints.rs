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
/// `ManifestPlan::restores_into`) over the same source partitions (or more: see [`resumes`]).
/// `checkpoints` is the store with the job's interval.
pub async fn for_job(
    checkpoints: Option<&CheckpointStore>,
    runtime_metrics: &weir_runtime::metrics::RuntimeMetrics,
    name: &str,
    query: &str,
    plan: &weir_runtime::plan::StreamPlan,
    restore: bool,
) -> Result<Checkpointing> {
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
            } else if resumes(name, &manifest, plan).map_err(io)? {
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
        // The caller sets the job's limit (`Registry::start_job`).
        state_limit: None,
    })
}

/// Can `manifest`'s source positions restore into `plan`? Each recorded
/// partition must still be in the plan (partitions gained since start
/// afresh; a source that lost some cannot restore) and still readable from
/// where it was (not compacted away). A source that recorded its splits (a
/// file stream) is judged as the job will run it: re-made to read those.
/// Says why not in the log.
fn resumes(
    name: &str,
    manifest: &weir_runtime::checkpoint::Manifest,
    plan: &weir_runtime::plan::StreamPlan,
) -> datafusion::error::Result<bool> {
    let plan = &manifest.splits_restored(plan.clone())?;
    let sources = plan.partitions();
    let Some(at) = manifest.partitions_in(&plan.partition_keys()) else {
        warn!(
            job = name,
            was = manifest.sources.len(),
            now = sources.len(),
            "the source's partitions changed; starting fresh"
        );
        return Ok(false);
    };
    let compacted = at.iter().zip(&manifest.sources).position(|(&at, state)| {
        let (source, p) = &sources[at];
        !source.resumable(*p, weir_runtime::source::SourcePosition(state.position))
    });
    if let Some(partition) = compacted {
        warn!(
            job = name,
            partition,
            "the source can no longer resume from the latest checkpoint (its history was compacted); starting fresh"
        );
        return Ok(false);
    }
    Ok(true)
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

/// Where a run of a job starts, per its `restore_strategy`, once
/// [`apply_restore_strategy`] has made its checkpoint folder say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrategyStart {
    /// Restore the job's latest checkpoint (`false`: the sources'
    /// beginning, empty state; its checkpoints are removed at the start).
    pub restore: bool,
    /// The savepoint made its latest checkpoint, for the event log.
    pub savepoint: Option<weir_runtime::checkpoint::SavepointInfo>,
}

/// Make job `name`'s checkpoint folder start where `strategy` says, before
/// a run that restores its latest checkpoint starts (`ALTER JOB RESUME`,
/// `RESTART`, the server's start):
/// - `latest_state`: the newer (by time) of its latest checkpoint and its
///   newest savepoint of another epoch (a savepoint copies a checkpoint, so
///   one of the same epoch is the same state); a savepoint is newer only
///   when the checkpoints after it are gone.
/// - `latest_savepoint`: its newest savepoint that the job's plan can
///   restore; without one, the sources' beginning.
/// - `none`: the sources' beginning with empty state.
///
/// Only savepoints taken since the job was created count: a dropped
/// namesake's stay, but are not this job's.
pub async fn apply_restore_strategy(
    registry: &crate::registry::Registry,
    name: &str,
    strategy: crate::jobs::settings::RestoreStrategy,
) -> Result<StrategyStart> {
    use crate::jobs::settings::RestoreStrategy;
    let from_checkpoint = StrategyStart {
        restore: true,
        savepoint: None,
    };
    if strategy == RestoreStrategy::None {
        return Ok(StrategyStart {
            restore: false,
            savepoint: None,
        });
    }
    let Some(store) = registry.checkpoint_store(None) else {
        return Ok(from_checkpoint);
    };
    let io = |what: &str, e: datafusion::error::DataFusionError| ServerError::Io {
        message: format!("{what} of \"{name}\": {e}"),
    };
    let created = registry
        .jobs()
        .get(name)
        .and_then(|job| job.created_at_ms())
        .unwrap_or(0);
    let mut savepoints: Vec<_> = store
        .savepoints()
        .await
        .map_err(|e| io("the savepoints", e))?
        .into_iter()
        .filter(|s| s.job == name && s.created_at_ms >= created)
        .collect();
    // Newest first.
    savepoints.reverse();
    let newer_than = match strategy {
        RestoreStrategy::LatestState => store
            .job(name)
            .latest()
            .await
            .map_err(|e| io("the checkpoints", e))?
            .map(|m| (m.written_at_ms, m.epoch)),
        _ => None,
    };
    for savepoint in savepoints {
        if let Some((at, epoch)) = newer_than {
            if savepoint.created_at_ms <= at {
                break;
            }
            // A copy of the latest checkpoint itself (a suspend's, a
            // user's taken at it): the same state, nothing to adopt.
            if savepoint.epoch == epoch {
                continue;
            }
        }
        match crate::statements::savepoints::adopt(registry, &savepoint.name, name).await {
            Ok(info) => {
                info!(job = name, savepoint = %info.name, epoch = info.epoch, ?strategy, "restoring from a savepoint");
                return Ok(StrategyStart {
                    restore: true,
                    savepoint: Some(info),
                });
            }
            // Of another plan than the job runs now (before an upgrade):
            // an older one may fit.
            Err(ServerError::ObjectNotInPrerequisiteState { message, .. }) => {
                warn!(job = name, savepoint = %savepoint.name, %message, "savepoint skipped");
            }
            Err(err) => return Err(err),
        }
    }
    match strategy {
        RestoreStrategy::LatestSavepoint => {
            info!(
                job = name,
                "no savepoint of the job to restore: from the sources' beginning"
            );
            Ok(StrategyStart {
                restore: false,
                savepoint: None,
            })
        }
        _ => Ok(from_checkpoint),
    }
}
