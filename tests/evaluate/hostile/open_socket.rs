#[test]
fn phones_home() {
    let stream = std::net::TcpStream::connect(("1.1.1.1", 80));
    assert!(stream.is_ok(), "no network: {:?}", stream.err());
}
