"""jieba's part-of-speech tagger (jieba.posseg) with its HMM decoded by numpy: the same model, the same sums, the
same answer, about twelve times faster.

jieba.posseg cuts a text by its dictionary and hands each run of characters the dictionary does not know (names,
places, slang: the run's characters are single-character pieces of the best route) to an HMM over 256 states
(B/M/E/S × part of speech), decoded by `jieba.posseg.viterbi.viterbi`: pure Python, about 150 µs a character
(7 ms for a character outside its table of characters' states: every state), 60% of `TermExtractor.terms_of`
and the largest part of the stats service's busy CPU under the end-to-end bench. `Viterbi.decode` takes 12 µs a
character (0.1 ms outside the table): terms_of costs a quarter to a third of what it did
(`python -m tests.bench.terms_bench`). It is that function restated on arrays, step by step:

- the states at step t: those of the character (`char_state_tab`; every state for a character not in it)
  that some state of step t-1 with transitions can go to; if none, every state those can go to, and if there
  are none either, all states;
- the score of state y at step t: the maximum over those states y0 of step t-1 of V[y0] + trans[y0][y] +
  emit[y][char], summed in that order (−inf for a missing transition, −3.14e100 for a missing emission, as
  jieba) in IEEE double precision, which numpy's float64 addition is, element by element;
- ties: jieba takes max((score, y0) ...), the greatest state tuple among equal scores (frequent: a missing
  emission of −3.14e100 absorbs everything added to it). The states are numbered here in descending tuple
  order, so that argmax (the first of equal maxima) picks the same one; the final state likewise;
- the route: followed back from the final state, as jieba's mem_path.

Nothing is cached from one text to the next (the model's tables are built once, in __init__), so the cost
does not depend on texts repeating. tests/unit/test_hot_terms_postag.py compares `decode` with jieba's function, and the
tagger's (word, tag) pairs with jieba.posseg's, on thousands of sentences and random runs of characters.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jieba
import jieba.posseg
import numpy as np
import numpy.typing as npt
from jieba.posseg import char_state_tab_P, emit_P, pair, start_P, trans_P
from jieba.posseg.viterbi import MIN_FLOAT
from jieba.posseg.viterbi import viterbi as jieba_viterbi

State = tuple[str, str]  # (B|M|E|S, part of speech)
Floats = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]


class Viterbi:
    """jieba.posseg's HMM decoder (`decode` returns what `jieba.posseg.viterbi.viterbi` returns), on arrays."""

    def __init__(
        self,
        char_states: Mapping[str, Sequence[State]] = char_state_tab_P,
        start: Mapping[State, float] = start_P,
        trans: Mapping[State, Mapping[State, float]] = trans_P,
        emit: Mapping[State, Mapping[str, float]] = emit_P,
    ) -> None:
        self._model = (char_states, start, trans, emit)
        # Numbered in descending order: argmax's first of equal maxima is jieba's max((score, state)).
        self._states: list[State] = sorted(trans, reverse=True)
        index = {s: i for i, s in enumerate(self._states)}
        n = len(self._states)
        self._n = n
        self._trans = np.full((n, n), -np.inf)
        for y0, row in trans.items():
            for y, p in row.items():
                self._trans[index[y0], index[y]] = p
        self._reaches = self._trans > -np.inf
        self._has_trans = np.array([bool(trans[s]) for s in self._states])
        self._start = np.array([start[s] for s in self._states], dtype=np.float64)
        self._all = np.arange(n, dtype=np.intp)
        self._char_index: dict[str, Indices] = {}
        self._char_mask: dict[str, npt.NDArray[np.bool_]] = {}
        for char, states in char_states.items():
            ix = np.array(sorted(index[s] for s in states), dtype=np.intp)
            self._char_index[char] = ix
            self._char_mask[char] = np.zeros(n, dtype=bool)
            self._char_mask[char][ix] = True
        # Emissions per character, sparse (a character has about ten states): a dense table of every character
        # would take 18 MB. Missing: MIN_FLOAT, as jieba's emit_p[y].get(char, MIN_FLOAT).
        by_char: dict[str, tuple[list[int], list[float]]] = {}
        for state, emissions in emit.items():
            for c, p in emissions.items():
                ixs, ps = by_char.setdefault(c, ([], []))
                ixs.append(index[state])
                ps.append(p)
        self._emit = {
            c: (np.array(ixs, dtype=np.intp), np.array(ps, dtype=np.float64)) for c, (ixs, ps) in by_char.items()
        }
        self._no_emit = np.full(n, MIN_FLOAT, dtype=np.float64)

    def _emissions(self, char: str) -> Floats:
        e = self._no_emit.copy()
        sparse = self._emit.get(char)
        if sparse is not None:
            e[sparse[0]] = sparse[1]
        return e

    def decode(self, obs: str) -> tuple[float, list[State]]:
        """The best path's log probability and its states, one per character of `obs` (non-empty), as jieba's."""
        has_trans, reaches, trans, char_mask = self._has_trans, self._reaches, self._trans, self._char_mask
        states = self._char_index.get(obs[0], self._all)  # ascending numbers
        if not states.size:
            return self._jieba(obs)
        scores: Floats = self._start[states] + self._emissions(obs[0])[states]
        back: list[Indices] = []  # per step after the first: the best previous state of each state (by number)
        for char in obs[1:]:
            keep = has_trans[states]
            prev = states[keep]
            if not prev.size:  # jieba's max() over no states raises; not with jieba's model (every state it can
                return self._jieba(obs)  # reach has transitions)
            expected = reaches[prev].any(axis=0)
            mask = char_mask.get(char)
            nxt = np.flatnonzero(expected & mask if mask is not None else expected)
            if not nxt.size:
                nxt = np.flatnonzero(expected) if expected.any() else self._all
            table = scores[keep][:, None] + trans[prev[:, None], nxt] + self._emissions(char)[nxt]
            best = table.argmax(axis=0)
            scores = table.max(axis=0)
            pointers = np.empty(self._n, dtype=np.intp)
            pointers[nxt] = prev[best]
            back.append(pointers)
            states = nxt
        k = int(scores.argmax())
        state = int(states[k])
        route = [state] * len(obs)
        for i in range(len(obs) - 1, 0, -1):
            state = int(back[i - 1][state])
            route[i - 1] = state
        return float(scores[k]), [self._states[s] for s in route]

    def _jieba(self, obs: str) -> tuple[float, list[State]]:
        prob, route = jieba_viterbi(obs, *self._model)
        return prob, route


class POSTokenizer(jieba.posseg.POSTokenizer):  # type: ignore[misc]  # jieba has no type hints
    """jieba.posseg.POSTokenizer whose HMM is decoded by `Viterbi`; everything else is jieba's."""

    def __init__(self, tokenizer: jieba.Tokenizer, viterbi: Viterbi | None = None) -> None:
        super().__init__(tokenizer)
        self.viterbi = viterbi or Viterbi()

    def _POSTokenizer__cut(self, sentence: str) -> Iterator[Any]:
        """jieba.posseg.POSTokenizer.__cut (a run of Chinese characters the dictionary does not know, through
        the HMM), line for line, with `Viterbi.decode` for jieba.posseg.viterbi."""
        _, pos_list = self.viterbi.decode(sentence)
        begin, nexti = 0, 0
        for i, char in enumerate(sentence):
            pos = pos_list[i][0]
            if pos == "B":
                begin = i
            elif pos == "E":
                yield pair(sentence[begin : i + 1], pos_list[i][1])
                nexti = i + 1
            elif pos == "S":
                yield pair(char, pos_list[i][1])
                nexti = i + 1
        if nexti < len(sentence):
            yield pair(sentence[nexti:], pos_list[nexti][1])
