"""What each sequence of a batch has seen so far, in the forms processors need.

Penalties need "which tokens appeared" and "how often"; n-gram blocking needs the
ids in order. Keeping a (batch, vocab) mask and count table up to date costs one
scatter per step and turns every penalty into a couple of tensor operations.
"""

import torch


class TokenHistory:
    """Prompt ids and generated ids of each row of a batch.

    prompt_ids[i], output_ids[i]: plain lists, in order (no padding).
    prompt_mask: (B, V) bool, True where the token occurs in row i's prompt.
    output_counts: (B, V) int32, how often row i has generated each token.
    states[i]: a dict where stateful steps keep row i's state between steps (mirostat's μ).
        The runtime hands in each sequence's own dict, so the state follows the sequence
        whichever batch it runs in.
    generators[i]: row i's torch.Generator (None: the global one), for steps that draw
        (XTC's coin); the sampler sets them before running its chain.
    """

    def __init__(self, prompts: list[list[int]], vocab_size: int, device: torch.device | str = "cpu"):
        batch = len(prompts)
        self.vocab_size = vocab_size
        self.prompt_ids = [list(p) for p in prompts]
        self.output_ids: list[list[int]] = [[] for _ in range(batch)]
        self.prompt_mask = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device)  # (B, V)
        for row, ids in enumerate(self.prompt_ids):
            if ids:
                self.prompt_mask[row, torch.tensor(ids, dtype=torch.long, device=device)] = True
        self.output_counts = torch.zeros(batch, vocab_size, dtype=torch.int32, device=device)  # (B, V)
        self.states: list[dict] = [{} for _ in range(batch)]
        self.generators: list = [None] * batch

    @property
    def batch_size(self) -> int:
        return len(self.prompt_ids)

    def append(self, next_ids: torch.Tensor) -> None:
        """Record one generated token per row. next_ids: (B,) long."""
        rows = torch.arange(len(self.output_ids), device=next_ids.device)
        self.output_counts[rows, next_ids] += 1
        for row, token in enumerate(next_ids.tolist()):
            self.output_ids[row].append(token)

    def sequence(self, row: int) -> list[int]:
        """Prompt followed by generated ids of one row."""
        return self.prompt_ids[row] + self.output_ids[row]

    def generator(self, row: int):
        return self.generators[row]

    def seen_mask(self) -> torch.Tensor:
        """(B, V) bool: tokens that occur in the prompt or the output of each row."""
        return self.prompt_mask | (self.output_counts > 0)

    def rows(self, index: list[int]) -> "TokenHistory":
        """A new history holding only the given rows (copies; for grouping rows by their params)."""
        subset = TokenHistory.__new__(TokenHistory)
        subset.vocab_size = self.vocab_size
        subset.prompt_ids = [self.prompt_ids[i] for i in index]
        subset.output_ids = [self.output_ids[i] for i in index]
        selector = torch.tensor(index, dtype=torch.long, device=self.prompt_mask.device)
        subset.prompt_mask = self.prompt_mask.index_select(0, selector)
        subset.output_counts = self.output_counts.index_select(0, selector)
        subset.states = [self.states[i] for i in index]  # the same dicts: state updates reach the row
        subset.generators = [self.generators[i] for i in index]
        return subset
