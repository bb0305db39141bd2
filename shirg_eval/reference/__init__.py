"""The reference mini-LaViDa: a small model in LaViDa's exact layout, trained to read the hard synthetic sets.

``factory`` builds its initial checkpoint and tokenizer, ``dense`` is the tower's reading objective, ``qa`` the
question-answering objective on LaViDa's release path, ``train`` the ``shirg-train-reference`` command.
"""
