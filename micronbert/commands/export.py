"""`micronbert export`: a fine-tuned model folder -> ONNX, checked against torch with onnxruntime."""
from __future__ import annotations

HELP = ("export a fine-tuned model to ONNX (uint8 RGB onset/apex in; probabilities, DMA and PoI maps and "
        "the direction out)")


def configure(p):
    p.add_argument("--weights", required=True, help="fine-tuned model folder (model.safetensors + config.json)")
    p.add_argument("--onnx", required=True, help="ONNX file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |onnxruntime - torch| accepted")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")


def run(args):
    from micronbert.errors import MicronbertError
    from micronbert.infer.export import export_onnx

    from micronbert.errors import UsageError
    from micronbert.utils.paths import check_output

    check_output(args.onnx, "file", [args.weights], "--onnx")
    if args.opset < 17:
        raise UsageError(f"--opset {args.opset}: need 17 or newer (LayerNormalization)")
    res = export_onnx(args.weights, args.onnx, opset=args.opset, check=not args.no_check)
    print(f"wrote {res['onnx']} (opset {res['opset']}; input uint8 (B, {res['size']}, {res['size']}, 3) RGB onset "
          f"and apex; classes {res['classes']})")
    if "max_abs_diff" in res:
        worst = max(res["max_abs_diff"].values())
        detail = ", ".join(f"{k} {v:.2e}" for k, v in res["max_abs_diff"].items())
        print(f"onnxruntime vs torch: max abs difference {worst:.2e} ({detail})")
        if worst > args.tolerance:
            raise MicronbertError(f"{res['onnx']}: onnxruntime differs from torch by {worst:.2e} "
                                  f"(> --tolerance {args.tolerance:g})")
    return 0
