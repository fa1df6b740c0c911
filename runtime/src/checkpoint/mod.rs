//! Checkpoints: a job's state, written at aligned barriers, restored after a
//! crash.
//!
//! ```text
//!  coordinator ──epoch──> sources: record position, inject Barrier(epoch)
//!                          workers: aligned barrier -> snapshot -> write chunks (async)
//!                          sink:    aligned barrier -> snapshot view, pre-commit sink files
//!  every report for the epoch in ──> manifest (written last, atomically) ──> sinks commit
//! ```
//!
//! State is a list of **chunks** per participant (each aggregate worker, each
//! sink): Arrow IPC files in the checkpoint store (`object_store`: a folder
//! under the data dir, or a bucket). A snapshot writes only what changed since
//! the previous one: it puts new chunks, replaces or removes old ones by id,
//! or resets the list with a full snapshot when the deltas outgrow it. A
//! manifest names every chunk a checkpoint needs, so old chunks stay until no
//! retained manifest refers to them.
//!
//! # Correctness
//! - A checkpoint's chunks are written before its manifest; a manifest is
//!   one atomic object (`put` is atomic in every object store), named by its
//!   epoch. The latest manifest that parses is the checkpoint; chunks that no
//!   manifest names (a crash between the two) are garbage, removed later.
//! - Manifests are written in epoch order: epoch `e + 1` waits for `e`,
//!   because its chunk lists are `e`'s lists with `e + 1`'s writes applied.
//! - Sinks make output visible (`commit`) only after the manifest that covers
//!   it is written; recovery commits again what the latest manifest lists
//!   (commit is idempotent) and discards what no manifest lists.
//! - Rows hash to workers by the fixed-seed exchange; every chunk starts with
//!   its rows' partition-key columns, so a restore can hand each row to the
//!   worker that now owns its key, whatever the old parallelism was.
//! - A source that deals splits (a file stream's files) records, per
//!   partition, the splits it still reads beside its position; a restore
//!   re-makes the source from them (`splits.rs`) rather than from what its
//!   input holds now, so a position never points into another file.

mod coordinator;
mod savepoint;
mod splits;

pub use coordinator::{CheckpointMetrics, Command, Coordinator, Report, StateSizeLimitExceeded};
pub use savepoint::{SavepointInfo, SavepointOrigin};

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::common::{DataFusionError, Result};
use datafusion::object_store::path::Path;
use datafusion::object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// The manifest format; bumped when an old one can no longer be read.
pub const MANIFEST_VERSION: u32 = 1;

/// How the rows of a keyed operator are spread over workers.
pub const KEY_GROUPS: &str = "exchange-hash-fixed-seed-v1";

/// How a job checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// Between two checkpoints; `None`: only when asked (FLUSH barriers).
    pub interval: Option<Duration>,
    /// Complete checkpoints kept.
    pub retain: usize,
}

/// What an operator or a sink writes at a barrier.
#[derive(Debug, Default)]
pub struct StateWrite {
    /// Forget every earlier chunk first: this is a full snapshot.
    pub reset: bool,
    /// Chunks no longer part of the state.
    pub remove: Vec<String>,
    /// New chunks, or replacements of chunks with the same id.
    pub put: Vec<(String, RecordBatch)>,
    /// Output files written in this epoch, made visible on commit (sinks).
    pub pending: Vec<String>,
}

impl StateWrite {
    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.reset && self.remove.is_empty() && self.put.is_empty() && self.pending.is_empty()
    }
}

/// One chunk of state in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// The owner's name for it (e.g. a window's close time).
    pub id: String,
    /// Where it is, relative to the job's folder.
    pub file: String,
    /// Rows in it.
    pub rows: u64,
    /// Bytes in it.
    pub bytes: u64,
}

/// A participant's state after applying one epoch's write to the previous.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkList {
    /// In the order they apply.
    pub chunks: Vec<ChunkRef>,
}

/// What a written `StateWrite` became.
#[derive(Debug, Default)]
pub struct Written {
    /// As in the write.
    pub reset: bool,
    /// As in the write.
    pub remove: Vec<String>,
    /// The chunks written.
    pub put: Vec<ChunkRef>,
    /// As in the write.
    pub pending: Vec<String>,
}

