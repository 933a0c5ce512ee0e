//! `runplane linger enable|disable|list`.

use runplane_proto::Linger;

use crate::args::{Cli, LingerCmd};
use crate::{Failure, connect, print_json};

pub fn run(cli: &Cli, what: &LingerCmd) -> Result<(), Failure> {
    let mut c = connect(cli)?;
    let (user, enable, out) = match what {
        LingerCmd::List(out) => {
            let list = c.linger_list()?;
            if out.json {
                return print_json(&list);
            }
            for l in list {
                println!("{}", l.user);
            }
            return Ok(());
        }
        LingerCmd::Enable { user, out } => (user, true, out),
        LingerCmd::Disable { user, out } => (user, false, out),
    };
    let st = c.linger(Linger {
        user: Some(user.clone()),
        uid: None,
        enable,
    })?;
    if out.json {
        return print_json(&st);
    }
    println!(
        "linger {} for {}",
        if st.enabled { "enabled" } else { "disabled" },
        st.user
    );
    Ok(())
}
