//! The console's routes and pages.

use http::{Method, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::html::{self, Chrome, Flash, badge, csrf_field, esc, s, short_duration, when};
use crate::session::{self, Session, cookie, random_token, set_cookie};
use crate::{ApiAnswer, ApiCall, Console, ConsoleRequest, MAX_FORM_BYTES, SignIn, see_other};

const SESSION_LABEL: &str = "session";
const FLASH_LABEL: &str = "flash";
const PRE_LABEL: &str = "pre-signin";
pub(crate) const OIDC_LABEL: &str = "oidc";

/// Requests a listing asks the API for per page.
const PAGE: &str = "50";

impl Console {
    fn cookie_name(&self, base: &str) -> String {
        if self.secure_cookies {
            format!("__Host-{base}")
        } else {
            base.to_string()
        }
    }

    fn local(&self) -> bool {
        matches!(self.sign_in, SignIn::Local { .. })
    }

    /// The signed-in person, when the session cookie is ours and current.
    fn session(&self, headers: &http::HeaderMap) -> Option<Session> {
        let raw = cookie(headers, &self.cookie_name("jit_session"))?;
        let s: Session = self.key.open(SESSION_LABEL, raw)?;
        (s.expires > self.now().timestamp()).then_some(s)
    }

    /// A `Set-Cookie` for a new session (refused when it would not fit in
    /// a cookie: a token with very many groups).
    pub(crate) fn session_cookie(&self, s: &Session) -> Result<String, String> {
        let sealed = self.key.seal(SESSION_LABEL, s);
        let c = set_cookie(
            &self.cookie_name("jit_session"),
            &sealed,
            s.expires - self.now().timestamp(),
            self.secure_cookies,
        );
        if c.len() > session::MAX_COOKIE_BYTES {
            return Err(format!(
                "the session would be a {}-byte cookie, more than browsers keep ({}): the token carries too many groups",
                c.len(),
                session::MAX_COOKIE_BYTES
            ));
        }
        Ok(c)
    }

    fn flash_cookie(&self, f: &Flash) -> String {
        set_cookie(
            &self.cookie_name("jit_flash"),
            &self.key.seal(FLASH_LABEL, f),
            60,
            self.secure_cookies,
        )
    }

    pub(crate) fn oidc_cookie(&self, value: &str, max_age: i64) -> String {
        set_cookie(
            &self.cookie_name("jit_oidc"),
            value,
            max_age,
            self.secure_cookies,
        )
    }

    pub(crate) fn oidc_cookie_value<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        cookie(headers, &self.cookie_name("jit_oidc"))
    }

    /// After a POST: to `back` with a message for the next page.
    fn redirect_with(&self, back: &str, f: Flash) -> Response<String> {
        let mut r = see_other(back);
        if let Ok(v) = self.flash_cookie(&f).parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }

    /// Signs the person in: the session cookie, with which links to show
    /// (asked of the API as them), then to `next`.
    pub(crate) async fn start_session(&self, mut s: Session, next: &str) -> Response<String> {
        let admin = self
            .backend
            .call(
                &s,
                ApiCall::get("/requests").query(&[("scope", "all"), ("limit", "1")]),
            )
            .await;
        s.admin = admin.ok();
        let from = (self.now() - chrono::Duration::hours(1))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let analytics = self
            .backend
            .call(&s, ApiCall::get("/analytics").query(&[("from", &from)]))
            .await;
        s.analytics = analytics.ok();
        match self.session_cookie(&s) {
            Ok(c) => {
                tracing::info!(user = %s.user, "console sign-in");
                let mut r = see_other(safe_next(next));
                if let Ok(v) = c.parse() {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
                r
            }
            Err(m) => plain_error(self, StatusCode::BAD_REQUEST, "Cannot sign in", &m),
        }
    }
}

/// Only a path on this site (never `//host` or a URL) is a place to go next.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next
    } else {
        "/"
    }
}

fn html_response(status: StatusCode, body: String) -> Response<String> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn asset(body: &'static str, content_type: &'static str) -> Response<String> {
    let mut r = Response::new(body.to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=300"),
    );
    r
}

pub(crate) fn plain_error(
    c: &Console,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response<String> {
    let chrome = Chrome {
        user: None,
        admin: false,
        analytics: false,
        csrf: None,
        local: c.local(),
        current: "",
    };
    let main = format!(
        "<h1>{}</h1>\n<p role=\"alert\" class=\"flash error\" id=\"message\">{}</p>\n<p><a href=\"/\">Back to my requests</a></p>",
        esc(heading),
        esc(message)
    );
    html_response(status, html::page(heading, &chrome, None, &main))
}

/// A form body's fields (`application/x-www-form-urlencoded`).
pub(crate) fn form_fields(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = jit_core::links::percent_decode(&k.replace('+', " "))?;
            let v = jit_core::links::percent_decode(&v.replace('+', " "))?;
            Some((k, v))
        })
        .collect()
}

pub(crate) fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// The query's fields (same encoding as a form).
fn query_fields(q: Option<&str>) -> Vec<(String, String)> {
    form_fields(q.unwrap_or("").as_bytes()).unwrap_or_default()
}

/// One signed-in request: the person, their CSRF token, the flash.
struct Ctx<'a> {
    c: &'a Console,
    s: Session,
    csrf: String,
    flash: Option<Flash>,
}

impl Ctx<'_> {
    async fn api(&self, call: ApiCall) -> ApiAnswer {
        self.c.backend.call(&self.s, call).await
    }

    fn chrome<'b>(&'b self, current: &'b str) -> Chrome<'b> {
        Chrome {
            user: Some(&self.s.user),
            admin: self.s.admin,
            analytics: self.s.analytics,
            csrf: Some(self.csrf.clone()),
            local: self.c.local(),
            current,
        }
    }

    fn page(&self, status: StatusCode, title: &str, current: &str, main: &str) -> Response<String> {
        let mut r = html_response(
            status,
            html::page(title, &self.chrome(current), self.flash.as_ref(), main),
        );
        if self.flash.is_some()
            && let Ok(v) = set_cookie(
                &self.c.cookie_name("jit_flash"),
                "",
                0,
                self.c.secure_cookies,
            )
            .parse()
        {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    }

    fn refused(&self, title: &str, current: &str, a: &ApiAnswer) -> Response<String> {
        let status = StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let main = format!(
            "<h1>{}</h1>\n<p role=\"alert\" class=\"flash error\" id=\"message\">{}</p>",
            esc(title),
            esc(&a.refusal())
        );
        self.page(status, title, current, &main)
    }

    fn me(&self) -> &str {
        &self.s.user
    }
}

