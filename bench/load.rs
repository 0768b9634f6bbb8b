//! The load benchmark: `cargo bench -p cronium-host --bench load`.
//!
//! Builds in release mode (cargo's bench profile), starts a real Valkey
//! and the fake backend, then drives with `wrk` (installed with apt-get
//! when missing) these servers side by side in one run:
//!
//! * `host, fresh`: `cronium-runtime`, the components on wasmtime, with
//!   `CRONIUM_INSTANCE_REUSE=1`: a fresh instance per request;
//! * `host, reuse 128`: the default, an instance serving up to 128
//!   requests of one credential;
//! * `host, wasi:http export` (GET input only): the host calling the
//!   components through `wasi:http`, as Spin does, instead of their
//!   direct `handler` export;
//! * `native`: the same routes as plain Rust on the same capabilities
//!   (`bench/native_baseline.rs`): host/native is the price of isolation;
//! * `host+floor` (GET input only): the default host with an endpoint
//!   component that answers at once, calling no capability
//!   (`bench/components/floor`): the fixed cost of one component call,
//!   so `floor / native` is the most any `host / native` can reach;
//! * `hello`: a minimal `wasi:http` component on our host, and on
//!   `wasmtime serve` (a `wasmtime` 48 CLI from the PATH, else installed
//!   with `cargo install wasmtime-cli@48.0.8` into `target/wasmtime-cli`
//!   on the first full run; about ten minutes on two cores).
//!
//! It prints one table (requests/s, latency percentiles, errors, peak RSS
//! of the server during the run), the ratios, cold-start times, and how
//! startup time and memory grow with 1, 10 and 50 tool components
//! installed. Tool actions go to a loopback webhook receiver.
//! `-- --smoke` runs every scenario for one second at one concurrency, to
//! keep the harness working in CI; `-- --seconds N` sets the run length;
//! `-- --only <text>` runs the scenarios whose name contains it, or any
//! of its `|`-separated parts (and skips cold start and growth);
//! `-- --rounds N` measures every point N times, the servers taking turns,
//! and reports medians (errors summed, peak RSS the highest);
//! `-- --no-rate-limit` turns rate limiting off in every server;
//! `-- --no-wasmtime-serve` skips the `wasmtime serve` reference (installing
//! it takes minutes on a machine without it).
//! The `spin` and `spin+hello` rows run when a Spin CLI is found (`spin` on
//! the `PATH` or `CRONIUM_SPIN_BIN`).
//!
//! `cluster` (`-- --only cluster`): two hosts on a real Valkey Cluster
//! (three primaries, three replicas on loopback) beside two hosts on one
//! Valkey node, driven at once.
//!
//! Last, the tunnel: helpers reach the API through an SSH reverse tunnel,
//! so every call pays a network round trip. A loopback proxy adding 25 ms
//! each way stands in for it, and the issue's seven-call script (read the
//! input, the context and three variables, write the output and a
//! condition) runs one call at a time, then as one batch
//! (`POST /executions/{id}/batch`), on our host and, when a Spin CLI is
//! found, under `spin up`: wall time per script and the server's CPU per
//! script. `-- --only tunnel` runs just that.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Answer, FakeBackend, Host, HostConfig, SpinApp, StandIn, Valkey, spin_cli, token};

const NATIVE: &str = env!("CARGO_BIN_EXE_cronium-native-baseline");
const HELLO: &str = env!("CRONIUM_BENCH_HELLO_WASM");
const FLOOR: &str = env!("CRONIUM_BENCH_FLOOR_WASM");
const GROWTH_TOOL: &str = env!("CRONIUM_BENCH_GROWTH_TOOL_WASM");
/// The id marker in the growth tool's binary (see its crate).
const GROWTH_ID_MARKER: &[u8] = b"growth-bench-000000";

/// One load pattern.
struct Scenario {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Body,
    /// How the requests vary.
    requests: Requests,
    connections: &'static [u32],
    /// Which servers take part.
    targets: &'static [Target],
}

/// How one scenario's requests vary.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Requests {
    /// The same request every time.
    Same,
    /// A new variable key per request (uncontended writes).
    SpreadKeys,
    /// Compare-and-set writes of ever new values to one variable, each with
    /// `If-Match: <the last ETag its wrk thread saw>` (answered by a 200 or
    /// a 412, both of which carry one): clients racing to update a counter.
    IfMatch,
}

