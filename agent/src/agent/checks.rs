//! The network halves of probes and hooks, over a connection the caller made: an HTTP/1.1 GET
//! (plain or over TLS that, as kubelet's, verifies nothing) and a `grpc.health.v1.Health/Check`
//! call over HTTP/2 (plaintext, as Kubernetes' grpc probes). Each returns (success, what a
//! failure said, in kubelet's words where it has them).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of a response a probe reads at most (kubelet reads 10 KiB).
const MAX_READ: usize = 10 * 1024;

/// An HTTP GET on `stream`: success for a status in 200..400. `url` names the request in
/// messages (`https://10.42.0.5:8443/healthz`).
pub async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    url: &str,
    host: &str,
    path: &str,
    headers: &[(String, String)],
) -> (bool, String) {
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/skiff\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return (false, format!("Get \"{url}\": {e}"));
    }
    // The status line is all a probe needs.
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") && buf.len() < MAX_READ {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return (false, format!("Get \"{url}\": {e}")),
        }
    }
    match status_code(&buf) {
        Some(code) if (200..400).contains(&code) => (true, String::new()),
        Some(code) => (false, format!("HTTP probe failed with statuscode: {code}")),
        None => (false, format!("Get \"{url}\": malformed HTTP response")),
    }
}

/// The status code of an HTTP/1.x response's first line.
pub fn status_code(response: &[u8]) -> Option<u16> {
    let line = response.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// Accepts any certificate, as kubelet's HTTPS probes do (signatures are still checked, so
/// the handshake itself is sound).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client of HTTPS probes and hooks (built once).
fn tls_connector() -> Result<tokio_rustls::TlsConnector, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS client: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Arc::new(config))
    });
    config.clone().map(tokio_rustls::TlsConnector::from)
}

/// TLS over `stream` to `host` (a name or an address; it is only sent as SNI for names).
pub async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<S>, String> {
    let bare = host
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(host, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| format!("TLS server name {bare:?}: {e}"))?;
    tls_connector()?
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// grpc.health.v1 `ServingStatus` names.
fn serving_status(status: u64) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "an unknown status",
    }
}

/// gRPC status code names, for messages.
fn grpc_code(code: &str) -> &str {
    match code {
        "1" => "Canceled",
        "2" => "Unknown",
        "3" => "InvalidArgument",
        "4" => "DeadlineExceeded",
        "5" => "NotFound",
        "7" => "PermissionDenied",
        "12" => "Unimplemented",
        "13" => "Internal",
        "14" => "Unavailable",
        "16" => "Unauthenticated",
        other => other,
    }
}

