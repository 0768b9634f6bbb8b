//! API mode over a real SSH reverse tunnel (issue #27), end to end: the
//! real host binary, a real Valkey and the fake backend in this network
//! namespace; a real OpenSSH `sshd` as the "remote server" in a namespace
//! of its own (`support::ssh`); the tunnel opened as the orchestrator opens
//! it (`ssh -N -R 127.0.0.1:9090:<host>:<port> -o ExitOnForwardFailure=yes`),
//! with tokens minted as the orchestrator mints them in SSH mode. On the
//! remote server, job scripts run with the orchestrator's environment and
//! call the API with curl, each call a new process and so a new connection
//! through the tunnel. The remote namespace has no other way to the host.
//!
//! These tests skip (with a printed message) only where network namespaces
//! cannot be created (not root); without OpenSSH they fail, saying how to
//! install it.

mod support;

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use jwt_simple::prelude::{Claims, HS256Key, MACLike, UnixTimeStamp};
use serde_json::{Value, json};
use support::ssh::{REMOTE_PORT, RemoteServer, Tunnel};
use support::{FakeBackend, Host, HostConfig, SECRET, Valkey, now};

/// An execution as the orchestrator starts it in SSH mode.
struct Job {
    execution_id: String,
    token: String,
}

impl Job {
    /// A job whose token was minted `age` seconds ago, as the orchestrator
    /// mints SSH-mode tokens: HS256, `jobId`, `executionId` =
    /// `exec_<jobId>_<unix seconds>`, `userId`, `eventId`, issuer
    /// `cronium-orchestrator`, one hour of validity.
    fn minted_ago(job_id: &str, user_id: &str, age: u64) -> Job {
        let issued_at = now() - age;
        let execution_id = format!("exec_{job_id}_{issued_at}");
        let custom = json!({
            "jobId": job_id,
            "executionId": execution_id,
            "userId": user_id,
            "eventId": "event-7",
        });
        let mut claims =
            Claims::with_custom_claims(custom, jwt_simple::prelude::Duration::from_hours(1))
                .with_issuer("cronium-orchestrator");
        claims.issued_at = Some(UnixTimeStamp::from_secs(issued_at));
        claims.invalid_before = None;
        claims.expires_at = Some(UnixTimeStamp::from_secs(issued_at + 3600));
        let token = HS256Key::from_bytes(SECRET.as_bytes())
            .authenticate(claims)
            .unwrap();
        Job {
            execution_id,
            token,
        }
    }

    fn new(job_id: &str, user_id: &str) -> Job {
        Job::minted_ago(job_id, user_id, 2)
    }

    /// The environment the orchestrator gives the script.
    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("CRONIUM_HELPER_MODE", "api"),
            ("CRONIUM_API_ENDPOINT", ENDPOINT),
            ("CRONIUM_API_TOKEN", &self.token),
            ("CRONIUM_EXECUTION_ID", &self.execution_id),
        ]
    }
}

const ENDPOINT: &str = "http://127.0.0.1:9090";

/// A job script with curl for the helpers: reads its input and context,
/// sets and reads back a variable, writes its output (made of what it
/// read) and sets a condition. Each call is a new curl, a new connection;
/// any status >= 400 fails the script, as it fails a helper.
const JOB_SCRIPT: &str = r#"
set -euo pipefail
[ "$CRONIUM_HELPER_MODE" = api ]
call() {
  local data=()
  if [ $# -ge 3 ]; then data=(--data "$3"); fi
  curl -sS --fail-with-body -X "$1" \
    -H "Authorization: Bearer $CRONIUM_API_TOKEN" -H 'Content-Type: application/json' \
    "${data[@]}" "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/$2"
}
input=$(call GET input)
context=$(call GET context)
call PUT variables/region "{\"value\":\"eu-west-$(jq -r .data.rows <<<"$input")\"}" >/dev/null
region=$(call GET variables/region)
output=$(jq -nc --argjson input "$input" --argjson context "$context" --argjson region "$region" \
  '{data: {rows: $input.data.rows, job: $context.data.jobId, event: $context.data.eventName,
           region: $region.data.value}}')
call POST output "$output" >/dev/null
call POST condition '{"condition":true}' >/dev/null
echo "done $CRONIUM_EXECUTION_ID"
"#;

/// Valkey, the fake backend, the host (on loopback, where the ssh client
/// reaches it), the remote server and the tunnel to the host.
struct World {
    _valkey: Valkey,
    backend: FakeBackend,
    host: Host,
    tunnel: Tunnel,
    remote: RemoteServer,
}

