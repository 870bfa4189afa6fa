//! The real `jit` binary end to end against an in-process `jit-local` on
//! 127.0.0.1:0 (local credential issuer). Every wait is bounded; config and
//! cache live in a temp dir per test.

use crate::common;

use std::time::Duration;

use common::{Jit, KEY, Server, wait_status};
use serde_json::Value;

#[test]
fn auto_approved_request_to_cached_credentials_env_and_exec() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(sre.config.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the config holds the API key");
    }

    let r = sre.json(&[
        "request",
        "OnCallReadOnly",
        "--duration",
        "30m",
        "--reason",
        "INC-42",
        "--wait",
        "--timeout",
        "30s",
    ]);
    assert_eq!(r["status"], "GRANTED", "{r}");
    let id = r["requestId"].as_str().unwrap().to_string();

    // show and list see it.
    assert_eq!(sre.json(&["show", &id])["requestId"], id.as_str());
    let list = sre.json(&["list"]);
    assert!(
        list["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["requestId"] == id.as_str()),
        "{list}"
    );
    let text = sre.ok(&["show", &id]);
    assert!(
        text.contains("GRANTED") && text.contains("OnCallReadOnly"),
        "{text}"
    );
    // For people: the duration as 30m, times to the second, how long is left.
    assert!(
        text.lines()
            .any(|l| l.starts_with("duration") && l.trim_end().ends_with("30m")),
        "{text}"
    );
    assert!(text.contains("GRANTED (expires in 2"), "{text}");
    let expires = text.lines().find(|l| l.starts_with("expires")).unwrap();
    assert!(
        regex_like_second_precision(expires),
        "a time to the second: {expires}"
    );

    let first = sre.ok(&["credentials", &id]);
    let creds: Value = serde_json::from_str(first.trim()).unwrap();
    assert_eq!(creds["Version"], 1);
    for k in [
        "AccessKeyId",
        "SecretAccessKey",
        "SessionToken",
        "Expiration",
    ] {
        assert!(creds[k].is_string(), "{k} missing: {creds}");
    }
    let cached = sre.cache.join("credentials").join(format!("{id}.json"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cached).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the cache holds secrets");
    }

    // With the server gone, the cache still answers — and the same keys.
    server.stop();
    let second = sre.ok(&["credentials", &id]);
    assert_eq!(second, first);

    let env = sre.ok(&["env", &id]);
    let key_id = creds["AccessKeyId"].as_str().unwrap();
    assert!(
        env.lines()
            .any(|l| l.starts_with("export AWS_ACCESS_KEY_ID=") && l.contains(key_id)),
        "{env}"
    );
    assert!(env.contains("export AWS_SESSION_TOKEN="), "{env}");

    #[cfg(unix)]
    {
        let out = sre.ok(&[
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "printf %s \"$AWS_ACCESS_KEY_ID\"",
        ]);
        assert_eq!(out, key_id);
        let st = sre.run(&["exec", &id, "--", "sh", "-c", "exit 7"]);
        assert_eq!(st.status.code(), Some(7), "exec passes the exit code on");
    }

    // Credentials about to expire are not served from the cache: with the
    // server down, that is a one-line connection error.
    let mut stale = creds.clone();
    stale["Expiration"] =
        Value::String((chrono::Utc::now() + chrono::TimeDelta::minutes(4)).to_rfc3339());
    std::fs::write(&cached, stale.to_string()).unwrap();
    let err = sre.fails(&["credentials", &id]);
    assert!(err.contains("cannot reach"), "{err}");
}

#[test]
#[cfg(unix)]
fn exec_request_asks_waits_and_runs_in_one_step() {
    // GIVEN an SRE (auto-approved for OnCallReadOnly)
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("data"));
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    // WHEN `jit exec --request` runs a command
    let out = sre.ok(&[
        "exec",
        "--request",
        "OnCallReadOnly",
        "--duration",
        "15m",
        "--reason",
        "INC-9: look at the logs",
        "--",
        "sh",
        "-c",
        "printf %s \"$AWS_ACCESS_KEY_ID\"",
    ]);
    // THEN it ran with the granted request's credentials, which the create
    // answered with (and the cache now holds)
    assert!(out.starts_with("LOCALFAKE"), "{out}");
    let list = sre.json(&["list"]);
    let r = &list["requests"][0];
    assert_eq!(r["status"], "GRANTED", "{list}");
    let cached = sre
        .cache
        .join("credentials")
        .join(format!("{}.json", r["requestId"].as_str().unwrap()));
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(cached).unwrap()).unwrap();
    assert_eq!(creds["AccessKeyId"], out.as_str());
    // AND a request that needs a person is left pending, saying so
    let err = sre.fails(&[
        "exec",
        "--request",
        "JIT-ElevatedAdminRole",
        "--reason",
        "INC-9",
        "--",
        "true",
    ]);
    assert!(err.contains("not granted yet"), "{err}");
    server.stop();
}

