//! The app state machine: one [`AppEvent`] in, the new state and the requests to send out.
//!
//! Nothing here touches the terminal or the socket, so every key and every piece of data can
//! be tested as a plain state transition.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::KeyEvent;
use proto::methods::{StallsParams, HANDLES, REQUESTS, STALLS, THREADPOOL};
use proto::{MethodCall, Stall};

use crate::conn::{ConnEvent, STALL_DETAIL};
use crate::input::{self, Action};
use crate::state::fleet::{Fleet, FleetRow};
use crate::state::replay::{Recording, Replay, SEEK_MS};
use crate::state::stalls::ProfileState;
use crate::state::table::{Row, TableView};
use crate::state::{Model, Update};

/// The views, in tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum View {
    /// Every loop of every endpoint found (`0`, `f`); not one of the five endpoint views.
    Fleet,
    /// Per-loop gauges, lag, phases, thread pool, counts.
    #[default]
    Overview,
    /// The handles table.
    Handles,
    /// The requests table.
    Requests,
    /// The thread pool and its workers.
    ThreadPool,
    /// Recent stalls, with their stacks.
    Stalls,
}

impl View {
    /// Every view, in tab order (`1`–`5`).
    pub const ALL: [View; 5] = [
        View::Overview,
        View::Handles,
        View::Requests,
        View::ThreadPool,
        View::Stalls,
    ];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Fleet => "Fleet",
            View::Overview => "Overview",
            View::Handles => "Handles",
            View::Requests => "Requests",
            View::ThreadPool => "Thread pool",
            View::Stalls => "Stalls",
        }
    }

    /// Parses a view name as given to `--view` (`fleet`, `overview`, `handles`, `requests`,
    /// `threadpool`, `stalls`, or `0`–`5`).
    pub fn parse(s: &str) -> Option<View> {
        Some(match s.to_ascii_lowercase().as_str() {
            "fleet" | "0" => View::Fleet,
            "overview" | "1" => View::Overview,
            "handles" | "2" => View::Handles,
            "requests" | "3" => View::Requests,
            "threadpool" | "thread-pool" | "pool" | "4" => View::ThreadPool,
            "stalls" | "5" => View::Stalls,
            _ => return None,
        })
    }

    /// Position in [`View::ALL`]; the fleet view comes before the first.
    fn position(self) -> Option<usize> {
        View::ALL.iter().position(|v| *v == self)
    }

    /// The request that fetches this view's data (the overview lives on the subscription).
    pub fn data_call(self) -> Option<MethodCall> {
        match self {
            View::Fleet | View::Overview => None,
            View::Handles => Some(MethodCall::Handles(Default::default())),
            View::Requests => Some(MethodCall::Requests(Default::default())),
            View::ThreadPool => Some(MethodCall::ThreadPool),
            View::Stalls => Some(MethodCall::Stalls(Default::default())),
        }
    }

    /// Whether this view is a list with sort, filter and selection.
    pub fn has_table(self) -> bool {
        self != View::Overview
    }
}

/// Everything the app reacts to: one enum, one loop.
#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    /// A key press.
    Key(KeyEvent),
    /// The terminal changed size.
    Resize {
        /// Columns.
        width: u16,
        /// Rows.
        height: u16,
    },
    /// A discovery scan of every endpoint (the fleet view's data).
    Fleet(proto::discovery::Scan),
    /// Time passed (the wall clock now, unix ms): ages tick, a replay plays.
    Tick {
        /// Unix ms.
        now_ms: u64,
    },
    /// From the connection thread.
    Conn(ConnEvent),
}

