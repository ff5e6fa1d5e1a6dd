"""The decoding loop of models served as a loop (token streams): numpy only.

`export` copies this file beside the served model.py (which runs it inside Triton, one response per
token), and the benchmark runs the same loop in-process as the baseline the served stream is
measured against. So it imports numpy only: no artforge, no torch.

The loop asks a "stepper" for the logits of the next token given every token so far:
- WindowSteps runs a step network on the latest `max_context` tokens each time;
- CachedSteps runs a step network with a key/value cache: the prompt once (prefill), then one new
  token per call; when the cache is full it starts again from the latest half context.

Concurrent streams of a cached step network whose graph takes each row's cache length decode
together (continuous batching): ContinuousBatch advances every stream it holds by one token per
batched call, and StreamScheduler runs it on a thread, letting new streams join and finished or
cancelled ones leave between steps. One stream gives the same tokens either way.
"""
import queue
import threading
import time

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
    return draw(weights, rng)


def draw(weights, rng):
    """An index drawn with probabilities `weights`: what rng.choice(len(weights), p=weights) draws for
    the same generator state (its own method: the normalised cumulative sum searched at one uniform
    number), without its checks of p, which cost as much again per token."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return int(np.searchsorted(cdf, rng.random(), side="right"))


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
            self.past, self.start, self.cached = self.empty_cache, restart_point(tokens, self.max_context), 0
        new = tokens[self.start + self.cached:]
        logits, self.past = self.step(np.array([new], np.int64), self.past)
        self.cached += len(new)
        return logits[0]


def restart_point(tokens, max_context):
    """Where a full cache starts again: the latest half context is prefilled anew."""
    return len(tokens) - max_context // 2


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
        step, axis = cached_step(run, stream), length_axis(stream)
        return CachedSteps(lambda new, cache: step(new, cache, np.full((len(new), 1), cache.shape[axis], np.int64)),
                           empty_cache(stream), max_context)
    return WindowSteps(lambda window: run([logits], {tokens: window})[0], max_context)


def batches_streams(stream):
    """Whether concurrent streams of this contract can decode as one batch (ContinuousBatch)."""
    return bool(stream.get("cache_input") and stream.get("cache_length_input"))


def continuous_batch(run, stream):
    """A ContinuousBatch over run(output names, feed), for a contract where batches_streams holds."""
    return ContinuousBatch(cached_step(run, stream), empty_cache(stream), stream["max_context"], length_axis(stream))


def cached_step(run, stream):
    """step(tokens (B, L), past, cached (B, 1)) -> (logits (B, V), present) over run(output names, feed);
    a graph exported before batching had no `cached` input (its rows are never padded)."""
    names = [stream["logits_output"], stream["cache_output"]]
    lengths = stream.get("cache_length_input")

    def step(tokens, past, cached):
        feed = {stream["tokens_input"]: tokens, stream["cache_input"]: past}
        if lengths:
            feed[lengths] = cached
        return run(names, feed)
    return step


def empty_cache(stream):
    """A one-row cache holding no token: (1, *cache_shape) with the named length axis 0."""
    return np.zeros([1] + [0 if isinstance(d, str) else d for d in stream["cache_shape"]], np.float32)


def length_axis(stream):
    """The axis of a batched cache (batch first) that grows by one entry per token."""
    return 1 + next(i for i, d in enumerate(stream["cache_shape"]) if isinstance(d, str))


class Sequence:
    """One stream being decoded in a ContinuousBatch: its tokens so far, its sampling settings (drawn
    from its own seed, so batching never changes what it writes) and what its cache holds."""

    def __init__(self, prompt, max_tokens, temperature, top_k, seed, eos=None, top_p=1.0):
        self.tokens = [int(t) for t in prompt]
        self.left = int(max_tokens)
        self.temperature, self.top_k, self.top_p = float(temperature), int(top_k), float(top_p)
        self.rng, self.eos = np.random.default_rng(int(seed)), eos
        self.start, self.cached = 0, 0  # the cache holds tokens[start:start + cached]
        self.finished = self.left <= 0

    def take(self, logits):
        """Sample the next token from its logits; the stream ends at eos or its last token."""
        token = sample_token(logits, self.temperature, self.top_k, self.rng, self.top_p)
        self.tokens.append(token)
        self.left -= 1
        self.finished = self.left <= 0 or token == self.eos
        return token


class ContinuousBatch:
    """Streams decoded together, one token each per batched call of the step network.

    step(tokens (B, L), past, cached (B, 1)) -> (logits (B, V), present), as cached_step makes. A new
    stream is prefilled alone (its prompt, from an empty cache) and then joins the batch: every row's
    cache is padded at the front to the longest, and `cached` tells the network how many entries are
    the row's own. A row whose cache is full is prefilled again from its latest half context, as
    CachedSteps does for one stream.
    """

    def __init__(self, step, empty, max_context, axis):
        self.step, self.empty, self.max_context, self.axis = step, empty, max_context, axis
        self.rows = []  # Sequences, in the order of the batch's rows
        self.past = None  # (len(rows), *cache) or None when empty

    def join(self, sequence):
        """Prefill a new (or restarted) stream and add it to the batch: its next token."""
        new = np.array([sequence.tokens[sequence.start:]], np.int64)
        logits, present = self.step(new, self.empty, np.zeros((1, 1), np.int64))
        sequence.cached = new.shape[1]
        token = sequence.take(logits[0])
        if not sequence.finished:
            self.add_row(sequence, present)
        return token

    def advance(self):
        """One token for every stream in the batch: [(sequence, token)]; finished streams leave."""
        full = [s for s in self.rows if len(s.tokens) - s.start > self.max_context]
        self.remove(full)
        events = []
        if self.rows:
            rows = list(self.rows)
            tokens = np.array([[s.tokens[-1]] for s in rows], np.int64)  # the one token each cache lacks
            logits, self.past = self.step(tokens, self.past, np.array([[s.cached] for s in rows], np.int64))
            for sequence, row in zip(rows, logits):
                sequence.cached += 1
                events.append((sequence, sequence.take(row)))
            self.remove([s for s in rows if s.finished])
        for sequence in full:
            sequence.start, sequence.cached = restart_point(sequence.tokens, self.max_context), 0
            events.append((sequence, self.join(sequence)))
        return events

    def add_row(self, sequence, present):
        if self.past is None:
            self.rows, self.past = [sequence], present
            return
        width, own = self.past.shape[self.axis], present.shape[self.axis]
        self.rows.append(sequence)
        self.past = np.concatenate([self.pad_front(self.past, own - width), self.pad_front(present, width - own)])

    def remove(self, leaving):
        """Drop these streams' rows, and the front entries no remaining row needs."""
        if not leaving:
            return
        keep = [i for i, s in enumerate(self.rows) if s not in leaving]
        self.rows = [self.rows[i] for i in keep]
        if not self.rows:
            self.past = None
            return
        width, needed = self.past.shape[self.axis], max(s.cached for s in self.rows)
        index = [slice(None)] * self.past.ndim
        index[0], index[self.axis] = keep, slice(width - needed, width)
        self.past = self.past[tuple(index)]

    def pad_front(self, cache, entries):
        if entries <= 0:
            return cache
        widths = [(0, 0)] * cache.ndim
        widths[self.axis] = (entries, 0)
        return np.pad(cache, widths)


