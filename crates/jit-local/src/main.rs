//! `jit-local` entry point: parse flags, validate config once, serve.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use jit_core::ports::SystemClock;
use jit_local::{App, Config, GrantsMode, Overrides};

/// Defaults `jit configure --local` assumes too: the banner's hint leaves
/// out whichever of them is in use.
const DEFAULT_ADDR: &str = "127.0.0.1:3000";
const DEFAULT_DATA_DIR: &str = jit_local::DEFAULT_DATA_DIR;

/// The JIT access broker on one machine: same API, SQLite, no AWS account.
#[derive(Parser, Debug)]
#[command(name = "jit-local", version, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on. Loopback by default: this is a developer tool.
    #[arg(long, env = "JIT_ADDR", default_value = DEFAULT_ADDR)]
    addr: SocketAddr,
    /// Where the SQLite store and the API key live.
    #[arg(long, env = "JIT_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The entitlement catalog (YAML). Default: the example catalog
    /// (`config/catalog.example.yaml`), built into the binary.
    #[arg(long, env = "JIT_CATALOG")]
    catalog: Option<PathBuf>,
    /// The API key callers must send in `x-api-key`. Default: the key kept
    /// in `<data-dir>/api-key` by an earlier start, else a new one.
    #[arg(long, env = "JIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Honour the seed's `simulateApproval` (demo mode). On by default locally.
    #[arg(long, env = "JIT_DEMO_MODE", default_value_t = true, action = clap::ArgAction::Set)]
    demo_mode: bool,
    /// Where grants are made: `local` (clearly fake credentials, IAM
    /// recorded in the data dir) or `aws` (the real STS and IAM with the
    /// ambient AWS credentials; `AWS_ENDPOINT_URL` honoured).
    #[arg(long, env = "JIT_GRANTS", value_enum, default_value = "local")]
    grants: GrantsMode,
    /// The AWS federation endpoint console sign-in goes through (`--grants aws`).
    #[arg(
        long,
        env = "JIT_FEDERATION_URL",
        default_value = jit_aws::console::DEFAULT_FEDERATION_URL
    )]
    federation_url: String,
    /// Slack's Web API base URL (Slack itself by default; a loopback fake in
    /// tests). Slack is on when `JIT_SLACK_BOT_TOKEN` is set; its
    /// interactivity and `/jit` when `JIT_SLACK_SIGNING_SECRET` is set.
    #[arg(long, env = "JIT_SLACK_URL")]
    slack_url: Option<String>,
    /// The base URL approval links point at (default `http://<addr>`).
    #[arg(long, env = "JIT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Send approval emails through SES from this verified sender (AWS
    /// settings from the environment); otherwise they go to
    /// `<data-dir>/outbox/` as `.eml` files.
    #[arg(long, env = "JIT_SES_FROM")]
    ses_from: Option<String>,
    /// The Bedrock model that generates session policies from a scope in
    /// words (`{"describe": ...}`): Converse, with the AWS credentials and
    /// region of the environment. Off when unset (such scopes get a 400
    /// naming `scope.describe`). JIT_BEDROCK_MAX_TOKENS,
    /// JIT_BEDROCK_TEMPERATURE, JIT_BEDROCK_TOP_P and
    /// JIT_BEDROCK_TIMEOUT_SECS tune it.
    #[arg(long, env = "JIT_BEDROCK_MODEL_ID")]
    bedrock_model_id: Option<String>,
    /// The region of the Bedrock model (the environment's by default).
    #[arg(long, env = "JIT_BEDROCK_REGION")]
    bedrock_region: Option<String>,
    /// Another Bedrock runtime endpoint (a VPC endpoint; a loopback fake in tests).
    #[arg(long, env = "JIT_BEDROCK_ENDPOINT")]
    bedrock_endpoint: Option<String>,
    /// Tests only (hidden): time is the system's plus an offset kept in the
    /// data dir, moved forward by `POST /_test/clock/advance`. Refused
    /// unless demo mode is on.
    #[arg(
        long,
        env = "JIT_TEST_CLOCK",
        hide = true,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    test_clock: bool,
    /// Refuse creates (`503` with `Retry-After`) while the engine has this
    /// many executions or more started or answered and not yet advanced.
    #[arg(long, env = "JIT_MAX_BACKLOG", default_value_t = jit_local::DEFAULT_MAX_BACKLOG,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_backlog: usize,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Amazon States Language tools.
    #[command(subcommand)]
    Asl(AslCommand),
    /// Catalog tools.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Shows and repairs drift between IAM and the grants in the store
    /// (what the server does every minute). Safe while the server runs:
    /// it then asks the server. Exit codes: 0 nothing to fix or all fixed,
    /// 1 something left (dry-run findings, a failed repair, a foreign
    /// inline policy flagged), 2 could not run.
    Reconcile(jit_local::reconcile_cmd::ReconcileArgs),
    /// The local IAM stand-ins.
    #[command(subcommand)]
    Iam(IamCommand),
}

