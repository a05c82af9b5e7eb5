//! Property tests of the services' input parsers, driven by random and mutated input in bounded
//! time (a few seconds in a debug build):
//!
//! - `seq`: the state machine fed random splits agrees with a reference written differently
//!   (search for `^`, then for `$`) over the whole input;
//! - `prime`: the line splitter never passes a line over 64 bytes, agrees with a naive
//!   reference however its input is split, `parse_line` agrees with a reference parser, and
//!   trial division agrees with deterministic Miller–Rabin;
//! - `http`: `parse_request` never panics, never claims more bytes than it was given, parses a
//!   request cut at every byte boundary as it parses the whole, parses a pipelined stream fed
//!   in random chunks as it parses it whole, and no accepted path leaves the root.
//!
//! Inputs come from an in-repo generator (xorshift + mutation of valid seeds): the parsers are
//! byte-level state machines, and 100 lines of generator cover them without a new dependency.
//! `LOOPD_FUZZ_SEED=<n>` replays a run (printed on failure), `LOOPD_FUZZ_SCALE=<k>` runs k
//! times longer; `fuzz/` has libFuzzer targets for long runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Component, Path};

use loopd::services::http::{parse_request, relative_path, Method, ParseError, MAX_HEAD};
use loopd::services::prime::{is_prime_trial_division, parse_line, Line, LineSplitter, MAX_LINE};
use loopd::services::seq::{answer, SeqState};
use testkit::Rng;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs `body` `iterations` times with a seeded generator; names the seed if it panics.
fn run(test: &str, default_seed: u64, iterations: usize, mut body: impl FnMut(&mut Rng)) {
    let seed = env_u64("LOOPD_FUZZ_SEED").unwrap_or(default_seed);
    let n = iterations * env_u64("LOOPD_FUZZ_SCALE").unwrap_or(1).max(1) as usize;
    let mut rng = Rng(seed | 1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..n {
            body(&mut rng);
        }
    }));
    if let Err(panic) = outcome {
        eprintln!("{test}: failed with LOOPD_FUZZ_SEED={seed}");
        std::panic::resume_unwind(panic);
    }
}

