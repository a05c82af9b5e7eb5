//! The data file of the `fs_read` scenario: created once per harness run (random-ish
//! bytes, n × chunk long), handed to every peer as `--file PATH --sum S`, removed when the
//! run ends.
//!
//! Every peer checks that it read exactly the file's size and that its checksum matches
//! `--sum`. The checksum is the wrapping (mod 2^64) sum of the bytes at file offsets
//! divisible by [`SAMPLE_STRIDE`]: cheap enough (1,024 additions per 64 KiB chunk, also in
//! JavaScript) not to weigh on the figure, and it catches a chunk read from the wrong
//! offset or not at all.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

/// The checksum samples the bytes at file offsets divisible by this.
pub const SAMPLE_STRIDE: u64 = 64;

/// A data file that exists until this is dropped.
#[derive(Debug)]
pub struct DataFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its checksum ([`sample_sum`] of the whole file).
    pub sum: u64,
}

impl DataFile {
    /// Writes a file of `size` pseudo-random bytes in `dir` (created if need be), named
    /// after this process so that concurrent harness runs do not share one; files left by
    /// harness runs that are gone (killed) are removed first.
    pub fn create(dir: &Path, size: u64) -> Result<DataFile> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        remove_stale(dir);
        let path = dir.join(format!("fs_read-{}.bin", std::process::id()));
        let file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        // From here on the file is removed again if anything fails.
        let mut data = DataFile { path, sum: 0 };
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut block = vec![0u8; 1 << 20];
        let (mut written, mut sum) = (0u64, 0u64);
        while written < size {
            for word in block.chunks_exact_mut(8) {
                // xorshift64: fast, and no two chunks of the file alike.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                word.copy_from_slice(&rng.to_le_bytes());
            }
            let len = usize::try_from((size - written).min(block.len() as u64))?;
            sum = sum.wrapping_add(sample_sum(written, &block[..len]));
            out.write_all(&block[..len])
                .with_context(|| format!("cannot write {}", data.path.display()))?;
            written += len as u64;
        }
        out.flush()
            .with_context(|| format!("cannot write {}", data.path.display()))?;
        data.sum = sum;
        Ok(data)
    }

    /// The peer arguments that name it: `--file PATH --sum S`.
    pub fn argv(&self) -> [String; 4] {
        [
            "--file".to_owned(),
            self.path.display().to_string(),
            "--sum".to_owned(),
            self.sum.to_string(),
        ]
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The checksum of `data` read at file offset `offset`: the wrapping sum of its bytes at
/// file offsets divisible by [`SAMPLE_STRIDE`] (every peer computes it the same way).
pub fn sample_sum(offset: u64, data: &[u8]) -> u64 {
    let first = (SAMPLE_STRIDE - offset % SAMPLE_STRIDE) % SAMPLE_STRIDE;
    data.iter()
        .skip(usize::try_from(first).unwrap_or(usize::MAX))
        .step_by(usize::try_from(SAMPLE_STRIDE).unwrap_or(1))
        .fold(0u64, |s, b| s.wrapping_add(u64::from(*b)))
}

/// Removes `fs_read-<pid>.bin` files whose harness process no longer exists.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("fs_read-")?.strip_suffix(".bin"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sum_does_not_depend_on_how_the_file_is_cut() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = sample_sum(0, &data);
        let expected: u64 = data.iter().step_by(64).map(|b| u64::from(*b)).sum();
        assert_eq!(whole, expected);
        for cut in [1, 63, 64, 65, 500, 999] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                sample_sum(0, a).wrapping_add(sample_sum(cut as u64, b)),
                whole,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn creates_checks_and_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("loopd-bench-test-{}", std::process::id()));
        let size = 3 * (1 << 20) + 100;
        let path;
        {
            let f = DataFile::create(&dir, size).unwrap();
            path = f.path.clone();
            let bytes = std::fs::read(&f.path).unwrap();
            assert_eq!(bytes.len() as u64, size);
            assert_eq!(sample_sum(0, &bytes), f.sum);
            assert_eq!(f.argv()[0], "--file");
        }
        assert!(!path.exists());
        let _ = std::fs::remove_dir(&dir);
    }
}
