//! The rows of the list views: columns, comparison and filtering of each wire type.

use std::cmp::Ordering;

use proto::{HandleInfo, RequestInfo, Stall, WorkerInfo};

use super::table::{Column, Row};

fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

fn opt_contains(hay: Option<&str>, needle: &str) -> bool {
    hay.is_some_and(|h| contains(h, needle))
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

/// A handle's state in words: `active`, `inactive` or `closing`, then `unref` if unref'd.
pub fn handle_state(h: &HandleInfo) -> &'static str {
    match (h.closing, h.active, h.referenced) {
        (true, _, _) => "closing",
        (false, true, true) => "active",
        (false, true, false) => "active unref",
        (false, false, true) => "inactive",
        (false, false, false) => "inactive unref",
    }
}

impl Row for HandleInfo {
    const COLUMNS: &'static [Column] = &[
        Column::new("ID", 6),
        Column::new("TYPE", 7),
        Column::new("LABEL", 0),
        Column::new("STATE", 12),
        Column::new("FD", 4),
        Column::desc("AGE", 6),
        Column::desc("IN", 6),
        Column::desc("OUT", 6),
        Column::desc("LAST", 6),
    ];

    fn id(&self) -> u64 {
        self.id
    }

    fn compare(&self, o: &Self, col: usize) -> Ordering {
        match col {
            0 => self.id.cmp(&o.id),
            1 => self.handle_type.as_str().cmp(o.handle_type.as_str()),
            2 => self.label.cmp(&o.label),
            3 => handle_state(self).cmp(handle_state(o)),
            4 => self.fd.cmp(&o.fd),
            // Oldest = created first = largest age.
            5 => o.created_at_ms.cmp(&self.created_at_ms),
            6 => self.bytes_read.cmp(&o.bytes_read),
            7 => self.bytes_written.cmp(&o.bytes_written),
            8 => self.last_activity_ms.cmp(&o.last_activity_ms),
            _ => Ordering::Equal,
        }
    }

    fn matches(&self, n: &str) -> bool {
        contains(self.handle_type.as_str(), n)
            || opt_contains(self.label.as_deref(), n)
            || contains(&self.site, n)
            || contains(handle_state(self), n)
            || self.id.to_string() == n
    }
}

impl Row for RequestInfo {
    const COLUMNS: &'static [Column] = &[
        Column::new("ID", 7),
        Column::new("TYPE", 11),
        Column::new("STATE", 9),
        Column::new("LABEL", 0),
        Column::new("HANDLE", 7),
        Column::desc("AGE", 7),
        Column::new("SITE", 0),
    ];

    fn id(&self) -> u64 {
        self.id
    }

    fn compare(&self, o: &Self, col: usize) -> Ordering {
        match col {
            0 => self.id.cmp(&o.id),
            1 => self.request_type.as_str().cmp(o.request_type.as_str()),
            2 => self.state.as_str().cmp(o.state.as_str()),
            3 => self.label.cmp(&o.label),
            4 => self.handle_id.cmp(&o.handle_id),
            5 => cmp_f64(self.age_seconds, o.age_seconds),
            6 => self.site.cmp(&o.site),
            _ => Ordering::Equal,
        }
    }

    fn matches(&self, n: &str) -> bool {
        contains(self.request_type.as_str(), n)
            || contains(self.state.as_str(), n)
            || opt_contains(self.label.as_deref(), n)
            || contains(&self.site, n)
            || self.id.to_string() == n
    }
}

impl Row for WorkerInfo {
    const COLUMNS: &'static [Column] = &[
        Column::new("#", 4),
        Column::new("STATE", 6),
        Column::new("KIND", 11),
        Column::new("REQ", 7),
        Column::new("TASK", 0),
        Column::desc("BUSY FOR", 9),
        Column::desc("IDLE", 9),
        Column::desc("DONE", 8),
    ];

    fn id(&self) -> u64 {
        u64::from(self.index)
    }

    fn compare(&self, o: &Self, col: usize) -> Ordering {
        match col {
            0 => self.index.cmp(&o.index),
            1 => self.state.as_str().cmp(o.state.as_str()),
            2 => self.task_kind.cmp(&o.task_kind),
            3 => self.request_id.cmp(&o.request_id),
            4 => self.task_label.cmp(&o.task_label),
            5 => cmp_f64(
                self.busy_for_seconds.unwrap_or(-1.0),
                o.busy_for_seconds.unwrap_or(-1.0),
            ),
            6 => cmp_f64(self.idle_seconds_total, o.idle_seconds_total),
            7 => self.tasks_done.cmp(&o.tasks_done),
            _ => Ordering::Equal,
        }
    }

    fn matches(&self, n: &str) -> bool {
        contains(self.state.as_str(), n)
            || self
                .task_kind
                .as_ref()
                .is_some_and(|k| contains(k.as_str(), n))
            || opt_contains(self.task_label.as_deref(), n)
            || self.index.to_string() == n
    }
}

