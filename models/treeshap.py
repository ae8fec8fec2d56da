"""Exact TreeSHAP for LightGBM boosters, fast: per-leaf tables over the patterns of satisfied path features.

TreeSHAP's value of a leaf for a feature depends on the row only through which of the leaf's path features the row
"satisfies" (goes the leaf's way at every split on that feature). A leaf with d distinct path features has 2^d
such patterns, so its contribution to each of the d features can be tabulated once per model (the Fast TreeSHAP
v2 idea). Scoring a row is then, per tree, one decision per split node and, per leaf, a d-bit pattern and d
table lookups: no path extension or unwinding per row.

The decisions follow LightGBM's own rules (`include/LightGBM/tree.h`): NaN is read as 0 where a split has no NaN
handling, `zero` missing type sends |x| <= 1e-35 the default way, categorical splits send NaN and negatives right
and a category left when it is in the split's set. Cover is LightGBM's data count per node, the bias is the sum of
each tree's expected value, as `Booster.predict(pred_contrib=True)` computes them; the values equal it to ~1e-15
(tests on models with missing values, categorical splits, one-leaf trees, shallow and deep trees).

Anything this does not cover (linear trees, multiclass, a leaf with more than `MAX_PATH_FEATURES` distinct path
features, tables over `MAX_TABLE_VALUES`, a node without data count) is refused by `TreeShapTables.build`, and
`explain.tree_contributions` falls back to `pred_contrib`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MAX_PATH_FEATURES = 18  # 2^18 patterns x 18 values is 37 MB for one leaf
MAX_TABLE_VALUES = 64 * 1024 * 1024  # 512 MB of float64 over all leaves
MAX_CATEGORY = 1 << 20  # a categorical split's categories are looked up in a dense table of this many at most
MAX_TREE_SPLITS = 10  # a tree this small gets one table over all its decision vectors (1,024 rows at most)
_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold: the float literal 1e-35f, as a double


class Unsupported(ValueError):
    """A model shape the tables do not cover; the caller falls back to LightGBM's own TreeSHAP."""


