//! The soak: `cargo bench -p cronium-host --bench soak` runs the host for
//! two hours under a steady mixed load with faults on a schedule, and
//! stops by itself. `-- --minutes N` runs it for N minutes instead;
//! `-- --rate R` sets the requests a second (default 150); `-- --out DIR`
//! where the CSV and the plot go (default `target/soak`).
//!
//! * **Load:** executions of 10,000 (of 1,000 users) in turn, each with
//!   its own token, minted again every five minutes as a new execution
//!   would be, over six routes: input 30 %, context 15 %, variable GET 20
//!   %, variable PUT 15 % (each a new key), output 10 %, condition 10 %.
//!   Instance reuse is on (the default).
//! * **Faults:** Valkey restarted every 10 minutes (empty: a restart
//!   loses its data); the backend answering 500 for 30 s every 15 minutes;
//!   the backend unreachable for 2 minutes once (at 45 % of the run, at
//!   most an hour in).
//! * **Recorded every 10 s** (`soak.csv`, plotted in `soak.png`): the
//!   host's RSS, open file descriptors and threads, requests in flight,
//!   warm instances and audit backlog (its `/metrics`), the audit spool in
//!   Valkey, requests answered and failed, and the window's p99.
//! * **Asserted at the end**, once the backend has been back long enough
//!   for the audit backlog to drain: every acknowledged variable write is
//!   at the backend with its value, and audited; every acknowledged
//!   output reached the backend; for every write route, the backend
//!   received at least as many audit events as writes were acknowledged
//!   (reads are audited only when they reach the backend); and
//!   the RSS never exceeded 1.5 × its value at the end of the warm-up
//!   (the first 10 minutes, or a sixth of a shorter run).
//!
//! The release host is built by `cargo bench`; Valkey and the fake
//! backend are the tests' own (`tests/support`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cronium_rules::keys;
use cronium_rules::token::Claims;
use cronium_rules::variables::text;
use redis::Commands;
use serde_json::{Value, json};
use support::{
    FakeBackend, Host, HostConfig, Valkey, metric, now, proc_status, token_for, try_call,
};

const EXECUTIONS: usize = 10_000;
const USERS: usize = 1_000;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
const TOKEN_LIFE: Duration = Duration::from_secs(300);
const WORKERS: usize = 16;

struct Args {
    run: Duration,
    rate: u32,
    out: PathBuf,
}

fn args() -> Args {
    let mut args = Args {
        run: Duration::from_secs(2 * 60 * 60),
        rate: 150,
        out: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/soak")),
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "--minutes" => args.run = Duration::from_secs(60 * number(words.next())),
            "--seconds" => args.run = Duration::from_secs(number(words.next())),
            "--rate" => args.rate = number(words.next()) as u32,
            "--out" => args.out = PathBuf::from(words.next().expect("--out DIR")),
            // cargo bench passes --bench.
            _ => {}
        }
    }
    args
}

fn number(word: Option<String>) -> u64 {
    word.and_then(|w| w.parse().ok())
        .expect("a whole number after the flag")
}

/// What the load acknowledged, to check against the backend at the end.
#[derive(Default)]
struct Acknowledged {
    /// (user, key, value) of every variable write answered 200.
    writes: Vec<(String, String, u64)>,
    outputs: u64,
    /// Requests answered 200, by the audit action they stand for.
    by_action: HashMap<&'static str, u64>,
}

/// The counters of the current sampling window.
#[derive(Default)]
struct Window {
    latencies_us: Vec<u64>,
    failed: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    std::fs::create_dir_all(&args.out).unwrap();
    let started = Instant::now();
    let warm_up = (args.run / 6).min(Duration::from_secs(600));
    let outage_at = (args.run * 45 / 100).min(Duration::from_secs(3600));

