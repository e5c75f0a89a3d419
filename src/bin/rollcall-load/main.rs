//! `rollcall-load`: placeholder while the load tool is being written.

fn main() {
    eprintln!("rollcall-load: not built yet");
    std::process::exit(2);
}
