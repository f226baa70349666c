"""Generation speed: tutorial_lib's Phi-3 engine against transformers' ``generate``.

Both run the same weights, prompt and greedy settings in one process, alternating round by
round (so a busy machine slows both alike), with and without a KV cache. Printed per engine:
time to first token (prefill), decode tokens/s after it, peak memory allocated while
generating (beyond the weights), and whether the tokens are identical to transformers'.

    python benchmarks/generate.py                      # SmolLM2-135M, CPU, fp32, 128 tokens
    python benchmarks/generate.py --threads 1          # steadier when other jobs share the CPU
    python benchmarks/generate.py --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import transformers
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from tutorial_lib.generation import chat_prompt, stream
from tutorial_lib.loading import from_pretrained, resolve_model_dir

PROMPT = "Explain step by step how a language model writes a reply, one token at a time."


class _Clock(BaseStreamer):
    """Timestamps every token transformers' generate emits (its first call is the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[int] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        self.tokens.append(int(value.reshape(-1)[0]))

    def end(self) -> None:
        pass


def run_ours(model, input_ids, max_new_tokens, use_cache, eos) -> tuple[list[int], list[float]]:
    times, tokens = [], []
    for token in stream(model, input_ids, max_new_tokens, use_cache=use_cache, eos_token_id=eos):
        tokens.append(int(token[0]))
        times.append(time.perf_counter())
    return tokens, times


def run_hf(model, input_ids, max_new_tokens, use_cache, eos) -> tuple[list[int], list[float]]:
    clock = _Clock()
    with torch.inference_mode():
        model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=use_cache,
            eos_token_id=eos,
            pad_token_id=eos,
            streamer=clock,
        )
    return clock.tokens, clock.times


def timed(fn: Callable, device: torch.device) -> tuple[list[int], float, float]:
    """Tokens, time to first token (s) and decode tokens/s of one generation."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    tokens, times = fn()  # each token is read on the CPU (int()), so times are synchronized
    ttft = times[0] - start
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return tokens, ttft, decode


def peak_extra_memory_mb(fn: Callable, device: torch.device) -> float:
    """Peak memory allocated by torch while ``fn`` runs, above the level before it.

    CUDA: the caching allocator's own peak. CPU: the allocator events of torch's profiler,
    replayed in order (process RSS cannot show it: freed memory is kept and reused).
    """
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Each op carries the bytes it allocated (frees are "[memory]" events with negative sizes).
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    allocated = peak = 0
    for event in events:
        allocated += event.self_cpu_memory_usage
        peak = max(peak, allocated)
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", help="preset, directory or hub id"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--new-tokens", type=int, default=128, help="with the KV cache")
    parser.add_argument("--no-cache-tokens", type=int, default=32, help="without it (slow)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds per setting")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)

    model_dir = resolve_model_dir(args.model)
    ours = from_pretrained(model_dir, device=device, dtype=dtype)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    input_ids = chat_prompt(tokenizer, PROMPT).to(device)
    eos = tokenizer.eos_token_id

    print(
        f"model {args.model}, {args.device}, {args.dtype}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {torch.get_num_threads()} CPU threads"
    )
    print(
        f"prompt: {input_ids.shape[1]} tokens (chat template); greedy; {args.repeats} rounds per "
        "setting, the engines alternating (and swapping who goes first each round)\n"
    )
    print(
        "| engine | KV cache | new tokens | time to first token (s), median "
        "| decode tokens/s, median | decode tokens/s, best round "
        "| peak extra memory (MB) | tokens identical to transformers |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for use_cache, n_new in ((True, args.new_tokens), (False, args.no_cache_tokens)):
        engines = {
            "tutorial_lib": lambda n=n_new, c=use_cache: run_ours(ours, input_ids, n, c, eos),
            "transformers": lambda n=n_new, c=use_cache: run_hf(hf, input_ids, n, c, eos),
        }
        for fn in engines.values():  # warm-up
            fn(n=4)
        # results[name]: one (tokens, time to first token, decode tokens/s) per round
        results = {name: [] for name in engines}
        for round_ in range(args.repeats):
            order = list(engines) if round_ % 2 == 0 else list(reversed(engines))
            for name in order:
                results[name].append(timed(engines[name], device))
        reference = results["transformers"][0][0]
        cache = "yes" if use_cache else "no"
        for name, runs in results.items():
            memory = peak_extra_memory_mb(engines[name], device)
            same = all(tokens == reference for tokens, _, _ in runs)
            ttft = statistics.median(r[1] for r in runs)
            decode = [r[2] for r in runs]
            print(
                f"| {name} | {cache} | {len(runs[0][0])} | {ttft:.3f} "
                f"| {statistics.median(decode):.1f} | {max(decode):.1f} | {memory:.0f} "
                f"| {'yes' if same else 'NO'} |"
            )
        ours_rate = [r[2] for r in results["tutorial_lib"]]
        hf_rate = [r[2] for r in results["transformers"]]
        ratios = [mine / theirs for mine, theirs in zip(ours_rate, hf_rate, strict=True)]
        print(
            f"| ratio ours / transformers | {cache} | | "
            f"| {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}) "
            f"| {max(ours_rate) / max(hf_rate):.2f}x | | |"
        )


if __name__ == "__main__":
    main()
