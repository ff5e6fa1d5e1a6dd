"""The decoding loop of models served as a loop (token streams): numpy only.

`export` copies this file beside the served model.py (which runs it inside Triton, one response per
token), and the benchmark runs the same loop in-process as the baseline the served stream is
measured against. So it imports numpy only: no artforge, no torch.
"""
import numpy as np


def sample_token(logits, temperature, top_k, rng):
    """The next token: the likeliest at temperature 0, else drawn from the softmax of the top k."""
    if temperature <= 0:
        return int(np.argmax(logits))
    logits = logits.astype(np.float64) / temperature
    if 0 < top_k < len(logits):
        logits = np.where(logits >= np.sort(logits)[-top_k], logits, -np.inf)
    weights = np.exp(logits - logits.max())
    return int(rng.choice(len(weights), p=weights / weights.sum()))


def decode(step, prompt, max_tokens, temperature, top_k, seed, max_context, eos=None, stop=lambda: False):
    """Yield up to max_tokens token ids continuing `prompt`.

    step(window) -> logits: runs the step network on (1, length) int64 ids, the last max_context
    tokens; `eos` ends the stream after it is yielded; `stop()` true ends it early (a cancelled request).
    """
    tokens, rng = [int(t) for t in prompt], np.random.default_rng(int(seed))
    for _ in range(int(max_tokens)):
        if stop():
            return
        token = sample_token(step(np.array([tokens[-max_context:]], np.int64)), temperature, top_k, rng)
        tokens.append(token)
        yield token
        if token == eos:
            return
