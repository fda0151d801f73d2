//! One health probe: `GET <path>` over plain HTTP/1.1 on loopback, healthy
//! on any 2xx. Only the status line is read, and the whole probe is bounded
//! by its timeout, so an endpoint that hangs or streams forever cannot hold
//! the supervisor.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one probe saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ProbeOutcome {
    /// A 2xx answer.
    Healthy(u16),
    /// Any other status.
    Status(u16),
    /// Nothing listens on the port.
    Refused,
    /// No full status line within the timeout.
    TimedOut(Duration),
    /// The connection failed another way, or the answer was not HTTP.
    Failed(String),
    /// No probe has run yet.
    NotProbed,
}

impl ProbeOutcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, ProbeOutcome::Healthy(_))
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Healthy(s) => write!(f, "answered {s}"),
            ProbeOutcome::Status(s) => write!(f, "answered HTTP {s}"),
            ProbeOutcome::Refused => f.write_str("connection refused"),
            ProbeOutcome::TimedOut(t) => write!(f, "no answer within {t:?}"),
            ProbeOutcome::Failed(e) => write!(f, "probe failed: {e}"),
            ProbeOutcome::NotProbed => f.write_str("not probed yet"),
        }
    }
}

/// Probes `http://<addr><path>` once.
pub(crate) async fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> ProbeOutcome {
    match tokio::time::timeout(timeout, request(addr, path)).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::TimedOut(timeout),
    }
}

async fn request(addr: SocketAddr, path: &str) -> ProbeOutcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return ProbeOutcome::Refused;
        }
        Err(e) => return ProbeOutcome::Failed(e.to_string()),
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: pave-health\r\nConnection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(req.as_bytes()).await {
        return ProbeOutcome::Failed(e.to_string());
    }
    // The status line is short; 512 bytes without a line break is not HTTP.
    let mut buf = Vec::with_capacity(128);
    let mut chunk = [0u8; 128];
    while !buf.contains(&b'\n') && buf.len() < 512 {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return ProbeOutcome::Failed(e.to_string()),
        }
    }
    match parse_status(&buf) {
        Some(s) if (200..300).contains(&s) => ProbeOutcome::Healthy(s),
        Some(s) => ProbeOutcome::Status(s),
        None if buf.is_empty() => {
            ProbeOutcome::Failed("connection closed without an answer".into())
        }
        None => ProbeOutcome::Failed("answer is not HTTP".into()),
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn parse_status(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn reads_status_lines() {
        assert_eq!(parse_status(b"HTTP/1.0 200 OK\r\n"), Some(200));
        assert_eq!(
            parse_status(b"HTTP/1.1 503 Service Unavailable\r\nx"),
            Some(503)
        );
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20000\r\n"), None);
    }
}
