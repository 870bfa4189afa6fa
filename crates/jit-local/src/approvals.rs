//! Approvals in local mode: the same notifier, confirmation page, Slack
//! interactivity and `/jit` command the Lambdas run (`jit-approvals`), wired
//! to local stand-ins.
//!
//! - Slack: the real Web API client against `--slack-url` (Slack itself by
//!   default, or a loopback fake) when a bot token is given; the Slack
//!   routes answer when a signing secret is given.
//! - Email: SES when `--ses-from` names a verified sender (AWS settings from
//!   the environment, `AWS_ENDPOINT_URL` for moto); otherwise one `.eml`
//!   file per message in `<data-dir>/outbox/`, with the links printed on
//!   the console.
//! - The link key: `JIT_LINK_SECRET`, or a random one kept in
//!   `<data-dir>/link-secret` (mode 0600) so links survive a restart.
//! - Deferred Slack work runs on this process's runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use jit_approvals::{ApprovalNotifier, Approvals, Deferral, MailSettings};
use jit_core::channels::{ChannelError, ChatApi, Email, Mailer};
use jit_core::links::LinkKey;
use jit_core::ports::{ApprovalNotice, Clock, Notifier, NotifyError, RequestStore, Secret};
use jit_core::{AccessRequest, Broker, Catalog};

/// Approval settings (flags and environment in `main`).
#[derive(Clone, Default)]
pub struct ApprovalsConfig {
    /// Slack's Web API base (`--slack-url`); `https://slack.com/api` when
    /// only a token is given.
    pub slack_url: Option<String>,
    pub slack_signing_secret: Option<Secret>,
    pub slack_bot_token: Option<Secret>,
    /// The link key; generated and kept in the data directory when absent.
    pub link_secret: Option<Secret>,
    /// The base URL links point at; `http://<addr>` by default.
    pub public_url: Option<String>,
    /// Send email through SES from this verified sender.
    pub ses_from: Option<String>,
    /// Replace the chat client (tests).
    pub chat: Option<Arc<dyn ChatApi>>,
    /// Replace the mailer (tests).
    pub mailer: Option<Arc<dyn Mailer>>,
}

impl std::fmt::Debug for ApprovalsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApprovalsConfig")
            .field("slack_url", &self.slack_url)
            .field("slack_signing_secret", &self.slack_signing_secret)
            .field("slack_bot_token", &self.slack_bot_token)
            .field("link_secret", &self.link_secret)
            .field("public_url", &self.public_url)
            .field("ses_from", &self.ses_from)
            .finish_non_exhaustive()
    }
}

/// The sender the local outbox writes.
pub const LOCAL_MAIL_FROM: &str = "jit-access@localhost";

/// The approvals side of a running `jit-local`.
pub struct LocalApprovals {
    pub handler: Arc<Approvals>,
    pub notifier: ApprovalNotifier,
    /// What `main` prints at start.
    pub summary: Vec<String>,
    /// One sweep at a time: the timer's and the one a break-glass create
    /// starts at once, so an announcement is sent once.
    sweeping: Arc<tokio::sync::Mutex<()>>,
}

/// Reads `JIT_LINK_SECRET`'s stand-in from the data directory, creating it.
fn link_key(cfg: &ApprovalsConfig, data_dir: &Path) -> Result<(LinkKey, String), String> {
    if let Some(s) = &cfg.link_secret {
        let key = LinkKey::from_secret(s.expose()).map_err(|e| format!("JIT_LINK_SECRET {e}"))?;
        return Ok((key, "from JIT_LINK_SECRET".into()));
    }
    let path = data_dir.join("link-secret");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_private(&path, &hex).map_err(|e| format!("{}: {e}", path.display()))?;
            hex
        }
    };
    let key = LinkKey::from_secret(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((key, format!("generated, kept in {}", path.display())))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    crate::private_fs::write(path, text.as_bytes())
}

