//! The deterministic generator: a scope, expanded through the action table
//! to exact actions, matched to the resources each action applies to, one
//! statement per set of resources (in practice: per resource type).
//!
//! No wildcard action comes out unless the scope wrote one; nothing outside
//! the ceiling comes out (an access level's actions outside it are left out
//! and said so; an exact action outside it is refused).

use std::collections::BTreeMap;

use jit_core::policy::{GenerationError, Scope};
use serde_json::{Value, json};

use crate::table::{Service, Table, resource_matches};
use crate::validate::{VERSION, within_ceiling};

/// A generated document before validation, and what the approvers should
/// know about it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub document: Value,
    pub notes: Vec<String>,
}

/// The resources of `resources` that `action` of `service` applies to.
fn applicable<'a>(
    service: &Service,
    action: &crate::table::Action,
    resources: &'a [String],
) -> Vec<&'a String> {
    if action.resource_types.is_empty() {
        // An action on no resource type takes only `*`.
        return resources.iter().filter(|r| *r == "*").collect();
    }
    resources
        .iter()
        .filter(|r| {
            action
                .resource_types
                .iter()
                .any(|&t| resource_matches(&service.resource_types[t], r))
        })
        .collect()
}

/// Groups (action, resources) pairs into statements: actions sharing the
/// same resources share one statement. Order: by first appearance.
fn statements(pairs: Vec<(String, Vec<String>)>) -> Vec<Value> {
    let mut groups: Vec<(Vec<String>, Vec<String>)> = vec![];
    for (action, resources) in pairs {
        match groups.iter_mut().find(|(r, _)| *r == resources) {
            Some((_, actions)) => {
                if !actions.contains(&action) {
                    actions.push(action)
                }
            }
            None => groups.push((resources, vec![action])),
        }
    }
    groups
        .into_iter()
        .map(|(resources, mut actions)| {
            actions.sort();
            let resource = if resources.len() == 1 {
                json!(resources[0])
            } else {
                json!(resources)
            };
            json!({"Effect": "Allow", "Action": actions, "Resource": resource})
        })
        .collect()
}

/// A resource type's ARN format as a pattern of every resource of it
/// (`arn:${Partition}:sns:${Region}:${Account}:${TopicName}` ->
/// `arn:aws:sns:*:*:*`). The partition is `aws`: a pattern with `*` there
/// reads as `Resource: "*"` to parliament, and a deployment in another
/// partition names its resources.
fn arn_pattern(format: &str) -> String {
    let format = format.replacen("${Partition}", "aws", 1);
    let mut out = String::with_capacity(format.len());
    let mut rest = format.as_str();
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(j) => {
                if !out.ends_with('*') {
                    out.push('*');
                }
                rest = &rest[i + j + 1..];
            }
            None => break,
        }
    }
    if !rest.contains("${") {
        out.push_str(rest);
    }
    out
}

fn document(statements: Vec<Value>) -> Value {
    json!({"Version": VERSION, "Statement": statements})
}

