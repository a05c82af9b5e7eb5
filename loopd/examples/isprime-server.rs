//! `isprime-server`: the TCP primality server of event-loop tutorials. Each line is a number;
//! the answer is `N is prime` / `N is composite` (or `error: …`). By default the naive trial
//! division runs on the thread pool (`queue_work_slow`: CPU-bound work, at most half the
//! workers) and the loop stays free; with `--inline` it runs in the read callback and blocks
//! the loop — `loop-top` then shows the stall, attributed to the connection, with
//! `is_prime` in the stack. Try `2305843009213693951` (a few seconds).
//!
//! Prints the bound address first. `--bind ADDR` (default 127.0.0.1:0), `--inline`.
#![allow(clippy::print_stdout)]

#[path = "support/args.rs"]
mod args;

use std::io::Write;

use loopd::engine::{Handle, Loop, ReadEvent, RunMode, Tcp};

/// Naive trial division; `checkpoint` returns false to give up (the client went away).
#[inline(never)]
fn is_prime(n: u64, mut checkpoint: impl FnMut() -> bool) -> Option<bool> {
    if n < 2 {
        return Some(false);
    }
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return Some(false);
        }
        if d.is_multiple_of(65_536) && !checkpoint() {
            return None;
        }
        d += 1;
    }
    Some(true)
}

fn answer(line: &str, prime: Option<bool>) -> String {
    match prime {
        Some(true) => format!("{line} is prime\n"),
        Some(false) => format!("{line} is composite\n"),
        None => "error: cancelled\n".into(),
    }
}

/// One line: answered inline, or computed on the pool and answered when done.
fn handle_line(lp: &mut Loop, client: Tcp, line: String, inline: bool) {
    let Ok(n) = line.parse::<u64>() else {
        let _ = client.write(lp, b"error: not a number\n".to_vec(), None);
        return;
    };
    if inline {
        let text = answer(&line, is_prime(n, || true));
        let _ = client.write(lp, text.into_bytes(), None);
        return;
    }
    let work = lp.queue_work_slow(
        move |ctx| is_prime(n, || ctx.checkpoint().is_ok()),
        move |lp, result| {
            let text = answer(&line, result.ok().flatten());
            // The connection may have closed meanwhile: the write then fails, harmlessly.
            let _ = client.write(lp, text.into_bytes(), None);
        },
    );
    work.set_label(lp, format!("is_prime({n})"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bind = args::bind()?;
    let inline = args::flag("inline");
    let (mut lp, _observed) = args::observed_loop()?;
    let server = Tcp::new(&mut lp);
    server.bind(&mut lp, bind)?;
    server.listen(&mut lp, 128, move |lp, server, status| {
        if status.is_err() {
            return;
        }
        let Ok(client) = server.accept(lp) else {
            return;
        };
        if let Ok(peer) = client.peer_addr(lp) {
            client.set_label(lp, format!("isprime peer {peer}"));
        }
        let mut pending = Vec::new();
        let _ = client.read_start(lp, move |lp, client, ev| match ev {
            ReadEvent::Data(bytes) => {
                pending.extend_from_slice(bytes);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    let line = String::from_utf8_lossy(&line).trim().to_string();
                    handle_line(lp, client, line, inline);
                }
                if pending.len() > 64 {
                    let _ = client.write(lp, b"error: line too long\n".to_vec(), None);
                    pending.clear();
                }
            }
            ReadEvent::Eof | ReadEvent::Error(_) => client.close(lp),
        });
    })?;
    let addr = server.local_addr(&lp)?;
    server.set_label(&mut lp, format!("isprime listen {addr}"));
    println!(
        "listening on tcp {addr} ({})",
        if inline { "inline" } else { "pool" }
    );
    std::io::stdout().flush()?;
    lp.run(RunMode::Default);
    Ok(())
}