pub(crate) async fn route(c: &Console, req: ConsoleRequest) -> Response<String> {
    let path = match req.path.trim_end_matches('/') {
        "" => "/",
        p => p,
    }
    .to_string();
    let m = req.method.clone();
    match (&m, path.as_str()) {
        (&Method::GET, "/ui/assets/console.css") => return asset(html::CSS, "text/css"),
        (&Method::GET, "/ui/assets/console.js") => {
            return asset(html::JS, "text/javascript; charset=utf-8");
        }
        (&Method::GET, "/ui/signin") => {
            if let SignIn::Oidc(o) = &c.sign_in {
                let q = query_fields(req.query.as_deref());
                return crate::oidc::begin(c, o, safe_next(field(&q, "next"))).await;
            }
            return signin_page(c, &req, None);
        }
        (&Method::POST, "/ui/signin") => return local_signin(c, &req).await,
        (&Method::GET, "/ui/auth/callback") => return crate::oidc::callback(c, &req).await,
        (&Method::GET, "/ui/signedout") => {
            return html_response(
                StatusCode::OK,
                html::page(
                    "Signed out",
                    &Chrome {
                        user: None,
                        admin: false,
                        analytics: false,
                        csrf: None,
                        local: c.local(),
                        current: "",
                    },
                    None,
                    "<h1>Signed out</h1>\n<p><a href=\"/ui/signin\">Sign in again</a></p>",
                ),
            );
        }
        _ => {}
    }
    let Some(s) = c.session(&req.headers) else {
        if m == Method::GET {
            let next = match &req.query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            return see_other(&format!(
                "/ui/signin?next={}",
                jit_core::links::percent_encode(&next)
            ));
        }
        return plain_error(
            c,
            StatusCode::FORBIDDEN,
            "Signed out",
            "your session has ended: sign in again, then repeat what you did",
        );
    };
    let csrf = c.key.csrf(&s.nonce);
    let flash = cookie(&req.headers, &c.cookie_name("jit_flash"))
        .and_then(|v| c.key.open::<Flash>(FLASH_LABEL, v));
    let ctx = Ctx { c, s, csrf, flash };
    if m == Method::POST {
        if req.body.len() > MAX_FORM_BYTES {
            return plain_error(
                c,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "the form is larger than the console accepts",
            );
        }
        let Some(fields) = form_fields(&req.body) else {
            return plain_error(
                c,
                StatusCode::BAD_REQUEST,
                "Bad form",
                "the form is not valid URL-encoded UTF-8",
            );
        };
        if !c.key.csrf_ok(&ctx.s.nonce, field(&fields, "csrf")) {
            tracing::info!(user = %ctx.s.user, path = %path, "console form refused: missing or wrong CSRF token");
            return plain_error(
                c,
                StatusCode::FORBIDDEN,
                "Form expired",
                "this form's security token is missing or belongs to another session: reload the page and try again",
            );
        }
        return post(ctx, &path, &fields).await;
    }
    if m != Method::GET {
        return plain_error(
            c,
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "use the page's links and buttons",
        );
    }
    let q = query_fields(req.query.as_deref());
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        [""] => home(&ctx, None, None).await,
        ["ui", "inbox"] => inbox(&ctx).await,
        ["ui", "admin"] => admin(&ctx, &q).await,
        ["ui", "analytics"] => analytics(&ctx, &q).await,
        ["ui", "live"] => live(&ctx, &q).await,
        ["ui", "requests", id] => detail(&ctx, id).await,
        _ => ctx.page(
            StatusCode::NOT_FOUND,
            "Not found",
            "",
            "<h1>Not found</h1>\n<p>No such page. <a href=\"/\">Back to my requests</a></p>",
        ),
    }
}

