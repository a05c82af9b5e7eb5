//! The other side of a ratio: a named peer, or the stronger of the libuv peers in that
//! scenario, so that an "ahead of libuv" claim is made against libuv at its best (its
//! test-style echo server or the tuned one, whichever did better), not against a peer
//! picked beforehand.

use crate::peer::{Peer, LIBUV_PEERS};

/// What a ratio "a ÷ b" compares `a` with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versus {
    /// That peer.
    Peer(Peer),
    /// Whichever of [`LIBUV_PEERS`] did better in the scenario.
    StrongerLibuv,
}

impl Versus {
    /// The peer this stands for, given how good each peer was (higher is better; `None`
    /// or not finite when it has no result). A tie goes to the first of [`LIBUV_PEERS`].
    pub fn resolve(self, goodness: impl Fn(Peer) -> Option<f64>) -> Option<Peer> {
        match self {
            Versus::Peer(p) => goodness(p).map(|_| p),
            Versus::StrongerLibuv => LIBUV_PEERS
                .iter()
                .filter_map(|&p| Some((p, goodness(p).filter(|g| g.is_finite())?)))
                .reduce(|best, next| if next.1 > best.1 { next } else { best })
                .map(|(p, _)| p),
        }
    }
}

/// One resolved ratio row: `a ÷ b`, `b` having been named or picked as the stronger libuv.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row<R> {
    /// The first peer.
    pub a: Peer,
    /// The peer it is compared with.
    pub b: Peer,
    /// `b` is the stronger libuv peer of the scenario ([`Versus::StrongerLibuv`]).
    pub stronger_libuv: bool,
    /// The ratio (> 1.0: `a` is better).
    pub ratio: R,
}

impl<R> Row<R> {
    /// `loopd-on ÷ libuv`, or `loopd-on ÷ stronger libuv (libuv-tuned)`.
    pub fn label(&self) -> String {
        if self.stronger_libuv {
            format!("{} ÷ stronger libuv ({})", self.a.name(), self.b.name())
        } else {
            format!("{} ÷ {}", self.a.name(), self.b.name())
        }
    }
}

/// Resolves every `(a, versus)` pair for which both sides have a result, computing the
/// ratio with `ratio(a, b)`.
pub fn rows<R>(
    pairs: &[(Peer, Versus)],
    goodness: impl Fn(Peer) -> Option<f64>,
    ratio: impl Fn(Peer, Peer) -> Option<R>,
) -> Vec<Row<R>> {
    pairs
        .iter()
        .filter_map(|&(a, versus)| {
            goodness(a)?;
            let b = versus.resolve(&goodness)?;
            Some(Row {
                a,
                b,
                stronger_libuv: versus == Versus::StrongerLibuv,
                ratio: ratio(a, b)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stronger_libuv_is_the_better_of_those_with_a_result() {
        let both = |p: Peer| match p {
            Peer::Libuv => Some(1.0),
            Peer::LibuvTuned => Some(2.0),
            _ => None,
        };
        assert_eq!(Versus::StrongerLibuv.resolve(both), Some(Peer::LibuvTuned));
        let only_plain = |p: Peer| (p == Peer::Libuv).then_some(1.0);
        assert_eq!(Versus::StrongerLibuv.resolve(only_plain), Some(Peer::Libuv));
        let nan_tuned = |p: Peer| match p {
            Peer::Libuv => Some(1.0),
            Peer::LibuvTuned => Some(f64::NAN),
            _ => None,
        };
        assert_eq!(Versus::StrongerLibuv.resolve(nan_tuned), Some(Peer::Libuv));
        let tie = |p: Peer| p.is_libuv().then_some(1.0);
        assert_eq!(Versus::StrongerLibuv.resolve(tie), Some(Peer::Libuv));
        assert_eq!(Versus::StrongerLibuv.resolve(|_| None), None);
        assert_eq!(Versus::Peer(Peer::Mio).resolve(|_| None), None);
        assert_eq!(
            Versus::Peer(Peer::Mio).resolve(|_| Some(1.0)),
            Some(Peer::Mio)
        );
    }

    #[test]
    fn rows_need_both_sides_and_say_which_libuv() {
        let good = |p: Peer| match p {
            Peer::LoopdOn => Some(3.0),
            Peer::Libuv => Some(1.0),
            Peer::LibuvTuned => Some(2.0),
            _ => None,
        };
        let pairs = [
            (Peer::LoopdOn, Versus::Peer(Peer::Libuv)),
            (Peer::LoopdOn, Versus::StrongerLibuv),
            (Peer::LoopdOff, Versus::StrongerLibuv),
            (Peer::LoopdOn, Versus::Peer(Peer::Mio)),
        ];
        let rs = rows(&pairs, good, |a, b| Some(good(a)? / good(b)?));
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].label(), "loopd-on ÷ libuv");
        assert_eq!(rs[0].ratio, 3.0);
        assert_eq!(rs[1].label(), "loopd-on ÷ stronger libuv (libuv-tuned)");
        assert_eq!(
            (rs[1].b, rs[1].stronger_libuv, rs[1].ratio),
            (Peer::LibuvTuned, true, 1.5)
        );
    }
}