impl ChunkList {
    /// Apply one epoch's write.
    pub fn apply(&mut self, written: &Written) {
        if written.reset {
            self.chunks.clear();
        }
        self.chunks.retain(|c| !written.remove.contains(&c.id));
        for chunk in &written.put {
            match self.chunks.iter_mut().find(|c| c.id == chunk.id) {
                Some(old) => *old = chunk.clone(),
                None => self.chunks.push(chunk.clone()),
            }
        }
    }

    /// Bytes of state.
    pub fn bytes(&self) -> u64 {
        self.chunks.iter().map(|c| c.bytes).sum()
    }
}

/// Where a source partition was when the barrier left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceState {
    /// The reader's position (what comes next).
    pub position: u64,
    /// The largest event time read (nanoseconds), `i64::MIN` for none.
    pub max_time: i64,
    /// The last watermark sent downstream.
    pub watermark: i64,
    /// Did the partition end?
    pub ended: bool,
    /// The splits it still had to read (a file stream's files), for a
    /// source that deals splits: a restore reads exactly these (see
    /// [`Manifest::splits_restored`]). Absent for other sources, and in a
    /// manifest written before splits were recorded: such a partition
    /// reopens by its position alone, as it did then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splits: Option<crate::source::Splits>,
}

/// A source partition by its place in the plan: which source (a join's
/// left is 0, its right 1) and which of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    /// The source's number in the plan.
    pub source: usize,
    /// The partition's number in its source.
    pub partition: usize,
}

/// An aggregate worker's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorState {
    /// The operator's watermark.
    pub watermark: i64,
    /// Its chunks.
    pub state: ChunkList,
}

/// A complete checkpoint: written last, names everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub version: u32,
    /// The job.
    pub job: String,
    /// The checkpoint.
    pub epoch: u64,
    /// What the job runs: its query, the whole plan's signature and each
    /// stateful operator's; a checkpoint of another plan is not restored
    /// as it is (an upgrade keeps the operators whose signatures match).
    pub plan: ManifestPlan,
    /// The job had ended (a bounded input) when this was taken.
    pub finished: bool,
    /// Milliseconds since the epoch, when written.
    pub written_at_ms: u64,
    /// How keyed state is spread: [`KEY_GROUPS`] over `workers`.
    pub key_groups: String,
    /// Aggregate workers when written.
    pub workers: usize,
    /// One per source partition.
    pub sources: Vec<SourceState>,
    /// Whose each of `sources` is: the source (its number in the plan) and
    /// its partition there. A job whose source gained partitions since
    /// (a Kafka topic grown) restores each partition by these, and reads
    /// the new ones from their start. Empty in a manifest written before
    /// they were recorded: then `sources` go by their order alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionKey>,
    /// One per aggregate worker.
    pub operators: Vec<OperatorState>,
    /// Per sink name.
    pub sinks: std::collections::BTreeMap<String, SinkState>,
}

/// What a checkpoint was taken of: the job's query and its plan's
/// signatures. A manifest written before signatures existed holds the
/// query text alone (`"plan": "<query>"`); it still reads, with no
/// signatures, and restores only into a job of the same query text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "PlanOnDisk")]
pub struct ManifestPlan {
    /// The job's query as defined.
    pub query: String,
    /// The whole plan's signature (`StreamPlan::signature`); empty in an
    /// old manifest.
    pub signature: String,
    /// Each stateful operator's signature, in the order of the job's
    /// workers (join, then aggregate); empty in an old manifest.
    pub operators: Vec<crate::plan::StateSignature>,
}

impl ManifestPlan {
    /// What `plan` (defined by `query`) records in its manifests.
    pub fn of(query: &str, plan: &crate::plan::StreamPlan) -> Self {
        Self {
            query: query.to_string(),
            signature: plan.signature.clone(),
            operators: plan.state.clone(),
        }
    }

