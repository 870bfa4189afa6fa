//! The approval channels on AWS, as `slack-notify` and `approval-callback`
//! build them at init: secrets read once from Secrets Manager, Slack's Web
//! API with the bot token, SES v2 from a verified sender, links pointing at
//! the deployed API.
//!
//! | env | meaning |
//! |---|---|
//! | `JIT_LINK_SECRET_ID` | required: Secrets Manager id of the link-signing key (≥ 32 characters) |
//! | `JIT_PUBLIC_URL` | the API's base URL with its stage (`https://…/v1`) |
//! | `JIT_PUBLIC_URL_ID` | or: a Secrets Manager secret holding it (the template writes the API's URL there: a function cannot name its own API without a dependency cycle); one of the two is required with email |
//! | `JIT_SLACK_BOT_TOKEN_ID` | Secrets Manager id of the Slack bot token; Slack off without it |
//! | `JIT_SLACK_SIGNING_SECRET_ID` | Secrets Manager id of the Slack signing secret (callback only) |
//! | `JIT_SLACK_URL` | Slack's Web API base, default `https://slack.com/api` |
//! | `JIT_EMAIL_FROM` | the SES-verified sender; email off without it |

use std::sync::Arc;

use jit_approvals::{ApprovalNotifier, MailSettings};
use jit_core::Catalog;
use jit_core::channels::{ChatApi, SecretSource};
use jit_core::links::LinkKey;
use jit_core::ports::{Clock, RequestStore, Secret};

use crate::ConfigError;

/// Where the approval channels' settings and secrets are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalsEnv {
    pub link_secret_id: String,
    pub public_url: Option<String>,
    pub public_url_id: Option<String>,
    pub slack_bot_token_id: Option<String>,
    pub slack_signing_secret_id: Option<String>,
    pub slack_url: String,
    pub email_from: Option<String>,
}

impl ApprovalsEnv {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<ApprovalsEnv, ConfigError> {
        let nonempty = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let link_secret_id = nonempty("JIT_LINK_SECRET_ID").ok_or(ConfigError {
            var: "JIT_LINK_SECRET_ID",
            message: "is required: the Secrets Manager secret holding the approval-link key".into(),
        })?;
        let public_url = nonempty("JIT_PUBLIC_URL");
        if let Some(u) = &public_url
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            return Err(ConfigError {
                var: "JIT_PUBLIC_URL",
                message: format!("`{u}` is not an http(s) URL"),
            });
        }
        let email_from = nonempty("JIT_EMAIL_FROM");
        if let Some(f) = &email_from
            && !f.contains('@')
        {
            return Err(ConfigError {
                var: "JIT_EMAIL_FROM",
                message: format!("`{f}` is not an email address"),
            });
        }
        let public_url_id = nonempty("JIT_PUBLIC_URL_ID");
        if email_from.is_some() && public_url.is_none() && public_url_id.is_none() {
            return Err(ConfigError {
                var: "JIT_PUBLIC_URL",
                message: "(or JIT_PUBLIC_URL_ID) is required with JIT_EMAIL_FROM: emailed links point at it".into(),
            });
        }
        Ok(ApprovalsEnv {
            link_secret_id,
            public_url,
            public_url_id,
            slack_bot_token_id: nonempty("JIT_SLACK_BOT_TOKEN_ID"),
            slack_signing_secret_id: nonempty("JIT_SLACK_SIGNING_SECRET_ID"),
            slack_url: nonempty("JIT_SLACK_URL")
                .unwrap_or_else(|| jit_aws::DEFAULT_SLACK_URL.to_string()),
            email_from,
        })
    }
}

/// What init builds: the notifier, and Slack's signing secret when the
/// callback needs it.
pub struct ApprovalChannels {
    pub notifier: ApprovalNotifier,
    pub slack_signing_secret: Option<Secret>,
}