/// Byte-level mutations of a valid input: flips, truncation, insertion of interesting bytes,
/// splicing from a donor, repeated chunks, deletion.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>, donor: &[u8], interesting: &[u8]) {
    for _ in 0..=rng.below(6) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(7) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 if rng.chance(3) => bytes.truncate(at),
            2 | 3 => bytes.insert(at, rng.pick(interesting)),
            4 if !donor.is_empty() => {
                let from = rng.below(donor.len());
                let to = from + rng.below(donor.len() - from + 1);
                bytes.splice(at..at, donor[from..to].iter().copied());
            }
            5 if at < bytes.len() => {
                let end = (at + 1 + rng.below(12)).min(bytes.len());
                let chunk = bytes[at..end].to_vec();
                for _ in 0..rng.below(6) {
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

// ---------------------------------------------------------------------------------------------
// seq

/// The protocol stated as searches over the whole input: from `state`, skip to the next `^`,
/// answer everything up to the next `$`, repeat.
fn seq_reference(start: SeqState, input: &[u8]) -> (Vec<u8>, SeqState) {
    let mut out = Vec::new();
    let mut rest = input;
    let mut inside = start == SeqState::Inside;
    loop {
        if !inside {
            match rest.iter().position(|&b| b == b'^') {
                Some(i) => rest = &rest[i + 1..],
                None => return (out, SeqState::Outside),
            }
        }
        match rest.iter().position(|&b| b == b'$') {
            Some(j) => {
                out.extend(rest[..j].iter().map(|b| b.wrapping_add(1)));
                rest = &rest[j + 1..];
                inside = false;
            }
            None => {
                out.extend(rest.iter().map(|b| b.wrapping_add(1)));
                return (out, SeqState::Inside);
            }
        }
    }
}

#[test]
fn seq_matches_the_reference_however_split() {
    run("seq", 0x5e9_0001, 20_000, |rng| {
        let len = rng.pick(&[0, 1, 2, 7, 64, 300, 4096]);
        let input = rng.bytes_from(len, b"^$^$ab\x00\xff\xfe");
        let start = if rng.chance(2) {
            SeqState::Inside
        } else {
            SeqState::Outside
        };
        let (want, want_state) = seq_reference(start, &input);
        let mut state = start;
        let mut out = Vec::new();
        let mut at = 0;
        for cut in rng.cuts(input.len(), 8).into_iter().chain([input.len()]) {
            answer(&mut state, &input[at..cut], &mut out);
            at = cut;
        }
        assert_eq!(out, want);
        assert_eq!(state, want_state);
        assert!(out.len() <= input.len());
    });
}

// ---------------------------------------------------------------------------------------------
// prime

/// Lines as the splitter should report them: every `\n`-terminated line, and the pending
/// unterminated one only once it is already too long.
fn lines_reference(stream: &[u8]) -> Vec<Line> {
    let mut segments: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    let pending = segments.pop().unwrap_or_default();
    let mut out: Vec<Line> = segments
        .into_iter()
        .map(|s| {
            if s.len() > MAX_LINE {
                Line::TooLong
            } else {
                Line::Text(s.to_vec())
            }
        })
        .collect();
    if pending.len() > MAX_LINE {
        out.push(Line::TooLong);
    }
    out
}

/// A decimal u64 of at least 2: ASCII digits only, optionally surrounded by spaces and tabs,
/// optionally followed by the CR of a CRLF line end; or `Err`.
fn parse_reference(line: &[u8]) -> Result<u64, ()> {
    let text = std::str::from_utf8(line).map_err(|_| ())?;
    let text = text.strip_suffix('\r').unwrap_or(text);
    let digits = text.trim_matches([' ', '\t']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    let mut n: u128 = 0;
    for d in digits.bytes() {
        n = n * 10 + u128::from(d - b'0');
        if n > u128::from(u64::MAX) {
            return Err(());
        }
    }
    match u64::try_from(n) {
        Ok(n) if n >= 2 => Ok(n),
        _ => Err(()),
    }
}

fn gen_prime_line(rng: &mut Rng) -> Vec<u8> {
    let numbers = [
        "0",
        "1",
        "2",
        "97",
        "91",
        "+7",
        "-7",
        "007",
        "18446744073709551615",
        "18446744073709551616",
        "99999999999999999999",
        "2305843009213693951",
        " 42 \r",
        "\t13\t",
        "4\u{a0}",
        "\u{3000}5",
        "\u{b}6\u{c}",
        "\u{1b}[2J8",
        "9\0",
        "1_000",
        "0x10",
        "1e3",
        "",
        "\r",
        " ",
    ];
    let mut line = rng.pick(&numbers).as_bytes().to_vec();
    match rng.below(4) {
        0 => line = rng.bytes_from(80, b"0123456789 +-\r\t"),
        1 => {
            let donor = rng.pick(&numbers).as_bytes().to_vec();
            mutate(
                rng,
                &mut line,
                &donor,
                b"0123456789 +-\r\t\x0b\x0c\x1b\0\xff",
            );
        }
        2 => {
            // Around the 64-byte limit.
            let len = rng.pick(&[MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 2]);
            line = vec![b'0'; len];
            line[len - 1] = b'7';
            if rng.chance(2) {
                line[0] = b' ';
            }
        }
        _ => {}
    }
    line
}

#[test]
fn prime_lines_match_the_reference_however_split() {
    run("prime", 0x9e1_0001, 4_000, |rng| {
        let mut stream = Vec::new();
        for _ in 0..rng.below(10) {
            stream.extend(gen_prime_line(rng));
            if rng.chance(8) {
                stream.resize(stream.len() + rng.below(200), b'9');
            }
            if !rng.chance(10) {
                stream.push(b'\n');
            }
        }
        let want = lines_reference(&stream);

        let mut splitter = LineSplitter::default();
        let mut got = Vec::new();
        let mut at = 0;
        for cut in rng.cuts(stream.len(), 10).into_iter().chain([stream.len()]) {
            got.extend(splitter.feed(&stream[at..cut]));
            at = cut;
        }
        assert_eq!(got, want, "stream {:?}", String::from_utf8_lossy(&stream));

        for line in got {
            let Line::Text(text) = line else { continue };
            assert!(text.len() <= MAX_LINE);
            let parsed = parse_line(&text);
            match (&parsed, parse_reference(&text)) {
                (Ok(n), Ok(m)) => assert_eq!(*n, m),
                (Err(msg), Err(())) => {
                    assert!(
                        msg.bytes().all(|b| (0x20..0x7f).contains(&b)),
                        "printable ASCII only (escaped): {msg:?}"
                    );
                    assert!(msg.len() < 4 * MAX_LINE + 100);
                }
                (p, r) => panic!("{:?}: parse_line {p:?}, reference {r:?}", text),
            }
        }
    });
}

/// Deterministic Miller–Rabin for u64 (these bases suffice below 2^64).
fn miller_rabin(n: u64) -> bool {
    let mul = |a: u64, b: u64| ((u128::from(a) * u128::from(b)) % u128::from(n)) as u64;
    let pow = |mut b: u64, mut e: u64| {
        let mut r = 1u64;
        while e > 0 {
            if e & 1 == 1 {
                r = mul(r, b);
            }
            b = mul(b, b);
            e >>= 1;
        }
        r
    };
    if n < 2 {
        return false;
    }
    for p in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let (mut d, mut s) = (n - 1, 0);
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    'bases: for a in [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37] {
        let mut x = pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mul(x, x);
            if x == n - 1 {
                continue 'bases;
            }
        }
        return false;
    }
    true
}

#[test]
fn trial_division_agrees_with_miller_rabin() {
    for n in 0..20_000u64 {
        assert_eq!(is_prime_trial_division(n), miller_rabin(n), "{n}");
    }
    // Random numbers below 2^36 (trial division stays fast), and squares of primes.
    run("primality", 0x9e1_0002, 2_000, |rng| {
        let n = rng.next() >> 28;
        assert_eq!(is_prime_trial_division(n), miller_rabin(n), "{n}");
    });
    for p in [65_521u64, 65_537, 262_139] {
        assert!(!is_prime_trial_division(p * p));
        assert!(!is_prime_trial_division(p * (p + 2)));
    }
    assert!(!is_prime_trial_division(u64::MAX));
}

// ---------------------------------------------------------------------------------------------
// http

const HTTP_SEEDS: [&[u8]; 6] = [
    b"GET /index.html HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /%2e%2e/x?y HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"\r\nGET / HTTP/1.1\nA:b\n\n",
    b"GET /a%20b/c.txt#frag HTTP/1.1\r\nConnection: close\r\nX:  y \r\n\r\n",
    b"DELETE /x HTTP/1.0\r\nContent-Length: 12\r\n\r\n",
];

const HTTP_ALPHABET: &[u8] = b"GETHEAD /%:\r\n\t?#.\\2eEfF05cC-,\x00\xff";

fn gen_http(rng: &mut Rng) -> Vec<u8> {
    let mut input = rng.pick(&HTTP_SEEDS).to_vec();
    match rng.below(6) {
        0 => input = rng.bytes_from(200, HTTP_ALPHABET),
        1 => {}
        _ => {
            let donor = rng.pick(&HTTP_SEEDS);
            mutate(rng, &mut input, donor, HTTP_ALPHABET);
        }
    }
    input
}

/// Checks what any accepted request must satisfy, for `input` of which it used `used` bytes.
fn check_accepted(input: &[u8], req: &loopd::services::http::Request, used: usize) {
    assert!(used <= input.len(), "used {used} of {}", input.len());
    assert!(used > 0);
    assert!(req.path.starts_with('/'));
    assert!(!req.path.contains('\0'));
    if let Some(rel) = relative_path(&req.path) {
        assert_stays_inside(&rel, &req.path);
    }
}

/// A relative path is only ever made of normal components: no `..`, no root, no prefix, no
/// backslash (a Windows separator), no NUL.
fn assert_stays_inside(rel: &Path, from: &str) {
    for c in rel.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_string_lossy();
                assert!(!s.contains('\\') && !s.contains('\0'), "{from:?} → {rel:?}");
            }
            other => panic!("{from:?} → {rel:?} has {other:?}"),
        }
    }
}