/// The state of the link to the daemon, drawn in the header.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// Trying to connect.
    Connecting {
        /// Attempt number since the last success.
        attempt: u32,
        /// The last error, if an earlier attempt failed.
        last_error: Option<String>,
    },
    /// Connected since this time (unix ms).
    Connected {
        /// Unix ms.
        since_ms: u64,
    },
    /// Not connected.
    Disconnected {
        /// Why.
        error: String,
        /// When the next attempt is due (unix ms); `None` = no retry (`--once`).
        retry_at_ms: Option<u64>,
        /// Attempts since the last success.
        attempt: u32,
    },
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A live daemon.
    Live {
        /// The control socket.
        socket: PathBuf,
        /// The link state.
        link: Link,
        /// Data requests sent and not answered yet (one at a time per method).
        pending: BTreeSet<&'static str>,
    },
    /// A recording.
    Replay(Box<Replay>),
}

/// The whole state of loop-top.
#[derive(Debug, Clone)]
pub struct App {
    /// Where the data comes from.
    pub source: Source,
    /// The view shown.
    pub view: View,
    /// Live: the screen is frozen (data still arrives, unseen until unpaused).
    pub paused: bool,
    /// The help overlay is shown.
    pub help: bool,
    /// The user asked to quit.
    pub quit: bool,
    /// Typing a filter into the current table.
    pub filtering: bool,
    /// The stall whose detail is open (Stalls view).
    pub detail: Option<u64>,
    /// Wall clock, unix ms (injected by ticks, so tests control it).
    pub now_ms: u64,
    /// Terminal size (columns, rows).
    pub size: (u16, u16),
    /// The subscription interval, ms.
    pub interval_ms: u64,
    /// A transient message for the status line (a failed request, a replay note).
    pub note: Option<String>,
    /// Handles view state.
    pub handles: TableView,
    /// Requests view state.
    pub requests: TableView,
    /// Thread-pool workers view state.
    pub workers: TableView,
    /// Stalls view state.
    pub stalls: TableView,
    /// Every endpoint found (live only; `None` in a replay).
    pub fleet: Option<Fleet>,
    /// Fleet view state.
    pub fleet_table: TableView,
    /// The endpoint to connect to instead of the current one (Enter in the fleet view); the
    /// event loop takes it and replaces the connection.
    switch: Option<PathBuf>,
    live: Model,
    frozen: Option<Model>,
    last_tick_ms: u64,
}

/// Rows of the screen that are not table rows (header, tabs, footer, table title and header),
/// for paging; the drawing code clamps with the real layout.
const CHROME_ROWS: u16 = 7;

impl App {
    fn new(source: Source, now_ms: u64) -> App {
        App {
            source,
            view: View::Overview,
            paused: false,
            help: false,
            quit: false,
            filtering: false,
            detail: None,
            now_ms,
            size: (120, 40),
            interval_ms: proto::methods::DEFAULT_INTERVAL_MS,
            note: None,
            handles: TableView::default(),
            requests: TableView::default(),
            workers: TableView::default(),
            stalls: TableView::default(),
            fleet: None,
            fleet_table: TableView::default(),
            switch: None,
            live: Model::default(),
            frozen: None,
            last_tick_ms: now_ms,
        }
    }

    /// An app watching the daemon at `socket`, not connected yet.
    pub fn live(socket: PathBuf, interval_ms: u64, now_ms: u64) -> App {
        let mut app = App::new(
            Source::Live {
                socket,
                link: Link::Connecting {
                    attempt: 1,
                    last_error: None,
                },
                pending: BTreeSet::new(),
            },
            now_ms,
        );
        app.interval_ms = interval_ms;
        app
    }

    /// Turns the fleet view on (live): discovery scans arrive as [`AppEvent::Fleet`].
    pub fn enable_fleet(&mut self) {
        if matches!(self.source, Source::Live { .. }) && self.fleet.is_none() {
            self.fleet = Some(Fleet::default());
        }
    }

    /// The fleet row selected in the fleet view.
    pub fn selected_fleet_row(&self) -> Option<&FleetRow> {
        let f = self.fleet.as_ref()?;
        self.fleet_table.selected_row().and_then(|i| f.rows.get(i))
    }

    /// The endpoint the user opened, to connect to now (taken once).
    pub fn take_switch(&mut self) -> Option<PathBuf> {
        self.switch.take()
    }

