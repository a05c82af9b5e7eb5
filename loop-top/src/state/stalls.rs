//! Stalls: the ones in progress (at most one per loop) and the recently closed ones, merged from
//! `stalls` notifications, `stalls` results and the `stall_in_progress` of `status`.

use std::collections::{BTreeMap, BTreeSet};

use proto::{Stall, StallEvent, StallEventKind, StallProfile, StallsResult, Status};

/// Recent stalls kept, newest first.
pub const RECENT_CAP: usize = 500;
/// Stall profiles kept (fetched one at a time, for the stall whose detail is open).
pub const PROFILES_CAP: usize = 16;

/// What is known of a stall's profile.
#[derive(Debug, Clone, PartialEq)]
pub enum ProfileState {
    /// Fetched (the latest copy, while the stall is in progress).
    Kept(StallProfile),
    /// The daemon has none for it (evicted, or a replay, which records none): why.
    Missing(String),
}

/// One function of a profile with its share of the samples, for the detail's table.
#[derive(Debug, Clone, PartialEq)]
pub struct HotFrame {
    /// The function, demangled.
    pub function: String,
    /// Percent of samples in which it was the innermost frame.
    pub self_pct: f64,
    /// Percent of samples in which it was on the stack.
    pub total_pct: f64,
}

/// The `n` hottest functions of `p`: by self share, then total share (as `perf report`).
pub fn hottest(p: &StallProfile, n: usize) -> Vec<HotFrame> {
    let samples = p.samples.len().max(1) as f64;
    p.top_functions()
        .into_iter()
        .take(n)
        .map(|f| HotFrame {
            function: f.function,
            self_pct: f.self_samples as f64 * 100.0 / samples,
            total_pct: f.total_samples as f64 * 100.0 / samples,
        })
        .collect()
}

/// One line of a profile's call tree: a node, or a chain of nodes each the only caller of
/// the next with all its samples, collapsed into one line.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeLine {
    /// Nesting under the root.
    pub depth: usize,
    /// The functions of the chain, outermost first (one for a plain node).
    pub chain: Vec<String>,
    /// Percent of samples under the (last) node.
    pub total_pct: f64,
    /// Percent of samples with the (last) node innermost.
    pub self_pct: f64,
}

/// The call tree of `p` from the root, children by samples, down to the nodes that hold at
/// least `min_pct` of the samples; at most `max_lines` lines (depth first: the hottest path
/// comes first).
pub fn hot_tree(p: &StallProfile, min_pct: f64, max_lines: usize) -> Vec<TreeLine> {
    struct Node<'a> {
        name: &'a str,
        count: u64,
        self_count: u64,
        children: Vec<usize>,
    }
    let mut nodes = vec![Node {
        name: "",
        count: 0,
        self_count: 0,
        children: Vec::new(),
    }];
    let mut total = 0;
    for (stack, n) in p.folded() {
        total += n;
        let mut at = 0;
        nodes[0].count += n;
        for name in stack {
            let found = nodes[at]
                .children
                .iter()
                .copied()
                .find(|&c| nodes[c].name == name);
            at = match found {
                Some(c) => c,
                None => {
                    nodes.push(Node {
                        name,
                        count: 0,
                        self_count: 0,
                        children: Vec::new(),
                    });
                    let c = nodes.len() - 1;
                    nodes[at].children.push(c);
                    c
                }
            };
            nodes[at].count += n;
        }
        nodes[at].self_count += n;
    }
    let pct = |k: u64| k as f64 * 100.0 / total.max(1) as f64;
    let mut out = Vec::new();
    // Depth-first, hottest child first: (node, depth).
    let mut todo: Vec<(usize, usize)> = Vec::new();
    let mut roots: Vec<usize> = nodes[0].children.clone();
    roots.sort_by_key(|&c| std::cmp::Reverse(nodes[c].count));
    todo.extend(roots.into_iter().rev().map(|c| (c, 0)));
    while let Some((mut at, depth)) = todo.pop() {
        if out.len() >= max_lines || pct(nodes[at].count) < min_pct {
            continue;
        }
        let mut chain = vec![nodes[at].name.to_string()];
        while let [only] = nodes[at].children[..] {
            if nodes[only].count != nodes[at].count || nodes[at].self_count > 0 {
                break;
            }
            at = only;
            chain.push(nodes[at].name.to_string());
        }
        out.push(TreeLine {
            depth,
            chain,
            total_pct: pct(nodes[at].count),
            self_pct: pct(nodes[at].self_count),
        });
        let mut children = nodes[at].children.clone();
        children.sort_by_key(|&c| std::cmp::Reverse(nodes[c].count));
        todo.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    out
}

/// In-progress and recent stalls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StallBook {
    /// Per loop: the stall in progress and when we last learnt it was (unix ms).
    in_progress: BTreeMap<u32, (Stall, u64)>,
    /// Closed stalls by id.
    recent: BTreeMap<u64, Stall>,
    /// Ids of stalls known to be closed, so a stale `status` cannot bring one back.
    closed: BTreeSet<u64>,
    /// In progress first (by loop), then recent newest first: the rows of the Stalls view.
    rows: Vec<Stall>,
    /// Changes whenever `rows` does.
    version: u64,
    /// Stalls since the daemon started (from `status` or `stalls`).
    total: u64,
    /// Profiles asked for, by stall id (at most [`PROFILES_CAP`], the newest ids).
    profiles: BTreeMap<u64, ProfileState>,
}