#[derive(Clone, Copy)]
enum Body {
    None,
    /// JSON; `{hook}` is replaced with the webhook receiver's URL.
    Json(&'static str),
    /// `{"data":"xxx…"}` of this many bytes.
    Output(usize),
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Target {
    Host,
    /// The host with `CRONIUM_INSTANCE_REUSE` (warm instances).
    HostReuse,
    /// The host calling the components' `wasi:http` export, as Spin does
    /// (`CRONIUM_COMPONENT_EXPORT=wasi-http`).
    HostWasiHttp,
    Native,
    /// The host (reuse, the default) with the floor component in place of
    /// the executions component: a component call with nothing inside it.
    Floor,
    Hello,
    WasmtimeServe,
    /// The API under `spin up` (`spin.toml`), when a Spin CLI is found.
    Spin,
    /// The hello component under `spin up`: Spin's own cost per request.
    SpinHello,
}

impl Target {
    /// The name as a path segment: `host-reuse-128`.
    fn slug(self) -> String {
        self.name()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("-")
    }

    fn name(self) -> &'static str {
        match self {
            Target::Host => "host, fresh",
            Target::HostReuse => "host, reuse 128",
            Target::HostWasiHttp => "host, wasi:http export",
            Target::Native => "native",
            Target::Floor => "host+floor",
            Target::Hello => "host+hello",
            Target::WasmtimeServe => "wasmtime-serve+hello",
            Target::Spin => "spin",
            Target::SpinHello => "spin+hello",
        }
    }
}

const ALL_CONNS: &[u32] = &[1, 16, 64, 256];
const SERVERS: &[Target] = &[Target::Host, Target::HostReuse, Target::Native];

/// The servers, the host on the `wasi:http` export (what the direct
/// `handler` export saves, on the headline scenario), and the API under Spin.
const SERVERS_AND_SPIN: &[Target] = &[
    Target::Host,
    Target::HostReuse,
    Target::HostWasiHttp,
    Target::Native,
    Target::Floor,
    Target::Spin,
];
/// The servers and the API under Spin.
const SERVERS_WITH_SPIN: &[Target] = &[
    Target::Host,
    Target::HostReuse,
    Target::Native,
    Target::Spin,
];

/// Requests one instance may serve in the `host, reuse` runs.
const REUSE: &str = "128";

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "health",
            method: "GET",
            path: "/health",
            body: Body::None,
            requests: Requests::Same,
            connections: ALL_CONNS,
            targets: SERVERS,
        },
        Scenario {
            name: "input (cache hit)",
            method: "GET",
            path: "/executions/bench-1/input",
            body: Body::None,
            requests: Requests::Same,
            connections: ALL_CONNS,
            targets: SERVERS_AND_SPIN,
        },
        Scenario {
            name: "context",
            method: "GET",
            path: "/executions/bench-1/context",
            body: Body::None,
            requests: Requests::Same,
            connections: &[16, 64],
            targets: SERVERS_WITH_SPIN,
        },
        Scenario {
            name: "GET variable (cache hit)",
            method: "GET",
            path: "/executions/bench-1/variables/read-me",
            body: Body::None,
            requests: Requests::Same,
            connections: &[16, 64],
            targets: SERVERS_WITH_SPIN,
        },
        Scenario {
            name: "output 1 KiB",
            method: "POST",
            path: "/executions/bench-1/output",
            body: Body::Output(1024),
            requests: Requests::Same,
            connections: &[16, 64],
            targets: SERVERS,
        },
        Scenario {
            name: "output 1 MiB",
            method: "POST",
            path: "/executions/bench-1/output",
            body: Body::Output(1024 * 1024),
            requests: Requests::Same,
            connections: &[1, 16],
            targets: SERVERS,
        },
        Scenario {
            name: "PUT variable, uncontended",
            method: "PUT",
            path: "/executions/bench-1/variables/",
            body: Body::Json(r#"{"value":{"n":1}}"#),
            requests: Requests::SpreadKeys,
            connections: &[16, 64],
            targets: SERVERS,
        },
        Scenario {
            name: "PUT variable, contended (one key)",
            method: "PUT",
            // One hot key per server: requests a server still finishes
            // after wrk stops must not hold the next server's lease.
            path: "/executions/bench-1/variables/hot-{server}",
            body: Body::Json(r#"{"value":{"n":1}}"#),
            requests: Requests::Same,
            connections: &[16],
            targets: SERVERS,
        },
        Scenario {
            name: "PUT variable, If-Match contended (one key)",
            method: "PUT",
            path: "/executions/bench-1/variables/cas-{server}",
            // The Lua script writes a new value each time.
            body: Body::None,
            requests: Requests::IfMatch,
            connections: &[16],
            // The native baseline has no compare-and-set.
            targets: &[Target::Host, Target::HostReuse],
        },
        Scenario {
            name: "tool action (webhook to loopback)",
            method: "POST",
            path: "/tool-actions/execute",
            body: Body::Json(
                r#"{"tool":"webhook","action":"send","config":{"url":"{hook}/hook","body":{"n":1},"retries":0}}"#,
            ),
            requests: Requests::Same,
            connections: &[16, 64],
            targets: SERVERS,
        },
        Scenario {
            name: "hello component",
            method: "GET",
            path: "/executions/x/input",
            body: Body::None,
            requests: Requests::Same,
            connections: ALL_CONNS,
            targets: &[Target::Hello, Target::WasmtimeServe, Target::SpinHello],
        },
    ]
}

/// What `wrk` measured (or the medians of several runs).
#[derive(Debug, Clone)]
struct Measured {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    errors: u64,
    peak_rss_mib: Option<f64>,
    /// CPU time the server spent per request (all its threads), in µs:
    /// less noisy than requests/s on a shared machine, since it does not
    /// count what wrk and Valkey take from the same cores.
    cpu_us_per_request: Option<f64>,
    /// Of [`Requests::IfMatch`] runs: writes that won (200) and lost (412)
    /// per second. Any other status counts as an error.
    won_per_sec: Option<f64>,
    lost_per_sec: Option<f64>,
}

