//! TLS 1.3 on TCP (`/tls/1.0.0`, the libp2p TLS handshake) and inside QUIC ([`crate::quic`])
//! with p2pd's own rustls configuration around libp2p-tls's certificate code.
//!
//! libp2p-tls builds its configuration with ChaCha20-Poly1305 preferred and a key log that
//! writes every session secret to the file named by `SSLKEYLOGFILE`. Here the certificate
//! (generation, parsing, the self-signature and the libp2p extension binding it to the host key,
//! the handshake signature) is still libp2p-tls's; what changes is the rustls configuration:
//! AES-GCM is preferred where the CPU has AES instructions (a fraction of ChaCha20's cost there),
//! no key log exists, and no session is resumed (no tickets issued, stored or offered). The
//! wire protocol is the same, so any libp2p peer interoperates.

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::identity::Keypair;
use libp2p::tls::certificate;
use libp2p::PeerId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::sync::Arc;

pub use futures_rustls::TlsStream;

const PROTOCOL: &str = "/tls/1.0.0";
const ALPN: &[u8] = b"libp2p";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Certificate(#[from] certificate::GenError),
    #[error("configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("handshake: {0}")]
    Handshake(#[source] std::io::Error),
    #[error("the peer's certificate: {0}")]
    BadCertificate(#[from] certificate::ParseError),
}

/// Whether this CPU encrypts AES-GCM in hardware (AES and carry-less multiply instructions).
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// aws-lc-rs with TLS 1.3 suites only, the cheapest first on this CPU. The client's order
/// decides (rustls servers follow it), so each side's own preference is what it offers.
fn provider() -> CryptoProvider {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let mut p = aws_lc_rs::default_provider();
    p.cipher_suites = if aes_in_hardware() {
        vec![
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
            TLS13_CHACHA20_POLY1305_SHA256,
        ]
    } else {
        vec![
            TLS13_CHACHA20_POLY1305_SHA256,
            TLS13_AES_128_GCM_SHA256,
            TLS13_AES_256_GCM_SHA384,
        ]
    };
    p
}

/// The libp2p rules for the peer's certificate chain: exactly one certificate, self-signed, with
/// a valid libp2p extension (all checked by [`certificate::parse`]), and when dialing a known
/// peer, that peer's id. Also the handshake signature against that certificate, TLS 1.3 only.
#[derive(Debug)]
struct Verifier {
    schemes: Vec<SignatureScheme>,
}

impl Verifier {
    fn new() -> Self {
        Verifier {
            // Elliptic curves first; RSA only for peers that have nothing else.
            schemes: vec![
                SignatureScheme::ECDSA_NISTP384_SHA384,
                SignatureScheme::ECDSA_NISTP256_SHA256,
                SignatureScheme::ED25519,
                SignatureScheme::RSA_PSS_SHA512,
                SignatureScheme::RSA_PSS_SHA384,
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PKCS1_SHA512,
                SignatureScheme::RSA_PKCS1_SHA384,
                SignatureScheme::RSA_PKCS1_SHA256,
            ],
        }
    }

    fn chain(
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
    ) -> Result<(), rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::General(
                "libp2p TLS requires exactly one certificate".into(),
            ));
        }
        certificate::parse(end_entity)?;
        Ok(())
    }

    fn tls13(
        message: &[u8],
        cert: &CertificateDer,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        certificate::parse(cert)?.verify_signature(dss.scheme, message, dss.signature())?;
        Ok(HandshakeSignatureValid::assertion())
    }

    fn tls12() -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }
}

/// The handshake-signature half, the same for both roles.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Self::tls12()
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Self::tls13(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.schemes.clone()
        }
    };
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _: &ServerName,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The dialed peer's id is checked by the swarm against the id the upgrade returns.
        Self::chain(end_entity, intermediates)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer,
        intermediates: &[CertificateDer],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::chain(end_entity, intermediates)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Presents our one certificate whatever the peer hints. (rustls's own single-certificate
/// helpers check the certificate with webpki, which refuses the libp2p extension.)
#[derive(Debug)]
struct OurCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for OurCertificate {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for OurCertificate {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The TLS side of the TCP security upgrade.
#[derive(Clone)]
pub struct Config {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
}

impl Config {
    /// The rustls configurations, for QUIC ([`crate::quic`]).
    pub fn rustls(&self) -> (Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>) {
        (self.client.clone(), self.server.clone())
    }

    pub fn new(key: &Keypair) -> Result<Self, TlsError> {
        let (cert, cert_key) = certificate::generate(key)?;
        let ours = Arc::new(OurCertificate(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert],
            aws_lc_rs::sign::any_ecdsa_type(&cert_key)?,
        ))));
        let provider = Arc::new(provider());
        let verifier = Arc::new(Verifier::new());
        let mut client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_client_cert_resolver(ours.clone());
        client.alpn_protocols = vec![ALPN.to_vec()];
        // No session resumption: every libp2p server has the same (empty) name, so a cached
        // ticket from one peer would be offered to the next one, linking the two, for nothing.
        client.resumption = rustls::client::Resumption::disabled();
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(ours);
        server.alpn_protocols = vec![ALPN.to_vec()];
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Config {
            client: Arc::new(client),
            server: Arc::new(server),
        })
    }
}

