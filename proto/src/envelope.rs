//! The JSON-RPC 2.0 envelope: requests, responses, notifications, and [`Message`], which decodes
//! any incoming line into one of them.
//!
//! The `"jsonrpc": "2.0"` member is written on every outgoing message and checked on every
//! incoming one; it is not a field of the Rust types. Batches (JSON arrays) are not supported and
//! are answered with -32600.

use std::fmt;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{DecodeError, ErrorCode, ResponseError};
use crate::strict_json;

/// The only JSON-RPC version spoken.
pub const JSONRPC_VERSION: &str = "2.0";

/// Longest string id, in bytes ([`Message::parse`] refuses a longer one).
pub const MAX_ID_LEN: usize = 256;

/// A request id, chosen by the client and echoed in the response: an integer from -2^63 to
/// 2^64 − 1 (the ranges of `i64` and `u64`), written without fraction or exponent, or a
/// string of at most [`MAX_ID_LEN`] bytes. Anything else is refused with `-32600`.
///
/// # Examples
///
/// ```
/// use proto::Id;
/// assert_eq!(serde_json::to_string(&Id::from(7)).unwrap(), "7");
/// assert_eq!(serde_json::from_str::<Id>("\"a\"").unwrap(), Id::from("a"));
/// assert_eq!(Id::from_u64(u64::MAX), Id::Unsigned(u64::MAX));
/// assert_eq!(Id::from_u64(7), Id::Number(7));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Id {
    /// An integer id that fits `i64` (every integer id up to `i64::MAX`).
    Number(i64),
    /// A string id.
    String(String),
    /// An integer id above `i64::MAX` (up to `u64::MAX`); smaller ones are always
    /// [`Id::Number`], so an id has one form.
    Unsigned(u64),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Number(n) => write!(f, "{n}"),
            Id::Unsigned(n) => write!(f, "{n}"),
            Id::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Number(n)
    }
}

impl Id {
    /// The id of an unsigned integer, in its one form ([`Id::Number`] up to `i64::MAX`).
    pub fn from_u64(n: u64) -> Id {
        match i64::try_from(n) {
            Ok(n) => Id::Number(n),
            Err(_) => Id::Unsigned(n),
        }
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::String(s.to_owned())
    }
}

impl From<String> for Id {
    fn from(s: String) -> Self {
        Id::String(s)
    }
}

/// The error member of a failed [`Response`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code; see [`ErrorCode`]'s constants.
    pub code: ErrorCode,
    /// A one-line description meant for a person.
    pub message: String,
    /// Optional structured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// An error without data.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorObject {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with structured data attached.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code.0)
    }
}

impl std::error::Error for ErrorObject {}

/// A call that expects a [`Response`] with the same id.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Echoed in the response.
    pub id: Id,
    /// The method name; see [`methods`](crate::methods).
    pub method: String,
    /// An object (or array) of params; `None` when absent.
    pub params: Option<Value>,
}

impl Request {
    /// A request.
    pub fn new(id: impl Into<Id>, method: impl Into<String>, params: Option<Value>) -> Self {
        Request {
            id: id.into(),
            method: method.into(),
            params,
        }
    }
}

/// The answer to a [`Request`]: a result or an error, never both.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The id of the request answered; `None` (JSON `null`) when the request's id could not be read.
    pub id: Option<Id>,
    /// `Ok(result)` or `Err(error)`.
    pub outcome: Result<Value, ErrorObject>,
}

impl Response {
    /// A successful response carrying `result` as given.
    pub fn ok(id: Id, result: Value) -> Self {
        Response {
            id: Some(id),
            outcome: Ok(result),
        }
    }

    /// A successful response carrying a typed result.
    ///
    /// If `result` cannot be represented as JSON (not possible for this crate's types) the
    /// response is an internal error instead.
    pub fn result<T: Serialize + ?Sized>(id: Id, result: &T) -> Self {
        match serde_json::to_value(result) {
            Ok(v) => Response::ok(id, v),
            Err(e) => Response::error(
                Some(id),
                ErrorObject::new(
                    ErrorCode::INTERNAL_ERROR,
                    format!("cannot encode result: {e}"),
                ),
            ),
        }
    }

    /// An error response. `id` is `None` when the request's id was unreadable.
    pub fn error(id: Option<Id>, error: ErrorObject) -> Self {
        Response {
            id,
            outcome: Err(error),
        }
    }

