//! What the `jit` end-to-end tests share: an in-process jit-local on
//! 127.0.0.1:0 and one `jit` user per config/cache dir.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use jit_core::ports::SystemClock;
use jit_local::{App, Config, Overrides};
use serde_json::Value;

pub const KEY: &str = "test-key-0123456789abcdef";
pub const LIMIT: Duration = Duration::from_secs(30);

pub struct Server {
    rt: tokio::runtime::Runtime,
    pub addr: SocketAddr,
    app: Option<Arc<App>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// jit-local with the sample catalog and the local credential issuer.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with(
            data_dir,
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/catalog.example.yaml"),
            Overrides::default(),
        )
    }

    /// jit-local on the system clock with its own catalog and ports (what
    /// `--grants aws` builds, say).
    pub fn start_with(data_dir: &Path, catalog: &Path, overrides: Overrides) -> Server {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let cfg = Config {
            addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.to_path_buf(),
            catalog: catalog.to_path_buf().into(),
            api_key: Some(KEY.into()),
            demo_mode: true,
            print_notifications: false,
            run_driver: true,
            max_backlog: jit_local::DEFAULT_MAX_BACKLOG,
        };
        let (app, addr, stop, task) = rt.block_on(async {
            let (app, _) =
                App::build_with(&cfg, Arc::new(SystemClock), overrides).expect("app starts");
            let listener = tokio::net::TcpListener::bind(cfg.addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let app = Arc::new(app);
            let task = tokio::spawn(jit_local::serve(listener, app.clone(), async {
                let _ = rx.await;
            }));
            (app, addr, tx, task)
        });
        Server {
            rt,
            addr,
            app: Some(app),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stop(&mut self) {
        let (Some(stop), Some(task), Some(app)) =
            (self.stop.take(), self.task.take(), self.app.take())
        else {
            return;
        };
        let _ = stop.send(());
        self.rt.block_on(async {
            tokio::time::timeout(LIMIT, task)
                .await
                .expect("server stops")
                .unwrap()
                .unwrap();
            if let Ok(app) = Arc::try_unwrap(app) {
                tokio::time::timeout(LIMIT, app.shutdown())
                    .await
                    .expect("engine stops");
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One user's `jit`: its own config and cache dirs.
pub struct Jit {
    pub config: PathBuf,
    pub cache: PathBuf,
}

impl Jit {
    pub fn new(root: &Path, name: &str) -> Jit {
        Jit {
            config: root.join(name).join("config"),
            cache: root.join(name).join("cache"),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs `jit` with nothing of the caller's AWS set-up (keys, profiles,
    /// files, metadata) and then `env` on top.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_jit"));
        let home = self.config.parent().unwrap().join("home");
        cmd.args(args)
            .env("HOME", &home)
            .env("JIT_CONFIG_DIR", &self.config)
            .env("JIT_CACHE_DIR", &self.cache)
            .env("AWS_CONFIG_FILE", home.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for var in [
            "JIT_API_KEY",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("jit runs");
        finish_within(child, Duration::from_secs(60))
    }

    /// Runs `jit` expecting failure: a non-zero exit and exactly one line
    /// on stderr (the error and its fix), which is returned.
    pub fn fails(&self, args: &[&str]) -> String {
        self.fails_env(args, &[])
    }

    pub fn fails_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run_env(args, env);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success(), "jit {args:?} succeeded: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "jit {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    pub fn configure(&self, url: &str, key: &str, user: &str, groups: &str) {
        let mut args = vec![
            "configure",
            "--api-url",
            url,
            "--api-key",
            key,
            "--local",
            "--user",
            user,
        ];
        if !groups.is_empty() {
            args.extend_from_slice(&["--groups", groups]);
        }
        self.ok(&args);
    }
}

/// Polls `jit show` until the request reaches `want` (bounded: 10 s).
pub fn wait_status(jit: &Jit, id: &str, want: &str) {
    let mut status = String::new();
    for _ in 0..100 {
        status = jit.json(&["show", id])["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{id} is {status}, not {want}");
}

/// Waits for a child's output, bounded: a hung process fails the test
/// instead of hanging it.
pub fn finish_within(child: std::process::Child, limit: Duration) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the process finished within {limit:?}"))
        .unwrap()
}
