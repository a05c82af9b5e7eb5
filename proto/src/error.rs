//! Error codes and the typed errors of decoding, dispatching and framing.
//!
//! Every error a server can hit while reading a client's input converts to an
//! [`ErrorObject`] with [`to_error_object`](DecodeError::to_error_object),
//! ready to be sent back in a [`Response`](crate::Response).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::{ErrorObject, Id};

/// A JSON-RPC error code.
///
/// A newtype rather than an enum so that codes this version does not know (a newer daemon's)
/// still parse; compare against the associated constants.
///
/// # Examples
///
/// ```
/// use proto::ErrorCode;
/// assert_eq!(ErrorCode::METHOD_NOT_FOUND.0, -32601);
/// assert_eq!(ErrorCode(-32601).name(), "method not found");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub i64);

impl ErrorCode {
    /// -32700: the line is not valid JSON (or not valid UTF-8).
    pub const PARSE_ERROR: ErrorCode = ErrorCode(-32700);
    /// -32600: valid JSON, but not a valid JSON-RPC 2.0 request (or a line over the size limit).
    pub const INVALID_REQUEST: ErrorCode = ErrorCode(-32600);
    /// -32601: no method of that name.
    pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode(-32601);
    /// -32602: the params do not fit the method (unknown field, wrong type, out of range).
    pub const INVALID_PARAMS: ErrorCode = ErrorCode(-32602);
    /// -32603: the server failed while answering; a bug or an unexpected condition.
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(-32603);
    /// -32001: the server does not speak the protocol version the client needs.
    pub const PROTOCOL_VERSION: ErrorCode = ErrorCode(-32001);
    /// -32002: `unsubscribe` on a connection that has no subscription.
    pub const NOT_SUBSCRIBED: ErrorCode = ErrorCode(-32002);
    /// -32003: the daemon is overloaded (too many connections or subscribers); retry later.
    pub const BUSY: ErrorCode = ErrorCode(-32003);
    /// -32004: the peer may not do this (e.g. another uid calling `config.set`).
    pub const PERMISSION_DENIED: ErrorCode = ErrorCode(-32004);
    /// -32005: `config.set` with a value the daemon refuses (e.g. `threadpool_size` 0, a bad log filter).
    pub const INVALID_CONFIG: ErrorCode = ErrorCode(-32005);
    /// -32006: the thing asked for is not (or no longer) kept, e.g. `stalls` or `trace` for a
    /// stall id whose record or window was evicted.
    pub const NOT_FOUND: ErrorCode = ErrorCode(-32006);

    /// Every code this version of the protocol defines.
    pub const KNOWN: &'static [ErrorCode] = &[
        Self::PARSE_ERROR,
        Self::INVALID_REQUEST,
        Self::METHOD_NOT_FOUND,
        Self::INVALID_PARAMS,
        Self::INTERNAL_ERROR,
        Self::PROTOCOL_VERSION,
        Self::NOT_SUBSCRIBED,
        Self::BUSY,
        Self::PERMISSION_DENIED,
        Self::INVALID_CONFIG,
        Self::NOT_FOUND,
    ];

    /// A short human name for the code (`"unknown error"` for codes this version does not know).
    pub fn name(self) -> &'static str {
        match self {
            Self::PARSE_ERROR => "parse error",
            Self::INVALID_REQUEST => "invalid request",
            Self::METHOD_NOT_FOUND => "method not found",
            Self::INVALID_PARAMS => "invalid params",
            Self::INTERNAL_ERROR => "internal error",
            Self::PROTOCOL_VERSION => "protocol version unsupported",
            Self::NOT_SUBSCRIBED => "not subscribed",
            Self::BUSY => "daemon busy",
            Self::PERMISSION_DENIED => "permission denied",
            Self::INVALID_CONFIG => "invalid config value",
            Self::NOT_FOUND => "not found",
            ErrorCode(-32099..=-32000) => "server error",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// A line that is not a JSON-RPC 2.0 message; see [`Message::parse`](crate::Message::parse).
#[derive(Debug, Clone, PartialEq)]
pub enum DecodeError {
    /// Not JSON at all (code -32700).
    Parse {
        /// What the JSON parser said, with line and column.
        message: String,
    },
    /// JSON, but not a JSON-RPC 2.0 message (code -32600).
    InvalidRequest {
        /// What is wrong, in words.
        message: String,
        /// The message's id, when one could be read, so the error response can carry it.
        id: Option<Id>,
    },
}

impl DecodeError {
    /// The JSON-RPC code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Parse { .. } => ErrorCode::PARSE_ERROR,
            DecodeError::InvalidRequest { .. } => ErrorCode::INVALID_REQUEST,
        }
    }

    /// The id of the offending message, if it had a readable one.
    pub fn id(&self) -> Option<&Id> {
        match self {
            DecodeError::Parse { .. } => None,
            DecodeError::InvalidRequest { id, .. } => id.as_ref(),
        }
    }

    /// The error object to send back to the peer.
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject::new(self.code(), self.to_string())
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Parse { message } => write!(f, "parse error: {message}"),
            DecodeError::InvalidRequest { message, .. } => write!(f, "invalid request: {message}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A well-formed request naming a method that does not exist or with params that do not fit;
/// see [`MethodCall::parse`](crate::MethodCall::parse).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// No such method (code -32601).
    MethodNotFound {
        /// The method the client asked for.
        method: String,
        /// The closest known method name, if one is close enough to be a typo.
        suggestion: Option<&'static str>,
    },
    /// The params do not fit the method (code -32602).
    InvalidParams {
        /// The method called.
        method: String,
        /// What is wrong, in words (e.g. ``unknown field `sortt`, expected one of ...``).
        detail: String,
    },
    /// A `config.set` value out of range (code -32005).
    InvalidConfig {
        /// The config field.
        field: &'static str,
        /// What is wrong, in words.
        detail: String,
    },
}

