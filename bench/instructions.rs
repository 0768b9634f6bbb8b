//! Instructions per request, counted: `cargo bench -p cronium-host --bench instructions`.
//!
//! Requests per second move with whatever else the machine is doing;
//! the number of instructions a server executes for one request does not.
//! This benchmark runs each server under valgrind's callgrind, sends
//! warm-up requests, zeroes the counters, sends `N` requests of one route
//! one after another on one keep-alive connection, and reads the count
//! (`callgrind_control -z` / `-d`). It does so for
//!
//! * `native`: the routes as plain Rust on the host's capabilities
//!   (`bench/native_baseline.rs`);
//! * `floor`: the default host with the floor component
//!   (`bench/components/floor`, a component call with nothing inside)
//!   serving the executions and the variables routes;
//! * `host`: the default host;
//!
//! on GET input, GET context, GET variable (all cache hits) and PUT
//! variable, and splits each count by where it ran: the host's own code,
//! wasmtime, the tokio/hyper stack, the allocator, the guest's compiled
//! code, libc. callgrind does not see the kernel, so a second pass,
//! without valgrind, counts the system calls per request with `strace -c`.
//!
//! The engine is configured as in production except the address space:
//! valgrind cannot reserve the pooling allocator's 4 GiB per linear memory,
//! so the hosts run with `CRONIUM_ADDRESS_SPACE=compact`, which makes the
//! guest's compiled code check its bounds explicitly. The guest's share is
//! therefore a little higher than in production; the rest is the same code.
//!
//! * `-- --requests N`: requests counted per route (200);
//! * `-- --write-baseline`: writes the counts to `bench/instructions-baseline.json`;
//! * `-- --check`: fails when a count exceeds the baseline's by more than
//!   15 % (CI runs this);
//! * `-- --only <server>`: one server;
//! * `-- --top N`: the N functions with the most instructions of their
//!   own, per server and route.
//!
//! valgrind and strace are installed with apt-get when missing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{FakeBackend, Host, HostConfig, Valkey, token};

const NATIVE: &str = env!("CARGO_BIN_EXE_cronium-native-baseline");
const FLOOR: &str = env!("CRONIUM_BENCH_FLOOR_WASM");
const BASELINE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../bench/instructions-baseline.json"
);
/// How much a count may rise over the baseline before `--check` fails.
const TOLERANCE: f64 = 1.15;
/// Requests before the counters are zeroed: connections, warm instances,
/// caches and lazily built state are in place by then.
const WARM_UP: usize = 30;
/// The user name valgrind and callgrind_control agree on.
const VGDB_USER: &str = "cronium-bench";

/// One server under measurement.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Server {
    Native,
    Floor,
    Host,
}

impl Server {
    const ALL: [Server; 3] = [Server::Native, Server::Floor, Server::Host];

    fn name(self) -> &'static str {
        match self {
            Server::Native => "native",
            Server::Floor => "floor",
            Server::Host => "host",
        }
    }

    fn config(self, valkey: &Valkey, backend: &FakeBackend) -> HostConfig {
        // As in the load benchmark: rate limiting on but never refusing,
        // warnings only in the log.
        let mut config = HostConfig::with(&valkey.url(), &backend.url())
            .env("LOG_LEVEL", "warn")
            .env("RATE_LIMIT_PER_MIN", "1000000000")
            .env("CRONIUM_ADDRESS_SPACE", "compact")
            // A small pool: valgrind reserves the whole pool's address
            // space too (~160 GB for the default 1000 instances even
            // when compact). One credential needs one warm instance.
            .env("CRONIUM_MAX_INSTANCES", "8")
            // Names for the guests' compiled code (`/tmp/perf-<pid>.map`).
            .env("CRONIUM_PERF_MAP", "true");
        match self {
            Server::Native => config.binary = Some(PathBuf::from(NATIVE)),
            Server::Floor => {
                config = config
                    .env("CRONIUM_COMPONENT_EXECUTIONS", FLOOR)
                    .env("CRONIUM_COMPONENT_VARIABLES", FLOOR)
            }
            Server::Host => {}
        }
        config
    }
}

