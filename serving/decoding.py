"""The decoding loop of models served as a loop (token streams): numpy only.

`export` copies this file beside the served model.py (which runs it inside Triton, one response per
token), and the benchmark runs the same loop in-process as the baseline the served stream is
measured against. So it imports numpy only: no artforge, no torch.

The loop asks a "stepper" for the logits of the next token given every token so far:
- WindowSteps runs a step network on the latest `max_context` tokens each time;
- CachedSteps runs a step network with a key/value cache: the prompt once (prefill), then one new
  token per call; when the cache is full it starts again from the latest half context.
"""
import numpy as np


def sample_token(logits, temperature, top_k, rng, top_p=1.0):
    """The next token: the likeliest at temperature 0, else drawn from the softmax of the top k tokens,
    cut to the smallest set whose probability reaches top_p (nucleus sampling)."""
    if temperature <= 0:
        return int(np.argmax(logits))
    logits = logits.astype(np.float64) / temperature
    if 0 < top_k < len(logits):
        logits = np.where(logits >= np.sort(logits)[-top_k], logits, -np.inf)
    weights = np.exp(logits - logits.max())
    weights /= weights.sum()
    if top_p < 1.0:
        order = np.argsort(-weights, kind="stable")
        keep = np.cumsum(weights[order]) - weights[order] < top_p  # up to the token that reaches top_p
        keep[0] = True  # the likeliest always stays (top_p 0 is greedy)
        weights[order[~keep]] = 0.0
        weights /= weights.sum()
    return int(rng.choice(len(weights), p=weights))


class WindowSteps:
    """step(window (1, length) int64) -> logits (1, vocab): the whole latest window every time."""

    def __init__(self, step, max_context):
        self.step, self.max_context = step, max_context

    def __call__(self, tokens):
        return self.step(np.array([tokens[-self.max_context:]], np.int64))[0]

    def reset(self):
        pass


class CachedSteps:
    """step(new tokens (1, n) int64, past) -> (logits (1, vocab), present): only the tokens the cache lacks."""

    def __init__(self, step, empty_cache, max_context):
        self.step, self.empty_cache, self.max_context = step, empty_cache, max_context
        self.reset()

    def reset(self):
        self.past, self.start, self.cached = self.empty_cache, 0, 0  # cache = tokens[start:start + cached]

    def __call__(self, tokens):
        if len(tokens) - self.start > self.max_context:  # full: prefill again from the latest half context
            self.past, self.start, self.cached = self.empty_cache, len(tokens) - self.max_context // 2, 0
        new = tokens[self.start + self.cached:]
        logits, self.past = self.step(np.array([new], np.int64), self.past)
        self.cached += len(new)
        return logits[0]


def decode(next_logits, prompt, max_tokens, temperature, top_k, seed, eos=None, stop=lambda: False, top_p=1.0):
    """Yield up to max_tokens token ids continuing `prompt`.

    next_logits(tokens so far) -> logits of the next token (a WindowSteps or CachedSteps); `eos` ends
    the stream after it is yielded; `stop()` true ends it early (a cancelled request).
    """
    tokens, rng = [int(t) for t in prompt], np.random.default_rng(int(seed))
    next_logits.reset()
    for _ in range(int(max_tokens)):
        if stop():
            return
        token = sample_token(next_logits(tokens), temperature, top_k, rng, top_p)
        tokens.append(token)
        yield token
        if token == eos:
            return


def stepper(run, stream):
    """The stepper a stream's contract (TokenStream.to_json) asks for; run(output names, feed) -> outputs,
    as ONNX Runtime's InferenceSession.run."""
    tokens, logits, max_context = stream["tokens_input"], stream["logits_output"], stream["max_context"]
    if stream.get("cache_input"):
        past, present = stream["cache_input"], stream["cache_output"]
        empty = np.zeros([1] + [0 if isinstance(d, str) else d for d in stream["cache_shape"]], np.float32)
        return CachedSteps(lambda new, cache: run([logits, present], {tokens: new, past: cache}), empty, max_context)
    return WindowSteps(lambda window: run([logits], {tokens: window})[0], max_context)
