//! `jit-local` entry point: parse flags, validate config once, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use jit_local::{App, Config};

/// The JIT access broker on one machine: same API, SQLite, no AWS account.
#[derive(Parser, Debug)]
#[command(name = "jit-local", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on. Loopback by default: this is a developer tool.
    #[arg(long, env = "JIT_ADDR", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// Where the SQLite store and the generated API key live.
    #[arg(long, env = "JIT_DATA_DIR", default_value = "./.jit")]
    data_dir: PathBuf,
    /// The entitlement catalog (YAML).
    #[arg(
        long,
        env = "JIT_CATALOG",
        default_value = "config/catalog.example.yaml"
    )]
    catalog: PathBuf,
    /// The API key callers must send in `x-api-key`; generated when absent.
    #[arg(long, env = "JIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Honour the seed's `simulateApproval` (demo mode). On by default locally.
    #[arg(long, env = "JIT_DEMO_MODE", default_value_t = true, action = clap::ArgAction::Set)]
    demo_mode: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Amazon States Language tools.
    #[command(subcommand)]
    Asl(AslCommand),
}

#[derive(clap::Subcommand, Debug)]
enum AslCommand {
    /// Runs a state machine definition once, tasks answered from a file,
    /// Waits fast-forwarded; prints status, output or error, the states
    /// entered and the history as JSON.
    Run(jit_local::asl::RunArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let json = std::env::var("JIT_LOG_FORMAT").is_ok_and(|v| v == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_env("JIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }

    let args = Args::parse();
    if let Some(Command::Asl(AslCommand::Run(run))) = args.command {
        std::process::exit(jit_local::asl::run(run).await);
    }
    let cfg = Config {
        addr: args.addr,
        data_dir: args.data_dir,
        catalog_path: args.catalog,
        api_key: args.api_key,
        demo_mode: args.demo_mode,
        print_notifications: true,
        run_driver: true,
    };
    let generated = cfg.api_key.is_none();
    let (app, api_key) = match App::from_config(&cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("jit-local: {e}");
            std::process::exit(2);
        }
    };
    let key_file = cfg.data_dir.join("api-key");
    write_key_file(&key_file, &api_key)
        .with_context(|| format!("writing {}", key_file.display()))?;

    let listener = tokio::net::TcpListener::bind(cfg.addr)
        .await
        .with_context(|| format!("binding {}", cfg.addr))?;
    let addr = listener.local_addr()?;
    println!("jit-local listening on http://{addr}");
    println!(
        "  catalog:   {} ({} entitlements)",
        cfg.catalog_path.display(),
        app.broker.catalog.len()
    );
    println!("  store:     {}", cfg.data_dir.join("jit.db").display());
    if generated {
        println!(
            "  API key:   {api_key}  (generated; also in {})",
            key_file.display()
        );
    } else {
        println!(
            "  API key:   from --api-key/JIT_API_KEY (also in {})",
            key_file.display()
        );
    }
    println!(
        "  demo mode: {} (simulateApproval is {})",
        if cfg.demo_mode { "ON" } else { "off" },
        if cfg.demo_mode {
            "honoured"
        } else {
            "recorded and ignored"
        }
    );
    if let Some((running, waiting)) = app.resumed() {
        println!(
            "  workflow:  state-machine/approval.asl.json on the local engine ({running} executions resumed, {waiting} waiting for a decision)"
        );
    }

    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing the SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        println!("jit-local: shutting down");
    };
    let app = Arc::new(app);
    jit_local::serve(listener, app.clone(), shutdown).await?;
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
    Ok(())
}

/// Keeps the key readable by scripts (`$(cat .jit/api-key)`) and by nobody else.
fn write_key_file(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(key.as_bytes())?;
    f.write_all(b"\n")
}
