//! The `audit` capability: events are queued without blocking the request
//! and delivered in the background to the backend (or the embedded
//! store). An event the backend cannot take right now goes to a spool
//! file on disk; while the spool holds anything, new events join it, and
//! it is replayed in order once the backend answers again, including
//! after a restart. Nothing is dropped silently: only a full in-memory
//! queue or a spool that cannot be written loses events, and both are
//! logged and counted (`cronium_audit_lost_total`).

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::backend::{AuditRecord, Backend, BackendError};
use super::{CapabilitiesCtxView, CapabilitiesView, HasCapabilities};
use crate::bindings::audit as wit_audit;
use crate::bindings::auth::Caller;
use wasmtime::component::{Linker, Resource};

/// Events waiting in memory before new ones are refused (and counted).
const QUEUE: usize = 100_000;
/// Deliveries in flight at once.
const CONCURRENCY: usize = 8;
/// A delivery is tried this often before its event is spooled.
const ATTEMPTS: usize = 2;
/// How often the spool is retried while the backend is away.
const REPLAY_EVERY: Duration = Duration::from_secs(1);

/// Counters of the audit trail.
#[derive(Debug, Default)]
pub struct AuditStats {
    pub delivered: AtomicU64,
    /// Written to the spool because the backend could not take them.
    pub spooled: AtomicU64,
    /// Events in the spool now.
    pub spool_backlog: AtomicU64,
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

/// The delivery task; [`AuditWorker::finish`] waits for the queue to drain.
pub struct AuditWorker {
    task: JoinHandle<()>,
}

impl AuditSink {
    /// Starts delivering to `backend`, spooling to `spool_dir` what it
    /// cannot take (and replaying what an earlier run left there).
    pub fn start(backend: Arc<Backend>, spool_dir: PathBuf) -> (AuditSink, AuditWorker) {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let stats = Arc::new(AuditStats::default());
        let spool = Spool::open(spool_dir, stats.clone());
        let task = tokio::spawn(deliver_all(backend, receiver, spool, stats.clone()));
        (AuditSink { queue, stats }, AuditWorker { task })
    }

    /// Queues `record`; never waits.
    pub fn emit(&self, record: AuditRecord) {
        if let Err(error) = self.queue.try_send(record) {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            let record = match error {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            tracing::error!(
                execution_id = %record.execution_id,
                action = %record.action,
                "audit queue full; event lost"
            );
        }
    }

    /// The counters.
    pub fn stats(&self) -> &AuditStats {
        &self.stats
    }

    /// Events waiting: in the queue and in the spool.
    pub fn backlog(&self) -> u64 {
        (QUEUE - self.queue.capacity()) as u64 + self.stats.spool_backlog.load(Ordering::Relaxed)
    }
}

impl AuditWorker {
    /// Waits up to `deadline` for queued events to be delivered (or
    /// spooled), once every [`AuditSink`] has been dropped.
    pub async fn finish(self, deadline: Duration) {
        if tokio::time::timeout(deadline, self.task).await.is_err() {
            tracing::warn!("audit events were still being delivered at shutdown");
        }
    }
}

async fn deliver_all(
    backend: Arc<Backend>,
    mut receiver: mpsc::Receiver<AuditRecord>,
    mut spool: Spool,
    stats: Arc<AuditStats>,
) {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let (failed_tx, mut failed) = mpsc::unbounded_channel::<(u64, AuditRecord)>();
    let mut running = tokio::task::JoinSet::new();
    let mut replay = tokio::time::interval(REPLAY_EVERY);
    // Events are numbered as they arrive. When a delivery fails, the ones
    // still in flight are let settle, and everything that failed or came
    // meanwhile is spooled in arrival order.
    let mut next_seq = 0u64;
    let mut held: Vec<(u64, AuditRecord)> = Vec::new();
    let mut settling = false;
    let mut open = true;
    loop {
        tokio::select! {
            received = receiver.recv(), if open => match received {
                Some(record) => {
                    next_seq += 1;
                    if settling {
                        held.push((next_seq, record));
                    } else if !spool.is_empty() {
                        // The spool is in use: join it, to keep the order.
                        spool.append(&record);
                    } else {
                        let permit = slots.clone().acquire_owned().await.expect("the semaphore is never closed");
                        let (backend, stats, failed_tx, seq) = (backend.clone(), stats.clone(), failed_tx.clone(), next_seq);
                        running.spawn(async move {
                            if !deliver(&backend, &record, &stats).await {
                                let _ = failed_tx.send((seq, record));
                            }
                            drop(permit);
                        });
                    }
                }
                None => open = false,
            },
            Some(failure) = failed.recv() => {
                settling = true;
                held.push(failure);
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = replay.tick(), if !spool.is_empty() && !settling => spool.replay(&backend, &stats).await,
            else => {}
        }
        if settling && running.is_empty() {
            while let Ok(failure) = failed.try_recv() {
                held.push(failure);
            }
            held.sort_by_key(|(seq, _)| *seq);
            for (_, record) in held.drain(..) {
                spool.append(&record);
            }
            settling = false;
        }
        if !open && running.is_empty() && !settling {
            if !spool.is_empty() {
                spool.replay(&backend, &stats).await;
            }
            break;
        }
    }
}

/// Delivers one event; false when it should be spooled.
async fn deliver(backend: &Backend, record: &AuditRecord, stats: &AuditStats) -> bool {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match backend.record_audit(record).await {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(BackendError::Rejected { status, message }) => {
                // Retrying cannot change a refusal; keeping it would block the spool.
                stats.refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(execution_id = %record.execution_id, action = %record.action, status, %message,
                    "backend refused an audit event");
                return true;
            }
            Err(_) => {}
        }
    }
    false
}

/// Audit events on disk, one JSON object a line, in order.
struct Spool {
    path: PathBuf,
    /// Lines in the file (kept in step with it).
    pending: u64,
    stats: Arc<AuditStats>,
}

impl Spool {
    fn open(dir: PathBuf, stats: Arc<AuditStats>) -> Spool {
        let path = dir.join("audit-spool.jsonl");
        let pending = std::fs::File::open(&path)
            .map(|f| std::io::BufReader::new(f).lines().count() as u64)
            .unwrap_or(0);
        if pending > 0 {
            tracing::info!(pending, path = %path.display(), "audit events from an earlier run will be replayed");
        }
        stats.spool_backlog.store(pending, Ordering::Relaxed);
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "audit spool directory cannot be created");
        }
        Spool {
            path,
            pending,
            stats,
        }
    }

