//! Facts about each path of one index (its class, the rule removing it, the
//! new layer it goes to) held by the path's id, so that they cannot fall out of
//! step with the index: a `PerPath` is built only from an index, one value per
//! path, and is read by the ids that index hands out.

use std::ops::{Index, IndexMut};

use super::{FsIndex, Node};

/// A path of a finished index: its position in `FsIndex::iter()` order.
/// Positions shift when a path is added or removed, so only an index whose
/// paths are settled hands ids out (see `FsIndex::iter_ids`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathId(u32);

impl PathId {
    pub(super) fn new(position: usize) -> Self {
        PathId(u32::try_from(position).expect("fewer than 4 billion paths"))
    }

    fn position(self) -> usize {
        self.0 as usize
    }
}

/// One value per path of an index, in the index's order.
#[derive(Clone, Debug)]
pub struct PerPath<T> {
    values: Vec<T>,
}

impl<T> PerPath<T> {
    /// A value for each path, computed in `iter()` order.
    pub fn new(index: &FsIndex, mut f: impl FnMut(PathId, &str, &Node) -> T) -> Self {
        let mut values = Vec::with_capacity(index.len());
        values.extend(index.iter_ids().map(|(id, path, node)| f(id, path, node)));
        PerPath { values }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The values with their paths' ids, in index order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (PathId, &T)> + ExactSizeIterator {
        self.values
            .iter()
            .enumerate()
            .map(|(i, v)| (PathId::new(i), v))
    }

    /// The values alone, in index order.
    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.values.iter()
    }
}

impl<T> Index<PathId> for PerPath<T> {
    type Output = T;

    fn index(&self, id: PathId) -> &T {
        &self.values[id.position()]
    }
}

impl<T> IndexMut<PathId> for PerPath<T> {
    fn index_mut(&mut self, id: PathId) -> &mut T {
        &mut self.values[id.position()]
    }
}