    /// May a checkpoint of this plan restore, as it is, into a job of
    /// `now`? The same whole-plan signature; for an old manifest without
    /// one, the same query text.
    pub fn restores_into(&self, now: &ManifestPlan) -> bool {
        if self.signature.is_empty() {
            return self.query == now.query;
        }
        self.signature == now.signature
    }
}

/// A manifest's `plan` as written: the query text alone (manifests before
/// signatures) or the whole record.
#[derive(Deserialize)]
#[serde(untagged)]
enum PlanOnDisk {
    Query(String),
    Signed {
        query: String,
        signature: String,
        operators: Vec<crate::plan::StateSignature>,
    },
}

impl From<PlanOnDisk> for ManifestPlan {
    fn from(plan: PlanOnDisk) -> Self {
        match plan {
            PlanOnDisk::Query(query) => Self {
                query,
                ..Default::default()
            },
            PlanOnDisk::Signed {
                query,
                signature,
                operators,
            } => Self {
                query,
                signature,
                operators,
            },
        }
    }
}

/// A sink's state and its output awaiting commit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Its chunks.
    pub state: ChunkList,
    /// Output files this checkpoint makes visible.
    pub pending: Vec<String>,
}

impl Manifest {
    /// Where each of `sources` is among the partitions of a plan whose
    /// partitions are `now` (its `partition_keys`): `None` when one of them
    /// is not there (a source lost partitions, or an old manifest without
    /// keys counts other partitions), and the checkpoint cannot restore.
    /// Partitions of `now` that are not recorded were gained since.
    pub fn partitions_in(&self, now: &[PartitionKey]) -> Option<Vec<usize>> {
        if self.partitions.len() != self.sources.len() {
            return (self.sources.len() == now.len()).then(|| (0..now.len()).collect());
        }
        self.partitions
            .iter()
            .map(|key| now.iter().position(|k| k == key))
            .collect()
    }

    /// Every chunk file it names.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.operators
            .iter()
            .flat_map(|o| o.state.chunks.iter())
            .chain(self.sinks.values().flat_map(|s| s.state.chunks.iter()))
            .map(|c| c.file.as_str())
    }

    /// Bytes of state it names.
    pub fn state_bytes(&self) -> u64 {
        self.operators.iter().map(|o| o.state.bytes()).sum::<u64>()
            + self.sinks.values().map(|s| s.state.bytes()).sum::<u64>()
    }
}

/// Every job's checkpoints: one folder (prefix) per job in an object store,
/// and the savepoints, one folder each under `savepoints/`.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    config: CheckpointConfig,
    pins: Pins,
}

/// Checkpoints that retention must keep although newer ones completed:
/// those a `checkpoint_now` returned, until a savepoint copied them (or
/// [`JobStore::unpin`]). Shared by every [`JobStore`] of one
/// [`CheckpointStore`]; in memory only, since a restart ends every job that
/// could have asked.
type Pins = Arc<Mutex<BTreeMap<(String, u64), usize>>>;

impl CheckpointStore {
    /// Checkpoints under `root` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path, config: CheckpointConfig) -> Self {
        Self {
            store,
            root,
            config,
            pins: Pins::default(),
        }
    }

    /// How jobs checkpoint.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// One job's folder.
    pub fn job(&self, name: &str) -> JobStore {
        JobStore {
            store: self.store.clone(),
            prefix: self.root.clone().join(name),
            root: self.root.clone(),
            job: name.to_string(),
            config: self.config.clone(),
            pins: self.pins.clone(),
        }
    }
}

/// One job's checkpoints.
#[derive(Debug, Clone)]
pub struct JobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The checkpoint store's root (savepoints are found from it).
    root: Path,
    job: String,
    config: CheckpointConfig,
    pins: Pins,
}

/// A checkpoint read back, ready to restore.
#[derive(Debug)]
pub struct Restored {
    /// What was restored.
    pub manifest: Manifest,
    /// Each old worker's chunks (id, rows), in order.
    pub operators: Vec<Vec<(String, RecordBatch)>>,
    /// Each sink part's chunks (id, rows), in order.
    pub sinks: std::collections::BTreeMap<String, Vec<(String, RecordBatch)>>,
    /// The savepoint it was read from (`None`: the job's own checkpoint).
    /// A job started from a savepoint first makes its own folder start
    /// there (see [`JobStore::adopt`]).
    pub savepoint: Option<SavepointInfo>,
}

