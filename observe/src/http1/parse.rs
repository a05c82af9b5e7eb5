//! The HTTP/1.x request-head parser: a pure function over bytes, no I/O, no allocation beyond
//! the result, and no panic on any input (fuzzed below with 100k mutated heads).

use std::path::PathBuf;

/// Largest request head accepted (request line + headers + the blank line).
pub const MAX_HEAD: usize = 16 * 1024;

/// The request method: what the service serves, and anything else (answered 405).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// `GET`.
    Get,
    /// `HEAD`.
    Head,
    /// Any other token (`POST`, `PUT`, …).
    Other(String),
}

/// A parsed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The request target as sent (for logs).
    pub target: String,
    /// The target's path, percent-decoded, query and fragment removed.
    pub path: String,
    /// `1` for HTTP/1.1, `0` for HTTP/1.0.
    pub minor: u8,
    /// Whether the connection stays open after the response (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The request announces a body (`Content-Length` > 0 or any `Transfer-Encoding`).
    pub has_body: bool,
}

/// Why a request head was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed request line, header or percent-encoding (400).
    Malformed(&'static str),
    /// The head is larger than [`MAX_HEAD`] (431 Request Header Fields Too Large).
    TooLarge,
}

/// Parses one request head from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the request and the number of bytes it
/// used (the head; bodies are never consumed: a request with a body is flagged
/// [`Request::has_body`] and the connection must close after the answer). Leading empty lines
/// are skipped (RFC 9112 §2.2); lines may end with CRLF or a bare LF.
///
/// # Errors
/// [`ParseError::TooLarge`] when no complete head fits in [`MAX_HEAD`] bytes,
/// [`ParseError::Malformed`] for anything that is not a valid HTTP/1.0 or 1.1 request head.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, ParseError> {
    let mut start = 0;
    while start < buf.len() && (buf[start] == b'\r' || buf[start] == b'\n') {
        start += 1;
        if start > MAX_HEAD {
            return Err(ParseError::TooLarge);
        }
    }
    let window = &buf[start..buf.len().min(start + MAX_HEAD)];
    let Some(head_len) = find_head_end(window) else {
        if buf.len() - start >= MAX_HEAD {
            return Err(ParseError::TooLarge);
        }
        return Ok(None);
    };
    let head = &window[..head_len];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or(&[]);
    let (method, target, minor) = parse_request_line(request_line)?;
    let path = decode_path(target)?;

    let mut close = false;
    let mut keep_alive_token = false;
    let mut has_body = false;
    let mut content_length: Option<u64> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = parse_header(line)?;
        if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',') {
                let token = trim(token);
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive_token = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_content_length(value)?;
            if content_length.is_some_and(|c| c != n) {
                return Err(ParseError::Malformed("conflicting content-length"));
            }
            content_length = Some(n);
            has_body |= n > 0;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            has_body = true;
        }
    }
    let keep_alive = !close && (minor >= 1 || keep_alive_token);
    let request = Request {
        method,
        target: String::from_utf8_lossy(target).into_owned(),
        path,
        minor,
        keep_alive,
        has_body,
    };
    Ok(Some((request, start + head_len)))
}

/// Length of the head including its terminating empty line, if complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let rest = &buf[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_request_line(line: &[u8]) -> Result<(Method, &[u8], u8), ParseError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed("request line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Malformed("method"));
    }
    if !target.starts_with(b"/") || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Err(ParseError::Malformed("request target"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(ParseError::Malformed("version")),
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        other => Method::Other(String::from_utf8_lossy(other).into_owned()),
    };
    Ok((method, target, minor))
}

fn parse_header(line: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return Err(ParseError::Malformed("header without colon"));
    };
    let name = &line[..colon];
    // Also rejects obsolete line folding (a line starting with whitespace).
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(ParseError::Malformed("header name"));
    }
    let value = trim(&line[colon + 1..]);
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::Malformed("header value"));
    }
    Ok((name, value))
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn parse_content_length(value: &[u8]) -> Result<u64, ParseError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Malformed("content-length"));
    }
    value.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(ParseError::Malformed("content-length"))
    })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The target's path (before `?` / `#`), percent-decoded; must be UTF-8 without NUL.
fn decode_path(target: &[u8]) -> Result<String, ParseError> {
    let end = target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len());
    let raw = &target[..end];
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(ParseError::Malformed("percent-encoding"));
            };
            out.push((h << 4) | l);
            i += 3;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    if out.contains(&0) {
        return Err(ParseError::Malformed("NUL in path"));
    }
    String::from_utf8(out).map_err(|_| ParseError::Malformed("path is not UTF-8"))
}

