//! `wslb` command-line entry point.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    println!("wslb {}", env!("CARGO_PKG_VERSION"));
}