    let valkey = Arc::new(Mutex::new(Valkey::start()));
    let valkey_url = valkey.lock().unwrap().url();
    let backend = Arc::new(FakeBackend::start().await);
    backend.state().quiet = true;
    for n in 0..EXECUTIONS {
        backend.add_execution(&execution(n), &user(n), Some(json!({"n": n})));
    }
    let host = Host::start(
        HostConfig::with(&valkey_url, &backend.url())
            .env("LOG_LEVEL", "warn")
            // Under the soak's own rate (150 a second over 10,000
            // executions), never the point here.
            .env("RATE_LIMIT_PER_MIN", "100000"),
    )
    .await;
    let pid = host.pid().expect("the host runs");
    eprintln!(
        "soak: {} min at {} req/s, warm-up {} s, outage at {} s; host pid {pid}",
        args.run.as_secs() / 60,
        args.rate,
        warm_up.as_secs(),
        outage_at.as_secs()
    );

    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let window = Arc::new(Mutex::new(Window::default()));
    let next = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(Mutex::new(HashMap::<usize, (Instant, String)>::new()));
    let deadline = started + args.run;
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (base, acknowledged, window, next, tokens) = (
            host.base(),
            acknowledged.clone(),
            window.clone(),
            next.clone(),
            tokens.clone(),
        );
        let every = Duration::from_secs_f64(WORKERS as f64 / f64::from(args.rate));
        workers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seed = worker as u64 * 7919 + 1;
            while Instant::now() < deadline {
                tick.tick().await;
                let seq = next.fetch_add(1, Ordering::Relaxed);
                let n = (seq as usize) % EXECUTIONS;
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let token = token(&tokens, n);
                let request = Request::pick((seed >> 33) % 100, n, seq);
                let began = Instant::now();
                let answered = request.send(&base, &token).await;
                let took = began.elapsed().as_micros() as u64;
                let mut w = window.lock().unwrap();
                w.latencies_us.push(took);
                if answered != Some(200) {
                    w.failed += 1;
                    continue;
                }
                drop(w);
                let mut ack = acknowledged.lock().unwrap();
                *ack.by_action.entry(request.action).or_default() += 1;
                match request.route {
                    Route::PutVariable => ack.writes.push((user(n), request.key.clone(), seq)),
                    Route::Output => ack.outputs += 1,
                    _ => {}
                }
            }
        }));
    }

    // Faults, each on its own schedule: a long one (an outage) does not
    // push back the next restart.
    let mut faults = tokio::task::JoinSet::new();
    let every = |first: u64, period: u64| {
        (first..)
            .step_by(period as usize)
            .map(Duration::from_secs)
            .take_while(|at| *at < args.run)
    };
    let schedule = every(600, 600)
        .map(|at| (at, Fault::ValkeyRestart))
        .chain(every(900, 900).map(|at| (at, Fault::Backend500s)))
        .chain([(outage_at, Fault::BackendOutage)]);
    for (at, fault) in schedule {
        let (valkey, backend) = (valkey.clone(), backend.clone());
        faults.spawn(async move {
            tokio::time::sleep_until((started + at).into()).await;
            eprintln!("soak: {:>5} s {fault:?}", started.elapsed().as_secs());
            match fault {
                Fault::ValkeyRestart => {
                    tokio::task::spawn_blocking(move || valkey.lock().unwrap().restart())
                        .await
                        .unwrap();
                }
                Fault::Backend500s => {
                    backend.state().error_status = Some(500);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    backend.state().error_status = None;
                }
                Fault::BackendOutage => {
                    backend.cut_off();
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    backend.restore();
                }
            }
        });
    }

    // Samples, every 10 s, until the load ends.
    let mut rows = Vec::new();
    let mut csv = String::from(
        "seconds,rss_mib,fds,threads,in_flight,warm_instances,audit_backlog,valkey_spool,answered,failed,p99_ms\n",
    );
    let mut sample_tick = tokio::time::interval(SAMPLE_EVERY);
    sample_tick.tick().await;
    while Instant::now() < deadline {
        sample_tick.tick().await;
        let (mut latencies, failed) = {
            let mut w = window.lock().unwrap();
            (
                std::mem::take(&mut w.latencies_us),
                std::mem::take(&mut w.failed),
            )
        };
        latencies.sort_unstable();
        let p99 = latencies
            .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0;
        let metrics = metrics(&host.base()).await;
        let row = Sample {
            seconds: started.elapsed().as_secs_f64(),
            rss_mib: proc_status(pid, "VmRSS:").unwrap_or(f64::NAN) / 1024.0,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| d.count())
                .unwrap_or(0) as f64,
            threads: proc_status(pid, "Threads:").unwrap_or(f64::NAN),
            in_flight: gauge(&metrics, "cronium_requests_in_flight"),
            warm: gauge(&metrics, "cronium_component_instances_warm"),
            backlog: gauge(&metrics, "cronium_audit_backlog"),
            spool: spool_length(&valkey_url).await,
            answered: latencies.len() as f64 - failed as f64,
            failed: failed as f64,
            p99_ms: p99,
        };
        writeln!(csv, "{}", row.csv()).unwrap();
        std::fs::write(args.out.join("soak.csv"), &csv).unwrap();
        eprintln!("soak: {}", row.csv());
        rows.push(row);
    }
    for worker in workers {
        worker.await.unwrap();
    }
    faults.abort_all();
    backend.restore();
    backend.state().error_status = None;

    // The backlog drains once the backend is back.
    let drained = Instant::now();
    loop {
        let metrics = metrics(&host.base()).await;
        let waiting =
            gauge(&metrics, "cronium_audit_backlog") + spool_length(&valkey_url).await.max(0.0);
        if waiting == 0.0 || drained.elapsed() > Duration::from_secs(300) {
            eprintln!(
                "soak: audit backlog {waiting} after {:?} of draining",
                drained.elapsed()
            );
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Deliveries under way settle.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let plotted = plot(&rows, warm_up, &args.out.join("soak.png"));
    let verdict = check(&backend, &acknowledged.lock().unwrap(), &rows, warm_up);
    println!(
        "soak: {} min, {} requests, CSV {}{}",
        args.run.as_secs() / 60,
        next.load(Ordering::Relaxed),
        args.out.join("soak.csv").display(),
        match plotted {
            Ok(()) => format!(", plot {}", args.out.join("soak.png").display()),
            Err(why) => format!(" (no plot: {why})"),
        }
    );
    for line in &verdict.lines {
        println!("soak: {line}");
    }
    drop(host);
    if !verdict.passed {
        eprintln!("soak: FAILED");
        std::process::exit(1);
    }
    println!("soak: passed");
}

fn execution(n: usize) -> String {
    format!("soak-exec-{n}")
}

fn user(n: usize) -> String {
    format!("soak-user-{}", n % USERS)
}

/// The token of execution `n`, minted again once it is five minutes old.
fn token(tokens: &Mutex<HashMap<usize, (Instant, String)>>, n: usize) -> String {
    let mut tokens = tokens.lock().unwrap();
    let fresh = tokens
        .get(&n)
        .filter(|(minted, _)| minted.elapsed() < TOKEN_LIFE)
        .map(|(_, token)| token.clone());
    fresh.unwrap_or_else(|| {
        let id = execution(n);
        let token = token_for(&Claims {
            execution_id: id.clone(),
            job_id: format!("job-{id}"),
            user_id: Some(user(n)),
            event_id: None,
            capability_token: None,
            issued_at: now() - 1,
            expires_at: Some(now() + 2 * TOKEN_LIFE.as_secs()),
        });
        tokens.insert(n, (Instant::now(), token.clone()));
        token
    })
}

/// A fault of the schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Valkey killed and started again, empty.
    ValkeyRestart,
    /// The backend answering 500 for 30 s.
    Backend500s,
    /// The backend unreachable for 2 minutes.
    BackendOutage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Input,
    Context,
    GetVariable,
    PutVariable,
    Output,
    Condition,
}

