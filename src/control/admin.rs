//! The admin endpoint: a small HTTP/1.1 server on the control plane, on loopback.
//!
//! | route | answer |
//! |---|---|
//! | `GET /metrics` | 200, Prometheus text format 0.0.4 from the registered [`MetricsSource`]s |
//! | `GET /healthz` | 200 `{"status":"ok","details":…}`, 503 `{"status":"unhealthy",…}` |
//! | `POST /-/reload` | 200 with the reload summary, 400 with the error (file, key, line); needs the token |
//! | other paths | 404; another method on a known path: 405 with `Allow` |
//!
//! **Who may call it.** Every request must name the endpoint itself in `Host`
//! (`127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT`), else 421: a web page whose name
//! an attacker pointed at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
//! A call that changes something needs `Authorization: Bearer <token>`, the token read
//! from the file `[control] admin_token_file` names (compared in constant time), else
//! 401; without a token file such calls are refused 403. A browser cannot add that
//! header to a cross-site form post, so a page cannot make iwf reload (CSRF).
//!
//! **Bounds.** Each connection is served on a thread of its own, at most
//! [`Limits::max_connections`] at once; beyond that a connection is answered 503 at once
//! and closed, so one slow local client cannot starve the rest. A client has
//! [`Limits::io_timeout`] (2 s) for its whole request (then 408); a request over
//! [`Limits::max_request_bytes`] is answered 413, one that does not parse 400 (parsed with
//! `httparse`). `Connection: close` after each answer.
//!
//! The address comes from `[control] admin` (`127.0.0.1:9870` in the shipped files); the
//! configuration refuses a non-loopback one.
//!
//! [`MetricsSource`]: super::metrics::MetricsSource

use super::metrics::{MetricsRegistry, CONTENT_TYPE};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The admin endpoint's address when the configuration names none.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9870);

/// How often the accept loop looks at the stop flag while no client connects.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// How long an answered connection's unread input is drained before closing (so the
/// close is a FIN, not a reset that could discard the answer at the client).
const DRAIN: Duration = Duration::from_millis(200);

/// Size and time limits of one request, and how many are served at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time a client has for its whole request, and for each write of the answer.
    pub io_timeout: Duration,
    /// The largest request (head and body) read; larger is answered 413.
    pub max_request_bytes: usize,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { io_timeout: Duration::from_secs(2), max_request_bytes: 8192, max_connections: 8 }
    }
}

/// What `GET /healthz` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    /// 200 when true, 503 when false.
    pub healthy: bool,
    /// Shown under `"details"` (links, next hops, binds).
    pub details: serde_json::Value,
}

/// The health callback.
pub type HealthCheck = Box<dyn Fn() -> Health + Send + Sync>;

/// The reload callback: a summary, or the error text (file, key and line).
pub type ReloadHook = Box<dyn Fn() -> Result<String, String> + Send + Sync>;

/// The operator API (`GET /v1/<what>`, what `iwf ctl` reads): the JSON for `what`
/// (`systems`, `queues`, `config`), or none for a name it does not know.
pub type ApiHook = Box<dyn Fn(&str) -> Option<serde_json::Value> + Send + Sync>;

/// The operator API's changes (`POST /v1/<action>/<argument>`, what `iwf ctl
/// disable|enable|expire` sends): the JSON answer, or the status and text of a
/// refusal; none for an action it does not know.
pub type ActionHook = Box<dyn Fn(&str, &str) -> Option<Result<serde_json::Value, (u16, String)>> + Send + Sync>;

