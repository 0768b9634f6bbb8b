//! The host's own spool: audit events the backend could not take, one JSON
//! body a line (the body of `POST /api/internal/audit`), in order, in a file
//! under the data directory. It outlives a restart of the host; a stop hands
//! it over to the shared spool in Valkey when there is one
//! ([`super::shared_spool`]), since a container's file system may not
//! outlive the container.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use cronium_rules::audit_spool::leaves_spool;

use super::{AuditStats, deliver};
use crate::capabilities::backend::{AuditRecord, Backend};

/// Audit events on disk, one JSON object a line, in order.
pub(super) struct FileSpool {
    path: PathBuf,
    /// Lines in the file (kept in step with it).
    pending: u64,
    stats: Arc<AuditStats>,
}

impl FileSpool {
    /// The spool in `dir`, with what an earlier run left there.
    pub(super) fn open(dir: PathBuf, stats: Arc<AuditStats>) -> FileSpool {
        let path = dir.join("audit-spool.jsonl");
        let pending = read_lines(&path).map(|l| l.len() as u64).unwrap_or(0);
        if pending > 0 {
            tracing::info!(pending, path = %path.display(), "audit events from an earlier run will be replayed");
        }
        if let Err(error) = std::fs::create_dir_all(&dir) {
            tracing::warn!(%error, dir = %dir.display(), "audit spool directory cannot be created");
        }
        let spool = FileSpool {
            path,
            pending,
            stats,
        };
        spool.count();
        spool
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Appends `records` behind the others, written and synced at once.
    /// Events that cannot be written are counted as lost and logged.
    pub(super) fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a AuditRecord>) {
        let records: Vec<&AuditRecord> = records.into_iter().collect();
        if records.is_empty() {
            return;
        }
        let text: String = records
            .iter()
            .map(|record| record.to_json() + "\n")
            .collect();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_data()));
        match written {
            Ok(()) => {
                self.pending += records.len() as u64;
                self.stats
                    .spooled
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                self.count();
            }
            Err(error) => {
                self.stats
                    .lost
                    .fetch_add(records.len() as u64, Ordering::Relaxed);
                for record in records {
                    tracing::error!(%error, execution_id = %record.execution_id, action = %record.action,
                        "audit spool cannot be written; event lost");
                }
            }
        }
    }

    /// The spooled bodies, oldest first.
    pub(super) fn bodies(&self) -> std::io::Result<VecDeque<String>> {
        read_lines(&self.path)
    }

    /// Empties the spool (its events were handed over).
    pub(super) fn clear(&mut self) -> std::io::Result<()> {
        self.keep(&VecDeque::new())
    }

    /// Keeps only `rest` (what is left of [`FileSpool::bodies`]).
    pub(super) fn keep(&mut self, rest: &VecDeque<String>) -> std::io::Result<()> {
        let text: String = rest.iter().map(|l| format!("{l}\n")).collect();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.path))?;
        self.pending = rest.len() as u64;
        self.count();
        Ok(())
    }

    /// Delivers the spooled events in order, stopping at the first that
    /// fails; keeps the rest. Dropped half-way (a stop), it leaves the file
    /// whole: the events it delivered are delivered again later.
    pub(super) async fn replay(&mut self, backend: &Backend) {
        let mut lines = match self.bodies() {
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
            if !leaves_spool(deliver(backend, &record, &self.stats).await) {
                break;
            }
            lines.pop_front();
        }
        if lines.len() == before {
            return;
        }
        if let Err(error) = self.keep(&lines) {
            tracing::error!(%error, "audit spool cannot be rewritten; delivered events may be sent again");
            return;
        }
        tracing::info!(
            delivered = before - lines.len(),
            left = lines.len(),
            "audit spool replayed"
        );
    }

    fn count(&self) {
        self.stats
            .spool_backlog
            .store(self.pending, Ordering::Relaxed);
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