/// One measured request.
struct Route {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
}

const ROUTES: [Route; 4] = [
    Route {
        name: "GET input",
        method: "GET",
        path: "/executions/bench-1/input",
        body: None,
    },
    Route {
        name: "GET context",
        method: "GET",
        path: "/executions/bench-1/context",
        body: None,
    },
    Route {
        name: "GET variable",
        method: "GET",
        path: "/executions/bench-1/variables/read-me",
        body: None,
    },
    Route {
        name: "PUT variable",
        method: "PUT",
        path: "/executions/bench-1/variables/counted",
        body: Some(r#"{"value":{"n":1}}"#),
    },
];

/// Where a count's instructions ran.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Place {
    /// `cronium_*` functions: routing, capabilities, rules.
    Cronium,
    Wasmtime,
    /// tokio, hyper, mio, redis, http: the I/O stack.
    IoStack,
    /// mimalloc, `alloc::alloc`, `__rust_alloc` and kin.
    Allocator,
    /// Everything else linked into the binary (std, serde, tracing, ...).
    OtherInBinary,
    /// Code without a symbol: the guest's compiled wasm and trampolines.
    Guest,
    Libc,
    OtherObjects,
}

impl Place {
    const ALL: [Place; 8] = [
        Place::Cronium,
        Place::Wasmtime,
        Place::IoStack,
        Place::Allocator,
        Place::OtherInBinary,
        Place::Guest,
        Place::Libc,
        Place::OtherObjects,
    ];

    fn name(self) -> &'static str {
        match self {
            Place::Cronium => "cronium",
            Place::Wasmtime => "wasmtime",
            Place::IoStack => "tokio/hyper/redis",
            Place::Allocator => "allocator",
            Place::OtherInBinary => "other (std, serde, ...)",
            Place::Guest => "guest code",
            Place::Libc => "libc",
            Place::OtherObjects => "other objects",
        }
    }

    /// Where a function of `object` named `function` belongs.
    fn of(object: &str, function: &str, binary: &str) -> Place {
        if object == "???" || object.is_empty() {
            return Place::Guest;
        }
        if object.contains("libc.so") || object.contains("libm.so") || object.contains("ld-linux") {
            return Place::Libc;
        }
        if !object.ends_with(binary) {
            return Place::OtherObjects;
        }
        // `<tokio::net::TcpStream as ...>::poll` belongs to tokio.
        let name = function.trim_start_matches(['<', '&', '*', ' ']);
        let name = name.strip_prefix("mut ").unwrap_or(name);
        let crate_name = name.split("::").next().unwrap_or(name);
        match crate_name {
            c if c.starts_with("cronium") => Place::Cronium,
            c if c.starts_with("wasmtime") || c.starts_with("cranelift") => Place::Wasmtime,
            "tokio" | "hyper" | "hyper_util" | "mio" | "redis" | "http" | "http_body"
            | "http_body_util" | "h2" | "bytes" | "futures_util" | "futures_core" => Place::IoStack,
            "mimalloc" | "libmimalloc_sys" => Place::Allocator,
            _ if name.starts_with("alloc::alloc::") || name.starts_with("__rust_") => {
                Place::Allocator
            }
            c if c.starts_with("mi_") || c.starts_with("_mi_") => Place::Allocator,
            _ => Place::OtherInBinary,
        }
    }
}

