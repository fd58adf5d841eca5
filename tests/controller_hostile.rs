//! `controller::Controller` against hostile or broken controllers played by
//! raw `TcpListener`s on 127.0.0.1: silence, stalled bodies, malformed JSON,
//! wrong types, huge bodies, redirects. Every call must fail with an error
//! (bounded by the configured timeouts), keep results, and never panic.
//! Also an https round trip with a CA given by `server.ca_file` when the
//! `openssl` CLI is available.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vdp_agent::api::config::Config;
use vdp_agent::api::controller::Controller;
use vdp_agent::api::manager::link::{ControllerLink, LinkFailure};
use vdp_agent::api::model::VmResult;

mod http_common;

use http_common::{agent_config, temp_dir, P1};
use vdp_agent::lab::netns::TempDir;

/// What the raw server does with each request.
#[derive(Clone)]
enum Behaviour {
    /// Read the request, never answer (until the test ends).
    Silent,
    /// Write these bytes, then hold the connection open.
    WriteAndHold(Vec<u8>),
    /// Write these bytes and close.
    Write(Vec<u8>),
    /// Write a 200 header without length and `n` bytes of body, then close.
    Stream(usize),
}

/// A raw HTTP/1.1 peer; stops accepting on drop.
struct RawServer {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_request(s: &mut TcpStream) {
    let mut r = BufReader::new(s);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    let _ = r.read_exact(&mut body);
}

fn raw_server(b: Behaviour) -> RawServer {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in l.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut s) = s else { continue };
            read_request(&mut s);
            match &b {
                Behaviour::Silent => held.push(s),
                Behaviour::WriteAndHold(bytes) => {
                    let _ = s.write_all(bytes);
                    held.push(s);
                }
                Behaviour::Write(bytes) => {
                    let _ = s.write_all(bytes);
                }
                Behaviour::Stream(n) => {
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"result\": \"");
                    let chunk = vec![b'a'; 64 * 1024];
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(chunk.len());
                        if s.write_all(&chunk[..k]).is_err() {
                            break;
                        }
                        left -= k;
                    }
                    let _ = s.write_all(b"\"}");
                }
            }
        }
    });
    RawServer { addr, stop }
}

