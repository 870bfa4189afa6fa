//! In-memory stand-ins for the ports, for this crate's unit tests (the
//! adapters' own behaviour is tested in their crates).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::grant_ports::RoleRevoker;
use crate::ids::{AccountId, PolicyName, Principal, RequestId, RoleArn};
use crate::ledger::IamInventory;
use crate::lifecycle::Status;
use crate::ports::{
    CreateOutcome, GrantError, IamPrincipal, Page, PageRequest, PolicyAttacher, RequestStore,
    StoreError,
};
use crate::request::{AccessRequest, AuditEvent};

/// Requests and audit events in memory; one page per listing.
#[derive(Default)]
pub struct MemoryStore {
    requests: Mutex<HashMap<RequestId, AccessRequest>>,
    events: Mutex<Vec<AuditEvent>>,
    seen: Mutex<BTreeSet<String>>,
}

impl MemoryStore {
    /// Stores (or overwrites) a record as is: how a test forces a state.
    pub fn put(&self, r: &AccessRequest) {
        self.requests
            .lock()
            .unwrap()
            .insert(r.request_id.clone(), r.clone());
    }

    pub fn events_of(&self, id: &RequestId) -> Vec<AuditEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| &e.request_id == id)
            .cloned()
            .collect()
    }

    pub fn all_events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait]
impl RequestStore for MemoryStore {
    async fn first_use(
        &self,
        key: &str,
        _now: crate::request::Timestamp,
        _expires_at: crate::request::Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.seen.lock().unwrap().insert(key.to_string()))
    }

    async fn create(&self, r: &AccessRequest, e: &AuditEvent) -> Result<CreateOutcome, StoreError> {
        self.put(r);
        self.events
            .lock()
            .unwrap()
            .push(crate::trail::complete(None, r, e));
        Ok(CreateOutcome::Created(r.clone()))
    }

    async fn get(&self, id: &RequestId) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self.requests.lock().unwrap().get(id).cloned())
    }

    async fn transition(
        &self,
        prior: &AccessRequest,
        next: &AccessRequest,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut map = self.requests.lock().unwrap();
        let current = map
            .get(&prior.request_id)
            .ok_or_else(|| StoreError::NotFound(prior.request_id.clone()))?;
        if current.version != prior.version || current.status != prior.status {
            return Err(StoreError::Conflict {
                current: Some(current.status),
            });
        }
        map.insert(next.request_id.clone(), next.clone());
        self.events
            .lock()
            .unwrap()
            .push(crate::trail::complete(Some(prior), next, event));
        Ok(())
    }

    async fn list_by_requester(
        &self,
        who: &Principal,
        _: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let items = self
            .requests
            .lock()
            .unwrap()
            .values()
            .filter(|r| &r.requester.principal == who)
            .cloned()
            .collect();
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    async fn list_by_status(
        &self,
        status: Status,
        _: &PageRequest,
    ) -> Result<Page<AccessRequest>, StoreError> {
        let items = self
            .requests
            .lock()
            .unwrap()
            .values()
            .filter(|r| r.status == status)
            .cloned()
            .collect();
        Ok(Page {
            items,
            next_cursor: None,
        })
    }

    async fn audit_events(&self, id: &RequestId) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self.events_of(id))
    }

    async fn append_audit(&self, e: &AuditEvent) -> Result<(), StoreError> {
        // Kept once per event id, as the real stores do.
        let mut events = self.events.lock().unwrap();
        if !events.iter().any(|x| x.event_id == e.event_id) {
            events.push(e.clone());
        }
        Ok(())
    }

    /// One page with every event of `[from, to)`, oldest first.
    async fn audit_events_between(
        &self,
        from: crate::request::Timestamp,
        to: crate::request::Timestamp,
        _: &PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError> {
        let mut items: Vec<AuditEvent> = self
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.at >= from && e.at < to)
            .cloned()
            .collect();
        items.sort_by(|a, b| (a.at, &a.event_id).cmp(&(b.at, &b.event_id)));
        Ok(Page {
            items,
            next_cursor: None,
        })
    }
}

