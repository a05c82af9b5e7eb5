//! The control protocol's line codec and request decoding.
//!
//! Input: byte 0 picks the line limit, byte 1 how the rest is split into chunks; the rest is
//! the stream. Checks: the decoder gives the same lines however the stream is split; every
//! line `Message::parse` accepts round-trips through `encode`; every call `MethodCall`
//! accepts round-trips through `into_request`; nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{encode, LineDecoder, Message, MethodCall, MAX_LINE_LEN};

fn decode(stream: &[u8], limit: usize, step: usize) -> Vec<Result<String, proto::LineError>> {
    let mut dec = LineDecoder::with_limit(limit);
    let mut out = Vec::new();
    for chunk in stream.chunks(step.max(1)) {
        out.extend(dec.feed(chunk));
        assert!(dec.pending_len() <= limit + 1);
    }
    out.extend(dec.finish());
    out
}

fn check_line(line: &str) {
    let Ok(message) = Message::parse(line) else {
        return;
    };
    let bytes = encode(&message).expect("encodes");
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
    let text = std::str::from_utf8(&bytes).expect("UTF-8");
    let again = Message::parse(text.trim_end_matches('\n')).expect("re-parses");
    assert_eq!(again, message);
    if let Message::Request(request) = message {
        if let Ok(call) = MethodCall::from_request(&request) {
            let sent = call.clone().into_request(request.id.clone());
            assert_eq!(MethodCall::from_request(&sent), Ok(call));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, stream @ ..] = data else {
        return;
    };
    let limit = match a % 4 {
        0 => MAX_LINE_LEN,
        1 => 1,
        2 => 64,
        _ => usize::from(*a),
    };
    let whole = decode(stream, limit, stream.len());
    assert_eq!(decode(stream, limit, usize::from(*b % 17) + 1), whole);
    for line in whole.into_iter().flatten() {
        check_line(&line);
    }
});
