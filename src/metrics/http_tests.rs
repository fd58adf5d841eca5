use super::*;
use proptest::prelude::*;

fn serve_in_background(
    server: MetricsServer,
    stop: crate::shutdown::Shutdown,
) -> std::thread::JoinHandle<()> {
    let render: RenderFn = Arc::new(|| "# HELP x X.\n# TYPE x gauge\nx 1\n".to_string());
    std::thread::spawn(move || {
        while !stop.is_set() {
            server
                .serve_one(Duration::from_millis(50), &render)
                .expect("serve");
        }
    })
}

struct Running {
    addr: SocketAddr,
    stop: crate::shutdown::Shutdown,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start() -> Running {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = crate::shutdown::Shutdown::new();
        let thread = Some(serve_in_background(server, stop.clone()));
        Running { addr, stop, thread }
    }

    /// Send `req`, read the whole answer (the server closes).
    fn exchange(&self, req: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(req).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.trigger();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn answers_get_metrics_and_refuses_the_rest() {
    let srv = Running::start();
    let a = srv.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n");
    assert_eq!(status_line(&a), "HTTP/1.1 200 OK", "{a}");
    assert!(
        a.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
        "{a}"
    );
    assert!(a.contains("\r\nConnection: close\r\n"), "{a}");
    assert!(
        a.ends_with("\r\n\r\n# HELP x X.\n# TYPE x gauge\nx 1\n"),
        "{a}"
    );
    let len = a
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap();
    assert_eq!(len.trim(), "31");
    // Query string and HTTP/1.0, bare LF line ends.
    let a = srv.exchange(b"GET /metrics?x=1 HTTP/1.0\n\n");
    assert_eq!(status_line(&a), "HTTP/1.1 200 OK", "{a}");

    for (req, want) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (b"GET /metricsx HTTP/1.1\r\n\r\n", "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (
            b"HEAD /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"hello\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
        ),
        (b"\x00\xff\xfe GET\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        let a = srv.exchange(req);
        assert_eq!(status_line(&a), want, "{}", String::from_utf8_lossy(req));
        assert!(!a.contains("# TYPE"), "{a}");
    }
    let a = srv.exchange(b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(a.contains("\r\nAllow: GET\r\n"), "{a}");
}

#[test]
fn oversize_request_is_refused() {
    let srv = Running::start();
    let mut req = b"GET /metrics HTTP/1.1\r\n".to_vec();
    while req.len() < 3 * MAX_REQUEST {
        req.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let a = srv.exchange(&req);
    assert_eq!(
        status_line(&a),
        "HTTP/1.1 431 Request Header Fields Too Large",
        "{a}"
    );
    // A request line longer than the bound, never ended.
    let mut req = b"GET /".to_vec();
    req.extend(std::iter::repeat_n(b'a', 2 * MAX_REQUEST));
    let a = srv.exchange(&req);
    assert_eq!(
        status_line(&a),
        "HTTP/1.1 431 Request Header Fields Too Large",
        "{a}"
    );
}

/// Clients that connect and dribble or say nothing hold nobody: while they
/// are connected a real scrape is answered, and each of them is answered
/// 408 and closed once its deadline passed (the client side waits at most
/// 20 s, no time figure is asserted).
#[test]
fn slow_clients_are_bounded() {
    let srv = Running::start();
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    slow[0].write_all(b"GET /met").unwrap();
    let a = srv.exchange(b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status_line(&a), "HTTP/1.1 200 OK", "{a}");
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let out = String::from_utf8_lossy(&out);
        assert_eq!(status_line(&out), "HTTP/1.1 408 Request Timeout", "{out}");
    }
    // A client that goes away mid-request costs nothing either.
    drop(TcpStream::connect(srv.addr).unwrap());
    let a = srv.exchange(b"GET /metrics HTTP/1.1\r\n\r\n");
    assert_eq!(status_line(&a), "HTTP/1.1 200 OK", "{a}");
}

#[test]
fn more_clients_than_the_bound_are_closed() {
    let srv = Running::start();
    let idle: Vec<TcpStream> = (0..MAX_CLIENTS)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    // Once the server has taken them all, a further connection is closed
    // without an answer (polled: the server takes connections in turn).
    let mut ok = false;
    for _ in 0..200 {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if out.is_empty() {
            ok = true;
            break;
        }
        let _ = crossbeam_channel::after(Duration::from_millis(20)).recv();
    }
    assert!(ok, "a connection beyond {MAX_CLIENTS} was served");
    drop(idle);
}

#[test]
fn heads() {
    assert_eq!(
        parse_head(b"GET /metrics?a=b HTTP/1.1\r\nHost: h\r\n\r\n"),
        Ok(Head {
            method: "GET".into(),
            path: "/metrics".into()
        })
    );
    assert_eq!(
        parse_head(b"GET /metrics HTTP/1.1\r\n"),
        Err(HeadError::Incomplete)
    );
    assert_eq!(parse_head(b""), Err(HeadError::Incomplete));
    assert!(matches!(
        parse_head(b"GET  /metrics HTTP/1.1\r\n\r\n"),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        parse_head(b"G(T /metrics HTTP/1.1\r\n\r\n"),
        Err(HeadError::Bad(_))
    ));
    assert!(matches!(
        parse_head(b"GET /m HTTP/1.1\r\n: x\r\n\r\n"),
        Err(HeadError::Bad(_))
    ));
    let mut long = b"GET /".to_vec();
    long.extend(std::iter::repeat_n(b'a', MAX_REQUEST));
    long.extend_from_slice(b" HTTP/1.1\r\n\r\n");
    assert_eq!(parse_head(&long), Err(HeadError::TooLarge));
}

fn answer_of(bytes: &[u8]) -> u16 {
    Answer::for_head(&parse_head(bytes), &|| String::new()).code
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Arbitrary bytes: no panic, and an answer from the known set.
    #[test]
    fn any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let code = answer_of(&bytes);
        prop_assert!([200, 400, 404, 405, 408, 431].contains(&code));
        let ended_within = head_end(&bytes).is_some_and(|e| e <= MAX_REQUEST);
        if bytes.len() >= MAX_REQUEST && !ended_within {
            prop_assert_eq!(code, 431);
        }
    }

    /// A well-formed head parses to its method and path, whatever headers
    /// follow; every strict prefix of it is incomplete (or already bad).
    #[test]
    fn well_formed(
        method in "[A-Z]{1,10}",
        path in "/[a-zA-Z0-9/._-]{0,40}",
        query in proptest::option::of("[a-z0-9=&]{0,20}"),
        headers in proptest::collection::vec(("[A-Za-z-]{1,20}", "[ -~]{0,40}"), 0..8),
        crlf in any::<bool>(),
    ) {
        let eol = if crlf { "\r\n" } else { "\n" };
        let target = match &query { Some(q) => format!("{path}?{q}"), None => path.clone() };
        let mut req = format!("{method} {target} HTTP/1.1{eol}");
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}{eol}"));
        }
        req.push_str(eol);
        let bytes = req.as_bytes();
        let head = parse_head(bytes);
        prop_assert_eq!(head.clone(), Ok(Head { method: method.clone(), path: path.clone() }));
        for cut in 0..bytes.len() {
            let p = parse_head(&bytes[..cut]);
            prop_assert!(matches!(p, Err(HeadError::Incomplete)) || p == head, "{:?} at {}", p, cut);
        }
        let code = answer_of(bytes);
        let want = if path != "/metrics" { 404 } else if method != "GET" { 405 } else { 200 };
        prop_assert_eq!(code, want);
    }
}
