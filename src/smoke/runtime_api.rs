//! The Lambda Runtime API (2018-06-01), served by coldpress to the function under
//! test: `GET invocation/next` long-polls for an event, and the runtime answers
//! with `POST invocation/{id}/response`, `POST invocation/{id}/error` or, when it
//! cannot start, `POST init/error` (AWS: "Using the Lambda runtime API for
//! custom runtimes"; the runtime interface emulator implements the same paths).
//!
//! One current-thread tokio runtime on one thread serves every connection: a
//! runtime holds `next` open until there is an event, and a thread per request
//! would be the wrong shape for that. What happens is reported, timestamped, on a
//! plain channel to the caller, which drives the run.

use std::convert::Infallible;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::error::{Error, IoContext, Result};

pub const BASE_PATH: &str = "/2018-06-01/runtime/";
/// Lambda's limit for a synchronous response (and for an error document).
pub const MAX_RESPONSE: usize = 6 * 1024 * 1024;

/// An event to hand to the runtime.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub body: Vec<u8>,
    /// Wall-clock deadline, milliseconds since the epoch (`Lambda-Runtime-Deadline-Ms`).
    pub deadline_ms: u64,
}

/// What the runtime did, in the order it did it.
#[derive(Debug)]
pub enum ApiEvent {
    /// The runtime asked for the next event (the first ask ends its init).
    Polled,
    /// An event was handed over.
    Delivered {
        request_id: String,
    },
    Response {
        request_id: String,
        body: Vec<u8>,
    },
    Error {
        request_id: String,
        body: Vec<u8>,
        error_type: Option<String>,
    },
    InitError {
        body: Vec<u8>,
        error_type: Option<String>,
    },
    /// A response or error document over Lambda's 6 MB limit.
    TooLarge {
        request_id: String,
    },
    /// A request the Runtime API does not have.
    Unknown {
        method: String,
        path: String,
    },
}

struct State {
    next: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<Invocation>>,
    report: std::sync::Mutex<std::sync::mpsc::Sender<(Instant, ApiEvent)>>,
    function_arn: String,
}

impl State {
    fn send(&self, e: ApiEvent) {
        let now = Instant::now();
        if let Ok(tx) = self.report.lock() {
            let _ = tx.send((now, e));
        }
    }
}