@dataclass(frozen=True)
class TreeShapTables:
    """A LightGBM model flattened for the kernel: split nodes, leaf paths and per-leaf pattern tables."""

    n_features: int
    bias: float
    # split nodes of all trees, numbered globally
    node_feature: np.ndarray  # int64
    node_threshold: np.ndarray  # float64
    node_categorical: np.ndarray  # bool
    node_default_left: np.ndarray  # bool
    node_missing: np.ndarray  # int8: 0 none, 1 zero, 2 nan
    node_cat_start: np.ndarray  # int64 into cat_values (categorical nodes)
    node_cat_end: np.ndarray
    cat_values: np.ndarray  # uint8 per node and category 0..(end - start - 1): 1 when it goes left
    tree_node_start: np.ndarray  # int64 (n_trees + 1): the trees' first split node
    tree_leaf_start: np.ndarray  # int64 (n_trees + 1): the trees' first leaf
    # leaves of all trees
    leaf_path_start: np.ndarray  # int64 (n_leaves + 1) into path_node/path_left/path_slot
    path_node: np.ndarray  # int64: global split node on the leaf's path
    path_left: np.ndarray  # bool: the leaf is in that node's left subtree
    path_slot: np.ndarray  # int64: which distinct path feature of the leaf the node splits on
    leaf_slot_start: np.ndarray  # int64 (n_leaves + 1) into slot_feature
    slot_feature: np.ndarray  # int64
    leaf_table_start: np.ndarray  # int64 (n_leaves + 1) into table
    table: np.ndarray  # float64: per leaf, 2^d rows of d values
    # small trees (at most MAX_TREE_SPLITS split nodes): one table over the 2^m decision vectors of the whole tree
    tree_small: np.ndarray  # bool (n_trees)
    tree_feature_start: np.ndarray  # int64 (n_trees + 1) into tree_feature
    tree_feature: np.ndarray  # int64: the distinct split features of each small tree
    tree_table_start: np.ndarray  # int64 (n_trees + 1) into tree_table
    tree_table: np.ndarray  # float64: per small tree, 2^m rows of one value per distinct feature
    # the margin: every leaf's value, one-leaf trees summed into a constant, and per small tree the value of the
    # leaf each decision vector reaches
    leaf_values: np.ndarray  # float64 (n_leaves)
    margin_constant: float
    tree_decision_start: np.ndarray  # int64 (n_trees + 1) into leaf_value_of
    leaf_value_of: np.ndarray  # float64

    @classmethod
    def build(cls, booster) -> TreeShapTables:
        """Flatten a booster (raises `Unsupported` for what the kernel does not cover)."""
        dump = booster.dump_model()
        if int(dump.get("num_class", 1)) != 1 or int(dump.get("num_tree_per_iteration", 1)) != 1:
            raise Unsupported("multiclass models")
        n_features = int(dump["max_feature_idx"]) + 1
        nodes: dict[str, list] = {k: [] for k in ("feature", "threshold", "categorical", "default_left", "missing",
                                                  "cat_start", "cat_end")}
        cats: list[int] = []
        tree_node_start, tree_leaf_start = [0], [0]
        leaf_path_start, path_node, path_left, path_slot = [0], [], [], []
        leaf_slot_start, slot_feature = [0], []
        leaf_value, leaf_zero = [], []  # per leaf: value, and the zero fraction of each slot
        bias = constant = 0.0
        for info in dump["tree_info"]:
            root = info["tree_structure"]
            if "leaf_value" in root and "split_index" not in root:  # a one-leaf tree: only the bias moves
                bias += float(root["leaf_value"])
                constant += float(root["leaf_value"])
                tree_node_start.append(len(nodes["feature"]))
                tree_leaf_start.append(len(leaf_value))
                continue
            base = len(nodes["feature"])
            total = float(root["internal_count"])
            if total <= 0:
                raise Unsupported("a tree without data counts")
            expected = 0.0
            # Depth-first: split nodes get global ids in visit order; leaves record their path.
            stack = [(root, [])]
            order = []
            while stack:
                node, path = stack.pop()
                if "split_index" in node:
                    gid = base + int(node["split_index"])
                    order.append((gid, node))
                    count = float(node["internal_count"])
                    if count <= 0:
                        raise Unsupported("a split node without data count")
                    left, right = node["left_child"], node["right_child"]
                    stack.append((right, [*path, (gid, False, int(node["split_feature"]),
                                                  _count(right) / count)]))
                    stack.append((left, [*path, (gid, True, int(node["split_feature"]), _count(left) / count)]))
                else:
                    value = float(node["leaf_value"])
                    expected += (float(node.get("leaf_count", 0)) / total) * value
                    features: list[int] = []
                    zeros: list[float] = []
                    for gid, is_left, feature, fraction in path:
                        if feature not in features:
                            features.append(feature)
                            zeros.append(1.0)
                        slot = features.index(feature)
                        zeros[slot] *= fraction
                        path_node.append(gid)
                        path_left.append(is_left)
                        path_slot.append(slot)
                    if len(features) > MAX_PATH_FEATURES:
                        raise Unsupported(f"a leaf with {len(features)} distinct path features")
                    leaf_path_start.append(len(path_node))
                    slot_feature.extend(features)
                    leaf_slot_start.append(len(slot_feature))
                    leaf_value.append(value)
                    leaf_zero.append(zeros)
            n_split = int(info.get("num_leaves", 0)) - 1
            if len(order) != n_split:
                raise Unsupported("an unexpected tree layout")
            for _, node in sorted(order, key=lambda t: t[0]):
                nodes["feature"].append(int(node["split_feature"]))
                kind = node["decision_type"]
                missing = {"None": 0, "Zero": 1, "NaN": 2}.get(str(node.get("missing_type", "None")), 0)
                nodes["missing"].append(missing)
                nodes["default_left"].append(bool(node.get("default_left", False)))
                if kind == "==":
                    values = sorted(int(v) for v in str(node["threshold"]).split("||") if v != "")
                    if values and (values[0] < 0 or values[-1] >= MAX_CATEGORY):
                        raise Unsupported(f"a categorical split on category {values[-1]:,}")
                    # A dense membership table: category c goes left when cats[start + c] is 1 (c < end - start).
                    dense = [0] * ((values[-1] + 1) if values else 0)
                    for v in values:
                        dense[v] = 1
                    nodes["categorical"].append(True)
                    nodes["threshold"].append(0.0)
                    nodes["cat_start"].append(len(cats))
                    cats.extend(dense)
                    nodes["cat_end"].append(len(cats))
                    if len(cats) > MAX_TABLE_VALUES:
                        raise Unsupported("categorical splits over too many categories")
                elif kind == "<=":
                    nodes["categorical"].append(False)
                    nodes["threshold"].append(float(node["threshold"]))
                    nodes["cat_start"].append(0)
                    nodes["cat_end"].append(0)
                else:
                    raise Unsupported(f"decision type {kind!r}")
            bias += expected
            tree_node_start.append(len(nodes["feature"]))
            tree_leaf_start.append(len(leaf_value))
        sizes = [(1 << len(z)) * len(z) for z in leaf_zero]
        if sum(sizes) > MAX_TABLE_VALUES:
            raise Unsupported(f"pattern tables of {sum(sizes):,} values")
        table_start = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        zero_start = np.concatenate([[0], np.cumsum([len(z) for z in leaf_zero], dtype=np.int64)]).astype(np.int64)
        zero_flat = np.asarray([v for z in leaf_zero for v in z], dtype=np.float64)
        table = np.zeros(int(table_start[-1]), dtype=np.float64)
        _fill_tables(np.asarray(leaf_value, dtype=np.float64), zero_start, zero_flat, table_start, table)
        i64 = np.int64
        tree_node_start_a = np.asarray(tree_node_start, dtype=i64)
        tree_leaf_start_a = np.asarray(tree_leaf_start, dtype=i64)
        splits = np.diff(tree_node_start_a)
        small = (splits > 0) & (splits <= MAX_TREE_SPLITS)
        feature_start, tree_features, tree_table_start = [0], [], [0]
        for t in range(len(splits)):
            feats = sorted(set(nodes["feature"][tree_node_start[t]:tree_node_start[t + 1]])) if small[t] else []
            tree_features.extend(feats)
            feature_start.append(len(tree_features))
            tree_table_start.append(tree_table_start[-1] + ((1 << int(splits[t])) * len(feats) if small[t] else 0))
        tree_feature = np.asarray(tree_features, dtype=i64)
        tree_table = np.zeros(tree_table_start[-1], dtype=np.float64)
        from leadscore.models.treeshap_kernels import fill_tree_tables

        fill_tree_tables(small, tree_node_start_a, tree_leaf_start_a, np.asarray(feature_start, dtype=i64),
                             tree_feature, np.asarray(tree_table_start, dtype=i64), tree_table,
                             np.asarray(leaf_path_start, dtype=i64), np.asarray(path_node, dtype=i64),
                             np.asarray(path_left, dtype=bool), np.asarray(path_slot, dtype=i64),
                             np.asarray(leaf_slot_start, dtype=i64), np.asarray(slot_feature, dtype=i64),
                             table_start, table)
        decision_start = [0]
        for t in range(len(splits)):
            decision_start.append(decision_start[-1] + ((1 << int(splits[t])) if small[t] else 0))
        decision_start_a = np.asarray(decision_start, dtype=i64)
        leaf_values = np.asarray(leaf_value, dtype=np.float64)
        leaf_value_of = np.zeros(decision_start[-1], dtype=np.float64)
        from leadscore.models.treeshap_kernels import fill_leaf_of_decisions

        fill_leaf_of_decisions(small, tree_node_start_a, tree_leaf_start_a, decision_start_a, leaf_value_of,
                               leaf_values, np.asarray(leaf_path_start, dtype=i64), np.asarray(path_node, dtype=i64),
                               np.asarray(path_left, dtype=bool))
        return cls(
            leaf_values=leaf_values, margin_constant=float(constant), tree_decision_start=decision_start_a,
            leaf_value_of=leaf_value_of,
            n_features=n_features, bias=float(bias),
            node_feature=np.asarray(nodes["feature"], dtype=i64),
            node_threshold=np.asarray(nodes["threshold"], dtype=np.float64),
            node_categorical=np.asarray(nodes["categorical"], dtype=bool),
            node_default_left=np.asarray(nodes["default_left"], dtype=bool),
            node_missing=np.asarray(nodes["missing"], dtype=np.int8),
            node_cat_start=np.asarray(nodes["cat_start"], dtype=i64),
            node_cat_end=np.asarray(nodes["cat_end"], dtype=i64),
            cat_values=np.asarray(cats, dtype=np.uint8),
            tree_node_start=np.asarray(tree_node_start, dtype=i64),
            tree_leaf_start=np.asarray(tree_leaf_start, dtype=i64),
            leaf_path_start=np.asarray(leaf_path_start, dtype=i64),
            path_node=np.asarray(path_node, dtype=i64), path_left=np.asarray(path_left, dtype=bool),
            path_slot=np.asarray(path_slot, dtype=i64),
            leaf_slot_start=np.asarray(leaf_slot_start, dtype=i64), slot_feature=np.asarray(slot_feature, dtype=i64),
            leaf_table_start=table_start, table=table,
            tree_small=small, tree_feature_start=np.asarray(feature_start, dtype=i64), tree_feature=tree_feature,
            tree_table_start=np.asarray(tree_table_start, dtype=i64), tree_table=tree_table,
        )

    def margin(self, X: np.ndarray, *, threads: int = 0) -> np.ndarray:
        """LightGBM's raw score of each row (the trees' leaf values summed in order), from the same decisions."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got {X.shape}")
        out = np.zeros(X.shape[0], dtype=np.float64)
        if X.shape[0] == 0:
            return out
        from leadscore.models.treeshap_kernels import margins

        with _numba_threads(threads):
            margins(X, out, self.node_feature, self.node_threshold, self.node_categorical, self.node_default_left,
                    self.node_missing, self.node_cat_start, self.node_cat_end, self.cat_values, self.tree_node_start,
                    self.tree_leaf_start, self.leaf_path_start, self.path_node, self.path_left, self.leaf_values,
                    self.tree_small, self.tree_decision_start, self.leaf_value_of, self.margin_constant, _ZERO)
        return out

    def contributions(self, X: np.ndarray, *, threads: int = 0) -> np.ndarray:
        """(n, n_features + 1): each feature's exact SHAP value on the raw margin, the bias last."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} columns, got {X.shape}")
        out = np.zeros((X.shape[0], self.n_features + 1), dtype=np.float64)
        if X.shape[0] == 0:
            return out
        from leadscore.models.treeshap_kernels import rows as kernel

        with _numba_threads(threads):
            kernel(X, out, self.node_feature, self.node_threshold, self.node_categorical, self.node_default_left,
                   self.node_missing, self.node_cat_start, self.node_cat_end, self.cat_values, self.tree_node_start,
                   self.tree_leaf_start, self.leaf_path_start, self.path_node, self.path_left, self.path_slot,
                   self.leaf_slot_start, self.slot_feature, self.leaf_table_start, self.table, self.tree_small,
                   self.tree_feature_start, self.tree_feature, self.tree_table_start, self.tree_table, _ZERO)
        out[:, -1] = self.bias
        return out


