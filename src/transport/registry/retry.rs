//! The retry half of the request engine: the table that says what an answer
//! means ([`classify`]), the budget of one operation ([`Attempts`]), backoff with
//! jitter and `Retry-After`, and the loop itself ([`Client::run`]), the only retry
//! loop in the registry client. `http.rs` sends and classifies; this decides.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::Client;
use crate::error::{Error, Result};
use crate::ui;

/// How hard to try before giving up on an operation.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Tries per operation, the first included (`--retries`).
    pub attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// Total time one operation may spend, retries included.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            deadline: Duration::from_secs(300),
        }
    }
}

/// What one attempt came back with, in the terms the retry table needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// The server answered with this status.
    Status(StatusCode),
    /// No connection, or it was reset, stalled or ended before the whole answer.
    Network,
    /// The TLS handshake failed on the certificate, or the server speaks plain
    /// HTTP: the same request fails the same way every time.
    Tls,
    /// The request could not be built (a malformed URL from a `Location` header).
    Local,
}

/// What to do about an [`Answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    /// Hand the response to the caller, who reads it: 200, 202, a 404 that
    /// means "absent", a 400 that names the problem.
    Accept,
    /// Send again after a backoff (or the server's `Retry-After`).
    Retry,
    /// Learn the challenge, drop cached tokens and send again at once; a second
    /// 401 in the same operation is final.
    Reauth,
    /// Give up now: trying again cannot help.
    Fail,
}

/// The retry table, the only one (docs/reliability.md, "Registry faults", shows it
/// row by row; each row has a unit test below).
pub(super) fn classify(answer: Answer) -> Action {
    match answer {
        Answer::Status(s) => match s.as_u16() {
            401 => Action::Reauth,
            // 408: the server timed out waiting for us; 429: slow down; 500/502/503/504:
            // the registry or a proxy in front of it is briefly unwell. 501 and 505
            // are answers about the request itself and stay the caller's.
            408 | 429 | 500 | 502 | 503 | 504 => Action::Retry,
            _ => Action::Accept,
        },
        Answer::Network => Action::Retry,
        Answer::Tls | Answer::Local => Action::Fail,
    }
}

/// A failed attempt: what the table says about it, how long the server asked us
/// to wait, and the error to report if this was the last attempt.
pub(super) struct Failure {
    pub action: Action,
    pub wait: Option<Duration>,
    pub error: Error,
}

impl Failure {
    /// An error no retry can fix (a refused token, a malformed answer).
    pub fn fail(error: Error) -> Self {
        Failure {
            action: Action::Fail,
            wait: None,
            error,
        }
    }

    /// A broken connection or body: worth another attempt.
    pub fn retry(error: Error) -> Self {
        Failure {
            action: Action::Retry,
            wait: None,
            error,
        }
    }
}

/// One operation's budget. An operation is whatever must be repeated as a whole:
/// one request, a request and its body, an upload session (POST and PUT), or a
/// blob stream with all its resumes.
pub(super) struct Attempts {
    started: Instant,
    tries: u32,
    reauthenticated: bool,
}

impl Attempts {
    pub fn new() -> Self {
        Attempts {
            started: Instant::now(),
            tries: 0,
            reauthenticated: false,
        }
    }

    /// A stream that made progress since its last failure starts its count over;
    /// the deadline still bounds it.
    pub fn progressed(&mut self) {
        self.tries = 0;
    }
}

fn jitter_fraction() -> f64 {
    // Jitter only spreads retries out; it needs no cryptographic quality.
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        x = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ (std::process::id() as u64) << 32
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x % 10_000) as f64 / 10_000.0
}

/// Exponential backoff with 50–100 % jitter, or the server's `Retry-After`.
pub(super) fn backoff(policy: &RetryPolicy, attempt: u32, server: Option<Duration>) -> Duration {
    if let Some(h) = server {
        return h;
    }
    let exp = policy
        .base
        .saturating_mul(1u32 << attempt.min(16))
        .min(policy.cap);
    exp.mul_f64(0.5 + jitter_fraction() / 2.0)
}

/// `Retry-After` as seconds or an HTTP date, capped so a hostile server cannot park us.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let secs = match v.parse::<u64>() {
        Ok(s) => s,
        Err(_) => {
            let at = http_date(v)?;
            let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
            at.saturating_sub(now)
        }
    };
    Some(Duration::from_secs(secs.min(60)))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as Unix seconds.
fn http_date(s: &str) -> Option<u64> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()
}

impl Client {
    /// Run `op` until it succeeds or the retry table and the budget say stop.
    /// This is the only retry loop in the registry client.
    pub(super) fn run<T>(
        &self,
        attempts: &mut Attempts,
        mut op: impl FnMut() -> Result<T, Failure>,
    ) -> Result<T> {
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(f) => self.settle(attempts, f)?,
            }
        }
    }

    /// After a failed attempt: `Ok` to go again (having waited or re-authenticated),
    /// or the error to give up with.
    pub(super) fn settle(&self, a: &mut Attempts, f: Failure) -> Result<()> {
        match f.action {
            Action::Reauth if !a.reauthenticated => {
                a.reauthenticated = true;
                // A 401 with a token we had means it expired (or never covered
                // this scope): drop them all, the next request fetches afresh.
                self.tokens.lock().expect("not poisoned").clear();
                ui::trace(|| format!("{}: re-authenticating", self.registry));
                Ok(())
            }
            Action::Retry
                if a.tries + 1 < self.retry.attempts
                    && a.started.elapsed() < self.retry.deadline =>
            {
                let wait = backoff(&self.retry, a.tries, f.wait);
                ui::trace(|| format!("{}; retrying in {} ms", f.error, wait.as_millis()));
                a.tries += 1;
                std::thread::sleep(wait);
                Ok(())
            }
            Action::Retry if a.tries > 0 => Err(gave_up(f.error, a)),
            _ => Err(f.error),
        }
    }
}

