//! A disk image's partition table (pure, on the bytes of its first sectors): MBR, as
//! Raspberry Pi OS uses, or GPT behind a protective MBR. The MBR's four primary entries are
//! read here (64 bytes; extended partitions are refused rather than followed); GPT through
//! `gptman`, after its header's entry count and size are checked, since `gptman` allocates
//! what the header says. Then every partition must lie inside the image, and no two may
//! overlap.

use std::io::Cursor;

/// Bytes per sector: the only size disk images of boards use.
pub const SECTOR: u64 = 512;

/// What a partition holds, as far as flashing cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// FAT (MBR types 0x01, 0x04, 0x06, 0x0b, 0x0c, 0x0e, 0xef; the EFI system or basic data
    /// GUID): where boards boot from.
    Fat,
    /// A Linux file system (MBR 0x83; the Linux filesystem or a discoverable root GUID).
    Linux,
    Other,
}

/// One partition, in bytes from the start of the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as `fdisk` numbers them.
    pub number: u32,
    pub kind: Kind,
    pub start: u64,
    pub len: u64,
}

impl Partition {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error("the image is {0} bytes, too small to hold a partition table and partitions")]
    TooSmall(u64),
    #[error("it has no partition table (no 0x55AA boot signature in its first sector): is it a disk image, not a partition or a compressed file? (.img.xz must be unpacked first)")]
    NoTable,
    #[error("partition {0} is an extended partition (MBR type 0x{1:02x}): only primary partitions are supported")]
    Extended(u32, u8),
    #[error("its GPT is not valid: {0}")]
    Gpt(String),
    #[error("it has no partitions")]
    Empty,
    #[error("partition {number} ends at byte {end}, beyond the image's end ({len} bytes): the image is truncated, or its partition table is wrong")]
    OutOfRange { number: u32, end: u64, len: u64 },
    #[error("partitions {0} and {1} overlap")]
    Overlap(u32, u32),
}

/// Reads the partition table from `head` (at least the image's first 34 sectors, or all of
/// it when shorter) of an image of `image_len` bytes.
pub fn read(head: &[u8], image_len: u64) -> Result<Vec<Partition>, TableError> {
    if image_len < 34 * SECTOR || head.len() < 2 * SECTOR as usize {
        return Err(TableError::TooSmall(image_len));
    }
    if head[510..512] != [0x55, 0xAA] {
        return Err(TableError::NoTable);
    }
    let entries: Vec<(u32, u8, u64, u64)> = (0..4u32)
        .map(|i| {
            let at = 446 + 16 * i as usize;
            let entry = &head[at..at + 16];
            let sys = entry[4];
            let lba = u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]);
            let sectors = u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]);
            (i + 1, sys, u64::from(lba), u64::from(sectors))
        })
        .filter(|(_, sys, _, sectors)| *sys != 0 && *sectors != 0)
        .collect();
    let mut partitions = if entries.iter().any(|(_, sys, _, _)| *sys == 0xEE) {
        gpt(head)?
    } else {
        let mut out = Vec::new();
        for (number, sys, lba, sectors) in entries {
            let kind = match sys {
                0x05 | 0x0f | 0x85 => return Err(TableError::Extended(number, sys)),
                0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e | 0xef => Kind::Fat,
                0x83 => Kind::Linux,
                _ => Kind::Other,
            };
            out.push(Partition {
                number,
                kind,
                start: lba * SECTOR,
                len: sectors * SECTOR,
            });
        }
        out
    };
    if partitions.is_empty() {
        return Err(TableError::Empty);
    }
    partitions.sort_by_key(|p| p.start);
    for p in &partitions {
        if p.start == 0 || p.end() > image_len {
            return Err(TableError::OutOfRange {
                number: p.number,
                end: p.end(),
                len: image_len,
            });
        }
    }
    for pair in partitions.windows(2) {
        if pair[1].start < pair[0].end() {
            let (a, b) = (
                pair[0].number.min(pair[1].number),
                pair[0].number.max(pair[1].number),
            );
            return Err(TableError::Overlap(a, b));
        }
    }
    Ok(partitions)
}

const ESP: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
const BASIC_DATA: &str = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7";
const LINUX: [&str; 4] = [
    "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709", // root, x86-64
    "B921B045-1DF0-41C3-AF44-4C6F280D3FAE", // root, arm64
    "69DAD710-2CE4-4E3C-B16C-21A1D49ABED3", // root, arm
];

