//! `udp-echo`: the smallest UDP server — each datagram is sent back to where it came from.
//! Prints the bound address first. `--bind ADDR` (default 127.0.0.1:0).
#![allow(clippy::print_stdout)]

#[path = "support/args.rs"]
mod args;

use std::io::Write;

use loopd::engine::{Handle, RunMode, Udp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = args::bind()?;
    let (mut lp, _observed) = args::observed_loop()?;
    let socket = Udp::new(&mut lp);
    socket.bind(&mut lp, bind)?;
    let addr = socket.local_addr(&mut lp)?;
    socket.set_label(&mut lp, format!("udp-echo {addr}"));
    socket.recv_start(&mut lp, |lp, socket, datagram| {
        if let Ok((bytes, from)) = datagram {
            let _ = socket.send(lp, bytes.to_vec(), from, None);
        }
    })?;
    println!("listening on udp {addr}");
    std::io::stdout().flush()?;
    lp.run(RunMode::Default);
    Ok(())
}
