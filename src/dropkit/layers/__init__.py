"""The dropout family, one public module per variant: its function and its module together.

=====================  ==========================================================
module                 function(s) and module class(es)
=====================  ==========================================================
``base``               ``StochasticModule``, ``DropoutBase`` (shared checks, repr)
``dropout``            ``dropout``, ``Dropout`` (the seed document's algorithm)
``channel``            ``dropout1d/2d/3d``, ``Dropout1d/2d/3d``
``alpha``              ``alpha_dropout``, ``feature_alpha_dropout``, and modules
``locked``             ``locked_dropout``, ``LockedDropout``
``gaussian``           ``gaussian_dropout``, ``GaussianDropout``
``drop_path``          ``drop_path``, ``drop_path_rates``, ``DropPath``
``drop_block``         ``drop_block2d``, ``DropBlock2d``
``drop_connect``       ``drop_connect``, ``DropConnect``
``embedding``          ``embedding_dropout``, ``EmbeddingDropout``
``concrete``           ``concrete_dropout``, ``ConcreteDropout`` and its regulariser
``rdrop``              ``rdrop_loss``
``noise``              uniform and normal noise from the mask stream
=====================  ==========================================================

:mod:`dropkit.functional` and :mod:`dropkit.nn` re-export these names; those are the
names to use. A class's ``__module__`` is its file here, a public path, which is what
``torch.save(model)`` writes into checkpoints.
"""
