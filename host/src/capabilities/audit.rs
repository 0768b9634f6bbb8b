//! The `audit` capability: events are queued without blocking the request
//! and delivered in the background, by one courier task, to the backend
//! (or the embedded store).
//!
//! * An event the backend cannot take right now goes to the host's spool
//!   file ([`file_spool`]); while it holds anything, new events join it, and
//!   it is replayed in order once the backend answers again, including
//!   after a restart.
//! * At a stop ([`AuditWorker::finish`]) the courier takes no new events,
//!   delivers what is queued while the stop's time allows, and then hands
//!   what is left, in order, to the region's spool in Valkey
//!   ([`shared_spool`], the one the Spin adapters use): a sidecar's file
//!   would be removed with its container. Without Valkey, or when Valkey
//!   cannot take it, the backlog stays in the file.
//! * Every host on Valkey drains that shared spool in the background.
//!
//! Delivery is at least once: an event is delivered again when the stop
//! cut its delivery short, or its drainer died between the backend's
//! answer and the removal. Nothing is dropped silently: only a full
//! in-memory queue or a spool that cannot be written loses events, and
//! both are logged and counted (`cronium_audit_lost_total`).

mod file_spool;
mod shared_spool;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cronium_rules::audit_spool::Delivery;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use wasmtime::component::{Linker, Resource};

use self::file_spool::FileSpool;
use self::shared_spool::SharedSpool;
use super::backend::{AuditRecord, Backend, BackendError};
use super::cache::valkey::ValkeyCache;
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::audit as wit_audit;
use crate::bindings::auth::Caller;

/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// A delivery is tried this often before its event is spooled.
const ATTEMPTS: usize = 2;
/// Queued events written to the spool file at once, while it is in use.
const SPOOL_BATCH: usize = 1024;
/// How often the spool file is retried while the backend is away.
const REPLAY_EVERY: Duration = Duration::from_secs(1);
/// How often the shared spool in Valkey is looked at (one `LLEN`).
const SHARED_DRAIN_EVERY: Duration = Duration::from_secs(2);
/// At a stop, the end of the audit's time kept for handing the backlog
/// over to Valkey (at most half of that time).
const HANDOVER_RESERVE: Duration = Duration::from_secs(1);

/// Counters of the audit trail.
#[derive(Debug, Default)]
pub struct AuditStats {
    /// Taken by the backend.
    pub delivered: AtomicU64,
    /// Written to the spool file because the backend could not take them.
    pub spooled: AtomicU64,
    /// Events in the spool file now.
    pub spool_backlog: AtomicU64,
    /// Handed over to the shared spool in Valkey at a stop.
    pub handed_over: AtomicU64,
    /// Refused by the backend (a 4xx other than 404: retrying cannot help).
    pub refused: AtomicU64,
    /// Lost: the queue was full or the spool could not be written.
    pub lost: AtomicU64,
}

/// The sending side, shared by every request.
pub struct AuditSink {
    queue: mpsc::Sender<AuditRecord>,
    stats: Arc<AuditStats>,
}

/// The courier task; [`AuditWorker::finish`] stops it.
pub struct AuditWorker {
    task: JoinHandle<()>,
    /// When the courier must hand over what it still holds.
    handover_at: watch::Sender<Option<Instant>>,
}

impl AuditSink {
    /// Starts delivering to `backend`, spooling to `spool_dir` what it
    /// cannot take (and replaying what an earlier run left there). With
    /// `shared`, the region's Valkey, it drains the shared spool there and
    /// hands its backlog over to it at a stop. At most `queue_max` events
    /// wait in memory (`CRONIUM_AUDIT_QUEUE`); more are lost and counted.
    pub fn start(
        backend: Arc<Backend>,
        spool_dir: PathBuf,
        shared: Option<Arc<ValkeyCache>>,
        queue_max: usize,
    ) -> (AuditSink, AuditWorker) {
        let (queue, receiver) = mpsc::channel(queue_max);
        let (handover_at, stop) = watch::channel(None);
        let stats = Arc::new(AuditStats::default());
        let courier = Courier {
            file: FileSpool::open(spool_dir, stats.clone()),
            shared: shared.map(SharedSpool::new),
            backend,
            stats: stats.clone(),
            running: JoinSet::new(),
            in_flight: BTreeMap::new(),
            held: Vec::new(),
            next_seq: 0,
        };
        let task = tokio::spawn(courier.run(receiver, stop));
        (
            AuditSink { queue, stats },
            AuditWorker { task, handover_at },
        )
    }

