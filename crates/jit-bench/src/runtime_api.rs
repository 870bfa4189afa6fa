//! A fake Lambda Runtime API on 127.0.0.1: just enough HTTP/1.1 (keep-alive,
//! Content-Length or chunked bodies) for `lambda_runtime` to ask for events
//! and post answers. Every request is handed to the bench thread as a
//! [`Msg`]; a `next` is answered only when the bench says so.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

/// The Runtime API version prefix.
const PREFIX: &str = "/2018-06-01/runtime/";
/// Lambda's own payload limit; a bigger body is a bug, not a measurement.
const MAX_BODY: usize = 6 * 1024 * 1024;
/// No connection waits longer than this for anything.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// One parsed HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line<R: BufRead>(r: &mut R) -> io::Result<Option<String>> {
    let mut line = String::new();
    if r.by_ref().take(16 * 1024).read_line(&mut line)? == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') {
        return Err(invalid("line too long or cut short"));
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
}

/// Reads one request; `Ok(None)` when the peer closed the connection
/// between requests. `on_request_line` is called as soon as the request
/// line is in, which is when the bench considers the request "arrived".
pub fn read_request<R: BufRead>(
    r: &mut R,
    mut on_request_line: impl FnMut(),
) -> io::Result<Option<HttpRequest>> {
    let Some(first) = read_line(r)? else {
        return Ok(None);
    };
    on_request_line();
    let mut parts = first.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| invalid("headers cut short"))?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut req = HttpRequest {
        method: method.to_string(),
        path: path.to_string(),
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line = read_line(r)?.ok_or_else(|| invalid("chunk cut short"))?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // trailers, then the empty line
                while !read_line(r)?
                    .ok_or_else(|| invalid("trailer cut short"))?
                    .is_empty()
                {}
                break;
            }
            if req.body.len() + size > MAX_BODY {
                return Err(invalid("body too large"));
            }
            let start = req.body.len();
            req.body.resize(start + size, 0);
            r.read_exact(&mut req.body[start..])?;
            if !read_line(r)?
                .ok_or_else(|| invalid("chunk cut short"))?
                .is_empty()
            {
                return Err(invalid("chunk not followed by CRLF"));
            }
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        req.body.resize(len, 0);
        r.read_exact(&mut req.body)?;
    }
    Ok(Some(req))
}

/// What a Runtime API call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Next,
    Response(String),
    Error(String),
    InitError,
    Unknown,
}

pub fn route(method: &str, path: &str) -> Route {
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return Route::Unknown;
    };
    match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
        ("GET", ["invocation", "next"]) => Route::Next,
        ("POST", ["invocation", id, "response"]) => Route::Response(id.to_string()),
        ("POST", ["invocation", id, "error"]) => Route::Error(id.to_string()),
        ("POST", ["init", "error"]) => Route::InitError,
        _ => Route::Unknown,
    }
}

/// An event to hand out in answer to a `next`.
#[derive(Debug, Clone)]
pub struct Event {
    pub request_id: String,
    pub deadline_epoch_ms: u128,
    pub function_arn: String,
    pub body: Vec<u8>,
}

/// What the fake runtime saw.
#[derive(Debug)]
pub enum Msg {
    /// A `GET .../invocation/next`; answered when `reply` gets an event,
    /// and never if `reply` is dropped (the connection is then closed).
    Next {
        arrived: Instant,
        reply: Sender<Event>,
    },
    /// Any POST: a response, an error, an init error.
    Posted {
        arrived: Instant,
        route: Route,
        body: Vec<u8>,
    },
}

pub struct FakeRuntimeApi {
    addr: SocketAddr,
    rx: Receiver<Msg>,
    stop: Arc<AtomicBool>,
}

impl FakeRuntimeApi {
    /// Listens on a free loopback port.
    pub fn start() -> io::Result<FakeRuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        thread::Builder::new()
            .name("fake-runtime-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let tx = tx.clone();
                    let _ = thread::Builder::new()
                        .name("fake-runtime-conn".into())
                        .spawn(move || {
                            let _ = serve(stream, tx);
                        });
                }
            })?;
        Ok(FakeRuntimeApi { addr, rx, stop })
    }

    /// What to put in `AWS_LAMBDA_RUNTIME_API`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    pub fn recv(&self, timeout: Duration) -> Result<Msg, RecvTimeoutError> {
        self.rx.recv_timeout(timeout)
    }
}

impl Drop for FakeRuntimeApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag and ends.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

