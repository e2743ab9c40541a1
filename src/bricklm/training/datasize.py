"""How much writing is enough: where a run sits between too little text and plenty, said before it starts.

    size = DataSize(parameters=817_771, train_tokens=327_330, tokens_per_step=64 * 128, steps=3_000)
    size.line()      # 327,330 training tokens for 817,771 parameters (0.40 per parameter); 3,000 steps ...
    size.warning()   # a sentence when the run will mostly memorise its text, else None

Two numbers: training tokens per parameter (how much text each weight has to explain), and passes over
the training text (max_iters x tokens per step / training tokens: how often each token is seen).

The warning's thresholds: the blog's ~800k model (817,771 parameters) on its 327,330 training characters,
0.40 tokens per parameter, had its lowest validation loss at step 1,000 (25 passes) and rose after, to +1.11
above train loss at 3,000 steps (75 passes; docs/results.md). The data-size table (MEASURED below,
docs/inside.md) agrees: every run below 1 token per parameter whose 1,500 steps held 20 or more passes turned
(val loss rose again), after 13-80 passes; bigger models turned sooner (the 122k model after 55-80 passes, the
835k one after 20-60, the 2.7M one after 13-40). Those below 20 passes were turns of the 2.7M model on a whole
text, mild ones: on the blog (0.12 per parameter) best at 15 passes and 0.02 lower than where its steps ended
(19), on the built-in corpus (0.15) best at 13 and 0.015 lower than at 15; the blog's headline 10M model (0.03
per parameter, dropout 0.1, constant rate) was still improving at 17.5 passes (docs/performance.md). So
MEMORIZE_PASSES = 20 warns where runs turned clearly. MEMORIZE_TOKENS_PER_PARAMETER = 1 lies between the runs
that turned (0.86 per parameter at most: the 122k model on a quarter of the built-in corpus, best at 55 passes)
and those with 20 or more passes that did not (the 122k model on half the blog, 1.35 per parameter, and half the
built-in corpus, 1.73, still improving at 38 and 29 passes; a quarter of tiny Shakespeare, 2.16, at 24). Runs
of 1-2 tokens per parameter for more than ~40 passes were not measured: they may still turn.
`expectation()` names the measured run nearest to a planned one, as a rough guide to the loss its text supports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MEMORIZE_PASSES = 20.0
MEMORIZE_TOKENS_PER_PARAMETER = 1.0


@dataclass(frozen=True)
class Measured:
    """One run of benchmarks/data_size.py (docs/inside.md's table): character tokens, the default settings."""

    text: str
    train_tokens: int
    parameters: int
    best_val_loss: float
    passes_at_best: float
    still_improving: bool  # best at the last evaluation of its 1,500 steps: more steps would have gone lower


# benchmarks/results/data_size.json, 2026-12-06 (AMD EPYC, torch 2.13.0): each run trained to its best whole-split
# val loss (early stop after 3 evaluations without one, at most 1,500 steps); the parts of one text share its val split.
MEASURED = (
    Measured("the blog's first sixteenth", 20458, 121579, 2.5217, 80.1, False),
    Measured("the blog's first quarter", 81832, 121579, 2.1943, 60.1, False),
    Measured("the blog's first half", 163665, 121579, 1.9957, 37.5, True),
    Measured("the blog", 327330, 121579, 1.7928, 18.8, True),
    Measured("the blog's first sixteenth", 20458, 835179, 2.5209, 60.1, False),
    Measured("the blog's first quarter", 81832, 835179, 2.1124, 35.0, False),
    Measured("the blog", 327330, 835179, 1.5566, 17.5, False),
    Measured("the blog's first sixteenth", 20458, 2730731, 2.4533, 40.0, False),
    Measured("the blog's first quarter", 81832, 2730731, 2.0569, 25.0, False),
    Measured("the blog", 327330, 2730731, 1.5468, 15.0, False),
    Measured("tiny Shakespeare's first sixteenth", 62740, 116161, 2.3817, 58.8, False),
    Measured("tiny Shakespeare's first quarter", 250962, 116161, 2.1195, 24.5, True),
    Measured("tiny Shakespeare", 1003848, 116161, 1.8811, 6.1, True),
    Measured("tiny Shakespeare's first sixteenth", 62740, 824385, 2.3435, 32.6, False),
    Measured("tiny Shakespeare's first quarter", 250962, 824385, 2.061, 19.6, False),
    Measured("tiny Shakespeare", 1003848, 824385, 1.6143, 6.1, True),
    Measured("tiny Shakespeare", 1003848, 2714561, 1.5467, 6.1, True),
    Measured("the built-in corpus's first sixteenth", 26151, 121063, 2.5605, 78.3, False),
    Measured("the built-in corpus's first quarter", 104606, 121063, 1.6733, 54.8, False),
    Measured("the built-in corpus's first half", 209212, 121063, 1.4833, 29.4, True),
    Measured("the built-in corpus", 418425, 121063, 1.3837, 14.7, True),
    Measured("the built-in corpus's first sixteenth", 26151, 834151, 2.5836, 47.0, False),
    Measured("the built-in corpus's first quarter", 104606, 834151, 1.6917, 31.3, False),
    Measured("the built-in corpus", 418425, 834151, 1.191, 14.7, True),
    Measured("the built-in corpus", 418425, 2729191, 1.1743, 12.7, False),
)


def nearest_measured(parameters: int, train_tokens: int) -> Measured:
    """The measured run closest to this one in log training tokens and log parameters."""

    def distance(m: Measured) -> float:
        return math.log(m.train_tokens / train_tokens) ** 2 + math.log(m.parameters / parameters) ** 2

    return min(MEASURED, key=distance)


@dataclass
class DataSize:
    parameters: int
    train_tokens: int
    tokens_per_step: int  # every process's micro-batches: batch x grad_accum x processes x block
    steps: int

    @property
    def tokens_per_parameter(self) -> float:
        return self.train_tokens / self.parameters if self.parameters else float("inf")

    @property
    def passes(self) -> float:
        return self.steps * self.tokens_per_step / self.train_tokens if self.train_tokens else float("inf")

    def line(self) -> str:
        return (
            f"{self.train_tokens:,} training tokens for {self.parameters:,} parameters "
            f"({self.tokens_per_parameter:.2f} per parameter); {self.steps:,} steps of {self.tokens_per_step:,} "
            f"tokens = {self.passes:.{1 if self.passes >= 1 else 2}f} passes over the training text"
        )

    def expectation(self) -> str:
        """What the nearest run measured here reached: a rough guide to the loss this much text supports."""
        m = nearest_measured(self.parameters, self.train_tokens)
        best = "still improving at its last step" if m.still_improving else f"best after {m.passes_at_best:.0f} passes"
        return (
            f"the nearest run measured (docs/inside.md): {m.text}, {m.train_tokens:,} tokens for {m.parameters:,} "
            f"parameters, reached val loss {m.best_val_loss:.2f} per character ({best})"
        )

    def warning(self) -> str | None:
        """A sentence when the run will mostly memorise: many passes with far more parameters than text."""
        if self.passes < MEMORIZE_PASSES or self.tokens_per_parameter >= MEMORIZE_TOKENS_PER_PARAMETER:
            return None
        return (
            f"this run will mostly memorise its text: {self.passes:.0f} passes over it, with "
            f"{self.tokens_per_parameter:.2f} training tokens per parameter (warned from {MEMORIZE_PASSES:.0f} "
            f"passes below {MEMORIZE_TOKENS_PER_PARAMETER:g} per parameter; the blog's 800k model at 0.40 was best "
            "after 25 passes and worse after, docs/results.md). Fewer --max-iters, a smaller model or more text "
            "help; --early-stop keeps the best weights; `bricklm memorization` measures the copying"
        )