    fn is_empty(&self) -> bool {
        self.pending == 0
    }

    fn append(&mut self, record: &AuditRecord) {
        let mut line = record.to_json();
        line.push('\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
        match written {
            Ok(()) => {
                self.pending += 1;
                self.stats.spooled.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .spool_backlog
                    .store(self.pending, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, execution_id = %record.execution_id, action = %record.action,
                    "audit spool cannot be written; event lost");
            }
        }
    }

    /// Delivers the spooled events in order, stopping at the first that
    /// fails; keeps the rest.
    async fn replay(&mut self, backend: &Backend, stats: &AuditStats) {
        let mut lines: VecDeque<String> = match read_lines(&self.path) {
            Ok(lines) => lines,
            Err(error) => {
                tracing::error!(%error, "audit spool cannot be read");
                return;
            }
        };
        let before = lines.len();
        while let Some(line) = lines.front() {
            let Some(record) = AuditRecord::from_json(line) else {
                tracing::error!("unreadable line in the audit spool; skipped");
                self.stats.lost.fetch_add(1, Ordering::Relaxed);
                lines.pop_front();
                continue;
            };
            if !deliver(backend, &record, stats).await {
                break;
            }
            lines.pop_front();
        }
        if lines.len() == before {
            return;
        }
        let rest: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let tmp = self.path.with_extension("tmp");
        let rewritten = std::fs::write(&tmp, rest).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(error) = rewritten {
            tracing::error!(%error, "audit spool cannot be rewritten; delivered events may be sent again");
            return;
        }
        self.pending = lines.len() as u64;
        self.stats
            .spool_backlog
            .store(self.pending, Ordering::Relaxed);
        tracing::info!(
            delivered = before - lines.len(),
            left = lines.len(),
            "audit spool replayed"
        );
    }
}

fn read_lines(path: &Path) -> std::io::Result<VecDeque<String>> {
    match std::fs::File::open(path) {
        Ok(f) => std::io::BufReader::new(f)
            .lines()
            .filter(|l| !matches!(l, Ok(l) if l.is_empty()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VecDeque::new()),
        Err(e) => Err(e),
    }
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
