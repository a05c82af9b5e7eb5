//! The server's read path end to end: bytes in, responses out, for good and bad input.
#![allow(clippy::unwrap_used)] // a test: helpers outside #[test] fns may unwrap too

use proto::{encode, ErrorCode, Id, LineDecoder, Message, MethodCall, Response, MAX_LINE_LEN};

/// What the server would answer to `input`, and whether it would close the connection.
fn serve(input: &[u8]) -> (Vec<Response>, bool) {
    let mut decoder = LineDecoder::new();
    let mut out = Vec::new();
    let mut close = false;
    for chunk in input.chunks(7) {
        for line in decoder.feed(chunk) {
            let response = match line {
                Err(e) => {
                    close |= e.is_fatal();
                    Response::error(None, e.to_error_object())
                }
                Ok(line) => match Message::parse(&line) {
                    Err(e) => Response::error(e.id().cloned(), e.to_error_object()),
                    Ok(Message::Request(req)) => match MethodCall::from_request(&req) {
                        Err(e) => Response::error(Some(req.id), e.to_error_object()),
                        Ok(call) => Response::ok(req.id, serde_json::json!(call.name())),
                    },
                    Ok(_) => continue,
                },
            };
            // Every response is one line the client's decoder reads back.
            let bytes = encode(&response).unwrap();
            let lines = LineDecoder::new().feed(&bytes);
            assert_eq!(lines.len(), 1);
            let back = Message::parse(lines[0].as_ref().unwrap()).unwrap();
            assert_eq!(back, Message::Response(response.clone()));
            out.push(response);
            if close {
                return (out, true);
            }
        }
    }
    (out, close)
}

fn code(r: &Response) -> Option<ErrorCode> {
    r.outcome.as_ref().err().map(|e| e.code)
}

#[test]
fn one_answer_per_line_with_the_right_code() {
    let input = concat!(
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n",
        "garbage\n",
        "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\n",
        "\n",
        "{\"jsonrpc\":\"1.0\",\"id\":3,\"method\":\"ping\"}\r\n",
        "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"foo\"}\n",
        "{\"jsonrpc\":\"2.0\",\"id\":\"five\",\"method\":\"handles\",\"params\":{\"limit\":\"x\"}}\n",
        "{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n",
        "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"config.set\",\"params\":{\"threadpool_size\":0}}\n",
        "[{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}]\n",
        "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"status\"}\n",
    );
    let mut bytes = input.as_bytes().to_vec();
    bytes.extend_from_slice(b"\xc3\x28 not utf-8\n");
    bytes.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"threadpool\"}\n");

    let (out, closed) = serve(&bytes);
    assert!(!closed);
    let got: Vec<_> = out.iter().map(|r| (r.id.clone(), code(r))).collect();
    assert_eq!(
        got,
        vec![
            (Some(Id::from(1)), None),
            (None, Some(ErrorCode::PARSE_ERROR)),
            (None, Some(ErrorCode::PARSE_ERROR)),
            (Some(Id::from(3)), Some(ErrorCode::INVALID_REQUEST)),
            (Some(Id::from(4)), Some(ErrorCode::METHOD_NOT_FOUND)),
            (Some(Id::from("five")), Some(ErrorCode::INVALID_PARAMS)),
            (Some(Id::from(6)), Some(ErrorCode::INVALID_CONFIG)),
            (None, Some(ErrorCode::INVALID_REQUEST)),
            (Some(Id::from(8)), None),
            (None, Some(ErrorCode::PARSE_ERROR)),
            (Some(Id::from(9)), None),
        ]
    );
    let msg = |i: usize| out[i].outcome.as_ref().unwrap_err().message.clone();
    assert!(msg(4).contains("unknown method `foo`; known methods: ping, status"));
    assert!(msg(5).contains("invalid params for `handles`: field `limit`"));
}

#[test]
fn two_mib_line_closes_the_connection() {
    let mut bytes = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n".to_vec();
    bytes.extend_from_slice(&vec![b'a'; 2 * MAX_LINE_LEN]);
    bytes.extend_from_slice(b"\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    let (out, closed) = serve(&bytes);
    assert!(closed);
    assert_eq!(out.len(), 2);
    assert_eq!(code(&out[0]), None);
    assert_eq!(code(&out[1]), Some(ErrorCode::INVALID_REQUEST));
    assert!(out[1]
        .outcome
        .as_ref()
        .unwrap_err()
        .message
        .contains("1048576"));
}

#[test]
fn random_garbage_never_panics() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes = Vec::new();
    for _ in 0..200_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Bias towards JSON-ish bytes so the parser gets past the first byte sometimes.
        let alphabet = b"{}[]\":,0123456789.-eE truefalsnul\\\n\r\xff\xc3jsonrpcidmethodparams2.0";
        bytes.push(alphabet[(state % alphabet.len() as u64) as usize]);
    }
    let (out, closed) = serve(&bytes);
    assert!(!closed);
    assert!(!out.is_empty());
}
