//! Methods and notifications: names, params, results, and the typed [`MethodCall`] (server side)
//! and [`ServerEvent`] (client side).
//!
//! | method | params | result |
//! |---|---|---|
//! | `ping` | – | [`PingResult`] |
//! | `status` | – | [`Status`] |
//! | `handles` | [`HandlesParams`] | [`HandlesResult`] |
//! | `requests` | [`RequestsParams`] | [`RequestsResult`](crate::RequestsResult) |
//! | `threadpool` | – | [`ThreadPoolStatus`](crate::ThreadPoolStatus) |
//! | `stalls` | [`StallsParams`] | [`StallsResult`](crate::StallsResult) |
//! | `subscribe` | [`SubscribeParams`] | [`SubscribeResult`] |
//! | `unsubscribe` | [`UnsubscribeParams`] | [`UnsubscribeResult`] |
//! | `trace` | [`TraceParams`] | Chrome Trace Event JSON ([`serde_json::Value`]) |
//! | `config.get` | – | [`ConfigResult`](crate::ConfigResult) |
//! | `config.set` | [`ConfigSetParams`] | [`ConfigResult`](crate::ConfigResult) (after the change) |
//!
//! Notifications from the server: `hello` ([`Hello`]), and for subscribers `status`
//! ([`Status`]), `stalls` ([`StallEvent`]), `handles` ([`HandlesResult`]), `dropped`
//! ([`Dropped`]). A topic's notifications have the topic's name.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope::{to_json, Id, Notification, Request};
use crate::error::CallError;
use crate::snapshot::{Dropped, HandleType, HandlesResult, Hello, RequestType, StallEvent, Status};

/// `ping`: liveness check.
pub const PING: &str = "ping";
/// `status`: the daemon at a glance.
pub const STATUS: &str = "status";
/// `handles`: list handles.
pub const HANDLES: &str = "handles";
/// `requests`: list in-flight requests.
pub const REQUESTS: &str = "requests";
/// `threadpool`: the thread pool and its workers.
pub const THREADPOOL: &str = "threadpool";
/// `stalls`: the stall in progress and recent stalls.
pub const STALLS: &str = "stalls";
/// `subscribe`: start pushing notifications on this connection.
pub const SUBSCRIBE: &str = "subscribe";
/// `unsubscribe`: stop pushing.
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// `trace`: the flight recorder as Chrome Trace Event JSON.
pub const TRACE: &str = "trace";
/// `config.get`: the configuration in force.
pub const CONFIG_GET: &str = "config.get";
/// `config.set`: change the runtime-settable configuration.
pub const CONFIG_SET: &str = "config.set";

/// Every method, in documentation order.
pub const ALL: &[&str] = &[
    PING,
    STATUS,
    HANDLES,
    REQUESTS,
    THREADPOOL,
    STALLS,
    SUBSCRIBE,
    UNSUBSCRIBE,
    TRACE,
    CONFIG_GET,
    CONFIG_SET,
];

/// Notification `hello`, sent by the server on connect.
pub const HELLO: &str = "hello";
/// Notification `dropped`: a subscriber missed notifications.
pub const DROPPED: &str = "dropped";

/// Default `subscribe` interval, ms.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Smallest `subscribe` interval, ms (the daemon publishes snapshots every 100 ms).
pub const MIN_INTERVAL_MS: u64 = 100;
/// Largest `subscribe` interval, ms.
pub const MAX_INTERVAL_MS: u64 = 60_000;
/// Largest thread-pool size (as `UV_THREADPOOL_SIZE`).
pub const MAX_THREADPOOL_SIZE: u32 = 1024;
/// Largest stall threshold, ms.
pub const MAX_STALL_THRESHOLD_MS: u64 = 600_000;
/// Largest stall sampling interval, ms.
pub const MAX_STALL_SAMPLE_INTERVAL_MS: u64 = 1_000;
/// The stall sampling interval unless configured, ms.
pub const DEFAULT_STALL_SAMPLE_INTERVAL_MS: u64 = 10;
/// Most samples kept per stall; later ones are counted in `samples_dropped`.
pub const MAX_STALL_SAMPLES: u64 = 1_000;

