"""lmms-eval-style multiple-choice prompt and answer-letter parsing."""

from __future__ import annotations

import re
import string

__all__ = ["PRE_PROMPT", "POST_PROMPT", "build_prompt", "parse_answer"]

# lmms-eval's video MCQ prompt for LLaVA-OneVision (videomme / mlvu / longvideobench style).
PRE_PROMPT = "Select the best answer to the following multiple-choice question based on the video."
POST_PROMPT = "Answer with the option's letter from the given choices directly."


def build_prompt(question: str, options: list[str]) -> str:
    """``PRE_PROMPT`` + question + one option per line + ``POST_PROMPT`` (lines joined by ``\\n``)."""
    return "\n".join([PRE_PROMPT, question.strip(), *[o.strip() for o in options], POST_PROMPT])


_PREFIXES = (
    "the best answer is",
    "the correct answer is",
    "the answer is",
    "the answer",
    "best answer:",
    "best option:",
    "answer:",
    "option:",
)


def parse_answer(response: str | None, num_options: int = 26) -> str | None:
    """First option letter in ``response`` (like lmms-eval's ``extract_characters_regex``), or None.

    Accepts "B", "B.", "(B) cooking", "Answer: B", "The answer is (C)", "b" on its own;
    a letter inside a word ("Because...") does not count.
    """
    if not response:
        return None
    letters = string.ascii_uppercase[:num_options]
    s = response.strip()
    low = s.lower()
    for p in _PREFIXES:
        if low.startswith(p):
            s = s[len(p):].strip()
            low = s.lower()
            break
    # a bare letter, optionally with brackets/punctuation: "b", "(B)", "B." ...
    m = re.fullmatch(r"[\(\[]?\s*([A-Za-z])\s*[\)\]]?[\.\:\)]?", s)
    if m and m.group(1).upper() in letters:
        return m.group(1).upper()
    # the first standalone capital letter among the options
    for m in re.finditer(r"(?<![A-Za-z])([A-Z])(?![A-Za-z])", s):
        if m.group(1) in letters:
            # "A" used as an article ("A man ...") is not an answer unless followed by punctuation/end
            if m.group(1) == "A" and re.match(r"A\s+[a-z]", s[m.start():]):
                continue
            return m.group(1)
    return None