async fn post(ctx: Ctx<'_>, path: &str, f: &[(String, String)]) -> Response<String> {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    match segments.as_slice() {
        ["ui", "signout"] => {
            tracing::info!(user = %ctx.s.user, "console sign-out");
            let mut r = see_other("/ui/signedout");
            if let Ok(v) = set_cookie(
                &ctx.c.cookie_name("jit_session"),
                "",
                0,
                ctx.c.secure_cookies,
            )
            .parse()
            {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        ["ui", "requests"] => create(&ctx, f).await,
        ["ui", "requests", id, "credentials"] => credentials(&ctx, id).await,
        ["ui", "requests", id, "console"] => console_signin(&ctx, id).await,
        ["ui", "requests", id, verb] => action(&ctx, id, verb, None, f).await,
        ["ui", "requests", id, "extend", verb] => action(&ctx, id, "extend", Some(verb), f).await,
        _ => ctx.page(
            StatusCode::NOT_FOUND,
            "Not found",
            "",
            "<h1>Not found</h1>\n<p>No such action.</p>",
        ),
    }
}

// ---------------------------------------------------------------- sign-in

fn signin_page(c: &Console, req: &ConsoleRequest, error: Option<&str>) -> Response<String> {
    let q = query_fields(req.query.as_deref());
    let next = safe_next(field(&q, "next")).to_string();
    let api_key_hint = match &c.sign_in {
        SignIn::Local { key_hint, .. } => key_hint.clone(),
        SignIn::Oidc(_) => {
            return plain_error(c, StatusCode::NOT_FOUND, "Not found", "no such page");
        }
    };
    // A nonce in its own cookie; the form carries its CSRF token, so
    // another site cannot sign a browser in as someone of its choosing.
    let pre = random_token();
    let chrome = Chrome {
        user: None,
        admin: false,
        analytics: false,
        csrf: None,
        local: true,
        current: "",
    };
    let err = error
        .map(|e| {
            format!(
                "<p class=\"flash error\" role=\"alert\" id=\"message\">{}</p>\n",
                esc(e)
            )
        })
        .unwrap_or_default();
    let main = format!(
        "<h1>Sign in (local only)</h1>\n{err}\
<p class=\"warning\"><strong>Local mode.</strong> This page lets anyone holding jit-local's API key act as any person and any groups. It exists only in <code>jit-local</code>; the deployed console signs people in with OpenID Connect and has no such page.</p>\n\
<form method=\"post\" action=\"/ui/signin\" class=\"stack\">\n{csrf}\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\n\
<label for=\"user\">Who you are (email)</label>\n\
<input id=\"user\" name=\"user\" type=\"text\" autocomplete=\"username\" required placeholder=\"alice@example.com\" list=\"people\">\n\
<datalist id=\"people\"><option value=\"alice@example.com\"><option value=\"lead@example.com\"><option value=\"sre@example.com\"><option value=\"security@example.com\"></datalist>\n\
<label for=\"groups\">Groups <span class=\"hint\">(comma-separated; as an identity provider's groups claim would say)</span></label>\n\
<input id=\"groups\" name=\"groups\" type=\"text\" placeholder=\"engineering, sre\">\n\
<label for=\"apikey\">jit-local's API key <span class=\"hint\">({hint})</span></label>\n\
<input id=\"apikey\" name=\"apikey\" type=\"password\" autocomplete=\"off\" required>\n\
<button type=\"submit\" id=\"signin\">Sign in</button>\n</form>",
        csrf = csrf_field(&c.key.csrf(&pre)),
        next = esc(&next),
        hint = esc(&api_key_hint),
    );
    let mut r = html_response(
        if error.is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        },
        html::page("Sign in", &chrome, None, &main),
    );
    if let Ok(v) = set_cookie(
        &c.cookie_name("jit_pre"),
        &c.key.seal(PRE_LABEL, &pre),
        1800,
        c.secure_cookies,
    )
    .parse()
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn local_signin(c: &Console, req: &ConsoleRequest) -> Response<String> {
    let SignIn::Local { api_key, .. } = &c.sign_in else {
        return plain_error(
            c,
            StatusCode::NOT_FOUND,
            "Not found",
            "this console signs people in with OpenID Connect",
        );
    };
    let fields = form_fields(&req.body).unwrap_or_default();
    let pre: Option<String> =
        cookie(&req.headers, &c.cookie_name("jit_pre")).and_then(|v| c.key.open(PRE_LABEL, v));
    let csrf_ok = pre.is_some_and(|p| c.key.csrf_ok(&p, field(&fields, "csrf")));
    if !csrf_ok {
        return signin_page(
            c,
            req,
            Some("the sign-in form expired or came from another site: try again"),
        );
    }
    let key_ok: bool = subtle::ConstantTimeEq::ct_eq(
        field(&fields, "apikey").trim().as_bytes(),
        api_key.as_bytes(),
    )
    .into();
    if !key_ok {
        tracing::info!("console local sign-in refused: wrong API key");
        return signin_page(c, req, Some("that is not this jit-local's API key"));
    }
    let user = field(&fields, "user").trim();
    if let Err(e) = jit_core::Principal::parse(user.to_string()) {
        return signin_page(c, req, Some(&format!("who you are: {}", e.0)));
    }
    let groups: Vec<String> = field(&fields, "groups")
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let s = Session::new(
        user.to_string(),
        groups,
        c.now().timestamp() + c.session_secs,
    );
    c.start_session(s, field(&fields, "next")).await
}

// ---------------------------------------------------------------- home

/// What the request form showed when the API refused it, to show again.
#[derive(Default)]
struct Prefill {
    entitlement: String,
    duration: String,
    justification: String,
    /// The scope fields as typed (see [`scope_from_form`]).
    scope_access: String,
    scope_services: String,
    scope_actions: String,
    scope_resources: String,
    scope_describe: String,
}

impl Prefill {
    fn from_form(f: &[(String, String)]) -> Prefill {
        Prefill {
            entitlement: field(f, "entitlement").to_string(),
            duration: field(f, "duration").trim().to_string(),
            justification: field(f, "justification").to_string(),
            scope_access: field(f, "scope_access").to_string(),
            scope_services: field(f, "scope_services").to_string(),
            scope_actions: field(f, "scope_actions").to_string(),
            scope_resources: field(f, "scope_resources").to_string(),
            scope_describe: field(f, "scope_describe").to_string(),
        }
    }
}

/// Comma-, space- or line-separated items of a text field.
fn items(text: &str) -> Vec<String> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

/// The API's `scope` from the form: exact actions when any are given, else
/// an access level over services, else words; `None` when the person asked
/// for the whole entitlement. The API checks it (and names the field it
/// refuses), so the console adds no rule of its own.
fn scope_from_form(p: &Prefill) -> Option<Value> {
    let resources = items(&p.scope_resources);
    let with_resources = |mut v: Value| {
        if !resources.is_empty() {
            v["resources"] = json!(resources);
        }
        v
    };
    if !items(&p.scope_actions).is_empty() {
        Some(with_resources(
            json!({ "actions": items(&p.scope_actions) }),
        ))
    } else if !p.scope_access.is_empty() {
        Some(with_resources(json!({
            "access": p.scope_access,
            "services": items(&p.scope_services),
        })))
    } else if !p.scope_describe.trim().is_empty() {
        Some(json!({ "describe": p.scope_describe.trim() }))
    } else {
        None
    }
}

/// What a preview showed, to show with the form.
struct Preview(ApiAnswer);

async fn home(
    ctx: &Ctx<'_>,
    prefill: Option<(Prefill, ApiAnswer)>,
    preview: Option<(Prefill, Preview)>,
) -> Response<String> {
    let now = ctx.c.now();
    let (mine, ents) = tokio::join!(
        ctx.api(ApiCall::get("/requests").query(&[("limit", PAGE)])),
        ctx.api(ApiCall::get("/entitlements")),
    );
    let mut main = String::from("<h1>My requests</h1>\n");
    if !mine.ok() {
        main.push_str(&format!(
            "<p class=\"flash error\" role=\"alert\">{}</p>\n",
            esc(&mine.refusal())
        ));
    } else {
        let items = mine.body["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            main.push_str("<p id=\"no-requests\">You have not asked for access yet.</p>\n");
        } else {
            main.push_str(&requests_table(
                &items,
                now,
                false,
                "Your requests, newest first",
            ));
        }
    }
    main.push_str("<h2 id=\"ask\">Ask for access</h2>\n");
    let (prefill, refusal) = match prefill {
        Some((p, a)) => (p, Some(a)),
        None => (Prefill::default(), None),
    };
    let (prefill, preview) = match preview {
        Some((p, v)) => (p, Some(v)),
        None => (prefill, None),
    };
    if let Some(a) = &refusal {
        main.push_str(&format!(
            "<p class=\"flash error\" role=\"alert\" id=\"form-error\">{}</p>\n",
            esc(&a.refusal())
        ));
    }
    if let Some(Preview(a)) = &preview {
        main.push_str(&preview_block(a));
    }
    if !ents.ok() {
        main.push_str(&format!(
            "<p class=\"flash error\" role=\"alert\">{}</p>\n",
            esc(&ents.refusal())
        ));
    } else {
        let list = ents.body["entitlements"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if list.is_empty() {
            main.push_str("<p id=\"no-entitlements\">No entitlement in the catalog lists you as eligible.</p>\n");
        } else {
            main.push_str(&request_form(ctx, &list, &prefill));
        }
    }
    let status = match (&refusal, &preview) {
        (Some(a), _) => StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST),
        (None, Some(Preview(a))) if !a.ok() => {
            StatusCode::from_u16(a.status).unwrap_or(StatusCode::BAD_REQUEST)
        }
        _ => StatusCode::OK,
    };
    ctx.page(status, "My requests", "/", &main)
}

fn requests_table(
    items: &[Value],
    now: jit_core::request::Timestamp,
    with_requester: bool,
    caption: &str,
) -> String {
    let mut t = format!(
        "<div class=\"table\"><table>\n<caption>{}</caption>\n<thead><tr><th scope=\"col\">Request</th>{}<th scope=\"col\">Entitlement</th><th scope=\"col\">Status</th><th scope=\"col\">Created</th><th scope=\"col\">Ends</th></tr></thead>\n<tbody>\n",
        esc(caption),
        if with_requester {
            "<th scope=\"col\">Requester</th>"
        } else {
            ""
        }
    );
    for r in items {
        let id = r["requestId"].as_str().unwrap_or_default();
        let status = r["status"].as_str().unwrap_or_default();
        t.push_str(&format!(
            "<tr><td><a href=\"/ui/requests/{id}\" class=\"mono\">{short}</a></td>{req}<td>{ent}</td><td>{badge}</td><td>{created}</td><td>{ends}</td></tr>\n",
            id = esc(id),
            short = esc(&id[id.len().saturating_sub(8)..]),
            req = if with_requester {
                format!("<td>{}</td>", s(&r["requester"]["principal"]))
            } else {
                String::new()
            },
            ent = s(&r["entitlement"]),
            badge = badge(status, Some(id)),
            created = when(&r["createdAt"], now),
            ends = when(&r["expiresAt"], now),
        ));
    }
    t.push_str("</tbody></table></div>\n");
    t
}

