//! The audit spool in Valkey that the Spin adapters use
//! ([`cronium_rules::audit_spool`]), seen from the host: a stopping host
//! hands over there what it could not deliver, and every host on Valkey
//! drains it in the background, under the spool's drain lease, so that one
//! drainer at a time delivers its events oldest first.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use cronium_rules::audit_spool::{self as spool, Delivery, leaves_spool};
use cronium_rules::valkey as commands;

use super::{AuditStats, deliver};
use crate::capabilities::backend::{AuditRecord, Backend};
use crate::capabilities::cache::ValkeyError;
use crate::capabilities::cache::valkey::ValkeyCache;

/// The region's audit spool in Valkey.
pub(super) struct SharedSpool {
    valkey: Arc<ValkeyCache>,
}

impl SharedSpool {
    pub(super) fn new(valkey: Arc<ValkeyCache>) -> SharedSpool {
        SharedSpool { valkey }
    }

    /// Appends `bodies` (audit request bodies, oldest first) behind what
    /// waits, in one command: all of them or none.
    pub(super) async fn take_over(&self, bodies: &[String]) -> Result<(), ValkeyError> {
        let command = spool::push_all(bodies.iter().map(String::as_str));
        self.valkey.command::<i64>(&command).await.map(drop)
    }

    /// Delivers what waits, oldest first, while this host holds the drain
    /// lease: at most [`spool::DRAIN_BATCH`] events, stopping at the first
    /// failure (the event stays first in line). A lost lease or an absent
    /// Valkey ends the drain; the next one carries on.
    pub(super) async fn drain(&self, backend: &Backend, stats: &AuditStats) {
        match self.valkey.command::<i64>(&spool::length()).await {
            Ok(waiting) if waiting > 0 => {}
            _ => return,
        }
        let owner = format!("host-{:016x}", rand::random::<u64>());
        let taken: Result<Option<String>, _> =
            self.valkey.command(&spool::take_drain(&owner)).await;
        if !matches!(taken, Ok(Some(_))) {
            return;
        }
        let mut delivered = 0;
        for _ in 0..spool::DRAIN_BATCH {
            let body: Option<String> = match self.valkey.command(&spool::oldest()).await {
                Ok(Some(body)) => Some(body),
                _ => None,
            };
            let Some(body) = body else { break };
            let delivery = match AuditRecord::from_json(&body) {
                Some(record) => deliver(backend, &record, stats).await,
                None => {
                    // Not an audit body: keeping it would stop the spool for good.
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(body, "unreadable event in the shared audit spool; dropped");
                    Delivery::Refused
                }
            };
            if !leaves_spool(delivery) {
                break;
            }
            match self
                .valkey
                .pop_audit_event(commands::audit_pop(&owner))
                .await
            {
                Ok(true) => delivered += 1,
                // The lease ran out (a slow backend): the next drainer goes on.
                _ => return,
            }
        }
        if delivered > 0 {
            tracing::info!(delivered, "events of the shared audit spool delivered");
        }
        let _ = self.valkey.script(commands::audit_release(&owner)).await;
    }
}
