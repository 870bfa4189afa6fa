//! `jit-local`: the whole broker on one machine, with no AWS account.
//!
//! The same core and the same API handlers the Lambda runs, behind a small
//! hyper server on loopback, with the embedded SQLite store. It adds only what
//! a deployed API Gateway would do in front of the Lambda: the API key check
//! and establishing who the caller is (here from `x-jit-user` /
//! `x-jit-groups`, which the deployed API never accepts).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jit_api::{ApiRequest, MAX_BODY_BYTES};
use jit_core::ports::{Clock, RequestStore, SystemClock, Workflow};
use jit_core::service::Settings;
use jit_core::{AuthSource, Broker, Caller, Catalog, Identity, Principal, ServiceError};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

pub mod access;
pub mod approvals;
pub mod asl;
pub mod catalog_cmd;
pub mod console;
pub mod grants;
pub mod iam_state;
pub mod identity_center;
mod json_file;
pub mod lock;
pub mod notify;
pub mod private_fs;
pub mod reconcile_cmd;
pub mod test_clock;
pub mod workflow;

/// The data directory when none is given.
pub const DEFAULT_DATA_DIR: &str = "./.jit";
/// The requests, their audit trail and the grant ledger, in the data dir.
pub const STORE_FILE: &str = "jit.db";
/// The local stand-in for managed-policy attachments, in the data dir.
pub const ATTACHMENTS_FILE: &str = "iam-attachments.json";
/// The local stand-in for inline role policies, in the data dir.
pub const ROLE_POLICIES_FILE: &str = "iam-role-policies.json";
/// The local fake Identity Center's account assignments.
pub const IDC_ASSIGNMENTS_FILE: &str = "idc-assignments.json";
/// The local stand-in for inline policies on users and roles named as
/// attach grants name them (scoped attach grants' `jit-<id>`), in the data
/// dir beside [`ATTACHMENTS_FILE`].
pub const PRINCIPAL_POLICIES_FILE: &str = "iam-principal-policies.json";

/// Where grants are made: `local` (clearly fake credentials, IAM recorded
/// in the data dir) or `aws` (the real STS and IAM).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantsMode {
    Local,
    Aws,
}

impl GrantsMode {
    pub fn label(self) -> &'static str {
        match self {
            GrantsMode::Local => "local",
            GrantsMode::Aws => "aws",
        }
    }
}

/// Prints a command's answer. A closed stdout (the reading end of a pipe
/// went away) is not an error worth a panic.
pub fn print_out(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Header carrying the caller's identity in local mode.
pub const USER_HEADER: &str = "x-jit-user";
/// Header carrying the caller's groups (comma-separated) in local mode.
pub const GROUPS_HEADER: &str = "x-jit-groups";
/// The API key header, as API Gateway names it.
pub const API_KEY_HEADER: &str = "x-api-key";
/// `jit-local`'s own route (with the API key): how far behind the engine
/// is, for operators and load tests (`jit-bench` waits on it for the drain).
pub const ENGINE_STATUS_PATH: &str = "/local/engine";
/// What a caller without `x-jit-user` is told to do.
pub const LOCAL_IDENTIFY_HINT: &str = "send `x-jit-user: <your email>` (and `x-jit-groups: <g1,g2>` for your groups), or name the `requester` in the body";
/// The API's OpenAPI description, served as JSON (with the API key).
pub const OPENAPI_PATH: &str = "/openapi.json";
/// `docs/openapi.yaml`, built in.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

/// `GET /openapi.json`: the YAML converted once, on first use.
fn openapi_json(method: &http::Method) -> Response<String> {
    static JSON: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    if method != http::Method::GET {
        return jit_api::error_response(&jit_api::ApiError::MethodNotAllowed(&[http::Method::GET]));
    }
    let doc = JSON.get_or_init(|| {
        serde_yaml_ng::from_str(OPENAPI_YAML).expect("docs/openapi.yaml is valid YAML (tested)")
    });
    jit_api::json_response(StatusCode::OK, doc)
}

/// How the local API key appears as a trusted caller in records.
pub const LOCAL_TRUSTED_CALLER: &str = "jit-local-api-key";

/// Validated start-up configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub catalog: CatalogSource,
    /// `None`: generate one at start (`jit-local` itself passes the key an
    /// earlier start kept in the data dir: see [`stored_api_key`]).
    pub api_key: Option<String>,
    pub demo_mode: bool,
    /// Print approval notices on the console (the outbox file is always written).
    pub print_notifications: bool,
    /// Run the engine's background driver (tests drive it by hand).
    pub run_driver: bool,
    /// Creates are refused (`503`, `Retry-After`) while the engine's
    /// backlog ([`jit_engine::Engine::backlog`]) is at least this.
    pub max_backlog: usize,
}