    /// The socket watched by the endpoint views, when live.
    pub fn socket(&self) -> Option<&std::path::Path> {
        match &self.source {
            Source::Live { socket, .. } => Some(socket),
            Source::Replay(_) => None,
        }
    }

    /// Opens the endpoint views on `socket`: a new connection unless it is the current one.
    fn open_endpoint(&mut self, target: PathBuf) {
        let Source::Live {
            socket,
            link,
            pending,
        } = &mut self.source
        else {
            return;
        };
        if *socket != target {
            *socket = target.clone();
            *link = Link::Connecting {
                attempt: 1,
                last_error: None,
            };
            pending.clear();
            self.live = Model::default();
            self.frozen = None;
            self.paused = false;
            self.detail = None;
            self.handles = TableView::default();
            self.requests = TableView::default();
            self.workers = TableView::default();
            self.stalls = TableView::default();
            self.switch = Some(target);
        }
        self.view = View::Overview;
        self.filtering = false;
    }

    /// An app replaying `rec`, paused at its start.
    pub fn replay(rec: Recording, now_ms: u64) -> App {
        let mut model = Model::default();
        let skipped = rec.skipped;
        let first_skip = rec.first_skip.clone();
        let mismatch = rec.protocol_mismatch();
        let replay = Replay::new(rec, &mut model);
        let mut app = App::new(Source::Replay(Box::new(replay)), now_ms);
        app.live = model;
        app.note = match (mismatch, skipped) {
            (Some(v), _) => Some(format!(
                "recorded from a daemon speaking protocol v{v}; this loop-top speaks v{}",
                proto::PROTOCOL_VERSION
            )),
            (None, 0) => None,
            (None, n) => Some(format!(
                "{n} line(s) of the recording skipped ({})",
                first_skip.unwrap_or_default()
            )),
        };
        app.refresh_tables();
        app
    }

