//! The benchmark's native baseline: the hot routes of the runtime API as
//! plain Rust handlers on the host's own capability implementations (the
//! same token rules, Valkey client, backend client and audit sink), with
//! no WebAssembly in between. Its throughput divided into the host's is
//! the price of isolation.
//!
//! Configured like `cronium-runtime`; serves `/health`, `GET input`,
//! `GET context`, `GET` and plain `PUT variables/{key}`, `POST output` and `POST
//! /tool-actions/execute` (schema check, credentials, the same tool
//! registry), doing the same capability calls as the components do.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use cronium_host::native::{self, AuditRecord, Capabilities, Config, now_rfc3339};
use cronium_rules::token::Claims;
use cronium_rules::wire::{Execution, Success};
use cronium_rules::{keys, variables};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::time::Duration;

type Reply = Response<Full<Bytes>>;

// The same allocator as cronium-runtime, so that the ratio measures isolation only.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (capabilities, _audit) = Capabilities::from_config(&config).await?;
        let capabilities = Arc::new(capabilities);
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let caps = capabilities.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let caps = caps.clone();
                    async move {
                        if matches!(*request.method(), Method::GET | Method::HEAD) {
                            return Ok::<_, Infallible>(handle(&caps, request).await);
                        }
                        // As in the host: a write runs to its end if its client hangs up.
                        let write = tokio::spawn(async move { handle(&caps, request).await });
                        Ok(write.await.unwrap_or_else(|_| error(500, "internal error")))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}

async fn handle(caps: &Capabilities, request: Request<hyper::body::Incoming>) -> Reply {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    if path == "/health" {
        return json_reply(200, json!({"status": "healthy", "time": now_rfc3339()}));
    }
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let limit = cronium_rules::limits::body_max_for_path(&path);
    let Ok(body) = Limited::new(request.into_body(), limit).collect().await else {
        return error(413, "request body too large");
    };
    let body = body.to_bytes();
    if path == "/tool-actions/execute" && method == Method::POST {
        return execute_tool(caps, authorization.as_deref(), &body).await;
    }
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let (id, rest) = match segments.as_slice() {
        ["executions", id, rest @ ..] => (*id, rest.join("/")),
        _ => return error(404, "no such route"),
    };
    let caller = match caps
        .auth
        .verify(authorization.as_deref(), None, &caps.cache)
        .await
    {
        Ok(claims) if claims.execution_id == id => claims,
        Ok(_) => return error(403, "token is not valid for this execution"),
        Err(e) => return error(401, &e.to_string()),
    };
    match (method, rest.as_str()) {
        (Method::GET, "input") => match execution(caps, &caller).await {
            Ok(e) => serialized_reply(&Success::new(e.input())),
            Err(reply) => reply,
        },
        (Method::GET, "context") => match execution(caps, &caller).await {
            Ok(e) => serialized_reply(&Success::new(&e)),
            Err(reply) => reply,
        },
        (Method::POST, "output") => {
            let Ok(Value::Object(parsed)) = serde_json::from_slice::<Value>(&body) else {
                return error(400, "invalid body");
            };
            let Some(data) = parsed.get("data") else {
                return error(400, "no data");
            };
            let result = caps.backend.set_output(&caller, data.to_string()).await;
            audit(
                caps,
                &caller,
                "set_output",
                result.is_ok(),
                json!({"bytes": body.len()}),
            );
            match result {
                Ok(()) => json_reply(200, json!({"success": true})),
                Err(e) => error(502, &e.to_string()),
            }
        }
        (Method::GET, rest) if rest.starts_with("variables/") => {
            let key = &rest["variables/".len()..];
            get_variable(caps, &caller, key).await
        }
        (Method::PUT, rest) if rest.starts_with("variables/") => {
            let key = &rest["variables/".len()..];
            put_variable(caps, &caller, key, &body).await
        }
        _ => error(404, "no such route"),
    }
}

/// The execution record as the `backend` capability keeps it.
async fn execution(caps: &Capabilities, caller: &Claims) -> Result<Execution, Reply> {
    native::execution(caps, caller)
        .await
        .map(|(execution, _)| execution)
        .map_err(|e| error(502, &e.to_string()))
}

/// The real key of a variable's cached value, as the host builds it for
/// the variables component.
fn variable_key(user: &str, key: &str) -> String {
    keys::in_space("variables", keys::Scope::User(user), &keys::variable(key))
}

/// A variable read with the same calls as the component's: the cache,
/// else the backend (then cached, unless a writer got there first).
async fn get_variable(caps: &Capabilities, caller: &Claims, key: &str) -> Reply {
    #[derive(serde::Deserialize, serde::Serialize)]
    struct Cached {
        value: Option<String>,
    }
    let user = match execution(caps, caller).await {
        Ok(e) => e.user_id,
        Err(reply) => return reply,
    };
    let cache_key = variable_key(&user, key);
    let cached = match caps.cache.get(&cache_key).await {
        Ok(Some(entry)) => serde_json::from_str::<Cached>(&entry).ok(),
        _ => None,
    };
    let current = match cached {
        Some(cached) => cached.value,
        None => {
            let result = caps.backend.get_variable(caller, &user, key).await;
            audit(
                caps,
                caller,
                "get_variable",
                result.is_ok(),
                json!({"key": key}),
            );
            let value = match result {
                Ok(variable) => variable.map(|v| v.value),
                Err(e) => return error(502, &e.to_string()),
            };
            let entry = serde_json::to_string(&Cached {
                value: value.clone(),
            })
            .unwrap();
            let _ = caps.cache.add(&cache_key, &entry, None).await;
            value
        }
    };
    match current {
        Some(text) => {
            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                return error(500, "corrupt value");
            };
            let mut reply = json_reply(
                200,
                json!({"success": true, "data": {"key": key, "value": value}}),
            );
            if let Ok(etag) = variables::etag(&text).parse() {
                reply.headers_mut().insert("etag", etag);
            }
            reply
        }
        None => json_reply(
            200,
            json!({"success": true, "data": {"key": key, "value": null}}),
        ),
    }
}

