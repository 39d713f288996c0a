"""ganforge: train, evaluate and use generative adversarial networks.

Python API::

    import ganforge
    run_dir = ganforge.train("dcgan", data="mnist5k", steps=2000)
    model = ganforge.load(run_dir)
    images = model.sample(16, seed=0)   # NCHW float tensor in [-1, 1]
"""

__version__ = "0.1.0"


def __getattr__(name: str):  # lazy: `import ganforge` stays fast and torch-free until used
    if name in ("train", "load", "LoadedModel"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'ganforge' has no attribute {name!r}")


__all__ = ["LoadedModel", "__version__", "load", "train"]
