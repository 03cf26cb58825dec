//! A copy-on-write view of one partition of an image file: reads come from the file (or
//! from what was written), writes stay in memory, block by block, until [`Overlay::dirty`]
//! hands them over. So a refusal at any point changes nothing, and only the blocks that
//! changed are written back.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes per overlay block.
pub const BLOCK: u64 = 4096;

#[derive(Debug)]
pub struct Overlay<F> {
    file: F,
    /// The partition's first byte in the file, and its length.
    start: u64,
    len: u64,
    pos: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl<F: Read + Seek> Overlay<F> {
    pub fn new(file: F, start: u64, len: u64) -> Overlay<F> {
        Overlay {
            file,
            start,
            len,
            pos: 0,
            blocks: BTreeMap::new(),
        }
    }

    /// The changed blocks: (offset in the partition, bytes).
    pub fn dirty(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.blocks.iter().map(|(n, b)| (n * BLOCK, b.as_slice()))
    }

    /// Block `n` as the partition has it now.
    fn block(&mut self, n: u64) -> io::Result<Vec<u8>> {
        if let Some(block) = self.blocks.get(&n) {
            return Ok(block.clone());
        }
        let size = BLOCK.min(self.len - n * BLOCK);
        let mut bytes = vec![0u8; usize::try_from(size).unwrap_or(0)];
        self.file.seek(SeekFrom::Start(self.start + n * BLOCK))?;
        self.file.read_exact(&mut bytes)?;
        Ok(bytes)
    }
}

impl<F: Read + Seek> Read for Overlay<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = self.pos / BLOCK;
        let offset = usize::try_from(self.pos % BLOCK).unwrap_or(0);
        let block = self.block(n)?;
        let count = buf.len().min(block.len() - offset);
        buf[..count].copy_from_slice(&block[offset..offset + count]);
        self.pos += count as u64;
        Ok(count)
    }
}

impl<F: Read + Seek> Write for Overlay<F> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "a write beyond the partition's end",
            ));
        }
        let n = self.pos / BLOCK;
        let offset = usize::try_from(self.pos % BLOCK).unwrap_or(0);
        let mut block = self.block(n)?;
        let count = buf.len().min(block.len() - offset);
        block[offset..offset + count].copy_from_slice(&buf[..count]);
        self.blocks.insert(n, block);
        self.pos += count as u64;
        Ok(count)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: Read + Seek> Seek for Overlay<F> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        match target {
            Some(at) if at <= self.len => {
                self.pos = at;
                Ok(at)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a seek outside the partition",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let data: Vec<u8> = (0..3 * BLOCK + 100).map(|i| (i % 251) as u8).collect();
        let mut overlay = Overlay::new(Cursor::new(data.clone()), 100, 2 * BLOCK + 50);
        overlay.seek(SeekFrom::Start(BLOCK - 2)).expect("seek");
        overlay.write_all(b"abcd").expect("write");
        overlay.seek(SeekFrom::Start(BLOCK - 3)).expect("seek");
        let mut got = [0u8; 6];
        overlay.read_exact(&mut got).expect("read");
        assert_eq!(&got[1..5], b"abcd");
        assert_eq!(got[0], data[(100 + BLOCK - 3) as usize]);
        let dirty: Vec<u64> = overlay.dirty().map(|(at, _)| at).collect();
        assert_eq!(dirty, [0, BLOCK]);
        assert_eq!(overlay.file.get_ref(), &data, "the file is untouched");
        overlay.seek(SeekFrom::End(0)).expect("the end");
        assert!(overlay.write(b"x").is_err(), "nothing past the partition");
        assert!(overlay.seek(SeekFrom::End(1)).is_err());
    }
}
