//! The container image (`deploy/build-image.sh`, FROM scratch) run by the
//! real Docker Engine the two ways Cronium runs the runtime API:
//!
//! * as the orchestrator's per-job sidecar, started with exactly its flags
//!   (read-only root, tmpfs `/tmp`, user 1000, 256 MB, half a CPU,
//!   `no-new-privileges`, a private network with the aliases
//!   `runtime-api` and `runtime`), probed with its `docker exec … wget`,
//!   called with the token the container executor mints, and stopped with
//!   `docker stop -t 5`, handing the audit events it could not deliver to
//!   Valkey, where the next sidecar delivers them;
//! * as the compose stack's service (`deploy/compose.yaml`), two replicas
//!   on one Valkey and a backend, under load while a replica is killed and
//!   while Valkey is cut off.
//!
//! The images are built from this build's binaries (the debug
//! `cronium-runtime`, so that `cargo test` builds nothing more), the
//! release one being what `deploy/build-image.sh` builds by default. Where
//! Docker is missing these tests are skipped, and fail under CI.

mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::backend::Profile;
use support::docker::{self, Compose, Container, Network, docker, docker_ok};
use support::{FakeBackend, SECRET, call, try_call};

/// The user of the tests' executions.
const USER: &str = "user-7";

/// A token as the container executor mints it
/// (`apps/orchestrator/internal/executors/container/jwt.go`): the
/// execution id is the job id, `job_id` in snake case, `scope`, `sub`,
/// `iss`, two hours of validity.
fn container_token(job_id: &str) -> String {
    use jwt_simple::prelude::*;
    let key = HS256Key::from_bytes(SECRET.as_bytes());
    let custom = json!({
        "executionId": job_id,
        "job_id": job_id,
        "userId": USER,
        "eventId": "event-1",
        "scope": "execution",
    });
    let custom: serde_json::Map<String, Value> = custom.as_object().unwrap().clone();
    let claims = jwt_simple::claims::Claims::with_custom_claims(custom, Duration::from_hours(2))
        .with_issuer("cronium-orchestrator")
        .with_subject(format!("job:{job_id}"));
    key.authenticate(claims).unwrap()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `docker exec <container> <command>`: (exit code, standard output).
fn exec(container: &str, command: &[&str]) -> (i32, String) {
    let mut args = vec!["exec", container];
    args.extend_from_slice(command);
    let out = docker(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Memory the container uses now, as `docker stats` reports it (MiB).
fn memory_mib(container: &str) -> f64 {
    let usage = docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.MemUsage}}",
        container,
    ]);
    let used = usage.split('/').next().unwrap().trim();
    let number: f64 = used
        .trim_end_matches(|c: char| c.is_ascii_alphabetic())
        .parse()
        .unwrap_or_else(|_| panic!("docker stats said {usage:?}"));
    number
        * match used.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.') {
            "B" => 1.0 / 1048576.0,
            "KiB" | "kB" => 1.0 / 1024.0,
            "MiB" | "MB" => 1.0,
            "GiB" | "GB" => 1024.0,
            unit => panic!("unknown unit {unit:?} in {usage:?}"),
        }
}