/// What the routes call. Runs on the admin threads (several at once).
#[derive(Default)]
pub struct Handlers {
    /// Rendered by `GET /metrics`; sources may join after start.
    pub metrics: Arc<MetricsRegistry>,
    /// Called by `GET /healthz`; without one the endpoint is healthy while it answers.
    pub health: Option<HealthCheck>,
    /// Called by `POST /-/reload`; without one the route answers 501.
    pub reload: Option<ReloadHook>,
    /// Answers `GET /v1/<what>` (with the token); without one those answer 501.
    pub api: Option<ApiHook>,
    /// Answers `POST /v1/<action>/<argument>` (with the token).
    pub action: Option<ActionHook>,
    /// The bearer token of calls that change something; none: they are refused.
    pub token: Option<AdminToken>,
}

/// The admin token: read from its file at start, compared in constant time.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    /// The shortest token accepted, in characters (`iwf keygen` writes 32).
    pub const MIN_LEN: usize = 16;

    /// The token in the file at `path` (surrounding white space ignored): at least
    /// [`AdminToken::MIN_LEN`] printable characters.
    pub fn read(path: &std::path::Path) -> Result<AdminToken, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        AdminToken::new(text.trim())
    }

    /// A token from its text.
    pub fn new(text: &str) -> Result<AdminToken, String> {
        if text.len() < Self::MIN_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "an admin token is at least {} printable characters without spaces (`iwf keygen --out FILE` makes one)",
                Self::MIN_LEN
            ));
        }
        Ok(AdminToken(text.as_bytes().to_vec()))
    }

    /// Whether `offered` is the token (constant time for offers of its length).
    fn matches(&self, offered: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        offered.len() == self.0.len() && bool::from(offered.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("metrics", &self.metrics)
            .field("health", &self.health.is_some())
            .field("reload", &self.reload.is_some())
            .field("api", &self.api.is_some())
            .field("token", &self.token.is_some())
            .finish()
    }
}

/// The admin server (see the module documentation).
#[derive(Debug)]
pub struct Admin;

/// A running admin server; [`AdminHandle::stop`] (or dropping it) ends its thread.
#[derive(Debug)]
pub struct AdminHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Admin {
    /// Binds `addr` and serves on a new thread (`iwf-admin`) with the default [`Limits`].
    /// The address is not checked here: the configuration (`control.admin`) refuses a
    /// non-loopback one.
    pub fn start(addr: SocketAddr, handlers: Handlers) -> io::Result<AdminHandle> {
        Admin::start_with(addr, handlers, Limits::default())
    }

    /// [`Admin::start`] with explicit limits.
    pub fn start_with(addr: SocketAddr, handlers: Handlers, limits: Limits) -> io::Result<AdminHandle> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handlers = Arc::new(handlers);
        let thread = std::thread::Builder::new()
            .name("iwf-admin".to_string())
            .spawn(move || accept_loop(&listener, &handlers, limits, &flag, addr))?;
        Ok(AdminHandle { addr, stop, thread: Some(thread) })
    }
}

