//! HTTP details the client needs beyond reqwest: `Retry-After`, `Link` pagination, backoff with jitter,
//! loopback detection and size-bounded bodies.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use reqwest::Url;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::throttle::Verdict;
use super::{ClientOptions, RegistryError, USER_AGENT};

/// How long `Retry-After` asks to wait: delay-seconds or an HTTP date (RFC 9110 §10.2.3), relative to
/// `now`. A date in the past means no wait; anything unparseable is `None`.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The target of the `rel="next"` link in a `Link` header value (RFC 8288), as written (maybe relative).
pub fn parse_link_next(value: &str) -> Option<String> {
    let mut rest = value;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        // Parameters run to the next link, which starts with `<` outside quotes.
        let after = &rest[end + 1..];
        let mut in_quotes = false;
        let params_end = after
            .char_indices()
            .find(|(_, c)| {
                if *c == '"' {
                    in_quotes = !in_quotes;
                }
                *c == '<' && !in_quotes
            })
            .map_or(after.len(), |(i, _)| i);
        let is_next = after[..params_end].split(';').any(|param| {
            let Some((name, value)) = param.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        if is_next {
            return Some(target.trim().to_string());
        }
        rest = &after[params_end..];
    }
}

/// Whether `url` points at this machine (`localhost`, 127.0.0.0/8, `::1`).
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // Only the exact name: `*.localhost` is resolved by DNS, which may say anything.
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether two URLs share scheme, host and port (credentials and pagination may not leave an origin).
pub fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// Exponential backoff (200 ms doubling to 10 s) with full jitter.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    seed: u64,
}

impl Default for Backoff {
    /// A fresh backoff, seeded from the clock (jitter only needs to spread clients apart).
    fn default() -> Self {
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Backoff { attempt: 0, seed }
    }
}

impl Backoff {
    /// The next wait: uniformly in [cap/2, cap] where cap doubles each call.
    pub fn next_delay(&mut self) -> Duration {
        let cap_ms = (200u64 << self.attempt.min(6)).min(10_000);
        self.attempt += 1;
        // xorshift64
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        Duration::from_millis(cap_ms / 2 + self.seed % (cap_ms / 2 + 1))
    }
}

/// Why a bounded read stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The body is larger than allowed.
    TooLarge(usize),
    /// The connection failed mid-body.
    Transport(reqwest::Error),
}

/// The whole body, refusing more than `max` bytes (checked against `Content-Length` first, then as it
/// streams, so a lying or missing length cannot exhaust memory).
pub async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if let Some(length) = response.content_length()
        && length > max as u64
    {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How often one request is retried after a connection-level failure (refused, reset, timed out, a DNS
/// answer that may change): an unreachable host fails in seconds, not after the whole retry budget.
const CONNECTION_RETRIES: u32 = 3;

/// Where [`send_with_retries`] tells of each retry and its wait; silent until [`on_retry`] sets it.
static RETRY_NOTICE: OnceLock<fn(&str)> = OnceLock::new();

/// Has every later retry told to `notice` as one line (`regkit -v` prints them); the first call wins.
pub fn on_retry(notice: fn(&str)) {
    let _ = RETRY_NOTICE.set(notice);
}

/// One request with retries: rate limits wait as the answer says with the host held back for everyone
/// ([`throttle`](super::throttle)), other 5xx back off exponentially with jitter, all within `budget` (told
/// waits within the run's `--timeout` instead, when it sets one); connection failures back off too, at most
/// [`CONNECTION_RETRIES`] times, except those no retry can mend ([`is_permanent_connect_failure`]), which
/// return at once. When the time runs
/// out, the last answer (or error) is returned as it is.
pub async fn send_with_retries(
    build: impl Fn() -> reqwest::RequestBuilder,
    budget: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let throttle = super::throttle::global();
    let deadline = Instant::now() + budget;
    let told_deadline = throttle
        .deadline()
        .filter(|_| !budget.is_zero())
        .unwrap_or(deadline);
    let mut backoff = Backoff::default();
    let mut connection_retries = 0;
    loop {
        let (client, request) = build().build_split();
        let request = request?;
        let key = super::throttle::host_key(request.url());
        let host = throttle.host(&key);
        let mutation = super::throttle::is_mutation(request.method());
        let permit = match host
            .admit(mutation, throttle.interval(), told_deadline)
            .await
        {
            Ok(permit) => permit,
            Err(wait) => return Ok(super::throttle::held_back(&key, wait)),
        };
        // `held`: the host's gate holds every request back for the wait, this one's retry too.
        let (wait, limit, held, outcome) = match client.execute(request).await {
            Ok(response) => {
                match host.observe(response.status().as_u16(), response.headers(), &mut backoff) {
                    Verdict::Done => return Ok(response),
                    Verdict::RateLimited(wait) => (wait, told_deadline, true, Ok(response)),
                    Verdict::Retry(wait) => (wait, deadline, false, Ok(response)),
                }
            }
            Err(error)
                if (error.is_connect() || error.is_timeout() || error.is_request())
                    && !is_tls_failure(&error)
                    && !is_permanent_connect_failure(&error)
                    && connection_retries < CONNECTION_RETRIES =>
            {
                connection_retries += 1;
                (backoff.next_delay(), deadline, false, Err(error))
            }
            Err(error) => return Err(error),
        };
        drop(permit);
        if Instant::now() + wait > limit {
            return outcome;
        }
        if let Some(notice) = RETRY_NOTICE.get() {
            notice(&retry_line(&outcome, wait));
        }
        drop(outcome);
        if !held {
            tokio::time::sleep(wait).await;
        }
    }
}

/// `https://host/v2/app/tags/list: HTTP 503; retrying in 0.4 s`: the URL without its query, the cause.
fn retry_line(outcome: &Result<reqwest::Response, reqwest::Error>, wait: Duration) -> String {
    let (url, cause) = match outcome {
        Ok(response) => (Some(response.url()), format!("HTTP {}", response.status())),
        Err(error) => (
            error.url(),
            causes(error)
                .last()
                .map_or_else(String::new, ToString::to_string),
        ),
    };
    let url = url.map_or_else(String::new, |url| {
        format!("{}{}: ", url.origin().ascii_serialization(), url.path())
    });
    format!("{url}{cause}; retrying in {:.1} s", wait.as_secs_f64())
}

/// Whether a connection failed in a way the next attempt meets again: the name does not exist
/// (NXDOMAIN; a temporary resolver failure is retried), or a loopback port refuses (nothing listens there;
/// a remote refusal may be a restart behind a load balancer).
fn is_permanent_connect_failure(error: &reqwest::Error) -> bool {
    let loopback = error.url().is_some_and(is_loopback);
    causes(error).any(|cause| {
        let refused = cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        let text = cause.to_string();
        (loopback && refused)
            || [
                "Name or service not known",
                "No address associated with hostname",
                "nodename nor servname provided",
            ]
            .iter()
            .any(|nxdomain| text.contains(nxdomain))
    })
}

/// `error` and its causes, outermost first.
fn causes<'e>(
    error: &'e (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'e (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| {
        // io::Error's `source` skips the error it wraps (rustls's own, often inside a second io::Error).
        match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        }
    })
}