struct Request {
    route: Route,
    /// The audit action a 200 stands for.
    action: &'static str,
    execution: String,
    key: String,
    value: u64,
}

impl Request {
    /// The request `roll` (0-99) picks, for execution `n`, the load's
    /// `seq`-th.
    fn pick(roll: u64, n: usize, seq: u64) -> Request {
        let (route, action) = match roll {
            0..30 => (Route::Input, "get_input"),
            30..45 => (Route::Context, "get_context"),
            45..65 => (Route::GetVariable, "get_variable"),
            65..80 => (Route::PutVariable, "set_variable"),
            80..90 => (Route::Output, "set_output"),
            _ => (Route::Condition, "set_condition"),
        };
        let key = match route {
            Route::PutVariable => format!("soak-{seq}"),
            // Reads go to a few keys a user has, written or not.
            _ => format!("soak-read-{}", seq % 8),
        };
        Request {
            route,
            action,
            execution: execution(n),
            key,
            value: seq,
        }
    }

    /// Sends it; the status, or `None` when no answer came.
    async fn send(&self, base: &str, token: &str) -> Option<u16> {
        let path = match self.route {
            Route::Input => "input".to_owned(),
            Route::Context => "context".to_owned(),
            Route::GetVariable | Route::PutVariable => format!("variables/{}", self.key),
            Route::Output => "output".to_owned(),
            Route::Condition => "condition".to_owned(),
        };
        let url = format!("{base}/executions/{}/{path}", self.execution);
        let auth = format!("Bearer {token}");
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        let (method, body) = match self.route {
            Route::PutVariable => ("PUT", Some(json!({"value": self.value}).to_string())),
            Route::Output => ("POST", Some(json!({"data": {"n": self.value}}).to_string())),
            Route::Condition => (
                "POST",
                Some(json!({"condition": self.value.is_multiple_of(2)}).to_string()),
            ),
            _ => ("GET", None),
        };
        try_call(
            method,
            &url,
            &headers,
            body.as_deref().map(str::as_bytes),
            Duration::from_secs(60),
        )
        .await
        .ok()
        .map(|reply| reply.status)
    }
}

