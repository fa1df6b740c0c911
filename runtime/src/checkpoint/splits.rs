//! Restoring the splits a checkpoint recorded: each source that deals
//! splits to its partitions (a file stream's files) is re-made to read
//! exactly what its partitions still had to read at the checkpoint, rather
//! than what a new listing of its input would deal them (design 0015).
//!
//! Without this a file removed or added between a checkpoint and a restart
//! deals the files differently, and each partition's row count points into
//! other files: rows are skipped or read twice, silently.

use datafusion::common::{Result, internal_err};

use super::Manifest;
use crate::plan::StreamPlan;
use crate::source::Splits;

impl Manifest {
    /// `plan` with each source whose partitions recorded their splits in
    /// this checkpoint re-made to read those ([`crate::source::Source::with_splits`]),
    /// with as many partitions as were recorded, whatever its input holds
    /// now. Sources that recorded none (Kafka, generators; any source in a
    /// manifest written before splits were recorded) stay as they are.
    ///
    /// # Correctness
    /// The job must start from the returned plan, and the check that the
    /// checkpoint's partitions are all in the plan must be made on it: the
    /// re-made source's partitions are the recorded ones.
    pub fn splits_restored(&self, mut plan: StreamPlan) -> Result<StreamPlan> {
        if self.partitions.len() != self.sources.len() {
            // A manifest from before partitions were keyed has no splits.
            return Ok(plan);
        }
        for (number, input) in plan.sources.iter_mut().enumerate() {
            let recorded: Vec<_> = self
                .partitions
                .iter()
                .zip(&self.sources)
                .filter(|(key, _)| key.source == number)
                .map(|(key, state)| (key.partition, state))
                .collect();
            if !recorded.iter().any(|(_, state)| state.splits.is_some()) {
                continue;
            }
            let count = recorded.iter().map(|(p, _)| p + 1).max().unwrap_or(0);
            if recorded.len() != count {
                return internal_err!(
                    "the checkpoint of epoch {} records {} of the {count} partitions of source {number}",
                    self.epoch,
                    recorded.len()
                );
            }
            let mut splits = vec![Splits::default(); count];
            for (partition, state) in recorded {
                // A partition that ended before its first report has none
                // recorded: it has nothing left to read.
                splits[partition] = state.splits.clone().unwrap_or_default();
            }
            input.source = input.source.with_splits(splits)?;
        }
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Schema, SchemaRef};

    use super::*;
    use crate::checkpoint::{MANIFEST_VERSION, ManifestPlan, PartitionKey, SourceState};
    use crate::plan::{PlanInput, SourcePlan};
    use crate::source::{Source, SourcePosition, SourceReader, Split};

    /// A source that deals `splits`, or says how many partitions it has.
    #[derive(Debug)]
    struct Dealt(Vec<Splits>);

    impl Source for Dealt {
        fn schema(&self) -> SchemaRef {
            Arc::new(Schema::empty())
        }
        fn partitions(&self) -> usize {
            self.0.len()
        }
        fn bounded(&self) -> bool {
            true
        }
        fn open(&self, _: usize, _: Option<SourcePosition>) -> Result<Box<dyn SourceReader>> {
            internal_err!("not read in this test")
        }
        fn describe(&self) -> String {
            format!("dealt {:?}", self.0)
        }
        fn with_splits(&self, splits: Vec<Splits>) -> Result<Arc<dyn Source>> {
            Ok(Arc::new(Dealt(splits)))
        }
    }

    fn plan(sources: Vec<Arc<dyn Source>>) -> StreamPlan {
        StreamPlan {
            sources: sources
                .into_iter()
                .map(|source| SourcePlan {
                    name: "s".into(),
                    source,
                    event_time: None,
                    processing_time: false,
                    before: Vec::new(),
                })
                .collect(),
            stages: Vec::new(),
            output: PlanInput::Source(0),
            output_schema: Arc::new(Schema::empty()),
            changelog: false,
            event_time: None,
            parallelism: 1,
            stream_name: "s".into(),
            state: Vec::new(),
            signature: String::new(),
        }
    }

