//! The HTTP request-head parser.
//!
//! Checks: never more bytes used than given; a prefix parses to "need more" or to what the
//! whole parses to (every cut for short inputs, 64 cuts for long ones); no accepted path has
//! a component other than a normal name once made relative (never leaves the root).
#![no_main]

use std::path::Component;

use libfuzzer_sys::fuzz_target;
use loopd::services::http::{parse_request, relative_path};

fuzz_target!(|data: &[u8]| {
    let whole = parse_request(data);
    if let Ok(Some((req, used))) = &whole {
        assert!(*used > 0 && *used <= data.len());
        assert!(req.path.starts_with('/'));
        if let Some(rel) = relative_path(&req.path) {
            for c in rel.components() {
                match c {
                    Component::Normal(s) => {
                        let s = s.to_string_lossy();
                        assert!(!s.contains('\\') && !s.contains('\0'));
                    }
                    other => panic!("{:?} → {rel:?} has {other:?}", req.path),
                }
            }
        }
    }
    let step = (data.len() / 64).max(1);
    for cut in (0..data.len()).step_by(step) {
        let part = parse_request(&data[..cut]);
        assert!(part == Ok(None) || part == whole, "cut {cut}");
    }
});
