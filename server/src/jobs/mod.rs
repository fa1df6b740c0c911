//! The job manager: every materialized view is a job with a status, a
//! desired state, settings, an event log and a supervisor that drives it
//! (design note `docs/design/0008-jobs.md`).
//!
//! ```text
//!  statements (CREATE / DROP / ALTER JOB) ──> JobManager ──> Job ──commands──> supervisor task
//!                                              │ status, events, metrics         │ watches the run's progress,
//!                                              v                                 │ restarts it per policy
//!                                   <data dir>/jobs/<job>.events                 v
//!                                                                      a restart closure (statements)
//! ```
//! What is durable is in the catalog (desired state and settings, with the
//! view's definition) and in the event log; the status lives here and is
//! derived again on start. A sink runs inside the job of the view it writes
//! out, so it is listed as a job of kind `sink` with that job's status.
//!
//! # Layout
//! - `mod.rs`: [`JobManager`] and [`Job`]: the jobs, their state, transitions.
//! - `status.rs`: [`JobStatus`] and which transitions exist.
//! - `events.rs`: the per-job event log.
//! - `settings.rs`: job settings, checked and resolved over the defaults.
//! - `supervisor.rs`: the per-job task: failures, restart policy, restarts.

pub mod events;
pub mod settings;
pub mod status;
pub mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{info, warn};
use weir_planner::catalog::{DesiredState, JobSpec};

pub use events::JobEvent;
pub use settings::JobSettings;
pub use status::JobStatus;
pub use supervisor::{Command, Restart, RestoreFrom, WatermarkOf};

use crate::error::{Result, ServerError};
use crate::metrics::JobMetrics;
use events::EventLog;

/// What `SHOW JOBS` shows of a job's own state.
#[derive(Debug, Clone)]
pub struct JobSnapshot {
    /// Where it is.
    pub status: JobStatus,
    /// Where it is driven to.
    pub desired: DesiredState,
    /// When its current run started (ms since the Unix epoch).
    pub started_at_ms: Option<u64>,
    /// Restarts after failures (and asked for), over its life.
    pub restarts: u64,
    /// Why it last failed.
    pub last_error: Option<String>,
    /// Its own settings (not the defaults).
    pub settings: BTreeMap<String, String>,
}

struct JobState {
    status: JobStatus,
    desired: DesiredState,
    started_at_ms: Option<u64>,
    restarts: u64,
    last_error: Option<String>,
    settings: BTreeMap<String, String>,
}

/// One job (a materialized view's).
pub struct Job {
    name: String,
    state: Mutex<JobState>,
    events: Mutex<EventLog>,
    metrics: JobMetrics,
    /// The server's default settings, to resolve this job's against.
    defaults: Arc<BTreeMap<String, String>>,
    /// Commands to its supervisor (`None` until one runs).
    commands: Mutex<Option<mpsc::UnboundedSender<Command>>>,
}

impl Job {
    /// The job's name (its view's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its state now.
    pub fn snapshot(&self) -> JobSnapshot {
        let state = self.state.lock();
        JobSnapshot {
            status: state.status,
            desired: state.desired,
            started_at_ms: state.started_at_ms,
            restarts: state.restarts,
            last_error: state.last_error.clone(),
            settings: state.settings.clone(),
        }
    }

    /// Its status now.
    pub fn status(&self) -> JobStatus {
        self.state.lock().status
    }

    /// What it runs with: its settings over the server's defaults.
    pub fn settings(&self) -> JobSettings {
        settings::resolve(&self.defaults, &self.state.lock().settings)
    }

    /// Its durable part, as the catalog keeps it.
    pub fn spec(&self) -> JobSpec {
        let state = self.state.lock();
        JobSpec {
            desired_state: state.desired,
            settings: state.settings.clone(),
        }
    }

    /// Take new settings (already written to the catalog).
    pub fn set_settings(&self, settings: BTreeMap<String, String>, reason: &str) {
        let status = {
            let mut state = self.state.lock();
            state.settings = settings;
            state.status
        };
        self.log(Some(status), status, reason);
    }

    /// Its events, oldest first.
    pub fn events(&self) -> Result<Vec<JobEvent>> {
        self.events.lock().events()
    }

    /// When it was created: its first event (the log of a new job starts
    /// empty); `None` if the log cannot be read.
    pub fn created_at_ms(&self) -> Option<u64> {
        self.events().ok()?.first().map(|e| e.at_ms)
    }

    /// Move to `to` for `reason`: logged, counted in the status gauge. A
    /// move the lifecycle does not have is refused (and said, since it is
    /// a bug); `false` then.
    pub fn transition(&self, to: JobStatus, reason: &str) -> bool {
        let from = {
            let mut state = self.state.lock();
            let from = state.status;
            if from == to {
                // Not a transition, but worth its line (another attempt).
                drop(state);
                self.log(Some(from), to, reason);
                return true;
            }
            if !from.can_go(to) {
                warn!(job = %self.name, %from, %to, reason, "a job transition that the lifecycle does not have was refused");
                return false;
            }
            state.status = to;
            match to {
                JobStatus::Running => {
                    state.started_at_ms = Some(weir_runtime::checkpoint::now_ms());
                    state.last_error = None;
                }
                JobStatus::Restarting | JobStatus::Failed => {
                    state.last_error = Some(reason.to_string());
                }
                _ => {}
            }
            from
        };
        self.metrics.set_status(&self.name, to);
        self.log(Some(from), to, reason);
        info!(job = %self.name, %from, %to, reason, "job status changed");
        true
    }

