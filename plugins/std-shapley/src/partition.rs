//! Hierarchical partitions of features (Ward clustering over an adjacency graph) and exact Owen values for
//! the nested binary coalition structure such a merge tree defines.

use std::collections::{BTreeSet, HashMap};

/// A binary merge tree over n leaves: node ids 0..n are leaves, n..2n-1 internal, the root is the last.
/// `children[i]` are the two children of node `n + i`; children always have smaller ids than their parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    pub n_leaves: usize,
    pub children: Vec<(usize, usize)>,
}

/// Owen values per leaf, plus the number of distinct coalitions evaluated and `v(all)`, `v(∅)`.
#[derive(Debug, Clone, PartialEq)]
pub struct OwenResult {
    pub values: Vec<f64>,
    pub evaluations: usize,
    pub v_full: f64,
    pub v_empty: f64,
}

/// Refuse trees whose exact Owen value needs more than this many (leaf, context) terms, Σ_i 2^depth(i):
/// the cost is exponential in depth, so deep (chain-like) trees need rebalancing or sampling instead.
pub const MAX_LEAF_CONTEXTS: usize = 1 << 22;

/// Agglomerative clustering: repeatedly merge the adjacent pair of clusters with the smallest Ward distance
/// `n_a n_b / (n_a + n_b) · ‖μ_a − μ_b‖²` between their size-weighted descriptor means; if no adjacent pair
/// remains (disconnected graph), merge the closest non-adjacent pair. Merging only neighbours keeps every
/// coalition spatially contiguous. Deterministic: ties go to the smallest (a, b) node ids, and each merge
/// is recorded as `(a, b)` with `a < b`. Self-pairs and duplicates in `adjacent` are ignored.
pub fn cluster(descriptors: &[Vec<f64>], sizes: &[usize], adjacent: &[(usize, usize)]) -> Result<Tree, String> {
    let n = descriptors.len();
    if n == 0 {
        return Err("cluster: no features".to_string());
    }
    if sizes.len() != n {
        return Err(format!("cluster: {} sizes for {n} descriptors", sizes.len()));
    }
    let dim = descriptors[0].len();
    for (i, d) in descriptors.iter().enumerate() {
        if d.len() != dim {
            return Err(format!("cluster: descriptor {i} has length {}, expected {dim}", d.len()));
        }
        if d.iter().any(|v| !v.is_finite()) {
            return Err(format!("cluster: descriptor {i} has a non-finite value"));
        }
    }
    if let Some(i) = sizes.iter().position(|&s| s == 0) {
        return Err(format!("cluster: feature {i} has size 0"));
    }
    if let Some(&(a, b)) = adjacent.iter().find(|&&(a, b)| a >= n || b >= n) {
        return Err(format!("cluster: adjacency ({a}, {b}) out of range for {n} features"));
    }
    let mut mean: Vec<Vec<f64>> = descriptors.to_vec();
    let mut size: Vec<f64> = sizes.iter().map(|&s| s as f64).collect();
    let mut nbrs: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for &(a, b) in adjacent {
        if a != b {
            nbrs[a].insert(b);
            nbrs[b].insert(a);
        }
    }
    let mut active: BTreeSet<usize> = (0..n).collect();
    let mut children = Vec::with_capacity(n - 1);
    while active.len() > 1 {
        let ward = |a: usize, b: usize| {
            let d2: f64 = mean[a].iter().zip(&mean[b]).map(|(x, y)| (x - y) * (x - y)).sum();
            size[a] * size[b] / (size[a] + size[b]) * d2
        };
        // Pairs are visited in increasing (a, b) order, so a strict `<` keeps the smallest ids on ties.
        let consider = |best: &mut Option<(f64, usize, usize)>, a: usize, b: usize| {
            let d = ward(a, b);
            if best.is_none_or(|(bd, _, _)| d < bd) {
                *best = Some((d, a, b));
            }
        };
        let mut best = None;
        for &a in &active {
            for &b in nbrs[a].range(a + 1..) {
                consider(&mut best, a, b);
            }
        }
        if best.is_none() {
            for &a in &active {
                for &b in active.range(a + 1..) {
                    consider(&mut best, a, b);
                }
            }
        }
        let (_, a, b) = best.expect("at least two active clusters");
        let id = n + children.len();
        let (sa, sb) = (size[a], size[b]);
        let merged: Vec<f64> = mean[a].iter().zip(&mean[b]).map(|(x, y)| (sa * x + sb * y) / (sa + sb)).collect();
        mean.push(merged);
        size.push(sa + sb);
        let joined: BTreeSet<usize> = nbrs[a].union(&nbrs[b]).copied().filter(|&x| x != a && x != b).collect();
        for &x in &joined {
            nbrs[x].remove(&a);
            nbrs[x].remove(&b);
            nbrs[x].insert(id);
        }
        nbrs[a].clear();
        nbrs[b].clear();
        nbrs.push(joined);
        active.remove(&a);
        active.remove(&b);
        active.insert(id);
        children.push((a, b));
    }
    Ok(Tree { n_leaves: n, children })
}

