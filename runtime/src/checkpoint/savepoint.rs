//! Savepoints: checkpoints kept by name, outside any job's folder, so they
//! outlive checkpoint retention, the job itself, and start other jobs.
//!
//! ```text
//!  <root>/<job>/manifest-<epoch>.json, e<epoch>-*.arrow      a job's checkpoints
//!  <root>/savepoints/<name>/manifest.json                    the checkpoint's manifest, as written
//!                          /e<epoch>-*.arrow                 copies of every chunk it names
//!                          /savepoint.json                   [`SavepointInfo`], written last
//! ```
//!
//! # Correctness
//! - Self-contained: every chunk is copied (object_store `copy`: a hard link
//!   on a local folder, a server-side copy on S3), so retention (`cleanup`)
//!   and `delete_all` of the job, which only touch files directly in the
//!   job's folder, never break a savepoint.
//! - `savepoint.json` is written last and removed first: a folder without it
//!   is a savepoint being written or dropped when a crash came. Listing
//!   ignores such folders; [`CheckpointStore::remove_incomplete_savepoints`]
//!   removes them on start.
//! - A job started from a savepoint ([`Restored::savepoint`]) makes its own
//!   folder start there before its first checkpoint ([`JobStore::adopt`]):
//!   later manifests are removed (its epochs continue from the savepoint's)
//!   and the savepoint's chunks and manifest are copied in, so the job's
//!   checkpoints never name a file outside its folder.

use std::sync::Arc;

use datafusion::common::{DataFusionError, Result};
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{CheckpointStore, JobStore, Manifest, Restored, now_ms};

/// The folder under the checkpoint store's root that holds the savepoints.
const SAVEPOINTS: &str = "savepoints";
/// A savepoint's description, written last.
const INFO: &str = "savepoint.json";
/// The manifest inside a savepoint's folder.
const MANIFEST: &str = "manifest.json";
/// Chunks copied at once: object stores answer copies with latency, not
/// bandwidth, so a few in flight hide it.
const COPIES_IN_FLIGHT: usize = 8;

/// Why a savepoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavepointOrigin {
    /// `CREATE SAVEPOINT`.
    User,
    /// `ALTER JOB .. SUSPEND`: the job stopped with it.
    Suspend,
    /// `CREATE OR REPLACE`: the old version stopped with it, the new one
    /// starts from it.
    Upgrade,
}

impl SavepointOrigin {
    /// Its name as `SHOW SAVEPOINTS` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            SavepointOrigin::User => "user",
            SavepointOrigin::Suspend => "suspend",
            SavepointOrigin::Upgrade => "upgrade",
        }
    }
}

/// A savepoint: what `savepoint.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavepointInfo {
    /// Its name (global, not per job).
    pub name: String,
    /// The job it was taken of.
    pub job: String,
    /// The checkpoint's epoch.
    pub epoch: u64,
    /// Milliseconds since the Unix epoch, when it was complete.
    pub created_at_ms: u64,
    /// Bytes it holds (chunks and manifest).
    pub size_bytes: u64,
    /// Why it was taken.
    pub origin: SavepointOrigin,
}

impl CheckpointStore {
    fn savepoints_folder(&self) -> Path {
        self.root.clone().join(SAVEPOINTS)
    }

    fn savepoint_folder(&self, name: &str) -> Path {
        savepoint_folder(&self.root, name)
    }

    /// Copy the checkpoint `manifest` of job `job` into savepoint `name`.
    /// Fails if a savepoint of that name exists; a folder left by a crash
    /// while one of that name was written is replaced. Releases a
    /// [`JobStore::pin`] of the manifest's epoch, whatever the outcome.
    pub async fn create_savepoint(
        &self,
        name: &str,
        job: &str,
        manifest: &Manifest,
        origin: SavepointOrigin,
    ) -> Result<SavepointInfo> {
        let source = self.job(job);
        let outcome = self.copy_savepoint(name, &source, manifest, origin).await;
        source.unpin(manifest.epoch);
        outcome
    }

    async fn copy_savepoint(
        &self,
        name: &str,
        source: &JobStore,
        manifest: &Manifest,
        origin: SavepointOrigin,
    ) -> Result<SavepointInfo> {
        if self.savepoint(name).await?.is_some() {
            return Err(DataFusionError::Plan(format!(
                "savepoint \"{name}\" already exists"
            )));
        }
        let folder = self.savepoint_folder(name);
        delete_folder(self.store.as_ref(), &folder).await?;
        let started = std::time::Instant::now();
        copy_files(
            self.store.clone(),
            &source.prefix,
            &folder,
            manifest.files().map(str::to_string).collect(),
        )
        .await?;
        let chunk_bytes = manifest.state_bytes();
        let manifest_json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let manifest_bytes = manifest_json.len() as u64;
        self.store
            .put(
                &folder.clone().join(MANIFEST),
                PutPayload::from(manifest_json),
            )
            .await?;
        crate::failpoint::hit("savepoint-before-info");
        let info = SavepointInfo {
            name: name.to_string(),
            job: source.job.clone(),
            epoch: manifest.epoch,
            created_at_ms: now_ms(),
            size_bytes: chunk_bytes + manifest_bytes,
            origin,
        };
        let json =
            serde_json::to_vec_pretty(&info).map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.store
            .put(&folder.join(INFO), PutPayload::from(json))
            .await?;
        info!(
            savepoint = name,
            job = %info.job,
            epoch = info.epoch,
            bytes = info.size_bytes,
            ms = started.elapsed().as_millis() as u64,
            "savepoint written"
        );
        Ok(info)
    }