fn request_form(ctx: &Ctx<'_>, list: &[Value], p: &Prefill) -> String {
    let mut f = format!(
        "<form method=\"post\" action=\"/ui/requests\" class=\"stack\" id=\"request-form\">\n{}\
<input type=\"hidden\" name=\"idempotencyKey\" value=\"{}\">\n\
<fieldset><legend>Entitlement</legend>\n",
        csrf_field(&ctx.csrf),
        random_token()
    );
    for (i, e) in list.iter().enumerate() {
        let name = e["name"].as_str().unwrap_or_default();
        let checked = if p.entitlement == name || (p.entitlement.is_empty() && i == 0) {
            " checked"
        } else {
            ""
        };
        let auto = match e["autoApprovedForYou"].as_bool() {
            Some(true) => "approved at once for you (up to the rule's limit)",
            _ => "needs an approver",
        };
        let target = match e["grantMode"].as_str() {
            Some("attach-policy") => format!("attaches {}", s(&e["policyName"])),
            _ => format!("assumes {}", s(&e["roleArn"])),
        };
        f.push_str(&format!(
            "<div class=\"choice\"><input type=\"radio\" name=\"entitlement\" id=\"ent-{i}\" value=\"{name}\"{checked} required>\
<label for=\"ent-{i}\"><strong>{name}</strong> <span class=\"hint\">{desc}</span><br>\
<span class=\"meta\">account {acct} · {target} · {min}–{max} (default {def}) · {auto}</span></label></div>\n",
            name = esc(name),
            desc = s(&e["description"]),
            acct = s(&e["accountId"]),
            min = short_duration(e["minDuration"].as_u64().unwrap_or(0)),
            max = short_duration(e["maxDuration"].as_u64().unwrap_or(0)),
            def = short_duration(e["defaultDuration"].as_u64().unwrap_or(0)),
        ));
    }
    f.push_str(&format!(
        "</fieldset>\n\
<label for=\"duration\">Duration <span class=\"hint\">(e.g. 30m, 1h; empty: the entitlement's default)</span></label>\n\
<input id=\"duration\" name=\"duration\" type=\"text\" inputmode=\"text\" pattern=\"[0-9]+[smhd]?([0-9]+[smhd])*\" value=\"{}\">\n\
<label for=\"justification\">Justification <span class=\"hint\">(shown to approvers; an incident or ticket)</span></label>\n\
<textarea id=\"justification\" name=\"justification\" required maxlength=\"1024\">{}</textarea>\n",
        esc(&p.duration),
        esc(&p.justification)
    ));
    let level = |v: &str| {
        format!(
            "<option value=\"{v}\"{}>{}</option>",
            if p.scope_access == v { " selected" } else { "" },
            if v.is_empty() { "(none)" } else { v }
        )
    };
    f.push_str(&format!(
        "<fieldset id=\"scope\"><legend>Scope <span class=\"hint\">(optional: ask only for what you need; empty asks for the whole entitlement)</span></legend>\n\
<label for=\"scope_actions\">Exact actions <span class=\"hint\">(e.g. s3:GetObject, s3:ListBucket)</span></label>\n\
<input id=\"scope_actions\" name=\"scope_actions\" type=\"text\" value=\"{actions}\">\n\
<label for=\"scope_access\">Or an access level</label>\n\
<select id=\"scope_access\" name=\"scope_access\">{levels}</select>\n\
<label for=\"scope_services\">in services <span class=\"hint\">(e.g. s3, logs)</span></label>\n\
<input id=\"scope_services\" name=\"scope_services\" type=\"text\" value=\"{services}\">\n\
<label for=\"scope_resources\">Resources <span class=\"hint\">(ARNs, one per line; empty: every resource of those services)</span></label>\n\
<textarea id=\"scope_resources\" name=\"scope_resources\" rows=\"2\">{resources}</textarea>\n\
<label for=\"scope_describe\">Or in words <span class=\"hint\">(needs the AI generator)</span></label>\n\
<input id=\"scope_describe\" name=\"scope_describe\" type=\"text\" maxlength=\"1024\" value=\"{describe}\">\n\
<button type=\"submit\" name=\"op\" value=\"preview\" id=\"preview-button\" class=\"copy\" formnovalidate>Preview the policy</button>\n\
</fieldset>\n\
<button type=\"submit\" id=\"ask-button\">Ask for access</button>\n</form>\n",
        actions = esc(&p.scope_actions),
        levels = ["", "read", "list", "write", "tagging", "permissions-management"]
            .iter()
            .map(|v| level(v))
            .collect::<String>(),
        services = esc(&p.scope_services),
        resources = esc(&p.scope_resources),
        describe = esc(&p.scope_describe),
    ));
    f
}

/// The preview's answer: the policy with its summary and validation, or
/// the API's refusal (which names the scope field at fault).
fn preview_block(a: &ApiAnswer) -> String {
    if !a.ok() {
        return format!(
            "<p class=\"flash error\" role=\"alert\" id=\"preview-error\">{}</p>\n",
            esc(&a.refusal())
        );
    }
    let b = &a.body;
    let mut out = String::from(
        "<section id=\"preview\" aria-labelledby=\"preview-h\"><h3 id=\"preview-h\">The policy this request would carry</h3>\n",
    );
    out.push_str(&format!(
        "<p class=\"meta\">by <strong>{}</strong> · {} · {} of {} characters · {}</p>\n",
        s(&b["generator"]),
        s(&b["digest"]),
        b["packedChars"].as_u64().unwrap_or(0),
        b["maxChars"].as_u64().unwrap_or(0),
        if b["valid"].as_bool() == Some(true) {
            "valid"
        } else {
            "NOT valid"
        }
    ));
    if let Some(lines) = b["summary"].as_array() {
        out.push_str("<ul class=\"policy\" id=\"preview-summary\">");
        for l in lines {
            let list = |v: &Value| {
                v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default()
            };
            out.push_str(&format!(
                "<li><strong>{}</strong>: {} on {}</li>",
                s(&l["service"]),
                esc(&list(&l["access"])),
                esc(&list(&l["resources"]))
            ));
        }
        out.push_str("</ul>\n");
    }
    if let Some(notes) = b["notes"].as_array().filter(|n| !n.is_empty()) {
        out.push_str("<ul class=\"notes\">");
        for n in notes {
            out.push_str(&format!("<li>{}</li>", s(n)));
        }
        out.push_str("</ul>\n");
    }
    out.push_str(&format!(
        "<pre class=\"policy\">{}</pre>\n</section>\n",
        esc(&serde_json::to_string_pretty(&b["policy"]).unwrap_or_default())
    ));
    out
}

async fn create(ctx: &Ctx<'_>, f: &[(String, String)]) -> Response<String> {
    let form = Prefill::from_form(f);
    let scope = scope_from_form(&form);
    if field(f, "op") == "preview" {
        let mut body = json!({ "entitlement": form.entitlement });
        if let Some(scope) = &scope {
            body["scope"] = scope.clone();
        }
        if !form.justification.trim().is_empty() {
            body["justification"] = json!(form.justification);
        }
        let a = ctx.api(ApiCall::post("/policies/preview", body)).await;
        return home(ctx, None, Some((form, Preview(a)))).await;
    }
    let mut body = json!({
        "entitlement": field(f, "entitlement"),
        "justification": field(f, "justification"),
    });
    let duration = field(f, "duration").trim();
    if !duration.is_empty() {
        body["duration"] = json!(duration);
    }
    if let Some(scope) = scope {
        body["scope"] = scope;
    }
    let key = field(f, "idempotencyKey");
    if !key.is_empty() {
        body["idempotencyKey"] = json!(key);
    }
    let a = ctx.api(ApiCall::post("/requests", body)).await;
    if a.ok() {
        let id = a.body["requestId"].as_str().unwrap_or_default();
        let status = a.body["status"].as_str().unwrap_or_default();
        return ctx.c.redirect_with(
            &format!("/ui/requests/{id}"),
            Flash::ok(format!("Request created ({status}).")),
        );
    }
    home(ctx, Some((form, a)), None).await
}

