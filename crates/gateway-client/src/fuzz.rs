//! Fuzzing entry points for what this crate reads from a gateway: the
//! notification socket's frames (through tungstenite with the client's
//! limits, then [`crate::notifications::read_frame`]), error and login
//! bodies, and the base URL a profile names. They must never panic; the
//! `fuzz/` cargo-fuzz project and `tests/fuzz.rs` both call them.

use std::io::{self, Read, Write};

use stacksync_proto::{Notification, wire};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::notifications::{Frame, read_frame, socket_config};
use crate::{ErrorBody, Session, describe_status, join, parse_base};

/// The server's side of a socket: `data` to read, writes dropped.
struct Wire<'a> {
    data: &'a [u8],
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.data.read(buf)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `data` as what a gateway sends on an open notification socket
/// (raw WebSocket frames), with the client's limits, until the stream
/// ends as the client would end it. Returns the notifications passed on;
/// every text message is within the limit, and a frame that could not
/// decode becomes a `Resync`, never an error.
pub fn notification_frames(data: &[u8]) -> Vec<Notification> {
    let limit = wire::MAX_MESSAGE_BYTES;
    let mut socket = WebSocket::from_raw_socket(Wire { data }, Role::Client, Some(socket_config()));
    let mut out = Vec::new();
    // Each read consumes input or ends the stream; the bound is a guard.
    for _ in 0..=data.len() + 1 {
        let read = match socket.read() {
            Ok(message) => {
                assert!(message.len() <= limit, "a message over the limit was read");
                Some(Ok(message))
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => None,
            Err(e) => Some(Err(e)),
        };
        let text = matches!(read, Some(Ok(Message::Text(_))));
        match read_frame(read) {
            Frame::Notification(n) => {
                assert!(text, "a notification out of a frame that was not text");
                out.push(n);
            }
            Frame::Skip => assert!(!text, "a text frame skipped"),
            Frame::Ended => return out,
        }
    }
    panic!("the socket kept yielding frames past the end of its input");
}

/// Reads `data` as the bodies the client decodes from a gateway's HTTP
/// answers: an error body (with the status from the first two bytes, as
/// `read_ok` shows one it cannot parse), a login answer, a chunk
/// existence answer. Returns how many of them parsed.
pub fn response_bodies(data: &[u8]) -> usize {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => (500, data),
    };
    let mut parsed = 0;
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        let _ = (error.kind.is_transient(), error.kind.http_status());
        parsed += 1;
    }
    let status = reqwest::StatusCode::from_u16(status).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
    let shown = describe_status(status, body);
    // The reason shown is the status and at most 200 characters of the body.
    assert!(shown.chars().count() <= 200 + status.to_string().chars().count() + 2);
    if serde_json::from_slice::<Session>(body).is_ok() {
        parsed += 1;
    }
    if serde_json::from_slice::<Vec<bool>>(body).is_ok() {
        parsed += 1;
    }
    parsed
}

/// Reads `data` as the gateway URL a profile names; an accepted base is
/// http(s), ends in `/`, and every endpoint joins onto it.
pub fn base_url(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(base) = parse_base(text) else {
        return false;
    };
    assert!(matches!(base.scheme(), "http" | "https"));
    assert!(
        base.path().ends_with('/'),
        "a base without a trailing slash"
    );
    for endpoint in ["api/v1/rpc", "api/v1/notifications?hints=1"] {
        let _ = join(&base, endpoint);
    }
    true
}

/// One WebSocket frame as a server sends it (unmasked): `opcode`, FIN
/// set when `last`.
pub fn frame(opcode: u8, last: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(u8::from(last) << 7) | (opcode & 0x0f)];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Valid socket streams: notifications in text frames (whole and
/// fragmented), with pings, binary frames and a close between them.
pub fn frame_seeds() -> Vec<Vec<u8>> {
    let texts: Vec<Vec<u8>> = stacksync_proto::fuzz::seeds()
        .into_iter()
        .filter(|s| !wire::is_compressed(s) && wire::decode::<Notification>(s).is_ok())
        .collect();
    let mut out = Vec::new();
    for t in &texts {
        out.push(frame(1, true, t));
    }
    let mut mixed = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        mixed.extend(frame(9, true, b"ping"));
        let (a, b) = t.split_at(t.len() / 2);
        if i % 2 == 0 {
            mixed.extend(frame(1, false, a));
            mixed.extend(frame(0, true, b));
        } else {
            mixed.extend(frame(2, true, b"binary"));
            mixed.extend(frame(1, true, t));
        }
    }
    mixed.extend(frame(8, true, &[0x03, 0xe8]));
    out.push(mixed);
    out
}

/// Valid answers: an error body, a login answer and an existence answer,
/// each behind a status.
pub fn response_seeds() -> Vec<Vec<u8>> {
    let error = serde_json::json!({"error": stacksync_proto::Error::too_many_requests("wait", 30)});
    let session = serde_json::json!({
        "token": "t0k3n",
        "user": "01234567-89ab-cdef-0123-456789abcdef",
        "expires_at": 1_800_000_000_000i64,
    });
    [
        (429u16, error.to_string()),
        (200, session.to_string()),
        (200, "[true,false,true]".to_owned()),
        (502, "<html>bad gateway</html>".to_owned()),
    ]
    .into_iter()
    .map(|(status, body)| [status.to_le_bytes().as_slice(), body.as_bytes()].concat())
    .collect()
}

/// Valid base URLs.
pub fn url_seeds() -> Vec<Vec<u8>> {
    [
        "http://127.0.0.1:8080",
        "https://sync.example.org/stacksync/",
        "http://[::1]:80/a/b",
    ]
    .iter()
    .map(|u| u.as_bytes().to_vec())
    .collect()
}