/// A GPT's partitions, its header bounded before `gptman` reads it.
fn gpt(head: &[u8]) -> Result<Vec<Partition>, TableError> {
    let header = &head[SECTOR as usize..2 * SECTOR as usize];
    if &header[..8] != b"EFI PART" {
        return Err(TableError::Gpt(
            "a protective MBR but no GPT header in sector 1".into(),
        ));
    }
    let field = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let (count, size) = (field(80), field(84));
    if !(1..=1024).contains(&count) || size != 128 {
        return Err(TableError::Gpt(format!(
            "{count} entries of {size} bytes (expected up to 1024 of 128)"
        )));
    }
    let needed = 2 * SECTOR as usize + (count as usize * 128);
    if head.len() < needed {
        return Err(TableError::Gpt("its partition entries are cut off".into()));
    }
    let table = gptman::GPT::read_from(&mut Cursor::new(head), SECTOR)
        .map_err(|e| TableError::Gpt(e.to_string()))?;
    Ok(table
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(number, p)| {
            let guid = guid_text(&p.partition_type_guid);
            let kind = if guid == ESP || guid == BASIC_DATA {
                Kind::Fat
            } else if LINUX.contains(&guid.as_str()) {
                Kind::Linux
            } else {
                Kind::Other
            };
            let start = p.starting_lba.saturating_mul(SECTOR);
            let len = p
                .ending_lba
                .saturating_add(1)
                .saturating_sub(p.starting_lba)
                .saturating_mul(SECTOR);
            Partition {
                number,
                kind,
                start,
                len,
            }
        })
        .collect())
}

/// A GPT GUID as written (`C12A7328-F81F-...`): the first three fields are little-endian.
fn guid_text(b: &[u8; 16]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An MBR with `entries` of (type, first sector, sectors).
    fn mbr(entries: &[(u8, u32, u32)]) -> Vec<u8> {
        let mut head = vec![0u8; 34 * SECTOR as usize];
        for (i, (sys, lba, sectors)) in entries.iter().enumerate() {
            let at = 446 + 16 * i;
            head[at + 4] = *sys;
            head[at + 8..at + 12].copy_from_slice(&lba.to_le_bytes());
            head[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        head[510] = 0x55;
        head[511] = 0xAA;
        head
    }

    #[test]
    fn a_raspberry_pi_table_reads_and_broken_ones_are_refused_with_the_reason() {
        let len = 256 * 2048 * SECTOR;
        let pi = mbr(&[(0x0c, 8192, 131072), (0x83, 139264, 200000)]);
        assert_eq!(
            read(&pi, len),
            Ok(vec![
                Partition {
                    number: 1,
                    kind: Kind::Fat,
                    start: 8192 * 512,
                    len: 131072 * 512
                },
                Partition {
                    number: 2,
                    kind: Kind::Linux,
                    start: 139264 * 512,
                    len: 200000 * 512
                },
            ])
        );
        let rows: &[(Vec<u8>, u64, TableError)] = &[
            (pi.clone(), 1000, TableError::TooSmall(1000)),
            (vec![0; 34 * 512], len, TableError::NoTable),
            (mbr(&[]), len, TableError::Empty),
            (
                mbr(&[(0x0c, 8192, 131072), (0x83, 100000, 200000)]),
                len,
                TableError::Overlap(1, 2),
            ),
            (
                mbr(&[(0x0c, 8192, 131072), (0x83, 139264, 600000)]),
                len,
                TableError::OutOfRange {
                    number: 2,
                    end: (139264 + 600000) * 512,
                    len,
                },
            ),
            (
                mbr(&[(0x0c, 8192, 131072), (0x05, 139264, 1000)]),
                len,
                TableError::Extended(2, 5),
            ),
            (
                mbr(&[(0xee, 1, 1000)]),
                len,
                TableError::Gpt("a protective MBR but no GPT header in sector 1".into()),
            ),
        ];
        for (head, len, expected) in rows {
            assert_eq!(read(head, *len).as_ref(), Err(expected), "{expected}");
        }
        let mut huge = mbr(&[(0xee, 1, 1000)]);
        huge[512..520].copy_from_slice(b"EFI PART");
        huge[512 + 80..512 + 84].copy_from_slice(&u32::MAX.to_le_bytes());
        huge[512 + 84..512 + 88].copy_from_slice(&128u32.to_le_bytes());
        let error = read(&huge, len).expect_err("a hostile entry count");
        assert!(error.to_string().contains("4294967295 entries"), "{error}");
    }

    proptest::proptest! {
        /// Any bytes give partitions inside the image that do not overlap, or a reason.
        #[test]
        fn any_bytes_give_sane_partitions_or_a_reason(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..(34 * 512 + 64)),
            len in 0u64..(1 << 40),
        ) {
            if let Ok(parts) = read(&bytes, len) {
                for p in &parts {
                    proptest::prop_assert!(p.end() <= len);
                }
            }
        }
    }
}
