//! Turning SDK errors into text fit for `Backend` errors and logs.

use std::error::Error;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// `"<operation>: <ServiceErrorCode>: <message>"` for a service error, or the
/// transport failure's cause chain otherwise.
///
/// Only the error code and the service's message are kept: never the request
/// (which is signed) nor anything from the credentials chain.
pub(crate) fn describe<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{operation}: {}: {}",
                e.code().unwrap_or("UnknownError"),
                e.message().unwrap_or("(no message)")
            )
        }
        other => format!("{operation}: {}", DisplayErrorContext(other)),
    }
}
