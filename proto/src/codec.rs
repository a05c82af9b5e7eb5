//! Line framing: newline-delimited JSON, UTF-8, one message per line.
//!
//! [`LineDecoder`] turns the byte chunks read from a (non-blocking) socket into lines; [`encode`]
//! turns a message into bytes ending in `\n`. JSON strings never contain a raw newline, so a
//! serialized message is always exactly one line.

use serde::Serialize;

use crate::envelope::{Id, Response};
use crate::error::LineError;

/// The longest line a server accepts from a client: 1 MiB, excluding the line terminator.
pub const MAX_LINE_LEN: usize = 1_048_576;

/// The longest line a client should accept from a server: 64 MiB, excluding the terminator.
///
/// Answers (a `trace`, a `handles` listing of a busy daemon) can legitimately be larger than any
/// request; clients build their decoder with [`LineDecoder::with_limit`]`(MAX_SERVER_LINE_LEN)`.
pub const MAX_SERVER_LINE_LEN: usize = 64 * 1_048_576;

/// An incremental newline-delimited decoder.
///
/// Feed it chunks as they arrive; it returns each complete line as a `String` (without `\n` or
/// `\r\n`), skips blank lines, reports a line that is not UTF-8 as
/// [`LineError::InvalidUtf8`] (and goes on), and reports [`LineError::LineTooLong`] as soon as
/// the pending line exceeds the limit, without buffering more than the limit. After a
/// `LineTooLong` the rest of that line is discarded up to its newline.
///
/// # Examples
///
/// ```
/// use proto::LineDecoder;
/// let mut dec = LineDecoder::new();
/// assert!(dec.feed(b"{\"a\":").is_empty());
/// let lines = dec.feed(b"1}\r\n\n{}\n{");
/// assert_eq!(lines, vec![Ok("{\"a\":1}".to_string()), Ok("{}".to_string())]);
/// assert_eq!(dec.pending_len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct LineDecoder {
    buf: Vec<u8>,
    limit: usize,
    discarding: bool,
}

impl Default for LineDecoder {
    fn default() -> Self {
        LineDecoder::new()
    }
}

impl LineDecoder {
    /// A decoder with the protocol's limit, [`MAX_LINE_LEN`] (what a server uses).
    pub fn new() -> Self {
        LineDecoder::with_limit(MAX_LINE_LEN)
    }

    /// A decoder accepting lines of at most `limit` bytes, excluding the terminator.
    pub fn with_limit(limit: usize) -> Self {
        LineDecoder {
            buf: Vec::new(),
            limit,
            discarding: false,
        }
    }

    /// The line-length limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of the incomplete line buffered so far.
    pub fn pending_len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the decoder is skipping the rest of an over-long line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }

    /// Consumes `chunk` and returns the lines it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<String, LineError>> {
        let mut out = Vec::new();
        self.feed_with(chunk, |line| out.push(line));
        out
    }

    /// Like [`feed`](Self::feed), calling `on_line` for each completed line instead of
    /// collecting them.
    pub fn feed_with(
        &mut self,
        mut chunk: &[u8],
        mut on_line: impl FnMut(Result<String, LineError>),
    ) {
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (segment, rest) = match newline {
                Some(i) => (&chunk[..i], Some(&chunk[i + 1..])),
                None => (chunk, None),
            };

            if self.discarding {
                if let Some(rest) = rest {
                    self.discarding = false;
                    chunk = rest;
                    continue;
                }
                return;
            }

            // Would the pending line be over the limit? A trailing '\r' may be the first half of
            // a "\r\n" terminator, so it does not count while it is the last byte.
            let pending = self.buf.len() + segment.len();
            let last = segment.last().or(self.buf.last());
            let content_len = if last == Some(&b'\r') {
                pending - 1
            } else {
                pending
            };
            let over = content_len > self.limit;
            if over {
                self.buf.clear();
                self.buf.shrink_to(4096);
                on_line(Err(LineError::LineTooLong { limit: self.limit }));
                match rest {
                    Some(rest) => chunk = rest,
                    None => {
                        self.discarding = true;
                        return;
                    }
                }
                continue;
            }

            self.buf.extend_from_slice(segment);
            let Some(rest) = rest else { return };
            chunk = rest;

            let mut line = std::mem::take(&mut self.buf);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(l) = finish_line(line) {
                on_line(l);
            }
        }
    }

    /// Ends the stream: returns the final line if the peer closed without a trailing newline.
    pub fn finish(&mut self) -> Option<Result<String, LineError>> {
        let discarding = std::mem::replace(&mut self.discarding, false);
        let mut line = std::mem::take(&mut self.buf);
        if discarding {
            return None;
        }
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        finish_line(line)
    }
}

