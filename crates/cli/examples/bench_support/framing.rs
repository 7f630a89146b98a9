//! Follows the HTTP/1.1 messages of one direction of one proxied
//! connection (Content-Length and chunked bodies, upgrades) without
//! buffering bodies, and says which exchange each byte belongs to: "METHOD
//! /path", "RPC op" for the sync-service RPC endpoint (its body is decoded
//! with the wire decoder, whatever encoding it uses), "WS /path" for the
//! frames of an upgraded connection. Both directions of a connection share
//! one queue of exchanges, so a response is charged to the request it
//! answers (our clients never pipeline).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use stacksync_proto::rpc::RpcRequest;
use stacksync_proto::wire;

/// A head larger than this is not HTTP we understand: framing stops there
/// (bytes are still counted).
const MAX_HEAD: usize = 64 * 1024;

/// The path of the RPC endpoint, whose requests are named by operation.
const RPC_PATH: &str = "/api/v1/rpc";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Side {
    Request,
    Response,
}

#[derive(Debug, PartialEq)]
pub enum Event {
    /// A complete head of this many bytes.
    Head(usize),
    /// A request, named as its exchange.
    Request(String),
    /// Bytes of this direction that belong to the named exchange.
    Bytes(String, u64),
    /// The server switched protocols: the rest is not HTTP.
    Upgraded,
}

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data: bytes left to skip.
    ChunkEnd(u8),
    Trailer,
    /// Not HTTP (any more), or a body that ends with the connection.
    Opaque,
}

/// The exchanges requested on a connection and not answered yet.
pub type Pending = Arc<Mutex<VecDeque<String>>>;

/// The framing of one direction of one connection.
pub struct Framer {
    side: Side,
    state: State,
    line: Vec<u8>,
    exchanges: Pending,
    /// The exchange the current message belongs to, once known.
    key: Option<String>,
    /// Bytes of the current message seen before its exchange was known.
    unassigned: u64,
    /// The body of an RPC request, read to name it.
    rpc_body: Option<Vec<u8>>,
}