class StreamScheduler:
    """Continuous batching on a thread: streams submitted from any thread join a ContinuousBatch (or the
    pictures of a denoising.DenoiseBatch, which has its interface) between its steps (up to `max_streams`
    at once; the rest wait their turn), and each token goes to its stream's `on_token` as soon as the step
    that made it returns.

    A submitted stream ends with exactly one on_end(error): None when it is complete, else why it
    stopped. cancelled() true drops it between steps (its client went away); it is asked every
    `cancel_check_s`, not every step: in Triton's Python backend the question is a round trip to the
    server, and asking it of 16 streams every step cut their tokens/s by a quarter.
    """

    def __init__(self, batch, max_streams, idle_wait_s=0.05, cancel_check_s=0.05):
        self.batch, self.max_streams, self.idle_wait_s = batch, max(1, int(max_streams)), idle_wait_s
        self.cancel_check_s, self.last_check = cancel_check_s, 0.0
        self.waiting, self.jobs = queue.Queue(), {}  # id(sequence) -> its job
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self.run, name="artforge-decode", daemon=True)
        self.thread.start()

    def submit(self, sequence, on_token, on_end, cancelled=lambda: False):
        if self.closing.is_set():
            on_end("the model is unloading")
            return
        self.waiting.put(StreamJob(sequence, on_token, on_end, cancelled))

    def close(self, timeout_s=10.0):
        """Stop the thread; streams still open end with an error."""
        self.closing.set()
        self.thread.join(timeout_s)
        for job in [*self.jobs.values(), *drain(self.waiting)]:
            job.end("the model is unloading")
        self.jobs.clear()

    def run(self):
        while not self.closing.is_set():
            self.admit()
            self.leave_cancelled()
            if self.batch.rows:
                self.advance()

    def admit(self):
        """New streams join while there is room: wait for one only when nothing is being decoded."""
        while len(self.batch.rows) < self.max_streams:
            try:
                job = self.waiting.get(timeout=self.idle_wait_s) if not self.batch.rows else self.waiting.get_nowait()
            except queue.Empty:
                return
            if job.cancelled() or job.sequence.finished:  # gone already, or asked for no token
                job.end("cancelled" if job.cancelled() else None)
                continue
            try:
                token = self.batch.join(job.sequence)
            except Exception as e:  # the runtime's own error types: this stream alone fails
                job.end(f"inference failed: {e}")
                continue
            self.jobs[id(job.sequence)] = job
            self.deliver(job.sequence, token)

    def advance(self):
        try:
            events = self.batch.advance()
        except Exception as e:  # a failed batched step fails every stream in it
            self.batch.remove(list(self.batch.rows))
            for job in list(self.jobs.values()):
                self.finish(job, f"inference failed: {e}")
            return
        for sequence, token in events:
            self.deliver(sequence, token)

    def deliver(self, sequence, token):
        job = self.jobs[id(sequence)]
        try:
            if token is not None:  # a picture joining a DenoiseBatch has nothing to send yet
                job.on_token(token)
        except Exception as e:  # the client's connection is gone
            self.batch.remove([sequence])
            self.finish(job, f"sending failed: {e}")
            return
        if sequence.finished:
            self.finish(job, None)

    def leave_cancelled(self):
        if time.monotonic() - self.last_check < self.cancel_check_s:
            return
        self.last_check = time.monotonic()
        gone = [job for job in self.jobs.values() if job.cancelled()]
        self.batch.remove([job.sequence for job in gone])
        for job in gone:
            self.finish(job, "cancelled")

    def finish(self, job, error):
        self.jobs.pop(id(job.sequence), None)
        job.end(error)


