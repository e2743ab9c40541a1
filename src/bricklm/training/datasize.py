"""How much writing is enough: where a run sits between too little text and plenty, said before it starts.

    size = DataSize(parameters=817_771, train_tokens=327_330, tokens_per_step=64 * 128, steps=3_000)
    size.line()      # 327,330 training tokens for 817,771 parameters (0.40 per parameter); 3,000 steps ...
    size.warning()   # a sentence when the run will mostly memorise its text, else None

Two numbers: training tokens per parameter (how much text each weight has to explain), and passes over
the training text (max_iters x tokens per step / training tokens: how often each token is seen).

The warning's thresholds come from the one overfitting run measured in docs/results.md: the blog's
~800k model (817,771 parameters) on its 327,330 training characters, 0.40 tokens per parameter, 8,192
tokens per step. Its validation loss was lowest at step 1,000 (25 passes) and rose after, to +1.11 above
train loss at 3,000 steps (75 passes); at 500 steps (12.5 passes) it was still improving. So
MEMORIZE_PASSES = 20 warns a little before that turn. MEMORIZE_TOKENS_PER_PARAMETER = 2 is a round bound
above the measured 0.40, not a measured edge: the 200k ablation model at 1.5 tokens per parameter was not
run past 3 passes. docs/inside.md says what is and isn't measured.
"""

from __future__ import annotations

from dataclasses import dataclass

MEMORIZE_PASSES = 20.0
MEMORIZE_TOKENS_PER_PARAMETER = 2.0


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