struct Sample {
    seconds: f64,
    rss_mib: f64,
    fds: f64,
    threads: f64,
    in_flight: f64,
    warm: f64,
    backlog: f64,
    spool: f64,
    answered: f64,
    failed: f64,
    p99_ms: f64,
}

impl Sample {
    fn csv(&self) -> String {
        format!(
            "{:.0},{:.1},{},{},{},{},{},{},{},{},{:.1}",
            self.seconds,
            self.rss_mib,
            self.fds,
            self.threads,
            self.in_flight,
            self.warm,
            self.backlog,
            self.spool,
            self.answered,
            self.failed,
            self.p99_ms
        )
    }
}

async fn metrics(base: &str) -> String {
    match try_call(
        "GET",
        &format!("{base}/metrics"),
        &[],
        None,
        Duration::from_secs(10),
    )
    .await
    {
        Ok(reply) => String::from_utf8_lossy(&reply.body).into_owned(),
        Err(_) => String::new(),
    }
}

/// The gauge `name` (unlabelled) of the exposition `text`; NaN when absent.
fn gauge(text: &str, name: &str) -> f64 {
    metric(text, &format!("{name} ")).unwrap_or(f64::NAN)
}

/// Events in the shared audit spool (-1: Valkey did not answer), asked
/// off the runtime's threads (a restarting Valkey holds the call up to its
/// timeout).
async fn spool_length(url: &str) -> f64 {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
            .and_then(|mut c| c.llen::<_, i64>(keys::audit_spool()))
            .map(|n| n as f64)
            .unwrap_or(-1.0)
    })
    .await
    .unwrap_or(-1.0)
}

struct Verdict {
    passed: bool,
    lines: Vec<String>,
}