fn reply(status: &str, body: &str) -> Behaviour {
    Behaviour::Write(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

fn controller(url: &str, dir: &TempDir, timeout_s: u64, wait_s: u64) -> Controller {
    let c = agent_config(url, dir.path(), timeout_s, wait_s);
    Controller::new(&c, "compute1".into()).unwrap()
}

fn url(s: &RawServer) -> String {
    format!("http://{}", s.addr)
}

#[test]
fn silent_controller_is_bounded_by_timeouts() {
    let s = raw_server(Behaviour::Silent);
    let dir = temp_dir("silent");
    let c = controller(&url(&s), &dir, 1, 1);
    let t0 = Instant::now();
    let e = c.heartbeat().unwrap_err().to_string();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert!(e.starts_with("heartbeat:"), "{e}");
    // Handed over at once (the queue worker never waits for the
    // controller); the delivery attempt is bounded by the timeout and the
    // result stays kept.
    let t0 = Instant::now();
    c.update_vm_result(P1, VmResult::Success, Some(1), Some(2), None)
        .unwrap();
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(c.status().pending_results, 1);
    let t0 = Instant::now();
    assert_eq!(c.retry_pending(), 1);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(c.status().pending_results, 1);
    let t0 = Instant::now();
    assert!(c.poll_events(0).is_err());
    let el = t0.elapsed();
    assert!(el < Duration::from_secs(4), "events wait + timeout: {el:?}");
}

#[test]
fn stalled_body_is_bounded() {
    let s = raw_server(Behaviour::WriteAndHold(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"res".to_vec(),
    ));
    let dir = temp_dir("stall");
    let c = controller(&url(&s), &dir, 1, 0);
    let t0 = Instant::now();
    assert!(c.request_uplink_info().is_err());
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

#[test]
fn malformed_and_wrong_typed_answers_are_errors() {
    let dir = temp_dir("bad");
    for (status, body, what) in [
        ("200 OK", "not json at all", "not JSON"),
        ("200 OK", "[1,2]", "not a JSON object"),
        ("200 OK", "{\"res\": 1}", "no 'result'"),
        ("200 OK", "{\"result\": {\"uplink\": 7}}", "not a string"),
        ("200 OK", "{\"result\": [\"eth2\"]}", "not an object"),
        ("500 Internal Server Error", "{\"result\": {}}", "HTTP 500"),
        ("404 Not Found", "", "HTTP 404"),
        ("302 Found", "", "HTTP 302"),
    ] {
        let s = raw_server(reply(status, body));
        let c = controller(&url(&s), &dir, 2, 0);
        let err = c.request_uplink_info().unwrap_err();
        assert_eq!(err.method, "request_uplink_info");
        if let Some(code) = what.strip_prefix("HTTP ") {
            let code: u16 = code.parse().unwrap();
            assert!(
                matches!(err.failure, LinkFailure::Http { code: c, .. } if c == code),
                "{err:?}"
            );
        }
        let e = err.to_string();
        assert!(
            e.contains("request_uplink_info") && e.contains(what),
            "{body}: {e}"
        );
        assert!(c.status().last_error.unwrap().contains(what));
    }
    let s = raw_server(reply("200 OK", "{\"result\": \"garbage\"}"));
    let c = controller(&url(&s), &dir, 2, 0);
    assert!(
        !c.save_uplink("eth2", "v", None, "").unwrap(),
        "non-bool result is false"
    );
    assert!(c.heartbeat().is_ok(), "heartbeat result is ignored");
    // A redirect is a failure, and the result is kept, not lost.
    let s = raw_server(Behaviour::Write(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ));
    let c = controller(&url(&s), &dir, 2, 0);
    c.update_vm_result(P1, VmResult::Success, None, None, None)
        .unwrap();
    assert_eq!(c.retry_pending(), 1);
    assert!(c.status().last_error.unwrap().contains("307"));
    assert_eq!(c.status().pending_results, 1);
}

#[test]
fn malformed_event_envelopes_are_errors() {
    let dir = temp_dir("evbad");
    for body in [
        "{\"events\": 5}",
        "{\"events\": {\"seq\": 1}}",
        "{\"evts\": []}",
        "\"events\"",
        "{\"events\": [{\"seq\": -1, \"type\": \"vm_info\"}]}",
        "{\"events\": [{\"seq\": 1, \"type\": [\"vm_info\"]}]}",
        "{\"events\": [{\"seq\": 18446744073709551616, \"type\": \"x\"}]}",
        "{\"events\": [",
        "\u{0}\u{1}",
    ] {
        let s = raw_server(reply("200 OK", body));
        let c = controller(&url(&s), &dir, 2, 0);
        assert!(c.poll_events(0).is_err(), "{body}");
    }
    let s = raw_server(reply(
        "200 OK",
        "{\"events\": [{\"seq\": 4, \"type\": \"vm_info\", \"payload\": \"odd\"}, {\"seq\": 2, \"type\": \"uplink\"}], \"extra\": 1}",
    ));
    let c = controller(&url(&s), &dir, 2, 0);
    let evs = c.poll_events(2).unwrap();
    // A controller that does not hold the poll is reported (no spinning).
    let s2 = raw_server(reply("200 OK", "{\"events\": []}"));
    let c2 = controller(&url(&s2), &dir, 2, 5);
    let e = c2.poll_events(0).unwrap_err().to_string();
    assert!(e.contains("did not hold"), "{e}");
    assert_eq!(evs.len(), 1, "seq <= after is skipped");
    assert_eq!(evs[0].payload, Value::String("odd".into()));
}

#[test]
fn huge_bodies_are_refused() {
    let dir = temp_dir("huge");
    // Declared too large.
    let s = raw_server(Behaviour::WriteAndHold(
        b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n{".to_vec(),
    ));
    let c = controller(&url(&s), &dir, 5, 0);
    let t0 = Instant::now();
    let e = c.heartbeat().unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    // Streamed without a length, 20 MiB.
    let s = raw_server(Behaviour::Stream(20 * 1024 * 1024));
    let c = controller(&url(&s), &dir, 10, 0);
    let e = c.poll_events(0).unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
    let e = c.heartbeat().unwrap_err().to_string();
    assert!(e.contains("exceeds"), "{e}");
    // Just under the limit is fine (1 MiB string result).
    let s = raw_server(Behaviour::Stream(1024 * 1024));
    let c = controller(&url(&s), &dir, 10, 0);
    c.heartbeat().unwrap();
}

#[test]
fn dead_controller_fails_fast_and_keeps_results() {
    // Bind then drop: nothing listens on that port.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = temp_dir("dead");
    let c = controller(&format!("http://{addr}"), &dir, 2, 5);
    let e = c.heartbeat().unwrap_err().to_string();
    assert!(e.contains("heartbeat") && e.contains("transport"), "{e}");
    assert!(c.poll_events(0).is_err());
    c.save_uplink("eth2", "LLDPLeth2", None, "").unwrap_err();
    assert_eq!(c.status().pending_results, 1);
    assert!(c.status().last_ok.is_none());
}

#[test]
fn https_with_extra_ca() {
    let dir = temp_dir("tls");
    let key = dir.path().join("key.pem");
    let cert = dir.path().join("cert.pem");
    let ca = dir.path().join("ca.pem");
    let ext = dir.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let steps: Vec<Vec<String>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-days", "1", "-subj", "/CN=ct-test-ca"][..],
        ]
        .concat()
        .iter()
        .map(|s| s.to_string())
        .chain([
            "-keyout".into(),
            format!("{d}/ca.key"),
            "-out".into(),
            format!("{d}/ca.pem"),
        ])
        .collect(),
        [&["req"][..], &ec[..], &["-subj", "/CN=localhost"][..]]
            .concat()
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-keyout".into(),
                format!("{d}/key.pem"),
                "-out".into(),
                format!("{d}/srv.csr"),
            ])
            .collect(),
        ["x509", "-req", "-days", "1", "-CAcreateserial"]
            .iter()
            .map(|s| s.to_string())
            .chain([
                "-in".into(),
                format!("{d}/srv.csr"),
                "-CA".into(),
                format!("{d}/ca.pem"),
                "-CAkey".into(),
                format!("{d}/ca.key"),
                "-extfile".into(),
                format!("{d}/ext.cnf"),
                "-out".into(),
                format!("{d}/cert.pem"),
            ])
            .collect(),
    ];
    for argv in steps {
        match std::process::Command::new("openssl").args(&argv).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "skipping https test: openssl {argv:?} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return;
            }
            Err(e) => {
                eprintln!("skipping https test: no openssl CLI ({e})");
                return;
            }
        }
    }
    let certs: Vec<_> = rustls_pemfile::certs(&mut &std::fs::read(&cert).unwrap()[..])
        .collect::<Result<_, _>>()
        .unwrap();
    let pkey = rustls_pemfile::private_key(&mut &std::fs::read(&key).unwrap()[..])
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let scfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, pkey)
            .unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming().take(2) {
            let Ok(tcp) = s else { continue };
            let conn = rustls::ServerConnection::new(scfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut b) {
                    Ok(1) => head.push(b[0]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            let _ = tls.read_exact(&mut body);
            seen2
                .lock()
                .unwrap()
                .push(format!("{}{}", head, String::from_utf8_lossy(&body)));
            let out = "{\"result\": null}";
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                out.len()
            );
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    let mut cfg = Config::default();
    cfg.server.url = format!("https://127.0.0.1:{}", addr.port());
    cfg.server.timeout_s = 5;
    cfg.paths.state_dir = dir.path().join("state");
    // Without the CA the certificate is refused.
    let c = Controller::new(&cfg, "compute1".into()).unwrap();
    let e = c.heartbeat().unwrap_err().to_string();
    assert!(e.contains("heartbeat"), "{e}");
    cfg.server.ca_file = Some(ca.clone());
    let c = Controller::new(&cfg, "compute1".into()).unwrap();
    c.heartbeat().unwrap();
    let seen = seen.lock().unwrap();
    let last = seen.last().unwrap();
    assert!(
        last.starts_with("POST /v1/rpc/heartbeat HTTP/1.1"),
        "{last}"
    );
    assert!(last.contains("\"agent\":\"compute1\""), "{last}");
    // A CA file with no certificate is a configuration error.
    std::fs::write(&key, "nothing here").unwrap();
    cfg.server.ca_file = Some(key);
    let e = Controller::new(&cfg, "compute1".into()).err().unwrap();
    assert!(e.to_string().contains("ca_file"), "{e}");
}