impl Framer {
    pub fn new(side: Side, exchanges: Pending) -> Framer {
        Framer {
            side,
            state: State::Head,
            line: Vec::new(),
            exchanges,
            key: None,
            unassigned: 0,
            rpc_body: None,
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    /// Takes the next bytes of the stream; returns what completed in them.
    pub fn feed(&mut self, mut data: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        while !data.is_empty() {
            let before = data.len();
            match self.state {
                State::Opaque => data = &[],
                State::Body(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    if let Some(body) = &mut self.rpc_body {
                        body.extend_from_slice(&data[..take]);
                    }
                    data = &data[take..];
                    if left == take as u64 {
                        self.charge((before - data.len()) as u64, &mut events);
                        self.message_end(&mut events);
                        continue;
                    }
                    self.state = State::Body(left - take as u64);
                }
                State::ChunkData(left) => {
                    let take = (left.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if left == take as u64 {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(left - take as u64)
                    };
                }
                State::ChunkEnd(left) => {
                    let take = (left as usize).min(data.len());
                    data = &data[take..];
                    self.state = if left as usize == take {
                        State::ChunkSize
                    } else {
                        State::ChunkEnd(left - take as u8)
                    };
                }
                State::Head => {
                    let (used, done) = self.take_until(data, b"\r\n\r\n");
                    data = &data[used..];
                    self.charge(used as u64, &mut events);
                    if done {
                        let head = std::mem::take(&mut self.line);
                        events.push(Event::Head(head.len()));
                        self.after_head(&head, &mut events);
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                    continue;
                }
                State::ChunkSize => {
                    let (used, done) = self.take_until(data, b"\n");
                    data = &data[used..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        let text = String::from_utf8_lossy(&line);
                        let size = text.split(';').next().unwrap_or("").trim();
                        self.state = match u64::from_str_radix(size, 16) {
                            Ok(0) => State::Trailer,
                            Ok(n) => State::ChunkData(n),
                            Err(_) => State::Opaque,
                        };
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                }
                State::Trailer => {
                    let (used, done) = self.take_until(data, b"\n");
                    data = &data[used..];
                    if done {
                        let line = std::mem::take(&mut self.line);
                        if line == b"\r\n" || line == b"\n" {
                            self.charge((before - data.len()) as u64, &mut events);
                            self.message_end(&mut events);
                            continue;
                        }
                    } else if self.line.len() > MAX_HEAD {
                        self.state = State::Opaque;
                    }
                }
            }
            self.charge((before - data.len()) as u64, &mut events);
        }
        events
    }

    /// Charges `n` bytes to the current exchange, or keeps them until it
    /// is known.
    fn charge(&mut self, n: u64, events: &mut Vec<Event>) {
        if n == 0 {
            return;
        }
        match &self.key {
            Some(key) => events.push(Event::Bytes(key.clone(), n)),
            None => self.unassigned += n,
        }
    }

    /// The current message belongs to `key`, from its first byte.
    fn assign(&mut self, key: String, events: &mut Vec<Event>) {
        let earlier = std::mem::take(&mut self.unassigned);
        if earlier > 0 {
            events.push(Event::Bytes(key.clone(), earlier));
        }
        self.key = Some(key);
    }

    /// A request becomes known: counted, and queued for its response.
    fn name_request(&mut self, key: String, events: &mut Vec<Event>) {
        events.push(Event::Request(key.clone()));
        self.exchanges
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(key.clone());
        self.assign(key, events);
    }

    fn message_end(&mut self, events: &mut Vec<Event>) {
        if let Some(body) = self.rpc_body.take() {
            self.name_request(rpc_name(&body), events);
        }
        self.key = None;
        self.state = State::Head;
    }

    /// Moves bytes into `self.line` until it ends with `end`; returns how
    /// many bytes of `data` it took and whether `end` was reached.
    fn take_until(&mut self, data: &[u8], end: &[u8]) -> (usize, bool) {
        for (i, b) in data.iter().enumerate() {
            self.line.push(*b);
            if self.line.ends_with(end) {
                return (i + 1, true);
            }
        }
        (data.len(), false)
    }

    /// Records a complete head and moves to what follows it.
    fn after_head(&mut self, head: &[u8], events: &mut Vec<Event>) {
        let text = String::from_utf8_lossy(head);
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or("");
        let mut length = None;
        let mut chunked = false;
        let mut upgrade = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => length = value.parse::<u64>().ok(),
                "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
                "upgrade" => upgrade = true,
                _ => {}
            }
        }
        let body = if chunked {
            State::ChunkSize
        } else {
            match length {
                Some(0) | None => State::Head,
                Some(n) => State::Body(n),
            }
        };
        match self.side {
            Side::Request => {
                let mut parts = first.split_whitespace();
                let method = parts.next().unwrap_or("?");
                let path = parts.next().map_or("?".to_owned(), request_path);
                if path == RPC_PATH && matches!(body, State::Body(_)) {
                    // Named once its body is read; capped like the server.
                    self.rpc_body = Some(Vec::new());
                    self.state = body;
                    return;
                }
                self.name_request(format!("{method} {path}"), events);
                if upgrade {
                    // The client waits for 101 and then speaks WebSocket.
                    self.key = Some(format!("WS {path}"));
                    self.state = State::Opaque;
                    return;
                }
                self.state = body;
            }
            Side::Response => {
                let status: u16 = first
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                if !(100..=199).contains(&status) || status == 101 {
                    let key = self
                        .exchanges
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .pop_front()
                        .unwrap_or_else(|| "(unrequested response)".into());
                    self.assign(key, events);
                }
                match status {
                    101 => {
                        events.push(Event::Upgraded);
                        let key = self.key.take().unwrap_or_default();
                        let path = key.split_once(' ').map_or("?", |(_, p)| p);
                        self.key = Some(format!("WS {path}"));
                        self.state = State::Opaque;
                    }
                    100..=199 | 204 | 304 => self.message_end(events),
                    // No length and not chunked: the body ends with the
                    // connection. (Our clients never send HEAD.)
                    _ if !chunked && length.is_none() => self.state = State::Opaque,
                    _ => match body {
                        State::Head => self.message_end(events),
                        other => self.state = other,
                    },
                }
            }
        }
        if matches!(self.state, State::Head) && self.side == Side::Request {
            self.message_end(events);
        }
    }
}

/// "RPC commit" for an RPC request body; "RPC ?" when it cannot be read.
fn rpc_name(body: &[u8]) -> String {
    match wire::decode::<RpcRequest>(body) {
        Ok(request) => {
            let value = serde_json::to_value(&request.request).unwrap_or_default();
            format!("RPC {}", value["op"].as_str().unwrap_or("?"))
        }
        Err(_) => "RPC ?".into(),
    }
}

/// A request target without its query, with id-like segments as `*`.
pub fn request_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    path.split('/')
        .map(|seg| {
            let digits = !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit());
            if seg.len() > 20 || digits { "*" } else { seg }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(side: Side, pending: &Pending, pieces: &[&[u8]]) -> Vec<Event> {
        let mut f = Framer::new(side, pending.clone());
        pieces.iter().flat_map(|p| f.feed(p)).collect()
    }

    fn charged(events: &[Event], key: &str) -> u64 {
        events
            .iter()
            .map(|e| match e {
                Event::Bytes(k, n) if k == key => *n,
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn sized_and_chunked_requests_are_counted_across_reads() {
        let pieces: [&[u8]; 3] = [
            b"POST /api/v1/login HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
            b"loPUT /api/v1/workspaces/01234567-89ab-cdef-0123-456789abcdef/chunks/42 HTTP/1.1\r\n",
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ];
        let all = events(Side::Request, &Pending::default(), &pieces);
        let names: Vec<&Event> = all
            .iter()
            .filter(|e| matches!(e, Event::Request(_)))
            .collect();
        assert_eq!(
            names,
            [
                &Event::Request("POST /api/v1/login".into()),
                &Event::Request("PUT /api/v1/workspaces/*/chunks/*".into()),
                &Event::Request("GET /".into()),
            ]
        );
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        let sum: u64 = [
            "POST /api/v1/login",
            "PUT /api/v1/workspaces/*/chunks/*",
            "GET /",
        ]
        .iter()
        .map(|k| charged(&all, k))
        .sum();
        assert_eq!(sum, total as u64, "every byte belongs to one request");
        assert_eq!(charged(&all, "GET /"), 18);
    }

    #[test]
    fn rpc_requests_are_named_by_operation_and_answers_charged_to_them() {
        let pending = Pending::default();
        let body = wire::encode(&RpcRequest {
            request_id: uuid::Uuid::nil(),
            token: String::new(),
            request: stacksync_proto::rpc::Request::GetAccount,
        });
        let mut request = format!(
            "POST /api/v1/rpc HTTP/1.1\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        let up = events(Side::Request, &pending, &[&request[..7], &request[7..]]);
        assert!(up.contains(&Event::Request("RPC get_account".into())));
        assert_eq!(charged(&up, "RPC get_account"), request.len() as u64);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let down = events(Side::Response, &pending, &[answer]);
        assert_eq!(charged(&down, "RPC get_account"), answer.len() as u64);
    }

    #[test]
    fn an_upgrade_ends_http_framing_and_frames_are_charged_to_the_socket() {
        let pending = Pending::default();
        let up = events(
            Side::Request,
            &pending,
            &[b"GET /api/v1/notifications HTTP/1.1\r\nUpgrade: websocket\r\n\r\n\x89\x00"],
        );
        assert_eq!(charged(&up, "WS /api/v1/notifications"), 2);
        let down = events(
            Side::Response,
            &pending,
            &[b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"],
        );
        assert!(down.contains(&Event::Upgraded));
        assert_eq!(charged(&down, "WS /api/v1/notifications"), 7);
        assert_eq!(
            down.iter().filter(|e| matches!(e, Event::Head(_))).count(),
            1
        );
    }

    #[test]
    fn responses_without_bodies_keep_framing() {
        let pending = Pending::default();
        for key in ["a", "b", "c"] {
            pending.lock().unwrap().push_back(key.into());
        }
        let all = events(
            Side::Response,
            &pending,
            &[b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"],
        );
        assert_eq!(
            all.iter().filter(|e| matches!(e, Event::Head(_))).count(),
            3
        );
        assert_eq!(charged(&all, "a"), 27);
        assert_eq!(charged(&all, "b"), 40);
    }
}
