"""Generation speed and quality per number format: tutorial_lib's engine and transformers.

Every engine runs the same weights, chat prompt and greedy settings in one process, with the
KV cache, taking turns round by round (the starting engine rotates each round), so a busy
machine slows all of them alike. Rows: our engine in fp32, bf16, int8 and int4 (weight-only,
``tutorial_lib.quantization``), transformers in fp32 and bf16 (its int8/int4 CPU paths
need torchao or optimum-quanto, which this project does not install), and llama.cpp on the
Q4_1 GGUF file that our weights are decoded from (``llama-cpp-python``, an optional
benchmark dependency: ``pip install llama-cpp-python``, which compiles llama.cpp for this
CPU; without it, or if it fails to load the file, the table says so and goes on).

Columns: bytes of weights (all, and those one decoding step reads), the bandwidth ceiling
(measured memory-copy bandwidth / bytes read per token, in tokens/s), decode tokens/s after
the first token (median and best round, and the median ratio to transformers fp32 in the
same rounds), time to first token, peak memory (weights + what the prompt and the first step
allocate), perplexity on a fixed held text (news stories of gensim's Lee corpus), and how
many greedy tokens agree with our fp32 engine before the first difference. A second table
breaks one decoding step of each of our formats down by kind of work, on one thread
(``tutorial_lib.profiling``).

    python benchmarks/generate.py --threads 1 --repeats 3        # the README's table
    python benchmarks/generate.py --quick                        # a short smoke run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer

from tutorial_lib import assets
from tutorial_lib.generation import chat_prompt, stream
from tutorial_lib.loading import from_pretrained, resolve_model_dir
from tutorial_lib.profiling import KINDS, profile_decode
from tutorial_lib.quantization import memory_bandwidth, perplexity, quantize_weights, weight_bytes

# With SmolLM2's chat template (and its default system prompt) this prompt is 64 tokens, the
# length at which the README reports time to first token.
PROMPT = (
    "Explain step by step how a language model writes a reply, one token at a time: what "
    "happens to my words before the very first token of the reply comes out?"
)
GGUF_ASSET = "smollm2-135m-instruct-gguf"  # the Q4_1 file our fp32 weights are decoded from
FORMATS = ("fp32", "bf16", "int8", "int4")
HF_FORMATS = ("fp32", "bf16")  # transformers' formats that need no extra package on CPU


def held_text(tokenizer, n_tokens: int) -> torch.Tensor:
    """(1, n_tokens) ids of the first news stories of gensim's Lee corpus (real, offline)."""
    corpus = Path(assets.fetch(assets.GENSIM_CORPORA, quiet=True)) / "lee_background.cor"
    text = " ".join(corpus.read_text().splitlines()[:5])
    return tokenizer(text, return_tensors="pt").input_ids[:, :n_tokens]


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


def run_ours(model, input_ids, max_new_tokens, eos) -> tuple[list[int], list[float]]:
    times, tokens = [], []
    for token in stream(model, input_ids, max_new_tokens, eos_token_id=eos):
        tokens.append(int(token[0]))
        times.append(time.perf_counter())
    return tokens, times


def run_hf(model, input_ids, max_new_tokens, eos) -> tuple[list[int], list[float]]:
    clock = _Clock()
    with torch.inference_mode():
        model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos,
            streamer=clock,
        )
    return clock.tokens, clock.times


