//! `catalog-check` Lambda entry point: `GET /catalog/check` (catalog admins),
//! the catalog judged against the account with the broker's own principals.
//! A function of its own, with a read-only IAM role, so that its IAM reads
//! are linked into neither `access` nor `request` (both stay under the
//! 6 MB Lambda target; see docs/ARCHITECTURE.md).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    let (cfg, sdk) = request::compose::init()?;
    let (catalog, ports) = request::compose::catalog_check_ports(&cfg, &sdk)?;
    request::compose::serve_catalog_check(catalog, ports, cfg).await
}