/// Converts a complete line to text; `None` for a blank line.
fn finish_line(line: Vec<u8>) -> Option<Result<String, LineError>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(String::from_utf8(line).map_err(|e| LineError::InvalidUtf8 {
        valid_up_to: e.utf8_error().valid_up_to(),
    }))
}

/// Serializes `message` as one line: its JSON followed by `\n`.
///
/// Non-finite floats are written as `null` by `serde_json`; producers should send finite values.
///
/// # Errors
///
/// Whatever `serde_json` reports (never, for this crate's types).
///
/// # Examples
///
/// ```
/// use proto::{encode, Request};
/// let bytes = encode(&Request::new(1, "ping", None)).unwrap();
/// assert_eq!(bytes, b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
/// ```
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut buf = Vec::with_capacity(128);
    encode_into(&mut buf, message)?;
    Ok(buf)
}

/// Appends `message` as one line (JSON + `\n`) to `buf`, e.g. a connection's write buffer.
///
/// # Errors
///
/// Whatever `serde_json` reports (never, for this crate's types); `buf` is then left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    message: &T,
) -> Result<(), serde_json::Error> {
    let start = buf.len();
    if let Err(e) = serde_json::to_writer(&mut *buf, message) {
        buf.truncate(start);
        return Err(e);
    }
    buf.push(b'\n');
    Ok(())
}