    /// The typed result, or the error the server sent, or [`ResponseError::Malformed`] if the
    /// result does not have the shape of `T`.
    ///
    /// # Errors
    ///
    /// [`ResponseError::Remote`] for an error response, [`ResponseError::Malformed`] when the
    /// result does not deserialize into `T`.
    pub fn into_result<T: DeserializeOwned>(self) -> Result<T, ResponseError> {
        match self.outcome {
            Ok(v) => serde_json::from_value(v).map_err(ResponseError::Malformed),
            Err(e) => Err(ResponseError::Remote(e)),
        }
    }
}

/// A message without id that expects no answer (the server's `hello` and subscription pushes).
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification name; see [`methods`](crate::methods).
    pub method: String,
    /// Its params; `None` when absent.
    pub params: Option<Value>,
}

impl Notification {
    /// A notification.
    pub fn new(method: impl Into<String>, params: Option<Value>) -> Self {
        Notification {
            method: method.into(),
            params,
        }
    }
}

/// Any JSON-RPC 2.0 message: what one line of the protocol decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A call (has `id` and `method`).
    Request(Request),
    /// An answer (has `result` or `error`).
    Response(Response),
    /// A one-way message (has `method`, no `id`).
    Notification(Notification),
}

impl Message {
    /// Decodes one line (without its newline).
    ///
    /// # Errors
    ///
    /// [`DecodeError::Parse`] if the text is not JSON, [`DecodeError::InvalidRequest`] if it is
    /// JSON but not a JSON-RPC 2.0 message (the error carries the id when one was readable).
    ///
    /// # Examples
    ///
    /// ```
    /// use proto::{Message, ErrorCode};
    /// let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
    /// assert!(matches!(m, Message::Request(ref r) if r.method == "ping"));
    /// let e = Message::parse(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#).unwrap_err();
    /// assert_eq!(e.code(), ErrorCode::INVALID_REQUEST);
    /// ```
    pub fn parse(line: &str) -> Result<Message, DecodeError> {
        let (value, duplicate) = strict_json::from_str(line).map_err(|e| DecodeError::Parse {
            message: e.to_string(),
        })?;
        Message::classify(value, duplicate)
    }

