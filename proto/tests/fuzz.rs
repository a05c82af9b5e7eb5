//! Property tests of the control protocol's parsers, driven by random and mutated input, in
//! bounded time (a couple of seconds in a debug build):
//!
//! - the line decoder gives the same lines however its input is split, and the same lines as
//!   a naive reference model of the framing rules (limit, `\r\n`, blank lines, UTF-8);
//! - `Message::parse` never panics, and every line it accepts round-trips through `encode`;
//! - `MethodCall::from_request` never panics, its errors carry protocol codes, and every call
//!   it accepts round-trips through `into_request`.
//!
//! Inputs come from a small in-repo generator (xorshift + structure-aware mutation of valid
//! requests) so `proto` keeps its serde-only dependency list. `PROTO_FUZZ_SEED=<n>` replays a
//! run (the seed is printed on failure), `PROTO_FUZZ_SCALE=<k>` runs k times longer; `fuzz/`
//! has libFuzzer targets for long runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proto::{
    encode, ErrorCode, LineDecoder, LineError, Message, MethodCall, Response, MAX_LINE_LEN,
};
use serde_json::{json, Value};
use testkit::Rng;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs `body` with a seeded generator; names the seed if it panics.
fn run(test: &str, default_seed: u64, iterations: usize, mut body: impl FnMut(&mut Rng, usize)) {
    let seed = env_u64("PROTO_FUZZ_SEED").unwrap_or(default_seed);
    let n = iterations * env_u64("PROTO_FUZZ_SCALE").unwrap_or(1).max(1) as usize;
    let mut rng = Rng(seed | 1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..n {
            body(&mut rng, i);
        }
    }));
    if let Err(panic) = outcome {
        eprintln!("{test}: failed with PROTO_FUZZ_SEED={seed}");
        std::panic::resume_unwind(panic);
    }
}

/// Valid requests of every method, the starting points of mutation.
fn seeds() -> Vec<Value> {
    let r = |id: Value, method: &str, params: Option<Value>| {
        let mut v = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            v["params"] = p;
        }
        v
    };
    vec![
        r(json!(1), "ping", None),
        r(json!("a"), "status", Some(json!({}))),
        r(
            json!(2),
            "handles",
            Some(
                json!({"loop": 0, "type": "tcp", "active": true, "sort": "bytes_read", "limit": 5}),
            ),
        ),
        r(
            json!(3),
            "requests",
            Some(json!({"type": "fs", "limit": 1})),
        ),
        r(json!(4), "threadpool", Some(json!([]))),
        r(json!(5), "stalls", Some(json!({"limit": 3}))),
        r(
            json!(6),
            "subscribe",
            Some(json!({"topics": ["status", "stalls", "handles"], "interval_ms": 100})),
        ),
        r(json!(7), "unsubscribe", Some(json!({"topics": ["status"]}))),
        r(json!(8), "trace", Some(json!({"last_ms": 1000}))),
        r(json!(9), "config.get", None),
        r(
            json!(10),
            "config.set",
            Some(
                json!({"threadpool_size": 8, "stall_threshold_ms": 250, "log_filter": "info,loopd=debug"}),
            ),
        ),
        json!({"jsonrpc": "2.0", "method": "hello", "params": {"protocol_version": 1}}),
        json!({"jsonrpc": "2.0", "id": 11, "result": {"as_of_ms": 1}}),
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "x", "data": [1]}}),
    ]
}

