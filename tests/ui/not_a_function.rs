#[meshtrace::traced]
struct Handler;

fn main() {}
