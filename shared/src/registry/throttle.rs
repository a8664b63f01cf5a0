//! Rate limits, per host: wait as the server says, never send while told to wait, and stop cleanly.
//!
//! Every request goes through one [`Host`] gate (kept per host for the whole process, so every client of a
//! run shares it). A rate-limit answer (429, 503 with a hint, a 403 that carries GitHub's or Docker Hub's
//! limit headers) blocks the *host*: no other request to it goes out until the wait is over, since GitHub
//! bans integrations that keep sending during one. The wait is what the answer says (`Retry-After` seconds
//! or date, `X-Retry-After` unix time, `x-ratelimit-remaining: 0` with `x-ratelimit-reset`, `RateLimit-*`),
//! else exponential backoff with jitter. Each host also has a concurrency limit that halves on throttling
//! and grows back by one per success (AIMD), an optional request pace (`--max-rps`) and a pace for
//! mutations (GitHub asks for about one per second).
//!
//! A run may have an overall bound (`--timeout`): waits never reach past it, and once it has passed, or
//! after repeated refusals of the credentials, [`Throttle::stop_reason`] tells the delete path to attempt
//! nothing more, so every finished row is still reported and a rerun converges.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::HeaderMap;

use super::http::{Backoff, parse_retry_after};

/// How many requests may be in flight to one host before throttling shrinks it.
const MAX_CONCURRENCY: f64 = 256.0;

/// Refusals of the credentials (401/403 that are not rate limits) after which nothing more is attempted.
pub const AUTH_STRIKES: usize = 3;

/// A secondary-limit refusal without any hint waits at least this long (GitHub's advice).
pub const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The process's rate-limit state, shared by every client.
pub fn global() -> &'static Throttle {
    static GLOBAL: OnceLock<Throttle> = OnceLock::new();
    GLOBAL.get_or_init(Throttle::default)
}

/// Limits for one run, and the per-host gates.
#[derive(Debug, Default)]
pub struct Throttle {
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    settings: Mutex<Settings>,
    auth_refusals: AtomicUsize,
}

#[derive(Debug, Default, Clone, Copy)]
struct Settings {
    /// At most this many request starts per second per host.
    max_rps: Option<f64>,
    /// At most this many requests in flight per host, whatever number of repositories runs at once.
    max_in_flight: Option<usize>,
    /// The run's overall bound.
    deadline: Option<Instant>,
}

/// Why a run attempts nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// `--timeout` has passed.
    Timeout,
    /// The credentials were refused this many times (not rate limits).
    Refused(usize),
}

impl Throttle {
    /// Sets the run's limits: requests in flight and a request pace per host, and an overall deadline.
    pub fn configure(
        &self,
        max_in_flight: Option<usize>,
        max_rps: Option<f64>,
        timeout: Option<Duration>,
    ) {
        if let Ok(mut settings) = self.settings.lock() {
            settings.max_in_flight = max_in_flight.filter(|n| *n > 0);
            settings.max_rps = max_rps.filter(|rps| *rps > 0.0);
            settings.deadline = timeout.map(|timeout| Instant::now() + timeout);
        }
    }

    fn settings(&self) -> Settings {
        self.settings.lock().map(|s| *s).unwrap_or_default()
    }

    /// The run's overall deadline, when `--timeout` set one.
    pub fn deadline(&self) -> Option<Instant> {
        self.settings().deadline
    }

    /// The gate of `host` (`registry.example.com:5000`).
    pub fn host(&self, host: &str) -> Arc<Host> {
        let mut hosts = match self.hosts.lock() {
            Ok(hosts) => hosts,
            Err(poisoned) => poisoned.into_inner(),
        };
        let ceiling = self
            .settings()
            .max_in_flight
            .map_or(MAX_CONCURRENCY, |n| n as f64);
        Arc::clone(
            hosts
                .entry(host.to_string())
                .or_insert_with(|| Arc::new(Host::new(host, ceiling))),
        )
    }

