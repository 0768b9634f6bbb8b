//! The `auth.caller` resource: whom a component's request speaks for.
//!
//! `auth.verify` puts the verified claims into the store's resource table
//! and hands the component a handle; every capability that acts for
//! someone takes that handle and reads the identity here, so a component
//! cannot name another execution, job or user, nor alter the claims.
//!
//! A handle serves the request it was verified for. An instance reused for
//! a later request of the same credential (`components::warm`) could keep
//! one in its memory and skip `auth.verify`, which also checks revocation
//! and counts the rate limit: each caller records the store's request
//! number, and a handle lent during another request is a trap.

use std::sync::Arc;

use cronium_rules::token::Claims;

/// A verified caller, as the host keeps it.
pub struct Caller {
    claims: Arc<Claims>,
    /// The store's request it was verified in (`RequestState::request`).
    request: u64,
    /// The user who owns the caller's execution, once its record was read.
    user: Option<Arc<str>>,
}

impl Caller {
    /// A caller of `claims`, verified during the store's request `request`.
    pub fn new(claims: Claims, request: u64) -> Self {
        Caller {
            claims: Arc::new(claims),
            request,
            user: None,
        }
    }

    /// The token's verified claims.
    pub fn claims(&self) -> &Arc<Claims> {
        &self.claims
    }

    /// Refuses a caller lent during another request than `request`, the
    /// one its store serves now.
    pub fn check(&self, request: u64) -> wasmtime::Result<()> {
        if self.request != request {
            wasmtime::bail!(
                "a caller verified for an earlier request was used again; \
                 every request must verify its own token"
            );
        }
        Ok(())
    }

    /// The user who owns the caller's execution, if known yet.
    pub fn user(&self) -> Option<Arc<str>> {
        self.user.clone()
    }

    /// Remembers `user` as the owner of the caller's execution (from its
    /// record, which does not change), and answers it.
    pub fn know_user(&mut self, user: &str) -> Arc<str> {
        match &self.user {
            Some(known) if &**known == user => known.clone(),
            _ => {
                let user: Arc<str> = Arc::from(user);
                self.user = Some(user.clone());
                user
            }
        }
    }
}