    /// Queues `record`; never waits.
    pub fn emit(&self, record: AuditRecord) {
        if let Err(error) = self.queue.try_send(record) {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            let (record, why) = match error {
                mpsc::error::TrySendError::Full(r) => (r, "audit queue full; event lost"),
                mpsc::error::TrySendError::Closed(r) => (r, "audit stopped; event lost"),
            };
            tracing::error!(execution_id = %record.execution_id, action = %record.action, "{why}");
        }
    }

    /// The counters.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Events waiting: in the queue and in the spool.
    pub fn backlog(&self) -> u64 {
        (self.queue.max_capacity() - self.queue.capacity()) as u64
            + self.stats.spool_backlog.load(Ordering::Relaxed)
    }
}

impl AuditWorker {
    /// Stops the courier within `deadline`: it takes no new event, delivers
    /// what is queued while time allows, and at the end hands what is left
    /// over to the shared spool in Valkey (or keeps it in the spool file).
    pub async fn finish(self, deadline: Duration) {
        let reserve = HANDOVER_RESERVE.min(deadline / 2);
        let _ = self
            .handover_at
            .send(Some(Instant::now() + deadline - reserve));
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            tracing::warn!("audit events were still being handed over at shutdown");
        }
    }
}

/// The courier's state: what is under way, held back or spooled.
struct Courier {
    backend: Arc<Backend>,
    stats: Arc<AuditStats>,
    file: FileSpool,
    shared: Option<SharedSpool>,
    /// Deliveries under way, each answering its event's number and whether
    /// the event left (taken or refused for good).
    running: JoinSet<(u64, bool)>,
    /// Copies of the events under way, so that a stop keeps the ones
    /// whose delivery it cuts short.
    in_flight: BTreeMap<u64, AuditRecord>,
    /// Events whose delivery failed, and those that arrived since: once
    /// the deliveries under way settle, they are spooled in arrival order.
    held: Vec<(u64, AuditRecord)>,
    /// Events are numbered as they arrive.
    next_seq: u64,
}

impl Courier {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<AuditRecord>,
        mut stop: watch::Receiver<Option<Instant>>,
    ) {
        let mut replay = tokio::time::interval(REPLAY_EVERY);
        let mut shared_drain = tokio::time::interval(SHARED_DRAIN_EVERY);
        let mut open = true;
        // Cleared when the worker is dropped without a stop: the courier
        // then runs until every sink is gone.
        let mut watched = true;
        loop {
            let handover_at = *stop.borrow();
            if handover_at.is_some() {
                // Queued events are still received; new ones are refused.
                queue.close();
            }
            let settling = !self.held.is_empty();
            tokio::select! {
                changed = stop.changed(), if watched && handover_at.is_none() => {
                    watched = changed.is_ok();
                }
                received = queue.recv(), if open && self.can_take() => match received {
                    Some(record) => self.take(record, &mut queue),
                    None => open = false,
                },
                Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                    if let Ok(done) = done {
                        self.settle(done);
                    }
                }
                _ = replay.tick(), if !self.file.is_empty() && !settling => {
                    unless_handover(&mut stop, self.file.replay(&self.backend)).await;
                }
                _ = shared_drain.tick(), if handover_at.is_none() && self.file.is_empty() && !settling => {
                    if let Some(shared) = &self.shared {
                        unless_handover(&mut stop, shared.drain(&self.backend, &self.stats)).await;
                    }
                }
                () = sleep_until(handover_at), if handover_at.is_some() => {
                    return self.hand_over(queue).await;
                }
            }
            if !self.held.is_empty() && self.running.is_empty() {
                let held = in_arrival_order(std::mem::take(&mut self.held));
                self.file.append(&held);
            }
            if !open && self.running.is_empty() && self.held.is_empty() {
                // Every sink is gone or the stop closed the queue: a last
                // replay while time allows, then what remains is handed over.
                if !self.file.is_empty() {
                    unless_handover(&mut stop, self.file.replay(&self.backend)).await;
                }
                if stop.borrow().is_some() {
                    self.hand_over(queue).await;
                }
                return;
            }
        }
    }

    /// Whether a new event can be taken now: a delivery slot is free, or
    /// the event would be held or spooled anyway.
    fn can_take(&self) -> bool {
        self.running.len() < CONCURRENCY || !self.held.is_empty() || !self.file.is_empty()
    }

    fn take(&mut self, record: AuditRecord, queue: &mut mpsc::Receiver<AuditRecord>) {
        self.next_seq += 1;
        let seq = self.next_seq;
        if !self.held.is_empty() {
            self.held.push((seq, record));
        } else if !self.file.is_empty() {
            // The spool is in use: join it, to keep the order, with what
            // else is queued, in one write and one sync.
            let mut joining = vec![record];
            while joining.len() < SPOOL_BATCH
                && let Ok(record) = queue.try_recv()
            {
                self.next_seq += 1;
                joining.push(record);
            }
            self.file.append(&joining);
        } else {
            self.in_flight.insert(seq, record.clone());
            let (backend, stats) = (self.backend.clone(), self.stats.clone());
            self.running.spawn(async move {
                let delivery = deliver(&backend, &record, &stats).await;
                (seq, delivery != Delivery::Failed)
            });
        }
    }

    /// A delivery ended: a failure holds its event back, to be spooled.
    fn settle(&mut self, (seq, left): (u64, bool)) {
        if let Some(record) = self.in_flight.remove(&seq)
            && !left
        {
            self.held.push((seq, record));
        }
    }

    /// At the stop's deadline, or once the queue is worked off: everything
    /// not delivered (the spool file, the deliveries cut short, the held
    /// and the queued events, in arrival order) goes to the shared spool in
    /// one command; what it cannot take stays in the file.
    async fn hand_over(mut self, mut queue: mpsc::Receiver<AuditRecord>) {
        self.running.abort_all();
        let in_flight = std::mem::take(&mut self.in_flight).into_iter();
        let mut left = in_arrival_order(in_flight.chain(std::mem::take(&mut self.held)).collect());
        while let Ok(record) = queue.try_recv() {
            left.push(record);
        }
        let Some(shared) = &self.shared else {
            return self.file.append(&left);
        };
        let mut bodies = match self.file.bodies() {
            Ok(bodies) => bodies,
            Err(error) => {
                tracing::error!(%error, "audit spool cannot be read; it stays on disk");
                return self.file.append(&left);
            }
        };
        let from_file = bodies.len();
        bodies.extend(left.iter().map(AuditRecord::to_json));
        if bodies.is_empty() {
            return;
        }
        let bodies: Vec<String> = bodies.into();
        match shared.take_over(&bodies).await {
            Ok(()) => {
                self.stats
                    .handed_over
                    .fetch_add(bodies.len() as u64, Ordering::Relaxed);
                tracing::info!(events = bodies.len(), "audit backlog handed over to Valkey");
                if from_file > 0
                    && let Err(error) = self.file.clear()
                {
                    tracing::error!(%error, "audit spool cannot be emptied; its events may be sent twice");
                }
            }
            Err(error) => {
                tracing::warn!(%error, events = bodies.len(), "Valkey cannot take the audit backlog; it stays on disk");
                self.file.append(&left);
            }
        }
    }
}