impl AdminHandle {
    /// The bound address (the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the accept thread (connections in hand finish on
    /// their own threads, within a request's timeout).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: &TcpListener, handlers: &Arc<Handlers>, limits: Limits, stop: &AtomicBool, addr: SocketAddr) {
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                let taken = active
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < limits.max_connections).then_some(n + 1)
                    })
                    .is_ok();
                if !taken {
                    // Busy: say so at once rather than queue behind slow clients; a
                    // short thread drains what the client sends so the close does not
                    // reset the answer away (at most as many again, else just closed).
                    let refusing = active
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < 2 * limits.max_connections).then_some(n + 1)
                        })
                        .is_ok();
                    if refusing {
                        let active2 = Arc::clone(&active);
                        let spawned = std::thread::Builder::new().name("iwf-admin-busy".to_string()).spawn(move || {
                            let _ = stream.set_nonblocking(false);
                            let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                            let busy = Response::text(503, "busy: too many admin connections");
                            if stream.write_all(&busy.to_bytes()).is_ok() {
                                finish(&mut stream);
                            }
                            active2.fetch_sub(1, Ordering::AcqRel);
                        });
                        if spawned.is_err() {
                            active.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                    continue;
                }
                let (handlers, active2) = (Arc::clone(handlers), Arc::clone(&active));
                let spawned = std::thread::Builder::new().name("iwf-admin-conn".to_string()).spawn(move || {
                    serve(stream, &handlers, limits, addr);
                    active2.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
            // WouldBlock, or a transient error (EMFILE, ECONNABORTED): look again soon.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

/// An answer: status, extra headers, content type and body.
#[derive(Debug, PartialEq)]
struct Response {
    status: u16,
    allow: Option<&'static str>,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response { status, allow: None, content_type: "text/plain; charset=utf-8", body }
    }

    fn method_not_allowed(allow: &'static str) -> Response {
        Response { allow: Some(allow), ..Response::text(405, format!("method not allowed, use {allow}")) }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str("Allow: ");
            head.push_str(allow);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        421 => "Misdirected Request",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The parts of a request the routes need.
struct Head {
    method: String,
    path: String,
    /// Bytes of head.
    head_len: usize,
    content_length: usize,
    /// The `Host` header, if one.
    host: Option<String>,
    /// The credentials of `Authorization: Bearer <token>`, if given.
    bearer: Option<Vec<u8>>,
}

enum Parsed {
    Complete(Head),
    Partial,
    Refused(Response),
}

fn parse_head(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(Response::text(431, "too many header fields")),
        Err(e) => Parsed::Refused(Response::text(400, format!("bad request: {e}"))),
        Ok(httparse::Status::Complete(head_len)) => {
            let mut content_length = 0usize;
            let mut host = None;
            let mut bearer = None;
            for h in req.headers.iter() {
                if h.name.eq_ignore_ascii_case("host") {
                    if host.is_some() {
                        return Parsed::Refused(Response::text(400, "bad request: two Host header fields"));
                    }
                    host = Some(String::from_utf8_lossy(h.value).trim().to_ascii_lowercase());
                }
                if h.name.eq_ignore_ascii_case("authorization") {
                    let v = h.value.trim_ascii();
                    if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                        bearer = Some(v[7..].trim_ascii().to_vec());
                    }
                }
                if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Parsed::Refused(Response::text(400, "bad request: send a Content-Length, not chunks"));
                }
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok()) {
                        Some(n) => content_length = n,
                        None => return Parsed::Refused(Response::text(400, "bad request: bad Content-Length")),
                    }
                }
            }
            Parsed::Complete(Head {
                method: req.method.unwrap_or("").to_string(),
                path: req.path.unwrap_or("").to_string(),
                head_len,
                content_length,
                host,
                bearer,
            })
        }
    }
}

/// Whether `host` names the endpoint at `addr` (by address or as localhost).
fn host_is_us(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    let names = [format!("{}:{port}", addr.ip()), format!("localhost:{port}"), format!("[::1]:{port}")];
    names.iter().any(|n| n == host) || (port == 80 && matches!(host, "localhost" | "127.0.0.1" | "[::1]"))
}

/// Reads one request within the limits and answers it.
fn serve(mut stream: TcpStream, handlers: &Handlers, limits: Limits, addr: SocketAddr) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let deadline = Instant::now() + limits.io_timeout;
    let mut buf = vec![0u8; limits.max_request_bytes.max(1)];
    let mut len = 0usize;
    let mut head: Option<Head> = None;
    let response = loop {
        let filled = buf.get(..len).unwrap_or(&[]);
        if head.is_none() && len > 0 {
            match parse_head(filled) {
                Parsed::Complete(h) => {
                    if h.head_len.saturating_add(h.content_length) > buf.len() {
                        break Response::text(413, "request too large");
                    }
                    head = Some(h);
                }
                Parsed::Partial if len == buf.len() => break Response::text(413, "request too large"),
                Parsed::Partial => {}
                Parsed::Refused(r) => break r,
            }
        }
        if let Some(h) = &head {
            if !h.host.as_deref().is_some_and(|host| host_is_us(host, addr)) {
                break Response::text(421, format!("Host must name this endpoint ({addr})"));
            }
            if len >= h.head_len.saturating_add(h.content_length) {
                break route(h, handlers);
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            break Response::text(408, "request timeout");
        }
        let _ = stream.set_read_timeout(Some(remaining));
        let Some(space) = buf.get_mut(len..) else {
            break Response::text(413, "request too large");
        };
        match stream.read(space) {
            // The client went away before a whole request: nobody to answer.
            Ok(0) => return,
            Ok(n) => len = len.saturating_add(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                break Response::text(408, "request timeout");
            }
            Err(_) => return,
        }
    };
    if stream.write_all(&response.to_bytes()).is_err() {
        return;
    }
    finish(&mut stream);
}