/// A plain variable write with the same calls as the component's.
async fn put_variable(caps: &Capabilities, caller: &Claims, key: &str, body: &[u8]) -> Reply {
    let Ok(Value::Object(parsed)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "invalid body");
    };
    let Some(value) = parsed.get("value") else {
        return error(400, "no value");
    };
    let user = match execution(caps, caller).await {
        Ok(e) => e.user_id,
        Err(reply) => return reply,
    };
    let cache_key = variable_key(&user, key);
    let lease = caps
        .cache
        .acquire(
            &cache_key,
            Duration::from_millis(variables::WRITE_LEASE_TTL_MS),
            Duration::from_millis(variables::WRITE_LEASE_PATIENCE_MS),
        )
        .await;
    let lease = match lease {
        Ok(Some(lease)) => Some(lease),
        Ok(None) => return error(503, "busy"),
        Err(_) => None,
    };
    let text = value.to_string();
    let _ = caps.cache.delete(&cache_key).await;
    let result = caps
        .backend
        .set_variable(caller, &user, key, text.clone())
        .await;
    let cached = json!({ "value": text }).to_string();
    let _ = caps.cache.set(&cache_key, &cached, None).await;
    if let Some(lease) = lease {
        let _ = caps.cache.release(&lease).await;
    }
    audit(
        caps,
        caller,
        "set_variable",
        result.is_ok(),
        json!({"key": key}),
    );
    match result {
        Ok(()) => json_reply(200, json!({"success": true})),
        Err(e) => error(502, &e.to_string()),
    }
}

/// A tool action, as the tool-actions component runs it (without idempotency).
async fn execute_tool(caps: &Capabilities, authorization: Option<&str>, body: &[u8]) -> Reply {
    use cronium_host::native::{Invocation, ToolRequest};
    let caller = match caps.auth.verify(authorization, None, &caps.cache).await {
        Ok(claims) => claims,
        Err(e) => return error(401, &e.to_string()),
    };
    let Ok(parsed) = serde_json::from_slice::<Value>(body) else {
        return error(400, "invalid body");
    };
    let (Some(tool), Some(action)) = (parsed["tool"].as_str(), parsed["action"].as_str()) else {
        return error(400, "tool and action are required");
    };
    let parameters = parsed.get("config").cloned().unwrap_or(json!({}));
    let Some(installed) = caps.tools.find(tool) else {
        return error(404, "no such tool");
    };
    let Some(declared) = cronium_rules::tools::resolve_action(&installed.actions, action, |a| {
        (a.name.as_str(), a.aliases.as_slice())
    }) else {
        return error(400, "no such action");
    };
    let action = declared.name.as_str();
    let schema = serde_json::from_str::<Value>(&declared.parameters)
        .ok()
        .and_then(|s| cronium_rules::schema::Schema::compile(&s).ok());
    match schema.map(|s| s.validate(&parameters)) {
        Some(Ok(())) => {}
        _ => return error(400, "invalid parameters"),
    }
    let user = caller.user_id.clone().unwrap_or_default();
    let credentials = match caps
        .backend
        .get_tool_credentials(&caller, &user, tool)
        .await
    {
        Ok(c) => c.map(|c| c.to_string()),
        Err(e) => return error(502, &e.to_string()),
    };
    let started = std::time::Instant::now();
    let result = caps
        .tools
        .execute(
            tool,
            ToolRequest {
                action: action.to_owned(),
                parameters: parameters.to_string(),
                credentials,
                settings: "{}".into(),
                invocation: Invocation {
                    execution_id: caller.execution_id.clone(),
                    job_id: caller.job_id.clone(),
                    user_id: user,
                    idempotency_key: None,
                },
            },
        )
        .await;
    audit(
        caps,
        &caller,
        "execute_tool_action",
        result.is_ok(),
        json!({"tool": tool, "action": action, "durationMs": started.elapsed().as_millis() as u64}),
    );
    match result.map(|data| serde_json::from_str::<Value>(&data)) {
        Ok(Ok(data)) => json_reply(200, json!({"success": true, "data": data})),
        _ => error(502, "the tool failed"),
    }
}

fn audit(caps: &Capabilities, caller: &Claims, action: &str, ok: bool, mut details: Value) {
    details["userId"] = json!(caller.user_id);
    details["jobId"] = json!(caller.job_id);
    details["outcome"] = json!(if ok { "ok" } else { "error" });
    caps.audit.emit(AuditRecord {
        execution_id: caller.execution_id.clone(),
        action: action.into(),
        metadata: details,
        timestamp: now_rfc3339(),
    });
}

/// `200` with `body` serialized as it is (raw JSON as written), as the
/// components answer reads.
fn serialized_reply(body: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec(body) {
        Ok(bytes) => json_bytes(200, bytes),
        Err(_) => error(500, "the answer could not be written"),
    }
}

fn json_reply(status: u16, body: Value) -> Reply {
    json_bytes(status, body.to_string().into_bytes())
}

fn json_bytes(status: u16, body: Vec<u8>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn error(status: u16, message: &str) -> Reply {
    json_reply(
        status,
        json!({"error": status.to_string(), "message": message}),
    )
}