fn check(backend: &FakeBackend, ack: &Acknowledged, rows: &[Sample], warm_up: Duration) -> Verdict {
    let state = backend.state();
    let mut lines = Vec::new();
    let mut passed = true;
    let mut verdict = |ok: bool, line: String| {
        passed &= ok;
        lines.push(format!("{} {line}", if ok { "ok  " } else { "FAIL" }));
    };

    let lost_writes = ack
        .writes
        .iter()
        .filter(|(user, key, value)| {
            let stored = state.variables.get(&(user.clone(), key.clone())).cloned();
            stored.map(text::from_backend) != Some(Value::from(*value))
        })
        .count();
    verdict(
        lost_writes == 0,
        format!(
            "{} acknowledged variable writes, {lost_writes} lost",
            ack.writes.len()
        ),
    );
    verdict(
        state.outputs_taken >= ack.outputs,
        format!(
            "{} acknowledged outputs, {} at the backend",
            ack.outputs, state.outputs_taken
        ),
    );
    let unaudited = ack
        .writes
        .iter()
        .filter(|(_, key, _)| !state.audited_variable_keys.contains(key))
        .count();
    verdict(
        unaudited == 0,
        format!("acknowledged variable writes without their audit event: {unaudited}"),
    );
    // Writes are audited every time; reads only when they reach the
    // backend (a cached read is not), so only writes are counted here.
    let mut actions: Vec<_> = ack
        .by_action
        .iter()
        .filter(|(action, _)| action.starts_with("set_"))
        .collect();
    actions.sort();
    for (action, acknowledged) in actions {
        let audited = state.audit_taken.get(*action).copied().unwrap_or(0);
        verdict(
            audited >= *acknowledged,
            format!("{action}: {acknowledged} acknowledged, {audited} audit events"),
        );
    }
    let baseline = rows
        .iter()
        .find(|r| r.seconds >= warm_up.as_secs_f64())
        .map(|r| r.rss_mib);
    match baseline {
        Some(baseline) => {
            let peak = rows
                .iter()
                .filter(|r| r.seconds >= warm_up.as_secs_f64())
                .map(|r| r.rss_mib)
                .fold(0.0, f64::max);
            verdict(
                peak <= baseline * 1.5,
                format!(
                    "RSS after the warm-up {baseline:.1} MiB, peak {peak:.1} MiB ({:.2}×, at most 1.5×)",
                    peak / baseline
                ),
            );
        }
        None => verdict(false, "the run ended before the warm-up did".into()),
    }
    let first = rows.first().map(|r| r.rss_mib).unwrap_or(f64::NAN);
    let last = rows.last().map(|r| r.rss_mib).unwrap_or(f64::NAN);
    lines.push(format!(
        "     RSS {first:.1} MiB at the first sample, {last:.1} MiB at the last; fds {} → {}",
        rows.first().map(|r| r.fds).unwrap_or(0.0),
        rows.last().map(|r| r.fds).unwrap_or(0.0)
    ));
    Verdict { passed, lines }
}

/// Plots RSS, fds, threads, warm instances, the audit backlog and p99
/// against time: `soak.png`.
fn plot(rows: &[Sample], warm_up: Duration, path: &Path) -> Result<(), String> {
    use plotters::prelude::*;

    let font = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVuSans.ttf to write the labels with")?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "the font does not load")?;
    let root = BitMapBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let panels = root.split_evenly((3, 2));
    let end = rows
        .last()
        .map(|r| r.seconds / 60.0)
        .unwrap_or(1.0)
        .max(1.0);
    type Series = (&'static str, fn(&Sample) -> f64);
    let series: [Series; 6] = [
        ("RSS (MiB)", |r| r.rss_mib),
        ("open fds", |r| r.fds),
        ("threads", |r| r.threads),
        ("warm instances", |r| r.warm),
        ("audit backlog (host + Valkey spool)", |r| {
            r.backlog.max(0.0) + r.spool.max(0.0)
        }),
        ("p99 (ms) in each 10 s", |r| r.p99_ms),
    ];
    for (panel, (name, value)) in panels.iter().zip(series) {
        let top = rows
            .iter()
            .map(value)
            .filter(|v| v.is_finite())
            .fold(1.0, f64::max)
            * 1.15;
        let mut chart = ChartBuilder::on(panel)
            .caption(name, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..end, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(
                rows.iter()
                    .filter(|r| value(r).is_finite())
                    .map(|r| (r.seconds / 60.0, value(r))),
                &BLUE,
            ))
            .map_err(|e| e.to_string())?;
        let w = warm_up.as_secs_f64() / 60.0;
        chart
            .draw_series(LineSeries::new(
                [(w, 0.0), (w, top)],
                &RGBColor(200, 200, 200),
            ))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
