"""Text -> overlapping chunks that fit an embedding model's input, cut where the meaning breaks.

    from apps.knowledge.chunking import chunk_text
    embedder = get_local_embedder()
    chunks = chunk_text(text, count_tokens=embedder.count_tokens, max_tokens=256, overlap=32)
    chunks[0].text == text[chunks[0].start_char : chunks[0].end_char]   # always

Sizes are in the tokens of ``count_tokens``, the embedding model's own tokenizer (tiktoken for
the OpenAI models, WordPiece for the local MiniLM), so a chunk is never truncated by the model.

Contract:

- ``token_count`` is ``count_tokens(chunk.text)``, measured, and never exceeds ``hard_limit``
  (default ``max_tokens``). ``max_tokens`` is the size aimed at; a ``max_tokens`` above
  ``hard_limit`` is lowered to it (the limit is the model's, the target the caller's taste).
- ``chunk.text == text[start_char:end_char]``, exactly: offsets highlight a hit in the original.
  Chunks start and end on non-whitespace, so whitespace between chunks belongs to none.
- Every non-whitespace character of ``text`` is in at least one chunk, and chunks are in text
  order. Empty or whitespace-only text gives no chunks.
- Balanced: a text that needs ``n`` chunks is cut into ``n`` chunks of about equal size, not
  ``n - 1`` full ones and a small tail (a text 1.1 chunks long becomes two chunks of 0.55 plus
  the overlap, not a full chunk and a tail that repeats ``overlap`` tokens to add a few). The
  number of chunks is the fewest that hold the text with its overlaps unless the boundaries
  below force more; each chunk aims at an equal share of the text left.
- A chunk ends at the strongest boundary that leaves it at least half its share, then at one
  that leaves the rest within the fewest chunks, then the one nearest its share: end of a paragraph (a blank line), then of a sentence, then of a line,
  then between words, and only when a single word is too long for a chunk, inside it. Without
  the half-full floor a heading followed by a long paragraph would become a chunk of its own,
  useless for retrieval.
- Each chunk after the first starts with about the overlap's tokens from the end of the
  previous one (never more), starting at the strongest boundary with at least half of it, so
  a sentence cut by a chunk end is read whole in the next chunk. The overlap is ``overlap``,
  at most an eighth of the text's chunk size: every token of overlap is embedded twice, and a
  chunk cut at a sentence end needs context, not a copy of a quarter of its neighbour. No
  overlap when the next piece of text would not fit with it.
- Deterministic: the same input gives the same chunks.

How it stays fast (a 1 MB document is a few hundred thousand tokens): the text is split once into
units (sentences, and only for oversized sentences, groups of words or pieces of a word) and
each unit is counted once. Chunks are assembled from the units' counts, which are additive up to
what the separators between them cost (measured once per distinct separator). Because that sum
is an estimate (BPE merges across a boundary), every chunk is counted once for real and shrunk
if it is over the limit; the overlap of each chunk costs a few more counts. In all about
``units + 2 * chunks + small`` calls of ``count_tokens``, never one per character or word.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TextChunk", "chunk_text"]


@dataclass(frozen=True, slots=True)
class TextChunk:
    index: int
    text: str
    #: ``count_tokens(text)``: fixed overhead included (e.g. MiniLM's [CLS] and [SEP]).
    token_count: int
    #: ``text == source[start_char:end_char]``.
    start_char: int
    end_char: int
    #: The heading the chunk starts under, when the format has headings (``positions.with_headings``).
    heading: str = ""


# Boundary strengths, weakest first: what separates a unit from the next one.
_INSIDE_WORD, _WORD, _LINE, _SENTENCE, _PARAGRAPH, _END = range(6)

# One pattern finds every sentence and line boundary; whitespace between words is not matched,
# so there is one match per sentence or line, not per word. Every branch starts only where its
# run of punctuation or whitespace starts and consumes it whole (possessive quantifiers): the
# scan stays linear even on a megabyte of dots or spaces.
_BOUNDARY = re.compile(
    r"""
      (?<![.!?…‼⁇⁈⁉])(?P<term>[.!?…‼⁇⁈⁉]++["'”’»)\]]*+)(?P<ws>\s++)  # . ! ? (closing quotes), space
    | (?<![。！？｡])(?P<cjk>[。！？｡]++[」』）〕】”’"']*+)(?P<cjkws>\s*+)     # CJK stops need no space
    | (?<!\s)(?P<nl>[^\S\n]*+\n\s*+)                                    # whitespace with a line break
    """,
    re.VERBOSE,
)
_WORD_RE = re.compile(r"\S+")
_WORD_START = re.compile(r"(?<=\s)\S")
_NON_SPACE = re.compile(r"\S")

# Split an oversized sentence into word groups of about budget / 8 tokens: small enough that a
# chunk ending inside it is nearly full, large enough to keep the number of counts low.
_PIECES_PER_BUDGET = 8
# Fraction of its share a chunk must reach before a weaker boundary is accepted over a stronger
# one; the same fraction of the overlap for where the overlap starts.
_MIN_FILL = 0.5
# The overlap is at most 1/_OVERLAP_SHARE of the text's chunk size. SciFact's abstracts, most of
# them a little over one MiniLM chunk, cost 1.63x the word pieces of their first 256 as a full
# chunk and a tail with a 64-token overlap, 1.49x as balanced chunks with this cap
# (bench/bench_ingestion.py, bench/bench_retrieval.py for the retrieval side).
_OVERLAP_SHARE = 8


def chunk_text(
    text: str,
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 512,
    overlap: int = 64,
    hard_limit: int | None = None,
) -> list[TextChunk]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens as counted by ``count_tokens``.

    ``overlap``: at most this many tokens repeated from the end of a chunk at the start of the
    next (and at most an eighth of the text's chunk size). ``hard_limit``: tokens no chunk may exceed, the model's input limit;
    defaults to ``max_tokens``. See the module docstring for the guarantees.
    """
    limit = max_tokens if hard_limit is None else hard_limit
    if max_tokens < 1 or limit < 1:
        raise ValueError("max_tokens and hard_limit must be positive")
    if overlap < 0:
        raise ValueError("overlap must be >= 0")
    if not text or not _NON_SPACE.search(text):
        return []
    return _Chunker(text, count_tokens, min(max_tokens, limit), overlap, limit).run()


class _Chunker:
    def __init__(self, text: str, count: Callable[[str], int], target: int, overlap: int, hard_limit: int) -> None:
        self.text = text
        self.count = count
        self.hard_limit = hard_limit
        self.target = target
        # A tokenizer's fixed cost of any input (MiniLM: [CLS] and [SEP]); a unit's cost excludes
        # it so that costs add up.
        self.base = count("")
        self.budget = target - self.base  # tokens left for text in one chunk
        if self.budget < 1:
            raise ValueError(
                f"chunks of {target} tokens leave no room for text: the tokenizer counts {self.base} for empty text"
            )
        # At most half of a chunk repeats the previous one, or chunks would mostly be copies.
        # Lowered to the text's share once its size is known (``_plan``).
        self.overlap = min(overlap, self.budget // 2)
        # A unit must fit in a chunk next to a full overlap, so every chunk adds new text.
        self.unit_max = self.budget - self.overlap
        self.piece_goal = max(1, self.budget // _PIECES_PER_BUDGET)
        self._separator_costs: dict[str, int] = {}
        # Units: parallel lists (a few hundred thousand units for a large document).
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.costs: list[int] = []
        self.breaks: list[int] = []  # strength of the boundary after the unit
        self.seps: list[int] = []  # cost of the whitespace between the unit and the next one
        # rest[k]: estimated cost of units k..last with the separators between them (rest[last + 1] = 0).
        self.rest: list[int] = []

    # -- units -----------------------------------------------------------------------------

    def run(self) -> list[TextChunk]:
        self._split_units()
        self._plan()
        chunks: list[TextChunk] = []
        last = len(self.starts) - 1
        pos, k, head = self.starts[0], 0, 0
        while True:
            end, tokens, pos = self._fit_chunk(pos, k, head)
            chunks.append(TextChunk(len(chunks), self.text[pos : self.ends[end]], tokens, pos, self.ends[end]))
            if end == last:
                return chunks
            pos, k, head = self._next_start(pos, end)

    def _split_units(self) -> None:
        text = self.text
        first = _NON_SPACE.search(text)
        assert first is not None
        seg_start = first.start()
        for match in _BOUNDARY.finditer(text, seg_start):
            if match.group("term") is not None:
                ws_start, ws_end = match.span("ws")
                strength = self._whitespace_strength(match.group("ws"))
                # "e.g. the", "approx. five": a full stop before a lower-case word rarely ends a sentence.
                if ws_end == len(text) or not text[ws_end].islower():
                    strength = max(strength, _SENTENCE)
            elif match.group("cjk") is not None:
                ws_start, ws_end = match.span("cjkws")
                strength = max(self._whitespace_strength(match.group("cjkws")), _SENTENCE)
            else:
                ws_start, ws_end = match.span("nl")
                strength = self._whitespace_strength(match.group("nl"))
            if strength <= _WORD or ws_start <= seg_start:
                continue
            if ws_end >= len(text):
                break
            self._add_segment(seg_start, ws_start, strength)
            seg_start = ws_end
        last = len(text.rstrip())
        if last > seg_start:
            self._add_segment(seg_start, last, _END)
        elif self.breaks:  # only trailing whitespace after the last boundary
            self.breaks[-1] = _END
        for i in range(len(self.starts) - 1):
            self.seps.append(self._separator_cost(self.text[self.ends[i] : self.starts[i + 1]]))
        self.seps.append(0)

    @staticmethod
    def _whitespace_strength(ws: str) -> int:
        newlines = ws.count("\n")
        if newlines >= 2:
            return _PARAGRAPH
        if newlines:
            return _LINE
        return _WORD if ws else _INSIDE_WORD

    def _add_segment(self, start: int, end: int, strength: int) -> None:
        cost = self.count(self.text[start:end]) - self.base
        if cost <= self.unit_max:
            self._add_unit(start, end, cost, strength)
            return
        self._split_words(start, end, cost)
        self.breaks[-1] = strength

    def _add_unit(self, start: int, end: int, cost: int, strength: int) -> None:
        self.starts.append(start)
        self.ends.append(end)
        self.costs.append(cost)
        self.breaks.append(strength)

    def _split_words(self, start: int, end: int, cost: int) -> None:
        """Units of about ``piece_goal`` tokens for a sentence too long for one unit."""
        words = [m.span() for m in _WORD_RE.finditer(self.text, start, end)]
        max_chars = max(1, int(self.piece_goal * (end - start) / max(cost, 1)))
        if len(words) == 1:  # already counted: no need to count it again as a group
            self._split_word(start, end, cost)
            return
        group_start = 0
        for i in range(1, len(words) + 1):
            if i == len(words) or words[i][1] - words[group_start][0] > max_chars:
                self._add_word_group(words, group_start, i)
                group_start = i

    def _add_word_group(self, words: list[tuple[int, int]], lo: int, hi: int) -> None:
        start, end = words[lo][0], words[hi - 1][1]
        cost = self.count(self.text[start:end]) - self.base
        if cost <= self.unit_max:
            self._add_unit(start, end, cost, _WORD)
        elif hi - lo > 1:
            middle = (lo + hi) // 2
            self._add_word_group(words, lo, middle)
            self._add_word_group(words, middle, hi)
        else:
            self._split_word(start, end, cost)
            self.breaks[-1] = _WORD

    def _split_word(self, start: int, end: int, cost: int) -> None:
        """Pieces of a word too long for one unit (a URL, base64, text without spaces)."""
        step = max(1, int(self.piece_goal * (end - start) / max(cost, 1)))
        cuts = [start]
        for cut in range(start + step, end, step):
            cut = self._cluster_boundary(cut, end)
            if cuts[-1] < cut < end:
                cuts.append(cut)
        cuts.append(end)
        for a, b in itertools.pairwise(cuts):
            self._add_piece(a, b)

    def _add_piece(self, start: int, end: int) -> None:
        cost = self.count(self.text[start:end]) - self.base
        if cost <= self.unit_max or (cost <= self.budget and self._single_cluster(start, end)):
            self._add_unit(start, end, cost, _INSIDE_WORD)
            return
        middle = self._cluster_boundary((start + end) // 2, end)
        if middle >= end:
            middle = (start + end) // 2
        if middle <= start:
            raise ValueError(
                f"chunks of {self.target} tokens cannot hold {self.text[start:end]!r}: it alone is {cost + self.base} tokens"
            )
        self._add_piece(start, middle)
        self._add_piece(middle, end)

    def _cluster_boundary(self, cut: int, end: int) -> int:
        """``cut`` moved forward past combining marks and joiners, so no character is split apart."""
        text = self.text
        while cut < end and (
            unicodedata.category(text[cut]) in ("Mn", "Mc", "Me")
            or text[cut] in "\u200d\ufe0e\ufe0f"
            or "\U0001f3fb" <= text[cut] <= "\U0001f3ff"  # skin tone modifiers
            or text[cut - 1] == "\u200d"
        ):
            cut += 1
        return cut

    def _single_cluster(self, start: int, end: int) -> bool:
        return self._cluster_boundary(start + 1, end) >= end

    def _separator_cost(self, separator: str) -> int:
        """Tokens the whitespace between two units adds to their sum, e.g. a newline token."""
        if not separator:
            return 0
        cost = self._separator_costs.get(separator)
        if cost is None:
            # Never below 0: assuming a separator saves tokens could only underestimate.
            probe = self.count("a" + separator + "b") - self.count("a") - self.count("b") + self.base
            cost = self._separator_costs[separator] = max(0, probe)
        return cost

    # -- chunks ----------------------------------------------------------------------------

    def _plan(self) -> None:
        """Suffix costs of the units, and the text's overlap: at most 1/8 of its chunk size."""
        rest = [0] * (len(self.costs) + 1)
        for i in range(len(self.costs) - 1, -1, -1):
            rest[i] = rest[i + 1] + self.costs[i] + self.seps[i]
        self.rest = rest
        total = rest[0]
        if self.base + total <= self.target:
            return  # one chunk: no overlap to size
        # The fewest chunks that hold the text with the overlaps between them, the overlap sized
        # on the chunks it joins.
        pieces = 2
        while True:
            overlap = min(self.overlap, total // pieces // _OVERLAP_SHARE)
            if total + (pieces - 1) * overlap <= pieces * self.budget:
                self.overlap = overlap
                return
            pieces += 1

    def _chunks_for(self, tokens: int) -> int:
        """Chunks after a first one for ``tokens`` of text still to place (each starts with an overlap)."""
        return -(-tokens // max(1, self.budget - self.overlap))

    def _fit_chunk(self, pos: int, k: int, head: int) -> tuple[int, int, int]:
        """(last unit, tokens, start) of the chunk from ``pos``: its own units start at ``k``.

        ``head`` is the estimated cost of the overlap text between ``pos`` and unit ``k``.
        """
        limit = self.target
        while True:
            end, estimate = self._choose_end(k, head, limit)
            tokens = self.count(self.text[pos : self.ends[end]])
            if tokens <= self.hard_limit:
                return end, tokens, pos
            if end > k:
                # The estimate was low: aim lower by what it missed, which drops at least a unit.
                limit = min(limit, estimate - (tokens - self.hard_limit))
            elif pos != self.starts[k]:
                pos, head, limit = self.starts[k], 0, self.target  # a unit alone always fits
            else:
                raise RuntimeError(
                    f"count_tokens is not deterministic: {tokens} tokens for a unit counted {self.costs[k]}"
                )

    def _choose_end(self, k: int, head: int, limit: int) -> tuple[int, int]:
        """The last unit of the chunk whose first own unit is ``k``, and the chunk's estimate."""
        last = len(self.starts) - 1
        total = self.base + head + self.costs[k]
        candidates = [(k, total)]
        j = k
        while j < last:
            grown = total + self.seps[j] + self.costs[j + 1]
            if grown > limit:
                break
            j, total = j + 1, grown
            candidates.append((j, total))
        if j == last:
            return j, total
        # Balance: this chunk and the ones after it share what is left equally, the chunks after
        # it being the fewest that hold the rest. The strongest boundary still wins (a paragraph
        # end over a sentence end); among equals, one that leaves the rest within those chunks,
        # then the one nearest the share.
        after = self._chunks_for(self.rest[k] - (limit - self.base - head))
        share = (head + self.rest[k] + after * self.overlap) / (after + 1) + self.base
        room = after * max(1, self.budget - self.overlap)
        floor = _MIN_FILL * min(share, limit)
        eligible = [c for c in candidates if c[1] >= floor] or candidates
        return max(eligible, key=lambda c: (self.breaks[c[0]], self.rest[c[0] + 1] <= room, -abs(c[1] - share)))

    def _next_start(self, prev_pos: int, end: int) -> tuple[int, int, int]:
        """Where the chunk after the one ending with unit ``end`` starts: (pos, k, head)."""
        k = end + 1
        no_overlap = (self.starts[k], k, 0)
        # The overlap must leave room for the next unit: every chunk adds new text.
        goal = min(self.overlap, self.budget - self.seps[end] - self.costs[k])
        if goal <= 0:
            return no_overlap
        # (strength of the boundary before the start, tokens, start, verified by a real count)
        candidates: list[tuple[int, int, int, bool]] = []
        tokens = 0
        t = end
        while t >= 0 and self.starts[t] > prev_pos:
            tokens += self.costs[t] + (self.seps[t] if t < end else 0)
            if tokens > goal:
                break
            strength = self.breaks[t - 1] if t > 0 else _PARAGRAPH
            candidates.append((strength, tokens, self.starts[t], False))
            t -= 1
        floor = _MIN_FILL * goal
        if t >= 0 and not any(c[1] >= floor and c[0] >= _WORD for c in candidates):
            # Sentences are too long to give enough overlap: start inside one, between words.
            inside = self._overlap_inside(t, end, prev_pos, goal)
            if inside is not None:
                candidates.append(inside)
        while candidates:
            eligible = [c for c in candidates if c[1] >= floor] or candidates
            strength, tokens, pos, verified = max(eligible, key=lambda c: (c[0], c[1]))
            if not verified:
                # Unit costs add up only approximately: the overlap bound is checked for real.
                real = self.count(self.text[pos : self.ends[end]]) - self.base
                if real > goal:
                    candidates.remove((strength, tokens, pos, verified))
                    continue
                tokens = real
            return pos, k, tokens + self.seps[end]
        return no_overlap

    def _overlap_inside(self, t: int, end: int, prev_pos: int, goal: int) -> tuple[int, int, int, bool] | None:
        """The longest overlap starting at a word inside unit ``t`` (binary search, real counts)."""
        lo_bound = max(self.starts[t], prev_pos) + 1
        word_starts = [m.start() for m in _WORD_START.finditer(self.text, lo_bound, self.ends[t])]
        stop = self.ends[end]
        best: tuple[int, int, int, bool] | None = None
        lo, hi = 0, len(word_starts) - 1
        while lo <= hi:
            middle = (lo + hi) // 2
            tokens = self.count(self.text[word_starts[middle] : stop]) - self.base
            if tokens <= goal:
                best = (_WORD, tokens, word_starts[middle], True)
                hi = middle - 1
            else:
                lo = middle + 1
        return best