/// Adjacency of labels in a row-major [h*w] label image (4-neighbourhood), sorted, deduplicated, (a<b).
/// Panics if `labels.len() != h * w` (a caller bug, not a data condition).
pub fn label_adjacency(labels: &[u32], h: usize, w: usize) -> Vec<(usize, usize)> {
    assert_eq!(labels.len(), h * w, "label_adjacency: labels.len() must be h*w");
    let mut pairs = BTreeSet::new();
    for p in 0..h * w {
        let right = (p % w + 1 < w).then_some(p + 1);
        let down = (p + w < h * w).then_some(p + w);
        for q in [right, down].into_iter().flatten() {
            let (a, b) = (labels[p] as usize, labels[q] as usize);
            if a != b {
                pairs.insert((a.min(b), a.max(b)));
            }
        }
    }
    pairs.into_iter().collect()
}

/// Checks the tree shape: n−1 internal nodes, children older than their parent, each node used once.
fn validate(tree: &Tree) -> Result<(), String> {
    let n = tree.n_leaves;
    if n == 0 {
        return Err("owen_values: tree has no leaves".to_string());
    }
    if tree.children.len() != n - 1 {
        return Err(format!("owen_values: {} internal nodes for {n} leaves, expected {}", tree.children.len(), n - 1));
    }
    let mut used = vec![false; 2 * n - 1];
    for (i, &(a, b)) in tree.children.iter().enumerate() {
        for x in [a, b] {
            if x >= n + i {
                return Err(format!("owen_values: node {} has child {x}, which is not older", n + i));
            }
            if std::mem::replace(&mut used[x], true) {
                return Err(format!("owen_values: node {x} has more than one parent"));
            }
        }
    }
    Ok(())
}

