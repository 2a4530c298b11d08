//! Backup downloads: signed, expiring URLs and the streaming file response behind them.
//!
//! GetBackupDownloadUrl hands out URLs that plain `wget "URL"` / `curl -O URL` must fetch
//! without any credentials, so the URL itself is the credential: it carries an expiry and an
//! HMAC-SHA256 over (purpose, backup id, expiry) under a 32-byte key only crsd knows. Nothing
//! is stored per URL: verifying needs the key and the clock, so the links survive a restart
//! (while the key does) and cost nothing to hand out. Changing the key revokes them all.
//!
//! Shape: `{base}/download/{backup_id}.rdb?{token}`, so the last path segment is a sensible
//! file name for `curl -O` and `wget`, and the query is one opaque URL-safe token:
//! base64url-nopad( expiry (unix seconds, u64 big-endian) || HMAC-SHA256(key,
//! "crsd-download-v1\n" + backup_id + "\n" + expiry in decimal) ), 54 characters.
//! The context string keeps these MACs from ever being valid for another use of the key; the
//! expiry is the last, all-digit field, so no (id, expiry) pair can collide with another.
//! The MAC is checked with `Mac::verify_slice` (constant time) before the expiry is believed.
//!
//! [`serve_file`] is tower-http's `ServeFile` (single byte ranges, HEAD, conditional requests,
//! streaming in fixed-size chunks, never the whole file in memory) plus the headers a download
//! wants (`application/octet-stream`, `attachment`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::Sha256;
use std::path::Path;
use std::time::Duration;
use tower_http::services::ServeFile;

/// The route to mount [`serve_file`] behind (axum 0.8 path syntax).
pub const ROUTE: &str = "/download/{file}";

/// Domain separation: these MACs mean "this backup may be downloaded until then", nothing else.
const CONTEXT: &[u8] = b"crsd-download-v1\n";
const EXPIRY_LEN: usize = 8;
const MAC_LEN: usize = 32;
const TOKEN_LEN: usize = EXPIRY_LEN + MAC_LEN;

/// Backup ids are `[A-Za-z0-9-]` (checked by the backup store); anything else is escaped so a
/// URL can never be bent by an odd id.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// Read chunk of a download. tokio's `File` reads on the blocking pool, one pool hop per
/// chunk; tower-http's default 64 KiB chunks reached ~0.6-0.7x of nginx's `sendfile` on
/// loopback, 1 MiB chunks as fast as nginx (client-bound) at ~1.6x its CPU per byte, for
/// 1 MiB of memory per download in flight. (tokio caps one read at 2 MiB; larger chunks
/// measured no better.)
const CHUNK: usize = 1 << 20;

/// Why a download token was refused. All of them answer 403: the client learns nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("malformed download token")]
    Malformed,
    #[error("download token does not match")]
    BadSignature,
    #[error("download link expired")]
    Expired,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, "invalid or expired download link\n").into_response()
    }
}

/// Signs and checks download URLs.
#[derive(Clone)]
pub struct DownloadSigner {
    key: [u8; 32],
    ttl: Duration,
}

