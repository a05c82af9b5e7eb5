//! One way to name the engine's enums (handle and request types, phases, task outcomes, work
//! classes, request states): their values in order, how many there are, and the name each
//! value has in metrics labels and in the protocol — and a table keyed by such an enum.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

/// An enum whose values have a name in metrics labels and in the protocol (declared with the
/// engine's `named_enum!`). Code that turns engine values into wire or metric values can be
/// one generic function over this trait, and [`PerType`] tables are keyed by it.
pub trait Named: Copy + Eq + fmt::Debug + 'static {
    /// Every value, in declaration order.
    fn all() -> &'static [Self];

    /// The value's name in metrics labels and the protocol.
    fn as_str(self) -> &'static str;

    /// The value's position in [`Named::all`].
    fn index(self) -> usize;
}

/// Declares an enum of unit variants, each with its metric and wire name, and gives it
/// `ALL`, `COUNT`, `as_str`, `index`, `from_index`, `parse`, `Display` and [`Named`].
macro_rules! named_enum {
    (
        $(#[$m:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vm:meta])* $variant:ident => $s:literal),+ $(,)?
        }
    ) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            /// How many values there are.
            pub const COUNT: usize = [$($s),+].len();
            /// Every value, in declaration order.
            pub const ALL: [$name; Self::COUNT] = [$($name::$variant),+];

            /// The name used in metrics labels and the protocol.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Position in [`Self::ALL`].
            #[inline]
            pub const fn index(self) -> usize {
                self as usize
            }

            /// The value at position `i` of [`Self::ALL`].
            pub fn from_index(i: usize) -> Option<Self> {
                Self::ALL.get(i).copied()
            }

            /// The value whose name is `s`.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl $crate::names::Named for $name {
            fn all() -> &'static [Self] {
                &Self::ALL
            }

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }

            fn index(self) -> usize {
                $name::index(self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use named_enum;

/// One value per value of the enum `K` (e.g. handle counts per [`HandleType`]): indexed by
/// the enum, so its size follows the enum and no array type bakes the count in.
///
/// [`HandleType`]: crate::HandleType
#[derive(Clone, PartialEq, Eq)]
pub struct PerType<K: Named, V> {
    values: Vec<V>,
    key: PhantomData<K>,
}

impl<K: Named, V> PerType<K, V> {
    /// A table with `f(k)` for every `k`.
    pub fn from_fn(f: impl FnMut(K) -> V) -> Self {
        PerType {
            values: K::all().iter().copied().map(f).collect(),
            key: PhantomData,
        }
    }

    /// Every key with its value, in the enum's order.
    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        K::all().iter().copied().zip(&self.values)
    }
}

impl<K: Named, V: Default> Default for PerType<K, V> {
    fn default() -> Self {
        PerType::from_fn(|_| V::default())
    }
}

impl<K: Named, V> Index<K> for PerType<K, V> {
    type Output = V;

    fn index(&self, k: K) -> &V {
        // Built with one value per key (`from_fn`), so every key's index is in range.
        &self.values[k.index()]
    }
}

impl<K: Named, V> IndexMut<K> for PerType<K, V> {
    fn index_mut(&mut self, k: K) -> &mut V {
        &mut self.values[k.index()]
    }
}

impl<K: Named, V: fmt::Debug> fmt::Debug for PerType<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k.as_str(), v)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    named_enum!(
        /// A test enum.
        enum Colour {
            /// Red.
            Red => "red",
            /// Green.
            Green => "green",
        }
    );

    #[test]
    fn names_positions_and_tables_follow_the_declaration() {
        assert_eq!(Colour::COUNT, 2);
        assert_eq!(Colour::ALL, [Colour::Red, Colour::Green]);
        assert_eq!(Colour::Green.as_str(), "green");
        assert_eq!(Colour::Green.to_string(), "green");
        assert_eq!(Colour::parse("red"), Some(Colour::Red));
        assert_eq!(Colour::parse("blue"), None);
        assert_eq!(Colour::from_index(1), Some(Colour::Green));
        assert_eq!(Colour::from_index(2), None);
        let mut t: PerType<Colour, u32> = PerType::default();
        t[Colour::Green] += 3;
        assert_eq!(t[Colour::Red], 0);
        assert_eq!(t[Colour::Green], 3);
        assert_eq!(
            t.iter().map(|(k, v)| (k, *v)).collect::<Vec<_>>(),
            [(Colour::Red, 0), (Colour::Green, 3)]
        );
        assert_eq!(format!("{t:?}"), r#"{"red": 0, "green": 3}"#);
    }
}