/// A value meant to upset a parser: wrong types, extreme numbers, odd strings, nesting.
fn nasty_value(rng: &mut Rng) -> Value {
    let text = [
        "0",
        "-1",
        "1.5",
        "1e308",
        "-1e-308",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775808",
        "-9223372036854775809",
        "4294967296",
        "1024",
        "1025",
        "600001",
        "99",
        "60001",
        "null",
        "true",
        "\"\"",
        "\"  \"",
        "\"tcp\"",
        "\"TCP\"",
        "\"status\"",
        "\"st\\u0000atus\"",
        "\"\\ud83d\\ude00\"",
        "\"\\u00e9\\n\\r\\t\"",
        "[]",
        "{}",
        "[null]",
        "{\"x\":1}",
        "[\"status\",\"nope\"]",
    ];
    match rng.below(4) {
        0 => {
            // Nesting, up to past serde_json's recursion limit (128).
            let depth = rng.pick(&[1, 2, 10, 100, 126, 127, 128, 129, 200]);
            let (open, close) = if rng.chance(2) {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let s = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            serde_json::from_str(&s).unwrap_or(Value::Null)
        }
        1 => Value::String(
            (0..rng.below(40))
                .map(|_| rng.next() as u8 as char)
                .collect(),
        ),
        _ => {
            let t: &str = rng.pick(&text);
            serde_json::from_str(t).unwrap()
        }
    }
}

/// Replaces, adds or removes one member somewhere in `v`.
fn mutate_value(rng: &mut Rng, v: &mut Value, depth: usize) {
    let keys = [
        "jsonrpc",
        "id",
        "method",
        "params",
        "result",
        "error",
        "loop",
        "type",
        "active",
        "sort",
        "limit",
        "topics",
        "interval_ms",
        "last_ms",
        "threadpool_size",
        "stall_threshold_ms",
        "log_filter",
        "code",
        "message",
        "sortt",
    ];
    match v {
        Value::Object(map) if !map.is_empty() && depth < 4 && rng.chance(2) => {
            let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
            mutate_value(rng, map.get_mut(&key).unwrap(), depth + 1);
        }
        Value::Object(map) => match rng.below(3) {
            0 if !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).unwrap().clone();
                map.remove(&key);
            }
            _ => {
                map.insert(rng.pick(&keys).to_string(), nasty_value(rng));
            }
        },
        Value::Array(items) if !items.is_empty() && rng.chance(2) => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i], depth + 1);
        }
        Value::Array(items) => items.push(nasty_value(rng)),
        other => *other = nasty_value(rng),
    }
}

/// Byte-level mutations: flips, truncation, splicing, repeats, special bytes.
fn mutate_bytes(rng: &mut Rng, bytes: &mut Vec<u8>, donor: &[u8]) {
    let special = b"{}[]\":,\\ \t\r\n\x00\x7f\xc3\xa9\xff\xed\xa0\x80";
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.truncate(at),
            2 => bytes.insert(at, rng.pick(special)),
            3 if !donor.is_empty() => {
                let from = rng.below(donor.len());
                let to = from + rng.below(donor.len() - from + 1);
                bytes.splice(at..at, donor[from..to].iter().copied());
            }
            4 if at < bytes.len() => {
                let end = (at + 1 + rng.below(8)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                for _ in 0..rng.below(5) {
                    bytes.splice(at..at, chunk.iter().copied());
                }
            }
            _ if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => {}
        }
    }
}

/// One generated line (no terminator inside unless a mutation put one there).
fn gen_line(rng: &mut Rng, seeds: &[Value]) -> Vec<u8> {
    let mut v = rng.pick_ref(seeds).clone();
    match rng.below(8) {
        0 => (0..rng.below(120)).map(|_| rng.next() as u8).collect(),
        1..=4 => {
            for _ in 0..=rng.below(3) {
                mutate_value(rng, &mut v, 0);
            }
            serde_json::to_vec(&v).unwrap()
        }
        _ => {
            let mut bytes = serde_json::to_vec(&v).unwrap();
            let donor = serde_json::to_vec(rng.pick_ref(seeds)).unwrap();
            mutate_bytes(rng, &mut bytes, &donor);
            bytes
        }
    }
}

