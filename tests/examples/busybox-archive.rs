//! Writes a busybox image (Debian's static busybox and common applets) as an OCI image-layout
//! tarball tagged with the reference given, for benchmarks and manual runs:
//! `cargo run -p shoal-tests --example busybox-archive -- /tmp/demo.tar localhost/shoal-demo:latest`
//! (the reference defaults to the tests' `localhost/busybox:test`).

use shoal_tests::images::{busybox_layer, Image, OciLayout};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(out) = args.next() else {
        eprintln!("usage: busybox-archive OUT.tar [REFERENCE]");
        std::process::exit(2);
    };
    let reference = args
        .next()
        .unwrap_or_else(|| shoal_tests::agent::BUSYBOX.to_string());
    let dir = std::env::temp_dir().join(format!("shoal-busybox-archive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let mut layout = OciLayout::create(&dir);
    let descriptor = layout.add_image(&Image::new(vec![busybox_layer()]).cmd(&["/bin/sh"]));
    layout.tag(&reference, &descriptor);
    layout.to_tar(std::path::Path::new(&out));
    let _ = std::fs::remove_dir_all(&dir);
    println!("{out}: {reference}");
}
