use super::*;

#[test]
fn urls_split() {
    let (s, q) = split_url("/v1/agents/h%2Fx/events?after=3&wait=0");
    assert_eq!(s, vec!["v1", "agents", "h/x", "events"]);
    assert_eq!(qget(&q, "after"), Some("3"));
    assert_eq!(percent_decode("%", true), "%");
    assert_eq!(percent_decode("a%4", true), "a%4");
    assert_eq!(percent_decode("a+b%C3%A9", false), "a+bé");
    let (s, q) = split_url("/x+y?k=a+b");
    assert_eq!(s, vec!["x+y"]);
    assert_eq!(qget(&q, "k"), Some("a b"));
}
