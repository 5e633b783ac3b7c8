"""carnb's IPython edge: the extension, the ``%car`` magics and the widgets.

Only this package imports IPython, traitlets and ipywidgets (docs/architecture.md), and only at its
edge. Modules: ``extension`` (load/unload: hooks, magics, ``atexit``), ``magics`` (``CarMagics``:
its options and parsing), ``parser`` (the command line; each command names its ``cmd_*``
function), ``engine`` (the notebook session without IPython: runtime, calls, open/last run, cell
recorder, widgets), ``cmd_*`` (one module per command group, each taking the engine), ``calls``
(one call on the runtime, errors as one line), ``render`` (HTML/text results), ``view`` (what the
widgets may use of the runtime), ``panel`` (status panel), ``explore`` (memory explorer),
``cellrun`` (cells as run turns). Heavy modules are imported only when used.
"""
