//! The embedded store: the backend of the embedded defaults, for running
//! the host without a Cronium backend. Plain files in the data directory,
//! written atomically (temporary file, fsync, rename), so that they
//! survive a restart and a person can read them:
//!
//! ```text
//! <data-dir>/executions/<id>.json   the execution record (created by `cronium-runtime execution create` or `dev`)
//! <data-dir>/outputs/<id>.json      {"output":..,"timestamp":..}
//! <data-dir>/conditions/<id>.json   {"condition":..,"timestamp":..}
//! <data-dir>/variables/<sha256(user)>/<sha256(key)>.json   {"userId","key","value","updatedAt"}
//! <data-dir>/audit.jsonl            one audit event per line
//! ```
//!
//! A variable's `value` is the text the Cronium app would keep
//! ([`cronium_rules::variables::text`]), so the embedded store answers
//! exactly as the app does. Tool credentials are the operator's files of
//! [`super::credentials`], as with every backend.

use std::io::Write;
use std::path::{Path, PathBuf};

use cronium_rules::variables::text;
use cronium_rules::wire::{self, Execution};
use serde_json::value::RawValue;
use tokio::sync::Mutex;

use super::{AuditRecord, BackendError, StoredVariable, now_rfc3339};

/// Why the store cannot be opened or written.
#[derive(Debug, thiserror::Error)]
#[error("embedded store at {path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// The embedded store in one directory.
pub struct EmbeddedStore {
    dir: PathBuf,
    /// Serialises appends to the audit log.
    audit_log: Mutex<()>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        for sub in ["executions", "outputs", "conditions", "variables"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|source| StoreError { path, source })?;
        }
        Ok(EmbeddedStore {
            dir: dir.to_owned(),
            audit_log: Mutex::new(()),
        })
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates or replaces an execution record.
    pub fn put_execution(&self, execution: &Execution) -> Result<(), StoreError> {
        let path = self
            .record_path("executions", &execution.execution_id)
            .ok_or_else(|| StoreError {
                path: self.dir.join("executions"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "execution ids are 1 to 128 characters of A-Z a-z 0-9 . _ -",
                ),
            })?;
        let json = serde_json::to_vec_pretty(execution).expect("executions serialize");
        write_atomically(&path, &json).map_err(|source| StoreError { path, source })
    }

    pub(crate) async fn get_execution(&self, id: &str) -> Result<Execution, BackendError> {
        let path = self
            .record_path("executions", id)
            .ok_or(BackendError::NotFound)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackendError::NotFound);
            }
            Err(e) => return Err(BackendError::Unavailable(format!("embedded store: {e}"))),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| BackendError::InvalidResponse(format!("embedded execution {id}: {e}")))
    }

    pub(crate) async fn set_output(&self, id: &str, output: &RawValue) -> Result<(), BackendError> {
        self.require_execution(id).await?;
        let timestamp = now_rfc3339();
        let body = serde_json::to_vec(&wire::OutputRequest {
            output,
            timestamp: &timestamp,
        })
        .expect("outputs serialize");
        self.write("outputs", id, body).await
    }

    pub(crate) async fn set_condition(
        &self,
        id: &str,
        condition: bool,
    ) -> Result<(), BackendError> {
        self.require_execution(id).await?;
        let timestamp = now_rfc3339();
        let body = serde_json::to_vec(&wire::ConditionRequest {
            condition,
            timestamp: &timestamp,
        })
        .expect("conditions serialize");
        self.write("conditions", id, body).await
    }

    pub(crate) async fn get_variable(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<Option<StoredVariable>, BackendError> {
        let path = self.variable_path(user_id, key);
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(BackendError::Unavailable(format!("embedded store: {e}"))),
        };
        let stored: StoredFile = serde_json::from_slice(&bytes)
            .map_err(|e| BackendError::InvalidResponse(format!("embedded variable: {e}")))?;
        // Files written before values were kept as text hold the value.
        let value = text::from_backend(stored.value);
        if value.is_null() {
            return Ok(None);
        }
        Ok(Some(StoredVariable {
            key: stored.key,
            value: value.to_string(),
            updated_at: Some(stored.updated_at),
        }))
    }

    pub(crate) async fn set_variable(
        &self,
        user_id: &str,
        key: &str,
        value: &RawValue,
    ) -> Result<(), BackendError> {
        let path = self.variable_path(user_id, key);
        let stored = StoredFile {
            user_id: user_id.to_owned(),
            key: key.to_owned(),
            value: serde_json::Value::String(text::encode(
                &serde_json::from_str(value.get())
                    .map_err(|e| BackendError::InvalidResponse(e.to_string()))?,
            )),
            updated_at: now_rfc3339(),
        };
        let body = serde_json::to_vec(&stored).expect("variables serialize");
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_atomically(&path, &body)
        })
        .await
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .map_err(|e| BackendError::Unavailable(format!("embedded store: {e}")))
    }

    pub(crate) async fn delete_variable(
        &self,
        user_id: &str,
        key: &str,
    ) -> Result<bool, BackendError> {
        match tokio::fs::remove_file(self.variable_path(user_id, key)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(BackendError::Unavailable(format!("embedded store: {e}"))),
        }
    }

    /// Variables are filed by hashes of the user and the key, which may
    /// hold anything.
    fn variable_path(&self, user_id: &str, key: &str) -> PathBuf {
        self.dir
            .join("variables")
            .join(sha256_hex(user_id))
            .join(format!("{}.json", sha256_hex(key)))
    }

    pub(crate) async fn record_audit(&self, event: &AuditRecord) -> Result<(), BackendError> {
        let mut line = event.to_json().into_bytes();
        line.push(b'\n');
        let path = self.dir.join("audit.jsonl");
        let _guard = self.audit_log.lock().await;
        tokio::task::spawn_blocking(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            file.write_all(&line)
        })
        .await
        .map_err(|e| BackendError::Unavailable(e.to_string()))?
        .map_err(|e| BackendError::Unavailable(format!("embedded audit log: {e}")))
    }

    async fn require_execution(&self, id: &str) -> Result<(), BackendError> {
        let path = self
            .record_path("executions", id)
            .ok_or(BackendError::NotFound)?;
        match tokio::fs::try_exists(&path).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BackendError::NotFound),
            Err(e) => Err(BackendError::Unavailable(format!("embedded store: {e}"))),
        }
    }

    async fn write(&self, kind: &str, id: &str, body: Vec<u8>) -> Result<(), BackendError> {
        let path = self.record_path(kind, id).ok_or(BackendError::NotFound)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &body))
            .await
            .map_err(|e| BackendError::Unavailable(e.to_string()))?
            .map_err(|e| BackendError::Unavailable(format!("embedded store: {e}")))
    }

    /// `<dir>/<kind>/<id>.json`, for ids that are safe file names.
    fn record_path(&self, kind: &str, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.dir.join(kind).join(format!("{id}.json")))
    }
}

/// A variable as the embedded store files it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredFile {
    user_id: String,
    key: String,
    value: serde_json::Value,
    updated_at: String,
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Ids used as file names: 1 to 128 of `A-Z a-z 0-9 . _ -`, not starting
/// with a dot.
pub fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new
/// content, never a mix.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_could_escape_the_directory_are_not_file_names() {
        assert!(valid_id("exec-1_a.b"));
        for bad in ["", "..", "../x", "a/b", ".hidden", "a\0b", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
