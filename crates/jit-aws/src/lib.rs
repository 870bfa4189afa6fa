//! The JIT access broker's ports implemented on the AWS SDK: the request
//! store on DynamoDB ([`DynamoStore`]), the grant ledger on its own table
//! ([`DynamoLedger`]), IAM listed for the reconciler ([`IamLister`]), and the
//! approval workflow on Step Functions ([`SfnWorkflow`]), plus the one SDK configuration every client
//! in a process is built from ([`sdk`]).
//!
//! This crate makes no decisions — lifecycle, rules and identity live in
//! `jit-core`; it translates the core's ports into SDK calls and the SDK's
//! answers back into the core's errors. It is the only place the AWS SDK is
//! called from, so Lambdas stay thin and everything here is tested against a
//! real AWS-protocol server (moto, started by `scripts/test`).
//!
//! Invariants:
//! - it never logs, stores or puts into an error message a credential, a
//!   session token, a task token or a signed link: SDK errors are reduced to
//!   the service's error code and message;
//! - every write that changes a request is conditional and carries its audit
//!   event in the same transaction;
//! - TLS is rustls on *ring*, never the SDK's default aws-lc client (size and
//!   Lambda init time).

pub mod account;
#[cfg(feature = "accessanalyzer")]
pub mod analyzer;
#[cfg(feature = "bedrock")]
pub mod bedrock;
pub mod ceiling;
pub mod console;
pub mod dynamo;
mod error;
#[cfg(feature = "s3")]
pub mod export;
pub mod grants;
#[cfg(feature = "idc")]
pub mod identity_center;
pub mod identity_center_fn;
#[cfg(feature = "idc-groups")]
pub mod identity_store;
pub mod inventory;
mod lambda_invoke;
pub mod notify;
pub mod policy_fn;
pub mod sdk;
pub mod sfn;
pub mod slack;
#[cfg(feature = "cloudtrail")]
pub mod usage;

pub use account::{IamInspector, IamRoleInspector, IamRoleRevoker, caller_identity};
pub use aws_config::SdkConfig;
pub use console::FederationSignin;
pub use dynamo::ledger::{DEFAULT_LEDGER_TABLE, DynamoLedger, create_ledger_table};
pub use dynamo::{
    BY_REQUESTER_INDEX, BY_STATUS_INDEX, CreateTablesError, CreatedTables, DynamoStore,
    RequestItem, TableNames, create_tables,
};
pub use grants::{IamAttacher, StsIssuer};
pub use identity_center_fn::LambdaIdentityCenter;
pub use inventory::IamLister;
pub use notify::{LambdaDeferrer, SecretsManagerSource, SesMailer};
pub use policy_fn::LambdaPolicyGenerator;
pub use sfn::{
    InvalidStateMachineArn, SfnApiWorkflow, SfnDecisions, SfnInstant, SfnWorkflow, StateMachineArn,
};
pub use slack::{DEFAULT_SLACK_URL, SlackWebApi};
#[cfg(feature = "cloudtrail")]
pub use usage::CloudTrailUsage;