    /// Every complete savepoint, oldest first.
    pub async fn savepoints(&self) -> Result<Vec<SavepointInfo>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.savepoints_folder()))
            .await?;
        let mut found = Vec::new();
        for folder in listed.common_prefixes {
            if let Some(info) = self.read_info(&folder).await? {
                found.push(info);
            }
        }
        found.sort_by(|a, b| (a.created_at_ms, &a.name).cmp(&(b.created_at_ms, &b.name)));
        Ok(found)
    }

    /// The savepoint called `name`, if it is complete.
    pub async fn savepoint(&self, name: &str) -> Result<Option<SavepointInfo>> {
        self.read_info(&self.savepoint_folder(name)).await
    }

    async fn read_info(&self, folder: &Path) -> Result<Option<SavepointInfo>> {
        let bytes = match self.store.get(&folder.clone().join(INFO)).await {
            Ok(got) => got.bytes().await?,
            Err(datafusion::object_store::Error::NotFound { .. }) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        match serde_json::from_slice::<SavepointInfo>(&bytes) {
            Ok(info) => Ok(Some(info)),
            Err(err) => {
                // Not ours, or from a format this version cannot read: not
                // a savepoint it could restore.
                warn!(%folder, %err, "unreadable savepoint.json skipped");
                Ok(None)
            }
        }
    }

    /// Remove savepoint `name`; `false` if there was none. Its
    /// `savepoint.json` goes first, so a crash midway leaves a folder that
    /// listing ignores.
    pub async fn drop_savepoint(&self, name: &str) -> Result<bool> {
        let folder = self.savepoint_folder(name);
        if self.read_info(&folder).await?.is_none() {
            return Ok(false);
        }
        self.store.delete(&folder.clone().join(INFO)).await?;
        delete_folder(self.store.as_ref(), &folder).await?;
        Ok(true)
    }

    /// Read savepoint `name` back, ready to start a job from (of this name
    /// or another, when the plan is compatible): pass it as
    /// `Checkpointing::restored`.
    pub async fn load_savepoint(&self, name: &str) -> Result<Restored> {
        let folder = self.savepoint_folder(name);
        let Some(info) = self.read_info(&folder).await? else {
            return Err(DataFusionError::Plan(format!(
                "savepoint \"{name}\" does not exist"
            )));
        };
        let bytes = self
            .store
            .get(&folder.clone().join(MANIFEST))
            .await?
            .bytes()
            .await?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
        if manifest.version != super::MANIFEST_VERSION {
            return Err(DataFusionError::Execution(format!(
                "savepoint \"{name}\" has manifest version {}, this server reads {}",
                manifest.version,
                super::MANIFEST_VERSION
            )));
        }
        let reader = JobStore {
            store: self.store.clone(),
            prefix: folder,
            root: self.root.clone(),
            job: info.job.clone(),
            config: self.config.clone(),
            pins: self.pins.clone(),
        };
        let mut restored = reader.load(manifest).await?;
        restored.savepoint = Some(info);
        Ok(restored)
    }

    /// Remove the folders of savepoints that were never completed (a crash
    /// while one was copied or dropped). Call on start, before any
    /// savepoint is written: a savepoint being written looks the same.
    pub async fn remove_incomplete_savepoints(&self) -> Result<usize> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.savepoints_folder()))
            .await?;
        let mut removed = 0;
        for folder in listed.common_prefixes {
            if self.read_info(&folder).await?.is_none() {
                warn!(%folder, "removing an incomplete savepoint");
                delete_folder(self.store.as_ref(), &folder).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

impl JobStore {
    /// Make this job's folder start from savepoint `info` (whose manifest is
    /// `manifest`): remove
    /// its manifests after the savepoint's epoch (so the epochs continue
    /// from it and a recovery cannot jump past it), copy the savepoint's
    /// chunks in and write its manifest as this job's. Returns that
    /// manifest. Done by the job's coordinator before its first
    /// checkpoint; chunks of later epochs that the running job writes
    /// meanwhile are untouched.
    pub async fn adopt(&self, info: &SavepointInfo, manifest: &Manifest) -> Result<Manifest> {
        let mut manifest = manifest.clone();
        self.discard_manifests_after(manifest.epoch).await?;
        copy_files(
            self.store.clone(),
            &savepoint_folder(&self.root, &info.name),
            &self.prefix,
            manifest.files().map(str::to_string).collect(),
        )
        .await?;
        manifest.job = self.job.clone();
        self.write_manifest(&manifest).await?;
        info!(job = %self.job, savepoint = %info.name, epoch = manifest.epoch, "job folder starts from savepoint");
        Ok(manifest)
    }
}

fn savepoint_folder(root: &Path, name: &str) -> Path {
    root.clone().join(SAVEPOINTS).join(name)
}

/// Copy `files` from folder `from` to folder `to`, a few at once.
async fn copy_files(
    store: Arc<dyn ObjectStore>,
    from: &Path,
    to: &Path,
    files: Vec<String>,
) -> Result<()> {
    let mut files = files;
    files.sort();
    files.dedup();
    futures::stream::iter(files.into_iter().map(|file| {
        let store = store.clone();
        let source = from.clone().join(file.as_str());
        let target = to.clone().join(file.as_str());
        async move { store.copy(&source, &target).await }
    }))
    .buffer_unordered(COPIES_IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Remove every object under `folder`.
async fn delete_folder(store: &dyn ObjectStore, folder: &Path) -> Result<()> {
    let objects: Vec<_> = store.list(Some(folder)).try_collect().await?;
    for object in objects {
        store.delete(&object.location).await?;
    }
    Ok(())
}