#[test]
fn manual_approval_by_a_second_identity_then_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = Jit::new(dir.path(), "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "platform-leads");

    let r = alice.json(&[
        "request",
        "JIT-ElevatedAdminRole",
        "--duration",
        "1h",
        "--reason",
        "INC-7",
    ]);
    let id = r["requestId"].as_str().unwrap().to_string();
    wait_status(&alice, &id, "APPROVAL_PENDING");

    // Nobody approves their own request: one line, non-zero.
    let err = alice.fails(&["approve", &id]);
    assert!(err.contains("approver"), "{err}");

    let pending = lead.json(&["list", "--pending"]);
    assert!(
        pending["requests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["requestId"] == id.as_str()),
        "{pending}"
    );
    lead.json(&["approve", &id, "--reason", "ok"]);

    // The workflow grants shortly after the approval.
    wait_status(&alice, &id, "GRANTED");
    let creds: Value = serde_json::from_str(alice.ok(&["credentials", &id]).trim()).unwrap();
    assert!(creds["AccessKeyId"].is_string());

    let console = alice.ok(&["console", &id]);
    assert!(console.trim().starts_with("http"), "{console}");

    // An extension: asked by the requester, approved by the lead; the
    // window's end moves later.
    let before = alice.json(&["show", &id])["expiresAt"]
        .as_str()
        .unwrap()
        .to_string();
    alice.json(&["extend", &id, "--duration", "30m", "--reason", "longer"]);
    let mut after = before.clone();
    for _ in 0..100 {
        // The approval may race the workflow noticing the extension: retry.
        let out = lead.run(&["approve", &id, "--extension", "--reason", "ok"]);
        if out.status.success() {
            after = alice.json(&["show", &id])["expiresAt"]
                .as_str()
                .unwrap()
                .to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for _ in 0..100 {
        if after != before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after = alice.json(&["show", &id])["expiresAt"]
            .as_str()
            .unwrap()
            .to_string();
    }
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    assert!(parse(&after) > parse(&before), "{before} -> {after}");

    // The extension shows in the request as people read it.
    let text = alice.ok(&["show", &id]);
    assert!(
        text.lines()
            .any(|l| l.starts_with("extension") && l.contains("+30m APPROVED")),
        "{text}"
    );

    // Credentials cached before a revoke are never served after it.
    let cached = alice.cache.join("credentials").join(format!("{id}.json"));
    assert!(cached.exists());
    let r = alice.json(&["revoke", &id, "--reason", "done"]);
    assert_eq!(r["status"], "REVOKED", "{r}");
    assert!(!cached.exists(), "revoke drops the cached credentials");
    let err = alice.fails(&["credentials", &id]);
    assert!(err.contains("REVOKED") || err.contains("revoked"), "{err}");
}

#[test]
fn entitlements_are_listed_for_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    let text = sre.ok(&["entitlements"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{text}");
    let oncall = lines
        .iter()
        .find(|l| l.starts_with("OnCallReadOnly"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        oncall.contains("15m–2h (15m)"),
        "bounds for people: {oncall}"
    );
    assert!(oncall.contains("auto-approved for you ≤1h"), "{oncall}");
    let v = sre.json(&["entitlements"]);
    assert_eq!(v["entitlements"].as_array().unwrap().len(), 4, "{v}");
    // Someone outside sre/engineering does not see OnCallReadOnly, and a
    // misspelt name is answered with the nearest one they may request.
    let dev = Jit::new(dir.path(), "dev");
    dev.configure(&server.url(), KEY, "dev@example.com", "");
    assert!(!dev.ok(&["entitlements"]).contains("OnCallReadOnly"));
    let err = sre.fails(&["request", "OncallReadOnly", "--reason", "x"]);
    assert!(err.contains("did you mean `OnCallReadOnly`?"), "{err}");
    assert!(err.contains("jit entitlements"), "{err}");
}

/// `2026-12-04T16:10:01Z (in 29m)`: seconds, no fraction, UTC.
fn regex_like_second_precision(line: &str) -> bool {
    line.split_whitespace()
        .any(|w| w.len() == 20 && w.ends_with('Z') && w.as_bytes()[10] == b'T' && !w.contains('.'))
}

#[test]
fn deny_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = Jit::new(dir.path(), "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let lead = Jit::new(dir.path(), "lead");
    lead.configure(&server.url(), KEY, "lead@example.com", "platform-leads");
    let req = |why: &str| {
        let id = alice.json(&["request", "JIT-ElevatedAdminRole", "--reason", why])["requestId"]
            .as_str()
            .unwrap()
            .to_string();
        wait_status(&alice, &id, "APPROVAL_PENDING");
        id
    };
    let a = req("one");
    let d = lead.json(&["deny", &a, "--reason", "not now"]);
    assert_eq!(d["status"], "DENIED", "{d}");
    // --wait gives up after --timeout: plain status lines (no TTY), one
    // error line, non-zero.
    let out = alice.run(&[
        "request",
        "JIT-ElevatedAdminRole",
        "--reason",
        "three",
        "--wait",
        "--timeout",
        "1s",
        "--poll-interval",
        "0.2",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("APPROVAL_PENDING") || err.contains("REQUESTED"),
        "{err}"
    );
    assert!(err.contains("after 1s"), "{err}");
    assert!(
        !err.contains('\r'),
        "no spinner without a terminal: {err:?}"
    );

    let b = req("two");
    let c = alice.json(&["cancel", &b]);
    assert_eq!(c["status"], "CANCELLED", "{c}");
    // Cancelling again is refused with a pointer to `jit show`.
    let err = alice.fails(&["cancel", &b]);
    assert!(err.contains("jit show"), "{err}");
}

#[test]
fn errors_are_one_line_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));

    // Not configured yet.
    let nobody = Jit::new(dir.path(), "nobody");
    let err = nobody.fails(&["list"]);
    assert!(err.contains("jit configure"), "{err}");

    // A bad API key.
    let bad = Jit::new(dir.path(), "bad");
    bad.configure(
        &server.url(),
        "wrong-key-0123456789abcdef",
        "sre@example.com",
        "sre",
    );
    let out = bad.run(&["list"]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("API key"), "{err}");
    assert!(err.contains("jit configure --api-key"), "{err}");

    // Not an http(s) URL: refused at configure time, nothing saved.
    let ftp = Jit::new(dir.path(), "ftp");
    let out = ftp.run(&["configure", "--api-url", "ftp://x", "--api-key", KEY]);
    assert!(!out.status.success());
    assert!(!ftp.config.join("config.json").exists());

    // https to a plain-http server: the TLS handshake fails, on one line.
    let tls = Jit::new(dir.path(), "tls");
    tls.configure(
        &format!("https://{}", server.addr),
        KEY,
        "sre@example.com",
        "sre",
    );
    let err = tls.fails(&["list"]);
    assert!(err.contains("cannot reach https://"), "{err}");

    // SigV4 without any AWS credentials: one line naming the fix.
    let iam = Jit::new(dir.path(), "iam");
    iam.ok(&[
        "configure",
        "--api-url",
        &server.url(),
        "--api-key",
        KEY,
        "--sigv4",
        "--region",
        "eu-west-1",
    ]);
    let err = iam.fails(&["list"]);
    assert!(err.contains("no AWS credentials for SigV4"), "{err}");

    // An unknown entitlement.
    let sre = Jit::new(dir.path(), "sre");
    sre.configure(&server.url(), KEY, "sre@example.com", "sre");
    let err = sre.fails(&["request", "NoSuchThing", "--reason", "x"]);
    assert!(err.contains("case-sensitive"), "{err}");
}

#[test]
fn list_follows_pages_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let alice = Jit::new(dir.path(), "alice");
    alice.configure(&server.url(), KEY, "alice@example.com", "");
    let mut ids = Vec::new();
    for n in 0..5 {
        let r = alice.json(&[
            "request",
            "JIT-ElevatedAdminRole",
            "--reason",
            &format!("page {n}"),
        ]);
        ids.push(r["requestId"].as_str().unwrap().to_string());
    }
    let ids_of = |v: &Value| -> Vec<String> {
        v["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestId"].as_str().unwrap().to_string())
            .collect()
    };

    // Everything, by default (fewer than 50).
    let all = alice.json(&["list"]);
    let mut seen = ids_of(&all);
    assert_eq!(seen.len(), 5, "{all}");
    assert!(all["nextCursor"].is_null(), "{all}");

    // Two at a time: a cursor to go on with, and no request twice or lost.
    let first = alice.json(&["list", "--limit", "2"]);
    assert_eq!(ids_of(&first).len(), 2, "{first}");
    let mut paged = ids_of(&first);
    let mut cursor = first["nextCursor"].as_str().unwrap().to_string();
    loop {
        let next = alice.json(&["list", "--limit", "2", "--cursor", &cursor]);
        paged.extend(ids_of(&next));
        match next["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, seen, "pages in order, nothing twice or lost");
    seen.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(seen, want);

    // The table says how to go on.
    let text = alice.ok(&["list", "--limit", "3"]);
    assert!(text.contains("jit list --cursor "), "{text}");
    assert_eq!(ids_of(&alice.json(&["list", "--all"])).len(), 5);
}

/// A one-request HTTP server on 127.0.0.1:0: records the request head
/// (lower-cased header names) and answers an empty list. Bounded: gives up
/// after 30 s.
fn capture_one() -> (String, std::thread::JoinHandle<Option<String>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let (mut sock, _) = loop {
            match listener.accept() {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => return None,
            }
        };
        sock.set_nonblocking(false).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let body = r#"{"requests":[],"nextCursor":null}"#;
        let _ = write!(
            sock,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        Some(String::from_utf8_lossy(&head).to_string())
    });
    (url, handle)
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} header in {head}"))
}

#[cfg(unix)]
#[test]
fn sigv4_signs_with_the_credentials_the_aws_cli_would_use() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A profile whose keys come from a credential_process, as SSO helpers
    // and password managers provide them.
    let script = root.join("creds.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIDPROCESS\",\"SecretAccessKey\":\"process-secret\",\"SessionToken\":\"token-from-process\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failing = root.join("fails.sh");
    std::fs::write(&failing, "#!/bin/sh\necho 'token expired' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let aws_config = root.join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile dev]\ncredential_process = {}\n\n[profile broken]\ncredential_process = {}\n",
            script.display(),
            failing.display()
        ),
    )
    .unwrap();
    let aws_config = aws_config.to_str().unwrap();

    let configure = |jit: &Jit, url: &str, profile: Option<&str>| {
        let mut args = vec![
            "configure",
            "--api-url",
            url,
            "--api-key",
            KEY,
            "--sigv4",
            "--region",
            "eu-west-1",
        ];
        if let Some(p) = profile {
            args.extend_from_slice(&["--profile", p]);
        }
        jit.ok(&args);
    };

    // The configured profile's credential_process.
    let dev = Jit::new(root, "dev");
    let (url, server) = capture_one();
    configure(&dev, &url, Some("dev"));
    let out = dev.run_env(&["list"], &[("AWS_CONFIG_FILE", aws_config)]);
    let head = server.join().unwrap().expect("jit called the API");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let auth = header(&head, "authorization");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDPROCESS/")
            && auth.contains("/eu-west-1/execute-api/aws4_request"),
        "{auth}"
    );
    assert_eq!(header(&head, "x-amz-security-token"), "token-from-process");
    assert_eq!(header(&head, "x-api-key"), KEY);

    // No profile configured: the environment's keys, as for the AWS CLI.
    let env = Jit::new(root, "env");
    let (url, server) = capture_one();
    configure(&env, &url, None);
    let out = env.run_env(
        &["list"],
        &[
            ("AWS_ACCESS_KEY_ID", "AKIDENVIRONMENT"),
            ("AWS_SECRET_ACCESS_KEY", "env-secret"),
        ],
    );
    let head = server.join().unwrap().expect("jit called the API");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        header(&head, "authorization").contains("Credential=AKIDENVIRONMENT/"),
        "{head}"
    );

    // A profile whose process fails: one line naming the profile, nothing
    // sent.
    let broken = Jit::new(root, "broken");
    configure(&broken, "http://127.0.0.1:9", Some("broken"));
    let err = broken.fails_env(&["list"], &[("AWS_CONFIG_FILE", aws_config)]);
    assert!(err.contains("profile `broken`"), "{err}");
    assert!(
        err.contains("token expired"),
        "the process's own reason: {err}"
    );
    assert!(
        !err.contains("cannot reach"),
        "failed before any request: {err}"
    );
}

