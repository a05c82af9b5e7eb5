//! Slot storage shared by the handle and request tables: a vector of slots with a free list,
//! addressed by `(slot index, id)` so a stale reference to a freed (or reused) slot finds
//! nothing. Ids are never reused; slot indexes are.

/// What a stored item must tell: its stable id.
pub(crate) trait HasId {
    fn id(&self) -> u64;
}

pub(crate) struct Slots<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T: HasId> Slots<T> {
    /// Stores `item`, reusing a free slot if there is one; returns its slot index.
    pub fn insert(&mut self, item: T) -> u32 {
        self.insert_with(|_| item)
    }

    /// Stores the item `make` builds from the slot index it will have; returns the index.
    #[inline]
    pub fn insert_with(&mut self, make: impl FnOnce(u32) -> T) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(make(i));
                i
            }
            None => {
                let i = self.slots.len() as u32;
                self.slots.push(Some(make(i)));
                i
            }
        }
    }

    #[inline]
    pub fn get(&self, slot: u32, id: u64) -> Option<&T> {
        match self.slots.get(slot as usize) {
            Some(Some(s)) if s.id() == id => Some(s),
            _ => None,
        }
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32, id: u64) -> Option<&mut T> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(s)) if s.id() == id => Some(s),
            _ => None,
        }
    }

    /// The item in `slot`, whatever its id.
    pub fn by_slot(&self, slot: u32) -> Option<&T> {
        self.slots.get(slot as usize)?.as_ref()
    }

    /// Takes the item out and frees its slot.
    pub fn remove(&mut self, slot: u32, id: u64) -> Option<T> {
        self.get(slot, id)?;
        let taken = self.slots.get_mut(slot as usize)?.take();
        self.free.push(slot);
        taken
    }

    /// Every item with its slot index, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as u32, s)))
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}