impl Measured {
    /// The medians of `runs` (at least one): each figure on its own,
    /// errors summed, peak RSS the highest.
    fn median(runs: Vec<Measured>) -> Measured {
        let median = |figure: fn(&Measured) -> Option<f64>| {
            let mut values: Vec<f64> = runs.iter().filter_map(figure).collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).copied()
        };
        Measured {
            requests_per_sec: median(|m| Some(m.requests_per_sec)).unwrap_or_default(),
            p50_ms: median(|m| Some(m.p50_ms)).unwrap_or_default(),
            p99_ms: median(|m| Some(m.p99_ms)).unwrap_or_default(),
            p999_ms: median(|m| Some(m.p999_ms)).unwrap_or_default(),
            errors: runs.iter().map(|m| m.errors).sum(),
            peak_rss_mib: runs.iter().filter_map(|m| m.peak_rss_mib).reduce(f64::max),
            cpu_us_per_request: median(|m| m.cpu_us_per_request),
            won_per_sec: median(|m| m.won_per_sec),
            lost_per_sec: median(|m| m.lost_per_sec),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(if smoke { 1 } else { 5 });
    let rounds: u32 = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(smoke, seconds, rounds, only));
}

async fn run(smoke: bool, seconds: u64, rounds: u32, only: Option<String>) {
    let wrk = ensure_wrk();
    let work = tempfile::tempdir().unwrap();
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.seed_bench();
    backend.add_execution("x", "bench-user", None);
    let hook = StandIn::start(Answer::json(200, json!({"ok": true}))).await;
    hook.forget_requests();

    // Rate limiting stays on (its cost is part of every request) but high
    // enough never to refuse the load; `--no-rate-limit` measures without it.
    let limit = if std::env::args().any(|a| a == "--no-rate-limit") {
        "0"
    } else {
        "1000000000"
    };
    let quiet = |c: HostConfig| {
        c.env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_PER_MIN", limit)
            .env(
                "CRONIUM_TOOL_ALLOWED_HOSTS",
                format!("webhook={}", hook.authority()),
            )
    };
    let base = HostConfig::with(&valkey.url(), &backend.url());
    let mut servers: BTreeMap<Target, Host> = BTreeMap::new();
    servers.insert(
        Target::Host,
        Host::start(quiet(base.clone()).env("CRONIUM_INSTANCE_REUSE", "1")).await,
    );
    servers.insert(
        Target::HostReuse,
        Host::start(quiet(base.clone()).env("CRONIUM_INSTANCE_REUSE", REUSE)).await,
    );
    servers.insert(
        Target::HostWasiHttp,
        Host::start(quiet(base.clone()).env("CRONIUM_COMPONENT_EXPORT", "wasi-http")).await,
    );
    let mut native = quiet(base.clone());
    native.binary = Some(PathBuf::from(NATIVE));
    servers.insert(Target::Native, Host::start(native).await);
    servers.insert(
        Target::Floor,
        Host::start(quiet(base.clone()).env("CRONIUM_COMPONENT_EXECUTIONS", FLOOR)).await,
    );
    servers.insert(
        Target::Hello,
        Host::start(quiet(base.clone()).env("CRONIUM_COMPONENT_EXECUTIONS", HELLO)).await,
    );
    let chosen: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| {
            only.as_deref()
                .is_none_or(|o| o.split('|').any(|part| s.name.contains(part)))
        })
        .collect();
    let wants_reference = chosen
        .iter()
        .any(|s| s.targets.contains(&Target::WasmtimeServe));
    // The smoke run skips the reference host (installing it takes minutes).
    let skip_reference = std::env::args().any(|a| a == "--no-wasmtime-serve");
    let wasmtime_serve = if smoke || !wants_reference || skip_reference {
        None
    } else {
        WasmtimeServe::start(Path::new(HELLO))
    };

    // Spin rows, when a Spin CLI is found (the smoke run skips them).
    let wants_spin = chosen
        .iter()
        .any(|s| s.targets.contains(&Target::Spin) || s.targets.contains(&Target::SpinHello));
    let mut spin_apps: BTreeMap<Target, SpinApp> = BTreeMap::new();
    if !smoke
        && wants_spin
        && let Some(cli) = spin_cli("bench: the spin and spin+hello rows")
    {
        spin_apps.insert(
            Target::Spin,
            SpinApp::start(
                cli,
                &valkey.url(),
                &backend.url(),
                &[("rate_limit_per_min", limit)],
            )
            .await,
        );
        spin_apps.insert(
            Target::SpinHello,
            SpinApp::start_manifest(
                cli,
                &support::spin::root().join("bench/spin-hello.toml"),
                &[],
                "/",
            )
            .await,
        );
    }

    let token = token("bench-1");
    let mut rows = Vec::new();
    for scenario in chosen {
        let connections: Vec<u32> = if smoke {
            vec![scenario.connections[0]]
        } else {
            scenario.connections.to_vec()
        };
        for &conns in &connections {
            // Rounds interleave the servers, so that a slow spell of the
            // shared machine hits all of them, then each keeps its medians.
            let mut samples: BTreeMap<Target, Vec<Measured>> = BTreeMap::new();
            for round in 0..rounds {
                for &target in scenario.targets {
                    let (url, pid) = match target {
                        Target::WasmtimeServe => match &wasmtime_serve {
                            Some(serve) => (serve.url.clone(), Some(serve.child.id())),
                            None => continue,
                        },
                        Target::Spin | Target::SpinHello => match spin_apps.get(&target) {
                            Some(app) => (app.url(""), Some(app.pid())),
                            None => continue,
                        },
                        _ => (servers[&target].base(), servers[&target].pid()),
                    };
                    let path = scenario.path.replace("{server}", &target.slug());
                    if scenario.requests == Requests::IfMatch {
                        // The variable exists, so the first 412 carries its ETag.
                        let seeded = support::call(
                            "PUT",
                            &format!("{url}{path}"),
                            &[
                                ("authorization", &format!("Bearer {token}")),
                                ("content-type", "application/json"),
                            ],
                            Some(br#"{"value":0}"#),
                        )
                        .await;
                        assert_eq!(seeded.status, 200, "{seeded:?}");
                    }
                    let run = format!("{}-{conns}-{round}", target.slug());
                    let script = script(work.path(), &scenario, &token, &hook.url(), &run);
                    reset_peak_rss(pid);
                    let measured =
                        wrk_run(&wrk, &format!("{url}{path}"), &script, conns, seconds, pid);
                    eprintln!(
                        "{:<36} {:<22} c={:<4} {:>10.0} req/s",
                        scenario.name,
                        target.name(),
                        conns,
                        measured.requests_per_sec
                    );
                    samples.entry(target).or_default().push(measured);
                }
            }
            for &target in scenario.targets {
                if let Some(runs) = samples.remove(&target) {
                    rows.push((scenario.name, target, conns, Measured::median(runs)));
                }
            }
        }
    }
    print_table(&rows);
    print_if_match(&rows);
    print_ratios(&rows);
    if smoke {
        // The smoke run keeps the harness honest: every scenario served, cleanly.
        for (name, target, conns, m) in &rows {
            assert!(
                m.requests_per_sec > 0.0 && m.errors == 0,
                "{name} on {} at {conns} connections: {m:?}",
                target.name()
            );
        }
    }
    if only.as_deref().is_none_or(|o| TUNNEL.contains(o)) {
        if !smoke
            && !spin_apps.contains_key(&Target::Spin)
            && let Some(cli) = spin_cli("bench: the tunnel's spin rows")
        {
            let app = SpinApp::start(
                cli,
                &valkey.url(),
                &backend.url(),
                &[("rate_limit_per_min", limit)],
            )
            .await;
            spin_apps.insert(Target::Spin, app);
        }
        tunnel(&servers, spin_apps.get(&Target::Spin), smoke).await;
    }
    if only.as_deref().is_none_or(|o| CLUSTER.contains(o)) {
        cluster(
            &wrk,
            work.path(),
            &backend,
            &hook.url(),
            limit,
            smoke,
            seconds,
        )
        .await;
    }
    // Cold start and growth belong to the full run, not to `--only` probes.
    if !smoke && only.is_none() {
        cold_start(&valkey, &backend).await;
        growth(&valkey, &backend).await;
    }
}

