//! `jit`: request, decide and use just-in-time AWS access from a terminal.

mod cache;
mod catalog;
mod client;
mod config;
mod human;
mod sigv4;
mod stats;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Value, json};

use client::Client;
use config::{Auth, Config};

#[derive(Parser)]
#[command(
    name = "jit",
    version,
    about = "Just-in-time AWS access: request, approve, use."
)]
struct Cli {
    /// `text` for people, `json` for scripts (the API's JSON as is).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum ReviewVerdict {
    Justified,
    NotJustified,
}

impl ReviewVerdict {
    fn as_str(self) -> &'static str {
        match self {
            ReviewVerdict::Justified => "justified",
            ReviewVerdict::NotJustified => "not-justified",
        }
    }
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Output {
    Text,
    Json,
}

/// What the request needs (its `scope`): exact actions and resources, an
/// access level within services, or words.
#[derive(clap::Args, Debug, Default)]
struct ScopeArgs {
    /// Exact actions, comma-separated (s3:GetObject,s3:ListBucket).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["access", "describe"])]
    actions: Vec<String>,
    /// Resources (ARNs), comma-separated; with --actions or --access.
    #[arg(long, value_delimiter = ',', conflicts_with = "describe")]
    resources: Vec<String>,
    /// An access level: read, list, write, tagging, permissions-management.
    #[arg(long, requires = "services", conflicts_with = "describe")]
    access: Option<String>,
    /// Service prefixes for --access, comma-separated (s3,logs).
    #[arg(long, value_delimiter = ',', requires = "access")]
    services: Vec<String>,
    /// What you need, in words (needs an AI policy generator).
    #[arg(long)]
    describe: Option<String>,
}

