//! The precompiled component cache: compiled components serialized on
//! disk, keyed by the engine's compatibility hash (wasmtime version and
//! every setting that affects code) and the component's SHA-256, so a
//! restart skips Cranelift. A stale or unreadable entry is recompiled
//! and replaced; a cache that cannot be written is only logged.
//!
//! Loading a serialized component trusts the file (it is machine code),
//! so the cache is used only while nobody else could have written it:
//! the directory is created private to the user, and a directory or entry
//! that another user owns, or that others may write, is refused (logged;
//! components are then compiled without the cache). Entries are only ever
//! written by this module.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components are kept (`None`: no cache).
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir` (created private to this user if missing); `None`
    /// disables it, and so does a directory this user cannot trust.
    pub fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.filter(|dir| match prepare(dir) {
            Ok(()) => true,
            Err(problem) => {
                tracing::warn!(
                    dir = %dir.display(),
                    problem,
                    "refusing the precompiled component cache; compiling without it"
                );
                false
            }
        });
        CompileCache { dir }
    }

    /// The directory in use, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The component of `wasm`: deserialized from the cache when a
    /// matching entry exists, else compiled (and stored).
    pub fn component(
        &self,
        engine: &Engine,
        name: &str,
        wasm: &[u8],
    ) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, wasm);
        };
        let path = dir.join(format!("{name}-{}.cwasm", key(engine, wasm)));
        if let Err(problem) = trusted(&path, false) {
            if path.exists() {
                tracing::warn!(component = name, path = %path.display(), problem, "refusing a precompiled component");
            }
        } else {
            // SAFETY: the file was written by `store` below from
            // `Component::serialize` for this very engine configuration
            // (the key covers it), in a directory private to this user.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    tracing::debug!(component = name, path = %path.display(), "loaded precompiled component");
                    return Ok(component);
                }
                Err(error) => {
                    tracing::warn!(component = name, %error, "stale precompiled component; recompiling")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(error) = store(dir, &path, &component) {
            tracing::warn!(component = name, %error, "could not write the precompiled component cache");
        }
        Ok(component)
    }
}

/// Creates `dir` private to this user when missing, then checks it.
fn prepare(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        create_private_dir(dir).map_err(|e| format!("cannot create it: {e}"))?;
    }
    trusted(dir, true)
}

/// Whether `path` is a directory (or, else, a regular file) that only this
/// user can have written: owned by the effective user, writable by nobody
/// else. A symbolic link to such a directory is followed; an entry must
/// not be a link.
#[cfg(unix)]
fn trusted(path: &Path, directory: bool) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let metadata = if directory {
        std::fs::metadata(path)
    } else {
        std::fs::symlink_metadata(path)
    }
    .map_err(|e| e.to_string())?;
    if directory && !metadata.is_dir() {
        return Err("not a directory".into());
    }
    if !directory && !metadata.is_file() {
        return Err("not a regular file".into());
    }
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if metadata.uid() != me {
        return Err(format!(
            "owned by uid {}, not by this user ({me})",
            metadata.uid()
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return Err(format!(
            "writable by other users (mode {:o})",
            metadata.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn trusted(path: &Path, directory: bool) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() == directory => Ok(()),
        Ok(_) => Err("wrong kind of file".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The cache key: engine compatibility and component content.
fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = Sha256::digest(wasm);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{:016x}-{hex}", hasher.finish())
}

fn store(dir: &Path, path: &Path, component: &Component) -> wasmtime::Result<()> {
    create_private_dir(dir)?;
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_missing_directory_is_created_private_and_used() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a").join("cache");
        let cache = CompileCache::new(Some(dir.clone()));
        assert_eq!(cache.dir(), Some(dir.as_path()));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let cache = CompileCache::new(Some(dir.path().to_owned()));
        assert_eq!(cache.dir(), None);
    }

    #[test]
    fn a_directory_planted_by_another_user_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            // Only root can give a directory away; the mode test above
            // covers the other half of the rule for everyone.
            eprintln!("not root: giving a directory to another user is not possible here");
            return;
        }
        std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(CompileCache::new(Some(dir.path().to_owned())).dir(), None);
    }

    #[test]
    fn an_entry_others_can_write_or_a_link_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("x.cwasm");
        std::fs::write(&entry, b"machine code").unwrap();
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(trusted(&entry, false), Ok(()));
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(trusted(&entry, false).is_err());
        let link = dir.path().join("y.cwasm");
        std::os::unix::fs::symlink(&entry, &link).unwrap();
        assert!(trusted(&link, false).unwrap_err().contains("regular file"));
    }
}
