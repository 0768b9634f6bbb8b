//! The async driver of the `cronium-rules` protocol machines (backend
//! calls, lease waits, the access check): it steps a machine, sends its
//! requests on an [`Io`] (the backend's HTTP client, the Valkey
//! connection) and sleeps its pauses on tokio's clock. The Spin adapters
//! drive the same machines with a blocking driver
//! (`cronium_spin_support::drive`); both pass the conformance suite
//! (`cronium_rules::conformance`, the tests below).

use std::future::Future;
use std::time::Duration;

use cronium_rules::protocol::{Machine, Now, Step};

/// What a driver needs from the world: a transport, a clock to sleep on,
/// and randomness.
pub trait Io<Request, Reply> {
    fn send(&mut self, request: Request) -> impl Future<Output = Reply> + Send;
    fn sleep(&mut self, pause: Duration) -> impl Future<Output = ()> + Send;
    fn now(&mut self) -> Now;
}

/// Steps `machine` to its outcome on `io`.
pub async fn drive<M: Machine>(
    mut machine: M,
    io: &mut impl Io<M::Request, M::Reply>,
) -> M::Output {
    let mut reply = None;
    loop {
        let now = io.now();
        match machine.next(reply.take(), now) {
            Step::Send(request) => reply = Some(io.send(request).await),
            Step::Wait(pause) => io.sleep(pause).await,
            Step::Done(outcome) => return outcome,
        }
    }
}

/// tokio's clock (paused in tests), with random jitter: what an [`Io`]
/// of the host sleeps on and reads the time from.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    started: tokio::time::Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock {
            started: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> Now {
        Now {
            elapsed: self.started.elapsed(),
            jitter: rand::random(),
        }
    }

    pub async fn sleep(&self, pause: Duration) {
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use cronium_rules::conformance::{self, Case, Reply, Request, Script};

    use super::*;

    /// The script as the transport, on tokio's (paused) clock: every pause
    /// really sleeps, and must be the one the script expects.
    struct Scripted<'a> {
        script: &'a mut Script,
    }

    impl Io<Request, Reply> for Scripted<'_> {
        fn send(&mut self, request: Request) -> impl Future<Output = Reply> + Send {
            let reply = self.script.send(request);
            async move {
                tokio::task::yield_now().await;
                reply
            }
        }

        fn sleep(&mut self, pause: Duration) -> impl Future<Output = ()> + Send {
            self.script.sleep(pause);
            tokio::time::sleep(pause)
        }

        fn now(&mut self) -> Now {
            self.script.now()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn every_conformance_case_passes_the_async_driver() {
        let cases = conformance::cases();
        assert!(!cases.is_empty());
        for Case {
            machine,
            mut script,
            ..
        } in cases
        {
            let started = tokio::time::Instant::now();
            let outcome = drive(
                machine,
                &mut Scripted {
                    script: &mut script,
                },
            )
            .await;
            // tokio's timers round a pause up to the millisecond.
            assert!(
                started.elapsed() >= script.now().elapsed - script_latency(&script),
                "the driver slept the machine's pauses"
            );
            script.finish(outcome);
        }
    }

    /// The virtual time the script's requests took (the driver does not
    /// sleep it: the transport would).
    fn script_latency(script: &Script) -> Duration {
        script.latency()
    }

    /// The settings both hosts resolve, from the same inputs: the Valkey
    /// address, password and database each opens its connection with
    /// (the host's `connection_infos`, Spin's `connection_url` as Spin's
    /// Redis client reads it), and the defaults.
    #[test]
    fn the_host_and_spin_resolve_every_setting_identically() {
        use crate::capabilities::cache::valkey::connection_infos;
        use crate::config::Config;
        use cronium_rules::settings;

        let inputs: &[(&str, Option<&str>, Option<&str>)] = &[
            ("redis://h:6379", None, None),
            ("redis://h:6379", Some("pw"), Some("2")),
            ("valkey://u:x@h:6379/1", Some("pw"), Some("2")),
            ("valkey://u:x@h:6379/1", None, None),
            ("redis://:x@h:6379/3", Some("p@ss:w/rd"), None),
            ("redis://h:6379/4", None, Some("0")),
        ];
        for (url, password, db) in inputs {
            let mut env = HashMap::from([
                (
                    "JWT_SECRET".to_owned(),
                    "a-test-secret-of-enough-length".to_owned(),
                ),
                ("VALKEY_URL".to_owned(), (*url).to_owned()),
            ]);
            if let Some(password) = password {
                env.insert("VALKEY_PASSWORD".into(), (*password).into());
            }
            if let Some(db) = db {
                env.insert("VALKEY_DB".into(), (*db).into());
            }
            let config = Config::from_vars(env).expect("the host reads the settings");
            let host = connection_infos(config.valkey.as_ref().expect("a Valkey"))
                .expect("the host resolves the settings")
                .remove(0);
            let spin_url = cronium_spin_support::valkey::connection_url(url, *password, *db)
                .expect("Spin resolves the settings");
            // Spin's Redis client reads `valkey://` as `redis://`.
            let spin: redis::ConnectionInfo = cronium_rules::valkey::normalize_url(&spin_url)
                .expect("a Redis URL")
                .parse()
                .expect("Spin's URL parses");
            let inputs = format!("{url} {password:?} {db:?}");
            assert_eq!(
                format!("{:?}", host.addr()),
                format!("{:?}", spin.addr()),
                "address: {inputs}"
            );
            assert_eq!(
                host.redis_settings().password(),
                spin.redis_settings().password(),
                "password: {inputs}"
            );
            assert_eq!(
                host.redis_settings().username(),
                spin.redis_settings().username(),
                "user: {inputs}"
            );
            assert_eq!(
                host.redis_settings().db(),
                spin.redis_settings().db(),
                "db: {inputs}"
            );
        }

        let defaults = Config::from_vars(HashMap::from([(
            "JWT_SECRET".to_owned(),
            "a-test-secret-of-enough-length".to_owned(),
        )]))
        .unwrap();
        assert_eq!(defaults.rate_limit_per_min, settings::RATE_LIMIT_PER_MIN);
        assert_eq!(defaults.cache_ttl, settings::CACHE_TTL);
        assert_eq!(defaults.backend, None);
        use cronium_spin_support::settings as spin;
        assert_eq!(
            spin::rate_limit_per_min(None),
            Ok(settings::RATE_LIMIT_PER_MIN)
        );
        assert_eq!(spin::cache_ttl(None), Ok(settings::CACHE_TTL));
        assert_eq!(spin::backend_timeout(None), Ok(settings::BACKEND_TIMEOUT));
        // Set, the same text means the same value.
        let set = Config::from_vars(HashMap::from([
            (
                "JWT_SECRET".to_owned(),
                "a-test-secret-of-enough-length".to_owned(),
            ),
            ("RATE_LIMIT_PER_MIN".to_owned(), "7".to_owned()),
            ("CACHE_TTL".to_owned(), "1m30s".to_owned()),
            ("BACKEND_URL".to_owned(), "http://backend:1".to_owned()),
            ("BACKEND_TIMEOUT".to_owned(), "5s".to_owned()),
        ]))
        .unwrap();
        assert_eq!(
            spin::rate_limit_per_min(Some("7".into())),
            Ok(set.rate_limit_per_min)
        );
        assert_eq!(spin::cache_ttl(Some("1m30s".into())), Ok(set.cache_ttl));
        assert_eq!(
            spin::backend_timeout(Some("5s".into())).ok(),
            set.backend.map(|b| b.timeout)
        );
    }
}