/// What was counted for one server and route.
#[derive(Debug, Default, Clone)]
struct Counted {
    instructions_per_request: f64,
    split: BTreeMap<Place, f64>,
    syscalls_per_request: Option<f64>,
    /// The three most frequent system calls, with calls per request.
    top_syscalls: Vec<(String, f64)>,
    /// The functions with the most instructions of their own, per request.
    top_functions: Vec<(String, f64)>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| args.iter().any(|a| a == name);
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let requests: usize = value("--requests")
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let only = value("--only");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let counted = runtime.block_on(measure(requests, only.as_deref()));
    print_table(&counted, requests);
    if let Some(n) = value("--top").and_then(|n| n.parse::<usize>().ok()) {
        print_top(&counted, n);
    }
    if flag("--write-baseline") {
        write_baseline(&counted, requests);
    }
    if flag("--check") && !check(&counted) {
        std::process::exit(1);
    }
}

async fn measure(requests: usize, only: Option<&str>) -> BTreeMap<(Server, usize), Counted> {
    let valgrind = ensure_tool("valgrind", "valgrind");
    ensure_tool("callgrind_control", "valgrind");
    let strace = ensure_tool("strace", "strace");
    let valkey = Valkey::start();
    let backend = FakeBackend::start().await;
    backend.seed_bench();
    let token = token("bench-1");
    let work = tempfile::tempdir().unwrap();
    let mut counted = BTreeMap::new();
    for server in Server::ALL {
        if only.is_some_and(|o| o != server.name()) {
            continue;
        }
        // First without valgrind: the system calls, and the compile cache
        // filled for this engine configuration (compiling under valgrind
        // would take minutes).
        let mut plain = Host::start(server.config(&valkey, &backend)).await;
        let pid = plain.pid().unwrap();
        let mut connection = Connection::open(&plain.addr());
        let mut syscalls = Vec::new();
        for route in &ROUTES {
            connection.send_many(route, &token, WARM_UP);
            syscalls.push(count_syscalls(&strace, pid, work.path(), requests, || {
                connection.send_many(route, &token, requests)
            }));
        }
        drop(connection);
        plain.stop();
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));

        let out_dir = work.path().join(server.name());
        std::fs::create_dir_all(&out_dir).unwrap();
        let mut config = server.config(&valkey, &backend);
        config.wrapper = vec![
            valgrind.display().to_string(),
            "--tool=callgrind".into(),
            format!("--callgrind-out-file={}/callgrind.%p", out_dir.display()),
            "--dump-instr=no".into(),
            "--dump-line=no".into(),
            "--compress-strings=no".into(),
            "--compress-pos=no".into(),
            "--log-file=".to_owned() + &out_dir.join("valgrind.log").display().to_string(),
        ];
        config.ready_within = Some(Duration::from_secs(900));
        // callgrind_control finds the process through a file named after
        // the user and host in the environment (LOGNAME, HOST): the same
        // on both sides.
        let config = config.env("LOGNAME", VGDB_USER);
        let started = Instant::now();
        let mut counting = Host::start(config).await;
        eprintln!(
            "{}: ready under callgrind in {:.1} s",
            server.name(),
            started.elapsed().as_secs_f64()
        );
        let pid = counting.pid().unwrap();
        let binary = match server {
            Server::Native => "cronium-native-baseline",
            _ => "cronium-runtime",
        };
        let mut connection = Connection::open(&counting.addr());
        for (index, route) in ROUTES.iter().enumerate() {
            connection.send_many(route, &token, WARM_UP);
            callgrind_control(&["-z"], pid);
            connection.send_many(route, &token, requests);
            let dump = dump(pid, &out_dir);
            let names = PerfMap::read(pid);
            let mut result = parse_callgrind(&dump, binary, &names, requests);
            let (total, top) = syscalls[index].clone();
            result.syscalls_per_request = total;
            result.top_syscalls = top;
            eprintln!(
                "{:<7} {:<13} {:>10.0} instructions a request",
                server.name(),
                route.name,
                result.instructions_per_request
            );
            counted.insert((server, index), result);
        }
        drop(connection);
        counting.stop();
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    }
    counted
}