wire_enum! {
    /// A subscription topic; its notifications have the same name.
    pub enum Topic {
        /// [`Status`] every interval.
        Status => "status",
        /// A [`StallEvent`] when a stall opens or closes (not paced by the interval).
        Stalls => "stalls",
        /// [`HandlesResult`] (unfiltered, all handles) every interval.
        Handles => "handles",
    }
}

/// How `handles` sorts before applying `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandleSort {
    /// By id, ascending (creation order).
    #[default]
    Id,
    /// Oldest first.
    Age,
    /// By type name, then id.
    Type,
    /// Most bytes read first.
    BytesRead,
    /// Most bytes written first.
    BytesWritten,
    /// Most recently active first.
    LastActivity,
}

/// `handles` params; all optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandlesParams {
    /// Only this loop.
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_index: Option<u32>,
    /// Only this type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub handle_type: Option<HandleType>,
    /// Only active (`true`) or inactive (`false`) handles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// Sort order (default: id).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<HandleSort>,
    /// At most this many (after sorting); `total` still counts all matches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `requests` params; all optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestsParams {
    /// Only this loop.
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_index: Option<u32>,
    /// Only this type.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub request_type: Option<RequestType>,
    /// At most this many, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `stalls` params.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StallsParams {
    /// At most this many recent stalls (default: all kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only this stall (in progress or recent); an unknown id is error -32006 (not found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Include each stall's sample profile, where still kept.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub profile: bool,
}

/// `subscribe` params.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscribeParams {
    /// What to receive; at least one. Subscribing again replaces the subscription.
    pub topics: Vec<Topic>,
    /// Push interval for periodic topics, ms ([`MIN_INTERVAL_MS`]..=[`MAX_INTERVAL_MS`],
    /// default [`DEFAULT_INTERVAL_MS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
}

/// `unsubscribe` params.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnsubscribeParams {
    /// Topics to drop; absent = all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<Topic>>,
}

/// `trace` params.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceParams {
    /// Only the last this-many ms of the flight recorder (default: all of it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ms: Option<u64>,
    /// Instead, the window kept with this stall: the iterations from 2 s before it opened
    /// to its end, and its samples on the loop's track. Not with `last_ms`; a stall whose
    /// window is no longer kept is error -32006 (not found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall: Option<u64>,
}

/// `config.set` params: at least one field.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigSetParams {
    /// New thread-pool size, 1..=1024.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threadpool_size: Option<u32>,
    /// New stall threshold, ms, 1..=600000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_threshold_ms: Option<u64>,
    /// New stall sampling interval, ms, 1..=1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stall_sample_interval_ms: Option<u64>,
    /// New tracing filter (`RUST_LOG` syntax); the daemon validates it (-32005 if bad).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_filter: Option<String>,
}

/// The `ping` result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PingResult {
    /// The server's clock, unix ms.
    pub as_of_ms: u64,
}

/// The `subscribe` result: the subscription in force.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SubscribeResult {
    /// When subscribed, unix ms.
    pub as_of_ms: u64,
    /// The topics subscribed.
    pub topics: Vec<Topic>,
    /// The interval in force, ms.
    pub interval_ms: u64,
}

/// The `unsubscribe` result.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsubscribeResult {
    /// When unsubscribed, unix ms.
    pub as_of_ms: u64,
    /// Topics still subscribed (empty after unsubscribing from all).
    pub topics: Vec<Topic>,
}

/// A request decoded and validated: what the server dispatches on.
#[derive(Debug, Clone, PartialEq)]
pub enum MethodCall {
    /// `ping`.
    Ping,
    /// `status`.
    Status,
    /// `handles`.
    Handles(HandlesParams),
    /// `requests`.
    Requests(RequestsParams),
    /// `threadpool`.
    ThreadPool,
    /// `stalls`.
    Stalls(StallsParams),
    /// `subscribe`; `interval_ms` is filled in with the default when absent.
    Subscribe(SubscribeParams),
    /// `unsubscribe`.
    Unsubscribe(UnsubscribeParams),
    /// `trace`.
    Trace(TraceParams),
    /// `config.get`.
    ConfigGet,
    /// `config.set`.
    ConfigSet(ConfigSetParams),
}

