//! Local stand-ins for the access ports around a grant: inline role
//! policies (the early-revoke denies) recorded in a file, and a console
//! sign-in that hands out a clearly fake URL. With `--grants aws` the real
//! adapters from `jit-aws` replace both (see [`aws_grants`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use jit_core::RoleArn;
use jit_core::grant_ports::{AccountInspector, ConsoleSignin, RoleRevoker};
use jit_core::ports::{CredentialIssuer, GrantError, IssuedCredentials, PolicyAttacher, Secret};

/// Inline role policies, kept in `<data-dir>/iam-role-policies.json`
/// (rewritten atomically): `{role ARN: {policy name: document}}`.
pub struct LocalRoleRevoker {
    path: PathBuf,
    state: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl LocalRoleRevoker {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let state = crate::json_file::load(&path)?;
        Ok(LocalRoleRevoker {
            path,
            state: Mutex::new(state),
        })
    }

    /// Every (role ARN, policy name, document), for tests and operators.
    pub fn policies(&self) -> Vec<(String, String, String)> {
        self.state
            .lock()
            .expect("role policies lock")
            .iter()
            .flat_map(|(role, ps)| {
                ps.iter()
                    .map(move |(n, d)| (role.clone(), n.clone(), d.clone()))
            })
            .collect()
    }

    fn update(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, BTreeMap<String, String>>),
    ) -> Result<(), GrantError> {
        let mut state = self.state.lock().expect("role policies lock");
        let mut next = state.clone();
        change(&mut next);
        next.retain(|_, ps| !ps.is_empty());
        crate::json_file::replace(&self.path, &next)?;
        *state = next;
        Ok(())
    }
}

#[async_trait]
impl RoleRevoker for LocalRoleRevoker {
    async fn put_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        serde_json::from_str::<serde_json::Value>(document)
            .map_err(|e| GrantError::Other(format!("MalformedPolicyDocument: {e}")))?;
        self.update(|s| {
            s.entry(role.to_string())
                .or_default()
                .insert(name.to_string(), document.to_string());
        })
    }

    async fn get_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
    ) -> Result<Option<String>, GrantError> {
        Ok(self
            .state
            .lock()
            .expect("role policies lock")
            .get(role.as_str())
            .and_then(|ps| ps.get(name).cloned()))
    }

    async fn delete_role_policy(&self, role: &RoleArn, name: &str) -> Result<(), GrantError> {
        self.update(|s| {
            if let Some(ps) = s.get_mut(role.as_str()) {
                ps.remove(name);
            }
        })
    }
}

/// A console sign-in URL of the right shape whose token is obviously fake
/// (`LOCALFAKE…`): the local issuer's credentials sign nobody in.
pub struct LocalConsole {
    endpoint: String,
}

impl LocalConsole {
    pub fn new(endpoint: impl Into<String>) -> Self {
        LocalConsole {
            endpoint: endpoint.into(),
        }
    }
}

#[async_trait]
impl ConsoleSignin for LocalConsole {
    async fn signin_url(&self, creds: &IssuedCredentials) -> Result<Secret, GrantError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let token: String = nonce.iter().map(|b| format!("{b:02X}")).collect();
        Ok(Secret::new(format!(
            "{}?Action=login&Issuer=jit-access&Destination=https%3A%2F%2Fconsole.aws.amazon.com%2F&SigninToken=LOCALFAKE-{}-{token}",
            self.endpoint, creds.access_key_id
        )))
    }
}

/// The grant adapters for `--grants aws`: STS, IAM and the federation
/// endpoint, all from one SDK configuration (ambient credentials;
/// `AWS_ENDPOINT_URL` honoured).
pub struct AwsGrants {
    pub issuer: Arc<dyn CredentialIssuer>,
    pub attacher: Arc<dyn PolicyAttacher>,
    pub revoker: Arc<dyn RoleRevoker>,
    pub console: Arc<dyn ConsoleSignin>,
    pub inspector: Arc<dyn AccountInspector>,
    /// IAM listed for the reconciler.
    pub inventory: Arc<dyn jit_core::ledger::IamInventory>,
    /// Who assumes the catalog's roles (`GET /catalog/check`): the ambient
    /// identity when it could be found.
    pub principals: Vec<jit_core::catalog_check::BrokerPrincipal>,
}

/// What `jit-local --grants aws` runs on: the adapters over the ambient
/// SDK configuration (the full default credentials chain — profiles, SSO,
/// environment — as on a laptop). One function so the binary and its
/// end-to-end tests cannot drift apart.
pub async fn ambient_aws_grants(
    federation_url: &str,
) -> Result<AwsGrants, jit_aws::console::InvalidFederationUrl> {
    let sdk = jit_aws::sdk::load_config().await;
    let mut grants = aws_grants(&sdk, federation_url)?;
    match jit_aws::caller_identity(&sdk).await {
        // Not a role or user (a root session): trust is then not judged.
        Ok(arn) => {
            grants.principals = jit_core::catalog_check::BrokerPrincipal::parse(&arn)
                .ok()
                .into_iter()
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, "who the ambient credentials are could not be found; the catalog check will not judge trust policies")
        }
    }
    Ok(grants)
}

/// Builds the AWS adapters. `federation_url` is `JIT_FEDERATION_URL`.
pub fn aws_grants(
    sdk: &jit_aws::SdkConfig,
    federation_url: &str,
) -> Result<AwsGrants, jit_aws::console::InvalidFederationUrl> {
    Ok(AwsGrants {
        issuer: Arc::new(jit_aws::StsIssuer::from_config(sdk)),
        attacher: Arc::new(jit_aws::IamAttacher::from_config(sdk)),
        revoker: Arc::new(jit_aws::IamRoleRevoker::from_config(sdk)),
        console: Arc::new(jit_aws::FederationSignin::new(federation_url)?),
        inspector: Arc::new(jit_aws::IamInspector::from_config(sdk)),
        inventory: Arc::new(jit_aws::IamLister::from_config(sdk)),
        principals: vec![],
    })
}