/// The policy for a scope, bounded by `ceiling`. A described scope needs an
/// AI generator: refused here, naming `scope.describe`.
pub fn generate(
    table: &Table,
    scope: &Scope,
    ceiling: &[String],
) -> Result<Draft, GenerationError> {
    match scope {
        Scope::Describe { .. } => Err(GenerationError::refused(
            "scope.describe",
            "needs an AI policy generator, and this deployment has none configured: ask with `actions` and `resources`, or `access` and `services`",
        )),
        Scope::Exact { actions, resources } => exact(table, actions, resources, ceiling),
        Scope::Access {
            access,
            services,
            resources,
        } => {
            let star = vec!["*".to_string()];
            let implicit = resources.is_empty();
            let resources = if implicit { &star } else { resources };
            let mut notes = vec![];
            let mut pairs = vec![];
            let mut outside = 0usize;
            let mut no_resource = 0usize;
            let mut level_actions = 0usize;
            for prefix in services {
                let service = table.service(prefix).ok_or_else(|| {
                    GenerationError::refused(
                        "scope.services",
                        format!(
                            "`{prefix}` is not an AWS service prefix known to the action table ({})",
                            table.source
                        ),
                    )
                })?;
                for a in service.actions.iter().filter(|a| a.level == *access) {
                    level_actions += 1;
                    let full = format!("{}:{}", service.prefix, a.name);
                    if !within_ceiling(&full, ceiling) {
                        outside += 1;
                        continue;
                    }
                    let on: Vec<String> = if implicit && !a.resource_types.is_empty() {
                        // "`*` within the services": every resource of the
                        // action's types, spelled as the types' ARN patterns.
                        a.resource_types
                            .iter()
                            .map(|&t| arn_pattern(&service.resource_types[t].arn))
                            .collect::<std::collections::BTreeSet<_>>()
                            .into_iter()
                            .collect()
                    } else {
                        applicable(service, a, resources)
                            .into_iter()
                            .cloned()
                            .collect()
                    };
                    if on.is_empty() {
                        no_resource += 1;
                        continue;
                    }
                    pairs.push((full, on));
                }
            }
            if level_actions == 0 {
                return Err(GenerationError::refused(
                    "scope.access",
                    format!("no {access} action exists in {}", services.join(", ")),
                ));
            }
            if pairs.is_empty() && outside == level_actions {
                return Err(GenerationError::refused(
                    "scope",
                    format!(
                        "asks for {access} access to {}, which lies outside the entitlement's ceiling ({})",
                        services.join(", "),
                        ceiling.join(", ")
                    ),
                ));
            }
            if pairs.is_empty() {
                return Err(GenerationError::refused(
                    "scope.resources",
                    format!(
                        "none of the {access} actions of {} within the ceiling applies to {}",
                        services.join(", "),
                        resources.join(", ")
                    ),
                ));
            }
            if outside > 0 {
                notes.push(format!(
                    "{outside} {access} action(s) of {} left out: outside the entitlement's ceiling ({})",
                    services.join(", "),
                    ceiling.join(", ")
                ));
            }
            if no_resource > 0 && resources != &star {
                notes.push(format!(
                    "{no_resource} {access} action(s) left out: they apply to none of the named resources"
                ));
            }
            Ok(Draft {
                document: document(statements(pairs)),
                notes,
            })
        }
    }
}