class _numba_threads:
    """Run numba's parallel loops on `threads` threads (0: as configured), restoring the previous count."""

    def __init__(self, threads: int) -> None:
        self.threads, self.previous = threads, None

    def __enter__(self):
        if self.threads > 0:
            import numba

            self.previous = numba.get_num_threads()
            numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            import numba

            numba.set_num_threads(self.previous)


def _count(node: dict) -> float:
    return float(node["internal_count"] if "split_index" in node else node.get("leaf_count", 0))


def _shapley_weights(d: int) -> np.ndarray:
    """w[k] = k! (d - 1 - k)! / d!: the weight of a coalition of k of the other d - 1 path features."""
    return np.asarray([math.factorial(k) * math.factorial(d - 1 - k) / math.factorial(d) for k in range(d)])


def _fill_tables(values, zero_start, zero_flat, table_start, table) -> None:
    """Per leaf and pattern of satisfied slots: value x (o_s - z_s) x sum over coalitions of the others."""
    from leadscore.models.treeshap_kernels import fill_leaf_tables

    max_d = int(np.max(np.diff(zero_start), initial=0))
    weights = np.zeros((max_d + 1, max(max_d, 1)), dtype=np.float64)
    for d in range(1, max_d + 1):
        weights[d, :d] = _shapley_weights(d)
    fill_leaf_tables(values, zero_start, zero_flat, table_start, table, weights)


_CACHE_SIZE = 2  # tables of the models used last in this process (a few MB each at the demo's size)
_cache: dict[str, TreeShapTables] = {}
_cache_lock = threading.Lock()


def build_tables(booster) -> TreeShapTables:
    """`TreeShapTables.build`, unless switched off (`LEADSCORE_TREESHAP=lightgbm`, to compare) or numba is absent.

    The tables of the last few models are kept by the digest of the model's text, so loading the same model again
    in one process (the registry's copy after training, the validation MLflow runs while logging it) does not
    build them again. The tables are never modified, so sharing them is safe."""
    if os.environ.get("LEADSCORE_TREESHAP", "").strip().lower() == "lightgbm":
        raise Unsupported("LEADSCORE_TREESHAP=lightgbm")
    try:
        import numba  # noqa: F401
    except ImportError as exc:
        raise Unsupported("numba is not installed") from exc
    key = hashlib.sha256(booster.model_to_string().encode("utf-8")).hexdigest()
    with _cache_lock:
        if key in _cache:
            _cache[key] = _cache.pop(key)  # the most recently used last
            return _cache[key]
    tables = TreeShapTables.build(booster)
    with _cache_lock:
        _cache[key] = tables
        while len(_cache) > _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
    return tables