fn manifest_name(epoch: u64) -> String {
    format!("manifest-{epoch:020}.json")
}

fn epoch_of_file(file: &str) -> Option<u64> {
    let name = file.rsplit('/').next()?;
    let digits = name
        .strip_prefix("manifest-")
        .and_then(|n| n.strip_suffix(".json"))
        .or_else(|| name.strip_prefix('e').and_then(|n| n.split('-').next()))?;
    digits.parse().ok()
}

impl JobStore {
    /// The job's name.
    pub fn job(&self) -> &str {
        &self.job
    }

    /// How the job checkpoints.
    pub fn config(&self) -> &CheckpointConfig {
        &self.config
    }

    /// Write one chunk of `epoch` as Arrow IPC.
    pub async fn write_chunk(
        &self,
        epoch: u64,
        owner: &str,
        id: &str,
        batch: &RecordBatch,
    ) -> Result<ChunkRef> {
        let mut buffer = Vec::new();
        {
            let mut writer = StreamWriter::try_new(&mut buffer, batch.schema_ref())?;
            writer.write(batch)?;
            writer.finish()?;
        }
        let safe: String = id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let file = format!("e{epoch:020}-{owner}-{safe}.arrow");
        let bytes = buffer.len() as u64;
        self.store
            .put(
                &self.prefix.clone().join(file.as_str()),
                PutPayload::from(buffer),
            )
            .await?;
        Ok(ChunkRef {
            id: id.to_string(),
            file,
            rows: batch.num_rows() as u64,
            bytes,
        })
    }

    /// Write every chunk of a participant's snapshot.
    pub async fn write(&self, epoch: u64, owner: &str, write: StateWrite) -> Result<Written> {
        let mut put = Vec::with_capacity(write.put.len());
        for (id, batch) in &write.put {
            put.push(self.write_chunk(epoch, owner, id, batch).await?);
        }
        Ok(Written {
            reset: write.reset,
            remove: write.remove,
            put,
            pending: write.pending,
        })
    }

    async fn read_chunk(&self, file: &str) -> Result<RecordBatch> {
        let bytes: Bytes = self
            .store
            .get(&self.prefix.clone().join(file))
            .await?
            .bytes()
            .await?;
        let reader = StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = reader.schema();
        let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(datafusion::arrow::compute::concat_batches(
            &schema, &batches,
        )?)
    }

