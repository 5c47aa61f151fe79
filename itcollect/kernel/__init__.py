"""The shared kernel: what every stage may import, and which imports no stage.

The interaction types and their checks (``taxonomy``, ``checks``), what a turn expects
(``dialogue``), the one language identifier (``langid``), text normalisation and tokens
(``normalize``, ``text``), MinHash signatures (``minhash``), prompt templates (``prompting``),
errors, progress bars, paging over worker processes and streaming JSON arrays.
"""
