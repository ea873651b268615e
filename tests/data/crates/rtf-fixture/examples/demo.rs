// Stripped by the evaluator.
fn main() {
    println!("{}", rtf_fixture::digit_count(12345));
}
