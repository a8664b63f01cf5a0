//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, put between a client under test and a real registry.
//!
//! Each client connection carries one request (the proxy asks the upstream for `Connection: close` and
//! relays its answer, which says so). [`Rule`]s pick requests by method, path and count and replace the
//! exchange with a [`Fault`]: a dropped connection before or after the upstream acted, a stall past the
//! client's timeout, a 503/429 burst with or without `Retry-After`, a body cut short, a canned lie or an
//! endless body, or a delay. Every request head is recorded (what reached the registry, with which headers),
//! and the most requests in flight at once is counted. The
//! upstream can be switched at any time, which with [`restart_registry_after`] kills and restarts the
//! registry mid-run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::registry::{Options, Registry};

/// What happens to a request a [`Rule`] picks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The connection is closed without an answer; the upstream never sees the request.
    Reset,
    /// The request reaches the upstream, then the connection is closed without an answer: the upstream
    /// acted (a DELETE happened) but the client cannot know.
    ResetAfterForward,
    /// No answer for this long (meant to exceed the client's timeout), then the connection is closed.
    Stall(Duration),
    /// This status, with `Retry-After: <value>` when given, instead of the upstream's answer.
    Status {
        /// The HTTP status code (503, 429…).
        code: u16,
        /// The `Retry-After` value, if any.
        retry_after: Option<String>,
    },
    /// The upstream's status line and headers (with its `Content-Length`), then half of its body, then
    /// the connection is closed.
    Truncate,
    /// This raw HTTP answer (status line, headers, body) instead of the upstream's: a registry that lies.
    Answer(String),
    /// The upstream's answer, after this long: a slow registry, which makes requests overlap.
    Delay(Duration),
    /// `200 OK` with this content type and a body without end (up to 4 GiB of `a`), until the client
    /// hangs up: a gigantic body.
    Flood(String),
}

impl Fault {
    /// A short name for logs and figures.
    pub fn name(&self) -> String {
        match self {
            Fault::Reset => "reset".into(),
            Fault::ResetAfterForward => "reset-after-forward".into(),
            Fault::Stall(duration) => format!("stall {}s", duration.as_secs()),
            Fault::Status {
                code,
                retry_after: Some(value),
            } => format!("{code} retry-after {value}"),
            Fault::Status { code, .. } => format!("{code}"),
            Fault::Truncate => "truncate".into(),
            Fault::Answer(answer) => {
                format!("answer {}", answer.lines().next().unwrap_or(""))
            }
            Fault::Flood(_) => "flood".into(),
            Fault::Delay(duration) => format!("delay {} ms", duration.as_millis()),
        }
    }
}

/// Which requests get a fault: those matching `method` and `path`, after the first `skip` of them, every
/// `every`-th one, at most `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    fault: Fault,
    method: Option<String>,
    path: Option<String>,
    skip: usize,
    every: usize,
    times: usize,
    seen: usize,
    fired: usize,
}

impl Rule {
    /// Every request gets `fault`, without limit.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            fault,
            method: None,
            path: None,
            skip: 0,
            every: 1,
            times: usize::MAX,
            seen: 0,
            fired: 0,
        }
    }

    /// Only requests with this method (`GET`, `HEAD`, `DELETE`…).
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose target contains `fragment` (`/manifests/`, `/tags/list`).
    pub fn path(mut self, fragment: &str) -> Rule {
        self.path = Some(fragment.into());
        self
    }

    /// Let the first `n` matching requests through.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }

    /// Then fault every `n`-th matching request (1 = each one).
    pub fn every(mut self, n: usize) -> Rule {
        self.every = n.max(1);
        self
    }

    /// At most `n` faults from this rule.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    fn pick(&mut self, method: &str, target: &str) -> Option<Fault> {
        if self.method.as_deref().is_some_and(|m| m != method)
            || self.path.as_deref().is_some_and(|p| !target.contains(p))
        {
            return None;
        }
        self.seen += 1;
        if self.seen <= self.skip
            || !(self.seen - self.skip - 1).is_multiple_of(self.every)
            || self.fired >= self.times
        {
            return None;
        }
        self.fired += 1;
        Some(self.fault.clone())
    }
}