/// The seconds between two RFC 3339 times of one day (Docker's and the
/// host's log clocks are both the machine's).
fn seconds_between(earlier: &str, later: &str) -> f64 {
    let seconds = |t: &str| -> f64 {
        let clock = t.split('T').nth(1).unwrap().trim_end_matches('Z');
        let clock = clock.split('+').next().unwrap();
        let mut parts = clock.split(':');
        let h: f64 = parts.next().unwrap().parse().unwrap();
        let m: f64 = parts.next().unwrap().parse().unwrap();
        let s: f64 = parts.next().unwrap().parse().unwrap();
        h * 3600.0 + m * 60.0 + s
    };
    seconds(later) - seconds(earlier)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sidecar_started_as_the_orchestrator_starts_it_serves_its_job_and_stops_cleanly() {
    if !docker::available() {
        return;
    }
    let image = &docker::images().runtime;
    let valkey_image = &docker::images().valkey;
    let job = docker::unique("job").replace('-', "_");
    let other_job = format!("{job}_other");

    // The job's network; Valkey on it, the backend on the Docker host.
    let network = Network::create();
    let backend = FakeBackend::start_on((network.gateway(), 0).into(), Profile::Contract).await;
    backend.add_execution(&job, USER, Some(json!({"rows": 3})));
    backend.add_execution(&other_job, USER, Some(json!({"rows": 4})));
    let _valkey = Container::run(
        &docker::unique("cronium-test-valkey"),
        &[
            "--network",
            &network.name,
            "--network-alias",
            "valkey",
            valkey_image,
        ],
    );

    // Exactly the orchestrator's flags (sidecar.go).
    let sidecar_flags = |job: &str| -> Vec<String> {
        [
            "--read-only",
            "--tmpfs",
            "/tmp:size=50m,mode=1777",
            "--user",
            "1000:1000",
            "--memory",
            "256m",
            "--cpus",
            "0.5",
            "--security-opt",
            "no-new-privileges",
            "--network",
            &network.name,
            "--network-alias",
            "runtime-api",
            "--network-alias",
            "runtime",
            "-e",
            &format!("EXECUTION_ID={job}"),
            "-e",
            &format!("JWT_SECRET={SECRET}"),
            "-e",
            &format!("BACKEND_URL={}", backend.url()),
            "-e",
            &format!("BACKEND_TOKEN={}", support::BACKEND_TOKEN),
            "-e",
            "VALKEY_URL=valkey://valkey:6379",
            "-e",
            "PORT=8081",
            "-e",
            "LOG_LEVEL=info",
            image,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let sidecar = Container::create(&format!("cronium-runtime-{job}"), &sidecar_flags(&job));

    // Healthy at the orchestrator's first try, right after the start.
    let started = Instant::now();
    docker_ok(&["start", &sidecar.name]);
    let (code, body) = exec(
        &sidecar.name,
        &["wget", "-q", "-O-", "http://localhost:8081/health"],
    );
    let first_try = started.elapsed();
    assert_eq!(code, 0, "first health try failed: {}", sidecar.logs());
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "healthy");
    let started_at = sidecar.inspect("{{.State.StartedAt}}");
    let listening = sidecar
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "cronium runtime listening")
        .expect("the host logs that it listens");
    let to_listen = seconds_between(&started_at, listening["timestamp"].as_str().unwrap());
    eprintln!(
        "sidecar: listening {:.0} ms after the container started; first health try answered {:?} after `docker start` began",
        to_listen * 1000.0,
        first_try
    );
    // The components were precompiled into the image: nothing compiled,
    // nothing written.
    assert!(
        !sidecar
            .logs()
            .contains("could not write the precompiled component cache"),
        "{}",
        sidecar.logs()
    );

    // The other health check forms, with their exit codes.
    assert_eq!(
        exec(
            &sidecar.name,
            &["wget", "-q", "--spider", "http://localhost:8081/health"]
        )
        .0,
        0
    );
    assert_eq!(
        exec(
            &sidecar.name,
            &[
                "wget",
                "--no-verbose",
                "--tries=1",
                "--spider",
                "http://localhost:8081/health"
            ]
        )
        .0,
        0
    );
    assert_ne!(
        exec(
            &sidecar.name,
            &[
                "wget",
                "-q",
                "--spider",
                "http://localhost:8081/no-such-route"
            ]
        )
        .0,
        0
    );
    assert_ne!(
        exec(
            &sidecar.name,
            &["wget", "-q", "--spider", "http://localhost:9/health"]
        )
        .0,
        0
    );

    // The job container's view: `http://runtime-api:8081` on the job
    // network, with the executor's token.
    let token = container_token(&job);
    let from_job_network = |url: &str| {
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                &network.name,
                "--entrypoint",
                "wget",
            ])
            .arg(image)
            .args([
                "-q",
                "-O-",
                "--header",
                &format!("Authorization: Bearer {token}"),
                url,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wget {url} from the job network failed"
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let input = from_job_network(&format!("http://runtime-api:8081/executions/{job}/input"));
    assert_eq!(input, json!({"success": true, "data": {"rows": 3}}));
    let context = from_job_network(&format!("http://runtime:8081/executions/{job}/context"));
    assert_eq!(context["data"]["executionId"], json!(job));
    assert_eq!(context["data"]["userId"], json!(USER));

    // The script's writes, through the bridge.
    let base = format!("http://{}:8081", sidecar.ip(&network.name));
    let auth = bearer(&token);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let url = |path: &str| format!("{base}/executions/{job}/{path}");
    let put = call(
        "PUT",
        &url("variables/report%2Frows"),
        &headers,
        Some(br#"{"value":3}"#),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let got = call("GET", &url("variables/report/rows"), &headers, None).await;
    assert_eq!(got.json["data"], json!({"key": "report/rows", "value": 3}));
    let output = call(
        "POST",
        &url("output"),
        &headers,
        Some(br#"{"data":{"done":true}}"#),
    )
    .await;
    assert_eq!(output.status, 200, "{output:?}");
    let condition = call(
        "POST",
        &url("condition"),
        &headers,
        Some(br#"{"condition":true}"#),
    )
    .await;
    assert_eq!(condition.status, 200, "{condition:?}");
    assert_eq!(backend.state().outputs.len(), 1);
    assert_eq!(backend.variable(USER, "report/rows"), Some(json!(3)));

    // One job per sidecar: another execution's valid token is refused,
    // on its own execution's routes as on this one's.
    let other = bearer(&container_token(&other_job));
    for path in [
        format!("{base}/executions/{other_job}/input"),
        format!("{base}/executions/{job}/input"),
    ] {
        let refused = call("GET", &path, &[("authorization", &other)], None).await;
        assert_eq!(refused.status, 403, "{path}: {refused:?}");
        assert_eq!(
            refused.error_message(),
            "this runtime serves another execution; the token is not for it"
        );
    }

    // Memory at rest, then under load: 64 requests at a time, 768 in all
    // (the execution's rate limit is 1000 a minute).
    let at_rest = memory_mib(&sidecar.name);
    let load_started = Instant::now();
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (url, auth, served) = (url("input"), auth.clone(), served.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..12 {
                let reply = call("GET", &url, &[("authorization", &auth)], None).await;
                assert_eq!(reply.status, 200, "{reply:?}");
                served.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let during = {
        let name = sidecar.name.clone();
        tokio::task::spawn_blocking(move || memory_mib(&name))
    };
    for client in clients {
        client.await.unwrap();
    }
    let under_load = during.await.unwrap().max(memory_mib(&sidecar.name));
    eprintln!(
        "sidecar memory: {at_rest:.1} MiB at rest, {under_load:.1} MiB under load ({} requests in {:?}, 64 at a time, half a CPU)",
        served.load(Ordering::Relaxed),
        load_started.elapsed()
    );
    assert!(at_rest < 64.0, "{at_rest} MiB at rest");
    assert!(under_load < 256.0, "{under_load} MiB under load");

    // `docker stop -t 5` while a write is in flight, and the backend
    // refusing audit events from now on: the write completes, the host
    // exits 0 within the 5 s, and the event it could not deliver goes to
    // Valkey, not into the container's /tmp that is removed with it.
    backend.state().write_delay = Some(Duration::from_millis(1500));
    backend.state().audit_down = true;
    let writes_before = backend.state().writes_received;
    let in_flight = {
        let (url, auth) = (url("variables/last"), auth.clone());
        tokio::spawn(async move {
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            call("PUT", &url, &headers, Some(br#"{"value":"final"}"#)).await
        })
    };
    assert!(
        support::eventually(Duration::from_secs(10), || backend.state().writes_received
            > writes_before)
        .await,
        "the write reached the backend"
    );
    let stopping = Instant::now();
    let name = sidecar.name.clone();
    tokio::task::spawn_blocking(move || docker_ok(&["stop", "-t", "5", &name]))
        .await
        .unwrap();
    let stop_took = stopping.elapsed();
    let finished = in_flight.await.unwrap();
    assert_eq!(
        finished.status, 200,
        "the in-flight write was drained: {finished:?}"
    );
    assert_eq!(backend.variable(USER, "last"), Some(json!("final")));
    assert_eq!(
        sidecar.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        sidecar.logs()
    );
    assert_eq!(sidecar.inspect("{{.State.OOMKilled}}"), "false");
    assert!(
        stop_took < Duration::from_secs(5),
        "stop took {stop_took:?}"
    );
    eprintln!("sidecar: `docker stop -t 5` with a write in flight took {stop_took:?}, exit 0");
    let audited: Vec<String> = backend
        .state()
        .audit
        .iter()
        .filter_map(|event| event["action"].as_str().map(str::to_owned))
        .collect();
    for action in ["get_input", "set_variable", "set_output", "set_condition"] {
        assert!(
            audited.iter().any(|a| a == action),
            "{action} was audited before the exit: {audited:?}"
        );
    }
    // The last write's event, queued while the host was stopping, was
    // handed over; the next job's sidecar on the same Valkey delivers it
    // once the backend takes events again.
    let last_write_events = || {
        backend
            .audit_events("set_variable")
            .iter()
            .filter(|e| e["metadata"]["key"] == "last")
            .count()
    };
    assert_eq!(last_write_events(), 0, "{audited:?}");
    assert!(
        sidecar
            .logs()
            .contains("audit backlog handed over to Valkey"),
        "{}",
        sidecar.logs()
    );
    backend.state().audit_down = false;
    let next = Container::run(
        &format!("cronium-runtime-{other_job}"),
        &sidecar_flags(&other_job),
    );
    assert!(
        support::eventually(Duration::from_secs(20), || last_write_events() == 1).await,
        "the next sidecar delivered the handed-over event: {}",
        next.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_image_reads_upstreams_runtime_port_and_runs_as_user_1000_from_a_read_only_root() {
    if !docker::available() {
        return;
    }
    let image = &docker::images().runtime;
    // The Go service's Dockerfile bakes RUNTIME_PORT=8081; ours honours it
    // (over PORT, as the Go service's envconfig names win).
    let out = docker_ok(&[
        "run",
        "--rm",
        "--read-only",
        "-e",
        "RUNTIME_PORT=18081",
        "-e",
        "PORT=8081",
        image,
        "config",
    ]);
    let port = out.lines().find(|l| l.starts_with("PORT ")).unwrap();
    assert!(
        port.contains("18081") && port.contains("$RUNTIME_PORT"),
        "{port}"
    );
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Config.User}}", image]),
        "1000:1000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_in_compose_lose_no_acknowledged_write_when_one_is_killed_and_serve_on_without_valkey()
 {
    if !docker::available() {
        return;
    }
    let images = docker::images();
    let executions: Vec<String> = (1..=4).map(|n| format!("exec-c{n}")).collect();
    let seeded: Vec<String> = executions.iter().map(|e| format!("{e}={USER}")).collect();
    let stack = Compose::up(&[
        ("CRONIUM_RUNTIME_IMAGE", &images.runtime),
        ("CRONIUM_VALKEY_IMAGE", &images.valkey),
        ("CRONIUM_BACKEND_IMAGE", &images.fake_backend),
        ("JWT_SECRET", SECRET),
        ("BACKEND_TOKEN", support::BACKEND_TOKEN),
        ("FAKE_BACKEND_EXECUTIONS", &seeded.join(",")),
    ]);
    let replicas = [
        format!("http://{}", stack.published("runtime-api-1", 8081)),
        format!("http://{}", stack.published("runtime-api-2", 8081)),
    ];
    let backend = format!("http://{}", stack.published("backend", 3000));
    for replica in &replicas {
        let health = format!("{replica}/health");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !try_call("GET", &health, &[], None, Duration::from_secs(1))
            .await
            .is_ok_and(|r| r.status == 200)
        {
            assert!(Instant::now() < deadline, "{replica} never became healthy");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // One writer per execution, alternating replicas, each write a new
    // key; replica 1 is killed mid-way. The writers go on until two
    // seconds after the kill has happened, however long `docker kill`
    // takes on a busy machine.
    let killed = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, execution) in executions.iter().enumerate() {
        let (replicas, execution, killed, stop) = (
            replicas.clone(),
            execution.clone(),
            killed.clone(),
            stop.clone(),
        );
        let token = support::token_for(&cronium_rules::token::Claims {
            user_id: Some(USER.into()),
            ..support::claims(&execution)
        });
        writers.push(tokio::spawn(async move {
            let auth = bearer(&token);
            let headers = [
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ];
            let (mut acknowledged, mut failed, mut after_kill) = (Vec::new(), 0, 0);
            let writing = Instant::now();
            for n in 0..100_000u32 {
                if stop.load(Ordering::SeqCst) || writing.elapsed() > Duration::from_secs(120) {
                    break;
                }
                let key = format!("w{w}-{n}");
                let url = format!(
                    "{}/executions/{execution}/variables/{key}",
                    replicas[n as usize % 2]
                );
                let body = json!({ "value": format!("value-{n}") }).to_string();
                let was_killed = killed.load(Ordering::SeqCst);
                match try_call(
                    "PUT",
                    &url,
                    &headers,
                    Some(body.as_bytes()),
                    Duration::from_secs(5),
                )
                .await
                {
                    Ok(reply) if reply.status == 200 => {
                        acknowledged.push((key, n));
                        if was_killed {
                            after_kill += 1;
                        }
                    }
                    _ => {
                        failed += 1;
                        // The dead replica refuses at once: no busy loop.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (acknowledged, failed, after_kill)
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let victim = stack.container("runtime-api-1");
    killed.store(true, Ordering::SeqCst);
    tokio::task::spawn_blocking(move || docker_ok(&["kill", &victim]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut acknowledged, mut failed, mut after_kill) = (Vec::new(), 0, 0);
    for writer in writers {
        let (acked, f, a) = writer.await.unwrap();
        acknowledged.extend(acked);
        failed += f;
        after_kill += a;
    }
    eprintln!(
        "compose: {} writes acknowledged ({after_kill} after the kill), {failed} failed",
        acknowledged.len()
    );
    assert!(failed > 0, "the killed replica refused writes");
    assert!(after_kill > 0, "the other replica went on acknowledging");
    // Every acknowledged write is in the backend.
    let backend_auth = format!("Bearer {}", support::BACKEND_TOKEN);
    for (key, n) in &acknowledged {
        let stored = call(
            "GET",
            &format!("{backend}/api/internal/variables/{USER}/{key}"),
            &[("authorization", &backend_auth)],
            None,
        )
        .await;
        assert_eq!(stored.status, 200, "acknowledged write {key} lost");
        assert_eq!(stored.json["value"], json!(format!("value-{n}")), "{key}");
    }

    // Valkey cut off: reads and plain writes go on through the backend,
    // conditional writes answer 503 with Retry-After (docs/api.md, "When
    // Valkey is down").
    let valkey = stack.container("valkey");
    docker_ok(&[
        "network",
        "disconnect",
        "--force",
        &stack.network(),
        &valkey,
    ]);
    let survivor = &replicas[1];
    let token = support::token_for(&cronium_rules::token::Claims {
        user_id: Some(USER.into()),
        ..support::claims(&executions[0])
    });
    let auth = bearer(&token);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let at = |path: &str| format!("{survivor}/executions/{}/{path}", executions[0]);
    let input = call("GET", &at("input"), &headers, None).await;
    assert_eq!(input.status, 200, "{input:?}");
    assert_eq!(input.json["data"], json!({"execution": executions[0]}));
    let put = call(
        "PUT",
        &at("variables/offline"),
        &headers,
        Some(br#"{"value":1}"#),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    let read = call("GET", &at("variables/offline"), &headers, None).await;
    assert_eq!(read.json["data"]["value"], json!(1), "{read:?}");
    let conditional = call(
        "PUT",
        &at("variables/offline-new"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
            ("if-none-match", "*"),
        ],
        Some(br#"{"value":2}"#),
    )
    .await;
    assert_eq!(conditional.status, 503, "{conditional:?}");
    assert!(
        conditional.header("retry-after").is_some(),
        "{conditional:?}"
    );
    let output = call(
        "POST",
        &at("output"),
        &headers,
        Some(br#"{"data":"offline"}"#),
    )
    .await;
    assert_eq!(output.status, 200, "{output:?}");
}
