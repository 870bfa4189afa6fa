//! The Identity Store on the SDK (`aws-sdk-identitystore` only, feature
//! `idc-groups`): a requester's user id and their groups' display names
//! (`ListGroupMembershipsForMember`, `DescribeGroup`), as
//! `jit_core::identity_center::GroupDirectory`. The Identity Center
//! adapter (`identity_center`, feature `idc`) uses it for user ids and
//! groups; the HTTP API functions do not link it (it took them over 6 MB):
//! they read groups through the `identity-center` function.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_identitystore::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_identitystore::types::{AlternateIdentifier, MemberId, UniqueAttribute};
use aws_smithy_types::Document;
use jit_core::Principal;
use jit_core::identity_center::{GroupDirectory, IdentityCenter};
use jit_core::ports::GrantError;

use crate::error::describe;

/// identitystore for one Identity Store, with the lookups cached for the
/// life of the process (memberships are cached by `CachedGroups`, for a
/// bounded time, by the caller).
pub struct IdentityStoreGroups {
    store: aws_sdk_identitystore::Client,
    identity_store_id: String,
    users: Mutex<HashMap<Principal, String>>,
    group_names: Mutex<HashMap<String, String>>,
}

fn code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

fn classify<E, R>(operation: &str, err: &SdkError<E, R>) -> GrantError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = describe(operation, err);
    match err {
        SdkError::ServiceError(s)
            if matches!(
                s.err().code(),
                Some("ThrottlingException" | "InternalServerException")
            ) =>
        {
            GrantError::Transient(text)
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            GrantError::Transient(text)
        }
        _ => GrantError::Other(text),
    }
}

impl IdentityStoreGroups {
    /// For the catalog's instance, in its home region.
    pub fn new(config: &aws_config::SdkConfig, idc: &IdentityCenter) -> Self {
        let store = aws_sdk_identitystore::config::Builder::from(config)
            .region(aws_types::region::Region::new(idc.region.clone()))
            .build();
        IdentityStoreGroups {
            store: aws_sdk_identitystore::Client::from_conf(store),
            identity_store_id: idc.identity_store_id.clone(),
            users: Mutex::new(HashMap::new()),
            group_names: Mutex::new(HashMap::new()),
        }
    }

    /// The Identity Store user of a requester (by email for an email, by
    /// user name otherwise); `None` when there is none.
    pub async fn user_id(&self, user: &Principal) -> Result<Option<String>, GrantError> {
        if let Some(id) = self.users.lock().expect("cache lock").get(user) {
            return Ok(Some(id.clone()));
        }
        // An email is looked up by email; an ARN by its last part (an SSO
        // session's name is the user name); anything else as a user name.
        let text = user.as_str();
        let (path, value) = if text.starts_with("arn:") {
            ("userName", text.rsplit(['/', ':']).next().unwrap_or(text))
        } else if text.contains('@') {
            ("emails.value", text)
        } else {
            ("userName", text)
        };
        let attribute = UniqueAttribute::builder()
            .attribute_path(path)
            .attribute_value(Document::String(value.to_string()))
            .build()
            .map_err(|e| GrantError::Other(format!("GetUserId: {e}")))?;
        match self
            .store
            .get_user_id()
            .identity_store_id(&self.identity_store_id)
            .alternate_identifier(AlternateIdentifier::UniqueAttribute(attribute))
            .send()
            .await
        {
            Ok(out) => {
                let id = out.user_id().to_string();
                self.users
                    .lock()
                    .expect("cache lock")
                    .insert(user.clone(), id.clone());
                Ok(Some(id))
            }
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify("GetUserId", &e)),
        }
    }
}

#[async_trait]
impl GroupDirectory for IdentityStoreGroups {
    async fn groups_of(&self, user: &Principal) -> Result<Vec<String>, GrantError> {
        let Some(user_id) = self.user_id(user).await? else {
            return Ok(vec![]);
        };
        let mut group_ids = vec![];
        let mut pages = self
            .store
            .list_group_memberships_for_member()
            .identity_store_id(&self.identity_store_id)
            .member_id(MemberId::UserId(user_id))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("ListGroupMembershipsForMember", &e))?;
            group_ids.extend(
                page.group_memberships()
                    .iter()
                    .filter_map(|m| m.group_id().map(str::to_string)),
            );
        }
        let mut names = Vec::with_capacity(group_ids.len());
        for id in group_ids {
            let cached = self
                .group_names
                .lock()
                .expect("cache lock")
                .get(&id)
                .cloned();
            let name = match cached {
                Some(n) => n,
                None => {
                    let out = match self
                        .store
                        .describe_group()
                        .identity_store_id(&self.identity_store_id)
                        .group_id(&id)
                        .send()
                        .await
                    {
                        Ok(out) => out,
                        // Deleted between the two calls: not a membership.
                        Err(e) if code(&e) == Some("ResourceNotFoundException") => continue,
                        Err(e) => return Err(classify("DescribeGroup", &e)),
                    };
                    let Some(n) = out.display_name().map(str::to_string) else {
                        continue;
                    };
                    self.group_names
                        .lock()
                        .expect("cache lock")
                        .insert(id.clone(), n.clone());
                    n
                }
            };
            names.push(name);
        }
        Ok(names)
    }
}