/// Exact Owen values of the game v over the nested coalition structure given by the binary tree.
///
/// Definition: the Owen value is the average marginal contribution over all orderings in which the leaves
/// of every subtree are contiguous. For leaf i with siblings T_1..T_d along its root path (depth d), each T_k
/// precedes i independently with probability ½, so `φ_i = Σ_{S ⊆ {1..d}} 2^{−d} [v(O_S ∪ {i}) − v(O_S)]` with
/// `O_S = ∪_{k∈S} T_k`. Recursively: at an internal node with children A and B in context O, A's leaves
/// recurse into contexts O and O∪B, each with weight ½ (symmetrically for B), which gives A the two-player
/// Shapley value ½[v(O∪A) − v(O)] + ½[v(O∪A∪B) − v(O∪B)]; a leaf sums its weighted marginals.
/// The coalitions needed are collected and deduplicated first, then passed to `eval` (true = present) in
/// chunks of at most `batch`; `evaluations` is the number of distinct coalitions. Cost: Σ_i 2^depth(i)
/// terms (O(n²) for a balanced tree), capped by [`MAX_LEAF_CONTEXTS`].
#[allow(clippy::type_complexity)] // the callback type is the interface; an alias would only hide it
pub fn owen_values(
    tree: &Tree,
    batch: usize,
    eval: &mut dyn FnMut(&[Vec<bool>]) -> Result<Vec<f64>, String>,
) -> Result<OwenResult, String> {
    validate(tree)?;
    if batch == 0 {
        return Err("owen_values: batch must be at least 1".to_string());
    }
    let n = tree.n_leaves;
    let words = n.div_ceil(64);
    let mut sets: Vec<Vec<u64>> = (0..n)
        .map(|i| {
            let mut s = vec![0u64; words];
            s[i / 64] |= 1 << (i % 64);
            s
        })
        .collect();
    for &(a, b) in &tree.children {
        let s = sets[a].iter().zip(&sets[b]).map(|(x, y)| x | y).collect();
        sets.push(s);
    }
    let root = 2 * n - 2;
    let mut depth = vec![0u32; 2 * n - 1];
    for (i, &(a, b)) in tree.children.iter().enumerate().rev() {
        depth[a] = depth[n + i] + 1;
        depth[b] = depth[n + i] + 1;
    }
    let mut terms_needed = 0usize;
    for (i, &d) in depth.iter().enumerate().take(n) {
        let t = 1usize.checked_shl(d).filter(|&t| t <= MAX_LEAF_CONTEXTS);
        terms_needed = match t.and_then(|t| terms_needed.checked_add(t)) {
            Some(total) if total <= MAX_LEAF_CONTEXTS => total,
            _ => {
                let limit = MAX_LEAF_CONTEXTS;
                return Err(format!(
                    "owen_values: tree too deep for exact Owen values (leaf {i} at depth {d}; {limit} terms max)"
                ));
            }
        };
    }
    let mut index: HashMap<Vec<u64>, usize> = HashMap::new();
    let mut intern = |s: Vec<u64>| {
        let next = index.len();
        *index.entry(s).or_insert(next)
    };
    let empty_id = intern(vec![0u64; words]);
    let full_id = intern(sets[root].clone());
    let mut terms: Vec<(usize, usize, usize, f64)> = Vec::with_capacity(terms_needed);
    let mut stack: Vec<(usize, Vec<u64>, f64)> = vec![(root, vec![0u64; words], 1.0)];
    while let Some((node, ctx, wt)) = stack.pop() {
        if node < n {
            let mut with = ctx.clone();
            with[node / 64] |= 1 << (node % 64);
            let (w_id, o_id) = (intern(with), intern(ctx));
            terms.push((node, w_id, o_id, wt));
        } else {
            let (a, b) = tree.children[node - n];
            let union = |x: &[u64], y: &[u64]| -> Vec<u64> { x.iter().zip(y).map(|(p, q)| p | q).collect() };
            let half = 0.5 * wt;
            stack.push((b, union(&ctx, &sets[a]), half));
            stack.push((b, ctx.clone(), half));
            stack.push((a, union(&ctx, &sets[b]), half));
            stack.push((a, ctx, half));
        }
    }
    let mut coalitions: Vec<Vec<u64>> = vec![Vec::new(); index.len()];
    for (s, id) in index {
        coalitions[id] = s;
    }
    let mut v = Vec::with_capacity(coalitions.len());
    for chunk in coalitions.chunks(batch) {
        let masks: Vec<Vec<bool>> =
            chunk.iter().map(|s| (0..n).map(|i| (s[i / 64] >> (i % 64)) & 1 == 1).collect()).collect();
        let out = eval(&masks)?;
        if out.len() != masks.len() {
            return Err(format!("owen_values: eval returned {} values for {} coalitions", out.len(), masks.len()));
        }
        if let Some(j) = out.iter().position(|x| !x.is_finite()) {
            return Err(format!(
                "owen_values: eval returned non-finite value {} for coalition {}",
                out[j],
                v.len() + j
            ));
        }
        v.extend(out);
    }
    let mut values = vec![0f64; n];
    for &(leaf, w_id, o_id, wt) in &terms {
        values[leaf] += wt * (v[w_id] - v[o_id]);
    }
    Ok(OwenResult { values, evaluations: coalitions.len(), v_full: v[full_id], v_empty: v[empty_id] })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small deterministic LCG for test data.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn unit(&mut self) -> f64 {
            self.next() as f64 / (1u64 << 31) as f64
        }
    }

    fn mask_of(c: &[bool]) -> usize {
        c.iter().enumerate().filter(|(_, &b)| b).map(|(i, _)| 1 << i).sum()
    }

    /// Runs owen_values on a game given as a function of the bitmask of present players.
    fn owen_of(tree: &Tree, batch: usize, game: &dyn Fn(usize) -> f64) -> OwenResult {
        let mut eval = |cs: &[Vec<bool>]| Ok(cs.iter().map(|c| game(mask_of(c))).collect());
        owen_values(tree, batch, &mut eval).unwrap()
    }

    fn random_tree(n: usize, rng: &mut Lcg) -> Tree {
        let mut active: Vec<usize> = (0..n).collect();
        let mut children = Vec::new();
        while active.len() > 1 {
            let a = active.remove(rng.next() as usize % active.len());
            let b = active.remove(rng.next() as usize % active.len());
            children.push((a, b));
            active.push(n + children.len() - 1);
        }
        Tree { n_leaves: n, children }
    }

    fn balanced(n: usize) -> Tree {
        let mut level: Vec<usize> = (0..n).collect();
        let mut children = Vec::new();
        while level.len() > 1 {
            let mut next = Vec::new();
            for pair in level.chunks(2) {
                if pair.len() == 2 {
                    children.push((pair[0], pair[1]));
                    next.push(n + children.len() - 1);
                } else {
                    next.push(pair[0]);
                }
            }
            level = next;
        }
        Tree { n_leaves: n, children }
    }

    fn leaves(tree: &Tree, node: usize) -> Vec<usize> {
        if node < tree.n_leaves {
            return vec![node];
        }
        let (a, b) = tree.children[node - tree.n_leaves];
        let mut l = leaves(tree, a);
        l.extend(leaves(tree, b));
        l
    }

    /// Brute force from the definition: average marginal contribution over every permutation in which each
    /// subtree's leaves occupy contiguous positions.
    fn brute_owen(tree: &Tree, game: &dyn Fn(usize) -> f64) -> Vec<f64> {
        let n = tree.n_leaves;
        let groups: Vec<Vec<usize>> = (n..2 * n - 1).map(|node| leaves(tree, node)).collect();
        let mut perm: Vec<usize> = (0..n).collect();
        let mut total = vec![0f64; n];
        let mut count = 0usize;
        fn permute(k: usize, perm: &mut Vec<usize>, f: &mut dyn FnMut(&[usize])) {
            if k == perm.len() {
                return f(perm);
            }
            for i in k..perm.len() {
                perm.swap(k, i);
                permute(k + 1, perm, f);
                perm.swap(k, i);
            }
        }
        permute(0, &mut perm, &mut |p: &[usize]| {
            let mut pos = vec![0; n];
            for (i, &x) in p.iter().enumerate() {
                pos[x] = i;
            }
            let contiguous = groups.iter().all(|g| {
                let (lo, hi) = (g.iter().map(|&x| pos[x]).min().unwrap(), g.iter().map(|&x| pos[x]).max().unwrap());
                hi - lo + 1 == g.len()
            });
            if contiguous {
                count += 1;
                let mut s = 0usize;
                for &x in p {
                    total[x] += game(s | 1 << x) - game(s);
                    s |= 1 << x;
                }
            }
        });
        total.iter().map(|t| t / count as f64).collect()
    }

    fn random_game(n: usize, rng: &mut Lcg) -> Vec<f64> {
        (0..1usize << n).map(|_| rng.unit() * 4.0 - 2.0).collect()
    }

    #[test]
    fn efficiency_on_nonlinear_game() {
        let mut rng = Lcg(7);
        let n = 12;
        let w: Vec<f64> = (0..n).map(|_| rng.unit() - 0.3).collect();
        let game = |s: usize| {
            let sum: f64 = (0..n).filter(|i| s >> i & 1 == 1).map(|i| w[i]).sum();
            let prod: f64 = (0..n).filter(|i| s >> i & 1 == 1 && i % 3 == 0).map(|i| 1.0 + w[i]).product();
            sum * sum + prod + ((s & 0b1010_0110) == 0b1010_0110) as u8 as f64
        };
        for tree in [balanced(n), random_tree(n, &mut rng), random_tree(n, &mut rng)] {
            let r = owen_of(&tree, 37, &game);
            let total: f64 = r.values.iter().sum();
            assert!((total - (r.v_full - r.v_empty)).abs() < 1e-9);
            assert!((r.v_full - game((1 << n) - 1)).abs() < 1e-15 && r.v_empty == game(0));
        }
    }

    #[test]
    fn additive_game_gives_weights() {
        let mut rng = Lcg(11);
        for n in [1, 2, 5, 9] {
            let w: Vec<f64> = (0..n).map(|_| rng.unit() * 10.0 - 5.0).collect();
            let game = |s: usize| (0..n).filter(|i| s >> i & 1 == 1).map(|i| w[i]).sum::<f64>();
            for tree in [balanced(n), random_tree(n, &mut rng)] {
                let r = owen_of(&tree, 4, &game);
                for (i, (got, want)) in r.values.iter().zip(&w).enumerate() {
                    assert!((got - want).abs() < 1e-12, "n={n} i={i}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn two_leaves_is_shapley_and_three_by_hand() {
        let tree = Tree { n_leaves: 2, children: vec![(0, 1)] };
        let g2 = [0.0, 1.0, 3.0, 7.0]; // v(∅), v{0}, v{1}, v{0,1}
        let r = owen_of(&tree, 8, &|s| g2[s]);
        // Shapley: φ0 = ½[(1−0) + (7−3)] = 2.5, φ1 = ½[(3−0) + (7−1)] = 4.5.
        assert_eq!(r.values, vec![2.5, 4.5]);
        assert_eq!(r.evaluations, 4);
        // Tree ((0,1),2); v: ∅=0, {0}=1, {1}=2, {0,1}=5, {2}=3, {0,2}=4, {1,2}=8, {0,1,2}=10.
        // Consistent orders: 012, 102, 201, 210 (each ¼).
        // φ2 = ½[v{2} − v∅] + ½[v{012} − v{01}] = ½·3 + ½·5 = 4.
        // φ0 = ¼[(v0−v∅) + (v01−v1) + (v02−v2) + (v012−v12)] = ¼[1 + 3 + 1 + 2] = 1.75.
        // φ1 = ¼[(v1−v∅) + (v01−v0) + (v12−v2) + (v012−v02)] = ¼[2 + 4 + 5 + 6] = 4.25.
        // (Shapley would give φ2 = 1/3·3 + 1/6·3 + 1/6·6 + 1/3·5 = 4.17, so the structure matters.)
        let g3 = [0.0, 1.0, 2.0, 5.0, 3.0, 4.0, 8.0, 10.0];
        let tree = Tree { n_leaves: 3, children: vec![(0, 1), (3, 2)] };
        let r = owen_of(&tree, 3, &|s| g3[s]);
        assert_eq!(r.values, vec![1.75, 4.25, 4.0]);
        assert_eq!(brute_owen(&tree, &|s| g3[s]), vec![1.75, 4.25, 4.0]);
    }

    #[test]
    fn matches_brute_force_on_random_trees() {
        let mut rng = Lcg(2024);
        for n in 1..=6 {
            for _ in 0..4 {
                let tree = random_tree(n, &mut rng);
                let table = random_game(n, &mut rng);
                let game = |s: usize| table[s];
                let r = owen_of(&tree, 5, &game);
                let b = brute_owen(&tree, &game);
                for (i, (got, want)) in r.values.iter().zip(&b).enumerate() {
                    assert!((got - want).abs() < 1e-12, "n={n} tree={tree:?} i={i}");
                }
            }
        }
    }

    #[test]
    fn symmetric_features_get_equal_values() {
        // Players 0 and 1 are interchangeable in the game and siblings in ((0,1),(2,3)).
        let w = [1.0, 1.0, 2.0, 3.0];
        let game = |s: usize| {
            let x: f64 = (0..4).filter(|i| s >> i & 1 == 1).map(|i| w[i]).sum();
            x * x * x - 2.0 * x
        };
        let r = owen_of(&balanced(4), 2, &game);
        assert!((r.values[0] - r.values[1]).abs() < 1e-12);
        // A symmetric game on a balanced tree of 8: every leaf is in a symmetric position.
        let r = owen_of(&balanced(8), 16, &|s: usize| (s.count_ones() as f64).powi(3));
        for x in &r.values {
            assert!((x - r.values[0]).abs() < 1e-9);
        }
    }

    #[test]
    fn evaluations_are_distinct_and_batched() {
        for (n, batch) in [(16, 50), (7, 3), (1, 1)] {
            let tree = if n == 7 { random_tree(7, &mut Lcg(3)) } else { balanced(n) };
            let mut seen = std::collections::HashSet::new();
            let mut calls = 0usize;
            let mut eval = |cs: &[Vec<bool>]| {
                assert!(!cs.is_empty() && cs.len() <= batch);
                calls += cs.len();
                for c in cs {
                    assert_eq!(c.len(), n);
                    seen.insert(c.clone());
                }
                Ok(cs.iter().map(|c| mask_of(c) as f64).collect())
            };
            let r = owen_values(&tree, batch, &mut eval).unwrap();
            assert_eq!(r.evaluations, seen.len());
            assert_eq!(calls, seen.len());
            if n == 16 {
                eprintln!("balanced tree of 16 leaves: {} distinct coalitions (n² = 256)", r.evaluations);
                assert!(r.evaluations <= 2 * n * n);
            }
        }
    }

    #[test]
    fn owen_errors() {
        let tree = balanced(4);
        let mut ok = |cs: &[Vec<bool>]| Ok(vec![0.0; cs.len()]);
        assert!(owen_values(&tree, 0, &mut ok).unwrap_err().contains("batch"));
        let mut short = |cs: &[Vec<bool>]| Ok(vec![0.0; cs.len() - 1]);
        assert!(owen_values(&tree, 4, &mut short).unwrap_err().contains("returned"));
        let mut nan = |cs: &[Vec<bool>]| Ok(vec![f64::NAN; cs.len()]);
        assert!(owen_values(&tree, 4, &mut nan).unwrap_err().contains("non-finite"));
        let mut fail = |_: &[Vec<bool>]| Err("model failed".to_string());
        assert_eq!(owen_values(&tree, 4, &mut fail).unwrap_err(), "model failed");
        let empty = Tree { n_leaves: 0, children: vec![] };
        assert!(owen_values(&empty, 4, &mut ok).unwrap_err().contains("no leaves"));
        let bad = [
            Tree { n_leaves: 3, children: vec![(0, 1)] },
            Tree { n_leaves: 3, children: vec![(0, 4), (3, 2)] },
            Tree { n_leaves: 3, children: vec![(0, 1), (1, 2)] },
        ];
        for t in &bad {
            assert!(owen_values(t, 4, &mut ok).is_err(), "{t:?}");
        }
        // A chain of 30 leaves needs ~2^29 terms: refused rather than run.
        let chain =
            Tree { n_leaves: 30, children: (0..29).map(|i| (if i == 0 { 0 } else { 29 + i }, i + 1)).collect() };
        let err = owen_values(&chain, 4, &mut ok).unwrap_err();
        assert!(err.contains("too deep") && err.contains(&MAX_LEAF_CONTEXTS.to_string()), "{err}");
    }

    fn check_tree(tree: &Tree, n: usize) {
        assert_eq!(tree.n_leaves, n);
        assert_eq!(tree.children.len(), n - 1);
        let mut used = vec![0; 2 * n - 1];
        for (i, &(a, b)) in tree.children.iter().enumerate() {
            assert!(a < b && b < n + i);
            used[a] += 1;
            used[b] += 1;
        }
        assert!(used[..2 * n - 2].iter().all(|&u| u == 1) && used[2 * n - 2] == 0);
    }

    #[test]
    fn cluster_grid_respects_adjacency() {
        // 6×5 grid cells with a smooth descriptor (value, centroid).
        let (h, w) = (6, 5);
        let labels: Vec<u32> = (0..(h * w) as u32).collect();
        let adj = label_adjacency(&labels, h, w);
        assert_eq!(adj.len(), (h - 1) * w + h * (w - 1));
        let desc: Vec<Vec<f64>> = (0..h * w)
            .map(|p| vec![((p % w) as f64 * 0.7).sin(), (p / w) as f64 * 0.1, (p % w) as f64 * 0.1])
            .collect();
        let sizes: Vec<usize> = (0..h * w).map(|p| 1 + p % 3).collect();
        let tree = cluster(&desc, &sizes, &adj).unwrap();
        check_tree(&tree, h * w);
        for &(a, b) in &tree.children {
            let (la, lb) = (leaves(&tree, a), leaves(&tree, b));
            assert!(adj
                .iter()
                .any(|&(x, y)| (la.contains(&x) && lb.contains(&y)) || (la.contains(&y) && lb.contains(&x))));
        }
        assert_eq!(tree, cluster(&desc, &sizes, &adj).unwrap());
    }

    #[test]
    fn cluster_ward_order_and_disconnected() {
        // Chain 0-1-2-3 in 1-D: (0,1) and (2,3) tie at ½ → smallest ids first; then the two pairs.
        let desc = vec![vec![0.0], vec![1.0], vec![10.0], vec![11.0]];
        let chain = [(0, 1), (1, 2), (2, 3)];
        let t = cluster(&desc, &[1; 4], &chain).unwrap();
        assert_eq!(t.children, vec![(0, 1), (2, 3), (4, 5)]);
        // 1 and 2 are not adjacent: with no edges at all, closest pairs still merge.
        let t = cluster(&desc, &[1; 4], &[]).unwrap();
        assert_eq!(t.children, vec![(0, 1), (2, 3), (4, 5)]);
        // Two components {0,2} and {1,3}: adjacency wins over closeness until none is left.
        let t = cluster(&desc, &[1; 4], &[(0, 2), (1, 3), (2, 0), (3, 3)]).unwrap();
        assert_eq!(t.children, vec![(0, 2), (1, 3), (4, 5)]);
        // Heavier clusters cost more to move: sizes change which neighbour merges first.
        let t = cluster(&[vec![0.0], vec![1.0], vec![2.1]], &[100, 1, 1], &[(0, 1), (1, 2)]).unwrap();
        assert_eq!(t.children, vec![(1, 2), (0, 3)]);
        let single = cluster(&[vec![]], &[1], &[]).unwrap();
        assert_eq!(single, Tree { n_leaves: 1, children: vec![] });
        let r = owen_of(&single, 1, &|s| 3.0 * s as f64 + 1.0);
        assert_eq!((r.values[0], r.evaluations), (3.0, 2));
    }

    #[test]
    fn cluster_errors() {
        assert!(cluster(&[], &[], &[]).unwrap_err().contains("no features"));
        let desc = vec![vec![0.0, 1.0], vec![1.0]];
        assert!(cluster(&desc, &[1, 1], &[]).unwrap_err().contains("length"));
        let desc = vec![vec![0.0], vec![1.0]];
        assert!(cluster(&desc, &[1], &[]).unwrap_err().contains("sizes"));
        assert!(cluster(&desc, &[1, 0], &[]).unwrap_err().contains("size 0"));
        assert!(cluster(&desc, &[1, 1], &[(0, 2)]).unwrap_err().contains("out of range"));
        assert!(cluster(&[vec![f64::NAN], vec![1.0]], &[1, 1], &[]).unwrap_err().contains("non-finite"));
    }

    #[test]
    fn label_adjacency_small_image() {
        // 0 0 1 1
        // 2 2 3 3
        let labels = [0, 0, 1, 1, 2, 2, 3, 3];
        assert_eq!(label_adjacency(&labels, 2, 4), vec![(0, 1), (0, 2), (1, 3), (2, 3)]);
        assert_eq!(label_adjacency(&[5, 5, 5], 1, 3), vec![]);
        assert_eq!(label_adjacency(&[2, 0, 2], 3, 1), vec![(0, 2)]);
    }
}
