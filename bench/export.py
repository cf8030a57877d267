"""ONNX Runtime (CPU) latency of the exported graphs against PyTorch eager, same checkpoint,
same threads, same run; each attention path (dense, folded), each in eager
and in ONNX Runtime; fp32 and fp16; and the fp32 graphs in OpenVINO (`--provider openvino`:
bf16 where the CPU has it natively, else f32) where the `[openvino]` extra is installed.

    python bench/export.py [--preset small] [--labels 3 19] [--height 256 --width 170]

Random-weight checkpoints (latency does not depend on the weights); batch 1; median of
`--repeats` runs after a warm-up. Ratios > 1 mean ONNX Runtime (or OpenVINO) is faster than
eager. int8 needs trained weights and calibration photos: `bench/cpu.py` measures it.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.append(str(Path(__file__).resolve().parent))  # after the root: bench/models.py must not shadow models/
from timing import median_time  # noqa: E402
from models import ATTENTION_PATHS, ModelConfig, SATEncoder, SCAMGenerator, one_hot  # noqa: E402
from scam_export.graphs import LABEL_DTYPE, EncoderGraph, GeneratorGraph, export_onnx  # noqa: E402
from scam_runtime.backend import BackendOptions, open_session  # noqa: E402


def ort_session(path: Path, threads: int) -> ort.InferenceSession:
    """ONNX Runtime's defaults (spinning pools included), one graph at a time: unlike
    `scam_runtime.backend.OnnxSession`, tuned for two sessions that alternate."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--labels", type=int, nargs="+", default=[3, 19])
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=170)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-fp16", action="store_true", help="skip the fp16 graphs")
    ap.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO columns")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    openvino = not args.no_openvino and importlib.util.find_spec("openvino") is not None
    versions = f"torch {torch.__version__}, onnxruntime {ort.__version__}"
    if openvino:
        import openvino as ov
        versions += f", openvino {ov.get_version().split('-')[0]}"
    print(f"# {args.preset} preset, {args.height}x{args.width}, batch 1, CPU {args.threads} threads, {versions}")
    print("| labels | graph | path | precision | eager (ms) | ORT (ms) | eager / ORT |"
          + (" OpenVINO (ms) | eager / OpenVINO |" if openvino else ""))
    print("|---" * (9 if openvino else 7) + "|")
    tmp = Path(tempfile.mkdtemp(prefix="scam-bench-"))
    for n in args.labels:
        labels = ["background"] + [f"label{i}" for i in range(1, n)]
        c = ModelConfig.preset(args.preset, labels=labels, height=args.height, width=args.width)
        torch.manual_seed(0)
        enc, gen = SATEncoder(c).eval(), SCAMGenerator(c, noise_mode="const").eval()
        image = torch.rand(2, 3, c.height, c.width) * 2 - 1
        ids = torch.randint(0, n, (2, c.height, c.width), dtype=LABEL_DTYPE)
        mask = one_hot(ids.long(), n)
        with torch.no_grad():
            z = enc(image, mask)
        precisions = ["fp32"] if args.no_fp16 else ["fp32", "fp16"]
        graphs = (  # name, network, its ONNX wrapper, export example, eager inputs, ORT feeds
            ("encoder", enc, EncoderGraph, (image, ids), (image[:1], mask[:1]),
             {"image": image[:1].numpy(), "labels": ids[:1].numpy()}),
            ("generator", gen, GeneratorGraph, (ids, z), (mask[:1], z[:1]),
             {"labels": ids[:1].numpy(), "latents": z[:1].numpy()}))
        for name, net, wrapper, example, eager_inputs, feeds in graphs:
            for attention in ATTENTION_PATHS:
                net.attention_path = attention
                with torch.no_grad():
                    eager = median_time(lambda: net(*eager_inputs), args.repeats)
                for precision in precisions:
                    path = tmp / f"{name}{n}_{attention}_{precision}.onnx"
                    export_onnx(wrapper(net, precision), example, path, 18, 8)
                    sess = ort_session(path, args.threads)
                    t = median_time(lambda: sess.run(None, feeds), args.repeats)
                    row = f"| {n} | {name} | {attention} | {precision} | {eager * 1e3:.0f} | {t * 1e3:.0f} | " \
                          f"{eager / t:.2f} |"
                    if openvino and precision == "fp32":
                        ov_sess = open_session(path, BackendOptions("openvino", threads=args.threads))
                        t_ov = median_time(lambda: ov_sess.run(**feeds), args.repeats)
                        row += f" {t_ov * 1e3:.0f} ({ov_sess.precision}) | {eager / t_ov:.2f} |"
                    elif openvino:
                        row += " - | - |"
                    print(row, flush=True)


if __name__ == "__main__":
    main()