/// `--max-backlog`'s default: about seven seconds of the engine's work at
/// its measured pace (docs/BENCHMARKS.md), small enough that a create
/// accepted under load still runs soon, large enough that bursts pass.
pub const DEFAULT_MAX_BACKLOG: usize = 10_000;

/// What a create refused for backpressure tells the client to wait, in
/// seconds: the backlog drains by thousands a second.
pub const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

/// Ports to use instead of the local defaults.
#[derive(Default)]
pub struct Overrides {
    pub issuer: Option<Arc<dyn jit_core::ports::CredentialIssuer>>,
    pub attacher: Option<Arc<dyn jit_core::ports::PolicyAttacher>>,
    pub revoker: Option<Arc<dyn jit_core::grant_ports::RoleRevoker>>,
    pub console: Option<Arc<dyn jit_core::grant_ports::ConsoleSignin>>,
    pub inspector: Option<Arc<dyn jit_core::grant_ports::AccountInspector>>,
    /// How the reconciler lists IAM (with `attacher` and `revoker`).
    pub inventory: Option<Arc<dyn jit_core::ledger::IamInventory>>,
    /// Recorded in the data directory's lock file, so a hand reconcile
    /// works on the same IAM (`local` when not set).
    pub grants: Option<GrantsMode>,
    /// The AI policy generator's model (Bedrock Converse with
    /// `--bedrock-model-id`; a loopback fake in tests). Without it, scopes
    /// in words are refused (`400` naming `scope.describe`).
    pub policy_drafter: Option<Arc<dyn jit_core::policy::PolicyDrafter>>,
    /// A second opinion on every generated policy, as IAM Access Analyzer
    /// gives it deployed. No flag: `jit-local` validates without it (tests
    /// put a fake here).
    pub policy_analyzer: Option<Arc<dyn jit_core::policy::PolicyAnalyzer>>,
    /// Who assumes the catalog's roles, for `GET /catalog/check` (with
    /// `inspector`): `--grants aws` uses the ambient identity.
    pub broker_principals: Vec<jit_core::catalog_check::BrokerPrincipal>,
    /// IAM Identity Center (permission-set grants, `idc:` groups) instead
    /// of the catalog's `identity_center.local_directory` fake.
    pub identity_center: Option<IdcPorts>,
}

/// Identity Center's two ports, as `--grants aws` builds them.
#[derive(Clone)]
pub struct IdcPorts {
    pub assignments: Arc<dyn jit_core::identity_center::AssignmentManager>,
    pub directory: Arc<dyn jit_core::identity_center::GroupDirectory>,
}

impl Overrides {
    /// `--grants aws`: every grant port on the AWS adapters.
    pub fn aws(grants: access::AwsGrants) -> Overrides {
        Overrides {
            issuer: Some(grants.issuer),
            attacher: Some(grants.attacher),
            revoker: Some(grants.revoker),
            console: Some(grants.console),
            inspector: Some(grants.inspector),
            inventory: Some(grants.inventory),
            grants: Some(GrantsMode::Aws),
            identity_center: None,
            broker_principals: grants.principals,
            policy_drafter: None,
            policy_analyzer: None,
        }
    }
}

