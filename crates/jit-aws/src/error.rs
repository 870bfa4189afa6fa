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

/// Like [`describe`], but keeps only the error code of a service error, not
/// its message: for calls that carry a task token, whose error messages may
/// quote it.
pub(crate) fn describe_code_only<E, R>(operation: &str, err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => format!(
            "{operation}: {}",
            service.err().code().unwrap_or("UnknownError")
        ),
        other => format!("{operation}: {}", DisplayErrorContext(other)),
    }
}