struct Shared {
    upstream: Mutex<String>,
    rules: Mutex<Vec<Rule>>,
    requests: AtomicUsize,
    /// Requests received whose answer is not yet on its way back, and the most there ever were.
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    injected: Mutex<Vec<String>>,
    heads: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// A running proxy. Stops accepting on drop; connections in flight finish on their own.
pub struct FaultProxy {
    addr: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy to `upstream` (`127.0.0.1:PORT`) without rules.
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.into()),
            rules: Mutex::new(Vec::new()),
            requests: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            injected: Mutex::new(Vec::new()),
            heads: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let shared = accepting.clone();
                std::thread::spawn(move || handle(stream, &shared));
            }
        });
        FaultProxy { addr, shared }
    }

    /// `127.0.0.1:PORT`: give this to the client as the registry host.
    pub fn host(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends later requests to another upstream (a restarted registry on a new port).
    pub fn set_upstream(&self, upstream: &str) {
        *self.shared.upstream.lock().unwrap() = upstream.into();
    }

    /// Replaces the rules (their counters start again). The first rule that fires decides a request.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap() = rules;
    }

    /// Requests seen so far (faulted or not).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The most requests in flight at once so far: received, and not yet answered. A client's limit on
    /// requests in flight bounds it (the answer goes out after the count drops).
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak_in_flight.load(Ordering::SeqCst)
    }

    /// The head (request line and headers) of every request seen so far, as sent.
    pub fn heads(&self) -> Vec<String> {
        self.shared.heads.lock().unwrap().clone()
    }

    /// The faults injected so far, as `<fault> <METHOD> <target>`.
    pub fn injected(&self) -> Vec<String> {
        self.shared.injected.lock().unwrap().clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Kills `registry` once the proxy has seen `after` requests, keeps it down for `downtime` (clients meet
/// refused connections, relayed as dropped ones), then starts a registry over `data_dir` and points the
/// proxy at it. The handle yields the new registry. `data_dir` must be outside the registry's own temp dir.
pub fn restart_registry_after(
    proxy: &FaultProxy,
    registry: Registry,
    data_dir: PathBuf,
    after: usize,
    downtime: Duration,
) -> JoinHandle<Registry> {
    let shared = proxy.shared.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(300);
        while shared.requests.load(Ordering::SeqCst) < after && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(registry);
        shared
            .injected
            .lock()
            .unwrap()
            .push(format!("registry killed after {after} requests"));
        std::thread::sleep(downtime);
        let restarted = Registry::start_with(Options {
            data_dir: Some(data_dir),
            ..Options::default()
        });
        *shared.upstream.lock().unwrap() = restarted.host().to_string();
        restarted
    })
}

/// The most a request head may take; a client sending more is not one we test.
const MAX_HEAD: usize = 64 << 10;

fn handle(mut client: TcpStream, shared: &Shared) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(60)));
    let Some((head, body)) = read_request(&mut client) else {
        return;
    };
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let in_flight = InFlight::enter(shared);
    shared.heads.lock().unwrap().push(head.clone());
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let fault = shared
        .rules
        .lock()
        .unwrap()
        .iter_mut()
        .find_map(|rule| rule.pick(&method, &target));
    if let Some(fault) = &fault {
        shared
            .injected
            .lock()
            .unwrap()
            .push(format!("{} {method} {target}", fault.name()));
    }
    match fault {
        Some(Fault::Reset) => {
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Stall(duration)) => {
            let until = Instant::now() + duration;
            while Instant::now() < until && !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Status { code, retry_after }) => {
            let body = format!(
                "{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"fault proxy: {code}\"}}]}}"
            );
            let retry = retry_after
                .map(|value| format!("retry-after: {value}\r\n"))
                .unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 {code} Fault\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes());
        }
        Some(Fault::ResetAfterForward) => {
            let _ = forward(shared, &head, &body);
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Truncate) => {
            if let Some(answer) = forward(shared, &head, &body) {
                let cut = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(
                    answer.len() / 2,
                    |end| {
                        let start = end + 4;
                        start + (answer.len() - start) / 2
                    },
                );
                let _ = client.write_all(&answer[..cut]);
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        Some(Fault::Answer(answer)) => {
            let _ = client.write_all(answer.as_bytes());
        }
        Some(Fault::Flood(content_type)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n{{\"name\":\"x\",\"tags\":[\""
            );
            if client.write_all(head.as_bytes()).is_ok() {
                let chunk = vec![b'a'; 1 << 16];
                for _ in 0..(1usize << 16) {
                    if shared.stop.load(Ordering::SeqCst) || client.write_all(&chunk).is_err() {
                        break;
                    }
                }
            }
            let _ = client.shutdown(Shutdown::Both);
        }
        None => relay(shared, in_flight, &mut client, &head, &body),
        Some(Fault::Delay(duration)) => {
            std::thread::sleep(duration);
            relay(shared, in_flight, &mut client, &head, &body);
        }
    }
}

/// One request counted in flight until dropped.
struct InFlight<'s>(&'s Shared);

impl<'s> InFlight<'s> {
    fn enter(shared: &'s Shared) -> InFlight<'s> {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The upstream's answer to the client; the request stops counting in flight before it goes back.
fn relay(
    shared: &Shared,
    in_flight: InFlight<'_>,
    client: &mut TcpStream,
    head: &str,
    body: &[u8],
) {
    let answer = forward(shared, head, body);
    drop(in_flight);
    match answer {
        Some(answer) => {
            let _ = client.write_all(&answer);
        }
        // The upstream is down (being restarted): the client sees a dropped connection.
        None => {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// The request head (up to the blank line, as text) and its `Content-Length` body.
fn read_request(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if data.len() > MAX_HEAD {
            return None;
        }
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    while body.len() < length {
        let n = client.read(&mut buffer).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some((head, body))
}

/// Sends the request upstream with `Connection: close` and returns the whole raw answer; `None` when the
/// upstream cannot be reached or answers nothing.
fn forward(shared: &Shared, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let upstream = shared.upstream.lock().unwrap().clone();
    let address = upstream.parse().ok()?;
    let mut server = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    let _ = server.set_read_timeout(Some(Duration::from_secs(120)));
    let mut rewritten = String::new();
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or("").trim();
        if ["connection", "keep-alive", "proxy-connection"]
            .iter()
            .any(|hop| name.eq_ignore_ascii_case(hop))
        {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("connection: close\r\n\r\n");
    server.write_all(rewritten.as_bytes()).ok()?;
    server.write_all(body).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}