/// Everything a running server needs.
pub struct App {
    pub broker: Broker,
    api_key: String,
    engine: Option<Arc<jit_engine::Engine>>,
    tasks: Option<jit_core::tasks::Tasks>,
    attacher: Option<Arc<grants::LocalAttacher>>,
    role_policies: Option<Arc<access::LocalRoleRevoker>>,
    resumed: Option<jit_engine::ResumeReport>,
    driver: Option<jit_engine::DriverHandle>,
    approvals: Option<approvals::LocalApprovals>,
    /// `--test-clock`: the clock `POST /_test/clock/advance` moves.
    test_clock: Option<Arc<test_clock::TestClock>>,
    /// Held while the app lives: one server per data directory.
    _lock: Option<lock::DataDirLock>,
    /// One reconciler pass at a time (the minute's and a hand one).
    reconciling: tokio::sync::Mutex<()>,
    max_backlog: usize,
    /// Whether creates are being refused (for logging the change only).
    refusing: AtomicBool,
    /// The web console at `/` and `/ui/…`.
    console: jit_console::Console,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the catalog {path}: {source}")]
    CatalogRead {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Catalog(#[from] jit_core::CatalogError),
    #[error("cannot open the store in {path}: {detail}")]
    Store { path: String, detail: String },
    #[error("the API key must be at least 16 visible ASCII characters")]
    WeakApiKey,
    #[error("the approval state machine definition is refused: {0}")]
    Definition(String),
    #[error("cannot create {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("approvals: {0}")]
    Approvals(String),
    #[error("{0}")]
    Locked(#[from] lock::LockError),
}

/// The example catalog, built in: what `jit-local` serves when no
/// `--catalog` is given, so that it starts from any directory (a relative
/// default path only worked from the repository's root).
pub const EMBEDDED_CATALOG: &str = include_str!("../../../config/catalog.example.yaml");
/// How the built-in catalog is named in messages and the banner.
pub const EMBEDDED_CATALOG_NAME: &str = "config/catalog.example.yaml (built in)";

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    /// A YAML file (`--catalog`).
    File(PathBuf),
    /// [`EMBEDDED_CATALOG`].
    Embedded,
}

impl From<PathBuf> for CatalogSource {
    fn from(p: PathBuf) -> Self {
        CatalogSource::File(p)
    }
}

impl CatalogSource {
    /// Loads and validates it, naming the file in any error.
    pub fn load(&self) -> Result<Catalog, StartError> {
        match self {
            CatalogSource::File(p) => load_catalog(p),
            CatalogSource::Embedded => Ok(Catalog::parse(EMBEDDED_CATALOG, EMBEDDED_CATALOG_NAME)?),
        }
    }

    /// For the banner and messages.
    pub fn describe(&self) -> String {
        match self {
            CatalogSource::File(p) => p.display().to_string(),
            CatalogSource::Embedded => EMBEDDED_CATALOG_NAME.to_string(),
        }
    }
}

/// The key an earlier start kept in `<data-dir>/api-key`, when it is there
/// and still a valid key: reusing it keeps `jit configure --local`, scripts
/// and `$(cat .jit/api-key)` working across restarts.
pub fn stored_api_key(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(API_KEY_FILE)).ok()?;
    let key = text.trim();
    valid_api_key(key).then(|| key.to_string())
}

/// The file in the data dir that holds the API key (mode 0600).
pub const API_KEY_FILE: &str = "api-key";

fn valid_api_key(key: &str) -> bool {
    key.len() >= 16 && key.chars().all(|c| c.is_ascii_graphic())
}

/// The catalog's fake Identity Center (`identity_center.local_directory`),
/// with its assignments in the data directory; `None` when the catalog
/// configures none.
pub(crate) fn local_identity_center(
    catalog: &Catalog,
    data_dir: &Path,
) -> Result<Option<IdcPorts>, StartError> {
    let Some(dir) = catalog
        .identity_center()
        .and_then(|i| i.local_directory.clone())
    else {
        return Ok(None);
    };
    let mut accounts: Vec<jit_core::AccountId> = vec![];
    for e in catalog.entitlements() {
        if let jit_core::GrantTarget::PermissionSet { accounts: list, .. } = &e.target {
            for a in list {
                if !accounts.contains(a) {
                    accounts.push(a.clone());
                }
            }
        }
    }
    let path = data_dir.join(IDC_ASSIGNMENTS_FILE);
    let local = Arc::new(
        identity_center::LocalIdentityCenter::open(dir, accounts, path.clone()).map_err(|e| {
            StartError::Store {
                path: path.display().to_string(),
                detail: e.to_string(),
            }
        })?,
    );
    Ok(Some(IdcPorts {
        assignments: local.clone(),
        directory: local,
    }))
}

/// Reads and validates the catalog file, naming the file in any error.
pub fn load_catalog(path: &Path) -> Result<Catalog, StartError> {
    let text = std::fs::read_to_string(path).map_err(|source| StartError::CatalogRead {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Catalog::parse(&text, &path.display().to_string())?)
}

/// A fresh random API key (32 hex characters, 128 bits).
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl App {
    /// Builds the app from validated parts. The caller picks the store,
    /// workflow and clock, so tests can inject a manual clock.
    pub fn new(
        catalog: Catalog,
        store: Arc<dyn RequestStore>,
        workflow: Arc<dyn Workflow>,
        clock: Arc<dyn Clock>,
        api_key: String,
        demo_mode: bool,
    ) -> Result<App, StartError> {
        if !valid_api_key(&api_key) {
            return Err(StartError::WeakApiKey);
        }
        let broker = Broker {
            store,
            workflow,
            catalog: Arc::new(catalog),
            clock,
            settings: Settings { demo_mode },
            grants: None,
            policy: Some(Arc::new(jit_policy::Deterministic)),
        };
        let console =
            console::local_console(&broker, &api_key, "the key this app was given".into());
        Ok(App {
            broker,
            console,
            api_key,
            engine: None,
            tasks: None,
            attacher: None,
            role_policies: None,
            resumed: None,
            driver: None,
            approvals: None,
            test_clock: None,
            _lock: None,
            reconciling: Default::default(),
            max_backlog: DEFAULT_MAX_BACKLOG,
            refusing: AtomicBool::new(false),
        })
    }

    /// Opens the data directory, store and engine and builds the app from a
    /// config, on the system clock, with the engine's background driver.
    pub fn from_config(cfg: &Config) -> Result<(App, String), StartError> {
        let (app, key) = App::build(cfg, Arc::new(SystemClock))?;
        Ok((app, key))
    }

    /// Like [`App::from_config`] with the clock chosen by the caller (tests
    /// fast-forward a `ManualClock` and drive the engine themselves).
    pub fn build(cfg: &Config, clock: Arc<dyn Clock>) -> Result<(App, String), StartError> {
        App::build_with(cfg, clock, Overrides::default())
    }

    /// Like [`App::build`], with some ports replaced (tests inject failing
    /// issuers to exercise the state machine's Retry and Catch).
    pub fn build_with(
        cfg: &Config,
        clock: Arc<dyn Clock>,
        overrides: Overrides,
    ) -> Result<(App, String), StartError> {
        App::build_full(
            cfg,
            clock,
            overrides,
            &approvals::ApprovalsConfig::default(),
        )
    }

    /// Like [`App::build_with`], with the approval channels configured
    /// (Slack, email, the link key, the public URL links point at).
    pub fn build_full(
        cfg: &Config,
        clock: Arc<dyn Clock>,
        overrides: Overrides,
        approvals_cfg: &approvals::ApprovalsConfig,
    ) -> Result<(App, String), StartError> {
        let mut catalog = cfg.catalog.load()?;
        private_fs::dir(&cfg.data_dir).map_err(|source| StartError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source,
        })?;
        let mut data_lock = lock::DataDirLock::try_acquire(&cfg.data_dir)?;
        let db = cfg.data_dir.join(STORE_FILE);
        let engine_path = cfg.data_dir.join("engine.db");
        for file in [&db, &engine_path] {
            private_fs::database(file).map_err(|source| StartError::DataDir {
                path: file.display().to_string(),
                source,
            })?;
        }
        let sqlite =
            Arc::new(
                jit_store_sqlite::SqliteStore::open(&db).map_err(|e| StartError::Store {
                    path: db.display().to_string(),
                    detail: e.to_string(),
                })?,
            );
        let store: Arc<dyn RequestStore> = sqlite.clone();
        let attachments = cfg.data_dir.join(ATTACHMENTS_FILE);
        let attacher = Arc::new(
            grants::LocalAttacher::open(attachments.clone()).map_err(|e| StartError::Store {
                path: attachments.display().to_string(),
                detail: e.to_string(),
            })?,
        );
        let role_policies_path = cfg.data_dir.join(ROLE_POLICIES_FILE);
        let role_policies = Arc::new(
            access::LocalRoleRevoker::open(role_policies_path.clone()).map_err(|e| {
                StartError::Store {
                    path: role_policies_path.display().to_string(),
                    detail: e.to_string(),
                }
            })?,
        );
        let issuer = overrides
            .issuer
            .unwrap_or_else(|| Arc::new(grants::LocalIssuer::new(clock.clone())));
        let grant_attacher: Arc<dyn jit_core::ports::PolicyAttacher> =
            overrides.attacher.unwrap_or_else(|| attacher.clone());
        let revoker: Arc<dyn jit_core::grant_ports::RoleRevoker> =
            overrides.revoker.unwrap_or_else(|| role_policies.clone());
        let inventory = overrides.inventory.unwrap_or_else(|| {
            Arc::new(iam_state::LocalInventory {
                attacher: attacher.clone(),
                roles: role_policies.clone(),
            })
        });
        // Every IAM change goes through the grant ledger, in the same
        // database as the requests.
        let mut iam =
            jit_core::ledger::GrantIam::new(grant_attacher, revoker, sqlite, clock.clone())
                .with_inventory(inventory);
        let idc = match overrides.identity_center {
            Some(ports) => Some(ports),
            None => local_identity_center(&catalog, &cfg.data_dir)?,
        };
        let local_idc = idc.is_some() && overrides.grants.is_none();
        if let Some(ports) = idc {
            let ttl = catalog
                .identity_center()
                .map(|i| i.group_cache_secs)
                .unwrap_or(jit_core::identity_center::DEFAULT_GROUP_CACHE_SECS);
            catalog = catalog.with_group_directory(Arc::new(
                jit_core::identity_center::CachedGroups::new(ports.directory, clock.clone(), ttl),
            ));
            iam = iam.with_assignments(ports.assignments);
        }
        if local_idc {
            tracing::info!(
                "Identity Center: the catalog's local_directory (a fake, local mode only)"
            );
        }
        let catalog = Arc::new(catalog);
        let grant_ports = Arc::new(jit_core::grant_ports::GrantPorts {
            issuer: issuer.clone(),
            iam: iam.clone(),
            console: overrides.console.unwrap_or_else(|| {
                Arc::new(access::LocalConsole::new(
                    jit_aws::console::DEFAULT_FEDERATION_URL,
                ))
            }),
            inspector: overrides.inspector.clone(),
            session_cap_secs: jit_core::grant_ports::CHAINED_SESSION_CAP_SECS,
            catalog_check: overrides.inspector.map(|inspector| {
                Arc::new(jit_core::catalog_check::CatalogCheckPorts {
                    inspector,
                    principals: overrides.broker_principals.clone(),
                })
            }),
        });
        let outbox = cfg.data_dir.join("outbox");
        let notifier = notify::OutboxNotifier::open(outbox.clone(), cfg.print_notifications)
            .map_err(|source| StartError::DataDir {
                path: outbox.display().to_string(),
                source,
            })?;
        let (approval_notifier, approval_summary) = approvals::LocalApprovals::build(
            approvals_cfg,
            store.clone(),
            catalog.clone(),
            clock.clone(),
            &cfg.data_dir,
            &format!("http://{}", cfg.addr),
            cfg.print_notifications,
        )
        .map_err(StartError::Approvals)?;
        let tasks = jit_core::tasks::Tasks {
            store: store.clone(),
            catalog: catalog.clone(),
            clock: clock.clone(),
            issuer,
            iam,
            notifier: Arc::new(approvals::Both(
                Arc::new(notifier),
                Arc::new(approval_notifier.clone()),
            )),
        };
        let engine_err = |detail: String| StartError::Store {
            path: engine_path.display().to_string(),
            detail,
        };
        let machine = jit_engine::StateMachine::load(
            workflow::APPROVAL_DEFINITION,
            &workflow::substitutions(),
        )
        .map_err(|e| StartError::Definition(e.to_string()))?;
        let instant = jit_engine::StateMachine::load(
            workflow::INSTANT_DEFINITION,
            &workflow::substitutions(),
        )
        .map_err(|e| StartError::Definition(format!("instant.asl.json: {e}")))?;
        // Exact and access-level scopes: the deterministic generator; words:
        // the AI one when a model is configured. One instance serves the
        // API's checks and previews and the workflow's GeneratePolicy step.
        let generator: Arc<dyn jit_core::policy::PolicyGenerator> = Arc::new(
            jit_policy::Generators::new(overrides.policy_drafter.clone())
                .with_analyzer(overrides.policy_analyzer.clone()),
        );
        let engine_db =
            jit_engine::EngineDb::open(&engine_path).map_err(|e| engine_err(e.to_string()))?;
        let engine = jit_engine::Engine::open(
            engine_db,
            jit_engine::Definitions::new()
                .with(workflow::APPROVAL_MACHINE, machine)
                .with(workflow::INSTANT_MACHINE, instant),
            Arc::new(workflow::LocalTasks {
                tasks: tasks.clone(),
                policy: jit_core::policy_step::PolicyStep {
                    store: tasks.store.clone(),
                    catalog: tasks.catalog.clone(),
                    clock: tasks.clock.clone(),
                    generator: generator.clone(),
                    // Local roles have no policies to read.
                    ceilings: None,
                },
            }),
            clock.clone(),
        )
        .map_err(|e| engine_err(e.to_string()))?;
        let resumed = engine.resume().map_err(|e| engine_err(e.to_string()))?;
        let engine = Arc::new(engine);
        let api_key = cfg.api_key.clone().unwrap_or_else(generate_api_key);
        if !valid_api_key(&api_key) {
            return Err(StartError::WeakApiKey);
        }
        let driver = cfg.run_driver.then(|| engine.spawn_driver());
        data_lock
            .publish(&lock::ServerInfo {
                pid: std::process::id(),
                addr: cfg.addr.to_string(),
                grants: overrides.grants.unwrap_or(GrantsMode::Local).label().into(),
            })
            .map_err(|source| StartError::DataDir {
                path: data_lock.path().display().to_string(),
                source,
            })?;
        let broker = Broker {
            store,
            workflow: Arc::new(workflow::EngineWorkflow::new(engine.clone())),
            catalog,
            clock,
            settings: Settings {
                demo_mode: cfg.demo_mode,
            },
            grants: Some(grant_ports),
            policy: Some(generator),
        };
        let console = console::local_console(
            &broker,
            &api_key,
            format!(
                "jit-local printed it at start; it is in {}",
                cfg.data_dir.join(API_KEY_FILE).display()
            ),
        );
        let mut app = App {
            broker,
            console,
            api_key: api_key.clone(),
            engine: Some(engine),
            tasks: Some(tasks),
            attacher: Some(attacher),
            role_policies: Some(role_policies),
            resumed: Some(resumed),
            driver,
            approvals: None,
            test_clock: None,
            _lock: Some(data_lock),
            reconciling: Default::default(),
            max_backlog: cfg.max_backlog,
            refusing: AtomicBool::new(false),
        };
        app.approvals = Some(approvals::LocalApprovals::new(
            approvals_cfg,
            approval_notifier,
            &app.broker,
            approval_summary,
        ));
        Ok((app, api_key))
    }

    /// Stops the engine's driver and waits for it, so the engine's database
    /// is released (a restart in the same process can open it again).
    pub async fn shutdown(mut self) {
        if let Some(d) = self.driver.take() {
            d.shutdown().await;
        }
    }

    /// Serves `POST /_test/clock/advance` moving `clock`, which must be the
    /// clock the app was built on (`jit-local --test-clock`; tests only).
    pub fn enable_test_clock(&mut self, clock: Arc<test_clock::TestClock>) {
        self.test_clock = Some(clock);
    }

    /// The local engine, for tests and the `history` view.
    pub fn engine(&self) -> Option<&Arc<jit_engine::Engine>> {
        self.engine.as_ref()
    }

    /// The task steps the engine runs (the TTL backstop is called directly).
    pub fn tasks(&self) -> Option<&jit_core::tasks::Tasks> {
        self.tasks.as_ref()
    }

    /// The local IAM stand-in, for tests and operators.
    pub fn attacher(&self) -> Option<&Arc<grants::LocalAttacher>> {
        self.attacher.as_ref()
    }

    /// The local stand-in for inline role policies (the early-revoke
    /// denies), for tests and operators.
    pub fn role_policies(&self) -> Option<&Arc<access::LocalRoleRevoker>> {
        self.role_policies.as_ref()
    }

    /// Places pending early-revoke denies and removes those no session can
    /// need any more; `jit-local` runs it every minute (see `revocation`).
    pub async fn sweep_revocations(
        &self,
    ) -> Result<jit_core::revocation::SweepReport, jit_core::tasks::TaskError> {
        match &self.tasks {
            Some(t) => t.sweep_revocations().await,
            None => Ok(Default::default()),
        }
    }

    /// One reconciler pass (see `jit_core::reconcile`): every minute in the
    /// server, and on `POST /local/reconcile` (`jit-local reconcile`).
    /// `grace` replaces the default grace period.
    pub async fn reconcile(
        &self,
        dry_run: bool,
        grace: Option<chrono::Duration>,
    ) -> Result<jit_core::reconcile::ReconcileReport, jit_core::tasks::TaskError> {
        let Some(tasks) = &self.tasks else {
            return Err(jit_core::tasks::TaskError::Internal(
                "this app has no grant ports to reconcile".into(),
            ));
        };
        let _one_at_a_time = self.reconciling.lock().await;
        match grace {
            None => tasks.reconcile(dry_run).await,
            Some(g) => {
                let mut r = tasks.reconciler();
                r.grace = g;
                r.run(dry_run)
                    .await
                    .map_err(|jit_core::reconcile::ReconcileError::Store(e)| e.into())
            }
        }
    }

    /// The executions found at start (running, waiting for a decision,
    /// waiting for a timer).
    pub fn resumed(&self) -> Option<jit_engine::ResumeReport> {
        self.resumed
    }

    /// The approval channels and callback (Slack, email, links).
    pub fn approvals(&self) -> Option<&approvals::LocalApprovals> {
        self.approvals.as_ref()
    }

    /// Sends due reminders and shows outcomes on Slack messages;
    /// `jit-local` runs it every 30 seconds.
    pub async fn sweep_reminders(&self) -> Result<jit_approvals::reminders::SweepReport, String> {
        match &self.approvals {
            Some(a) => a.sweep().await,
            None => Ok(Default::default()),
        }
    }

    /// Checks the API key in constant time, like a usage plan would (but
    /// without timing leaks).
    fn key_ok(&self, headers: &http::HeaderMap) -> bool {
        headers
            .get(API_KEY_HEADER)
            .map(|v| v.as_bytes().ct_eq(self.api_key.as_bytes()).into())
            .unwrap_or(false)
    }

    /// Who is calling: the `x-jit-user` identity, if any; the local API key
    /// always counts as a trusted caller.
    fn caller(headers: &http::HeaderMap) -> Result<Caller, ServiceError> {
        let identity = match headers.get(USER_HEADER) {
            None => None,
            Some(v) => {
                let text = v
                    .to_str()
                    .map_err(|_| ServiceError::invalid(USER_HEADER, "must be visible ASCII"))?;
                let principal = Principal::parse(text.to_string())
                    .map_err(|e| ServiceError::invalid(USER_HEADER, e.0))?;
                let groups = match headers.get(GROUPS_HEADER) {
                    None => vec![],
                    Some(g) => g
                        .to_str()
                        .map_err(|_| ServiceError::invalid(GROUPS_HEADER, "must be visible ASCII"))?
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                };
                Some(Identity {
                    principal,
                    auth: AuthSource::Local,
                    groups,
                })
            }
        };
        // The key may decide for someone it names, too: whoever holds it can
        // be anyone with `x-jit-user` already, so refusing would protect
        // nothing; the record still says it went through the key.
        Ok(Caller {
            identity,
            trusted_as: Some(LOCAL_TRUSTED_CALLER.to_string()),
            trusted_to_decide: true,
            identify_hint: Some(LOCAL_IDENTIFY_HINT),
        })
    }

    /// Serves one HTTP request: the gateway's checks, then the shared handler.
    pub async fn serve_http<B>(&self, req: Request<B>) -> Response<String>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (parts, body) = req.into_parts();
        // The approval callback authenticates by signed link or Slack
        // signature, never by API key (as on API Gateway).
        if jit_approvals::is_approvals_path(parts.uri.path()) {
            return approvals::serve(self.approvals.as_ref(), parts, body).await;
        }
        // The web console authenticates by its session cookie (made by a
        // sign-in that proved the API key), never by the key header.
        if console::is_console(parts.uri.path()) {
            return self.serve_console(parts, body).await;
        }
        if !self.key_ok(&parts.headers) {
            tracing::info!(
                method = %parts.method,
                path = %parts.uri.path(),
                status = 403,
                code = "forbidden",
                field = API_KEY_HEADER,
                "request refused: missing or invalid API key"
            );
            return forbidden_key();
        }
        if reconcile_cmd::is_reconcile_path(parts.uri.path()) {
            return self.serve_reconcile(&parts).await;
        }
        if let Some(refused) = self.refuse_if_behind(&parts.method, parts.uri.path()) {
            return refused;
        }
        if parts.uri.path() == ENGINE_STATUS_PATH {
            return self.engine_status(&parts.method);
        }
        if parts.uri.path() == OPENAPI_PATH {
            return openapi_json(&parts.method);
        }
        let declared_too_large = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .is_some_and(|n| n > MAX_BODY_BYTES);
        if declared_too_large {
            return jit_api::error_response(&jit_api::ApiError::PayloadTooLarge);
        }
        let body = match Limited::new(body, MAX_BODY_BYTES).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return jit_api::error_response(&jit_api::ApiError::PayloadTooLarge);
            }
            Err(e) => {
                tracing::info!(error = %e, "could not read the request body");
                return jit_api::error_response(&jit_api::ApiError::MalformedJson(
                    "the body could not be read".into(),
                ));
            }
        };
        if let Some(clock) = &self.test_clock
            && parts.uri.path() == test_clock::ADVANCE_PATH
        {
            return test_clock::serve_advance(self, clock, &parts.method, &body).await;
        }
        let caller = match Self::caller(&parts.headers) {
            Ok(c) => c,
            Err(e) => return jit_api::error_response(&jit_api::ApiError::Service(e)),
        };
        let creates = parts.method == http::Method::POST
            && parts.uri.path().trim_end_matches('/') == "/requests";
        let api = ApiRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query: parts.uri.query().map(str::to_string),
            headers: parts.headers,
            body,
        };
        let resp = jit_api::handle(&self.broker, &caller, api).await;
        if creates
            && resp.status() == StatusCode::CREATED
            && resp.body().contains("\"breakGlass\":")
            && let Some(a) = &self.approvals
        {
            // Loud at once, not at the next sweep (which also would).
            a.announce_break_glass_now();
        }
        resp
    }
}

