"""US census first names for character-level language models (labs 11 and 12)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import check_float

__all__ = ["NamesData", "load_names", "bigram_nll", "BOUNDARY", "IGNORE_INDEX"]

#: Start/end token: every name is modelled as ".name." (the same token opens and closes it).
BOUNDARY = "."
#: Target value of padding positions (the default ``ignore_index`` of ``F.cross_entropy``).
IGNORE_INDEX = -100
_SPLIT_SEED = 0


@dataclass(frozen=True)
class NamesData:
    """Lowercase, deduplicated US census first names with a fixed split.

    Attributes:
        train, val, test: lists of names (val is carved from the 90% training part,
            test is the held-out 10%).
        chars: the vocabulary; index 0 is the boundary token ``"."``, then a..z.
    """

    train: list[str]
    val: list[str]
    test: list[str]
    chars: tuple[str, ...]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    @property
    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.chars)}

    def encode(self, name: str) -> list[int]:
        """``"ann"`` -> ids of ``".ann."`` (boundary, letters, boundary).

        Raises:
            ValueError: a character outside the vocabulary.
        """
        stoi = self.stoi
        unknown = sorted({c for c in name if c not in stoi or c == BOUNDARY})
        if unknown:
            raise ValueError(f"name: characters {unknown} are not letters of the vocabulary")
        return [0] + [stoi[c] for c in name] + [0]

    def decode(self, ids: Sequence[int]) -> str:
        """Ids back to text, boundary tokens removed."""
        return "".join(self.chars[i] for i in ids if i != 0)

    def tensors(self, split: str = "train"):
        """Padded next-character pairs ``(x, y)`` for one split, two (N, L) int64 tensors.

        Row i holds name i as ``x = [., c1, ..., cn, pad...]`` and ``y = [c1, ..., cn, ., pad...]``
        (the targets are the inputs shifted by one; L = longest name + 1). Padding is 0 in ``x``
        and ``IGNORE_INDEX`` (-100) in ``y``, so ``F.cross_entropy(logits.flatten(0, 1),
        y.flatten())`` averages over exactly the ``len(name) + 1`` predictions per name that
        :func:`bigram_nll` scores.
        """
        import torch

        if split not in ("train", "val", "test"):
            raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
        words = getattr(self, split)
        L = max(len(w) for w in words) + 1
        x = torch.zeros(len(words), L, dtype=torch.long)
        y = torch.full((len(words), L), IGNORE_INDEX, dtype=torch.long)
        for i, word in enumerate(words):
            ids = torch.tensor(self.encode(word))
            x[i, : len(ids) - 1] = ids[:-1]
            y[i, : len(ids) - 1] = ids[1:]
        return x, y

    def bigram_baseline(self, split: str = "test", alpha: float = 1.0) -> float:
        """Held-out NLL per character (nats) of the add-``alpha`` bigram model fitted on train."""
        if split not in ("val", "test"):
            raise ValueError(f"split: expected 'val' or 'test', got {split!r}")
        return bigram_nll(self.train, getattr(self, split), alpha=alpha, chars=self.chars)

    def __repr__(self) -> str:
        return (
            f"NamesData(train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
            f"vocab={self.vocab_size})"
        )


def _names_files() -> list[Path]:
    try:
        import names as names_pkg
    except ImportError as exc:
        raise ImportError(
            "the census names need the 'names' package: pip install names==0.3.0 "
            "(it is in requirements.txt; `make` installs it)"
        ) from exc
    folder = Path(names_pkg.__file__).parent
    return [folder / "dist.male.first", folder / "dist.female.first"]


def load_names(val_fraction: float = 0.1) -> NamesData:
    """Census first names (male and female), lowercase and deduplicated: 5,163 names.

    The split is fixed (seed 0, not ``DL_LABS_SEED``): 10% test, and ``val_fraction`` of
    the remaining 90% for validation / early stopping.

    Returns:
        NamesData: train 4,182 / val 465 / test 516 names with the default fraction.
    """
    check_float("val_fraction", val_fraction, minimum=0.0, maximum=0.5, strict_min=True)
    words: set[str] = set()
    for path in _names_files():
        with open(path) as handle:
            for line in handle:
                if line.strip():
                    words.add(line.split()[0].lower())
    ordered = sorted(words)
    perm = np.random.default_rng(_SPLIT_SEED).permutation(len(ordered))
    shuffled = [ordered[i] for i in perm]
    n_test = int(round(0.1 * len(shuffled)))
    test, rest = shuffled[:n_test], shuffled[n_test:]
    n_val = int(round(val_fraction * len(rest)))
    val, train = rest[:n_val], rest[n_val:]
    chars = (BOUNDARY,) + tuple(sorted(set("".join(ordered))))
    return NamesData(train=train, val=val, test=test, chars=chars)


def bigram_nll(
    train: Sequence[str], test: Sequence[str], alpha: float = 1.0,
    chars: Sequence[str] | None = None,
) -> float:
    """Negative log-likelihood per character (nats) of an add-``alpha`` smoothed bigram model.

    Each name ``w`` is scored as ``.w.``: ``len(w) + 1`` predictions, the end token included.

    Args:
        train: names whose bigram counts define the model.
        test: names to score.
        alpha: additive smoothing (> 0; 1 is Laplace).
        chars: the vocabulary, boundary first (default: boundary + letters seen in train/test).

    Returns:
        float: mean NLL per predicted character.

    Raises:
        ValueError: empty inputs, alpha <= 0, or a character outside ``chars``.
    """
    check_float("alpha", alpha, minimum=0.0, strict_min=True)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"train and test: expected non-empty lists, got {len(train)} and {len(test)}")
    if chars is None:
        chars = (BOUNDARY,) + tuple(sorted(set("".join(train) + "".join(test))))
    stoi = {c: i for i, c in enumerate(chars)}
    V = len(chars)
    counts = np.zeros((V, V))
    for word in train:
        try:
            seq = [0] + [stoi[c] for c in word] + [0]
        except KeyError as exc:
            raise ValueError(f"train: character {exc.args[0]!r} is not in chars") from None
        np.add.at(counts, (seq[:-1], seq[1:]), 1)
    logp = np.log((counts + alpha) / (counts + alpha).sum(axis=1, keepdims=True))
    total, n = 0.0, 0
    for word in test:
        try:
            seq = [0] + [stoi[c] for c in word] + [0]
        except KeyError as exc:
            raise ValueError(f"test: character {exc.args[0]!r} is not in chars") from None
        total -= float(logp[seq[:-1], seq[1:]].sum())
        n += len(seq) - 1
    return total / n if n else math.nan