/// Numbered events, in the order they arrived.
fn in_arrival_order(mut events: Vec<(u64, AuditRecord)>) -> Vec<AuditRecord> {
    events.sort_by_key(|(seq, _)| *seq);
    events.into_iter().map(|(_, record)| record).collect()
}

/// Runs `work` unless the hand-over time comes first (`None` then, the
/// work dropped where it stood).
async fn unless_handover<F: Future>(
    stop: &mut watch::Receiver<Option<Instant>>,
    work: F,
) -> Option<F::Output> {
    let handover = async {
        loop {
            let at = *stop.borrow_and_update();
            if at.is_some() {
                return sleep_until(at).await;
            }
            if stop.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    };
    tokio::select! {
        output = work => Some(output),
        () = handover => None,
    }
}

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Delivers one event, trying [`ATTEMPTS`] times, and counts the outcome.
async fn deliver(backend: &Backend, record: &AuditRecord, stats: &AuditStats) -> Delivery {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match backend.record_audit(record).await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return Delivery::Taken;
            }
            Err(BackendError::Rejected { status, message }) => {
                // Retrying cannot change a refusal; keeping it would block the spool.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(execution_id = %record.execution_id, action = %record.action, status, %message,
                    "backend refused an audit event");
                return Delivery::Refused;
            }
            Err(_) => {}
        }
    }
    Delivery::Failed
}

/// Adds the WIT `audit` interface to `linker`.
pub fn add_to_linker<T: CapabilitiesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit_audit::add_to_linker::<T, HasCapabilities>(linker, T::capabilities)
}

impl wit_audit::Host for CapabilitiesCtxView<'_> {
    async fn emit(
        &mut self,
        caller: Resource<Caller>,
        event: wit_audit::AuditEvent,
    ) -> wasmtime::Result<()> {
        let claims = self.claims(&caller)?;
        let metadata = cronium_rules::backend::audit_metadata(
            &event.details,
            claims.user_id.as_deref(),
            Some(&claims.job_id),
            &event.outcome,
        );
        self.ctx.capabilities.audit.emit(AuditRecord {
            execution_id: claims.execution_id.clone(),
            action: event.action,
            metadata,
            timestamp: super::backend::now_rfc3339(),
        });
        Ok(())
    }
}