#[test]
fn configure_local_reads_the_key_jit_local_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    // What the jit-local binary writes at start (the in-process server here
    // does not): its API key, for its users.
    std::fs::write(data.join("api-key"), format!("{KEY}\n")).unwrap();

    let sre = Jit::new(dir.path(), "sre");
    let data_dir = data.to_str().unwrap();
    sre.ok(&[
        "configure",
        "--local",
        "--user",
        "sre@example.com",
        "--groups",
        "sre",
        "--data-dir",
        data_dir,
        "--api-url",
        &server.url(),
    ]);
    let r = sre.json(&["request", "OnCallReadOnly", "--reason", "INC-1"]);
    assert!(r["requestId"].is_string(), "{r}");
    // The key is not copied into the configuration: it is read from the
    // data dir at every run, so the CLI follows the file.
    let stored = std::fs::read_to_string(sre.config.join("config.json")).unwrap();
    assert!(!stored.contains(KEY), "{stored}");
    std::fs::write(data.join("api-key"), "another-servers-key-0123456789\n").unwrap();
    let err = sre.fails(&["list"]);
    assert!(err.contains("api-key"), "names the key file: {err}");
    assert!(
        err.contains("jit configure --local --data-dir"),
        "names the fix that applies: {err}"
    );
    std::fs::write(data.join("api-key"), format!("{KEY}\n")).unwrap();
    sre.ok(&["list"]);

    // With no key where it looks: one line naming the file and the fixes.
    let lost = Jit::new(dir.path(), "lost");
    let err = lost.fails(&[
        "configure",
        "--local",
        "--user",
        "x@example.com",
        "--data-dir",
        dir.path().join("nowhere").to_str().unwrap(),
    ]);
    assert!(err.contains("nowhere/api-key"), "{err}");
    assert!(err.contains("start jit-local"), "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    assert!(!lost.config.join("config.json").exists());

    // Outside --local the URL is required.
    let out = lost.run(&["configure", "--api-key", KEY]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-url"));
}

/// The README's "Try it" section, run as written: its `sh` blocks, in
/// order, in one shell, against the real `jit-local` binary started with
/// no flags but a free port (its defaults: `./.jit`, the built-in catalog,
/// a new key) and the real `jit` on PATH. The only edit is the port:
/// `127.0.0.1:3000` becomes the one the server got, and `JIT_API_URL`
/// tells `jit configure --local` the same. A second between blocks stands
/// for the reader moving on (the workflow grants within milliseconds).
#[test]
fn readme_try_it_works_as_written() {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let section = readme
        .split("\n## Try it\n")
        .nth(1)
        .expect("README has a `## Try it` section")
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .map(|b| b.split("\n```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 6, "{blocks:#?}");

    let jit = std::path::PathBuf::from(env!("CARGO_BIN_EXE_jit"));
    let bin_dir = jit.parent().unwrap().to_path_buf();
    let jit_local = bin_dir.join("jit-local");
    assert!(
        jit_local.exists(),
        "{} is not built: run the tests with --workspace (./scripts/test)",
        jit_local.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("repo");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let mut server = std::process::Command::new(&jit_local)
        .args(["--addr", "127.0.0.1:0"])
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("JIT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = server.stdout.take().unwrap();
    let server = Kill(server);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("jit-local starts within 30 s");
        if let Some(a) = line.strip_prefix("jit-local listening on http://") {
            break a.trim().to_string();
        }
    };
    let url = format!("http://{addr}");
    let script = format!(
        "set -euo pipefail\n{}\n",
        blocks
            .iter()
            .map(|b| b.replace("http://127.0.0.1:3000", &url))
            .collect::<Vec<_>>()
            .join("\nsleep 1\n")
    );
    let out =
        std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&cwd)
            .env_clear()
            .env(
                "PATH",
                std::env::join_paths(std::iter::once(bin_dir.clone()).chain(
                    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
                ))
                .unwrap(),
            )
            .env("HOME", &home)
            .env("JIT_API_URL", &url)
            .output()
            .unwrap();
    drop(server);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Try it commands failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- script\n{script}",
        out.status
    );
    // What each step says it shows.
    for want in [
        r#""status":"GRANTED""#,                      // 1. the seed's request
        r#""AccessKeyId":"LOCALFAKE"#,                // 1. its credentials
        "auto-approved for you ≤1h",                  // 2. jit entitlements
        "running with LOCALFAKE",                     // 2. jit exec
        "APPROVAL_PENDING (waiting for an approver)", // 3.
        "<h1>Approve or deny access</h1>",            // 4. the link's page
        r#"<h1 id="outcome">Approved</h1>"#,          // 4. its form
        "refused: the grant is over",                 // 5. after the revoke
    ] {
        assert!(
            stdout.contains(want),
            "missing {want:?} in:\n{stdout}\n--- stderr\n{stderr}"
        );
    }
    assert_eq!(
        stdout.matches("GRANTED (expires in").count(),
        3,
        "2., 3. and 4. end granted:\n{stdout}"
    );
}