/// The last error of an operation that was retried, saying so.
fn gave_up(mut e: Error, a: &Attempts) -> Error {
    if let Error::Registry { message, .. } = &mut e {
        message.push_str(&format!(
            " (gave up after {} attempts in {:.1} s)",
            a.tries + 1,
            a.started.elapsed().as_secs_f64()
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::RegistryErrorKind;
    use crate::transport::registry::RegistryOptions;
    use reqwest::header::HeaderValue;
    use std::sync::Arc;

    fn status(code: u16) -> Action {
        classify(Answer::Status(StatusCode::from_u16(code).unwrap()))
    }

    // One test per row of the retry table in docs/reliability.md.

    #[test]
    fn row_success_and_redirects_go_to_the_caller() {
        for code in [200, 201, 202, 204, 206, 307] {
            assert_eq!(status(code), Action::Accept, "{code}");
        }
    }

    #[test]
    fn row_client_errors_go_to_the_caller() {
        // 404 is "absent" for HEAD, "not found" for a manifest; 400 may say
        // PAGINATION_NUMBER_INVALID; 403 is a refusal no token changes.
        for code in [400, 403, 404, 405, 409, 413, 416] {
            assert_eq!(status(code), Action::Accept, "{code}");
        }
    }

    #[test]
    fn row_401_re_authenticates() {
        assert_eq!(status(401), Action::Reauth);
    }

    #[test]
    fn row_throttling_and_server_trouble_are_retried() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(status(code), Action::Retry, "{code}");
        }
    }

    #[test]
    fn row_answers_about_the_request_itself_are_not_retried() {
        for code in [501, 505] {
            assert_eq!(status(code), Action::Accept, "{code}");
        }
    }

    #[test]
    fn row_broken_connections_are_retried() {
        assert_eq!(classify(Answer::Network), Action::Retry);
    }

    #[test]
    fn row_tls_and_unbuildable_requests_fail_at_once() {
        assert_eq!(classify(Answer::Tls), Action::Fail);
        assert_eq!(classify(Answer::Local), Action::Fail);
    }

    fn client(attempts: u32) -> Arc<Client> {
        let opts = RegistryOptions {
            retry: RetryPolicy {
                attempts,
                base: Duration::from_millis(1),
                cap: Duration::from_millis(2),
                deadline: Duration::from_secs(60),
            },
            ..RegistryOptions::default()
        };
        Client::new("registry.example", "registry.example", &opts).unwrap()
    }

    fn failing(action: Action) -> Failure {
        Failure {
            action,
            wait: None,
            error: Error::registry("r", RegistryErrorKind::Transient, "503"),
        }
    }

    #[test]
    fn the_loop_retries_up_to_the_budget_and_says_it_gave_up() {
        let c = client(3);
        let mut calls = 0;
        let err = c
            .run(&mut Attempts::new(), || -> Result<(), Failure> {
                calls += 1;
                Err(failing(Action::Retry))
            })
            .unwrap_err();
        assert_eq!(calls, 3);
        assert!(
            err.to_string().contains("gave up after 3 attempts"),
            "{err}"
        );
    }

    #[test]
    fn the_loop_re_authenticates_once_without_spending_an_attempt() {
        let c = client(1);
        let mut calls = 0;
        let err = c
            .run(&mut Attempts::new(), || -> Result<(), Failure> {
                calls += 1;
                Err(failing(Action::Reauth))
            })
            .unwrap_err();
        assert_eq!(calls, 2, "one re-authentication, then the 401 is final");
        assert!(!err.to_string().contains("gave up"), "{err}");
    }

    #[test]
    fn the_loop_stops_at_a_failure() {
        let c = client(6);
        let mut calls = 0;
        let r = c.run(&mut Attempts::new(), || -> Result<(), Failure> {
            calls += 1;
            Err(failing(Action::Fail))
        });
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn the_loop_returns_the_first_success() {
        let c = client(6);
        let mut calls = 0;
        let v = c
            .run(&mut Attempts::new(), || {
                calls += 1;
                if calls < 3 {
                    Err(failing(Action::Retry))
                } else {
                    Ok(calls)
                }
            })
            .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn backoff_doubles_with_jitter_under_the_cap_unless_the_server_says() {
        let p = RetryPolicy::default();
        for attempt in 0..8 {
            let d = backoff(&p, attempt, None);
            let full = (p.base * (1 << attempt)).min(p.cap);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
        assert_eq!(
            backoff(&p, 5, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a date in the past: now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("3600"));
        assert_eq!(
            retry_after(&h),
            Some(Duration::from_secs(60)),
            "capped at a minute"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
