fn main() { println!("stacksync: not yet"); }