impl MethodCall {
    /// Decodes and validates a method call.
    ///
    /// Params may be absent, `null`, or an object; an empty array counts as absent. Unknown
    /// params fields are errors.
    ///
    /// # Errors
    ///
    /// [`CallError::MethodNotFound`] (-32601) for an unknown method,
    /// [`CallError::InvalidParams`] (-32602) for params that do not fit,
    /// [`CallError::InvalidConfig`] (-32005) for `config.set` values out of range.
    ///
    /// # Examples
    ///
    /// ```
    /// use proto::{MethodCall, ErrorCode};
    /// use proto::methods::HandleSort;
    /// use serde_json::json;
    /// let call = MethodCall::parse("handles", Some(json!({"sort": "age", "limit": 5}))).unwrap();
    /// assert!(matches!(call, MethodCall::Handles(p) if p.sort == Some(HandleSort::Age)));
    /// let err = MethodCall::parse("handles", Some(json!({"sortt": "age"}))).unwrap_err();
    /// assert_eq!(err.code(), ErrorCode::INVALID_PARAMS);
    /// assert!(err.to_string().starts_with("invalid params for `handles`: unknown field `sortt`"));
    /// ```
    pub fn parse(method: &str, params: Option<Value>) -> Result<MethodCall, CallError> {
        let call = match method {
            PING => {
                no_params(method, params)?;
                MethodCall::Ping
            }
            STATUS => {
                no_params(method, params)?;
                MethodCall::Status
            }
            HANDLES => {
                let p: HandlesParams = typed_params(method, params)?;
                if let Some(t) = p.handle_type.as_ref().filter(|t| !t.is_known()) {
                    return Err(invalid_params(
                        method,
                        format!(
                            "unknown handle type `{t}`; known types: {}",
                            HandleType::NAMES.join(", ")
                        ),
                    ));
                }
                MethodCall::Handles(p)
            }
            REQUESTS => {
                let p: RequestsParams = typed_params(method, params)?;
                if let Some(t) = p.request_type.as_ref().filter(|t| !t.is_known()) {
                    return Err(invalid_params(
                        method,
                        format!(
                            "unknown request type `{t}`; known types: {}",
                            RequestType::NAMES.join(", ")
                        ),
                    ));
                }
                MethodCall::Requests(p)
            }
            THREADPOOL => {
                no_params(method, params)?;
                MethodCall::ThreadPool
            }
            STALLS => MethodCall::Stalls(typed_params(method, params)?),
            SUBSCRIBE => {
                let mut p: SubscribeParams = typed_params(method, params)?;
                if p.topics.is_empty() {
                    return Err(invalid_params(
                        method,
                        format!(
                            "`topics` must name at least one of: {}",
                            Topic::NAMES.join(", ")
                        ),
                    ));
                }
                check_topics(method, &p.topics)?;
                let interval = p.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
                if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&interval) {
                    return Err(invalid_params(
                        method,
                        format!(
                            "`interval_ms` must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, got {interval}"
                        ),
                    ));
                }
                p.interval_ms = Some(interval);
                MethodCall::Subscribe(p)
            }
            UNSUBSCRIBE => {
                let p: UnsubscribeParams = typed_params(method, params)?;
                if let Some(topics) = &p.topics {
                    check_topics(method, topics)?;
                }
                MethodCall::Unsubscribe(p)
            }
            TRACE => {
                let p: TraceParams = typed_params(method, params)?;
                if p.last_ms == Some(0) {
                    return Err(invalid_params(method, "`last_ms` must be at least 1"));
                }
                if p.last_ms.is_some() && p.stall.is_some() {
                    return Err(invalid_params(
                        method,
                        "give `last_ms` or `stall`, not both",
                    ));
                }
                MethodCall::Trace(p)
            }
            CONFIG_GET => {
                no_params(method, params)?;
                MethodCall::ConfigGet
            }
            CONFIG_SET => {
                let p: ConfigSetParams = typed_params(method, params)?;
                if p == ConfigSetParams::default() {
                    return Err(invalid_params(
                        method,
                        "nothing to set; give at least one of `threadpool_size`, `stall_threshold_ms`, `stall_sample_interval_ms`, `log_filter`",
                    ));
                }
                if let Some(n) = p.threadpool_size {
                    if !(1..=MAX_THREADPOOL_SIZE).contains(&n) {
                        return Err(CallError::InvalidConfig {
                            field: "threadpool_size",
                            detail: format!("must be between 1 and {MAX_THREADPOOL_SIZE}, got {n}"),
                        });
                    }
                }
                if let Some(ms) = p.stall_sample_interval_ms {
                    if !(1..=MAX_STALL_SAMPLE_INTERVAL_MS).contains(&ms) {
                        return Err(CallError::InvalidConfig {
                            field: "stall_sample_interval_ms",
                            detail: format!(
                                "must be between 1 and {MAX_STALL_SAMPLE_INTERVAL_MS}, got {ms}"
                            ),
                        });
                    }
                }
                if let Some(ms) = p.stall_threshold_ms {
                    if !(1..=MAX_STALL_THRESHOLD_MS).contains(&ms) {
                        return Err(CallError::InvalidConfig {
                            field: "stall_threshold_ms",
                            detail: format!(
                                "must be between 1 and {MAX_STALL_THRESHOLD_MS}, got {ms}"
                            ),
                        });
                    }
                }
                if p.log_filter.as_deref().is_some_and(|f| f.trim().is_empty()) {
                    return Err(CallError::InvalidConfig {
                        field: "log_filter",
                        detail: "must not be empty".into(),
                    });
                }
                MethodCall::ConfigSet(p)
            }
            _ => {
                return Err(CallError::MethodNotFound {
                    method: method.to_owned(),
                    suggestion: suggest(method),
                })
            }
        };
        Ok(call)
    }

    /// Decodes and validates `request`'s method and params; see [`MethodCall::parse`].
    ///
    /// # Errors
    ///
    /// As [`MethodCall::parse`].
    pub fn from_request(request: &Request) -> Result<MethodCall, CallError> {
        MethodCall::parse(&request.method, request.params.clone())
    }

    /// The method name.
    pub fn name(&self) -> &'static str {
        match self {
            MethodCall::Ping => PING,
            MethodCall::Status => STATUS,
            MethodCall::Handles(_) => HANDLES,
            MethodCall::Requests(_) => REQUESTS,
            MethodCall::ThreadPool => THREADPOOL,
            MethodCall::Stalls(_) => STALLS,
            MethodCall::Subscribe(_) => SUBSCRIBE,
            MethodCall::Unsubscribe(_) => UNSUBSCRIBE,
            MethodCall::Trace(_) => TRACE,
            MethodCall::ConfigGet => CONFIG_GET,
            MethodCall::ConfigSet(_) => CONFIG_SET,
        }
    }

    /// The params as JSON; `None` when there are none to send.
    pub fn params(&self) -> Option<Value> {
        let v = match self {
            MethodCall::Ping
            | MethodCall::Status
            | MethodCall::ThreadPool
            | MethodCall::ConfigGet => return None,
            MethodCall::Handles(p) => to_json(p),
            MethodCall::Requests(p) => to_json(p),
            MethodCall::Stalls(p) => to_json(p),
            MethodCall::Subscribe(p) => to_json(p),
            MethodCall::Unsubscribe(p) => to_json(p),
            MethodCall::Trace(p) => to_json(p),
            MethodCall::ConfigSet(p) => to_json(p),
        };
        match &v {
            Value::Object(m) if m.is_empty() => None,
            _ => Some(v),
        }
    }

    /// The request a client sends for this call.
    ///
    /// # Examples
    ///
    /// ```
    /// use proto::{MethodCall, methods::StallsParams};
    /// let req = MethodCall::Stalls(StallsParams { limit: Some(3), ..StallsParams::default() })
    ///     .into_request(1);
    /// let line = String::from_utf8(proto::encode(&req).unwrap()).unwrap();
    /// assert_eq!(line, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stalls\",\"params\":{\"limit\":3}}\n");
    /// ```
    pub fn into_request(self, id: impl Into<Id>) -> Request {
        Request::new(id, self.name(), self.params())
    }
}

