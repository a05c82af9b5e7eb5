//! loop-top: `htop` for a loopd event loop.
//!
//! Exit codes: 0 ok, 1 error (unreadable recording, terminal failure, daemon error in `--once`),
//! 2 usage, 3 cannot connect (`--once` only; the interactive TUI keeps retrying).

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use loop_top::app::{App, AppEvent, Link, View};
use loop_top::conn::{self, Client, Connection};
use loop_top::discover::{self, Discovery, Target};
use loop_top::state::replay::Recording;
use loop_top::state::Update;
use loop_top::ui;
use proto::MethodCall;

/// Exit code when the daemon cannot be reached (as `loopctl`).
const EXIT_CANNOT_CONNECT: u8 = 3;
/// How long `--once` waits for each answer.
const ONCE_TIMEOUT: Duration = Duration::from_secs(5);

/// htop for a loopd event loop: live view of loops, handles, requests, thread pool and stalls.
#[derive(Debug, Parser)]
#[command(name = "loop-top", version, about, long_about = None)]
struct Cli {
    /// Control socket of the daemon [default: the one endpoint found, else
    /// $XDG_RUNTIME_DIR/loopd/control.sock, else /tmp/loopd-<uid>/control.sock]. With it, the
    /// fleet view shows only this endpoint.
    #[arg(long, env = "LOOPD_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Start in the fleet view: every loop of every endpoint found (the first view anyway when
    /// more than one endpoint answers).
    #[arg(long)]
    fleet: bool,

    /// Look for endpoints in this directory [default: $XDG_RUNTIME_DIR/loopd, else
    /// /tmp/loopd-<uid>].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// Refresh interval: `500ms`, `1s`, `2.5s` or plain seconds (0.1 s to 60 s).
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    interval: u64,

    /// Render one frame as text to stdout and exit (for scripts and tests).
    #[arg(long)]
    once: bool,

    /// Play a `loopctl record` file instead of watching a daemon.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,

    /// Start in this view: fleet, overview, handles, requests, threadpool, stalls (or 0-5).
    #[arg(long, value_parser = parse_view, value_name = "VIEW")]
    view: Option<View>,

    /// With --replay: start at this many seconds into the recording (--once default: the end).
    #[arg(long, value_name = "SECONDS")]
    at: Option<f64>,

    /// With --once: the frame size, e.g. 80x24 [default: the terminal's, else 120x40].
    #[arg(long, value_parser = parse_size, value_name = "COLSxROWS")]
    size: Option<(u16, u16)>,
}

