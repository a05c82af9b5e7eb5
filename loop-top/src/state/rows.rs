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

/// The innermost frame of a stall's stack, e.g. `is_prime (prime.rs:52)`.
pub fn top_frame(s: &Stall) -> String {
    match s.stack.first() {
        Some(f) => match (&f.file, f.line) {
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
