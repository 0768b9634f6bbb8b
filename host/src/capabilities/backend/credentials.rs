//! Tool credentials the operator keeps as files, whatever the backend:
//! `<dir>/<user id>/<tool id>.json`, one JSON object each
//! (`CRONIUM_TOOL_CREDENTIALS_DIR`, by default `<data dir>/credentials`).
//!
//! The Cronium app has no credentials route, so against it these files are
//! where a built-in tool's credentials come from; a backend that has the
//! route is asked when no file is there.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::BackendError;
use super::embedded::valid_id;

/// The operator's credential files under one directory.
#[derive(Debug, Clone)]
pub struct CredentialFiles {
    dir: PathBuf,
}

impl CredentialFiles {
    /// The files under `dir` (which need not exist yet).
    pub fn new(dir: &Path) -> Self {
        CredentialFiles {
            dir: dir.to_owned(),
        }
    }

    /// The file of `user_id`'s credentials for `tool`; none for ids that
    /// are no safe file names.
    pub fn path(&self, user_id: &str, tool: &str) -> Option<PathBuf> {
        (valid_id(user_id) && valid_id(tool))
            .then(|| self.dir.join(user_id).join(format!("{tool}.json")))
    }

    /// `user_id`'s credentials for `tool`: `None` without a file, an
    /// error for a file that is not a JSON object (logged with its path).
    pub async fn get(&self, user_id: &str, tool: &str) -> Result<Option<Value>, BackendError> {
        let Some(path) = self.path(user_id, tool) else {
            return Ok(None);
        };
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "tool credentials unreadable");
                return Err(BackendError::Unavailable(format!(
                    "the credentials of {user_id}/{tool} cannot be read"
                )));
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(value @ Value::Object(_)) => Ok(Some(value)),
            _ => {
                tracing::warn!(path = %path.display(), "tool credentials are not a JSON object");
                Err(BackendError::InvalidResponse(format!(
                    "the stored credentials of {user_id}/{tool} are not a JSON object"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_users_file_is_their_credentials_and_no_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let files = CredentialFiles::new(dir.path());
        std::fs::create_dir_all(dir.path().join("u1")).unwrap();
        std::fs::write(dir.path().join("u1/slack.json"), r#"{"botToken":"x"}"#).unwrap();
        std::fs::write(dir.path().join("u1/email.json"), "[1]").unwrap();
        assert_eq!(
            files.get("u1", "slack").await.unwrap(),
            Some(serde_json::json!({"botToken": "x"}))
        );
        assert_eq!(files.get("u2", "slack").await.unwrap(), None);
        assert!(files.get("u1", "email").await.is_err());
        assert_eq!(files.get("../u1", "slack").await.unwrap(), None);
    }
}
