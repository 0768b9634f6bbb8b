//! The world most end-to-end tests start in: a real Valkey, the fake
//! backend, and the real `cronium-runtime` binary on both, stopped when
//! dropped. A test file adds the helpers it needs with an `impl World` of
//! its own (each test file is a crate of its own).
//!
//! Two tests need other worlds and keep them: `tests/authority.rs` also
//! serves under Spin, and `tests/ssh_tunnel.rs` adds a remote server and
//! its tunnel.

use super::backend::Profile;
use super::{FakeBackend, Host, HostConfig, Valkey};

/// Valkey, the fake backend and a host on both.
pub struct World {
    pub valkey: Valkey,
    pub backend: FakeBackend,
    pub host: Host,
}

impl World {
    /// The contract's fake backend, given its executions by `prepare`
    /// before the host starts, and a host on it and on Valkey, its
    /// environment as `configure` leaves it.
    pub async fn serving(
        prepare: impl FnOnce(&FakeBackend),
        configure: impl FnOnce(HostConfig) -> HostConfig,
    ) -> World {
        Self::serving_as(Profile::Contract, prepare, configure).await
    }

    /// [`World::serving`] with the fake backend behaving as `profile`.
    pub async fn serving_as(
        profile: Profile,
        prepare: impl FnOnce(&FakeBackend),
        configure: impl FnOnce(HostConfig) -> HostConfig,
    ) -> World {
        let valkey = Valkey::start();
        let backend = FakeBackend::start_as(profile).await;
        prepare(&backend);
        let host = Host::start(configure(HostConfig::with(&valkey.url(), &backend.url()))).await;
        World {
            valkey,
            backend,
            host,
        }
    }
}

/// The shared [`World`] as one area of tests sees it: each test file names
/// its area with a marker type of its own and gives `Area<Marker>` its
/// helpers, which may reuse the names another area uses.
pub struct Area<M>(World, std::marker::PhantomData<M>);

impl<M> Area<M> {
    /// `world`, seen by area `M`.
    pub fn new(world: World) -> Self {
        Area(world, std::marker::PhantomData)
    }
}

impl<M> std::ops::Deref for Area<M> {
    type Target = World;

    fn deref(&self) -> &World {
        &self.0
    }
}

impl<M> std::ops::DerefMut for Area<M> {
    fn deref_mut(&mut self) -> &mut World {
        &mut self.0
    }
}
