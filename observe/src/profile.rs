//! A stall's samples as a profile: distinct frames and stacks interned once, samples in
//! time order, the hottest frame kept up to date, at most
//! [`MAX_STALL_SAMPLES`](proto::methods::MAX_STALL_SAMPLES) samples (the rest counted).
//! Built on the `loopd-stalls` thread from symbolized samples; read as a [`StallProfile`].

use std::collections::HashMap;

use proto::{Frame, ProfileSample, StallProfile};

/// The profile of one stall, as it grows.
#[derive(Clone, Debug, Default)]
pub(crate) struct ProfileBuilder {
    frames: Vec<Frame>,
    frame_ids: HashMap<Frame, u32>,
    stacks: Vec<Vec<u32>>,
    stack_ids: HashMap<Vec<u32>, u32>,
    samples: Vec<ProfileSample>,
    /// Samples per frame as the innermost one (self), by frame id.
    self_counts: Vec<u64>,
    hot: Option<u32>,
    limit: usize,
}

impl ProfileBuilder {
    pub fn new(limit: usize) -> ProfileBuilder {
        ProfileBuilder {
            limit,
            ..ProfileBuilder::default()
        }
    }

    /// Samples kept.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Whether no more samples are kept.
    pub fn is_full(&self) -> bool {
        self.samples.len() >= self.limit
    }

    /// Adds a sample taken `at_us` after the callback started, innermost frame first;
    /// `false` (nothing kept) when the profile is full or the stack is empty.
    pub fn add(&mut self, at_us: u64, stack: &[Frame]) -> bool {
        if self.is_full() || stack.is_empty() {
            return false;
        }
        let ids: Vec<u32> = stack.iter().map(|f| self.intern_frame(f)).collect();
        let leaf = ids[0];
        let id = match self.stack_ids.get(&ids) {
            Some(&id) => id,
            None => {
                let id = self.stacks.len() as u32;
                self.stacks.push(ids.clone());
                self.stack_ids.insert(ids, id);
                id
            }
        };
        self.samples.push(ProfileSample { at_us, stack: id });
        let n = &mut self.self_counts[leaf as usize];
        *n += 1;
        let n = *n;
        if self.hot.is_none_or(|h| self.self_counts[h as usize] < n) {
            self.hot = Some(leaf);
        }
        true
    }

    fn intern_frame(&mut self, f: &Frame) -> u32 {
        if let Some(&id) = self.frame_ids.get(f) {
            return id;
        }
        let id = self.frames.len() as u32;
        self.frames.push(f.clone());
        self.frame_ids.insert(f.clone(), id);
        self.self_counts.push(0);
        id
    }

    /// The innermost frame most samples were in, with its source line when known.
    pub fn hot_frame(&self) -> Option<String> {
        let f = self.frames.get(self.hot? as usize)?;
        Some(match (&f.file, f.line) {
            (Some(file), Some(line)) => {
                let short = file.rsplit('/').next().unwrap_or(file);
                format!("{} ({short}:{line})", f.function)
            }
            _ => f.function.clone(),
        })
    }

    /// The wire form.
    pub fn to_wire(&self, interval_ms: u64) -> StallProfile {
        StallProfile {
            interval_ms,
            frames: self.frames.clone(),
            stacks: self.stacks.clone(),
            samples: self.samples.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(name: &str) -> Frame {
        Frame {
            function: name.into(),
            file: None,
            line: None,
        }
    }

    #[test]
    fn interns_frames_and_stacks_and_follows_the_hot_frame() {
        let mut p = ProfileBuilder::new(10);
        let a = [frame("parse"), frame("handle"), frame("main")];
        let b = [frame("regex"), frame("handle"), frame("main")];
        assert!(p.add(0, &a));
        assert!(p.add(10, &b));
        assert!(p.add(20, &b));
        assert_eq!(p.hot_frame().as_deref(), Some("regex"));
        let w = p.to_wire(10);
        assert_eq!(w.frames.len(), 4);
        assert_eq!(w.stacks.len(), 2);
        assert_eq!(w.samples.len(), 3);
        let folded = w.folded();
        assert!(folded.contains(&(vec!["main", "handle", "regex"], 2)));
        assert!(folded.contains(&(vec!["main", "handle", "parse"], 1)));
        let top = w.top_functions();
        assert_eq!(top[0].function, "regex");
        assert_eq!((top[0].self_samples, top[0].total_samples), (2, 2));
        let handle = top.iter().find(|f| f.function == "handle").unwrap();
        assert_eq!((handle.self_samples, handle.total_samples), (0, 3));
    }

    #[test]
    fn keeps_at_most_its_limit() {
        let mut p = ProfileBuilder::new(2);
        for i in 0..5 {
            let kept = p.add(i, &[frame("f")]);
            assert_eq!(kept, i < 2);
        }
        assert_eq!(p.samples(), 2);
        assert!(!p.add(9, &[]));
    }
}