/// The Lua script that shapes `wrk`'s requests and reports the result.
/// `run` names this server and concurrency, so that spread keys are new in
/// every run (a server still finishing the last run's writes holds their
/// leases).
fn script(dir: &Path, scenario: &Scenario, token: &str, hook: &str, run: &str) -> PathBuf {
    let mut lua = format!(
        "wrk.method = \"{}\"\nwrk.headers[\"Authorization\"] = \"Bearer {token}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        scenario.method
    );
    match scenario.body {
        Body::None => {}
        Body::Json(json) => {
            lua.push_str(&format!("wrk.body = '{}'\n", json.replace("{hook}", hook)))
        }
        Body::Output(size) => {
            let file = dir.join(format!("output-{size}.json"));
            let pad = size.saturating_sub(11);
            std::fs::write(&file, format!("{{\"data\":\"{}\"}}", "x".repeat(pad))).unwrap();
            lua.push_str(&format!(
                "local f = io.open(\"{}\", \"rb\")\nwrk.body = f:read(\"*a\")\nf:close()\n",
                file.display()
            ));
        }
    }
    if scenario.requests == Requests::SpreadKeys {
        // Each wrk thread has its own Lua state with the same unseeded
        // random sequence: without the thread's number in the key, two
        // threads would write the same keys at the same moments, and the
        // "uncontended" run would wait on leases.
        lua.push_str(&format!(
            "local threads = 0\n\
             setup = function(thread)\n  threads = threads + 1\n  thread:set(\"thread_id\", threads)\nend\n\
             request = function()\n  return wrk.format(nil, \"{}{run}-\" .. thread_id .. \"-\" .. math.random(1, 1000000000))\nend\n",
            scenario.path
        ));
    }
    if scenario.requests == Requests::IfMatch {
        // `won`, `lost` and `other` are each thread's globals, summed by
        // `done` (which runs in the main Lua state) through `thread:get`.
        lua.push_str(
            "local threads = {}\n\
             setup = function(thread)\n  table.insert(threads, thread)\n  thread:set(\"thread_id\", #threads)\nend\n\
             won, lost, other, n, etag = 0, 0, 0, 0, '\"none\"'\n\
             request = function()\n  n = n + 1\n  wrk.headers[\"If-Match\"] = etag\n  \
             return wrk.format(nil, nil, nil, '{\"value\":{\"thread\":' .. thread_id .. ',\"n\":' .. n .. '}}')\nend\n\
             response = function(status, headers, body)\n  \
             if status == 200 then won = won + 1 elseif status == 412 then lost = lost + 1 else other = other + 1 end\n  \
             local tag = headers[\"etag\"] or headers[\"ETag\"]\n  if tag then etag = tag end\nend\n\
             cas_summary = function()\n  local w, l, o = 0, 0, 0\n  \
             for _, t in ipairs(threads) do w = w + t:get(\"won\"); l = l + t:get(\"lost\"); o = o + t:get(\"other\") end\n  \
             io.write(string.format('IFMATCH %d %d %d\\n', w, l, o))\nend\n",
        );
    } else {
        lua.push_str("cas_summary = function() end\n");
    }
    lua.push_str(
        "done = function(summary, latency, requests)\n\
         cas_summary()\n\
         local e = summary.errors\n\
         io.write(string.format('RESULT %d %d %d %d %d %d %d\\n', summary.requests, summary.duration, \
         e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))\n\
         end\n",
    );
    // One file per run: the cluster scenario starts two wrk at once, and a
    // shared file rewritten under the other's feet loses its headers.
    let path = dir.join(format!(
        "{}-{run}.lua",
        scenario.name.replace([' ', ',', '(', ')'], "_")
    ));
    std::fs::write(&path, lua).unwrap();
    path
}

