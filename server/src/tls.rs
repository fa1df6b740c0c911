//! TLS for both ports, with rustls: the certificate and key from
//! `tls_cert` / `tls_key`, loaded once at start-up.
//!
//! The Postgres port negotiates TLS the Postgres way (an SSLRequest, then
//! the handshake; pgwire does this given an acceptor). The HTTP port is
//! HTTPS-only when configured: [`TlsListener`] hands axum connections whose
//! handshake is done. Handshakes run in tasks of their own, so a client
//! that never finishes one cannot hold up the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pgwire::tokio::tokio_rustls::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider;
use pgwire::tokio::tokio_rustls::server::TlsStream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::debug;

use crate::config::TlsFiles;

/// How long a client may take over its TLS handshake on the HTTP port.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptors for both ports.
#[derive(Clone)]
pub struct Tls {
    /// For the Postgres port (ALPN `postgresql`, for direct TLS).
    pub pg: TlsAcceptor,
    /// For the HTTP port (ALPN `http/1.1`).
    pub http: TlsAcceptor,
    /// The certificate chain as PEM (for SCRAM channel binding).
    pub cert_pem: Vec<u8>,
}

impl Tls {
    /// Load the certificate chain and key named in `files`.
    pub fn load(files: &TlsFiles) -> anyhow::Result<Self> {
        let cert_pem = std::fs::read(&files.cert)
            .with_context(|| format!("could not read tls_cert {}", files.cert.display()))?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| {
                format!("tls_cert {} is not PEM certificates", files.cert.display())
            })?;
        anyhow::ensure!(
            !chain.is_empty(),
            "tls_cert {} holds no certificate",
            files.cert.display()
        );
        let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
            format!(
                "could not read a PEM private key from tls_key {}",
                files.key.display()
            )
        })?;
        let config = |alpn: &[u8]| -> anyhow::Result<TlsAcceptor> {
            let mut config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .context("tls_cert and tls_key do not make a usable certificate")?;
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        Ok(Self {
            pg: config(b"postgresql")?,
            http: config(b"http/1.1")?,
            cert_pem,
        })
    }
}

/// An HTTPS listener for axum: accepts TCP connections, runs each TLS
/// handshake in its own task, and yields the connections that completed one.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Serve TLS on `listener` with `acceptor`.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let accepting = tokio::spawn(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        debug!(%err, "could not accept an HTTPS connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(err)) => debug!(%peer, %err, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local_addr,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accepting task ended (it only does when aborted): wait for
            // the server to be dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}
