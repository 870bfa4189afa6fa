//! `request` Lambda entry point: the HTTP API's request lifecycle (see
//! `compose`): build the dependencies once at init, then hand each event to
//! the shared handler.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, sdk) = request::compose::init()?;
    let broker = request::compose::broker(&cfg, &sdk)?;
    request::compose::serve::<{ request::compose::ALL_ROUTES }>(broker, cfg).await
}