/// A notification from the server, decoded; what a client's read loop matches on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `hello`, first on every connection.
    Hello(Hello),
    /// `status` (subscription).
    Status(Box<Status>),
    /// `stalls` (subscription).
    Stalls(Box<StallEvent>),
    /// `handles` (subscription).
    Handles(HandlesResult),
    /// `dropped`: the subscriber missed notifications.
    Dropped(Dropped),
    /// A notification this version does not know (from a newer daemon); ignore it.
    Other(Notification),
}

impl ServerEvent {
    /// Decodes a notification. Unknown methods become [`ServerEvent::Other`].
    ///
    /// # Errors
    ///
    /// [`CallError::InvalidParams`] when a known notification's params do not have its shape.
    pub fn from_notification(n: Notification) -> Result<ServerEvent, CallError> {
        fn decode<T: DeserializeOwned>(
            method: &str,
            params: Option<Value>,
        ) -> Result<T, CallError> {
            serde_json::from_value(params.unwrap_or_else(|| Value::Object(Map::new())))
                .map_err(|e| invalid_params(method, e.to_string()))
        }
        let Notification { method, params } = n;
        Ok(match method.as_str() {
            HELLO => ServerEvent::Hello(decode(&method, params)?),
            STATUS => ServerEvent::Status(Box::new(decode(&method, params)?)),
            STALLS => ServerEvent::Stalls(Box::new(decode(&method, params)?)),
            HANDLES => ServerEvent::Handles(decode(&method, params)?),
            DROPPED => ServerEvent::Dropped(decode(&method, params)?),
            _ => ServerEvent::Other(Notification { method, params }),
        })
    }