/// One keep-alive HTTP/1.1 connection, blocking: the client's own work is
/// not what is measured, only that it waits for each answer.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(addr: &str) -> Connection {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        Connection {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn send_many(&mut self, route: &Route, token: &str, times: usize) {
        for _ in 0..times {
            let status = self.send(route, token);
            assert!(
                status == 200,
                "{} {} answered {status}",
                route.method,
                route.path
            );
        }
    }

    /// Sends one request and reads its answer whole; the status.
    fn send(&mut self, route: &Route, token: &str) -> u16 {
        let body = route.body.unwrap_or("");
        let head = format!(
            "{} {} HTTP/1.1\r\nhost: bench\r\nauthorization: Bearer {token}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            route.method,
            route.path,
            body.len()
        );
        self.writer.write_all(head.as_bytes()).unwrap();
        self.writer.write_all(body.as_bytes()).unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {line:?}"));
        let mut length = None;
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length.expect("an answer without content-length");
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        status
    }
}

/// The system calls all threads of `pid` make while `work` sends
/// `requests` requests, per request: the total and the three most frequent.
fn count_syscalls(
    strace: &Path,
    pid: u32,
    dir: &Path,
    requests: usize,
    work: impl FnOnce(),
) -> (Option<f64>, Vec<(String, f64)>) {
    let out = dir.join(format!("strace-{pid}"));
    let _ = std::fs::remove_file(&out);
    let mut child = Command::new(strace)
        .args(["-f", "-c", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // strace says on stderr once it has attached ("Process N attached
    // with T threads"); from then on every thread is traced.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let attached = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break false;
        }
        if line.contains("attached") {
            break true;
        }
    };
    // Its later reports (threads that start or end) go nowhere.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    if !attached {
        eprintln!("strace could not attach ({line:?}): no system call counts");
        let _ = child.wait();
        return (None, Vec::new());
    }
    work();
    // SAFETY: kill(2) on the pid of a child we own and have not reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let _ = child.wait();
    let report = std::fs::read_to_string(&out).unwrap_or_default();
    parse_strace(&report, requests)
}

/// `strace -c`'s table: `% time seconds usecs/call calls [errors] syscall`.
fn parse_strace(report: &str, requests: usize) -> (Option<f64>, Vec<(String, f64)>) {
    let requests = requests as f64;
    let mut total = None;
    let mut calls = Vec::new();
    for line in report.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 5 || fields[0].parse::<f64>().is_err() {
            continue;
        }
        let Ok(count) = fields[3].parse::<f64>() else {
            continue;
        };
        let name = fields[fields.len() - 1];
        if name == "total" {
            total = Some(count / requests);
        } else {
            calls.push((name.to_owned(), count / requests));
        }
    }
    calls.sort_by(|a, b| b.1.total_cmp(&a.1));
    calls.truncate(3);
    (total, calls)
}

fn callgrind_control(args: &[&str], pid: u32) {
    let status = Command::new("callgrind_control")
        .env("LOGNAME", VGDB_USER)
        .env("HOST", "127.0.0.1")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "callgrind_control {args:?} {pid}: {status}"
    );
}

/// Asks callgrind for a dump and waits until it is written whole.
fn dump(pid: u32, dir: &Path) -> String {
    let before: Vec<PathBuf> = dumps(dir);
    callgrind_control(&["-d"], pid);
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        for path in dumps(dir) {
            if before.contains(&path) {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().any(|l| l.starts_with("totals:")) {
                return text;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("callgrind wrote no dump in {}", dir.display());
}

fn dumps(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("callgrind."))
        })
        .collect()
}

