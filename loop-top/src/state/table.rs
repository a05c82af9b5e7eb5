//! The state of one list view, generic over its row type: sort column, filter, selection and
//! scroll offset, and the sorted, filtered index of the rows it shows.
//!
//! The index is rebuilt only when the data version, the sort or the filter changes, never per
//! frame; drawing reads only the visible slice of it (see `ui::table`).

use std::cmp::Ordering;

/// A column of a list view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Header text.
    pub name: &'static str,
    /// Width in cells; 0 = takes the remaining width.
    pub width: u16,
    /// Sorting on this column puts the largest first (ages, bytes, durations).
    pub descending_first: bool,
}

impl Column {
    /// A fixed-width column sorted ascending first.
    pub const fn new(name: &'static str, width: u16) -> Self {
        Column {
            name,
            width,
            descending_first: false,
        }
    }

    /// A fixed-width column sorted largest first.
    pub const fn desc(name: &'static str, width: u16) -> Self {
        Column {
            name,
            width,
            descending_first: true,
        }
    }
}

/// A row type of a list view: how to identify, compare and filter it.
pub trait Row {
    /// The columns, in display order.
    const COLUMNS: &'static [Column];
    /// A stable id, to keep the selection on the same row when the data changes.
    fn id(&self) -> u64;
    /// Compares two rows on column `col` (ascending).
    fn compare(&self, other: &Self, col: usize) -> Ordering;
    /// Whether the row matches `needle` (already lower-case, not empty).
    fn matches(&self, needle: &str) -> bool;
}

/// Sort, filter, selection and scroll of one list view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableView {
    /// The sort column; `None` = the daemon's order.
    pub sort: Option<usize>,
    /// Reverse the sort.
    pub descending: bool,
    /// Case-insensitive substring filter; empty = all rows.
    pub filter: String,
    /// Position of the selected row in [`Self::index`].
    pub selected: usize,
    /// First visible position in [`Self::index`].
    pub offset: usize,
    index: Vec<usize>,
    built_for: Option<(u64, Option<usize>, bool, String)>,
    selected_id: Option<u64>,
    rebuilds: u64,
}

impl TableView {
    /// Rows shown, in display order, as indexes into the data.
    pub fn index(&self) -> &[usize] {
        &self.index
    }

    /// How many times the index was rebuilt (for tests: not per frame).
    pub fn rebuilds(&self) -> u64 {
        self.rebuilds
    }

    /// The selected row's index into the data, if any row is shown.
    pub fn selected_row(&self) -> Option<usize> {
        self.index.get(self.selected).copied()
    }

    /// Rebuilds the index if the data (by `version`), the sort or the filter changed; keeps the
    /// selection on the same row id when it is still shown.
    pub fn refresh<R: Row>(&mut self, rows: &[R], version: u64) {
        let key = (version, self.sort, self.descending, self.filter.clone());
        if self.built_for.as_ref() == Some(&key) && self.index.len() <= rows.len() {
            return;
        }
        let needle = self.filter.to_lowercase();
        let mut index: Vec<usize> = if needle.is_empty() {
            (0..rows.len()).collect()
        } else {
            (0..rows.len())
                .filter(|&i| rows[i].matches(&needle))
                .collect()
        };
        if let Some(col) = self.sort.filter(|&c| c < R::COLUMNS.len()) {
            let desc = self.descending;
            index.sort_by(|&a, &b| {
                let o = rows[a].compare(&rows[b], col);
                let o = if desc { o.reverse() } else { o };
                o.then(a.cmp(&b))
            });
        } else if self.descending {
            index.reverse();
        }
        self.index = index;
        self.built_for = Some(key);
        self.rebuilds += 1;
        if let Some(pos) = self
            .selected_id
            .and_then(|id| self.index.iter().position(|&i| rows[i].id() == id))
        {
            self.selected = pos;
        }
        self.clamp();
        self.selected_id = self.selected_row().map(|i| rows[i].id());
    }