    /// The notification method name.
    pub fn method(&self) -> &str {
        match self {
            ServerEvent::Hello(_) => HELLO,
            ServerEvent::Status(_) => STATUS,
            ServerEvent::Stalls(_) => STALLS,
            ServerEvent::Handles(_) => HANDLES,
            ServerEvent::Dropped(_) => DROPPED,
            ServerEvent::Other(n) => &n.method,
        }
    }

    /// The notification the server sends for this event.
    pub fn to_notification(&self) -> Notification {
        let params = match self {
            ServerEvent::Hello(p) => to_json(p),
            ServerEvent::Status(p) => to_json(p),
            ServerEvent::Stalls(p) => to_json(p),
            ServerEvent::Handles(p) => to_json(p),
            ServerEvent::Dropped(p) => to_json(p),
            ServerEvent::Other(n) => return n.clone(),
        };
        Notification::new(self.method(), Some(params))
    }
}

fn invalid_params(method: &str, detail: impl Into<String>) -> CallError {
    CallError::InvalidParams {
        method: method.to_owned(),
        detail: detail.into(),
    }
}

/// Accepts absent, `null`, `{}` or `[]`.
fn no_params(method: &str, params: Option<Value>) -> Result<(), CallError> {
    match params {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) => match m.keys().next() {
            None => Ok(()),
            Some(k) => Err(invalid_params(
                method,
                format!("unknown field `{k}`; `{method}` takes no params"),
            )),
        },
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(invalid_params(
            method,
            format!("`{method}` takes no params"),
        )),
    }
}

/// Deserializes named params into `T`, naming the offending field on a type error.
fn typed_params<T: DeserializeOwned + Default>(
    method: &str,
    params: Option<Value>,
) -> Result<T, CallError> {
    let obj = match params {
        None | Some(Value::Null) => return Ok(T::default()),
        Some(Value::Array(a)) if a.is_empty() => return Ok(T::default()),
        Some(Value::Object(obj)) => obj,
        Some(Value::Array(_)) => {
            return Err(invalid_params(
                method,
                "params must be an object of named params, not an array",
            ))
        }
        Some(_) => return Err(invalid_params(method, "params must be an object")),
    };
    match serde_json::from_value::<T>(Value::Object(obj.clone())) {
        Ok(t) => Ok(t),
        Err(whole) => {
            // serde_json does not say which field had the wrong type; find it by trying each
            // field alone (every params field is optional, so a lone valid field parses).
            for (k, v) in obj {
                let mut one = Map::new();
                one.insert(k.clone(), v);
                if let Err(e) = serde_json::from_value::<T>(Value::Object(one)) {
                    let msg = e.to_string();
                    return Err(invalid_params(
                        method,
                        if msg.starts_with("unknown field") {
                            msg
                        } else {
                            format!("field `{k}`: {msg}")
                        },
                    ));
                }
            }
            Err(invalid_params(method, whole.to_string()))
        }
    }
}