/// What a stall blocked on, e.g. `timer #17` or `work req #5`.
pub fn stall_target(s: &Stall) -> String {
    match (s.handle_id, s.request_id) {
        (Some(h), _) => format!("{} #{h}", s.target_type),
        (None, Some(r)) => format!("{} req #{r}", s.target_type),
        (None, None) if s.target_type.is_empty() => "?".to_owned(),
        (None, None) => s.target_type.clone(),
    }
}

/// The innermost frame of a stall's stack that is not the standard library's, e.g.
/// `loopd::services::prime::is_prime (loopd/src/services/prime.rs:52)`: a real sample's
/// innermost frame is often an inlined `core::…` helper (`<impl u64>::is_multiple_of`) that
/// says nothing about what blocked. Falls back to the innermost frame.
pub fn top_frame(s: &Stall) -> String {
    let frame = s
        .stack
        .iter()
        .find(|f| !is_std_frame(f))
        .or_else(|| s.stack.first());
    match frame {
        Some(f) => match (f.file.as_deref().map(short_file), f.line) {
            (Some(file), Some(line)) => format!("{} ({file}:{line})", f.function),
            (Some(file), None) => format!("{} ({file})", f.function),
            _ => f.function.clone(),
        },
        None => match &s.stack_error {
            Some(e) => format!("(no stack: {e})"),
            None => "(no stack)".to_owned(),
        },
    }
}

/// A frame of Rust's standard library (`core`, `alloc`, `std`), inlined or not.
fn is_std_frame(f: &proto::Frame) -> bool {
    let function = f.function.trim_start_matches('<');
    f.file.as_deref().is_some_and(|p| p.starts_with("/rustc/"))
        || ["core::", "alloc::", "std::"]
            .iter()
            .any(|c| function.starts_with(c))
}

/// An absolute source path shortened to the crate directory on, like the protocol examples:
/// `/work/main/loopd/src/services/prime.rs` → `loopd/src/services/prime.rs`. Relative paths
/// are kept as they are.
fn short_file(path: &str) -> &str {
    if !path.starts_with('/') {
        return path;
    }
    match path.rfind("/src/") {
        Some(src) => match path[..src].rfind('/') {
            Some(start) => &path[start + 1..],
            None => path,
        },
        None => path,
    }
}

impl Row for Stall {
    const COLUMNS: &'static [Column] = &[
        Column::desc("ID", 5),
        Column::new("LOOP", 4),
        Column::new("PHASE", 7),
        Column::new("TARGET", 12),
        Column::new("LABEL", 0),
        Column::desc("STARTED", 9),
        Column::desc("DURATION", 9),
        Column::new("TOP FRAME", 0),
    ];

    fn id(&self) -> u64 {
        self.id
    }

    fn compare(&self, o: &Self, col: usize) -> Ordering {
        match col {
            0 => self.id.cmp(&o.id),
            1 => self.loop_index.cmp(&o.loop_index),
            2 => self.phase.cmp(&o.phase),
            3 => stall_target(self).cmp(&stall_target(o)),
            4 => self.label.cmp(&o.label),
            5 => self.started_at_ms.cmp(&o.started_at_ms),
            6 => cmp_f64(self.duration_seconds, o.duration_seconds),
            7 => top_frame(self).cmp(&top_frame(o)),
            _ => Ordering::Equal,
        }
    }

    fn matches(&self, n: &str) -> bool {
        contains(self.phase.as_str(), n)
            || contains(&self.target_type, n)
            || opt_contains(self.label.as_deref(), n)
            || self.stack.iter().any(|f| contains(&f.function, n))
            || self.id.to_string() == n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, file: Option<&str>, line: Option<u32>) -> proto::Frame {
        proto::Frame {
            function: function.to_owned(),
            file: file.map(str::to_owned),
            line,
        }
    }

    #[test]
    fn top_frame_skips_inlined_std_frames_and_shortens_absolute_paths() {
        let stall = Stall {
            stack: vec![
                frame(
                    "core::num::<impl u64>::is_multiple_of",
                    Some("/rustc/5980/library/core/src/num/uint_macros.rs"),
                    Some(3747),
                ),
                frame(
                    "loopd::services::prime::is_prime_trial_division",
                    Some("/work/main/loopd/src/services/prime.rs"),
                    Some(29),
                ),
            ],
            ..Stall::default()
        };
        assert_eq!(
            top_frame(&stall),
            "loopd::services::prime::is_prime_trial_division (loopd/src/services/prime.rs:29)"
        );
        // Only std frames: the innermost one. Relative paths stay as they are.
        let only_std = Stall {
            stack: vec![frame(
                "<alloc::boxed::Box<F> as Fn>::call",
                Some("x/src/a.rs"),
                None,
            )],
            ..Stall::default()
        };
        assert_eq!(
            top_frame(&only_std),
            "<alloc::boxed::Box<F> as Fn>::call (x/src/a.rs)"
        );
        assert_eq!(short_file("/abs/no-src-dir/a.rs"), "/abs/no-src-dir/a.rs");
    }
}