/// A callgrind dump (uncompressed names and positions) read into
/// instructions per request and their split by [`Place`]. Only self costs
/// count: the line after a `calls=` line is the callee's inclusive cost.
fn parse_callgrind(dump: &str, binary: &str, names: &PerfMap, requests: usize) -> Counted {
    let mut split: BTreeMap<Place, f64> = BTreeMap::new();
    let mut functions: std::collections::HashMap<String, f64> = Default::default();
    let mut object = String::new();
    let mut function = String::new();
    let mut place = Place::Guest;
    let mut skip_next = false;
    let mut total = None;
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix("totals:") {
            total = rest.trim().parse::<f64>().ok();
        } else if let Some(rest) = line.strip_prefix("ob=") {
            object = rest.to_owned();
        } else if let Some(name) = line.strip_prefix("fn=") {
            place = Place::of(&object, name, binary);
            function = names.name(name).unwrap_or(name).to_owned();
        } else if line.starts_with("calls=") {
            skip_next = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || "+-*".contains(c)) {
            if std::mem::take(&mut skip_next) {
                continue;
            }
            if let Some(cost) = line
                .split_whitespace()
                .last()
                .and_then(|c| c.parse::<f64>().ok())
            {
                *split.entry(place).or_default() += cost;
                *functions.entry(function.clone()).or_default() += cost;
            }
        }
    }
    let summed: f64 = split.values().sum();
    let total = total.unwrap_or(summed);
    let mut top_functions: Vec<(String, f64)> = functions
        .into_iter()
        .map(|(name, cost)| (name, cost / requests as f64))
        .collect();
    top_functions.sort_by(|a, b| b.1.total_cmp(&a.1));
    top_functions.truncate(40);
    Counted {
        instructions_per_request: total / requests as f64,
        split: split
            .into_iter()
            .map(|(place, cost)| (place, cost / summed.max(1.0)))
            .collect(),
        syscalls_per_request: None,
        top_syscalls: Vec::new(),
        top_functions,
    }
}

/// The names wasmtime gave the code it compiled (`CRONIUM_PERF_MAP`):
/// `<start> <size> <name>` lines, sorted by start.
struct PerfMap(Vec<(u64, u64, String)>);

impl PerfMap {
    fn read(pid: u32) -> PerfMap {
        let text = std::fs::read_to_string(format!("/tmp/perf-{pid}.map")).unwrap_or_default();
        let mut entries: Vec<(u64, u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.splitn(3, ' ');
                let start = fields.next()?.trim_start_matches("0x");
                let size = fields.next()?;
                Some((
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(size, 16).ok()?,
                    fields.next()?.to_owned(),
                ))
            })
            .collect();
        entries.sort();
        PerfMap(entries)
    }

    /// The name of the code at callgrind's `0x...` function name, if any
    /// (a `'2` suffix marks recursion).
    fn name(&self, function: &str) -> Option<&str> {
        let address = function.strip_prefix("0x")?.split('\'').next()?;
        let address = u64::from_str_radix(address, 16).ok()?;
        let at = self.0.partition_point(|(start, _, _)| *start <= address);
        let (start, size, name) = self.0.get(at.checked_sub(1)?)?;
        (address < start + size).then_some(name.as_str())
    }
}

fn print_table(counted: &BTreeMap<(Server, usize), Counted>, requests: usize) {
    println!(
        "\nInstructions per request ({requests} requests a route, after {WARM_UP} warm-up):\n"
    );
    println!("| route | server | instructions | vs native | syscalls | most frequent syscalls |");
    println!("|---|---|---:|---:|---:|---|");
    for (index, route) in ROUTES.iter().enumerate() {
        let native = counted.get(&(Server::Native, index));
        for server in Server::ALL {
            let Some(c) = counted.get(&(server, index)) else {
                continue;
            };
            let ratio = native.map_or("".into(), |n| {
                format!(
                    "{:.2}",
                    c.instructions_per_request / n.instructions_per_request
                )
            });
            let syscalls = c
                .syscalls_per_request
                .map_or("".into(), |s| format!("{s:.1}"));
            let top: Vec<String> = c
                .top_syscalls
                .iter()
                .map(|(name, n)| format!("{name} {n:.1}"))
                .collect();
            println!(
                "| {} | {} | {:.0} | {ratio} | {syscalls} | {} |",
                route.name,
                server.name(),
                c.instructions_per_request,
                top.join(", ")
            );
        }
    }
    println!("\nWhere the instructions ran (% of each count):\n");
    let header: Vec<&str> = Place::ALL.iter().map(|p| p.name()).collect();
    println!("| route | server | {} |", header.join(" | "));
    println!("|---|---|{}", "---:|".repeat(Place::ALL.len()));
    for (index, route) in ROUTES.iter().enumerate() {
        for server in Server::ALL {
            let Some(c) = counted.get(&(server, index)) else {
                continue;
            };
            let cells: Vec<String> = Place::ALL
                .iter()
                .map(|p| format!("{:.1}", 100.0 * c.split.get(p).copied().unwrap_or(0.0)))
                .collect();
            println!(
                "| {} | {} | {} |",
                route.name,
                server.name(),
                cells.join(" | ")
            );
        }
    }
}

