"""Search spaces of HW-GPT-Bench (arXiv 2405.10299, Table 1) and architectures as arrays.

An architecture chooses an embedding dimension, a depth, and per layer a number of heads and an
MLP ratio, plus one bias flag for all linear layers. A population of N architectures is one
`Arch` pytree of arrays with leading shape (N,), so it passes through `jit` and `vmap`; dicts,
strings and JSON exist only at the edges (files, CLI).

Entries past `n_layer` are padding and always 0 ("canonical"), so equal architectures have equal
arrays, ids and hashes. The published HW-GPT-Bench arrays pad with -1; `from_published` maps them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from functools import cached_property, partial
from typing import Any

import jax
import numpy as np

from hwgpt_jax.base.batching import first_rows, padded_rows
from hwgpt_jax.space import rules

SCALES = ("tiny", "s", "m", "l")
ARCH_FIELDS = ("embed_dim", "n_layer", "n_head", "mlp_ratio", "bias")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Arch:
    """A batch of architectures (leading batch shape `...`, possibly empty).

    Attributes:
        embed_dim: int32 (...,) embedding dimension.
        n_layer: int32 (...,) number of active transformer blocks.
        n_head: int32 (..., Lmax) heads per layer, 0 past `n_layer`.
        mlp_ratio: int32 (..., Lmax) MLP expansion per layer, 0 past `n_layer`.
        bias: bool (...,) whether linear layers carry biases.
    """

    embed_dim: Any
    n_layer: Any
    n_head: Any
    mlp_ratio: Any
    bias: Any

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.embed_dim))

    def __len__(self) -> int:
        if not self.batch_shape:
            raise TypeError("len() of a single Arch (batch shape ()); it has no batch axis")
        return self.batch_shape[0]

    def __getitem__(self, index: Any) -> Arch:
        return jax.tree_util.tree_map(lambda x: x[index], self)

    def to_numpy(self) -> Arch:
        return Arch(
            embed_dim=np.asarray(self.embed_dim, np.int32),
            n_layer=np.asarray(self.n_layer, np.int32),
            n_head=np.asarray(self.n_head, np.int32),
            mlp_ratio=np.asarray(self.mlp_ratio, np.int32),
            bias=np.asarray(self.bias, bool),
        )

    @staticmethod
    def concatenate(archs: Sequence[Arch]) -> Arch:
        """Concatenate batches along the leading axis (NumPy result)."""
        parts = [a.to_numpy() for a in archs]
        parts = [a if a.batch_shape else a[None] for a in parts]
        return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0), *parts)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The choices of one scale, plus the fixed model constants of that scale."""

    scale: str
    embed_dims: tuple[int, ...]
    n_layers: tuple[int, ...]
    n_heads: tuple[int, ...]
    mlp_ratios: tuple[int, ...]
    head_size: int
    block_size: int
    biases: tuple[bool, ...] = (False, True)
    vocab_size: int = 50257
    padded_vocab_size: int = 50304

    @property
    def max_layers(self) -> int:
        """Lmax: the length of the per-layer arrays."""
        return max(self.n_layers)

    @property
    def size(self) -> int:
        """Number of distinct architectures (per-layer choices counted up to `n_layer`)."""
        per_layer = len(self.n_heads) * len(self.mlp_ratios)
        n_global = len(self.embed_dims) * len(self.biases)
        return n_global * sum(per_layer**depth for depth in self.n_layers)

    @cached_property
    def gene_cardinality(self) -> np.ndarray:
        """Number of choices of each gene [embed, n_layer, bias, heads(Lmax), ratios(Lmax)]."""
        lmax = self.max_layers
        head = [len(self.embed_dims), len(self.n_layers), len(self.biases)]
        return np.array(head + [len(self.n_heads)] * lmax + [len(self.mlp_ratios)] * lmax)

    def choices(self) -> dict[str, list]:
        """The choices per field, as plain lists (for JSON and messages)."""
        return {
            "embed_dim": list(self.embed_dims),
            "n_layer": list(self.n_layers),
            "n_head": list(self.n_heads),
            "mlp_ratio": list(self.mlp_ratios),
            "bias": list(self.biases),
        }

    # ----------------------------------------------------------------- named archs
    def _uniform(self, index: int, bias: bool) -> Arch:
        depth = self.n_layers[index]
        active = rules.active_layers(np.int32(depth), self.max_layers)
        return Arch(
            embed_dim=np.int32(self.embed_dims[index]),
            n_layer=np.int32(depth),
            n_head=np.where(active, self.n_heads[index], 0).astype(np.int32),
            mlp_ratio=np.where(active, self.mlp_ratios[index], 0).astype(np.int32),
            bias=np.bool_(bias),
        )

    def largest(self) -> Arch:
        """Every choice at its maximum, biases on."""
        return self._uniform(-1, True)

    def smallest(self) -> Arch:
        """Every choice at its minimum, biases off."""
        return self._uniform(0, False)

    def mid(self) -> Arch:
        """Every choice at its middle value, biases on."""
        return self._uniform(len(self.embed_dims) // 2, True)

    # ----------------------------------------------------------------- genes
    def genes(self, arch: Arch) -> np.ndarray:
        """Choice indices, int32 (..., 3 + 2*Lmax): [embed, n_layer, bias, heads, ratios].

        Per-layer genes past `n_layer` are 0. Invalid values raise `ValueError`.
        """
        return rules.arch_genes(self, self.validate(arch))

    def from_genes(self, genes: Any) -> Arch:
        """Inverse of `genes` (jit-able; NumPy in, NumPy out): genes past the chosen depth are
        ignored."""
        return Arch(**rules.genes_fields(self, genes))

    # ----------------------------------------------------------------- sampling
    def sample(self, key: jax.Array, n: int) -> Arch:
        """Draw n archs, every choice uniform and independent (jit-able; jax arrays).

        Outside jit the draw is made for `padded_rows(n)` archs and cut to the first n (the
        same n archs: a row's draw depends on the key and its row only), so that nearby n share
        one compiled program."""
        if isinstance(key, jax.core.Tracer):
            return _sample(key, self, n)
        return first_rows(_sample(key, self, padded_rows(n)), n)

    def sample_unique(self, key: jax.Array, n: int, max_rounds: int = 100) -> Arch:
        """Draw n distinct archs (NumPy arrays, in order of first appearance)."""
        if n > self.size:
            raise ValueError(f"n={n} unique archs requested but the {self.scale} space has "
                             f"only {self.size}")
        rows = np.zeros((0, len(self.gene_cardinality)), np.int32)
        for _ in range(max_rounds):
            key, sub = jax.random.split(key)
            batch = self.sample(sub, max(2 * (n - len(rows)), 16)).to_numpy()
            rows = np.concatenate([rows, self.genes(batch)])
            _, first = np.unique(rows, axis=0, return_index=True)
            rows = rows[np.sort(first)]
            if len(rows) >= n:
                return self.from_genes(rows[:n]).to_numpy()
        raise RuntimeError(f"could not draw {n} unique archs in {max_rounds} rounds")

    # ----------------------------------------------------------------- validation
    def validate(self, arch: Arch) -> Arch:
        """Check an arch batch against this space; return it as canonical NumPy arrays.

        Raises:
            ValueError: naming the field, the first bad value and the allowed choices.
        """
        if not isinstance(arch, Arch):
            raise ValueError(f"expected an Arch, got {type(arch).__name__}")
        arch = arch.to_numpy()
        lmax, shape = self.max_layers, arch.batch_shape
        for name in ("n_layer", "bias"):
            if np.shape(getattr(arch, name)) != shape:
                raise ValueError(f"{name} has shape {np.shape(getattr(arch, name))}, "
                                 f"expected the batch shape {shape} of embed_dim")
        for name in ("n_head", "mlp_ratio"):
            got = np.shape(getattr(arch, name))
            if got != shape + (lmax,):
                raise ValueError(
                    f"{name} has shape {got}, expected {shape + (lmax,)} "
                    f"(Lmax={lmax} for the {self.scale} space)")
        bad = rules.invalid_entries(self, arch)
        active = rules.active_layers(arch.n_layer, lmax)
        for name, allowed in (("embed_dim", self.embed_dims), ("n_layer", self.n_layers),
                              ("n_head", self.n_heads), ("mlp_ratio", self.mlp_ratios)):
            values, wrong = np.asarray(getattr(arch, name)), bad[name]
            padding = wrong & ~active if name in ("n_head", "mlp_ratio") else np.False_
            if np.any(wrong & ~padding):
                raise ValueError(f"{name}={values[wrong & ~padding].flat[0]} is not in the "
                                 f"{self.scale} space; allowed choices: {list(allowed)}")
            if np.any(padding):
                raise ValueError(f"{name} has value {values[padding][0]} past n_layer; "
                                 f"padding must be 0")
        return arch

    # ----------------------------------------------------------------- conversions
    def arch_ids(self, arch: Arch) -> list[str]:
        """Stable string ids, e.g. 'tiny:e128-l2-h2.8-r4.3-b1'."""
        arch = self.validate(arch)
        flat = arch if arch.batch_shape else arch[None]
        rows = zip(flat.embed_dim.tolist(), flat.n_layer.tolist(), flat.n_head.tolist(),
                   flat.mlp_ratio.tolist(), flat.bias.tolist(), strict=True)
        return [
            f"{self.scale}:e{e}-l{n}-h{'.'.join(map(str, h[:n]))}"
            f"-r{'.'.join(map(str, r[:n]))}-b{int(b)}"
            for e, n, h, r, b in rows
        ]

    def from_ids(self, ids: Sequence[str]) -> Arch:
        """Parse ids made by `arch_ids` (the scale prefix must match)."""
        dicts = []
        for text in ids:
            scale, _, body = text.partition(":")
            if scale != self.scale:
                raise ValueError(f"arch id {text!r} is of scale {scale!r}, expected {self.scale!r}")
            try:
                e, n, h, r, b = body.split("-")
                dicts.append({"embed_dim": int(e[1:]), "n_layer": int(n[1:]),
                              "n_head": [int(x) for x in h[1:].split(".") if x],
                              "mlp_ratio": [int(x) for x in r[1:].split(".") if x],
                              "bias": b == "b1"})
            except ValueError as err:
                raise ValueError(f"malformed arch id {text!r} (expected like "
                                 f"'{self.arch_ids(self.smallest())[0]}')") from err
        return self.from_records(dicts)

    def to_records(self, arch: Arch) -> list[dict[str, Any]]:
        """Plain dicts with per-layer lists of length `n_layer` (JSON-ready)."""
        arch = self.validate(arch)
        flat = arch if arch.batch_shape else arch[None]
        rows = zip(flat.embed_dim.tolist(), flat.n_layer.tolist(), flat.n_head.tolist(),
                   flat.mlp_ratio.tolist(), flat.bias.tolist(), strict=True)
        return [{"embed_dim": e, "n_layer": n, "n_head": h[:n], "mlp_ratio": r[:n], "bias": b}
                for e, n, h, r, b in rows]

    def from_records(self, records: Sequence[Mapping[str, Any]]) -> Arch:
        """Build a validated batch from dicts with fields `ARCH_FIELDS`.

        Strict: integers only (no 64.5, "64", true, NaN or inf) and booleans only for `bias`;
        each error names the record index, the field, the value and the allowed choices."""
        lmax, n = self.max_layers, len(records)
        n_head = np.zeros((n, lmax), np.int32)
        mlp_ratio = np.zeros((n, lmax), np.int32)
        embed_dim, n_layer, bias = (np.zeros(n, np.int32), np.zeros(n, np.int32),
                                    np.zeros(n, bool))
        for i, rec in enumerate(records):
            rec = self.check_record(rec, i)
            embed_dim[i], n_layer[i], bias[i] = rec["embed_dim"], rec["n_layer"], rec["bias"]
            n_head[i, : rec["n_layer"]] = rec["n_head"]
            mlp_ratio[i, : rec["n_layer"]] = rec["mlp_ratio"]
        return self.validate(Arch(embed_dim=embed_dim, n_layer=n_layer, n_head=n_head,
                                  mlp_ratio=mlp_ratio, bias=bias))

    def check_record(self, record: Any, index: int, prefix: str = "",
                     bias_strings: bool = False) -> dict[str, Any]:
        """One arch record checked field by field (see `from_records`); `prefix` is the field
        name prefix in errors ('sample_' for HW-GPT-Bench dicts), `bias_strings` also accepts
        'True'/'False' for bias. Returns the record with plain Python values."""
        where = f"arch record {index}"
        if not isinstance(record, Mapping):
            raise ValueError(f"{where} is {_show(record)}, expected an object with fields "
                             f"{[prefix + f for f in ARCH_FIELDS]}")
        missing = [prefix + f for f in ARCH_FIELDS if prefix + f not in record]
        if missing:
            raise ValueError(f"{where} lacks field(s) {missing}; expected "
                             f"{[prefix + f for f in ARCH_FIELDS]}")
        out = {}
        for name, allowed in (("embed_dim", self.embed_dims), ("n_layer", self.n_layers)):
            out[name] = _choice(record[prefix + name], allowed, f"{where}: {prefix}{name}",
                                self.scale)
        for name, allowed in (("n_head", self.n_heads), ("mlp_ratio", self.mlp_ratios)):
            values = record[prefix + name]
            if isinstance(values, str | bytes | Mapping) or not hasattr(values, "__len__"):
                raise ValueError(f"{where}: {prefix}{name}={_show(values)} is not a list; "
                                 f"expected n_layer={out['n_layer']} values from {list(allowed)}")
            values = list(values)
            if len(values) < out["n_layer"] or (not prefix and len(values) != out["n_layer"]):
                raise ValueError(f"{where}: {prefix}{name} has {len(values)} entries, expected "
                                 f"n_layer={out['n_layer']} (at most Lmax={self.max_layers})")
            out[name] = [_choice(v, allowed, f"{where}: {prefix}{name}[{j}]", self.scale)
                         for j, v in enumerate(values[: out["n_layer"]])]
        out["bias"] = _parse_bool(record[prefix + "bias"], f"{where}: {prefix}bias",
                                  bias_strings)
        return out

    def to_hwgpt(self, arch: Arch) -> list[dict[str, Any]]:
        """HW-GPT-Bench `sample_*` config dicts (per-layer lists of length `n_layer`)."""
        return [
            {"sample_embed_dim": r["embed_dim"], "sample_n_layer": r["n_layer"],
             "sample_n_head": r["n_head"], "sample_mlp_ratio": r["mlp_ratio"],
             "sample_bias": r["bias"],
             "sample_intermediate_size": [m * r["embed_dim"] for m in r["mlp_ratio"]]}
            for r in self.to_records(arch)
        ]

    def from_hwgpt(self, configs: Sequence[Mapping[str, Any]]) -> Arch:
        """Parse HW-GPT-Bench configs; per-layer lists may be longer than `n_layer` (cut), and
        `sample_bias` may also be the strings 'True'/'False' (as HW-GPT-Bench stores it)."""
        records = [self.check_record(cfg, i, "sample_", bias_strings=True)
                   for i, cfg in enumerate(configs)]
        arch = self.from_records(records)
        for i, (cfg, rec) in enumerate(zip(configs, records, strict=True)):
            sizes = cfg.get("sample_intermediate_size")
            expected = [m * rec["embed_dim"] for m in rec["mlp_ratio"]]
            if sizes is not None and list(sizes)[: len(expected)] != expected:
                raise ValueError(f"sample_intermediate_size={list(sizes)} in config {i} does not "
                                 f"equal mlp_ratio * embed_dim = {expected}")
        return arch

    def from_published(self, arrays: Mapping[str, np.ndarray]) -> Arch:
        """Archs from the published HW-GPT-Bench npz arrays (`-1` padding past n_layer)."""
        n_head = np.asarray(arrays["n_head"], np.int32)
        if n_head.shape[-1] != self.max_layers:
            raise ValueError(f"published n_head has {n_head.shape[-1]} layer columns, the "
                             f"{self.scale} space expects Lmax={self.max_layers}")
        arch = Arch(
            embed_dim=np.asarray(arrays["embed_dim"], np.int32),
            n_layer=np.asarray(arrays["n_layer"], np.int32),
            n_head=np.maximum(n_head, 0),
            mlp_ratio=np.maximum(np.asarray(arrays["mlp_ratio"], np.int32), 0),
            bias=np.asarray(arrays["bias"], bool),
        )
        return self.validate(arch)

    def to_json(self, arch: Arch) -> str:
        return json.dumps({"scale": self.scale, "archs": self.to_records(arch)})

    def from_json(self, text: str) -> Arch:
        """Parse `to_json` output (or a bare list of records); the scale must match."""
        data = json.loads(text)
        if isinstance(data, dict):
            if data.get("scale", self.scale) != self.scale:
                raise ValueError(f"archs are of scale {data['scale']!r}, expected {self.scale!r}")
            data = data.get("archs", [])
        if not isinstance(data, list):
            raise ValueError(f"expected a list of arch records, got {type(data).__name__}")
        return self.from_records(data)


def _show(value: Any) -> str:
    """A value as an error message shows it (JSON-like, short)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _choice(value: Any, allowed: Sequence[int], where: str, scale: str) -> int:
    """`value` as an int if it is an integer (not bool, float or string) among `allowed`."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{where}={_show(value)} is not an integer; allowed choices: "
                         f"{list(allowed)}")
    if int(value) not in allowed:
        raise ValueError(f"{where}={int(value)} is not in the {scale} space; allowed choices: "
                         f"{list(allowed)}")
    return int(value)