pub fn write_response(
    w: &mut impl Write,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn serve(stream: TcpStream, tx: Sender<Msg>) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut arrived = Instant::now();
        let Some(req) = read_request(&mut reader, || arrived = Instant::now())? else {
            return Ok(());
        };
        match route(&req.method, &req.path) {
            Route::Next => {
                let (reply, wait) = mpsc::channel();
                if tx.send(Msg::Next { arrived, reply }).is_err() {
                    return Ok(());
                }
                // A dropped sender means "never": close the connection.
                let Ok(ev) = wait.recv_timeout(IO_TIMEOUT) else {
                    return Ok(());
                };
                write_response(
                    &mut writer,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json".into()),
                        ("Lambda-Runtime-Aws-Request-Id", ev.request_id),
                        (
                            "Lambda-Runtime-Deadline-Ms",
                            ev.deadline_epoch_ms.to_string(),
                        ),
                        ("Lambda-Runtime-Invoked-Function-Arn", ev.function_arn),
                        (
                            "Lambda-Runtime-Trace-Id",
                            "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
                        ),
                    ],
                    &ev.body,
                )?;
            }
            Route::Unknown => {
                write_response(
                    &mut writer,
                    "404 Not Found",
                    &[("Content-Type", "application/json".into())],
                    br#"{"errorMessage":"unknown path","errorType":"InvalidRequest"}"#,
                )?;
                let _ = tx.send(Msg::Posted {
                    arrived,
                    route: Route::Unknown,
                    body: format!("{} {}", req.method, req.path).into_bytes(),
                });
            }
            route => {
                // Told to the bench before the function hears back: once
                // answered, it may ask for the next event on another
                // connection, and that `next` must not overtake this.
                if tx
                    .send(Msg::Posted {
                        arrived,
                        route,
                        body: req.body,
                    })
                    .is_err()
                {
                    return Ok(());
                }
                write_response(
                    &mut writer,
                    "202 Accepted",
                    &[("Content-Type", "application/json".into())],
                    br#"{"status":"OK"}"#,
                )?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(raw: &str) -> io::Result<Option<HttpRequest>> {
        read_request(&mut Cursor::new(raw.as_bytes().to_vec()), || {})
    }

    #[test]
    fn reads_a_get_then_a_post_on_one_connection() {
        // GIVEN two keep-alive requests back to back
        let raw = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nhost: x\r\n\r\n\
                   POST /2018-06-01/runtime/invocation/abc/response HTTP/1.1\r\n\
                   Content-Length: 5\r\n\r\nhello";
        let mut c = Cursor::new(raw.as_bytes().to_vec());
        let mut lines = 0;
        // WHEN read one after the other
        let a = read_request(&mut c, || lines += 1).unwrap().unwrap();
        let b = read_request(&mut c, || lines += 1).unwrap().unwrap();
        // THEN each is whole, and the connection then ends cleanly
        assert_eq!((a.method.as_str(), a.body.len()), ("GET", 0));
        assert_eq!(b.body, b"hello");
        assert_eq!(lines, 2);
        assert!(read_request(&mut c, || {}).unwrap().is_none());
    }

    #[test]
    fn reads_a_chunked_body() {
        let raw = "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                   4\r\nWiki\r\n6;ext=1\r\npedia!\r\n0\r\n\r\n";
        assert_eq!(parse(raw).unwrap().unwrap().body, b"Wikipedia!");
    }

    #[test]
    fn refuses_broken_requests() {
        assert!(parse("GET /x HTTP/1.1\r\nno-colon\r\n\r\n").is_err());
        assert!(parse("GET /x HTTP/1.1\r\n").is_err());
        assert!(parse("POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse("GARBAGE\r\n\r\n").is_err());
    }

    #[test]
    fn routes_runtime_api_calls() {
        let p = |s: &str| format!("{PREFIX}{s}");
        assert_eq!(route("GET", &p("invocation/next")), Route::Next);
        assert_eq!(
            route("POST", &p("invocation/id-1/response")),
            Route::Response("id-1".into())
        );
        assert_eq!(
            route("POST", &p("invocation/id-1/error")),
            Route::Error("id-1".into())
        );
        assert_eq!(route("POST", &p("init/error")), Route::InitError);
        assert_eq!(route("POST", &p("invocation/next")), Route::Unknown);
        assert_eq!(route("GET", "/other"), Route::Unknown);
    }

    #[test]
    fn answers_next_with_the_event_and_reports_posts() {
        // GIVEN the fake runtime and a client on loopback
        let api = FakeRuntimeApi::start().unwrap();
        let mut s = TcpStream::connect(api.host_port()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\n\r\n")
            .unwrap();
        // WHEN the bench answers the next with an event
        let Msg::Next { reply, .. } = api.recv(Duration::from_secs(5)).unwrap() else {
            panic!("expected a next");
        };
        reply
            .send(Event {
                request_id: "rid".into(),
                deadline_epoch_ms: 1,
                function_arn: "arn".into(),
                body: b"{}".to_vec(),
            })
            .unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        // THEN the client gets it with the runtime headers
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut saw_id = false;
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            saw_id |= l
                .to_ascii_lowercase()
                .starts_with("lambda-runtime-aws-request-id: rid");
            if l == "\r\n" {
                break;
            }
        }
        assert!(saw_id);
        let mut body = [0u8; 2];
        r.read_exact(&mut body).unwrap();
        // AND a response posted on the same connection is reported
        s.write_all(
            b"POST /2018-06-01/runtime/invocation/rid/response HTTP/1.1\r\nContent-Length: 2\r\n\r\nok",
        )
        .unwrap();
        match api.recv(Duration::from_secs(5)).unwrap() {
            Msg::Posted { route, body, .. } => {
                assert_eq!(route, Route::Response("rid".into()));
                assert_eq!(body, b"ok");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