fn check_topics(method: &str, topics: &[Topic]) -> Result<(), CallError> {
    match topics.iter().find(|t| !t.is_known()) {
        Some(t) => Err(invalid_params(
            method,
            format!(
                "unknown topic `{t}`; known topics: {}",
                Topic::NAMES.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The known method closest to `method`, if it is plausibly a typo.
fn suggest(method: &str) -> Option<&'static str> {
    // No known method is within reach of a long name (edit distance is at least the length
    // difference, and a prefix is shorter): skip the quadratic distance, which a 1 MiB
    // method name would otherwise turn into seconds of control-thread CPU.
    if method.len() > 64 {
        return None;
    }
    let lower = method.to_ascii_lowercase();
    ALL.iter()
        .map(|m| (edit_distance(&lower, m), *m))
        .filter(|(d, m)| *d <= 2.max(m.len() / 4) || (lower.len() >= 3 && m.starts_with(&lower)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, m)| m)
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use crate::snapshot::{Host, Stall, StallEventKind};
    use serde_json::json;

    fn err(method: &str, params: Value) -> CallError {
        MethodCall::parse(method, Some(params)).unwrap_err()
    }

    #[test]
    fn every_call_roundtrips_through_a_request() {
        let calls = vec![
            MethodCall::Ping,
            MethodCall::Status,
            MethodCall::Handles(HandlesParams::default()),
            MethodCall::Handles(HandlesParams {
                loop_index: Some(1),
                handle_type: Some(HandleType::Tcp),
                active: Some(true),
                sort: Some(HandleSort::LastActivity),
                limit: Some(20),
            }),
            MethodCall::Requests(RequestsParams {
                loop_index: None,
                request_type: Some(RequestType::UdpSend),
                limit: Some(1),
            }),
            MethodCall::ThreadPool,
            MethodCall::Stalls(StallsParams {
                limit: Some(5),
                ..StallsParams::default()
            }),
            MethodCall::Stalls(StallsParams {
                limit: None,
                id: Some(7),
                profile: true,
            }),
            MethodCall::Subscribe(SubscribeParams {
                topics: vec![Topic::Status, Topic::Stalls, Topic::Handles],
                interval_ms: Some(250),
            }),
            MethodCall::Unsubscribe(UnsubscribeParams::default()),
            MethodCall::Unsubscribe(UnsubscribeParams {
                topics: Some(vec![Topic::Stalls]),
            }),
            MethodCall::Trace(TraceParams {
                last_ms: Some(5000),
                stall: None,
            }),
            MethodCall::Trace(TraceParams {
                last_ms: None,
                stall: Some(3),
            }),
            MethodCall::Trace(TraceParams::default()),
            MethodCall::ConfigGet,
            MethodCall::ConfigSet(ConfigSetParams {
                threadpool_size: Some(8),
                stall_threshold_ms: Some(50),
                stall_sample_interval_ms: Some(5),
                log_filter: Some("debug".into()),
            }),
        ];
        for call in calls {
            let req = call.clone().into_request(Id::from(4));
            let line = String::from_utf8(crate::encode(&req).unwrap()).unwrap();
            let msg = crate::Message::parse(line.trim_end()).unwrap();
            let crate::Message::Request(back) = msg else {
                panic!("{line}")
            };
            assert_eq!(MethodCall::from_request(&back).unwrap(), call, "{line}");
        }
    }

    #[test]
    fn no_param_methods_accept_empty_forms() {
        for m in [PING, STATUS, THREADPOOL, CONFIG_GET] {
            for p in [None, Some(Value::Null), Some(json!({})), Some(json!([]))] {
                assert!(MethodCall::parse(m, p).is_ok(), "{m}");
            }
            let e = err(m, json!({"x": 1}));
            assert_eq!(e.code(), ErrorCode::INVALID_PARAMS);
            assert!(e.to_string().contains("unknown field `x`"), "{e}");
            assert_eq!(err(m, json!([1])).code(), ErrorCode::INVALID_PARAMS);
        }
        assert_eq!(
            MethodCall::parse(HANDLES, None).unwrap(),
            MethodCall::Handles(HandlesParams::default())
        );
    }

    #[test]
    fn unknown_method() {
        let e = err("foo", json!({}));
        assert_eq!(e.code(), ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(
            e.to_string(),
            "unknown method `foo`; known methods: ping, status, handles, requests, threadpool, \
             stalls, subscribe, unsubscribe, trace, config.get, config.set"
        );
        let e = MethodCall::parse("stauts", None).unwrap_err();
        assert!(e.to_string().contains("did you mean `status`?"), "{e}");
        assert_eq!(suggest("config"), Some(CONFIG_GET));
        assert_eq!(suggest("Handles"), Some(HANDLES));
        assert_eq!(suggest("config_set"), Some(CONFIG_SET));
        assert_eq!(suggest("xyzzy"), None);
        assert_eq!(suggest(""), None);
    }

    #[test]
    fn long_unknown_method_is_cheap() {
        // Regression: the did-you-mean search was quadratic; a method name of nearly 1 MiB
        // (the line limit) held the control thread for 1.6 s (release build) per line.
        assert!(ALL.iter().all(|m| m.len() + 2 < 64 / 4));
        assert_eq!(suggest(&"s".repeat(65)), None);
        assert_eq!(suggest("statusss"), Some(STATUS));
        let started = std::time::Instant::now();
        let e = err(&"s".repeat(1_000_000), Value::Null);
        assert!(matches!(
            e,
            CallError::MethodNotFound {
                suggestion: None,
                ..
            }
        ));
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
    }

    #[test]
    fn invalid_params_messages() {
        let cases = [
            (HANDLES, json!({"sortt": "age"}), "invalid params for `handles`: unknown field `sortt`, expected one of `loop`, `type`, `active`, `sort`, `limit`"),
            (HANDLES, json!({"limit": "ten"}), "invalid params for `handles`: field `limit`: invalid type: string \"ten\", expected u32"),
            (HANDLES, json!({"limit": -1}), "field `limit`"),
            (HANDLES, json!({"sort": "agee"}), "unknown variant `agee`"),
            (HANDLES, json!({"type": "tcpp"}), "unknown handle type `tcpp`; known types: timer, idle"),
            (HANDLES, json!({"type": 5}), "field `type`"),
            (HANDLES, json!([1]), "params must be an object of named params"),
            (HANDLES, json!("x"), "params must be an object"),
            (REQUESTS, json!({"type": "read"}), "unknown request type `read`"),
            (STALLS, json!({"limit": 1.5}), "field `limit`"),
            (SUBSCRIBE, json!({}), "`topics` must name at least one of: status, stalls, handles"),
            (SUBSCRIBE, json!({"topics": "status"}), "field `topics`"),
            (SUBSCRIBE, json!({"topics": ["status", "nope"]}), "unknown topic `nope`"),
            (SUBSCRIBE, json!({"topics": ["status"], "interval_ms": 5}), "`interval_ms` must be between 100 and 60000, got 5"),
            (UNSUBSCRIBE, json!({"topics": ["x"]}), "unknown topic `x`"),
            (TRACE, json!({"last_ms": 0}), "`last_ms` must be at least 1"),
            (TRACE, json!({"last": 5}), "unknown field `last`"),
            (TRACE, json!({"last_ms": 5, "stall": 1}), "give `last_ms` or `stall`, not both"),
            (TRACE, json!({"stall": -1}), "field `stall`"),
            (STALLS, json!({"id": "7"}), "field `id`"),
            (STALLS, json!({"profile": 1}), "field `profile`"),
            (CONFIG_SET, json!({}), "nothing to set"),
            (CONFIG_SET, json!({"threadpool_size": "4"}), "field `threadpool_size`"),
            (CONFIG_SET, json!({"threadpool": 4}), "unknown field `threadpool`"),
        ];
        for (method, params, want) in cases {
            let e = err(method, params.clone());
            assert_eq!(
                e.code(),
                ErrorCode::INVALID_PARAMS,
                "{method} {params}: {e}"
            );
            assert!(e.to_string().contains(want), "{method} {params}: {e}");
            assert_eq!(e.to_error_object().code, ErrorCode::INVALID_PARAMS);
        }
    }

    #[test]
    fn config_values_out_of_range() {
        for (params, field) in [
            (json!({"threadpool_size": 0}), "threadpool_size"),
            (json!({"threadpool_size": 1025}), "threadpool_size"),
            (json!({"stall_threshold_ms": 0}), "stall_threshold_ms"),
            (json!({"log_filter": " "}), "log_filter"),
        ] {
            let e = err(CONFIG_SET, params);
            assert_eq!(e.code(), ErrorCode::INVALID_CONFIG);
            assert!(e.to_string().contains(field), "{e}");
        }
    }

    #[test]
    fn subscribe_defaults_interval() {
        let call = MethodCall::parse(SUBSCRIBE, Some(json!({"topics": ["stalls"]}))).unwrap();
        assert_eq!(
            call,
            MethodCall::Subscribe(SubscribeParams {
                topics: vec![Topic::Stalls],
                interval_ms: Some(DEFAULT_INTERVAL_MS)
            })
        );
    }

    #[test]
    fn results_roundtrip() {
        fn rt<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: T) {
            let s = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<T>(&s).unwrap(), v);
        }
        rt(PingResult { as_of_ms: 9 });
        rt(SubscribeResult {
            as_of_ms: 1,
            topics: vec![Topic::Status],
            interval_ms: 100,
        });
        rt(UnsubscribeResult {
            as_of_ms: 1,
            topics: vec![],
        });
        rt(HandleSort::BytesWritten);
        let v: PingResult = serde_json::from_value(json!({"as_of_ms": 3, "new": true})).unwrap();
        assert_eq!(v.as_of_ms, 3);
    }

    #[test]
    fn server_events_roundtrip() {
        let events = vec![
            ServerEvent::Hello(Hello {
                protocol_version: 1,
                server_version: "0.1.0".into(),
                pid: 7,
                loops: 1,
                started_at_ms: 1,
                methods: ALL.iter().map(|s| s.to_string()).collect(),
                host: Host {
                    kind: "agent".into(),
                    program: "server".into(),
                    libuv_version: Some("1.44.2".into()),
                    capabilities: vec!["idle_time".into()],
                },
            }),
            ServerEvent::Status(Box::new(crate::snapshot::tests::status())),
            ServerEvent::Stalls(Box::new(StallEvent {
                event: StallEventKind::Opened,
                stall: Stall {
                    in_progress: true,
                    ..crate::snapshot::tests::stall()
                },
            })),
            ServerEvent::Handles(HandlesResult::default()),
            ServerEvent::Dropped(Dropped { count: 2, total: 5 }),
            ServerEvent::Other(Notification::new("future", Some(json!({"x": 1})))),
        ];
        for ev in events {
            let line = crate::encode(&ev.to_notification()).unwrap();
            let text = std::str::from_utf8(&line).unwrap().trim_end();
            let crate::Message::Notification(n) = crate::Message::parse(text).unwrap() else {
                panic!("{text}")
            };
            assert_eq!(ServerEvent::from_notification(n).unwrap(), ev);
        }
        let bad = Notification::new(STATUS, Some(json!({"loops": 3})));
        assert_eq!(
            ServerEvent::from_notification(bad).unwrap_err().code(),
            ErrorCode::INVALID_PARAMS
        );
        // A stall event of a kind this version does not know survives.
        let n = Notification::new(
            STALLS,
            Some(json!({"event": "updated", "stall": {"id": 1}})),
        );
        let ServerEvent::Stalls(ev) = ServerEvent::from_notification(n).unwrap() else {
            panic!()
        };
        assert_eq!(ev.event, StallEventKind::Other("updated".into()));
    }

    #[test]
    fn method_names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(!ALL[i + 1..].contains(a));
        }
    }
}