impl CallError {
    /// The JSON-RPC code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            CallError::MethodNotFound { .. } => ErrorCode::METHOD_NOT_FOUND,
            CallError::InvalidParams { .. } => ErrorCode::INVALID_PARAMS,
            CallError::InvalidConfig { .. } => ErrorCode::INVALID_CONFIG,
        }
    }

    /// The error object to send back to the peer.
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject::new(self.code(), self.to_string())
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::MethodNotFound { method, suggestion } => {
                write!(f, "unknown method `{method}`; ")?;
                if let Some(s) = suggestion {
                    write!(f, "did you mean `{s}`? ")?;
                }
                write!(f, "known methods: {}", crate::methods::ALL.join(", "))
            }
            CallError::InvalidParams { method, detail } => {
                write!(f, "invalid params for `{method}`: {detail}")
            }
            CallError::InvalidConfig { field, detail } => {
                write!(f, "invalid config value for `{field}`: {detail}")
            }
        }
    }
}

impl std::error::Error for CallError {}

/// A line the [`LineDecoder`](crate::LineDecoder) could not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    /// The pending line grew past the limit. Fatal: the server answers with an error and closes
    /// the connection. (The decoder itself resynchronises at the next newline.)
    LineTooLong {
        /// The limit, in bytes, excluding the line terminator.
        limit: usize,
    },
    /// The line is not valid UTF-8. Not fatal: the decoder goes on with the next line.
    InvalidUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

impl LineError {
    /// Whether the connection should be closed (only [`LineError::LineTooLong`]).
    pub fn is_fatal(&self) -> bool {
        matches!(self, LineError::LineTooLong { .. })
    }

    /// The JSON-RPC code for this error: -32600 for too long, -32700 for bad UTF-8.
    pub fn code(&self) -> ErrorCode {
        match self {
            LineError::LineTooLong { .. } => ErrorCode::INVALID_REQUEST,
            LineError::InvalidUtf8 { .. } => ErrorCode::PARSE_ERROR,
        }
    }

    /// The error object to send back to the peer (with a null id).
    pub fn to_error_object(&self) -> ErrorObject {
        ErrorObject::new(self.code(), self.to_string())
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::LineTooLong { limit } => {
                write!(f, "line longer than the limit of {limit} bytes")
            }
            LineError::InvalidUtf8 { valid_up_to } => {
                write!(
                    f,
                    "line is not valid UTF-8 (invalid byte after {valid_up_to} valid bytes)"
                )
            }
        }
    }
}

impl std::error::Error for LineError {}

/// Why a client could not get a typed result out of a [`Response`](crate::Response).
#[derive(Debug)]
pub enum ResponseError {
    /// The server answered with an error.
    Remote(ErrorObject),
    /// The result did not have the expected shape (a server speaking another protocol?).
    Malformed(serde_json::Error),
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Remote(e) => write!(f, "daemon error: {e}"),
            ResponseError::Malformed(e) => write!(f, "malformed result from daemon: {e}"),
        }
    }
}

impl std::error::Error for ResponseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResponseError::Remote(e) => Some(e),
            ResponseError::Malformed(e) => Some(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_names_and_are_distinct() {
        for (i, a) in ErrorCode::KNOWN.iter().enumerate() {
            assert_ne!(a.name(), "unknown error");
            for b in &ErrorCode::KNOWN[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(ErrorCode(-32050).name(), "server error");
        assert_eq!(ErrorCode(7).name(), "unknown error");
        assert_eq!(ErrorCode::BUSY.to_string(), "-32003 (daemon busy)");
    }

    #[test]
    fn errors_map_to_codes() {
        let e = DecodeError::Parse {
            message: "x".into(),
        };
        assert_eq!(e.to_error_object().code, ErrorCode::PARSE_ERROR);
        let e = CallError::MethodNotFound {
            method: "foo".into(),
            suggestion: None,
        };
        assert_eq!(e.to_error_object().code, ErrorCode::METHOD_NOT_FOUND);
        assert!(e
            .to_string()
            .starts_with("unknown method `foo`; known methods: ping, status"));
        assert!(LineError::LineTooLong { limit: 1 }.is_fatal());
        assert!(!LineError::InvalidUtf8 { valid_up_to: 0 }.is_fatal());
        assert_eq!(
            LineError::LineTooLong { limit: 1 }.code(),
            ErrorCode::INVALID_REQUEST
        );
    }
}
