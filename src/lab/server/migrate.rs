//! The reference controller's live-migration admin routes
//! (`/admin/ports/{uuid}/migrate...`, `/admin/migrations`) and the timer
//! that makes an automatic migration's switchover at the latest `wait_s`
//! after `arriving` (one `lab-migrate` thread per automatic migration,
//! woken by the server's condvar, ending at the switchover or at shutdown).
//!
//! Owns the migration HTTP handling. Calls `store::Store`'s migration steps.

use super::*;
use store::{MigrateRequest, DEFAULT_MIGRATION_WAIT_S, MAX_MIGRATION_WAIT_S};

fn flag(body: &Value, k: &str) -> Result<bool, Reply> {
    match body.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(err(400, format!("'{k}' must be a boolean"))),
    }
}

fn request(body: &Value) -> Result<MigrateRequest, Reply> {
    let to = body
        .get("to")
        .and_then(Value::as_str)
        .ok_or_else(|| err(400, "'to' (string) is required"))?;
    let wait_s = match body.get("wait_s") {
        None | Some(Value::Null) => DEFAULT_MIGRATION_WAIT_S,
        Some(v) => v
            .as_u64()
            .filter(|s| *s <= MAX_MIGRATION_WAIT_S)
            .ok_or_else(|| err(400, format!("'wait_s' must be 0..{MAX_MIGRATION_WAIT_S}")))?,
    };
    Ok(MigrateRequest {
        to: to.to_string(),
        abort: flag(body, "abort")?,
        manual: flag(body, "manual")?,
        wait_s,
    })
}

/// `/admin/ports/{uuid}/migrate[/...]` (`rest` after `migrate`).
pub(super) fn route(
    shared: &Arc<Shared>,
    method: &str,
    uuid: &str,
    rest: &[&str],
    q: &[(String, String)],
    body: &Value,
) -> Reply {
    if let ("GET", ["wait"]) = (method, rest) {
        return wait(shared, uuid, q);
    }
    let reply = {
        let mut st = shared.st.lock();
        let done = |r: Result<store::Migration, store::MigrateError>| match r {
            Ok(m) => (200, json!({"migration": to_json(&m)})),
            Err((code, e)) => err(code, e),
        };
        match (method, rest) {
            ("GET", []) => match st.migration(uuid) {
                Some(m) => (200, to_json(m)),
                None => err(404, "no migration of this port"),
            },
            ("POST", []) => match request(body) {
                Ok(req) => {
                    let r = st.start_migration(uuid, &req);
                    if let Ok(m) = &r {
                        if !m.manual {
                            spawn_timer(shared, uuid, m.id, m.wait_s);
                        }
                    }
                    done(r)
                }
                Err(r) => r,
            },
            ("POST", ["switchover"]) => done(st.finish_migration(uuid, None, Some(false))),
            ("POST", ["abort"]) => done(st.finish_migration(uuid, None, Some(true))),
            _ => err(404, "no such admin endpoint"),
        }
    };
    shared.cv.notify_all();
    reply
}

/// `GET /admin/migrations`.
pub(super) fn list(st: &Store) -> Reply {
    (200, json!({"migrations": to_json(st.migrations())}))
}

fn spawn_timer(shared: &Arc<Shared>, uuid: &str, id: u64, wait_s: u64) {
    let (s, port) = (shared.clone(), uuid.to_string());
    let spawned = std::thread::Builder::new()
        .name("lab-migrate".into())
        .spawn(move || {
            let uuid = port;
            let deadline = Instant::now() + Duration::from_secs(wait_s);
            let mut st = s.st.lock();
            loop {
                let current = st
                    .migration(&uuid)
                    .is_some_and(|m| m.id == id && m.phase == "arriving");
                if !current || s.stopping.load(Ordering::SeqCst) {
                    return;
                }
                if s.cv.wait_until(&mut st, deadline).timed_out() {
                    break;
                }
            }
            match st.finish_migration(&uuid, Some(id), None) {
                Ok(m) => log::info!(
                    "migration of {uuid}: no report from {} within {wait_s} s: {}",
                    m.to,
                    m.phase
                ),
                Err((_, e)) => log::debug!("migration of {uuid}: {e}"),
            }
            s.cv.notify_all();
            drop(st);
            s.persist();
        });
    if let Err(e) = spawned {
        log::error!("cannot spawn the migration timer of {uuid}: {e}");
    }
}

/// `GET .../migrate/wait?until=ready|done&timeout=S`: holds until the
/// destination reported (`ready`; or the migration is over) or the
/// migration is over (`done`, default), at most S seconds (default 30).
fn wait(shared: &Shared, uuid: &str, q: &[(String, String)]) -> Reply {
    let ready = match qget(q, "until") {
        None | Some("") | Some("done") => false,
        Some("ready") => true,
        Some(x) => return err(400, format!("until={x}: expected ready or done")),
    };
    let timeout = qget(q, "timeout")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(30)
        .min(600);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut st = shared.st.lock();
    loop {
        let Some(m) = st.migration(uuid) else {
            return err(404, "no migration of this port");
        };
        let matched = m.phase != "arriving" || (ready && m.dest_report.is_some());
        if matched
            || shared.stopping.load(Ordering::SeqCst)
            || shared.cv.wait_until(&mut st, deadline).timed_out()
        {
            let m = st.migration(uuid).cloned();
            let matched = m
                .as_ref()
                .is_some_and(|m| m.phase != "arriving" || (ready && m.dest_report.is_some()));
            return (200, json!({"matched": matched, "migration": to_json(&m)}));
        }
    }
}