    /// Records a refusal of the credentials (a 401/403 that is not a rate limit).
    pub fn note_auth_refusal(&self) {
        self.auth_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Why nothing more should be attempted, if so.
    pub fn stop_reason(&self) -> Option<Stop> {
        let refusals = self.auth_refusals.load(Ordering::Relaxed);
        if refusals >= AUTH_STRIKES {
            return Some(Stop::Refused(refusals));
        }
        match self.deadline() {
            Some(deadline) if Instant::now() >= deadline => Some(Stop::Timeout),
            _ => None,
        }
    }

    /// Every host currently told to wait, with the time left, longest first (for progress displays).
    pub fn waits(&self) -> Vec<(String, Duration)> {
        let now = Instant::now();
        let hosts: Vec<Arc<Host>> = match self.hosts.lock() {
            Ok(hosts) => hosts.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        let mut waits: Vec<(String, Duration)> = hosts
            .iter()
            .filter_map(|host| {
                let until = host.state.lock().ok()?.blocked_until?;
                (until > now).then(|| (host.name.clone(), until - now))
            })
            .collect();
        waits.sort_by_key(|wait| std::cmp::Reverse(wait.1));
        waits
    }

    /// The pace between request starts to one host, from `--max-rps`.
    pub(crate) fn interval(&self) -> Duration {
        self.settings()
            .max_rps
            .map_or(Duration::ZERO, |rps| Duration::from_secs_f64(1.0 / rps))
    }
}

/// One host's gate.
#[derive(Debug)]
pub struct Host {
    name: String,
    state: Mutex<HostState>,
    released: tokio::sync::Notify,
}

#[derive(Debug)]
struct HostState {
    /// A told wait: nothing goes out before.
    blocked_until: Option<Instant>,
    /// The earliest next request start (`--max-rps`).
    next_start: Instant,
    /// The earliest next mutation start.
    next_mutation: Instant,
    /// The pace of mutations (DELETE, PUT, POST, PATCH).
    mutation_interval: Duration,
    /// AIMD concurrency limit.
    limit: f64,
    /// What it grows back to (`--parallel`).
    ceiling: f64,
    in_flight: usize,
}

/// A request's place at a host: dropping it frees the slot.
#[derive(Debug)]
pub struct Permit {
    host: Arc<Host>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Ok(mut state) = self.host.state.lock() {
            state.in_flight = state.in_flight.saturating_sub(1);
        }
        self.host.released.notify_waiters();
    }
}

/// What an answer means for its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the caller.
    Done,
    /// A rate limit: the host is blocked for this long; try again after.
    RateLimited(Duration),
    /// A transient server error: try this request again after this long.
    Retry(Duration),
}

impl Host {
    fn new(name: &str, ceiling: f64) -> Host {
        let now = Instant::now();
        Host {
            name: name.to_string(),
            state: Mutex::new(HostState {
                blocked_until: None,
                next_start: now,
                next_mutation: now,
                mutation_interval: Duration::ZERO,
                limit: ceiling,
                ceiling,
                in_flight: 0,
            }),
            released: tokio::sync::Notify::new(),
        }
    }

    /// Paces mutations to this host: at most one start per `interval` (GitHub's secondary limits).
    pub fn pace_mutations(&self, interval: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.mutation_interval = interval;
        }
    }

    /// Waits for this host's turn: past any told wait, within the pace and the concurrency limit. A told
    /// wait that lasts past `deadline` is `Err` with the time it has left, at once: the request is never
    /// sent into it. At `deadline` a pace or a full host no longer holds the request back, so a caller's
    /// bound always holds.
    pub async fn admit(
        self: &Arc<Self>,
        mutation: bool,
        pace: Duration,
        deadline: Instant,
    ) -> Result<Permit, Duration> {
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = Instant::now();
            let wait = {
                let Ok(mut state) = self.state.lock() else {
                    return Ok(Permit {
                        host: Arc::clone(self),
                    });
                };
                if let Some(until) = state.blocked_until
                    && until > deadline
                {
                    return Err(until - now);
                }
                let mut start = state.blocked_until.unwrap_or(now).max(state.next_start);
                if mutation {
                    start = start.max(state.next_mutation);
                }
                let full = state.in_flight as f64 >= state.limit.floor().max(1.0);
                if now >= deadline || (start <= now && !full) {
                    state.in_flight += 1;
                    state.next_start = now + pace;
                    if mutation {
                        state.next_mutation = now + state.mutation_interval;
                    }
                    return Ok(Permit {
                        host: Arc::clone(self),
                    });
                }
                (start > now).then(|| start.min(deadline) - now)
            };
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => {
                    // Full: wait for a slot, or the deadline.
                    let _ = tokio::time::timeout(deadline - now, notified).await;
                }
            }
        }
    }

    /// Reads an answer: a rate limit blocks the host (and halves its concurrency), a success grows it
    /// back, other transient errors back off this request alone.
    pub fn observe(&self, status: u16, headers: &HeaderMap, backoff: &mut Backoff) -> Verdict {
        let now = SystemTime::now();
        let told = told_wait(headers, now);
        let limited = match status {
            429 => true,
            403 => told.is_some(),
            503 => told.is_some(),
            _ => false,
        };
        let verdict = if limited {
            let wait = told.unwrap_or_else(|| backoff.next_delay());
            self.block_for(wait);
            Verdict::RateLimited(wait)
        } else {
            match status {
                500 | 502 | 503 | 504 => Verdict::Retry(backoff.next_delay()),
                _ => Verdict::Done,
            }
        };
        if let Ok(mut state) = self.state.lock() {
            if limited {
                // Halve what was actually in flight, so a limit far above the real load still bites.
                state.limit = (state.limit.min(state.in_flight as f64) / 2.0).max(1.0);
            } else if status < 500 {
                state.limit = (state.limit + 1.0).min(state.ceiling);
            }
        }
        // A success that says the window is spent: wait for its reset before the next request.
        if !limited && let Some(reset) = spent_window(headers, now) {
            self.block_for(reset);
        }
        verdict
    }

    /// Blocks every request to this host for `wait` (a longer block already told stays).
    pub fn block_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        if let Ok(mut state) = self.state.lock() {
            state.blocked_until = Some(state.blocked_until.map_or(until, |t| t.max(until)));
        }
    }
}