/// Runs `wrk` against `url` and reads what the script's `done` printed.
fn wrk_run(
    wrk: &Path,
    url: &str,
    script: &Path,
    conns: u32,
    seconds: u64,
    pid: Option<u32>,
) -> Measured {
    let threads = conns.clamp(1, 2);
    let cpu_before = pid.and_then(cpu_ns);
    let out = Command::new(wrk)
        .args([
            "-t",
            &threads.to_string(),
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{seconds}s"),
        ])
        .args(["--timeout", "10s", "-s"])
        .arg(script)
        .arg(url)
        .output()
        .expect("running wrk");
    let cpu_after = pid.and_then(cpu_ns);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let n: Vec<f64> = line
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    // won, lost (412: an answer, not an error), other statuses.
    let if_match: Option<Vec<f64>> = text.lines().find_map(|l| {
        l.strip_prefix("IFMATCH ").map(|rest| {
            rest.split_whitespace()
                .map(|v| v.parse().unwrap())
                .collect()
        })
    });
    let seconds_run = n[1] / 1e6;
    Measured {
        requests_per_sec: n[0] / seconds_run,
        errors: match &if_match {
            Some(counts) => (n[2] + counts[2]) as u64,
            None => (n[2] + n[3]) as u64,
        },
        won_per_sec: if_match.as_ref().map(|c| c[0] / seconds_run),
        lost_per_sec: if_match.as_ref().map(|c| c[1] / seconds_run),
        p50_ms: n[4] / 1000.0,
        p99_ms: n[5] / 1000.0,
        p999_ms: n[6] / 1000.0,
        peak_rss_mib: pid.and_then(peak_rss_mib),
        cpu_us_per_request: match (cpu_before, cpu_after) {
            (Some(before), Some(after)) if n[0] > 0.0 => {
                Some(after.saturating_sub(before) as f64 / 1e3 / n[0])
            }
            _ => None,
        },
    }
}

/// CPU time used so far by every thread of process `pid`, in ns
/// (`/proc/<pid>/task/*/schedstat`, first field).
fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

fn reset_peak_rss(pid: Option<u32>) {
    if let Some(pid) = pid {
        // "5" resets the peak resident set size (VmHWM) of the process.
        let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
    }
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmHWM:")
}

fn current_rss_mib(pid: u32) -> Option<f64> {
    status_mib(pid, "VmRSS:")
}

/// A kB field of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    Some(support::proc_status(pid, field)? / 1024.0)
}