/// Reads the secrets (once) and builds the channels.
pub async fn channels_from_env(
    env: &ApprovalsEnv,
    sdk: &jit_aws::SdkConfig,
    store: Arc<dyn RequestStore>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
) -> Result<ApprovalChannels, lambda_runtime::Error> {
    let secrets = jit_aws::SecretsManagerSource::from_config(sdk);
    let read = |id: String, var: &'static str| {
        let secrets = secrets.clone();
        async move { secrets.secret(&id).await.map_err(|e| format!("{var}: {e}")) }
    };
    let link_secret = read(env.link_secret_id.clone(), "JIT_LINK_SECRET_ID").await?;
    let links = LinkKey::from_secret(link_secret.expose())
        .map_err(|e| format!("JIT_LINK_SECRET_ID: the secret {e}"))?;
    let chat: Option<Arc<dyn ChatApi>> = match &env.slack_bot_token_id {
        None => None,
        Some(id) => {
            let token = read(id.clone(), "JIT_SLACK_BOT_TOKEN_ID").await?;
            Some(Arc::new(
                jit_aws::SlackWebApi::new(&env.slack_url, token)
                    .map_err(|e| format!("JIT_SLACK_URL: {e}"))?,
            ))
        }
    };
    let slack_signing_secret = match &env.slack_signing_secret_id {
        None => None,
        Some(id) => Some(read(id.clone(), "JIT_SLACK_SIGNING_SECRET_ID").await?),
    };
    let public_url = match (&env.public_url, &env.public_url_id) {
        (Some(u), _) => u.clone(),
        (None, Some(id)) => {
            let u = read(id.clone(), "JIT_PUBLIC_URL_ID").await?;
            let u = u.expose().trim().to_string();
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err("JIT_PUBLIC_URL_ID: the secret is not an http(s) URL".into());
            }
            u
        }
        (None, None) => String::new(),
    };
    let mail = env.email_from.as_ref().map(|from| MailSettings {
        mailer: Arc::new(jit_aws::SesMailer::from_config(sdk)),
        from: from.clone(),
    });
    Ok(ApprovalChannels {
        notifier: ApprovalNotifier {
            store,
            catalog,
            clock,
            links,
            public_url,
            chat,
            mail,
        },
        slack_signing_secret,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<ApprovalsEnv, ConfigError> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ApprovalsEnv::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn settings_are_checked_and_errors_name_the_variable() {
        let ok = env(&[
            ("JIT_LINK_SECRET_ID", "jit/link"),
            (
                "JIT_PUBLIC_URL",
                "https://abc.execute-api.eu-west-1.amazonaws.com/Prod",
            ),
            ("JIT_EMAIL_FROM", "jit@example.com"),
        ])
        .unwrap();
        assert_eq!(ok.slack_url, "https://slack.com/api");
        assert_eq!(ok.slack_bot_token_id, None);
        let by_secret = env(&[
            ("JIT_LINK_SECRET_ID", "jit/link"),
            ("JIT_PUBLIC_URL_ID", "jit-public-url"),
            ("JIT_EMAIL_FROM", "jit@example.com"),
        ])
        .unwrap();
        assert_eq!(by_secret.public_url_id.as_deref(), Some("jit-public-url"));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "JIT_LINK_SECRET_ID"),
            (
                &[("JIT_LINK_SECRET_ID", "x"), ("JIT_PUBLIC_URL", "ftp://x")],
                "JIT_PUBLIC_URL",
            ),
            (
                &[
                    ("JIT_LINK_SECRET_ID", "x"),
                    ("JIT_EMAIL_FROM", "jit@example.com"),
                ],
                "JIT_PUBLIC_URL",
            ),
            (
                &[
                    ("JIT_LINK_SECRET_ID", "x"),
                    ("JIT_PUBLIC_URL", "https://x"),
                    ("JIT_EMAIL_FROM", "nobody"),
                ],
                "JIT_EMAIL_FROM",
            ),
        ];
        for (pairs, var) in cases {
            assert_eq!(env(pairs).unwrap_err().var, *var, "{pairs:?}");
        }
    }
}