    /// The data shown: the frozen copy while paused, else the latest.
    pub fn model(&self) -> &Model {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    /// The clock the screen is drawn at: the play head in a replay, else the wall clock.
    pub fn clock_ms(&self) -> u64 {
        match &self.source {
            Source::Replay(r) => r.cursor_ms,
            Source::Live { .. } => self.now_ms,
        }
    }

    /// The replay, when replaying.
    pub fn replay_state(&self) -> Option<&Replay> {
        match &self.source {
            Source::Replay(r) => Some(r),
            Source::Live { .. } => None,
        }
    }

    /// The link, when live.
    pub fn link(&self) -> Option<&Link> {
        match &self.source {
            Source::Live { link, .. } => Some(link),
            Source::Replay(_) => None,
        }
    }

    /// Whether the screen is not moving: paused live, or a replay not playing.
    pub fn is_paused(&self) -> bool {
        match &self.source {
            Source::Replay(r) => !r.playing,
            Source::Live { .. } => self.paused,
        }
    }

    /// The stall whose detail is open, if it is still known.
    pub fn detail_stall(&self) -> Option<&Stall> {
        let id = self.detail?;
        self.model().stalls.rows().iter().find(|s| s.id == id)
    }

    /// Table rows that fit on the screen, for paging.
    pub fn page_rows(&self) -> usize {
        usize::from(self.size.1.saturating_sub(CHROME_ROWS).max(1))
    }

    /// The input mode keys are read in.
    pub fn input_mode(&self) -> input::Mode {
        input::Mode {
            filtering: self.filtering,
            help: self.help,
            replay: matches!(self.source, Source::Replay(_)),
        }
    }

    /// Takes one event; returns the requests to send to the daemon.
    pub fn update(&mut self, event: AppEvent) -> Vec<MethodCall> {
        let calls = match event {
            AppEvent::Key(key) => match input::action(key, self.input_mode()) {
                Some(a) => self.act(a),
                None => Vec::new(),
            },
            AppEvent::Resize { width, height } => {
                self.size = (width, height);
                Vec::new()
            }
            AppEvent::Tick { now_ms } => {
                let elapsed = now_ms.saturating_sub(self.last_tick_ms);
                self.last_tick_ms = now_ms;
                self.now_ms = now_ms;
                if let Source::Replay(r) = &mut self.source {
                    r.advance(&mut self.live, elapsed);
                }
                Vec::new()
            }
            AppEvent::Conn(ev) => self.on_conn(ev),
            AppEvent::Fleet(scan) => {
                if let Some(f) = &mut self.fleet {
                    f.apply(&scan, self.now_ms);
                }
                Vec::new()
            }
        };
        self.refresh_tables();
        calls
    }

    fn on_conn(&mut self, ev: ConnEvent) -> Vec<MethodCall> {
        let now = self.now_ms;
        let Source::Live { link, pending, .. } = &mut self.source else {
            return Vec::new();
        };
        match ev {
            ConnEvent::Connecting { attempt } => {
                let last_error = match link {
                    Link::Disconnected { error, .. } => Some(error.clone()),
                    Link::Connecting { last_error, .. } => last_error.clone(),
                    Link::Connected { .. } => None,
                };
                *link = Link::Connecting {
                    attempt,
                    last_error,
                };
                Vec::new()
            }
            ConnEvent::Connected => {
                *link = Link::Connected { since_ms: now };
                pending.clear();
                self.note = None;
                self.data_calls()
            }
            ConnEvent::Disconnected {
                error,
                retry_in,
                attempt,
            } => {
                *link = Link::Disconnected {
                    error,
                    retry_at_ms: Some(now.saturating_add(duration_ms(retry_in))),
                    attempt,
                };
                pending.clear();
                Vec::new()
            }
            ConnEvent::CallFailed { method, error } => {
                pending.remove(method.as_str());
                if method == STALL_DETAIL {
                    // Not kept any more (-32006) or refused: the detail says so.
                    if let Some(id) = self.detail {
                        self.live.stalls.profile_missing(id, error);
                    }
                } else {
                    self.note = Some(format!("`{method}` failed: {error}"));
                }
                Vec::new()
            }
            ConnEvent::Update(u) => {
                let answered = match &u {
                    Update::Handles(_) => Some(HANDLES),
                    Update::Requests(_) => Some(REQUESTS),
                    Update::ThreadPool(_) => Some(THREADPOOL),
                    Update::Stalls(_) => Some(STALLS),
                    Update::StallDetail(_) => Some(STALL_DETAIL),
                    _ => None,
                };
                if let Some(m) = answered {
                    pending.remove(m);
                }
                let tick = matches!(u, Update::Status(_));
                self.apply(u);
                // Each status push paces the refresh of the current view's list.
                if tick {
                    self.data_calls()
                } else {
                    Vec::new()
                }
            }
        }
    }

    /// Applies data (live: to the latest model; the frozen copy stays while paused).
    pub fn apply(&mut self, u: Update) {
        if let Update::Hello(h) = &u {
            if h.protocol_version != proto::PROTOCOL_VERSION {
                self.note = Some(format!(
                    "the daemon speaks protocol v{}; this loop-top speaks v{} — some data may be missing",
                    h.protocol_version,
                    proto::PROTOCOL_VERSION
                ));
            }
        }
        self.live.apply(u);
        self.refresh_tables();
    }

    /// Replay: moves the play head to `offset_ms` after the start (clamped to the end), paused.
    pub fn seek_replay_offset(&mut self, offset_ms: u64) {
        if let Source::Replay(r) = &mut self.source {
            r.playing = false;
            let t = r.rec.start_ms.saturating_add(offset_ms);
            r.seek_to(&mut self.live, t);
        }
        self.refresh_tables();
    }

    /// Marks the link connected (for `--once`, which connects without the thread).
    pub fn set_link(&mut self, new: Link) {
        if let Source::Live { link, .. } = &mut self.source {
            *link = new;
        }
    }

    /// The requests the current view needs now: none while paused, disconnected or already
    /// waiting for the same answer.
    fn data_calls(&mut self) -> Vec<MethodCall> {
        if self.paused {
            return Vec::new();
        }
        let Source::Live { link, pending, .. } = &mut self.source else {
            return Vec::new();
        };
        if !matches!(link, Link::Connected { .. }) {
            return Vec::new();
        }
        let mut calls: Vec<MethodCall> = match self.view.data_call() {
            Some(call) if pending.insert(call.name()) => vec![call],
            _ => Vec::new(),
        };
        // The open stall's profile: once, and again at each status push while the stall
        // lasts (its samples grow).
        if let Some(id) = self.detail.filter(|_| self.view == View::Stalls) {
            let in_progress = self.live.stalls.in_progress().any(|s| s.id == id);
            let known = self.live.stalls.profile(id).is_some();
            if (in_progress || !known) && pending.insert(STALL_DETAIL) {
                calls.push(MethodCall::Stalls(StallsParams {
                    id: Some(id),
                    profile: true,
                    ..StallsParams::default()
                }));
            }
        }
        calls
    }

    /// What is known of the open stall's profile: `None` while it is being fetched.
    pub fn detail_profile(&self) -> Option<&ProfileState> {
        let id = self.detail?;
        self.model().stalls.profile(id)
    }

    /// Performs one action.
    pub fn act(&mut self, action: Action) -> Vec<MethodCall> {
        let mut calls = Vec::new();
        // A note is shown until the next key.
        self.note = None;
        match action {
            Action::Quit => self.quit = true,
            Action::NextView => {
                let next = self
                    .view
                    .position()
                    .map_or(0, |p| (p + 1) % View::ALL.len());
                calls = self.show(View::ALL[next]);
            }
            Action::PrevView => {
                let n = View::ALL.len();
                let prev = self.view.position().map_or(n - 1, |p| (p + n - 1) % n);
                calls = self.show(View::ALL[prev]);
            }
            Action::Show(View::Fleet) if self.fleet.is_none() => {}
            Action::Show(v) => calls = self.show(v),
            Action::TogglePause => match &mut self.source {
                Source::Replay(r) => r.toggle(&mut self.live),
                Source::Live { .. } => {
                    self.paused = !self.paused;
                    self.frozen = self.paused.then(|| self.live.clone());
                    calls = self.data_calls();
                }
            },
            Action::ToggleHelp => self.help = !self.help,
            Action::Move(d) => self.table_op(TableOp::Move(d)),
            Action::Page(d) => {
                let rows = isize::try_from(self.page_rows()).unwrap_or(isize::MAX);
                self.table_op(TableOp::Move(d.saturating_mul(rows)));
            }
            Action::Home => self.table_op(TableOp::Jump(false)),
            Action::End => self.table_op(TableOp::Jump(true)),
            Action::CycleSort => self.table_op(TableOp::CycleSort),
            Action::ReverseSort => self.table_op(TableOp::Reverse),
            Action::StartFilter => self.filtering = self.view.has_table(),
            Action::FilterChar(c) => {
                if let Some(t) = self.table_mut() {
                    t.filter.push(c);
                }
            }
            Action::FilterBackspace => {
                if let Some(t) = self.table_mut() {
                    t.filter.pop();
                }
            }
            Action::FilterDone => self.filtering = false,
            Action::FilterCancel => {
                self.filtering = false;
                if let Some(t) = self.table_mut() {
                    t.filter.clear();
                }
            }
            Action::Open if self.view == View::Fleet => {
                if let Some(socket) = self
                    .selected_fleet_row()
                    .filter(|r| r.gone.is_none())
                    .map(|r| r.socket.clone())
                {
                    self.open_endpoint(socket);
                    calls = self.data_calls();
                }
            }
            Action::Open => {
                if self.view == View::Stalls {
                    let model = self.frozen.as_ref().unwrap_or(&self.live);
                    self.detail = self
                        .stalls
                        .selected_row()
                        .and_then(|i| model.stalls.rows().get(i))
                        .map(|s| s.id);
                    if let (Some(id), Source::Replay(_)) = (self.detail, &self.source) {
                        self.live.stalls.profile_missing(
                            id,
                            "a recording keeps no profiles (loopctl stalls --profile on the live daemon)"
                                .into(),
                        );
                    }
                    calls = self.data_calls();
                }
            }
            Action::Back => {
                if self.help {
                    self.help = false;
                } else if self.detail.is_some() {
                    self.detail = None;
                } else if self.table_mut().is_some_and(|t| !t.filter.is_empty()) {
                    if let Some(t) = self.table_mut() {
                        t.filter.clear();
                    }
                } else if self.fleet.is_some() && self.view != View::Fleet {
                    self.view = View::Fleet;
                }
            }
            Action::StepForward | Action::StepBack | Action::Seek(_) | Action::JumpStall(_) => {
                if let Source::Replay(r) = &mut self.source {
                    let m = &mut self.live;
                    match action {
                        Action::StepForward => r.step_forward(m),
                        Action::StepBack => r.step_back(m),
                        Action::Seek(dir) => {
                            let d = i64::try_from(SEEK_MS).unwrap_or(i64::MAX);
                            r.seek_by(m, if dir < 0 { -d } else { d });
                        }
                        Action::JumpStall(fwd) if !r.jump_stall(m, fwd) => {
                            self.note = Some(if fwd {
                                "no stall after this point".into()
                            } else {
                                "no stall before this point".into()
                            });
                        }
                        _ => {}
                    }
                }
            }
        }
        self.refresh_tables();
        calls
    }

    fn show(&mut self, v: View) -> Vec<MethodCall> {
        if v != self.view {
            self.view = v;
            self.detail = None;
            self.filtering = false;
        }
        self.data_calls()
    }

    fn table_mut(&mut self) -> Option<&mut TableView> {
        Some(match self.view {
            View::Overview => return None,
            View::Fleet => &mut self.fleet_table,
            View::Handles => &mut self.handles,
            View::Requests => &mut self.requests,
            View::ThreadPool => &mut self.workers,
            View::Stalls => &mut self.stalls,
        })
    }

    fn table_op(&mut self, op: TableOp) {
        let m = self.frozen.as_ref().unwrap_or(&self.live);
        match self.view {
            View::Overview => {}
            View::Fleet => {
                if let Some(f) = &self.fleet {
                    op.run(&mut self.fleet_table, &f.rows);
                }
            }
            View::Handles => op.run(&mut self.handles, &m.handles.rows),
            View::Requests => op.run(&mut self.requests, &m.requests.rows),
            View::ThreadPool => op.run(&mut self.workers, &m.workers.rows),
            View::Stalls => op.run(&mut self.stalls, m.stalls.rows()),
        }
    }

    /// Brings every list's index up to date with the data (cheap when nothing changed).
    pub fn refresh_tables(&mut self) {
        let m = self.frozen.as_ref().unwrap_or(&self.live);
        let h = self.size.1.saturating_sub(CHROME_ROWS).max(1);
        let h = usize::from(h);
        self.handles.refresh(&m.handles.rows, m.handles.version);
        self.handles.scroll_into_view(h);
        self.requests.refresh(&m.requests.rows, m.requests.version);
        self.requests.scroll_into_view(h);
        self.workers.refresh(&m.workers.rows, m.workers.version);
        self.workers.scroll_into_view(h);
        self.stalls.refresh(m.stalls.rows(), m.stalls.version());
        self.stalls.scroll_into_view(h);
        if let Some(f) = &self.fleet {
            self.fleet_table.refresh(&f.rows, f.version);
            self.fleet_table.scroll_into_view(h);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum TableOp {
    Move(isize),
    Jump(bool),
    CycleSort,
    Reverse,
}

impl TableOp {
    fn run<R: Row>(self, t: &mut TableView, rows: &[R]) {
        match self {
            TableOp::Move(d) => t.move_by(rows, d),
            TableOp::Jump(end) => t.jump(rows, end),
            TableOp::CycleSort => t.cycle_sort::<R>(),
            TableOp::Reverse => t.descending = !t.descending,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