fn print_table(rows: &[(&str, Target, u32, Measured)]) {
    println!(
        "\n| scenario | server | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors | peak RSS MiB | CPU µs/req |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, target, conns, m) in rows {
        println!(
            "| {name} | {} | {conns} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            target.name(),
            m.requests_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.p999_ms,
            m.errors,
            m.peak_rss_mib
                .map(|r| format!("{r:.0}"))
                .unwrap_or_else(|| "-".into()),
            m.cpu_us_per_request
                .map(|c| format!("{c:.1}"))
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// The compare-and-set runs: how many writes won and lost a second.
fn print_if_match(rows: &[(&str, Target, u32, Measured)]) {
    let runs: Vec<_> = rows
        .iter()
        .filter_map(|(name, target, conns, m)| Some((name, target, conns, m.won_per_sec?, m)))
        .collect();
    if runs.is_empty() {
        return;
    }
    println!(
        "\n| scenario | server | conns | won (200)/s | lost (412)/s | other statuses and errors |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (name, target, conns, won, m) in runs {
        println!(
            "| {name} | {} | {conns} | {won:.0} | {:.0} | {} |",
            target.name(),
            m.lost_per_sec.unwrap_or_default(),
            m.errors
        );
    }
}

fn print_ratios(rows: &[(&str, Target, u32, Measured)]) {
    // Throughput is the headline; the CPU ratio (baseline's CPU per request
    // over ours) says the same with less of the shared machine's noise.
    println!("\n| scenario | conns | ratio | req/s | CPU per request (inverted) |");
    println!("|---|---:|---|---:|---:|");
    let find = |name: &str, target: Target, conns: u32| {
        rows.iter()
            .find(|(n, t, c, _)| *n == name && *t == target && *c == conns)
            .map(|r| &r.3)
    };
    for (name, target, conns, m) in rows {
        let (other, label) = match target {
            Target::Host => (Target::Native, "host, fresh / native"),
            Target::HostReuse => (Target::Native, "host, reuse / native"),
            Target::HostWasiHttp => (Target::Native, "host, wasi:http / native"),
            Target::Floor => (Target::Native, "host+floor / native"),
            Target::Hello => (Target::WasmtimeServe, "our host / wasmtime serve"),
            Target::Spin => {
                // Beside Spin's trivial component: what our adapters and
                // components add under Spin.
                if let Some(hello) = find("hello component", Target::SpinHello, *conns) {
                    println!(
                        "| {name} | {conns} | spin / spin+hello | {:.2} | - |",
                        m.requests_per_sec / hello.requests_per_sec
                    );
                }
                (Target::HostReuse, "spin / host, reuse")
            }
            _ => continue,
        };
        if let Some(base) = find(name, other, *conns) {
            let cpu = match (base.cpu_us_per_request, m.cpu_us_per_request) {
                (Some(theirs), Some(ours)) if ours > 0.0 => format!("{:.2}", theirs / ours),
                _ => "-".into(),
            };
            println!(
                "| {name} | {conns} | {label} | {:.2} | {cpu} |",
                m.requests_per_sec / base.requests_per_sec
            );
        }
    }
}

/// The name `--only` matches the cluster scenario by.
const CLUSTER: &str = "cluster: two hosts on a Valkey Cluster";

/// Two hosts on a Valkey Cluster (three primaries, three replicas) beside
/// two hosts on one Valkey node, in one run: the hot reads and an
/// uncontended write, 32 connections on each host at once. Rows give the
/// two hosts' requests/s summed and their CPU per request, and the ratio
/// cluster / one node.
async fn cluster(
    wrk: &Path,
    work: &Path,
    backend: &FakeBackend,
    hook: &str,
    limit: &str,
    smoke: bool,
    seconds: u64,
) {
    let valkey_cluster = support::ValkeyCluster::start();
    let node = Valkey::start();
    let host = |url: String| {
        HostConfig::with(&url, &backend.url())
            .env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_PER_MIN", limit)
    };
    let seeds = format!("{},{}", valkey_cluster.url(0), valkey_cluster.url(1));
    let setups = [
        (
            "2 hosts, one Valkey node",
            [
                Host::start(host(node.url())).await,
                Host::start(host(node.url())).await,
            ],
        ),
        (
            "2 hosts, Valkey Cluster 3+3",
            [
                Host::start(host(valkey_cluster.url(0))).await,
                Host::start(host(seeds)).await,
            ],
        ),
    ];
    let token = token("bench-1");
    let per_host = if smoke { 1 } else { 32 };
    let names = [
        "input (cache hit)",
        "GET variable (cache hit)",
        "PUT variable, uncontended",
    ];
    println!("\n{CLUSTER}: {per_host} connections on each host\n");
    println!("| scenario | setup | req/s (both hosts) | p50 ms | p99 ms | errors | CPU µs/req |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for scenario in scenarios().into_iter().filter(|s| names.contains(&s.name)) {
        // Requests/s of each setup, in `setups`' order: one node, cluster.
        let mut rates = Vec::new();
        for (s, (setup, hosts)) in setups.iter().enumerate() {
            let runs: Vec<Measured> = std::thread::scope(|scope| {
                let started: Vec<_> = hosts
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        let run = format!("cluster-{s}-{i}");
                        let script = script(work, &scenario, &token, hook, &run);
                        let url = format!("{}{}", h.base(), scenario.path);
                        let pid = h.pid();
                        scope.spawn(move || wrk_run(wrk, &url, &script, per_host, seconds, pid))
                    })
                    .collect();
                started.into_iter().map(|t| t.join().unwrap()).collect()
            });
            let rps: f64 = runs.iter().map(|m| m.requests_per_sec).sum();
            let cpu = runs
                .iter()
                .map(|m| m.cpu_us_per_request.unwrap_or(0.0) * m.requests_per_sec)
                .sum::<f64>()
                / rps.max(1.0);
            let errors: u64 = runs.iter().map(|m| m.errors).sum();
            let worst = |f: fn(&Measured) -> f64| runs.iter().map(f).fold(0.0, f64::max);
            println!(
                "| {} | {setup} | {rps:.0} | {:.2} | {:.2} | {errors} | {cpu:.1} |",
                scenario.name,
                worst(|m| m.p50_ms),
                worst(|m| m.p99_ms),
            );
            rates.push(rps);
            if smoke {
                assert!(
                    rps > 0.0 && errors == 0,
                    "{} on {setup}: {runs:?}",
                    scenario.name
                );
            }
        }
        println!(
            "| {} | cluster / one node | {:.2} | | | | |",
            scenario.name,
            rates[1] / rates[0]
        );
    }
}

/// The name `--only` matches the tunnel scenario by.
const TUNNEL: &str = "tunnel: seven helper calls through 25 ms each way";

/// The delay the tunnel stand-in adds in each direction.
const TUNNEL_DELAY: Duration = Duration::from_millis(25);

/// The seven-call script through a proxy adding [`TUNNEL_DELAY`] each way:
/// one call at a time on one keep-alive connection (the best case for
/// separate calls), then as one batch; on the default host, the batch once
/// more with the components called through `wasi:http`, and both under
/// `spin up` when a Spin CLI is found. Wall time per script and the
/// server's CPU per script (under Spin, its trigger process's).
async fn tunnel(servers: &BTreeMap<Target, Host>, spin: Option<&SpinApp>, smoke: bool) {
    let runs = if smoke { 2 } else { 40 };
    let token = token("bench-1");
    let calls = support::batch::seven_call_script();
    let body = support::batch::batch_body(&calls);
    let host = |label, target: Target, batched| {
        let host = &servers[&target];
        TunnelRun {
            label,
            base: host.base(),
            pid: host.pid(),
            batched,
        }
    };
    let mut served = vec![
        host("one call at a time", Target::HostReuse, false),
        host("one batch", Target::HostReuse, true),
        host("one batch, wasi:http export", Target::HostWasiHttp, true),
    ];
    if let Some(app) = spin {
        for (label, batched) in [
            ("spin up: one call at a time", false),
            ("spin up: one batch", true),
        ] {
            served.push(TunnelRun {
                label,
                base: app.url(""),
                pid: Some(app.pid()),
                batched,
            });
        }
    }
    let mut rows = Vec::new();
    for TunnelRun {
        label,
        base,
        pid,
        batched,
    } in served
    {
        // The three variables exist, as in a real script.
        for key in ["region", "retries", "a%2Fb"] {
            let put = support::call(
                "PUT",
                &format!("{base}/executions/bench-1/variables/{key}"),
                &[
                    ("authorization", &format!("Bearer {token}")),
                    ("content-type", "application/json"),
                ],
                Some(br#"{"value":"eu-west"}"#),
            )
            .await;
            assert_eq!(put.status, 200, "{put:?}");
        }
        let proxy = DelayProxy::start(base.trim_start_matches("http://"), TUNNEL_DELAY).await;
        let through = proxy.url();
        // One warm-up script, as a host that has served this job before.
        script_through(&through, &token, &calls, &body, batched).await;
        let cpu_before = pid.and_then(cpu_ns);
        let mut walls = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            script_through(&through, &token, &calls, &body, batched).await;
            walls.push(started.elapsed());
        }
        let cpu = match (cpu_before, pid.and_then(cpu_ns)) {
            (Some(before), Some(after)) => {
                Some(after.saturating_sub(before) as f64 / 1e3 / runs as f64)
            }
            _ => None,
        };
        walls.sort();
        rows.push((
            label,
            walls[walls.len() / 2],
            walls[walls.len() * 9 / 10],
            cpu,
        ));
    }
    println!(
        "\n| {TUNNEL} ({runs} scripts each) | wall per script, median | p90 | server CPU per script |"
    );
    println!("|---|---:|---:|---:|");
    for (label, median, p90, cpu) in &rows {
        println!(
            "| {label} | {:.1} ms | {:.1} ms | {} |",
            median.as_secs_f64() * 1000.0,
            p90.as_secs_f64() * 1000.0,
            cpu.map(|c| format!("{c:.0} µs"))
                .unwrap_or_else(|| "-".into())
        );
    }
}

/// One row of the tunnel scenario: who serves, and how the script calls.
struct TunnelRun {
    label: &'static str,
    base: String,
    /// The serving process, for its CPU time.
    pid: Option<u32>,
    batched: bool,
}

/// Runs the script once on a new keep-alive connection through `base`:
/// each call on its own, or all of them as one batch. Every call must
/// succeed.
async fn script_through(
    base: &str,
    token: &str,
    calls: &[support::batch::Call],
    body: &serde_json::Value,
    batched: bool,
) {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let send = |method: &str, path: String, body: Option<String>| {
        let request = hyper::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.unwrap_or_default(),
            )))
            .unwrap();
        let response = client.request(request);
        async move {
            let response = response.await.expect("the tunnel answered");
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, body)
        }
    };
    if batched {
        let (status, answer) = send(
            "POST",
            "/executions/bench-1/batch".into(),
            Some(body.to_string()),
        )
        .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        let statuses: Vec<u64> = answer["responses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, vec![200; calls.len()], "{answer}");
    } else {
        for c in calls {
            let path = support::batch::absolute("bench-1", &c.url);
            let (status, answer) =
                send(c.method, path, c.body.as_ref().map(|b| b.to_string())).await;
            assert_eq!(
                status,
                200,
                "{} {}: {}",
                c.method,
                c.url,
                String::from_utf8_lossy(&answer)
            );
        }
    }
}

