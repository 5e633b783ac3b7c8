"""carnb's IPython edge: the extension, the ``%car`` magics and the widgets.

Only this package imports IPython, traitlets and ipywidgets (docs/architecture.md). Modules:
``extension`` (load/unload), ``magics`` (``CarMagics`` and its options), ``parser`` (the command
line), ``cmd_*`` (one module per command group), ``calls`` (one call on the runtime, errors as one
line), ``render`` (HTML/text results), ``panel`` (status panel), ``explore`` (memory explorer),
``cellrun`` (cells as run turns). Heavy modules are imported only when used.
"""
