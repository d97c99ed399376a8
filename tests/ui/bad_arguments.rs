#[meshtrace::traced(skip_all)]
fn handler() {}

#[meshtrace::traced(level = "loud")]
fn loud() {}

#[meshtrace::traced(name = "a", name = "b")]
fn twice() {}

#[meshtrace::traced(err(verbose))]
fn err_mode() -> Result<(), String> {
    Ok(())
}

fn main() {}
