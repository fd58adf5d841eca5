//! Start-up checks of the controller link (`preflight`, also run by
//! `--check-config`): the URL, the token file, the CA file.
//!
//! Owns nothing. Calls the file system, rustls and rustls-native-certs
//! (the system trust store).

use super::*;

/// Largest token file read.
pub(super) const MAX_TOKEN_BYTES: u64 = 64 * 1024;

pub(super) fn read_token(path: &PathBuf) -> Result<String, ControllerError> {
    let err = |msg: String| ControllerError::TokenFile {
        path: path.clone(),
        msg,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| err(e.to_string()))?;
    if text.len() as u64 > MAX_TOKEN_BYTES {
        return Err(err(format!("larger than {MAX_TOKEN_BYTES} bytes")));
    }
    let t = text.trim();
    if t.is_empty() {
        return Err(ControllerError::TokenFile {
            path: path.clone(),
            msg: "file is empty".into(),
        });
    }
    if t.chars().any(|c| c.is_control() || c == ' ') {
        return Err(ControllerError::TokenFile {
            path: path.clone(),
            msg: "token holds spaces or control characters".into(),
        });
    }
    Ok(t.to_string())
}

/// rustls client config trusting the system store (the distribution's CA
/// bundle as `update-ca-certificates` / `update-ca-trust` leave it, found
/// the way OpenSSL finds it; `SSL_CERT_FILE`/`SSL_CERT_DIR` override) plus
/// every certificate of `ca_file`. Only when the system store yields no
/// certificate at all (no ca-certificates package) the built-in Mozilla
/// roots stand in for it, so such a host still reaches a public CA.
pub(super) fn tls_config(
    ca_file: Option<&PathBuf>,
) -> Result<Arc<rustls::ClientConfig>, ControllerError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if roots.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(ca_file) = ca_file {
        add_ca_file(&mut roots, ca_file)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Every certificate of a PEM file into `roots` (at least one).
fn add_ca_file(
    roots: &mut rustls::RootCertStore,
    ca_file: &PathBuf,
) -> Result<(), ControllerError> {
    let ca_err = |msg: String| ControllerError::CaFile {
        path: ca_file.clone(),
        msg,
    };
    let pem = std::fs::read(ca_file).map_err(|e| ca_err(e.to_string()))?;
    let mut added = 0;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| ca_err(format!("bad PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| ca_err(format!("bad certificate: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(ca_err("no certificate found".into()));
    }
    Ok(())
}

/// `server.url` as `scheme://HOST[:PORT][/PATH]`: a non-empty host without
/// spaces or `@`, a port 1..65535 when given.
pub(super) fn check_url(url: &str) -> Result<String, ControllerError> {
    let bad = |msg: &str| ControllerError::Url {
        url: url.to_string(),
        msg: msg.to_string(),
    };
    let base = url.trim_end_matches('/').to_string();
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("https://"))
        .ok_or_else(|| bad("must be http://HOST[:PORT] or https://..."))?;
    let authority = rest.split('/').next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        // [v6]:port or host:port (a bare [v6] has its ':' inside brackets).
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty()
        || host.len() > 253
        || host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@')
    {
        return Err(bad("has no valid host"));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(bad("port must be 1..65535"));
        }
    }
    Ok(base)
}

/// Every check `Controller::new` makes of the configuration, without side
/// effects (`--check-config` runs it): the URL, the token file, the CA file.
pub fn preflight(cfg: &Config) -> Result<(), ControllerError> {
    check_url(&cfg.server.url)?;
    if let Some(p) = &cfg.server.token_file {
        read_token(p)?;
    }
    if let Some(ca) = &cfg.server.ca_file {
        add_ca_file(&mut rustls::RootCertStore::empty(), ca)?;
    }
    Ok(())
}
