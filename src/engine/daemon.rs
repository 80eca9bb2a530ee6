//! The job engine: takes `job` messages, persists them, runs them as the scheduler
//! allows, and ends each in exactly one final status.
//!
//! A job's life ([`crate::engine::lifecycle`], which `berth apply` and `berth renew` share):
//! its record is saved (`queued`), the `queued` event is its receipt; its params are
//! parsed (a field rule broken ends it in `invalid_params` at once); it waits for
//! the scheduler, runs (`running`, a panic caught), and its final status goes to the
//! outbox before the record says finished. A crash anywhere in between leaves a
//! queued or running record, and the job runs again at the next start (jobs are
//! idempotent). A `job_id` that already finished is not run again: its final status
//! is sent again.
//!
//! A running job may give back one of its resources before it ends
//! ([`JobContext::release`]): an AutoSSL order gives back the web stack while it
//! waits on the CA, so other apps' jobs need not wait for the CA too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::engine::lifecycle;
use crate::engine::scheduler::Scheduler;
use crate::job::{Job, JobContext, JobError, Machine, Outcome, Release, Secrets};
use crate::jobs::Catalogue;
use crate::model::protocol::{Event, JobMsg, JobOutput, JobStatus, Status};
use crate::shutdown::Shutdown;
use crate::state::jobstore::{JobStore, Record, State};
use crate::state::outbox::Outbox;
use crate::{model::validate, time};

/// How long a `server.reboot` waits for the control plane to acknowledge its final
/// status before the host reboots anyway.
pub const REBOOT_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long a shutdown waits for running jobs before it interrupts them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

pub struct Engine {
    catalogue: Arc<Catalogue>,
    store: JobStore,
    outbox: Arc<Outbox>,
    machine: Machine,
    output: mpsc::Sender<JobOutput>,
    scheduler: Scheduler,
    /// Accepted and not finished, by arrival.
    active: HashMap<u64, Active>,
    /// `job_id` → arrival, for the active ones.
    ids: HashMap<String, u64>,
    last_arrival: u64,
    running: JoinSet<(u64, Result<Outcome, JobError>)>,
    /// Resources running jobs give back before they end ([`JobContext::release`]).
    releases: (mpsc::UnboundedSender<Release>, mpsc::UnboundedReceiver<Release>),
}

struct Active {
    record: Record,
    job: Option<Box<dyn Job>>,
    started_at: Option<String>,
}

impl Engine {
    pub fn new(
        catalogue: Arc<Catalogue>,
        store: JobStore,
        outbox: Arc<Outbox>,
        machine: Machine,
        output: mpsc::Sender<JobOutput>,
        max_parallel: usize,
    ) -> Self {
        Engine {
            catalogue,
            store,
            outbox,
            machine,
            output,
            scheduler: Scheduler::new(max_parallel),
            active: HashMap::new(),
            ids: HashMap::new(),
            last_arrival: 0,
            running: JoinSet::new(),
            releases: mpsc::unbounded_channel(),
        }
    }

    /// Runs jobs from `jobs` until `shutdown`, then lets running jobs finish for
    /// [`SHUTDOWN_GRACE`] and interrupts the rest (they run again at the next start).
    pub async fn run(mut self, mut jobs: mpsc::Receiver<JobMsg>, mut shutdown: Shutdown) {
        self.recover();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        loop {
            self.start_runnable();
            tokio::select! {
                msg = jobs.recv() => match msg {
                    Some(msg) => self.accept(msg),
                    None => break,
                },
                Some(joined) = self.running.join_next(), if !self.running.is_empty() => {
                    if self.joined(joined) {
                        self.reboot(REBOOT_ACK_WAIT).await;
                    }
                }
                Some(release) = self.releases.1.recv() => self.scheduler.release(release.arrival, &release.key),
                _ = prune.tick() => self.prune(),
                _ = shutdown.wait() => break,
            }
        }
        self.drain().await;
    }

