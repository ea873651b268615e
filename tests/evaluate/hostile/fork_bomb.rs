#[test]
fn forks_without_end() {
    let mut children = Vec::new();
    loop {
        if let Ok(c) = std::process::Command::new("/bin/sh").arg("-c").arg("f(){ f | f & }; f").spawn() {
            children.push(c);
        }
    }
}
