"""The views: what a workflow, a case or a store looks like to people.

Below the command line, above the model. The text summaries (:mod:`.summary`), the
notebook HTML (:mod:`.html`), the diagrams (:mod:`.diagram`), the pandas frames
(:mod:`.notebook`) and the timeline pictures (:mod:`.timeline`). The model's display
methods (``Workflow.diagram``, ``Case.timeline``, ``Store.events_frame`` ...) reach up
here through one function-level import each; the names they use are listed below and
imported on first use, so that showing one thing loads only the module that draws it.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .diagram import render
    from .html import HistoryTable, case_html, workflow_html
    from .notebook import events_frame
    from .timeline import Svg, case_svg, portfolio_svg

#: Where each name the model's display methods use lives.
_EXPORTS = {
    "render": "diagram",
    "HistoryTable": "html", "case_html": "html", "workflow_html": "html",
    "events_frame": "notebook",
    "Svg": "timeline", "case_svg": "timeline", "portfolio_svg": "timeline",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'approvalflow.views' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["HistoryTable", "Svg", "case_html", "case_svg", "events_frame", "portfolio_svg",
           "render", "workflow_html"]