impl LocalApprovals {
    /// Builds the notifier (before the task steps, which use it) and,
    /// given the broker, the callback handler.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        cfg: &ApprovalsConfig,
        store: Arc<dyn RequestStore>,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        data_dir: &Path,
        default_public_url: &str,
        print: bool,
    ) -> Result<(ApprovalNotifier, Vec<String>), String> {
        let mut summary = vec![];
        let (links, key_note) = link_key(cfg, data_dir)?;
        summary.push(format!("link key:  {key_note}"));
        let public_url = cfg
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url.to_string());
        let chat: Option<Arc<dyn ChatApi>> = match (&cfg.chat, &cfg.slack_bot_token) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(token)) => {
                let url = cfg
                    .slack_url
                    .clone()
                    .unwrap_or_else(|| jit_aws::DEFAULT_SLACK_URL.to_string());
                summary.push(format!("slack:     {url}"));
                Some(Arc::new(
                    jit_aws::SlackWebApi::new(&url, token.clone())
                        .map_err(|e| format!("--slack-url: {e}"))?,
                ))
            }
            (None, None) if cfg.slack_url.is_some() => {
                return Err("--slack-url needs a bot token: set JIT_SLACK_BOT_TOKEN".to_string());
            }
            (None, None) => {
                summary.push("slack:     off (set JIT_SLACK_BOT_TOKEN)".into());
                None
            }
        };
        let mail = match (&cfg.mailer, &cfg.ses_from) {
            (Some(m), from) => MailSettings {
                mailer: m.clone(),
                from: from.clone().unwrap_or_else(|| LOCAL_MAIL_FROM.into()),
            },
            (None, Some(from)) => {
                summary.push(format!("email:     SES from {from}"));
                MailSettings {
                    mailer: Arc::new(LazySes::default()),
                    from: from.clone(),
                }
            }
            (None, None) => {
                let dir = data_dir.join("outbox");
                summary.push(format!(
                    "email:     {} (one .eml per message)",
                    dir.display()
                ));
                MailSettings {
                    mailer: Arc::new(
                        OutboxMailer::open(dir.clone(), print)
                            .map_err(|e| format!("{}: {e}", dir.display()))?,
                    ),
                    from: LOCAL_MAIL_FROM.into(),
                }
            }
        };
        if cfg.slack_signing_secret.is_some() {
            summary.push(format!(
                "slack app: {public_url}/slack/interactions and {public_url}/slack/commands"
            ));
        }
        Ok((
            ApprovalNotifier {
                store,
                catalog,
                clock,
                links,
                public_url,
                chat,
                mail: Some(mail),
            },
            summary,
        ))
    }

    /// The callback handler over the app's broker.
    pub fn new(
        cfg: &ApprovalsConfig,
        notifier: ApprovalNotifier,
        broker: &Broker,
        summary: Vec<String>,
    ) -> LocalApprovals {
        let handler = Arc::new(Approvals {
            broker: broker.clone(),
            notifier: notifier.clone(),
            slack_signing_secret: cfg.slack_signing_secret.clone(),
            deferral: Deferral::InProcess,
        });
        LocalApprovals {
            handler,
            notifier,
            summary,
            sweeping: Arc::default(),
        }
    }

    /// One reminder sweep (the background timer calls it; tests too).
    pub async fn sweep(&self) -> Result<jit_approvals::reminders::SweepReport, String> {
        let _one = self.sweeping.lock().await;
        jit_approvals::reminders::sweep(&self.notifier)
            .await
            .map_err(|e| e.to_string())
    }

    /// Announces break-glass requests now, in the background, instead of
    /// at the next 30-second sweep: called after a break-glass create.
    pub fn announce_break_glass_now(&self) {
        let notifier = self.notifier.clone();
        let sweeping = self.sweeping.clone();
        tokio::spawn(async move {
            let _one = sweeping.lock().await;
            if let Err(e) = jit_approvals::break_glass::sweep(&notifier).await {
                tracing::warn!(error = %e, "announcing a break-glass request failed; the sweep tries again");
            }
        });
    }
}

/// SES, with the AWS configuration loaded from the environment on first use.
#[derive(Default)]
pub struct LazySes(tokio::sync::OnceCell<jit_aws::SesMailer>);

#[async_trait]
impl Mailer for LazySes {
    async fn send(&self, mail: &Email) -> Result<(), ChannelError> {
        let ses = self
            .0
            .get_or_init(|| async {
                jit_aws::SesMailer::from_config(&jit_aws::sdk::load_config().await)
            })
            .await;
        ses.send(mail).await
    }
}

/// Emails as `.eml` files in the outbox, and on the console with the links.
pub struct OutboxMailer {
    dir: PathBuf,
    print: bool,
    n: AtomicU64,
}

impl OutboxMailer {
    pub fn open(dir: PathBuf, print: bool) -> std::io::Result<OutboxMailer> {
        crate::private_fs::dir(&dir)?;
        Ok(OutboxMailer {
            dir,
            print,
            n: AtomicU64::new(0),
        })
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Email) -> Result<(), ChannelError> {
        let now = chrono::Utc::now();
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let who: String = mail
            .to
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@.-_".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = self.dir.join(format!(
            "{}-{n:04}-{who}.eml",
            now.format("%Y%m%dT%H%M%S%.3fZ")
        ));
        let text = jit_approvals::render::to_mime(mail, now);
        let written = path.clone();
        tokio::task::spawn_blocking(move || crate::private_fs::write(&written, text.as_bytes()))
            .await
            .map_err(|e| ChannelError::Transient(format!("{}: {e}", path.display())))?
            .map_err(|e| ChannelError::Transient(format!("{}: {e}", path.display())))?;
        if self.print {
            // Errors ignored on purpose: a closed stdout (`jit-local | head`)
            // must not take the server down; the .eml file is the record.
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[email to {}] {}", mail.to, mail.subject);
            for line in mail.text.lines().filter(|l| l.starts_with("http")) {
                let _ = writeln!(out, "    review and decide: {line}");
            }
            let _ = writeln!(out, "    (saved as {})", path.display());
        }
        Ok(())
    }
}

/// Tells approvers through two notifiers: the JSON-lines outbox and the
/// approval notifier (Slack, email).
pub struct Both(pub Arc<dyn Notifier>, pub Arc<dyn Notifier>);

#[async_trait]
impl Notifier for Both {
    async fn approval_requested(&self, notice: &ApprovalNotice) -> Result<(), NotifyError> {
        let a = self.0.approval_requested(notice).await;
        let b = self.1.approval_requested(notice).await;
        a.and(b)
    }

    async fn decided(&self, request: &AccessRequest) -> Result<(), NotifyError> {
        let a = self.0.decided(request).await;
        let b = self.1.decided(request).await;
        a.and(b)
    }
}

/// Serves one approval-callback request (no API key: the signed link or
/// Slack's signature is the authentication).
pub async fn serve<B>(
    approvals: Option<&LocalApprovals>,
    parts: http::request::Parts,
    body: B,
) -> http::Response<String>
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::{BodyExt, Limited};
    let not_found = || {
        let mut r = http::Response::new("no such endpoint".to_string());
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        r
    };
    let Some(a) = approvals else {
        return not_found();
    };
    let body = match Limited::new(body, jit_approvals::handler::MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            let mut r = http::Response::new("body too large or unreadable".to_string());
            *r.status_mut() = http::StatusCode::PAYLOAD_TOO_LARGE;
            return r;
        }
    };
    let req = jit_api::ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    a.handler.handle(req).await
}