impl App {
    async fn serve_console<B>(&self, parts: http::request::Parts, body: B) -> Response<String>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // A create from the console meets the same backpressure as one
        // through the API.
        if parts.method == http::Method::POST
            && parts.uri.path().trim_end_matches('/') == "/ui/requests"
            && let Some(refused) = self.refuse_if_behind(&http::Method::POST, "/requests")
        {
            let v: serde_json::Value = serde_json::from_str(refused.body()).unwrap_or_default();
            let mut page = self.console.refusal_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Busy",
                v["error"]["message"]
                    .as_str()
                    .unwrap_or("the server is busy; retry"),
            );
            if let Some(r) = refused.headers().get(http::header::RETRY_AFTER) {
                page.headers_mut()
                    .insert(http::header::RETRY_AFTER, r.clone());
            }
            return page;
        }
        let body = match Limited::new(body, jit_console::MAX_FORM_BYTES)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            // Too large or broken off: the console refuses an empty form.
            Err(_) => Bytes::new(),
        };
        self.console
            .handle(jit_console::ConsoleRequest {
                method: parts.method,
                path: parts.uri.path().to_string(),
                query: parts.uri.query().map(str::to_string),
                headers: parts.headers,
                body,
            })
            .await
    }
}

impl App {
    /// `POST /local/reconcile?dryRun=…&graceSecs=…` (API key checked by the
    /// caller): how `jit-local reconcile` reconciles through the running
    /// server instead of writing its files beside it.
    async fn serve_reconcile(&self, parts: &http::request::Parts) -> Response<String> {
        if parts.method != http::Method::POST {
            return jit_api::error_response(&jit_api::ApiError::MethodNotAllowed(&[
                http::Method::POST,
            ]));
        }
        let (dry_run, grace) = match reconcile_cmd::parse_query(parts.uri.query()) {
            Ok(q) => q,
            Err((field, message)) => {
                return jit_api::error_response(&jit_api::ApiError::Service(
                    ServiceError::invalid(&field, message),
                ));
            }
        };
        match self
            .reconcile(dry_run, Some(chrono::Duration::seconds(grace)))
            .await
        {
            Ok(report) => jit_api::json_response(
                StatusCode::OK,
                &serde_json::to_value(&report).expect("plain data serialises"),
            ),
            Err(e) => {
                jit_api::error_response(&jit_api::ApiError::Service(ServiceError::Internal {
                    detail: format!("reconcile: {e}"),
                }))
            }
        }
    }