// ---------------------------------------------------------------- detail

/// Ids of requests in `status` the person may decide (the API's approver
/// listing; never their own).
async fn decidable(ctx: &Ctx<'_>, status: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    // A few pages at most: an inbox longer than that is shown in part.
    for _ in 0..4 {
        let a = ctx
            .api(ApiCall::get("/requests").query(&[
                ("status", status),
                ("limit", "100"),
                ("cursor", &cursor),
            ]))
            .await;
        if !a.ok() {
            break;
        }
        out.extend(a.body["requests"].as_array().cloned().unwrap_or_default());
        match a.body["nextCursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    out
}

fn pending_extension(r: &Value) -> Option<&Value> {
    r["extensions"]
        .as_array()?
        .iter()
        .find(|e| e["status"] == "PENDING")
}

async fn detail(ctx: &Ctx<'_>, id: &str) -> Response<String> {
    let now = ctx.c.now();
    let (r, audit) = tokio::join!(
        ctx.api(ApiCall::get(format!("/requests/{id}"))),
        ctx.api(ApiCall::get(format!("/requests/{id}/audit"))),
    );
    if !r.ok() {
        return ctx.refused("Request", "", &r);
    }
    let r = r.body;
    let status = r["status"].as_str().unwrap_or_default().to_string();
    let requester = r["requester"]["principal"].as_str().unwrap_or_default();
    let mine = requester == ctx.me();
    let (may_decide, may_decide_ext) = if mine {
        (false, false)
    } else if status == "APPROVAL_PENDING" {
        let list = decidable(ctx, "APPROVAL_PENDING").await;
        (list.iter().any(|x| x["requestId"] == r["requestId"]), false)
    } else if status == "GRANTED" && pending_extension(&r).is_some() {
        let list = decidable(ctx, "GRANTED").await;
        (false, list.iter().any(|x| x["requestId"] == r["requestId"]))
    } else {
        (false, false)
    };
    let mut main = format!(
        "<h1>{} <span class=\"sub\">request <span class=\"mono\">{}</span></span></h1>\n<p class=\"status-line\">Status: {}</p>\n",
        s(&r["entitlement"]),
        esc(id),
        badge(&status, Some(id)).replacen("<span", "<span id=\"status\"", 1)
    );
    main.push_str(&summary_dl(&r, now));
    main.push_str(&actions(ctx, &r, &status, mine, may_decide, may_decide_ext));
    if let Some(p) = r["sessionPolicy"].as_str() {
        let pretty = serde_json::from_str::<Value>(p)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| p.to_string());
        main.push_str(&format!(
            "<h2>Session policy</h2>\n<pre class=\"code\" id=\"policy\">{}</pre>\n",
            esc(&pretty)
        ));
    }
    main.push_str("<h2>Timeline</h2>\n");
    if audit.ok() {
        main.push_str(&timeline(
            audit.body["events"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[]),
            now,
        ));
    } else {
        main.push_str(&format!(
            "<p class=\"flash error\">{}</p>",
            esc(&audit.refusal())
        ));
    }
    ctx.page(StatusCode::OK, "Request", "", &main)
}

fn summary_dl(r: &Value, now: jit_core::request::Timestamp) -> String {
    let mut dl = String::from("<dl class=\"facts\">\n");
    let mut row = |k: &str, v: String| {
        if !v.is_empty() {
            dl.push_str(&format!("<dt>{k}</dt><dd>{v}</dd>\n"));
        }
    };
    row("Requester", s(&r["requester"]["principal"]));
    row("Account", s(&r["account"]));
    match r["grantMode"].as_str() {
        Some("attach-policy") => row("Grant", format!("attach policy {}", s(&r["policyName"]))),
        _ => row(
            "Grant",
            format!(
                "assume role <span class=\"mono\">{}</span>",
                s(&r["roleArn"])
            ),
        ),
    }
    row(
        "Duration",
        short_duration(r["duration"].as_u64().unwrap_or(0)),
    );
    row("Justification", s(&r["justification"]));
    row("Created", when(&r["createdAt"], now));
    row("Decided", when(&r["decidedAt"], now));
    row("Granted", when(&r["grantedAt"], now));
    row("Ends", when(&r["expiresAt"], now));
    row("Reason", s(&r["reason"]));
    let decisions: Vec<String> = r["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} by {}{}",
                s(&d["verdict"]),
                s(&d["approver"]),
                d["reason"]
                    .as_str()
                    .map(|x| format!(": “{}”", esc(x)))
                    .unwrap_or_default()
            )
        })
        .collect();
    row("Decisions", decisions.join("<br>"));
    let ext: Vec<String> = r["extensions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "+{} {} ({})",
                short_duration(e["durationSecs"].as_u64().unwrap_or(0)),
                s(&e["status"]),
                s(&e["reason"])
            )
        })
        .collect();
    row("Extensions", ext.join("<br>"));
    if r["archived"] == true {
        row("Record", "archived: rebuilt from the audit trail".into());
    }
    dl.push_str("</dl>\n");
    dl
}

fn reason_box(id: &str, label: &str, required: bool) -> String {
    format!(
        "<label for=\"{id}\">{label}</label>\n<textarea id=\"{id}\" name=\"reason\" maxlength=\"1000\"{}></textarea>\n",
        if required { " required" } else { "" }
    )
}

