#[meshtrace::traced(skip_all)]
fn handler() {}

fn main() {}