    /// Backpressure: a create (`POST /requests`, `POST /request-access`)
    /// is refused before anything is read or stored while the engine is
    /// `max_backlog` executions or more behind, so a load the engine
    /// cannot keep up with is told to back off instead of queueing without
    /// bound. Other routes (reads, decisions, cancels) still pass: they are
    /// how the backlog clears.
    fn refuse_if_behind(&self, method: &http::Method, path: &str) -> Option<Response<String>> {
        let creates = matches!(path.trim_end_matches('/'), "/requests" | "/request-access");
        if *method != http::Method::POST || !creates {
            return None;
        }
        let backlog = self.engine.as_ref()?.backlog();
        if backlog < self.max_backlog {
            if self.refusing.swap(false, Ordering::Relaxed) {
                tracing::info!(backlog, "creates accepted again");
            }
            return None;
        }
        // Logged when refusing starts, not for every refused create.
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                backlog,
                max_backlog = self.max_backlog,
                "the engine is behind: creates are refused (503) until it catches up"
            );
        }
        Some(jit_api::error_response(&jit_api::ApiError::Overloaded {
            message: format!(
                "the local engine is {backlog} executions behind (--max-backlog {}); retry after {OVERLOADED_RETRY_AFTER_SECS} s",
                self.max_backlog
            ),
            retry_after_secs: OVERLOADED_RETRY_AFTER_SECS,
        }))
    }
}

