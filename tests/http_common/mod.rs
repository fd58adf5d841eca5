//! Shared set-up for the HTTP tests (controller_link, controller_hostile,
//! lab_server): port/network ids, a private temp dir, the reference
//! controller on 127.0.0.1 and an agent `Config` pointing at a controller.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use vdp_agent::api::config::Config;
use vdp_agent::lab::netns::TempDir;
use vdp_agent::lab::server::{LabServer, ServerOptions};

pub const P1: &str = "11111111-2222-3333-4444-555555555555";
pub const NET: &str = "aaaaaaaa-2222-3333-4444-555555555555";

/// A private temp dir `ct-<tag>-<pid>-<n>`, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(&format!("ct-{tag}")).expect("temp dir")
}

/// The reference controller (`lab::server::LabServer`) on a free port of
/// 127.0.0.1, with an optional state file and bearer token.
pub fn lab_server(state: Option<PathBuf>, token: Option<&str>) -> LabServer {
    LabServer::start(ServerOptions {
        listen: "127.0.0.1:0".into(),
        state,
        token: token.map(String::from),
    })
    .unwrap()
}

/// Agent config for the controller at `url`: request timeout `timeout_s`,
/// long-poll wait `wait_s`, state under `dir/state`.
pub fn agent_config(url: &str, dir: &Path, timeout_s: u64, wait_s: u64) -> Config {
    let mut c = Config::default();
    c.server.url = url.to_string();
    c.server.timeout_s = timeout_s;
    c.server.events_wait_s = wait_s;
    c.paths.state_dir = dir.join("state");
    c
}

/// Any HTTP call: (status, JSON body or Null); HTTP error statuses are
/// answers, not panics.
pub fn http(method: &str, url: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let req = ureq::request(method, url).timeout(std::time::Duration::from_secs(20));
    let r = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    };
    let code = resp.status();
    (code, resp.into_json().unwrap_or(serde_json::Value::Null))
}