/// The line of a response whose `result` is written separately, in pieces (an answer of
/// megabytes streamed as the client reads): the bytes before the result and after it. Built
/// from this codec's own encoding of [`Response`], so the envelope is the same as every other
/// line's.
///
/// # Examples
///
/// ```
/// use proto::{codec::response_frame, Id};
/// let (head, tail) = response_frame(&Id::Number(7)).unwrap();
/// let line = [head.as_slice(), b"[1,2]", tail].concat();
/// assert_eq!(line, b"{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":[1,2]}\n");
/// ```
///
/// # Errors
///
/// Whatever `serde_json` reports for the id (never, for valid ids).
pub fn response_frame(id: &Id) -> Result<(Vec<u8>, &'static [u8]), serde_json::Error> {
    const PLACEHOLDER_TAIL: &[u8] = b"null}\n";
    let mut line = encode(&Response::ok(id.clone(), serde_json::Value::Null))?;
    // `result` is the last member: `…"result":null}\n` → head `…"result":`, tail `}\n`.
    if !line.ends_with(PLACEHOLDER_TAIL) {
        return Err(serde::ser::Error::custom(
            "a response's result is not its last member",
        ));
    }
    line.truncate(line.len() - PLACEHOLDER_TAIL.len());
    Ok((line, b"}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Message, Notification, Request};
    use testkit::Rng;

    #[test]
    fn a_streamed_result_frames_like_an_encoded_response() {
        for id in [
            Id::Number(-3),
            Id::from_u64(u64::MAX),
            Id::String("a\"b".into()),
        ] {
            let (head, tail) = response_frame(&id).unwrap();
            let streamed = [head.as_slice(), b"{\"x\":[1,2]}", tail].concat();
            let whole = encode(&Response::ok(id, serde_json::json!({"x": [1, 2]}))).unwrap();
            assert_eq!(streamed, whole);
        }
    }

    fn ok(s: &str) -> Result<String, LineError> {
        Ok(s.to_string())
    }

    fn sample_stream() -> (Vec<u8>, Vec<Result<String, LineError>>) {
        let mut bytes = Vec::new();
        let mut want = Vec::new();
        let msgs = [
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":"x","method":"handles","params":{"limit":5}}"#,
            "{\"s\":\"h\u{e9}llo \u{1f600} w\u{f6}rld\"}",
        ];
        for (i, m) in msgs.iter().enumerate() {
            bytes.extend_from_slice(m.as_bytes());
            bytes.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
            want.push(ok(m));
            bytes.extend_from_slice(b"\n\r\n  \n");
        }
        bytes.extend_from_slice(b"{\"bad\":\"\xff\xfe\"}\n");
        want.push(Err(LineError::InvalidUtf8 { valid_up_to: 8 }));
        bytes.extend_from_slice(b"after\n");
        want.push(ok("after"));
        (bytes, want)
    }

    #[test]
    fn whole_chunk() {
        let (bytes, want) = sample_stream();
        let mut dec = LineDecoder::new();
        assert_eq!(dec.feed(&bytes), want);
        assert_eq!(dec.pending_len(), 0);
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn one_byte_at_a_time() {
        let (bytes, want) = sample_stream();
        let mut dec = LineDecoder::new();
        let mut got = Vec::new();
        for b in &bytes {
            got.extend(dec.feed(std::slice::from_ref(b)));
        }
        assert_eq!(got, want);
    }

    #[test]
    fn random_splits() {
        let (bytes, want) = sample_stream();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..500 {
            let mut dec = LineDecoder::new();
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = 1 + rng.below(rest.len().min(40));
                got.extend(dec.feed(&rest[..n]));
                rest = &rest[n..];
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn too_long_reported_early_and_bounded() {
        let mut dec = LineDecoder::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut errors = 0;
        let mut fed = 0;
        // 2 MiB without a newline: the error comes as soon as the limit is crossed.
        while fed < 2 * MAX_LINE_LEN {
            for r in dec.feed(&chunk) {
                assert_eq!(
                    r,
                    Err(LineError::LineTooLong {
                        limit: MAX_LINE_LEN
                    })
                );
                errors += 1;
                assert!(fed < MAX_LINE_LEN + chunk.len());
            }
            fed += chunk.len();
            assert!(dec.pending_len() <= MAX_LINE_LEN);
        }
        assert_eq!(errors, 1);
        assert!(dec.is_discarding());
        // The rest of the long line is discarded; the next line decodes.
        assert_eq!(dec.feed(b"tail\n{}\n"), vec![ok("{}")]);
        assert!(!dec.is_discarding());
    }

    #[test]
    fn too_long_in_one_chunk() {
        let mut line = vec![b'x'; 2 * MAX_LINE_LEN];
        line.extend_from_slice(b"\n{}\n");
        let mut dec = LineDecoder::new();
        assert_eq!(
            dec.feed(&line),
            vec![
                Err(LineError::LineTooLong {
                    limit: MAX_LINE_LEN
                }),
                ok("{}")
            ]
        );
    }

    #[test]
    fn exactly_at_limit() {
        for term in [&b"\n"[..], b"\r\n"] {
            let mut dec = LineDecoder::with_limit(4);
            let mut got = Vec::new();
            for b in b"abcd".iter().chain(term).chain(b"abcde\n") {
                got.extend(dec.feed(std::slice::from_ref(b)));
            }
            assert_eq!(
                got,
                vec![ok("abcd"), Err(LineError::LineTooLong { limit: 4 })]
            );
            let mut dec = LineDecoder::with_limit(4);
            let mut input = b"abcd".to_vec();
            input.extend_from_slice(term);
            assert_eq!(dec.feed(&input), vec![ok("abcd")]);
        }
        // "abcd\r" followed by something other than "\n" is over the limit.
        let mut dec = LineDecoder::with_limit(4);
        assert!(dec.feed(b"abcd\r").is_empty());
        assert_eq!(
            dec.feed(b"x"),
            vec![Err(LineError::LineTooLong { limit: 4 })]
        );
    }

    #[test]
    fn finish_returns_unterminated_line() {
        let mut dec = LineDecoder::new();
        assert!(dec.feed(b"{\"a\":1}").is_empty());
        assert_eq!(dec.finish(), Some(ok("{\"a\":1}")));
        assert_eq!(dec.finish(), None);
        assert!(dec.feed(b"  ").is_empty());
        assert_eq!(dec.finish(), None);
    }

    #[test]
    fn garbage_bytes_do_not_wedge_the_decoder() {
        let mut rng = Rng(42);
        let mut dec = LineDecoder::with_limit(256);
        for _ in 0..2000 {
            let len = rng.below(300);
            let chunk: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for line in dec.feed(&chunk).into_iter().flatten() {
                // Whatever came through is a string; parsing it must not panic.
                let _ = Message::parse(&line);
            }
            assert!(dec.pending_len() <= 257);
        }
        dec.feed(b"\n");
        assert_eq!(dec.feed(b"ok\n"), vec![ok("ok")]);
    }

    #[test]
    fn encode_roundtrip() {
        let req = Request::new(3, "ping", None);
        let note = Notification::new("x", Some(serde_json::json!({"s": "a\nb"})));
        let mut buf = Vec::new();
        encode_into(&mut buf, &req).unwrap();
        encode_into(&mut buf, &note).unwrap();
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 2);
        let lines: Vec<_> = LineDecoder::new()
            .feed(&buf)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(Message::parse(&lines[0]).unwrap(), Message::Request(req));
        assert_eq!(
            Message::parse(&lines[1]).unwrap(),
            Message::Notification(note)
        );
        assert_eq!(encode(&1).unwrap(), b"1\n");
    }
}
