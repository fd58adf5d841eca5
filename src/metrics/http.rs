//! The `/metrics` HTTP responder: a small, bounded HTTP/1.x server over
//! `std::net::TcpListener` (the packaged daemon has no HTTP server crate).
//!
//! Per connection: at most [`MAX_REQUEST`] bytes of request head, read
//! within [`CLIENT_DEADLINE`] in total; `GET /metrics` (any query string)
//! is answered 200 with the exposition, another path 404, another method
//! on `/metrics` 405, a malformed head 400, an oversize one 431, a client
//! too slow to send its head 408; then the connection is closed (no
//! keep-alive, request bodies are never read). At most [`MAX_CLIENTS`]
//! connections are served at once, each on a short-lived `metrics-client`
//! thread; beyond that a new connection is closed at once.
//!
//! Owns: the listening socket. Calls the render closure it is handed.
//! [`parse_head`] is pure (property-tested).

use crate::task::ThreadName;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest request head read (request line + headers), bytes.
pub(crate) const MAX_REQUEST: usize = 4096;
/// Time a client has to send its whole request head.
pub(crate) const CLIENT_DEADLINE: Duration = Duration::from_secs(2);
/// Time a client has to take the answer.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub(crate) const MAX_CLIENTS: usize = 8;
/// Longest request target accepted.
pub(crate) const MAX_TARGET: usize = 1024;

/// The parts of a request head the responder looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub method: String,
    /// The path, without the query string.
    pub path: String,
}

/// Why a request head is not (yet) usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeadError {
    /// No blank line yet: read more.
    Incomplete,
    /// Longer than [`MAX_REQUEST`] without its end.
    TooLarge,
    /// Not an HTTP/1.x request head (what is wrong).
    Bad(&'static str),
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Incomplete => write!(f, "request head incomplete"),
            HeadError::TooLarge => write!(f, "request head larger than {MAX_REQUEST} bytes"),
            HeadError::Bad(why) => write!(f, "bad request: {why}"),
        }
    }
}

/// Where the head ends (index after its blank line), if it does.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse the bytes read so far of one request.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Head, HeadError> {
    let end = match head_end(buf) {
        Some(e) if e <= MAX_REQUEST => e,
        Some(_) => return Err(HeadError::TooLarge),
        None if buf.len() >= MAX_REQUEST => return Err(HeadError::TooLarge),
        None => return Err(HeadError::Incomplete),
    };
    let head = &buf[..end];
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad("request line is not METHOD TARGET VERSION"));
    };
    if method.is_empty() || method.len() > 16 || !method.iter().all(|b| is_tchar(*b)) {
        return Err(HeadError::Bad("bad method"));
    }
    if target.is_empty()
        || target.len() > MAX_TARGET
        || target[0] != b'/'
        || !target.iter().all(|b| b.is_ascii_graphic())
    {
        return Err(HeadError::Bad("bad request target"));
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(HeadError::Bad("not HTTP/1.0 or HTTP/1.1"));
    }
    for h in lines.filter(|l| !l.is_empty()) {
        let Some(colon) = h.iter().position(|b| *b == b':') else {
            return Err(HeadError::Bad("header line without ':'"));
        };
        if colon == 0 || !h[..colon].iter().all(|b| is_tchar(*b)) {
            return Err(HeadError::Bad("bad header name"));
        }
    }
    let target = String::from_utf8_lossy(target);
    let path = target.split('?').next().unwrap_or_default().to_string();
    Ok(Head {
        method: String::from_utf8_lossy(method).into_owned(),
        path,
    })
}