    /// Moves the selection by `delta` rows; `rows` is the data, to remember the selected id.
    pub fn move_by<R: Row>(&mut self, rows: &[R], delta: isize) {
        let last = self.index.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
        self.selected_id = self.selected_row().and_then(|i| rows.get(i)).map(Row::id);
    }

    /// Selects the first or last row.
    pub fn jump<R: Row>(&mut self, rows: &[R], to_end: bool) {
        self.selected = if to_end {
            self.index.len().saturating_sub(1)
        } else {
            0
        };
        self.selected_id = self.selected_row().and_then(|i| rows.get(i)).map(Row::id);
    }

    /// Sorts on the next column: daemon order → column 0 → … → last → daemon order. A column
    /// that sorts largest first starts descending.
    pub fn cycle_sort<R: Row>(&mut self) {
        self.sort = match self.sort {
            None => Some(0),
            Some(c) if c + 1 < R::COLUMNS.len() => Some(c + 1),
            Some(_) => None,
        };
        self.descending = self
            .sort
            .and_then(|c| R::COLUMNS.get(c))
            .is_some_and(|c| c.descending_first);
    }

    /// Keeps `selected` inside the index and visible in a window of `height` rows.
    pub fn scroll_into_view(&mut self, height: usize) {
        self.clamp();
        self.offset = visible_offset(self.offset, self.selected, height, self.index.len());
    }

    fn clamp(&mut self) {
        self.selected = self.selected.min(self.index.len().saturating_sub(1));
    }
}

/// The first visible position for a window of `height` rows showing `selected`, moving as
/// little as possible from `offset`.
pub fn visible_offset(offset: usize, selected: usize, height: usize, len: usize) -> usize {
    if height == 0 {
        return selected;
    }
    let mut off = offset.min(len.saturating_sub(height));
    if selected < off {
        off = selected;
    } else if selected >= off + height {
        off = selected + 1 - height;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct R(u64, &'static str);
    impl Row for R {
        const COLUMNS: &'static [Column] = &[Column::new("ID", 4), Column::desc("NAME", 0)];
        fn id(&self) -> u64 {
            self.0
        }
        fn compare(&self, other: &Self, col: usize) -> Ordering {
            match col {
                0 => self.0.cmp(&other.0),
                _ => self.1.cmp(other.1),
            }
        }
        fn matches(&self, needle: &str) -> bool {
            self.1.contains(needle)
        }
    }

    fn rows() -> Vec<R> {
        vec![R(3, "tcp b"), R(1, "timer"), R(2, "tcp a")]
    }

    #[test]
    fn sort_filter_and_keep_selection() {
        let rows = rows();
        let mut t = TableView::default();
        t.refresh(&rows, 1);
        assert_eq!(t.index(), &[0, 1, 2]);
        t.move_by(&rows, 1); // selects id 1
        t.cycle_sort::<R>(); // ID ascending
        t.refresh(&rows, 1);
        assert_eq!(t.index(), &[1, 2, 0]);
        assert_eq!(t.selected, 0, "still on id 1");
        t.cycle_sort::<R>(); // NAME, descending first
        assert!(t.descending);
        t.refresh(&rows, 1);
        assert_eq!(t.index(), &[1, 0, 2]);
        t.filter = "TCP".into();
        t.refresh(&rows, 1);
        assert_eq!(t.index(), &[0, 2]);
        assert_eq!(t.selected, 0);
    }

    #[test]
    fn no_rebuild_without_change() {
        let rows = rows();
        let mut t = TableView::default();
        t.refresh(&rows, 7);
        t.refresh(&rows, 7);
        t.refresh(&rows, 7);
        assert_eq!(t.rebuilds(), 1);
        t.refresh(&rows, 8);
        assert_eq!(t.rebuilds(), 2);
    }

    #[test]
    fn offsets() {
        assert_eq!(visible_offset(0, 0, 10, 100), 0);
        assert_eq!(visible_offset(0, 15, 10, 100), 6);
        assert_eq!(visible_offset(20, 15, 10, 100), 15);
        assert_eq!(visible_offset(95, 99, 10, 100), 90);
        assert_eq!(visible_offset(5, 2, 10, 3), 0);
    }
}
