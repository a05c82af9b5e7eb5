//! loopctl: a client of the loopd control socket (not yet built; see the open issues).

fn main() {
    eprintln!("loopctl is not built yet");
    std::process::exit(2);
}
