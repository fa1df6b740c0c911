//! `FLUSH [v]`: wait until everything the sources have read so far is in
//! every view (or in `v`), so that a following `SELECT` sees it. Tests and
//! scripts use it to read streaming results exactly, not eventually.

use std::sync::Arc;

use crate::error::{Result, ServerError};
use crate::output::{Notice, Output};
use crate::registry::{LiveView, Registry};

/// `FLUSH`: wait until everything the sources have read is in every view.
/// A failed view does not hold up the others: they are all flushed, and a
/// warning names the failed ones. `FLUSH v`: that view alone (and the views
/// it reads); its job's failure, if it failed, is the statement's error.
pub async fn flush(registry: &Registry, only: Option<&str>) -> Result<Output> {
    let views: Vec<(String, Arc<LiveView>)> = match only {
        Some(name) => with_upstream_views(registry, registry.view(name)?, name),
        None => registry.views(),
    };
    if let Some(name) = only
        && let Some(failure) = registry.view(name)?.job.progress().failed
    {
        return Err(ServerError::job_failed(name, &failure));
    }
    super::dml::catch_up(registry).await?;
    let mut failed = Vec::new();
    // In waves: a view that reads other views is flushed once they are,
    // and once it has taken every change they applied, so its barrier
    // follows those changes. Within a wave, concurrently: one view's wait
    // does not add to the next one's.
    let mut done: Vec<String> = Vec::new();
    let mut left = views;
    while !left.is_empty() {
        let (wave, rest): (Vec<_>, Vec<_>) = left.into_iter().partition(|(_, live)| {
            live.inputs
                .iter()
                .all(|input| done.contains(input) || !registry.is_view(input))
        });
        if wave.is_empty() {
            return Err(ServerError::internal(
                "materialized views that read each other in a circle",
            ));
        }
        left = rest;
        for (_, live) in &wave {
            for input in live.inputs.iter().filter(|i| done.contains(i)) {
                if let Ok(upstream) = registry.view(input)
                    && !upstream
                        .view
                        .catch_up(std::time::Duration::from_secs(60))
                        .await
                {
                    return Err(ServerError::Io {
                        message: format!(
                            "views reading materialized view \"{input}\" did not catch up within 60 s"
                        ),
                    });
                }
            }
        }
        let outcomes =
            futures::future::join_all(wave.iter().map(|(_, live)| live.job.flush())).await;
        for ((name, _), outcome) in wave.iter().zip(outcomes) {
            done.push(name.clone());
            if let Err(failure) = outcome {
                if only.is_some() {
                    return Err(ServerError::job_failed(name, &failure));
                }
                failed.push(ServerError::job_failed(name, &failure).to_string());
            }
        }
    }
    let flushed = Output::command("FLUSH");
    Ok(if failed.is_empty() {
        flushed
    } else {
        flushed.after(Notice::warning(format!(
            "FLUSH skipped failed views: {}",
            failed.join("; ")
        )))
    })
}

/// View `name` and the materialized views it reads, directly or through
/// each other: what `FLUSH name` must flush for `name` to hold everything
/// its streams' sources have read.
fn with_upstream_views(
    registry: &Registry,
    live: Arc<LiveView>,
    name: &str,
) -> Vec<(String, Arc<LiveView>)> {
    let mut views = vec![(name.to_string(), live)];
    let mut at = 0;
    while at < views.len() {
        let inputs = views[at].1.inputs.clone();
        at += 1;
        for input in inputs {
            if views.iter().any(|(n, _)| *n == input) {
                continue;
            }
            if let Ok(upstream) = registry.view(&input) {
                views.push((input, upstream));
            }
        }
    }
    views
}
