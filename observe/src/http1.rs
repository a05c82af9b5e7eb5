//! HTTP/1.x as both of loopd's HTTP servers speak it — the `http` service and the metrics
//! endpoint: one request-head parser ([`parse_request`], fuzzed), the statuses they answer
//! with, and one way to write a response head. Both servers only read request heads: a
//! request that announces a body is answered and its connection closed, never read.

mod parse;

pub use parse::{parse_request, relative_path, Method, ParseError, Request, MAX_HEAD};

/// The statuses loopd's HTTP servers answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 200.
    Ok,
    /// 400: a malformed request head.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 405: a method other than GET or HEAD (answered with `Allow: GET, HEAD`).
    MethodNotAllowed,
    /// 413: the request announces a body, which loopd never reads.
    PayloadTooLarge,
    /// 431: the request head is larger than [`MAX_HEAD`].
    HeaderFieldsTooLarge,
    /// 500.
    InternalError,
    /// 503: e.g. `/healthz` while a loop is stalled.
    ServiceUnavailable,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::PayloadTooLarge => 413,
            Status::HeaderFieldsTooLarge => 431,
            Status::InternalError => 500,
            Status::ServiceUnavailable => 503,
        }
    }

    /// The reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::PayloadTooLarge => "Payload Too Large",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::ServiceUnavailable => "Service Unavailable",
        }
    }

    /// The answer to a request head the parser refused.
    pub fn for_parse_error(e: ParseError) -> Status {
        match e {
            ParseError::TooLarge => Status::HeaderFieldsTooLarge,
            ParseError::Malformed(_) => Status::BadRequest,
        }
    }

    /// Headers that must come with this status (`Allow` with 405).
    pub fn extra_headers(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Status::MethodNotAllowed => &[("Allow", "GET, HEAD")],
            _ => &[],
        }
    }
}

/// A response head: status line, `Server`, `Content-Type`, `Content-Length`, `Connection`
/// (`keep-alive` or `close`), then `extra` and the blank line.
pub fn response_head(
    status: Status,
    content_type: &str,
    content_length: u64,
    keep_alive: bool,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nServer: loopd\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nConnection: {}\r\n",
        status.code(),
        status.reason(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in extra {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_well_formed() {
        let status = Status::MethodNotAllowed;
        let head = response_head(status, "text/plain", 3, false, status.extra_headers());
        let text = String::from_utf8(head).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("\r\nContent-Length: 3\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.ends_with("\r\nAllow: GET, HEAD\r\n\r\n"));
    }

    #[test]
    fn parse_errors_map_to_their_status() {
        assert_eq!(Status::for_parse_error(ParseError::TooLarge).code(), 431);
        assert_eq!(
            Status::for_parse_error(ParseError::Malformed("x")).code(),
            400
        );
    }
}
