//! `cronium:runtime/audit` on the backend's audit endpoint
//! (`POST /api/internal/audit`, the body the custom host sends).
//!
//! Spin gives a component no disk and a fresh instance per request, so the
//! custom host's spool file has no place here. Its stand-in is a spool in
//! Valkey (`cronium_rules::audit_spool`): an event the backend cannot take
//! now is appended there, later events queue behind it, and the requests
//! that emit events next drain it, oldest first, one drainer at a time,
//! each event removed only once the backend has it. The body is built when
//! the event happens, so a late delivery still carries its own time.
//!
//! Only when the backend and Valkey are both unreachable is an event lost,
//! and then the app's log (stderr) says so.
//!
//! Settings (Spin variables of the endpoint component): `backend_url`,
//! `backend_token`, `backend_timeout`, and Valkey's.

use cronium_rules::audit_spool::{self as spool, Admission, Delivery};
use cronium_rules::backend as rules;
use cronium_rules::backend::protocol::record_audit;
use cronium_rules::token::Claims;
use cronium_rules::valkey as commands;
use cronium_rules::wire;
use cronium_spin_support::valkey;
use cronium_spin_support::{drive, now_rfc3339, random_u64};
use spin_sdk::redis::RedisResult;

use crate::auth::VerifiedCaller;
use crate::exports::cronium::runtime::audit::{AuditEvent, Guest};
use crate::exports::cronium::runtime::auth::CallerBorrow;

impl Guest for crate::Adapters {
    fn emit(caller: CallerBorrow<'_>, event: AuditEvent) {
        let claims = &caller.get::<VerifiedCaller>().claims;
        let event = Event {
            claims,
            event: &event,
        };
        let body = match body(&event) {
            Ok(body) => body,
            Err(why) => return lost(&event, &why),
        };
        let waiting = match valkey::command(&spool::length()) {
            Ok(reply) => integer(&reply),
            Err(_) => None,
        };
        match spool::admit(waiting) {
            Admission::DeliverNow => match deliver(&body) {
                Delivery::Taken => {}
                Delivery::Refused => eprintln!(
                    "audit event refused by the backend: execution {} action {}",
                    claims.execution_id, event.event.action
                ),
                Delivery::Failed => {
                    if let Err(why) = valkey::command(&spool::push(&body)) {
                        lost(&event, &format!("the backend is away and {why}"));
                    }
                }
            },
            Admission::JoinSpool => match valkey::command(&spool::push(&body)) {
                Ok(_) => drain(),
                // Valkey just answered LLEN: rather than lose the event,
                // deliver it out of turn.
                Err(why) => {
                    if deliver(&body) == Delivery::Failed {
                        lost(&event, &format!("the backend is away and {why}"));
                    }
                }
            },
        }
    }
}

/// Delivers spooled events, oldest first, while this instance holds the
/// drain lease: at most [`spool::DRAIN_BATCH`], stopping at the first
/// failure (the event stays first in line for the next drainer).
fn drain() {
    let owner = format!("{:016x}", random_u64());
    match valkey::command(&spool::take_drain(&owner)).as_deref() {
        Ok([RedisResult::Status(_)]) => {}
        // Held by another drainer, or Valkey is away.
        _ => return,
    }
    for _ in 0..spool::DRAIN_BATCH {
        let body = match valkey::command(&spool::oldest()).as_deref() {
            Ok([RedisResult::Binary(bytes)]) => String::from_utf8_lossy(bytes).into_owned(),
            _ => break,
        };
        let delivery = deliver(&body);
        if delivery == Delivery::Refused {
            eprintln!("spooled audit event refused by the backend; dropped: {body}");
        }
        if !spool::leaves_spool(delivery) {
            break;
        }
        // Lost the lease (it outlived its TTL): the new drainer goes on.
        if !matches!(valkey::eval(&commands::audit_pop(&owner)), Ok(1)) {
            return;
        }
    }
    let _ = valkey::eval(&commands::audit_release(&owner));
}

/// An event and who acted: the caller's verified claims.
struct Event<'a> {
    claims: &'a Claims,
    event: &'a AuditEvent,
}

/// The backend's audit body for `event`, stamped now.
fn body(event: &Event<'_>) -> Result<String, String> {
    let Event { claims, event } = *event;
    let metadata = rules::audit_metadata(
        &event.details,
        claims.user_id.as_deref(),
        Some(&claims.job_id),
        &event.outcome,
    );
    serde_json::to_string(&wire::AuditRequest {
        execution_id: &claims.execution_id,
        action: &event.action,
        metadata: &metadata,
        details: &metadata,
        timestamp: &now_rfc3339(),
    })
    .map_err(|e| e.to_string())
}

/// One attempt to hand `body` to the backend, within `backend_timeout`
/// (the rules' audit call, driven as every backend call is).
fn deliver(body: &str) -> Delivery {
    let Ok((base, client)) = crate::backend::client() else {
        return Delivery::Failed;
    };
    let call = record_audit(&client, body.as_bytes().to_vec());
    match drive::backend(&base, call) {
        Ok(()) => Delivery::Taken,
        Err(rules::BackendError::Rejected { .. }) => Delivery::Refused,
        Err(_) => Delivery::Failed,
    }
}

fn integer(reply: &[RedisResult]) -> Option<i64> {
    match reply {
        [RedisResult::Int64(n)] => Some(*n),
        _ => None,
    }
}

fn lost(event: &Event<'_>, why: &str) {
    eprintln!(
        "audit event lost: execution {} action {}: {why}",
        event.claims.execution_id, event.event.action
    );
}