/// A running Runtime API; stops (and drops any held request) when dropped.
pub struct RuntimeApi {
    events: tokio::sync::mpsc::UnboundedSender<Invocation>,
    pub reports: std::sync::mpsc::Receiver<(Instant, ApiEvent)>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RuntimeApi {
    /// Serve on `listener` (already bound; in the smoke run, inside the sandbox's
    /// network namespace).
    pub fn serve(listener: std::net::TcpListener, function_arn: String) -> Result<RuntimeApi> {
        listener
            .set_nonblocking(true)
            .ctx("Runtime API: making the listener non-blocking")?;
        let (events, next) = tokio::sync::mpsc::unbounded_channel();
        let (report_tx, reports) = std::sync::mpsc::channel();
        let (shutdown, mut stop) = tokio::sync::oneshot::channel::<()>();
        let state = Arc::new(State {
            next: tokio::sync::Mutex::new(next),
            report: std::sync::Mutex::new(report_tx),
            function_arn,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .ctx("Runtime API: starting the event loop")?;
        let thread = std::thread::Builder::new()
            .name("runtime-api".into())
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                let Ok((stream, _)) = accepted else { continue };
                                let state = state.clone();
                                tokio::spawn(async move {
                                    let service = service_fn(move |req| handle(state.clone(), req));
                                    let _ = http1::Builder::new()
                                        .serve_connection(TokioIo::new(stream), service)
                                        .await;
                                });
                            }
                        }
                    }
                });
            })
            .ctx("Runtime API: starting its thread")?;
        Ok(RuntimeApi {
            events,
            reports,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// Queue an event for the runtime's next `GET invocation/next`.
    pub fn deliver(&self, inv: Invocation) -> Result<()> {
        self.events
            .send(inv)
            .map_err(|_| Error::invalid("the smoke run's Runtime API", "it stopped early"))
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An X-Ray style trace header, derived from the request id so runs repeat.
fn trace_id(inv: &Invocation) -> String {
    let hex: String = inv
        .request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect();
    format!(
        "Root=1-{:08x}-{hex:0>24};Parent=0000000000000000;Sampled=0",
        inv.deadline_ms / 1000
    )
}

fn reply(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("a static response is valid")
}

async fn body_of(req: Request<Incoming>) -> Option<Vec<u8>> {
    Limited::new(req.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .ok()
        .map(|c| c.to_bytes().to_vec())
}

fn error_type(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("Lambda-Runtime-Function-Error-Type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let Some(rest) = path.strip_prefix(BASE_PATH) else {
        state.send(ApiEvent::Unknown {
            method: method.to_string(),
            path,
        });
        return Ok(reply(
            StatusCode::NOT_FOUND,
            r#"{"errorType":"InvalidRequest"}"#,
        ));
    };
    if method == Method::GET && rest == "invocation/next" {
        state.send(ApiEvent::Polled);
        let inv = state.next.lock().await.recv().await;
        let Some(inv) = inv else {
            return Ok(reply(StatusCode::SERVICE_UNAVAILABLE, "{}"));
        };
        state.send(ApiEvent::Delivered {
            request_id: inv.request_id.clone(),
        });
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header("Content-Type", "application/json")
            .header("Lambda-Runtime-Aws-Request-Id", &inv.request_id)
            .header("Lambda-Runtime-Deadline-Ms", inv.deadline_ms.to_string())
            .header("Lambda-Runtime-Invoked-Function-Arn", &state.function_arn)
            .header("Lambda-Runtime-Trace-Id", trace_id(&inv))
            .body(Full::new(Bytes::from(inv.body)))
            .expect("valid headers");
        return Ok(resp);
    }
    if method == Method::POST && rest == "init/error" {
        let et = error_type(&req);
        let body = body_of(req).await.unwrap_or_default();
        state.send(ApiEvent::InitError {
            body,
            error_type: et,
        });
        return Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    if method == Method::POST
        && let Some(tail) = rest.strip_prefix("invocation/")
        && let Some((id, action)) = tail.split_once('/')
        && (action == "response" || action == "error")
    {
        let request_id = id.to_string();
        let et = error_type(&req);
        let Some(body) = body_of(req).await else {
            state.send(ApiEvent::TooLarge { request_id });
            return Ok(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"errorMessage":"Response payload size exceeded maximum allowed payload size (6291556 bytes).","errorType":"RequestEntityTooLarge"}"#,
            ));
        };
        state.send(if action == "response" {
            ApiEvent::Response { request_id, body }
        } else {
            ApiEvent::Error {
                request_id,
                body,
                error_type: et,
            }
        });
        return Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    state.send(ApiEvent::Unknown {
        method: method.to_string(),
        path,
    });
    Ok(reply(
        StatusCode::NOT_FOUND,
        r#"{"errorType":"InvalidRequest"}"#,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn http(port: u16, req: &str) -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn serves_next_and_takes_responses() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let api = RuntimeApi::serve(l, "arn:aws:lambda:us-east-1:000000000000:function:f".into())
            .unwrap();
        api.deliver(Invocation {
            request_id: "8476a536-e9f4-11e8-9739-2dfe598c3fcd".into(),
            body: br#"{"k":1}"#.to_vec(),
            deadline_ms: now_ms() + 3000,
        })
        .unwrap();
        let next = http(
            port,
            "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(next.starts_with("HTTP/1.1 200"), "{next}");
        let lower = next.to_ascii_lowercase();
        assert!(
            lower.contains("lambda-runtime-aws-request-id: 8476a536-e9f4-11e8-9739-2dfe598c3fcd")
        );
        assert!(lower.contains("lambda-runtime-deadline-ms: "));
        assert!(lower.contains("lambda-runtime-invoked-function-arn: arn:aws:lambda"));
        assert!(next.ends_with(r#"{"k":1}"#));
        let posted = http(
            port,
            "POST /2018-06-01/runtime/invocation/8476a536-e9f4-11e8-9739-2dfe598c3fcd/response HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        );
        assert!(posted.starts_with("HTTP/1.1 202"), "{posted}");
        let missing = http(
            port,
            "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let got: Vec<ApiEvent> = (0..4)
            .map(|_| api.reports.recv_timeout(Duration::from_secs(5)).unwrap().1)
            .collect();
        assert!(matches!(got[0], ApiEvent::Polled));
        assert!(
            matches!(&got[1], ApiEvent::Delivered { request_id } if request_id.starts_with("8476"))
        );
        assert!(matches!(&got[2], ApiEvent::Response { body, .. } if body == b"ok"));
        assert!(matches!(&got[3], ApiEvent::Unknown { path, .. } if path == "/nope"));
    }
}