/// The peer id in the (already verified) certificate the peer presented.
fn peer_of<C>(stream: &TlsStream<C>) -> Result<PeerId, TlsError> {
    let (_, state) = stream.get_ref();
    match state.peer_certificates() {
        Some([cert]) => Ok(certificate::parse(cert)?.peer_id()),
        _ => Err(TlsError::Handshake(std::io::Error::other(
            "the peer presented no single certificate",
        ))),
    }
}

impl UpgradeInfo for Config {
    type Info = &'static str;
    type InfoIter = std::iter::Once<&'static str>;

    fn protocol_info(&self) -> Self::InfoIter {
        std::iter::once(PROTOCOL)
    }
}

impl<C> InboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_inbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            let stream: TlsStream<C> = futures_rustls::TlsAcceptor::from(self.server)
                .accept(socket)
                .await
                .map_err(TlsError::Handshake)?
                .into();
            Ok((peer_of(&stream)?, stream))
        }
        .boxed()
    }
}

impl<C> OutboundConnectionUpgrade<C> for Config
where
    C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    type Output = (PeerId, TlsStream<C>);
    type Error = TlsError;
    type Future = BoxFuture<'static, Result<Self::Output, TlsError>>;

    fn upgrade_outbound(self, socket: C, _: Self::Info) -> Self::Future {
        async move {
            // The libp2p TLS spec: no server name indication (an unspecified IP sends none).
            let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
            let stream: TlsStream<C> = futures_rustls::TlsConnector::from(self.client)
                .connect(name, socket)
                .await
                .map_err(TlsError::Handshake)?
                .into();
            Ok((peer_of(&stream)?, stream))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::{AsyncReadExt, AsyncWriteExt};

    /// Both ends of an in-memory TLS handshake between two identities.
    async fn handshake(
        a: &Keypair,
        b: &Keypair,
    ) -> (
        Result<
            (
                PeerId,
                TlsStream<tokio_util::compat::Compat<tokio::io::DuplexStream>>,
            ),
            TlsError,
        >,
        Result<
            (
                PeerId,
                TlsStream<tokio_util::compat::Compat<tokio::io::DuplexStream>>,
            ),
            TlsError,
        >,
    ) {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let (x, y) = tokio::io::duplex(64 * 1024);
        let dial = Config::new(a)
            .unwrap()
            .upgrade_outbound(x.compat(), PROTOCOL);
        let listen = Config::new(b)
            .unwrap()
            .upgrade_inbound(y.compat(), PROTOCOL);
        futures::join!(dial, listen)
    }

    #[tokio::test]
    async fn both_sides_learn_the_other_and_the_cipher_is_the_cheap_one() {
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let (dialed, accepted) = handshake(&a, &b).await;
        let (pb, mut sa) = dialed.unwrap();
        let (pa, mut sb) = accepted.unwrap();
        assert_eq!(pb, b.public().to_peer_id());
        assert_eq!(pa, a.public().to_peer_id());
        let suite = sa.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        let want = if aes_in_hardware() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        } else {
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
        };
        assert_eq!(suite, want);
        sa.write_all(b"ping").await.unwrap();
        sa.flush().await.unwrap();
        let mut got = [0u8; 4];
        sb.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
    }

    /// Client authentication is mandatory: a dialer that presents no certificate (so no peer
    /// id) is refused by the listener, whatever else it gets right.
    #[tokio::test]
    async fn a_dialer_without_a_certificate_is_refused() {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let b = Keypair::generate_ed25519();
        let mut anonymous = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier::new()))
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![ALPN.to_vec()];
        let (x, y) = tokio::io::duplex(64 * 1024);
        let dial = async move {
            let name = ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into());
            let mut s = futures_rustls::TlsConnector::from(Arc::new(anonymous))
                .connect(name, x.compat())
                .await?;
            // TLS 1.3: the client learns of the refusal on its first read.
            let mut byte = [0u8; 1];
            s.read(&mut byte).await
        };
        let listen = Config::new(&b)
            .unwrap()
            .upgrade_inbound(y.compat(), PROTOCOL);
        let (dialed, accepted) = futures::join!(dial, listen);
        assert!(
            accepted.is_err(),
            "the listener accepted an anonymous dialer"
        );
        assert!(!matches!(dialed, Ok(1)), "the dialer got data");
    }

    #[tokio::test]
    async fn a_peer_with_libp2p_tls_own_configuration_interoperates() {
        use tokio_util::compat::TokioAsyncReadCompatExt;
        let a = Keypair::generate_ed25519();
        let b = Keypair::generate_ed25519();
        let (x, y) = tokio::io::duplex(64 * 1024);
        let dial = Config::new(&a)
            .unwrap()
            .upgrade_outbound(x.compat(), PROTOCOL);
        let theirs = libp2p::tls::Config::new(&b)
            .unwrap()
            .upgrade_inbound(y.compat(), PROTOCOL);
        let (ours, theirs) = futures::join!(dial, theirs);
        assert_eq!(ours.unwrap().0, b.public().to_peer_id());
        assert_eq!(theirs.unwrap().0, a.public().to_peer_id());
    }
}
