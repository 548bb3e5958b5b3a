"""Per-step cost of MusicGen's decode loops in one process: stock `generate` vs fast_decode.py.

`dgx-music bench --decode stock,fast` measures wall time through the real worker, which on a shared
machine mostly measures the neighbours. This measures CPU time (`time.process_time`) of this process
with one intra-op thread, so the figure is the loop's own work: each loop makes N and 2N steps and
the difference divided by N is the marginal cost of a step (prefill and, for the compiled loop,
compilation cancel out). The EnCodec decode of the codes (the same work after either loop, growing
with N) is left out unless --with-encodec. Loops are interleaved, --repeat times; the median is kept.

    .venv/bin/python bench/decode_steps.py --model /tmp/tiny --steps 200          # tiny: pure overhead
    .venv/bin/python bench/decode_steps.py --model /tmp/tiny --steps 200 --sampler stock   # parity mode
    .venv/bin/python bench/decode_steps.py --model random:small --steps 20 --loops stock fast
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random:small")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--loops", nargs="+", default=["stock", "fast", "compiled"],
                    choices=["stock", "fast", "compiled"])
    ap.add_argument("--sampler", default="counter", choices=["counter", "stock"],
                    help="the fast loops' sampler (stock: transformers' own draws, the parity mode)")
    ap.add_argument("--with-encodec", action="store_true",
                    help="keep the EnCodec decode of the codes in the measurement (the same in every loop)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from dgx_music.daemon.engine.fast_decode import FastDecoder
    from dgx_music.daemon.engine.sampling import Sampling
    from dgx_music.daemon.engine.transformers_backend import TransformersBackend

    torch.set_num_threads(args.threads)
    b = TransformersBackend()
    b.load(args.model, "cpu", "auto", lambda *a: None)
    b.set_decode("stock")
    m = b.model
    kw = dict(do_sample=True, temperature=1.0, top_k=250, top_p=1.0, guidance_scale=3.0)
    inputs = b.processor(text=["upbeat electronic track with warm synth pads"] * args.batch, padding=True,
                         return_tensors="pt")
    s = Sampling.from_kwargs(m, kw)
    if not args.with_encodec:  # both loops hand their codes to audio_encoder.decode: answer with silence
        class _Decoded:
            def __init__(self, codes: Any) -> None:
                self.audio_values = torch.zeros((codes.shape[1], 1, 1))

        m.audio_encoder.decode = lambda codes, *a, **k: _Decoded(codes)
    decoders = {"fast": FastDecoder(m, sampler=args.sampler),
                "compiled": FastDecoder(m, compile=True, sampler=args.sampler)}

    def run(loop: str, n: int) -> float:
        torch.manual_seed(0)
        t = time.process_time()
        if loop == "stock":
            m.generate(**inputs, **kw, max_new_tokens=n)
        else:
            decoders[loop].generate(dict(inputs), n, s)
        return time.process_time() - t

    for loop in args.loops:  # warm-up (and compile) outside the measurement
        run(loop, 8)
    per: dict[str, list[float]] = {loop: [] for loop in args.loops}
    for _ in range(args.repeat):
        for loop in args.loops:
            one, two = run(loop, args.steps), run(loop, 2 * args.steps)
            per[loop].append((two - one) / args.steps * 1000)
    res: dict[str, Any] = {"model": args.model, "batch": args.batch, "steps": args.steps, "threads": args.threads,
                           "sampler": args.sampler, "encodec": args.with_encodec, "machine": platform.machine(), "cpu_ms_per_step": {}}
    for loop, xs in per.items():
        res["cpu_ms_per_step"][loop] = {"median": round(statistics.median(xs), 3), "all": [round(x, 3) for x in xs]}
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    base = res["cpu_ms_per_step"].get("stock", {}).get("median")
    print(f"{args.model}, batch {args.batch}, {args.threads} thread(s), {args.sampler} sampler, CPU ms per decode step "
          f"(median of {args.repeat}, marginal over {args.steps} steps)")
    for loop, r in res["cpu_ms_per_step"].items():
        ratio = f"{r['median'] / base:.2f}x stock" if base else ""
        print(f"  {loop:<9} {r['median']:8.3f} ms  {ratio:<12} runs {r['all']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