fn exact(
    table: &Table,
    actions: &[String],
    resources: &[String],
    ceiling: &[String],
) -> Result<Draft, GenerationError> {
    let mut pairs = vec![];
    let mut notes = vec![];
    for pattern in actions {
        let (prefix, name) = pattern.split_once(':').ok_or_else(|| {
            GenerationError::refused("scope.actions", format!("`{pattern}` is not an IAM action"))
        })?;
        let service = table.service(prefix).ok_or_else(|| {
            GenerationError::refused(
                "scope.actions",
                format!(
                    "`{pattern}`: `{prefix}` is not an AWS service prefix known to the action table ({})",
                    table.source
                ),
            )
        })?;
        let matched = service.matching(name);
        if matched.is_empty() {
            return Err(GenerationError::refused(
                "scope.actions",
                format!(
                    "`{pattern}` is no action of `{prefix}` in the action table ({})",
                    table.source
                ),
            ));
        }
        let mut on: BTreeMap<&String, ()> = BTreeMap::new();
        for a in &matched {
            let full = format!("{}:{}", service.prefix, a.name);
            if !within_ceiling(&full, ceiling) {
                return Err(GenerationError::refused(
                    "scope",
                    format!(
                        "asks for `{full}`, which lies outside the entitlement's ceiling ({})",
                        ceiling.join(", ")
                    ),
                ));
            }
            for r in applicable(service, a, resources) {
                on.insert(r, ());
            }
        }
        if on.is_empty() {
            let types: Vec<String> = matched
                .iter()
                .flat_map(|a| a.resource_types.iter())
                .map(|&t| service.resource_types[t].arn.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            let want = if types.is_empty() {
                "`*` (it applies to no resource type)".to_string()
            } else {
                types.join(" or ")
            };
            return Err(GenerationError::refused(
                "scope.resources",
                format!("name none that `{pattern}` applies to: it needs {want}"),
            ));
        }
        let mut on: Vec<String> = on.into_keys().cloned().collect();
        if on.len() > 1 {
            // A specific resource matched: `*` would only widen the action.
            on.retain(|r| r != "*");
        }
        // The action as the table spells it; a pattern as written.
        let written = if matched.len() == 1 && !name.contains(['*', '?']) {
            format!("{}:{}", service.prefix, matched[0].name)
        } else {
            format!("{}:{name}", service.prefix)
        };
        if on.len() < resources.len() {
            let skipped: Vec<&String> = resources.iter().filter(|r| !on.contains(r)).collect();
            notes.push(format!(
                "`{written}` is not given {}: it does not apply to that resource type",
                skipped
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        pairs.push((written, on));
    }
    Ok(Draft {
        document: document(statements(pairs)),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::table;
    use jit_core::policy::AccessLevel;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn read_on_a_bucket_prefix_is_s3_object_reads_only() {
        let scope = Scope::Access {
            access: AccessLevel::Read,
            services: s(&["s3"]),
            resources: s(&["arn:aws:s3:::prod-logs/*"]),
        };
        let d = generate(table(), &scope, &[]).unwrap();
        let st = d.document["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 1, "{}", d.document);
        assert_eq!(st[0]["Resource"], "arn:aws:s3:::prod-logs/*");
        let actions: Vec<&str> = st[0]["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(actions.contains(&"s3:GetObject"), "{actions:?}");
        for a in &actions {
            assert!(!a.contains('*'), "{a}");
            assert_eq!(table().level(a), Some(AccessLevel::Read), "{a}");
        }
    }

    #[test]
    fn exact_actions_split_by_resource_type() {
        let scope = Scope::Exact {
            actions: s(&["s3:GetObject", "s3:ListBucket"]),
            resources: s(&["arn:aws:s3:::prod-logs", "arn:aws:s3:::prod-logs/*"]),
        };
        let d = generate(table(), &scope, &[]).unwrap();
        assert_eq!(
            d.document["Statement"],
            json!([
                {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::prod-logs/*"},
                {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::prod-logs"}
            ])
        );
    }

    #[test]
    fn the_ceiling_refuses_exact_actions_and_trims_levels() {
        let exact = Scope::Exact {
            actions: s(&["s3:PutObject"]),
            resources: s(&["*"]),
        };
        let e = generate(table(), &exact, &s(&["s3:Get*", "s3:List*"])).unwrap_err();
        assert!(
            matches!(e, GenerationError::Refused { ref field, .. } if field == "scope"),
            "{e}"
        );
        let write = Scope::Access {
            access: AccessLevel::Write,
            services: s(&["s3"]),
            resources: vec![],
        };
        let e = generate(table(), &write, &s(&["s3:Get*", "s3:List*"])).unwrap_err();
        assert!(
            matches!(e, GenerationError::Refused { ref field, .. } if field == "scope"),
            "{e}"
        );
        let read = Scope::Access {
            access: AccessLevel::Read,
            services: s(&["s3"]),
            resources: s(&["arn:aws:s3:::b/*"]),
        };
        let d = generate(table(), &read, &s(&["s3:GetObject*"])).unwrap();
        assert!(
            d.notes
                .iter()
                .any(|n| n.contains("outside the entitlement's ceiling"))
        );
        for a in d.document["Statement"][0]["Action"].as_array().unwrap() {
            assert!(a.as_str().unwrap().starts_with("s3:GetObject"));
        }
    }

    #[test]
    fn unknown_names_and_unmatched_resources_are_refused() {
        let field = |scope: Scope| match generate(table(), &scope, &[]).unwrap_err() {
            GenerationError::Refused { field, .. } => field,
            e => panic!("{e}"),
        };
        assert_eq!(
            field(Scope::Exact {
                actions: s(&["s3:GetObjekt"]),
                resources: s(&["*"])
            }),
            "scope.actions"
        );
        assert_eq!(
            field(Scope::Access {
                access: AccessLevel::Read,
                services: s(&["nosuch"]),
                resources: vec![]
            }),
            "scope.services"
        );
        assert_eq!(
            field(Scope::Exact {
                actions: s(&["s3:GetObject"]),
                resources: s(&["arn:aws:s3:::prod-logs"])
            }),
            "scope.resources"
        );
        assert_eq!(
            field(Scope::Describe {
                describe: "read logs".into()
            }),
            "scope.describe"
        );
    }
}
