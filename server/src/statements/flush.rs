//! `FLUSH [v]`: wait until everything the sources have read so far is in
//! every view (or in `v`), so that a following `SELECT` sees it. Tests and
//! scripts use it to read streaming results exactly, not eventually.

use std::sync::Arc;

use crate::error::{Result, ServerError};
use crate::output::Output;
use crate::registry::{LiveView, Registry};

/// `FLUSH`: wait until everything the sources have read is in every view.
/// A failed view does not hold up the others: they are all flushed, and a
/// warning names the failed ones. `FLUSH v`: that view alone; its job's
/// failure, if it failed, is the statement's error.
pub async fn flush(registry: &Registry, only: Option<&str>) -> Result<Output> {
    let views: Vec<(String, Arc<LiveView>)> = match only {
        Some(name) => vec![(name.to_string(), registry.view(name)?)],
        None => registry.views(),
    };
    if let Some(name) = only
        && let Some(failure) = views[0].1.job.progress().failed
    {
        return Err(ServerError::job_failed(name, &failure));
    }
    super::dml::catch_up(registry).await?;
    // Concurrently: one view's wait does not add to the next one's.
    let outcomes = futures::future::join_all(views.iter().map(|(_, live)| live.job.flush())).await;
    let mut failed = Vec::new();
    for ((name, _), outcome) in views.iter().zip(outcomes) {
        if let Err(failure) = outcome {
            if only.is_some() {
                return Err(ServerError::job_failed(name, &failure));
            }
            failed.push(ServerError::job_failed(name, &failure).to_string());
        }
    }
    let done = Output::command("FLUSH");
    Ok(if failed.is_empty() {
        done
    } else {
        Output::Warned {
            warning: format!("FLUSH skipped failed views: {}", failed.join("; ")),
            output: Box::new(done),
        }
    })
}