/// Whether a TLS handshake failed (an untrusted certificate, a name mismatch, a plain-HTTP server): the
/// same answer comes back on every attempt, so retrying only delays the error.
fn is_tls_failure(error: &reqwest::Error) -> bool {
    causes(error).any(|cause| cause.is::<rustls::Error>())
}

/// The HTTP client every regkit connection uses: rustls on ring, `User-Agent: regkit/…`, connect and
/// request timeouts, pooled connections, redirects that never downgrade to plain HTTP (reqwest drops
/// `Authorization` when a redirect changes origin), and the TLS options of [`ClientOptions`]. `registry`
/// names the target in errors.
pub fn build_client(
    options: &ClientOptions,
    registry: &str,
) -> Result<reqwest::Client, RegistryError> {
    // reqwest is built without a default crypto provider; ring is ours. An error only means some
    // provider is already installed for the process, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        // reqwest itself drops Authorization when a redirect changes host, port or scheme.
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|previous| previous.scheme() == "https")
            && attempt.url().scheme() != "https";
        if downgrade {
            attempt.error("redirect from HTTPS to plain HTTP refused")
        } else if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(redirects)
        .connect_timeout(options.request_timeout.min(Duration::from_secs(10)))
        .timeout(options.request_timeout)
        .pool_idle_timeout(Duration::from_secs(60));
    if options.skip_tls_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    } else {
        let extra_roots = match &options.ca_file {
            Some(path) => read_ca_file(path, registry)?,
            None => Vec::new(),
        };
        let config = super::tls::client_config(extra_roots).map_err(|error| {
            RegistryError::Config(format!("cannot set up HTTPS for {registry}: {error}"))
        })?;
        builder = builder.tls_backend_preconfigured(config);
    }
    builder.build().map_err(|error| {
        RegistryError::Config(format!("cannot set up HTTPS for {registry}: {error}"))
    })
}

/// The certificates of a `--ca-file` PEM bundle.
fn read_ca_file(
    path: &std::path::Path,
    registry: &str,
) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let pem = std::fs::read(path).map_err(|error| {
        RegistryError::Config(format!(
            "cannot read CA file {} for {registry}: {error}",
            path.display()
        ))
    })?;
    let not_pem = |detail: String| {
        RegistryError::Config(format!(
            "CA file {} for {registry} is not PEM: {detail}",
            path.display()
        ))
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| not_pem(error.to_string()))?;
    if certificates.is_empty() {
        return Err(not_pem("no certificate in it".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // RFC 850 and asctime forms are valid HTTP dates too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:05 2015", now),
            Some(Duration::from_secs(5))
        );
        for bad in ["", "-1", "1.5", "soon", "Wed, 99 Oct 2015 07:28:00 GMT"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn link_next_shapes() {
        assert_eq!(
            parse_link_next(r#"</v2/_catalog?last=bulk%2Fapp&n=1>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=bulk%2Fapp&n=1")
        );
        assert_eq!(
            parse_link_next("<https://r.example/v2/x/tags/list?n=2&last=b>;rel=next").as_deref(),
            Some("https://r.example/v2/x/tags/list?n=2&last=b")
        );
        assert_eq!(
            parse_link_next(r#"</a>; rel="prev", </b>; title="x, <y>"; rel="next""#).as_deref(),
            Some("/b")
        );
        assert_eq!(
            parse_link_next(r#"</a>; rel="prev next""#).as_deref(),
            Some("/a")
        );
        assert_eq!(
            parse_link_next(r#"</a>; REL="NEXT""#).as_deref(),
            Some("/a")
        );
        assert_eq!(parse_link_next(r#"</a>; rel="last""#), None);
        assert_eq!(parse_link_next(""), None);
        assert_eq!(parse_link_next("<unterminated; rel=next"), None);
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:5000",
            "http://localhost",
            "http://[::1]:80",
            "http://127.9.9.9",
        ] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        for url in [
            "http://10.0.0.1",
            "https://registry.example",
            "http://localhost.evil.example",
            "http://a.localhost",
        ] {
            assert!(!is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..12).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(200));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        assert!(delays[11] >= Duration::from_secs(5));
    }
}
