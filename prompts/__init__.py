"""The bundled prompt templates (``*.j2``), shipped as package ``itcollect.prompts``.

The renderer lives in :mod:`itcollect.kernel.prompting` (a module cannot share this package's name);
``from itcollect.prompts import Prompts, load_prompts`` works as a shortcut.
"""


def __getattr__(name: str):
    from itcollect.kernel import prompting

    if name in prompting.__all__:
        return getattr(prompting, name)
    raise AttributeError(name)
