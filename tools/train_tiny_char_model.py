"""Train chapter 10's tiny character decoder for longer: ``python tools/train_tiny_char_model.py``.

Chapter 10 trains a 2-block decoder live for a few hundred steps; its samples are word-like
but mostly not words. This script trains a larger decoder of the same classes
(``tutorial_lib.phi3.Phi3ForCausalLM``, whose parameter names are the chapter's ``DecoderLM``'s)
with the chapter's loop (random 64-character windows of the 270 training articles of the Lee
corpus, AdamW, linear warm-up then cosine decay, gradients clipped to norm 1) and writes
``src/tutorial_lib/data/tiny_char_lm.safetensors``, which the chapter loads.

It is deterministic: a seed for the weights and one for the batches, and one CPU thread
(``torch.set_num_threads(1)``), so a rerun on this machine gives the same weights bit for bit
and another processor the same losses within noise (its sums round in another order). With
the defaults it takes about 8 minutes on one core of a laptop-class CPU. The weights are
stored in float16 (3.5 MB); the losses it prints at the end are those of the stored weights.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tutorial_lib.char_lm import (
    CHECKPOINT,
    CharVocab,
    init_weights,
    lee_corpus,
    mean_loss,
    tiny_char_config,
)
from tutorial_lib.phi3 import Phi3ForCausalLM

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden-size", type=int, default=192)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--steps", type=int, default=1400)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--out", type=Path, default=CHECKPOINT)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # the same result on any machine, and one core left to others
    train_text, val_text = lee_corpus()
    vocab = CharVocab.from_text(train_text + val_text)  # the chapter's 81 characters
    train_ids, val_ids = vocab.encode(train_text), vocab.encode(val_text)
    sizes = {
        "hidden_size": args.hidden_size,
        "num_hidden_layers": args.layers,
        "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads,
        "context": args.context,
    }
    torch.manual_seed(args.seed)
    model = Phi3ForCausalLM(tiny_char_config(len(vocab), **sizes))
    init_weights(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params:,} parameters, {sizes}", flush=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1
    )
    batches = torch.Generator().manual_seed(args.seed)
    history: dict[str, list[float]] = {"step": [], "train": [], "held_out": []}
    start = time.process_time()
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            if step == args.steps:  # the weights as stored: rounded to float16
                for p in model.parameters():
                    p.data = p.data.half().float()
            with torch.no_grad():
                train_loss = mean_loss(model, train_ids, args.context)
                val_loss = mean_loss(model, val_ids, args.context)
            for key, value in [("step", step), ("train", train_loss), ("held_out", val_loss)]:
                history[key].append(round(value, 4))
            print(
                f"step {step:5d}: train {train_loss:.3f}, held-out {val_loss:.3f} nats/char "
                f"({time.process_time() - start:6.0f} s of CPU time)",
                flush=True,
            )
        if step == args.steps:
            break
        # linear warm-up, then a cosine decay to 0 (the chapter's schedule)
        lr = (
            args.lr
            * min(1.0, (step + 1) / args.warmup)
            * 0.5
            * (1 + math.cos(math.pi * step / args.steps))
        )
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train_ids) - args.context - 1, (args.batch,), generator=batches)
        windows = torch.stack([train_ids[s : s + args.context + 1] for s in starts.tolist()])
        logits = model(windows[:, :-1]).logits  # (batch, context, vocab)
        loss = F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
        optimizer.step()
    seconds = time.process_time() - start
    # float16 halves the file; the final losses above are those of these rounded weights.
    # The LM head is the embedding (tied): stored once.
    state = {
        k: v.half().contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"
    }
    command = "python tools/train_tiny_char_model.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:])
    )
    metadata = {
        "config": json.dumps(sizes),
        "chars": vocab.chars,
        "command": command,
        "steps": str(args.steps),
        "batch": str(args.batch),
        "train_loss": f"{train_loss:.4f}",
        "held_out_loss": f"{val_loss:.4f}",
        "cpu_seconds": f"{seconds:.0f}",
        "history": json.dumps(history),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata=metadata)
    size = args.out.stat().st_size
    print(f"{args.steps} steps in {seconds:.0f} s of CPU time", flush=True)
    print(f"wrote {args.out} ({size / 1e6:.1f} MB): held-out {val_loss:.4f} nats/char")


if __name__ == "__main__":
    main()
