//! The precompiled component cache: compiled components serialized on
//! disk, keyed by the engine's compatibility hash (wasmtime version and
//! every setting that affects code) and the component's SHA-256, so a
//! restart skips Cranelift. A stale or unreadable entry is recompiled
//! and replaced; a cache that cannot be written is only logged.
//!
//! Loading a serialized component trusts the file (it is machine code),
//! so the directory is created private to the user, and entries are only
//! ever written by this module.

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
    /// A cache in `dir`; `None` disables it.
    pub fn new(dir: Option<PathBuf>) -> Self {
        CompileCache { dir }
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
        if path.is_file() {
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