fn actions(
    ctx: &Ctx<'_>,
    r: &Value,
    status: &str,
    mine: bool,
    may_decide: bool,
    may_decide_ext: bool,
) -> String {
    let id = esc(r["requestId"].as_str().unwrap_or_default());
    let csrf = csrf_field(&ctx.csrf);
    let mut a = String::new();
    if may_decide {
        a.push_str(&format!(
            "<form method=\"post\" action=\"/ui/requests/{id}/approve\" class=\"stack decide\">{csrf}<input type=\"hidden\" name=\"back\" value=\"/ui/requests/{id}\">\n{}\
<div class=\"buttons\"><button type=\"submit\" class=\"approve\" id=\"approve\">Approve</button>\
<button type=\"submit\" class=\"deny\" id=\"deny\" formaction=\"/ui/requests/{id}/deny\">Deny</button></div></form>\n",
            reason_box("decide-reason", "Reason <span class=\"hint\">(shown to the requester)</span>", false)
        ));
    }
    if may_decide_ext && let Some(e) = pending_extension(r) {
        a.push_str(&format!(
            "<form method=\"post\" action=\"/ui/requests/{id}/extend/approve\" class=\"stack decide\">{csrf}<input type=\"hidden\" name=\"back\" value=\"/ui/requests/{id}\">\n\
<p>Extension asked: +{} — “{}”</p>\n{}\
<div class=\"buttons\"><button type=\"submit\" class=\"approve\" id=\"approve-extension\">Approve extension</button>\
<button type=\"submit\" class=\"deny\" id=\"deny-extension\" formaction=\"/ui/requests/{id}/extend/deny\">Deny extension</button></div></form>\n",
            short_duration(e["durationSecs"].as_u64().unwrap_or(0)),
            s(&e["reason"]),
            reason_box("ext-reason", "Reason", false)
        ));
    }
    if mine && html::is_pending(status) {
        a.push_str(&format!(
            "<form method=\"post\" action=\"/ui/requests/{id}/cancel\" class=\"stack\">{csrf}\n{}\
<button type=\"submit\" class=\"deny\" id=\"cancel\">Cancel request</button></form>\n",
            reason_box(
                "cancel-reason",
                "Reason <span class=\"hint\">(optional)</span>",
                false
            )
        ));
    }
    if status == "GRANTED" {
        if mine && r["grantMode"] != "attach-policy" {
            a.push_str(&format!(
                "<div class=\"buttons\">\
<form method=\"post\" action=\"/ui/requests/{id}/credentials\">{csrf}<button type=\"submit\" id=\"credentials\">Get credentials</button></form>\
<form method=\"post\" action=\"/ui/requests/{id}/console\">{csrf}<button type=\"submit\" id=\"console-signin\">Open the AWS console</button></form>\
</div>\n"
            ));
        }
        if mine && pending_extension(r).is_none() {
            a.push_str(&format!(
                "<form method=\"post\" action=\"/ui/requests/{id}/extend\" class=\"stack\" id=\"extend-form\">{csrf}\n\
<label for=\"extend-duration\">More time <span class=\"hint\">(e.g. 30m)</span></label>\n\
<input id=\"extend-duration\" name=\"duration\" type=\"text\" required>\n{}\
<button type=\"submit\" id=\"extend\">Ask for more time</button></form>\n",
                reason_box("extend-reason", "Why", true)
            ));
        }
        // The requester, the entitlement's approvers and admins may revoke:
        // exactly who can see the request at all.
        a.push_str(&format!(
            "<form method=\"post\" action=\"/ui/requests/{id}/revoke\" class=\"stack\">{csrf}\n{}\
<button type=\"submit\" class=\"deny\" id=\"revoke\">Revoke now</button></form>\n",
            reason_box(
                "revoke-reason",
                "Reason <span class=\"hint\">(optional)</span>",
                false
            )
        ));
    }
    // A break-glass use waits for someone else's review; the API decides
    // who may give it (an approver of the entitlement, once).
    if !mine && r["breakGlass"].is_object() && r["breakGlass"]["review"].is_null() {
        a.push_str(&format!(
            "<form method=\"post\" action=\"/ui/requests/{id}/review\" class=\"stack decide\" id=\"review-form\">{csrf}\n\
<p>Break-glass for incident <strong>{}</strong>: was it justified?</p>\n\
<label for=\"review-verdict\">Verdict</label>\n\
<select id=\"review-verdict\" name=\"verdict\" required><option value=\"justified\">justified</option><option value=\"not-justified\">not justified</option></select>\n{}\
<button type=\"submit\" id=\"review\">Record the review</button></form>\n",
            s(&r["breakGlass"]["incident"]),
            reason_box("review-reason", "Reason", true)
        ));
    }
    if a.is_empty() {
        return String::new();
    }
    format!(
        "<section aria-labelledby=\"actions-h\" class=\"actions\"><h2 id=\"actions-h\">Actions</h2>\n{a}</section>\n"
    )
}

fn timeline(events: &[Value], now: jit_core::request::Timestamp) -> String {
    if events.is_empty() {
        return "<p>No events.</p>\n".into();
    }
    let mut t = String::from("<ol class=\"timeline\" id=\"timeline\">\n");
    for e in events {
        let what = match (e["from"].as_str(), e["to"].as_str()) {
            (Some(f), Some(to)) => format!("{} → {}", esc(f), esc(to)),
            (None, Some(to)) => esc(to),
            _ => s(&e["action"]),
        };
        t.push_str(&format!(
            "<li><span class=\"when\">{}</span> <strong>{what}</strong> <span class=\"actor\">by {}</span>{}{}</li>\n",
            when(&e["at"], now),
            s(&e["actor"]),
            e["code"].as_str().map(|c| format!(" <span class=\"code\">{}</span>", esc(c))).unwrap_or_default(),
            e["reason"].as_str().map(|r| format!("<br><span class=\"reason\">{}</span>", esc(r))).unwrap_or_default(),
        ));
    }
    t.push_str("</ol>\n");
    t
}

/// Cancel, approve, deny, revoke, extend and extension decisions: the
/// API call, then back where the form came from with its outcome.
async fn action(
    ctx: &Ctx<'_>,
    id: &str,
    verb: &str,
    ext_verb: Option<&str>,
    f: &[(String, String)],
) -> Response<String> {
    let (path, done) = match (verb, ext_verb) {
        ("cancel", None) => ("cancel".to_string(), "Cancelled."),
        ("approve", None) => ("approve".to_string(), "Approved."),
        ("deny", None) => ("deny".to_string(), "Denied."),
        ("revoke", None) => ("revoke".to_string(), "Revoked."),
        ("extend", None) => ("extend".to_string(), "More time asked for."),
        ("extend", Some("approve")) => ("extend/approve".to_string(), "Extension approved."),
        ("extend", Some("deny")) => ("extend/deny".to_string(), "Extension denied."),
        ("review", None) => ("review".to_string(), "Review recorded."),
        _ => {
            return ctx.page(
                StatusCode::NOT_FOUND,
                "Not found",
                "",
                "<h1>Not found</h1>\n<p>No such action.</p>",
            );
        }
    };
    let mut body = json!({});
    let reason = field(f, "reason").trim();
    if !reason.is_empty() {
        body["reason"] = json!(reason);
    }
    if path == "extend" {
        body["duration"] = json!(field(f, "duration").trim());
    }
    if path == "review" {
        // The API names a missing or unknown verdict and an empty reason.
        body["verdict"] = json!(field(f, "verdict"));
        body["reason"] = json!(reason);
    }
    let back = match field(f, "back") {
        "" => format!("/ui/requests/{id}"),
        b => safe_next(b).to_string(),
    };
    let a = ctx
        .api(ApiCall::post(format!("/requests/{id}/{path}"), body))
        .await;
    if a.ok() {
        let status = a.body["status"].as_str().unwrap_or_default();
        ctx.c
            .redirect_with(&back, Flash::ok(format!("{done} The request is {status}.")))
    } else {
        ctx.c.redirect_with(&back, Flash::error(a.refusal()))
    }
}