impl StallBook {
    /// Stalls in progress, by loop.
    pub fn in_progress(&self) -> impl Iterator<Item = &Stall> {
        self.in_progress.values().map(|(s, _)| s)
    }

    /// In progress first, then recent, newest first.
    pub fn rows(&self) -> &[Stall] {
        &self.rows
    }

    /// Changes whenever [`Self::rows`] does.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Stalls since the daemon started, as far as we know.
    pub fn total(&self) -> u64 {
        self.total.max(self.closed.len() as u64)
    }

    /// A `stalls` notification.
    pub fn observe_event(&mut self, e: &StallEvent) {
        let s = &e.stall;
        match e.event {
            StallEventKind::Closed => self.close(s.clone()),
            // Opened, or a kind this version does not know: trust `in_progress`.
            _ if !s.in_progress => self.close(s.clone()),
            _ => {
                if !self.closed.contains(&s.id) {
                    let seen = s.started_at_ms + secs_to_ms(s.duration_seconds);
                    self.in_progress.insert(s.loop_index, (s.clone(), seen));
                }
            }
        }
        self.rebuild();
    }

    /// A `stalls` result: authoritative at its `as_of_ms`.
    pub fn observe_result(&mut self, r: &StallsResult) {
        for s in &r.recent {
            self.close(s.clone());
        }
        let live: BTreeSet<u32> = r.in_progress.iter().map(|s| s.loop_index).collect();
        self.in_progress
            .retain(|l, (_, seen)| live.contains(l) || *seen > r.as_of_ms);
        for s in &r.in_progress {
            if !self.closed.contains(&s.id) {
                self.in_progress
                    .insert(s.loop_index, (s.clone(), r.as_of_ms));
            }
        }
        self.total = self.total.max(r.total);
        self.rebuild();
    }

    /// A `stalls` result for one stall with its profile (the detail's fetch): that stall's
    /// latest state and its profile, or, without one, why.
    pub fn observe_detail(&mut self, r: &StallsResult) {
        for s in r.in_progress.iter().chain(&r.recent) {
            let state = match &s.profile {
                Some(p) => ProfileState::Kept(p.clone()),
                None => ProfileState::Missing(
                    "the daemon keeps no profile for this stall any more".into(),
                ),
            };
            self.set_profile(s.id, state);
            let mut s = s.clone();
            s.profile = None;
            if s.in_progress {
                if !self.closed.contains(&s.id) {
                    self.in_progress.insert(s.loop_index, (s, r.as_of_ms));
                }
            } else {
                self.close(s);
            }
        }
        self.rebuild();
    }

    /// Records that stall `id` has no profile to show, and why.
    pub fn profile_missing(&mut self, id: u64, why: String) {
        self.set_profile(id, ProfileState::Missing(why));
    }

    /// What is known of stall `id`'s profile (`None`: not asked yet).
    pub fn profile(&self, id: u64) -> Option<&ProfileState> {
        self.profiles.get(&id)
    }

    fn set_profile(&mut self, id: u64, state: ProfileState) {
        self.profiles.insert(id, state);
        while self.profiles.len() > PROFILES_CAP {
            self.profiles.pop_first();
        }
        self.version += 1;
    }

    /// The `stall_in_progress` of each loop in a `status`.
    pub fn observe_status(&mut self, st: &Status) {
        for l in &st.loops {
            match &l.stall_in_progress {
                Some(s) if !self.closed.contains(&s.id) => {
                    self.in_progress
                        .insert(l.loop_index, (s.clone(), st.as_of_ms));
                }
                Some(_) => {}
                None => {
                    // Gone as of this status, unless we heard of it after the status was taken.
                    if self
                        .in_progress
                        .get(&l.loop_index)
                        .is_some_and(|(_, seen)| *seen <= st.as_of_ms)
                    {
                        self.in_progress.remove(&l.loop_index);
                    }
                }
            }
        }
        self.total = self.total.max(st.stalls_total);
        self.rebuild();
    }

    fn close(&mut self, mut s: Stall) {
        s.in_progress = false;
        if self
            .in_progress
            .get(&s.loop_index)
            .is_some_and(|(p, _)| p.id == s.id)
        {
            self.in_progress.remove(&s.loop_index);
        }
        self.closed.insert(s.id);
        self.recent.insert(s.id, s);
        while self.recent.len() > RECENT_CAP {
            self.recent.pop_first();
        }
        while self.closed.len() > 4 * RECENT_CAP {
            self.closed.pop_first();
        }
    }

    fn rebuild(&mut self) {
        let rows: Vec<Stall> = self
            .in_progress
            .values()
            .map(|(s, _)| s.clone())
            .chain(self.recent.values().rev().cloned())
            .collect();
        if rows != self.rows {
            self.rows = rows;
            self.version = super::next_version();
        }
    }
}

