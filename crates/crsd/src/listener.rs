//! The HTTP(S) listener: an accept loop that bounds what strangers can hold.
//!
//! Anyone who reaches the port can open connections and send nothing, or half a request head,
//! before any signature is checked. So:
//!
//! * at most `max_connections` connections are open at once (a permit per connection, held
//!   until it closes); past that crsd stops accepting and new clients wait in the kernel's
//!   backlog, and the descriptors below the open-file limit stay free for the supervisor,
//!   the store and redis admin connections (see `fd_limit`);
//! * a request head (and the TLS handshake before the first one) must arrive within
//!   `header_timeout`, which also closes idle keep-alive connections;
//! * a head may be at most `max_head_bytes`: longer ones get hyper's bare 431 (and a request
//!   target over 65,534 bytes its bare 414) before any handler runs. Shorter ones reach the
//!   API, whose gate answers an over-long query in the dialect's shape (`crsd_api::gate`,
//!   which also bounds bodies).
//!
//! HTTP/1.1 only (TLS offers ALPN `http/1.1`): every client of the three dialects speaks it,
//! and the limits above are HTTP/1's. Shutdown stops accepting, lets every connection finish
//! its request for up to the grace period, then drops what is left.

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Bounds on connections and request heads.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub max_head_bytes: usize,
}

/// The running accept loop.
pub struct Listener {
    stop: watch::Sender<Option<Duration>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Listener {
    /// Stops accepting, drains for up to `grace`, then closes what is still open.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(Some(grace));
        let _ = self.task.await;
    }

    /// The accept loop's task (ends only on shutdown, or with an error).
    pub fn task(&mut self) -> &mut JoinHandle<std::io::Result<()>> {
        &mut self.task
    }
}

/// A TLS acceptor for a PEM certificate chain and key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    // One crypto provider for the process, named: when another crate in the build enables a
    // second rustls backend, rustls cannot pick one by itself and panics. Err means one is
    // installed already (a second server in this process).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("loading TLS certificate {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("loading TLS key {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` on `listener` (non-blocking) until shut down.
pub fn spawn(
    listener: std::net::TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
) -> std::io::Result<Listener> {
    let listener = TcpListener::from_std(listener)?;
    let (stop, stopped) = watch::channel(None);
    let task = tokio::spawn(accept_loop(listener, tls, app, limits, stopped));
    Ok(Listener { stop, task })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stopped: watch::Receiver<Option<Duration>>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_head_bytes)
        .keep_alive(true);
    let http = Arc::new(http);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut conns = JoinSet::new();
    let mut full_logged = false;
    loop {
        while conns.try_join_next().is_some() {}
        if slots.available_permits() == 0 && !full_logged {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection limit reached; new connections wait until one closes"
            );
        }
        full_logged = slots.available_permits() == 0;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopped.changed() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
            _ = stopped.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        // Taken before the task starts: a shutdown from now on reaches this connection too.
        let watcher = graceful.watcher();
        let (http, app, tls) = (http.clone(), app.clone(), tls.clone());
        let header_timeout = limits.header_timeout;
        conns.spawn(async move {
            let _slot = slot;
            let service = TowerToHyperService::new(app);
            let result = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    let Ok(Ok(stream)) =
                        tokio::time::timeout(header_timeout, tls.accept(stream)).await
                    else {
                        return;
                    };
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Closing the socket refuses new connections at once rather than queueing them.
    drop(listener);
    let grace = stopped.borrow().unwrap_or_default();
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = conns.len(),
            "connections still open after the grace period; closing them"
        );
    }
    conns.shutdown().await;
    Ok(())
}

/// An accept that failed leaves the listener usable; out of descriptors, wait a moment for
/// one to close rather than spin.
async fn accept_failed(e: &std::io::Error) {
    match e.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            tracing::warn!(error = %e, "cannot accept a connection; retrying shortly");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        _ => tracing::debug!(error = %e, "accept failed"),
    }
}
