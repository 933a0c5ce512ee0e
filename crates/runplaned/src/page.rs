//! Pages of list answers: as many entries as fit in `PAGE_BUDGET` bytes of JSON, so that no
//! answer outgrows a packet however many users, sessions or lingering users there are (see
//! the paging rules in runplane-proto).

use runplane_proto::PAGE_BUDGET;
use serde::Serialize;

/// Counts what a serializer writes, without keeping it.
struct Count(usize);

impl std::io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn encoded_len<T: Serialize>(item: &T) -> usize {
    let mut c = Count(0);
    // Serializing our own types into a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, item);
    c.0 + 1 // the separating comma
}

/// Takes entries in order while they fit in a page, and says whether any was left out. A
/// page holds at least one entry, so that a client paging through always advances.
pub fn page<T: Serialize>(items: impl IntoIterator<Item = T>) -> (Vec<T>, bool) {
    page_within(items, PAGE_BUDGET)
}

fn page_within<T: Serialize>(items: impl IntoIterator<Item = T>, budget: usize) -> (Vec<T>, bool) {
    let mut out = Vec::new();
    let mut used = 0;
    for item in items {
        let n = encoded_len(&item);
        if !out.is_empty() && used + n > budget {
            return (out, true);
        }
        used += n;
        out.push(item);
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fill_to_the_budget_and_always_advance() {
        let words: Vec<String> = (0..100).map(|i| format!("{i:08}")).collect(); // 11 bytes each
        let (p, more) = page_within(words.iter(), 55);
        assert_eq!((p.len(), more), (5, true));
        let (p, more) = page_within(words.iter().skip(95), 55);
        assert_eq!((p.len(), more), (5, false));
        // An entry larger than the budget still makes a page of its own.
        let big = ["x".repeat(100), "y".to_owned()];
        let (p, more) = page_within(big.iter(), 55);
        assert_eq!((p.len(), more), (1, true));
        let (p, more) = page_within(Vec::<String>::new(), 55);
        assert!(p.is_empty() && !more);
        // The real budget leaves room for the envelope in a packet.
        let all: Vec<String> = (0..20_000).map(|i| format!("{i:08}")).collect();
        let (p, more) = page(all.iter());
        assert!(more);
        let answer = runplane_proto::encode_response(u64::MAX, &runplane_proto::answer(&p));
        assert!(answer.len() <= runplane_proto::MAX_MESSAGE);
        assert!(!String::from_utf8(answer).unwrap().contains("E2BIG"));
    }
}