/// The framing rules, stated naively over the whole stream: split at `\n`, drop one trailing
/// `\r`, a line over `limit` is one `LineTooLong`, a blank line is nothing, else UTF-8 text.
fn reference_lines(stream: &[u8], limit: usize) -> Vec<Result<String, LineError>> {
    let mut out = Vec::new();
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    // The text after the last newline is the unterminated line `finish` returns.
    let last = segments.pop();
    for seg in segments.into_iter().chain(last) {
        let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
        if seg.len() > limit {
            out.push(Err(LineError::LineTooLong { limit }));
        } else if !seg.iter().all(u8::is_ascii_whitespace) {
            out.push(
                String::from_utf8(seg.to_vec()).map_err(|e| LineError::InvalidUtf8 {
                    valid_up_to: e.utf8_error().valid_up_to(),
                }),
            );
        }
    }
    out
}

/// Feeds `stream` in chunks cut at `cuts` (sorted offsets), then finishes.
fn decode_split(
    stream: &[u8],
    limit: usize,
    cuts: impl Iterator<Item = usize>,
) -> Vec<Result<String, LineError>> {
    let mut dec = LineDecoder::with_limit(limit);
    let mut out = Vec::new();
    let mut at = 0;
    for cut in cuts.chain(std::iter::once(stream.len())) {
        let cut = cut.clamp(at, stream.len());
        out.extend(dec.feed(&stream[at..cut]));
        assert!(
            dec.pending_len() <= limit + 1,
            "decoder buffered past its limit"
        );
        at = cut;
    }
    out.extend(dec.finish());
    out
}

fn gen_stream(rng: &mut Rng, seeds: &[Value]) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..rng.below(12) {
        stream.extend(gen_line(rng, seeds));
        if rng.chance(6) {
            // An over-long run (against the small limits used below).
            let b = rng.pick(b"a \r{");
            stream.resize(stream.len() + rng.below(300), b);
        }
        let terms: [&[u8]; 6] = [b"\n", b"\r\n", b"\n\n", b"\r\r\n", b" \n", b""];
        let term: &[u8] = rng.pick(&terms);
        stream.extend_from_slice(term);
    }
    stream
}

#[test]
fn decoder_is_split_invariant_and_matches_the_reference() {
    let seeds = seeds();
    run("decoder", 0x5eed_0001, 3000, |rng, _| {
        let stream = gen_stream(rng, &seeds);
        let limit = rng.pick(&[1, 8, 64, 100, 257, MAX_LINE_LEN]);
        let want = reference_lines(&stream, limit);
        assert_eq!(decode_split(&stream, limit, std::iter::empty()), want);
        let mut cuts: Vec<usize> = (0..rng.below(10))
            .map(|_| rng.below(stream.len() + 1))
            .collect();
        cuts.sort_unstable();
        assert_eq!(decode_split(&stream, limit, cuts.into_iter()), want);
        if stream.len() < 400 {
            assert_eq!(decode_split(&stream, limit, 1..stream.len()), want);
        }
    });
}

#[test]
fn decoder_at_the_one_mebibyte_limit() {
    // Lines of exactly the limit, one over, and one over by a `\r`, each split at random.
    let mut rng = Rng(0x5eed_0002);
    for len in [MAX_LINE_LEN - 1, MAX_LINE_LEN, MAX_LINE_LEN + 1] {
        for term in [&b"\n"[..], b"\r\n", b"\r\r\n", b""] {
            let mut stream = vec![b' '; len];
            stream[0] = b'x';
            stream.extend_from_slice(term);
            stream.extend_from_slice(b"{}\n");
            let want = reference_lines(&stream, MAX_LINE_LEN);
            let cuts = [
                rng.below(stream.len()),
                MAX_LINE_LEN,
                MAX_LINE_LEN + 1,
                stream.len() - 3,
            ];
            let mut cuts = cuts.to_vec();
            cuts.sort_unstable();
            assert_eq!(decode_split(&stream, MAX_LINE_LEN, cuts.into_iter()), want);
        }
    }
}

/// The codes a server may answer a bad line with.
const KNOWN_CODES: [i64; 10] = [
    -32700, -32600, -32601, -32602, -32603, -32001, -32002, -32003, -32004, -32005,
];