    /// Take a new desired state (already written to the catalog).
    pub fn set_desired(&self, desired: DesiredState) {
        self.state.lock().desired = desired;
    }

    /// Count a restart.
    pub fn restarted(&self) {
        self.state.lock().restarts += 1;
        self.metrics.restart(&self.name);
    }

    /// Ask its supervisor to do `command`; `false` if none runs.
    pub fn command(&self, command: Command) -> bool {
        self.commands
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.send(command).is_ok())
    }

    fn log(&self, from: Option<JobStatus>, to: JobStatus, reason: &str) {
        let at = weir_runtime::checkpoint::now_ms();
        if let Err(err) = self.events.lock().append(at, from, to, reason) {
            // The transition happened; only its record is missing.
            warn!(job = %self.name, %err, "could not write a job event");
        }
    }
}

/// Every job of the server.
pub struct JobManager {
    dir: PathBuf,
    defaults: Arc<BTreeMap<String, String>>,
    jobs: Mutex<BTreeMap<String, Arc<Job>>>,
    metrics: JobMetrics,
    shutting_down: AtomicBool,
}

impl JobManager {
    /// The jobs of a server whose event logs live in `dir`, with the
    /// config file's job defaults (checked when the config was read).
    pub fn new(
        dir: PathBuf,
        configured: &BTreeMap<String, String>,
        metrics: JobMetrics,
    ) -> Result<Self> {
        Ok(Self {
            dir,
            defaults: Arc::new(settings::defaults(configured)?),
            jobs: Mutex::new(BTreeMap::new()),
            metrics,
            shutting_down: AtomicBool::new(false),
        })
    }

    /// What a job with `own` settings would run with.
    pub fn resolve(&self, own: &BTreeMap<String, String>) -> JobSettings {
        settings::resolve(&self.defaults, own)
    }

    /// Add job `name` with its durable `spec`, `created`; `fresh`: a new
    /// job (its old namesake's event log is cleared) rather than one
    /// restored on start.
    pub fn add(&self, name: &str, spec: &JobSpec, fresh: bool) -> Result<Arc<Job>> {
        let events = EventLog::open(&self.dir, name)?;
        if fresh {
            events.remove();
        }
        let events = EventLog::open(&self.dir, name)?;
        let restarts = events
            .events()?
            .iter()
            .filter(|e| e.to == JobStatus::Restarting)
            .count() as u64;
        let job = Arc::new(Job {
            name: name.to_string(),
            state: Mutex::new(JobState {
                status: JobStatus::Created,
                desired: spec.desired_state,
                started_at_ms: None,
                restarts,
                last_error: None,
                settings: spec.settings.clone(),
            }),
            events: Mutex::new(events),
            metrics: self.metrics.clone(),
            defaults: self.defaults.clone(),
            commands: Mutex::new(None),
        });
        job.log(
            None,
            JobStatus::Created,
            if fresh { "created" } else { "server started" },
        );
        self.metrics.set_status(name, JobStatus::Created);
        if let Some(old) = self.jobs.lock().insert(name.to_string(), job.clone()) {
            old.command(Command::Stop);
        }
        Ok(job)
    }

    /// Run `job`'s supervisor over its first run (whose progress is
    /// `progress`), restarting it with `restart`; `watermark` reads the
    /// current run's watermark for the lag gauge.
    pub fn supervise(
        &self,
        job: &Arc<Job>,
        progress: tokio::sync::watch::Receiver<weir_runtime::job::Progress>,
        (restart, watermark): (Restart, WatermarkOf),
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(old) = job.commands.lock().replace(tx) {
            let _ = old.send(Command::Stop);
        }
        tokio::spawn(supervisor::supervise(
            job.clone(),
            progress,
            restart,
            watermark,
            rx,
        ));
    }

    /// Job `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<Arc<Job>> {
        self.jobs.lock().get(name).cloned()
    }

    /// Job `name`, or the error for an unknown job.
    pub fn job(&self, name: &str) -> Result<Arc<Job>> {
        self.get(name).ok_or_else(|| unknown_job(name))
    }

    /// Forget a dropped job: its supervisor stops, its event log and
    /// metrics go.
    pub fn remove(&self, name: &str) {
        if let Some(job) = self.jobs.lock().remove(name) {
            job.command(Command::Stop);
            job.events.lock().remove();
            self.metrics.forget(name);
        }
    }

    /// Stop every supervisor: the server is stopping, and its jobs' tasks
    /// ending now are not failures to restart.
    pub fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        for job in self.jobs.lock().values() {
            job.command(Command::Stop);
        }
    }

    /// Is the server stopping?
    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// The error for a job that does not exist.
pub fn unknown_job(name: &str) -> ServerError {
    ServerError::UndefinedObject {
        message: format!("job \"{name}\" does not exist"),
    }
}
