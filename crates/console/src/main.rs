//! `console` Lambda entry point: configuration and the session key once at
//! init, then every event to the shared console handler.

use jit_core::channels::SecretSource;
use lambda_http::service_fn;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    jit_lambda::logging::init();
    let cfg = console::Config::from_lookup(|k| std::env::var(k).ok())?;
    let sdk = jit_aws::sdk::lambda_config();
    let secret = jit_aws::SecretsManagerSource::from_config(&sdk)
        .secret(&cfg.session_key_id)
        .await
        .map_err(|e| format!("JIT_SESSION_KEY_ID: {e}"))?;
    let key = jit_console::SessionKey::new(secret.expose().as_bytes())
        .map_err(|e| format!("JIT_SESSION_KEY_ID: {e}"))?;
    let console = console::console(&cfg, key);
    let console = &console;
    lambda_http::run(service_fn(move |event| async move {
        Ok::<_, std::convert::Infallible>(console::handle(console, event).await)
    }))
    .await
}
