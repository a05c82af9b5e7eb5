//! Keys → actions: a pure function of the key and the input mode, no terminal involved.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::View;

/// What a key asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Leave loop-top.
    Quit,
    /// Next view (`Tab`).
    NextView,
    /// Previous view (`Shift-Tab`).
    PrevView,
    /// Show this view (`0`/`f` the fleet, `1`–`5` the endpoint's).
    Show(View),
    /// Freeze or unfreeze the screen (live); pause or play (replay).
    TogglePause,
    /// Show or hide the help overlay.
    ToggleHelp,
    /// Move the selection by this many rows (negative: up).
    Move(isize),
    /// Move the selection by this many pages.
    Page(isize),
    /// First row.
    Home,
    /// Last row.
    End,
    /// Sort on the next column.
    CycleSort,
    /// Reverse the sort.
    ReverseSort,
    /// Start typing a filter.
    StartFilter,
    /// A character typed into the filter.
    FilterChar(char),
    /// Delete the last filter character.
    FilterBackspace,
    /// Keep the filter and stop typing.
    FilterDone,
    /// Clear the filter and stop typing.
    FilterCancel,
    /// Open the selected item (a stall's detail; the fleet's endpoint).
    Open,
    /// Close the overlay or detail on top; from an endpoint's views, back to the fleet.
    Back,
    /// Replay: apply one more event.
    StepForward,
    /// Replay: un-apply the last event.
    StepBack,
    /// Replay: seek by ±10 s (the sign).
    Seek(i8),
    /// Replay: jump to the next (`true`) or previous stall.
    JumpStall(bool),
}

/// What decides how a key is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    /// Typing a filter: printable keys are text.
    pub filtering: bool,
    /// The help overlay is open.
    pub help: bool,
    /// Replaying a recording.
    pub replay: bool,
}

/// Maps a key to an action, if it means one in this mode.
pub fn action(key: KeyEvent, mode: Mode) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('C')) {
        return Some(Action::Quit);
    }
    if mode.filtering {
        return match key.code {
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterCancel),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Char(c) if !ctrl => Some(Action::FilterChar(c)),
            KeyCode::Up => Some(Action::Move(-1)),
            KeyCode::Down => Some(Action::Move(1)),
            _ => None,
        };
    }
    if mode.help {
        return match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            _ => Some(Action::ToggleHelp),
        };
    }
    Some(match key.code {
        KeyCode::Char('q') | KeyCode::Char('Q') => Action::Quit,
        KeyCode::Tab => Action::NextView,
        KeyCode::BackTab => Action::PrevView,
        KeyCode::Char('0') | KeyCode::Char('f') => Action::Show(View::Fleet),
        KeyCode::Char(c @ '1'..='5') => Action::Show(View::ALL[usize::from(c as u8 - b'1')]),
        KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => Action::TogglePause,
        KeyCode::Char('?') | KeyCode::Char('h') | KeyCode::F(1) => Action::ToggleHelp,
        KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
        KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
        KeyCode::PageUp => Action::Page(-1),
        KeyCode::PageDown => Action::Page(1),
        KeyCode::Home | KeyCode::Char('g') => Action::Home,
        KeyCode::End | KeyCode::Char('G') => Action::End,
        KeyCode::Char('s') => Action::CycleSort,
        KeyCode::Char('r') | KeyCode::Char('S') => Action::ReverseSort,
        KeyCode::Char('/') => Action::StartFilter,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Right if mode.replay => Action::StepForward,
        KeyCode::Left if mode.replay => Action::StepBack,
        KeyCode::Char(']') if mode.replay => Action::Seek(1),
        KeyCode::Char('[') if mode.replay => Action::Seek(-1),
        KeyCode::Char('n') if mode.replay => Action::JumpStall(true),
        KeyCode::Char('N') if mode.replay => Action::JumpStall(false),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn ctrl_c_quits_in_every_mode() {
        let k = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for filtering in [false, true] {
            for help in [false, true] {
                let m = Mode {
                    filtering,
                    help,
                    replay: false,
                };
                assert_eq!(action(k, m), Some(Action::Quit));
            }
        }
    }

    #[test]
    fn filtering_takes_text() {
        let m = Mode {
            filtering: true,
            ..Mode::default()
        };
        assert_eq!(
            action(key(KeyCode::Char('q')), m),
            Some(Action::FilterChar('q'))
        );
        assert_eq!(action(key(KeyCode::Esc), m), Some(Action::FilterCancel));
    }

    #[test]
    fn replay_keys_only_in_replay() {
        let live = Mode::default();
        let replay = Mode {
            replay: true,
            ..Mode::default()
        };
        assert_eq!(action(key(KeyCode::Char(']')), live), None);
        assert_eq!(
            action(key(KeyCode::Char(']')), replay),
            Some(Action::Seek(1))
        );
        assert_eq!(action(key(KeyCode::Left), replay), Some(Action::StepBack));
        assert_eq!(
            action(key(KeyCode::Char('3')), live),
            Some(Action::Show(View::Requests))
        );
    }
}
