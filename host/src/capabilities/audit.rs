//! The `audit` capability: events are queued without blocking the request
//! and delivered in the background to the backend (or the embedded
//! store), with retries.
//!
//! Left for the hardening work: a durable buffer (Valkey stream or local
//! spool) for events that outlive the retries; today those are logged as
//! lost and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::backend::{AuditRecord, Backend, BackendError};

/// Events waiting for delivery before new ones are refused (and counted).
const QUEUE: usize = 10_000;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// Pauses between the attempts of one delivery.
const RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Counters of the audit trail.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub delivered: AtomicU64,
    /// Refused because the queue was full.
    pub overflowed: AtomicU64,
    /// Given up after every retry.
    pub lost: AtomicU64,
}

/// The sending side, shared by every request.
pub struct AuditSink {
    queue: mpsc::Sender<AuditRecord>,
    stats: Arc<AuditStats>,
}

/// The delivery task; [`AuditWorker::finish`] waits for the queue to drain.
pub struct AuditWorker {
    task: JoinHandle<()>,
}

impl AuditSink {
    /// Starts delivering to `backend`.
    pub fn start(backend: Arc<Backend>) -> (AuditSink, AuditWorker) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let task = tokio::spawn(deliver_all(backend, receiver, stats.clone()));
        (AuditSink { queue, stats }, AuditWorker { task })
    }

    /// Queues `record`; never waits.
    pub fn emit(&self, record: AuditRecord) {
        if let Err(error) = self.queue.try_send(record) {
            self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
            let record = match error {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            tracing::error!(
                execution_id = %record.execution_id,
                action = %record.action,
                "audit queue full; event not recorded"
            );
        }
    }

    /// The counters.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }
}

impl AuditWorker {
    /// Waits up to `deadline` for queued events to be delivered, once every
    /// [`AuditSink`] has been dropped.
    pub async fn finish(self, deadline: Duration) {
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            tracing::warn!("audit events were still being delivered at shutdown");
        }
    }
}

async fn deliver_all(
    backend: Arc<Backend>,
    mut receiver: mpsc::Receiver<AuditRecord>,
    stats: Arc<AuditStats>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut running = tokio::task::JoinSet::new();
    while let Some(record) = receiver.recv().await {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let backend = backend.clone();
        let stats = stats.clone();
        running.spawn(async move {
            deliver(&backend, &record, &stats).await;
            drop(permit);
        });
        // Reap finished deliveries so the set does not grow.
        while running.try_join_next().is_some() {}
    }
    while running.join_next().await.is_some() {}
}

async fn deliver(backend: &Backend, record: &AuditRecord, stats: &AuditStats) {
    let mut last: Option<BackendError> = None;
    for pause in std::iter::once(Duration::ZERO).chain(RETRY_PAUSES) {
        tokio::time::sleep(pause).await;
        match backend.record_audit(record).await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // A refusal will not change with a retry.
            Err(BackendError::Rejected { .. }) | Err(BackendError::NotFound) => {
                last = None;
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    stats.lost.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        execution_id = %record.execution_id,
        action = %record.action,
        error = last.map(|e| e.to_string()).unwrap_or_else(|| "refused by the backend".into()),
        "audit event could not be delivered"
    );
}