/// Turns a decoded request path into a path relative to the root: empty and `.` segments
/// dropped, `None` when a `..` segment (or a backslash, a Windows separator) appears — the
/// request would leave the root, and is refused rather than clamped.
pub fn relative_path(path: &str) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s if s.contains('\\') => return None,
            s => rel.push(s),
        }
    }
    Some(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testkit::Rng;

    fn ok(input: &[u8]) -> (Request, usize) {
        match parse_request(input) {
            Ok(Some(r)) => r,
            other => panic!("{:?} → {other:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn a_simple_get() {
        let input = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        let (req, n) = ok(input);
        assert_eq!(req.method, Method::Get);
        assert_eq!(req.path, "/index.html");
        assert_eq!(req.minor, 1);
        assert!(req.keep_alive);
        assert!(!req.has_body);
        assert_eq!(&input[n..], b"GET /next");
    }

    #[test]
    fn incomplete_heads_ask_for_more() {
        let full = b"HEAD /a%20b?x=1 HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n";
        for cut in 0..full.len() {
            assert_eq!(parse_request(&full[..cut]), Ok(None), "cut at {cut}");
        }
        let (req, n) = ok(full);
        assert_eq!(n, full.len());
        assert_eq!(req.method, Method::Head);
        assert_eq!(req.path, "/a b");
        assert_eq!(req.target, "/a%20b?x=1");
        assert!(req.keep_alive);
    }

    #[test]
    fn connection_semantics() {
        assert!(!ok(b"GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(
            !ok(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !ok(b"GET / HTTP/1.1\r\nconnection: keep-alive, CLOSE\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            ok(b"GET / HTTP/1.1\r\nConnection: upgrade\r\n\r\n")
                .0
                .keep_alive
        );
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        let (req, n) = ok(b"\r\n\nGET /x HTTP/1.1\nHost: y\n\nrest");
        assert_eq!(req.path, "/x");
        assert_eq!(n, 3 + 25);
    }

    #[test]
    fn bodies_are_flagged() {
        assert!(
            ok(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
                .0
                .has_body
        );
        assert!(
            !ok(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
                .0
                .has_body
        );
        assert!(
            ok(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .0
                .has_body
        );
        assert_eq!(
            ok(b"PUT / HTTP/1.1\r\n\r\n").0.method,
            Method::Other("PUT".into())
        );
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"GET / HTTP/1.1 extra\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET relative HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET /%zz HTTP/1.1\r\n\r\n",
            b"GET /%2 HTTP/1.1\r\n\r\n",
            b"GET /%00 HTTP/1.1\r\n\r\n",
            b"GET /%ff HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(ParseError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn oversized_heads() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request(&big), Err(ParseError::TooLarge));
        assert_eq!(
            parse_request(&vec![b'\n'; MAX_HEAD + 2]),
            Err(ParseError::TooLarge)
        );
        // Just under the limit still waits for more.
        assert_eq!(parse_request(&big[..MAX_HEAD - 1]), Ok(None));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(relative_path("/"), Some(PathBuf::new()));
        assert_eq!(relative_path("/a//./b/"), Some(PathBuf::from("a/b")));
        assert_eq!(relative_path("/a/../b"), None);
        assert_eq!(relative_path("/.."), None);
        assert_eq!(relative_path("/a\\..\\b"), None);
        assert_eq!(relative_path("/..."), Some(PathBuf::from("...")));
        // Encoded dots and slashes are decoded by the parser first.
        let (req, _) = ok(b"GET /%2e%2E/%2E%2e%2fetc/passwd HTTP/1.1\r\n\r\n");
        assert_eq!(relative_path(&req.path), None);
    }

    #[test]
    fn never_panics_on_random_or_mutated_input() {
        let seeds: [&[u8]; 4] = [
            b"GET /index.html HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
            b"HEAD /%2e%2e/x?y HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"\r\nGET / HTTP/1.1\nA:b\n\n",
        ];
        let alphabet = b"GETHEAD /%:\r\n\t?#.2eEfF0aZ\x00\xff-,";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..100_000 {
            let mut input = seeds[i % seeds.len()].to_vec();
            match i % 5 {
                0 => {
                    // Fully random bytes.
                    let len = rng.below(300);
                    input = (0..len).map(|_| rng.next() as u8).collect();
                }
                _ => {
                    for _ in 0..=rng.below(8) {
                        let at = rng.below(input.len() + 1);
                        match rng.below(4) {
                            0 if at < input.len() => input[at] = rng.next() as u8,
                            1 if at < input.len() => {
                                input.remove(at);
                            }
                            2 => input.insert(at, alphabet[rng.below(alphabet.len())]),
                            _ => input.truncate(at),
                        }
                    }
                }
            }
            if let Ok(Some((req, n))) = parse_request(&input) {
                assert!(n <= input.len());
                assert!(req.path.starts_with('/'));
                let _ = relative_path(&req.path);
            }
        }
        // Long inputs around the size limit.
        for len in [MAX_HEAD - 1, MAX_HEAD, MAX_HEAD + 1, 3 * MAX_HEAD] {
            let input: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())])
                .collect();
            let _ = parse_request(&input);
        }
    }
}
