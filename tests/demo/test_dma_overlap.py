"""The DMA change map is brightest where the synthetic action was applied: the top change cells overlap
the known action region (from actions ground truth, in the aligned crop) far more than chance."""
from __future__ import annotations

import numpy as np
import torch

from micronbert.synth import Distractions, action_map, make_clips
from micronbert.demo.report import overlap_stats


def test_dma_change_overlaps_the_action_region(people):
    from micronbert.config import preset
    from micronbert.faces import FaceAligner
    from micronbert.infer.visualise import change_map
    from micronbert.model.mubert import MicronBertModel, normalise_images

    torch.manual_seed(0)
    # Untrained tiny μ-BERT: Q and K start tied, so the DMA diagonal already means "same place still matches".
    model = MicronBertModel(preset("tiny"), with_decoder=False, with_agreement=False).eval()
    aligner = FaceAligner(112)
    clips = make_clips("casme2", 6, 3, 3.0, 0, ["happiness", "disgust", "surprise"], 8, Distractions(),
                       people=people)
    own, other = [], []
    regions = []
    for c in clips:
        a = aligner.align_clip([c.render(0), c.render(c.apex_pos)])
        x = normalise_images(torch.from_numpy(a.frames))
        with torch.no_grad():
            dma = model.maps(x[:1], x[1:])["dma_map"][0].numpy()
        m = np.asarray(a.transform)
        regions.append(action_map([b.to_dict(m) for b in c.bumps], dma.shape[0], 112, to_crop=m))
        own.append((change_map(dma), regions[-1]))
    for i, (change, region) in enumerate(own):
        other.append(overlap_stats(change, own[(i + 1) % len(own)][1]))  # next sample: another class's region
    stats = [overlap_stats(ch, reg) for ch, reg in own]
    overlap = np.mean([s["overlap"] for s in stats])
    chance = np.mean([s["chance"] for s in stats])
    wrong = np.mean([s["overlap"] for s in other])
    print(f"DMA top-change overlap with the action region {overlap:.3f}, chance {chance:.3f}, "
          f"another sample's region {wrong:.3f}")
    assert overlap > 1.5 * chance
    assert overlap > 1.3 * wrong
