//! `access` Lambda entry point: the HTTP API's grant routes
//! (`/requests/{id}/credentials`, `/console`, `/revoke`, `/extend…`). The
//! same handler as `request`, with the grant ports only this function holds
//! (see `request::compose`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, sdk) = request::compose::init()?;
    let broker = request::compose::grants_broker(&cfg, &sdk)?;
    request::compose::serve::<{ request::compose::GRANT_ROUTES }>(broker, cfg).await
}
