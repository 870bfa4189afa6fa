//! `jit-local` served on a loopback port with its engine driven by the
//! real clock, as a browser or an HTTP client meets it (the console and
//! approval-page tests), until [`Served::stop`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jit_local::approvals::ApprovalsConfig;
use jit_local::{App, Config, Overrides};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub struct Served {
    _dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub app: Arc<App>,
    /// `http://127.0.0.1:<port>`.
    pub api: String,
    pub client: HttpClient,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// The example catalog with `prefix` (more top-level keys) before it,
    /// the API key `key`, not in demo mode.
    pub async fn start(prefix: &str, key: &str) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml"),
        )
        .unwrap();
        let catalog = dir.path().join("catalog.yaml");
        std::fs::write(&catalog, format!("{prefix}{example}")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let cfg = Config {
            addr,
            data_dir: dir.path().join("data"),
            catalog: catalog.into(),
            api_key: Some(key.into()),
            demo_mode: false,
            print_notifications: false,
            run_driver: true,
            max_backlog: jit_local::DEFAULT_MAX_BACKLOG,
        };
        let (app, _) = App::build_full(
            &cfg,
            Arc::new(jit_core::ports::SystemClock),
            Overrides::default(),
            &ApprovalsConfig::default(),
        )
        .expect("app starts");
        let app = Arc::new(app);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(jit_local::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));
        Served {
            _dir: dir,
            data_dir: cfg.data_dir,
            app,
            api: format!("http://{addr}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
            stop,
            server,
        }
    }

    /// Stops serving, waits for the server to end and shuts the app down.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
        if let Ok(app) = Arc::try_unwrap(self.app) {
            app.shutdown().await;
        }
    }
}