    /// Queues again every job a previous run left unfinished, in arrival order.
    fn recover(&mut self) {
        let records = match self.store.all() {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "job store: cannot read job records; unfinished jobs will not resume");
                return;
            }
        };
        self.last_arrival = records.iter().map(|r| r.arrival).max().unwrap_or(0);
        for record in records.into_iter().filter(|r| r.state != State::Finished) {
            // Killed between storing the final status and marking the record: the
            // status is on its way, so the job is done (running it again would send
            // a second final status).
            if let Some(status) = self.outbox.final_on_its_way(&record.job_id).filter(|_| !record.internal) {
                tracing::info!(job_id = %record.job_id, kind = %record.kind, "job finished before the restart");
                self.mark_finished(record, status);
                continue;
            }
            tracing::info!(job_id = %record.job_id, kind = %record.kind, "job resumes after restart");
            self.schedule(record);
        }
    }

    fn accept(&mut self, msg: JobMsg) {
        if let Err(e) = validate::job_id("job_id", &msg.job_id) {
            tracing::warn!(kind = %validate::shown(&msg.kind), error = %e, "job ignored: its job_id breaks the rules");
            return;
        }
        let (job_id, kind) = (msg.job_id.as_str(), msg.kind.as_str());
        if self.ids.contains_key(job_id) {
            tracing::info!(%job_id, %kind, "job already queued or running; duplicate ignored");
            return;
        }
        match self.store.get(job_id) {
            Ok(Some(Record { internal: true, .. })) => return,
            Ok(Some(Record { final_status: Some(_), .. })) if self.outbox.final_on_its_way(job_id).is_some() => {
                tracing::info!(%job_id, %kind, "job already finished, its final status not yet acknowledged; duplicate ignored");
                return;
            }
            Ok(Some(Record { final_status: Some(status), .. })) => {
                tracing::info!(%job_id, kind = %status.kind, "job already finished; final status sent again");
                self.outbox.push(Event::JobStatus(status));
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(%job_id, error = %e, "job store: cannot read the record; treating the job as new")
            }
        }
        let record = Record {
            job_id: msg.job_id.clone(),
            kind: msg.kind.clone(),
            arrival: self.next_arrival(),
            state: State::Queued,
            params: msg.params,
            received_ms: time::unix_millis(SystemTime::now()),
            finished_ms: None,
            final_status: None,
            internal: msg.internal,
        };
        self.save(&record);
        self.status(&record, Status::Queued);
        tracing::info!(%job_id, %kind, "job queued");
        self.schedule(record);
    }

    /// Parses the params and queues the job, or ends it if they break a rule.
    fn schedule(&mut self, record: Record) {
        match lifecycle::parse(&self.catalogue, &record.job_id, &record.kind, &record.params, record.internal) {
            Ok(job) => {
                self.scheduler.push(record.arrival, job.resources());
                self.ids.insert(record.job_id.clone(), record.arrival);
                self.active.insert(record.arrival, Active { record, job: Some(job), started_at: None });
            }
            Err(e) => {
                self.finish(record, None, Err(e));
            }
        }
    }

    fn start_runnable(&mut self) {
        for arrival in self.scheduler.start() {
            let active = self.active.get_mut(&arrival).expect("scheduled jobs are active");
            let job = active.job.take().expect("a job starts once");
            active.record.state = State::Running;
            active.started_at = Some(time::now());
            let record = active.record.clone();
            self.save(&record);
            self.status(&record, Status::Running);
            let secrets = Arc::new(Secrets::of(&record.params));
            // A renewal's live output has no job of the control plane's to belong to.
            let output = if record.internal { mpsc::channel(1).0 } else { self.output.clone() };
            let ctx = JobContext::new(record.job_id.clone(), &self.machine, secrets, output)
                .scheduled(arrival, self.releases.0.clone());
            let span = tracing::info_span!("job", job_id = %record.job_id, kind = %record.kind);
            self.running.spawn(
                async move {
                    tracing::info!("job running");
                    (arrival, lifecycle::run(job, ctx).await)
                }
                .instrument(span),
            );
        }
    }

    /// Ends a job that stopped; true when the host must reboot now (`server.reboot`).
    fn joined(&mut self, joined: Result<(u64, Result<Outcome, JobError>), tokio::task::JoinError>) -> bool {
        // Tasks are only aborted in `drain`, and panics are caught inside them.
        let Ok((arrival, result)) = joined else { return false };
        self.scheduler.finish(arrival);
        let Some(active) = self.active.remove(&arrival) else { return false };
        self.ids.remove(&active.record.job_id);
        self.finish(active.record, active.started_at, result)
    }

    /// After a `server.reboot` job's final status is in the outbox: waits until the
    /// control plane acknowledges it (or `wait` passes), makes sure nothing waits
    /// for the disk, then runs the reboot command. The engine takes no job meanwhile
    /// (they queue, and a control plane resends them after the reboot).
    async fn reboot(&mut self, wait: Duration) {
        let through = self.outbox.next_seq().saturating_sub(1);
        let deadline = tokio::time::Instant::now() + wait;
        while !self.outbox.acked_through(through) {
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    seq = through,
                    wait_secs = wait.as_secs(),
                    "reboot: no acknowledgement in time; rebooting anyway"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.outbox.retry();
        tracing::warn!(seq = through, "rebooting the host (server.reboot)");
        let machine = self.machine.clone();
        match tokio::task::spawn_blocking(move || machine.reboot()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "the reboot command failed; the host did not reboot"),
            Err(e) => tracing::error!(error = %e, "the reboot command did not run"),
        }
    }

    /// Sends the final status, then marks the record finished (without its params);
    /// true when the host must reboot now (`server.reboot`).
    fn finish(&mut self, record: Record, started_at: Option<String>, result: Result<Outcome, JobError>) -> bool {
        let secrets = Secrets::of(&record.params);
        let lifecycle::Ended { status, reboot } =
            lifecycle::end(&record.job_id, &record.kind, started_at, result, &secrets);
        if !record.internal {
            self.outbox.push(Event::JobStatus(status.clone()));
        } else if let Some(event) = crate::jobs::ssl::renewal_event(&record.params, &status, &self.machine.inventory) {
            self.outbox.push(Event::SslRenewal(event));
        }
        self.mark_finished(record, status);
        reboot
    }

    /// The record as finished with `status`, without its params (they may hold secrets).
    fn mark_finished(&mut self, mut record: Record, status: JobStatus) {
        record.state = State::Finished;
        record.params = Value::Null;
        record.finished_ms = Some(time::unix_millis(SystemTime::now()));
        record.final_status = Some(status);
        self.save(&record);
    }

    async fn drain(&mut self) {
        let mut running = std::mem::take(&mut self.running);
        let waited = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(joined) = running.join_next().await {
                if self.joined(joined) {
                    // Stopping: its status is stored (sent at the next start); no wait.
                    self.reboot(Duration::ZERO).await;
                }
            }
        })
        .await;
        if waited.is_err() {
            running.abort_all();
            for active in self.active.values().filter(|a| a.record.state == State::Running) {
                tracing::warn!(job_id = %active.record.job_id, kind = %active.record.kind,
                    "job interrupted by shutdown; it runs again at the next start");
            }
        }
    }

    fn prune(&mut self) {
        match self.store.prune(SystemTime::now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "job store: old finished records removed"),
            Err(e) => tracing::warn!(error = %e, "job store: pruning failed"),
        }
    }

    fn status(&self, record: &Record, status: Status) {
        if record.internal {
            return;
        }
        let event = JobStatus::progress(&record.job_id, &record.kind, status, time::now());
        self.outbox.push(Event::JobStatus(event));
    }

    fn save(&self, record: &Record) {
        if let Err(e) = self.store.save(record) {
            tracing::error!(job_id = %record.job_id, kind = %record.kind, error = %e,
                "job store: cannot save the job record; the job goes on but would not survive a restart");
        }
    }

    fn next_arrival(&mut self) -> u64 {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        self.last_arrival = now.max(self.last_arrival + 1);
        self.last_arrival
    }
}
