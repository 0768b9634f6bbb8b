//! `cronium-runtime`: the Cronium runtime API host.
//!
//! With no arguments it serves, configured like the Go service by the
//! environment. `dev` starts on the embedded defaults with a demo
//! execution and prints a token and `curl` lines; `token` mints a token;
//! `execution create` adds an execution to the embedded store;
//! `precompile` fills the compile cache (for a container image). Called
//! as `wget` (a link in the image), it is the health checks' `wget`.

mod dev;
mod wget;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cronium_host::Runtime;
use cronium_host::config::{self, Config, LogFormat, parse_duration, settings};
use cronium_rules::token::Claims;

#[derive(Parser)]
#[command(
    name = "cronium-runtime",
    version,
    about = "The Cronium runtime API on WebAssembly components"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve, configured by the environment and config.yaml (the default).
    Serve,
    /// Print the effective configuration: every setting, its value (secrets
    /// redacted) and where it came from. Exits 1 if it is not valid.
    Config,
    /// Serve on the embedded defaults with a demo execution; prints a token and curl lines.
    Dev {
        /// Port to listen on (the SSH tunnel of the runners targets 8089).
        #[arg(long, default_value_t = 8089)]
        port: u16,
        /// Address to listen on: this machine only, unless told otherwise
        /// (`--host 0.0.0.0` for every interface).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Where the embedded store lives.
        #[arg(long, env = "CRONIUM_DATA_DIR", default_value = "cronium-data")]
        data_dir: PathBuf,
    },
    /// Mint an execution token with the configured secret.
    Token {
        #[arg(long)]
        execution_id: String,
        #[arg(long)]
        job_id: String,
        #[arg(long)]
        user_id: Option<String>,
        #[arg(long)]
        event_id: Option<String>,
        /// Lifetime, e.g. 30m or 1h.
        #[arg(long, default_value = "1h", value_parser = duration)]
        ttl: Duration,
        /// Where `dev` keeps its secret, used when no secret is configured.
        #[arg(long, env = "CRONIUM_DATA_DIR", default_value = "cronium-data")]
        data_dir: PathBuf,
    },
    /// Compile every component (the groups and the built-in tools) into
    /// the compile cache, CRONIUM_CACHE_DIR, with the engine `serve` uses
    /// under the same settings; a later start on a machine of this kind
    /// loads them instead of compiling (run when a container image is built).
    Precompile,
    /// Manage executions in the embedded store.
    Execution {
        #[command(subcommand)]
        command: ExecutionCommand,
    },
}

#[derive(Subcommand)]
enum ExecutionCommand {
    /// Create (or replace) an execution and print a token for it.
    Create(dev::NewExecution),
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration (e.g. 30m, 1h)"))
}

fn main() -> anyhow::Result<()> {
    if wget::invoked_as_wget() {
        std::process::exit(wget::main(std::env::args_os().skip(1)));
    }
    let matches = Cli::command()
        .after_help(settings::help_text())
        .get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::Config) = cli.command {
        return print_config();
    }
    let mut config = Config::from_env()?;
    init_logging(&config);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Config => print_config(),
        Command::Precompile => precompile(&config),
        Command::Dev {
            port,
            host,
            data_dir,
        } => {
            config.listen = std::net::SocketAddr::new(host, port);
            config.data_dir = data_dir;
            let demo = dev::prepare(&mut config)?;
            serve_with(config, Some(demo))
        }
        Command::Token {
            execution_id,
            job_id,
            user_id,
            event_id,
            ttl,
            data_dir,
        } => {
            config.data_dir = data_dir;
            let verifier = dev::verifier(&config, false)?;
            let now = now();
            let claims = Claims {
                execution_id,
                job_id,
                user_id,
                event_id,
                capability_token: None,
                issued_at: now,
                expires_at: Some(now + ttl.as_secs()),
            };
            println!("{}", verifier.mint(&claims));
            Ok(())
        }
        Command::Execution {
            command: ExecutionCommand::Create(new),
        } => {
            config.data_dir = new.data_dir.clone();
            let (execution, token) = dev::create_execution(&config, &new)?;
            println!(
                "{}",
                serde_json::json!({ "executionId": execution.execution_id, "token": token })
            );
            Ok(())
        }
    }
}

/// `cronium-runtime config`.
fn print_config() -> anyhow::Result<()> {
    let dir = std::env::current_dir().context("reading the working directory")?;
    let (file, settings) = config::effective(&config::process_env(), &dir)?;
    match file {
        Some(file) => println!("# configuration file: {}", file.display()),
        None => println!("# configuration file: none (CONFIG_FILE unset, no ./config.yaml)"),
    }
    let width = settings.iter().map(|e| e.name.len()).max().unwrap_or(0);
    for entry in settings {
        match (&entry.value, &entry.origin) {
            (None, _) => println!("{:<width$}  (unset)", entry.name),
            (Some(value), Some(origin)) => println!("{:<width$}  {value}  # {origin}", entry.name),
            (Some(value), None) => println!("{:<width$}  {value}  # computed", entry.name),
        }
    }
    Ok(())
}

/// `cronium-runtime precompile`.
fn precompile(config: &Config) -> anyhow::Result<()> {
    let Some(dir) = &config.compile_cache else {
        anyhow::bail!("CRONIUM_CACHE_DIR is off: there is nowhere to put compiled components");
    };
    cronium_host::components::Components::precompile(config)?;
    if config.tools.builtin {
        cronium_host::tools::ToolRegistry::precompile_builtins(config)?;
    }
    // The cache refuses (and logs) a directory it cannot trust; then
    // nothing was written, and saying so beats an image that compiles on
    // every start.
    let written = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
        .unwrap_or(0);
    if written == 0 {
        anyhow::bail!("no compiled component in {}", dir.display());
    }
    println!("{written} compiled components in {}", dir.display());
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    serve_with(config, None)
}

fn serve_with(config: Config, demo: Option<dev::Demo>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let host = Runtime::start(&config).await?;
        if let Some(demo) = demo {
            demo.print(host.local_addr()?);
        }
        host.serve(shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn init_logging(config: &Config) {
    // Our own lines at the configured level; wasmtime's internals only when they matter.
    let filter = tracing_subscriber::EnvFilter::try_new(format!(
        "{level},cranelift=warn,wasmtime=warn,wasmtime_wasi=warn,wasmtime_wasi_http=warn",
        level = config.log_level
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}