impl App {
    /// `GET /local/engine`: `{"backlog": n, "maxBacklog": m}`.
    fn engine_status(&self, method: &http::Method) -> Response<String> {
        const GET: &[http::Method] = &[http::Method::GET];
        if *method != http::Method::GET {
            return jit_api::error_response(&jit_api::ApiError::MethodNotAllowed(GET));
        }
        let backlog = self.engine.as_ref().map_or(0, |e| e.backlog());
        jit_api::json_response(
            StatusCode::OK,
            &serde_json::json!({"backlog": backlog, "maxBacklog": self.max_backlog}),
        )
    }
}

fn forbidden_key() -> Response<String> {
    let body = serde_json::json!({"error": {
        "code": "forbidden",
        "message": "missing or invalid API key: send it in the x-api-key header",
        "field": API_KEY_HEADER,
    }});
    jit_api::json_response(StatusCode::FORBIDDEN, &body)
}

/// Accepts connections until `shutdown` resolves, then closes the open
/// ones, so every reference to the app is gone when it returns.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => r?,
            // Reap finished connections so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let app = app.clone();
        connections.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let app = app.clone();
                async move {
                    // The request is served on a task of its own: a client
                    // that hangs up drops this future, never the work it
                    // asked for (a create always goes on to start its
                    // workflow once its record is stored).
                    let resp = match tokio::spawn(async move { app.serve_http(req).await }).await {
                        Ok(resp) => resp,
                        Err(e) => {
                            tracing::error!(error = %e, "request handler panicked");
                            jit_api::error_response(&jit_api::ApiError::Service(
                                ServiceError::Internal {
                                    detail: "handler panicked".into(),
                                },
                            ))
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp.map(|b| Full::new(Bytes::from(b))))
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    connections.shutdown().await;
    Ok(())
}