    /// Classifies an already-parsed JSON value. (A value cannot show duplicate member names
    /// any more: [`Message::parse`] refuses them in text.)
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidRequest`] if `value` is not a JSON-RPC 2.0 message.
    pub fn from_value(value: Value) -> Result<Message, DecodeError> {
        Message::classify(value, None)
    }

    /// [`Message::from_value`], refusing the message when the text it came from had a member
    /// name twice in one object (`duplicate`): which of the two would count is not defined by
    /// JSON, so neither does.
    fn classify(value: Value, duplicate: Option<String>) -> Result<Message, DecodeError> {
        let mut obj = match value {
            Value::Object(obj) => obj,
            Value::Array(_) => return Err(invalid("batch requests are not supported", None)),
            other => {
                return Err(invalid(
                    format!("expected a JSON object, got {}", json_kind(&other)),
                    None,
                ))
            }
        };

        // Read the id first so that later errors can carry it (not a duplicated one: which
        // of the two would it be?).
        let id = match obj.remove("id") {
            None => IdMember::Absent,
            Some(Value::Null) => IdMember::Null,
            Some(Value::String(s)) if s.len() <= MAX_ID_LEN => IdMember::Id(Id::String(s)),
            Some(Value::String(s)) => {
                return Err(invalid(
                    format!(
                        "`id` must be an integer or a string of at most {MAX_ID_LEN} bytes, got a string of {} bytes",
                        s.len()
                    ),
                    None,
                ))
            }
            Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
                (Some(n), _) => IdMember::Id(Id::Number(n)),
                (None, Some(n)) => IdMember::Id(Id::Unsigned(n)),
                (None, None) => {
                    return Err(invalid(
                        format!(
                            "`id` must be an integer from -2^63 to 2^64-1 (no fraction or exponent) or a string, got {n}"
                        ),
                        None,
                    ))
                }
            },
            Some(other) => {
                return Err(invalid(
                    format!(
                        "`id` must be an integer or a string, got {}",
                        json_kind(&other)
                    ),
                    None,
                ))
            }
        };
        let known_id = match &id {
            IdMember::Id(id) if duplicate.as_deref() != Some("id") => Some(id.clone()),
            _ => None,
        };
        if let Some(name) = duplicate {
            return Err(invalid(
                format!("member `{name}` appears twice in one object; each name may appear once"),
                known_id,
            ));
        }

        match obj.remove("jsonrpc") {
            Some(Value::String(v)) if v == JSONRPC_VERSION => {}
            Some(Value::String(v)) => {
                return Err(invalid(
                    format!("unsupported `jsonrpc` version \"{v}\"; expected \"2.0\""),
                    known_id,
                ))
            }
            Some(other) => {
                return Err(invalid(
                    format!(
                        "`jsonrpc` must be the string \"2.0\", got {}",
                        json_kind(&other)
                    ),
                    known_id,
                ))
            }
            None => {
                return Err(invalid(
                    "missing member `jsonrpc` (must be \"2.0\")",
                    known_id,
                ))
            }
        }

        if let Some(method) = obj.remove("method") {
            let Value::String(method) = method else {
                return Err(invalid(
                    format!("`method` must be a string, got {}", json_kind(&method)),
                    known_id,
                ));
            };
            if obj.contains_key("result") || obj.contains_key("error") {
                return Err(invalid(
                    "a message cannot have both `method` and `result`/`error`",
                    known_id,
                ));
            }
            let params = match obj.remove("params") {
                None | Some(Value::Null) => None,
                Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
                Some(other) => {
                    return Err(invalid(
                        format!(
                            "`params` must be an object or an array, got {}",
                            json_kind(&other)
                        ),
                        known_id,
                    ))
                }
            };
            return match id {
                IdMember::Absent => Ok(Message::Notification(Notification { method, params })),
                IdMember::Null => Err(invalid("`id` must not be null in a request", None)),
                IdMember::Id(id) => Ok(Message::Request(Request { id, method, params })),
            };
        }

        let id = match id {
            IdMember::Absent => {
                if obj.contains_key("result") || obj.contains_key("error") {
                    return Err(invalid("a response must have an `id`", None));
                }
                return Err(invalid("missing member `method`", None));
            }
            IdMember::Null => None,
            IdMember::Id(id) => Some(id),
        };
        let outcome = match (obj.remove("result"), obj.remove("error")) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "a response cannot have both `result` and `error`",
                    id,
                ))
            }
            (Some(result), None) => Ok(result),
            (None, Some(error)) => Err(serde_json::from_value::<ErrorObject>(error)
                .map_err(|e| invalid(format!("malformed `error` member: {e}"), id.clone()))?),
            (None, None) => {
                return Err(invalid("missing member `method` (or `result`/`error`)", id))
            }
        };
        Ok(Message::Response(Response { id, outcome }))
    }
}

enum IdMember {
    Absent,
    Null,
    Id(Id),
}

fn invalid(message: impl Into<String>, id: Option<Id>) -> DecodeError {
    DecodeError::InvalidRequest {
        message: message.into(),
        id,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("method", &self.method)?;
        if let Some(p) = &self.params {
            m.serialize_entry("params", p)?;
        }
        m.end()
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        m.serialize_entry("id", &self.id)?;
        match &self.outcome {
            Ok(r) => m.serialize_entry("result", r)?,
            Err(e) => m.serialize_entry("error", e)?,
        }
        m.end()
    }
}

impl Serialize for Notification {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("jsonrpc", JSONRPC_VERSION)?;
        m.serialize_entry("method", &self.method)?;
        if let Some(p) = &self.params {
            m.serialize_entry("params", p)?;
        }
        m.end()
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Message::Request(r) => r.serialize(s),
            Message::Response(r) => r.serialize(s),
            Message::Notification(n) => n.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed;
        let mut duplicate = None;
        let value = strict_json::ValueSeed {
            duplicate: &mut duplicate,
        }
        .deserialize(d)?;
        Message::classify(value, duplicate).map_err(D::Error::custom)
    }
}

macro_rules! deserialize_variant {
    ($ty:ident, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                match Message::deserialize(d)? {
                    Message::$ty(m) => Ok(m),
                    _ => Err(D::Error::custom(concat!("expected a JSON-RPC ", $what))),
                }
            }
        }
    };
}

deserialize_variant!(Request, "request");
deserialize_variant!(Response, "response");
deserialize_variant!(Notification, "notification");

/// Serializes `value` to a JSON value; infallible for this crate's types (string-keyed maps
/// only; non-finite floats become `null`).
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Value {
    match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => {
            debug_assert!(false, "proto type failed to serialize: {e}");
            Value::Object(Map::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(m: &Message) {
        let text = serde_json::to_string(m).unwrap();
        assert!(!text.contains('\n'));
        let back = Message::parse(&text).unwrap();
        assert_eq!(&back, m, "{text}");
        let back: Message = serde_json::from_str(&text).unwrap();
        assert_eq!(&back, m);
    }

    #[test]
    fn roundtrips() {
        roundtrip(&Message::Request(Request::new(1, "ping", None)));
        roundtrip(&Message::Request(Request::new(
            "abc",
            "handles",
            Some(json!({"limit": 3})),
        )));
        roundtrip(&Message::Request(Request::new(
            -5,
            "x",
            Some(json!([1, 2])),
        )));
        roundtrip(&Message::Response(Response::ok(
            Id::from(1),
            json!({"as_of_ms": 5}),
        )));
        roundtrip(&Message::Response(Response::ok(Id::from("s"), Value::Null)));
        roundtrip(&Message::Response(Response::error(
            None,
            ErrorObject::new(ErrorCode::PARSE_ERROR, "bad"),
        )));
        roundtrip(&Message::Response(Response::error(
            Some(Id::from(9)),
            ErrorObject::new(ErrorCode(-1), "custom").with_data(json!({"k": [1]})),
        )));
        roundtrip(&Message::Notification(Notification::new(
            "hello",
            Some(json!({"a": 1})),
        )));
        roundtrip(&Message::Notification(Notification::new("x", None)));
    }

    #[test]
    fn typed_deserialize() {
        let r: Request =
            serde_json::from_str(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).unwrap();
        assert_eq!(r, Request::new(1, "ping", None));
        assert!(
            serde_json::from_str::<Response>(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)
                .is_err()
        );
        let n: Notification =
            serde_json::from_str(r#"{"jsonrpc":"2.0","method":"hello","params":{}}"#).unwrap();
        assert_eq!(n.params, Some(json!({})));
    }

    #[test]
    fn wire_form() {
        let text = serde_json::to_string(&Request::new(1, "ping", None)).unwrap();
        assert_eq!(text, r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
        let text = serde_json::to_string(&Response::error(
            None,
            ErrorObject::new(ErrorCode::PARSE_ERROR, "bad"),
        ))
        .unwrap();
        assert_eq!(
            text,
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"bad"}}"#
        );
    }

    fn err(line: &str) -> DecodeError {
        Message::parse(line).unwrap_err()
    }

    #[test]
    fn malformed() {
        for garbage in ["", "nope", "{", "{\"a\":}", "\u{0}", "[1,", "{'a':1}"] {
            assert_eq!(err(garbage).code(), ErrorCode::PARSE_ERROR, "{garbage:?}");
        }
        let cases = [
            ("1", None),
            ("\"ping\"", None),
            ("null", None),
            ("[]", None),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, None),
            (r#"{"id":1,"method":"ping"}"#, Some(Id::from(1))),
            (
                r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#,
                Some(Id::from("a")),
            ),
            (
                r#"{"jsonrpc":2.0,"id":1,"method":"ping"}"#,
                Some(Id::from(1)),
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, Some(Id::from(1))),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, Some(Id::from(1))),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":3}"#,
                Some(Id::from(1)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":"x"}"#,
                Some(Id::from(1)),
            ),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, None),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, None),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":""}}"#,
                Some(Id::from(1)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x"}}"#,
                Some(Id::from(1)),
            ),
            (r#"{"jsonrpc":"2.0","result":1}"#, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"a","result":1}"#,
                Some(Id::from(1)),
            ),
        ];
        for (line, id) in cases {
            let e = err(line);
            assert_eq!(e.code(), ErrorCode::INVALID_REQUEST, "{line}: {e}");
            assert_eq!(e.id(), id.as_ref(), "{line}");
            let obj = e.to_error_object();
            assert_eq!(obj.code, ErrorCode::INVALID_REQUEST);
            assert!(obj.message.starts_with("invalid request: "));
        }
        assert!(err(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#)
            .to_string()
            .contains("unsupported `jsonrpc` version \"1.0\""));
    }

    #[test]
    fn ids_span_i64_and_u64_and_nothing_else() {
        let id_of = |id: &str| match Message::parse(&format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#
        )) {
            Ok(Message::Request(r)) => Ok(r.id),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        // Issue 13: u64::MAX was refused while i64::MIN was accepted.
        assert_eq!(
            id_of("18446744073709551615").unwrap(),
            Id::Unsigned(u64::MAX)
        );
        assert_eq!(id_of("-9223372036854775808").unwrap(), Id::Number(i64::MIN));
        assert_eq!(id_of("9223372036854775807").unwrap(), Id::Number(i64::MAX));
        assert_eq!(id_of("9223372036854775808").unwrap(), Id::Unsigned(1 << 63));
        assert_eq!(id_of("0").unwrap(), Id::Number(0));
        for bad in [
            "18446744073709551616",
            "-9223372036854775809",
            "1.0",
            "1e3",
            "-0.5",
        ] {
            let e = id_of(bad).unwrap_err();
            assert_eq!(e.code(), ErrorCode::INVALID_REQUEST, "{bad}");
            assert!(e.to_string().contains("2^64-1"), "{bad}: {e}");
        }
        let longest = format!("\"{}\"", "x".repeat(MAX_ID_LEN));
        assert_eq!(id_of(&longest).unwrap(), Id::from("x".repeat(MAX_ID_LEN)));
        let too_long = format!("\"{}\"", "x".repeat(MAX_ID_LEN + 1));
        let e = id_of(&too_long).unwrap_err();
        assert_eq!(e.code(), ErrorCode::INVALID_REQUEST);
        assert!(e.to_string().contains("at most 256 bytes"), "{e}");
        // Echoed as sent, both ways.
        let text = serde_json::to_string(&Response::ok(Id::Unsigned(u64::MAX), json!(1))).unwrap();
        assert!(text.contains(r#""id":18446744073709551615"#), "{text}");
        assert_eq!(
            serde_json::from_str::<Id>("18446744073709551615").unwrap(),
            Id::Unsigned(u64::MAX)
        );
        assert_eq!(Id::from_u64(5), Id::Number(5));
    }

    #[test]
    fn a_member_twice_is_an_invalid_request() {
        // Issue 13: serde_json keeps the last, so this ran `config.set`.
        let e = err(r#"{"jsonrpc":"2.0","id":7,"method":"ping","method":"config.set"}"#);
        assert_eq!(e.code(), ErrorCode::INVALID_REQUEST);
        assert_eq!(
            e.id(),
            Some(&Id::from(7)),
            "the id is known, so it is echoed"
        );
        assert!(e.to_string().contains("`method` appears twice"), "{e}");
        // A duplicated id is not echoed (which one?).
        let e = err(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#);
        assert_eq!(e.code(), ErrorCode::INVALID_REQUEST);
        assert_eq!(e.id(), None);
        // At any depth: params too.
        let e = err(
            r#"{"jsonrpc":"2.0","id":1,"method":"config.set","params":{"threadpool_size":2,"threadpool_size":1024}}"#,
        );
        assert_eq!(e.code(), ErrorCode::INVALID_REQUEST);
        assert!(e.to_string().contains("`threadpool_size`"), "{e}");
        // Through serde too (a client decoding with serde_json::from_str).
        assert!(serde_json::from_str::<Message>(
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"status"}"#
        )
        .is_err());
        // Not JSON at all is still a parse error, not this.
        assert_eq!(
            err(r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":}"#).code(),
            ErrorCode::PARSE_ERROR
        );
    }

    #[test]
    fn lenient_envelope() {
        // Unknown members are ignored, null params mean none.
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":null,"x":1}"#)
            .unwrap();
        assert_eq!(m, Message::Request(Request::new(1, "ping", None)));
        let m = Message::parse(r#"{"jsonrpc":"2.0","id":null,"result":{}}"#).unwrap();
        assert_eq!(
            m,
            Message::Response(Response {
                id: None,
                outcome: Ok(json!({}))
            })
        );
    }

    #[test]
    fn into_result() {
        let r = Response::ok(Id::from(1), json!(5));
        assert_eq!(r.into_result::<u32>().unwrap(), 5);
        let r = Response::ok(Id::from(1), json!("x"));
        assert!(matches!(
            r.into_result::<u32>(),
            Err(ResponseError::Malformed(_))
        ));
        let r = Response::error(Some(Id::from(1)), ErrorObject::new(ErrorCode::BUSY, "busy"));
        match r.into_result::<u32>() {
            Err(ResponseError::Remote(e)) => assert_eq!(e.code, ErrorCode::BUSY),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            Response::result(Id::from(2), &[1, 2]).outcome,
            Ok(json!([1, 2]))
        );
    }
}
