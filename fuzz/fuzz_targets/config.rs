//! A `config.yaml` as an operator may write it, read with the environment
//! over it: `cronium_config::effective` (what `cronium-runtime config`
//! prints), which reads the whole typed `Config` first.
//!
//! Must hold: any file is read or refused with a `ConfigError`, never a
//! panic; and the printed configuration never shows a secret given in the
//! environment (JWT secret, backend token, a password in `VALKEY_URL`),
//! unless the file itself copies one into a plain setting (`${NAME}`).

#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cronium_config::{Env, effective};
use libfuzzer_sys::fuzz_target;

const JWT_SECRET: &str = "jwt-secret-marker-0123456789abcdef";
const BACKEND_TOKEN: &str = "backend-token-marker";
const VALKEY_PASSWORD: &str = "valkey-password-marker";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let dir = dir();
    std::fs::write(dir.join("config.yaml"), text).unwrap();
    let env: Env = [
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("BACKEND_URL", "http://127.0.0.1:9".to_owned()),
        ("BACKEND_TOKEN", BACKEND_TOKEN.to_owned()),
        (
            "VALKEY_URL",
            format!("redis://user:{VALKEY_PASSWORD}@127.0.0.1:6379/0"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let Ok((_, settings)) = effective(&env, dir) else {
        return;
    };
    if text.contains("${") {
        return;
    }
    for setting in settings {
        let Some(value) = setting.value else { continue };
        for secret in [JWT_SECRET, BACKEND_TOKEN, VALKEY_PASSWORD] {
            assert!(
                !value.contains(secret) || text.contains(secret),
                "{} shows a secret: {value}",
                setting.name
            );
        }
    }
});

/// A directory of this process's own for the file.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cronium-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    })
}
