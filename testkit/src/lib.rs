//! Test helpers shared by the workspace's crates, as a dev-dependency only (nothing here
//! reaches a build of loopd): the deterministic generator the fuzz and property tests draw
//! from, so a failing seed replays the same inputs everywhere.

/// xorshift64*: a tiny deterministic, seedable generator. `Rng(state)` uses a non-zero state
/// as it is; [`Rng::new`] scrambles any seed first.
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator whose state is `seed` scrambled (any seed, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True once in `one_in` times on average.
    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// One of `items` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A reference to one of `items` (which must not be empty).
    pub fn pick_ref<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Up to `max_len` random bytes.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Up to `max_len` random bytes, three in four drawn from `alphabet`.
    pub fn bytes_from(&mut self, max_len: usize, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| {
                if self.chance(4) {
                    self.next() as u8
                } else {
                    self.pick(alphabet)
                }
            })
            .collect()
    }

    /// Up to `max` sorted random cut points in `0..=len` (where to split an input).
    pub fn cuts(&mut self, len: usize, max: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..self.below(max + 1))
            .map(|_| self.below(len + 1))
            .collect();
        cuts.sort_unstable();
        cuts
    }

    /// A random ASCII letter, lower or upper case.
    pub fn letter(&mut self) -> u8 {
        let base = if self.next() & 1 == 0 { b'a' } else { b'A' };
        base + (self.next() % 26) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_replays_the_same_values() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        assert!((0..1000).all(|_| a.below(10) < 10));
        assert!((0..1000).all(|_| (3..=5).contains(&a.range(3, 5))));
        assert_eq!(a.below(0), 0);
    }
}
