//! loop-top: a client of the loopd control socket (not yet built; see the open issues).

fn main() {
    eprintln!("loop-top is not built yet");
    std::process::exit(2);
}
