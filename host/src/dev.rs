//! The `dev` and `execution create` commands: the embedded defaults made
//! usable by a person with no Cronium backend. `dev` keeps a generated
//! secret in the data directory, so its tokens survive restarts.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use cronium_host::capabilities::backend::embedded::{EmbeddedStore, valid_id};
use cronium_host::config::Config;
use cronium_rules::token::{Claims, TokenVerifier};
use cronium_rules::wire::Execution;
use serde_json::{Value, json};

use crate::now;

/// The file in the data directory holding the `dev` secret.
const SECRET_FILE: &str = "dev-secret";
/// The demo execution `dev` creates.
const DEMO_ID: &str = "demo";
/// Lifetime of the tokens printed by `dev` and `execution create`.
const TOKEN_TTL: Duration = Duration::from_secs(60 * 60);

/// A new execution for the embedded store.
#[derive(clap::Args, Debug, Clone)]
pub struct NewExecution {
    /// The execution id (default: a new random one).
    #[arg(long)]
    pub id: Option<String>,
    /// The user the execution belongs to (variables are scoped to it).
    #[arg(long)]
    pub user: String,
    /// The job the execution runs.
    #[arg(long)]
    pub job: String,
    #[arg(long)]
    pub event_id: Option<String>,
    #[arg(long)]
    pub event_name: Option<String>,
    #[arg(long)]
    pub event_type: Option<String>,
    /// The script's input, as JSON.
    #[arg(long, value_parser = json_value)]
    pub input: Option<Value>,
    /// Where the embedded store lives.
    #[arg(long, env = "CRONIUM_DATA_DIR", default_value = "cronium-data")]
    pub data_dir: std::path::PathBuf,
}

fn json_value(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// What `dev` prints once the host listens.
pub struct Demo {
    token: String,
    data_dir: std::path::PathBuf,
    tools_dir: std::path::PathBuf,
}

impl Demo {
    /// Prints the token and example calls for the host listening on
    /// `addr` (on every interface: called through loopback).
    pub fn print(&self, addr: std::net::SocketAddr) {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip => ip,
        };
        let base = format!("http://{}", std::net::SocketAddr::new(ip, addr.port()));
        let t = &self.token;
        println!(
            "\nCronium runtime (dev) on {base}, data in {dir}\n\n\
             export CRONIUM_API_TOKEN={t}\n\n\
             curl -s {base}/health\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" {base}/executions/{DEMO_ID}/input\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" {base}/executions/{DEMO_ID}/context\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"data\":{{\"ok\":true}}}}' {base}/executions/{DEMO_ID}/output\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"condition\":true}}' {base}/executions/{DEMO_ID}/condition\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" {base}/tool-actions\n\
             curl -s -H \"Authorization: Bearer $CRONIUM_API_TOKEN\" -H 'Content-Type: application/json' \\\n  \
             -d '{{\"requests\":[{{\"id\":\"1\",\"method\":\"GET\",\"url\":\"input\"}},{{\"id\":\"2\",\"method\":\"GET\",\"url\":\"context\"}}]}}' {base}/executions/{DEMO_ID}/batch\n\n\
             Your own executions: cronium-runtime execution create --user u1 --job j1 --input '{{\"x\":1}}'\n\
             Tool credentials of a user: {dir}/credentials/<user>/<tool>.json; drop-in tools: {tools}\n",
            dir = self.data_dir.display(),
            tools = self.tools_dir.display()
        );
    }
}

/// Prepares `config` for `dev`: embedded defaults, a persistent secret,
/// the demo execution.
pub fn prepare(config: &mut Config) -> anyhow::Result<Demo> {
    if config.valkey.is_some() || config.backend.is_some() {
        tracing::warn!("dev runs on the embedded defaults; VALKEY_URL and BACKEND_URL are ignored");
    }
    config.valkey = None;
    config.backend = None;
    if config.jwt_secret.is_none() {
        config.jwt_secret = Some(dev_secret(&config.data_dir, true)?);
    }
    let (_, token) = create_execution(
        config,
        &NewExecution {
            id: Some(DEMO_ID.into()),
            user: "demo-user".into(),
            job: "demo-job".into(),
            event_id: Some("demo-event".into()),
            event_name: Some("Demo event".into()),
            event_type: Some("BASH".into()),
            input: Some(
                json!({ "message": "hello from the Cronium runtime", "numbers": [1, 2, 3] }),
            ),
            data_dir: config.data_dir.clone(),
        },
    )?;
    Ok(Demo {
        token,
        data_dir: config.data_dir.clone(),
        tools_dir: config.tools.dir.clone(),
    })
}

/// The verifier of the configured secret, else of `dev`'s secret (made
/// now when `create_dev_secret` is set and there is none yet).
pub fn verifier(config: &Config, create_dev_secret: bool) -> anyhow::Result<TokenVerifier> {
    let secret = match &config.jwt_secret {
        Some(secret) => secret.clone(),
        None => dev_secret(&config.data_dir, create_dev_secret)?,
    };
    Ok(TokenVerifier::new(
        secret.as_bytes(),
        config.jwt_algorithm,
        config.token_policy,
    )?)
}

/// Writes an execution to the embedded store and mints a token for it.
pub fn create_execution(
    config: &Config,
    new: &NewExecution,
) -> anyhow::Result<(Execution, String)> {
    let id = new
        .id
        .clone()
        .unwrap_or_else(|| format!("exec-{:012x}", rand::random::<u64>() >> 16));
    if !valid_id(&id) {
        bail!("execution ids are 1 to 128 characters of A-Z a-z 0-9 . _ -");
    }
    let started = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the start time")?;
    let mut metadata = serde_json::Map::new();
    if let Some(input) = &new.input {
        metadata.insert("input".into(), input.clone());
    }
    let execution = Execution {
        execution_id: id,
        job_id: new.job.clone(),
        event_id: new.event_id.clone(),
        event_name: new.event_name.clone(),
        event_type: new.event_type.clone(),
        user_id: new.user.clone(),
        start_time: Some(started),
        metadata: serde_json::value::to_raw_value(&metadata).context("writing the metadata")?,
    };
    // `execution create` before any `dev` makes the dev secret now.
    let verifier = verifier(config, true)?;
    EmbeddedStore::open(&config.data_dir)?.put_execution(&execution)?;
    let now = now();
    let token = verifier.mint(&Claims {
        execution_id: execution.execution_id.clone(),
        job_id: execution.job_id.clone(),
        user_id: Some(execution.user_id.clone()),
        event_id: execution.event_id.clone(),
        capability_token: None,
        issued_at: now,
        expires_at: Some(now + TOKEN_TTL.as_secs()),
    });
    Ok((execution, token))
}

/// The `dev` secret in `data_dir`, created when `create` is set.
fn dev_secret(data_dir: &Path, create: bool) -> anyhow::Result<String> {
    let path = data_dir.join(SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if !create {
        bail!(
            "no JWT secret: set RUNTIME_JWT_SECRET, or run `cronium-runtime dev` once to create {}",
            path.display()
        );
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    );
    write_private(&path, &secret).with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