def _parse_bool(value: Any, where: str = "bias", strings: bool = False) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if strings and value in ("True", "False", "true", "false"):
        return value in ("True", "true")
    expected = "true or false" + (" (or the strings 'True'/'False')" if strings else "")
    raise ValueError(f"{where}={_show(value)} is not a boolean; expected {expected}")


@partial(jax.jit, static_argnames=("space", "n"))
def _sample(key: jax.Array, space: SearchSpace, n: int) -> Arch:
    return space.from_genes(rules.random_genes(key, space.gene_cardinality, n))


SPACES: dict[str, SearchSpace] = {
    "tiny": SearchSpace("tiny", (64, 128, 256), (2, 3, 4), (2, 4, 8), (2, 3, 4), 32, 256),
    "s": SearchSpace("s", (192, 384, 768), (10, 11, 12), (4, 8, 12), (2, 3, 4), 64, 1024),
    "m": SearchSpace("m", (256, 512, 1024), (22, 23, 24), (8, 12, 16), (2, 3, 4), 64, 1024),
    "l": SearchSpace("l", (320, 640, 1280), (34, 35, 36), (8, 16, 20), (2, 3, 4), 64, 1024),
}


def get_space(scale: str) -> SearchSpace:
    """The search space of a scale: one of 'tiny', 's', 'm', 'l'."""
    if scale not in SPACES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {list(SPACES)}")
    return SPACES[scale]