/// The wait an answer asks for, from any header a vendor uses: `Retry-After` (seconds or HTTP date),
/// `X-Retry-After` (unix time, older Docker Hub), or a spent window's reset (`x-ratelimit-*` of GitHub and
/// Docker Hub, `RateLimit-*` of GitLab).
pub fn told_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(wait) = text("retry-after").and_then(|value| parse_retry_after(value, now)) {
        return Some(wait);
    }
    if let Some(wait) = text("x-retry-after").and_then(|value| reset_time(value, now)) {
        return Some(wait);
    }
    spent_window(headers, now)
}

/// The time until a spent window (`remaining: 0`) resets.
fn spent_window(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    [
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    ]
    .iter()
    .find_map(|(remaining, reset)| {
        let spent = text(remaining)?.trim().parse::<u64>().ok()? == 0;
        spent.then(|| reset_time(text(reset)?, now)).flatten()
    })
}

/// A reset given as a unix time (GitHub, Docker Hub, GitLab) or, when small, as seconds from now (the IETF
/// `RateLimit-Reset`).
///
/// A unix time names a whole second, and a server that truncates its reset instant to one (the GitHub
/// stand-in does, as any may) still refuses during the rest of that second: waiting only until the
/// second starts sent requests into the wait, each refused with a fresh window to wait out (half the
/// allowed rate). So the wait lasts until that second is over.
fn reset_time(value: &str, now: SystemTime) -> Option<Duration> {
    let value: u64 = value.trim().parse().ok()?;
    // No delta is a billion seconds (31 years); no unix time is that small.
    if value < 1_000_000_000 {
        return Some(Duration::from_secs(value));
    }
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(value.saturating_add(1));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The answer for a request held back because its host asked to wait `wait` more, past the time allowed: a
/// 429 as the server would give, so callers report it as the rate limit it is.
pub fn held_back(host: &str, wait: Duration) -> reqwest::Response {
    let body = format!(
        "{{\"message\":\"not sent: {host} asked to wait {} s more, past the time allowed\"}}",
        wait.as_secs()
    );
    let response = http::Response::builder()
        .status(429)
        .header("retry-after", wait.as_secs().to_string())
        .header("content-type", "application/json")
        .body(body)
        .unwrap_or_default();
    reqwest::Response::from(response)
}

/// Whether a method changes something (paced separately).
pub fn is_mutation(method: &reqwest::Method) -> bool {
    !matches!(
        *method,
        reqwest::Method::GET | reqwest::Method::HEAD | reqwest::Method::OPTIONS
    )
}

/// `host:port` of a URL, the key of its gate.
pub fn host_key(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn every_vendor_hint_is_read() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let in_ten_minutes = "1700000600";
        let wait = |pairs: &[(&'static str, &str)]| told_wait(&headers(pairs), now);
        assert_eq!(
            wait(&[("retry-after", "42")]),
            Some(Duration::from_secs(42))
        );
        // A reset names a whole second: the wait ends with that second, not at its start.
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", in_ten_minutes)
            ]),
            Some(Duration::from_secs(601))
        );
        assert_eq!(
            wait(&[
                ("x-ratelimit-remaining", "12"),
                ("x-ratelimit-reset", in_ten_minutes)
            ]),
            None
        );
        assert_eq!(
            wait(&[("x-retry-after", in_ten_minutes)]),
            Some(Duration::from_secs(601))
        );
        assert_eq!(
            wait(&[
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", in_ten_minutes)
            ]),
            Some(Duration::from_secs(601))
        );
        assert_eq!(
            wait(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")]),
            Some(Duration::from_secs(30))
        );
        // Retry-After wins over the window.
        assert_eq!(
            wait(&[
                ("retry-after", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", in_ten_minutes)
            ]),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            wait(&[("x-retry-after", "1600000000")]),
            Some(Duration::ZERO)
        );
        assert_eq!(wait(&[]), None);
    }

    #[test]
    fn a_reset_in_unix_seconds_is_waited_past_the_end_of_that_second() {
        // Half a second into second T, a server whose window frees at T+10.5 says `reset: T+10`.
        let second = 1_700_000_000;
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(second * 1000 + 500);
        let reset = (second + 10).to_string();
        let spent = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        let wait = told_wait(&spent, now).unwrap();
        assert_eq!(wait, Duration::from_millis(10_500));
        assert!(now + wait >= SystemTime::UNIX_EPOCH + Duration::from_secs(second + 11));
        // A reset already over waits nothing.
        let past = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1600000000"),
        ]);
        assert_eq!(told_wait(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn throttling_blocks_the_host_and_halves_its_concurrency() {
        let host = Host::new("api.example.test:443", MAX_CONCURRENCY);
        let mut backoff = Backoff::default();
        let limit = |host: &Host| host.state.lock().unwrap().limit;
        assert_eq!(
            host.observe(429, &headers(&[("retry-after", "30")]), &mut backoff),
            Verdict::RateLimited(Duration::from_secs(30))
        );
        // Nothing was in flight through the gate: the floor.
        assert_eq!(limit(&host), 1.0);
        assert!(host.state.lock().unwrap().blocked_until.unwrap() > Instant::now());
        assert_eq!(
            host.observe(200, &HeaderMap::new(), &mut backoff),
            Verdict::Done
        );
        assert_eq!(limit(&host), 2.0);
        // A 403 without a hint is a refusal, not a limit; with GitHub's headers it is a limit.
        assert_eq!(
            host.observe(403, &HeaderMap::new(), &mut backoff),
            Verdict::Done
        );
        let spent = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "20")]);
        assert_eq!(
            host.observe(403, &spent, &mut backoff),
            Verdict::RateLimited(Duration::from_secs(20))
        );
        assert!(matches!(
            host.observe(429, &HeaderMap::new(), &mut backoff),
            Verdict::RateLimited(_)
        ));
        assert!(matches!(
            host.observe(502, &HeaderMap::new(), &mut backoff),
            Verdict::Retry(_)
        ));
    }

    #[test]
    fn in_flight_requests_per_host_stay_within_the_budget() {
        use futures_util::FutureExt;
        let throttle = Throttle::default();
        throttle.configure(Some(2), None, None);
        let host = throttle.host("registry.example.test:443");
        let far = Instant::now() + Duration::from_secs(3600);
        let admit = || host.admit(false, Duration::ZERO, far).now_or_never();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        let first = admit().expect("a free slot").unwrap();
        let _second = admit().expect("a free slot").unwrap();
        assert!(admit().is_none(), "a third request waits for a slot");
        drop(first);
        assert!(admit().is_some(), "a freed slot is taken");
        // Another host has its own budget.
        let other = throttle.host("api.example.test:443");
        assert!(
            other
                .admit(true, Duration::ZERO, far)
                .now_or_never()
                .is_some()
        );
    }

    #[test]
    fn stops_after_repeated_refusals() {
        let throttle = Throttle::default();
        assert_eq!(throttle.stop_reason(), None);
        for _ in 0..AUTH_STRIKES {
            throttle.note_auth_refusal();
        }
        assert_eq!(throttle.stop_reason(), Some(Stop::Refused(AUTH_STRIKES)));
        let timed = Throttle::default();
        timed.configure(None, None, Some(Duration::ZERO));
        assert_eq!(timed.stop_reason(), Some(Stop::Timeout));
    }
}