fn secs_to_ms(s: f64) -> u64 {
    if s.is_finite() && s > 0.0 {
        (s * 1000.0) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hottest_functions_are_sorted_by_self_then_total_share() {
        use proto::{Frame, ProfileSample};
        let f = |n: &str| Frame {
            function: n.into(),
            file: None,
            line: None,
        };
        let p = StallProfile {
            interval_ms: 10,
            frames: vec![f("parse"), f("main"), f("regex")],
            stacks: vec![vec![0, 1], vec![2, 1]],
            samples: [0, 1, 1, 1]
                .iter()
                .enumerate()
                .map(|(i, &stack)| ProfileSample {
                    at_us: i as u64 * 10_000,
                    stack,
                })
                .collect(),
        };
        let rows = hottest(&p, 2);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].function, "regex");
        assert_eq!((rows[0].self_pct, rows[0].total_pct), (75.0, 75.0));
        assert_eq!(rows[1].function, "parse");
        assert_eq!((rows[1].self_pct, rows[1].total_pct), (25.0, 25.0));
        assert_eq!(hottest(&p, 9)[2].function, "main");
        assert_eq!(hottest(&p, 9)[2].total_pct, 100.0);

        // The tree: `main` alone at the root, then its two callees, the hotter first.
        let tree = hot_tree(&p, 5.0, 10);
        let shape: Vec<(usize, Vec<&str>, f64, f64)> = tree
            .iter()
            .map(|l| {
                (
                    l.depth,
                    l.chain.iter().map(String::as_str).collect(),
                    l.total_pct,
                    l.self_pct,
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (0, vec!["main"], 100.0, 0.0),
                (1, vec!["regex"], 75.0, 75.0),
                (1, vec!["parse"], 25.0, 25.0),
            ]
        );
        assert_eq!(hot_tree(&p, 50.0, 10).len(), 2, "parse is under 50 %");
        assert_eq!(hot_tree(&p, 5.0, 1).len(), 1);
    }

    #[test]
    fn a_chain_of_single_callers_is_one_tree_line() {
        use proto::{Frame, ProfileSample};
        let f = |n: &str| Frame {
            function: n.into(),
            file: None,
            line: None,
        };
        let p = StallProfile {
            interval_ms: 10,
            frames: vec![f("leaf"), f("mid"), f("main")],
            stacks: vec![vec![0, 1, 2]],
            samples: vec![ProfileSample { at_us: 0, stack: 0 }; 3],
        };
        let tree = hot_tree(&p, 5.0, 10);
        assert_eq!(tree.len(), 1);
        assert_eq!(tree[0].chain, ["main", "mid", "leaf"]);
        assert_eq!((tree[0].total_pct, tree[0].self_pct), (100.0, 100.0));
    }
    use proto::LoopStatus;

    fn stall(id: u64, started: u64, in_progress: bool) -> Stall {
        Stall {
            id,
            started_at_ms: started,
            duration_seconds: 0.2,
            in_progress,
            ..Default::default()
        }
    }

    fn status(as_of: u64, s: Option<Stall>) -> Status {
        Status {
            as_of_ms: as_of,
            loops: vec![LoopStatus {
                stall_in_progress: s,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn open_then_close() {
        let mut b = StallBook::default();
        b.observe_event(&StallEvent {
            event: StallEventKind::Opened,
            stall: stall(1, 1000, true),
        });
        assert_eq!(b.in_progress().count(), 1);
        assert!(b.rows()[0].in_progress);
        b.observe_event(&StallEvent {
            event: StallEventKind::Closed,
            stall: stall(1, 1000, false),
        });
        assert_eq!(b.in_progress().count(), 0);
        assert_eq!(b.rows().len(), 1);
        // A stale status taken before the close cannot resurrect it.
        b.observe_status(&status(1100, Some(stall(1, 1000, true))));
        assert_eq!(b.in_progress().count(), 0);
    }

    #[test]
    fn status_without_stall_clears_only_older_knowledge() {
        let mut b = StallBook::default();
        b.observe_event(&StallEvent {
            event: StallEventKind::Opened,
            stall: stall(2, 5000, true),
        });
        // Status taken before the stall was seen: keep it.
        b.observe_status(&status(5100, None));
        assert_eq!(b.in_progress().count(), 1);
        // Status taken after: the stall ended and we missed the event.
        b.observe_status(&status(6000, None));
        assert_eq!(b.in_progress().count(), 0);
    }

    #[test]
    fn rows_newest_first_and_version_only_on_change() {
        let mut b = StallBook::default();
        let r = StallsResult {
            as_of_ms: 10,
            in_progress: vec![],
            recent: vec![stall(5, 1, false), stall(4, 1, false)],
            total: 9,
        };
        b.observe_result(&r);
        let v = b.version();
        b.observe_result(&r);
        assert_eq!(b.version(), v);
        assert_eq!(b.rows()[0].id, 5);
        assert_eq!(b.total(), 9);
    }
}
