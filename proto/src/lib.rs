//! loopd control protocol: JSON-RPC 2.0 over newline-delimited JSON on a Unix socket.
//!
//! Shared by the daemon (`loopd`), `loopctl` and `loop-top`; depends on `serde` only.
//!
//! - [`envelope`]: [`Request`], [`Response`], [`Notification`], [`Message`] (decode any line).
//! - [`codec`]: [`LineDecoder`] (bytes → lines, 1 MiB limit) and [`encode`] (message → line).
//! - [`methods`]: method names, params, the typed [`MethodCall`] a server dispatches on, and
//!   [`ServerEvent`], the typed notifications a client receives.
//! - [`snapshot`]: what the daemon returns ([`Status`], [`HandlesResult`], [`Stall`], …).
//! - [`error`]: [`ErrorCode`] and the typed errors, each convertible to an [`ErrorObject`].
//! - [`discovery`]: every endpoint of the runtime directory, asked for `hello` and `status`
//!   (`loopctl ls`, loop-top's fleet view); `std` only.
//!
//! Compatibility: protocol changes only add. Result types ignore unknown fields and default
//! missing ones; string enums that may grow keep unknown values as `Other(String)`. Params are
//! strict: an unknown params field is an error, so typos are caught.
//!
//! # Examples
//!
//! A server's read path:
//!
//! ```
//! use proto::{encode, LineDecoder, Message, MethodCall, Response};
//!
//! let mut decoder = LineDecoder::new();
//! let mut out = Vec::new();
//! for line in decoder.feed(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stauts\"}\n") {
//!     let response = match line {
//!         Err(e) => Response::error(None, e.to_error_object()), // close if e.is_fatal()
//!         Ok(line) => match Message::parse(&line) {
//!             Err(e) => Response::error(e.id().cloned(), e.to_error_object()),
//!             Ok(Message::Request(req)) => match MethodCall::from_request(&req) {
//!                 Err(e) => Response::error(Some(req.id), e.to_error_object()),
//!                 Ok(_call) => unimplemented!("dispatch"),
//!             },
//!             Ok(_) => continue, // notifications and responses from a client are ignored
//!         },
//!     };
//!     out.extend(encode(&response).unwrap());
//! }
//! let text = String::from_utf8(out).unwrap();
//! assert!(text.contains("-32601"));
//! assert!(text.contains("did you mean `status`?"));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

/// Defines a string enum that may grow: known values as variants, anything else kept verbatim in
/// `Other(String)`, serialized as a plain string, `Default` = the first variant.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $(#[$fmeta:meta])* $first:ident => $fs:literal,
            $( $(#[$vmeta:meta])* $variant:ident => $s:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub enum $name {
            $(#[$fmeta])*
            #[default]
            $first,
            $( $(#[$vmeta])* $variant, )*
            /// A value this version of the protocol does not know, kept verbatim so it
            /// round-trips. Build values with `From<&str>` so known names map to their variant.
            Other(String),
        }

        impl $name {
            /// Every value this version of the protocol knows, in wire order.
            pub const KNOWN: &'static [$name] = &[$name::$first, $($name::$variant),*];
            /// The wire names of [`Self::KNOWN`].
            pub const NAMES: &'static [&'static str] = &[$fs, $($s),*];

            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $name::$first => $fs,
                    $( $name::$variant => $s, )*
                    $name::Other(s) => s,
                }
            }

            /// Whether this is a value this version knows (not `Other`).
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $fs => $name::$first,
                    $( $s => $name::$variant, )*
                    other => $name::Other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match $name::from(s.as_str()) {
                    $name::Other(_) => $name::Other(s),
                    known => known,
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::convert::Infallible;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Ok($name::from(s))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name (a string)"))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from(v))
                    }
                    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<$name, E> {
                        Ok($name::from(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

pub mod codec;
pub mod discovery;
pub mod envelope;
pub mod error;
pub mod methods;
pub mod snapshot;
mod strict_json;

pub use codec::{encode, encode_into, LineDecoder, MAX_LINE_LEN, MAX_SERVER_LINE_LEN};
pub use envelope::{
    ErrorObject, Id, Message, Notification, Request, Response, JSONRPC_VERSION, MAX_ID_LEN,
};
pub use error::{CallError, DecodeError, ErrorCode, LineError, ResponseError};
pub use methods::{MethodCall, ServerEvent};
pub use snapshot::*;

/// The protocol version this crate speaks, sent in [`Hello::protocol_version`].
///
/// Bumped only for incompatible changes; additions (new methods, fields, enum values) keep it.
pub const PROTOCOL_VERSION: u32 = 1;