/// The body of a `HealthCheckRequest { service }` in a gRPC message frame.
pub fn health_request(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        let mut len = service.len();
        while len >= 0x80 {
            message.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        message.push(len as u8);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame
}

/// The `status` of a `HealthCheckResponse` in one uncompressed gRPC message frame; `None` if
/// the bytes are not one.
pub fn health_status(frame: &[u8]) -> Option<u64> {
    let (&compressed, rest) = frame.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut message = rest.get(4..4 + len)?;
    let mut status = 0;
    while let Some((&tag, rest)) = message.split_first() {
        let (value, used) = varint(rest)?;
        match (tag >> 3, tag & 7) {
            (1, 0) => {
                status = value;
                message = &rest[used..];
            }
            // Unknown varint fields are skipped; anything else is not expected here.
            (_, 0) => message = &rest[used..],
            (_, 2) => message = rest.get(used + value as usize..)?,
            _ => return None,
        }
    }
    Some(status)
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// `grpc.health.v1.Health/Check` for `service` over HTTP/2 on `stream`: success when the
/// answer is SERVING.
pub async fn grpc_health<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    authority: &str,
    service: &str,
) -> (bool, String) {
    let fail = |what: String| (false, format!("rpc error: {what}"));
    let (client, connection) = match h2::client::handshake(stream).await {
        Ok(pair) => pair,
        Err(e) => return fail(format!("HTTP/2 handshake: {e}")),
    };
    let call = async move {
        let mut client = client.ready().await.map_err(|e| e.to_string())?;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{authority}/grpc.health.v1.Health/Check"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("user-agent", "kube-probe/skiff")
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, mut send) = client
            .send_request(request, false)
            .map_err(|e| e.to_string())?;
        send.send_data(bytes::Bytes::from(health_request(service)), true)
            .map_err(|e| e.to_string())?;
        let response = response.await.map_err(|e| e.to_string())?;
        let (head, mut body) = response.into_parts();
        let mut data = Vec::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data.extend_from_slice(&chunk);
            if data.len() > MAX_READ {
                return Err("answer too large".to_string());
            }
        }
        let trailers = body.trailers().await.map_err(|e| e.to_string())?;
        let field = |name: &str| {
            trailers
                .as_ref()
                .and_then(|t| t.get(name))
                .or_else(|| head.headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Ok::<_, String>((
            head.status,
            field("grpc-status"),
            field("grpc-message"),
            data,
        ))
    };
    // The connection is driven beside the call; it ends when the call's handle is dropped.
    let outcome = tokio::select! {
        outcome = call => outcome,
        ended = connection => match ended {
            Ok(()) => Err("the connection closed".to_string()),
            Err(e) => Err(e.to_string()),
        },
    };
    match outcome {
        Err(e) => fail(format!("code = Unavailable desc = {e}")),
        Ok((status, _, _, _)) if status != http::StatusCode::OK => {
            fail(format!("code = Unknown desc = HTTP status {status}"))
        }
        Ok((_, Some(code), message, _)) if code != "0" => fail(format!(
            "code = {} desc = {}",
            grpc_code(&code),
            message.unwrap_or_default()
        )),
        Ok((_, _, _, data)) => match health_status(&data) {
            Some(1) => (true, String::new()),
            Some(other) => (
                false,
                format!(
                    "service unhealthy (responded with \"{}\")",
                    serving_status(other)
                ),
            ),
            None => fail("code = Internal desc = unreadable health answer".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_messages_encode_and_decode() {
        assert_eq!(health_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            health_request("db"),
            vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        let long = "s".repeat(200);
        let frame = health_request(&long);
        assert_eq!(&frame[5..8], &[0x0a, 0xc8, 0x01]);
        // status SERVING, NOT_SERVING, default (absent) UNKNOWN, an unknown field skipped.
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(health_status(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(
            health_status(&[0, 0, 0, 0, 6, 0x12, 2, b'x', b'y', 0x08, 1]),
            Some(1)
        );
        // Compressed, truncated, garbage.
        assert_eq!(health_status(&[1, 0, 0, 0, 2, 0x08, 1]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 9, 0x08]), None);
        assert_eq!(health_status(&[0, 0, 0, 0, 1, 0x0d]), None);
        assert_eq!(health_status(&[]), None);
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\n"), Some(404));
        assert_eq!(status_code(b"SSH-2.0-x\r\n"), None);
        assert_eq!(status_code(b""), None);
    }

    /// Plain and TLS GETs against a local server, and a gRPC health check against an h2 one.
    #[tokio::test]
    async fn get_over_tls_and_grpc_health_against_local_servers() {
        use tokio::net::{TcpListener, TcpStream};
        let _ = rustls::crypto::ring::default_provider().install_default();
        // TLS server with a self-signed certificate for "localhost".
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        for want in [true, false] {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let stream = tls(tcp, "localhost").await.unwrap();
            let (ok, why) = http_get(stream, "https://x/", "localhost", "/", &[]).await;
            assert_eq!(ok, want, "{why}");
            if !want {
                assert_eq!(why, "HTTP probe failed with statuscode: 503");
            }
        }

        // gRPC health: SERVING for "", NOT_SERVING for "db", grpc-status 5 for the rest.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(tcp).await.unwrap();
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let mut body = request.into_body();
                        let mut data = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            data.extend_from_slice(&chunk);
                        }
                        let service =
                            String::from_utf8_lossy(data.get(7..).unwrap_or(&[])).into_owned();
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", "application/grpc")
                            .body(())
                            .unwrap();
                        let mut send = respond.send_response(response, false).unwrap();
                        let mut trailers = http::HeaderMap::new();
                        let status = match service.as_str() {
                            "" => Some(1u8),
                            "db" => Some(2),
                            _ => None,
                        };
                        match status {
                            Some(s) => {
                                send.send_data(vec![0, 0, 0, 0, 2, 0x08, s].into(), false)
                                    .unwrap();
                                trailers.insert("grpc-status", "0".parse().unwrap());
                            }
                            None => {
                                trailers.insert("grpc-status", "5".parse().unwrap());
                                trailers.insert("grpc-message", "unknown service".parse().unwrap());
                            }
                        }
                        send.send_trailers(trailers).unwrap();
                    }
                });
            }
        });
        let check = |service: &'static str| async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            grpc_health(tcp, &addr.to_string(), service).await
        };
        assert_eq!(check("").await, (true, String::new()));
        assert_eq!(
            check("db").await.1,
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        assert_eq!(
            check("other").await.1,
            "rpc error: code = NotFound desc = unknown service"
        );
    }
}
