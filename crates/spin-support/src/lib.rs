//! What the Spin adapters (`components/spin/*`) share, and nothing of the
//! rules themselves (those live in `cronium-rules`):
//!
//! * [`settings`]: the app's Spin variables, with the custom host's
//!   defaults and Go-style durations;
//! * [`valkey`]: Valkey through Spin's Redis interface, one connection per
//!   component instance (Spin makes an instance per request);
//! * [`http`]: outbound HTTP on Spin's `wasi:http` client;
//! * [`drive`]: the blocking driver of the `cronium-rules` protocol
//!   machines, on the two above;
//! * [`now_rfc3339`], [`random_u64`]: the clock and randomness.
//!
//! An adapter reaches only what its component in `spin.toml` grants it
//! through `inherit_configuration`: variables, and the outbound hosts
//! (`redis://` and `http://`) of the endpoint component it is composed into.

#![warn(missing_docs)]

pub mod drive;
pub mod http;
pub mod settings;
pub mod valkey;

/// The current time, RFC 3339 in UTC (the backend's timestamp format).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// 64 random bits from the host (`wasi:random`).
pub fn random_u64() -> u64 {
    wasi::random::random::get_random_u64()
}

/// A uniform draw in `[0, 1)`, for backoff jitter.
pub fn random_unit() -> f64 {
    (random_u64() >> 11) as f64 / (1u64 << 53) as f64
}