/// Every prefix parses to "need more", or to exactly what the whole input parses to, and once
/// a prefix has an answer every longer prefix has the same one.
fn check_every_cut(input: &[u8]) {
    let whole = parse_request(input);
    let mut answered = false;
    for cut in 0..=input.len() {
        let part = parse_request(&input[..cut]);
        match &part {
            Ok(None) => assert!(!answered, "cut {cut}: an answer went back to 'need more'"),
            _ => {
                assert_eq!(
                    part,
                    whole,
                    "cut {cut} of {:?}",
                    String::from_utf8_lossy(input)
                );
                answered = true;
            }
        }
    }
}

#[test]
fn http_every_cut_parses_as_the_whole() {
    let mut accepted = 0;
    run("http-cuts", 0x4770_0001, 2_500, |rng| {
        let input = gen_http(rng);
        if let Ok(Some((req, used))) = parse_request(&input) {
            check_accepted(&input, &req, used);
            accepted += 1;
        }
        check_every_cut(&input);
    });
    assert!(accepted > 300, "only {accepted} inputs parsed");
}

/// Parses a pipelined stream the way the service does: buffer, parse, drain what was used.
fn serve_stream(stream: &[u8], cuts: &[usize]) -> Vec<Result<(Method, String), ParseError>> {
    let mut out = Vec::new();
    let mut input = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([&stream.len()]) {
        input.extend_from_slice(&stream[at..cut]);
        at = cut;
        loop {
            match parse_request(&input) {
                Ok(Some((req, used))) => {
                    check_accepted(&input, &req, used);
                    input.drain(..used);
                    out.push(Ok((req.method, req.path)));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
        assert!(input.len() <= stream.len());
    }
    out
}

#[test]
fn http_pipelined_stream_is_split_invariant() {
    run("http-pipeline", 0x4770_0002, 2_000, |rng| {
        let mut stream = Vec::new();
        for _ in 0..1 + rng.below(5) {
            if rng.chance(3) {
                stream.extend(gen_http(rng));
            } else {
                stream.extend_from_slice(rng.pick(&HTTP_SEEDS));
            }
        }
        let whole = serve_stream(&stream, &[]);
        let cuts = rng.cuts(stream.len(), 12);
        assert_eq!(serve_stream(&stream, &cuts), whole);
    });
}

#[test]
fn http_paths_never_leave_the_root() {
    let segments: [&str; 24] = [
        "..",
        ".",
        "",
        "%2e%2e",
        "%2E%2e",
        ".%2e",
        "%2e.",
        "%252e%252e",
        "..%2f",
        "%2f..",
        "..%5c",
        "..\\",
        "%5c..",
        "%00",
        "a%00b",
        "etc",
        "passwd",
        "%2fetc",
        "a b",
        "%20",
        "...",
        "%2e",
        "~",
        "%c0%ae%c0%ae",
    ];
    let mut refused = 0;
    run("http-paths", 0x4770_0003, 20_000, |rng| {
        let mut target = String::new();
        for _ in 0..1 + rng.below(6) {
            target.push(if rng.chance(8) { '\\' } else { '/' });
            target.push_str(rng.pick(&segments));
        }
        if rng.chance(5) {
            target.push_str(rng.pick(&["?a=../..", "#..", "?%00", "/"]));
        }
        let head = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        match parse_request(head.as_bytes()) {
            Ok(Some((req, used))) => {
                assert_eq!(used, head.len());
                check_accepted(head.as_bytes(), &req, used);
                let Some(rel) = relative_path(&req.path) else {
                    refused += 1;
                    return;
                };
                // Decoded `..` anywhere in the path is refused, never clamped.
                assert!(
                    !req.path.split('/').any(|s| s == ".."),
                    "{target} → {rel:?}"
                );
            }
            Ok(None) => panic!("{target}: a complete head wants more"),
            Err(_) => refused += 1,
        }
    });
    assert!(refused > 1000);
}

#[test]
fn http_heads_around_the_16_kib_limit() {
    let mut rng = Rng(0x4770_0004);
    for lead in [0, 2, 1000] {
        for len in [MAX_HEAD - 1, MAX_HEAD, MAX_HEAD + 1, 2 * MAX_HEAD] {
            // A head of exactly `len` bytes: request line, one padded header, blank line.
            let mut head = "\r\n".repeat(lead / 2).into_bytes();
            head.extend_from_slice(b"GET / HTTP/1.1\r\nX-Pad: ");
            let pad = (lead / 2) * 2 + len - head.len() - 4;
            head.resize(head.len() + pad, b'p');
            head.extend_from_slice(b"\r\n\r\n");
            let whole = parse_request(&head);
            if len <= MAX_HEAD {
                let (_, used) = whole.clone().unwrap().unwrap();
                assert_eq!(used, head.len());
            } else {
                assert_eq!(whole, Err(ParseError::TooLarge));
            }
            for cut in [
                0,
                rng.below(head.len()),
                MAX_HEAD - 1,
                MAX_HEAD,
                MAX_HEAD + 1,
                head.len() - 1,
            ] {
                let part = parse_request(&head[..cut.min(head.len())]);
                assert!(
                    part == Ok(None) || part == whole,
                    "lead {lead} len {len} cut {cut}"
                );
            }
        }
    }
    // Only line terminators: refused once past the limit, whatever follows.
    assert_eq!(parse_request(&vec![b'\n'; MAX_HEAD]), Ok(None));
    let mut blank = vec![b'\n'; MAX_HEAD + 1];
    assert_eq!(parse_request(&blank), Err(ParseError::TooLarge));
    blank.extend_from_slice(b"\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(parse_request(&blank), Err(ParseError::TooLarge));
}
