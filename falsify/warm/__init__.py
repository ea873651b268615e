"""A warm interpreter for `pytest -m tier1`: third-party libraries preloaded, one fork per run.

Why it exists: tier 1 must finish within 5 s on a 2-core machine, but importing torch and
transformers costs about 4.5 s and tearing the interpreter down another second, and no
on-disk cache can hold an import. `python -m falsify.warm start` (or `make tier1`) starts a
background process that imports torch, transformers, tokenizers, hypothesis and pytest
(never this project's code, which changes on every save) and waits. `pytest -m tier1`,
finding it, hands over its arguments, directory, environment and terminal; the server
forks, and the child runs `pytest.main` as a fresh process would, importing trainer/ and
falsify/ from disk. The child's exit status becomes the run's exit status.

This is the zygote pattern (Android, Ruby's Spring). multiprocessing's forkserver preloads
modules too, but it lives only as long as its parent, and a pytest run is a new process.
It is opt-in: nothing starts a server but `start` (and `make tier1`, which calls it). A
`pytest -m tier1` that finds none runs cold and says in one line how to start one
(FALSIFY_WARM=0: never use one). It is visible: the run's header says it was forked; a
server whose packages or import-time environment differ from the caller's refuses, says
why, and the run goes cold.

Modules: `protocol` (where the socket and lock live, the environment key, the wire format),
`client` (the caller's side: hand a run over, start, stop, status), `server` (preload, serve,
fork a run), `__main__` (the command line).
"""

import os

LOADED_IN_PID = os.getpid()  # a test compares it with the pid that runs the tests (fresh import)