async fn credentials(ctx: &Ctx<'_>, id: &str) -> Response<String> {
    let a = ctx
        .api(ApiCall::get(format!("/requests/{id}/credentials")))
        .await;
    if !a.ok() {
        return ctx
            .c
            .redirect_with(&format!("/ui/requests/{id}"), Flash::error(a.refusal()));
    }
    let c = &a.body;
    let exports = format!(
        "export AWS_ACCESS_KEY_ID={}\nexport AWS_SECRET_ACCESS_KEY={}\nexport AWS_SESSION_TOKEN={}",
        c["AccessKeyId"].as_str().unwrap_or_default(),
        c["SecretAccessKey"].as_str().unwrap_or_default(),
        c["SessionToken"].as_str().unwrap_or_default()
    );
    let profile = format!("[profile jit-{id}]\ncredential_process = jit credentials {id}");
    let main = format!(
        "<h1>Credentials</h1>\n<p>For request <a href=\"/ui/requests/{id}\" class=\"mono\">{id}</a>; they work until {until}. Nothing here is stored: this page is not cached, and closing it forgets them.</p>\n\
<h2 id=\"exports-h\">As shell exports</h2>\n<pre class=\"code secret\" id=\"exports\" aria-labelledby=\"exports-h\">{exports}</pre>\n\
<button type=\"button\" class=\"copy\" data-copy=\"exports\">Copy exports</button>\n\
<h2 id=\"process-h\">As a credential_process profile</h2>\n<p>In <code>~/.aws/config</code>; the <code>jit</code> CLI refreshes them within the window:</p>\n\
<pre class=\"code\" id=\"process\" aria-labelledby=\"process-h\">{profile}</pre>\n\
<button type=\"button\" class=\"copy\" data-copy=\"process\">Copy profile</button>\n",
        id = esc(id),
        until = when(&c["Expiration"], ctx.c.now()),
        exports = esc(&exports),
        profile = esc(&profile),
    );
    ctx.page(StatusCode::OK, "Credentials", "", &main)
}

async fn console_signin(ctx: &Ctx<'_>, id: &str) -> Response<String> {
    let a = ctx
        .api(ApiCall::get(format!("/requests/{id}/console")))
        .await;
    if !a.ok() {
        return ctx
            .c
            .redirect_with(&format!("/ui/requests/{id}"), Flash::error(a.refusal()));
    }
    let url = a.body["url"].as_str().unwrap_or_default();
    // A link, not a redirect: the page's policy lets forms post only to
    // this site, and the sign-in URL is a one-time capability kept out of
    // history (no-store, a POST's answer).
    let main = format!(
        "<h1>AWS console sign-in</h1>\n<p>The sign-in link works once, for 15 minutes.</p>\n\
<p><a href=\"{}\" id=\"console-link\" class=\"button\" rel=\"noreferrer\">Open the AWS console</a></p>\n\
<p><a href=\"/ui/requests/{}\">Back to the request</a></p>",
        esc(url),
        esc(id)
    );
    ctx.page(StatusCode::OK, "AWS console sign-in", "", &main)
}

// ---------------------------------------------------------------- inbox

async fn inbox(ctx: &Ctx<'_>) -> Response<String> {
    let now = ctx.c.now();
    let (pending, granted) = tokio::join!(
        decidable(ctx, "APPROVAL_PENDING"),
        decidable(ctx, "GRANTED"),
    );
    let extensions: Vec<&Value> = granted
        .iter()
        .filter(|r| pending_extension(r).is_some())
        .collect();
    let mut main = String::from("<h1>Approvals</h1>\n");
    if pending.is_empty() && extensions.is_empty() {
        main.push_str("<p id=\"inbox-empty\">Nothing waits for your decision.</p>\n");
    }
    let csrf = csrf_field(&ctx.csrf);
    for r in &pending {
        let id = esc(r["requestId"].as_str().unwrap_or_default());
        main.push_str(&format!(
            "<article class=\"card\" id=\"inbox-{id}\" aria-labelledby=\"h-{id}\">\n<h2 id=\"h-{id}\">{} for {}</h2>\n{}\
{policy}<form method=\"post\" action=\"/ui/requests/{id}/approve\" class=\"stack decide\">{csrf}<input type=\"hidden\" name=\"back\" value=\"/ui/inbox\">\n\
<label for=\"reason-{id}\">Reason <span class=\"hint\">(shown to the requester)</span></label>\n<textarea id=\"reason-{id}\" name=\"reason\" maxlength=\"1000\"></textarea>\n\
<div class=\"buttons\"><button type=\"submit\" class=\"approve\">Approve</button><button type=\"submit\" class=\"deny\" formaction=\"/ui/requests/{id}/deny\">Deny</button>\
<a href=\"/ui/requests/{id}\">Details</a></div></form>\n</article>\n",
            s(&r["entitlement"]),
            s(&r["requester"]["principal"]),
            card_facts(r, now),
            policy = policy_summary(r),
        ));
    }
    for r in extensions {
        let id = esc(r["requestId"].as_str().unwrap_or_default());
        let e = pending_extension(r).cloned().unwrap_or_default();
        main.push_str(&format!(
            "<article class=\"card\" id=\"inbox-ext-{id}\" aria-labelledby=\"hx-{id}\">\n<h2 id=\"hx-{id}\">More time on {} for {}</h2>\n{}\
<p>Asked: +{} — “{}”</p>\n<form method=\"post\" action=\"/ui/requests/{id}/extend/approve\" class=\"stack decide\">{csrf}<input type=\"hidden\" name=\"back\" value=\"/ui/inbox\">\n\
<label for=\"xreason-{id}\">Reason</label>\n<textarea id=\"xreason-{id}\" name=\"reason\" maxlength=\"1000\"></textarea>\n\
<div class=\"buttons\"><button type=\"submit\" class=\"approve\">Approve extension</button><button type=\"submit\" class=\"deny\" formaction=\"/ui/requests/{id}/extend/deny\">Deny extension</button></div></form>\n</article>\n",
            s(&r["entitlement"]),
            s(&r["requester"]["principal"]),
            card_facts(r, now),
            short_duration(e["durationSecs"].as_u64().unwrap_or(0)),
            s(&e["reason"]),
        ));
    }
    ctx.page(StatusCode::OK, "Approvals", "/ui/inbox", &main)
}

fn card_facts(r: &Value, now: jit_core::request::Timestamp) -> String {
    format!(
        "<dl class=\"facts\"><dt>Account</dt><dd>{}</dd><dt>Duration</dt><dd>{}</dd><dt>Justification</dt><dd>{}</dd><dt>Asked</dt><dd>{}</dd></dl>\n",
        s(&r["account"]),
        short_duration(r["duration"].as_u64().unwrap_or(0)),
        s(&r["justification"]),
        when(&r["createdAt"], now)
    )
}

