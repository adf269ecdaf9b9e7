//! Path keys ordered component by component, so a directory's subtree is one
//! contiguous range right after the directory and parents sort before children.

use std::cmp::Ordering;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PathKey(Box<str>);

impl PathKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for PathKey {
    fn from(s: &str) -> Self {
        PathKey(s.into())
    }
}

impl Ord for PathKey {
    fn cmp(&self, other: &Self) -> Ordering {
        // '/' sorts below every other byte: "a" < "a/b" < "a-b".
        let map = |b: u8| if b == b'/' { 0 } else { b };
        self.0.bytes().map(map).cmp(other.0.bytes().map(map))
    }
}

impl PartialOrd for PathKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
