#[meshtrace::traced(record(user_id))]
fn handler(id: u64) -> u64 {
    id
}

struct Store;

impl Store {
    #[meshtrace::traced(record(self))]
    fn get(&self) {}
}

fn main() {}
