"""The compiled parts of `models.treeshap` (numba, cached on disk after the first compile).

Imported only when a kernel is first needed, so importing the project never loads numba."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, parallel=True)
def fill_leaf_tables(values, zero_start, zero_flat, table_start, table, weights):  # pragma: no cover - compiled
    n_leaves = len(values)
    for leaf in numba.prange(n_leaves):
        d = zero_start[leaf + 1] - zero_start[leaf]
        if d == 0:
            continue
        z = zero_flat[zero_start[leaf]:zero_start[leaf + 1]]
        v = values[leaf]
        poly = np.zeros(d + 1)
        rest = np.zeros(d)
        for pattern in range(1 << d):
            # F(t) = prod_s (z_s + o_s t): coefficient k sums the coalitions of k satisfied features.
            poly[:] = 0.0
            poly[0] = 1.0
            size = 0
            for s in range(d):
                o = (pattern >> s) & 1
                if o:
                    for k in range(size + 1, 0, -1):
                        poly[k] = poly[k] * z[s] + poly[k - 1]
                    poly[0] = poly[0] * z[s]
                    size += 1
                else:
                    for k in range(size + 1):
                        poly[k] = poly[k] * z[s]
            base = table_start[leaf] + pattern * d
            for s in range(d):
                o = (pattern >> s) & 1
                # The others' polynomial: F divided by this slot's factor.
                if o:
                    # (z + t) g(t) = F(t), from the top: g[k-1] = F[k] - z g[k]
                    top = size - 1
                    rest[top] = poly[size]
                    for k in range(top, 0, -1):
                        rest[k - 1] = poly[k] - z[s] * rest[k]
                    n_rest = top + 1
                else:
                    for k in range(size + 1):
                        rest[k] = poly[k] / z[s]
                    n_rest = size + 1
                acc = 0.0
                for k in range(n_rest):
                    acc += weights[d, k] * rest[k]
                table[base + s] = v * (o - z[s]) * acc


@numba.njit(cache=True, parallel=True)
def fill_tree_tables(small, tree_node_start, tree_leaf_start, feature_start, tree_feature, tree_table_start, tree_table,
         leaf_path_start, path_node, path_left, path_slot, leaf_slot_start, slot_feature, table_start,
         table):  # pragma: no cover - compiled
    for t in numba.prange(len(small)):
        if not small[t]:
            continue
        first_node = tree_node_start[t]
        m = tree_node_start[t + 1] - first_node
        f0 = feature_start[t]
        q = feature_start[t + 1] - f0
        for decisions in range(1 << m):
            row = tree_table_start[t] + decisions * q
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                d = leaf_slot_start[leaf + 1] - leaf_slot_start[leaf]
                pattern = (1 << d) - 1
                for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                    went_left = (decisions >> (path_node[p] - first_node)) & 1
                    if went_left != path_left[p]:
                        pattern &= ~(1 << path_slot[p])
                base = table_start[leaf] + pattern * d
                for s in range(d):
                    feature = slot_feature[leaf_slot_start[leaf] + s]
                    for j in range(q):
                        if tree_feature[f0 + j] == feature:
                            tree_table[row + j] += table[base + s]
                            break


@numba.njit(inline="always")
def goes_left(x, node, node_threshold, node_categorical, node_default_left, node_missing, node_cat_start,
              node_cat_end, cat_values, zero):  # pragma: no cover - compiled
    if node_categorical[node]:
        # int(x) truncates toward zero: categories 0.. are the values above -1 (NaN compares false)
        start = node_cat_start[node]
        if not (x > -1.0 and x < node_cat_end[node] - start):
            return False
        return cat_values[start + int(x)] != 0
    missing = node_missing[node]
    if np.isnan(x) and missing != 2:
        x = 0.0
    if (missing == 1 and -zero <= x <= zero) or (missing == 2 and np.isnan(x)):
        return node_default_left[node]
    return x <= node_threshold[node]

@numba.njit(inline="always")
def transposed_block(X, start, count, block):  # pragma: no cover - compiled
    """Rows start..start+count of X as columns of a (features, block) array: each split reads one contiguous run."""
    Xb = np.empty((X.shape[1], block))
    for i in range(count):
        for f in range(X.shape[1]):
            Xb[f, i] = X[start + i, f]
    return Xb


@numba.njit(inline="always")
def block_decisions(Xb, count, first_node, m, node_feature, node_threshold, node_categorical,
                    node_default_left, node_missing, node_cat_start, node_cat_end, cat_values, zero,
                    decisions):  # pragma: no cover - compiled
    # One split at a time over the block's rows (contiguous, branch-free for numeric splits).
    for i in range(count):
        decisions[i] = 0
    for k in range(m):
        node = first_node + k
        f = node_feature[node]
        bit = np.uint64(1) << np.uint64(k)
        if node_categorical[node]:
            start = node_cat_start[node]
            size = node_cat_end[node] - start
            for i in range(count):
                x = Xb[f, i]
                if x > -1.0 and x < size and cat_values[start + int(x)] != 0:
                    decisions[i] |= bit
            continue
        thr = node_threshold[node]
        dl = node_default_left[node]
        missing = node_missing[node]
        if missing == 2:  # NaN goes the default way
            for i in range(count):
                x = Xb[f, i]
                go = (x <= thr) | ((x != x) & dl)
                decisions[i] |= bit * np.uint64(go)
        elif missing == 1:  # NaN reads as 0; zero goes the default way
            for i in range(count):
                x = Xb[f, i]
                z = (x != x) | ((x >= -zero) & (x <= zero))
                go = (z & dl) | (~z & (x <= thr))
                decisions[i] |= bit * np.uint64(go)
        else:  # NaN reads as 0
            zero_left = 0.0 <= thr
            for i in range(count):
                x = Xb[f, i]
                go = (x <= thr) | ((x != x) & zero_left)
                decisions[i] |= bit * np.uint64(go)

@numba.njit(cache=True, parallel=True)
def rows(X, out, node_feature, node_threshold, node_categorical, node_default_left, node_missing,
         node_cat_start, node_cat_end, cat_values, tree_node_start, tree_leaf_start, leaf_path_start,
         path_node, path_left, path_slot, leaf_slot_start, slot_feature, leaf_table_start, table,
         tree_small, tree_feature_start, tree_feature, tree_table_start, tree_table,
         zero):  # pragma: no cover - compiled
    n, k_features = X.shape
    n_trees = len(tree_node_start) - 1
    widest = 1
    for t in range(n_trees):
        widest = max(widest, tree_node_start[t + 1] - tree_node_start[t])
    block = 128
    n_blocks = (n + block - 1) // block
    for b in numba.prange(n_blocks):
        start = b * block
        count = min(n, start + block) - start
        Xb = transposed_block(X, start, count, block)
        decisions = np.zeros(block, dtype=np.uint64)
        left = np.zeros(widest, dtype=np.bool_)
        for t in range(n_trees):
            first_node = tree_node_start[t]
            m = tree_node_start[t + 1] - first_node
            if m == 0:
                continue
            if m <= 64:
                block_decisions(Xb, count, first_node, m, node_feature, node_threshold, node_categorical,
                                node_default_left, node_missing, node_cat_start, node_cat_end, cat_values,
                                zero, decisions)
            if tree_small[t]:
                f0 = tree_feature_start[t]
                q = tree_feature_start[t + 1] - f0
                for i in range(count):
                    row = tree_table_start[t] + np.int64(decisions[i]) * q
                    for j in range(q):
                        out[start + i, tree_feature[f0 + j]] += tree_table[row + j]
                continue
            for i in range(count):
                if m <= 64:
                    for k in range(m):
                        left[k] = (decisions[i] >> np.uint64(k)) & np.uint64(1)
                else:
                    for k in range(m):
                        node = first_node + k
                        left[k] = goes_left(Xb[node_feature[node], i], node, node_threshold,
                                            node_categorical, node_default_left, node_missing,
                                            node_cat_start, node_cat_end, cat_values, zero)
                for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                    d = leaf_slot_start[leaf + 1] - leaf_slot_start[leaf]
                    pattern = (1 << d) - 1
                    for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                        # Branch-free: which way a row goes is data, and mispredicted branches cost more here
                        # than the whole lookup.
                        off = np.int64(left[path_node[p] - first_node] != path_left[p])
                        pattern &= ~(off << path_slot[p])
                    base = leaf_table_start[leaf] + pattern * d
                    first = leaf_slot_start[leaf]
                    for s in range(d):
                        out[start + i, slot_feature[first + s]] += table[base + s]


@numba.njit(cache=True, parallel=True)
def fill_leaf_of_decisions(small, tree_node_start, tree_leaf_start, tree_decision_start, leaf_value_of, leaf_values,
                           leaf_path_start, path_node, path_left):  # pragma: no cover - compiled
    """Per small tree and decision vector: the value of the leaf those decisions reach."""
    for t in numba.prange(len(small)):
        if not small[t]:
            continue
        first_node = tree_node_start[t]
        m = tree_node_start[t + 1] - first_node
        for decisions in range(1 << m):
            for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                reached = True
                for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                    if ((decisions >> (path_node[p] - first_node)) & 1) != path_left[p]:
                        reached = False
                        break
                if reached:
                    leaf_value_of[tree_decision_start[t] + decisions] = leaf_values[leaf]
                    break


@numba.njit(cache=True, parallel=True)
def margins(X, out, node_feature, node_threshold, node_categorical, node_default_left, node_missing,
            node_cat_start, node_cat_end, cat_values, tree_node_start, tree_leaf_start, leaf_path_start, path_node,
            path_left, leaf_values, tree_small, tree_decision_start, leaf_value_of, constant,
            zero):  # pragma: no cover - compiled
    """The raw margin (sum of the trees' leaf values, in tree order) of each row."""
    n, k_features = X.shape
    n_trees = len(tree_node_start) - 1
    block = 128
    n_blocks = (n + block - 1) // block
    for b in numba.prange(n_blocks):
        start = b * block
        count = min(n, start + block) - start
        Xb = transposed_block(X, start, count, block)
        for i in range(count):
            out[start + i] = constant
        decisions = np.zeros(block, dtype=np.uint64)
        for t in range(n_trees):
            first_node = tree_node_start[t]
            m = tree_node_start[t + 1] - first_node
            if m == 0:
                continue
            if tree_small[t]:
                block_decisions(Xb, count, first_node, m, node_feature, node_threshold, node_categorical,
                                node_default_left, node_missing, node_cat_start, node_cat_end, cat_values, zero,
                                decisions)
                base = tree_decision_start[t]
                for i in range(count):
                    out[start + i] += leaf_value_of[base + np.int64(decisions[i])]
                continue
            for i in range(count):
                for leaf in range(tree_leaf_start[t], tree_leaf_start[t + 1]):
                    reached = True
                    for p in range(leaf_path_start[leaf], leaf_path_start[leaf + 1]):
                        node = path_node[p]
                        go = goes_left(Xb[node_feature[node], i], node, node_threshold, node_categorical,
                                       node_default_left, node_missing, node_cat_start, node_cat_end, cat_values,
                                       zero)
                        if go != path_left[p]:
                            reached = False
                            break
                    if reached:
                        out[start + i] += leaf_values[leaf]
                        break
