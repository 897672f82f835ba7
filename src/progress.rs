//! Progress of long loops on an interactive terminal (a bar on stderr); nothing when stderr is
//! not a terminal, so logs of scheduled runs stay clean.

use std::io::IsTerminal;

/// A progress bar over `len` units named `unit`, on an interactive terminal when `len` is at
/// least `min_len`; `None` otherwise.
pub fn bar(prefix: &str, unit: &str, len: usize, min_len: usize) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() || len < min_len {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{prefix}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}} eta {{eta}}"
        ))
        .expect("valid template: this is a bug"),
    );
    bar.set_prefix(prefix.to_string());
    Some(bar)
}