/// IAM in memory: attachments, inline role policies, a log of the calls,
/// and calls that fail on demand.
#[derive(Default)]
pub struct FakeIam {
    pub attached: Mutex<BTreeSet<(String, IamPrincipal, String)>>,
    pub inline: Mutex<BTreeMap<(String, String), String>>,
    pub calls: Mutex<Vec<String>>,
    /// The next this-many mutating calls fail as transient.
    pub fail_next: Mutex<u32>,
}

impl FakeIam {
    fn mutate(&self, call: String) -> Result<(), GrantError> {
        self.calls.lock().unwrap().push(call);
        let mut fail = self.fail_next.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(GrantError::Transient("Throttling".into()));
        }
        Ok(())
    }

    pub fn is_attached(&self, account: &str, p: &IamPrincipal, policy: &str) -> bool {
        self.attached.lock().unwrap().contains(&(
            account.to_string(),
            p.clone(),
            policy.to_string(),
        ))
    }

    pub fn has_inline(&self, role: &str, name: &str) -> bool {
        self.inline
            .lock()
            .unwrap()
            .contains_key(&(role.to_string(), name.to_string()))
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl PolicyAttacher for FakeIam {
    async fn attach(
        &self,
        account: &AccountId,
        to: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        self.mutate(format!("attach {policy}"))?;
        self.attached
            .lock()
            .unwrap()
            .insert((account.to_string(), to.clone(), policy.to_string()));
        Ok(())
    }

    async fn detach(
        &self,
        account: &AccountId,
        from: &IamPrincipal,
        policy: &PolicyName,
    ) -> Result<(), GrantError> {
        self.mutate(format!("detach {policy}"))?;
        self.attached.lock().unwrap().remove(&(
            account.to_string(),
            from.clone(),
            policy.to_string(),
        ));
        Ok(())
    }

    async fn put_inline_policy(
        &self,
        account: &AccountId,
        to: &IamPrincipal,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        self.mutate(format!("put {name}"))?;
        self.inline.lock().unwrap().insert(
            (crate::ledger::principal_arn(account, to), name.to_string()),
            document.to_string(),
        );
        Ok(())
    }

    async fn delete_inline_policy(
        &self,
        account: &AccountId,
        from: &IamPrincipal,
        name: &str,
    ) -> Result<(), GrantError> {
        self.mutate(format!("delete {name}"))?;
        self.inline.lock().unwrap().remove(&(
            crate::ledger::principal_arn(account, from),
            name.to_string(),
        ));
        Ok(())
    }
}

#[async_trait]
impl RoleRevoker for FakeIam {
    async fn put_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
        document: &str,
    ) -> Result<(), GrantError> {
        self.mutate(format!("put {name}"))?;
        self.inline
            .lock()
            .unwrap()
            .insert((role.to_string(), name.to_string()), document.to_string());
        Ok(())
    }

    async fn get_role_policy(
        &self,
        role: &RoleArn,
        name: &str,
    ) -> Result<Option<String>, GrantError> {
        Ok(self
            .inline
            .lock()
            .unwrap()
            .get(&(role.to_string(), name.to_string()))
            .cloned())
    }

    async fn delete_role_policy(&self, role: &RoleArn, name: &str) -> Result<(), GrantError> {
        self.mutate(format!("delete {name}"))?;
        self.inline
            .lock()
            .unwrap()
            .remove(&(role.to_string(), name.to_string()));
        Ok(())
    }
}

#[async_trait]
impl IamInventory for FakeIam {
    async fn attached_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        Ok(Some(
            self.attached
                .lock()
                .unwrap()
                .iter()
                .filter(|(a, p, _)| a == account.as_str() && p == principal)
                .map(|(_, _, n)| n.clone())
                .collect(),
        ))
    }

    async fn role_policies(&self, role: &RoleArn) -> Result<Option<Vec<String>>, GrantError> {
        Ok(Some(
            self.inline
                .lock()
                .unwrap()
                .keys()
                .filter(|(r, _)| r == role.as_str())
                .map(|(_, n)| n.clone())
                .collect(),
        ))
    }

    async fn principal_policies(
        &self,
        account: &AccountId,
        principal: &IamPrincipal,
    ) -> Result<Option<Vec<String>>, GrantError> {
        let arn = crate::ledger::principal_arn(account, principal);
        Ok(Some(
            self.inline
                .lock()
                .unwrap()
                .keys()
                .filter(|(r, _)| *r == arn)
                .map(|(_, n)| n.clone())
                .collect(),
        ))
    }
}