/// The `n` functions with the most instructions of their own, per server
/// and route (`-- --top N`): where to look first.
fn print_top(counted: &BTreeMap<(Server, usize), Counted>, n: usize) {
    for (&(server, index), c) in counted {
        println!(
            "\n{} {}: top functions (instructions a request)",
            server.name(),
            ROUTES[index].name
        );
        for (name, cost) in c.top_functions.iter().take(n) {
            let name: String = name.chars().take(140).collect();
            println!("{cost:>9.0}  {name}");
        }
    }
}

fn key(server: Server, index: usize) -> String {
    format!("{} {}", server.name(), ROUTES[index].name)
}

fn write_baseline(counted: &BTreeMap<(Server, usize), Counted>, requests: usize) {
    let counts: serde_json::Map<String, Value> = counted
        .iter()
        .map(|(&(server, index), c)| {
            (
                key(server, index),
                json!(c.instructions_per_request.round() as u64),
            )
        })
        .collect();
    let baseline = json!({
        "what": "instructions per request, counted by callgrind (bench/instructions.rs)",
        "requests": requests,
        "counts": counts,
    });
    std::fs::write(
        BASELINE,
        serde_json::to_string_pretty(&baseline).unwrap() + "\n",
    )
    .unwrap();
    eprintln!("wrote {BASELINE}");
}

/// Compares with the committed baseline; false when a count rose more
/// than the tolerance.
fn check(counted: &BTreeMap<(Server, usize), Counted>) -> bool {
    let baseline: Value = serde_json::from_str(
        &std::fs::read_to_string(BASELINE).expect("reading bench/instructions-baseline.json"),
    )
    .expect("bench/instructions-baseline.json is JSON");
    let mut ok = true;
    println!("\nAgainst the baseline (fails above {TOLERANCE}x):\n");
    for (&(server, index), c) in counted {
        let key = key(server, index);
        let Some(base) = baseline["counts"][&key].as_f64() else {
            println!("{key}: not in the baseline");
            ok = false;
            continue;
        };
        let ratio = c.instructions_per_request / base;
        let verdict = if ratio > TOLERANCE {
            ok = false;
            "ROSE: over the tolerance"
        } else if ratio < 1.0 / TOLERANCE {
            "fell: consider `-- --write-baseline`"
        } else {
            "ok"
        };
        println!(
            "{key:<22} {:>10.0} vs {base:>10.0}  {ratio:.3}x  {verdict}",
            c.instructions_per_request
        );
    }
    ok
}

/// The path of `program`, installed with apt-get (package `package`) when
/// it is missing.
fn ensure_tool(program: &str, package: &str) -> PathBuf {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(program))
                .find(|path| path.is_file())
        })
    };
    if let Some(path) = find() {
        return path;
    }
    eprintln!("{program} not found: installing {package} with apt-get");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .unwrap();
    assert!(status.success(), "apt-get install {package}: {status}");
    find().unwrap_or_else(|| panic!("{program} still not found after installing {package}"))
}
