//! `tcp-echo`: the smallest TCP server — every byte comes back. Prints the bound address
//! first. `--bind ADDR` (default 127.0.0.1:0).
#![allow(clippy::print_stdout)]

#[path = "support/args.rs"]
mod args;

use std::io::Write;

use loopd::engine::{Handle, ReadEvent, RunMode, Tcp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = args::bind()?;
    let (mut lp, _observed) = args::observed_loop()?;
    let server = Tcp::new(&mut lp);
    server.bind(&mut lp, bind)?;
    server.listen(&mut lp, 128, |lp, server, status| {
        if status.is_err() {
            return; // out of file descriptors: the engine retries
        }
        let Ok(client) = server.accept(lp) else {
            return;
        };
        if let Ok(peer) = client.peer_addr(lp) {
            client.set_label(lp, format!("tcp-echo peer {peer}"));
        }
        let _ = client.read_start(lp, |lp, client, ev| match ev {
            ReadEvent::Data(bytes) => {
                let _ = client.write(lp, bytes.to_vec(), None);
            }
            ReadEvent::Eof | ReadEvent::Error(_) => client.close(lp),
        });
    })?;
    let addr = server.local_addr(&lp)?;
    server.set_label(&mut lp, format!("tcp-echo listen {addr}"));
    println!("listening on tcp {addr}");
    std::io::stdout().flush()?;
    lp.run(RunMode::Default);
    Ok(())
}
