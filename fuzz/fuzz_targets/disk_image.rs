//! `shoal flash` on arbitrary disk images (`shoal_hub::flash`): the partition table, the FAT
//! boot partition (fatfs through the copy-on-write overlay), the ext4 root (ext4-view) and the
//! ELF probe, all on bytes from the fuzzer.
//!
//! Never panics; a refusal leaves the image byte for byte as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_hub::flash::{self, AgentSource, Request, Target};
use shoal_model::bootstrap::Bootstrap;

/// The smallest static x86_64 ELF header `flash` accepts as an agent.
fn tiny_agent() -> Vec<u8> {
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[18] = 62;
    elf
}

fuzz_target!(|data: &[u8]| {
    // Whole images, and the partition table alone.
    let _ = flash::table::read(data, data.len() as u64);
    let _ = flash::elf::read(data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let image = dir.path().join("image.img");
    let agent = dir.path().join("agent");
    if std::fs::write(&image, data).is_err() || std::fs::write(&agent, tiny_agent()).is_err() {
        return;
    }
    let bootstrap = Bootstrap {
        hub: "https://hub.example:7440".parse().expect("a valid url"),
        token: None,
        labels: Default::default(),
    };
    for arch in [None, Some(flash::Arch::X86_64)] {
        let outcome = flash::flash(&Request {
            image: &image,
            target: Target::InPlace,
            agent: AgentSource::File(agent.clone()),
            arch,
            bootstrap: &bootstrap,
        });
        if let Err(error) = outcome {
            assert!(!error.to_string().is_empty());
            let now = std::fs::read(&image).expect("the image");
            assert_eq!(now, data, "a refusal changed the image: {error}");
        }
    }
});