/// The session policy's statements in one line each: effect, actions,
/// resources (the approver decides on them).
fn policy_summary(r: &Value) -> String {
    let Some(p) = r["sessionPolicy"].as_str() else {
        return String::new();
    };
    let Ok(v) = serde_json::from_str::<Value>(p) else {
        return format!("<p>Session policy: <code>{}</code></p>\n", esc(p));
    };
    let stmts = match &v["Statement"] {
        Value::Array(a) => a.clone(),
        o @ Value::Object(_) => vec![o.clone()],
        _ => vec![],
    };
    let list = |x: &Value| match x {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let mut out = String::from("<p>Session policy:</p><ul class=\"policy\">");
    for st in stmts {
        out.push_str(&format!(
            "<li>{} {} on {}</li>",
            s(&st["Effect"]),
            esc(&list(&st["Action"])),
            esc(&list(&st["Resource"]))
        ));
    }
    out.push_str("</ul>\n");
    out
}

// ---------------------------------------------------------------- admin

const STATUSES: &[&str] = &[
    "REQUESTED",
    "VALIDATING",
    "POLICY_GENERATION",
    "APPROVAL_PENDING",
    "APPROVED",
    "GRANTED",
    "EXPIRED",
    "DENIED",
    "CANCELLED",
    "REVOKED",
    "APPROVAL_TIMED_OUT",
    "FAILED",
];

async fn admin(ctx: &Ctx<'_>, q: &[(String, String)]) -> Response<String> {
    let now = ctx.c.now();
    let keys = ["status", "entitlement", "requester", "from", "to", "cursor"];
    let mut params: Vec<(&str, &str)> = vec![("scope", "all"), ("limit", PAGE)];
    for k in keys {
        params.push((k, field(q, k)));
    }
    let (list, notes, reviews) = tokio::join!(
        ctx.api(ApiCall::get("/requests").query(&params)),
        ctx.api(ApiCall::get("/audit").query(&[("action", "note"), ("limit", "200")])),
        ctx.api(ApiCall::get("/requests").query(&[("review", "pending")])),
    );
    if list.code() == Some("not_admin") || list.status == 403 {
        return ctx.refused("Admin", "/ui/admin", &list);
    }
    let mut main = String::from(
        "<h1>All requests</h1>\n<form method=\"get\" action=\"/ui/admin\" class=\"filters\" aria-label=\"Filters\">\n",
    );
    let mut options = String::from("<option value=\"\">any</option>");
    for st in STATUSES {
        let sel = if field(q, "status") == *st {
            " selected"
        } else {
            ""
        };
        options.push_str(&format!("<option{sel}>{st}</option>"));
    }
    main.push_str(&format!(
        "<div><label for=\"f-status\">Status</label><select id=\"f-status\" name=\"status\">{options}</select></div>\n"
    ));
    for (k, label, ph) in [
        ("entitlement", "Entitlement", ""),
        ("requester", "Requester", "alice@example.com"),
        ("from", "From", "2027-01-15"),
        ("to", "To", "2027-01-31"),
    ] {
        main.push_str(&format!(
            "<div><label for=\"f-{k}\">{label}</label><input id=\"f-{k}\" name=\"{k}\" type=\"text\" value=\"{}\" placeholder=\"{ph}\"></div>\n",
            esc(field(q, k))
        ));
    }
    main.push_str("<div><button type=\"submit\">Filter</button></div>\n</form>\n");
    if !list.ok() {
        main.push_str(&format!(
            "<p class=\"flash error\" role=\"alert\" id=\"message\">{}</p>\n",
            esc(&list.refusal())
        ));
    } else {
        let items = list.body["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            main.push_str("<p>No request matches.</p>\n");
        } else {
            main.push_str(&requests_table(&items, now, true, "Requests, newest first"));
        }
        if let Some(next) = list.body["nextCursor"].as_str() {
            let mut qs: Vec<String> = keys[..5]
                .iter()
                .filter(|k| !field(q, k).is_empty())
                .map(|k| format!("{k}={}", jit_core::links::percent_encode(field(q, k))))
                .collect();
            qs.push(format!("cursor={}", jit_core::links::percent_encode(next)));
            main.push_str(&format!(
                "<p><a href=\"/ui/admin?{}\" rel=\"next\">Next page</a></p>\n",
                esc(&qs.join("&"))
            ));
        }
    }
    main.push_str("<h2 id=\"drift\">Reconciler drift</h2>\n");
    if notes.ok() {
        let drift: Vec<&Value> = notes.body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["actor"] == "system:reconciler")
            .collect();
        if drift.is_empty() {
            main.push_str("<p>The reconciler repaired nothing in the last 30 days.</p>\n");
        } else {
            main.push_str("<ul class=\"drift\">\n");
            for e in drift {
                let rid = e["requestId"].as_str().unwrap_or_default();
                main.push_str(&format!(
                    "<li>{} <a href=\"/ui/requests/{rid}\" class=\"mono\">{rid}</a>: {}</li>\n",
                    when(&e["at"], now),
                    s(&e["reason"]),
                    rid = esc(rid)
                ));
            }
            main.push_str("</ul>\n");
        }
    } else {
        main.push_str(&format!(
            "<p class=\"flash error\">{}</p>\n",
            esc(&notes.refusal())
        ));
    }
    main.push_str("<h2 id=\"break-glass\">Break-glass reviews</h2>\n");
    if !reviews.ok() {
        main.push_str(&format!(
            "<p class=\"flash error\">{}</p>\n",
            esc(&reviews.refusal())
        ));
    } else {
        let items = reviews.body["requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.is_empty() {
            main.push_str("<p id=\"no-reviews\">No break-glass use waits for your review (only an approver of its entitlement, not its requester, reviews one).</p>\n");
        } else {
            main.push_str(&requests_table(
                &items,
                now,
                true,
                "Break-glass uses waiting for your review (open one to review it)",
            ));
        }
    }
    ctx.page(StatusCode::OK, "Admin", "/ui/admin", &main)
}

// ---------------------------------------------------------------- analytics

async fn analytics(ctx: &Ctx<'_>, q: &[(String, String)]) -> Response<String> {
    let a = ctx
        .api(
            ApiCall::get("/analytics").query(&[("from", field(q, "from")), ("to", field(q, "to"))]),
        )
        .await;
    if !a.ok() {
        return ctx.refused("Analytics", "/ui/analytics", &a);
    }
    let main = crate::charts::analytics_page(&a.body, field(q, "from"), field(q, "to"));
    ctx.page(StatusCode::OK, "Analytics", "/ui/analytics", &main)
}

// ---------------------------------------------------------------- live

/// `GET /ui/live?ids=a,b`: the statuses of up to 20 requests, as JSON, for
/// the pages' live badges.
async fn live(ctx: &Ctx<'_>, q: &[(String, String)]) -> Response<String> {
    let ids: Vec<&str> = field(q, "ids")
        .split(',')
        .filter(|i| !i.is_empty() && i.len() <= 40 && i.chars().all(|c| c.is_ascii_alphanumeric()))
        .take(20)
        .collect();
    let answers = futures_join(ctx, &ids).await;
    let mut out = serde_json::Map::new();
    for (id, a) in ids.iter().zip(answers) {
        if a.ok() {
            out.insert((*id).to_string(), a.body["status"].clone());
        }
    }
    let mut r = Response::new(Value::Object(out).to_string());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn futures_join(ctx: &Ctx<'_>, ids: &[&str]) -> Vec<ApiAnswer> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        out.push(ctx.api(ApiCall::get(format!("/requests/{id}"))).await);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_plus_and_percent() {
        let f = form_fields(b"a=1+2&b=%C3%A9%26&c").unwrap();
        assert_eq!(field(&f, "a"), "1 2");
        assert_eq!(field(&f, "b"), "é&");
        assert_eq!(field(&f, "c"), "");
        assert!(form_fields(b"a=%zz").is_none());
    }

    #[test]
    fn next_is_a_path_on_this_site_only() {
        assert_eq!(safe_next("/ui/inbox"), "/ui/inbox");
        assert_eq!(safe_next("//evil.example/x"), "/");
        assert_eq!(safe_next("https://evil.example/"), "/");
        assert_eq!(safe_next("/\\evil.example"), "/");
    }
}
