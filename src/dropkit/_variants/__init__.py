"""Aliases of dropkit 0.1.0's private module paths, kept so that old checkpoints load.

``torch.save(model)`` pickles each class by its module path. In 0.1.0 some classes lived
here (``dropkit._variants.nn_noise``, ``nn_structured``, ``nn_wrappers``); those modules now
only re-export the classes from their public homes in :mod:`dropkit.layers`. The library
never imports this package.
"""