#[derive(clap::Subcommand, Debug)]
enum IamCommand {
    /// Prints the local IAM state (attached managed policies, inline role
    /// policies) with the request each belongs to. Read-only; safe while
    /// the server runs. Exit codes: 0 printed, 2 could not read.
    State(jit_local::iam_state::StateArgs),
}

#[derive(clap::Subcommand, Debug)]
enum CatalogCommand {
    /// Checks every entitlement against the account of the ambient AWS
    /// credentials: the policy exists (exact name) and is attachable, or
    /// the role exists and its trust policy lets the broker assume it.
    /// Prints OK or the problem and its fix; exits 1 on any problem.
    Check(jit_local::catalog_cmd::CheckArgs),
}

#[derive(clap::Subcommand, Debug)]
enum AslCommand {
    /// Runs a state machine definition once, tasks answered from a file,
    /// Waits fast-forwarded; prints status, output or error, the states
    /// entered and the history as JSON.
    Run(jit_local::asl::RunArgs),
}

/// Prints a line for the operator. A closed stdout (the reading end of a
/// pipe went away) must never take the server down, so write errors are
/// dropped instead of panicking as `println!` does.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Whatever this process creates (a database's -wal/-shm, any file a
    // library makes) is its owner's only; `private_fs` sets modes explicitly
    // too, so this is the second line, not the only one.
    #[cfg(unix)]
    // SAFETY: umask only swaps the process's file-creation mask; no memory
    // is involved, and nothing creates files concurrently this early.
    unsafe {
        libc::umask(0o077);
    }
    let args = Args::parse();
    let json = std::env::var("JIT_LOG_FORMAT").is_ok_and(|v| v == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_env("JIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A subcommand's stdout is its answer (JSON with --output json): its
    // log lines go to stderr. The server logs to stdout, as it always has.
    let to_stderr = args.command.is_some();
    // Colour codes only for a terminal: a log redirected to a file stays
    // plain text.
    let ansi = {
        use std::io::IsTerminal as _;
        if to_stderr {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(move || -> Box<dyn std::io::Write> {
            if to_stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
    if json {
        logs.json().init();
    } else {
        logs.init();
    }

    // A subcommand's output piped into `head` ends it quietly, as any Unix
    // tool does (Rust ignores SIGPIPE, so println! would panic instead).
    // The server keeps ignoring it: a client hanging up must not kill it.
    #[cfg(unix)]
    if args.command.is_some() {
        // SAFETY: restores the default disposition of one signal before any
        // thread that could write to the pipe exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match args.command {
        Some(Command::Asl(AslCommand::Run(run))) => {
            std::process::exit(jit_local::asl::run(run).await);
        }
        Some(Command::Catalog(CatalogCommand::Check(check))) => {
            std::process::exit(jit_local::catalog_cmd::run(check).await);
        }
        Some(Command::Reconcile(args)) => {
            std::process::exit(jit_local::reconcile_cmd::run(args).await);
        }
        Some(Command::Iam(IamCommand::State(args))) => {
            std::process::exit(jit_local::iam_state::run(args).await);
        }
        None => {}
    }
    // Bound before anything starts (no engine resumes executions for a
    // server that cannot listen), and the real address — `:0` picks a port —
    // is the one the emailed approval links point at.
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let addr = listener.local_addr()?;
    // The key: the flag, else the one an earlier start kept in the data
    // dir (so clients configured once keep working), else a new one.
    let (api_key, key_origin) = match args.api_key {
        Some(k) => (Some(k), KeyOrigin::Flag),
        None => match jit_local::stored_api_key(&args.data_dir) {
            Some(k) => (Some(k), KeyOrigin::Kept),
            None => (None, KeyOrigin::Generated),
        },
    };
    let cfg = Config {
        addr,
        data_dir: args.data_dir,
        catalog: match args.catalog {
            Some(p) => p.into(),
            None => jit_local::CatalogSource::Embedded,
        },
        api_key,
        demo_mode: args.demo_mode,
        print_notifications: true,
        run_driver: true,
        max_backlog: args.max_backlog,
    };
    let mut overrides = match args.grants {
        GrantsMode::Local => Overrides::default(),
        GrantsMode::Aws => {
            match jit_local::access::ambient_aws_grants(&args.federation_url).await {
                Ok(g) => {
                    let mut o = Overrides::aws(g);
                    // Permission sets: Identity Center itself (the catalog's
                    // local_directory is for --grants local only).
                    if let Ok(catalog) = cfg.catalog.load()
                        && let Some(idc) = catalog.identity_center()
                    {
                        let client = std::sync::Arc::new(
                            jit_aws::identity_center::IdentityCenterClient::new(
                                &jit_aws::sdk::load_config().await,
                                idc,
                            ),
                        );
                        o.identity_center = Some(jit_local::IdcPorts {
                            assignments: client.clone(),
                            directory: client,
                        });
                    }
                    o
                }
                Err(e) => {
                    eprintln!("jit-local: --federation-url: {e}");
                    std::process::exit(2);
                }
            }
        }
    };
    // The AI policy generator: the flags first, then JIT_BEDROCK_* tuning.
    let bedrock = jit_aws::bedrock::BedrockConfig::from_lookup(|k| match k {
        "JIT_BEDROCK_MODEL_ID" => args.bedrock_model_id.clone(),
        "JIT_BEDROCK_REGION" => args.bedrock_region.clone(),
        "JIT_BEDROCK_ENDPOINT" => args.bedrock_endpoint.clone(),
        other => std::env::var(other).ok(),
    });
    match bedrock {
        Ok(Some(c)) => {
            let sdk = jit_aws::sdk::load_config().await;
            overrides.policy_drafter =
                Some(Arc::new(jit_aws::bedrock::BedrockDrafter::new(&sdk, c)));
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("jit-local: {e}");
            std::process::exit(2);
        }
    }
    // Secrets come from the environment only, never from flags (which
    // other users of the machine can read in the process list).
    let secret = |var: &str| {
        std::env::var(var)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(jit_core::ports::Secret::new)
    };
    let approvals_cfg = jit_local::approvals::ApprovalsConfig {
        slack_url: args.slack_url.clone(),
        slack_signing_secret: secret("JIT_SLACK_SIGNING_SECRET"),
        slack_bot_token: secret("JIT_SLACK_BOT_TOKEN"),
        link_secret: secret("JIT_LINK_SECRET"),
        public_url: args.public_url.clone(),
        ses_from: args.ses_from.clone(),
        ..Default::default()
    };
    let test_clock = if args.test_clock {
        if !cfg.demo_mode {
            eprintln!(
                "jit-local: --test-clock (JIT_TEST_CLOCK) is for tests and needs demo mode on; \
                 it lets any API key holder move time forward"
            );
            std::process::exit(2);
        }
        match jit_local::test_clock::TestClock::open(&cfg.data_dir) {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                eprintln!("jit-local: --test-clock: {e}");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let clock: Arc<dyn jit_core::ports::Clock> = match &test_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    let (mut app, api_key) = match App::build_full(&cfg, clock, overrides, &approvals_cfg) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("jit-local: {e}");
            std::process::exit(2);
        }
    };
    if let Some(c) = &test_clock {
        app.enable_test_clock(c.clone());
    }
    let key_file = cfg.data_dir.join(jit_local::API_KEY_FILE);
    write_key_file(&key_file, &api_key)
        .with_context(|| format!("writing {}", key_file.display()))?;

    say!("jit-local listening on http://{addr}");
    say!("  console:   http://{addr}/ (local sign-in with the API key below)");
    say!(
        "  catalog:   {} ({} entitlements{})",
        cfg.catalog.describe(),
        app.broker.catalog.len(),
        if cfg.catalog == jit_local::CatalogSource::Embedded {
            "; --catalog <file> for yours"
        } else {
            ""
        }
    );
    say!("  store:     {}", cfg.data_dir.join("jit.db").display());
    match key_origin {
        KeyOrigin::Generated => say!(
            "  API key:   {api_key}  (new; kept in {} and reused at the next start)",
            key_file.display()
        ),
        KeyOrigin::Kept => say!(
            "  API key:   {api_key}  (kept from an earlier start in {})",
            key_file.display()
        ),
        KeyOrigin::Flag => say!(
            "  API key:   from --api-key/JIT_API_KEY (also in {})",
            key_file.display()
        ),
    }
    say!(
        "  demo mode: {} (simulateApproval is {})",
        if cfg.demo_mode { "ON" } else { "off" },
        if cfg.demo_mode {
            "honoured"
        } else {
            "recorded and ignored"
        }
    );
    say!(
        "  grants:    {}",
        match args.grants {
            GrantsMode::Local =>
                "local (clearly fake credentials; IAM recorded in the data dir)".to_string(),
            GrantsMode::Aws => format!(
                "aws (ambient credentials{}; console via {})",
                std::env::var("AWS_ENDPOINT_URL")
                    .map(|u| format!(", endpoint {u}"))
                    .unwrap_or_default(),
                args.federation_url
            ),
        }
    );
    if let Some(c) = &test_clock {
        say!(
            "  !!! TEST CLOCK: time is the system's + {}s, moved by POST {} — for tests only, never for real use",
            c.offset().num_seconds(),
            jit_local::test_clock::ADVANCE_PATH
        );
        tracing::warn!("jit-local runs on a test clock (--test-clock): for tests only");
    }
    if let Some(r) = app.resumed() {
        say!(
            "  workflow:  state-machine/approval.asl.json on the local engine ({} executions resumed: {} waiting for a decision, {} on a timer, {} running)",
            r.running,
            r.waiting_for_callback,
            r.waiting_for_timer,
            r.running - r.waiting_for_callback - r.waiting_for_timer
        );
    }
    if let Some(a) = app.approvals() {
        for line in &a.summary {
            say!("  {line}");
        }
        say!(
            "  approvals: {}/approvals/<id>?… (the emailed links)",
            a.notifier.public_url
        );
    }
    let data_dir_arg = if cfg.data_dir == std::path::Path::new(DEFAULT_DATA_DIR) {
        String::new()
    } else {
        format!(" --data-dir {}", cfg.data_dir.display())
    };
    let url_arg = if addr.to_string() == DEFAULT_ADDR {
        String::new()
    } else {
        format!(" --api-url http://{addr}")
    };
    say!("  CLI:       jit configure --local --user <you@example.com>{url_arg}{data_dir_arg}");

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
        say!("jit-local: shutting down");
    };
    let app = Arc::new(app);
    // Every minute, from start: requests left without a workflow get one
    // (see jit_core::recovery), and early-revoke denies are placed and
    // removed from the store's list of pending ones (jit_core::revocation).
    let sweeper = {
        let app = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(app) = app.upgrade() else { break };
                if let Err(e) = app.broker.recover_workflows(false).await {
                    tracing::warn!(error = %e, "the workflow reconcile pass failed");
                }
                if let Err(e) = app.sweep_revocations().await {
                    tracing::warn!(error = %e, "sweeping revocation denies failed");
                }
            }
        })
    };
    // The reconciler (IAM made to agree with the store; see
    // jit_core::reconcile): at start and every minute.
    let reconciler = {
        let app = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(app) = app.upgrade() else { break };
                if let Err(e) = app.reconcile(false, None).await {
                    tracing::warn!(error = %e, "the reconciler failed; it runs again in a minute");
                }
            }
        })
    };
    // Reminders for undecided requests, and outcomes on Slack messages.
    let reminders = {
        let app = Arc::downgrade(&app);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            loop {
                tick.tick().await;
                let Some(app) = app.upgrade() else { break };
                if let Err(e) = app.sweep_reminders().await {
                    tracing::warn!(error = %e, "the reminder sweep failed");
                }
            }
        })
    };
    jit_local::serve(listener, app.clone(), shutdown).await?;
    sweeper.abort();
    let _ = sweeper.await;
    reminders.abort();
    let _ = reminders.await;
    reconciler.abort();
    let _ = reconciler.await;
    if let Ok(app) = Arc::try_unwrap(app) {
        app.shutdown().await;
    }
    Ok(())
}

/// Where the API key came from, for the banner.
enum KeyOrigin {
    Flag,
    Kept,
    Generated,
}

/// Keeps the key readable by scripts (`$(cat .jit/api-key)`) and by nobody
/// else (`0600`, also when an older run left the file wider).
fn write_key_file(path: &std::path::Path, key: &str) -> std::io::Result<()> {
    jit_local::private_fs::write(path, format!("{key}\n").as_bytes())
}