fn parse_interval(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (s, 1000.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 500ms or 1s"))?;
    let ms = (v * scale).round();
    let (lo, hi) = (
        proto::methods::MIN_INTERVAL_MS as f64,
        proto::methods::MAX_INTERVAL_MS as f64,
    );
    if !(lo..=hi).contains(&ms) {
        return Err(format!(
            "the interval must be between 100ms and 60s, got {s}"
        ));
    }
    Ok(ms as u64)
}

fn parse_view(s: &str) -> Result<View, String> {
    View::parse(s).ok_or_else(|| {
        format!("unknown view `{s}`; one of fleet, overview, handles, requests, threadpool, stalls")
    })
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("`{s}` is not a size like 80x24"))?;
    let w: u16 = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in `{s}`"))?;
    let h: u16 = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in `{s}`"))?;
    if w < 20 || h < 5 {
        return Err(format!("`{s}` is too small (at least 20x5)"));
    }
    Ok((w, h))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if e.downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("loop-top: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Discovery: the directory (`--dir`, else the runtime directory), or the one `--socket`.
    let target = match (&cli.dir, &cli.socket) {
        (Some(dir), _) => Target::Dir(dir.clone()),
        (None, Some(socket)) => Target::Socket(socket.clone()),
        (None, None) => Target::Dir(proto::discovery::runtime_dir()),
    };
    // `--once` on one `--socket` without the fleet view asks only that endpoint.
    let fleet_shown = cli.fleet || cli.view == Some(View::Fleet) || cli.socket.is_none();
    let first_scan =
        (cli.replay.is_none() && (!cli.once || fleet_shown)).then(|| discover::scan(&target));
    let found: Vec<PathBuf> = first_scan
        .iter()
        .flat_map(|s| s.answered().map(|(p, _)| p.to_path_buf()))
        .collect();
    // The endpoint views watch `--socket`, else the one endpoint found, else the default path.
    let socket = match (&cli.socket, found.as_slice()) {
        (Some(s), _) => s.clone(),
        (None, [one]) => one.clone(),
        (None, _) => conn::default_socket_path(),
    };
    let mut app = match &cli.replay {
        Some(path) => {
            let rec = Recording::open(path)?;
            let mut app = App::replay(rec, now_ms());
            match cli.at.or(cli.once.then_some(f64::INFINITY)) {
                Some(at) => seek_seconds(&mut app, at),
                // Interactive without --at: start playing from the beginning.
                None => {
                    app.act(loop_top::input::Action::TogglePause);
                }
            }
            app
        }
        None => App::live(socket.clone(), cli.interval, now_ms()),
    };
    if let Some(scan) = first_scan {
        app.enable_fleet();
        app.update(AppEvent::Fleet(scan));
        if cli.fleet || found.len() > 1 {
            app.view = View::Fleet;
        }
    }
    if let Some(v) = cli.view {
        app.view = v;
    }
    if cli.once {
        let (w, h) = cli.size.unwrap_or_else(|| {
            if io::IsTerminal::is_terminal(&io::stdout()) {
                crossterm::terminal::size().unwrap_or((120, 40))
            } else {
                (120, 40)
            }
        });
        app.update(AppEvent::Resize {
            width: w,
            height: h,
        });
        let code = if cli.replay.is_some() {
            ExitCode::SUCCESS
        } else if app.view == View::Fleet {
            if found.is_empty() {
                eprintln!(
                    "loop-top: no endpoint answered in {}",
                    app.fleet
                        .as_ref()
                        .map_or_else(String::new, |f| f.dir.display().to_string())
                );
                ExitCode::from(EXIT_CANNOT_CONNECT)
            } else {
                ExitCode::SUCCESS
            }
        } else {
            fetch_once(&mut app, &socket)?
        };
        let mut out = io::stdout().lock();
        for line in ui::render_lines(&app, w, h)? {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        return Ok(code);
    }
    let discovery = (cli.replay.is_none()).then_some(target);
    interactive(app, &socket, cli.interval, discovery)
}

fn seek_seconds(app: &mut App, at: f64) {
    let ms = if at.is_finite() {
        (at.max(0.0) * 1000.0) as u64
    } else {
        u64::MAX
    };
    app.seek_replay_offset(ms);
}

/// `--once` against a live daemon: connect, fetch status, stalls and the view's data.
fn fetch_once(app: &mut App, socket: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mut client = match Client::connect(socket) {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot connect to {}: {e}", socket.display());
            app.set_link(Link::Disconnected {
                error: error.clone(),
                retry_at_ms: None,
                attempt: 1,
            });
            eprintln!("loop-top: {error}");
            return Ok(ExitCode::from(EXIT_CANNOT_CONNECT));
        }
    };
    app.set_link(Link::Connected { since_ms: now_ms() });
    let mut calls = vec![MethodCall::Status, MethodCall::Stalls(Default::default())];
    calls.extend(app.view.data_call().filter(|c| c.name() != "stalls"));
    let mut updates: Vec<Update> = Vec::new();
    for call in calls {
        let name = call.name();
        let mut also = Vec::new();
        let answer = client
            .call(call, ONCE_TIMEOUT, &mut also)
            .with_context(|| format!("asking loopd for `{name}`"))?;
        updates.extend(also);
        updates.push(answer);
    }
    for u in updates {
        app.apply(u);
    }
    Ok(ExitCode::SUCCESS)
}

fn interactive(
    mut app: App,
    socket: &std::path::Path,
    interval_ms: u64,
    discovery: Option<Target>,
) -> anyhow::Result<ExitCode> {
    let replay = discovery.is_none();
    let (tx, rx) = mpsc::channel::<AppEvent>();
    let keys = tx.clone();
    std::thread::Builder::new()
        .name("loop-top-input".into())
        .spawn(move || loop {
            let ev = match crossterm::event::read() {
                Ok(crossterm::event::Event::Key(k)) => AppEvent::Key(k),
                Ok(crossterm::event::Event::Resize(width, height)) => {
                    AppEvent::Resize { width, height }
                }
                Ok(_) => continue,
                Err(_) => break,
            };
            if keys.send(ev).is_err() {
                break;
            }
        })
        .context("cannot start the input thread")?;
    let _discovery = match discovery {
        Some(target) => Some(
            Discovery::spawn(target, interval_ms, tx.clone(), AppEvent::Fleet)
                .context("cannot start the discovery thread")?,
        ),
        None => None,
    };
    let mut conn = Conns {
        current: None,
        tx,
        interval_ms,
    };
    if !replay {
        conn.connect(socket)?;
    }
    // Restores the terminal on panic too (ratatui installs the hook).
    let mut terminal = ratatui::try_init().context("cannot set up the terminal")?;
    let result = event_loop(&mut terminal, &mut app, &rx, &mut conn, replay);
    ratatui::restore();
    drop(conn);
    result.map(|()| ExitCode::SUCCESS)
}

/// The connection of the endpoint views, replaced when the fleet view opens another endpoint.
struct Conns {
    current: Option<Connection>,
    tx: mpsc::Sender<AppEvent>,
    interval_ms: u64,
}

impl Conns {
    fn connect(&mut self, socket: &std::path::Path) -> anyhow::Result<()> {
        self.current = Some(
            Connection::spawn(
                socket.to_path_buf(),
                self.interval_ms,
                self.tx.clone(),
                AppEvent::Conn,
            )
            .context("cannot start the connection thread")?,
        );
        Ok(())
    }

    /// Connects to `socket` instead: the old thread is joined first, and what it had already
    /// queued is dropped from `rx` (it belongs to the other endpoint); other events are kept.
    fn switch(
        &mut self,
        socket: &std::path::Path,
        rx: &Receiver<AppEvent>,
    ) -> anyhow::Result<Vec<AppEvent>> {
        drop(self.current.take());
        let kept = rx
            .try_iter()
            .filter(|e| !matches!(e, AppEvent::Conn(_)))
            .collect();
        self.connect(socket)?;
        Ok(kept)
    }

    fn call(&self, call: MethodCall) {
        if let Some(c) = &self.current {
            c.call(call);
        }
    }
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    rx: &Receiver<AppEvent>,
    conn: &mut Conns,
    replay: bool,
) -> anyhow::Result<()> {
    let tick = Duration::from_millis(if replay { 100 } else { 250 });
    let size = terminal.size()?;
    app.update(AppEvent::Resize {
        width: size.width,
        height: size.height,
    });
    let mut last_tick = 0u64;
    let handle = |app: &mut App, conn: &mut Conns, ev: AppEvent| -> anyhow::Result<()> {
        let calls = app.update(ev);
        if let Some(socket) = app.take_switch() {
            for kept in conn.switch(&socket, rx)? {
                for call in app.update(kept) {
                    conn.call(call);
                }
            }
            // The calls were for the new endpoint; it asks for its data once connected.
            return Ok(());
        }
        for call in calls {
            conn.call(call);
        }
        Ok(())
    };
    loop {
        terminal.draw(|f| ui::draw(f, app))?;
        match rx.recv_timeout(tick) {
            Ok(ev) => handle(app, conn, ev)?,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        // Take whatever else is queued before drawing again (bounded, so keys stay snappy).
        for _ in 0..1000 {
            match rx.try_recv() {
                Ok(ev) => handle(app, conn, ev)?,
                Err(_) => break,
            }
        }
        let now = now_ms();
        if now.saturating_sub(last_tick) >= tick.as_millis() as u64 {
            last_tick = now;
            handle(app, conn, AppEvent::Tick { now_ms: now })?;
        }
        if app.quit {
            return Ok(());
        }
    }
}
