"""The opposite-word control (issue 30): a prompt with its key word swapped for its opposite.

    opposite_prompt("the image spins clockwise")   -> "the image spins counterclockwise"
    opposite_prompt("the content drifts left")     -> "the content drifts right"
    opposite_prompt("everything turns orange")     -> "everything turns blue"

A hypernetwork that reads direction, sense and colour words must write a LoRA for the prompt that
beats the one it writes for the swapped prompt (evaluation's `beats_opposite`). Prompts with none of
these words have no opposite (None).
"""

from __future__ import annotations

import re

# each pair swaps both ways; phrases before single words (the regex tries them in this order)
PAIRS = [
    ("in the direction of a clock's hands", "anticlockwise"),
    ("counter-clockwise", "clockwise"), ("counterclockwise", "clockwise"), ("anticlockwise", "clockwise"),
    ("zooming in", "zooming out"), ("zooms in", "zooms out"), ("zoom in", "zoom out"),
    ("left", "right"), ("upward", "downward"), ("up", "down"), ("inward", "outward"), ("inflating", "deflating"),
    ("black", "white"),
    # colours: their complements on the hue wheel (named as the library names them)
    ("red", "cyan"), ("yellow", "blue"), ("green", "magenta"), ("orange", "blue"), ("purple", "green"),
]
# idioms whose key word means no direction: kept as they are
KEEP = ("upside down", "winds up", "up and down", "down and up", "left and right", "right and left")
_FORWARD = {phrase: phrase for phrase in KEEP}
for a, b in PAIRS:
    _FORWARD.setdefault(a, b)
    _FORWARD.setdefault(b, a)
_PATTERN = re.compile(r"(?<![\w-])(" + "|".join(re.escape(k) for k in sorted(_FORWARD, key=len, reverse=True)) + r")(?![\w-])",
                      re.IGNORECASE)


def opposite_prompt(prompt: str) -> str | None:
    """`prompt` with every key word swapped for its opposite, or None when it has none (idioms such
    as "upside down" and symmetric phrases such as "up and down" do not count)."""
    swapped = _PATTERN.sub(lambda m: _FORWARD[m.group(1).lower()], prompt)
    return swapped if swapped != prompt else None