/// An answer: status code, reason, extra header lines, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub code: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub extra: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    fn plain(code: u16, reason: &'static str, extra: &'static str) -> Answer {
        Answer {
            code,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra,
            body: format!("{code} {reason}\n").into_bytes(),
        }
    }

    /// The answer to a parsed head or a head error.
    pub(crate) fn for_head(head: &Result<Head, HeadError>, render: &dyn Fn() -> String) -> Answer {
        match head {
            Ok(h) if h.path != "/metrics" => Answer::plain(404, "Not Found", ""),
            Ok(h) if h.method != "GET" => {
                Answer::plain(405, "Method Not Allowed", "Allow: GET\r\n")
            }
            Ok(_) => Answer {
                code: 200,
                reason: "OK",
                content_type: super::CONTENT_TYPE,
                extra: "",
                body: render().into_bytes(),
            },
            Err(HeadError::TooLarge) => Answer::plain(431, "Request Header Fields Too Large", ""),
            Err(HeadError::Incomplete) => Answer::plain(408, "Request Timeout", ""),
            Err(HeadError::Bad(_)) => Answer::plain(400, "Bad Request", ""),
        }
    }

    /// The bytes on the wire.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
            self.code,
            self.reason,
            self.content_type,
            self.body.len(),
            self.extra
        )
        .into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// What the server calls to render the exposition.
pub(crate) type RenderFn = Arc<dyn Fn() -> String + Send + Sync>;

/// The listening side, owned by the daemon's `metrics-server` task.
pub(crate) struct MetricsServer {
    listener: TcpListener,
    active: Arc<AtomicUsize>,
}

impl MetricsServer {
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(MetricsServer {
            listener,
            active: Arc::new(AtomicUsize::new(0)),
        })
    }

    #[cfg(test)]
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Wait up to `wait` for one connection and hand it to a short-lived
    /// `metrics-client` thread. Ok(false) when none came.
    #[cfg(test)]
    pub(crate) fn serve_one(&self, wait: Duration, render: &RenderFn) -> io::Result<bool> {
        self.serve_one_until(wait, render, None)
    }

    /// `serve_one`, returning at once when `stop` (e.g.
    /// `Shutdown::wake_fd`) becomes readable.
    pub(crate) fn serve_one_until(
        &self,
        wait: Duration,
        render: &RenderFn,
        stop: Option<std::os::fd::BorrowedFd<'_>>,
    ) -> io::Result<bool> {
        let srv = crate::serve::Server {
            listener: &self.listener,
            active: &self.active,
            max: MAX_CLIENTS,
            name: ThreadName::MetricsClient,
        };
        let render = render.clone();
        crate::serve::accept_one(
            &srv,
            wait,
            stop,
            |l| l.accept().map(|(s, _)| s),
            move |stream| {
                if let Err(e) = serve_client(&stream, &*render) {
                    log::debug!("metrics client: {e}");
                }
            },
        )
    }
}

/// Read one request head (bounded in size and time), answer, close.
fn serve_client(stream: &TcpStream, render: &dyn Fn() -> String) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let mut r = stream;
    let head = loop {
        match parse_head(&buf) {
            Err(HeadError::Incomplete) => {}
            done => break done,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break Err(HeadError::Incomplete);
        }
        stream.set_read_timeout(Some(left))?;
        let room = (MAX_REQUEST + 1 - buf.len()).min(chunk.len());
        match r.read(&mut chunk[..room]) {
            Ok(0) => return Ok(()), // closed before a whole head: nothing to answer
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Err(HeadError::Incomplete)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    let answer = Answer::for_head(&head, render);
    if answer.code != 200 {
        log::debug!("metrics: answered {} ({:?})", answer.code, head);
    }
    let mut w = stream;
    w.write_all(&answer.to_bytes())?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Take (a bounded amount of) what the client still sends, so closing
    // does not reset the connection before it has read the answer.
    let until = Instant::now() + DRAIN_TIME;
    let mut drained = 0usize;
    while drained < DRAIN_BYTES {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match r.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

/// After answering, unread request bytes are read and dropped for at most
/// this long / this many bytes before the connection is closed.
const DRAIN_TIME: Duration = Duration::from_millis(200);
const DRAIN_BYTES: usize = 64 * 1024;

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
