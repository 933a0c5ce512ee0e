//! `runplane ping`: is the daemon there, and which one.

use crate::args::{Cli, Output};
use crate::{Failure, connect, print_json};

pub fn run(cli: &Cli, out: Output) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    let pong = c.ping()?;
    if out.json {
        return print_json(&pong);
    }
    println!(
        "runplaned {} (pid {}) answers on {}",
        pong.version,
        pong.pid,
        c.path().display()
    );
    Ok(())
}
