"""`micronbert dma-map`: the DMA and PoI maps of one frame pair, drawn over the face (with directional DMA,
arrows for which way the most-changed patches moved)."""
from __future__ import annotations

HELP = "draw the DMA (change) and PoI (saliency) maps of a frame pair over the face"


def configure(p):
    p.add_argument("--weights", required=True, help="model folder (pretrained or fine-tuned) or its .safetensors")
    p.add_argument("frame_a", help="first frame (I_t / onset), ideally an aligned face")
    p.add_argument("frame_b", help="second frame (I_{t+δ} / apex)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--npz", default=None, help="also save the raw maps to this .npz file (dma_map, poi_map; "
                   "dma_motion (g, g, 2) with directional DMA)")


def run(args):
    import numpy as np

    from micronbert.data.frames import read_image
    from micronbert.infer.maps import load_backbone_any, pair_maps, pair_motion
    from micronbert.infer.visualise import pair_figure
    from micronbert.utils.paths import check_outputs

    check_outputs([(args.out, "file", "--out"), (args.npz, "file", "--npz")],
                  [args.weights, args.frame_a, args.frame_b])
    backbone, cfg = load_backbone_any(args.weights)
    a, b = read_image(args.frame_a), read_image(args.frame_b)
    maps = pair_maps(backbone, a, b)
    motion = pair_motion(backbone, a, b)  # None unless the config has directional DMA
    pair_figure(maps["first"], maps["second"], maps["dma_map"], maps["poi_map"] if cfg.use_poi else None, args.out,
                title=f"{args.frame_a} → {args.frame_b}", motion=motion)
    if args.npz:
        from micronbert.utils.io import atomic_save
        extra = {} if motion is None else {"dma_motion": motion}
        atomic_save(args.npz, lambda tmp: np.savez(open(tmp, "wb"), dma_map=maps["dma_map"], poi_map=maps["poi_map"],
                                                   **extra))
    print(f"wrote {args.out}")
    return 0