    fn split(id: &str) -> Split {
        Split {
            id: id.into(),
            bytes: 10,
            rows: None,
            modified_ms: None,
        }
    }

    fn state(position: u64, splits: Option<Splits>) -> SourceState {
        SourceState {
            position,
            max_time: i64::MIN,
            watermark: i64::MIN,
            ended: false,
            splits,
        }
    }

    fn manifest(keys: Vec<(usize, usize)>, sources: Vec<SourceState>) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            job: "v".into(),
            epoch: 4,
            plan: ManifestPlan::default(),
            finished: false,
            written_at_ms: 0,
            key_groups: String::new(),
            workers: 1,
            sources,
            partitions: keys
                .into_iter()
                .map(|(source, partition)| PartitionKey { source, partition })
                .collect(),
            operators: Vec::new(),
            sinks: BTreeMap::new(),
        }
    }

    #[test]
    fn a_source_that_recorded_splits_reads_them_whatever_it_lists_now() {
        // Two files were dealt to two partitions; partition 0 finished its
        // file (so names none), partition 1 is midway in its own.
        let recorded = manifest(
            vec![(0, 0), (0, 1), (1, 0)],
            vec![
                state(
                    5,
                    Some(Splits {
                        done: 1,
                        done_rows: 5,
                        done_bytes: 10,
                        remaining: Vec::new(),
                    }),
                ),
                state(3, Some(Splits::fresh(vec![split("b")]))),
                state(9, None),
            ],
        );
        // Listed now: one file is gone, so one partition; the other source
        // records no splits and keeps its own partitions.
        let now = plan(vec![
            Arc::new(Dealt(vec![Splits::fresh(vec![split("b")])])),
            Arc::new(Dealt(vec![Splits::default(); 3])),
        ]);
        let restored = recorded.splits_restored(now).expect("restored");
        assert_eq!(restored.sources[0].source.partitions(), 2);
        assert_eq!(
            restored.sources[0].source.describe(),
            Dealt(vec![
                recorded.sources[0].splits.clone().expect("recorded"),
                Splits::fresh(vec![split("b")]),
            ])
            .describe()
        );
        assert_eq!(restored.sources[1].source.partitions(), 3);
        assert_eq!(
            restored.partition_keys(),
            [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)]
                .map(|(source, partition)| PartitionKey { source, partition })
        );
    }

    #[test]
    fn a_manifest_without_splits_leaves_the_plan_as_listed() {
        let old = manifest(vec![(0, 0)], vec![state(7, None)]);
        let now = plan(vec![Arc::new(Dealt(vec![Splits::default(); 2]))]);
        let restored = old.splits_restored(now).expect("restored");
        assert_eq!(restored.sources[0].source.partitions(), 2);
        // And one written before partitions were keyed.
        let older = manifest(Vec::new(), vec![state(7, None)]);
        let now = plan(vec![Arc::new(Dealt(vec![Splits::default(); 2]))]);
        assert_eq!(
            older.splits_restored(now).expect("restored").sources[0]
                .source
                .partitions(),
            2
        );
    }

    #[test]
    fn an_old_manifest_state_reads_without_splits_and_a_new_one_round_trips() {
        let old = r#"{"position":3,"max_time":0,"watermark":0,"ended":false}"#;
        let read: SourceState = serde_json::from_str(old).expect("an old state reads");
        assert_eq!(read.splits, None);
        let new = state(3, Some(Splits::fresh(vec![split("a"), split("b")])));
        let text = serde_json::to_string(&new).expect("write");
        assert_eq!(
            serde_json::from_str::<SourceState>(&text).expect("read"),
            new
        );
        assert!(
            !serde_json::to_string(&state(3, None))
                .expect("write")
                .contains("splits"),
            "a source without splits writes what it wrote before"
        );
    }
}
