"""micronbert: μ-BERT (Micron-BERT, CVPR 2023) for facial micro-expression recognition."""
__version__ = "0.1.0"


def __getattr__(name):
    # Keep `import micronbert` light; the model API loads torch only when asked for.
    if name == "MicronBert":
        from micronbert.infer.api import MicronBert

        return MicronBert
    raise AttributeError(name)