impl World {
    /// `None` where namespaces cannot be created.
    async fn start(rate_limit_per_min: u32) -> Option<World> {
        let remote = RemoteServer::start()?;
        let valkey = Valkey::start();
        let backend = FakeBackend::start().await;
        let host = Host::start(
            HostConfig::with(&valkey.url(), &backend.url())
                .env("RATE_LIMIT_PER_MIN", rate_limit_per_min.to_string()),
        )
        .await;
        let tunnel = remote.tunnel(&host.addr());
        Some(World {
            _valkey: valkey,
            backend,
            host,
            tunnel,
            remote,
        })
    }

    /// Adds `job`'s execution to the backend: `jobId` `job_id`, of
    /// `user_id`, with `{"rows": rows}` as its input.
    fn add(&self, job: &Job, job_id: &str, user_id: &str, rows: u32) {
        self.backend.state().executions.insert(
            job.execution_id.clone(),
            json!({
                "executionId": job.execution_id,
                "jobId": job_id,
                "eventId": "event-7",
                "userId": user_id,
                "metadata": {"input": {"rows": rows}},
                "event": {"id": "event-7", "name": "Nightly report", "type": "BASH"},
                "user": {"id": user_id, "email": "someone@example.com", "name": "Someone"},
            }),
        );
    }