/// A loopback TCP proxy that holds every piece of data, in each direction,
/// for `delay` before passing it on (order kept, throughput not limited):
/// a stand-in for the round trip of an SSH tunnel.
struct DelayProxy {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DelayProxy {
    async fn start(target: &str, delay: Duration) -> DelayProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let target = target.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(delayed_pipe(client_read, server_write, delay));
                tokio::spawn(delayed_pipe(server_read, client_write, delay));
            }
        });
        DelayProxy { addr, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
async fn delayed_pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (chunks, mut due) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || chunks
                .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
        {
            break;
        }
    }
    drop(chunks);
    let _ = writer.await;
}

/// Time from process start to the first 200 on `GET input`, compiling
/// the components at start and loading them precompiled.
async fn cold_start(valkey: &Valkey, backend: &FakeBackend) {
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().display().to_string();
    println!("\n| cold start (process start to first 200 on GET input) | median of 3 |");
    println!("|---|---:|");
    for (label, dir) in [
        ("compiling at start (CRONIUM_CACHE_DIR=off)", "off"),
        ("precompiled cache", cache_dir.as_str()),
    ] {
        let config = HostConfig::with(&valkey.url(), &backend.url())
            .env("LOG_LEVEL", "warn")
            .env("CRONIUM_CACHE_DIR", dir);
        // One start to fill the cache (ignored either way).
        drop(Host::start(config.clone()).await);
        let mut samples = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let host = Host::start(config.clone()).await;
            let auth = format!("Bearer {}", token("bench-1"));
            let url = host.url("/executions/bench-1/input");
            let reply = support::call("GET", &url, &[("authorization", &auth)], None).await;
            assert_eq!(reply.status, 200);
            samples.push(started.elapsed());
        }
        samples.sort();
        println!("| {label} | {:.0} ms |", samples[1].as_secs_f64() * 1000.0);
    }
}