impl std::fmt::Debug for DownloadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownloadSigner")
            .field("key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl DownloadSigner {
    /// `key`: 32 random bytes kept secret by crsd; `ttl`: how long a URL works (the seed: 12 h).
    pub fn new(key: [u8; 32], ttl: Duration) -> DownloadSigner {
        DownloadSigner { key, ttl }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `{base}/download/{backup_id}.rdb?{token}`, valid until `now + ttl` (whole seconds).
    pub fn url(&self, base: &str, backup_id: &str, now: DateTime<Utc>) -> String {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expiry = u64::try_from(now.timestamp().saturating_add(ttl)).unwrap_or(0);
        let mut token = [0u8; TOKEN_LEN];
        token[..EXPIRY_LEN].copy_from_slice(&expiry.to_be_bytes());
        token[EXPIRY_LEN..].copy_from_slice(&self.mac(backup_id, expiry).finalize().into_bytes());
        format!(
            "{}/download/{}.rdb?{}",
            base.trim_end_matches('/'),
            utf8_percent_encode(backup_id, PATH_SEGMENT),
            URL_SAFE_NO_PAD.encode(token)
        )
    }

    /// Ok(()) iff `token` is well-formed, its MAC is this backup's (constant-time compare) and
    /// `now` is before its expiry.
    pub fn verify(&self, backup_id: &str, token: &str, now: DateTime<Utc>) -> Result<(), Denied> {
        // The engine refuses padding and non-zero trailing bits: one token per (id, expiry).
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| Denied::Malformed)?;
        if raw.len() != TOKEN_LEN {
            return Err(Denied::Malformed);
        }
        let (expiry, tag) = raw.split_at(EXPIRY_LEN);
        let mut be = [0u8; EXPIRY_LEN];
        be.copy_from_slice(expiry);
        let expiry = u64::from_be_bytes(be);
        self.mac(backup_id, expiry)
            .verify_slice(tag)
            .map_err(|_| Denied::BadSignature)?;
        match u64::try_from(now.timestamp()) {
            Ok(now) if now < expiry => Ok(()),
            _ => Err(Denied::Expired),
        }
    }

    fn mac(&self, backup_id: &str, expiry: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(CONTEXT);
        mac.update(backup_id.as_bytes());
        mac.update(b"\n");
        mac.update(expiry.to_string().as_bytes());
        mac
    }
}

/// The backup id in a download path's file name (`<backupId>.rdb`), if it is one.
pub fn backup_id_from_file_name(file_name: &str) -> Option<&str> {
    let id = file_name.strip_suffix(".rdb")?;
    let valid =
        (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then_some(id)
}

/// Streams `path` as the response to `req` (GET or HEAD; other methods get 405):
/// Content-Length, `Content-Type: application/octet-stream`,
/// `Content-Disposition: attachment; filename="<file_name>"`, `Accept-Ranges: bytes`; a single
/// `Range: bytes=a-b` / `a-` / `-n` gets 206 with Content-Range, an unsatisfiable one (or
/// several ranges) 416; a missing file 404. Reads in 1 MiB chunks, never the whole file.
pub async fn serve_file(path: &Path, file_name: &str, req: Request) -> Response {
    let mut res = match ServeFile::new(path)
        .with_buf_chunk_size(CHUNK)
        .try_call(req)
        .await
    {
        Ok(res) => res.map(Body::new),
        Err(e) => {
            tracing::error!(error = %e, path = %path.display(), "download failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if res.status().is_success() {
        let disposition = format!("attachment; filename=\"{}\"", safe_file_name(file_name));
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            headers.insert(header::CONTENT_DISPOSITION, value);
        }
        // Customer data behind a bearer URL: no shared cache may keep a copy.
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-store"),
        );
    }
    res
}

/// A file name that fits a quoted-string and no shell or path surprises: `[A-Za-z0-9._-]`,
/// anything else becomes `_`.
fn safe_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.trim_matches('.').is_empty() {
        "download".to_string()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(backup_id_from_file_name("b-1a.rdb"), Some("b-1a"));
        for bad in ["b-1", ".rdb", "../x.rdb", "a.b.rdb", "a b.rdb"] {
            assert_eq!(backup_id_from_file_name(bad), None, "{bad}");
        }
        assert_eq!(safe_file_name("b-1.rdb"), "b-1.rdb");
        assert_eq!(safe_file_name("a\"b\\c\r\n.rdb"), "a_b_c__.rdb");
        assert_eq!(safe_file_name(".."), "download");
        assert_eq!(safe_file_name(""), "download");
    }

    #[test]
    fn debug_hides_the_key() {
        let s = DownloadSigner::new([7; 32], Duration::from_secs(1));
        assert!(!format!("{s:?}").contains('7'));
    }
}