    /// Write `manifest`: the checkpoint is complete once this returns.
    pub async fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        self.store
            .put(
                &self
                    .prefix
                    .clone()
                    .join(manifest_name(manifest.epoch).as_str()),
                PutPayload::from(json),
            )
            .await?;
        Ok(())
    }

    /// The files directly in the job's folder. Not deeper: a job may be
    /// called `savepoints`, and the savepoints' folders must never look like
    /// its files.
    async fn names(&self) -> Result<Vec<String>> {
        let listed = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(DataFusionError::from)?;
        Ok(listed
            .objects
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_string))
            .collect())
    }

    /// The latest complete checkpoint, if any (a manifest that fails to
    /// parse is skipped: it cannot be a complete write, or it is not ours).
    pub async fn latest(&self) -> Result<Option<Manifest>> {
        let mut manifests: Vec<String> = self
            .names()
            .await?
            .into_iter()
            .filter(|n| n.starts_with("manifest-"))
            .collect();
        manifests.sort();
        while let Some(name) = manifests.pop() {
            let bytes = self
                .store
                .get(&self.prefix.clone().join(name.as_str()))
                .await?;
            let bytes = bytes.bytes().await?;
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) if m.version == MANIFEST_VERSION => return Ok(Some(m)),
                Ok(m) => {
                    tracing::warn!(job = %self.job, version = m.version, "checkpoint manifest of another version skipped")
                }
                Err(err) => {
                    tracing::warn!(job = %self.job, %name, %err, "unreadable checkpoint manifest skipped")
                }
            }
        }
        Ok(None)
    }

    /// Read every chunk `manifest` names.
    pub async fn load(&self, manifest: Manifest) -> Result<Restored> {
        let mut operators = Vec::with_capacity(manifest.operators.len());
        for operator in &manifest.operators {
            let mut batches = Vec::with_capacity(operator.state.chunks.len());
            for chunk in &operator.state.chunks {
                batches.push((chunk.id.clone(), self.read_chunk(&chunk.file).await?));
            }
            operators.push(batches);
        }
        let mut sinks = std::collections::BTreeMap::new();
        for (name, sink) in &manifest.sinks {
            let mut batches = Vec::with_capacity(sink.state.chunks.len());
            for chunk in &sink.state.chunks {
                batches.push((chunk.id.clone(), self.read_chunk(&chunk.file).await?));
            }
            sinks.insert(name.clone(), batches);
        }
        Ok(Restored {
            manifest,
            operators,
            sinks,
            savepoint: None,
        })
    }

    /// Keep the checkpoint of `epoch` (its manifest and chunks) through
    /// retention until [`JobStore::unpin`]: a savepoint is being copied
    /// from it while the job goes on checkpointing.
    pub fn pin(&self, epoch: u64) {
        *self
            .pins
            .lock()
            .entry((self.job.clone(), epoch))
            .or_default() += 1;
    }

    /// Undo one [`JobStore::pin`] of `epoch`.
    pub fn unpin(&self, epoch: u64) {
        let mut pins = self.pins.lock();
        let key = (self.job.clone(), epoch);
        if let Some(count) = pins.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                pins.remove(&key);
            }
        }
    }

    fn pinned(&self) -> Vec<u64> {
        self.pins
            .lock()
            .keys()
            .filter(|(job, _)| *job == self.job)
            .map(|(_, epoch)| *epoch)
            .collect()
    }

    /// Remove every checkpoint after `epoch`, manifests and chunks, so that
    /// a job resumed from an older savepoint continues its epochs from
    /// there and a recovery never jumps past it. Only while no job runs on
    /// this folder (a running job's chunks of later epochs would go too).
    pub async fn discard_after(&self, epoch: u64) -> Result<()> {
        for name in self.names().await? {
            if epoch_of_file(&name).is_some_and(|e| e > epoch) {
                self.store
                    .delete(&self.prefix.clone().join(name.as_str()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Remove the manifests after `epoch` only: safe while the job runs,
    /// since only its coordinator writes manifests.
    async fn discard_manifests_after(&self, epoch: u64) -> Result<()> {
        for name in self.names().await? {
            if name.starts_with("manifest-") && epoch_of_file(&name).is_some_and(|e| e > epoch) {
                self.store
                    .delete(&self.prefix.clone().join(name.as_str()))
                    .await?;
            }
        }
        Ok(())
    }

    /// Keep the latest `retain` manifests and the chunks they name; remove
    /// everything else up to epoch `upto` (later files belong to
    /// checkpoints still being written).
    pub async fn cleanup(&self, retain: usize, upto: u64) -> Result<()> {
        let names = self.names().await?;
        let mut manifests: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with("manifest-"))
            .collect();
        manifests.sort();
        let keep_from = manifests.len().saturating_sub(retain.max(1));
        let pinned = self.pinned();
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for name in manifests[..keep_from]
            .iter()
            .filter(|n| epoch_of_file(n).is_some_and(|e| pinned.contains(&e)))
            .chain(&manifests[keep_from..])
        {
            keep.insert((*name).clone());
            let bytes = self
                .store
                .get(&self.prefix.clone().join(name.as_str()))
                .await?;
            if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes.bytes().await?) {
                keep.extend(m.files().map(str::to_string));
            }
        }
        for name in names {
            if keep.contains(&name) || epoch_of_file(&name).is_none_or(|e| e > upto) {
                continue;
            }
            self.store
                .delete(&self.prefix.clone().join(name.as_str()))
                .await?;
        }
        Ok(())
    }

    /// Remove every checkpoint of the job (it was dropped or created anew).
    /// Its savepoints stay: they are not in its folder.
    pub async fn delete_all(&self) -> Result<()> {
        for name in self.names().await? {
            self.store
                .delete(&self.prefix.clone().join(name.as_str()))
                .await?;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lists_apply_puts_replacements_removals_and_resets() {
        let chunk = |id: &str, file: &str| ChunkRef {
            id: id.into(),
            file: file.into(),
            rows: 1,
            bytes: 10,
        };
        let mut list = ChunkList::default();
        list.apply(&Written {
            put: vec![chunk("a", "1"), chunk("b", "1")],
            ..Default::default()
        });
        list.apply(&Written {
            put: vec![chunk("a", "2")],
            remove: vec!["b".into()],
            ..Default::default()
        });
        assert_eq!(list.chunks, vec![chunk("a", "2")]);
        list.apply(&Written {
            reset: true,
            put: vec![chunk("c", "3")],
            ..Default::default()
        });
        assert_eq!(list.chunks, vec![chunk("c", "3")]);
        assert_eq!(list.bytes(), 10);
    }

    #[test]
    fn source_positions_restore_by_source_and_partition() {
        let key = |source, partition| PartitionKey { source, partition };
        let state = SourceState {
            position: 7,
            max_time: 0,
            watermark: 0,
            ended: false,
            splits: None,
        };
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            job: "v".into(),
            epoch: 1,
            plan: ManifestPlan {
                query: String::new(),
                signature: String::new(),
                operators: Vec::new(),
            },
            finished: false,
            written_at_ms: 0,
            key_groups: String::new(),
            workers: 1,
            sources: vec![state; 3],
            partitions: vec![key(0, 0), key(0, 1), key(1, 0)],
            operators: Vec::new(),
            sinks: BTreeMap::new(),
        };
        // The left source grew from 2 partitions to 3: the right one's
        // partition moves from place 2 to place 3, the new one has none.
        let grown = [key(0, 0), key(0, 1), key(0, 2), key(1, 0)];
        assert_eq!(manifest.partitions_in(&grown), Some(vec![0, 1, 3]));
        // A source that lost a partition cannot restore.
        assert_eq!(manifest.partitions_in(&[key(0, 0), key(1, 0)]), None);
        // A manifest from before the keys: by order, when the count is the same.
        let old = Manifest {
            partitions: Vec::new(),
            ..manifest
        };
        assert_eq!(
            old.partitions_in(&[key(0, 0), key(0, 1), key(1, 0)]),
            Some(vec![0, 1, 2])
        );
        assert_eq!(old.partitions_in(&grown), None);
    }

    #[test]
    fn a_manifest_from_before_signatures_still_reads_and_restores_by_query() {
        let old = r#"{"version":1,"job":"v","epoch":3,"plan":"SELECT 1","finished":false,
            "written_at_ms":0,"key_groups":"k","workers":1,"sources":[],"operators":[],"sinks":{}}"#;
        let manifest: Manifest = serde_json::from_str(old).expect("an old manifest reads");
        assert_eq!(manifest.plan.query, "SELECT 1");
        assert!(manifest.plan.operators.is_empty());
        let same = ManifestPlan {
            query: "SELECT 1".into(),
            signature: "abc".into(),
            operators: Vec::new(),
        };
        assert!(manifest.plan.restores_into(&same));
        let other = ManifestPlan {
            query: "SELECT 2".into(),
            ..same.clone()
        };
        assert!(!manifest.plan.restores_into(&other));
        let written = serde_json::to_string(&Manifest {
            plan: same.clone(),
            ..manifest
        })
        .expect("write");
        let read: Manifest = serde_json::from_str(&written).expect("a new manifest reads");
        assert_eq!(read.plan, same);
        assert!(read.plan.restores_into(&same));
        assert!(!read.plan.restores_into(&ManifestPlan {
            signature: "def".into(),
            ..same
        }));
    }

    #[test]
    fn file_names_carry_their_epoch() {
        assert_eq!(epoch_of_file(&manifest_name(42)), Some(42));
        assert_eq!(
            epoch_of_file("e00000000000000000007-w0-c123.arrow"),
            Some(7)
        );
        assert_eq!(epoch_of_file("something-else"), None);
    }
}