/// Startup time (process start to healthy) and resident memory after
/// start with 1, 10 and 50 tool components in the tools directory, each a
/// distinct component, compiled at start and loaded precompiled.
async fn growth(valkey: &Valkey, backend: &FakeBackend) {
    let wasm = std::fs::read(GROWTH_TOOL).unwrap();
    let at = wasm
        .windows(GROWTH_ID_MARKER.len())
        .position(|w| w == GROWTH_ID_MARKER)
        .expect("the growth tool carries its id marker");
    println!(
        "\n| tools installed | start, compiling (ms) | start, precompiled (ms) | RSS after start (MiB) |"
    );
    println!("|---:|---:|---:|---:|");
    for count in [0usize, 1, 10, 50] {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..count {
            let mut copy = wasm.clone();
            let id = format!("growth-bench-{i:06}");
            copy[at..at + id.len()].copy_from_slice(id.as_bytes());
            std::fs::write(dir.path().join(format!("{id}.wasm")), copy).unwrap();
        }
        let cache = tempfile::tempdir().unwrap();
        let mut row = Vec::new();
        let mut rss = None;
        for cache_dir in ["off".to_owned(), cache.path().display().to_string()] {
            let config = HostConfig::with(&valkey.url(), &backend.url())
                .env("LOG_LEVEL", "warn")
                .env("CRONIUM_TOOLS_DIR", dir.path().display().to_string())
                .env("CRONIUM_CACHE_DIR", &cache_dir);
            if cache_dir != "off" {
                // Fill the cache first.
                drop(Host::start(config.clone()).await);
            }
            let started = Instant::now();
            let host = Host::start(config).await;
            row.push(started.elapsed().as_secs_f64() * 1000.0);
            let auth = format!("Bearer {}", token("bench-1"));
            let listed = support::call(
                "GET",
                &host.url("/tool-actions"),
                &[("authorization", &auth)],
                None,
            )
            .await;
            let tools = listed.json["data"]["tools"].as_array().map_or(0, Vec::len);
            assert_eq!(tools, count + 4, "every tool loaded (plus the 4 built-in)");
            rss = host.pid().and_then(current_rss_mib);
        }
        println!(
            "| {count} (+4 built-in) | {:.0} | {:.0} | {} |",
            row[0],
            row[1],
            rss.map(|r| format!("{r:.0}")).unwrap_or_else(|| "-".into())
        );
    }
}

/// `wasmtime serve` on the hello component, when a wasmtime CLI is installed.
struct WasmtimeServe {
    url: String,
    child: std::process::Child,
}

impl WasmtimeServe {
    fn start(component: &Path) -> Option<WasmtimeServe> {
        let wasmtime = ensure_wasmtime()?;
        let version = Command::new(&wasmtime).arg("--version").output().ok()?;
        eprintln!(
            "reference host: {}",
            String::from_utf8_lossy(&version.stdout).trim()
        );
        let port = support::free_port();
        let child = Command::new(&wasmtime)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "-Scli"])
            .arg(component)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(WasmtimeServe {
                    url: format!("http://127.0.0.1:{port}"),
                    child,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The wasmtime version the host is built on, for a fair reference.
const WASMTIME_VERSION: &str = "48.0.8";

/// A `wasmtime` CLI of [`WASMTIME_VERSION`]: from the PATH, else from
/// `target/wasmtime-cli`, installed there with cargo when missing.
fn ensure_wasmtime() -> Option<PathBuf> {
    let matches = |program: &Path| {
        Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASMTIME_VERSION))
    };
    if matches(Path::new("wasmtime")) {
        return Some(PathBuf::from("wasmtime"));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasmtime-cli");
    let installed = root.join("bin/wasmtime");
    if matches(&installed) {
        return Some(installed);
    }
    eprintln!(
        "installing wasmtime-cli {WASMTIME_VERSION} into {} (once)",
        root.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "--locked",
            "--version",
            WASMTIME_VERSION,
            "--root",
        ])
        .arg(&root)
        .arg("wasmtime-cli")
        .status()
        .ok()?;
    (status.success() && matches(&installed)).then_some(installed)
}

/// `wrk` from the PATH, installed from Debian's packages when missing.
fn ensure_wrk() -> PathBuf {
    let found = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };
    if let Some(path) = found("wrk") {
        return path;
    }
    eprintln!("installing wrk (apt-get)");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let _ = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .status();
    found("wrk").expect("wrk is needed: apt-get install wrk")
}