/// Ends an answered connection: FIN, then what the client still sends is drained
/// for a moment.
fn finish(stream: &mut TcpStream) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Drain what the client still sends (a body past the limit) so closing does not
    // reset the connection before it reads the answer.
    let drain_until = Instant::now() + DRAIN;
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 1 << 20 {
        let remaining = drain_until.saturating_duration_since(Instant::now());
        if remaining.is_zero() || stream.set_read_timeout(Some(remaining)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Whether `head` carries the admin token: the operator API (what it shows, too, is
/// for the operator) needs it, as changes do.
fn authorized(handlers: &Handlers, head: &Head) -> Result<(), Response> {
    match (&handlers.token, &head.bearer) {
        (None, _) => Err(Response::text(403, "the operator API needs an admin token: set [control] admin_token_file")),
        (Some(token), Some(offered)) if !token.matches(offered) => Err(Response::text(401, "wrong admin token")),
        (Some(_), None) => Err(Response::text(401, "send Authorization: Bearer <the admin token>")),
        (Some(_), Some(_)) => Ok(()),
    }
}

fn json_response(v: &serde_json::Value) -> Response {
    Response { status: 200, allow: None, content_type: "application/json", body: format!("{v}\n") }
}

/// `GET|POST /v1/<what>` of an authorized caller; `query` the text after `?`.
fn operator(handlers: &Handlers, method: &str, what: &str, query: Option<&str>) -> Response {
    if what == "log-level" {
        if method == "POST" {
            let level = query.and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level="))).unwrap_or("");
            if let Err(e) = crate::control::logging::set_level(level) {
                return Response::text(400, e);
            }
        }
        return json_response(&serde_json::json!({ "level": crate::control::logging::level() }));
    }
    if method == "POST" {
        let (action, argument) = what.split_once('/').unwrap_or((what, ""));
        return match handlers.action.as_ref().map(|f| f(action, argument)) {
            None => Response::text(501, "the operator API is not configured"),
            Some(None) => Response::text(
                404,
                "not found (POST /v1/log-level?level=, /v1/disable/<system>, /v1/enable/<system>, /v1/expire/<system>)",
            ),
            Some(Some(Ok(v))) => json_response(&v),
            Some(Some(Err((status, text)))) => Response::text(status, text),
        };
    }
    match handlers.api.as_ref().map(|api| api(what)) {
        None => Response::text(501, "the operator API is not configured"),
        Some(None) => {
            Response::text(404, "not found (GET /v1/systems, /v1/binds, /v1/queues, /v1/config, /v1/log-level)")
        }
        Some(Some(v)) => json_response(&v),
    }
}

/// Routes a complete request. A panicking callback is answered 500, not a dead thread.
fn route(head: &Head, handlers: &Handlers) -> Response {
    let path = head.path.split('?').next().unwrap_or("");
    let method = head.method.as_str();
    catch_unwind(AssertUnwindSafe(|| match (path, method) {
        ("/metrics", "GET") => {
            Response { status: 200, allow: None, content_type: CONTENT_TYPE, body: handlers.metrics.render() }
        }
        ("/healthz", "GET") => {
            let health = match &handlers.health {
                Some(check) => check(),
                None => Health { healthy: true, details: serde_json::Value::Object(Default::default()) },
            };
            let body = serde_json::json!({
                "status": if health.healthy { "ok" } else { "unhealthy" },
                "details": health.details,
            });
            Response {
                status: if health.healthy { 200 } else { 503 },
                allow: None,
                content_type: "application/json",
                body: format!("{body}\n"),
            }
        }
        ("/-/reload", "POST") => match (&handlers.reload, &handlers.token, &head.bearer) {
            (_, None, _) => Response::text(403, "changes need an admin token: set [control] admin_token_file"),
            (_, Some(token), Some(offered)) if !token.matches(offered) => Response::text(401, "wrong admin token"),
            (_, Some(_), None) => Response::text(401, "send Authorization: Bearer <the admin token>"),
            (Some(reload), Some(_), Some(_)) => match reload() {
                Ok(summary) => Response::text(200, summary),
                Err(error) => Response::text(400, error),
            },
            (None, Some(_), Some(_)) => Response::text(501, "reload is not configured"),
        },
        (p, "GET" | "POST") if p.starts_with("/v1/") => match authorized(handlers, head) {
            Err(refusal) => refusal,
            Ok(()) => {
                operator(handlers, method, p.trim_start_matches("/v1/"), head.path.split_once('?').map(|(_, q)| q))
            }
        },
        ("/metrics" | "/healthz", _) => Response::method_not_allowed("GET"),
        ("/-/reload", _) => Response::method_not_allowed("POST"),
        _ => Response::text(404, "not found (routes: GET /metrics, GET /healthz, POST /-/reload, GET /v1/...)"),
    }))
    .unwrap_or_else(|_| Response::text(500, "handler failed"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::metrics::{MetricsSource, MetricsWriter};
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;

    const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

    struct Requests(AtomicU64);
    impl MetricsSource for Requests {
        fn render(&self, out: &mut MetricsWriter) {
            let n = self.0.fetch_add(1, Ordering::Relaxed) + 1;
            let _ = out.counter("iwf_test_scrapes_total", "Scrapes.", &[("port", "legacy")], n);
        }
    }

    fn handlers(healthy: Arc<AtomicBool>, reload_result: Arc<Mutex<Result<String, String>>>) -> Handlers {
        let metrics = Arc::new(MetricsRegistry::new());
        metrics.register(Arc::new(Requests(AtomicU64::new(0))));
        Handlers {
            metrics,
            health: Some(Box::new(move || Health {
                healthy: healthy.load(Ordering::SeqCst),
                details: serde_json::json!({"ports": {"legacy": "up"}}),
            })),
            reload: Some(Box::new(move || reload_result.lock().unwrap().clone())),
            api: Some(Box::new(|what| (what == "systems").then(|| serde_json::json!([{ "name": "smsc-a" }])))),
            action: Some(Box::new(|action, system| match (action, system) {
                ("disable", "smsc-a") => Some(Ok(serde_json::json!({ "system": "smsc-a", "disabled": true }))),
                ("disable", other) => Some(Err((404, format!("no legacy system `{other}`")))),
                _ => None,
            })),
            token: Some(AdminToken::new(TOKEN).unwrap()),
        }
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn fast() -> Limits {
        Limits { io_timeout: Duration::from_millis(300), max_request_bytes: 1024, max_connections: 8 }
    }

    /// `raw` with a `Host` naming the endpoint after its request line.
    fn hosted(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(raw);
        match text.split_once("\r\n") {
            Some((line, rest)) => format!("{line}\r\nHost: {addr}\r\n{rest}").into_bytes(),
            None => raw.to_vec(),
        }
    }

    /// Sends `raw` with the endpoint's `Host`, reads until the server closes.
    fn exchange(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
        exchange_raw(addr, &hosted(addr, raw))
    }

    /// Sends `raw` as it is, reads until the server closes: (status, head, body).
    fn exchange_raw(addr: SocketAddr, raw: &[u8]) -> (u16, String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.parse().ok()).unwrap();
        assert_eq!(len, body.len(), "{head}");
        (status, head.to_string(), body.to_string())
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        exchange(addr, format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
    }

    fn reload_with(addr: SocketAddr, token: &str) -> (u16, String, String) {
        exchange(addr, format!("POST /-/reload HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes())
    }

    #[test]
    fn routes_answer() {
        let healthy = Arc::new(AtomicBool::new(true));
        let reload = Arc::new(Mutex::new(Ok("lab.toml: loaded, configuration generation 2".to_string())));
        let h = Admin::start_with(LOCAL, handlers(Arc::clone(&healthy), Arc::clone(&reload)), fast()).unwrap();
        let addr = h.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, head, body) = get(addr, "/metrics");
        assert_eq!(status, 200);
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        assert!(head.contains("Connection: close"), "{head}");
        assert!(body.contains("# TYPE iwf_test_scrapes_total counter\niwf_test_scrapes_total{port=\"legacy\"} 1\n"));
        // A query string does not change the route; each scrape renders afresh.
        assert!(get(addr, "/metrics?x=1").2.contains("} 2\n"));

        let (status, head, body) = get(addr, "/healthz");
        assert_eq!(status, 200);
        assert!(head.contains("Content-Type: application/json"), "{head}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], "ok");
        assert_eq!(json["details"]["ports"]["legacy"], "up");
        healthy.store(false, Ordering::SeqCst);
        let (status, _, body) = get(addr, "/healthz");
        assert_eq!(status, 503);
        assert!(body.contains("\"unhealthy\""), "{body}");

        let post = format!("POST /-/reload HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\n\r\n");
        let (status, _, body) = exchange(addr, post.as_bytes());
        assert_eq!((status, body.as_str()), (200, "lab.toml: loaded, configuration generation 2\n"));
        *reload.lock().unwrap() = Err("lab.toml: line 12: `tag.keys[1].secret`: 32 hex digits".to_string());
        let (status, _, body) = exchange(addr, post.as_bytes());
        assert_eq!(status, 400);
        assert!(body.contains("line 12: `tag.keys[1].secret`"), "{body}");
        // A body (ignored) is read before the answer.
        let with_body =
            format!("POST /-/reload HTTP/1.1\r\nAuthorization: bearer {TOKEN}\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(exchange(addr, with_body.as_bytes()).0, 400);

        // The operator API: with the token only, JSON, 404 for what it does not know.
        assert_eq!(get(addr, "/v1/systems").0, 401);
        let ask = |path: &str, token: &str| {
            exchange(addr, format!("GET {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes())
        };
        assert_eq!(ask("/v1/systems", "0123456789abcdef0123456789abcdeX").0, 401);
        let (status, head, body) = ask("/v1/systems", TOKEN);
        assert_eq!(status, 200, "{body}");
        assert!(head.contains("Content-Type: application/json"), "{head}");
        assert_eq!(body, "[{\"name\":\"smsc-a\"}]\n");
        assert_eq!(ask("/v1/nothing", TOKEN).0, 404);
        // Changes: POST /v1/<action>/<argument>, with the token.
        let change = |path: &str, token: &str| {
            exchange(addr, format!("POST {path} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n").as_bytes())
        };
        assert_eq!(change("/v1/disable/smsc-a", "0123456789abcdef0123456789abcdeX").0, 401);
        let (status, _, body) = change("/v1/disable/smsc-a", TOKEN);
        assert_eq!((status, body.as_str()), (200, "{\"disabled\":true,\"system\":\"smsc-a\"}\n"));
        let (status, _, body) = change("/v1/disable/smsc-z", TOKEN);
        assert_eq!((status, body.as_str()), (404, "no legacy system `smsc-z`\n"));
        assert_eq!(change("/v1/explode/smsc-a", TOKEN).0, 404);
        // The log level: shown, and refused when it names no level (no log is
        // installed in a unit test, so a good name is refused for that).
        let (status, _, body) = ask("/v1/log-level", TOKEN);
        assert_eq!((status, body.as_str()), (200, "{\"level\":\"off\"}\n"));
        let (status, _, body) = change("/v1/log-level?level=loud", TOKEN);
        assert_eq!(status, 400);
        assert!(body.contains("`loud`: expected off, error"), "{body}");
        h.stop();
    }

    #[test]
    fn changes_need_the_token_and_every_call_our_own_host() {
        let reload = Arc::new(Mutex::new(Ok("reloaded".to_string())));
        let h = Admin::start_with(LOCAL, handlers(Arc::new(AtomicBool::new(true)), reload), fast()).unwrap();
        let addr = h.local_addr();
        assert_eq!(reload_with(addr, TOKEN).0, 200);
        // No token, a wrong one, one of another length: refused, nothing reloaded.
        assert_eq!(exchange(addr, b"POST /-/reload HTTP/1.1\r\n\r\n").0, 401);
        assert_eq!(reload_with(addr, "0123456789abcdef0123456789abcdee").0, 401);
        assert_eq!(reload_with(addr, "0123").0, 401);
        // Another name in Host (DNS rebinding), or none: refused, reads too.
        let evil = b"GET /metrics HTTP/1.1\r\nHost: attacker.example:9870\r\n\r\n";
        assert_eq!(exchange_raw(addr, evil).0, 421);
        assert_eq!(exchange_raw(addr, b"GET /healthz HTTP/1.1\r\n\r\n").0, 421);
        let post =
            format!("POST /-/reload HTTP/1.1\r\nHost: attacker.example\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
        assert_eq!(exchange_raw(addr, post.as_bytes()).0, 421);
        let two = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nHost: {addr}\r\n\r\n");
        assert_eq!(exchange_raw(addr, two.as_bytes()).0, 400);
        // localhost by name is us.
        let local = format!("GET /healthz HTTP/1.1\r\nHost: LocalHost:{}\r\n\r\n", addr.port());
        assert_eq!(exchange_raw(addr, local.as_bytes()).0, 200);
        // Without a token file, changes are refused outright.
        let open = Admin::start_with(LOCAL, Handlers { token: None, ..Handlers::default() }, fast()).unwrap();
        assert_eq!(reload_with(open.local_addr(), TOKEN).0, 403);
        assert!(AdminToken::new("short").is_err());
        assert!(AdminToken::new("0123456789abcdef 0123").is_err());
        h.stop();
    }

    #[test]
    fn connections_are_served_at_once_up_to_a_bound() {
        let reload = Arc::new(Mutex::new(Ok(String::new())));
        let limits = Limits { io_timeout: Duration::from_millis(800), max_request_bytes: 1024, max_connections: 2 };
        let h = Admin::start_with(LOCAL, handlers(Arc::new(AtomicBool::new(true)), reload), limits).unwrap();
        let addr = h.local_addr();
        // One silent client does not hold up the next.
        let silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        assert_eq!(get(addr, "/healthz").0, 200);
        assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
        // Two silent clients take both places: the next hears 503 at once.
        let _second = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let start = Instant::now();
        assert_eq!(get(addr, "/healthz").0, 503);
        assert!(start.elapsed() < Duration::from_millis(500), "{:?}", start.elapsed());
        // Their time runs out; the places come back.
        drop(silent);
        std::thread::sleep(Duration::from_millis(1000));
        assert_eq!(get(addr, "/healthz").0, 200);
        h.stop();
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        let reload = Arc::new(Mutex::new(Ok(String::new())));
        let h = Admin::start_with(LOCAL, handlers(Arc::new(AtomicBool::new(true)), reload), fast()).unwrap();
        let addr = h.local_addr();
        assert_eq!(get(addr, "/").0, 404);
        assert_eq!(get(addr, "/metricsx").0, 404);
        let (status, head, _) = get(addr, "/-/reload");
        assert_eq!(status, 405);
        assert!(head.contains("\r\nAllow: POST"), "{head}");
        let (status, head, _) = exchange(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(status, 405);
        assert!(head.contains("\r\nAllow: GET"), "{head}");
        let (status, head, _) = exchange(addr, b"DELETE /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(status, 405);
        assert!(head.contains("\r\nAllow: GET"), "{head}");
        h.stop();
    }

    #[test]
    fn oversize_garbage_and_bad_framing_are_refused() {
        let reload = Arc::new(Mutex::new(Ok(String::new())));
        let h = Admin::start_with(LOCAL, handlers(Arc::new(AtomicBool::new(true)), reload), fast()).unwrap();
        let addr = h.local_addr();
        // A head that never ends within the limit.
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Padding: ".to_vec();
        big.resize(4096, b'a');
        assert_eq!(exchange(addr, &big).0, 413);
        // A body announced past the limit.
        assert_eq!(exchange(addr, b"POST /-/reload HTTP/1.1\r\nContent-Length: 100000\r\n\r\n").0, 413);
        assert_eq!(exchange(addr, b"\x00\x01garbage\r\n\r\n").0, 400);
        assert_eq!(exchange(addr, b"GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n").0, 400);
        assert_eq!(exchange(addr, b"POST /-/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").0, 400);
        let many: String = (0..40).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(exchange(addr, format!("GET /healthz HTTP/1.1\r\n{many}\r\n").as_bytes()).0, 431);
        // Still serving.
        assert_eq!(get(addr, "/healthz").0, 200);
        h.stop();
    }

    #[test]
    fn a_slow_client_times_out_and_the_next_is_served() {
        let reload = Arc::new(Mutex::new(Ok(String::new())));
        let h = Admin::start_with(LOCAL, handlers(Arc::new(AtomicBool::new(true)), reload), fast()).unwrap();
        let addr = h.local_addr();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metr").unwrap();
        // A dribbling client gets no more than the one timeout in total.
        let start = Instant::now();
        let (status, _, _) = get(addr, "/healthz");
        assert_eq!(status, 200);
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = String::new();
        slow.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 408 "), "{out}");
        // A client that connects and says nothing does not block the next either.
        let _silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(get(addr, "/metrics").0, 200);
        h.stop();
    }

    #[test]
    fn defaults_without_callbacks_and_stop_frees_the_port() {
        let h = Admin::start(LOCAL, Handlers::default()).unwrap();
        let addr = h.local_addr();
        let (status, _, body) = get(addr, "/healthz");
        assert_eq!((status, body.as_str()), (200, "{\"details\":{},\"status\":\"ok\"}\n"));
        let (status, _, body) = get(addr, "/metrics");
        assert_eq!((status, body.as_str()), (200, ""));
        assert_eq!(reload_with(addr, TOKEN).0, 403, "no token file: no changes");
        let start = Instant::now();
        h.stop();
        assert!(start.elapsed() < Duration::from_secs(1));
        // The listener is closed: the same port binds again.
        let again = Admin::start(addr, Handlers::default()).unwrap();
        assert_eq!(again.local_addr(), addr);
        assert_eq!(Limits::default().io_timeout, Duration::from_secs(2));
    }

    #[test]
    fn a_panicking_callback_is_a_500() {
        let h = Admin::start_with(
            LOCAL,
            Handlers {
                reload: Some(Box::new(|| panic!("boom"))),
                token: Some(AdminToken::new(TOKEN).unwrap()),
                ..Handlers::default()
            },
            fast(),
        )
        .unwrap();
        assert_eq!(reload_with(h.local_addr(), TOKEN).0, 500);
        assert_eq!(get(h.local_addr(), "/healthz").0, 200);
    }
}
