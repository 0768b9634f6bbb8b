//! `cronium:runtime/audit` on the backend's audit endpoint
//! (`POST /api/internal/audit`, the body the custom host sends).
//!
//! Spin makes an instance per request and gives it no disk, so there is no
//! background queue nor spool here: the event is delivered while the
//! request is served, one attempt, and a failure is written to the app's
//! log (stderr) rather than failing the request, as the interface
//! promises. Operators who need the custom host's durable spool run the
//! custom host.
//!
//! Settings (Spin variables of the endpoint component): `backend_url`,
//! `backend_token`.

use cronium_rules::backend as rules;
use cronium_rules::wire;
use cronium_spin_support::{http, now_rfc3339, settings};
use spin_sdk::http::Method;

use crate::exports::cronium::runtime::audit::{AuditEvent, Guest};

impl Guest for crate::Adapters {
    fn emit(event: AuditEvent) {
        if let Err(why) = deliver(&event) {
            eprintln!(
                "audit event lost: execution {} action {}: {why}",
                event.execution_id, event.action
            );
        }
    }
}

fn deliver(event: &AuditEvent) -> Result<(), String> {
    let base = settings::get("backend_url").ok_or("no backend_url is configured")?;
    let metadata = rules::audit_metadata(
        &event.details,
        event.user_id.as_deref(),
        event.job_id.as_deref(),
        &event.outcome,
    );
    let body = serde_json::to_vec(&wire::AuditRequest {
        execution_id: &event.execution_id,
        action: &event.action,
        metadata: &metadata,
        timestamp: &now_rfc3339(),
    })
    .map_err(|e| e.to_string())?;
    let mut headers = Vec::new();
    if let Some(auth) = rules::authorization(&settings::get("backend_token").unwrap_or_default()) {
        headers.push(("authorization", auth));
    }
    let url = format!("{}{}", base.trim_end_matches('/'), rules::AUDIT_PATH);
    let answer =
        http::send(Method::Post, &url, &headers, Some(body), 64 * 1024).map_err(|e| e.0)?;
    rules::check_answer(answer.status, &answer.body).map_err(|e| e.to_string())
}
