//! A fault-injecting HTTP proxy for the reliability tests: it sits between
//! coldpress and the real distribution registry and, at a configurable rate and
//! seed, answers 500/502/503, answers 429 with Retry-After, resets connections
//! (a TCP RST halfway through a download's body, or before answering anything
//! else, e.g. while an upload is still being sent), stalls, and truncates
//! response bodies mid-stream (a clean close where the headers promised more).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Status(u16),
    TooMany,
    Reset,
    Stall,
    Truncate,
}

const KINDS: [Fault; 7] = [
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::TooMany,
    Fault::Reset,
    Fault::Stall,
    Fault::Truncate,
];

#[derive(Clone, Debug)]
pub struct Config {
    /// Fraction of requests that get a fault (0.0 ..= 1.0).
    pub rate: f64,
    pub seed: u64,
    /// How long a stalled request hangs before the connection is closed.
    pub stall: Duration,
    /// Added to every request (to widen windows, e.g. for kill tests).
    pub delay: Duration,
}

#[derive(Default, Debug)]
pub struct Counters {
    pub requests: AtomicU64,
    pub faults: AtomicU64,
}

struct State {
    upstream: String,
    config: Mutex<Config>,
    rng: Mutex<u64>,
    client: Client<HttpConnector, BoxBody<Bytes, hyper::Error>>,
    counters: Arc<Counters>,
}

impl State {
    fn draw(&self) -> Option<Fault> {
        let rate = self.config.lock().unwrap().rate;
        let mut x = self.rng.lock().unwrap();
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let roll = (*x % 1_000_000) as f64 / 1_000_000.0;
        if roll >= rate {
            return None;
        }
        Some(KINDS[((*x >> 20) % KINDS.len() as u64) as usize])
    }
}

type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

fn text(code: u16, msg: &str) -> Response<Body> {
    let body = format!("{{\"errors\":[{{\"code\":\"UNAVAILABLE\",\"message\":\"{msg}\"}}]}}");
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

/// Make the kernel answer the connection's close with RST instead of FIN.
fn reset_on_close(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is the connection's socket, open while its handler runs.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    fd: RawFd,
) -> Result<Response<Body>, Box<dyn std::error::Error + Send + Sync>> {
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    let (delay, stall) = {
        let c = state.config.lock().unwrap();
        (c.delay, c.stall)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = state.draw();
    if fault.is_some() {
        state.counters.faults.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(Fault::Status(code)) => return Ok(text(code, "injected fault")),
        Some(Fault::TooMany) => {
            let mut r = text(429, "slow down");
            r.headers_mut().insert("retry-after", "1".parse().unwrap());
            *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            return Ok(r);
        }
        Some(Fault::Reset) => {
            reset_on_close(fd);
            if req.method() != hyper::Method::GET {
                return Err("injected connection reset".into());
            }
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(stall).await;
            return Err("injected stall".into());
        }
        _ => {}
    }
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    parts.uri = format!("http://{}{path}", state.upstream).parse().unwrap();
    parts
        .headers
        .insert("host", state.upstream.parse().unwrap());
    let upstream = Request::from_parts(parts, body.boxed());
    let resp = state.client.request(upstream).await?;
    let (parts, body) = resp.into_parts();
    if !matches!(fault, Some(Fault::Truncate | Fault::Reset)) {
        return Ok(Response::from_parts(
            parts,
            body.map_err(|e| Box::new(e) as _).boxed(),
        ));
    }
    // Send about half of the body (the headers still promise all of it), then
    // break the connection: a FIN for a truncation, a RST for a reset.
    let full = body.collect().await?.to_bytes();
    let cut = full.len() / 2;
    Ok(Response::from_parts(
        parts,
        Truncated {
            first: Some(full.slice(..cut)),
            failed: false,
        }
        .boxed(),
    ))
}

struct Truncated {
    first: Option<Bytes>,
    failed: bool,
}

impl hyper::body::Body for Truncated {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(b) = self.first.take() {
            return std::task::Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if !self.failed {
            self.failed = true;
            return std::task::Poll::Ready(Some(Err("injected truncation".into())));
        }
        std::task::Poll::Ready(None)
    }
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    pub fn start(upstream: &str, config: Config) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let counters = Arc::new(Counters::default());
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            rng: Mutex::new(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            config: Mutex::new(config),
            client: Client::builder(TokioExecutor::new()).build_http(),
            counters: counters.clone(),
        });
        let state_handle = state.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let fd = stream.as_raw_fd();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, state.clone(), fd));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Proxy {
            addr,
            counters,
            state: state_handle,
            _runtime: runtime,
        }
    }

    /// Change the fault rate and seed (the proxy keeps its address, so image
    /// names, and hence digests, stay the same across runs).
    pub fn reseed(&self, rate: f64, seed: u64) {
        self.state.config.lock().unwrap().rate = rate;
        *self.state.rng.lock().unwrap() = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}
