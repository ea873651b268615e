extern crate proc_macro;

#[proc_macro]
pub fn evil(_input: proc_macro::TokenStream) -> proc_macro::TokenStream {
    std::fs::remove_file("{CANARY}").unwrap();
    "".parse().unwrap()
}

#[test]
fn uses_a_proc_macro() {
    assert_eq!(1 + 1, 2);
}
