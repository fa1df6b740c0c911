//! What moves between a job's tasks, and how it is sent: every message
//! tagged with its sender's number, over bounded channels, to one task or
//! hash-exchanged to a stage's workers.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Result;
use datafusion::physical_plan::PhysicalExpr;
use tokio::sync::mpsc;

use crate::message::Message;
use crate::operators::exchange;

/// Messages in flight per upstream of a channel: a task's channel holds
/// this many times its upstreams.
pub(crate) const CHANNEL_CAPACITY: usize = 8;

/// A message and the number of the task that sent it (its upstream number
/// at the receiver).
pub(crate) struct Tagged {
    pub(crate) upstream: usize,
    pub(crate) message: Message,
}

/// A task's channel: the sending end its upstreams share, and its own end.
pub(crate) fn channel(upstreams: usize) -> (mpsc::Sender<Tagged>, mpsc::Receiver<Tagged>) {
    mpsc::channel(CHANNEL_CAPACITY * upstreams.max(1))
}

/// Send `message` to every output (watermarks, barriers, the end). A gone
/// output is skipped: the job is stopping.
pub(crate) async fn send_all(outputs: &[mpsc::Sender<Tagged>], upstream: usize, message: Message) {
    for out in outputs {
        let _ = out
            .send(Tagged {
                upstream,
                message: message.clone(),
            })
            .await;
    }
}

/// Send one message to `output`. `Break` when it is gone.
pub(crate) async fn send(
    output: &mpsc::Sender<Tagged>,
    upstream: usize,
    message: Message,
) -> ControlFlow<()> {
    match output.send(Tagged { upstream, message }).await {
        Ok(()) => ControlFlow::Continue(()),
        Err(_) => ControlFlow::Break(()),
    }
}

/// Send `batch` to the workers that own its keys. `Break` when they are gone.
pub(crate) async fn exchange_out(
    upstream: usize,
    batch: RecordBatch,
    keys: &[Arc<dyn PhysicalExpr>],
    outputs: &[mpsc::Sender<Tagged>],
) -> Result<ControlFlow<()>> {
    let keys = keys
        .iter()
        .map(|k| k.evaluate(&batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>>>()?;
    for (w, part) in exchange::partition(&batch, &keys, outputs.len())?
        .into_iter()
        .enumerate()
    {
        if let Some(part) = part
            && send(&outputs[w], upstream, Message::Batch(part))
                .await
                .is_break()
        {
            return Ok(ControlFlow::Break(()));
        }
    }
    Ok(ControlFlow::Continue(()))
}