class StreamJob:
    def __init__(self, sequence, on_token, on_end, cancelled):
        self.sequence, self.on_token, self.on_end, self.cancelled = sequence, on_token, on_end, cancelled

    def end(self, error):
        try:
            self.on_end(error)
        except Exception:  # nothing left to tell a client whose connection is gone
            pass


def drain(waiting):
    items = []
    while True:
        try:
            items.append(waiting.get_nowait())
        except queue.Empty:
            return items


class Outbox:
    """Sends streams' tokens from a thread of its own, so the next decoding step computes while the
    last step's responses go out (a response costs about as much as a token's compute here).

    send_tokens(key, [tokens]) sends one response; send_end(key, error) the stream's last. Tokens of one
    stream that queued while the thread was busy go out together in one response: under light load
    every token is its own response, under heavy load responses grow instead of queueing. A stream
    whose send failed (its client is gone) is in `broken`, for the decoder to drop.
    """

    def __init__(self, send_tokens, send_end):
        self.send_tokens, self.send_end = send_tokens, send_end
        self.queued, self.broken = queue.Queue(), set()
        self.thread = threading.Thread(target=self.run, name="artforge-send", daemon=True)
        self.thread.start()

    def token(self, key, token):
        self.queued.put((key, token, None))

    def end(self, key, error):
        self.queued.put((key, None, error or ""))

    def close(self, timeout_s=10.0):
        self.queued.put(None)
        self.thread.join(timeout_s)

    def run(self):
        while True:
            items = [self.queued.get()] + drain(self.queued)
            for key, tokens, error in coalesce([i for i in items if i is not None]):
                self.send(key, tokens, error)
            if None in items:
                return

    def send(self, key, tokens, error):
        try:
            if tokens and key not in self.broken:
                self.send_tokens(key, tokens)
            if error is not None:
                self.send_end(key, error or None)
        except Exception:  # the client's connection is gone: nothing more to send it
            self.broken.add(key)
        if error is not None:
            self.broken.discard(key)  # the stream is over: nobody asks about it again


def coalesce(items):
    """(key, token or None, end error or None) in queue order -> (key, [tokens], end error or None)
    per stream, in the order each stream first appears; a stream's end comes after its tokens."""
    grouped = {}
    for key, token, error in items:
        tokens, _ = grouped.setdefault(key, ([], None))
        if token is not None:
            tokens.append(token)
        if error is not None:
            grouped[key] = (tokens, error)
    return [(key, tokens, error) for key, (tokens, error) in grouped.items()]