/// Parses one line as the server does; checks the round-trip and error properties.
fn check_line(line: &str) {
    let message = match Message::parse(line) {
        Ok(m) => m,
        Err(e) => {
            let obj = e.to_error_object();
            assert!(matches!(obj.code.0, -32700 | -32600), "{obj:?}");
            let reply = encode(&Response::error(e.id().cloned(), obj)).unwrap();
            assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
            return;
        }
    };
    // Accepted: encoding gives one line that decodes to the same message, and re-encodes to
    // the same bytes.
    let bytes = encode(&message).unwrap();
    let lines = LineDecoder::with_limit(usize::MAX).feed(&bytes);
    assert_eq!(lines.len(), 1, "{line:?} encodes to one line");
    let again = Message::parse(lines[0].as_ref().unwrap()).unwrap();
    assert_eq!(again, message, "{line:?} round-trips");
    assert_eq!(encode(&again).unwrap(), bytes);

    let Message::Request(request) = message else {
        return;
    };
    match MethodCall::from_request(&request) {
        Ok(call) => {
            assert_eq!(call.name(), request.method);
            let sent = call.clone().into_request(request.id.clone());
            assert_eq!(MethodCall::from_request(&sent).as_ref(), Ok(&call));
            let wire = encode(&sent).unwrap();
            let text = std::str::from_utf8(&wire).unwrap().trim_end();
            match Message::parse(text).unwrap() {
                Message::Request(r) => assert_eq!(MethodCall::from_request(&r), Ok(call)),
                other => panic!("{other:?}"),
            }
        }
        Err(e) => {
            let obj = e.to_error_object();
            assert!(KNOWN_CODES.contains(&obj.code.0), "{obj:?}");
            assert_ne!(obj.code, ErrorCode::INTERNAL_ERROR);
            let reply = encode(&Response::error(Some(request.id), obj)).unwrap();
            assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
        }
    }
}

#[test]
fn requests_never_panic_and_accepted_ones_round_trip() {
    let seeds = seeds();
    let mut accepted = 0;
    let mut calls = 0;
    run("requests", 0x5eed_0003, 6000, |rng, _| {
        let mut line = gen_line(rng, &seeds);
        line.push(b'\n');
        for l in LineDecoder::new().feed(&line) {
            let Ok(l) = l else { continue };
            check_line(&l);
            if let Ok(m) = Message::parse(&l) {
                accepted += 1;
                if let Message::Request(r) = m {
                    calls += usize::from(MethodCall::from_request(&r).is_ok());
                }
            }
        }
    });
    // The generator must reach past the envelope into the methods, or this proves little.
    assert!(accepted > 1000, "only {accepted} lines were valid JSON-RPC");
    assert!(calls > 300, "only {calls} lines were valid calls");
}

#[test]
fn hostile_shapes() {
    // Deep nesting far past the recursion limit, huge numbers, long method names (the
    // did-you-mean suggestion must not be slow), NUL and lone surrogates in strings.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{}1{}}}",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    let long_method = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{}\"}}",
        "s".repeat(MAX_LINE_LEN - 64)
    );
    let cases: Vec<String> = vec![
        deep,
        deep_obj,
        long_method,
        r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#.into(),
        r#"{"jsonrpc":"2.0","id":99999999999999999999999999,"method":"ping"}"#.into(),
        r#"{"jsonrpc":"2.0","id":1,"method":"handles","params":{"limit":1e400}}"#.into(),
        r#"{"jsonrpc":"2.0","id":1,"method":"handles","params":{"limit":-0}}"#.into(),
        r#"{"jsonrpc":"2.0","id":"\u0000","method":"st\u0000atus"}"#.into(),
        r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#.into(),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"status"}"#.into(),
        r#"{"jsonrpc":"2.0","id":1,"method":"config.set","params":{"log_filter":"\n"}}"#.into(),
        r#"{"jsonrpc":"2.0","id":1,"method":"subscribe","params":{"topics":[]}}"#.into(),
    ];
    let started = std::time::Instant::now();
    for line in &cases {
        check_line(line);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "hostile shapes took {:?}",
        started.elapsed()
    );
}