def llama_cpp_model(n_threads: int, logits_all: bool = False):
    """llama.cpp on the offline GGUF file (``llama_cpp.Llama``), or a sentence saying why not.

    It is first loaded once in a child process: a crash there (an unsupported CPU, a broken
    build) leaves this benchmark running, and the row is skipped with the reason.
    """
    try:
        import llama_cpp
    except ImportError:
        return "llama.cpp row skipped: llama-cpp-python is not installed"
    gguf = next(Path(assets.fetch(GGUF_ASSET, quiet=True)).glob("*.gguf"))
    probe = (
        "import llama_cpp, sys; m = llama_cpp.Llama(sys.argv[1], n_ctx=64, verbose=False); "
        "m.eval(m.tokenize(b'Hello')); print('ok')"
    )
    child = subprocess.run(
        [sys.executable, "-c", probe, str(gguf)], capture_output=True, text=True, timeout=300
    )
    if child.returncode != 0 or "ok" not in child.stdout:
        reason = (child.stderr.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
        return f"llama.cpp row skipped: loading {gguf.name} failed in a child process ({reason})"
    return llama_cpp.Llama(
        str(gguf),
        n_ctx=2048,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        logits_all=logits_all,
        verbose=False,
    )


def run_llama_cpp(model, input_ids, max_new_tokens, eos) -> tuple[list[int], list[float]]:
    """Greedy decoding with llama.cpp from the same prompt ids (its prompt pass included)."""
    times, tokens = [], []
    prompt = input_ids[0].tolist()
    for token in model.generate(prompt, temp=0.0, top_k=1, reset=True):
        tokens.append(int(token))
        times.append(time.perf_counter())
        if token == eos or len(tokens) == max_new_tokens:
            break
    return tokens, times


def llama_cpp_perplexity(model, input_ids: torch.Tensor) -> float:
    """Perplexity of llama.cpp (a ``logits_all`` model) on (1, seq) ids, as ``perplexity``."""
    ids = input_ids[0].tolist()
    model.reset()
    model.eval(ids)
    logits = torch.tensor(model.scores[: len(ids) - 1])  # (seq - 1, vocab): next-token scores
    loss = torch.nn.functional.cross_entropy(logits, input_ids[0, 1:])
    return float(torch.exp(loss))


def gguf_bytes() -> int:
    """Bytes of the GGUF file: llama.cpp reads all its tensors each token (the output matrix
    is the tied embedding, read whole)."""
    return next(Path(assets.fetch(GGUF_ASSET, quiet=True)).glob("*.gguf")).stat().st_size


def timed(fn: Callable) -> tuple[list[int], float, float]:
    """Tokens, time to first token (s) and decode tokens/s of one generation."""
    start = time.perf_counter()
    tokens, times = fn()
    ttft = times[0] - start
    decode = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return tokens, ttft, decode


def peak_extra_memory_mb(fn: Callable) -> float:
    """Peak memory (MB) torch allocates while ``fn`` runs, above the level before it (CPU).

    Replays the allocator events of torch's profiler in order (process RSS cannot show it:
    freed memory is kept and reused).
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    allocated = peak = 0
    for event in events:
        allocated += event.self_cpu_memory_usage
        peak = max(peak, allocated)
    return peak / 1e6


@torch.inference_mode()
def hf_perplexity(model, input_ids: torch.Tensor) -> float:
    return float(torch.exp(model(input_ids, labels=input_ids).loss))


def common_prefix(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--model", default="smollm2-135m-instruct", help="preset, directory or hub id"
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--ppl-tokens", type=int, default=512, help="tokens of held text")
    parser.add_argument(
        "--formats", default=",".join(FORMATS), help=f"of ours, comma-separated: {FORMATS}"
    )
    parser.add_argument("--no-transformers", action="store_true", help="no transformers rows")
    parser.add_argument("--no-llama-cpp", action="store_true", help="no llama.cpp row")
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the per-step breakdown of our formats"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 16 tokens, 1 round, 128 text tokens"
    )
    args = parser.parse_args()
    if args.quick:
        args.new_tokens, args.repeats, args.ppl_tokens = 16, 1, 128
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    formats = args.formats.split(",")
    if unknown := set(formats) - set(FORMATS):
        parser.error(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.bfloat16}
    dtypes["int4"] = torch.bfloat16

    model_dir = resolve_model_dir(args.model)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    input_ids = chat_prompt(tokenizer, PROMPT)
    eos = tokenizer.eos_token_id
    text = held_text(tokenizer, args.ppl_tokens)
    bandwidth = memory_bandwidth()

    # engine name -> (model, generate function, perplexity function)
    engines: dict[str, tuple] = {}
    for fmt in formats:
        model = from_pretrained(model_dir, device="cpu", dtype=dtypes[fmt])
        if fmt in ("int8", "int4"):
            quantize_weights(model, fmt)
        engines[f"tutorial_lib {fmt}"] = (model, run_ours, perplexity)
    if not args.no_transformers:
        for fmt in HF_FORMATS:
            hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtypes[fmt]).eval()
            engines[f"transformers {fmt}"] = (hf, run_hf, hf_perplexity)
    skipped = []  # why a row is missing
    if not args.no_llama_cpp:
        llm = llama_cpp_model(torch.get_num_threads())
        if isinstance(llm, str):
            skipped.append(llm)
        else:
            # A second instance keeps every position's logits, for the perplexity only.
            scorer = llama_cpp_model(torch.get_num_threads(), logits_all=True)
            engines["llama.cpp Q4_1"] = (
                llm,
                run_llama_cpp,
                lambda _, ids: llama_cpp_perplexity(scorer, ids),
            )

    print(
        f"model {args.model}, CPU, torch {torch.__version__}, transformers "
        f"{transformers.__version__}, {torch.get_num_threads()} threads; prompt "
        f"{input_ids.shape[1]} tokens (chat template), {args.new_tokens} new tokens, greedy, "
        f"{args.repeats} alternating rounds; memory-copy bandwidth {bandwidth / 1e9:.1f} GB/s; "
        f"perplexity on {text.shape[1]} tokens of held text\n"
    )
    for model, run, _ in engines.values():  # warm-up
        run(model, input_ids, 4, eos)
    # results[name]: one (tokens, time to first token, decode tokens/s) per round
    results: dict[str, list] = {name: [] for name in engines}
    names = list(engines)
    for round_ in range(args.repeats):
        print(f"round {round_ + 1} of {args.repeats}", file=sys.stderr, flush=True)
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            model, run, _ = engines[name]
            results[name].append(
                timed(lambda m=model, r=run: r(m, input_ids, args.new_tokens, eos))
            )

    baseline = "transformers fp32" if "transformers fp32" in results else names[0]
    reference_tokens = results[names[0]][0][0]  # the first engine (ours fp32 by default)
    print(
        "| engine | weights (MB) | read per token (MB) | bandwidth ceiling (tok/s) "
        "| decode tok/s, median | best round | × " + baseline + " | × llama.cpp "
        "| time to first token (s) "
        f"| peak memory (MB) | perplexity | greedy tokens = {names[0]} |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        model, run, ppl = engines[name]
        if run is run_llama_cpp:
            # llama.cpp reads its whole file each token; its allocator is not torch's.
            total = per_token = gguf_bytes()
            peak = "n/a"
        else:
            # transformers' Llama has the same embed_tokens and lm_head attributes as ours.
            total, per_token = weight_bytes(model), weight_bytes(model, per_token=True)
            # Prefill and one step: where activations peak (a profiled long run takes minutes).
            extra = peak_extra_memory_mb(lambda m=model, r=run: r(m, input_ids, 2, eos))
            peak = f"{total / 1e6 + extra:.0f}"
        decode = [r[2] for r in runs]
        same = min(common_prefix(tokens, reference_tokens) for tokens, _, _ in runs)
        print(
            f"| {name} | {total / 1e6:.0f} | {per_token / 1e6:.0f} | {bandwidth / per_token:.0f} "
            f"| {statistics.median(decode):.1f} | {max(decode):.1f} "
            f"| {median_ratio(runs, results[baseline])} "
            f"| {median_ratio(runs, results.get('llama.cpp Q4_1'))} "
            f"| {statistics.median(r[1] for r in runs):.3f} "
            f"| {peak} | {ppl(model, text):.2f} | {same} / {len(reference_tokens)} |"
        )
    for reason in skipped:
        print(f"\n{reason}")
    if not args.no_profile:
        print_profiles(model_dir, formats, dtypes, input_ids)


def median_ratio(runs: list, baseline_runs: list | None) -> str:
    """Median over rounds of this engine's decode tokens/s over the baseline's, same round."""
    if baseline_runs is None:
        return "n/a"
    ratios = [mine[2] / base[2] for mine, base in zip(runs, baseline_runs, strict=True)]
    return f"{statistics.median(ratios):.2f}"


def print_profiles(model_dir, formats: list[str], dtypes: dict, input_ids: torch.Tensor) -> None:
    """One decoding step of each of our formats, by kind of work, on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the profile counts this thread's CPU time
    print(
        "\nOne decoding step, by kind of work (ms per token, CPU time of one thread, 64 "
        "steps after the prompt; GB/s = bytes read / time)\n"
    )
    print("| format | " + " | ".join(KINDS) + " | step | read per token (MB) |")
    print("|---|" + "---|" * (len(KINDS) + 2))
    for fmt in formats:
        model = from_pretrained(model_dir, device="cpu", dtype=dtypes[fmt])
        if fmt in ("int8", "int4"):
            quantize_weights(model, fmt)
        prof = profile_decode(model, input_ids, 64)
        cells = [
            f"{prof.ms[k]:.2f}" + (f" ({prof.gb_per_s(k):.1f} GB/s)" if k in KINDS[:2] else "")
            for k in KINDS
        ]
        read = sum(prof.bytes_read.values()) / 1e6
        print(f"| {fmt} | " + " | ".join(cells) + f" | {prof.unhooked_ms:.2f} | {read:.0f} |")
    torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