    /// Starts `script` on the remote server for `job`.
    fn spawn(&self, script: &str, job: &Job, extra: &[(&str, &str)]) -> Child {
        let mut env = job.env();
        env.extend_from_slice(extra);
        self.remote
            .command("bash", &env)
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The host's request log lines (JSON, flattened) for paths containing
    /// `needle`.
    fn requests(&self, needle: &str) -> Vec<Value> {
        self.host
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|f| {
                f["message"] == "request" && f["path"].as_str().is_some_and(|p| p.contains(needle))
            })
            .collect()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ran(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_script_reads_and_writes_through_the_tunnel_each_call_on_a_new_connection() {
    let Some(world) = World::start(1000).await else {
        return;
    };
    let job = Job::new("job42", "user-9");
    world.add(&job, "job42", "user-9", 3);

    // The remote server reaches the host only through the tunnel.
    let direct = world
        .remote
        .curl(&["-sS", "-m", "2", &world.host.url("/health")]);
    assert!(
        !direct.status.success(),
        "the host is reachable without the tunnel"
    );

    let output = world.remote.run_script(JOB_SCRIPT, &job.env());
    assert_ran(&output, "the job script");
    assert_eq!(
        text(&output.stdout).trim(),
        format!("done {}", job.execution_id)
    );

    let state = world.backend.state();
    assert_eq!(
        state
            .outputs
            .iter()
            .map(|(id, body)| (id.as_str(), &body["output"]))
            .collect::<Vec<_>>(),
        [(
            job.execution_id.as_str(),
            &json!({"rows": 3, "job": "job42", "event": "Nightly report", "region": "eu-west-3"})
        )]
    );
    assert_eq!(state.conditions.len(), 1);
    assert_eq!(state.conditions[0].1["condition"], json!(true));
    assert_eq!(
        state
            .variables
            .get(&("user-9".to_owned(), "region".to_owned())),
        Some(&json!("eu-west-3")),
        "the variable belongs to the token's user"
    );
    drop(state);

    // Six calls, six connections, all from the ssh client's address.
    let requests = world.requests(&job.execution_id);
    assert_eq!(requests.len(), 6, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r["status"] == 200 && r["peer"] == "127.0.0.1"),
        "{requests:?}"
    );
    assert!(
        world.tunnel.log().is_empty() || !world.tunnel.log().contains("failed"),
        "{}",
        world.tunnel.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_through_the_tunnel_answers_every_call_in_one_round_trip() {
    let Some(world) = World::start(1000).await else {
        return;
    };
    let job = Job::new("job7", "user-1");
    world.add(&job, "job7", "user-1", 5);
    world
        .backend
        .state()
        .variables
        .insert(("user-1".into(), "retries".into()), json!(2));
    let batch = json!({"requests": [
        {"id": "1", "method": "GET", "url": "input"},
        {"id": "2", "method": "GET", "url": "context"},
        {"id": "3", "method": "GET", "url": "variables/retries"},
        {"id": "4", "method": "PUT", "url": "variables/last", "body": {"value": "ok"}},
        {"id": "5", "method": "POST", "url": "output", "body": {"data": {"rows": 5}}},
        {"id": "6", "method": "POST", "url": "condition", "body": {"condition": false}},
    ]});
    let script = r#"
set -euo pipefail
curl -sS --fail-with-body -X POST -H "Authorization: Bearer $CRONIUM_API_TOKEN" \
  -H 'Content-Type: application/json' --data "$BATCH" \
  "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/batch"
"#;
    let batch_text = batch.to_string();
    let mut env = job.env();
    env.push(("BATCH", batch_text.as_str()));
    let output = world.remote.run_script(script, &env);
    assert_ran(&output, "the batch");
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    let responses = answer["responses"].as_array().unwrap();
    let statuses: Vec<(&str, u64)> = responses
        .iter()
        .map(|r| (r["id"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("1", 200),
            ("2", 200),
            ("3", 200),
            ("4", 200),
            ("5", 200),
            ("6", 200)
        ]
    );
    assert_eq!(responses[0]["body"]["data"], json!({"rows": 5}));
    assert_eq!(responses[1]["body"]["data"]["jobId"], "job7");
    assert_eq!(responses[2]["body"]["data"]["value"], json!(2));

    assert_eq!(world.backend.variable("user-1", "last"), Some(json!("ok")));
    let state = world.backend.state();
    assert_eq!(state.outputs.len(), 1);
    assert_eq!(state.outputs[0].1["output"], json!({"rows": 5}));
    assert_eq!(state.conditions[0].1["condition"], json!(false));
    drop(state);
    // One request, one connection, reached the host.
    let requests = world.requests(&job.execution_id);
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(
        requests[0]["path"],
        format!("/executions/{}/batch", job.execution_id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tunnel_dropping_mid_run_is_a_connection_error_remotely_and_nothing_half_written_here()
{
    let Some(mut world) = World::start(1000).await else {
        return;
    };
    let job = Job::new("job9", "user-1");
    world.add(&job, "job9", "user-1", 1);
    let step = r#"curl -sS --fail-with-body -X PUT -H "Authorization: Bearer $CRONIUM_API_TOKEN" \
  -H 'Content-Type: application/json' --data '{"value":1}' \
  "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/variables/step""#;
    assert_ran(&world.remote.run_script(step, &job.env()), "the first step");

    // A large output, sent slowly (4 MiB at 256 KiB/s), is under way when
    // the remote server's sshd dies.
    let upload = r#"
set -uo pipefail
head -c 4000000 /dev/zero | tr '\0' x | jq -Rsc '{data: .}' >"$WORK/output.json"
curl -sS --fail-with-body --limit-rate 256k -X POST -H "Authorization: Bearer $CRONIUM_API_TOKEN" \
  -H 'Content-Type: application/json' --data-binary @"$WORK/output.json" \
  "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/output"
echo "curl exit $?" >&2
curl -sS --fail-with-body -H "Authorization: Bearer $CRONIUM_API_TOKEN" \
  "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/input"
echo "curl exit $?" >&2
"#;
    let work = tempfile::tempdir().unwrap();
    let work_path = work.path().display().to_string();
    let mut uploading = world.spawn(upload, &job, &[("WORK", work_path.as_str())]);
    // Until the host has read part of the body (its request has started):
    // the upload takes about 16 s, so one second in it is well under way.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        uploading.try_wait().unwrap().is_none(),
        "the upload ended early"
    );
    world.remote.kill_sshd();

    let deadline = Instant::now() + Duration::from_secs(20);
    while uploading.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = uploading.kill();
    let output = uploading.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    // The upload is cut off, and the next helper call finds nothing
    // listening on 9090: curl says so plainly.
    let exits: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("curl exit"))
        .collect();
    assert_eq!(exits.len(), 2, "{stderr}");
    assert_ne!(exits[0], "curl exit 0", "{stderr}");
    assert_eq!(exits[1], "curl exit 7", "{stderr}");
    assert!(
        stderr.contains(&format!("127.0.0.1 port {REMOTE_PORT}")) && stderr.contains("onnect"),
        "{stderr}"
    );
    // The orchestrator's ssh sees the connection close and exits.
    assert!(
        world.tunnel.wait_exit(Duration::from_secs(10)).is_some(),
        "ssh still runs"
    );

    // Here: the first step was written, the cut-off output never reached
    // the backend, and the host serves on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(world.backend.variable("user-1", "step"), Some(json!(1)));
    assert!(
        world.backend.state().outputs.is_empty(),
        "a half-sent output was written"
    );
    assert_eq!(
        world.backend.count(
            "POST",
            &format!("/api/internal/executions/{}/output", job.execution_id)
        ),
        0
    );
    let health = support::call("GET", &world.host.url("/health"), &[], None).await;
    assert_eq!(health.status, 200);
}

/// A process on the remote server that is killed if the test ends early.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs [`JOB_SCRIPT`] for `jobs` all at once; the outputs, in order.
fn run_all(world: &World, jobs: &[Job]) -> Vec<Output> {
    let children: Vec<Child> = jobs
        .iter()
        .map(|job| world.spawn(JOB_SCRIPT, job, &[]))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

/// 50 jobs, `jobs<n>` of `user<n>` with `n` rows of input, added to the backend.
fn fifty_jobs(world: &World) -> Vec<Job> {
    (0..50)
        .map(|n| {
            let job_id = format!("jobs{n}");
            let user_id = format!("user{n}");
            let job = Job::new(&job_id, &user_id);
            world.add(&job, &job_id, &user_id, n);
            job
        })
        .collect()
}

fn assert_all_served(world: &World, jobs: &[Job], outputs: &[Output]) {
    for (job, output) in jobs.iter().zip(outputs) {
        assert_ran(output, &job.execution_id);
    }
    let state = world.backend.state();
    assert_eq!(state.outputs.len(), jobs.len());
    assert_eq!(state.conditions.len(), jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        let written: Vec<&Value> = state
            .outputs
            .iter()
            .filter(|(id, _)| *id == job.execution_id)
            .map(|(_, body)| &body["output"]["rows"])
            .collect();
        assert_eq!(written, [&json!(n)], "{}", job.execution_id);
    }
}

/// Each job makes six calls (300 in all), within its own limit of 30 a
/// minute; failing tokens, counted per client address, have 30 too, and
/// every request here comes from one address.
const LIMIT: u32 = 30;

#[tokio::test(flavor = "multi_thread")]
async fn fifty_jobs_at_once_behind_one_address_each_within_its_own_limit_all_pass() {
    let Some(world) = World::start(LIMIT).await else {
        return;
    };
    let jobs = fifty_jobs(&world);
    let started = Instant::now();
    let outputs = run_all(&world, &jobs);
    println!(
        "50 jobs, 300 calls through one tunnel: {:?}",
        started.elapsed()
    );
    assert_all_served(&world, &jobs, &outputs);
    let requests = world.requests("/executions/exec_jobs");
    assert_eq!(requests.len(), 300);
    assert!(
        requests
            .iter()
            .all(|r| r["peer"] == "127.0.0.1" && r["status"] == 200)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_retrying_in_a_loop_does_not_refuse_the_jobs_behind_the_same_address() {
    let Some(world) = World::start(LIMIT).await else {
        return;
    };
    // Its one hour ran out ten minutes ago.
    let expired = Job::minted_ago("stale", "user-1", 3600 + 600);
    world.add(&expired, "stale", "user-1", 0);
    let work = tempfile::tempdir().unwrap();
    let (log, stop) = (work.path().join("statuses"), work.path().join("stop"));
    let (log, stop) = (log.display().to_string(), stop.display().to_string());
    // A helper retrying its call, each try a new connection, until told to
    // stop (for two minutes at most).
    let retrying = r#"
end=$((SECONDS + 120))
while [ "$SECONDS" -lt "$end" ]; do
  [ -e "$STOP" ] && exit 0
  curl -s -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $CRONIUM_API_TOKEN" \
    "$CRONIUM_API_ENDPOINT/executions/$CRONIUM_EXECUTION_ID/input" >>"$LOG"
done
"#;
    let mut retry_loop = KilledOnDrop(world.spawn(
        retrying,
        &expired,
        &[("LOG", log.as_str()), ("STOP", stop.as_str())],
    ));
    let statuses = || std::fs::read_to_string(&log).unwrap_or_default();
    // Until the address's budget for failing tokens is spent.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !statuses().contains("429") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        statuses().contains("429"),
        "the loop was never limited: {}",
        statuses()
    );

    let jobs = fifty_jobs(&world);
    let started = Instant::now();
    let outputs = run_all(&world, &jobs);
    println!(
        "50 jobs, 300 calls through one tunnel, beside an expired token's retry loop: {:?}",
        started.elapsed()
    );
    assert!(
        retry_loop.0.try_wait().unwrap().is_none(),
        "the loop stopped before the jobs ended"
    );
    std::fs::write(&stop, "").unwrap();
    let _ = retry_loop.0.wait();

    assert_all_served(&world, &jobs, &outputs);
    let statuses = statuses();
    let statuses: Vec<&str> = statuses.lines().collect();
    // The first 30 failures are told why (401); then the loop is limited (429).
    assert_eq!(statuses[..LIMIT as usize], ["401"; LIMIT as usize]);
    assert!(
        statuses.iter().all(|s| *s == "401" || *s == "429"),
        "{statuses:?}"
    );
    assert!(statuses.len() > LIMIT as usize + 10, "{statuses:?}");
}
