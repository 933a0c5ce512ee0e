//! `runplane reload`: re-read the daemon's configuration, as SIGHUP does, but with an answer.

use crate::args::{Cli, Output};
use crate::{Failure, connect, print_json};

pub fn run(cli: &Cli, out: Output) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    let st = c.reload()?;
    if out.json {
        return print_json(&st);
    }
    let from = st.path.as_deref().unwrap_or("built-in defaults");
    println!("reloaded from {from} (generation {})", st.generation);
    if !st.pending_restart.is_empty() {
        println!(
            "takes effect at the next start: {}",
            st.pending_restart.join(", ")
        );
    }
    Ok(())
}
