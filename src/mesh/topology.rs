//! Which nodes of a mesh dial which.

use crate::splitmix::SplitMix64;

/// A mesh shape: the edges `connect_topology` dials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// Every node to every other.
    Full,
    /// Node `i` to `i + 1`, and the last back to the first.
    Ring,
    /// Node 0 to every other.
    Star,
    /// Node `i` to `i + 1`.
    Line,
    /// A line (so the mesh is connected) plus random edges until every node has at least
    /// `degree` neighbours; the same `seed` gives the same edges.
    Random {
        /// The minimum number of neighbours per node.
        degree: usize,
        /// The seed of the edge choice.
        seed: u64,
    },
    /// No edges.
    None,
}

impl Topology {
    /// The undirected edges `(a, b)` with `a < b`, for `n` nodes, without duplicates.
    pub fn edges(self, n: usize) -> Vec<(usize, usize)> {
        let mut edges: Vec<(usize, usize)> = match self {
            Topology::None => Vec::new(),
            Topology::Full => (0..n)
                .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
                .collect(),
            Topology::Line => (1..n).map(|b| (b - 1, b)).collect(),
            Topology::Ring => {
                let mut edges: Vec<_> = (1..n).map(|b| (b - 1, b)).collect();
                if n > 2 {
                    edges.push((0, n - 1));
                }
                edges
            }
            Topology::Star => (1..n).map(|b| (0, b)).collect(),
            Topology::Random { degree, seed } => random_edges(n, degree, seed),
        };
        edges.sort_unstable();
        edges.dedup();
        edges
    }
}

fn random_edges(n: usize, degree: usize, seed: u64) -> Vec<(usize, usize)> {
    let mut edges: Vec<(usize, usize)> = (1..n).map(|b| (b - 1, b)).collect();
    let mut degrees = vec![0usize; n];
    for &(a, b) in &edges {
        degrees[a] += 1;
        degrees[b] += 1;
    }
    let target = degree.min(n.saturating_sub(1));
    let mut stream = SplitMix64::new(seed);
    let mut next = |bound: usize| stream.below(bound);
    for a in 0..n {
        let mut attempts = 0;
        while degrees[a] < target && attempts < 16 * n {
            attempts += 1;
            let b = next(n);
            let edge = (a.min(b), a.max(b));
            if a != b && !edges.contains(&edge) {
                edges.push(edge);
                degrees[a] += 1;
                degrees[b] += 1;
            }
        }
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::Topology;

    #[test]
    fn shapes_have_the_expected_edges() {
        assert_eq!(Topology::Full.edges(4).len(), 6);
        assert_eq!(Topology::Ring.edges(16).len(), 16);
        assert_eq!(Topology::Ring.edges(2), vec![(0, 1)]);
        assert_eq!(
            Topology::Star.edges(5),
            vec![(0, 1), (0, 2), (0, 3), (0, 4)]
        );
        assert_eq!(Topology::Line.edges(3), vec![(0, 1), (1, 2)]);
        let random = Topology::Random { degree: 3, seed: 7 }.edges(10);
        assert_eq!(
            random,
            Topology::Random { degree: 3, seed: 7 }.edges(10),
            "seeded"
        );
        for node in 0..10 {
            let degree = random
                .iter()
                .filter(|(a, b)| *a == node || *b == node)
                .count();
            assert!(degree >= 3, "node {node} has {degree} neighbours");
        }
    }
}