impl ScopeArgs {
    /// The API's `scope`, or `None` when no flag was given.
    fn to_json(&self) -> Option<Value> {
        if let Some(d) = &self.describe {
            return Some(json!({ "describe": d }));
        }
        if let Some(a) = &self.access {
            let mut v = json!({ "access": a, "services": self.services });
            if !self.resources.is_empty() {
                v["resources"] = json!(self.resources);
            }
            return Some(v);
        }
        if !self.actions.is_empty() || !self.resources.is_empty() {
            return Some(json!({ "actions": self.actions, "resources": self.resources }));
        }
        None
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// The session policy a request with this scope would carry, with its
    /// validation; nothing is requested.
    Preview {
        entitlement: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// The justification an AI generator would be given.
        #[arg(long, short)]
        reason: Option<String>,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Store the API URL, API key and how to authenticate.
    Configure {
        /// e.g. https://<api-id>.execute-api.<region>.amazonaws.com/prod
        /// (with --local: default http://127.0.0.1:3000).
        #[arg(long, env = "JIT_API_URL", required_unless_present = "local")]
        api_url: Option<String>,
        /// The API key (default with --local: the one jit-local keeps in
        /// `<data-dir>/api-key`, read at every run, so a restarted
        /// jit-local needs no new configuration).
        #[arg(long, env = "JIT_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// jit-local: name yourself with `x-jit-user` (needs --user).
        #[arg(long, requires = "user", conflicts_with = "bearer")]
        local: bool,
        /// jit-local's data directory, where it keeps its API key.
        #[arg(long, requires = "local", default_value = "./.jit")]
        data_dir: std::path::PathBuf,
        /// Your identity for --local.
        #[arg(long, requires = "local")]
        user: Option<String>,
        /// Your groups for --local, comma-separated.
        #[arg(long, requires = "local", value_delimiter = ',')]
        groups: Vec<String>,
        /// A bearer token (JWT) sent as `Authorization: Bearer`.
        #[arg(long, conflicts_with = "sigv4")]
        bearer: Option<String>,
        /// Sign calls with SigV4 (IAM) using your AWS credentials, found as the AWS CLI finds them.
        #[arg(long, requires = "region", conflicts_with = "local")]
        sigv4: bool,
        /// The API's region, for --sigv4.
        #[arg(long, requires = "sigv4")]
        region: Option<String>,
        /// The AWS profile for --sigv4 (default: AWS_PROFILE, then `default`).
        #[arg(long, requires = "sigv4")]
        profile: Option<String>,
    },
    /// The entitlements you may request, with their bounds and approvers.
    Entitlements,
    /// Ask for an entitlement.
    Request {
        entitlement: String,
        /// e.g. 15m, 1h, 1h30m or seconds.
        #[arg(long, short)]
        duration: Option<String>,
        /// Why you need it (a ticket, an incident).
        #[arg(long, short)]
        reason: String,
        #[arg(long)]
        account: Option<String>,
        /// Wait until the request is decided. An auto-approved request is
        /// granted in the create call itself (`"wait": true`) and its
        /// credentials are cached for `jit exec`/`jit credentials`.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, e.g. 10m.
        #[arg(long, default_value = "15m", value_parser = parse_duration)]
        timeout: Duration,
        /// Seconds between polls while waiting.
        #[arg(long, default_value_t = 2.0, hide = true)]
        poll_interval: f64,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Least privilege: session policies.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCommand,
    },
    /// Break-glass: approve your own request to a `break_glass: true`
    /// entitlement when there is no time to wait. Granted at once (its
    /// credentials cached for `jit exec`/`jit credentials`), announced to
    /// the approvers and the security channel, reviewed afterwards.
    BreakGlass {
        entitlement: String,
        /// At least 20 characters, with an incident reference: "INC-123: what is broken".
        #[arg(long, short)]
        reason: String,
        /// e.g. 30m (default: the entitlement's; at most its max_duration).
        #[arg(long, short)]
        duration: Option<String>,
    },
    /// Review a break-glass request (approvers of its entitlement, not its requester).
    Review {
        id: String,
        #[arg(long, value_enum)]
        verdict: ReviewVerdict,
        /// Why the break-glass use was (not) justified.
        #[arg(long, short)]
        reason: String,
    },
    /// Your requests, newest first (`--pending`: those you may approve).
    List {
        #[arg(long)]
        status: Option<String>,
        /// Requests awaiting your approval.
        #[arg(long, conflicts_with = "status")]
        pending: bool,
        /// Break-glass requests awaiting your review.
        #[arg(long, conflicts_with_all = ["status", "pending", "all_users"])]
        reviews: bool,
        /// Show at most this many (pages are followed until then).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Every matching request, however many pages that takes.
        #[arg(long, conflicts_with = "limit")]
        all: bool,
        /// Continue where an earlier list stopped (its `nextCursor`).
        #[arg(long)]
        cursor: Option<String>,
        /// Everyone's requests (members of the catalog's admin_groups).
        #[arg(long, conflicts_with = "pending")]
        all_users: bool,
        /// With --all-users: only this entitlement.
        #[arg(long, requires = "all_users")]
        entitlement: Option<String>,
        /// With --all-users: only this requester.
        #[arg(long, requires = "all_users")]
        requester: Option<String>,
        /// With --all-users: created at or after (2027-01-15 or RFC 3339).
        #[arg(long, requires = "all_users")]
        from: Option<String>,
        /// With --all-users: created before (2027-01-15 or RFC 3339).
        #[arg(long, requires = "all_users")]
        to: Option<String>,
    },
    /// Access analytics (admins; approvers see their entitlements): patterns,
    /// usage and security, as tables with bars (`--output json`: the API's JSON).
    Stats {
        /// Start of the range (2027-01-15 or RFC 3339; default 30 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, excluded (default now).
        #[arg(long)]
        to: Option<String>,
    },
    /// One request.
    Show {
        id: String,
        /// Show it once no automatic step is under way: it is waiting for a
        /// person (APPROVAL_PENDING), granted, or over. A request just made
        /// or just approved is still being validated or granted for a
        /// moment; without this flag that moment is what is shown.
        #[arg(long)]
        settled: bool,
        /// How long --settled waits, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse_duration, requires = "settled")]
        timeout: Duration,
    },
    /// Cancel your pending request.
    Cancel {
        id: String,
        #[arg(long, short)]
        reason: Option<String>,
    },
    /// Approve someone else's request (or, with --extension, its pending extension).
    Approve {
        id: String,
        #[arg(long, short)]
        reason: Option<String>,
        /// Decide the request's pending extension instead.
        #[arg(long)]
        extension: bool,
    },
    /// Deny someone else's request (or, with --extension, its pending extension).
    Deny {
        id: String,
        #[arg(long, short)]
        reason: String,
        /// Decide the request's pending extension instead.
        #[arg(long)]
        extension: bool,
    },
    /// End a grant now.
    Revoke {
        id: String,
        #[arg(long, short)]
        reason: String,
    },
    /// Ask for more time on a grant.
    Extend {
        id: String,
        #[arg(long, short)]
        duration: String,
        #[arg(long, short)]
        reason: String,
    },
    /// credential_process JSON for a granted request (cached until 5 min before expiry).
    Credentials { id: String },
    /// `export AWS_…` lines for a granted request.
    Env { id: String },
    /// Run a command with the request's credentials in its environment
    /// (`--request ENTITLEMENT`: request it, wait and run, in one step).
    Exec {
        #[arg(required_unless_present = "request")]
        id: Option<String>,
        /// Request this entitlement first (auto-approved ones are granted
        /// in the same call), then run the command with its credentials.
        #[arg(long, conflicts_with = "id", requires = "reason")]
        request: Option<String>,
        /// With --request: e.g. 15m, 1h (default: the entitlement's).
        #[arg(long, short, requires = "request")]
        duration: Option<String>,
        /// With --request: why you need it.
        #[arg(long, short, requires = "request")]
        reason: Option<String>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// The catalog, checked against AWS.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// The AWS console sign-in URL for a granted request.
    Console {
        id: String,
        /// Open it with xdg-open.
        #[arg(long)]
        open: bool,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration like 30s, 15m, 1h30m"))?;
        num.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86400,
            _ => return Err(format!("`{s}` is not a duration like 30s, 15m, 1h30m")),
        };
    }
    if !num.is_empty() {
        return Err(format!("`{s}` is not a duration like 30s, 15m, 1h30m"));
    }
    Ok(Duration::from_secs(total))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let line = format!("{e:#}").replace('\n', " ");
            eprintln!("jit: error: {line}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Where `jit-local` listens unless told otherwise.
const LOCAL_URL: &str = "http://127.0.0.1:3000";

/// Where `jit-local` keeps its key (`<data-dir>/api-key`), as an absolute
/// path: the configuration is used from any directory afterwards. Read now
/// too, so a wrong data dir fails at configure time.
fn local_key_file(data_dir: &std::path::Path) -> Result<std::path::PathBuf> {
    let path = std::path::absolute(data_dir.join("api-key"))
        .map_err(|e| anyhow!("{}: {e}", data_dir.display()))?;
    config::read_key_file(&path)?;
    Ok(path)
}

fn connect() -> Result<Client> {
    Client::new(Config::load()?)
}

fn run(cli: Cli) -> Result<ExitCode> {
    let out = cli.output;
    match cli.command {
        Command::Configure {
            api_url,
            api_key,
            local,
            data_dir,
            user,
            groups,
            bearer,
            sigv4,
            region,
            profile,
        } => {
            let auth = match (local, user, bearer, region) {
                (true, Some(user), _, _) => Auth::Local {
                    user,
                    groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
                },
                (_, _, Some(token), _) => Auth::Bearer { token },
                (_, _, _, Some(region)) if sigv4 => Auth::Sigv4 { region, profile },
                _ => Auth::ApiKeyOnly,
            };
            let api_url = match api_url {
                Some(u) => u,
                None => LOCAL_URL.to_string(),
            };
            let (api_key, api_key_file) = match api_key {
                Some(k) => (k, None),
                None if local => (String::new(), Some(local_key_file(&data_dir)?)),
                None => bail!("no API key: pass --api-key (or set JIT_API_KEY)"),
            };
            let cfg = Config {
                api_url: api_url.trim_end_matches('/').to_string(),
                api_key,
                api_key_file,
                auth,
            };
            // Fail now, not at first use, on a URL this build cannot call.
            Client::new(cfg.clone())?;
            let path = cfg.save()?;
            if out == Output::Json {
                println!("{}", json!({ "configPath": path, "apiUrl": cfg.api_url }));
            } else {
                println!("saved {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Credentials { id } => {
            // The hot path (every AWS CLI call): the cache answers without
            // reading the config or starting a runtime.
            if let Some(text) = cache::fresh(&id)? {
                println!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            let creds = fetch_credentials(&id)?;
            println!("{creds}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Env { id } => {
            let creds = credentials_value(&id)?;
            if out == Output::Json {
                println!("{creds}");
            } else {
                for (k, v) in env_pairs(&creds)? {
                    println!("export {k}={}", shell_quote(&v));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Exec {
            id,
            request,
            duration,
            reason,
            command,
        } => {
            let creds = match (id, request) {
                (Some(id), _) => credentials_value(&id)?,
                (None, Some(entitlement)) => {
                    request_and_wait(&entitlement, duration, reason.unwrap_or_default())?
                }
                (None, None) => bail!("name a request id, or --request ENTITLEMENT"),
            };
            let mut cmd = std::process::Command::new(&command[0]);
            cmd.args(&command[1..]);
            for (k, v) in env_pairs(&creds)? {
                cmd.env(k, v);
            }
            cmd.env_remove("AWS_PROFILE");
            let status = cmd
                .status()
                .map_err(|e| anyhow!("cannot run `{}`: {e}", command[0]))?;
            Ok(ExitCode::from(
                status.code().unwrap_or(1).clamp(0, 255) as u8
            ))
        }
        Command::Catalog(catalog::CatalogCommand::Check(args)) => {
            Ok(catalog::check(args, out == Output::Json))
        }
        other => api_command(other, out),
    }
}

fn api_command(cmd: Command, out: Output) -> Result<ExitCode> {
    let client = connect()?;
    let rt = runtime()?;
    rt.block_on(async move {
        match cmd {
            Command::Policy {
                cmd:
                    PolicyCommand::Preview {
                        entitlement,
                        scope,
                        reason,
                    },
            } => {
                let mut body = json!({ "entitlement": entitlement });
                if let Some(s) = scope.to_json() {
                    body["scope"] = s;
                }
                if let Some(r) = reason {
                    body["justification"] = json!(r);
                }
                let v = client
                    .call(Method::POST, "/policies/preview", Some(&body))
                    .await?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    human::print_policy_preview(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Entitlements => {
                let v = client.call(Method::GET, "/entitlements", None).await?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    human::print_entitlements(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Request {
                entitlement,
                duration,
                reason,
                account,
                wait,
                timeout,
                poll_interval,
                scope,
            } => {
                let mut body = json!({ "entitlement": entitlement, "justification": reason });
                if let Some(s) = scope.to_json() {
                    body["scope"] = s;
                }
                if let Some(d) = duration {
                    body["duration"] = duration_json(&d);
                }
                if let Some(a) = account {
                    body["account"] = json!(a);
                }
                if wait {
                    body["wait"] = json!(true);
                }
                let r = client.call(Method::POST, "/requests", Some(&body)).await?;
                keep_credentials(&r)?;
                if !wait || is_decided(&r) {
                    print_request(&r, out);
                    return finish(&r, wait);
                }
                let id = r["requestId"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the API answered without a requestId"))?
                    .to_string();
                let r = wait_for_decision(&client, &id, &r, timeout, poll_interval).await?;
                print_request(&r, out);
                finish(&r, true)
            }
            Command::BreakGlass {
                entitlement,
                reason,
                duration,
            } => {
                let mut body = json!({
                    "entitlement": entitlement,
                    "justification": reason,
                    "breakGlass": true,
                    "wait": true,
                });
                if let Some(d) = duration {
                    body["duration"] = duration_json(&d);
                }
                let r = client.call(Method::POST, "/requests", Some(&body)).await?;
                keep_credentials(&r)?;
                print_request(&r, out);
                finish(&r, true)
            }
            Command::Review {
                id,
                verdict,
                reason,
            } => {
                let body = json!({ "verdict": verdict.as_str(), "reason": reason });
                post_verb(&client, &id, "review", body, out).await
            }
            Command::List { reviews: true, .. } => {
                let v = client
                    .call(Method::GET, "/requests?review=pending", None)
                    .await?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    print_list(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::List {
                status,
                pending,
                limit,
                all,
                cursor,
                all_users,
                entitlement,
                requester,
                from,
                to,
                reviews: _,
            } => {
                let status = if pending {
                    Some("APPROVAL_PENDING".to_string())
                } else {
                    status.map(|s| s.to_ascii_uppercase())
                };
                let want = if all { usize::MAX } else { limit as usize };
                let mut extra = Vec::new();
                if all_users {
                    extra.push("scope=all".to_string());
                }
                for (k, v) in [
                    ("entitlement", entitlement),
                    ("requester", requester),
                    ("from", from),
                    ("to", to),
                ] {
                    if let Some(v) = v {
                        extra.push(format!("{k}={}", query_escape(&v)));
                    }
                }
                let v = list_pages(&client, status.as_deref(), want, cursor, &extra).await?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    print_list(&v);
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Stats { from, to } => {
                let mut q = Vec::new();
                for (k, v) in [("from", from), ("to", to)] {
                    if let Some(v) = v {
                        q.push(format!("{k}={}", query_escape(&v)));
                    }
                }
                let path = if q.is_empty() {
                    "/analytics".to_string()
                } else {
                    format!("/analytics?{}", q.join("&"))
                };
                let v = client.call(Method::GET, &path, None).await?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    print!("{}", stats::render(&v));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Show {
                id,
                settled,
                timeout,
            } => {
                let path = format!("/requests/{}", seg(&id)?);
                let mut r = client.call(Method::GET, &path, None).await?;
                let started = Instant::now();
                while settled && is_moving(&r) {
                    if started.elapsed() >= timeout {
                        return Err(anyhow!(
                            "request {id} is still {} after {}s: the workflow has not moved it on; check later with `jit show {id}`",
                            r["status"].as_str().unwrap_or("?"),
                            timeout.as_secs()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    r = client.call(Method::GET, &path, None).await?;
                }
                print_request(&r, out);
                Ok(ExitCode::SUCCESS)
            }
            Command::Cancel { id, reason } => {
                cache::forget(&id)?;
                post_verb(&client, &id, "cancel", reason_body(reason), out).await
            }
            Command::Approve {
                id,
                reason,
                extension,
            } => {
                let verb = if extension {
                    "extend/approve"
                } else {
                    "approve"
                };
                post_verb(&client, &id, verb, reason_body(reason), out).await
            }
            Command::Deny {
                id,
                reason,
                extension,
            } => {
                let verb = if extension { "extend/deny" } else { "deny" };
                post_verb(&client, &id, verb, reason_body(Some(reason)), out).await
            }
            Command::Revoke { id, reason } => {
                // Whatever the answer, credentials for a grant being ended
                // are not served from the cache again.
                cache::forget(&id)?;
                post_verb(&client, &id, "revoke", reason_body(Some(reason)), out).await
            }
            Command::Extend {
                id,
                duration,
                reason,
            } => {
                let body = json!({ "duration": duration_json(&duration), "reason": reason });
                post_verb(&client, &id, "extend", body, out).await
            }
            Command::Console { id, open } => {
                let v = client
                    .call(
                        Method::GET,
                        &format!("/requests/{}/console", seg(&id)?),
                        None,
                    )
                    .await?;
                let url = v["url"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the API answered without a console url"))?;
                if out == Output::Json {
                    println!("{v}");
                } else {
                    println!("{url}");
                }
                if open {
                    open_browser(url)?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Configure { .. }
            | Command::Catalog(_)
            | Command::Credentials { .. }
            | Command::Env { .. }
            | Command::Exec { .. } => unreachable!("handled before connecting"),
        }
    })
}

fn finish(r: &Value, waited: bool) -> Result<ExitCode> {
    let status = r["status"].as_str().unwrap_or("");
    if waited && status != "GRANTED" {
        let id = r["requestId"].as_str().unwrap_or("?");
        let why = r["reason"]
            .as_str()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        return Err(anyhow!(
            "request {id} ended {status}{why}: see `jit show {id}`"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn reason_body(reason: Option<String>) -> Value {
    match reason {
        Some(r) => json!({ "reason": r }),
        None => json!({}),
    }
}

fn duration_json(d: &str) -> Value {
    match d.trim().parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(d.trim()),
    }
}

/// A request id as one URL path segment; anything else is refused.
fn seg(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(id)
    } else {
        Err(anyhow!(
            "`{id}` is not a request id: find it with `jit list`"
        ))
    }
}

async fn post_verb(
    client: &Client,
    id: &str,
    verb: &str,
    body: Value,
    out: Output,
) -> Result<ExitCode> {
    let r = client
        .call(
            Method::POST,
            &format!("/requests/{}/{verb}", seg(id)?),
            Some(&body),
        )
        .await?;
    print_request(&r, out);
    Ok(ExitCode::SUCCESS)
}

/// Statuses `--wait` waits through: undecided, or approved and being
/// granted (APPROVED lasts as long as the Grant step).
const UNDECIDED: &[&str] = &[
    "REQUESTED",
    "VALIDATING",
    "POLICY_GENERATION",
    "APPROVAL_PENDING",
    "APPROVED",
];

/// Statuses the workflow moves on without a person: `jit show --settled`
/// waits through them.
const MOVING: &[&str] = &["REQUESTED", "VALIDATING", "POLICY_GENERATION", "APPROVED"];

fn is_moving(r: &Value) -> bool {
    MOVING.contains(&r["status"].as_str().unwrap_or(""))
}

fn is_decided(r: &Value) -> bool {
    !UNDECIDED.contains(&r["status"].as_str().unwrap_or(""))
}

async fn wait_for_decision(
    client: &Client,
    id: &str,
    first: &Value,
    timeout: Duration,
    poll_interval: f64,
) -> Result<Value> {
    let tty = std::io::stderr().is_terminal();
    let frames = ['|', '/', '-', '\\'];
    let started = Instant::now();
    let interval = Duration::from_secs_f64(poll_interval.clamp(0.05, 60.0));
    let mut last_status = String::new();
    let mut r = first.clone();
    let mut tick = 0usize;
    loop {
        let status = r["status"].as_str().unwrap_or("?").to_string();
        if is_decided(&r) {
            if tty {
                eprint!("\r\x1b[2K");
            }
            return Ok(r);
        }
        if tty {
            eprint!(
                "\r\x1b[2K{} {id} {status} ({}s)",
                frames[tick % frames.len()],
                started.elapsed().as_secs()
            );
            let _ = std::io::stderr().flush();
        } else if status != last_status {
            eprintln!("{id} {status}");
        }
        last_status = status;
        tick += 1;
        if started.elapsed() >= timeout {
            if tty {
                eprintln!();
            }
            return Err(anyhow!(
                "request {id} is still {last_status} after {}s: check later with `jit show {id}`",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(interval.min(timeout.saturating_sub(started.elapsed()))).await;
        r = client
            .call(Method::GET, &format!("/requests/{}", seg(id)?), None)
            .await?;
    }
}

fn print_request(r: &Value, out: Output) {
    forget_if_over(r);
    if out == Output::Json {
        println!("{r}");
        return;
    }
    human::print_request(r, chrono::Utc::now());
}

/// A request seen ended (revoked, expired, cancelled, …) has its cached
/// credentials dropped: the cache never serves a grant known to be over.
fn forget_if_over(r: &Value) {
    let status = r["status"].as_str().unwrap_or("");
    if let Some(id) = r["requestId"].as_str()
        && !status.is_empty()
        && status != "GRANTED"
        && is_decided(r)
    {
        let _ = cache::forget(id);
    }
}

fn print_list(v: &Value) {
    if let Some(items) = v["requests"].as_array() {
        items.iter().for_each(forget_if_over);
    }
    human::print_list(v, chrono::Utc::now());
}

/// The API's largest page (`limit` above it is refused with 400).
const MAX_PAGE: usize = 100;

/// Follows `nextCursor` until `want` requests are in hand or the list ends,
/// so `jit list` means "my requests", not "the first page of them". The
/// answer has the API's shape: `requests`, and `nextCursor` when stopped
/// early (null at the end).
async fn list_pages(
    client: &Client,
    status: Option<&str>,
    want: usize,
    mut cursor: Option<String>,
    extra: &[String],
) -> Result<Value> {
    let mut items: Vec<Value> = Vec::new();
    loop {
        let mut q = vec![format!("limit={}", (want - items.len()).min(MAX_PAGE))];
        q.extend(extra.iter().cloned());
        if let Some(s) = status {
            q.push(format!("status={}", query_escape(s)));
        }
        if let Some(c) = &cursor {
            q.push(format!("cursor={}", query_escape(c)));
        }
        let v = client
            .call(Method::GET, &format!("/requests?{}", q.join("&")), None)
            .await?;
        if let Some(page) = v["requests"].as_array() {
            items.extend(page.iter().cloned());
        }
        cursor = v["nextCursor"].as_str().map(str::to_string);
        if cursor.is_none() || items.len() >= want {
            break;
        }
    }
    Ok(serde_json::json!({ "requests": items, "nextCursor": cursor }))
}

/// Percent-encodes a query value (cursors are opaque and may hold `+`,
/// `/` or `=`).
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Credentials as JSON text: from the cache when fresh, else from the API
/// (and then cached).
fn fetch_credentials(id: &str) -> Result<String> {
    let client = connect()?;
    let path = format!("/requests/{}/credentials", seg(id)?);
    let v = runtime()?.block_on(client.call(Method::GET, &path, None))?;
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        if !v[k].is_string() {
            return Err(anyhow!(
                "the API's credentials answer has no `{k}`: is the API URL right? check `jit configure`"
            ));
        }
    }
    let text = v.to_string();
    cache::store(id, &text)?;
    Ok(text)
}

/// A waiting create's `credentials`, cached under its request id so
/// `jit exec ID`, `jit env ID` and `credential_process` use them at once.
fn keep_credentials(r: &Value) -> Result<()> {
    if let (Some(id), Some(c)) = (r["requestId"].as_str(), r.get("credentials"))
        && c["AccessKeyId"].is_string()
    {
        cache::store(id, &c.to_string())?;
    }
    Ok(())
}

/// `jit exec --request E`: create with `"wait": true`; the credentials come
/// in the answer when a rule approved it. A request that needs a person
/// is left pending, with how to use it once granted.
fn request_and_wait(entitlement: &str, duration: Option<String>, reason: String) -> Result<Value> {
    let client = connect()?;
    let mut body = json!({ "entitlement": entitlement, "justification": reason, "wait": true });
    if let Some(d) = duration {
        body["duration"] = duration_json(&d);
    }
    let r = runtime()?.block_on(client.call(Method::POST, "/requests", Some(&body)))?;
    keep_credentials(&r)?;
    let id = r["requestId"]
        .as_str()
        .ok_or_else(|| anyhow!("the API answered without a requestId"))?
        .to_string();
    if let Some(c) = r.get("credentials") {
        return Ok(c.clone());
    }
    let status = r["status"].as_str().unwrap_or("?");
    if status == "GRANTED" {
        if let Some(e) = r.get("credentialsError") {
            bail!(
                "request {id} is GRANTED but no credentials came with it: {}",
                e["message"].as_str().unwrap_or("?")
            );
        }
        return credentials_value(&id);
    }
    bail!(
        "request {id} is {status}, not granted yet (it needs an approver): run `jit exec {id} -- …` once `jit show {id}` says GRANTED"
    )
}

fn credentials_value(id: &str) -> Result<Value> {
    let text = match cache::fresh(id)? {
        Some(t) => t,
        None => fetch_credentials(id)?,
    };
    Ok(serde_json::from_str(&text)?)
}

fn env_pairs(creds: &Value) -> Result<Vec<(&'static str, String)>> {
    let get = |k: &str| {
        creds[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("credentials without `{k}`"))
    };
    Ok(vec![
        ("AWS_ACCESS_KEY_ID", get("AccessKeyId")?),
        ("AWS_SECRET_ACCESS_KEY", get("SecretAccessKey")?),
        ("AWS_SESSION_TOKEN", get("SessionToken")?),
        ("AWS_CREDENTIAL_EXPIRATION", get("Expiration")?),
    ])
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-.:".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn open_browser(url: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("xdg-open").is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("jit: xdg-open not found; open the URL above yourself");
        return Ok(());
    }
    std::process::Command::new("xdg-open")
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| anyhow!("cannot run xdg-open: {e}; open the URL above yourself"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(duration_json("900"), json!(900));
        assert_eq!(duration_json("1h"), json!("1h"));
    }

    #[test]
    fn cursors_are_escaped_in_the_query() {
        assert_eq!(query_escape("APPROVAL_PENDING"), "APPROVAL_PENDING");
        assert_eq!(query_escape("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(query_escape("é &"), "%C3%A9%20%26");
    }

    #[test]
    fn quoting_and_ids() {
        assert_eq!(shell_quote("AKIA123"), "AKIA123");
        assert_eq!(shell_quote("a b'c"), "'a b'\\''c'");
        assert!(seg("01KABC").is_ok());
        assert!(seg("../etc").is_err());
        assert!(seg("").is_err());
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
